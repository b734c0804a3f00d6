//! The optimizer, the executors and the profiler on real architectures: a
//! BERT-style encoder and a ResNet-style CNN with random weights
//! (`examples/models/generate.py`) and the trained digit classifier, each
//! against onnxruntime's stored outputs at every optimization level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{
    bytes, digits_correct, f32_tensor, ints_attr, mnist_dir, model, node, read_npy, vi, D,
};
use oxrt::{ExecutionMode, OptimizationLevel, Session, Tensor};

const LEVELS: [OptimizationLevel; 4] = [
    OptimizationLevel::Disabled,
    OptimizationLevel::Basic,
    OptimizationLevel::Extended,
    OptimizationLevel::All,
];

fn models_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

/// A model with its inputs and onnxruntime's outputs.
struct Case {
    model: PathBuf,
    inputs: Vec<(String, Tensor)>,
    outputs: Vec<(String, Tensor)>,
}

fn case(name: &str, inputs: &[&str], outputs: &[&str]) -> Case {
    let dir = models_dir();
    let load = |kind: &str, names: &[&str]| {
        names
            .iter()
            .map(|n| {
                let t = read_npy(&dir.join(format!("{name}.{kind}.{n}.npy")));
                (n.to_string(), t)
            })
            .collect()
    };
    Case {
        model: dir.join(format!("{name}.onnx")),
        inputs: load("in", inputs),
        outputs: load("out", outputs),
    }
}

fn bert() -> Case {
    case("bert_encoder", &["hidden", "mask"], &["output"])
}

fn cnn() -> Case {
    case("cnn", &["image"], &["logits"])
}

fn mnist() -> Case {
    Case {
        model: mnist_dir().join("model.onnx"),
        inputs: vec![(
            "input".into(),
            read_npy(&mnist_dir().join("test_images.npy")),
        )],
        outputs: vec![(
            "logits".into(),
            read_npy(&mnist_dir().join("reference_logits.npy")),
        )],
    }
}

fn session(model: &std::path::Path, level: OptimizationLevel) -> Session {
    Session::builder()
        .with_intra_threads(2)
        .with_optimization_level(level)
        .commit_from_file(model)
        .unwrap()
}

fn run(s: &Session, c: &Case) -> Vec<Tensor> {
    let out = s.run(c.inputs.clone()).unwrap();
    c.outputs
        .iter()
        .map(|(n, _)| out.get(n).unwrap().clone())
        .collect()
}

/// Largest |a - b| over `atol + rtol * |b|` (≤ 1 passes).
fn worst(a: &Tensor, b: &Tensor, atol: f32, rtol: f32) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(b.as_slice::<f32>().unwrap())
        .map(|(x, y)| (x - y).abs() / (atol + rtol * y.abs()))
        .fold(0.0, f32::max)
}

#[test]
fn every_level_matches_onnxruntime_and_disabled() {
    for c in [bert(), cnn(), mnist()] {
        let baseline = run(&session(&c.model, OptimizationLevel::Disabled), &c);
        for level in LEVELS {
            let got = run(&session(&c.model, level), &c);
            for ((name, want), (g, base)) in c.outputs.iter().zip(got.iter().zip(&baseline)) {
                let r = worst(g, want, 1e-5, 1e-4);
                assert!(r <= 1.0, "{:?} {level} {name}: vs onnxruntime {r}", c.model);
                let r = worst(g, base, 1e-5, 1e-5);
                assert!(r <= 1.0, "{:?} {level} {name}: vs disabled {r}", c.model);
            }
        }
    }
}

/// The op types of the session's optimized graph, in order.
fn op_types(s: &Session) -> Vec<&str> {
    s.model()
        .graph
        .nodes
        .iter()
        .map(|n| n.op_type.as_str())
        .collect()
}

fn pass_count(s: &Session, pass: &str) -> usize {
    s.optimization_report()
        .passes
        .iter()
        .find(|(p, _)| *p == pass)
        .map_or(0, |(_, n)| *n)
}

#[test]
fn the_transformer_and_cnn_patterns_are_fused() {
    let s = session(&bert().model, OptimizationLevel::Extended);
    // Two layers: two attention blocks, two GELUs, four LayerNorms (each
    // after a residual Add), the Q/K/V/output/FFN biases, two Dropouts.
    assert_eq!(pass_count(&s, "attention fusion"), 2);
    assert_eq!(pass_count(&s, "GELU fusion"), 2);
    assert_eq!(pass_count(&s, "LayerNormalization fusion"), 4);
    assert_eq!(pass_count(&s, "SkipLayerNormalization fusion"), 4);
    assert_eq!(pass_count(&s, "MatMul+Add fusion"), 12);
    assert_eq!(pass_count(&s, "no-op elimination"), 2);
    let ops = op_types(&s);
    for gone in ["Softmax", "Erf", "ReduceMean", "Dropout"] {
        assert!(!ops.contains(&gone), "{gone} left in {ops:?}");
    }
    let basic = session(&bert().model, OptimizationLevel::Basic);
    assert_eq!(pass_count(&basic, "attention fusion"), 0);
    assert!(basic.model().graph.nodes.len() > s.model().graph.nodes.len());

    let s = session(&cnn().model, OptimizationLevel::Extended);
    assert_eq!(pass_count(&s, "Conv+BatchNormalization fusion"), 7);
    // The residual Add joins the Conv before it, and all seven Relus
    // then follow a Conv.
    assert_eq!(pass_count(&s, "Conv+residual Add fusion"), 1);
    assert_eq!(pass_count(&s, "activation fusion"), 7);
    assert_eq!(s.model().graph.nodes.len(), 11);
    assert!(!op_types(&s).contains(&"Add"));
}

#[test]
fn saved_optimized_models_load_back_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    for c in [bert(), cnn()] {
        let s = session(&c.model, OptimizationLevel::All);
        let path = dir.path().join("optimized.onnx");
        s.save_optimized_model(&path).unwrap();
        let reloaded = session(&path, OptimizationLevel::Disabled);
        assert_eq!(
            reloaded.model().graph.nodes.len(),
            s.model().graph.nodes.len()
        );
        assert!(reloaded.model().opsets.contains_key("oxrt"));
        for (a, b) in run(&s, &c).iter().zip(run(&reloaded, &c)) {
            assert_eq!(a, &b, "{:?}", c.model);
        }
    }
}

#[test]
fn parallel_and_sequential_execution_agree_exactly() {
    for c in [bert(), cnn(), mnist()] {
        for level in [OptimizationLevel::Disabled, OptimizationLevel::All] {
            let seq = run(&session(&c.model, level), &c);
            let par = Session::builder()
                .with_intra_threads(2)
                .with_optimization_level(level)
                .with_execution_mode(ExecutionMode::Parallel)
                .with_inter_threads(3)
                .commit_from_file(&c.model)
                .unwrap();
            assert_eq!(par.execution_mode(), ExecutionMode::Parallel);
            for _ in 0..3 {
                assert_eq!(run(&par, &c), seq, "{:?} {level}", c.model);
            }
        }
    }
}

#[test]
fn concurrent_runs_from_many_threads_equal_serial_runs() {
    let c = cnn();
    let b = bert();
    for mode in [ExecutionMode::Sequential, ExecutionMode::Parallel] {
        let make = |m: &std::path::Path| {
            Session::builder()
                .with_intra_threads(2)
                .with_execution_mode(mode)
                .commit_from_file(m)
                .unwrap()
        };
        let (sc, sb) = (make(&c.model), make(&b.model));
        let (want_c, want_b) = (run(&sc, &c), run(&sb, &b));
        std::thread::scope(|scope| {
            for i in 0..8 {
                let (sc, sb, c, b, want_c, want_b) = (&sc, &sb, &c, &b, &want_c, &want_b);
                scope.spawn(move || {
                    for _ in 0..4 {
                        if i % 2 == 0 {
                            assert_eq!(&run(sc, c), want_c);
                        } else {
                            assert_eq!(&run(sb, b), want_b);
                        }
                    }
                });
            }
        });
    }
}

#[test]
fn memory_reuse_changes_nothing_but_memory() {
    for c in [bert(), cnn()] {
        let keep_all = Session::builder()
            .with_memory_reuse(false)
            .commit_from_file(&c.model)
            .unwrap();
        let planned = session(&c.model, OptimizationLevel::All);
        assert_eq!(run(&keep_all, &c), run(&planned, &c));
        let dims = [("batch".to_string(), 2), ("seq".to_string(), 16)].into();
        let plan = planned.memory_plan(&dims);
        assert_eq!(plan.unsized_values, 0, "{}", plan.report(true));
        assert!(
            plan.peak_bytes < plan.unplanned_bytes,
            "{}",
            plan.report(false)
        );
        assert!(plan.arena_bytes >= plan.peak_bytes);
        assert!(plan.arena_bytes < plan.unplanned_bytes);
        // No two values that live at once overlap in the arena.
        for (i, a) in plan.values.iter().enumerate() {
            for b in &plan.values[i + 1..] {
                let live_together = a.first <= b.last && b.first <= a.last;
                let overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
                assert!(!(live_together && overlap), "{a:?} and {b:?}");
            }
        }
    }
}

#[test]
fn cnn_memory_plan_numbers() {
    let s = session(&cnn().model, OptimizationLevel::All);
    let plan = s.memory_plan(&[("batch".to_string(), 1)].into());
    // Input 3x16x16 f32; the largest activations are 16x16x16 f32 (16 KiB).
    let input = plan.values.iter().find(|v| v.name == "image").unwrap();
    assert_eq!(input.bytes, 3 * 16 * 16 * 4);
    assert_eq!(input.first, 0);
    let logits = plan.values.iter().find(|v| v.name == "logits").unwrap();
    assert_eq!(logits.bytes, 40);
    assert_eq!(logits.last, s.model().graph.nodes.len() - 1);
    // Three 16 KiB activations live at once at most (the residual input,
    // the block's intermediate and its output) plus the input.
    assert!(plan.peak_bytes <= 3 * 16384 + 3072, "{}", plan.report(true));
}

#[test]
fn profiling_writes_a_chrome_trace_of_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    let c = cnn();
    let s = Session::builder()
        .with_profiling(&path)
        .commit_from_file(&c.model)
        .unwrap();
    run(&s, &c);
    run(&s, &c);
    let (written, profile) = s.end_profiling().unwrap().unwrap();
    assert_eq!(written, path);
    let nodes = s.model().graph.nodes.len();
    assert_eq!(profile.events.len(), 2 * nodes);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let spans: Vec<&serde_json::Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(spans.len(), 2 * nodes);
    let conv = spans
        .iter()
        .find(|e| e["args"]["op"] == "FusedConv")
        .expect("a fused convolution");
    assert_eq!(conv["args"]["provider"], "cpu");
    assert_eq!(
        conv["args"]["input_shapes"][0],
        serde_json::json!([2, 3, 16, 16])
    );
    // The second run starts after the first ended.
    let first_end = spans[nodes - 1]["ts"].as_f64().unwrap();
    assert!(spans[nodes]["ts"].as_f64().unwrap() >= first_end);
    let summary = profile.summary(3);
    assert!(summary.contains("FusedConv (cpu)"), "{summary}");
    assert_eq!(summary.lines().count(), 4);
}

#[test]
fn fp16_mode_keeps_the_example_accuracy() {
    let c = mnist();
    let labels = read_npy(&mnist_dir().join("test_labels.npy"));
    let accuracy = |logits: &Tensor| digits_correct(logits, &labels);
    let full = run(&session(&c.model, OptimizationLevel::All), &c);
    let half_session = Session::builder()
        .with_fp16(true)
        .commit_from_file(&c.model)
        .unwrap();
    assert!(pass_count(&half_session, "fp16 conversion") >= 4);
    let half = run(&half_session, &c);
    // 351/360 in float32 (as onnxruntime); fp16 changes at most one digit.
    assert_eq!(accuracy(&full[0]), 351);
    assert!(
        accuracy(&half[0]).abs_diff(351) <= 1,
        "{}",
        accuracy(&half[0])
    );
    assert!(worst(&half[0], &full[0], 0.05, 0.01) <= 1.0);
    assert_ne!(half, full, "fp16 changed nothing: was it applied?");
}

#[test]
fn fp16_mode_keeps_sensitive_ops_in_float32() {
    let c = bert();
    let s = Session::builder()
        .with_fp16(true)
        .commit_from_file(&c.model)
        .unwrap();
    let g = &s.model().graph;
    let dtype = |name: &str| g.value_types.get(name).and_then(|t| t.dtype());
    let mut half_nodes = 0;
    for n in &g.nodes {
        let out = dtype(&n.outputs[0]);
        match n.op_type.as_str() {
            "Attention" | "SkipLayerNormalization" | "LayerNormalization" => {
                assert_eq!(out, Some(oxrt::DataType::F32), "{}", n.name)
            }
            "FusedMatMul" => {
                assert_eq!(out, Some(oxrt::DataType::F16), "{}", n.name);
                half_nodes += 1;
            }
            _ => {}
        }
    }
    assert_eq!(half_nodes, 12);
    assert_eq!(s.outputs()[0].ty.dtype(), Some(oxrt::DataType::F32));
    let got = run(&s, &c);
    let r = worst(&got[0], &c.outputs[0].1, 0.02, 0.02);
    assert!(r <= 1.0, "fp16 vs onnxruntime f32: {r}");
}

/// Pseudo-random values in [-0.5, 0.5).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn winograd_convolutions_match_the_direct_ones() {
    // Conv -> Conv + Relu at 24x24 (36 output tiles): both become
    // WinogradConv at level all, the second with its activation fused.
    let (c, hw) = (32i64, 24i64);
    let w = |name: &str, seed| f32_tensor(name, &[c, c, 3, 3], &values((c * c * 9) as usize, seed));
    let conv = |x: &str, wt: &str, y: &str| {
        let mut n = node("Conv", y, &[x, wt, "b"], &[y]);
        n.attribute.push(ints_attr("pads", &[1, 1, 1, 1]));
        n
    };
    let m = model(
        vec![
            conv("x", "w1", "a"),
            conv("a", "w2", "p"),
            node("Relu", "relu", &["p"], &["y"]),
        ],
        vec![vi("x", 1, &[D::N(2), D::N(c), D::N(hw), D::N(hw)])],
        vec![vi("y", 1, &[D::N(2), D::N(c), D::N(hw), D::N(hw)])],
        vec![
            w("w1", 1),
            w("w2", 2),
            f32_tensor("b", &[c], &values(c as usize, 3)),
        ],
        13,
    );
    let bytes = bytes(&m);
    let x = Tensor::from_vec(vec![2, 32, 24, 24], values(2 * 32 * 24 * 24, 4)).unwrap();
    let run_at = |level| {
        let s = Session::builder()
            .with_intra_threads(2)
            .with_optimization_level(level)
            .commit_from_memory(&bytes)
            .unwrap();
        let y = s.run(vec![("x".to_string(), x.clone())]).unwrap();
        (s, y.get("y").unwrap().clone())
    };
    let (all, got) = run_at(OptimizationLevel::All);
    let (_, want) = run_at(OptimizationLevel::Disabled);
    assert_eq!(pass_count(&all, "Winograd 3x3 convolution"), 2);
    assert_eq!(op_types(&all), ["WinogradConv", "WinogradConv"]);
    // The original weights are gone; the transformed ones are 4x larger.
    let inits = &all.model().graph.initializers;
    assert!(!inits.contains_key("w1") && !inits.contains_key("w2"));
    assert_eq!(inits.values().map(|t| t.len()).max(), Some(36 * 32 * 32));
    // The transforms round differently from a direct sum: about 1e-5 of
    // the outputs' magnitude (~3 here).
    let r = worst(&got, &want, 1e-4, 1e-4);
    assert!(r <= 1.0, "WinogradConv vs direct: {r}");
    assert!(got.as_slice::<f32>().unwrap().iter().all(|&v| v >= 0.0));
}
