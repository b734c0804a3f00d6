//! Discovering node-test cases on disk and running one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use oxrt::core::ir::LowerOptions;
use oxrt::{Error, OptimizationLevel, Provider, Session, ValueInfo};

use crate::compare::{compare_value, Tolerance};
use crate::value::{decode, RefValue};

/// One node-test case directory.
#[derive(Debug, Clone)]
pub struct NodeTestCase {
    /// Directory name, e.g. `test_relu`.
    pub name: String,
    pub dir: PathBuf,
}

/// The outcome of a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Pass,
    /// Ran, but an output differs (the message names output and error).
    Fail(String),
    /// The model uses something oxrt does not implement (says what).
    Unsupported(String),
    /// Loading or running failed otherwise, or the case is malformed.
    Error(String),
    /// The case ran longer than the time limit (seconds).
    Timeout(u64),
}

/// A case's name, outcome, the op types its model uses, and the providers
/// that ran its nodes (empty when no session was created).
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub ops: Vec<String>,
    pub status: Status,
    pub placed_on: Vec<String>,
}

/// All `test_*` directories holding a `model.onnx` under `root`, sorted.
pub fn discover(root: &Path) -> std::io::Result<Vec<NodeTestCase>> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let dir = entry?.path();
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("test_") && dir.join("model.onnx").is_file() {
            cases.push(NodeTestCase { name, dir });
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Files `prefix_<i>.pb` in `dir`, in index order.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

pub fn op_types(case: &NodeTestCase) -> Vec<String> {
    let Ok(m) = oxrt::onnx::load_model(case.dir.join("model.onnx")) else {
        return Vec::new();
    };
    let mut ops: Vec<String> = m
        .proto
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .map(|n| n.op_type().to_string())
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// Unsupported operators and features (found when the session is built or
/// when a kernel meets them at run time) become [`Status::Unsupported`] with a
/// short description: the op, and why when it is not simply missing.
fn status_of_error(e: Error) -> Status {
    match e {
        Error::UnsupportedOp { op, reason, .. } => {
            let why = reason.split_once(": ").map_or(reason.as_str(), |(_, w)| w);
            if why.starts_with("no kernel is registered") {
                Status::Unsupported(op)
            } else {
                Status::Unsupported(format!("{op} ({why})"))
            }
        }
        Error::Node { op, source, .. } => match *source {
            Error::NotSupported(what) => Status::Unsupported(format!("{op} ({what})")),
            // An operator inside a subgraph that nothing runs.
            inner @ (Error::UnsupportedOp { .. } | Error::Node { .. }) => {
                match status_of_error(inner) {
                    Status::Error(m) => Status::Error(format!("{op}: {m}")),
                    other => other,
                }
            }
            other => Status::Error(format!("{op}: {other}")),
        },
        other => Status::Error(other.to_string()),
    }
}

/// One data set: decoded inputs and expected outputs.
type DataSet = (Vec<RefValue>, Vec<RefValue>);

/// The model's declared inputs and outputs, read without building a session.
fn interface(case: &NodeTestCase) -> Result<(Vec<ValueInfo>, Vec<ValueInfo>), Status> {
    let loaded = oxrt::onnx::load_model(case.dir.join("model.onnx"))
        .map_err(|e| Status::Error(e.to_string()))?;
    let model = oxrt::Model::from_proto(&loaded.proto, &LowerOptions::default())
        .map_err(|e| Status::Error(e.to_string()))?;
    Ok((model.graph.inputs, model.graph.outputs))
}

/// Decodes every data set's `input_<i>.pb` / `output_<i>.pb` by the declared
/// type of the matching input or output.
fn data_sets(
    case: &NodeTestCase,
    inputs: &[ValueInfo],
    outputs: &[ValueInfo],
) -> Result<Vec<DataSet>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&case.dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    if dirs.is_empty() {
        return Err("no test_data_set_* directory".into());
    }
    let read = |dir: &Path, prefix: &str, infos: &[ValueInfo]| -> Result<Vec<RefValue>, String> {
        let files = numbered(dir, prefix);
        if files.len() != infos.len() {
            return Err(format!(
                "{}: {} {prefix} files for {} model {prefix}s",
                dir.display(),
                files.len(),
                infos.len()
            ));
        }
        files
            .iter()
            .zip(infos)
            .map(|(path, info)| {
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                decode(&bytes, &info.ty).map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect()
    };
    dirs.iter()
        .map(|d| Ok((read(d, "input", inputs)?, read(d, "output", outputs)?)))
        .collect()
}

fn run_data_sets(
    case: &NodeTestCase,
    tol: Tolerance,
    providers: &[Provider],
    level: OptimizationLevel,
    placed_on: &mut Vec<String>,
) -> Status {
    let (inputs, outputs) = match interface(case) {
        Ok(io) => io,
        Err(status) => return status,
    };
    // Every case's data is decoded, even where the runtime cannot run it yet.
    let sets = match data_sets(case, &inputs, &outputs) {
        Ok(s) => s,
        Err(e) => return Status::Error(e),
    };
    let session = match Session::builder()
        .with_providers(providers.iter().cloned())
        .with_intra_threads(1)
        .with_optimization_level(level)
        .commit_from_file(case.dir.join("model.onnx"))
    {
        Ok(s) => s,
        Err(e) => return status_of_error(e),
    };
    for (_, p) in session.node_placement() {
        if !placed_on.iter().any(|q| q == p) {
            placed_on.push(p.to_string());
        }
    }
    let mut last = None;
    for (fed, expected) in sets {
        let mut feed = Vec::with_capacity(fed.len());
        for (info, v) in inputs.iter().zip(&fed) {
            match v.to_value(&info.ty) {
                Ok(v) => feed.push((info.name.clone(), v)),
                Err(why) => return Status::Unsupported(format!("input '{}': {why}", info.name)),
            }
        }
        let got = match session.run(feed) {
            Ok(o) => o,
            Err(e) => return status_of_error(e),
        };
        for ((name, actual), want) in got.iter().zip(&expected) {
            if let Err(m) = compare_value(actual, want, tol) {
                return Status::Fail(format!("output '{name}': {m}"));
            }
        }
        last = Some(got);
    }
    if let Some(got) = last {
        if let Err(m) = check_inference(&session, &got) {
            return Status::Fail(m);
        }
    }
    Status::Pass
}

/// Runs shape inference afresh from the graph inputs alone and checks that
/// every output type it derives agrees with what the run produced: the
/// element type, the rank and each dimension it claims to know.
fn check_inference(session: &Session, got: &oxrt::SessionOutputs) -> Result<(), String> {
    let model = session.model();
    let mut graph = model.graph.clone();
    graph.value_types.clear();
    oxrt::core::infer::infer_graph(&mut graph, &model.opsets);
    for (name, actual) in got.iter() {
        let Some(ty) = graph.value_types.get(name) else {
            continue;
        };
        let Some(actual) = actual.as_tensor() else {
            continue;
        };
        let dtype_ok = ty.dtype().is_none_or(|d| d == actual.dtype());
        let dims_ok = ty.dims().is_none_or(|dims| {
            dims.len() == actual.rank()
                && dims
                    .iter()
                    .zip(actual.shape())
                    .all(|(d, &n)| !matches!(d, oxrt::Dim::Known(k) if *k != n))
        });
        if !dtype_ok || !dims_ok {
            return Err(format!(
                "inference: output '{name}' inferred as {ty}, but the run gave {} {:?}",
                actual.dtype(),
                actual.shape()
            ));
        }
    }
    Ok(())
}

/// Runs `case` on its own thread and gives up after `limit`: the case is
/// then reported as [`Status::Timeout`] (its thread is left to finish in the
/// background, as a thread cannot be killed).
pub fn run_case_with_timeout(
    case: &NodeTestCase,
    tol: Tolerance,
    providers: &[Provider],
    level: OptimizationLevel,
    limit: std::time::Duration,
) -> CaseResult {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = case.clone();
    let providers = providers.to_vec();
    let spawned = std::thread::Builder::new()
        .name(format!("case-{}", case.name))
        .spawn(move || {
            let _ = tx.send(run_case(&owned, tol, &providers, level));
        });
    let status = match spawned {
        Err(e) => Status::Error(format!("cannot start a thread: {e}")),
        Ok(_) => match rx.recv_timeout(limit) {
            Ok(r) => return r,
            Err(_) => Status::Timeout(limit.as_secs()),
        },
    };
    CaseResult {
        name: case.name.clone(),
        ops: op_types(case),
        status,
        placed_on: Vec::new(),
    }
}

/// Runs every data set of `case` on `providers` (CPU takes the rest) with
/// the graph optimized at `level`; a panic is caught and reported as an
/// error.
pub fn run_case(
    case: &NodeTestCase,
    tol: Tolerance,
    providers: &[Provider],
    level: OptimizationLevel,
) -> CaseResult {
    let mut placed_on = Vec::new();
    let run = || run_data_sets(case, tol, providers, level, &mut placed_on);
    let status = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Status::Error(format!("panic: {msg}"))
    });
    CaseResult {
        name: case.name.clone(),
        ops: op_types(case),
        status,
        placed_on,
    }
}
