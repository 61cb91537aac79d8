//! The CPU path: an emitted module lowered in process (melior's pass
//! manager) through bufferization and loops to the LLVM dialect, compiled
//! by MLIR's execution engine, and called through its C interface.

use crate::{CodegenError, MlirContext, Result};
use melior::ExecutionEngine;

/// linalg on tensors → LLVM dialect.
pub const CPU_PIPELINE: &str = "builtin.module(\
one-shot-bufferize{bufferize-function-boundaries=true function-boundary-type-conversion=identity-layout-map},\
func.func(convert-linalg-to-loops),\
convert-scf-to-cf,\
expand-strided-metadata,\
lower-affine,\
convert-math-to-libm,\
func.func(convert-math-to-llvm),\
convert-arith-to-llvm,\
finalize-memref-to-llvm,\
convert-func-to-llvm,\
convert-cf-to-llvm,\
reconcile-unrealized-casts)";

/// MLIR's C runtime support library (`memrefCopy`), from the LLVM 22
/// packages (`libmlir-22-dev`).
// NUL-terminated: MLIR reads the path as a C string.
pub const RUNNER_UTILS: &str = "/usr/lib/llvm-22/lib/libmlir_c_runner_utils.so\0";

/// A compiled module and the static shapes of `@main`'s inputs and outputs.
pub struct CpuModule {
    engine: ExecutionEngine,
    outputs: Vec<Vec<i64>>,
}

/// A memref descriptor as the C interface lays it out: allocated and
/// aligned pointers, offset, sizes, strides (all 64-bit).
fn descriptor(data: *mut f32, dims: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let mut d = vec![data as i64, data as i64, 0];
    d.extend(dims);
    d.extend(strides);
    d
}

impl CpuModule {
    /// Lowers and compiles `text` (an emitted module) for this CPU.
    pub fn compile(context: &MlirContext, text: &str, outputs: Vec<Vec<i64>>) -> Result<CpuModule> {
        let module = crate::verify::lower(context, text, CPU_PIPELINE)?;
        // Anything left outside the LLVM dialect would make the engine
        // fail to build (and it cannot report that).
        let lowered = module.as_operation().to_string();
        for leftover in [
            "unrealized_conversion_cast",
            "linalg.",
            "tensor.",
            "memref.",
            "bufferization.",
        ] {
            if lowered.contains(leftover) {
                return Err(CodegenError::Lowering(format!(
                    "'{leftover}' ops are left after lowering: the CPU path does not cover them yet"
                )));
            }
        }
        // memref copies call into MLIR's C runner utilities.
        let engine = ExecutionEngine::new(&module, 2, &[RUNNER_UTILS], false, false);
        Ok(CpuModule { engine, outputs })
    }

    /// Runs `@main` on `inputs` (data, dims), returning every output.
    pub fn run(&self, inputs: &mut [(Vec<f32>, Vec<i64>)]) -> Result<Vec<Vec<f32>>> {
        let mut in_descs: Vec<Vec<i64>> = inputs
            .iter_mut()
            .map(|(data, dims)| descriptor(data.as_mut_ptr(), dims))
            .collect();
        let result_len: usize = self.outputs.iter().map(|d| 3 + 2 * d.len()).sum();
        let mut results = vec![0i64; result_len];
        // `_mlir_ciface_main(results*, input0*, ...)`, called through its
        // packed wrapper (MLIR's C API adds the `_mlir_ciface_` prefix): a
        // pointer to each of those pointers.
        let mut result_ptr = results.as_mut_ptr();
        let mut in_ptrs: Vec<*mut i64> = in_descs.iter_mut().map(|d| d.as_mut_ptr()).collect();
        let mut args: Vec<*mut ()> = vec![&mut result_ptr as *mut *mut i64 as *mut ()];
        for p in in_ptrs.iter_mut() {
            args.push(p as *mut *mut i64 as *mut ());
        }
        // SAFETY: the arguments follow `_mlir_ciface_main`'s signature,
        // each descriptor pointing at a live buffer of the declared shape.
        unsafe { self.engine.invoke_packed("main", &mut args) }
            .map_err(|e| CodegenError::Lowering(format!("running @main: {e}")))?;
        let mut outputs = Vec::new();
        let mut at = 0;
        for dims in &self.outputs {
            let rank = dims.len();
            let d = &results[at..at + 3 + 2 * rank];
            let (aligned, offset) = (d[1] as *const f32, d[2] as usize);
            let count: i64 = dims.iter().product();
            // SAFETY: the module allocated the result with these sizes
            // and identity strides.
            let data = unsafe { std::slice::from_raw_parts(aligned.add(offset), count as usize) };
            outputs.push(data.to_vec());
            at += 3 + 2 * rank;
        }
        Ok(outputs)
    }
}
