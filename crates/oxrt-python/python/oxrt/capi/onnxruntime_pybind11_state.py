"""The exception classes under the module path onnxruntime scripts catch them from.

``from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument``
becomes ``from oxrt.capi.onnxruntime_pybind11_state import InvalidArgument``.
"""

from oxrt._oxrt import (  # noqa: F401
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    OxrtError,
)

# onnxruntime's names for the same failures
RuntimeException = Fail
EngineError = Fail
NoModel = NoSuchFile
