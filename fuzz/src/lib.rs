//! Fuzzing sculpt's input readers on stable Rust: each [`Target`] takes
//! bytes and must answer with a result, never a panic. Inputs come from
//! seeds mutated byte by byte ([`mutate`]), ONNX models generated from
//! random bytes through `arbitrary` ([`generate`]), and structural
//! mutations of seed models (a node dropped, an input renamed, an
//! attribute retyped...). `src/main.rs` runs a target for a time budget;
//! `tests/regressions.rs` replays every input kept in `regressions/`.

pub mod generate;
pub mod mutate;
pub mod targets;

pub use targets::Target;

/// The passes' seeded generator, so that a run is repeatable from its seed.
pub use sculpt_passes::util::rng::Rng;
