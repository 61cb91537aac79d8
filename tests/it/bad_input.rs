//! Bad input: a one-line error, exit code 1, never a panic, never an output file.

use crate::{path_str, repo, sculpt};
use std::path::Path;

fn assert_refused(model: &Path, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.onnx");
    let out = sculpt(&[
        "opt",
        path_str(model),
        "-p",
        "cleanup",
        "-o",
        path_str(&out_path),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", model.display());
    assert!(
        stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1,
        "not one line: {stderr}"
    );
    assert!(
        stderr.contains(want),
        "{}: wanted {want:?} in {stderr}",
        model.display()
    );
    assert!(!stderr.contains("panicked"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "left files behind"
    );
}

#[test]
fn bad_files_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(repo().join("examples/models/tiny_cnn.onnx")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    assert_refused(
        &write("trunc.onnx", &model[..model.len() / 2]),
        "protobuf decode failed",
    );
    assert_refused(&write("empty.onnx", b""), "is empty");
    assert_refused(
        &write(
            "npz.onnx",
            &std::fs::read(repo().join("examples/models/tiny_cnn_inputs.npz")).unwrap(),
        ),
        "zip archive",
    );
    assert_refused(&dir.path().join("missing.onnx"), "No such file");
    assert_refused(dir.path(), "is a directory");
    let text = |name: &str, body: &str| write(name, body.as_bytes());
    assert_refused(
        &text(
            "cycle.sculpt",
            "graph \"g\" (%x: f32[1]) -> (%b) {\n  %a = Add(%x, %b)\n  %b = Relu(%a)\n}\n",
        ),
        "cycle",
    );
    assert_refused(
        &text(
            "undef.sculpt",
            "graph \"g\" (%x: f32[1]) -> (%y) {\n  %y = Add(%x, %ghost)\n}\n",
        ),
        "'ghost' is used by node",
    );
    assert_refused(
        &text(
            "dup.sculpt",
            "graph \"g\" (%x: f32[1]) -> (%y) {\n  %y = Relu(%x)\n  %y = Neg(%x)\n}\n",
        ),
        "defined twice",
    );
    assert_refused(
        &text(
            "size.sculpt",
            "graph \"g\" (%x: f32[1]) -> (%x) {\n  init %w = f32[3] [1.0]\n}\n",
        ),
        "tensor 'w'",
    );
    let opset = |name: &str, header: &str, want: &str| {
        let body = format!("{header}\ngraph \"g\" (%x: f32[1]) -> (%y) {{\n  %y = Relu(%x)\n}}\n");
        assert_refused(&text(name, &body), want);
    };
    opset(
        "opset0.sculpt",
        "ir_version 8\nopset \"\" 0",
        "opset 0 is not one of 1 to",
    );
    opset(
        "opset_huge.sculpt",
        "ir_version 8\nopset \"\" 4611686018427387904",
        "is not one of 1 to",
    );
    opset(
        "ir99.sculpt",
        "ir_version 99\nopset \"\" 17",
        "ir_version 99 is newer",
    );
}

#[test]
fn shape_bombs_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.sculpt");
    std::fs::write(
        &p,
        "graph \"g\" (%x: f32[1]) -> (%y) {\n  init %shape = i64[3] [100000, 100000, 1000]\n  %big = ConstantOfShape(%shape)\n  %y = Add(%x, %big)\n}\n",
    )
    .unwrap();
    let out = sculpt(&["run", path_str(&p)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("'big'") && stderr.contains("memory limit"),
        "{stderr}"
    );
}

#[test]
fn failed_check_writes_nothing() {
    // Inputs that do not match the model make --check fail before writing.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("o.onnx");
    let wrong = dir.path().join("wrong.npz");
    sculpt_runtime::write_npz(
        &wrong,
        &[sculpt_runtime::Array::from_f32("not_x", vec![1], &[0.0])],
    )
    .unwrap();
    let model = repo().join("examples/models/tiny_cnn.onnx");
    let out = sculpt(&[
        "opt",
        path_str(&model),
        "-p",
        "",
        "-o",
        path_str(&out_path),
        "--check",
        "--inputs",
        path_str(&wrong),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("input 'x'"));
    assert!(!out_path.exists());
}

#[test]
fn a_report_that_cannot_be_written_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("examples/models/tiny_cnn.onnx");
    let copy = dir.path().join("model.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let missing = dir.path().join("missing").join("r.json");
    for out_path in [dir.path().join("o.onnx"), copy.clone()] {
        let out = sculpt(&[
            "opt",
            path_str(&copy),
            "-p",
            "cleanup",
            "-o",
            path_str(&out_path),
            "--report",
            path_str(&missing),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("r.json"), "{stderr}");
    }
    assert!(!dir.path().join("o.onnx").exists());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "the input was replaced"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "left files behind"
    );
}

#[test]
fn tolerances_that_would_pass_anything_are_refused() {
    let model = repo().join("examples/models/tiny_cnn.onnx");
    for flag in ["--rtol=nan", "--atol=-1", "--rtol=inf"] {
        let out = sculpt(&["check", path_str(&model), path_str(&model), flag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.contains("not a tolerance"), "{stderr}");
    }
}

#[test]
fn check_says_what_it_checked() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("examples/models/tiny_cnn.onnx");
    let out_path = dir.path().join("o.onnx");
    let out = sculpt(&[
        "opt",
        path_str(&model),
        "-p",
        "cleanup",
        "-o",
        path_str(&out_path),
        "--check",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--check: 1 output(s)") && stderr.contains("worst max abs err"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn a_named_pipe_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.onnx");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return;
    }
    let out = sculpt(&["inspect", path_str(&fifo)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

#[test]
fn integer_overflow_in_constants_is_not_folded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("div.sculpt");
    std::fs::write(
        &p,
        "graph \"g\" (%x: i64[1]) -> (%y) {\n  init %a = i64[1] [-9223372036854775808]\n  init %b = i64[1] [-1]\n  %q = Div(%a, %b)\n  %y = Add(%x, %q)\n}\n",
    )
    .unwrap();
    let out_path = dir.path().join("o.onnx");
    let out = sculpt(&[
        "opt",
        path_str(&p),
        "-p",
        "cleanup",
        "-o",
        path_str(&out_path),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

/// A model whose If bodies nest `depth` deep, in the text form.
fn nested_ifs(depth: usize) -> String {
    let mut body = "graph \"g0\" () -> (%y0) {\n  %y0 = Identity(%x)\n}".to_string();
    for d in 1..depth {
        body = format!(
            "graph \"g{d}\" () -> (%y{d}) {{\n  %y{d} = If(%c) {{then_branch={body}, else_branch=graph \"e{d}\" () -> (%z{d}) {{\n  %z{d} = Identity(%x)\n}}}}\n}}"
        );
    }
    format!(
        "ir_version 8\nopset \"\" 17\ngraph \"main\" (%x: f32[1], %c: bool[]) -> (%y) {{\n  %y = If(%c) {{then_branch={body}, else_branch=graph \"e\" () -> (%z) {{\n  %z = Identity(%x)\n}}}}\n}}\n"
    )
}

#[test]
fn deep_subgraphs_load_up_to_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    for (depth, loads) in [(40, true), (300, false)] {
        let text = dir.path().join(format!("if{depth}.sculpt"));
        std::fs::write(&text, nested_ifs(depth)).unwrap();
        let model = dir.path().join(format!("if{depth}.onnx"));
        let out = sculpt(&["opt", path_str(&text), "-p", "", "-o", path_str(&model)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = sculpt(&["inspect", path_str(&model)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if loads {
            assert!(out.status.success(), "depth {depth}: {stderr}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("nest more than"), "{stderr}");
        }
    }
}

/// scripts/hostile-inputs.py: ~80 malformed models (schema violations,
/// what tract cannot compute, shape bombs, path tricks, bad npz, bad
/// options) through inspect, opt, run, check and print; every invocation
/// exits 0 or 1 with an error line, none panics or hangs, none leaves an
/// output behind after failing, and the spec-breaking models are refused.
#[test]
fn hostile_inputs_are_refused_cleanly() {
    if !crate::python_has_onnxruntime() {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/hostile-inputs.py"))
        .args(["--sculpt", env!("CARGO_BIN_EXE_sculpt")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 misbehaved"), "{stdout}");
}
