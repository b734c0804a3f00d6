//! Whole models at every optimization level: the light models of the ONNX
//! wheel (ResNet-50, DenseNet-121, Inception, SqueezeNet, VGG-19,
//! ShuffleNet... with constant weights) run on one deterministic input at
//! each level; each level's output is compared with the reference output
//! the wheel ships and with the output of level `disabled`.

use std::path::Path;
use std::time::Instant;

use oxrt::{Dim, OptimizationLevel, Session, Tensor, ValueType};

use crate::compare::{compare, Tolerance};
use crate::value::{decode, RefValue};

/// One level's run of one model.
#[derive(Debug, Clone)]
pub struct LevelRun {
    pub level: OptimizationLevel,
    /// Nodes after optimization.
    pub nodes: usize,
    /// Nodes each pass changed, in order.
    pub passes: Vec<(&'static str, usize)>,
    /// Session creation and one run, in milliseconds.
    pub build_ms: f64,
    pub run_ms: f64,
    /// `Err` with what differs, from the reference or from `disabled`.
    pub status: Result<(), String>,
}

/// Every level's run of one model.
#[derive(Debug, Clone)]
pub struct ModelRun {
    pub name: String,
    /// Nodes in the file.
    pub nodes: usize,
    pub levels: Vec<LevelRun>,
}

impl ModelRun {
    /// Whether every level matched.
    pub fn ok(&self) -> bool {
        self.levels.iter().all(|l| l.status.is_ok())
    }
}

/// A deterministic input of `ty` (symbolic dims taken as 1): values in
/// [-1, 1) from a fixed linear congruential sequence.
pub fn deterministic_input(ty: &ValueType, seed: u64) -> Result<Tensor, String> {
    deterministic_input_sized(ty, seed, &std::collections::HashMap::new())
}

/// [`deterministic_input`] with symbolic dims taken from `dims` (1 when
/// absent).
pub fn deterministic_input_sized(
    ty: &ValueType,
    seed: u64,
    dims: &std::collections::HashMap<String, usize>,
) -> Result<Tensor, String> {
    let ValueType::Tensor {
        dtype: oxrt::DataType::F32,
        shape: Some(declared),
    } = ty
    else {
        return Err(format!(
            "input of type {ty}: only float tensors are generated"
        ));
    };
    let shape: Vec<usize> = declared
        .iter()
        .map(|d| match d {
            Dim::Known(n) => *n,
            Dim::Symbolic(s) => dims.get(s).copied().unwrap_or(1),
            Dim::Unknown => 1,
        })
        .collect();
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let values = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(shape, values).map_err(|e| e.to_string())
}

/// Runs `model` at each of `levels` (the first is the baseline the others
/// are compared with) and compares with `reference` (a `TensorProto` of
/// the first output) when given.
pub fn run_model(
    name: &str,
    model: &Path,
    reference: Option<&Path>,
    levels: &[OptimizationLevel],
    threads: usize,
) -> Result<ModelRun, String> {
    let proto = oxrt::onnx::load_model(model).map_err(|e| e.to_string())?;
    let nodes = proto.proto.graph.as_ref().map_or(0, |g| g.node.len());
    let mut runs = Vec::new();
    let mut baseline: Option<Tensor> = None;
    let tol = Tolerance::default();
    for &level in levels {
        let t0 = Instant::now();
        let session = Session::builder()
            .with_intra_threads(threads)
            .with_optimization_level(level)
            .commit_from_file(model)
            .map_err(|e| format!("{name} at level {level}: {e}"))?;
        let build_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut feeds = Vec::new();
        for (i, v) in session.inputs().iter().enumerate() {
            feeds.push((v.name.clone(), deterministic_input(&v.ty, i as u64)?));
        }
        let t1 = Instant::now();
        let out = session
            .run(feeds)
            .map_err(|e| format!("{name} at level {level}: {e}"))?;
        let run_ms = t1.elapsed().as_secs_f64() * 1e3;
        let first = out
            .iter()
            .next()
            .and_then(|(_, v)| v.as_tensor())
            .cloned()
            .ok_or_else(|| format!("{name}: the model has no tensor output"))?;
        let mut status = Ok(());
        if let Some(r) = reference {
            let bytes = std::fs::read(r).map_err(|e| format!("{}: {e}", r.display()))?;
            let ty = &session.outputs()[0].ty;
            match decode(&bytes, ty)? {
                RefValue::Tensor(want) => {
                    if let Err(m) = compare(&first, &want, tol) {
                        status = Err(format!("vs the reference: {m}"));
                    }
                }
                other => return Err(format!("{name}: reference is a {}", other.kind())),
            }
        }
        match &baseline {
            None => baseline = Some(first),
            Some(b) => {
                if let (Ok(()), Err(m)) = (&status, compare(&first, b, tol)) {
                    status = Err(format!("vs level {}: {m}", levels[0]));
                }
            }
        }
        runs.push(LevelRun {
            level,
            nodes: session.model().graph.nodes.len(),
            passes: session.optimization_report().passes.clone(),
            build_ms,
            run_ms,
            status,
        });
    }
    Ok(ModelRun {
        name: name.to_string(),
        nodes,
        levels: runs,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inputs_are_deterministic_and_in_range() {
        let ty = ValueType::Tensor {
            dtype: oxrt::DataType::F32,
            shape: Some(vec![Dim::Symbolic("n".into()), Dim::Known(3)]),
        };
        let a = deterministic_input(&ty, 0).unwrap();
        assert_eq!(a.shape(), [1, 3]);
        assert_eq!(a, deterministic_input(&ty, 0).unwrap());
        assert_ne!(a, deterministic_input(&ty, 1).unwrap());
        assert!(a
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn the_example_classifier_agrees_at_every_level() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/cnn.onnx");
        let levels = [
            OptimizationLevel::Disabled,
            OptimizationLevel::Basic,
            OptimizationLevel::Extended,
            OptimizationLevel::All,
        ];
        let r = run_model("cnn", &model, None, &levels, 1).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.nodes, 26);
        assert_eq!(r.levels[0].nodes, 26);
        // BatchNorms, the residual Add and the Relus fold into the Convs.
        assert_eq!(r.levels[3].nodes, 11);
    }
}
