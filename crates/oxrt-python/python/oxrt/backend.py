"""An ``onnx.backend.base.Backend`` running models on oxrt.

With it, onnx's own backend test runner checks oxrt::

    import onnx.backend.test
    import oxrt.backend

    tests = onnx.backend.test.BackendTest(oxrt.backend, __name__)
    globals().update(tests.include(r"^test_abs_").test_cases)

It needs the ``onnx`` package (``pip install oxrt[backend]``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from . import InferenceSession, SessionOptions, get_available_providers

_DEVICE_PROVIDERS = {
    DeviceType.CPU: ["CPUExecutionProvider"],
    DeviceType.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _providers(device: str) -> List[str]:
    return list(_DEVICE_PROVIDERS[Device(device).type])


class OxrtBackendRep(BackendRep):
    """A prepared model: an :class:`oxrt.InferenceSession`."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: Any, **kwargs: Any) -> Tuple[Any, ...]:
        """Runs on ``inputs``: a list in graph-input order, a dict by name, or one array."""
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) > len(self._input_names):
                raise ValueError(
                    f"{len(inputs)} inputs given, the model has {len(self._input_names)}: {self._input_names}"
                )
            feed = dict(zip(self._input_names, inputs))
        else:
            feed = {self._input_names[0]: inputs}
        outputs = self.session.run(None, feed)
        return namedtupledict("Outputs", self._output_names)(*outputs)


class OxrtBackend(Backend):
    """Prepares and runs ONNX models and single nodes with oxrt."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """CPU always; CUDA when the CUDA provider can run here."""
        kind = Device(device).type
        if kind == DeviceType.CPU:
            return True
        if kind == DeviceType.CUDA:
            return "CUDAExecutionProvider" in get_available_providers()
        return False

    @classmethod
    def prepare(
        cls, model: Union[onnx.ModelProto, bytes, str], device: str = "CPU", **kwargs: Any
    ) -> OxrtBackendRep:
        """Creates a session for ``model`` (a ModelProto, its bytes or a path) on ``device``."""
        options = SessionOptions()
        for key, value in kwargs.items():
            if hasattr(options, key):
                setattr(options, key, value)
        if isinstance(model, onnx.ModelProto):
            super().prepare(model, device, **kwargs)
            model = model.SerializeToString()
        session = InferenceSession(model, sess_options=options, providers=_providers(device))
        return OxrtBackendRep(session)

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> Tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Optional[Sequence[Tuple[np.dtype, Tuple[int, ...]]]] = None,
        **kwargs: Any,
    ) -> Optional[Tuple[Any, ...]]:
        """Runs one node on numpy inputs (in the node's input order)."""
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        names = [n for n in node.input if n]
        graph_inputs = [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.shape(a))
            for n, a in zip(names, arrays)
        ]
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, dict(zip(names, arrays)), device, **kwargs)


prepare = OxrtBackend.prepare
run_model = OxrtBackend.run_model
run_node = OxrtBackend.run_node
supports_device = OxrtBackend.supports_device
is_compatible = OxrtBackend.is_compatible
