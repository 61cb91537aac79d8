//! The MLIR back end, end to end: corpus models emitted, verified in
//! process, and parsed by `mlir-opt`.

mod corpus;
mod node_suite;
mod small;
