"""Times one model in onnxruntime for `cargo xtask bench --vs-ort`: the
inputs are the .npy files `cargo xtask bench` wrote (`input_<k>.npy` for
the k-th graph input), the session uses every graph optimization (ORT_ENABLE_ALL),
sequential execution, the given intra-op thread count and execution
provider (CPUExecutionProvider unless --provider says otherwise). Prints one JSON
object: {"version", "runs_ms": [...]}.

    python benches/ort_bench.py --model M.onnx --inputs DIR --threads 1 \
        --warmup 5 --iterations 20
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--provider", default="CPUExecutionProvider")
    args = p.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if args.provider not in ort.get_available_providers():
        raise SystemExit(f"onnxruntime here has no {args.provider}: {ort.get_available_providers()}")
    session = ort.InferenceSession(args.model, so, providers=[args.provider, "CPUExecutionProvider"])
    feeds = {}
    for k, i in enumerate(session.get_inputs()):
        feeds[i.name] = np.load(os.path.join(args.inputs, f"input_{k}.npy"))
    for _ in range(args.warmup):
        session.run(None, feeds)
    runs = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        session.run(None, feeds)
        runs.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"version": ort.__version__, "runs_ms": runs}))


if __name__ == "__main__":
    main()
