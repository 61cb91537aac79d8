//! External data: tensor payloads kept in side files next to the model.
//! Files are memory-mapped once each and tensors slice the mapping, so a
//! large model is never copied into memory. A location that leaves the
//! model's folder (absolute, `..`, or a link pointing out) is refused.

use crate::{IrError, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub(crate) struct ExternalData {
    base_dir: Option<PathBuf>,
    files: HashMap<String, Bytes>,
}

impl ExternalData {
    pub(crate) fn new(base_dir: Option<&Path>) -> ExternalData {
        ExternalData {
            base_dir: base_dir.map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            }),
            files: HashMap::new(),
        }
    }

    /// The bytes `external_data` (location, offset, length) points at.
    pub(crate) fn read(&mut self, tensor: &str, entries: &[(String, String)]) -> Result<Bytes> {
        let err = |reason: String| IrError::ExternalData {
            tensor: tensor.to_string(),
            reason,
        };
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let location = get("location").ok_or_else(|| err("has no location".into()))?;
        let parse = |key: &str| -> Result<Option<u64>> {
            get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| err(format!("{key} '{v}' is not a number")))
                })
                .transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?;
        let file = match self.files.get(location) {
            Some(f) => f.clone(),
            None => {
                let f = self.map(location).map_err(err)?;
                self.files.insert(location.to_string(), f.clone());
                f
            }
        };
        let end = match length {
            Some(len) => offset.checked_add(len),
            None => Some(file.len() as u64),
        };
        match end {
            Some(end) if offset <= end && end <= file.len() as u64 => {
                Ok(file.slice(offset as usize..end as usize))
            }
            _ => Err(err(format!(
                "range {offset}+{} is outside '{location}' ({} bytes)",
                length.map_or("rest".into(), |l| l.to_string()),
                file.len()
            ))),
        }
    }

    fn map(&self, location: &str) -> Result<Bytes, String> {
        let base = self
            .base_dir
            .as_ref()
            .ok_or("is not supported for a model read from memory")?;
        let rel = Path::new(location);
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes || location.is_empty() {
            return Err(format!("location '{location}' leaves the model's folder"));
        }
        let path = base.join(rel);
        let real = path
            .canonicalize()
            .map_err(|e| format!("'{}': {e}", path.display()))?;
        let real_base = base
            .canonicalize()
            .map_err(|e| format!("'{}': {e}", base.display()))?;
        if !real.starts_with(&real_base) {
            return Err(format!("location '{location}' leaves the model's folder"));
        }
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Err(format!("'{}' is not a regular file", real.display()));
        }
        let file = std::fs::File::open(&real).map_err(|e| format!("'{}': {e}", real.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: read-only mapping; see `import::load`.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
        Ok(Bytes::from_owner(map))
    }
}
