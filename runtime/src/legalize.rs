//! The element types tract has no datum type for (bf16, and the packed
//! 4-bit integers), mapped on the copy of a model handed to tract, so that
//! `--check` and calibration run quantized and half-precision models:
//!
//! - a DequantizeLinear of a constant that tract could not read (4-bit
//!   data, block-wise scales, bf16 scales) is evaluated here into an f32
//!   constant: exactly what the op computes;
//! - other 4-bit constants are widened to 8 bits (same values), which is
//!   exact for the ops that read quantized data (DequantizeLinear and
//!   friends take 8-bit data alike);
//! - `com.microsoft::MatMulNBits` with 8-bit codes (tract reads 2 and 4
//!   bits) becomes a MatMul of its weight dequantized into an f32
//!   constant: exactly the product the op computes;
//! - bf16 constants, values and Casts become f32: tract then computes in
//!   f32 where a bf16 runtime rounds each result to bf16 (differences of
//!   bf16's precision, about 3 significant digits).

use crate::{Result, RuntimeError};
use sculpt_ir::ops::eval::{self, Const};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::ops::nbits::NBitsWeight;
use sculpt_ir::{AttrValue, DataType, Graph, Initializer, Model, Tensor, Type};

/// The type tract computes in for `dtype`, where it has none of its own.
fn tract_type(dtype: DataType) -> Option<DataType> {
    match dtype {
        DataType::BF16 => Some(DataType::F32),
        DataType::I4 => Some(DataType::I8),
        DataType::U4 => Some(DataType::U8),
        _ => None,
    }
}

/// `model` as tract can run it (a copy; unchanged when nothing needs it).
pub fn for_tract(model: &Model) -> Result<Model> {
    let mut m = model.clone();
    for &v in &m.graph.inputs {
        if let Some(Type::Tensor { dtype, .. }) = &m.graph.value(v).ty {
            if tract_type(*dtype).is_some() && m.graph.value(v).init.is_none() {
                return Err(RuntimeError::Input {
                    name: m.graph.value(v).name.clone(),
                    reason: format!("{dtype} model inputs cannot run on tract"),
                });
            }
        }
    }
    map_graph(&mut m.graph)?;
    Ok(m)
}

fn map_graph(g: &mut Graph) -> Result<()> {
    fold_dequantize(g)?;
    widen_matmul_nbits(g)?;
    let ids: Vec<_> = g.values().map(|(id, _)| id).collect();
    for id in ids {
        let value = g.value_mut(id);
        if let Some(Type::Tensor { dtype, .. }) = &mut value.ty {
            if let Some(to) = tract_type(*dtype) {
                *dtype = to;
            }
        }
        if let Some(Initializer::Dense(t)) = &value.init {
            if let Some(widened) = widen(t)? {
                value.init = Some(Initializer::Dense(widened));
            }
        }
    }
    for id in g.node_ids() {
        let node = g.node_mut(id);
        for a in &mut node.attributes {
            match &mut a.value {
                AttrValue::Int(to) if a.name == "to" => {
                    if let Some(t) = tract_type(DataType(*to as i32)) {
                        *to = t.0 as i64;
                    }
                }
                AttrValue::Tensor(t) => {
                    if let Some(widened) = widen(t)? {
                        *t = widened;
                    }
                }
                _ => {}
            }
            for sub in a.value.graphs_mut() {
                map_graph(sub)?;
            }
        }
    }
    Ok(())
}

/// `t` in the type tract computes in, or `None` when tract reads it as is.
fn widen(t: &Tensor) -> Result<Option<Tensor>> {
    let Some(to) = tract_type(t.dtype) else {
        return Ok(None);
    };
    let widened = if to == DataType::F32 {
        Tensor::from_floats(to, t.dims.clone(), &t.to_f64_vec()?)?
    } else {
        Tensor::from_ints(to, t.dims.clone(), &t.to_i64_vec()?)?
    };
    Ok(Some(widened))
}

/// DequantizeLinear nodes over constants that tract cannot read, evaluated.
fn fold_dequantize(g: &mut Graph) -> Result<()> {
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op_type != "DequantizeLinear" || !node.is_onnx() {
            continue;
        }
        let inputs: Vec<Option<&Tensor>> = node
            .inputs()
            .iter()
            .map(|v| v.and_then(|v| constant(g, v)))
            .collect();
        let all_constant = node
            .inputs()
            .iter()
            .zip(&inputs)
            .all(|(v, t)| v.is_none() || t.is_some());
        let Some(Some(data)) = inputs.first() else {
            continue;
        };
        let blocked = node.int_attr("block_size", 0) > 0;
        let unreadable = inputs
            .iter()
            .flatten()
            .any(|t| tract_type(t.dtype).is_some());
        if !all_constant || !(blocked || unreadable) {
            continue;
        }
        let consts: Vec<Option<Const>> = inputs
            .iter()
            .map(|t| t.and_then(Const::from_tensor))
            .collect();
        let out = eval::eval(node, &consts, usize::MAX)
            .and_then(|mut r| r.pop())
            .and_then(|c| c.to_tensor())
            .ok_or_else(|| RuntimeError::Tract {
                stage: "read",
                message: format!(
                    "DequantizeLinear '{}' over a {} constant could not be evaluated for tract",
                    node.display_name(),
                    data.dtype
                ),
            })?;
        let out_value = node.output(0).expect("DequantizeLinear has an output");
        let out = widen(&out)?.unwrap_or(out);
        g.detach_node(id);
        let v = g.value_mut(out_value);
        v.init = Some(Initializer::Dense(out));
        v.ty = None;
    }
    Ok(())
}

/// `MatMulNBits` nodes whose bits tract does not take (8), as a MatMul of
/// their dequantized weight.
fn widen_matmul_nbits(g: &mut Graph) -> Result<()> {
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op_type != "MatMulNBits" || node.domain != "com.microsoft" {
            continue;
        }
        if matches!(node.int_attr("bits", 4), 2 | 4) {
            continue;
        }
        let unsupported = |reason: &str| RuntimeError::Tract {
            stage: "read",
            message: format!("MatMulNBits '{}': {reason}", node.display_name()),
        };
        if node.input(5).is_some() {
            return Err(unsupported("a bias input is not supported with 8 bits"));
        }
        let weight = NBitsWeight::read(g, node)
            .map_err(|e| unsupported(&e.to_string()))?
            .dequantized();
        let x = node.input(0);
        let name = format!("{}::dequantized", node.display_name());
        let mut value = sculpt_ir::Value::new(name);
        value.init = Some(Initializer::Dense(weight));
        let w = g.add_value(value);
        g.set_inputs(id, vec![x, Some(w)]);
        let node = g.node_mut(id);
        node.op_type = "MatMul".into();
        node.domain = String::new();
        node.attributes.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Array, Session};
    use sculpt_ir::{
        AttrValue, Attribute, DataType, Graph, Initializer, Model, Node, Tensor, Type, Value,
    };

    fn init(g: &mut Graph, name: &str, t: Tensor) -> sculpt_ir::ValueId {
        let mut v = Value::new(name);
        v.init = Some(Initializer::Dense(t));
        g.add_value(v)
    }

    /// `x · W` with W stored as int4 with a scale per block of two rows
    /// (opset 21 blocked DequantizeLinear), plus a bf16 bias: tract runs it.
    #[test]
    fn int4_blocks_and_bf16_run_on_tract() {
        let mut g = Graph::new("q");
        let mut x = Value::new("x");
        x.ty = Some(Type::tensor(DataType::F32, &[1, 4]));
        let x = g.add_value(x);
        g.inputs.push(x);
        let q: Vec<i64> = vec![1, -2, 3, -4, 5, -6, 7, -8];
        let w = init(
            &mut g,
            "w",
            Tensor::from_ints(DataType::I4, vec![4, 2], &q).unwrap(),
        );
        let s = init(
            &mut g,
            "s",
            Tensor::from_f32(vec![2, 2], &[0.5, 0.25, 2.0, 1.0]),
        );
        let b = init(
            &mut g,
            "b",
            Tensor::from_floats(DataType::BF16, vec![2], &[1.0, -1.0]).unwrap(),
        );
        let mut dq = Node::new("DequantizeLinear");
        dq.attributes = vec![
            Attribute::new("axis", AttrValue::Int(0)),
            Attribute::new("block_size", AttrValue::Int(2)),
        ];
        let dq = g.add_node(dq, vec![Some(w), Some(s)], vec![Some("wf".into())]);
        let wf = g.node(dq).output(0).unwrap();
        let mm = g.add_node(
            Node::new("MatMul"),
            vec![Some(x), Some(wf)],
            vec![Some("p".into())],
        );
        let p = g.node(mm).output(0).unwrap();
        let mut cast = Node::new("Cast");
        cast.attributes = vec![Attribute::new("to", AttrValue::Int(DataType::F32.0 as i64))];
        let c = g.add_node(cast, vec![Some(b)], vec![Some("bf".into())]);
        let bf = g.node(c).output(0).unwrap();
        let add = g.add_node(
            Node::new("Add"),
            vec![Some(p), Some(bf)],
            vec![Some("y".into())],
        );
        let y = g.node(add).output(0).unwrap();
        g.outputs.push(y);
        let mut m = Model::new(g);
        m.opset_imports[0].version = 21;
        let input = Array::from_f32("x", vec![1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let out = Session::new(crate::Engine::Tract, &m, std::slice::from_ref(&input))
            .unwrap()
            .run(&[input])
            .unwrap();
        // Rows 0-1 scaled by [0.5, 0.25], rows 2-3 by [2, 1].
        let w = [[0.5, -0.5], [1.5, -1.0], [10.0, -6.0], [14.0, -8.0]];
        let want: Vec<f64> = (0..2)
            .map(|j| (0..4).map(|i| (i + 1) as f64 * w[i][j]).sum::<f64>() + [1.0, -1.0][j])
            .collect();
        assert_eq!(out[0].to_f64().unwrap(), want);
    }
}
