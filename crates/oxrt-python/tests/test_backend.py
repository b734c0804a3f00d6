"""onnx's own backend test runner against oxrt: every ONNX node test, as a
second conformance check independent of `cargo xtask conformance`."""

from __future__ import annotations

import pathlib

import onnx.backend.test
import pytest

import oxrt.backend

EXPECTED_FAILURES = pathlib.Path(__file__).with_name("backend_expected_failures.txt")


def _expected_failures() -> list:
    lines = EXPECTED_FAILURES.read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


backend_test = onnx.backend.test.BackendTest(oxrt.backend, __name__)
# node tests only: the model zoo tests download models from the internet
backend_test.include(r"^test_.*_(cpu|cuda)$")
for pattern in _expected_failures():
    backend_test.xfail(pattern)
# Unseeded Bernoulli draws a fresh seed each run: its output matches the
# reference only by chance, so it can be neither expected to pass nor to fail.
backend_test.exclude(r"^test_bernoulli(_double)?(_expanded)?_(cpu|cuda)$")

globals().update({"OnnxBackendNodeModelTest": backend_test.test_cases["OnnxBackendNodeModelTest"]})


def test_the_runner_found_every_node_test():
    cases = [n for n in dir(backend_test.test_cases["OnnxBackendNodeModelTest"]) if n.startswith("test_")]
    assert len(cases) >= 1700, len(cases)


def test_supports_devices():
    assert oxrt.backend.supports_device("CPU")
    assert oxrt.backend.supports_device("CUDA") == ("CUDAExecutionProvider" in oxrt.get_available_providers())
    with pytest.raises(Exception):
        oxrt.backend.supports_device("TPU")
