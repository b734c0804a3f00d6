//! Decoding a `ModelProto` from a file (memory-mapped) or from bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use crate::error::{OnnxError, Result};
use crate::external;
use crate::proto::ModelProto;

/// A decoded model and the directory its external data is resolved against.
#[derive(Debug, Clone)]
pub struct Model {
    /// The decoded protobuf, with external data already loaded into `raw_data`.
    pub proto: ModelProto,
    /// The directory of the model file (`None` for a model decoded from bytes).
    pub base_dir: Option<PathBuf>,
    /// A human-readable name of where the model came from (path or `<memory>`).
    pub source_name: String,
}

/// Loads a model from `path`: the file is memory-mapped and decoded without
/// copying its weights, then external data is resolved relative to its directory.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let io_err = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let source_name = path.display().to_string();
    if len == 0 {
        return Err(OnnxError::Empty { source_name });
    }
    if path.is_dir() {
        return Err(OnnxError::NotOnnx {
            source_name,
            reason: "it is a directory".into(),
        });
    }
    // SAFETY: the map is read-only and owned by the returned `Bytes`. Like every
    // mmap-based loader we rely on the file not being truncated by another
    // process while the session holds it; exercised by every test loading a file.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
    let bytes = Bytes::from_owner(mmap);
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let mut proto = decode_proto(bytes, &source_name)?;
    external::resolve_model(&mut proto, &base_dir)?;
    Ok(Model {
        proto,
        base_dir: Some(base_dir),
        source_name,
    })
}

/// Decodes a model held in memory. External data is not allowed (there is no
/// directory to resolve it against) and is reported as an error.
pub fn decode_model(bytes: impl Into<Bytes>) -> Result<Model> {
    let source_name = "<memory>".to_string();
    let bytes = bytes.into();
    if bytes.is_empty() {
        return Err(OnnxError::Empty { source_name });
    }
    let proto = decode_proto(bytes, &source_name)?;
    external::reject_external(&proto)?;
    Ok(Model {
        proto,
        base_dir: None,
        source_name,
    })
}

fn decode_proto(bytes: Bytes, source_name: &str) -> Result<ModelProto> {
    let proto = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        source_name: source_name.to_string(),
        reason: e.to_string(),
    })?;
    let not_onnx = |reason: &str| OnnxError::NotOnnx {
        source_name: source_name.to_string(),
        reason: reason.to_string(),
    };
    if proto.ir_version.unwrap_or(0) <= 0 {
        return Err(not_onnx("ir_version is missing"));
    }
    if proto.graph.is_none() {
        return Err(not_onnx("it has no graph"));
    }
    Ok(proto)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::{GraphProto, OperatorSetIdProto};

    fn tiny_model() -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                name: Some("g".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_from_bytes_and_file() {
        let bytes = tiny_model().encode_to_vec();
        let m = decode_model(bytes.clone()).unwrap();
        assert_eq!(m.proto.ir_version, Some(8));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &bytes).unwrap();
        let m = load_model(&path).unwrap();
        assert_eq!(m.proto.graph.unwrap().name(), "g");
        assert_eq!(m.base_dir.as_deref(), Some(dir.path()));
    }

    #[test]
    fn empty_input_is_rejected() {
        assert!(matches!(
            decode_model(Vec::new()),
            Err(OnnxError::Empty { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.onnx");
        std::fs::write(&path, b"").unwrap();
        let err = load_model(&path).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn truncated_and_foreign_bytes_are_rejected() {
        let bytes = tiny_model().encode_to_vec();
        let err = decode_model(bytes[..bytes.len() - 3].to_vec()).unwrap_err();
        assert!(matches!(err, OnnxError::Decode { .. }), "{err}");
        let err = decode_model(b"\x89PNG\r\n\x1a\n not a model".to_vec()).unwrap_err();
        assert!(
            matches!(err, OnnxError::Decode { .. } | OnnxError::NotOnnx { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_model("/definitely/not/here.onnx").unwrap_err();
        assert!(
            err.to_string().contains("/definitely/not/here.onnx"),
            "{err}"
        );
    }
}
