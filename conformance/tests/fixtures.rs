//! The runner on a few bundled ONNX node-test cases.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use oxrt_conformance::{discover, run_case, Status, Tolerance};

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

#[test]
fn bundled_cases_pass_or_are_reported_unsupported() {
    let cases = discover(&data()).unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for case in &cases {
        let r = run_case(case, Tolerance::default(), &[]);
        if case.name == "test_gather_elements_0" {
            match &r.status {
                Status::Unsupported(why) => assert!(why.contains("GatherElements"), "{why}"),
                other => panic!("{}: expected Unsupported, got {other:?}", case.name),
            }
            assert_eq!(r.ops, vec!["GatherElements".to_string()]);
        } else {
            assert_eq!(r.status, Status::Pass, "{}", case.name);
        }
    }
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
    match run_case(&case, Tolerance::default(), &[]).status {
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
