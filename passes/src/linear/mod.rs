//! The linear algebra every data-aware pass shares (prune's refits,
//! lowrank, quantize, moe): [`sites`] (constant-weight MatMul/Gemm/Conv
//! seen as matrices, read and rewritten in place) and [`solve`] (ridge
//! least squares, SPD solves, predicted output errors). What the sites see
//! on calibration data is measured in [`crate::calib`].

pub mod sites;
pub mod solve;

pub use sites::{find_sites, ConvGeometry, LinearSite, SiteBias, SiteOp, SiteRole};
