//! External tensor data: weights stored in files next to the model.
//!
//! A tensor with `data_location = EXTERNAL` names a `location` (a path relative
//! to the model's directory), an optional `offset` and `length`. Locations are
//! confined to the model directory: absolute paths, `..` components and
//! symlinks that lead outside are rejected, as are ranges past the end of file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::error::{OnnxError, Result};
use crate::proto::{tensor_proto::DataLocation, GraphProto, ModelProto, TensorProto};

/// Loads every external tensor of `model` (including those in subgraphs and
/// `Constant` attributes) into its `raw_data`, resolved against `base_dir`.
pub fn resolve_model(model: &mut ModelProto, base_dir: &Path) -> Result<()> {
    let mut files = FileCache::new(base_dir)?;
    if let Some(graph) = model.graph.as_mut() {
        for_each_tensor_mut(graph, &mut |t| resolve_tensor(t, &mut files))?;
    }
    Ok(())
}

/// Fails if any tensor refers to external data (used for models held in memory).
pub fn reject_external(model: &ModelProto) -> Result<()> {
    let Some(graph) = model.graph.as_ref() else {
        return Ok(());
    };
    let mut graph = graph.clone();
    for_each_tensor_mut(&mut graph, &mut |t| {
        if is_external(t) {
            Err(external_error(
                t,
                "the model was loaded from memory, so there is no directory to read external data from; load it from its file instead",
            ))
        } else {
            Ok(())
        }
    })
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

fn location_of(t: &TensorProto) -> String {
    t.external_data
        .iter()
        .find(|kv| kv.key() == "location")
        .map(|kv| kv.value().to_string())
        .unwrap_or_default()
}

fn external_error(t: &TensorProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::ExternalData {
        tensor: t.name().to_string(),
        location: location_of(t),
        reason: reason.into(),
    }
}

/// Calls `f` on every tensor stored in the graph, recursively through subgraphs.
fn for_each_tensor_mut(
    graph: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    for t in &mut graph.initializer {
        f(t)?;
    }
    for s in &mut graph.sparse_initializer {
        if let Some(v) = s.values.as_mut() {
            f(v)?;
        }
        if let Some(i) = s.indices.as_mut() {
            f(i)?;
        }
    }
    for node in &mut graph.node {
        for attr in &mut node.attribute {
            if let Some(t) = attr.t.as_mut() {
                f(t)?;
            }
            for t in &mut attr.tensors {
                f(t)?;
            }
            if let Some(g) = attr.g.as_mut() {
                for_each_tensor_mut(g, f)?;
            }
            for g in &mut attr.graphs {
                for_each_tensor_mut(g, f)?;
            }
        }
    }
    Ok(())
}

/// Memory maps of external data files, opened once each.
struct FileCache {
    base: PathBuf,
    maps: HashMap<PathBuf, Bytes>,
}

impl FileCache {
    fn new(base_dir: &Path) -> Result<Self> {
        let base = base_dir.canonicalize().map_err(|source| OnnxError::Io {
            path: base_dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            base,
            maps: HashMap::new(),
        })
    }

    /// Checks that `location` stays inside the model directory and maps it.
    fn open(&mut self, t: &TensorProto, location: &str) -> Result<Bytes> {
        let rel = Path::new(location);
        if location.is_empty() {
            return Err(external_error(t, "the 'location' key is missing or empty"));
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(external_error(
                        t,
                        "the path contains '..' and would escape the model directory",
                    ))
                }
                Component::RootDir | Component::Prefix(_) => return Err(external_error(
                    t,
                    "the path is absolute; external data must be relative to the model directory",
                )),
            }
        }
        let joined = self.base.join(rel);
        let real = joined
            .canonicalize()
            .map_err(|e| external_error(t, format!("cannot open {}: {e}", joined.display())))?;
        if !real.starts_with(&self.base) {
            return Err(external_error(
                t,
                format!(
                    "the path resolves to {} (through a symlink), outside the model directory {}",
                    real.display(),
                    self.base.display()
                ),
            ));
        }
        if let Some(b) = self.maps.get(&real) {
            return Ok(b.clone());
        }
        if !real.is_file() {
            return Err(external_error(t, "the path is not a regular file"));
        }
        let file = File::open(&real)
            .map_err(|e| external_error(t, format!("cannot open {}: {e}", real.display())))?;
        let len = file
            .metadata()
            .map_err(|e| external_error(t, e.to_string()))?
            .len();
        let bytes = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: read-only map kept alive by the `Bytes` owner; the file is
            // assumed not to be truncated while in use (as for the model file).
            // Exercised by the external-data tests below.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| external_error(t, format!("cannot map {}: {e}", real.display())))?;
            Bytes::from_owner(map)
        };
        self.maps.insert(real, bytes.clone());
        Ok(bytes)
    }
}

fn parse_u64(t: &TensorProto, key: &str, value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        external_error(
            t,
            format!("'{key}' is not a non-negative integer: '{value}'"),
        )
    })
}

fn resolve_tensor(t: &mut TensorProto, files: &mut FileCache) -> Result<()> {
    if !is_external(t) {
        return Ok(());
    }
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key() {
            "location" => location = Some(kv.value().to_string()),
            "offset" => offset = parse_u64(t, "offset", kv.value())?,
            "length" => length = Some(parse_u64(t, "length", kv.value())?),
            _ => {} // "checksum" and unknown keys carry no data
        }
    }
    let location = location.unwrap_or_default();
    let data = files.open(t, &location)?;
    let file_len = data.len() as u64;
    let length = length.unwrap_or(file_len.saturating_sub(offset));
    let end = offset.checked_add(length).filter(|&e| e <= file_len);
    let Some(end) = end else {
        return Err(external_error(
            t,
            format!(
                "offset {offset} + length {length} is past the end of the file ({file_len} bytes)"
            ),
        ));
    };
    // Both bounds are <= file_len, which fits in usize because the file is mapped.
    t.raw_data = Some(data.slice(offset as usize..end as usize));
    t.data_location = Some(DataLocation::Default as i32);
    t.external_data.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::StringStringEntryProto;

    fn ext_tensor(location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
        let mut kv = vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }];
        if let Some(o) = offset {
            kv.push(StringStringEntryProto {
                key: Some("offset".into()),
                value: Some(o.to_string()),
            });
        }
        if let Some(l) = length {
            kv.push(StringStringEntryProto {
                key: Some("length".into()),
                value: Some(l.to_string()),
            });
        }
        TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(1),
            data_location: Some(DataLocation::External as i32),
            external_data: kv,
            ..Default::default()
        }
    }

    fn model_with(t: TensorProto) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            graph: Some(GraphProto {
                initializer: vec![t],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_range_of_file_inside_model_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("weights")).unwrap();
        std::fs::write(
            dir.path().join("weights/w.bin"),
            [9u8, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        )
        .unwrap();
        let mut m = model_with(ext_tensor("weights/w.bin", Some(1), Some(8)));
        resolve_model(&mut m, dir.path()).unwrap();
        let t = &m.graph.unwrap().initializer[0];
        assert_eq!(t.raw_data.as_deref(), Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]));
        assert!(!is_external(t));
    }

    #[test]
    fn parent_dir_escape_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("model");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(dir.path().join("secret.bin"), [0u8; 8]).unwrap();
        let mut m = model_with(ext_tensor("../secret.bin", None, None));
        let err = resolve_model(&mut m, &sub).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'..'") && msg.contains("'w'"), "{msg}");
    }

    #[test]
    fn absolute_path_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = model_with(ext_tensor("/etc/passwd", None, None));
        let err = resolve_model(&mut m, dir.path()).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_escape_is_rejected() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.bin"), [0u8; 8]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.bin"),
            dir.path().join("link.bin"),
        )
        .unwrap();
        let mut m = model_with(ext_tensor("link.bin", None, None));
        let err = resolve_model(&mut m, dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("outside the model directory"),
            "{err}"
        );
    }

    #[test]
    fn range_past_end_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [0u8; 8]).unwrap();
        let mut m = model_with(ext_tensor("w.bin", Some(4), Some(u64::MAX)));
        let err = resolve_model(&mut m, dir.path()).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn memory_models_cannot_use_external_data() {
        let m = model_with(ext_tensor("w.bin", None, None));
        assert!(reject_external(&m).is_err());
    }
}
