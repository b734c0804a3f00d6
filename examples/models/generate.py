"""Generates the test models in this folder, with random weights, and their
reference outputs from onnxruntime.

- bert_encoder.onnx: a BERT-style encoder written the way exporters write
  it (decomposed LayerNorm and erf-GELU, Q/K/V MatMul + Add, a scaled,
  masked attention, residual Adds, an inference Dropout), inputs
  `hidden` [batch, seq, H] and `mask` [batch, seq] (1 keeps a position).
- cnn.onnx: a small ResNet-style CNN (Conv + BatchNormalization + Relu,
  a residual Add, two parallel branches concatenated, global pooling and
  a Gemm), input `image` [batch, 3, 16, 16].

- mobilenet.onnx, gpt_decoder.onnx (with --only): a MobileNet v1 and a
  GPT-style decoder (pre-LayerNorm, causal mask, tanh GELU), for
  benchmarks.

Each model comes with its inputs as `<name>.in.<input>.npy` and
onnxruntime's outputs (no graph optimization) as `<name>.out.<output>.npy`. Sizes are arguments, so the same
script makes benchmark-sized models:

    python examples/models/generate.py --out examples/models
    python examples/models/generate.py --out target/models --hidden 768 \\
        --heads 12 --ffn 3072 --layers 4 --seq 128 --batch 1 --only bert

Needs numpy, onnx and onnxruntime (pip install numpy onnx onnxruntime).
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed):
        self.nodes = []
        self.inits = []
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base, array):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, base, shape, scale):
        return self.const(base, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type, inputs, outputs=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if outputs == 1 else outs


def layer_norm(b, x, h, eps=1e-12):
    """ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div / Mul / Add."""
    mean = b.op("ReduceMean", [x], axes=[-1], keepdims=1)
    d = b.op("Sub", [x, mean])
    sq = b.op("Pow", [d, b.const("two", np.float32(2.0))])
    var = b.op("ReduceMean", [sq], axes=[-1], keepdims=1)
    std = b.op("Sqrt", [b.op("Add", [var, b.const("eps", np.float32(eps))])])
    y = b.op("Div", [d, std])
    gamma = b.const("gamma", (1.0 + 0.1 * b.rng.standard_normal(h)).astype(np.float32))
    beta = b.const("beta", (0.1 * b.rng.standard_normal(h)).astype(np.float32))
    return b.op("Add", [b.op("Mul", [y, gamma]), beta])


def gelu(b, x):
    """x * 0.5 * (1 + erf(x / sqrt(2))), as PyTorch exports it."""
    e = b.op("Erf", [b.op("Div", [x, b.const("sqrt2", np.float32(np.sqrt(2.0)))])])
    one = b.op("Add", [e, b.const("one", np.float32(1.0))])
    return b.op("Mul", [b.op("Mul", [x, one]), b.const("half", np.float32(0.5))])


def linear(b, x, n_in, n_out):
    w = b.weight("w", (n_in, n_out), 1.0 / np.sqrt(n_in))
    bias = b.weight("b", (n_out,), 0.02)
    return b.op("Add", [b.op("MatMul", [x, w]), bias])


def bert(args):
    b = Builder(args.seed)
    h, heads, ffn = args.hidden, args.heads, args.ffn
    dh = h // heads
    # Mask [batch, seq] -> additive [batch, 1, 1, seq]: (1 - mask) * -10000.
    m = b.op("Unsqueeze", ["mask", b.const("axes", np.array([1, 2], np.int64))])
    m = b.op("Sub", [b.const("one", np.float32(1.0)), m])
    mask = b.op("Mul", [m, b.const("neg", np.float32(-10000.0))])
    split = b.const("split_shape", np.array([0, 0, heads, dh], np.int64))
    merge = b.const("merge_shape", np.array([0, 0, h], np.int64))
    x = "hidden"
    for _ in range(args.layers):
        q = b.op("Transpose", [b.op("Reshape", [linear(b, x, h, h), split])], perm=[0, 2, 1, 3])
        k = b.op("Transpose", [b.op("Reshape", [linear(b, x, h, h), split])], perm=[0, 2, 3, 1])
        v = b.op("Transpose", [b.op("Reshape", [linear(b, x, h, h), split])], perm=[0, 2, 1, 3])
        scores = b.op("Div", [b.op("MatMul", [q, k]), b.const("scale", np.float32(np.sqrt(dh)))])
        probs = b.op("Softmax", [b.op("Add", [scores, mask])], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        attn = linear(b, b.op("Reshape", [ctx, merge]), h, h)
        attn = b.op("Dropout", [attn])
        x = layer_norm(b, b.op("Add", [attn, x]), h)
        f = linear(b, gelu(b, linear(b, x, h, ffn)), ffn, h)
        x = layer_norm(b, b.op("Add", [f, x]), h)
    b.nodes.append(helper.make_node("Identity", [x], ["output"], name="output_identity"))
    graph = helper.make_graph(
        b.nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", h]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "seq", h])],
        b.inits,
    )
    rng = np.random.default_rng(args.seed + 1)
    hidden = rng.standard_normal((args.batch, args.seq, h)).astype(np.float32)
    mask = np.ones((args.batch, args.seq), np.float32)
    mask[0, args.seq // 2 :] = 0.0  # padding in the first sequence
    return graph, {"hidden": hidden, "mask": mask}


def conv_bn_relu(b, x, c_in, c_out, k, stride=1, relu=True):
    w = b.weight("conv_w", (c_out, c_in, k, k), np.sqrt(2.0 / (c_in * k * k)))
    bias = b.weight("conv_b", (c_out,), 0.05)
    y = b.op("Conv", [x, w, bias], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride])
    scale = b.const("bn_scale", (1.0 + 0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
    shift = b.const("bn_shift", (0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
    mean = b.const("bn_mean", (0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
    var = b.const("bn_var", (0.5 + b.rng.random(c_out)).astype(np.float32))
    y = b.op("BatchNormalization", [y, scale, shift, mean, var], epsilon=1e-5)
    return b.op("Relu", [y]) if relu else y


def cnn(args):
    b = Builder(args.seed)
    x = conv_bn_relu(b, "image", 3, 16, 3)
    # A residual block.
    r = conv_bn_relu(b, conv_bn_relu(b, x, 16, 16, 3), 16, 16, 3, relu=False)
    x = b.op("Relu", [b.op("Add", [r, x])])
    # Two independent branches, concatenated.
    left = conv_bn_relu(b, x, 16, 8, 1)
    right = conv_bn_relu(b, conv_bn_relu(b, x, 16, 8, 1), 8, 8, 3)
    x = b.op("Concat", [left, right], axis=1)
    x = conv_bn_relu(b, x, 16, 32, 3, stride=2)
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    w = b.weight("fc_w", (10, 32), 1.0 / np.sqrt(32))
    logits = b.op("Gemm", [x, w, b.weight("fc_b", (10,), 0.02)], transB=1)
    b.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        b.nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        b.inits,
    )
    rng = np.random.default_rng(args.seed + 1)
    return graph, {"image": rng.standard_normal((args.batch, 3, 16, 16)).astype(np.float32)}


def mobilenet(args):
    """MobileNet v1 (width 1.0): depthwise-separable Conv + BN + ReLU6."""
    b = Builder(args.seed)
    size = args.image

    def block(x, c_in, c_out, stride, depthwise, k=1):
        k, groups = (3, c_in) if depthwise else (k, 1)
        w = b.weight("conv_w", (c_out, c_in // groups, k, k), np.sqrt(2.0 / (c_in // groups * k * k)))
        y = b.op("Conv", [x, w], kernel_shape=[k, k], pads=[k // 2] * 4,
                 strides=[stride, stride], group=groups)
        c = c_out
        y = b.op("BatchNormalization", [
            y,
            b.const("bn_scale", (1.0 + 0.1 * b.rng.standard_normal(c)).astype(np.float32)),
            b.const("bn_shift", (0.1 * b.rng.standard_normal(c)).astype(np.float32)),
            b.const("bn_mean", (0.1 * b.rng.standard_normal(c)).astype(np.float32)),
            b.const("bn_var", (0.5 + b.rng.random(c)).astype(np.float32)),
        ], epsilon=1e-5)
        return b.op("Clip", [y, b.const("zero", np.float32(0.0)), b.const("six", np.float32(6.0))])

    x = block("image", 3, 32, 2, False, k=3)
    c = 32
    for c_out, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + \
            [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
        x = block(x, c, c, stride, True)
        x = block(x, c, c_out, 1, False)
        c = c_out
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    w = b.weight("fc_w", (1000, c), 1.0 / np.sqrt(c))
    b.op("Gemm", [x, w, b.weight("fc_b", (1000,), 0.02)], transB=1)
    b.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        b.nodes,
        "mobilenet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        b.inits,
    )
    rng = np.random.default_rng(args.seed + 1)
    return graph, {"image": rng.standard_normal((args.batch, 3, size, size)).astype(np.float32)}


def sgemm(args):
    """One MatMul, `x [n, n] @ w [n, n]` (w a constant): SGEMM throughput."""
    b = Builder(args.seed)
    n = args.hidden
    w = b.weight("w", (n, n), 1.0 / np.sqrt(n))
    b.op("MatMul", ["x", w])
    b.nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        b.nodes,
        "sgemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        b.inits,
    )
    rng = np.random.default_rng(args.seed + 1)
    return graph, {"x": rng.standard_normal((n, n)).astype(np.float32)}


def gelu_tanh(b, x):
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), GPT-2 style."""
    cube = b.op("Pow", [x, b.const("three", np.float32(3.0))])
    inner = b.op("Add", [x, b.op("Mul", [cube, b.const("c", np.float32(0.044715))])])
    t = b.op("Tanh", [b.op("Mul", [inner, b.const("k", np.float32(np.sqrt(2.0 / np.pi)))])])
    one = b.op("Add", [t, b.const("one", np.float32(1.0))])
    return b.op("Mul", [b.op("Mul", [x, b.const("half", np.float32(0.5))]), one])


def gpt(args):
    """A GPT-style decoder: pre-LayerNorm blocks, causal attention, tanh GELU."""
    b = Builder(args.seed)
    h, heads, ffn, seq = args.hidden, args.heads, args.ffn, args.seq
    dh = h // heads
    causal = np.triu(np.full((seq, seq), -10000.0, np.float32), k=1)[None, None]
    mask = b.const("causal", causal)
    split = b.const("split_shape", np.array([0, 0, heads, dh], np.int64))
    merge = b.const("merge_shape", np.array([0, 0, h], np.int64))
    x = "hidden"
    for _ in range(args.layers):
        a = layer_norm(b, x, h, eps=1e-5)
        q = b.op("Transpose", [b.op("Reshape", [linear(b, a, h, h), split])], perm=[0, 2, 1, 3])
        k = b.op("Transpose", [b.op("Reshape", [linear(b, a, h, h), split])], perm=[0, 2, 3, 1])
        v = b.op("Transpose", [b.op("Reshape", [linear(b, a, h, h), split])], perm=[0, 2, 1, 3])
        scores = b.op("Mul", [b.op("MatMul", [q, k]), b.const("scale", np.float32(1.0 / np.sqrt(dh)))])
        probs = b.op("Softmax", [b.op("Add", [scores, mask])], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        x = b.op("Add", [x, linear(b, b.op("Reshape", [ctx, merge]), h, h)])
        f = linear(b, gelu_tanh(b, linear(b, layer_norm(b, x, h, eps=1e-5), h, ffn)), ffn, h)
        x = b.op("Add", [x, f])
    x = layer_norm(b, x, h, eps=1e-5)
    b.nodes.append(helper.make_node("Identity", [x], ["output"], name="output_identity"))
    graph = helper.make_graph(
        b.nodes,
        "gpt_decoder",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", seq, h])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", seq, h])],
        b.inits,
    )
    rng = np.random.default_rng(args.seed + 1)
    return graph, {"hidden": rng.standard_normal((args.batch, seq, h)).astype(np.float32)}


def save(name, graph, inputs, out):
    import onnxruntime as ort

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="oxrt-examples"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(out, f"{name}.onnx")
    onnx.save(model, path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    outputs = sess.run(None, inputs)
    names = [o.name for o in sess.get_outputs()]
    for k, v in inputs.items():
        np.save(os.path.join(out, f"{name}.in.{k}.npy"), v)
    for k, v in zip(names, outputs):
        np.save(os.path.join(out, f"{name}.out.{k}.npy"), v)
    print(f"{path}: {len(graph.node)} nodes, {os.path.getsize(path)} bytes")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--only", choices=["bert", "cnn", "mobilenet", "gpt", "sgemm"])
    p.add_argument("--name", help="file name stem (default: the model's)")
    p.add_argument("--image", type=int, default=224, help="mobilenet input size")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # The bundled test models: bert_encoder and cnn (mobilenet, gpt and
    # sgemm are benchmark models, made on request with --only).
    makers = {"bert": ("bert_encoder", bert), "cnn": ("cnn", cnn),
              "mobilenet": ("mobilenet", mobilenet), "gpt": ("gpt_decoder", gpt),
              "sgemm": ("sgemm", sgemm)}
    for key in ([args.only] if args.only else ["bert", "cnn"]):
        stem, make = makers[key]
        save(args.name or stem, *make(args), args.out)


if __name__ == "__main__":
    main()
