//! `erase{zero=true}`: zero the groups of one residual block (resnet18) and
//! of one FFN block (minilm_l6_v2); erasing must give exactly the zeroed
//! model's outputs with fewer nodes and FLOPs.

use crate::{corpus_dir, path_str, sculpt};
use sculpt_ir::{Initializer, Model, Tensor};

/// Zeroes the constant inputs (weights and biases) of the named nodes.
fn zero_params(model: &mut Model, nodes: &[&str]) -> usize {
    let g = &mut model.graph;
    let mut targets = Vec::new();
    for (_, n) in g.nodes() {
        if nodes.iter().any(|name| n.name.contains(name)) {
            targets.extend(
                n.inputs()
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|v| g.value(*v).tensor().is_some()),
            );
        }
    }
    for &v in &targets {
        let t = g.value(v).tensor().unwrap().clone();
        let zeros = vec![0u8; t.byte_size() as usize];
        g.value_mut(v).init = Some(Initializer::Dense(Tensor::from_raw(
            t.dtype,
            t.dims.clone(),
            zeros.into(),
        )));
    }
    targets.len()
}

fn flops_and_nodes(path: &std::path::Path) -> (u64, u64) {
    let out = sculpt(&["inspect", path_str(path), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["flops"].as_u64().unwrap(), v["nodes"].as_u64().unwrap())
}

fn check_erasure(model_name: &str, nodes: &[&str]) {
    let folder = corpus_dir().join(model_name);
    let mut model = sculpt_ir::load(&folder.join("model.onnx")).unwrap();
    assert!(
        zero_params(&mut model, nodes) >= 2,
        "{model_name}: nothing to zero"
    );
    let dir = tempfile::tempdir().unwrap();
    let zeroed = dir.path().join("zeroed.onnx");
    let erased = dir.path().join("erased.onnx");
    sculpt_ir::onnx::save(&model, &zeroed, &Default::default()).unwrap();
    let inputs = folder.join("inputs.npz");
    // --check with zero tolerance: the erased model must equal the zeroed one.
    let r = sculpt(&[
        "opt",
        path_str(&zeroed),
        "-p",
        "erase{zero=true}",
        "-o",
        path_str(&erased),
        "--check",
        "--inputs",
        path_str(&inputs),
        "--rtol",
        "0",
        "--atol",
        "0",
    ]);
    assert!(
        r.status.success(),
        "{model_name}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let (f0, n0) = flops_and_nodes(&zeroed);
    let (f1, n1) = flops_and_nodes(&erased);
    eprintln!("{model_name}: zeroed {n0} nodes {f0} FLOPs -> erased {n1} nodes {f1} FLOPs");
    assert!(n1 < n0 && f1 < f0, "{model_name}: nothing was erased");
}

#[test]
fn zeroed_residual_block_of_resnet18_is_erased() {
    // The first basic block: its two convolutions (the branch of the first residual Add).
    let model = sculpt_ir::load(&corpus_dir().join("resnet18/model.onnx")).unwrap();
    let convs: Vec<String> = model
        .graph
        .nodes()
        .filter(|(_, n)| n.op_type == "Conv")
        .map(|(_, n)| n.name.clone())
        .collect();
    let block: Vec<&str> = convs
        .iter()
        .filter(|n| n.contains("layer1.0/"))
        .map(String::as_str)
        .collect();
    assert_eq!(block.len(), 2, "{convs:?}");
    check_erasure("resnet18", &block);
}

#[test]
fn zeroed_ffn_block_of_minilm_is_erased() {
    check_erasure(
        "minilm_l6_v2",
        &[
            "layer.2/intermediate/dense/MatMul",
            "layer.2/intermediate/dense/Add",
            "layer.2/output/dense/MatMul",
            "layer.2/output/dense/Add",
        ],
    );
}

#[test]
fn budgeted_erasure_skips_measured_blocks_and_reports_them() {
    let folder = corpus_dir().join("resnet18");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("erased.onnx");
    let report = dir.path().join("report.json");
    let r = sculpt(&[
        "opt",
        path_str(&folder.join("model.onnx")),
        "-p",
        "erase{budget=0.05 kind=conv}",
        "--calib-random",
        "2",
        "-o",
        path_str(&out),
        "--report",
        path_str(&report),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    // The pass itself, between the cleanups the manager runs around it.
    let pass = v["run"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pass"] == "erase")
        .unwrap();
    let details: Vec<String> = pass["outcome"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(
        details.iter().any(|d| d.starts_with("erased conv block")),
        "{details:?}"
    );
    assert!(
        details.last().unwrap().contains("measured output error"),
        "{details:?}"
    );
    assert!(pass["after"]["flops"].as_u64().unwrap() < pass["before"]["flops"].as_u64().unwrap());
    // The result is a valid model that runs.
    let run = sculpt(&[
        "run",
        path_str(&out),
        "--inputs",
        path_str(&folder.join("inputs.npz")),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Without calibration data the pass refuses, saying what it needs.
    let r = sculpt(&[
        "opt",
        path_str(&folder.join("model.onnx")),
        "-p",
        "erase{blocks=1}",
        "-o",
        path_str(&out),
    ]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("--calib"));
}
