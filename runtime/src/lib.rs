//! sculpt-runtime: runs IR models on tract (embedded, in-process), reads and
//! writes `.npz` tensors, compares outputs with tolerances, and measures
//! latency. Passes never call tract directly; they ask for activations
//! through this crate.

mod array;
mod bench;
mod calibrate;
mod compare;
mod exec;
mod legalize;
mod npz;
mod test_data;

pub use array::Array;
pub use bench::{bench, Latency};
pub use calibrate::CalibrationSet;
pub use compare::{compare, Comparison, OutputReport, Tolerance};
pub use exec::{generate_inputs, required_inputs as exec_required_inputs, Session};
pub use npz::{read_npz, read_npz_from, write_npz};
pub use test_data::{read_tensor_pb, read_test_data_set, test_cases};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Npz(String),
    #[error("tract could not {stage} the model: {message}")]
    Tract {
        stage: &'static str,
        message: String,
    },
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error("value '{value}' (from {node}) has shape {shape:?}, which would need more than the {limit_gib} GiB memory limit")]
    Memory {
        value: String,
        node: String,
        shape: Vec<i64>,
        limit_gib: u64,
    },
    #[error(transparent)]
    Ir(#[from] sculpt_ir::IrError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
