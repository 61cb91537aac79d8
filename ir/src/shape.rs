//! Value types: element type plus a shape whose dims are numbers or symbols.

use crate::DataType;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    /// A named dim such as `N` or `seq` (ONNX `dim_param`).
    Symbol(String),
    /// A dim ONNX declares without value or name.
    Unknown,
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A value's type. Tensor types are modelled; every other ONNX type
/// (sequences, maps, optionals, sparse tensors, tensors with denotations)
/// is kept as the protobuf it came in.
#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    Tensor {
        dtype: DataType,
        /// `None`: rank unknown.
        shape: Option<Vec<Dim>>,
    },
    Other(crate::onnx::proto::TypeProto),
}

impl Type {
    pub fn tensor(dtype: DataType, dims: &[i64]) -> Type {
        Type::Tensor {
            dtype,
            shape: Some(dims.iter().map(|&d| Dim::Known(d)).collect()),
        }
    }

    pub fn dtype(&self) -> Option<DataType> {
        match self {
            Type::Tensor { dtype, .. } => Some(*dtype),
            Type::Other(_) => None,
        }
    }

    pub fn shape(&self) -> Option<&[Dim]> {
        match self {
            Type::Tensor { shape: Some(s), .. } => Some(s),
            _ => None,
        }
    }

    /// All dims when every one of them is a number.
    pub fn static_dims(&self) -> Option<Vec<i64>> {
        self.shape()?.iter().map(Dim::known).collect()
    }
}

/// `axis` (negative counts from the end) as an index into `rank` dims, or
/// `None` when it is out of range.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}
