//! Control flow beyond the node tests: an If nested in a Loop body, whose
//! branches read values of the loop body and of the main graph (two levels
//! up), and sequences fed to and returned from a session.
#![allow(clippy::unwrap_used)]

use oxrt::core::{Sequence, Value};
use oxrt::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto,
};
use oxrt::{DataType, Session, Tensor};
use prost::Message;

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs[0])),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(g),
        ..Default::default()
    }
}

fn tensor_type(dtype: DataType) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(dtype.onnx_code()),
            shape: None,
        })),
        denotation: None,
    }
}

fn info(name: &str, ty: TypeProto) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(ty),
        ..Default::default()
    }
}

fn graph(
    name: &str,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> GraphProto {
    GraphProto {
        name: Some(name.into()),
        node: nodes,
        input: inputs,
        output: outputs
            .iter()
            .map(|o| info(o, tensor_type(DataType::F32)))
            .collect(),
        ..Default::default()
    }
}

fn model(g: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `Loop(n)` over `acc = x`: iterations 0 and 1 double `acc` (`scale` is a
/// main-graph initializer), later ones add `x`; every `acc` is scanned out.
fn nested_model() -> Vec<u8> {
    let then_branch = graph(
        "then",
        vec![node("Mul", &["acc", "scale"], &["doubled"], vec![])],
        vec![],
        &["doubled"],
    );
    let else_branch = graph(
        "else",
        vec![node("Add", &["acc", "x"], &["added"], vec![])],
        vec![],
        &["added"],
    );
    let mut body = graph(
        "body",
        vec![
            node("Less", &["i", "two"], &["early"], vec![]),
            node(
                "If",
                &["early"],
                &["next"],
                vec![
                    graph_attr("then_branch", then_branch),
                    graph_attr("else_branch", else_branch),
                ],
            ),
            node("Identity", &["cond_in"], &["cond_out"], vec![]),
            node("Identity", &["next"], &["scanned"], vec![]),
        ],
        vec![
            info("i", tensor_type(DataType::I64)),
            info("cond_in", tensor_type(DataType::Bool)),
            info("acc", tensor_type(DataType::F32)),
        ],
        &["cond_out", "next", "scanned"],
    );
    body.output[0] = info("cond_out", tensor_type(DataType::Bool));
    body.initializer.push(TensorProto {
        name: Some("two".into()),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        int64_data: vec![2],
        ..Default::default()
    });
    let main = GraphProto {
        name: Some("main".into()),
        node: vec![node(
            "Loop",
            &["n", "", "x"],
            &["acc_final", "all"],
            vec![graph_attr("body", body)],
        )],
        input: vec![
            info("x", tensor_type(DataType::F32)),
            info("n", tensor_type(DataType::I64)),
        ],
        output: vec![
            info("acc_final", tensor_type(DataType::F32)),
            info("all", tensor_type(DataType::F32)),
        ],
        initializer: vec![TensorProto {
            name: Some("scale".into()),
            data_type: Some(tensor_proto::DataType::Float as i32),
            float_data: vec![2.0],
            ..Default::default()
        }],
        ..Default::default()
    };
    model(main)
}

#[test]
fn nested_subgraphs_read_every_enclosing_scope() {
    let session = Session::builder()
        .commit_from_memory(&nested_model())
        .unwrap();
    let x = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let out = session
        .run([("x", x.clone()), ("n", Tensor::scalar(4i64))])
        .unwrap();
    assert_eq!(
        out["acc_final"].as_slice::<f32>().unwrap(),
        &[6.0, 12.0, 18.0]
    );
    assert_eq!(out["all"].shape(), &[4, 3]);
    assert_eq!(
        out["all"].as_slice::<f32>().unwrap(),
        &[2.0, 4.0, 6.0, 4.0, 8.0, 12.0, 5.0, 10.0, 15.0, 6.0, 12.0, 18.0]
    );
    // Zero iterations: the initial value and an empty scan output.
    let out = session
        .run([("x", x.clone()), ("n", Tensor::scalar(0i64))])
        .unwrap();
    assert_eq!(out["acc_final"], x);
    assert_eq!(out["all"].shape(), &[0]);
    // The session runs concurrently, subgraphs included.
    std::thread::scope(|s| {
        for n in 1..4i64 {
            let session = &session;
            let x = x.clone();
            s.spawn(move || {
                let out = session.run([("x", x), ("n", Tensor::scalar(n))]).unwrap();
                assert_eq!(out["all"].shape(), &[n as usize, 3]);
            });
        }
    });
}

#[test]
fn a_subgraph_reading_an_undefined_value_is_an_error() {
    let branch = graph(
        "then",
        vec![node("Identity", &["nowhere"], &["y"], vec![])],
        vec![],
        &["y"],
    );
    let main = GraphProto {
        name: Some("main".into()),
        node: vec![node(
            "If",
            &["c"],
            &["out"],
            vec![
                graph_attr("then_branch", branch.clone()),
                graph_attr("else_branch", branch),
            ],
        )],
        input: vec![info("c", tensor_type(DataType::Bool))],
        output: vec![info("out", tensor_type(DataType::F32))],
        ..Default::default()
    };
    let err = match Session::builder().commit_from_memory(&model(main)) {
        Ok(_) => panic!("a dangling outer-scope read was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("nowhere"), "{err}");
}

/// SequenceConstruct → SequenceInsert → ConcatFromSequence, with a sequence
/// fed as an input and one returned as an output.
#[test]
fn sequences_are_session_values() {
    let seq_type = TypeProto {
        value: Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: Some(Box::new(tensor_type(DataType::F32))),
            },
        ))),
        denotation: None,
    };
    let int_attr = |name: &str, v: i64| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    };
    let main = GraphProto {
        name: Some("seq".into()),
        node: vec![
            node("SequenceInsert", &["s", "t"], &["s2"], vec![]),
            node(
                "ConcatFromSequence",
                &["s2"],
                &["joined"],
                vec![int_attr("axis", 0)],
            ),
            node("SequenceLength", &["s2"], &["len"], vec![]),
        ],
        input: vec![
            info("s", seq_type.clone()),
            info("t", tensor_type(DataType::F32)),
        ],
        output: vec![
            info("s2", seq_type),
            info("joined", tensor_type(DataType::F32)),
            info("len", tensor_type(DataType::I64)),
        ],
        ..Default::default()
    };
    let session = Session::builder().commit_from_memory(&model(main)).unwrap();
    let a = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
    let b = Tensor::from_vec(vec![1], vec![3.0f32]).unwrap();
    let s = Value::Sequence(Sequence::new(DataType::F32, vec![a.clone()]).unwrap());
    let out = session
        .run([("s", s.clone()), ("t", Value::Tensor(b.clone()))])
        .unwrap();
    assert_eq!(out["joined"].as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0]);
    assert_eq!(out["len"].as_slice::<i64>().unwrap(), &[2]);
    let Some(Value::Sequence(s2)) = out.value("s2") else {
        panic!("s2 is not a sequence")
    };
    assert_eq!(s2.items, vec![a.clone(), b.clone()]);
    // A tensor where a sequence is declared is a typed input error.
    let err = session
        .run([("s", Value::Tensor(a)), ("t", Value::Tensor(b))])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("input 's': expected seq(tensor(float"),
        "{err}"
    );
}

/// A map passes through a session (Identity, and inside an Optional).
#[test]
fn maps_are_session_values() {
    use oxrt::core::Map;
    let map_type = TypeProto {
        value: Some(type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: Some(DataType::I64.onnx_code()),
            value_type: Some(Box::new(tensor_type(DataType::F32))),
        }))),
        denotation: None,
    };
    let opt_type = TypeProto {
        value: Some(type_proto::Value::OptionalType(Box::new(
            type_proto::Optional {
                elem_type: Some(Box::new(map_type.clone())),
            },
        ))),
        denotation: None,
    };
    let main = GraphProto {
        name: Some("maps".into()),
        node: vec![
            node("Identity", &["m"], &["same"], vec![]),
            node("Optional", &["m"], &["wrapped"], vec![]),
            node("OptionalHasElement", &["wrapped"], &["has"], vec![]),
        ],
        input: vec![info("m", map_type.clone())],
        output: vec![
            info("same", map_type),
            info("wrapped", opt_type),
            info("has", tensor_type(DataType::Bool)),
        ],
        ..Default::default()
    };
    let session = Session::builder().commit_from_memory(&model(main)).unwrap();
    let keys = Tensor::from_vec(vec![2], vec![3i64, 7]).unwrap();
    let values = vec![
        Value::Tensor(Tensor::scalar(0.5f32)),
        Value::Tensor(Tensor::scalar(1.5f32)),
    ];
    let m = Value::Map(Map::new(keys, values).unwrap());
    let out = session.run([("m", m.clone())]).unwrap();
    assert_eq!(out.value("same"), Some(&m));
    assert_eq!(
        out.value("wrapped"),
        Some(&Value::Optional(Some(Box::new(m))))
    );
    assert_eq!(out["has"].as_slice::<bool>().unwrap(), &[true]);
    // String keys where int64 keys are declared are a typed input error.
    let wrong = Map::new(
        Tensor::from_strings(vec![1], vec!["a".into()]).unwrap(),
        vec![Value::Tensor(Tensor::scalar(1.0f32))],
    )
    .unwrap();
    let err = session.run([("m", Value::Map(wrong))]).unwrap_err();
    assert!(
        err.to_string().starts_with("input 'm': expected map("),
        "{err}"
    );
}

/// A branch may return an outer value directly (no node in it), and an
/// Identity feeding a subgraph is bypassed by the optimizer without
/// changing results.
#[test]
fn branches_return_outer_values_at_every_optimization_level() {
    let then_branch = graph("then", vec![], vec![], &["a"]);
    let else_branch = graph(
        "else",
        vec![node("Neg", &["a"], &["neg"], vec![])],
        vec![],
        &["neg"],
    );
    let main = GraphProto {
        name: Some("main".into()),
        node: vec![
            node("Identity", &["x"], &["a"], vec![]),
            node(
                "If",
                &["c"],
                &["out"],
                vec![
                    graph_attr("then_branch", then_branch),
                    graph_attr("else_branch", else_branch),
                ],
            ),
        ],
        input: vec![
            info("x", tensor_type(DataType::F32)),
            info("c", tensor_type(DataType::Bool)),
        ],
        output: vec![info("out", tensor_type(DataType::F32))],
        ..Default::default()
    };
    let bytes = model(main);
    let x = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]).unwrap();
    for level in [
        oxrt::OptimizationLevel::Disabled,
        oxrt::OptimizationLevel::All,
    ] {
        let session = Session::builder()
            .with_optimization_level(level)
            .commit_from_memory(&bytes)
            .unwrap();
        let run = |c: bool| {
            session
                .run([("x", x.clone()), ("c", Tensor::scalar(c))])
                .unwrap()["out"]
                .clone()
        };
        assert_eq!(run(true), x, "{level:?}");
        assert_eq!(
            run(false).as_slice::<f32>().unwrap(),
            &[-1.0, 2.0],
            "{level:?}"
        );
        let identities = session
            .model()
            .graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "Identity")
            .count();
        assert_eq!(
            identities,
            usize::from(level == oxrt::OptimizationLevel::Disabled)
        );
    }
}
