//! `quantize` end to end on minilm_l6_v2: int4 weights (GPTQ on the
//! calibration data) as com.microsoft::MatMulNBits, which tract and
//! onnxruntime both run and agree on, with the embedding tables in int4
//! too; the sentence embeddings stay close to the original's, every
//! MatMul site and table is reported, and the weights shrink.

use crate::{
    ort_compare, pass_report, pass_stat, path_str, python_has_onnxruntime, sculpt, sculpt_ok,
};

#[test]
fn int4_minilm_runs_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let inputs = folder.join("inputs.npz");
    let out = dir.path().join("int4.onnx");
    let report = dir.path().join("report.json");
    sculpt_ok(&[
        "opt",
        path_str(&model),
        "-p",
        "quantize{block=32}",
        "--calib",
        path_str(&folder.join("calib.npz")),
        "-o",
        path_str(&out),
        "--report",
        path_str(&report),
    ]);
    let pass = pass_report(&report, "quantize");
    let records = pass["outcome"]["records"].as_array().unwrap();
    let (sites, tables): (Vec<_>, Vec<_>) = records.iter().partition(|r| r["site"].is_string());
    assert_eq!(sites.len(), 36, "every linear site of the 6 layers");
    // The word and position embeddings (the 2-row token types stay f32).
    assert_eq!(tables.len(), 2, "{tables:?}");
    for rec in sites {
        assert_eq!(rec["rounding"], "gptq");
        let e = rec["predicted_error"].as_f64().unwrap();
        assert!(e > 0.0 && e < 0.05, "{rec}");
    }
    let stat = |name: &str| pass_stat(&pass, name);
    let (before, after) = (stat("weight_bytes_before"), stat("weight_bytes_after"));
    assert!(after < before / 6.0, "{before} -> {after}");
    // tract: close to the original model (int4 weights, not exact).
    let c = sculpt(&[
        "check",
        path_str(&model),
        path_str(&out),
        "--inputs",
        path_str(&inputs),
        "--json",
    ]);
    let cmp: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    let embedding = cmp["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "sentence_embedding")
        .unwrap();
    assert!(embedding["cosine"].as_f64().unwrap() > 0.98, "{embedding}");
    // onnxruntime computes what tract does on the same model.
    if python_has_onnxruntime() {
        let tract = dir.path().join("tract.npz");
        sculpt_ok(&[
            "run",
            path_str(&out),
            "--inputs",
            path_str(&inputs),
            "-o",
            path_str(&tract),
        ]);
        ort_compare(
            path_str(&out),
            path_str(&out),
            path_str(&inputs),
            // Their int4 kernels sum in other orders, through six layers:
            // agreement to a few thousandths.
            &[
                "--reference-npz",
                path_str(&tract),
                "--rtol",
                "1e-3",
                "--atol",
                "5e-3",
            ],
        );
    }
}

/// int8 QDQ on corpus models with their calibration data (the OCR
/// model's real crops; for mobilenet, whose input is a standard normal
/// image, seeded normal samples): onnxruntime loads and runs the result
/// (the opset-11 OCR model raised to 13 first) and its outputs stay close
/// to the original's.
#[test]
fn int8_qdq_runs_in_onnxruntime() {
    if !python_has_onnxruntime() {
        eprintln!("skipping: no onnxruntime (nor numpy) in python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, cosine_floor) in [("ppocr_mobile_v2_cls", 0.98), ("mobilenet_v3_small", 0.95)] {
        let folder = crate::corpus_dir().join(name);
        let model = folder.join("model.onnx");
        let out = dir.path().join(format!("{name}.onnx"));
        let report = dir.path().join(format!("{name}.json"));
        let mut calib = folder.join("calib.npz");
        if !calib.exists() {
            calib = dir.path().join(format!("{name}_calib.npz"));
            let made = std::process::Command::new("python3")
                .args(["-c", "import sys, numpy as np; np.savez(sys.argv[1], input=np.random.default_rng(0).standard_normal([8, 3, 224, 224]).astype(np.float32))"])
                .arg(&calib)
                .status()
                .unwrap();
            assert!(made.success());
        }
        let calib_args: Vec<String> = vec!["--calib".into(), path_str(&calib).into()];
        let mut args = vec![
            "opt",
            path_str(&model),
            "-p",
            "quantize{policy=int8 calib=mse}",
            "-o",
            path_str(&out),
            "--report",
            path_str(&report),
        ];
        args.extend(calib_args.iter().map(String::as_str));
        sculpt_ok(&args);
        let pass = pass_report(&report, "quantize");
        let stat = |k: &str| pass_stat(&pass, k);
        assert!(stat("weights_quantized") > 10.0, "{name}");
        assert!(
            stat("weight_bytes_after") < 0.4 * stat("weight_bytes_before"),
            "{name}"
        );
        let line = ort_compare(
            path_str(&model),
            path_str(&out),
            path_str(&folder.join("inputs.npz")),
            &["--min-cosine", &cosine_floor.to_string()],
        );
        eprintln!("{name}: {}", line.trim());
    }
}

/// SmoothQuant's rescaling alone (no op quantized) keeps minilm's
/// function: the norms are divided, the weights multiplied, the residual
/// restored.
#[test]
fn int8_smoothing_alone_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let out = dir.path().join("smoothed.onnx");
    let r = sculpt_ok(&[
        "opt",
        path_str(&model),
        "-p",
        "quantize{policy=int8 ops=NoSuchOp smooth=0.5}",
        "--calib",
        path_str(&folder.join("calib.npz")),
        "-o",
        path_str(&out),
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("12 inputs smoothed"), "{stderr}");
    sculpt_ok(&[
        "check",
        path_str(&model),
        path_str(&out),
        "--inputs",
        path_str(&folder.join("inputs.npz")),
        "--rtol",
        "1e-3",
        "--atol",
        "1e-4",
    ]);
}
