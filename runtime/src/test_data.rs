//! The ONNX backend-test layout: a case folder holding `model.onnx` and
//! `test_data_set_N/input_K.pb`, `output_K.pb` (one `TensorProto` each).

use crate::{Array, Result, RuntimeError};
use std::path::{Path, PathBuf};

/// One `TensorProto` file as an array (named as the proto names it).
pub fn read_tensor_pb(path: &Path) -> Result<Array> {
    use prost::Message;
    let fail = |reason: String| RuntimeError::Npz(format!("{}: {reason}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let proto = sculpt_ir::onnx::proto::TensorProto::decode(bytes.as_slice())
        .map_err(|e| fail(e.to_string()))?;
    let (name, t) = sculpt_ir::onnx::import::tensor_from_proto(proto)?;
    Ok(Array {
        name,
        dtype: t.dtype,
        shape: t.dims.iter().map(|&d| d as usize).collect(),
        data: t.raw_bytes()?.into_owned(),
    })
}

/// The inputs and expected outputs of `case/test_data_set_{set}`, in
/// order.
pub fn read_test_data_set(case: &Path, set: usize) -> Result<(Vec<Array>, Vec<Array>)> {
    let folder = case.join(format!("test_data_set_{set}"));
    let numbered = |prefix: &str| -> Result<Vec<Array>> {
        let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(&folder)
            .map_err(|e| RuntimeError::Npz(format!("{}: {e}", folder.display())))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let k = name
                    .strip_prefix(prefix)?
                    .strip_suffix(".pb")?
                    .parse()
                    .ok()?;
                Some((k, e.path()))
            })
            .collect();
        files.sort();
        files.iter().map(|(_, p)| read_tensor_pb(p)).collect()
    };
    Ok((numbered("input_")?, numbered("output_")?))
}

/// The case folders (those holding a `model.onnx`) under `suite`, sorted.
pub fn test_cases(suite: &Path) -> Result<Vec<PathBuf>> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite)
        .map_err(|e| RuntimeError::Npz(format!("{}: {e}", suite.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    Ok(cases)
}
