//! `expectations/<provider>.yaml`: every case that is known not to pass,
//! with a reason, and the gate that keeps the list honest.
//!
//! The file maps case names to `"<reason>: <detail>"`, e.g.
//! `test_abs: "unsupported-op: Abs"`. The gate fails on a regression (a
//! case not listed that does not pass) and on a stale entry (a listed case
//! that passes now), except for entries whose reason starts with
//! [`RANDOM`]: cases whose output is drawn from a fresh seed on each run,
//! which match the reference by chance now and then.

use std::collections::BTreeMap;
use std::path::Path;

use crate::case::{CaseResult, Status};

/// Known failures: case name → `"<reason>: <detail>"`.
pub type Expectations = BTreeMap<String, String>;

/// The reason of entries that may pass or fail from run to run (unseeded
/// random operators); `--update-expectations` keeps them as written.
pub const RANDOM: &str = "random:";

/// Why a case does not pass, as recorded in the expectations file.
pub fn reason(status: &Status) -> Option<String> {
    match status {
        Status::Pass => None,
        Status::Unsupported(what) => Some(format!("unsupported-op: {what}")),
        Status::Fail(why) => Some(format!("numeric: {why}")),
        Status::Error(why) => Some(format!("error: {why}")),
        Status::Timeout(secs) => Some(format!("timeout: over {secs} s")),
    }
}

/// Reads an expectations file; a missing file means "everything passes".
pub fn load(path: &Path) -> Result<Expectations, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Expectations::new()),
        Ok(text) => serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Expectations::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The expectations that describe `results` exactly (for `--update-expectations`).
pub fn from_results(results: &[CaseResult]) -> Expectations {
    results
        .iter()
        .filter_map(|r| reason(&r.status).map(|why| (r.name.clone(), why)))
        .collect()
}

/// Writes expectations sorted by case name, with a header.
pub fn save(path: &Path, provider: &str, exp: &Expectations) -> Result<(), String> {
    let body = serde_saphyr::to_string(exp).map_err(|e| e.to_string())?;
    let text = format!(
        "# ONNX node-test cases that do not pass on the {provider} provider, with the reason.\n\
         # Written by `cargo xtask conformance --update-expectations`; `cargo xtask conformance`\n\
         # fails when a case not listed here stops passing, or a listed case starts passing.\n{body}"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the gate found.
#[derive(Debug, Default, PartialEq)]
pub struct GateReport {
    /// Cases expected to pass that did not: `(name, reason)`.
    pub regressions: Vec<(String, String)>,
    /// Cases listed as failing that passed.
    pub stale: Vec<String>,
}

impl GateReport {
    /// True when the run matches the expectations exactly.
    pub fn ok(&self) -> bool {
        self.regressions.is_empty() && self.stale.is_empty()
    }
}

/// Compares `results` with `expected`. Cases not run (filtered out) are ignored.
pub fn gate(results: &[CaseResult], expected: &Expectations) -> GateReport {
    let mut report = GateReport::default();
    for r in results {
        match (reason(&r.status), expected.get(&r.name)) {
            (Some(why), None) => report.regressions.push((r.name.clone(), why)),
            (None, Some(listed)) if !listed.starts_with(RANDOM) => {
                report.stale.push(r.name.clone())
            }
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn result(name: &str, status: Status) -> CaseResult {
        CaseResult {
            name: name.into(),
            ops: vec![],
            status,
            placed_on: vec![],
        }
    }

    #[test]
    fn gate_catches_regressions_and_stale_entries() {
        let mut exp = Expectations::new();
        exp.insert("test_b".into(), "unsupported-op: B".into());
        exp.insert("test_c".into(), "unsupported-op: C".into());
        let results = vec![
            result("test_a", Status::Pass),
            result("test_b", Status::Unsupported("B".into())),
            result("test_c", Status::Pass),
            result("test_d", Status::Fail("output 'y': 1 values differ".into())),
        ];
        let g = gate(&results, &exp);
        assert!(!g.ok());
        assert_eq!(g.stale, vec!["test_c".to_string()]);
        assert_eq!(
            g.regressions,
            vec![(
                "test_d".to_string(),
                "numeric: output 'y': 1 values differ".to_string()
            )]
        );
        // Updating from the results makes the gate pass.
        assert!(gate(&results, &from_results(&results)).ok());
        // An unseeded random case may pass or fail.
        exp.insert("test_c".into(), format!("{RANDOM} fresh seed each run"));
        assert!(gate(&results, &exp).stale.is_empty());
        exp.insert("test_a".into(), format!("{RANDOM} fresh seed each run"));
        assert!(gate(&results, &exp).stale.is_empty());
    }

    #[test]
    fn yaml_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("expectations/cpu.yaml");
        assert!(load(&path).unwrap().is_empty());
        let mut exp = Expectations::new();
        exp.insert("test_z".into(), "unsupported-op: Z: with colon".into());
        exp.insert("test_a".into(), "error: it's \"quoted\"".into());
        save(&path, "cpu", &exp).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.find("test_a").unwrap() < text.find("test_z").unwrap(),
            "{text}"
        );
        assert_eq!(load(&path).unwrap(), exp);
        std::fs::write(&path, "test_a: [unclosed").unwrap();
        assert!(load(&path).is_err());
    }
}
