//! Errors raised while reading or checking an ONNX model.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// Everything that can go wrong between a file on disk and a checked `ModelProto`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be opened, read or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input holds no bytes at all.
    #[error("{source_name} is empty (0 bytes): not an ONNX model")]
    Empty { source_name: String },
    /// The bytes are not a valid protobuf `ModelProto` (truncated or another format).
    #[error("{source_name} is not a valid ONNX model (protobuf decoding failed: {reason})")]
    Decode { source_name: String, reason: String },
    /// The protobuf decoded but does not look like an ONNX model.
    #[error("{source_name} is not an ONNX model: {reason}")]
    NotOnnx { source_name: String, reason: String },
    /// External tensor data could not be resolved.
    #[error("external data of tensor '{tensor}' (location '{location}'): {reason}")]
    ExternalData {
        tensor: String,
        location: String,
        reason: String,
    },
    /// The model violates the ONNX specification.
    #[error("invalid model: {0}")]
    Check(#[from] CheckError),
}

/// A structural problem found by the checker, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct CheckError {
    /// Where: e.g. `graph 'main' > node 'conv1' (Conv) > attribute 'pads'`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl CheckError {
    pub(crate) fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}
