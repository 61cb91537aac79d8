//! The CLI entry points on the bundled example.

use crate::{path_str, repo, sculpt, sculpt_ok};

fn example() -> String {
    repo()
        .join("examples/models/tiny_cnn.onnx")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn inspect_reports_shapes_params_and_flops() {
    let out = sculpt(&["inspect", &example(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"], 10);
    assert_eq!(v["params"], 8 * 27 + 8 + 8 * 72 + 8 + 80 + 10 + 4);
    assert_eq!(v["inputs"][0]["ty"], "f32[N,3,16,16]");
    // conv1: 16*16*8 outputs * (2*27 + 1); conv2: 16*16*8 * (2*72 + 1).
    let conv = 2048 * 55 + 2048 * 145;
    assert_eq!(v["flops_by_op"]["Conv"], conv);
    assert_eq!(v["opsets"]["ai.onnx"], 17);
    let table = sculpt(&["inspect", &example()]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("Conv"));
}

#[test]
fn opt_writes_report_and_text_and_reads_text_back() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let text = dir.path().join("m.sculpt");
    let out = sculpt(&[
        "opt",
        &example(),
        "-p",
        "cleanup",
        "-o",
        path_str(&text),
        "--text",
        "--report",
        path_str(&report),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["run"]["before"]["nodes"], 10);
    // The dead Identity goes, and MatMul + Add become one Gemm.
    assert_eq!(r["run"]["after"]["nodes"], 8);
    assert_eq!(r["run"]["passes"][0]["pass"], "cleanup");
    // The text form is a valid input to opt.
    let back = dir.path().join("back.onnx");
    let out = sculpt(&[
        "opt",
        path_str(&text),
        "-p",
        "",
        "-o",
        path_str(&back),
        "--check",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sculpt(&["check", &example(), path_str(&back)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn pipeline_file_and_passes_listing() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("p.toml");
    std::fs::write(
        &toml,
        "[[pass]]\nname = \"cleanup\"\noptions = { dce = false }\n",
    )
    .unwrap();
    let out_path = dir.path().join("o.onnx");
    let out = sculpt(&[
        "opt",
        &example(),
        "--pipeline-file",
        path_str(&toml),
        "-o",
        path_str(&out_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = sculpt(&["passes"]);
    let s = String::from_utf8_lossy(&listing.stdout);
    assert!(s.contains("cleanup") && s.contains("dce"));
}

#[test]
fn run_and_bench_on_given_and_generated_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npz");
    let inputs = repo().join("examples/models/tiny_cnn_inputs.npz");
    let out = sculpt(&[
        "run",
        &example(),
        "--inputs",
        path_str(&inputs),
        "-o",
        path_str(&y),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arrays = sculpt_runtime::read_npz(&y).unwrap();
    assert_eq!(arrays[0].name, "logits");
    assert_eq!(arrays[0].shape, vec![2, 10]);
    let out = sculpt(&["run", &example(), "--dim", "N=3"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("[3, 10]"));
    let out = sculpt(&["bench", &example(), "--runs", "5", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"], 5);
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn check_fails_on_different_models() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("m.sculpt");
    let out = sculpt(&["print", &example(), "--full"]);
    // Change one bias value: the models now differ.
    let changed = String::from_utf8_lossy(&out.stdout).replacen(
        "init %fc.b = f32[10] [0.",
        "init %fc.b = f32[10] [1.",
        1,
    );
    std::fs::write(&text, changed).unwrap();
    let out = sculpt(&["check", &example(), path_str(&text)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("differ"));
}

#[test]
fn inspect_zig_lists_groups_with_reasons() {
    let model = crate::corpus_dir().join("resnet18/model.onnx");
    let out = sculpt(&["inspect", path_str(&model), "--zig", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups = v["groups"].as_array().unwrap();
    // The stem and the layer1 convolutions are coupled by the residual Adds.
    assert!(groups
        .iter()
        .any(|g| g["prunable"] == true && g["sources"].as_array().unwrap().len() >= 3));
    // The classifier's outputs are the graph output: refused, with the reason.
    let fc = groups.iter().find(|g| g["kind"] == "gemm").unwrap();
    assert_eq!(fc["prunable"], false);
    assert!(fc["reasons"][0].as_str().unwrap().contains("graph output"));
    let table = sculpt(&["inspect", path_str(&model), "--zig"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("prunable params"));
}

/// `sculpt emit --mlir --check`: resnet18 as MLIR, run on the CPU path and
/// compared with tract; the file parses with mlir-opt.
#[cfg(feature = "mlir")]
#[test]
fn emit_mlir_runs_on_the_cpu_like_tract() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resnet18.mlir");
    let folder = crate::corpus_dir().join("resnet18");
    let (model, inputs) = (folder.join("model.onnx"), folder.join("inputs.npz"));
    let emit = |extra: &[&str]| {
        let mut args = vec!["emit", path_str(&model), "--mlir", "-o", path_str(&out)];
        args.extend(["--shape", "input=1,3,224,224"]);
        args.extend(extra);
        let r = sculpt(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    emit(&["--check", "--inputs", path_str(&inputs)]);
    let parsed = std::process::Command::new("/usr/lib/llvm-22/bin/mlir-opt")
        .arg(&out)
        .args(["-o", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    // The GPU path: one PTX file per kernel, for sm_90.
    let ptx = dir.path().join("ptx");
    emit(&[
        "--target",
        "gpu",
        "--chip",
        "sm_90",
        "--ptx",
        path_str(&ptx),
    ]);
    let kernels = std::fs::read_dir(&ptx).unwrap().count();
    assert!(kernels > 10, "{kernels} kernels");
    // Symbolic dims need a shape, named by input.
    let minilm = crate::corpus_dir().join("minilm_l6_v2/model.onnx");
    let r = sculpt(&["emit", path_str(&minilm), "--mlir", "-o", path_str(&out)]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--shape input_ids="));
    // Ops outside the set are refused, naming the node and the op, and
    // nothing is written.
    let text = dir.path().join("mod.sculpt");
    std::fs::write(
        &text,
        "graph \"g\" (%x: f32[2]) -> (%y) {\n  %y = Mod(%x, %x) @\"remainder\"\n}\n",
    )
    .unwrap();
    let refused = dir.path().join("refused.mlir");
    let r = sculpt(&["emit", path_str(&text), "--mlir", "-o", path_str(&refused)]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("remainder") && err.contains("Mod"), "{err}");
    assert!(!refused.exists());
}

/// `sculpt emit --target cpu|cuda`: the recipe is written beside the
/// module (O3 and data tiling on the CPU, the chip and f16 matmuls on
/// CUDA), and a `.mlirbc` output is MLIR bytecode that mlir-opt reads,
/// smaller than the text.
#[cfg(feature = "mlir")]
#[test]
fn emit_writes_the_iree_recipe_and_bytecode() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::corpus_dir().join("ppocr_mobile_v2_cls/model.onnx");
    let emit = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["emit", path_str(&model), "--mlir", "-o", path_str(out)];
        args.extend(["--shape", "x=1,3,48,192"]);
        args.extend(extra);
        let r = sculpt(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    let text = dir.path().join("cls.mlir");
    emit(&text, &["--target", "cpu"]);
    let flags = std::fs::read_to_string(dir.path().join("cls.iree-flags")).unwrap();
    assert!(flags.contains("--iree-opt-level=O3") && flags.contains("--iree-opt-data-tiling"));
    let bytecode = dir.path().join("cuda.mlirbc");
    emit(&bytecode, &["--target", "cuda", "--chip", "sm_86"]);
    let flags = std::fs::read_to_string(dir.path().join("cuda.iree-flags")).unwrap();
    assert!(flags.contains("--iree-cuda-target=sm_86"), "{flags}");
    assert!(flags.contains("--iree-global-opt-demote-contraction-inputs-type=f16"));
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&bytecode) * 3 < size(&text) * 2,
        "bytecode is not smaller"
    );
    let parsed = std::process::Command::new("/usr/lib/llvm-22/bin/mlir-opt")
        .arg(&bytecode)
        .args(["-o", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let r = sculpt(&[
        "emit",
        path_str(&model),
        "--mlir",
        "-o",
        path_str(&text),
        "--target",
        "tpu",
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("cpu, cuda or gpu"));
}

/// `sculpt emit --check` on a transformer with int64 inputs: minilm's
/// embedding gathers, masks and layer norms run on the CPU path like
/// tract.
#[cfg(feature = "mlir")]
#[test]
fn emit_mlir_runs_minilm_with_integer_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minilm.mlir");
    let folder = crate::corpus_dir().join("minilm_l6_v2");
    let (model, inputs) = (folder.join("model.onnx"), folder.join("inputs.npz"));
    let shapes: Vec<String> = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|name| format!("{name}=1,32"))
        .collect();
    let mut args = vec!["emit", path_str(&model), "--mlir", "-o", path_str(&out)];
    for shape in &shapes {
        args.extend(["--shape", shape.as_str()]);
    }
    args.extend(["--check", "--inputs", path_str(&inputs)]);
    let r = sculpt(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("@main takes (i64[1,32], i64[1,32], i64[1,32])"),
        "{err}"
    );
    assert!(
        err.contains("sentence_embedding") && err.contains("ok"),
        "{err}"
    );
}

/// `sculpt emit --dialect tosa --pipeline ...`: the passes run first (a
/// pruned model gives a smaller module), then TOSA, checked on the CPU
/// path against tract.
#[cfg(feature = "mlir")]
#[test]
fn emit_tosa_after_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let folder = crate::corpus_dir().join("ppocr_mobile_v2_cls");
    let (model, inputs) = (folder.join("model.onnx"), folder.join("inputs.npz"));
    let emit = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["emit", path_str(&model), "--mlir", "-o", path_str(out)];
        args.extend(["--shape", "x=1,3,48,192", "--dialect", "tosa"]);
        args.extend(extra);
        sculpt(&args)
    };
    let plain = dir.path().join("plain.mlir");
    assert!(emit(&plain, &[]).status.success());
    let pruned = dir.path().join("pruned.mlir");
    let r = emit(
        &pruned,
        &[
            "--pipeline",
            "prune{criterion=magnitude,ratio=0.3}",
            "--check",
            "--inputs",
            path_str(&inputs),
        ],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains(", ok"), "{err}");
    let text = std::fs::read_to_string(&pruned).unwrap();
    assert!(text.contains("\"tosa.conv2d\"") && text.contains("\"tosa.depthwise_conv2d\""));
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&pruned) < size(&plain), "pruning shrinks the module");
    // MLIR passes on the emitted module, before it is written.
    let canonical = dir.path().join("canonical.mlir");
    let r = emit(
        &canonical,
        &[
            "--mlir-passes",
            "builtin.module(canonicalize,cse)",
            "--check",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(std::fs::read_to_string(&canonical)
        .unwrap()
        .contains("tosa.conv2d"));
    let bogus = dir.path().join("bogus.mlir");
    let r = emit(&bogus, &["--mlir-passes", "builtin.module(no-such-pass)"]);
    assert!(!r.status.success() && !bogus.exists());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no-such-pass"));
    let out = dir.path().join("x.mlir");
    let r = sculpt(&[
        "emit",
        path_str(&model),
        "--mlir",
        "-o",
        path_str(&out),
        "--dialect",
        "spirv",
    ]);
    assert!(!r.status.success() && !out.exists());
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown dialect 'spirv'"));
}

/// A pipeline of lossless passes checks numerics without being asked (the
/// report records each pass's verdict); `--no-check` turns it off, and a
/// lossy pipeline is not checked unless `--check` says so.
#[test]
fn lossless_pipelines_are_checked_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("o.onnx"), dir.path().join("r.json"));
    let (out_s, report_s) = (path_str(&out), path_str(&report));
    let model = example();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let checked = sculpt_ok(&[
        "opt", &model, "-p", "cleanup", "-o", out_s, "--report", report_s,
    ]);
    assert!(
        stderr(&checked).contains("--check: 1 output(s)"),
        "{}",
        stderr(&checked)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let verdict = &r["run"]["passes"][0]["check"]["verdict"];
    assert_eq!(verdict, "same", "{r}");
    let unchecked = sculpt_ok(&["opt", &model, "-p", "cleanup", "-o", out_s, "--no-check"]);
    assert!(!stderr(&unchecked).contains("--check"));
    let lossy = "prune{criterion=magnitude ratio=0.3}";
    let lossy_run = sculpt_ok(&["opt", &model, "-p", lossy, "-o", out_s]);
    assert!(!stderr(&lossy_run).contains("--check"));
    let both = sculpt(&[
        "opt",
        &model,
        "-p",
        "cleanup",
        "-o",
        out_s,
        "--check",
        "--no-check",
    ]);
    assert_eq!(both.status.code(), Some(1));
}

/// The small version of scripts/make-large-model.py (external data, GQA,
/// gated FFNs, a tied LM head) goes through inspect, cleanup and prune,
/// written with external data; cleanup keeps the embedding tied (one
/// stored copy) and the outputs unchanged.
#[test]
fn the_large_model_script_small_version_goes_through() {
    if !crate::python_has_onnxruntime() {
        eprintln!("skipping: no onnx in python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("decoder.onnx");
    let made = std::process::Command::new("python3")
        .arg(repo().join("scripts/make-large-model.py"))
        .args([path_str(&model), "--small"])
        .status()
        .unwrap();
    assert!(made.success());
    let model_s = path_str(&model);
    sculpt_ok(&["inspect", model_s]);
    let out = dir.path().join("clean.onnx");
    sculpt_ok(&[
        "opt",
        model_s,
        "-p",
        "cleanup",
        "-o",
        path_str(&out),
        "--external-data",
        "--check",
    ]);
    let data = std::fs::metadata(dir.path().join("clean.onnx.data"))
        .unwrap()
        .len();
    let original = std::fs::metadata(dir.path().join("decoder.onnx.data"))
        .unwrap()
        .len();
    assert!(
        data <= original,
        "cleanup grew the weights: {data} > {original}"
    );
    let pruned = dir.path().join("pruned.onnx");
    let prune = "prune{criterion=magnitude ratio=0.3 protect=*attn*}";
    sculpt_ok(&[
        "opt",
        model_s,
        "-p",
        prune,
        "-o",
        path_str(&pruned),
        "--external-data",
    ]);
    // Its weights are f16: int4 scales and MatMulNBits compute in f16,
    // and the f16 embedding table is gathered packed, dequantized in f32
    // and cast back.
    let quantized = dir.path().join("int4.onnx");
    let int4 = "quantize{policy=int4 round=rtn}";
    let q = sculpt_ok(&["opt", model_s, "-p", int4, "-o", path_str(&quantized)]);
    let stderr = String::from_utf8_lossy(&q.stderr);
    assert!(!stderr.contains("not quantized"), "{stderr}");
    assert!(stderr.contains("sites and 1 tables"), "{stderr}");
    let ids = dir.path().join("ids.npz");
    let script = "import numpy as np, sys; np.savez(sys.argv[1], input_ids=np.array([[1, 5, 9, 30, 2, 7, 11, 3]], np.int64))";
    let made = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&ids)
        .status()
        .unwrap();
    assert!(made.success());
    crate::ort_compare(
        model_s,
        path_str(&quantized),
        path_str(&ids),
        &["--min-cosine", "0.9"],
    );
}
