//! sculpt-ir: the graph IR every sculpt pass works on.
//!
//! Invariants (checked by [`verify`]):
//! - a [`Model`] owns one main [`Graph`]; graphs nest through node
//!   attributes (If/Loop/Scan bodies) and function bodies;
//! - every value has one definition: a graph input, an initializer, a node
//!   output, or (in a subgraph) a capture of an enclosing graph's value;
//! - every node input is a live value; the graph is acyclic;
//! - petgraph edges mirror node inputs exactly (producer → consumer);
//! - tensors hold exactly as much data as their dims and type say;
//! - nodes keep ONNX op type, domain and attributes verbatim, so a model
//!   with ops no pass understands still round-trips losslessly.
//!
//! ONNX (or the text form) comes in through [`load`] and goes out through
//! [`onnx::save`]; the text form ([`text`]) prints and parses the same
//! model. Op semantics (shape inference, cost) live in [`ops`].

mod attr;
pub mod calibrator;
pub mod codec;
mod dtype;
mod error;
mod file;
mod graph;
mod model;
pub mod onnx;
pub mod ops;
pub mod opset;
mod output;
pub mod rewrite;
mod shape;
mod tensor;
pub mod text;
pub mod verify;

pub use attr::{AttrValue, Attribute};
pub use codec::f16_to_f32;
pub use dtype::DataType;
pub use error::{IrError, Result};
pub use file::load;
pub use graph::{Graph, Initializer, Node, NodeId, UseCounts, Value, ValueId};
pub use model::{Function, Model, OpsetImport};
pub use output::output_tempfile;
pub use shape::{normalize_axis, Dim, Type};
pub use tensor::{element_count, ExternalSource, Tensor, TensorData};
