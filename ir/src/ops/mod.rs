//! Op semantics: shape inference and cost for the ops passes reason about.
pub mod cost;
pub mod eval;
pub mod infer;
pub mod nbits;
pub mod schema;
mod schema_table;
