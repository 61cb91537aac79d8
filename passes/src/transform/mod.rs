//! Transforms, one per file.

pub mod cleanup;
pub mod erase;
pub mod lowrank;
pub mod moe;
pub mod prune;
pub mod quantize;
pub mod raise_opset;
