//! `--runtime`: onnxruntime (through its pip wheel's library) beside tract
//! on the commands that run models, the clear error where it is missing,
//! and calibrated passes that choose the same on both.

use crate::{
    corpus_dir, opt_and_report, path_str, python_has_onnxruntime, repo, sculpt, sculpt_ok,
};
use std::process::{Command, Output};

fn example() -> String {
    path_str(&repo().join("examples/models/tiny_cnn.onnx")).to_string()
}

fn sculpt_with_library(library: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sculpt"))
        .args(args)
        .env("ORT_DYLIB_PATH", library)
        .output()
        .expect("run sculpt")
}

#[test]
fn run_check_and_bench_give_the_same_on_both_runtimes() {
    if !python_has_onnxruntime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inputs = repo().join("examples/models/tiny_cnn_inputs.npz");
    let mut outputs = Vec::new();
    for runtime in ["tract", "ort"] {
        let y = dir.path().join(format!("{runtime}.npz"));
        let out = sculpt_ok(&[
            "run",
            &example(),
            "--inputs",
            path_str(&inputs),
            "-o",
            path_str(&y),
            "--runtime",
            runtime,
        ]);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("ran on {runtime}")));
        outputs.push(sculpt_runtime::read_npz(&y).unwrap());
    }
    let cmp = sculpt_runtime::compare(&outputs[0], &outputs[1], Default::default());
    assert!(cmp.ok, "{cmp:?}");

    let bench = sculpt_ok(&[
        "bench",
        &example(),
        "--runs",
        "3",
        "--json",
        "--runtime",
        "ort",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    assert_eq!(v["runtime"], "ort");
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);

    // The same verdicts: a model agrees with its cleanup and not with an
    // int8 version of itself.
    let same = dir.path().join("same.onnx");
    let lossy = dir.path().join("lossy.onnx");
    sculpt_ok(&["opt", &example(), "-p", "cleanup", "-o", path_str(&same)]);
    sculpt_ok(&[
        "opt",
        &example(),
        "-p",
        "quantize{policy=int8}",
        "--calib-random",
        "8",
        "-o",
        path_str(&lossy),
    ]);
    for runtime in ["tract", "ort"] {
        let check = |other: &str| {
            sculpt(&[
                "check",
                &example(),
                other,
                "--inputs",
                path_str(&inputs),
                "--runtime",
                runtime,
            ])
            .status
            .success()
        };
        assert!(check(path_str(&same)), "{runtime}: cleanup differs");
        assert!(!check(path_str(&lossy)), "{runtime}: int8 agrees");
    }
}

#[test]
fn a_missing_onnxruntime_is_a_clear_error_and_auto_falls_back_to_tract() {
    let missing = "/nonexistent/libonnxruntime.so";
    let out = sculpt_with_library(missing, &["run", &example(), "--runtime", "ort"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains(missing),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A file that is not a library.
    let out = sculpt_with_library(&example(), &["run", &example(), "--runtime", "ort"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot use onnxruntime"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = sculpt_with_library(
        missing,
        &[
            "bench",
            &example(),
            "--runs",
            "2",
            "--json",
            "--runtime",
            "auto",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runtime"], "tract");
}

/// The statistics do not depend on the runtime beyond float noise: the
/// calibrated passes make the same choices on a real model.
#[test]
fn calibrated_passes_choose_the_same_on_both_runtimes() {
    if !python_has_onnxruntime() {
        return;
    }
    let folder = corpus_dir().join("ppocr_mobile_v2_cls");
    let model = folder.join("model.onnx");
    if !model.exists() {
        eprintln!("skipping: no ppocr_mobile_v2_cls in the corpus");
        return;
    }
    let calib = folder.join("calib.npz");
    let dir = tempfile::tempdir().unwrap();
    for pipeline in ["quantize{policy=int8}", "prune{budget=0.2}"] {
        let [tract, ort] = ["tract", "ort"].map(|runtime| {
            let out = dir.path().join(format!("{runtime}.onnx"));
            let args = ["--calib", path_str(&calib), "--runtime", runtime];
            let pass = pipeline.split('{').next().unwrap();
            opt_and_report(&model, pipeline, &args, &out, pass)
        });
        let records = (&tract["outcome"]["records"], &ort["outcome"]["records"]);
        assert!(
            same_up_to_float_noise(records.0, records.1),
            "{pipeline}: {} against {}",
            records.0,
            records.1
        );
        assert_eq!(
            tract["after"]["params"], ort["after"]["params"],
            "{pipeline}"
        );
        assert_eq!(tract["after"]["nodes"], ort["after"]["nodes"], "{pipeline}");
        // The two results compute the same (up to float noise).
        sculpt_ok(&[
            "check",
            path_str(&dir.path().join("tract.onnx")),
            path_str(&dir.path().join("ort.onnx")),
            "--rtol",
            "1e-3",
            "--atol",
            "1e-4",
        ]);
    }
}

/// Equal JSON values, where their non-integer numbers may differ by 1e-3
/// relative (what each site chose is the same; the errors it measured
/// move with the runtime's float rounding).
fn same_up_to_float_noise(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-3 * x.abs().max(y.abs()) + 1e-9
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_up_to_float_noise(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_up_to_float_noise(v, w)))
        }
        _ => a == b,
    }
}
