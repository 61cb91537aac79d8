//! The defining property of ZIG pruning, on every corpus model and several
//! random choices of channels: `mode=mask` and `mode=remove` give the same
//! outputs (tract, and onnxruntime), and the removed model is smaller.
//! And `criterion=zero` on a model whose groups were zeroed is lossless and
//! removes them all.

use crate::{corpus_models, path_str, python_has_onnxruntime, repo, sculpt};

fn opt(input: &std::path::Path, pipeline: &str, output: &std::path::Path) {
    let r = sculpt(&[
        "opt",
        path_str(input),
        "-p",
        pipeline,
        "-o",
        path_str(output),
    ]);
    assert!(
        r.status.success(),
        "{pipeline} on {}: {}",
        input.display(),
        String::from_utf8_lossy(&r.stderr)
    );
}

/// `sculpt check a b` passes: outputs agree to rtol 1e-5, atol 1e-6.
fn assert_same_outputs(
    a: &std::path::Path,
    b: &std::path::Path,
    inputs: &std::path::Path,
    what: &str,
) {
    assert_close_outputs(a, b, inputs, what, "1e-5", "1e-6")
}

fn assert_close_outputs(
    a: &std::path::Path,
    b: &std::path::Path,
    inputs: &std::path::Path,
    what: &str,
    rtol: &str,
    atol: &str,
) {
    let c = sculpt(&[
        "check",
        path_str(a),
        path_str(b),
        "--inputs",
        path_str(inputs),
        "--rtol",
        rtol,
        "--atol",
        atol,
    ]);
    assert!(
        c.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&c.stdout)
    );
}

fn stats(path: &std::path::Path) -> (u64, u64) {
    let out = sculpt(&["inspect", path_str(path), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["params"].as_u64().unwrap(), v["flops"].as_u64().unwrap())
}

#[test]
fn masked_equals_removed_on_every_corpus_model() {
    let dir = tempfile::tempdir().unwrap();
    let ort = python_has_onnxruntime();
    for (name, folder) in corpus_models() {
        let inputs = folder.join("inputs.npz");
        // cleanup first: the zoo models build their weights at run time.
        let base = dir.path().join(format!("{name}.onnx"));
        opt(&folder.join("model.onnx"), "cleanup", &base);
        for seed in 0..2 {
            let masked = dir.path().join(format!("{name}.{seed}.mask.onnx"));
            let removed = dir.path().join(format!("{name}.{seed}.remove.onnx"));
            let pipeline =
                |mode: &str| format!("prune{{criterion=random ratio=0.3 seed={seed} mode={mode}}}");
            opt(&base, &pipeline("mask"), &masked);
            opt(&base, &pipeline("remove"), &removed);
            assert_same_outputs(&masked, &removed, &inputs, &format!("{name} seed {seed}"));
            if ort {
                let script = repo().join("tests/scripts/ort_compare.py");
                let o = std::process::Command::new("python3")
                    .arg(&script)
                    .args([
                        path_str(&masked),
                        path_str(&removed),
                        path_str(&inputs),
                        // Removing channels changes onnxruntime's summation
                        // order: float32 noise through 6 transformer layers.
                        "--rtol",
                        "1e-4",
                        "--atol",
                        "1e-5",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{name} seed {seed}: {}",
                    String::from_utf8_lossy(&o.stdout)
                );
            }
            let ((pm, fm), (pr, fr)) = (stats(&masked), stats(&removed));
            if seed == 0 {
                eprintln!("{name}: params {pm} -> {pr}, FLOPs {fm} -> {fr}");
            }
            assert!(
                pr <= pm && fr <= fm,
                "{name}: removal did not shrink the model"
            );
        }
    }
}

#[test]
fn zero_criterion_removes_zeroed_groups_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "resnet18",
        "minilm_l6_v2",
        "mobilenet_v3_small",
        "ppocr_mobile_v2_cls",
    ] {
        let folder = crate::corpus_dir().join(name);
        let masked = dir.path().join(format!("{name}.mask.onnx"));
        let removed = dir.path().join(format!("{name}.remove.onnx"));
        let pruned = dir.path().join(format!("{name}.zero.onnx"));
        let choice = "prune{criterion=random ratio=0.25 seed=7 mode=MODE}";
        opt(
            &folder.join("model.onnx"),
            &choice.replace("MODE", "mask"),
            &masked,
        );
        opt(
            &folder.join("model.onnx"),
            &choice.replace("MODE", "remove"),
            &removed,
        );
        opt(&masked, "prune{criterion=zero}", &pruned);
        assert_same_outputs(&masked, &pruned, &folder.join("inputs.npz"), name);
        let ((pm, _), (pp, _), (pr, _)) = (stats(&masked), stats(&pruned), stats(&removed));
        eprintln!("{name}: zeroed model {pm} params; prune{{criterion=zero}} leaves {pp}; removing the same channels directly leaves {pr}");
        // Every zeroed channel is found and removed.
        assert!(
            pp <= pr && pp < pm,
            "{name}: zeroed groups were not all removed ({pm} -> {pp}, expected {pr})"
        );
    }
}

/// Zeroes the producing weights of `columns` output features of every
/// MatMul whose name contains `pattern`, leaving their biases: those
/// channels output a non-zero constant (GELU of the bias).
fn zero_weights_keep_biases(
    model: &std::path::Path,
    pattern: &str,
    columns: usize,
    out: &std::path::Path,
) {
    let mut m = sculpt_ir::onnx::load(model).unwrap();
    let g = &mut m.graph;
    let weights: Vec<_> = g
        .nodes()
        .filter(|(_, n)| n.op_type == "MatMul" && n.name.contains(pattern))
        .filter_map(|(_, n)| n.input(1))
        .collect();
    assert!(!weights.is_empty());
    for w in weights {
        let t = g.value(w).tensor().unwrap();
        let (rows, cols) = (t.dims[0] as usize, t.dims[1] as usize);
        let mut v = t.to_f32_vec().unwrap();
        for r in 0..rows {
            for c in 0..columns.min(cols) {
                v[r * cols + c] = 0.0;
            }
        }
        let zeroed = sculpt_ir::Tensor::from_f32(t.dims.clone(), &v);
        g.value_mut(w).init = Some(sculpt_ir::Initializer::Dense(zeroed));
    }
    sculpt_ir::onnx::save(&m, out, &Default::default()).unwrap();
}

#[test]
fn zero_criterion_folds_channels_a_bias_keeps_alive() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let clean = dir.path().join("clean.onnx");
    let zeroed = dir.path().join("zeroed.onnx");
    let pruned = dir.path().join("pruned.onnx");
    opt(&folder.join("model.onnx"), "cleanup", &clean);
    // 300 FFN neurons per layer: W1 columns zero, b1 not.
    zero_weights_keep_biases(&clean, "intermediate/dense/MatMul", 300, &zeroed);
    opt(&zeroed, "prune{criterion=zero}", &pruned);
    // The folded bias is summed in another order: float32 rounding.
    let inputs = folder.join("inputs.npz");
    assert_close_outputs(&zeroed, &pruned, &inputs, "folded minilm", "1e-4", "1e-5");
    let ((pz, _), (pp, _)) = (stats(&zeroed), stats(&pruned));
    eprintln!("minilm, 300 FFN neurons per layer zeroed but for their bias: {pz} -> {pp} params");
    // W1 column, b1 entry and W2 row of 6 x 300 neurons.
    assert_eq!(pz - pp, 6 * 300 * (384 + 1 + 384));
}
