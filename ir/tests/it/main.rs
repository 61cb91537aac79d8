//! Integration tests of sculpt-ir (one test binary, modules per topic).

mod bad_input;
mod corpus;
mod fuzz;
mod text_form;

use std::path::PathBuf;

/// `../shared/corpus` beside the repository (or `$SCULPT_CORPUS`).
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("SCULPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
}

/// Every `model.onnx` of the corpus, by folder name. Fails when the corpus
/// is missing, so that a broken checkout cannot pass vacuously.
pub fn corpus_models() -> Vec<(String, PathBuf)> {
    let dir = corpus_dir();
    let mut models: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus at {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.join("model.onnx"),
            )
        })
        .collect();
    models.sort();
    assert!(!models.is_empty(), "no models in {}", dir.display());
    models
}
