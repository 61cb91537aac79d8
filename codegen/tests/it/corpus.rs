use sculpt_codegen::{emit_mlir, Dialect, EmitOptions};
use sculpt_passes::{PassManager, Pipeline};
use std::path::PathBuf;

/// A corpus model with its inputs bound to the shapes of its inputs.npz,
/// then cleaned up (as `sculpt emit` does).
fn corpus_model(name: &str) -> sculpt_ir::Model {
    let m = sculpt_ir::load(&corpus_dir().join(name).join("model.onnx")).unwrap();
    let mut options = EmitOptions::default();
    for a in sculpt_runtime::read_npz(&corpus_dir().join(name).join("inputs.npz")).unwrap() {
        options
            .shapes
            .insert(a.name.clone(), a.shape.iter().map(|&d| d as i64).collect());
    }
    let mut m = sculpt_codegen::bind_shapes(&m, &options).unwrap();
    PassManager::new(Pipeline::parse("cleanup").unwrap())
        .unwrap()
        .run(&mut m, |_| {})
        .unwrap();
    m
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
}

/// The corpus models the emitter covers: conv nets (real weights or
/// seeded ones, and zoo topologies) and a transformer encoder.
const MODELS: &[&str] = &[
    "minilm_l6_v2",
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

const DIALECTS: [Dialect; 2] = [Dialect::Linalg, Dialect::Tosa];

fn options(dialect: Dialect) -> EmitOptions {
    EmitOptions {
        dialect,
        ..EmitOptions::default()
    }
}

#[test]
fn corpus_models_emit_verify_and_parse() {
    for (name, dialect) in MODELS.iter().flat_map(|n| DIALECTS.map(|d| (n, d))) {
        let m = corpus_model(name);
        let emitted =
            emit_mlir(&m, &options(dialect)).unwrap_or_else(|e| panic!("{name} {dialect:?}: {e}"));
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
                "{name} {dialect:?}: mlir-opt: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("{name} {dialect:?}: {} bytes of MLIR", text.len());
    }
}

#[test]
fn cpu_path_matches_tract() {
    let dir = std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    for (name, dialect) in MODELS.iter().flat_map(|n| DIALECTS.map(|d| (n, d))) {
        let m = corpus_model(name);
        let emitted = emit_mlir(&m, &options(dialect)).unwrap();
        let context = sculpt_codegen::MlirContext::new();
        let cpu =
            sculpt_codegen::CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())
                .unwrap_or_else(|e| panic!("{name} {dialect:?}: {e}"));
        let inputs = sculpt_runtime::read_npz(&dir.join(name).join("inputs.npz")).unwrap();
        let session =
            sculpt_runtime::Session::new(sculpt_runtime::Engine::Tract, &m, &inputs).unwrap();
        let expected = session.run(&inputs).unwrap();
        let args: Vec<_> = inputs.iter().map(crate::small::host).collect();
        let got = cpu.run(&args).unwrap();
        let worst = crate::small::worst_relative_diff(&expected, &got);
        eprintln!(
            "{name} {dialect:?}: max diff {worst:.3e} (relative to the largest output magnitude)"
        );
        assert!(
            worst <= 1e-4,
            "{name} {dialect:?}: CPU path differs from tract by {worst}"
        );
    }
}

/// The reductions in `text` (`linalg.generic` with a reduction iterator,
/// or `tosa.reduce_*`) whose output has a single element.
fn scalar_reductions(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            (l.contains("linalg.generic") && l.contains("\"reduction\""))
                || l.contains("\"tosa.reduce_")
        })
        .filter(|l| {
            // The result type: after `outs(` for a generic, after `->` for TOSA.
            let from = l.rfind("outs(").or_else(|| l.rfind("->")).unwrap();
            let rest = &l[from..];
            let start = rest.find("tensor<").unwrap() + 7;
            let ty = &rest[start..start + rest[start..].find('>').unwrap()];
            ty.split('x')
                .filter(|d| d.parse::<i64>().is_ok())
                .all(|d| d == "1")
        })
        .count()
}

#[test]
fn gpu_path_produces_ptx_that_uses_threads() {
    for (name, dialect) in [
        ("resnet18", Dialect::Linalg),
        ("mobilenet_v3_small", Dialect::Linalg),
        ("ppocr_mobile_v2_cls", Dialect::Linalg),
        ("minilm_l6_v2", Dialect::Linalg),
        ("ppocr_mobile_v2_cls", Dialect::Tosa),
    ] {
        let m = corpus_model(name);
        let emitted = emit_mlir(&m, &options(dialect)).unwrap();
        for chip in ["sm_80", "sm_90"] {
            let context = sculpt_codegen::MlirContext::new();
            let kernels = sculpt_codegen::lower_to_ptx(&context, &emitted.text, chip)
                .unwrap_or_else(|e| panic!("{name} {dialect:?} {chip}: {e}"));
            for k in &kernels {
                assert!(
                    k.ptx.contains(&format!(".target {chip}")),
                    "{name} {chip} {}",
                    k.name
                );
                assert!(k.ptx.contains(".entry"), "{name} {chip} {}", k.name);
            }
            // Thread ids index the tiles: the kernels use their threads,
            // except those of full reductions (one output element, so
            // one thread).
            let serial = kernels.iter().filter(|k| !k.ptx.contains("%tid.")).count();
            assert!(
                serial <= scalar_reductions(&emitted.text),
                "{name} {dialect:?} {chip}: {serial} kernels use no thread ids"
            );
            eprintln!(
                "{name} {dialect:?} {chip}: {} kernels ({serial} single-thread full reductions)",
                kernels.len()
            );
        }
    }
}

/// `m` with its f32 weights and inputs as f16 (outputs follow).
fn half_copy(m: &sculpt_ir::Model) -> sculpt_ir::Model {
    use sculpt_ir::{DataType, Initializer, Tensor, Type};
    let mut half = m.clone();
    let g = &mut half.graph;
    let ids: Vec<_> = g.values().map(|(id, _)| id).collect();
    for id in ids {
        let value = g.value_mut(id);
        if let Some(Initializer::Dense(t)) = &value.init {
            if t.dtype == DataType::F32 {
                let bytes = crate::small::f16_bytes(&t.to_f32_vec().unwrap());
                value.init = Some(Initializer::Dense(Tensor::from_raw(
                    DataType::F16,
                    t.dims.clone(),
                    bytes.into(),
                )));
            }
        }
    }
    for v in g.inputs.clone() {
        if let Some(Type::Tensor { dtype, .. }) = &mut g.value_mut(v).ty {
            if *dtype == DataType::F32 {
                *dtype = DataType::F16;
            }
        }
    }
    let keep = g.inputs.clone();
    g.clear_types_except(&keep);
    half
}

/// f16 little-endian bytes as f32 values.
fn f16_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| sculpt_ir::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// f16 copies of two conv nets (weights and inputs rounded to f16, every
/// op computing in f32 between casts) against tract on the f32 model fed
/// the same rounded inputs: the error is f16 storage's alone.
#[test]
fn half_copies_match_f32_within_half_precision() {
    for (name, dialect) in [
        ("mobilenet_v3_small", Dialect::Linalg),
        ("mobilenet_v3_small", Dialect::Tosa),
        ("resnet18", Dialect::Linalg),
    ] {
        let m = corpus_model(name);
        let half = half_copy(&m);
        let emitted = emit_mlir(&half, &options(dialect)).unwrap();
        assert!(emitted
            .inputs
            .iter()
            .all(|s| s.elem == sculpt_codegen::Elem::F16));
        let context = sculpt_codegen::MlirContext::new();
        let cpu =
            sculpt_codegen::CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())
                .unwrap_or_else(|e| panic!("{name} {dialect:?}: {e}"));
        let inputs = sculpt_runtime::read_npz(&corpus_dir().join(name).join("inputs.npz")).unwrap();
        // Each input once as f16: fed to the module, and read back as the
        // rounded f32 that tract gets.
        let mut args = Vec::new();
        let mut rounded = Vec::new();
        for a in &inputs {
            let v: Vec<f32> = a.to_f64().unwrap().iter().map(|&x| x as f32).collect();
            let bytes = crate::small::f16_bytes(&v);
            rounded.push(sculpt_runtime::Array::from_f32(
                &a.name,
                a.shape.clone(),
                &f16_values(&bytes),
            ));
            args.push(sculpt_codegen::HostTensor {
                elem: sculpt_codegen::Elem::F16,
                dims: a.shape.iter().map(|&d| d as i64).collect(),
                bytes,
            });
        }
        let expected = sculpt_runtime::Session::new(sculpt_runtime::Engine::Tract, &m, &rounded)
            .unwrap()
            .run(&rounded)
            .unwrap();
        let got_f32: Vec<sculpt_codegen::HostTensor> = cpu
            .run(&args)
            .unwrap()
            .into_iter()
            .map(|t| sculpt_codegen::HostTensor {
                elem: sculpt_codegen::Elem::F32,
                bytes: f16_values(&t.bytes)
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                dims: t.dims,
            })
            .collect();
        let worst = crate::small::worst_relative_diff(&expected, &got_f32);
        eprintln!("{name} f16 {dialect:?}: max diff {worst:.3e} (relative to the largest output magnitude)");
        assert!(
            worst <= 1e-2,
            "{name} f16 {dialect:?}: differs from f32 by {worst}"
        );
    }
}
