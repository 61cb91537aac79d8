//! sculpt-passes: the pass manager, analyses and transforms.
//!
//! A pass has one name in every form: file `cleanup.rs`, type `Cleanup`,
//! pipeline token `cleanup`. Pipelines are written like MLIR's
//! (`cleanup,prune{ratio=0.3 criterion=magnitude}`) or read from TOML, and
//! run by the [`manager::PassManager`], which times each pass, records what
//! changed, and can verify the IR after each one.

pub mod analysis;
pub mod manager;
pub mod pipeline;
pub mod registry;
pub mod transform;

pub use manager::{Calibrator, ModelStats, PassManager, PassRecord, RunReport};
pub use pipeline::{Pipeline, PipelineStep};

use sculpt_ir::{IrError, Model};

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("pipeline: {0}")]
    Pipeline(String),
    #[error("unknown pass '{name}'; known passes: {known}")]
    UnknownPass { name: String, known: String },
    #[error("pass '{pass}': option '{option}': {reason}")]
    Option {
        pass: String,
        option: String,
        reason: String,
    },
    #[error("pass '{pass}' failed: {source}")]
    Failed { pass: String, source: IrError },
    #[error("after pass '{pass}' the IR is invalid: {problems}")]
    Verify { pass: String, problems: String },
    #[error(transparent)]
    Ir(#[from] IrError),
}

pub type Result<T, E = PassError> = std::result::Result<T, E>;

/// What a pass reports about its run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassOutcome {
    /// Whether the pass changed the model.
    pub changed: bool,
    /// Named counters, e.g. `nodes_removed`.
    pub statistics: Vec<(String, u64)>,
    /// What the pass decided, one line each (which blocks it erased and why).
    pub details: Vec<String>,
}

/// A transform or analysis over a model.
pub trait Pass {
    /// The pipeline token, e.g. `cleanup`.
    fn name(&self) -> &'static str;
    fn run(
        &mut self,
        model: &mut Model,
        cx: &mut manager::PassContext,
    ) -> Result<PassOutcome, IrError>;
    /// Analyses this pass leaves valid (by [`analysis::Analysis::NAME`]);
    /// every other cached analysis is dropped after the pass changes the model.
    fn preserves(&self) -> &'static [&'static str] {
        &[]
    }
}
