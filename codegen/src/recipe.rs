//! How to compile an emitted module with IREE, as code: the
//! `iree-compile` flags a module is made for, per target. `sculpt emit
//! --target cpu|cuda` writes them beside the module, and the benches and
//! `scripts/iree_check.py` read them from there, so the recipe measured is
//! the recipe shipped.
//!
//! - **cpu** (llvm-cpu, this host's CPU): `O3` and data tiling (IREE's
//!   defaults are `O0` and no data tiling: 1.4× slower on minilm), and
//!   convolutions as im2col + matmul (direct convolutions run at a few
//!   GFLOP/s: 5× slower on resnet18).
//! - **cuda** (an NVIDIA chip, `sm_80` by default; IREE has no `sm_90`
//!   entry, and an H100 JIT-compiles `sm_80` PTX): `O3`, and the inputs of
//!   every matmul demoted to f16, accumulated in f32: tensor cores take f16
//!   and bf16, not f32.
//! - Modules with int8 dequantize-matmul chains add IREE's rewrite of
//!   contractions over dequantized operands into i8 × i8 → i32 ones with
//!   zero-point corrections.

use crate::Emitted;

/// Where an emitted module is compiled for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IreeTarget {
    Cpu,
    Cuda { chip: String },
}

impl IreeTarget {
    /// `cpu`, or `cuda` with its chip.
    pub fn parse(target: &str, chip: &str) -> Option<IreeTarget> {
        match target {
            "cpu" => Some(IreeTarget::Cpu),
            "cuda" => Some(IreeTarget::Cuda { chip: chip.into() }),
            _ => None,
        }
    }
}

/// The `iree-compile` flags for `module` on `target` (the input and `-o`
/// not included).
pub fn iree_flags(target: &IreeTarget, module: &Emitted) -> Vec<String> {
    let mut flags: Vec<&str> = match target {
        IreeTarget::Cpu => vec![
            "--iree-hal-target-device=local",
            "--iree-hal-local-target-device-backends=llvm-cpu",
            "--iree-llvmcpu-target-cpu=host",
            "--iree-opt-level=O3",
            "--iree-opt-data-tiling",
            "--iree-global-opt-use-im2col-for-convs",
        ],
        IreeTarget::Cuda { .. } => vec![
            "--iree-hal-target-device=cuda",
            "--iree-opt-level=O3",
            "--iree-global-opt-demote-contraction-inputs-type=f16",
            "--iree-global-opt-demote-contraction-inputs-operations=all",
        ],
    };
    if module.integer_dequantize {
        flags.push("--iree-global-opt-enable-qdq-to-integer-math");
    }
    let mut flags: Vec<String> = flags.into_iter().map(str::to_string).collect();
    if let IreeTarget::Cuda { chip } = target {
        flags.insert(1, format!("--iree-cuda-target={chip}"));
    }
    flags
}
