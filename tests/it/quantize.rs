//! `quantize` end to end on minilm_l6_v2: int4 weights (GPTQ on the
//! calibration data) as com.microsoft::MatMulNBits, which tract and
//! onnxruntime both run and agree on, with the embedding tables in int4
//! too; the sentence embeddings stay close to the original's, every
//! MatMul site and table is reported, and the weights shrink.

use crate::{
    opt_and_report, ort_compare, pass_report, pass_stat, path_str, python_has_onnxruntime, sculpt,
    sculpt_ok,
};

#[test]
fn int4_minilm_runs_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let inputs = folder.join("inputs.npz");
    let out = dir.path().join("int4.onnx");
    let calib = folder.join("calib.npz");
    let pass = opt_and_report(
        &model,
        "quantize{block=32}",
        &["--calib", path_str(&calib)],
        &out,
        "quantize",
    );
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
/// restored; with `smooth_mul` the FFNs' GELU outputs are divided by a Mul.
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
        "quantize{policy=int8 ops=NoSuchOp tables=false smooth=0.5 smooth_mul=true}",
        "--calib",
        path_str(&folder.join("calib.npz")),
        "-o",
        path_str(&out),
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("24 inputs smoothed (12 through a Mul)"),
        "{stderr}"
    );
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

/// The other precisions load and run in onnxruntime close to the
/// original: fp16 regions on the OCR model (convolutions) and on minilm
/// (Softmax and LayerNormalization kept f32), bf16 weights, int8 weights
/// only as MatMulNBits, and int4 as standard blocked DequantizeLinear
/// (opset 21). `policy=fp32` changes nothing.
#[test]
fn other_precisions_run_in_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("ppocr_mobile_v2_cls", "quantize{policy=fp16}", 0.9999),
        ("minilm_l6_v2", "quantize{policy=fp16}", 0.9999),
        ("minilm_l6_v2", "quantize{policy=bf16 half=weights}", 0.999),
        ("minilm_l6_v2", "quantize{policy=w8 round=rtn}", 0.999),
        (
            "minilm_l6_v2",
            "quantize{policy=int4 format=dq round=rtn symmetric=true}",
            0.95,
        ),
    ];
    for (i, (name, pipeline, floor)) in cases.iter().enumerate() {
        let folder = crate::corpus_dir().join(name);
        let model = folder.join("model.onnx");
        let out = dir.path().join(format!("{i}.onnx"));
        let report = dir.path().join(format!("{i}.json"));
        sculpt_ok(&[
            "opt",
            path_str(&model),
            "-p",
            pipeline,
            "-o",
            path_str(&out),
            "--report",
            path_str(&report),
        ]);
        let pass = pass_report(&report, "quantize");
        let (before, after) = (
            pass_stat(&pass, "weight_bytes_before"),
            pass_stat(&pass, "weight_bytes_after"),
        );
        assert!(after < 0.6 * before, "{pipeline}: {before} -> {after}");
        if python_has_onnxruntime() {
            let line = ort_compare(
                path_str(&model),
                path_str(&out),
                path_str(&folder.join("inputs.npz")),
                &["--min-cosine", &floor.to_string()],
            );
            eprintln!("{name} {pipeline}: {}", line.trim());
        }
    }
    let model = crate::corpus_dir().join("ppocr_mobile_v2_cls/model.onnx");
    let same = dir.path().join("fp32.onnx");
    let r = sculpt_ok(&[
        "opt",
        path_str(&model),
        "-p",
        "quantize{policy=fp32}",
        "-o",
        path_str(&same),
    ]);
    let original = sculpt_ok(&["opt", path_str(&model), "-p", "", "-o", path_str(&same)]);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).lines().last(),
        String::from_utf8_lossy(&original.stdout).lines().last(),
        "the fp32 policy leaves the model as cleanup does"
    );
}

/// `search=true` within a size budget: every weight-only site and table
/// gets one of the choices, the weights fit the budget, the plot and the
/// policy are written, and the policy applied again picks the same
/// precisions. A search without a budget is refused.
#[test]
fn search_meets_its_budget_and_its_policy_reapplies() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::corpus_dir().join("minilm_l6_v2/model.onnx");
    let (out, report) = (dir.path().join("s.onnx"), dir.path().join("s.json"));
    let (svg, toml) = (dir.path().join("s.svg"), dir.path().join("s.toml"));
    let budget = 14_000_000.0;
    sculpt_ok(&[
        "opt",
        path_str(&model),
        "-p",
        &format!(
            "quantize{{search=true budget=size:{budget} choices=int4/128|w8/128 probe_samples=2 round=rtn plot={} policy_out={}}}",
            path_str(&svg),
            path_str(&toml)
        ),
        "--calib-random",
        "4",
        "-o",
        path_str(&out),
        "--report",
        path_str(&report),
    ]);
    let pass = pass_report(&report, "quantize");
    assert!(pass_stat(&pass, "weight_bytes_after") <= budget);
    let picked = |pass: &serde_json::Value| -> Vec<String> {
        pass["outcome"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["precision"].as_str().map(String::from))
            .collect()
    };
    let first = picked(&pass);
    assert_eq!(first.len(), 38, "36 sites and 2 tables");
    assert!(first.iter().any(|p| p == "w8/128") && first.iter().any(|p| p == "int4/128"));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let again = dir.path().join("again.json");
    sculpt_ok(&[
        "opt",
        path_str(&model),
        "-p",
        &format!("quantize{{policy={} round=rtn}}", path_str(&toml)),
        "-o",
        path_str(&dir.path().join("again.onnx")),
        "--report",
        path_str(&again),
    ]);
    assert_eq!(picked(&pass_report(&again, "quantize")), first);
    let refused = sculpt(&[
        "opt",
        path_str(&model),
        "-p",
        "quantize{search=true}",
        "-o",
        path_str(&out),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs budget"));
}

/// int8, fp16 and int4 reach into If branches whose weights the main
/// graph holds (as exporters write them): each branch's matrix products
/// are rewritten there, and the result computes the same in onnxruntime
/// on either branch.
#[test]
fn precisions_reach_into_if_branches() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::text_model("branch_mlp", dir.path());
    // Rows spread over ±2: the sum the If tests falls on either side.
    let rows = |n: usize, seed: usize| -> Vec<f32> {
        (0..n * 16)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0) - 2.0)
            .collect()
    };
    let calib = dir.path().join("calib.npz");
    sculpt_runtime::write_npz(
        &calib,
        &[sculpt_runtime::Array::from_f32(
            "x",
            vec![64, 16],
            &rows(64, 1),
        )],
    )
    .unwrap();
    let cases = [
        (
            "quantize{policy=int8}",
            "int8 inside If/Loop/Scan bodies: 3 weights",
            0.999,
        ),
        (
            "quantize{policy=fp16}",
            "(4 inside If/Loop/Scan bodies)",
            0.9999,
        ),
        ("quantize{policy=int4 block=16}", "4 sites", 0.95),
    ];
    for (i, (pipeline, said, floor)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("{i}.onnx"));
        let r = sculpt_ok(&[
            "opt",
            path_str(&model),
            "-p",
            pipeline,
            "--calib",
            path_str(&calib),
            "-o",
            path_str(&out),
        ]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(stderr.contains(said), "{pipeline}: {stderr}");
        if !python_has_onnxruntime() {
            continue;
        }
        for seed in [2, 3, 4, 5] {
            let inputs = dir.path().join(format!("inputs{seed}.npz"));
            sculpt_runtime::write_npz(
                &inputs,
                &[sculpt_runtime::Array::from_f32(
                    "x",
                    vec![4, 16],
                    &rows(4, seed),
                )],
            )
            .unwrap();
            ort_compare(
                path_str(&model),
                path_str(&out),
                path_str(&inputs),
                &["--min-cosine", &floor.to_string()],
            );
        }
    }
}

/// A model with a scalar input calibrates sample by sample: generated
/// samples, and an npz whose flag has one value per sample; an array of
/// any other rank is refused, naming the input.
#[test]
fn scalar_inputs_calibrate_sample_by_sample() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::text_model("flagged_mlp", dir.path());
    let x: Vec<f32> = (0..16 * 3 * 4)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0)
        .collect();
    let flags = |shape: Vec<usize>| sculpt_runtime::Array {
        name: "flag".into(),
        dtype: sculpt_ir::DataType::BOOL,
        data: (0..shape.iter().product::<usize>())
            .map(|i| (i % 2) as u8)
            .collect(),
        shape,
    };
    let good = dir.path().join("calib.npz");
    let bad = dir.path().join("bad.npz");
    for (path, flag) in [(&good, flags(vec![16])), (&bad, flags(vec![16, 2]))] {
        sculpt_runtime::write_npz(
            path,
            &[
                sculpt_runtime::Array::from_f32("x", vec![16, 3, 4], &x),
                flag,
            ],
        )
        .unwrap();
    }
    let out = dir.path().join("q.onnx");
    for data in [["--calib-random", "8"], ["--calib", path_str(&good)]] {
        let r = sculpt_ok(&[
            "opt",
            path_str(&model),
            "-p",
            "quantize{policy=int8}",
            data[0],
            data[1],
            "-o",
            path_str(&out),
        ]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(stderr.contains("measured output error"), "{stderr}");
        assert!(stderr.contains("bodies: 1 weights"), "{stderr}");
    }
    std::fs::remove_file(&out).unwrap();
    let r = sculpt(&[
        "opt",
        path_str(&model),
        "-p",
        "quantize{policy=int8}",
        "--calib",
        path_str(&bad),
        "-o",
        path_str(&out),
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("input 'flag': calibration array of rank 2"),
        "{stderr}"
    );
    assert!(!out.exists());
}
