//! Node attributes, one variant per ONNX attribute type.

use crate::onnx::proto;
use crate::{Graph, Tensor};
use bytes::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    pub doc_string: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Bytes),
    Tensor(Tensor),
    Graph(Box<Graph>),
    SparseTensor(Box<proto::SparseTensorProto>),
    Type(Box<proto::TypeProto>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Bytes>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<proto::SparseTensorProto>),
    Types(Vec<proto::TypeProto>),
    /// Inside a function body: the value of the function's attribute `name`,
    /// of ONNX attribute type `ty`.
    Ref {
        name: String,
        ty: i32,
    },
}

impl Attribute {
    pub fn new(name: impl Into<String>, value: AttrValue) -> Attribute {
        Attribute {
            name: name.into(),
            value,
            doc_string: String::new(),
        }
    }
}

impl AttrValue {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f32> {
        match self {
            AttrValue::Float(f) => Some(*f),
            AttrValue::Int(i) => Some(*i as f32),
            _ => None,
        }
    }

    pub fn as_ints(&self) -> Option<&[i64]> {
        match self {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            AttrValue::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Subgraphs held by this attribute.
    pub fn graphs(&self) -> impl Iterator<Item = &Graph> {
        let (one, many): (Option<&Graph>, &[Graph]) = match self {
            AttrValue::Graph(g) => (Some(g.as_ref()), &[]),
            AttrValue::Graphs(gs) => (None, gs.as_slice()),
            _ => (None, &[]),
        };
        one.into_iter().chain(many.iter())
    }

    pub fn graphs_mut(&mut self) -> Vec<&mut Graph> {
        match self {
            AttrValue::Graph(g) => vec![g.as_mut()],
            AttrValue::Graphs(gs) => gs.iter_mut().collect(),
            _ => Vec::new(),
        }
    }
}
