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
