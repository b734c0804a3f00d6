//! Project automation, run as `cargo xtask <task>`.
//!
//! - `conformance`: run ONNX backend node tests from a directory against
//!   the CPU provider and print per-case failures and a per-operator table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use oxrt_conformance::{discover, run_case, Status, Tolerance};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run ONNX node tests (`onnx/backend/test/data/node`) against oxrt.
    Conformance {
        /// Directory of `test_*` cases (default: $OXRT_ONNX_TEST_DATA).
        #[arg(long, env = "OXRT_ONNX_TEST_DATA")]
        data: Option<PathBuf>,
        /// Only run cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Print every case, not only the ones that do not pass.
        #[arg(long)]
        verbose: bool,
    },
}

fn conformance(data: Option<PathBuf>, filter: Option<String>, verbose: bool) -> Result<bool> {
    let Some(root) = data else {
        bail!("no test data: pass --data DIR or set OXRT_ONNX_TEST_DATA to an onnx/backend/test/data/node directory");
    };
    let mut cases = discover(&root).with_context(|| format!("cannot list {}", root.display()))?;
    if let Some(f) = &filter {
        cases.retain(|c| c.name.contains(f.as_str()));
    }
    if cases.is_empty() {
        bail!("no node-test cases found in {}", root.display());
    }
    let mut per_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut passed, total) = (0usize, cases.len());
    for (i, case) in cases.iter().enumerate() {
        let r = run_case(case, Tolerance::default());
        let ok = r.status == Status::Pass;
        passed += ok as usize;
        for op in &r.ops {
            let e = per_op.entry(op.clone()).or_default();
            e.0 += 1;
            e.1 += ok as usize;
        }
        if verbose || !ok {
            println!("[{}/{total}] {:<50} {:?}", i + 1, r.name, r.status);
        }
    }
    println!("\n{:<28} {:>6} {:>7}", "operator", "cases", "passed");
    for (op, (n, p)) in &per_op {
        println!("{op:<28} {n:>6} {p:>7}");
    }
    println!(
        "\npassed {passed}/{total} ({:.1}%)",
        100.0 * passed as f64 / total as f64
    );
    Ok(passed == total)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Conformance {
            data,
            filter,
            verbose,
        } => conformance(data, filter, verbose),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
