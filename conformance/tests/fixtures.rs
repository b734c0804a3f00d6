//! The runner on a few bundled ONNX node-test cases.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use oxrt_conformance::{discover, run_case, Status, Tolerance};

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

#[test]
fn bundled_cases_pass() {
    let cases = discover(&data()).unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for case in &cases {
        let r = run_case(
            case,
            Tolerance::default(),
            &[],
            oxrt::OptimizationLevel::All,
        );
        assert_eq!(r.status, Status::Pass, "{}", case.name);
    }
}

#[test]
fn an_operator_without_a_kernel_is_reported_unsupported() {
    use oxrt::onnx::proto::{ModelProto, OperatorSetIdProto};
    use prost::Message;

    // The GatherElements case with its node moved to a domain no provider serves.
    let tmp = tempfile::tempdir().unwrap();
    let src = data().join("test_gather_elements_0");
    let dst = tmp.path().join("test_frobnicate");
    std::fs::create_dir_all(dst.join("test_data_set_0")).unwrap();
    for f in ["input_0.pb", "input_1.pb", "output_0.pb"] {
        let from = src.join("test_data_set_0").join(f);
        std::fs::copy(from, dst.join("test_data_set_0").join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.onnx")).unwrap();
    let mut m = ModelProto::decode(&bytes[..]).unwrap();
    let graph = m.graph.as_mut().unwrap();
    graph.node[0].op_type = Some("Frobnicate".into());
    graph.node[0].domain = Some("com.example".into());
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("com.example".into()),
        version: Some(1),
    });
    std::fs::write(dst.join("model.onnx"), m.encode_to_vec()).unwrap();

    let case = discover(tmp.path()).unwrap().remove(0);
    let r = run_case(
        &case,
        Tolerance::default(),
        &[],
        oxrt::OptimizationLevel::All,
    );
    match &r.status {
        Status::Unsupported(why) => assert!(why.contains("Frobnicate"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(r.ops, vec!["Frobnicate".to_string()]);
}

#[test]
fn a_corrupted_reference_is_a_failure_with_its_error() {
    use oxrt::onnx::proto::TensorProto;
    use prost::Message;

    let tmp = tempfile::tempdir().unwrap();
    let src = data().join("test_softmax_axis_0");
    let dst = tmp.path().join("test_softmax_axis_0");
    std::fs::create_dir_all(dst.join("test_data_set_0")).unwrap();
    std::fs::copy(src.join("model.onnx"), dst.join("model.onnx")).unwrap();
    std::fs::copy(
        src.join("test_data_set_0/input_0.pb"),
        dst.join("test_data_set_0/input_0.pb"),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("test_data_set_0/output_0.pb")).unwrap();
    let mut t = TensorProto::decode(&bytes[..]).unwrap();
    let mut raw = t.raw_data.clone().unwrap().to_vec();
    let v = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) + 0.5;
    raw[..4].copy_from_slice(&v.to_le_bytes());
    t.raw_data = Some(raw.into());
    std::fs::write(dst.join("test_data_set_0/output_0.pb"), t.encode_to_vec()).unwrap();

    let case = discover(tmp.path()).unwrap().remove(0);
    match run_case(
        &case,
        Tolerance::default(),
        &[],
        oxrt::OptimizationLevel::All,
    )
    .status
    {
        Status::Fail(msg) => {
            assert!(
                msg.contains("1 values differ (first at flat index 0)"),
                "{msg}"
            );
            assert!(msg.contains("max abs error 5.000e-1"), "{msg}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
