//! The defining property of ZIG pruning, on every corpus model and several
//! random choices of channels: `mode=mask` and `mode=remove` give the same
//! outputs (tract, and onnxruntime), and the removed model is smaller.
//! And `criterion=zero` on a model whose groups were zeroed is lossless and
//! removes them all.

use crate::{corpus_models, ort_compare, path_str, python_has_onnxruntime, sculpt};

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

/// Models beside the corpus, written in the text form under
/// `tests/models/`, as ONNX with inputs: (name, model, inputs).
fn extra_models(dir: &std::path::Path) -> Vec<(String, std::path::PathBuf, std::path::PathBuf)> {
    let name = "vad_if_lstm";
    let model = crate::text_model(name, dir);
    // The LSTM branch taken: flag true.
    let x: Vec<f32> = (0..32)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
        .collect();
    let inputs = dir.join(format!("{name}.npz"));
    sculpt_runtime::write_npz(
        &inputs,
        &[
            sculpt_runtime::Array::from_f32("x", vec![1, 2, 16], &x),
            sculpt_runtime::Array {
                name: "flag".into(),
                dtype: sculpt_ir::DataType::BOOL,
                shape: vec![],
                data: vec![1],
            },
        ],
    )
    .unwrap();
    vec![(name.to_string(), model, inputs)]
}

/// onnxruntime gives the masked and the removed model the same outputs.
/// Removing channels changes its summation order: float32 noise through
/// 6 transformer layers.
fn ort_same_outputs(masked: &std::path::Path, removed: &std::path::Path, inputs: &std::path::Path) {
    let tolerance = ["--rtol", "1e-4", "--atol", "1e-5"];
    ort_compare(
        path_str(masked),
        path_str(removed),
        path_str(inputs),
        &tolerance,
    );
}

#[test]
fn masked_equals_removed_on_every_corpus_model() {
    let dir = tempfile::tempdir().unwrap();
    let ort = python_has_onnxruntime();
    let mut models: Vec<(String, std::path::PathBuf, std::path::PathBuf)> = corpus_models()
        .into_iter()
        .map(|(name, folder)| (name, folder.join("model.onnx"), folder.join("inputs.npz")))
        .collect();
    models.extend(extra_models(dir.path()));
    for (name, model, inputs) in models {
        // cleanup first: the zoo models build their weights at run time.
        let base = dir.path().join(format!("{name}.clean.onnx"));
        opt(&model, "cleanup", &base);
        for seed in 0..2 {
            let masked = dir.path().join(format!("{name}.{seed}.mask.onnx"));
            let removed = dir.path().join(format!("{name}.{seed}.remove.onnx"));
            let pipeline =
                |mode: &str| format!("prune{{criterion=random ratio=0.3 seed={seed} mode={mode}}}");
            opt(&base, &pipeline("mask"), &masked);
            opt(&base, &pipeline("remove"), &removed);
            assert_same_outputs(&masked, &removed, &inputs, &format!("{name} seed {seed}"));
            if ort {
                ort_same_outputs(&masked, &removed, &inputs);
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

/// With reconstruction, the model with the channels removed and the one
/// with them masked and its consumers refitted compute the same.
#[test]
fn refitted_removal_equals_refitted_mask() {
    let dir = tempfile::tempdir().unwrap();
    let ort = python_has_onnxruntime();
    let mut models: Vec<(String, std::path::PathBuf, std::path::PathBuf)> =
        ["ppocr_mobile_v2_cls", "mobilenet_v3_small", "minilm_l6_v2"]
            .iter()
            .map(|&n| {
                let folder = crate::corpus_dir().join(n);
                (
                    n.to_string(),
                    folder.join("model.onnx"),
                    folder.join("inputs.npz"),
                )
            })
            .collect();
    models.extend(extra_models(dir.path()));
    for (name, model, inputs) in models {
        let calib = model.with_file_name("calib.npz");
        let calibration: Vec<&str> = if calib.exists() {
            vec!["--calib", path_str(&calib)]
        } else {
            vec!["--calib-random", "8"]
        };
        let run = |mode: &str, criterion: &str| {
            let out = dir.path().join(format!("{name}.{criterion}.{mode}.onnx"));
            let pipeline = format!(
                "prune{{criterion={criterion} ratio=0.3 reconstruct=ls allocate=predicted mode={mode}}}"
            );
            let mut args = vec![
                "opt",
                path_str(&model),
                "-p",
                &pipeline,
                "-o",
                path_str(&out),
            ];
            args.extend_from_slice(&calibration);
            let r = sculpt(&args);
            assert!(
                r.status.success(),
                "{pipeline} on {name}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            out
        };
        for criterion in ["activation", "obs"] {
            let (masked, removed) = (run("mask", criterion), run("remove", criterion));
            let what = format!("{name} {criterion}, refitted");
            assert_close_outputs(&masked, &removed, &inputs, &what, "1e-4", "1e-5");
            if ort {
                ort_same_outputs(&masked, &removed, &inputs);
            }
        }
    }
}

/// A pass that analyses the graph gets `cleanup` around it: on the raw
/// export, `prune` alone finds what `cleanup,prune` finds.
#[test]
fn analysing_passes_get_cleanup_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("ppocr_mobile_v2_cls");
    let model = folder.join("model.onnx");
    let pruned = |args: &[&str], tag: &str| {
        let out = dir.path().join(format!("{tag}.onnx"));
        let report = dir.path().join(format!("{tag}.json"));
        let mut all = vec![
            "opt",
            path_str(&model),
            "-o",
            path_str(&out),
            "--report",
            path_str(&report),
        ];
        all.extend_from_slice(args);
        let r = sculpt(&all);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let passes: Vec<String> = v["run"]["passes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pass"].as_str().unwrap().to_string())
            .collect();
        (passes, stats(&out).0)
    };
    let (auto, p_auto) = pruned(&["-p", "prune{criterion=magnitude ratio=0.3}"], "auto");
    assert_eq!(auto, ["cleanup#auto", "prune", "cleanup#auto"]);
    let (explicit, p_explicit) = pruned(
        &["-p", "cleanup,prune{criterion=magnitude ratio=0.3},cleanup"],
        "explicit",
    );
    assert_eq!(explicit, ["cleanup", "prune", "cleanup"]);
    assert_eq!(p_auto, p_explicit);
    let (raw, p_raw) = pruned(
        &["-p", "prune{criterion=magnitude ratio=0.3}", "--no-cleanup"],
        "raw",
    );
    assert_eq!(raw, ["prune"]);
    assert!(p_raw > p_auto, "without cleanup less is prunable");
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
    let mut m = sculpt_ir::load(model).unwrap();
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
