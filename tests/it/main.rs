//! End-to-end tests of the `sculpt` binary: corpus round-trips cross-checked
//! with onnxruntime, bad input, pipelines, and the ONNX backend node suite.

mod bad_input;
mod cli;
mod corpus;
mod defaults;
mod erase;
mod lowrank;
mod moe;
mod node_suite;
mod prune;
mod quantize;
mod runtimes;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn corpus_dir() -> PathBuf {
    std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"))
}

pub fn corpus_models() -> Vec<(String, PathBuf)> {
    let dir = corpus_dir();
    let mut models: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus at {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    models.sort();
    assert!(!models.is_empty());
    models
}

pub fn sculpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sculpt"))
        .args(args)
        .output()
        .expect("run sculpt")
}

/// Runs sculpt and fails the test, with its stderr, unless it succeeds.
pub fn sculpt_ok(args: &[&str]) -> Output {
    let out = sculpt(args);
    assert!(
        out.status.success(),
        "sculpt {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// `tests/models/NAME.sculpt` (the text form) written as ONNX in `dir`.
pub fn text_model(name: &str, dir: &Path) -> PathBuf {
    let model = dir.join(format!("{name}.onnx"));
    let text = repo().join(format!("tests/models/{name}.sculpt"));
    sculpt_ok(&["opt", path_str(&text), "-p", "", "-o", path_str(&model)]);
    model
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Python with onnx and onnxruntime, for cross-checks. Required under CI;
/// elsewhere a missing install skips the cross-check with a message.
pub fn python_has_onnxruntime() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with onnx and onnxruntime"
        );
        eprintln!("skipping onnxruntime cross-check: python3 lacks onnx/onnxruntime");
    }
    ok
}

/// The entry of pass `name` in the JSON report `path` (`opt --report`).
pub fn pass_report(path: &Path, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["run"]["passes"]
        .as_array()
        .expect("a run report")
        .iter()
        .find(|p| p["pass"] == name)
        .unwrap_or_else(|| panic!("no pass '{name}' in the report"))
        .clone()
}

/// The statistic `name` of a pass's entry in a run report (see
/// [`pass_report`]).
/// `sculpt opt MODEL -p PIPELINE ARGS… -o OUT --report OUT.json` (which
/// must succeed), and the report's record of pass `pass`.
pub fn opt_and_report(
    model: &Path,
    pipeline: &str,
    args: &[&str],
    out: &Path,
    pass: &str,
) -> serde_json::Value {
    let report = out.with_extension("json");
    let mut all = vec!["opt", path_str(model), "-p", pipeline];
    all.extend_from_slice(args);
    all.extend(["-o", path_str(out), "--report", path_str(&report)]);
    sculpt_ok(&all);
    pass_report(&report, pass)
}

pub fn pass_stat(pass: &serde_json::Value, name: &str) -> f64 {
    pass["outcome"]["statistics"]
        .as_array()
        .expect("pass statistics")
        .iter()
        .find(|s| s[0] == name)
        .and_then(|s| s[1].as_f64())
        .unwrap_or_else(|| panic!("no statistic {name}"))
}

/// Runs `tests/scripts/ort_compare.py` (onnxruntime and the ONNX checker)
/// on `candidate` against `original`; fails the test, saying why, unless
/// they agree. Returns the script's JSON line.
pub fn ort_compare(original: &str, candidate: &str, inputs: &str, extra: &[&str]) -> String {
    let script = repo().join("tests/scripts/ort_compare.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([original, candidate, inputs])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{candidate}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
