//! Reading a model file: ONNX protobuf, or the text form ([`crate::text`]),
//! told apart by content.

use crate::{IrError, Model, Result};
use std::path::Path;

/// Loads the model at `path`: a serialized `ModelProto` (its external data
/// looked up beside it) or, where the file is text, the text form. The
/// file is memory-mapped and tensor payloads point into the mapping, so
/// import copies no weights.
pub fn load(path: &Path) -> Result<Model> {
    let bytes = crate::onnx::map_file(path)?;
    if crate::text::looks_like_text(&bytes) {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| IrError::Invalid(format!("{} is not UTF-8 text", path.display())))?;
        return crate::text::parse(text);
    }
    crate::onnx::from_bytes(bytes, path.parent())
}
