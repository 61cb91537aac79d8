//! `lowrank` end to end: at full rank the factored model computes what the
//! original does: the exact factors on every corpus model, and the SVD
//! factors (plain, both convolution splits, and whitened on calibration
//! data) at their full rank on the models of moderate size; in tract and
//! onnxruntime. And a budget run reports every site it factored.

use crate::{corpus_models, ort_compare, pass_report, path_str, python_has_onnxruntime, sculpt};

fn opt(args: &[&str]) {
    let r = sculpt(args);
    assert!(
        r.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

fn close(a: &std::path::Path, b: &std::path::Path, inputs: &std::path::Path, what: &str) {
    let c = sculpt(&[
        "check",
        path_str(a),
        path_str(b),
        "--inputs",
        path_str(inputs),
        "--rtol",
        "1e-3",
        "--atol",
        "1e-4",
    ]);
    assert!(
        c.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&c.stdout)
    );
}

#[test]
fn full_rank_reproduces_every_corpus_model() {
    let dir = tempfile::tempdir().unwrap();
    let ort = python_has_onnxruntime();
    for (name, folder) in corpus_models() {
        let inputs = folder.join("inputs.npz");
        let base = dir.path().join(format!("{name}.onnx"));
        opt(&[
            "opt",
            path_str(&folder.join("model.onnx")),
            "-p",
            "cleanup",
            "-o",
            path_str(&base),
        ]);
        let mut runs = vec![("exact", "lowrank{rank=full}".to_string(), Vec::new())];
        // Every component kept, factored even where that grows the model.
        let svd = "rank=100000 min_gain=-100";
        if name == "resnet18" {
            runs.push((
                "svd channel",
                format!("lowrank{{method=svd {svd}}}"),
                Vec::new(),
            ));
            runs.push((
                "svd spatial",
                format!("lowrank{{method=svd {svd} conv=spatial}}"),
                Vec::new(),
            ));
        }
        if matches!(
            name.as_str(),
            "ppocr_mobile_v2_cls" | "mobilenet_v3_small" | "minilm_l6_v2"
        ) {
            let calib = match name.as_str() {
                "mobilenet_v3_small" => vec!["--calib-random".to_string(), "4".to_string()],
                _ => vec![
                    "--calib".to_string(),
                    path_str(&folder.join("calib.npz")).to_string(),
                ],
            };
            runs.push(("whitened", format!("lowrank{{method=whiten {svd}}}"), calib));
        }
        for (tag, pipeline, extra) in runs {
            let out = dir
                .path()
                .join(format!("{name}.{}.onnx", tag.replace(' ', "_")));
            let mut args = vec![
                "opt",
                path_str(&base),
                "-p",
                &pipeline,
                "-o",
                path_str(&out),
            ];
            args.extend(extra.iter().map(String::as_str));
            opt(&args);
            let what = format!("{name}, {tag} factors at full rank");
            close(&base, &out, &inputs, &what);
            if ort {
                ort_compare(
                    path_str(&base),
                    path_str(&out),
                    path_str(&inputs),
                    &["--rtol", "1e-3", "--atol", "1e-4"],
                );
            }
        }
    }
}

#[test]
fn budget_run_reports_every_factored_site() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let out = dir.path().join("lowrank.onnx");
    let report = dir.path().join("report.json");
    opt(&[
        "opt",
        path_str(&folder.join("model.onnx")),
        "-p",
        "lowrank{budget=0.2 allocate=roles}",
        "--calib",
        path_str(&folder.join("calib.npz")),
        "-o",
        path_str(&out),
        "--report",
        path_str(&report),
    ]);
    let pass = pass_report(&report, "lowrank");
    let records = pass["outcome"]["records"].as_array().unwrap();
    assert!(!records.is_empty());
    let (mut before, mut after) = (0u64, 0u64);
    for r in records {
        assert!(r["rank"].as_u64().unwrap() >= 1);
        assert!(r["predicted_error"].as_f64().unwrap() >= 0.0);
        assert!(r["held_out_error"].as_f64().is_some(), "{r}");
        before += r["params_before"].as_u64().unwrap();
        after += r["params_after"].as_u64().unwrap();
    }
    // A fifth of the 36 sites' 10.6M params, at least.
    assert!(before - after >= 2_000_000, "{before} -> {after}");
    assert!(pass["after"]["params"].as_u64() < pass["before"]["params"].as_u64());
    // The factored model runs.
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
}
