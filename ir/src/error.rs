//! The one error type of `sculpt-ir`. Every variant names what it is about
//! (a node, a value, a tensor, a file) so that a one-line message is enough
//! to find the problem.

use std::path::PathBuf;

/// Errors from reading, checking, printing, parsing or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid ONNX model (protobuf decode failed: {0})")]
    Decode(String),
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("value '{value}' is used by node '{node}' but never defined")]
    Undefined { value: String, node: String },
    #[error("value '{value}' is defined twice ({first} and {second})")]
    Duplicate {
        value: String,
        first: String,
        second: String,
    },
    #[error("graph '{graph}' has a cycle through node '{node}'")]
    Cycle { graph: String, node: String },
    #[error("tensor '{tensor}': {reason}")]
    Tensor { tensor: String, reason: String },
    #[error("tensor '{tensor}': external data {reason}")]
    ExternalData { tensor: String, reason: String },
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("text form, line {line} column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("model is {bytes} bytes, over the 2 GiB protobuf limit; write it with external data")]
    TooLarge { bytes: u64 },
}

pub type Result<T, E = IrError> = std::result::Result<T, E>;

impl IrError {
    pub fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        IrError::Tensor {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub fn node(node: &crate::Node, reason: impl Into<String>) -> Self {
        IrError::Node {
            node: node.display_name().to_string(),
            op: node.op_type.clone(),
            reason: reason.into(),
        }
    }
}
