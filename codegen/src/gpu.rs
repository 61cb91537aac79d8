//! The GPU path: an emitted module lowered in process through the `gpu`
//! dialect to NVVM and PTX. Parallel loops are tiled (the inner tile maps
//! to threads, the outer loops to blocks), each tile becomes a kernel, and
//! the kernels are compiled to PTX for one NVIDIA chip.

use crate::{CodegenError, MlirContext, Result};

/// Tile sizes of the parallel loops (outermost first): each tile is one
/// thread block, its points the block's threads (the fourth dim and beyond
/// run sequentially in each thread).
pub const TILE_SIZES: &str = "1,8,8,8";

/// The in-process pipeline for `chip` (sm_80, sm_90, ...). LLVM 22 needs
/// PTX ISA 8.0 for sm_90, so `+ptx80` is always asked for.
pub fn gpu_pipeline(chip: &str) -> String {
    format!(
        "builtin.module(\
one-shot-bufferize{{bufferize-function-boundaries=true function-boundary-type-conversion=identity-layout-map}},\
func.func(convert-linalg-to-parallel-loops,\
scf-parallel-loop-tiling{{parallel-loop-tile-sizes={TILE_SIZES} no-min-max-bounds=true}},\
gpu-map-parallel-loops,convert-parallel-loops-to-gpu),\
gpu-kernel-outlining,lower-affine,convert-scf-to-cf,\
gpu-lower-to-nvvm-pipeline{{cubin-chip={chip} cubin-features=+ptx80 cubin-format=isa}})"
    )
}

/// One compiled kernel module: its name and PTX.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub ptx: String,
}

/// Lowers `text` (an emitted module) for `chip` and returns every kernel's
/// PTX.
pub fn lower_to_ptx(context: &MlirContext, text: &str, chip: &str) -> Result<Vec<Kernel>> {
    if !chip.starts_with("sm_") {
        return Err(CodegenError::Lowering(format!(
            "'{chip}' is not an NVIDIA chip name (sm_80, sm_90, ...)"
        )));
    }
    let module = crate::verify::lower(context, text, &gpu_pipeline(chip))
        .map_err(|e| CodegenError::Lowering(format!("GPU path: {e}")))?;
    let printed = module.as_operation().to_string();
    let kernels = binaries(&printed);
    if kernels.is_empty() {
        return Err(CodegenError::Lowering(
            "no kernels: the parallel loops were not mapped to the GPU".into(),
        ));
    }
    Ok(kernels)
}

/// The PTX of every `gpu.binary @name [#gpu.object<..., assembly = "PTX">]`.
fn binaries(printed: &str) -> Vec<Kernel> {
    let mut kernels = Vec::new();
    for line in printed.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("gpu.binary @") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The object's payload: `assembly = "..."` (PTX with format=isa),
        // up to the first quote that is not escaped.
        let Some(at) = rest.find("assembly = \"") else {
            continue;
        };
        let body = &rest[at + "assembly = \"".len()..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('"', false) => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { continue };
        kernels.push(Kernel {
            name,
            ptx: unescape(&body[..end]),
        });
    }
    kernels
}

/// MLIR string-literal escapes: `\\`, `\"` and `\XX` (hex byte).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let next = bytes[i + 1];
            if next == b'\\' || next == b'"' {
                out.push(next);
                i += 2;
                continue;
            }
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mlir_strings() {
        assert_eq!(super::unescape(r#"a\0Ab\22c\\d"#), "a\nb\"c\\d");
    }
}
