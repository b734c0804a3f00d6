"""Times onnxruntime on the bundled example model, for comparison with
`cargo bench -p oxrt-benches -- mnist` (same inputs: all 0.5, batch 1 and 64,
one intra-op thread, all graph optimizations).

    python3 -m pip install numpy onnxruntime
    python3 benches/ort_example_model.py
"""

import os
import time

import numpy as np
import onnxruntime as ort

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "mnist", "model.onnx")

so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
for batch in (1, 64):
    x = np.full((batch, 1, 8, 8), 0.5, np.float32)
    for _ in range(200):
        session.run(None, {"input": x})
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    print(f"onnxruntime {ort.__version__} mnist_cnn batch {batch}: median {np.median(times) * 1e6:.1f} us")
