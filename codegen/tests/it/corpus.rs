use sculpt_codegen::{emit_mlir, EmitOptions};
use sculpt_passes::{PassManager, Pipeline};
use std::path::PathBuf;

/// A corpus model with its inputs bound to the shapes of its inputs.npz,
/// then cleaned up (as `sculpt emit` does).
fn corpus_model(name: &str) -> sculpt_ir::Model {
    let m = sculpt_ir::onnx::load(&corpus_dir().join(name).join("model.onnx")).unwrap();
    let mut options = EmitOptions::default();
    for a in sculpt_runtime::read_npz(&corpus_dir().join(name).join("inputs.npz")).unwrap() {
        options
            .shapes
            .insert(a.name.clone(), a.shape.iter().map(|&d| d as i64).collect());
    }
    let mut m = sculpt_codegen::bind_shapes(&m, &options).unwrap();
    PassManager::new(Pipeline::parse("cleanup").unwrap())
        .run(&mut m, |_| {})
        .unwrap();
    m
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
}

/// The conv nets of the corpus the emitter covers (real weights or
/// seeded ones, and zoo topologies).
const CONV_NETS: &[&str] = &[
    "resnet18",
    "mobilenet_v3_small",
    "ppocr_mobile_v2_cls",
    "light_resnet50",
    "light_inception_v2",
    "light_shufflenet",
    "light_squeezenet",
    "light_inception_v1",
];

fn mlir_opt() -> Option<PathBuf> {
    ["/usr/lib/llvm-22/bin/mlir-opt", "/usr/bin/mlir-opt-22"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn conv_nets_emit_verify_and_parse() {
    for name in CONV_NETS {
        let m = corpus_model(name);
        let emitted =
            emit_mlir(&m, &EmitOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = &emitted.text;
        assert!(text.contains("func.func @main("));
        if let Some(opt) = mlir_opt() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("{name}.mlir"));
            std::fs::write(&path, text).unwrap();
            let out = std::process::Command::new(opt)
                .arg(&path)
                .arg("-o")
                .arg("/dev/null")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: mlir-opt: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("{name}: {} bytes of MLIR", text.len());
    }
}

#[test]
fn cpu_path_matches_tract() {
    let dir = std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    for name in CONV_NETS {
        let m = corpus_model(name);
        let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap();
        let context = sculpt_codegen::MlirContext::new();
        let cpu =
            sculpt_codegen::CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs = sculpt_runtime::read_npz(&dir.join(name).join("inputs.npz")).unwrap();
        let session = sculpt_runtime::Session::new(&m, &inputs).unwrap();
        let expected = session.run(&inputs).unwrap();
        let mut args: Vec<(Vec<f32>, Vec<i64>)> = inputs
            .iter()
            .map(|a| {
                let v: Vec<f32> = a.to_f64().unwrap().into_iter().map(|x| x as f32).collect();
                (v, a.shape.iter().map(|&d| d as i64).collect())
            })
            .collect();
        let got = cpu.run(&mut args).unwrap();
        for (e, g) in expected.iter().zip(&got) {
            let e: Vec<f64> = e.to_f64().unwrap();
            let scale = e.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-6);
            let worst = e
                .iter()
                .zip(g)
                .map(|(a, b)| (a - *b as f64).abs())
                .fold(0f64, f64::max);
            eprintln!("{name}: max abs diff {worst:.3e} (scale {scale:.3e})");
            assert!(
                worst <= 1e-4 * scale,
                "{name}: CPU path differs from tract by {worst}"
            );
        }
    }
}

#[test]
fn gpu_path_produces_ptx_that_uses_threads() {
    for name in ["resnet18", "mobilenet_v3_small", "ppocr_mobile_v2_cls"] {
        let m = corpus_model(name);
        let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap();
        for chip in ["sm_80", "sm_90"] {
            let context = sculpt_codegen::MlirContext::new();
            let kernels = sculpt_codegen::lower_to_ptx(&context, &emitted.text, chip)
                .unwrap_or_else(|e| panic!("{name} {chip}: {e}"));
            for k in &kernels {
                assert!(
                    k.ptx.contains(&format!(".target {chip}")),
                    "{name} {chip} {}",
                    k.name
                );
                assert!(k.ptx.contains(".entry"), "{name} {chip} {}", k.name);
            }
            // Thread ids index the tiles: the kernels use their threads.
            assert!(
                kernels.iter().all(|k| k.ptx.contains("%tid.")),
                "{name} {chip}"
            );
            eprintln!("{name} {chip}: {} kernels", kernels.len());
        }
    }
}
