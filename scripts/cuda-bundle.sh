#!/usr/bin/env bash
# Builds, on a machine with Rust, what checking the CUDA provider needs on a
# GPU machine without Rust: the CLI with the `cuda` feature, xtask and the
# CUDA-vs-CPU test binary, stripped, in target/cuda-bundle/bin, and the ONNX
# node tests compressed (about 40 MB in all). On the GPU machine, from a
# copy of this repository with target/cuda-bundle in it, run
# `bash scripts/cuda-bundle.sh run`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/cuda-bundle/bin

if [ "${1:-build}" = "run" ]; then
    export OXRT_WORKSPACE="$PWD"
    nodes=target/onnx-node-tests/1.22.0
    if [ ! -d "$nodes/node" ]; then
        mkdir -p "$nodes" && tar xzf target/cuda-bundle/node-tests.tar.gz -C "$nodes"
    fi
    echo "== oxrt providers"
    "$out/oxrt" providers
    echo "== CUDA vs CPU, every operator family"
    "$out/vs_cpu" --ignored --nocapture
    echo "== ONNX node tests on cuda"
    "$out/xtask" conformance --provider cuda --no-models || true
    echo "== example CNN on cuda"
    "$out/oxrt" run examples/models/cnn.onnx --input image=examples/models/cnn.in.image.npy --provider cuda --profile "${OUT:-/tmp}/cuda-trace.json"
    exit 0
fi

rm -rf "$out" && mkdir -p "$out"
cargo build --release -p oxrt-cli --features cuda
cargo build --release -p xtask
test_bin=$(cargo test --release -p oxrt-provider-cuda --test vs_cpu --no-run --message-format=json \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vs_cpu":
        print(m["executable"])')
cp target/release/oxrt target/release/xtask "$test_bin" "$out/"
mv "$out/$(basename "$test_bin")" "$out/vs_cpu"
strip "$out"/*
if [ ! -d target/onnx-node-tests/1.22.0/node ]; then
    echo "no node tests under target/onnx-node-tests: run 'cargo xtask conformance' once first" >&2
    exit 1
fi
tar czf target/cuda-bundle/node-tests.tar.gz -C target/onnx-node-tests/1.22.0 node
du -sh "$out"/* target/cuda-bundle/node-tests.tar.gz
