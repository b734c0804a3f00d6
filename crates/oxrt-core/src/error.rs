//! The typed errors of oxrt.

use crate::dtype::DataType;

/// Result alias used across oxrt.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail while building or running a session.
///
/// Errors name what failed and where: the model source, node (name and op
/// type), input or output involved, and expected versus actual values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, decoding or checking the ONNX file failed.
    #[error(transparent)]
    Onnx(#[from] oxrt_onnx::OnnxError),
    /// The model is structurally valid protobuf but cannot be lowered to the IR.
    #[error("invalid model: {location}: {message}")]
    InvalidModel { location: String, message: String },
    /// No provider implements this operator.
    #[error("unsupported operator: {op} (domain '{domain}', opset {opset}) used by node '{node}': {reason}")]
    UnsupportedOp {
        op: String,
        domain: String,
        opset: i64,
        node: String,
        reason: String,
    },
    /// The model imports an opset this runtime cannot execute.
    #[error("unsupported opset: domain '{domain}' version {version}: {reason}")]
    UnsupportedOpset {
        domain: String,
        version: i64,
        reason: String,
    },
    /// A required model input was not given to `run`.
    #[error("missing input '{name}': the model needs inputs [{expected}]")]
    MissingInput { name: String, expected: String },
    /// `run` was given an input the model does not have.
    #[error("unknown input '{name}': the model's inputs are [{expected}]")]
    UnknownInput { name: String, expected: String },
    /// An input has the wrong element type.
    #[error("input '{name}': expected element type {expected}, got {got}")]
    InputType {
        name: String,
        expected: DataType,
        got: DataType,
    },
    /// An input is the wrong kind of value (tensor, sequence, optional).
    #[error("input '{name}': expected {expected}, got {got}")]
    InputKind {
        name: String,
        expected: String,
        got: String,
    },
    /// An input has the wrong shape.
    #[error("input '{name}': expected shape {expected}, got {got:?}")]
    InputShape {
        name: String,
        expected: String,
        got: Vec<usize>,
    },
    /// A tensor would need more memory than the configured limit.
    #[error("{what}: shape {shape:?} of {dtype} needs {bytes} bytes, more than the memory limit of {limit} bytes")]
    MemoryLimit {
        what: String,
        shape: Vec<u64>,
        dtype: DataType,
        bytes: String,
        limit: u64,
    },
    /// A tensor's data does not match its declared type or shape.
    #[error("tensor '{name}': {message}")]
    InvalidTensor { name: String, message: String },
    /// A kernel rejected its inputs or attributes (raised inside a kernel,
    /// wrapped in [`Error::Node`] by the session).
    #[error("{0}")]
    Invalid(String),
    /// Element type or feature not handled by a kernel.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An error raised while creating or running a specific node.
    #[error("node '{node}' ({op}): {source}")]
    Node {
        node: String,
        op: String,
        #[source]
        source: Box<Error>,
    },
    /// A conversion between `Tensor` and a typed view/array failed.
    #[error("type mismatch: tensor holds {actual}, requested {requested}")]
    TypeMismatch {
        requested: DataType,
        actual: DataType,
    },
    /// A provider shared library could not be loaded.
    #[error(transparent)]
    ProviderLibrary(#[from] crate::dylib::ProviderLoadError),
    /// A provider loaded from a shared library reported a failure (or
    /// panicked, which its library caught at the boundary).
    #[error("provider '{provider}' failed in {call} ({status}): {message}")]
    Provider {
        provider: String,
        call: String,
        status: String,
        message: String,
    },
    /// An execution provider cannot be created on this machine (no driver,
    /// no device, a library missing); the session may fall back to others.
    #[error("execution provider '{provider}' is unavailable: {reason}")]
    ProviderUnavailable { provider: String, reason: String },
    /// The session configuration is invalid (e.g. thread pool creation failed).
    #[error("session configuration: {0}")]
    Config(String),
    /// Writing a file (an optimized model, a profile) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Wraps this error with the node it happened in.
    pub fn in_node(self, node: &str, op: &str) -> Self {
        Error::Node {
            node: node.to_string(),
            op: op.to_string(),
            source: Box::new(self),
        }
    }
}

/// Returns early with an [`Error::Invalid`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}
