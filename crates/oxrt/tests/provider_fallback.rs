//! A provider this machine cannot run (the CUDA provider without a driver
//! or GPU, or without the `cuda` feature) is a typed error, or, with
//! provider fallback, left out so the session runs on the CPU.
#![allow(clippy::unwrap_used)]

mod common;

use oxrt::{Error, Provider, Session, Tensor};

fn example() -> (std::path::PathBuf, Tensor) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let image = common::read_npy(&dir.join("cnn.in.image.npy"));
    (dir.join("cnn.onnx"), image)
}

#[test]
fn an_unavailable_cuda_provider_is_an_error_or_left_out() {
    if let Ok(p) = oxrt_cuda_probe() {
        eprintln!("skipped: a CUDA device is usable here ({p})");
        return;
    }
    let (model, image) = example();
    let err = Session::builder()
        .with_providers([Provider::Cuda(0)])
        .commit_from_file(&model)
        .err()
        .unwrap();
    assert!(matches!(err, Error::ProviderUnavailable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("execution provider 'cuda' is unavailable: "),
        "{err}"
    );

    let session = Session::builder()
        .with_providers([Provider::Cuda(0)])
        .with_provider_fallback(true)
        .commit_from_file(&model)
        .unwrap();
    let cpu = Session::builder().commit_from_file(&model).unwrap();
    let feeds = || vec![("image".to_string(), image.clone())];
    let got = session.run(feeds()).unwrap();
    let want = cpu.run(feeds()).unwrap();
    assert_eq!(got.get("logits"), want.get("logits"));
    assert_eq!(session.providers(), ["cpu"]);
    assert!(session.node_placement().iter().all(|(_, p)| *p == "cpu"));
}

/// Whether this build can open CUDA device 0 (never with the feature off).
fn oxrt_cuda_probe() -> Result<String, ()> {
    oxrt::available_providers()
        .into_iter()
        .find(|p| p.name == "cuda")
        .map(|p| p.device.to_string())
        .ok_or(())
}
