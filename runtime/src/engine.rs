//! Which runtime executes models: tract (embedded, needs nothing
//! installed) or onnxruntime (loaded at run time from the library the
//! `onnxruntime` pip wheel ships, or the one `ORT_DYLIB_PATH` names).
//!
//! [`Runtime`] is what a user asks for (`--runtime tract|ort|auto`);
//! [`Engine`] is what runs, resolved once per process: `auto` becomes
//! onnxruntime when a usable library loads and tract otherwise.

use crate::{Result, RuntimeError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The runtime a user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Tract,
    Ort,
    Auto,
}

impl std::str::FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Runtime, String> {
        match s {
            "tract" => Ok(Runtime::Tract),
            "ort" | "onnxruntime" => Ok(Runtime::Ort),
            "auto" => Ok(Runtime::Auto),
            other => Err(format!("runtime '{other}': tract, ort or auto")),
        }
    }
}

/// The runtime that executes models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Tract,
    Ort,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Tract => "tract",
            Engine::Ort => "ort",
        })
    }
}

impl Runtime {
    /// The engine that runs: `Ort` loads onnxruntime (an error naming the
    /// library and why when it cannot), `Auto` falls back to tract.
    pub fn resolve(self) -> Result<Engine> {
        match self {
            Runtime::Tract => Ok(Engine::Tract),
            Runtime::Ort => {
                onnxruntime_environment()?;
                Ok(Engine::Ort)
            }
            Runtime::Auto => Ok(match onnxruntime_environment() {
                Ok(_) => Engine::Ort,
                Err(_) => Engine::Tract,
            }),
        }
    }
}

/// The onnxruntime environment of this process, made on first use from
/// the library [`onnxruntime_library`] finds.
pub(crate) fn onnxruntime_environment() -> Result<&'static ort::environment::Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let library = onnxruntime_library()?;
            let builder = ort::init_from(&library)
                .map_err(|e| format!("cannot use onnxruntime ({}): {e}", library.display()))?;
            builder
                .with_name("sculpt")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start onnxruntime ({}): {e}", library.display()))
        })
        .as_ref()
        .map_err(|message| RuntimeError::Unavailable(message.clone()))
}

/// The onnxruntime shared library: `ORT_DYLIB_PATH`, else the one in the
/// `onnxruntime` Python package that `python3` imports (its `capi/`).
fn onnxruntime_library() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!(
                "ORT_DYLIB_PATH names {}, which is not a file",
                path.display()
            )),
        };
    }
    let package = python_package_dir("onnxruntime").ok_or(
        "no onnxruntime library found: `pip install onnxruntime`, or set ORT_DYLIB_PATH to libonnxruntime",
    )?;
    shared_library_in(&package.join("capi")).ok_or_else(|| {
        format!(
            "the onnxruntime package at {} holds no libonnxruntime in capi/; set ORT_DYLIB_PATH",
            package.display()
        )
    })
}

/// Where `python3` (or `python`) finds package `name`, found without
/// importing it.
fn python_package_dir(name: &str) -> Option<PathBuf> {
    let script = format!(
        "import importlib.util as u; s = u.find_spec('{name}'); print(s.submodule_search_locations[0] if s else '')"
    );
    ["python3", "python"].iter().find_map(|python| {
        let out = std::process::Command::new(python)
            .args(["-c", &script])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let dir = PathBuf::from(dir.trim());
        (out.status.success() && dir.is_dir()).then_some(dir)
    })
}

/// The onnxruntime library in `dir` (`libonnxruntime.so.1.x.y` on Linux,
/// `libonnxruntime.*.dylib` on macOS, `onnxruntime.dll` on Windows).
fn shared_library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            (name.starts_with("libonnxruntime.so")
                || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
                || name == "onnxruntime.dll")
                && !name.contains("providers")
        })
        .collect();
    found.sort();
    found.pop()
}
