"""Shared fixtures: the repository's example models and small generated ones."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
MNIST = REPO / "examples" / "mnist"
MODELS = REPO / "examples" / "models"


@pytest.fixture(scope="session")
def mnist_path() -> str:
    return str(MNIST / "model.onnx")


@pytest.fixture(scope="session")
def mnist_images() -> np.ndarray:
    return np.load(MNIST / "test_images.npy").astype(np.float32)


@pytest.fixture(scope="session")
def mnist_labels() -> np.ndarray:
    return np.load(MNIST / "test_labels.npy")


def identity_model(elem_type: int, shape=(2, 3), opset: int = 21) -> bytes:
    """A one-node Identity model over one element type, serialized."""
    from onnx import TensorProto, helper

    del TensorProto
    x = helper.make_tensor_value_info("x", elem_type, list(shape))
    y = helper.make_tensor_value_info("y", elem_type, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
