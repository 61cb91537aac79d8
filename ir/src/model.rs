//! The model: a main graph plus opset imports, metadata and functions.

use crate::{Attribute, Graph};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    pub domain: String,
    pub version: i64,
}

/// A model-local function (`FunctionProto`). Its body is a graph whose
/// inputs and outputs are the function's formal parameters.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub domain: String,
    pub overload: String,
    pub body: Graph,
    /// Names of the attributes the function takes.
    pub attribute_names: Vec<String>,
    /// Attributes the function takes, with default values.
    pub attribute_defaults: Vec<Attribute>,
    pub opset_imports: Vec<OpsetImport>,
    pub doc_string: String,
    pub extra: Option<Box<crate::onnx::proto::FunctionProto>>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub ir_version: i64,
    pub opset_imports: Vec<OpsetImport>,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata: Vec<(String, String)>,
    pub graph: Graph,
    pub functions: Vec<Function>,
    /// `ModelProto` fields the IR does not model (training_info, configuration).
    pub extra: Option<Box<crate::onnx::proto::ModelProto>>,
}

impl Model {
    pub fn new(graph: Graph) -> Model {
        Model {
            ir_version: crate::onnx::IR_VERSION,
            opset_imports: vec![OpsetImport {
                domain: String::new(),
                version: crate::onnx::DEFAULT_OPSET,
            }],
            producer_name: "sculpt".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 0,
            doc_string: String::new(),
            metadata: Vec::new(),
            graph,
            functions: Vec::new(),
            extra: None,
        }
    }

    /// Opset version of the default ONNX domain.
    pub fn onnx_opset(&self) -> i64 {
        self.opset_imports
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(1)
    }
}

/// Two models are equal when they export to the same ONNX protobuf: the
/// export is canonical, so this compares meaning, not arena layout.
impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        crate::onnx::export::to_proto(self) == crate::onnx::export::to_proto(other)
    }
}
