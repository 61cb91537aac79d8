//! sculpt-runtime: runs IR models on tract (embedded, in-process), reads and
//! writes `.npz` tensors, compares outputs with tolerances, and measures
//! latency. Passes never call tract directly; they ask for activations
//! through this crate.

mod array;
mod bench;
mod compare;
mod exec;
mod npz;

pub use array::Array;
pub use bench::{bench, Latency};
pub use compare::{compare, Comparison, OutputReport, Tolerance};
pub use exec::{generate_inputs, Session};
pub use npz::{read_npz, write_npz};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Npz(String),
    #[error("tract could not {stage} the model: {message}")]
    Tract { stage: &'static str, message: String },
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error(transparent)]
    Ir(#[from] sculpt_ir::IrError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
