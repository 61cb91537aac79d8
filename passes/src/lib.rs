//! sculpt-passes: the pass manager, analyses and transforms.
//!
//! A pass has one name in every form: file `cleanup.rs`, type `Cleanup`,
//! pipeline token `cleanup`. Pipelines are written like MLIR's
//! (`cleanup,prune{ratio=0.3 criterion=magnitude}`) or read from TOML, and
//! run by the [`manager::PassManager`], which times each pass, records what
//! changed, and can verify the IR after each one.

pub mod allocate;
pub mod analysis;
pub mod calib;
pub mod context;
pub mod linear;
pub mod manager;
pub mod options;
pub mod pipeline;
pub mod registry;
pub mod transform;
pub mod util;

pub use calib::{Calibrator, SampleSplit, ValueChunk};
pub use context::PassContext;
pub use manager::{GuardVerdict, ModelStats, NumericGuard, PassManager, PassRecord, RunReport};
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

/// One pass statistic: a count, or a real number (an error, a share).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Stat {
    Count(u64),
    Real(f64),
}

impl Stat {
    pub fn as_f64(self) -> f64 {
        match self {
            Stat::Count(n) => n as f64,
            Stat::Real(x) => x,
        }
    }
}

impl From<u64> for Stat {
    fn from(n: u64) -> Stat {
        Stat::Count(n)
    }
}

impl From<usize> for Stat {
    fn from(n: usize) -> Stat {
        Stat::Count(n as u64)
    }
}

impl From<f64> for Stat {
    fn from(x: f64) -> Stat {
        Stat::Real(x)
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stat::Count(n) => write!(f, "{n}"),
            Stat::Real(x) => write!(f, "{x:.4e}"),
        }
    }
}

/// What a pass reports about its run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassOutcome {
    /// Whether the pass changed the model.
    pub changed: bool,
    /// Named statistics, e.g. `nodes_removed`, `output_rel_error`.
    pub statistics: Vec<(String, Stat)>,
    /// What the pass decided, one line each (which blocks it erased and why).
    pub details: Vec<String>,
    /// Per-item records for machines (per site, per block), as JSON.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<serde_json::Value>,
    /// Files the pass asks for beside the model (a plot, a policy): the
    /// CLI writes them only when the whole command succeeds.
    #[serde(skip)]
    pub files: Vec<(std::path::PathBuf, Vec<u8>)>,
}

impl PassOutcome {
    /// Adds statistic `name`, or adds `value` to it if it is there.
    pub fn stat(&mut self, name: &str, value: impl Into<Stat>) {
        let value = value.into();
        match self.statistics.iter_mut().find(|(k, _)| k == name) {
            Some((_, old)) => {
                *old = match (*old, value) {
                    (Stat::Count(a), Stat::Count(b)) => Stat::Count(a + b),
                    (a, b) => Stat::Real(a.as_f64() + b.as_f64()),
                }
            }
            None => self.statistics.push((name.to_string(), value)),
        }
    }
}

/// A pass a pipeline can name: its token, what it does, and its options
/// (declared with [`pass_options!`] beside it). [`registry::PASSES`] lists
/// every one.
pub trait NamedPass: Pass + Sized + 'static {
    /// The pipeline token, e.g. `prune`.
    const NAME: &'static str;
    /// One line for `sculpt passes`.
    const SUMMARY: &'static str;
    type Options: options::PassOptions;
    /// The pass with these options, or which option is wrong and why.
    fn new(options: Self::Options) -> Result<Self>;
}

/// A transform or analysis over a model.
pub trait Pass {
    /// The pipeline token, e.g. `cleanup`.
    fn name(&self) -> &'static str;
    fn run(
        &mut self,
        model: &mut Model,
        cx: &mut context::PassContext,
    ) -> Result<PassOutcome, IrError>;
    /// True for passes that analyse the graph's structure (channel
    /// groups, linear sites, residual blocks) and so need it in canonical
    /// form: the pass manager runs `cleanup` before them.
    fn needs_canonical(&self) -> bool {
        false
    }
    /// Analyses this pass leaves valid (by [`analysis::Analysis::NAME`]);
    /// every other cached analysis is dropped after the pass changes the model.
    fn preserves(&self) -> &'static [&'static str] {
        &[]
    }
    /// True when the pass, as configured, keeps every output the same (up
    /// to floating-point reassociation): with checking on, the pass
    /// manager compares outputs after it and rolls it back if they moved.
    fn lossless(&self) -> bool {
        false
    }
    /// True for a lossy rewrite whose output error the pass manager
    /// measures: with calibration data, the manager keeps the model as it
    /// was before the pass as the reference, and after a pass that changed
    /// the model puts the mean relative output error on held-out samples
    /// in its report ([`calib::judge`]).
    fn judged(&self) -> bool {
        false
    }
}
