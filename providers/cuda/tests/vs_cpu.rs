//! Every CUDA operator family against the CPU provider on random inputs:
//! the same node, one kernel from each provider, outputs compared. Ignored
//! by default (the reason shows in the test listing); `--ignored` runs
//! them, and they still skip with the reason printed when no device opens.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use oxrt_core::ir::Attribute;
use oxrt_core::{DataType, ExecutionProvider, KernelInfo, Node, NodeContext, Tensor, ValueType};
use oxrt_provider_cpu::CpuProvider;
use oxrt_provider_cuda::CudaProvider;
use proptest::prelude::*;

/// A node of `op` with `inputs` inputs and the given attributes.
fn node(op: &str, inputs: usize, attrs: &[(&str, Attribute)]) -> Node {
    Node {
        name: format!("{op}_test"),
        op_type: op.into(),
        domain: String::new(),
        inputs: (0..inputs).map(|i| format!("in{i}")).collect(),
        outputs: vec!["out".into()],
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Runs `node` on both providers (the inputs fed, none constant) and
/// returns the largest difference relative to 1 + |cpu value|.
fn compare(cuda: &CudaProvider, node: &Node, inputs: &[Tensor]) -> f64 {
    compare_with(cuda, node, inputs, &[])
}

/// [`compare`] with the inputs at `constant` given as constants (the
/// kernels read them at creation).
fn compare_with(cuda: &CudaProvider, node: &Node, inputs: &[Tensor], constant: &[usize]) -> f64 {
    let types: Vec<ValueType> = inputs
        .iter()
        .map(|t| ValueType::tensor(t.dtype(), t.shape()))
        .collect();
    let info = KernelInfo {
        node: NodeContext {
            opset: 18,
            input_types: types.iter().map(Some).collect(),
        },
        constants: constant.iter().map(|&i| (i, &inputs[i])).collect(),
        output_types: vec![],
        subgraphs: None,
    };
    cuda.supports(node, &info.node)
        .unwrap_or_else(|e| panic!("{}: declined: {e}", node.op_type));
    let cpu = CpuProvider::new();
    let want = cpu
        .create_kernel(node, &info)
        .unwrap()
        .compute(&inputs.iter().map(Some).collect::<Vec<_>>())
        .unwrap();
    let memory = cuda.device_memory().unwrap();
    let dev: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (!constant.contains(&i)).then(|| memory.upload(t).unwrap().0))
        .collect();
    let (got, _) = cuda
        .create_kernel(node, &info)
        .unwrap()
        .compute_on_device(&dev.iter().map(Option::as_ref).collect::<Vec<_>>())
        .unwrap();
    let got = memory.download(got[0].as_ref().unwrap()).unwrap().0;
    assert_eq!(got.shape(), want[0].shape(), "{}", node.op_type);
    assert_eq!(got.dtype(), want[0].dtype(), "{}", node.op_type);
    let (g, w) = (got.to_f64_vec().unwrap(), want[0].to_f64_vec().unwrap());
    g.iter()
        .zip(&w)
        .map(|(a, b)| {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                (a - b).abs() / (1.0 + b.abs())
            }
        })
        .fold(0.0, f64::max)
}

fn device() -> Option<CudaProvider> {
    match CudaProvider::new(0) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn tensor(shape: &[usize], values: &[f32]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        values.iter().cycle().take(n).copied().collect::<Vec<_>>(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    #[ignore = "needs a CUDA device: run with --ignored where one is present"]
    fn elementwise_softmax_and_layout_match_the_cpu(
        values in proptest::collection::vec(-4.0f32..4.0, 64),
        rows in 1usize..5,
        cols in 1usize..9,
    ) {
        let Some(cuda) = device() else { return Ok(()); };
        let x = tensor(&[rows, cols], &values);
        let positive = tensor(&[rows, cols], &values.iter().map(|v| v.abs() + 0.1).collect::<Vec<_>>());
        for op in ["Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "Erf", "Gelu", "Softplus", "HardSwish", "Floor"] {
            prop_assert!(compare(&cuda, &node(op, 1, &[]), std::slice::from_ref(&x)) < 1e-5, "{op}");
        }
        for op in ["Log", "Sqrt", "Reciprocal"] {
            prop_assert!(compare(&cuda, &node(op, 1, &[]), std::slice::from_ref(&positive)) < 1e-5, "{op}");
        }
        let leaky = node("LeakyRelu", 1, &[("alpha", Attribute::Float(0.2))]);
        prop_assert!(compare(&cuda, &leaky, std::slice::from_ref(&x)) < 1e-6);
        // Broadcasting: [rows, cols] with [cols] and [rows, 1].
        let row = tensor(&[cols], &values[7..]);
        let col = tensor(&[rows, 1], &values[3..]);
        for op in ["Add", "Sub", "Mul", "Max", "Min"] {
            prop_assert!(compare(&cuda, &node(op, 2, &[]), &[x.clone(), row.clone()]) < 1e-6, "{op}");
            prop_assert!(compare(&cuda, &node(op, 2, &[]), &[col.clone(), x.clone()]) < 1e-6, "{op}");
        }
        prop_assert!(compare(&cuda, &node("Div", 2, &[]), &[x.clone(), positive.clone()]) < 1e-5);
        for op in ["Softmax", "LogSoftmax"] {
            prop_assert!(compare(&cuda, &node(op, 1, &[]), std::slice::from_ref(&x)) < 1e-5, "{op}");
        }
        let t = tensor(&[2, rows, cols], &values);
        let perm = node("Transpose", 1, &[("perm", Attribute::Ints(vec![2, 0, 1]))]);
        prop_assert!(compare(&cuda, &perm, std::slice::from_ref(&t)) == 0.0);
        let flat = node("Flatten", 1, &[("axis", Attribute::Int(2))]);
        prop_assert!(compare(&cuda, &flat, &[t]) == 0.0);
    }

    #[test]
    #[ignore = "needs a CUDA device: run with --ignored where one is present"]
    fn products_convolutions_and_pooling_match_the_cpu(
        values in proptest::collection::vec(-1.0f32..1.0, 97),
        m in 1usize..40,
        k in 1usize..40,
        n in 1usize..40,
        hw in 3usize..12,
    ) {
        let Some(cuda) = device() else { return Ok(()); };
        let a = tensor(&[m, k], &values);
        let b = tensor(&[k, n], &values[5..]);
        prop_assert!(compare(&cuda, &node("MatMul", 2, &[]), &[a.clone(), b.clone()]) < 1e-4);
        // Batched with a broadcast right operand, and Gemm with transposes.
        let batched = tensor(&[3, m, k], &values[11..]);
        prop_assert!(compare(&cuda, &node("MatMul", 2, &[]), &[batched, b.clone()]) < 1e-4);
        let bt = tensor(&[n, k], &values[13..]);
        let c = tensor(&[n], &values[17..]);
        let gemm = node("Gemm", 3, &[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]);
        prop_assert!(compare(&cuda, &gemm, &[a, bt, c]) < 1e-4);
        // Conv 3x3 pad 1 (plain and grouped), bias; pooling.
        let x = tensor(&[2, 4, hw, hw], &values[19..]);
        let w = tensor(&[6, 4, 3, 3], &values[23..]);
        let wg = tensor(&[6, 2, 3, 3], &values[29..]);
        let bias = tensor(&[6], &values[31..]);
        let pads = ("pads", Attribute::Ints(vec![1, 1, 1, 1]));
        prop_assert!(compare(&cuda, &node("Conv", 3, std::slice::from_ref(&pads)), &[x.clone(), w, bias.clone()]) < 1e-4);
        let grouped = node("Conv", 3, &[pads.clone(), ("group", Attribute::Int(2)), ("strides", Attribute::Ints(vec![2, 2]))]);
        prop_assert!(compare(&cuda, &grouped, &[x.clone(), wg, bias]) < 1e-4);
        let window = [("kernel_shape", Attribute::Ints(vec![3, 3])), ("strides", Attribute::Ints(vec![2, 2])), pads];
        prop_assert!(compare(&cuda, &node("MaxPool", 1, &window), std::slice::from_ref(&x)) == 0.0);
        prop_assert!(compare(&cuda, &node("AveragePool", 1, &window), std::slice::from_ref(&x)) < 1e-6);
        prop_assert!(compare(&cuda, &node("GlobalAveragePool", 1, &[]), &[x]) < 1e-5);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    #[ignore = "needs a CUDA device: run with --ignored where one is present"]
    fn reductions_norms_indexing_and_casts_match_the_cpu(
        values in proptest::collection::vec(-3.0f32..3.0, 64),
        a in 1usize..5,
        b in 1usize..6,
        c in 1usize..7,
    ) {
        let Some(cuda) = device() else { return Ok(()); };
        let x = tensor(&[a, b, c], &values);
        let ints = |v: &[i64]| Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap();
        for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp"] {
            for (axes, keep) in [(vec![1i64], 1i64), (vec![0, 2], 0), (vec![-1], 1)] {
                let n = node(op, 2, &[("keepdims", Attribute::Int(keep))]);
                prop_assert!(compare_with(&cuda, &n, &[x.clone(), ints(&axes)], &[1]) < 1e-4, "{op} {axes:?}");
            }
        }
        let scale = tensor(&[c], &values[5..]);
        let bias = tensor(&[c], &values[9..]);
        let ln = node("LayerNormalization", 3, &[("axis", Attribute::Int(-1))]);
        prop_assert!(compare_with(&cuda, &ln, &[x.clone(), scale, bias], &[1, 2]) < 1e-4);
        // Slice with a negative step, Concat on the middle axis, Gather.
        let slice = node("Slice", 5, &[]);
        let args = [x.clone(), ints(&[0, -1]), ints(&[i64::MAX, i64::MIN]), ints(&[0, 2]), ints(&[1, -2])];
        prop_assert!(compare_with(&cuda, &slice, &args, &[1, 2, 3, 4]) == 0.0);
        let y = tensor(&[a, 2, c], &values[3..]);
        let concat = node("Concat", 2, &[("axis", Attribute::Int(1))]);
        prop_assert!(compare(&cuda, &concat, &[x.clone(), y]) == 0.0);
        let idx = Tensor::from_vec(vec![2], vec![(b as i64) - 1, -1]).unwrap();
        let gather = node("Gather", 2, &[("axis", Attribute::Int(1))]);
        prop_assert!(compare(&cuda, &gather, &[x.clone(), idx]) == 0.0);
        for to in [DataType::F16, DataType::I64, DataType::I32, DataType::Bool] {
            let cast = node("Cast", 1, &[("to", Attribute::Int(i64::from(to.onnx_code())))]);
            prop_assert!(compare(&cuda, &cast, std::slice::from_ref(&x)) < 1e-3, "{to}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: run with --ignored where one is present"]
fn the_provider_declines_what_it_does_not_run() {
    let Some(cuda) = device() else { return };
    let ty = ValueType::tensor(DataType::I64, &[4]);
    let ctx = NodeContext {
        opset: 17,
        input_types: vec![Some(&ty), Some(&ty)],
    };
    assert!(cuda
        .supports(&node("Add", 2, &[]), &ctx)
        .unwrap_err()
        .contains("f32"));
    let f32_ty = ValueType::tensor(DataType::F32, &[4]);
    let ctx = NodeContext {
        opset: 17,
        input_types: vec![Some(&f32_ty)],
    };
    assert!(cuda.supports(&node("TopK", 1, &[]), &ctx).is_err());
}
