//! ONNX protobuf types, model loading and the model checker.
//!
//! This crate knows the ONNX file format and nothing about execution:
//! - [`proto`]: the ONNX 1.22.0 schema compiled with prost at build time;
//! - [`load`]: decoding a model from a path (memory-mapped) or from bytes;
//! - [`external`]: resolving external tensor data inside the model directory;
//! - [`checker`]: structural validation in the spirit of `onnx.checker`.

pub mod checker;
pub mod error;
pub mod external;
pub mod load;

/// Generated ONNX protobuf messages (package `onnx`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use checker::{check_model, CheckOptions};
pub use error::{OnnxError, Result};
pub use load::{decode_model, load_model, Model};

/// The ONNX release whose schema is vendored.
pub const ONNX_RELEASE: &str = "1.22.0";
/// Highest opset of the default domain (`ai.onnx`) in that release.
pub const MAX_DEFAULT_OPSET: i64 = 27;
/// Highest opset of the `ai.onnx.ml` domain in that release.
pub const MAX_ML_OPSET: i64 = 5;
