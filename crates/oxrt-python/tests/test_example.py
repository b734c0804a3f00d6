"""The Python walkthrough (examples/mnist/mnist.py) is an onnxruntime script:
with its import switched to onnxruntime it prints exactly the same lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import MNIST

pytest.importorskip("onnxruntime")


def _run(source: str, tmp_path, name: str) -> str:
    path = tmp_path / name
    # the copy reads the data beside the original
    path.write_text(source.replace("pathlib.Path(__file__)", f"pathlib.Path({str(MNIST / name)!r})"))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    return done.stdout


def test_the_walkthrough_runs_unchanged_on_both_runtimes(tmp_path):
    source = (MNIST / "mnist.py").read_text()
    assert source.count("import oxrt as ort") == 1
    ours = _run(source, tmp_path, "with_oxrt.py")
    theirs = _run(source.replace("import oxrt as ort", "import onnxruntime as ort"), tmp_path, "with_ort.py")
    assert "held-out accuracy: 351/360 = 97.50%" in ours
    assert ours == theirs
