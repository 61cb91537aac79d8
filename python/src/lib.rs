//! `sculpt._sculpt`, the compiled half of the Python package: the command
//! line run in process, and the JSON summaries of `inspect`, `zig` and
//! `passes`. The Python half (`sculpt/__init__.py`) turns ModelProtos and
//! calibration data into files and back.
//!
//! Every call releases the GIL while sculpt works. Errors become
//! `sculpt.SculptError` carrying sculpt's message; a panic is caught at
//! this boundary and raised the same way, never unwound into Python.

use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

pyo3::create_exception!(
    _sculpt,
    SculptError,
    pyo3::exceptions::PyException,
    "sculpt refused or failed; the message says what and where."
);

/// Runs `work` without the GIL, its error or panic as a [`SculptError`].
fn guarded<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SculptError::new_err(sculpt::error_line(&e))),
        Err(payload) => Err(SculptError::new_err(format!(
            "internal error (a bug in sculpt, please report it): {}",
            sculpt::panic_message(&*payload)
        ))),
    }
}

/// Runs the command line `args` (the program name first), as the `sculpt`
/// command does.
#[pyfunction]
fn run(py: Python<'_>, args: Vec<String>) -> PyResult<()> {
    guarded(py, || sculpt::run(args))
}

/// `sculpt inspect --json` of the model at `path`, as JSON text.
#[pyfunction]
#[pyo3(signature = (path, dims = HashMap::new()))]
fn inspect(py: Python<'_>, path: PathBuf, dims: HashMap<String, usize>) -> PyResult<String> {
    guarded(py, || Ok(sculpt::api::inspect(&path, &dims)?.to_string()))
}

/// `sculpt inspect --zig --json` of the model at `path`, as JSON text.
#[pyfunction]
fn zig(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    guarded(py, || Ok(sculpt::api::zig(&path)?.to_string()))
}

/// `sculpt passes --json`, as JSON text.
#[pyfunction]
fn passes(py: Python<'_>) -> PyResult<String> {
    guarded(py, || Ok(sculpt::api::passes().to_string()))
}

#[pymodule]
fn _sculpt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SculptError", m.py().get_type::<SculptError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(zig, m)?)?;
    m.add_function(wrap_pyfunction!(passes, m)?)?;
    Ok(())
}
