//! Bad input gets a one-line error naming the problem, never a panic.

use prost::Message;
use sculpt_ir::onnx::proto;

fn model_with(graph: proto::GraphProto) -> Vec<u8> {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn info(name: &str) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs.join("_"))),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn error_of(bytes: Vec<u8>) -> String {
    let e = sculpt_ir::onnx::from_bytes(bytes.into(), None)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn structural_errors_name_the_culprit() {
    let undefined = proto::GraphProto {
        input: vec![info("x")],
        output: vec![info("y")],
        node: vec![node("Add", &["x", "ghost"], &["y"])],
        ..Default::default()
    };
    assert!(error_of(model_with(undefined)).contains("'ghost' is used by node 'Add_y'"));

    let duplicate = proto::GraphProto {
        input: vec![info("x")],
        output: vec![info("y")],
        node: vec![node("Relu", &["x"], &["y"]), node("Neg", &["x"], &["y"])],
        ..Default::default()
    };
    assert!(error_of(model_with(duplicate)).contains("'y' is defined twice"));

    let cycle = proto::GraphProto {
        input: vec![info("x")],
        output: vec![info("b")],
        node: vec![
            node("Add", &["x", "b"], &["a"]),
            node("Relu", &["a"], &["b"]),
        ],
        ..Default::default()
    };
    assert!(error_of(model_with(cycle)).contains("cycle"));

    let bad_size = proto::GraphProto {
        input: vec![info("x")],
        output: vec![info("x")],
        initializer: vec![proto::TensorProto {
            name: Some("w".into()),
            data_type: Some(1),
            dims: vec![1000, 1000],
            raw_data: Some(vec![0u8; 12].into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = error_of(model_with(bad_size));
    assert!(
        e.contains("tensor 'w'") && e.contains("4000000 bytes"),
        "{e}"
    );

    let no_data = proto::GraphProto {
        input: vec![info("x")],
        output: vec![info("x")],
        initializer: vec![proto::TensorProto {
            name: Some("huge".into()),
            data_type: Some(1),
            dims: vec![1 << 40, 1 << 40],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(error_of(model_with(no_data)).contains("tensor 'huge'"));
}

#[test]
fn foreign_and_broken_files_are_refused() {
    assert!(error_of(b"PK\x03\x04rest of a zip".to_vec()).contains("zip"));
    assert!(error_of(b"\x93NUMPY\x01\x00".to_vec()).contains("NumPy"));
    assert!(error_of(b"\xff\xff\xff\xff\xff".to_vec()).contains("protobuf decode failed"));
    assert!(error_of(Vec::new()).contains("no graph"));
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(dir.path().join("secret.bin"), [0u8; 16]).unwrap();
    for location in ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"] {
        let entry = |k: &str, v: &str| proto::StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        };
        let g = proto::GraphProto {
            input: vec![info("x")],
            output: vec![info("x")],
            initializer: vec![proto::TensorProto {
                name: Some("w".into()),
                data_type: Some(1),
                dims: vec![4],
                data_location: Some(1),
                external_data: vec![entry("location", location), entry("length", "16")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let path = inner.join("m.onnx");
        std::fs::write(&path, model_with(g)).unwrap();
        let e = sculpt_ir::load(&path).unwrap_err().to_string();
        assert!(e.contains("leaves the model's folder"), "{location}: {e}");
    }
}
