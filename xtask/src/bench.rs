//! `cargo xtask bench`: whole-model latency of oxrt, and with `--vs-ort`
//! of onnxruntime on the same models, inputs and thread counts, in
//! alternating blocks; a table for people and dashboard JSON
//! (`[{name, unit, value}]`, smaller is better) for machines.

use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use oxrt::{OptimizationLevel, Session, Tensor};

use crate::pyenv::{ONNX_VERSION, ORT_VERSION};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Models (comma-separated): resnet50, densenet121, inception_v2,
    /// squeezenet, vgg19, shufflenet (the wheel's light models), mobilenet,
    /// bert128, bert512, gpt128, gpt512, sgemm1024 (one 1024³ MatMul;
    /// generated), mnist. Default: all.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Intra-op thread counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize])]
    threads: Vec<usize>,
    /// Timed runs per model, split over two blocks per runtime.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Untimed runs before each block.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also time onnxruntime (pinned, in a virtual environment under target/).
    #[arg(long)]
    vs_ort: bool,
    /// Write the dashboard JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The provider to measure: cpu, or cuda (against onnxruntime's CUDA
    /// execution provider, which the benchmark environment must provide).
    #[arg(long, default_value = "cpu")]
    provider: String,
}

const LIGHT: &[&str] = &[
    "resnet50",
    "densenet121",
    "inception_v2",
    "squeezenet",
    "vgg19",
    "shufflenet",
];
const GENERATED: &[&str] = &[
    "mobilenet",
    "bert128",
    "bert512",
    "gpt128",
    "gpt512",
    "sgemm1024",
];

fn bench_dir() -> PathBuf {
    crate::workspace_root().join("target/bench")
}

/// The Python of the benchmark environment, created on first use.
fn venv_python() -> Result<PathBuf> {
    crate::pyenv::python_env(
        &bench_dir().join("venv"),
        &[
            &format!("onnxruntime=={ORT_VERSION}"),
            &format!("onnx=={ONNX_VERSION}"),
            "numpy",
        ],
    )
}

/// The model file for `name`, generated or extracted when needed.
fn model_path(name: &str) -> Result<PathBuf> {
    if name == "mnist" {
        return Ok(crate::workspace_root().join("examples/mnist/model.onnx"));
    }
    if LIGHT.contains(&name) {
        crate::node_tests(None)?;
        let dir = crate::light_models_dir()?.context("no cached ONNX wheel")?;
        return Ok(dir.join(format!("light_{name}.onnx")));
    }
    let (kind, seq, extra): (&str, &str, &[&str]) = match name {
        "mobilenet" => ("mobilenet", "0", &["--image", "224"]),
        "bert128" => ("bert", "128", &[]),
        "bert512" => ("bert", "512", &[]),
        "gpt128" => ("gpt", "128", &[]),
        "gpt512" => ("gpt", "512", &[]),
        "sgemm1024" => ("sgemm", "0", &["--hidden", "1024"]),
        other => bail!(
            "unknown model '{other}': use {}, {} or mnist",
            LIGHT.join(", "),
            GENERATED.join(", ")
        ),
    };
    let dir = bench_dir().join("models");
    let path = dir.join(format!("{name}.onnx"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "generating {} with examples/models/generate.py",
        path.display()
    );
    let python = venv_python()?;
    let mut cmd = Command::new(python);
    cmd.arg(crate::workspace_root().join("examples/models/generate.py"))
        .arg("--out")
        .arg(&dir)
        .args(["--only", kind, "--name", name, "--batch", "1"])
        .args(extra);
    if kind == "bert" || kind == "gpt" {
        // BERT-base width, four layers.
        cmd.args([
            "--hidden", "768", "--heads", "12", "--ffn", "3072", "--layers", "4", "--seq", seq,
        ]);
    }
    if !cmd.status().context("cannot run generate.py")?.success() {
        bail!("generate.py failed for {name}");
    }
    Ok(path)
}

/// Sizes of the symbolic dims of model `name`'s inputs (batch 1).
fn dims_of(name: &str) -> std::collections::HashMap<String, usize> {
    let mut dims = std::collections::HashMap::from([("batch".to_string(), 1)]);
    if let Some(seq) = name.strip_prefix("bert") {
        dims.insert("seq".into(), seq.parse().unwrap_or(128));
    }
    dims
}

/// Deterministic inputs for `session`, also written as `input_<k>.npy`.
fn inputs(session: &Session, name: &str, dir: &Path) -> Result<Vec<(String, Tensor)>> {
    std::fs::create_dir_all(dir)?;
    let dims = dims_of(name);
    let mut feeds = Vec::new();
    for (k, v) in session.inputs().iter().enumerate() {
        let t = oxrt_conformance::models::deterministic_input_sized(&v.ty, k as u64, &dims)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("input '{}'", v.name))?;
        write_npy(&dir.join(format!("input_{k}.npy")), &t)?;
        feeds.push((v.name.clone(), t));
    }
    Ok(feeds)
}

fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(out)
        .begin_nd()?;
    w.extend(t.as_slice::<f32>()?.iter().copied())?;
    w.finish()?;
    Ok(())
}

fn oxrt_block(
    s: &Session,
    feeds: &[(String, Tensor)],
    warmup: usize,
    n: usize,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        s.run(feeds.to_vec())?;
    }
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let f = feeds.to_vec();
        let t0 = Instant::now();
        let out = s.run(f)?;
        runs.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    Ok(runs)
}

fn ort_block(
    python: &Path,
    model: &Path,
    dir: &Path,
    threads: usize,
    warmup: usize,
    n: usize,
    provider: &str,
) -> Result<(String, Vec<f64>)> {
    let script = crate::workspace_root().join("benches/ort_bench.py");
    let out = Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(model)
        .arg("--inputs")
        .arg(dir)
        .args(["--threads", &threads.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(["--iterations", &n.to_string()])
        .args(["--provider", provider])
        .output()
        .context("cannot run benches/ort_bench.py")?;
    if !out.status.success() {
        bail!(
            "onnxruntime failed on {}: {}",
            model.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ort_bench.py output")?;
    let runs = v["runs_ms"]
        .as_array()
        .context("no runs_ms")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    Ok((v["version"].as_str().unwrap_or("?").to_string(), runs))
}

/// Median, p90 and min of `runs`.
fn stats(runs: &[f64]) -> (f64, f64, f64) {
    let mut v = runs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p90 = v[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1];
    (median, p90, v[0])
}

pub fn bench(args: BenchArgs) -> Result<bool> {
    let models: Vec<String> = if args.models.is_empty() {
        LIGHT
            .iter()
            .chain(GENERATED)
            .map(|s| s.to_string())
            .chain(["mnist".to_string()])
            .collect()
    } else {
        args.models.clone()
    };
    let python = if args.vs_ort {
        Some(venv_python()?)
    } else {
        None
    };
    let half = (args.iterations / 2).max(1);
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    let mut ort_version = String::new();
    let (providers, ort_provider) = match args.provider.as_str() {
        "cpu" => (Vec::new(), "CPUExecutionProvider"),
        "cuda" => {
            oxrt_provider_cuda::probe(0).map_err(|e| anyhow::anyhow!("{e}"))?;
            (vec![oxrt::Provider::Cuda(0)], "CUDAExecutionProvider")
        }
        other => bail!("unknown provider '{other}': bench measures cpu or cuda"),
    };
    let total = models.len() * args.threads.len();
    let mut done = 0;
    for name in &models {
        let path = model_path(name)?;
        for &threads in &args.threads {
            done += 1;
            eprintln!("[{done}/{total}] {name}, {threads} thread(s)");
            let session = Session::builder()
                .with_providers(providers.clone())
                .with_intra_threads(threads)
                .with_optimization_level(OptimizationLevel::All)
                .commit_from_file(&path)
                .with_context(|| format!("{}", path.display()))?;
            let dir = bench_dir().join("inputs").join(name);
            let feeds = inputs(&session, name, &dir)?;
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            // Alternating blocks: oxrt, ORT, oxrt, ORT.
            for _ in 0..2 {
                ours.extend(oxrt_block(&session, &feeds, args.warmup, half)?);
                if let Some(py) = &python {
                    let (v, runs) =
                        ort_block(py, &path, &dir, threads, args.warmup, half, ort_provider)?;
                    ort_version = v;
                    theirs.extend(runs);
                }
            }
            let (om, op90, omin) = stats(&ours);
            let key = format!("{name}/threads={threads}");
            entries.push(serde_json::json!({"name": format!("{key}/oxrt median"), "unit": "ms", "value": om}));
            entries.push(
                serde_json::json!({"name": format!("{key}/oxrt p90"), "unit": "ms", "value": op90}),
            );
            entries.push(
                serde_json::json!({"name": format!("{key}/oxrt min"), "unit": "ms", "value": omin}),
            );
            let ort = (!theirs.is_empty()).then(|| stats(&theirs));
            if let Some((rm, _, _)) = ort {
                entries.push(serde_json::json!({"name": format!("{key}/onnxruntime median"), "unit": "ms", "value": rm}));
                entries.push(serde_json::json!({"name": format!("{key}/oxrt over onnxruntime"), "unit": "ratio", "value": om / rm}));
            }
            rows.push((name.clone(), threads, om, op90, omin, ort));
        }
    }
    println!(
        "\n{:<14} {:>7} {:>11} {:>11} {:>11} {:>12} {:>8}",
        "model", "threads", "oxrt med", "oxrt p90", "oxrt min", "ORT med", "ratio"
    );
    for (name, threads, om, op90, omin, ort) in &rows {
        let (ort_med, ratio) = match ort {
            Some((rm, _, _)) => (format!("{rm:.2}"), format!("{:.2}x", om / rm)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<14} {threads:>7} {om:>11.2} {op90:>11.2} {omin:>11.2} {ort_med:>12} {ratio:>8}"
        );
    }
    println!(
        "(ms per run; {} timed runs each after warm-up; ratio = oxrt / onnxruntime{}, optimization level all, sequential)",
        2 * half,
        if ort_version.is_empty() { String::new() } else { format!(" {ort_version}") }
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&entries)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("dashboard JSON: {}", path.display());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::stats;

    #[test]
    fn median_p90_min() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 3.0, 1.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(stats(&ten), (5.5, 9.0, 1.0));
    }
}
