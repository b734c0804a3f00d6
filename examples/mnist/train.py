"""Train the oxrt example digit classifier and export it to ONNX.

A small CNN (Conv-Relu-MaxPool x2, Flatten, Gemm) trained with plain NumPy
on the 8x8 handwritten digits data set that scikit-learn ships inside its
package (no download). Writes, next to this script:

  model.onnx             the trained model (opset 13, input "input" [batch,1,8,8])
  samples.npy            5 held-out digits, float32 [5,1,8,8]
  sample_labels.npy      their labels, int64 [5]
  test_images.npy        the held-out test set, float32 [360,1,8,8]
  test_labels.npy        its labels, int64 [360]
  reference_logits.npy   onnxruntime's outputs on test_images (float32 [360,10])

Reproduce: python3 -m pip install numpy scikit-learn onnx onnxruntime
           python3 examples/mnist/train.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0)


def im2col(x):
    """x [N,C,H,W] -> cols [N, C*9, H*W] for a 3x3 kernel, stride 1, pad 1."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N,C,H,W,3,3
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * 9, h * w)


def col2im(cols, shape):
    n, c, h, w = shape
    cols = cols.reshape(n, c, 3, 3, h, w)
    xp = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for i in range(3):
        for j in range(3):
            xp[:, :, i : i + h, j : j + w] += cols[:, :, i, j]
    return xp[:, :, 1:-1, 1:-1]


class Conv:
    def __init__(self, cin, cout):
        self.w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        self.b = np.zeros(cout, np.float32)

    def forward(self, x):
        self.shape = x.shape
        self.cols = im2col(x)
        n, _, h, w = x.shape
        out = np.einsum("mk,nkp->nmp", self.w.reshape(len(self.w), -1), self.cols)
        return out.reshape(n, -1, h, w) + self.b[None, :, None, None]

    def backward(self, dout):
        n, m, h, w = dout.shape
        d = dout.reshape(n, m, h * w)
        self.dw = np.einsum("nmp,nkp->mk", d, self.cols).reshape(self.w.shape)
        self.db = d.sum(axis=(0, 2))
        dcols = np.einsum("mk,nmp->nkp", self.w.reshape(m, -1), d)
        return col2im(dcols, self.shape)

    def params(self):
        return [(self.w, "dw"), (self.b, "db")]


class Relu:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, d):
        return d * self.mask

    def params(self):
        return []


class MaxPool2:
    def forward(self, x):
        n, c, h, w = x.shape
        r = x.reshape(n, c, h // 2, 2, w // 2, 2)
        out = r.max(axis=(3, 5))
        self.mask = r == out[:, :, :, None, :, None]
        self.shape = x.shape
        return out

    def backward(self, d):
        g = self.mask * d[:, :, :, None, :, None]
        return g.reshape(self.shape)

    def params(self):
        return []


class Dense:
    def __init__(self, nin, nout):
        self.w = rng.normal(0, np.sqrt(1 / nin), (nout, nin)).astype(np.float32)
        self.b = np.zeros(nout, np.float32)

    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(len(x), -1)
        return self.x @ self.w.T + self.b

    def backward(self, d):
        self.dw = d.T @ self.x
        self.db = d.sum(axis=0)
        return (d @ self.w).reshape(self.shape)

    def params(self):
        return [(self.w, "dw"), (self.b, "db")]


def main():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=360, random_state=0, stratify=y
    )
    conv1, conv2, dense = Conv(1, 8), Conv(8, 16), Dense(64, 10)
    layers = [conv1, Relu(), MaxPool2(), conv2, Relu(), MaxPool2(), dense]
    adam = {}
    lr, b1, b2, step = 0.005, 0.9, 0.999, 0
    for epoch in range(40):
        order = rng.permutation(len(x_train))
        for s in range(0, len(order), 32):
            idx = order[s : s + 32]
            h = x_train[idx]
            for layer in layers:
                h = layer.forward(h)
            p = np.exp(h - h.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y_train[idx]] -= 1
            d = p / len(idx)
            for layer in reversed(layers):
                d = layer.backward(d)
            step += 1
            for layer in layers:
                for param, gname in layer.params():
                    g = getattr(layer, gname)
                    m, v = adam.get(id(param), (0.0, 0.0))
                    m = b1 * m + (1 - b1) * g
                    v = b2 * v + (1 - b2) * g * g
                    adam[id(param)] = (m, v)
                    mh, vh = m / (1 - b1**step), v / (1 - b2**step)
                    param -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        h = x_test
        for layer in layers:
            h = layer.forward(h)
        acc = (h.argmax(axis=1) == y_test).mean()
        print(f"epoch {epoch + 1:2d}: held-out accuracy {acc:.4f}")

    init = [
        numpy_helper.from_array(conv1.w, "conv1.weight"),
        numpy_helper.from_array(conv1.b, "conv1.bias"),
        numpy_helper.from_array(conv2.w, "conv2.weight"),
        numpy_helper.from_array(conv2.b, "conv2.bias"),
        numpy_helper.from_array(dense.w, "fc.weight"),
        numpy_helper.from_array(dense.b, "fc.bias"),
    ]
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], "conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], "pool1", **pool),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], "conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], "relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], "pool2", **pool),
        helper.make_node("Flatten", ["p2"], ["flat"], "flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], "fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        init,
    )
    model = helper.make_model(graph, producer_name="oxrt-examples", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.doc_string = "8x8 digit classifier (scikit-learn digits), logits for classes 0-9"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(HERE, "model.onnx"))

    import onnxruntime as ort

    sess = ort.InferenceSession(os.path.join(HERE, "model.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x_test})[0]
    print(f"onnxruntime held-out accuracy: {(ref.argmax(axis=1) == y_test).mean():.4f}")
    np.save(os.path.join(HERE, "test_images.npy"), x_test)
    np.save(os.path.join(HERE, "test_labels.npy"), y_test)
    np.save(os.path.join(HERE, "reference_logits.npy"), ref.astype(np.float32))
    np.save(os.path.join(HERE, "samples.npy"), x_test[:5])
    np.save(os.path.join(HERE, "sample_labels.npy"), y_test[:5])


if __name__ == "__main__":
    main()
