//! `cargo xtask pytest`: installs the Python package (`crates/oxrt-python`)
//! with pip into a virtual environment under `target/`, the way users
//! install it, then runs its pytest suite (API, errors, threads, the
//! walkthrough against onnxruntime, and onnx's backend runner over every
//! node test).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::pyenv::{python_env, ONNX_VERSION, ORT_VERSION};

#[derive(clap::Args)]
pub struct PytestArgs {
    /// Arguments passed on to pytest (after `--`), e.g. `-k backend`.
    #[arg(last = true)]
    pytest_args: Vec<String>,
}

/// Installs the package and runs pytest; false when a test failed.
pub fn pytest(args: PytestArgs) -> Result<bool> {
    let root = crate::workspace_root();
    let python = python_env(
        &root.join("target/pytest/venv"),
        &[
            "pytest",
            "numpy",
            "ml_dtypes",
            &format!("onnx=={ONNX_VERSION}"),
            &format!("onnxruntime=={ORT_VERSION}"),
        ],
    )?;
    let package = root.join("crates/oxrt-python");
    eprintln!(
        "pip install {} (maturin builds the extension in release mode)",
        package.display()
    );
    let ok = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(&package)
        .status()
        .context("cannot run pip")?
        .success();
    if !ok {
        bail!("pip install {} failed", package.display());
    }
    // The fpga-sim provider as a shared library, for the test that loads a
    // provider library by path.
    eprintln!("cargo build --release -p oxrt-provider-fpga-sim (its shared library)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "oxrt-provider-fpga-sim",
        ])
        .current_dir(&root)
        .status()
        .context("cannot run cargo")?
        .success();
    if !ok {
        bail!("building the fpga-sim provider library failed");
    }
    let library = root.join(format!(
        "target/release/{}oxrt_provider_fpga_sim{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    // Run from the tests folder so `import oxrt` is the installed package.
    Ok(Command::new(&python)
        .env("OXRT_FPGA_SIM_LIBRARY", library)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .args(&args.pytest_args)
        .current_dir(package.join("tests"))
        .status()
        .context("cannot run pytest")?
        .success())
}
