"""The digit-classifier walkthrough in Python, written against onnxruntime's API.

    pip install ./crates/oxrt-python
    python examples/mnist/mnist.py

Only the import names oxrt: with `import onnxruntime as ort` instead, the
script runs unchanged on onnxruntime and prints the same lines
(crates/oxrt-python/tests/test_example.py checks that).
"""

import pathlib

import numpy as np

import oxrt as ort

here = pathlib.Path(__file__).resolve().parent

options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
options.intra_op_num_threads = 1
sess = ort.InferenceSession(str(here / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"])

inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
print(f"input:  {inp.name} {inp.type} {inp.shape}")
print(f"output: {out.name} {out.type} {out.shape}")
print(f"producer: {sess.get_modelmeta().producer_name}, providers: {sess.get_providers()}")


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


samples = np.load(here / "samples.npy")
labels = np.load(here / "sample_labels.npy")
probs = softmax(sess.run(None, {inp.name: samples})[0])
for i, (p, label) in enumerate(zip(probs, labels)):
    print(f"sample {i}: predicted {p.argmax()} (p = {p.max():.3f}), label {label}")

images = np.load(here / "test_images.npy")
test_labels = np.load(here / "test_labels.npy")
(logits,) = sess.run([out.name], {inp.name: images})
correct = int((logits.argmax(axis=1) == test_labels).sum())
print(f"held-out accuracy: {correct}/{len(images)} = {100 * correct / len(images):.2f}%")
