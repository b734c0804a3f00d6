"""The onnxruntime-compatible surface: sessions, options, metadata, values."""

from __future__ import annotations

import json
import os
import pathlib
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import oxrt as ort
from conftest import MNIST, MODELS, identity_model

onnxruntime = pytest.importorskip("onnxruntime")


def test_inputs_outputs_and_metadata(mnist_path):
    sess = ort.InferenceSession(mnist_path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 1, 8, 8])
    assert (out.name, out.type, out.shape) == ("logits", "tensor(float)", ["batch", 10])
    ref = onnxruntime.InferenceSession(mnist_path, providers=["CPUExecutionProvider"])
    for ours, theirs in zip(sess.get_inputs() + sess.get_outputs(), ref.get_inputs() + ref.get_outputs()):
        assert (ours.name, ours.type, ours.shape) == (theirs.name, theirs.type, theirs.shape)
    meta, ref_meta = sess.get_modelmeta(), ref.get_modelmeta()
    for field in ["producer_name", "graph_name", "domain", "description", "graph_description", "version"]:
        assert getattr(meta, field) == getattr(ref_meta, field), field
    assert meta.custom_metadata_map == ref_meta.custom_metadata_map
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_overridable_initializers() == []


def test_custom_metadata_and_descriptions():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], doc_string="graph doc")
    model = helper.make_model(graph, producer_name="p", doc_string="model doc", model_version=7, domain="ai.example")
    helper.set_model_props(model, {"author": "me", "license": "mit"})
    data = model.SerializeToString()
    meta = ort.InferenceSession(data).get_modelmeta()
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta()
    assert (meta.producer_name, meta.graph_name, meta.domain, meta.version) == ("p", "g", "ai.example", 7)
    assert (meta.description, meta.graph_description) == ("model doc", "graph doc")
    assert meta.custom_metadata_map == ref.custom_metadata_map == {"author": "me", "license": "mit"}


def test_mnist_matches_onnxruntime_and_labels(mnist_path, mnist_images, mnist_labels):
    sess = ort.InferenceSession(mnist_path, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": mnist_images})[0]
    ref = onnxruntime.InferenceSession(mnist_path, providers=["CPUExecutionProvider"]).run(None, {"input": mnist_images})[0]
    assert logits.shape == (360, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    stored = np.load(MNIST / "reference_logits.npy")
    np.testing.assert_allclose(logits, stored, rtol=1e-5, atol=1e-5)
    assert int((logits.argmax(1) == mnist_labels).sum()) == 351


def test_outputs_are_handed_to_numpy_without_a_copy(mnist_path, mnist_images):
    sess = ort.InferenceSession(mnist_path)
    logits = sess.run(["logits"], {"input": mnist_images[:4]})[0]
    # the array views the buffer the runtime filled (owned by a base array)
    assert not logits.flags["OWNDATA"]
    assert logits.base is not None and logits.base.size == logits.size
    assert logits.flags["C_CONTIGUOUS"] and logits.flags["WRITEABLE"]


def test_model_from_bytes_and_pathlike(mnist_path, mnist_images):
    by_path = ort.InferenceSession(pathlib.Path(mnist_path)).run(None, {"input": mnist_images[:3]})[0]
    with open(mnist_path, "rb") as f:
        by_bytes = ort.InferenceSession(f.read()).run(None, {"input": mnist_images[:3]})[0]
    np.testing.assert_array_equal(by_path, by_bytes)


def test_non_contiguous_inputs_are_read_in_logical_order(mnist_path, mnist_images):
    sess = ort.InferenceSession(mnist_path)
    batch = mnist_images[:6]
    flipped = np.ascontiguousarray(batch[:, :, :, ::-1])
    view = flipped[:, :, :, ::-1]  # negative strides, same values as batch
    assert not view.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(sess.run(None, {"input": view})[0], sess.run(None, {"input": batch})[0])
    strided = np.ascontiguousarray(np.repeat(batch, 2, axis=0))[::2]
    np.testing.assert_array_equal(sess.run(None, {"input": strided})[0], sess.run(None, {"input": batch})[0])


@pytest.mark.parametrize(
    "level",
    [
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ],
)
def test_every_optimization_level_and_threading_option_agrees(level):
    model = str(MODELS / "bert_encoder.onnx")
    feed = {
        "hidden": np.load(MODELS / "bert_encoder.in.hidden.npy"),
        "mask": np.load(MODELS / "bert_encoder.in.mask.npy"),
    }
    expected = np.load(MODELS / "bert_encoder.out.output.npy")
    for mode, intra, inter in [(ort.ExecutionMode.ORT_SEQUENTIAL, 1, 0), (ort.ExecutionMode.ORT_PARALLEL, 2, 2)]:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.execution_mode = mode
        opts.intra_op_num_threads = intra
        opts.inter_op_num_threads = inter
        (out,) = ort.InferenceSession(model, sess_options=opts).run(None, feed)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_optimized_model_filepath_writes_a_model_that_runs(tmp_path, mnist_path, mnist_images):
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    expected = ort.InferenceSession(mnist_path, sess_options=opts).run(None, {"input": mnist_images[:8]})[0]
    saved = onnx.load(str(tmp_path / "opt.onnx"))
    original = onnx.load(mnist_path)
    # fused nodes without a standard form are in the `oxrt` domain
    assert len(saved.graph.node) < len(original.graph.node)
    assert any(n.domain == "oxrt" for n in saved.graph.node)
    reloaded = ort.InferenceSession(str(tmp_path / "opt.onnx"))
    np.testing.assert_allclose(reloaded.run(None, {"input": mnist_images[:8]})[0], expected, rtol=1e-5, atol=1e-5)


def test_profiling_writes_a_chrome_trace(tmp_path, mnist_path, mnist_images):
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = ort.InferenceSession(mnist_path, sess_options=opts)
    sess.run(None, {"input": mnist_images[:2]})
    path = sess.end_profiling()
    assert path.startswith(str(tmp_path / "prof")) and os.path.isfile(path)
    trace = json.load(open(path))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    assert any(e.get("name") for e in events)


def test_output_names_select_and_order():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("neg", "abs")]
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["neg"]), helper.make_node("Abs", ["x"], ["abs"])], "g", [x], outs
    )
    sess = ort.InferenceSession(helper.make_model(graph).SerializeToString())
    data = np.array([-1.0, 2.0, -3.0], np.float32)
    a, n = sess.run(["abs", "neg"], {"x": data})
    np.testing.assert_array_equal(a, np.abs(data))
    np.testing.assert_array_equal(n, -data)
    assert len(sess.run(None, {"x": data})) == 2


@pytest.mark.parametrize(
    "elem_type,values",
    [
        (TensorProto.FLOAT, np.arange(6, dtype=np.float32).reshape(2, 3) / 3),
        (TensorProto.DOUBLE, np.arange(6, dtype=np.float64).reshape(2, 3) / 3),
        (TensorProto.FLOAT16, (np.arange(6).reshape(2, 3) / 3).astype(np.float16)),
        (TensorProto.INT8, np.array([[-128, 0, 127], [1, 2, 3]], np.int8)),
        (TensorProto.UINT8, np.array([[0, 255, 7], [1, 2, 3]], np.uint8)),
        (TensorProto.INT16, np.array([[-5, 0, 5], [1, 2, 3]], np.int16)),
        (TensorProto.UINT16, np.array([[5, 0, 65535], [1, 2, 3]], np.uint16)),
        (TensorProto.INT32, np.array([[-5, 0, 5], [1, 2, 3]], np.int32)),
        (TensorProto.UINT32, np.array([[5, 0, 2**32 - 1], [1, 2, 3]], np.uint32)),
        (TensorProto.INT64, np.array([[-(2**40), 0, 5], [1, 2, 3]], np.int64)),
        (TensorProto.UINT64, np.array([[2**63, 0, 5], [1, 2, 3]], np.uint64)),
        (TensorProto.BOOL, np.array([[True, False, True], [False, False, True]])),
        (TensorProto.COMPLEX64, (np.arange(6).reshape(2, 3) + 1j).astype(np.complex64)),
        (TensorProto.COMPLEX128, (np.arange(6).reshape(2, 3) - 2j).astype(np.complex128)),
    ],
)
def test_numeric_element_types_round_trip(elem_type, values):
    sess = ort.InferenceSession(identity_model(elem_type))
    (out,) = sess.run(None, {"x": values})
    assert out.dtype == values.dtype and out.shape == values.shape
    np.testing.assert_array_equal(out, values)


def test_strings_round_trip_as_object_arrays():
    sess = ort.InferenceSession(identity_model(TensorProto.STRING))
    values = np.array([["a", "bé", ""], ["x", "y", "zz"]], dtype=object)
    (out,) = sess.run(None, {"x": values})
    assert out.dtype == object and out.shape == (2, 3)
    assert out.tolist() == values.tolist()
    (out,) = sess.run(None, {"x": np.array([["a", "b", "c"], ["d", "e", "f"]])})  # numpy unicode
    assert out.tolist() == [["a", "b", "c"], ["d", "e", "f"]]


def test_bfloat16_and_float8_use_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for elem_type, dtype in [
        (TensorProto.BFLOAT16, ml_dtypes.bfloat16),
        (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
        (TensorProto.INT4, ml_dtypes.int4),
    ]:
        values = np.array([[1, -2, 3], [0, 4, -1]], dtype=np.float32).astype(dtype)
        (out,) = ort.InferenceSession(identity_model(elem_type, opset=21)).run(None, {"x": values})
        assert out.dtype == values.dtype
        np.testing.assert_array_equal(out.astype(np.float32), values.astype(np.float32))


def test_sequences_go_in_and_out_as_lists():
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    out_seq = helper.make_tensor_sequence_value_info("s2", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("SequenceAt", ["s", "i"], ["y"]),
            helper.make_node("SequenceInsert", ["s", "y"], ["s2"]),
        ],
        "g",
        [seq, i],
        [y, out_seq],
    )
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert sess.get_inputs()[0].type == "seq(tensor(float))"
    items = [np.ones((2,), np.float32), np.arange(3, dtype=np.float32)]
    y_out, s_out = sess.run(None, {"s": items, "i": np.array(1, np.int64)})
    np.testing.assert_array_equal(y_out, items[1])
    assert isinstance(s_out, list) and len(s_out) == 3
    np.testing.assert_array_equal(s_out[2], items[1])


def test_optional_inputs_take_none():
    opt = helper.make_value_info(
        "o", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    )
    has = helper.make_tensor_value_info("has", TensorProto.BOOL, [])
    graph = helper.make_graph([helper.make_node("OptionalHasElement", ["o"], ["has"])], "g", [opt], [has])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    assert sess.get_inputs()[0].type == "optional(tensor(float))"
    assert bool(sess.run(None, {"o": None})[0]) is False
    assert bool(sess.run(None, {"o": np.zeros(2, np.float32)})[0]) is True


def test_providers_available_here():
    available = ort.get_available_providers()
    assert available[-1] == "CPUExecutionProvider"
    assert "FpgaSimExecutionProvider" in available
    assert ort.get_device() in ("CPU", "GPU")
    assert ort.get_device() == ("GPU" if "CUDAExecutionProvider" in available else "CPU")
    assert set(available) <= set(ort.get_all_providers())


def test_fpga_sim_takes_nodes_with_options(mnist_path, mnist_images):
    sess = ort.InferenceSession(
        mnist_path, providers=[("FpgaSimExecutionProvider", {"mac_units": "512"}), "CPUExecutionProvider"]
    )
    assert sess.get_providers() == ["FpgaSimExecutionProvider", "CPUExecutionProvider"]
    assert sess.get_provider_options()["FpgaSimExecutionProvider"] == {"mac_units": "512"}
    out = sess.run(None, {"input": mnist_images[:16]})[0]
    ref = ort.InferenceSession(mnist_path).run(None, {"input": mnist_images[:16]})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_cuda_falls_back_to_cpu_with_a_warning_when_unavailable(mnist_path, mnist_images):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA device is present: nothing falls back")
    with pytest.warns(UserWarning, match="CUDAExecutionProvider is not available"):
        sess = ort.InferenceSession(mnist_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ort.InferenceSession(mnist_path, sess_options=opts, providers=["CUDAExecutionProvider"])
    np.testing.assert_array_equal(
        sess.run(None, {"input": mnist_images[:2]})[0],
        ort.InferenceSession(mnist_path).run(None, {"input": mnist_images[:2]})[0],
    )


def test_provider_library_by_path(mnist_path, mnist_images):
    # cargo xtask pytest builds it and says where
    lib = pathlib.Path(os.environ.get("OXRT_FPGA_SIM_LIBRARY", MNIST.parents[1] / "target" / "release" / "liboxrt_provider_fpga_sim.so"))
    if not lib.is_file():
        pytest.skip(f"{lib} is not built (cargo build --release -p oxrt-provider-fpga-sim)")
    sess = ort.InferenceSession(mnist_path, providers=[(str(lib), {"mac_units": "256"})])
    assert sess.get_providers()[-1] == "CPUExecutionProvider" and len(sess.get_providers()) == 2
    np.testing.assert_allclose(
        sess.run(None, {"input": mnist_images[:4]})[0],
        ort.InferenceSession(mnist_path).run(None, {"input": mnist_images[:4]})[0],
        rtol=1e-4,
        atol=1e-4,
    )
