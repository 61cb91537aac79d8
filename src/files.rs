//! Reading models and inputs, running them, and writing files
//! atomically (staged beside the target, then renamed: never half-written).

use anyhow::{Context, Result};
use sculpt_ir::Model;
use sculpt_runtime::{Array, Engine, Session};
use std::collections::HashMap;
use std::path::Path;

pub fn load(path: &Path) -> Result<Model> {
    sculpt_ir::load(path).with_context(|| format!("cannot load {}", path.display()))
}
pub fn inputs_for(
    model: &Model,
    inputs: Option<&Path>,
    dims: &HashMap<String, usize>,
) -> Result<Vec<Array>> {
    match inputs {
        Some(p) => Ok(sculpt_runtime::read_npz(p)?),
        None => Ok(sculpt_runtime::generate_inputs(model, dims, 0)?),
    }
}
pub fn run_model(engine: Engine, model: &Model, inputs: &[Array]) -> Result<Vec<Array>> {
    let session = Session::new(engine, model, inputs)?;
    Ok(session.run(inputs)?)
}
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist(stage(path, bytes)?, path)
}
/// `bytes` written to a temporary file beside `path` (removed if it is
/// never persisted).
pub fn stage(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = sculpt_ir::output_tempfile(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(tmp)
}
/// Moves a staged file to `path`.
pub fn persist(staged: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    staged
        .persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
