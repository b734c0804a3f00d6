//! Human-readable reports: `inspect`, `check`, `providers` and the output
//! summary of `run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use oxrt::core::ir::LowerOptions;
use oxrt::core::Graph;
use oxrt::onnx::{check_model, CheckOptions};
use oxrt::{Model, Session, Tensor};

pub fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Counts op types and initializer bytes, through subgraphs.
fn tally(g: &Graph, ops: &mut BTreeMap<String, usize>, inits: &mut (usize, u64)) {
    for n in &g.nodes {
        let key = if n.domain.is_empty() {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        *ops.entry(key).or_default() += 1;
        for sub in n.subgraphs() {
            tally(sub, ops, inits);
        }
    }
    for t in g.initializers.values() {
        inits.0 += 1;
        inits.1 += (t.len() * t.dtype().host_size()) as u64;
    }
}

/// `oxrt inspect`: metadata, interface, op histogram and weight size.
pub fn inspect(path: &Path) -> Result<()> {
    let loaded = oxrt::onnx::load_model(path)?;
    let model = Model::from_proto(&loaded.proto, &LowerOptions::default())?;
    println!("model:     {}", path.display());
    let producer = format!("{} {}", model.producer_name, model.producer_version);
    println!(
        "producer:  {}",
        if producer.trim().is_empty() {
            "(not set)"
        } else {
            producer.trim()
        }
    );
    println!("ir:        {}", model.ir_version);
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    println!("opsets:    {}", opsets.join(", "));
    if !model.doc_string.is_empty() {
        println!("doc:       {}", model.doc_string);
    }
    for (k, v) in &model.metadata {
        println!("metadata:  {k} = {v}");
    }
    println!("inputs:");
    for v in &model.graph.inputs {
        println!("  {:<20} {}", v.name, v.ty);
    }
    println!("outputs:");
    for v in &model.graph.outputs {
        println!("  {:<20} {}", v.name, v.ty);
    }
    let mut ops = BTreeMap::new();
    let mut inits = (0usize, 0u64);
    tally(&model.graph, &mut ops, &mut inits);
    println!("operators: {} nodes", ops.values().sum::<usize>());
    let mut sorted: Vec<_> = ops.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (op, n) in sorted {
        println!("  {op:<20} {n}");
    }
    println!(
        "initializers: {} tensors, {}",
        inits.0,
        human_bytes(inits.1)
    );
    Ok(())
}

/// `oxrt check`: the ONNX checker, then a full session build on this build's providers.
pub fn check(path: &Path) -> Result<()> {
    let loaded = oxrt::onnx::load_model(path)?;
    check_model(&loaded.proto, &CheckOptions::default())
        .map_err(|e| anyhow::anyhow!("{}: invalid model: {e}", path.display()))?;
    println!("{}: valid ONNX model", path.display());
    let session = Session::builder().commit_from_file(path)?;
    let mut per_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, p) in session.node_placement() {
        *per_provider.entry(p).or_default() += 1;
    }
    let placed: Vec<String> = per_provider
        .iter()
        .map(|(p, n)| format!("{n} on {p}"))
        .collect();
    let report = session.optimization_report();
    println!(
        "{}: runnable ({} nodes, {} after optimization ({}): {})",
        path.display(),
        loaded.proto.graph.as_ref().map_or(0, |g| g.node.len()),
        session.node_placement().len(),
        session.optimization_level(),
        placed.join(", ")
    );
    if report.total() > 0 {
        println!("optimization passes (nodes changed):\n{report}");
    }
    Ok(())
}

/// `oxrt inspect --plan`: the memory plan of a session built at `level`.
pub fn memory_plan(
    path: &Path,
    level: oxrt::OptimizationLevel,
    mut bound: std::collections::HashMap<String, usize>,
) -> Result<()> {
    let session = Session::builder()
        .with_optimization_level(level)
        .commit_from_file(path)?;
    for v in session.inputs() {
        if let oxrt::ValueType::Tensor { shape: Some(s), .. } = &v.ty {
            for d in s {
                if let oxrt::Dim::Symbolic(name) = d {
                    if !bound.contains_key(name) {
                        println!("symbolic dim '{name}' taken as 1 (set it with --dim {name}=N)");
                        bound.insert(name.clone(), 1);
                    }
                }
            }
        }
    }
    println!(
        "execution plan ({} nodes after optimization at level {level}):",
        session.node_placement().len()
    );
    print!("{}", session.memory_plan(&bound).report(true));
    Ok(())
}

/// `oxrt providers [--load PATH]...`.
pub fn providers(load: &[PathBuf]) -> Result<()> {
    let mut list = oxrt::available_providers();
    for path in load {
        list.push(oxrt::describe_library(path, &[])?);
    }
    for p in list {
        let ops = p
            .operators
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        println!(
            "{:<10} {:<8} {:>4} ops  {:<18} {}",
            p.name, p.version, ops, p.origin, p.device
        );
    }
    for (name, why) in oxrt::unavailable_providers() {
        println!("{name:<10} unavailable: {why}");
    }
    Ok(())
}

/// Prints one output: type, shape, statistics, leading values, and top-k
/// classes when it looks like a classifier's output ([batch, classes] floats).
pub fn summarize(name: &str, t: &Tensor, top_k: usize) {
    println!("{name}: {} {:?}", t.dtype(), t.shape());
    let Some(values) = t.to_f64_vec() else {
        println!("  {t:?}");
        return;
    };
    if values.is_empty() {
        return;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    println!("  min {min:.6}  max {max:.6}  mean {mean:.6}");
    let classes = match t.shape() {
        [c] => Some(*c),
        [_, c] => Some(*c),
        _ => None,
    };
    match classes {
        Some(c) if c > 1 && t.dtype().is_float() && top_k > 0 => {
            for (row, chunk) in values.chunks(c).enumerate().take(16) {
                let probs = probabilities(chunk);
                let mut order: Vec<usize> = (0..c).collect();
                order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                let top: Vec<String> = order
                    .iter()
                    .take(top_k)
                    .map(|&i| format!("class {i} ({:.4})", probs[i]))
                    .collect();
                println!("  [{row}] top-{}: {}", top_k.min(c), top.join(", "));
            }
            if values.len() / c > 16 {
                println!("  ... {} more rows", values.len() / c - 16);
            }
        }
        _ => {
            let head: Vec<String> = values.iter().take(10).map(|v| format!("{v:.6}")).collect();
            let more = if values.len() > 10 { ", ..." } else { "" };
            println!("  [{}{more}]", head.join(", "));
        }
    }
}

/// The row itself if it already is a probability distribution, else its softmax.
fn probabilities(row: &[f64]) -> Vec<f64> {
    let sum: f64 = row.iter().sum();
    if row.iter().all(|&v| (0.0..=1.0).contains(&v)) && (sum - 1.0).abs() < 1e-3 {
        return row.to_vec();
    }
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}
