//! Project automation, run as `cargo xtask <task>`.
//!
//! `conformance` runs the ONNX backend node tests of the pinned ONNX release
//! against a provider, prints a per-operator table and totals, writes
//! `report.md`/`report.json`, and gates on `conformance/expectations/<provider>.yaml`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod bench;
mod pyenv;
mod pytest;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oxrt::{OptimizationLevel, Provider};
use oxrt_conformance::data::{extract_node_tests, EXPECTED_CASES, ONNX_RELEASE};
use oxrt_conformance::{
    discover, expectations, report, run_case_with_timeout, CaseResult, Tolerance,
};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the ONNX backend node tests against a provider and gate on its
    /// expectations; on cpu, also the wheel's light models at every
    /// optimization level.
    Conformance(ConformanceArgs),
    /// Time whole models in oxrt (and onnxruntime with --vs-ort); table and
    /// dashboard JSON.
    Bench(bench::BenchArgs),
    /// Install the Python package with pip into target/pytest/venv and run
    /// its pytest suite (incl. onnx's backend runner over the node tests).
    Pytest(pytest::PytestArgs),
    /// Measure a run's peak heap memory with and without the memory plan
    /// (value release after the last reader, in-place kernels).
    Memory(MemoryArgs),
}

#[derive(clap::Args)]
struct MemoryArgs {
    /// Models to measure (default: the light ResNet-50 of the ONNX wheel).
    models: Vec<PathBuf>,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(clap::Args)]
struct ConformanceArgs {
    /// Execution provider to test.
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// Only run cases whose name matches this regular expression.
    #[arg(long)]
    filter: Option<String>,
    /// Cases run at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Per-case time limit in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Graph optimization level the sessions use (disabled, basic,
    /// extended, all). Default: every level, gated on the same
    /// expectations; the table and reports are those of `all`.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    optimization_level: Option<OptimizationLevel>,
    /// Skip the light models (whole CNNs at every optimization level).
    #[arg(long)]
    no_models: bool,
    /// Rewrite conformance/expectations/<provider>.yaml from this run.
    #[arg(long)]
    update_expectations: bool,
    /// Where to write report.md and report.json (default: target/conformance/<provider>).
    #[arg(long)]
    report: Option<PathBuf>,
    /// A directory of node-test cases to use instead of the cached ONNX wheel's.
    #[arg(long, env = "OXRT_ONNX_TEST_DATA")]
    data: Option<PathBuf>,
}

fn parse_level(s: &str) -> Result<OptimizationLevel, String> {
    s.parse()
}

/// The repository root: `OXRT_WORKSPACE` when set, else where xtask was
/// built, else the current directory (a binary carried to another machine
/// runs from a copy of the repository).
fn workspace_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("OXRT_WORKSPACE") {
        return PathBuf::from(dir);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if built.join("conformance/expectations").is_dir() {
        built
    } else {
        PathBuf::from(".")
    }
}

/// The cache of the pinned ONNX wheel and what is extracted from it.
fn wheel_cache() -> PathBuf {
    workspace_root()
        .join("target/onnx-node-tests")
        .join(ONNX_RELEASE)
}

/// The `.whl` file in `dir`, if there is one.
fn cached_wheel(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
}

/// The light models extracted from the cached wheel (`None` when no wheel
/// was downloaded, e.g. with `--data`).
fn light_models_dir() -> Result<Option<PathBuf>> {
    let cache = wheel_cache();
    let dir = cache.join("light");
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    let Some(wheel) = cached_wheel(&cache.join("wheel")) else {
        return Ok(None);
    };
    let n =
        oxrt_conformance::data::extract_light_models(&wheel, &dir).map_err(anyhow::Error::msg)?;
    eprintln!("extracted {n} light models from {}", wheel.display());
    Ok(Some(dir))
}

/// Runs every light model at every level; false when one differs.
fn light_models(threads: usize) -> Result<bool> {
    let Some(dir) = light_models_dir()? else {
        println!("light models: skipped (no cached ONNX wheel; the node tests came from --data)");
        return Ok(true);
    };
    let models = oxrt_conformance::data::light_models(&dir).map_err(anyhow::Error::msg)?;
    let levels = [
        OptimizationLevel::Disabled,
        OptimizationLevel::Basic,
        OptimizationLevel::Extended,
        OptimizationLevel::All,
    ];
    let bar = ProgressBar::new(models.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} light models, {elapsed} ({msg})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    for (name, model, reference) in &models {
        bar.set_message(name.clone());
        let r = oxrt_conformance::models::run_model(name, model, Some(reference), &levels, threads)
            .map_err(anyhow::Error::msg)?;
        bar.inc(1);
        runs.push(r);
    }
    bar.finish_and_clear();
    println!(
        "light models (ONNX {ONNX_RELEASE} wheel) at every level, against the reference and level disabled:"
    );
    println!(
        "{:<16} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  result",
        "model", "nodes", "disabled", "basic", "extended", "all", "ms (dis.)", "ms (all)"
    );
    let mut ok = true;
    for r in &runs {
        let nodes: Vec<String> = r.levels.iter().map(|l| l.nodes.to_string()).collect();
        let failures: Vec<String> = r
            .levels
            .iter()
            .filter_map(|l| l.status.as_ref().err().map(|e| format!("{}: {e}", l.level)))
            .collect();
        ok &= failures.is_empty();
        println!(
            "{:<16} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10.1} {:>10.1}  {}",
            r.name,
            r.nodes,
            nodes[0],
            nodes[1],
            nodes[2],
            nodes[3],
            r.levels[0].run_ms,
            r.levels[3].run_ms,
            if failures.is_empty() {
                "match".to_string()
            } else {
                format!("MISMATCH {}", failures.join("; "))
            }
        );
    }
    let shown = runs
        .iter()
        .find(|r| r.name == "resnet50")
        .or_else(|| runs.first());
    if let Some((r, all)) = shown.and_then(|r| r.levels.last().map(|l| (r, l))) {
        let changed: Vec<String> = all
            .passes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        println!("passes on {} at level all: {}", r.name, changed.join(", "));
    }
    Ok(ok)
}

/// The node tests: `--data`/`$OXRT_ONNX_TEST_DATA`, or the pinned wheel's,
/// downloaded with pip once and cached under `target/`.
fn node_tests(data: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = data {
        if !dir.is_dir() {
            bail!("test data directory {} does not exist", dir.display());
        }
        return Ok(dir);
    }
    let cache = wheel_cache();
    let node = cache.join("node");
    if node.is_dir() {
        let n = discover(&node)?.len();
        if n == EXPECTED_CASES {
            return Ok(node);
        }
        eprintln!("cached node tests hold {n} cases, expected {EXPECTED_CASES}: fetching again");
    }
    let wheel_dir = cache.join("wheel");
    std::fs::create_dir_all(&wheel_dir)?;
    eprintln!(
        "fetching the ONNX {ONNX_RELEASE} wheel with pip (once; cached in {})",
        cache.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
        .arg(format!("onnx=={ONNX_RELEASE}"))
        .arg("-d")
        .arg(&wheel_dir)
        .status()
        .with_context(|| format!("cannot run `{python} -m pip` (set PYTHON, or OXRT_ONNX_TEST_DATA to a node-test directory)"))?;
    if !status.success() {
        bail!("`{python} -m pip download onnx=={ONNX_RELEASE}` failed ({status})");
    }
    let wheel = cached_wheel(&wheel_dir)
        .with_context(|| format!("pip left no .whl in {}", wheel_dir.display()))?;
    eprintln!("extracting node tests from {}", wheel.display());
    let n = extract_node_tests(&wheel, &node).map_err(anyhow::Error::msg)?;
    if n != EXPECTED_CASES {
        bail!(
            "{} holds {n} node-test cases, expected {EXPECTED_CASES}",
            wheel.display()
        );
    }
    Ok(node)
}

fn conformance(args: ConformanceArgs) -> Result<bool> {
    // The provider under test; nodes it declines run on the CPU fallback.
    let (providers, ops): (Vec<Provider>, Option<Vec<&str>>) = match args.provider.as_str() {
        "cpu" => (Vec::new(), None),
        "fpga-sim" => (
            vec![Provider::FpgaSim(Vec::new())],
            Some(oxrt_provider_fpga_sim::ops::operators()),
        ),
        "cuda" => {
            // No GPU here: say so in one line rather than fail every case.
            oxrt_provider_cuda::probe(0).map_err(|e| anyhow::anyhow!("{e}"))?;
            (
                vec![Provider::Cuda(0)],
                Some(oxrt_provider_cuda::ops::operators()),
            )
        }
        other => bail!("unknown provider '{other}': conformance runs for cpu, cuda and fpga-sim"),
    };
    let root = node_tests(args.data)?;
    let mut cases = discover(&root).with_context(|| format!("cannot list {}", root.display()))?;
    if let Some(ops) = &ops {
        // A device provider runs the cases of the operators it takes.
        cases.retain(|c| {
            oxrt_conformance::case::op_types(c)
                .iter()
                .any(|op| ops.contains(&op.as_str()))
        });
    }
    if let Some(f) = &args.filter {
        let re = regex::Regex::new(f).with_context(|| format!("--filter '{f}'"))?;
        cases.retain(|c| re.is_match(&c.name));
    }
    if cases.is_empty() {
        bail!("no node-test case in {} matches the filter", root.display());
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let limit = Duration::from_secs(args.timeout.max(1));

    let exp_path = workspace_root()
        .join("conformance/expectations")
        .join(format!("{}.yaml", args.provider));
    let mut expected = expectations::load(&exp_path).map_err(anyhow::Error::msg)?;
    let levels = match args.optimization_level {
        Some(l) => vec![l],
        None => vec![
            OptimizationLevel::Disabled,
            OptimizationLevel::Basic,
            OptimizationLevel::Extended,
            OptimizationLevel::All,
        ],
    };
    let (last, others) = levels.split_last().context("no optimization level")?;
    let mut levels_ok = true;
    for &level in others {
        let results = run_cases(&cases, &providers, level, jobs, limit)?;
        let (passed, total) = report::totals(&results);
        let gate = expectations::gate(&results, &expected);
        for (name, why) in &gate.regressions {
            println!("REGRESSION at level {level}: {name}: expected to pass, got {why}");
        }
        println!(
            "optimization level {level}: {passed}/{total} pass{}",
            if gate.regressions.is_empty() {
                ""
            } else {
                " (REGRESSIONS above)"
            }
        );
        levels_ok &= gate.regressions.is_empty();
    }
    let start = Instant::now();
    let results = run_cases(&cases, &providers, *last, jobs, limit)?;
    println!("optimization level {last}:");
    print!("{}", report::table(&results));
    let (passed, total) = report::totals(&results);
    eprintln!(
        "ran {total} cases in {:.1} s with {jobs} jobs",
        start.elapsed().as_secs_f64()
    );
    if !providers.is_empty() {
        let on = |pass: bool| {
            results
                .iter()
                .filter(|r| r.placed_on.contains(&args.provider))
                .filter(|r| !pass || r.status == oxrt_conformance::Status::Pass)
                .count()
        };
        eprintln!(
            "{} ran nodes in {} of {total} cases ({} of them pass); the other nodes ran on cpu",
            args.provider,
            on(false),
            on(true)
        );
    }

    let report_dir = args.report.unwrap_or_else(|| {
        workspace_root()
            .join("target/conformance")
            .join(&args.provider)
    });
    report::write(&report_dir, &args.provider, ONNX_RELEASE, &results)
        .map_err(anyhow::Error::msg)?;
    println!(
        "reports: {0}/report.md, {0}/report.json",
        report_dir.display()
    );

    if args.update_expectations {
        // Only the cases that ran are rewritten, so a filtered run keeps the
        // rest; entries marked random stay as written.
        for r in &results {
            if expected
                .get(&r.name)
                .is_some_and(|why| !why.starts_with(expectations::RANDOM))
            {
                expected.remove(&r.name);
            }
        }
        let random: Vec<String> = expected
            .iter()
            .filter(|(_, why)| why.starts_with(expectations::RANDOM))
            .map(|(name, _)| name.clone())
            .collect();
        let fresh = expectations::from_results(&results)
            .into_iter()
            .filter(|(name, _)| !random.contains(name));
        expected.extend(fresh);
        expectations::save(&exp_path, &args.provider, &expected).map_err(anyhow::Error::msg)?;
        println!(
            "wrote {} ({} known failures)",
            exp_path.display(),
            expected.len()
        );
        return Ok(true);
    }
    let gate = expectations::gate(&results, &expected);
    for (name, why) in &gate.regressions {
        println!("REGRESSION {name}: expected to pass, got {why}");
    }
    for name in &gate.stale {
        println!(
            "STALE      {name}: listed as failing in {} but passes now",
            exp_path.display()
        );
    }
    if gate.ok() {
        println!(
            "conformance: {passed}/{total} pass; every other case is listed in {}",
            exp_path.display()
        );
    } else {
        println!(
            "conformance gate failed: {} regressions, {} stale expectations (run with --update-expectations after checking them)",
            gate.regressions.len(),
            gate.stale.len()
        );
    }
    let models_ok = if args.provider == "cpu" && !args.no_models && args.filter.is_none() {
        light_models(jobs)?
    } else {
        true
    };
    Ok(gate.ok() && levels_ok && models_ok)
}

/// Counts live heap bytes and their high-water mark, for `xtask memory`.
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Bytes handed out so far (never decreases).
static HANDED_OUT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's
// layout and pointer unchanged; the counters only observe sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
            HANDED_OUT.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// One run of `session`: its peak heap bytes above the level before it,
/// and the bytes it allocated.
fn run_peak(session: &oxrt::Session, feeds: &[(String, oxrt::Tensor)]) -> Result<(usize, usize)> {
    let feeds = feeds.to_vec();
    let base = LIVE.load(Ordering::Relaxed);
    let handed = HANDED_OUT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = session.run(feeds)?;
    let peak = PEAK.load(Ordering::Relaxed);
    let allocated = HANDED_OUT.load(Ordering::Relaxed) - handed;
    drop(out);
    Ok((peak.saturating_sub(base), allocated))
}

fn memory(args: MemoryArgs) -> Result<bool> {
    let mut models = args.models.clone();
    if models.is_empty() {
        // The node-test download brings the wheel with the light models.
        node_tests(None)?;
        let dir = light_models_dir()?.context("no cached ONNX wheel")?;
        models.push(dir.join("light_resnet50.onnx"));
    }
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "{:<28} {:>12} {:>14} {:>12} {:>13} {:>7} {:>10} {:>15} {:>16}",
        "model",
        "planned MiB",
        "unplanned MiB",
        "peak on MiB",
        "peak off MiB",
        "saved",
        "arena MiB",
        "warm alloc MiB",
        "alloc off MiB"
    );
    for path in &models {
        let build = |reuse: bool| {
            oxrt::Session::builder()
                .with_intra_threads(args.threads)
                .with_memory_reuse(reuse)
                .commit_from_file(path)
                .with_context(|| format!("{}", path.display()))
        };
        let (on, off) = (build(true)?, build(false)?);
        let mut feeds = Vec::new();
        let mut dims = std::collections::HashMap::new();
        for (i, v) in on.inputs().iter().enumerate() {
            if let oxrt::ValueType::Tensor { shape: Some(s), .. } = &v.ty {
                for d in s {
                    if let oxrt::Dim::Symbolic(name) = d {
                        dims.insert(name.clone(), 1);
                    }
                }
            }
            let t = oxrt_conformance::models::deterministic_input(&v.ty, i as u64)
                .map_err(anyhow::Error::msg)?;
            feeds.push((v.name.clone(), t));
        }
        let plan = on.memory_plan(&dims);
        // The first run fills the arena: its peak counts the arena's
        // buffers. A warm run then allocates only what it returns.
        let (peak_on, _) = run_peak(&on, &feeds)?;
        let (_, warm_alloc) = run_peak(&on, &feeds)?;
        let arena = on.arena_stats().map_or(0, |s| s.pooled_bytes);
        run_peak(&off, &feeds)?;
        let (peak_off, alloc_off) = run_peak(&off, &feeds)?;
        let name = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        println!(
            "{:<28} {:>12.2} {:>14.2} {:>12.2} {:>13.2} {:>6.1}% {:>10.2} {:>15.2} {:>16.2}",
            name,
            mib(plan.peak_bytes),
            mib(plan.unplanned_bytes),
            mib(peak_on),
            mib(peak_off),
            100.0 * (1.0 - peak_on as f64 / peak_off.max(1) as f64),
            mib(arena),
            mib(warm_alloc),
            mib(alloc_off)
        );
    }
    println!("planned: the memory plan's peak of live values (release after last reader) vs every value kept; peak on/off: measured heap high-water mark of the first run above the session's own memory, with the plan and run arena and without either; arena: buffers the arena holds between runs; warm alloc / alloc off: bytes a later run allocates with the arena and without the plan");
    Ok(true)
}

/// Runs `cases` on `jobs` threads at `level`, with a progress bar.
fn run_cases(
    cases: &[oxrt_conformance::NodeTestCase],
    providers: &[Provider],
    level: OptimizationLevel,
    jobs: usize,
    limit: Duration,
) -> Result<Vec<CaseResult>> {
    // Panics are caught per case and reported; keep their messages off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cases, {elapsed} ({msg})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let r = run_case_with_timeout(case, Tolerance::default(), providers, level, limit);
                bar.set_message(r.name.clone());
                bar.inc(1);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    bar.finish_and_clear();
    let _ = std::panic::take_hook();
    let results: Vec<CaseResult> = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread failed"))?
        .into_iter()
        .flatten()
        .collect();

    Ok(results)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Conformance(args) => conformance(args),
        Task::Memory(args) => memory(args),
        Task::Bench(args) => bench::bench(args),
        Task::Pytest(args) => pytest::pytest(args),
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
