"""Errors raise Python exceptions carrying the Rust errors' messages."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import oxrt as ort
from oxrt.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, NoSuchFile, NotImplemented


@pytest.fixture(scope="module")
def sess(mnist_path):
    return ort.InferenceSession(mnist_path)


def test_wrong_input_name(sess, mnist_images):
    with pytest.raises(InvalidArgument, match=r"^missing input 'input': the model needs inputs \[input\]$"):
        sess.run(None, {"image": mnist_images[:1]})
    with pytest.raises(InvalidArgument, match=r"^unknown input 'extra': the model's inputs are \[input\]$"):
        sess.run(None, {"input": mnist_images[:1], "extra": mnist_images[:1]})


def test_wrong_dtype(sess, mnist_images):
    with pytest.raises(InvalidArgument, match=r"^input 'input': expected element type float, got double$"):
        sess.run(None, {"input": mnist_images[:1].astype(np.float64)})


def test_wrong_shape(sess, mnist_images):
    with pytest.raises(
        InvalidArgument, match=r"^input 'input': expected shape \[batch, 1, 8, 8\], got \[1, 1, 8, 4\]$"
    ):
        sess.run(None, {"input": mnist_images[:1, :, :, :4]})


def test_unknown_output_name(sess, mnist_images):
    with pytest.raises(InvalidArgument, match=r"unknown output 'probs': the model's outputs are \[logits\]"):
        sess.run(["probs"], {"input": mnist_images[:1]})


def test_feed_must_be_arrays(sess):
    with pytest.raises(TypeError, match="input_feed must be a dict"):
        sess.run(None, [np.zeros((1, 1, 8, 8), np.float32)])
    with pytest.raises(InvalidArgument, match="numpy dtype .* has no ONNX element type"):
        sess.run(None, {"input": np.zeros((1, 1, 8, 8), dtype="datetime64[s]")})


def test_load_failures(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(NoSuchFile, match=f"^cannot read {missing}: "):
        ort.InferenceSession(str(missing))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ort.InvalidProtobuf, match="is empty \\(0 bytes\\): not an ONNX model"):
        ort.InferenceSession(str(empty))
    with pytest.raises(ort.InvalidProtobuf, match="^<memory> is not a valid ONNX model"):
        ort.InferenceSession(b"\xff\xff\xff not protobuf")
    with pytest.raises(TypeError, match="give a path or the model's bytes"):
        ort.InferenceSession(42)


def test_invalid_graph_names_the_node():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"], name="r1")], "g", [x], [y])
    with pytest.raises(InvalidGraph, match="r1"):
        ort.InferenceSession(helper.make_model(graph).SerializeToString())


def test_unknown_operator_is_not_implemented():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="n1", domain="com.example")], "g", [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.example", 1)]
    )
    with pytest.raises(NotImplemented, match="NoSuchOp.*n1"):
        ort.InferenceSession(model.SerializeToString())


def test_a_failing_kernel_names_its_node():
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, [3])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Gather", ["data", "idx"], ["y"], name="g1")], "g", [data, idx], [y])
    sess = ort.InferenceSession(helper.make_model(graph).SerializeToString())
    with pytest.raises(ort.OxrtError, match="node 'g1' \\(Gather\\)") as info:
        sess.run(None, {"data": np.zeros(3, np.float32), "idx": np.array([7], np.int64)})
    assert isinstance(info.value, (Fail, InvalidArgument))


def test_unknown_provider_and_options():
    with pytest.raises(InvalidArgument, match="execution provider 'TpuExecutionProvider' is not available"):
        ort.InferenceSession(b"", providers=["TpuExecutionProvider"])
    with pytest.raises(ValueError, match="same length"):
        ort.InferenceSession(b"", providers=["CPUExecutionProvider"], provider_options=[{}, {}])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = 42
    with pytest.raises(ValueError, match="graph_optimization_level"):
        ort.InferenceSession(b"", sess_options=opts)


def test_missing_provider_library(tmp_path, mnist_path):
    with pytest.raises(ort.EPFail, match="libnothing.so"):
        ort.InferenceSession(mnist_path, providers=[str(tmp_path / "libnothing.so")])


def test_exceptions_are_runtime_errors():
    for cls in (Fail, InvalidArgument, NoSuchFile, InvalidGraph, NotImplemented, ort.EPFail, ort.InvalidProtobuf):
        assert issubclass(cls, ort.OxrtError) and issubclass(cls, RuntimeError)
