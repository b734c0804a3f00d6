//! The node-test data: extracted from the pinned ONNX wheel (a zip archive)
//! and cached, or read from a directory the user points at.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The ONNX release whose node tests are the reference.
pub const ONNX_RELEASE: &str = "1.22.0";
/// Number of node-test cases that release ships.
pub const EXPECTED_CASES: usize = 1765;
/// Where the node tests live inside the wheel.
const PREFIX: &str = "onnx/backend/test/data/node/";
/// Where the light models (real CNN architectures with constant weights)
/// live inside the wheel.
const LIGHT_PREFIX: &str = "onnx/backend/test/data/light/";

/// Extracts `onnx/backend/test/data/node/**` from `wheel` into `dest`
/// (which then holds the `test_*` directories). Returns the number of cases.
/// Entries whose paths would leave `dest` are refused.
pub fn extract_node_tests(wheel: &Path, dest: &Path) -> Result<usize, String> {
    extract(wheel, PREFIX, dest, |tmp| {
        crate::case::discover(tmp)
            .map_err(|e| e.to_string())
            .map(|c| c.len())
    })
}

/// Extracts the light models (`light_<name>.onnx` with their reference
/// `light_<name>_output_0.pb`) from `wheel` into `dest`. Returns how many
/// models there are.
pub fn extract_light_models(wheel: &Path, dest: &Path) -> Result<usize, String> {
    extract(
        wheel,
        LIGHT_PREFIX,
        dest,
        |tmp| Ok(light_models(tmp)?.len()),
    )
}

/// The light models in `dir`: `(name, model, reference output)`, sorted.
pub fn light_models(dir: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(name) = file
            .strip_prefix("light_")
            .and_then(|f| f.strip_suffix(".onnx"))
        else {
            continue;
        };
        let reference = dir.join(format!("light_{name}_output_0.pb"));
        if reference.is_file() {
            out.push((name.to_string(), path.clone(), reference));
        }
    }
    out.sort();
    Ok(out)
}

/// Extracts the entries under `prefix` into `dest` (through a temporary
/// directory, so an interrupted extraction leaves nothing); `count` says how
/// many items were extracted, and zero is an error.
fn extract(
    wheel: &Path,
    prefix: &str,
    dest: &Path,
    count: impl Fn(&Path) -> Result<usize, String>,
) -> Result<usize, String> {
    let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let Some(name) = entry.enclosed_name() else {
            return Err(format!("unsafe path in archive entry #{i}"));
        };
        let Ok(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out: PathBuf = tmp.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", rel.display()))?;
        std::fs::write(&out, bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let count = count(&tmp)?;
    if count == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("{} holds nothing under {prefix}", wheel.display()));
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    #[test]
    fn extracts_only_node_tests() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("onnx.whl");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("onnx/__init__.py", &b"x"[..]),
            ("onnx/backend/test/data/node/test_relu/model.onnx", b"m"),
            (
                "onnx/backend/test/data/node/test_relu/test_data_set_0/input_0.pb",
                b"i",
            ),
            ("onnx/backend/test/data/node/test_abs/model.onnx", b"m"),
        ] {
            zw.start_file(name, opts).unwrap();
            zw.write_all(body).unwrap();
        }
        zw.finish().unwrap();
        let dest = dir.path().join("node");
        assert_eq!(extract_node_tests(&wheel, &dest).unwrap(), 2);
        assert!(dest.join("test_relu/test_data_set_0/input_0.pb").is_file());
        assert!(!dest.join("__init__.py").exists());
    }

    #[test]
    fn a_wheel_without_node_tests_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("empty.whl");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        zw.start_file("onnx/__init__.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zw.finish().unwrap();
        let err = extract_node_tests(&wheel, &dir.path().join("node")).unwrap_err();
        assert!(
            err.contains("holds nothing under onnx/backend/test/data/node/"),
            "{err}"
        );
    }

    #[test]
    fn extracts_light_models_with_their_references() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("onnx.whl");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for name in [
            "onnx/backend/test/data/light/light_vgg19.onnx",
            "onnx/backend/test/data/light/light_vgg19_output_0.pb",
            "onnx/backend/test/data/light/light_alone.onnx",
            "onnx/backend/test/data/node/test_relu/model.onnx",
        ] {
            zw.start_file(name, opts).unwrap();
            zw.write_all(b"x").unwrap();
        }
        zw.finish().unwrap();
        let dest = dir.path().join("light");
        // A model without its reference output is not a test.
        assert_eq!(extract_light_models(&wheel, &dest).unwrap(), 1);
        let models = light_models(&dest).unwrap();
        assert_eq!(models[0].0, "vgg19");
        assert!(models[0].2.ends_with("light_vgg19_output_0.pb"));
        assert!(!dest.join("test_relu").exists());
    }
}
