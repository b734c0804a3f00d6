//! `oxrt`: run, inspect and check ONNX models from the command line.

mod bench;
mod npy;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use oxrt::{ExecutionMode, OptimizationLevel, Provider, Session, Tensor};

#[derive(Parser)]
#[command(name = "oxrt", version, about = "An ONNX inference runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How `run` schedules and optimizes.
#[derive(clap::Args)]
struct ExecArgs {
    /// Intra-op threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Optimization level: disabled, basic, extended or all.
    #[arg(short, long, default_value = "all", value_parser = parse_level)]
    level: OptimizationLevel,
    /// Run independent branches concurrently on inter-op threads.
    #[arg(long)]
    parallel: bool,
    /// Inter-op threads with --parallel (0: one per core).
    #[arg(long, default_value_t = 0)]
    inter_threads: usize,
    /// Mixed precision: eligible nodes in float16.
    #[arg(long)]
    fp16: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on inputs read from .npy files.
    Run {
        /// The ONNX model.
        model: PathBuf,
        /// An input as NAME=FILE.npy (repeat for each input).
        #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
        inputs: Vec<String>,
        /// Write each output to DIR/<name>.npy instead of printing a summary.
        #[arg(short, long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Execution providers in priority order, comma-separated: names
        /// (cpu, cuda or cuda:N, fpga-sim) or paths of provider libraries (default: cpu).
        #[arg(short, long, value_name = "LIST", value_delimiter = ',')]
        provider: Vec<String>,
        /// An option for the fpga-sim and library providers, KEY=VALUE
        /// (repeat for more).
        #[arg(long = "provider-option", value_name = "KEY=VALUE")]
        provider_options: Vec<String>,
        /// Leave out listed providers this machine cannot run (e.g. cuda
        /// without a driver or GPU) instead of failing: their nodes run on
        /// the CPU.
        #[arg(long)]
        provider_fallback: bool,
        /// Print per-node timings (provider, host time, device time, bytes
        /// moved) and write a Chrome trace (chrome://tracing, Perfetto).
        #[arg(long, value_name = "TRACE.json", num_args = 0..=1, default_missing_value = "oxrt-trace.json")]
        profile: Option<PathBuf>,
        /// Classes to show for classifier-shaped outputs.
        #[arg(short = 'k', long, default_value_t = 3)]
        top_k: usize,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Show a model's metadata, interface, operators and weights.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// Also build a session and show its memory plan (value lifetimes,
        /// planned peak bytes, arena offsets).
        #[arg(long)]
        plan: bool,
        /// Optimization level of the session `--plan` builds.
        #[arg(short, long, default_value = "all", value_parser = parse_level)]
        level: OptimizationLevel,
        /// A symbolic dimension's size for --plan, NAME=VALUE (repeatable;
        /// unbound symbolic dims are taken as 1).
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
    },
    /// Validate a model and tell whether oxrt can run it.
    Check {
        /// The ONNX model.
        model: PathBuf,
    },
    /// Optimize a model and save it as ONNX, printing what each pass changed.
    Optimize {
        /// The ONNX model.
        model: PathBuf,
        /// Where to write the optimized model.
        #[arg(short, long, value_name = "OUT.onnx")]
        output: PathBuf,
        /// Optimization level: disabled, basic, extended or all.
        #[arg(short, long, default_value = "all", value_parser = parse_level)]
        level: OptimizationLevel,
        /// Providers the optimized graph is meant for (fusions are kept only
        /// where they run), comma-separated (default: cpu).
        #[arg(short, long, value_name = "LIST", value_delimiter = ',')]
        provider: Vec<String>,
        /// Mixed precision: eligible nodes in float16, sensitive ones in
        /// float32.
        #[arg(long)]
        fp16: bool,
    },
    /// Measure a model's latency: warm-up runs, then timed runs (random
    /// inputs of the declared shapes unless given).
    Bench {
        /// The ONNX model.
        model: PathBuf,
        /// An input as NAME=FILE.npy (the others are random).
        #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
        inputs: Vec<String>,
        /// A symbolic dimension's size, NAME=VALUE (repeatable).
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
        /// Timed runs.
        #[arg(short = 'n', long, default_value_t = 50)]
        iterations: usize,
        /// Untimed runs first.
        #[arg(short, long, default_value_t = 5)]
        warmup: usize,
        /// Execution providers in priority order (default: cpu).
        #[arg(short, long, value_name = "LIST", value_delimiter = ',')]
        provider: Vec<String>,
        /// Print one JSON object (median_ms, p90_ms, min_ms, mean_ms,
        /// iterations, threads...).
        #[arg(long)]
        json: bool,
        /// Also profile every run: the top operators by total time, and a
        /// Chrome trace.
        #[arg(long, value_name = "TRACE.json", num_args = 0..=1, default_missing_value = "oxrt-bench-trace.json")]
        profile: Option<PathBuf>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// List the execution providers built into this oxrt, and libraries.
    Providers {
        /// Also load and describe this provider library (repeatable).
        #[arg(long = "load", value_name = "PATH")]
        load: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            model,
            inputs,
            output_dir,
            provider,
            provider_options,
            provider_fallback,
            profile,
            top_k,
            exec,
        } => run(
            &model,
            &inputs,
            output_dir.as_deref(),
            &ProviderArgs {
                names: provider,
                options: provider_options,
                fallback: provider_fallback,
            },
            profile.as_deref(),
            top_k,
            &exec,
        ),
        Command::Inspect {
            model,
            plan,
            level,
            dims,
        } => report::inspect(&model).and_then(|()| {
            if plan {
                report::memory_plan(&model, level, parse_dims(&dims)?)
            } else {
                Ok(())
            }
        }),
        Command::Check { model } => report::check(&model),
        Command::Optimize {
            model,
            output,
            level,
            provider,
            fp16,
        } => optimize(
            &model,
            &output,
            level,
            fp16,
            &ProviderArgs {
                names: provider,
                options: Vec::new(),
                fallback: false,
            },
        ),
        Command::Bench {
            model,
            inputs,
            dims,
            iterations,
            warmup,
            provider,
            json,
            profile,
            exec,
        } => run_bench(
            &model,
            &inputs,
            &dims,
            (iterations, warmup, json),
            profile.as_deref(),
            &ProviderArgs {
                names: provider,
                options: Vec::new(),
                fallback: false,
            },
            &exec,
        ),
        Command::Providers { load } => report::providers(&load),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME=VALUE` pairs of `--dim`.
fn parse_dims(dims: &[String]) -> Result<std::collections::HashMap<String, usize>> {
    let mut bound = std::collections::HashMap::new();
    for d in dims {
        let Some((name, value)) = d.split_once('=') else {
            bail!("--dim '{d}' must be NAME=VALUE");
        };
        let value: usize = value
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("--dim '{d}': {e}"))?;
        bound.insert(name.trim().to_string(), value);
    }
    Ok(bound)
}

/// `NAME=FILE.npy` pairs of `--input`, read.
fn read_inputs(inputs: &[String]) -> Result<Vec<(String, Tensor)>> {
    let mut fed = Vec::new();
    for spec in inputs {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--input '{spec}' must be NAME=FILE.npy");
        };
        let tensor = npy::read(Path::new(file)).with_context(|| format!("input '{name}'"))?;
        fed.push((name.to_string(), tensor));
    }
    Ok(fed)
}

/// A session as `exec` and `providers` say, recording a profile to
/// `profile` when given.
fn build_session(
    model: &Path,
    providers: &ProviderArgs,
    exec: &ExecArgs,
    profile: Option<&Path>,
) -> Result<Session> {
    if providers.fallback {
        for (name, why) in oxrt::unavailable_providers() {
            if providers.names.iter().any(|n| {
                let n = n.trim().to_ascii_lowercase();
                n == name
                    || n.starts_with(&format!("{name}:"))
                    || n.starts_with(&format!("{name}executionprovider"))
            }) {
                eprintln!("note: {name} left out ({why}); its nodes run on the CPU");
            }
        }
    }
    let mut builder = Session::builder()
        .with_providers(providers.parse()?)
        .with_provider_fallback(providers.fallback)
        .with_intra_threads(exec.threads)
        .with_optimization_level(exec.level)
        .with_fp16(exec.fp16);
    if exec.parallel {
        builder = builder
            .with_execution_mode(ExecutionMode::Parallel)
            .with_inter_threads(exec.inter_threads);
    }
    if let Some(path) = profile {
        builder = builder.with_profiling(path);
    }
    Ok(builder.commit_from_file(model)?)
}

fn run_bench(
    model: &Path,
    inputs: &[String],
    dims: &[String],
    (iterations, warmup, json): (usize, usize, bool),
    profile: Option<&Path>,
    providers: &ProviderArgs,
    exec: &ExecArgs,
) -> Result<()> {
    let session = build_session(model, providers, exec, profile)?;
    let inputs = read_inputs(inputs)?;
    let dims = parse_dims(dims)?;
    bench::bench(
        &session,
        &bench::BenchArgs {
            model,
            inputs: &inputs,
            dims: &dims,
            iterations,
            warmup,
            json,
        },
    )?;
    if let Some((path, p)) = session.end_profiling()? {
        eprintln!("top operators over all runs (warm-up included):");
        eprint!("{}", p.summary(15));
        eprintln!("trace: {}", path.display());
    }
    Ok(())
}

fn parse_level(s: &str) -> Result<OptimizationLevel, String> {
    s.parse()
}

/// `oxrt optimize`: optimize at `level`, save, and load the result back.
fn optimize(
    model: &Path,
    output: &Path,
    level: OptimizationLevel,
    fp16: bool,
    providers: &ProviderArgs,
) -> Result<()> {
    let session = Session::builder()
        .with_providers(providers.parse()?)
        .with_provider_fallback(providers.fallback)
        .with_optimization_level(level)
        .with_fp16(fp16)
        .commit_from_file(model)?;
    let before = oxrt::onnx::load_model(model)?
        .proto
        .graph
        .map_or(0, |g| g.node.len());
    println!(
        "{}: {before} nodes, optimization level {level}{}",
        model.display(),
        if fp16 { ", fp16 mixed precision" } else { "" }
    );
    println!("passes (nodes changed):\n{}", session.optimization_report());
    session.save_optimized_model(output)?;
    // The saved file must be a model oxrt loads as it is.
    let reloaded = Session::builder()
        .with_optimization_level(OptimizationLevel::Disabled)
        .commit_from_file(output)
        .with_context(|| {
            format!(
                "the optimized model {} does not load back",
                output.display()
            )
        })?;
    println!(
        "{}: {} nodes, {}",
        output.display(),
        reloaded.model().graph.nodes.len(),
        report::human_bytes(std::fs::metadata(output).map_or(0, |m| m.len()))
    );
    Ok(())
}

/// `--provider` and `--provider-option` as given.
struct ProviderArgs {
    names: Vec<String>,
    options: Vec<String>,
    /// `--provider-fallback`.
    fallback: bool,
}

impl ProviderArgs {
    fn parse(&self) -> Result<Vec<Provider>> {
        let mut options = Vec::new();
        for o in &self.options {
            let Some((k, v)) = o.split_once('=') else {
                bail!("--provider-option '{o}' must be KEY=VALUE");
            };
            options.push((k.trim().to_string(), v.trim().to_string()));
        }
        let providers = self
            .names
            .iter()
            .map(|p| Ok(p.parse::<Provider>()?.with_options(options.clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(providers)
    }
}

fn run(
    model: &Path,
    inputs: &[String],
    output_dir: Option<&Path>,
    providers: &ProviderArgs,
    profile: Option<&Path>,
    top_k: usize,
    exec: &ExecArgs,
) -> Result<()> {
    let session = build_session(model, providers, exec, profile)?;
    let fed = read_inputs(inputs)?;
    if fed.is_empty() {
        let needed: Vec<String> = session
            .inputs()
            .iter()
            .map(|v| format!("{} {}", v.name, v.ty))
            .collect();
        bail!(
            "no inputs given: pass --input NAME=FILE.npy for each of [{}]",
            needed.join(", ")
        );
    }
    let start = std::time::Instant::now();
    let outputs = session.run(fed)?;
    let elapsed = start.elapsed();
    if let Some((path, p)) = session.end_profiling()? {
        print!("{}", p.table());
        println!("top operators by total time:");
        print!("{}", p.summary(10));
        println!(
            "trace: {} (open in chrome://tracing or ui.perfetto.dev)",
            path.display()
        );
    }
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, value) in outputs.iter() {
                let Some(tensor) = value.as_tensor() else {
                    println!("{name}: {value} (not saved: .npy holds tensors only)");
                    continue;
                };
                let path = dir.join(format!("{}.npy", safe_file_name(name)));
                npy::write(&path, tensor).with_context(|| format!("output '{name}'"))?;
                println!(
                    "{name}: {} {:?} -> {}",
                    tensor.dtype(),
                    tensor.shape(),
                    path.display()
                );
            }
        }
        None => {
            for (name, value) in outputs.iter() {
                match value.as_tensor() {
                    Some(tensor) => report::summarize(name, tensor, top_k),
                    None => println!("{name}: {value}"),
                }
            }
        }
    }
    eprintln!("ran in {:.3} ms", elapsed.as_secs_f64() * 1e3);
    Ok(())
}

/// An output name as a file name: anything but ASCII letters, digits, `-`,
/// `_` and `.` becomes `_`, and a name made only of dots is prefixed with `_`.
fn safe_file_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(safe_file_name("logits"), "logits");
        assert_eq!(safe_file_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_file_name("a/b:c d"), "a_b_c_d");
        assert_eq!(safe_file_name(".."), "_..");
        assert_eq!(safe_file_name(""), "_");
        assert_eq!(safe_file_name("größe"), "gr__e");
    }
}
