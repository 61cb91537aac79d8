//! Defaults decided from the data and the graph, as a user meets them:
//! `prune{budget=…}` takes the criterion that measured best for what it is
//! given, and `quantize{policy=int8}` the ops that measured best for a
//! model with attention.

use crate::{corpus_dir, opt_and_report, repo};

fn details(pass: &serde_json::Value) -> Vec<String> {
    pass["outcome"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn prune_with_a_budget_picks_obs_with_data_and_magnitude_without() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("examples/models/tiny_cnn.onnx");
    let out = dir.path().join("pruned.onnx");
    let with_data = opt_and_report(
        &model,
        "prune{budget=0.2}",
        &["--calib-random", "16"],
        &out,
        "prune",
    );
    let lines = details(&with_data);
    assert!(
        lines.iter().any(|d| d.starts_with("criterion=auto: obs")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|d| d.starts_with("measured output error")),
        "a lossy pass with data reports its judged error: {lines:?}"
    );
    let without = opt_and_report(&model, "prune{budget=0.2}", &[], &out, "prune");
    let lines = details(&without);
    assert!(
        lines
            .iter()
            .any(|d| d.starts_with("criterion=auto: magnitude")),
        "{lines:?}"
    );
}

#[test]
fn int8_on_a_model_with_attention_quantizes_its_products() {
    let dir = tempfile::tempdir().unwrap();
    let minilm = corpus_dir().join("minilm_l6_v2/model.onnx");
    let out = dir.path().join("int8.onnx");
    let pass = opt_and_report(
        &minilm,
        "quantize{policy=int8}",
        &["--calib-random", "4"],
        &out,
        "quantize",
    );
    let lines = details(&pass);
    assert!(
        lines
            .iter()
            .any(|d| { d == "int8 ops for a model with attention: MatMul|Gemm|Gather (ops=auto)" }),
        "{lines:?}"
    );
    // A convolutional model keeps every op onnxruntime quantizes.
    let cnn = repo().join("examples/models/tiny_cnn.onnx");
    let pass = opt_and_report(
        &cnn,
        "quantize{policy=int8}",
        &["--calib-random", "8"],
        &out,
        "quantize",
    );
    let lines = details(&pass);
    assert!(
        !lines.iter().any(|d| d.contains("model with attention")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|d| d.contains("Int8 activations")),
        "{lines:?}"
    );
}
