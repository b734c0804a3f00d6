//! The bundled digit classifier against onnxruntime's stored outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{digits_correct, mnist_dir, read_npy};
use oxrt::{DataType, Dim, Session};

fn session() -> Session {
    Session::builder()
        .with_intra_threads(2)
        .commit_from_file(mnist_dir().join("model.onnx"))
        .unwrap()
}

#[test]
fn logits_match_onnxruntime_within_1e5() {
    let s = session();
    let images = read_npy(&mnist_dir().join("test_images.npy"));
    let reference = read_npy(&mnist_dir().join("reference_logits.npy"));
    let out = s.run([("input", images)]).unwrap();
    let logits = out.get("logits").unwrap();
    assert_eq!(logits.shape(), reference.shape());
    let max_diff = logits
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(reference.as_slice::<f32>().unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-5, "max |oxrt - onnxruntime| = {max_diff}");
}

#[test]
fn held_out_accuracy_is_that_of_the_trained_model() {
    let s = session();
    let images = read_npy(&mnist_dir().join("test_images.npy"));
    let labels = read_npy(&mnist_dir().join("test_labels.npy"));
    let out = s.run([("input", images)]).unwrap();
    let correct = digits_correct(&out[0], &labels);
    // onnxruntime classifies 351 of the 360 held-out digits correctly.
    assert_eq!(correct, 351);
}

#[test]
fn metadata_shows_symbolic_batch() {
    let s = session();
    let input = &s.inputs()[0];
    assert_eq!(input.name, "input");
    assert_eq!(input.ty.dtype(), Some(DataType::F32));
    assert_eq!(
        input.ty.dims().unwrap(),
        &[
            Dim::Symbolic("batch".into()),
            Dim::Known(1),
            Dim::Known(8),
            Dim::Known(8)
        ]
    );
    assert_eq!(s.outputs()[0].name, "logits");
    assert_eq!(s.model().opset(""), Some(13));
    assert!(s.node_placement().iter().all(|(_, p)| *p == "cpu"));
}

#[test]
fn concurrent_runs_from_many_threads_agree() {
    let s = Arc::new(session());
    let samples = read_npy(&mnist_dir().join("samples.npy"));
    let expected = s.run([("input", samples.clone())]).unwrap()[0].clone();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            let x = samples.clone();
            std::thread::spawn(move || s.run([("input", x)]).unwrap()[0].clone())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
}

#[test]
fn ndarray_inputs_and_outputs_convert() {
    let s = session();
    let samples = read_npy(&mnist_dir().join("samples.npy"));
    let array = samples.clone().into_array::<f32>().unwrap();
    let out = s.run([("input", oxrt::Tensor::from(array))]).unwrap();
    let logits = out[0].clone().into_array::<f32>().unwrap();
    assert_eq!(logits.shape(), &[5, 10]);
    let direct = s.run([("input", samples)]).unwrap();
    assert_eq!(
        logits.as_slice().unwrap(),
        direct[0].as_slice::<f32>().unwrap()
    );
}

#[test]
fn exported_model_runs_identically() {
    use prost::Message;
    let loaded = oxrt::onnx::load_model(mnist_dir().join("model.onnx")).unwrap();
    let model =
        oxrt::Model::from_proto(&loaded.proto, &oxrt::core::ir::LowerOptions::default()).unwrap();
    let bytes = model.to_proto().encode_to_vec();
    let exported = Session::builder().commit_from_memory(&bytes).unwrap();
    let samples = read_npy(&mnist_dir().join("samples.npy"));
    let a = session().run([("input", samples.clone())]).unwrap();
    let b = exported.run([("input", samples)]).unwrap();
    assert_eq!(a[0], b[0]);
    assert_eq!(exported.inputs(), session().inputs());
}
