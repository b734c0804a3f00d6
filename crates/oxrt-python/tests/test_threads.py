"""Concurrent `run` calls from Python threads, with the GIL released while models run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import oxrt as ort


def test_concurrent_runs_match_sequential(mnist_path, mnist_images):
    sess = ort.InferenceSession(mnist_path)
    batches = [mnist_images[i * 20 : (i + 1) * 20] for i in range(16)]
    expected = [sess.run(None, {"input": b})[0] for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda b: sess.run(None, {"input": b})[0], batches))
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)


def _matmul_chain(n: int = 384, depth: int = 24) -> bytes:
    """`depth` MatMuls of an n x n activation with one n x n weight."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"]) for i in range(depth)]
    nodes.append(helper.make_node("Identity", [f"h{depth}"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [w],
    )
    return helper.make_model(graph).SerializeToString()


def test_the_gil_is_released_while_a_model_runs():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(_matmul_chain(), sess_options=opts)
    x = np.random.default_rng(1).standard_normal((384, 384)).astype(np.float32)
    sess.run(None, {"x": x})  # warm up
    running = threading.Event()
    finished = threading.Event()

    def worker():
        running.set()
        for _ in range(3):
            sess.run(None, {"x": x})
        finished.set()

    t = threading.Thread(target=worker)
    t.start()
    running.wait()
    ticks = 0
    while not finished.is_set():
        ticks += 1  # only advances while the worker does not hold the GIL
    t.join()
    # Three runs of 24 384^3 MatMuls (4 GFLOP, a tenth of a second or more):
    # were the GIL held, this loop would only move while the worker is in
    # its short Python parts (argument conversion).
    assert ticks > 20_000, ticks
