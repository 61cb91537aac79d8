//! `moe` end to end on minilm_l6_v2: with k = E the experts compute the
//! dense FFNs (standard ops in tract and onnxruntime; onnxruntime's MoE
//! op, whose GELU is the tanh approximation, within its distance of the
//! exact one); with k < E on calibration data every FFN is reported with
//! its expert sizes, router recall and FLOPs, and the model still runs
//! in onnxruntime close to the original.

use crate::{opt_and_report, ort_compare, pass_stat, path_str, python_has_onnxruntime, sculpt_ok};

#[test]
fn all_experts_equal_the_dense_ffns() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let inputs = folder.join("inputs.npz");
    for (form, rtol, atol) in [("onnx", "1e-4", "1e-5"), ("ort", "1e-2", "1e-2")] {
        let out = dir.path().join(format!("{form}.onnx"));
        let pass = opt_and_report(
            &model,
            &format!("moe{{experts=4 k=4 form={form} partition=random router=random skip=zero}}"),
            &[],
            &out,
            "moe",
        );
        assert_eq!(pass_stat(&pass, "ffns_factored"), 6.0, "{form}");
        if form == "onnx" {
            sculpt_ok(&[
                "check",
                path_str(&model),
                path_str(&out),
                "--inputs",
                path_str(&inputs),
                "--rtol",
                rtol,
                "--atol",
                atol,
            ]);
        }
        if python_has_onnxruntime() {
            ort_compare(
                path_str(&model),
                path_str(&out),
                path_str(&inputs),
                &["--rtol", rtol, "--atol", atol],
            );
        }
    }
}

#[test]
fn routed_experts_are_reported_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let out = dir.path().join("moe.onnx");
    let calib = folder.join("calib.npz");
    let pass = opt_and_report(
        &model,
        "moe{experts=8 k=4 rounds=1}",
        &["--calib", path_str(&calib)],
        &out,
        "moe",
    );
    let records = pass["outcome"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 6);
    for r in records {
        assert_eq!(r["expert_sizes"].as_array().unwrap().len(), 8, "{r}");
        let recall = r["router_recall"].as_f64().unwrap();
        assert!(recall > 0.6 && recall <= 1.0, "{r}");
        assert!(r["flops_routed"].as_f64().unwrap() < 0.6 * r["flops_dense"].as_f64().unwrap());
    }
    let error = pass_stat(&pass, "output_rel_error");
    assert!(error > 0.0 && error < 0.5, "{error}");
    if python_has_onnxruntime() {
        ort_compare(
            path_str(&model),
            path_str(&out),
            path_str(&folder.join("inputs.npz")),
            &["--min-cosine", "0.6"],
        );
    }
}

/// Decoder-style FFNs (GPT-2's tanh-GELU spelled out, LLaMA's gated SiLU,
/// a HardSwish one, a head that widens then narrows the features) are
/// found from the graph; with k = E they equal the dense model in tract
/// and onnxruntime in both forms. onnxruntime's MoE op computes all but
/// the HardSwish FFN (the gated one as its SwiGLU, the head padded to
/// the wider width), which is written with standard ops and named.
#[test]
fn decoder_ffns_are_found_and_exact_with_all_experts() {
    if !python_has_onnxruntime() {
        eprintln!("skipping: no onnx/onnxruntime in python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, inputs) = (dir.path().join("dec.onnx"), dir.path().join("dec.npz"));
    let made = std::process::Command::new("python3")
        .arg(crate::repo().join("tests/scripts/decoder_ffns.py"))
        .args([&model, &inputs])
        .status()
        .unwrap();
    assert!(made.success());
    let (model_s, inputs_s) = (path_str(&model), path_str(&inputs));
    let tolerance = ["--rtol", "1e-4", "--atol", "1e-4"];
    for form in ["onnx", "ort"] {
        let out = dir.path().join(format!("{form}.onnx"));
        let pass = opt_and_report(
            &model,
            &format!("moe{{experts=4 k=4 partition=random router=random skip=zero form={form}}}"),
            &[],
            &out,
            "moe",
        );
        let records = pass["outcome"]["records"].as_array().unwrap();
        let field =
            |key: &str| -> Vec<String> { records.iter().map(|r| r[key].to_string()).collect() };
        assert_eq!(
            field("ffn"),
            [
                "mlp/c_proj/MatMul",
                "mlp/down_proj/MatMul",
                "hs/fc2/MatMul",
                "head/wide/fc2/MatMul",
                "head/narrow/fc2/MatMul"
            ]
            .map(|n| format!("\"{n}\"")),
        );
        assert_eq!(field("gated"), ["false", "true", "false", "false", "false"]);
        let expected = if form == "ort" {
            ["ort", "ort", "onnx", "ort", "ort"]
        } else {
            ["onnx"; 5]
        };
        assert_eq!(field("form"), expected.map(|f| format!("\"{f}\"")));
        if form == "ort" {
            let details = pass["outcome"]["details"].to_string();
            assert!(
                details.contains("hs/fc2/MatMul: written with standard ops"),
                "{details}"
            );
        } else {
            let mut check = vec!["check", model_s, path_str(&out), "--inputs", inputs_s];
            check.extend(tolerance);
            sculpt_ok(&check);
        }
        ort_compare(model_s, path_str(&out), inputs_s, &tolerance);
    }
}
