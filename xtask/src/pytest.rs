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
    // Run from the tests folder so `import oxrt` is the installed package.
    Ok(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .args(&args.pytest_args)
        .current_dir(package.join("tests"))
        .status()
        .context("cannot run pytest")?
        .success())
}
