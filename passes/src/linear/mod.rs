//! The layer every data-aware pass shares (prune's refits, lowrank,
//! quantize, moe): [`sites`] (constant-weight MatMul/Gemm/Conv seen as
//! matrices, read and rewritten in place), [`stats`] (their inputs'
//! statistics on calibration data, streamed, in bounded memory),
//! [`solve`] (ridge least squares, SPD solves, predicted output errors)
//! and [`twin`] (a model beside a reference copy of it, so statistics can
//! pair each activation with the reference's).

pub mod sites;
pub mod solve;
pub mod stats;
pub mod twin;

pub use sites::{find_sites, ConvGeometry, LinearSite, SiteBias, SiteOp, SiteRole};
pub use stats::{collect, Moments, RowLayout, SiteData, SiteStats, StatsOptions, StatsRequest};
