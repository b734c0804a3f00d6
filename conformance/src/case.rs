//! Discovering node-test cases on disk and running one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use oxrt::core::tensor_proto::{tensor_from_proto, DEFAULT_MEMORY_LIMIT};
use oxrt::onnx::proto::TensorProto;
use oxrt::{Error, Session, Tensor, ValueType};
use prost::Message;

use crate::compare::{compare, Tolerance};

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

/// A case's name, outcome and the op types its model uses.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub ops: Vec<String>,
    pub status: Status,
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

fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proto = TensorProto::decode(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))?;
    tensor_from_proto(&proto, DEFAULT_MEMORY_LIMIT).map_err(|e| format!("{}: {e}", path.display()))
}

/// Files `prefix_<i>.pb` in `dir`, in index order.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

fn op_types(case: &NodeTestCase) -> Vec<String> {
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
            other => Status::Error(format!("{op}: {other}")),
        },
        other => Status::Error(other.to_string()),
    }
}

fn run_data_sets(case: &NodeTestCase, tol: Tolerance) -> Status {
    let session = match Session::builder()
        .with_intra_threads(1)
        .commit_from_file(case.dir.join("model.onnx"))
    {
        Ok(s) => s,
        Err(e) => return status_of_error(e),
    };
    if let Some(v) = session
        .inputs()
        .iter()
        .chain(session.outputs())
        .find(|v| !matches!(v.ty, ValueType::Tensor { .. }))
    {
        return Status::Unsupported(format!("non-tensor value '{}' of type {}", v.name, v.ty));
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&case.dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    if sets.is_empty() {
        return Status::Error("no test_data_set_* directory".into());
    }
    for set in sets {
        let inputs: Result<Vec<Tensor>, String> = numbered(&set, "input")
            .iter()
            .map(|p| read_tensor(p))
            .collect();
        let expected: Result<Vec<Tensor>, String> = numbered(&set, "output")
            .iter()
            .map(|p| read_tensor(p))
            .collect();
        let (inputs, expected) = match (inputs, expected) {
            (Ok(i), Ok(e)) => (i, e),
            (Err(e), _) | (_, Err(e)) => return Status::Error(e),
        };
        let feed = session.inputs().iter().map(|v| v.name.clone()).zip(inputs);
        let outputs = match session.run(feed) {
            Ok(o) => o,
            Err(e) => return status_of_error(e),
        };
        for ((name, actual), want) in outputs.iter().zip(&expected) {
            if let Err(m) = compare(actual, want, tol) {
                return Status::Fail(format!("output '{name}': {m}"));
            }
        }
    }
    Status::Pass
}

/// Runs `case` on its own thread and gives up after `limit`: the case is
/// then reported as [`Status::Timeout`] (its thread is left to finish in the
/// background, as a thread cannot be killed).
pub fn run_case_with_timeout(
    case: &NodeTestCase,
    tol: Tolerance,
    limit: std::time::Duration,
) -> CaseResult {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = case.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("case-{}", case.name))
        .spawn(move || {
            let _ = tx.send(run_case(&owned, tol));
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
    }
}

/// Runs every data set of `case`; a panic is caught and reported as an error.
pub fn run_case(case: &NodeTestCase, tol: Tolerance) -> CaseResult {
    let status = catch_unwind(AssertUnwindSafe(|| run_data_sets(case, tol))).unwrap_or_else(|p| {
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
    }
}
