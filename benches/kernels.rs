//! criterion benchmarks: the GEMM kernel at several shapes, the hot
//! operators as single-node sessions (Conv 3x3 / 1x1 / depthwise /
//! strided, batched MatMul, broadcast Add, Softmax, LayerNormalization,
//! ReduceMean), and the example model end to end, all on one thread.
//!
//! `cargo bench -p oxrt-benches`. Throughput is GFLOP/s for products
//! (criterion's element throughput, one "element" being one FLOP) and
//! GB/s of input plus output for the memory-bound operators.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oxrt::{DataType, Session, Tensor};
use oxrt_conformance::build::{single_node, Attr};
use oxrt_provider_cpu::gemm::{gemm, MatRef};
use oxrt_provider_cpu::packed::{gemm_packed, gemm_packed_t, PackedA};

/// A one-thread session of one `op` node over inputs shaped like `inputs`.
fn node_session(op: &str, opset: i64, inputs: &[&Tensor], attrs: &[(&str, Attr)]) -> Session {
    let bytes = single_node(op, opset, inputs, 1, DataType::F32, attrs);
    Session::builder()
        .with_intra_threads(1)
        .commit_from_memory(&bytes)
        .expect("single-node model")
}

/// A tensor of `shape` with values in [-1, 1).
fn filled(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..n)
            .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
            .collect(),
    )
    .expect("tensor")
}

/// Benchmarks one node: `name` in `group`, with `throughput` per run.
fn bench_node(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    (op, opset, attrs): (&str, i64, &[(&str, Attr)]),
    inputs: &[Tensor],
    throughput: Throughput,
) {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let session = node_session(op, opset, &refs, attrs);
    let feeds: Vec<(String, Tensor)> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("x{i}"), t.clone()))
        .collect();
    g.throughput(throughput);
    g.bench_function(name, |b| {
        b.iter(|| session.run(feeds.clone()).expect("run"))
    });
}

fn bench_conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv_f32");
    // (name, input [n, c, h, w], weights [m, c/g, k, k], group, stride, pad)
    let cases = [
        ("3x3_64to64_56", [1, 64, 56, 56], [64, 64, 3, 3], 1, 1, 1),
        ("1x1_256to64_56", [1, 256, 56, 56], [64, 256, 1, 1], 1, 1, 0),
        (
            "depthwise3x3_128_56",
            [1, 128, 56, 56],
            [128, 1, 3, 3],
            128,
            1,
            1,
        ),
        (
            "3x3s2_64to128_56",
            [1, 64, 56, 56],
            [128, 64, 3, 3],
            1,
            2,
            1,
        ),
    ];
    for (name, xs, ws, group, stride, pad) in cases {
        let out = (xs[2] + 2 * pad - ws[2]) / stride + 1;
        let flops = 2 * ws.iter().product::<usize>() * out * out;
        let attrs = [
            ("kernel_shape", Attr::Ints(vec![ws[2] as i64, ws[3] as i64])),
            ("strides", Attr::Ints(vec![stride as i64; 2])),
            ("pads", Attr::Ints(vec![pad as i64; 4])),
            ("group", Attr::Int(group)),
        ];
        bench_node(
            &mut g,
            name,
            ("Conv", 13, &attrs),
            &[filled(&xs), filled(&ws)],
            Throughput::Elements(flops as u64),
        );
    }
    g.finish();
}

fn bench_memory_bound(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory_bound_f32");
    let bytes = |n: usize| Throughput::Bytes((n * 4) as u64);
    let x = filled(&[1, 64, 56, 56]);
    let n = x.len();
    bench_node(
        &mut g,
        "add_broadcast_channel",
        ("Add", 14, &[]),
        &[x.clone(), filled(&[64, 1, 1])],
        bytes(2 * n),
    );
    bench_node(
        &mut g,
        "add_same_shape",
        ("Add", 14, &[]),
        &[x.clone(), x.clone()],
        bytes(3 * n),
    );
    let rows = filled(&[128, 1000]);
    bench_node(
        &mut g,
        "softmax_128x1000",
        ("Softmax", 13, &[]),
        std::slice::from_ref(&rows),
        bytes(2 * rows.len()),
    );
    let h = filled(&[128, 768]);
    bench_node(
        &mut g,
        "layernorm_128x768",
        ("LayerNormalization", 17, &[("axis", Attr::Int(-1))]),
        &[h.clone(), filled(&[768]), filled(&[768])],
        bytes(2 * h.len()),
    );
    bench_node(
        &mut g,
        "reduce_mean_spatial",
        ("ReduceMean", 13, &[("axes", Attr::Ints(vec![2, 3]))]),
        &[x],
        bytes(n),
    );
    g.finish();
}

fn bench_batched_matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_f32");
    // Attention-shaped: 12 heads, 128 x 64 @ 64 x 128.
    let (h, m, k, n) = (12, 128, 64, 128);
    bench_node(
        &mut g,
        "batched_12x128x64x128",
        ("MatMul", 13, &[]),
        &[filled(&[h, m, k]), filled(&[h, k, n])],
        Throughput::Elements((2 * h * m * k * n) as u64),
    );
    g.finish();
}

fn bench_gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_f32");
    // The kernel splits over the current rayon pool's threads: measure one.
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for &(m, k, n) in &[
        (64, 64, 64),
        (256, 256, 256),
        (1024, 1024, 1024),
        (1, 768, 768),
        (128, 768, 3072),
        (512, 64, 512),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{m}x{k}x{n}")),
            &(),
            |bch, _| {
                bch.iter(|| {
                    one_thread.install(|| {
                        gemm(
                            MatRef::row_major(&a, m, k, false),
                            MatRef::row_major(&b, k, n, false),
                            &mut out,
                            1.0,
                            false,
                        )
                        .expect("gemm")
                    })
                })
            },
        );
    }
    g.finish();
}

/// Convolution-shaped products (weights m x k times im2col k x n), the
/// `gemm` crate against the product with weights packed beforehand.
fn bench_packed_gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv_gemm_f32");
    g.measurement_time(std::time::Duration::from_secs(2));
    g.warm_up_time(std::time::Duration::from_millis(500));
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    // ResNet-50 (7x7, 14x14, 28x28, 56x56 maps; its first 7x7/2 layer),
    // SqueezeNet (13x13 and 55x55 maps).
    for &(m, k, n) in &[
        (512, 4608, 49),
        (2048, 512, 49),
        (512, 2048, 49),
        (256, 2304, 196),
        (1024, 256, 196),
        (128, 1152, 784),
        (64, 576, 3136),
        (64, 147, 12544),
        (1000, 512, 169),
        (64, 144, 3025),
        (16, 128, 3025),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        let shape = format!("{m}x{k}x{n}");
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let (am, bm) = (
            MatRef::row_major(&a, m, k, false),
            MatRef::row_major(&b, k, n, false),
        );
        g.bench_function(BenchmarkId::new("crate", &shape), |bch| {
            bch.iter(|| one_thread.install(|| gemm(am, bm, &mut out, 1.0, false).expect("gemm")))
        });
        let Some(packed) = PackedA::new(am) else {
            continue;
        };
        g.bench_function(BenchmarkId::new("packed", &shape), |bch| {
            bch.iter(|| {
                one_thread
                    .install(|| gemm_packed(&packed, bm, &mut out, false, None).expect("gemm"))
            })
        });
    }
    g.finish();
}

/// MatMuls by constant weights (activations tokens x k times weights
/// k x n, BERT-base's projections): the `gemm` crate against the
/// transposed product over weights packed beforehand.
fn bench_packed_matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("weights_matmul_f32");
    g.measurement_time(std::time::Duration::from_secs(2));
    g.warm_up_time(std::time::Duration::from_millis(500));
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for &(t, k, n) in &[
        (128, 768, 768),
        (128, 768, 3072),
        (128, 3072, 768),
        (512, 768, 768),
    ] {
        let x: Vec<f32> = (0..t * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; t * n];
        let shape = format!("{t}x{k}x{n}");
        g.throughput(Throughput::Elements((2 * t * k * n) as u64));
        let (xm, wm) = (
            MatRef::row_major(&x, t, k, false),
            MatRef::row_major(&w, k, n, false),
        );
        g.bench_function(BenchmarkId::new("crate", &shape), |bch| {
            bch.iter(|| one_thread.install(|| gemm(xm, wm, &mut out, 1.0, false).expect("gemm")))
        });
        let Some(packed) = PackedA::transposed(&w, k, n) else {
            continue;
        };
        let xt = MatRef::row_major(&x, t, k, true);
        g.bench_function(BenchmarkId::new("packed", &shape), |bch| {
            bch.iter(|| {
                one_thread.install(|| gemm_packed_t(&packed, xt, &mut out, false).expect("gemm"))
            })
        });
    }
    g.finish();
}

/// The bundled digit classifier (Conv, MaxPool, Gemm...), one intra-op thread.
fn example_session() -> Session {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist");
    Session::builder()
        .with_intra_threads(1)
        .commit_from_file(dir.join("model.onnx"))
        .expect("example model")
}

fn bench_example_model(c: &mut Criterion) {
    let session = example_session();
    let mut g = c.benchmark_group("mnist_cnn");
    for &batch in &[1usize, 64] {
        let x = Tensor::from_vec(vec![batch, 1, 8, 8], vec![0.5f32; batch * 64]).expect("input");
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("batch", batch), &x, |bch, x| {
            bch.iter(|| session.run([("input", x.clone())]).expect("run"))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_gemm,
    bench_packed_gemm,
    bench_packed_matmul,
    bench_conv,
    bench_batched_matmul,
    bench_memory_bound,
    bench_example_model
);
criterion_main!(benches);
