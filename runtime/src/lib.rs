//! sculpt-runtime: runs IR models on tract (embedded, in-process) or on
//! onnxruntime (its library loaded at run time), reads and writes `.npz`
//! tensors, compares outputs with tolerances, and measures latency. Passes
//! never run models themselves; they ask for activations through this
//! crate's calibrator.

mod array;
mod bench;
mod calibrate;
mod compare;
mod engine;
mod exec;
mod legalize;
mod npz;
mod onnxruntime;
mod test_data;
mod tract;

pub use array::Array;
pub use bench::{bench, Latency};
pub use calibrate::CalibrationSet;
pub use compare::{compare, Comparison, OutputReport, Tolerance};
pub use engine::{Engine, Runtime};
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
    #[error("onnxruntime could not {stage} the model: {message}")]
    Ort {
        stage: &'static str,
        message: String,
    },
    /// The runtime asked for cannot be used (onnxruntime's library
    /// missing, too old or failing to load).
    #[error("{0}")]
    Unavailable(String),
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

/// How many [`contained`] calls are under way (on any thread).
static CONTAINED_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Calls into a runtime that asserts (panics) on some malformed models
/// rather than returning an error (tract; the `ort` crate on some type
/// infos): a panic becomes `Err` with its first line, and is not printed.
/// Worker threads panic where the caller's flag cannot be seen, so the
/// panic hook stays quiet while any contained call is under way.
pub(crate) fn contained<T>(call: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::sync::atomic::Ordering;
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED_CALLS.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
    CONTAINED_CALLS.fetch_add(1, Ordering::SeqCst);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    CONTAINED_CALLS.fetch_sub(1, Ordering::SeqCst);
    // Errors may carry a backtrace after the message.
    outcome.map_err(|payload| {
        let message = panic_message(&*payload);
        message.lines().next().unwrap_or_default().to_string()
    })
}

/// The message a caught panic carried (its `&str` or `String` payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
