//! Every kind of bad input gets a typed error naming what and where; none panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use oxrt::onnx::proto::{tensor_proto::DataLocation, StringStringEntryProto, TensorProto};
use oxrt::{Error, Session, Tensor};

fn commit(bytes: &[u8]) -> Result<Session, Error> {
    Session::builder().commit_from_memory(bytes)
}

fn mnist_bytes() -> Vec<u8> {
    std::fs::read(mnist_dir().join("model.onnx")).unwrap()
}

fn err_of(r: Result<Session, Error>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// Relu from x [N, 3] (symbolic N) to y.
fn relu_model(op: &str, opset: i64) -> Vec<u8> {
    bytes(&model(
        vec![node(op, "act", &["x"], &["y"])],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(3)])],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(3)])],
        vec![],
        opset,
    ))
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.onnx");
    let full = mnist_bytes();
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let err = err_of(Session::builder().commit_from_file(&path));
    let msg = err.to_string();
    assert!(
        msg.contains("truncated.onnx") && msg.contains("not a valid ONNX model"),
        "{msg}"
    );
}

#[test]
fn non_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.onnx");
    std::fs::write(&path, "this is a text file, not a model\n").unwrap();
    let err = err_of(Session::builder().commit_from_file(&path));
    let msg = err.to_string();
    assert!(msg.contains("notes.onnx") && msg.contains("not"), "{msg}");
    assert!(matches!(err, Error::Onnx(_)), "{err:?}");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.onnx");
    std::fs::write(&path, b"").unwrap();
    let err = err_of(Session::builder().commit_from_file(&path));
    assert!(err.to_string().contains("is empty (0 bytes)"), "{err}");
    assert!(err_of(commit(&[])).to_string().contains("is empty"));
}

#[test]
fn missing_file() {
    let err = err_of(Session::builder().commit_from_file("no/such/model.onnx"));
    assert!(err.to_string().contains("no/such/model.onnx"), "{err}");
}

#[test]
fn unknown_operator_names_op_domain_and_node() {
    let err = err_of(commit(&relu_model("FancyActivation", 13)));
    match &err {
        Error::UnsupportedOp {
            op,
            domain,
            node,
            opset,
            ..
        } => {
            assert_eq!(
                (op.as_str(), domain.as_str(), node.as_str(), *opset),
                ("FancyActivation", "ai.onnx", "act", 13)
            );
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
    assert!(
        err.to_string().contains("cpu: no kernel is registered"),
        "{err}"
    );
}

#[test]
fn custom_domain_not_imported() {
    let mut m = model(
        vec![node("Relu", "act", &["x"], &["y"])],
        vec![vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        vec![],
        13,
    );
    m.graph.as_mut().unwrap().node[0].domain = Some("com.example".into());
    let err = err_of(commit(&bytes(&m)));
    assert!(
        err.to_string()
            .contains("does not import the domain 'com.example'"),
        "{err}"
    );
}

#[test]
fn unsupported_opset() {
    let err = err_of(commit(&relu_model("Relu", 1000)));
    assert!(
        err.to_string().contains("unsupported opset version 1000"),
        "{err}"
    );
    // An opset the kernel does not cover yet (Relu before version 6).
    let err = err_of(commit(&relu_model("Relu", 5)));
    assert!(err.to_string().contains("opset 5 is not covered"), "{err}");
}

#[test]
fn graph_with_a_cycle() {
    let m = model(
        vec![
            node("Add", "a", &["x", "c"], &["b_in"]),
            node("Relu", "b", &["b_in"], &["c"]),
            node("Relu", "out", &["c"], &["y"]),
        ],
        vec![vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        vec![],
        13,
    );
    let err = err_of(commit(&bytes(&m)));
    let msg = err.to_string();
    assert!(
        msg.contains("cycle") && msg.contains("node 'a' (Add)"),
        "{msg}"
    );
}

#[test]
fn input_missing_unknown_wrong_dtype_wrong_shape() {
    let s = commit(&mnist_bytes()).unwrap();
    let good = || Tensor::from_vec(vec![2, 1, 8, 8], vec![0.0f32; 128]).unwrap();

    let err = s.run(Vec::<(&str, Tensor)>::new()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingInput { name, .. } if name == "input"),
        "{err}"
    );

    let err = s.run([("input", good()), ("extra", good())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown input 'extra': the model's inputs are [input]"
    );

    let ints = Tensor::from_vec(vec![2, 1, 8, 8], vec![0i64; 128]).unwrap();
    let err = s.run([("input", ints)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input 'input': expected element type float, got int64"
    );

    let wrong = Tensor::from_vec(vec![2, 8, 8], vec![0.0f32; 128]).unwrap();
    let err = s.run([("input", wrong)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input 'input': expected shape [batch, 1, 8, 8], got [2, 8, 8]"
    );
    let wrong = Tensor::from_vec(vec![1, 1, 7, 8], vec![0.0f32; 56]).unwrap();
    assert!(matches!(
        s.run([("input", wrong)]).unwrap_err(),
        Error::InputShape { .. }
    ));
}

#[test]
fn symbolic_dims_must_agree_across_inputs() {
    let m = model(
        vec![node("Add", "add", &["a", "b"], &["y"])],
        vec![vi("a", FLOAT, &[D::S("N")]), vi("b", FLOAT, &[D::S("N")])],
        vec![vi("y", FLOAT, &[D::S("N")])],
        vec![],
        14,
    );
    let s = commit(&bytes(&m)).unwrap();
    let t = |n: usize| Tensor::from_vec(vec![n], vec![1.0f32; n]).unwrap();
    let err = s.run([("a", t(2)), ("b", t(3))]).unwrap_err();
    assert!(
        err.to_string()
            .contains("N = 2 (bound by an earlier input)"),
        "{err}"
    );
    let out = s.run([("a", t(2)), ("b", t(2))]).unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0, 2.0]);
}

/// `y = x + w` where `w` [3] is external data at `location`.
fn external_data_model(location: &str) -> Vec<u8> {
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![3],
        data_type: Some(FLOAT),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }],
        ..Default::default()
    };
    bytes(&model(
        vec![node("Add", "add", &["x", "w"], &["y"])],
        vec![vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        vec![w],
        14,
    ))
}

#[test]
fn external_data_escaping_the_model_directory() {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 12]).unwrap();
    let path = model_dir.join("model.onnx");
    std::fs::write(&path, external_data_model("../secret.bin")).unwrap();
    let err = err_of(Session::builder().commit_from_file(&path));
    let msg = err.to_string();
    assert!(
        msg.contains("tensor 'w'") && msg.contains("'..'") && msg.contains("escape"),
        "{msg}"
    );
}

#[test]
fn external_data_inside_the_model_directory_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.bin"),
        [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, external_data_model("w.bin")).unwrap();
    let s = Session::builder().commit_from_file(&path).unwrap();
    let x = Tensor::from_vec(vec![3], vec![10.0f32; 3]).unwrap();
    assert_eq!(
        s.run([("x", x)]).unwrap()[0].as_slice::<f32>().unwrap(),
        &[11.0, 12.0, 13.0]
    );
}

#[test]
fn tensors_beyond_the_memory_limit() {
    // Declared dims of 2^60 elements, no data: refused before any allocation.
    let huge = TensorProto {
        name: Some("huge".into()),
        dims: vec![1 << 20, 1 << 20, 1 << 20],
        data_type: Some(FLOAT),
        ..Default::default()
    };
    let m = model(
        vec![node("Add", "add", &["x", "huge"], &["y"])],
        vec![vi("x", FLOAT, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        vec![huge],
        14,
    );
    let err = err_of(commit(&bytes(&m)));
    assert!(
        matches!(&err, Error::MemoryLimit { what, .. } if what == "tensor 'huge'"),
        "{err}"
    );

    // The limit is configurable: the example's 4.6 KB fc.weight exceeds 1 KB.
    let err = err_of(
        Session::builder()
            .with_memory_limit(1024)
            .commit_from_memory(&mnist_bytes()),
    );
    assert!(
        err.to_string()
            .contains("more than the memory limit of 1024 bytes"),
        "{err}"
    );

    // Inputs are checked against it too.
    let s = Session::builder()
        .with_memory_limit(4096)
        .commit_from_memory(&relu_model("Relu", 13))
        .unwrap();
    let big = Tensor::from_vec(vec![400, 3], vec![0.0f32; 1200]).unwrap();
    let err = s.run([("x", big)]).unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
}

#[test]
fn kernel_errors_name_the_node() {
    let m = model(
        vec![node("Gather", "pick", &["x", "i"], &["y"])],
        vec![vi("x", FLOAT, &[D::N(3)]), vi("i", INT64, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        vec![],
        13,
    );
    let s = commit(&bytes(&m)).unwrap();
    let x = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let i = Tensor::from_vec(vec![1], vec![7i64]).unwrap();
    let err = s.run([("x", x), ("i", i)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node 'pick' (Gather): index 7 is out of bounds for axis 0 of size 3"
    );
}

#[test]
fn bad_attribute_values_are_errors_at_session_creation() {
    let mut n = node("Conv", "conv", &["x", "w"], &["y"]);
    n.attribute.push(int_attr("group", 0));
    let m = model(
        vec![n],
        vec![vi("x", FLOAT, &[D::N(1), D::N(1), D::N(4), D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(1), D::N(1), D::N(2), D::N(2)])],
        vec![f32_tensor("w", &[1, 1, 3, 3], &[1.0; 9])],
        13,
    );
    let err = err_of(commit(&bytes(&m)));
    assert_eq!(
        err.to_string(),
        "node 'conv' (Conv): group must be positive, got 0"
    );
}

#[test]
fn garbage_never_panics() {
    // Deterministic pseudo-random mutations of a valid model.
    let good = mnist_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pos = (state as usize) % b.len();
            b[pos] = (state >> 32) as u8;
        }
        if let Ok(s) = commit(&b) {
            let x = Tensor::from_vec(vec![1, 1, 8, 8], vec![0.5f32; 64]).unwrap();
            let _ = s.run([("input", x)]);
        }
    }
}
