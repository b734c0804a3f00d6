//! oxrt errors as Python exceptions, named like onnxruntime's (whose
//! `onnxruntime.capi.onnxruntime_pybind11_state` module scripts catch them
//! from), with the Rust error's message unchanged.

use oxrt::onnx::OnnxError;
use oxrt::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::{create_exception, PyErr};

create_exception!(
    oxrt,
    OxrtError,
    PyRuntimeError,
    "Base class of the errors oxrt raises."
);
create_exception!(
    oxrt,
    Fail,
    OxrtError,
    "A run or a kernel failed (onnxruntime's `Fail`)."
);
create_exception!(
    oxrt,
    InvalidArgument,
    OxrtError,
    "A wrong input name, element type, shape or session option."
);
create_exception!(
    oxrt,
    NoSuchFile,
    OxrtError,
    "The model file does not exist or cannot be read."
);
create_exception!(
    oxrt,
    InvalidProtobuf,
    OxrtError,
    "The bytes are not an ONNX model."
);
create_exception!(
    oxrt,
    InvalidGraph,
    OxrtError,
    "The model breaks the ONNX specification."
);
create_exception!(
    oxrt,
    NotImplemented,
    OxrtError,
    "An operator, opset or element type this build does not run."
);
create_exception!(
    oxrt,
    EPFail,
    OxrtError,
    "An execution provider could not be created or failed."
);

/// The Python exception for an oxrt error; the message is the error's
/// `Display`, with the causes of wrapped errors appended.
pub fn to_py(e: Error) -> PyErr {
    let msg = message(&e);
    match innermost(&e) {
        Error::MissingInput { .. }
        | Error::UnknownInput { .. }
        | Error::InputType { .. }
        | Error::InputKind { .. }
        | Error::InputShape { .. }
        | Error::MemoryLimit { .. }
        | Error::Config(_) => InvalidArgument::new_err(msg),
        Error::Onnx(OnnxError::Io { .. }) => NoSuchFile::new_err(msg),
        Error::Onnx(OnnxError::Empty { .. } | OnnxError::Decode { .. })
        | Error::Onnx(OnnxError::NotOnnx { .. }) => InvalidProtobuf::new_err(msg),
        Error::Onnx(_) | Error::InvalidModel { .. } => InvalidGraph::new_err(msg),
        Error::UnsupportedOp { .. } | Error::UnsupportedOpset { .. } | Error::NotSupported(_) => {
            NotImplemented::new_err(msg)
        }
        Error::ProviderUnavailable { .. } | Error::ProviderLibrary(_) | Error::Provider { .. } => {
            EPFail::new_err(msg)
        }
        _ => Fail::new_err(msg),
    }
}

/// The error a node error wraps (the kind decides the exception class).
fn innermost(e: &Error) -> &Error {
    match e {
        Error::Node { source, .. } => innermost(source),
        e => e,
    }
}

/// `Display` of the error and of every `source()` it does not already show.
fn message(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::Python;

    #[test]
    fn each_error_kind_maps_to_its_exception_with_the_rust_message() {
        Python::initialize();
        Python::attach(|py| {
            let shape = Error::InputShape {
                name: "x".into(),
                expected: "[1, 2]".into(),
                got: vec![3],
            };
            let text = shape.to_string();
            let err = to_py(shape);
            assert!(err.is_instance_of::<InvalidArgument>(py));
            assert!(err.is_instance_of::<OxrtError>(py));
            assert_eq!(err.value(py).to_string(), text);

            let node = Error::NotSupported("int4 Conv".into()).in_node("c1", "Conv");
            let err = to_py(node);
            assert!(err.is_instance_of::<NotImplemented>(py));
            assert_eq!(
                err.value(py).to_string(),
                "node 'c1' (Conv): not supported: int4 Conv"
            );

            let io = Error::Onnx(OnnxError::Io {
                path: "missing.onnx".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            });
            assert!(to_py(io).is_instance_of::<NoSuchFile>(py));
            let ep = Error::ProviderUnavailable {
                provider: "cuda".into(),
                reason: "no driver".into(),
            };
            assert!(to_py(ep).is_instance_of::<EPFail>(py));
            assert!(to_py(Error::invalid("bad")).is_instance_of::<Fail>(py));
        });
    }
}
