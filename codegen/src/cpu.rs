//! The CPU path: an emitted module lowered in process (melior's pass
//! manager) through bufferization and loops to the LLVM dialect, compiled
//! by MLIR's execution engine, and called through its C interface.

use crate::{CodegenError, Elem, MlirContext, Result, TensorSig};
use melior::ExecutionEngine;

/// linalg on tensors → LLVM dialect.
pub const CPU_PIPELINE: &str = "builtin.module(\
one-shot-bufferize{bufferize-function-boundaries=true function-boundary-type-conversion=identity-layout-map},\
func.func(convert-linalg-to-loops),\
convert-scf-to-cf,\
expand-strided-metadata,\
lower-affine,\
func.func(math-expand-ops{ops=rsqrt}),\
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

/// A compiled module and the signatures of `@main`'s results.
pub struct CpuModule {
    engine: ExecutionEngine,
    outputs: Vec<TensorSig>,
}

/// A tensor on the host: element type, dims and row-major little-endian
/// bytes (bool as one byte, 0 or 1), the layout of an `.npz` array.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub elem: Elem,
    pub dims: Vec<i64>,
    pub bytes: Vec<u8>,
}

impl HostTensor {
    pub fn from_f32(dims: Vec<i64>, values: &[f32]) -> HostTensor {
        HostTensor {
            elem: Elem::F32,
            dims,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn byte_len(&self) -> usize {
        self.dims.iter().product::<i64>() as usize * self.elem.bytes()
    }
}

/// A memref descriptor as the C interface lays it out: allocated and
/// aligned pointers, offset, sizes, strides (all 64-bit).
fn descriptor(data: *mut u64, dims: &[i64]) -> Vec<i64> {
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
    pub fn compile(
        context: &MlirContext,
        text: &str,
        outputs: Vec<TensorSig>,
    ) -> Result<CpuModule> {
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
            "tosa.",
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

    /// Runs `@main` on `inputs` (in order, of `@main`'s types and
    /// shapes), returning every output.
    pub fn run(&self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        // Copies with 8-byte alignment, whatever the caller's buffers have.
        let mut buffers: Vec<Vec<u64>> = inputs
            .iter()
            .map(|t| {
                let mut words = vec![0u64; t.bytes.len().div_ceil(8)];
                let n = t.bytes.len().min(t.byte_len());
                // SAFETY: `words` holds at least `n` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(t.bytes.as_ptr(), words.as_mut_ptr().cast(), n)
                };
                words
            })
            .collect();
        for t in inputs {
            if t.bytes.len() != t.byte_len() {
                return Err(CodegenError::Lowering(format!(
                    "an input of dims {:?} has {} bytes, not {}",
                    t.dims,
                    t.bytes.len(),
                    t.byte_len()
                )));
            }
        }
        let mut in_descs: Vec<Vec<i64>> = buffers
            .iter_mut()
            .zip(inputs)
            .map(|(data, t)| descriptor(data.as_mut_ptr(), &t.dims))
            .collect();
        let result_len: usize = self.outputs.iter().map(|s| 3 + 2 * s.dims.len()).sum();
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
        for sig in &self.outputs {
            let rank = sig.dims.len();
            let d = &results[at..at + 3 + 2 * rank];
            let (aligned, offset) = (d[1] as *const u8, d[2] as usize);
            let size = sig.elem.bytes();
            let count: i64 = sig.dims.iter().product();
            // SAFETY: the module allocated the result with these sizes
            // and identity strides.
            let data = unsafe {
                std::slice::from_raw_parts(aligned.add(offset * size), count as usize * size)
            };
            outputs.push(HostTensor {
                elem: sig.elem,
                dims: sig.dims.clone(),
                bytes: data.to_vec(),
            });
            at += 3 + 2 * rank;
        }
        Ok(outputs)
    }
}
