//! Summaries of a run: per-operator table, totals, `report.md`, `report.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::case::{CaseResult, Status};
use crate::expectations::reason;

/// Cases and passes of one operator (a case counts for every op its model uses).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpRow {
    pub op: String,
    pub cases: usize,
    pub passed: usize,
}

/// Per-operator rows, sorted by op name.
pub fn per_operator(results: &[CaseResult]) -> Vec<OpRow> {
    let mut map: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results {
        for op in &r.ops {
            let e = map.entry(op).or_default();
            e.0 += 1;
            e.1 += (r.status == Status::Pass) as usize;
        }
    }
    map.into_iter()
        .map(|(op, (cases, passed))| OpRow {
            op: op.to_string(),
            cases,
            passed,
        })
        .collect()
}

/// `(passed, total)`.
pub fn totals(results: &[CaseResult]) -> (usize, usize) {
    (
        results.iter().filter(|r| r.status == Status::Pass).count(),
        results.len(),
    )
}

fn percent(passed: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * passed as f64 / total as f64
    }
}

/// The table printed at the end of a run.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = format!("{:<32} {:>6} {:>7}\n", "operator", "cases", "passed");
    for row in per_operator(results) {
        out.push_str(&format!(
            "{:<32} {:>6} {:>7}\n",
            row.op, row.cases, row.passed
        ));
    }
    let (p, t) = totals(results);
    out.push_str(&format!("\npassed {p}/{t} ({:.1}%)\n", percent(p, t)));
    out
}

#[derive(Serialize)]
struct JsonCase<'a> {
    name: &'a str,
    status: &'a str,
    detail: Option<String>,
    ops: &'a [String],
    /// Providers that ran the case's nodes.
    placed_on: &'a [String],
}

#[derive(Serialize)]
struct JsonReport<'a> {
    provider: &'a str,
    onnx_release: &'a str,
    passed: usize,
    total: usize,
    operators: Vec<OpRow>,
    cases: Vec<JsonCase<'a>>,
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail(_) => "fail",
        Status::Unsupported(_) => "unsupported",
        Status::Error(_) => "error",
        Status::Timeout(_) => "timeout",
    }
}

/// Writes `report.md` and `report.json` into `dir`.
pub fn write(
    dir: &Path,
    provider: &str,
    onnx_release: &str,
    results: &[CaseResult],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (passed, total) = totals(results);
    let json = JsonReport {
        provider,
        onnx_release,
        passed,
        total,
        operators: per_operator(results),
        cases: results
            .iter()
            .map(|r| JsonCase {
                name: &r.name,
                status: status_name(&r.status),
                detail: reason(&r.status),
                ops: &r.ops,
                placed_on: &r.placed_on,
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.json"), text).map_err(|e| format!("report.json: {e}"))?;

    let mut md = format!(
        "# Conformance: {provider} provider\n\nONNX {onnx_release} backend node tests: **{passed}/{total} passed ({:.1}%)**.\n\n| operator | cases | passed |\n|---|---:|---:|\n",
        percent(passed, total)
    );
    for row in per_operator(results) {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            row.op, row.cases, row.passed
        ));
    }
    md.push_str("\n## Cases that do not pass\n\n| case | status | detail |\n|---|---|---|\n");
    for r in results.iter().filter(|r| r.status != Status::Pass) {
        let detail = reason(&r.status).unwrap_or_default().replace('|', "\\|");
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            r.name,
            status_name(&r.status),
            detail
        ));
    }
    std::fs::write(dir.join("report.md"), md).map_err(|e| format!("report.md: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table_and_reports() {
        let results = vec![
            CaseResult {
                name: "test_relu".into(),
                ops: vec!["Relu".into()],
                status: Status::Pass,
                placed_on: vec!["cpu".into()],
            },
            CaseResult {
                name: "test_relu_seq".into(),
                ops: vec!["Relu".into(), "SequenceAt".into()],
                status: Status::Unsupported("SequenceAt".into()),
                placed_on: vec![],
            },
        ];
        assert_eq!(
            per_operator(&results),
            vec![
                OpRow {
                    op: "Relu".into(),
                    cases: 2,
                    passed: 1
                },
                OpRow {
                    op: "SequenceAt".into(),
                    cases: 1,
                    passed: 0
                }
            ]
        );
        assert!(table(&results).ends_with("passed 1/2 (50.0%)\n"));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cpu", "1.22.0", &results).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["passed"], 1);
        assert_eq!(json["cases"][1]["status"], "unsupported");
        assert_eq!(json["cases"][1]["detail"], "unsupported-op: SequenceAt");
        assert_eq!(json["cases"][0]["placed_on"][0], "cpu");
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(
            md.contains("**1/2 passed (50.0%)**") && md.contains("| test_relu_seq | unsupported |"),
            "{md}"
        );
    }
}
