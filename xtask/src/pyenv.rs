//! Python virtual environments under `target/` for the tools that need
//! Python packages (onnxruntime for `bench --vs-ort`, pytest for `pytest`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The pinned onnxruntime that comparisons and tests install.
pub const ORT_VERSION: &str = "1.32.0";
/// The onnx release the model generators and the backend runner use.
pub const ONNX_VERSION: &str = "1.22.0";

/// The Python of the environment at `venv`, created with `packages` on
/// first use (a marker file names what was installed, so a changed list
/// installs again).
pub fn python_env(venv: &Path, packages: &[&str]) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let marker = venv.join(format!(
        "installed-{}",
        packages.join("-").replace(['=', '<', '>'], "")
    ));
    if marker.is_file() {
        return Ok(python);
    }
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("creating {} ({})", venv.display(), packages.join(", "));
    if !python.is_file() {
        let ok = Command::new(&system)
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .with_context(|| format!("cannot run `{system} -m venv`"))?
            .success();
        if !ok {
            bail!("`{system} -m venv {}` failed", venv.display());
        }
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(packages)
        .status()
        .context("cannot run pip in the virtual environment")?
        .success();
    if !ok {
        bail!(
            "installing {} into {} failed",
            packages.join(", "),
            venv.display()
        );
    }
    std::fs::write(&marker, "")?;
    Ok(python)
}
