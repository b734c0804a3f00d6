"""numpy arrays, lists, dicts and None to the values the native module takes, and back.

Element types numpy has no dtype for cross the boundary as tagged tuples:
``("strings", shape, [str, ...])`` and ``("raw", onnx_type, shape, ndarray)``
holding raw bit patterns (``uint16`` for bfloat16, one ``uint8`` per element
for the 8-, 4- and 2-bit formats). With ``ml_dtypes`` installed, outputs of
those types come back as ``ml_dtypes`` arrays, as the ``onnx`` package
stores them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

try:  # optional: bfloat16, float8, int4 and friends as numpy dtypes
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None

# ml_dtypes dtype name -> ONNX element type name (DataType::onnx_name)
_RAW_TYPES = {
    "bfloat16": "bfloat16",
    "float8_e4m3fn": "float8e4m3fn",
    "float8_e4m3fnuz": "float8e4m3fnuz",
    "float8_e5m2": "float8e5m2",
    "float8_e5m2fnuz": "float8e5m2fnuz",
    "float8_e8m0fnu": "float8e8m0",
    "float4_e2m1fn": "float4e2m1",
    "int4": "int4",
    "uint4": "uint4",
    "int2": "int2",
    "uint2": "uint2",
}
_ONNX_TO_ML = {onnx: ml for ml, onnx in _RAW_TYPES.items()}


def _inner(type_str: str, prefix: str) -> str:
    return type_str[len(prefix) : -1]


def to_native(value: Any, type_str: Optional[str]) -> Any:
    """Converts a fed value for an input declared as ``type_str``."""
    t = type_str or ""
    if t.startswith("optional("):
        return None if value is None else to_native(value, _inner(t, "optional("))
    if t.startswith("seq("):
        if isinstance(value, (list, tuple)):
            elem = _inner(t, "seq(")
            return [to_native(v, elem) for v in value]
        return value  # the native side names what is wrong
    if t.startswith("map("):
        if isinstance(value, dict):
            elem = t[t.index(",") + 1 : -1]
            return {k: to_native(v, elem) for k, v in value.items()}
        return value
    return _tensor_to_native(value)


def _tensor_to_native(value: Any) -> Any:
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind in "USO":
        items = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1).tolist()]
        return ("strings", list(arr.shape), items)
    onnx_type = _RAW_TYPES.get(arr.dtype.name)
    if onnx_type is not None:
        bits = np.ascontiguousarray(arr).view(np.uint16 if arr.dtype.itemsize == 2 else np.uint8)
        return ("raw", onnx_type, list(arr.shape), bits)
    return arr


def from_native(value: Any) -> Any:
    """Converts an output value of the native module to numpy and Python objects."""
    if isinstance(value, tuple):
        if value[0] == "strings":
            _, shape, items = value
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(shape)
        _, onnx_type, _shape, bits = value
        ml = _ONNX_TO_ML.get(onnx_type)
        if _ml_dtypes is not None and ml is not None and hasattr(_ml_dtypes, ml):
            return bits.view(getattr(_ml_dtypes, ml))
        return bits
    if isinstance(value, list):
        return [from_native(v) for v in value]
    if isinstance(value, dict):
        return {k: from_native(v) for k, v in value.items()}
    return value
