//! `sculpt emit`: the MLIR back end, when built with `--features mlir`.

use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// What `sculpt emit` was asked for, besides the model and the output.
#[cfg_attr(not(feature = "mlir"), allow(dead_code))]
pub struct EmitRequest<'a> {
    /// Static dims for inputs with symbolic ones.
    pub shapes: HashMap<String, Vec<i64>>,
    /// linalg or tosa.
    pub dialect: &'a str,
    /// nchw or nhwc: the layout linalg convolutions compute in.
    pub conv_layout: &'a str,
    /// sculpt passes to run once the shapes are bound, before cleanup.
    pub pipeline: Option<&'a str>,
    /// An MLIR pass pipeline to run on the emitted module.
    pub mlir_passes: Option<&'a str>,
    /// Run on the CPU path and compare with the model run on this engine.
    pub check: Option<sculpt_runtime::Engine>,
    pub inputs: Option<&'a Path>,
    /// The chip and the PTX folder, for the GPU path.
    pub gpu: Option<(String, std::path::PathBuf)>,
    /// The IREE target whose flags are written beside the module.
    pub iree: Option<IreeTarget>,
}

#[cfg(feature = "mlir")]
pub use sculpt_codegen::IreeTarget;

/// Where IREE compiles the module for (without MLIR support, emit
/// refuses before it is read).
#[cfg(not(feature = "mlir"))]
#[derive(Clone, Debug)]
pub struct IreeTarget;

#[cfg(feature = "mlir")]
pub fn iree_target(target: &str, chip: &str) -> Option<IreeTarget> {
    IreeTarget::parse(target, chip)
}

#[cfg(not(feature = "mlir"))]
pub fn iree_target(target: &str, _chip: &str) -> Option<IreeTarget> {
    matches!(target, "cpu" | "cuda").then_some(IreeTarget)
}

#[cfg(feature = "mlir")]
pub fn emit(mut model: sculpt_ir::Model, output: &Path, request: EmitRequest) -> Result<()> {
    use anyhow::{anyhow, bail, Context};
    use sculpt_codegen::{bind_shapes, emit_mlir, CpuModule, EmitOptions, HostTensor, MlirContext};
    use sculpt_passes::{PassManager, Pipeline};
    let EmitRequest {
        shapes,
        dialect,
        conv_layout,
        pipeline,
        mlir_passes,
        check,
        inputs,
        gpu,
        iree,
    } = request;
    let options = EmitOptions {
        shapes,
        dialect: dialect.parse().map_err(|e: String| anyhow!(e))?,
        layout: conv_layout.parse().map_err(|e: String| anyhow!(e))?,
    };
    // Static shapes first, so that cleanup folds every shape computation.
    model = bind_shapes(&model, &options)?;
    let passes = match pipeline {
        Some(p) if !p.trim().is_empty() => format!("{p},cleanup"),
        _ => "cleanup".to_string(),
    };
    PassManager::new(Pipeline::parse(&passes)?)?.run(&mut model, |_| {})?;
    let mut emitted = emit_mlir(&model, &options)?;
    if let Some(passes) = mlir_passes {
        emitted.text = sculpt_codegen::run_passes(&MlirContext::new(), &emitted.text, passes)
            .with_context(|| format!("running --mlir-passes '{passes}'"))?;
    }
    let bytecode = output.extension().is_some_and(|e| e == "mlirbc");
    let size = if bytecode {
        let bytes = sculpt_codegen::to_bytecode(&MlirContext::new(), &emitted.text)?;
        crate::files::write_atomic(output, &bytes)?;
        bytes.len()
    } else {
        crate::files::write_atomic(output, emitted.text.as_bytes())?;
        emitted.text.len()
    };
    let list = |sigs: &[sculpt_codegen::TensorSig]| {
        sigs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "wrote {} ({} bytes): @main takes ({}), returns ({})",
        output.display(),
        size,
        list(&emitted.inputs),
        list(&emitted.outputs)
    );
    if let Some(target) = &iree {
        let flags = sculpt_codegen::iree_flags(target, &emitted);
        let path = output.with_extension("iree-flags");
        crate::files::write_atomic(&path, (flags.join("\n") + "\n").as_bytes())?;
        eprintln!(
            "wrote {}: iree-compile $(cat {}) {} -o MODULE.vmfb",
            path.display(),
            path.display(),
            output.display()
        );
    }
    if let Some((chip, dir)) = gpu {
        let kernels = sculpt_codegen::lower_to_ptx(&MlirContext::new(), &emitted.text, &chip)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for k in &kernels {
            crate::files::write_atomic(&dir.join(format!("{}.ptx", k.name)), k.ptx.as_bytes())?;
        }
        eprintln!(
            "wrote {} kernels for {chip} to {}",
            kernels.len(),
            dir.display()
        );
    }
    let Some(engine) = check else {
        return Ok(());
    };
    let dims: HashMap<String, usize> = HashMap::new();
    let arrays = crate::files::inputs_for(&model, inputs, &dims)?;
    let mut args = Vec::new();
    for (a, sig) in arrays.iter().zip(&emitted.inputs) {
        let dims: Vec<i64> = a.shape.iter().map(|&x| x as i64).collect();
        if dims != sig.dims || a.dtype != sig.elem.dtype() {
            bail!(
                "input '{}' is {:?} {:?}; @main takes {:?} {:?}",
                a.name,
                a.dtype,
                a.shape,
                sig.elem,
                sig.dims
            );
        }
        args.push(HostTensor {
            elem: sig.elem,
            dims,
            bytes: a.data.clone(),
        });
    }
    let expected = crate::files::run_model(engine, &model, &arrays)
        .with_context(|| format!("running on {engine}"))?;
    let context = MlirContext::new();
    let cpu = CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())?;
    let got: Vec<sculpt_runtime::Array> = expected
        .iter()
        .zip(cpu.run(&args)?)
        .map(|(e, t)| sculpt_runtime::Array {
            name: e.name.clone(),
            dtype: t.elem.dtype(),
            shape: t.dims.iter().map(|&d| d as usize).collect(),
            data: t.bytes,
        })
        .collect();
    let cmp = sculpt_runtime::compare(
        &got,
        &expected,
        sculpt_runtime::Tolerance {
            rtol: 1e-4,
            atol: 1e-5,
        },
    );
    for o in &cmp.outputs {
        eprintln!(
            "{}: max abs err {:.3e}, max rel err {:.3e}, {}",
            o.name,
            o.max_abs_err,
            o.max_rel_err,
            if o.ok { "ok" } else { "DIFFERS" }
        );
    }
    if !cmp.ok {
        bail!("the CPU path differs from {engine} beyond rtol 1e-4");
    }
    Ok(())
}

#[cfg(feature = "mlir")]
pub fn print_ops() -> Result<()> {
    print!("{}", sculpt_codegen::ops_table());
    Ok(())
}

#[cfg(not(feature = "mlir"))]
const NO_MLIR: &str = "this sculpt was built without MLIR support: build it with `cargo build --release --features mlir` (needs LLVM 22: apt-get install libmlir-22-dev llvm-22-dev libclang-22-dev libpolly-22-dev mlir-22-tools)";

#[cfg(not(feature = "mlir"))]
pub fn emit(_model: sculpt_ir::Model, _output: &Path, _request: EmitRequest) -> Result<()> {
    anyhow::bail!(NO_MLIR)
}

#[cfg(not(feature = "mlir"))]
pub fn print_ops() -> Result<()> {
    anyhow::bail!(NO_MLIR)
}
