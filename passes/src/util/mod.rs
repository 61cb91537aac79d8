//! Helpers every pass reaches: name patterns ([`glob`]), a seeded random
//! generator ([`rng`]), and reading and editing parameter tensors
//! ([`weights`]).

pub mod glob;
pub mod rng;
pub mod weights;
