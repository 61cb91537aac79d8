//! ONNX models generated from random bytes (structure-aware, through
//! `arbitrary`): a few nodes of common ops wired to earlier values, with
//! attributes of the kinds those ops take (and wrong ones), small
//! initializers, opsets and domains, some valid and some not.

use arbitrary::{Result, Unstructured};
use prost::Message;
use sculpt_ir::onnx::proto::{
    self, tensor_shape_proto::dimension::Value as DimValue, tensor_shape_proto::Dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

const OPS: &[&str] = &[
    "Add",
    "Mul",
    "Relu",
    "Conv",
    "MatMul",
    "Gemm",
    "Reshape",
    "Transpose",
    "Concat",
    "Slice",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "Cast",
    "Softmax",
    "ReduceMean",
    "MaxPool",
    "BatchNormalization",
    "Identity",
    "Split",
    "Range",
    "Expand",
    "Where",
    "Div",
    "Shape",
    "ConstantOfShape",
    "Pad",
    "Resize",
    "TopK",
    "LayerNormalization",
    "Gelu",
    "Einsum",
];
const ATTRS: &[&str] = &[
    "axis",
    "axes",
    "perm",
    "kernel_shape",
    "strides",
    "pads",
    "dilations",
    "group",
    "to",
    "keepdims",
    "transA",
    "transB",
    "alpha",
    "epsilon",
    "value",
    "mode",
    "equation",
];

fn dims(u: &mut Unstructured) -> Result<Vec<i64>> {
    let rank = u.int_in_range(0..=4)?;
    (0..rank)
        .map(|_| {
            Ok(match u.int_in_range(0..=9)? {
                0 => 0,
                1 => -1,
                n => n as i64,
            })
        })
        .collect()
}

fn value_info(u: &mut Unstructured, name: String) -> Result<ValueInfoProto> {
    let shape = dims(u)?
        .into_iter()
        .map(|d| Dimension {
            value: Some(if d < 0 {
                DimValue::DimParam("N".into())
            } else {
                DimValue::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    Ok(ValueInfoProto {
        name: Some(name),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(*u.choose(&[1, 1, 1, 7, 6, 9, 10])?),
                shape: Some(TensorShapeProto { dim: shape }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn tensor(u: &mut Unstructured, name: Option<String>) -> Result<TensorProto> {
    let dims = dims(u)?;
    let count: i64 = dims.iter().map(|&d| d.max(0)).product();
    let data_type = *u.choose(&[1, 1, 7, 6, 9, 10, 3])?;
    let declared = if u.ratio(1, 8)? { count + 1 } else { count }.clamp(0, 256) as usize;
    let mut t = TensorProto {
        name,
        dims,
        data_type: Some(data_type),
        ..Default::default()
    };
    match data_type {
        7 => {
            t.int64_data = (0..declared)
                .map(|_| u.int_in_range(-4..=8))
                .collect::<Result<_>>()?
        }
        6 => {
            t.int32_data = (0..declared)
                .map(|_| u.int_in_range(-4..=8))
                .collect::<Result<_>>()?
        }
        1 => {
            t.float_data = (0..declared)
                .map(|_| u.arbitrary::<f32>())
                .collect::<Result<_>>()?
        }
        _ => t.raw_data = Some(u.bytes(declared.min(u.len()))?.to_vec().into()),
    }
    Ok(t)
}

fn attribute(u: &mut Unstructured, depth: u32, known: &[String]) -> Result<AttributeProto> {
    let mut a = AttributeProto {
        name: Some(u.choose(ATTRS)?.to_string()),
        ..Default::default()
    };
    match u.int_in_range(0..=6)? {
        0 => {
            a.r#type = Some(2);
            a.i = Some(u.int_in_range(-3..=8)?);
        }
        1 => {
            a.r#type = Some(7);
            a.ints = (0..u.int_in_range(0..=5)?)
                .map(|_| u.int_in_range(-3..=8))
                .collect::<Result<_>>()?;
        }
        2 => {
            a.r#type = Some(1);
            a.f = Some(u.arbitrary()?);
        }
        3 => {
            a.r#type = Some(3);
            a.s = Some(
                u.choose(&["nearest", "linear", "ij,jk->ik", "constant", ""])?
                    .as_bytes()
                    .to_vec()
                    .into(),
            );
        }
        4 => {
            a.r#type = Some(4);
            a.t = Some(tensor(u, None)?);
        }
        5 if depth < 2 => {
            a.r#type = Some(5);
            a.name = Some(
                u.choose(&["then_branch", "else_branch", "body"])?
                    .to_string(),
            );
            a.g = Some(graph(u, depth + 1, known)?);
        }
        _ => a.r#type = Some(u.int_in_range(0..=14)?),
    }
    Ok(a)
}

/// A graph reading `outer` values from its enclosing scope.
fn graph(u: &mut Unstructured, depth: u32, outer: &[String]) -> Result<GraphProto> {
    let mut g = GraphProto {
        name: Some(format!("g{depth}")),
        ..Default::default()
    };
    let mut values: Vec<String> = outer.to_vec();
    for i in 0..u.int_in_range(0..=2)? {
        let name = format!("in{depth}_{i}");
        g.input.push(value_info(u, name.clone())?);
        values.push(name);
    }
    for i in 0..u.int_in_range(0..=3)? {
        let name = format!("w{depth}_{i}");
        g.initializer.push(tensor(u, Some(name.clone()))?);
        values.push(name);
    }
    for i in 0..u.int_in_range(1..=8)? {
        let op = if u.ratio(1, 10)? {
            *u.choose(&["If", "Loop"])?
        } else {
            *u.choose(OPS)?
        };
        let inputs = (0..u.int_in_range(0..=3)?)
            .map(|_| {
                Ok(if values.is_empty() || u.ratio(1, 12)? {
                    u.choose(&["", "nowhere"])?.to_string()
                } else {
                    u.choose(&values)?.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs: Vec<String> = (0..u.int_in_range(0..=2)?)
            .map(|o| format!("v{depth}_{i}_{o}"))
            .collect();
        let attribute = (0..u.int_in_range(0..=3)?)
            .map(|_| attribute(u, depth, &values))
            .collect::<Result<_>>()?;
        g.node.push(NodeProto {
            op_type: Some(op.into()),
            domain: Some(if u.ratio(1, 12)? {
                "com.evil".into()
            } else {
                String::new()
            }),
            input: inputs,
            output: outputs.clone(),
            attribute,
            ..Default::default()
        });
        values.extend(outputs);
    }
    for _ in 0..u.int_in_range(1..=2)? {
        let name = u
            .choose(&values)
            .cloned()
            .unwrap_or_else(|_| "missing".into());
        g.output.push(value_info(u, name)?);
    }
    Ok(g)
}

/// An encoded `ModelProto` built from `data`.
pub fn model(data: &[u8]) -> Result<Vec<u8>> {
    let mut u = Unstructured::new(data);
    let graph = graph(&mut u, 0, &[])?;
    let version = if u.ratio(1, 10)? {
        u.int_in_range(-1..=30)?
    } else {
        u.int_in_range(9..=21)?
    };
    let m = ModelProto {
        ir_version: Some(if u.ratio(1, 10)? {
            u.int_in_range(0..=99)?
        } else {
            8
        }),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(version),
        }],
        graph: Some(graph),
        ..Default::default()
    };
    Ok(m.encode_to_vec())
}
