//! Transforms, one per file.

pub mod cleanup;
