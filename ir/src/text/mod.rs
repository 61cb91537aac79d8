//! The text form: a deterministic, MLIR-like rendering of a model, and a
//! parser for it. It is the currency of tests: hand-write a small graph,
//! run a pass, snapshot the printed result.
//!
//! The printer renders the canonical ONNX export of the IR and the parser
//! builds ONNX protobuf that goes through the ordinary importer, so
//! `parse(print(m)) == m` for any model, and text input gets exactly the
//! checks that binary input gets.
//!
//! ```text
//! ir_version 8
//! opset "" 17
//! graph "main" (%x: f32[N,3], %w: f32[3]) -> (%y: f32[N,3]) {
//!   init %w = f32[3] [1.0, 2.0, 3.0]
//!   %t: f32[N,3] = Mul(%x, %w) @"mul0"
//!   %y = Relu(%t) {$doc="a doc string"}
//! }
//! ```
//!
//! Tensors above `inline_limit` elements print as `hex"…"` when printing
//! in full, and as `elided"sha256:<digest>:<bytes>"` otherwise (which the
//! parser refuses, naming the tensor).

mod lexer;
mod parser;
mod printer;

pub use parser::parse;
pub use printer::{print, print_graph, PrintOptions};

/// True when `bytes` begin like the text form rather than protobuf.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(256)];
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..];
    [
        "//",
        "ir_version",
        "graph",
        "opset",
        "producer_name",
        "model_version",
        "doc",
        "meta",
    ]
    .iter()
    .any(|k| head.starts_with(k.as_bytes()))
        && head
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80)
}

/// Names that print bare after `%`; anything else is quoted.
pub(crate) fn is_bare_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
        && !s.starts_with('-')
}

pub(crate) fn is_bare_word(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}
