//! sculpt's MLIR back end: a graph as `linalg` on tensors (with `func`,
//! `arith`, `math` and `tensor`), or TOSA, weights as dense resources,
//! static shapes. The module is emitted as MLIR text, then parsed and
//! verified in process through melior, so what leaves this crate is a
//! module MLIR itself accepted (written as text, or as bytecode:
//! [`to_bytecode`]).
//!
//! The entry function is `@main`: graph inputs in order in, graph outputs
//! in order out. An op outside the supported set is an error naming the
//! node and the op, never wrong code. Quantized weights stay quantized
//! (`i4`/`i8` constants read through dequantizing generics, int8 QDQ
//! products as integer matmuls), and [`iree_flags`] gives the IREE recipe
//! a module is made for.

mod cpu;
mod emit;
mod gpu;
mod legalize;
mod ops;
mod recipe;
mod verify;

pub use cpu::{CpuModule, HostTensor, CPU_PIPELINE};
pub use emit::{bind_shapes, emit_text, Elem, EmitOptions, Emitted, TensorSig};
pub use gpu::{gpu_pipeline, lower_to_ptx, Kernel, TILE_SIZES};
pub use ops::{ops_table, supported_ops, Dialect, Layout};
pub use recipe::{iree_flags, IreeTarget};
pub use verify::{run_passes, to_bytecode, verify_module, MlirContext, TOSA_TO_LINALG};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodegenError {
    #[error("node '{node}' ({op}): {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("input '{input}': {reason}")]
    Shape { input: String, reason: String },
    #[error("MLIR rejected the emitted module: {0}")]
    Verify(String),
    #[error("lowering: {0}")]
    Lowering(String),
    #[error(transparent)]
    Ir(#[from] sculpt_ir::IrError),
}

pub type Result<T, E = CodegenError> = std::result::Result<T, E>;

/// Emits `model` as a verified MLIR module (text).
pub fn emit_mlir(model: &sculpt_ir::Model, options: &EmitOptions) -> Result<Emitted> {
    let emitted = emit_text(model, options)?;
    verify_module(&MlirContext::new(), &emitted.text)?;
    Ok(emitted)
}
