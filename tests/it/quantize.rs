//! `quantize` end to end on minilm_l6_v2: int4 weights (GPTQ on the
//! calibration data) as com.microsoft::MatMulNBits, which tract and
//! onnxruntime both run and agree on, with the embedding tables in int4
//! too; the sentence embeddings stay close to the original's, every
//! MatMul site and table is reported, and the weights shrink.

use crate::{ort_compare, pass_report, path_str, python_has_onnxruntime, sculpt};

#[test]
fn int4_minilm_runs_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let model = folder.join("model.onnx");
    let inputs = folder.join("inputs.npz");
    let out = dir.path().join("int4.onnx");
    let report = dir.path().join("report.json");
    let r = sculpt(&[
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
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
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
    let stat = |name: &str| {
        pass["outcome"]["statistics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == name)
            .and_then(|s| s[1].as_f64())
            .unwrap_or_else(|| panic!("no statistic {name}"))
    };
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
        let run = sculpt(&[
            "run",
            path_str(&out),
            "--inputs",
            path_str(&inputs),
            "-o",
            path_str(&tract),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
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
