//! Every corpus model: import → export reproduces the file's protobuf
//! (canonically), and the text form round-trips: parse(print(m)) == m.

use crate::corpus_models;
use prost::Message;
use sculpt_ir::onnx::proto::ModelProto;
use sculpt_ir::text::{parse, print, PrintOptions};

/// Protobuf debug text with empty optional strings read as absent: the
/// export writes `""` as absent, which means the same in ONNX.
fn canon<T: std::fmt::Debug>(x: &T) -> String {
    format!("{x:?}").replace("Some(\"\")", "None")
}

#[test]
fn import_export_is_lossless() {
    for (name, path) in corpus_models() {
        let original = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
        let model = sculpt_ir::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let exported = sculpt_ir::onnx::to_proto(&model);
        let og = original.graph.as_ref().unwrap();
        let eg = exported.graph.as_ref().unwrap();
        assert_eq!(canon(&og.node), canon(&eg.node), "{name}: nodes");
        assert_eq!(
            canon(&og.initializer),
            canon(&eg.initializer),
            "{name}: initializers"
        );
        assert_eq!(canon(&og.input), canon(&eg.input), "{name}: inputs");
        assert_eq!(canon(&og.output), canon(&eg.output), "{name}: outputs");
        let mut vi_a = og.value_info.clone();
        let mut vi_b = eg.value_info.clone();
        vi_a.sort_by(|a, b| a.name.cmp(&b.name));
        vi_b.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(canon(&vi_a), canon(&vi_b), "{name}: value_info (as a set)");
        assert_eq!(
            canon(&original.opset_import),
            canon(&exported.opset_import),
            "{name}: opsets"
        );
        assert_eq!(
            canon(&original.metadata_props),
            canon(&exported.metadata_props),
            "{name}: metadata"
        );
        // Export of the re-import is a fixed point.
        let again = sculpt_ir::onnx::from_bytes(exported.encode_to_vec().into(), None).unwrap();
        assert!(again == model, "{name}: export is not a fixed point");
    }
}

#[test]
fn text_form_round_trips_every_corpus_model() {
    let full = PrintOptions {
        full: true,
        ..Default::default()
    };
    for (name, path) in corpus_models() {
        let model = sculpt_ir::load(&path).unwrap();
        let text = print(&model, &full);
        let parsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(parsed == model, "{name}: parse(print(m)) != m");
        assert_eq!(
            print(&parsed, &full),
            text,
            "{name}: printing is not deterministic"
        );
    }
}

#[test]
fn elided_text_is_refused_with_the_reason() {
    let (_, path) = corpus_models()
        .into_iter()
        .find(|(n, _)| n == "resnet18")
        .unwrap();
    let model = sculpt_ir::load(&path).unwrap();
    let text = print(&model, &PrintOptions::default());
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("elided"), "{err}");
}

#[test]
fn external_data_round_trips_and_is_mapped() {
    let (_, path) = corpus_models()
        .into_iter()
        .find(|(n, _)| n == "mobilenet_v3_small")
        .unwrap();
    let model = sculpt_ir::load(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let options = sculpt_ir::onnx::SaveOptions {
        external: sculpt_ir::onnx::export::ExternalPolicy::Always {
            location: None,
            threshold: 1024,
        },
        ..Default::default()
    };
    sculpt_ir::onnx::save(&model, &out, &options).unwrap();
    let main_len = std::fs::metadata(&out).unwrap().len();
    let data_len = std::fs::metadata(dir.path().join("m.onnx.data"))
        .unwrap()
        .len();
    assert!(
        main_len < 200_000 && data_len > 9_000_000,
        "{main_len} {data_len}"
    );
    let back = sculpt_ir::load(&out).unwrap();
    assert!(back == model, "external data changed the model");
}
