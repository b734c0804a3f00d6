//! criterion benchmarks: the GEMM kernel at several shapes, and the example
//! model (Conv, pooling, Gemm) end to end.
//!
//! `cargo bench -p oxrt-benches` (numbers are throughput: GFLOP/s via
//! criterion's element throughput, one "element" being one FLOP).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oxrt::{Session, Tensor};
use oxrt_provider_cpu::gemm::{gemm, MatRef};

fn bench_gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_f32");
    for &(m, k, n) in &[(64, 64, 64), (256, 256, 256), (1, 512, 512), (512, 64, 512)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{m}x{k}x{n}")),
            &(),
            |bch, _| {
                bch.iter(|| {
                    gemm(
                        MatRef::row_major(&a, m, k, false),
                        MatRef::row_major(&b, k, n, false),
                        &mut out,
                        1.0,
                        false,
                    )
                    .expect("gemm")
                })
            },
        );
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

criterion_group!(benches, bench_gemm, bench_example_model);
criterion_main!(benches);
