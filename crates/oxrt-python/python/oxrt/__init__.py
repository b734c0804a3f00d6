"""oxrt: an ONNX inference runtime written in Rust, with onnxruntime's Python API.

Scripts written for onnxruntime run unchanged with ``import oxrt as ort``::

    import oxrt as ort

    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    probs = sess.run(None, {name: image})[0]
"""

from __future__ import annotations

import enum
import os
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _oxrt
from ._oxrt import (  # noqa: F401
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    OxrtError,
)
from ._values import from_native, to_native

__version__: str = _oxrt.__version__

__all__ = [
    "InferenceSession",
    "SessionOptions",
    "RunOptions",
    "GraphOptimizationLevel",
    "ExecutionMode",
    "NodeArg",
    "ModelMetadata",
    "get_available_providers",
    "get_all_providers",
    "get_device",
    "get_version_string",
    "set_default_logger_severity",
    "OxrtError",
    "Fail",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "NoSuchFile",
    "EPFail",
]

# oxrt's provider names <-> onnxruntime's
_ORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "fpga-sim": "FpgaSimExecutionProvider",
}
_OXRT_NAMES = {v: k for k, v in _ORT_NAMES.items()}


class GraphOptimizationLevel(enum.IntEnum):
    """How much the graph is rewritten at session creation (onnxruntime's values)."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


_LEVELS = {
    GraphOptimizationLevel.ORT_DISABLE_ALL: "disabled",
    GraphOptimizationLevel.ORT_ENABLE_BASIC: "basic",
    GraphOptimizationLevel.ORT_ENABLE_EXTENDED: "extended",
    # oxrt's `all` is where CPU weight layouts are chosen
    GraphOptimizationLevel.ORT_ENABLE_LAYOUT: "all",
    GraphOptimizationLevel.ORT_ENABLE_ALL: "all",
}


class ExecutionMode(enum.IntEnum):
    """Nodes one after another, or independent branches at once."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


_default_severity = 2


def set_default_logger_severity(severity: int) -> None:
    """Sets the severity below which oxrt's warnings are silenced (0 verbose .. 4 fatal; default 2)."""
    global _default_severity
    if severity not in range(5):
        raise ValueError(f"logger severity must be 0..4, got {severity}")
    _default_severity = severity


class SessionOptions:
    """Options of an :class:`InferenceSession`, as in onnxruntime."""

    def __init__(self) -> None:
        self.graph_optimization_level: GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads: int = 0
        self.inter_op_num_threads: int = 0
        self.execution_mode: ExecutionMode = ExecutionMode.ORT_SEQUENTIAL
        self.enable_profiling: bool = False
        self.profile_file_prefix: str = "onnxruntime_profile_"
        self.optimized_model_filepath: str = ""
        self.log_severity_level: int = -1
        self.log_verbosity_level: int = 0
        self.logid: str = ""

    def _severity(self) -> int:
        return _default_severity if self.log_severity_level < 0 else self.log_severity_level

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"SessionOptions({fields})"


class RunOptions:
    """Options of one ``run`` call. Recorded for compatibility; a run cannot
    be interrupted, so ``terminate`` has no effect on a run in progress."""

    def __init__(self) -> None:
        self.log_severity_level: int = -1
        self.log_verbosity_level: int = 0
        self.logid: str = ""
        self.run_tag: str = ""
        self.terminate: bool = False


class NodeArg:
    """A graph input or output: ``name``, ``type`` (e.g. ``tensor(float)``) and
    ``shape`` (ints, symbolic dim names as strings, None for unknown dims)."""

    def __init__(self, name: str, type: str, shape: Optional[List[Union[int, str, None]]]) -> None:
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class ModelMetadata:
    """What the model says about itself."""

    def __init__(self, meta: Dict[str, Any]) -> None:
        self.producer_name: str = meta["producer_name"]
        self.graph_name: str = meta["graph_name"]
        self.domain: str = meta["domain"]
        self.description: str = meta["description"]
        self.graph_description: str = meta["graph_description"]
        self.version: int = meta["version"]
        self.custom_metadata_map: Dict[str, str] = dict(meta["custom_metadata_map"])

    def __repr__(self) -> str:
        return f"ModelMetadata(producer_name={self.producer_name!r}, graph_name={self.graph_name!r}, version={self.version})"


def get_all_providers() -> List[str]:
    """Every provider name this package knows, available here or not."""
    return ["CUDAExecutionProvider", "FpgaSimExecutionProvider", "CPUExecutionProvider"]


def get_available_providers() -> List[str]:
    """Providers this build can create on this machine, CPU last."""
    names = [_ORT_NAMES.get(name, name) for name, _kind in _oxrt.available_providers()]
    return [n for n in names if n != "CPUExecutionProvider"] + ["CPUExecutionProvider"]


def get_device() -> str:
    """``GPU`` when the CUDA provider can run here, else ``CPU``."""
    return "GPU" if "CUDAExecutionProvider" in get_available_providers() else "CPU"


def get_version_string() -> str:
    """The package version."""
    return __version__


ProviderSpec = Union[str, Tuple[str, Dict[str, Any]]]


def _provider_requests(
    providers: Optional[Sequence[ProviderSpec]],
    provider_options: Optional[Sequence[Dict[str, Any]]],
    severity: int,
) -> Tuple[List[Tuple[str, List[Tuple[str, str]]]], List[str]]:
    """Native provider requests, and the ORT names of those left out (unavailable here)."""
    if not providers:
        return [("cpu", [])], []
    if provider_options is not None and len(provider_options) != len(providers):
        raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
    unavailable = dict(_oxrt.unavailable_providers())
    requests: List[Tuple[str, List[Tuple[str, str]]]] = []
    left_out: List[str] = []
    for i, spec in enumerate(providers):
        if isinstance(spec, (tuple, list)):
            name, options = spec[0], dict(spec[1] or {})
        else:
            name, options = spec, {}
        if provider_options is not None:
            options.update(provider_options[i] or {})
        name = os.fspath(name)
        native = _OXRT_NAMES.get(name, name)
        if native == "cuda":
            device = int(options.pop("device_id", 0))
            if options and severity <= 2:
                warnings.warn(
                    f"CUDAExecutionProvider options {sorted(options)} are not used by oxrt", stacklevel=3
                )
            if "cuda" in unavailable:
                left_out.append(name)
                if severity <= 2:
                    warnings.warn(
                        f"{name} is not available ({unavailable['cuda']}); its nodes run on the other providers",
                        stacklevel=3,
                    )
            requests.append((f"cuda:{device}", []))
            continue
        requests.append((native, [(str(k), str(v)) for k, v in options.items()]))
    return requests, left_out


class InferenceSession:
    """Loads an ONNX model (a path or its bytes) and runs it, as onnxruntime's class does.

    ``providers`` lists provider names in priority order, each a string or a
    ``(name, options)`` pair: ``CPUExecutionProvider``,
    ``CUDAExecutionProvider`` (option ``device_id``),
    ``FpgaSimExecutionProvider``, or the path of a provider shared library.
    Nodes no listed provider takes run on the CPU. A provider that cannot run
    on this machine (CUDA without a GPU) is left out with a warning.
    """

    def __init__(
        self,
        path_or_bytes: Union[str, bytes, "os.PathLike[str]"],
        sess_options: Optional[SessionOptions] = None,
        providers: Optional[Sequence[ProviderSpec]] = None,
        provider_options: Optional[Sequence[Dict[str, Any]]] = None,
        **kwargs: Any,
    ) -> None:
        options = sess_options if sess_options is not None else SessionOptions()
        self._sess_options = options
        if isinstance(path_or_bytes, (bytes, bytearray)):
            model: Any = bytes(path_or_bytes)
            self._model_path: Optional[str] = None
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            model = os.fspath(path_or_bytes)
            self._model_path = model
        else:
            raise TypeError(
                f"Unable to load from type '{type(path_or_bytes)}': give a path or the model's bytes"
            )
        requests, self._left_out = _provider_requests(providers, provider_options, options._severity())
        self._provider_options = {
            _ORT_NAMES.get(name.split(":")[0], name): dict(opts) for name, opts in requests
        }
        level = _LEVELS.get(options.graph_optimization_level)
        if level is None:
            raise ValueError(f"unknown graph_optimization_level {options.graph_optimization_level!r}")
        profile_path = None
        if options.enable_profiling:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            profile_path = f"{options.profile_file_prefix}_{stamp}.json"
        self._sess = _oxrt.Session(
            model,
            requests,
            level,
            int(options.intra_op_num_threads),
            int(options.inter_op_num_threads),
            options.execution_mode == ExecutionMode.ORT_PARALLEL,
            profile_path,
        )
        if options.optimized_model_filepath:
            self._sess.save_optimized_model(os.fspath(options.optimized_model_filepath))
        self._inputs = [NodeArg(*i) for i in self._sess.inputs()]
        self._outputs = [NodeArg(*o) for o in self._sess.outputs()]
        self._input_types = {i.name: i.type for i in self._inputs}
        self._output_names = [o.name for o in self._outputs]
        for o in self._sess.overridable_initializers():
            self._input_types[o[0]] = o[1]

    def get_inputs(self) -> List[NodeArg]:
        """The inputs to feed."""
        return list(self._inputs)

    def get_outputs(self) -> List[NodeArg]:
        """The outputs ``run`` can return."""
        return list(self._outputs)

    def get_overridable_initializers(self) -> List[NodeArg]:
        """Initializers that are also graph inputs: feeding one overrides its value."""
        return [NodeArg(*i) for i in self._sess.overridable_initializers()]

    def get_modelmeta(self) -> ModelMetadata:
        """Producer, graph name, domain, description, version and custom metadata."""
        return ModelMetadata(self._sess.metadata())

    def get_providers(self) -> List[str]:
        """The providers the session uses, in priority order (CPU last)."""
        names: List[str] = []
        for p in self._sess.providers():
            name = _ORT_NAMES.get(p, p)
            if name not in names:
                names.append(name)
        return names

    def get_provider_options(self) -> Dict[str, Dict[str, str]]:
        """The options each requested provider was created with."""
        return {k: dict(v) for k, v in self._provider_options.items() if k in self.get_providers()}

    def get_session_options(self) -> SessionOptions:
        """The options the session was created with."""
        return self._sess_options

    def run(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Dict[str, Any],
        run_options: Optional[RunOptions] = None,
    ) -> List[Any]:
        """Runs the model; returns the outputs named in ``output_names`` (all when None), in that order."""
        names = list(output_names) if output_names else list(self._output_names)
        for n in names:
            if n not in self._input_types and n not in self._output_names:
                raise InvalidArgument(
                    f"unknown output '{n}': the model's outputs are [{', '.join(self._output_names)}]"
                )
            if n not in self._output_names:
                raise InvalidArgument(
                    f"'{n}' is an input, not an output: the model's outputs are [{', '.join(self._output_names)}]"
                )
        if not isinstance(input_feed, dict):
            raise TypeError(f"input_feed must be a dict of input name to value, got {type(input_feed).__name__}")
        feed = [(str(k), to_native(v, self._input_types.get(k))) for k, v in input_feed.items()]
        results = dict(self._sess.run(feed))
        return [from_native(results[n]) for n in names]

    def end_profiling(self) -> str:
        """Writes the profile of the runs so far (``enable_profiling``) and returns its file name."""
        path = self._sess.end_profiling()
        return "" if path is None else os.fspath(path)
