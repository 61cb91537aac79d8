//! Everything the data-aware passes learn from calibration data, in one
//! room: the [`Calibrator`] the runtime implements, which samples fit and
//! which judge ([`SampleSplit`]), activation statistics of linear sites'
//! inputs ([`stats`]), value ranges for int8 ([`ranges`]), a model beside a
//! reference copy of itself ([`twin`]), and a changed model's output error
//! against its reference ([`judge`]).
//!
//! Every run names the samples it visits: statistics fit on
//! `split.fitted()` and check on `split.held_out()`; a pass judges its
//! result on `split.judging()`.

pub mod judge;
pub mod ranges;
pub mod stats;
pub mod twin;

pub use sculpt_ir::calibrator::{Calibrator, SampleSplit, ValueChunk, Visit, VisitChunk};
pub use stats::{collect, Moments, RowLayout, SiteData, SiteStats, StatsOptions, StatsRequest};
