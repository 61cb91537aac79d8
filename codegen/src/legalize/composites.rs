//! Ops ONNX defines as compositions of others, rewritten as those:
//! Trilu as `Where(mask, x, 0)` with a constant mask; Mish as `x ·
//! tanh(softplus(x))`; LpNormalization as `x / ReduceL1|L2(x)` over its
//! axis (0 where the norm is 0); ReduceLogSum as `Log(ReduceSum(x))`; ReduceLogSumExp as
//! `Log(ReduceSum(Exp(x)))` (as the reference computes it, without
//! subtracting the maximum).

use super::Patch;
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::{AttrValue, Attribute, Node, Tensor};

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
        return Err(unsupported(n, "needs an input and an output"));
    };
    match n.op_type.as_str() {
        "Trilu" => {
            let d = p.dims(x)?;
            if d.len() < 2 {
                return Err(unsupported(n, "input of rank < 2"));
            }
            let k = match n.input(1) {
                None => 0,
                Some(v) => p
                    .constant(v)
                    .and_then(|t| t.to_i64_vec().ok())
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| unsupported(n, "k is computed at run time"))?,
            };
            let upper = n.int_attr("upper", 1) != 0;
            let (rows, cols) = (d[d.len() - 2], d[d.len() - 1]);
            let mask: Vec<u8> = (0..rows)
                .flat_map(|i| (0..cols).map(move |j| (i, j)))
                .map(|(i, j)| u8::from(if upper { j - i >= k } else { j - i <= k }))
                .collect();
            let mask = p.initializer(Tensor::from_raw(
                sculpt_ir::DataType::BOOL,
                vec![rows, cols],
                mask.into(),
            ));
            let dtype = p.dtype(x)?;
            let zero = p.zero(dtype);
            p.define("Where", &[Some(mask), Some(x), Some(zero)], vec![], out)?;
        }
        "Mish" => {
            let soft = p.node("Softplus", &[Some(x)], vec![]);
            let t = p.node("Tanh", &[Some(soft)], vec![]);
            p.define("Mul", &[Some(x), Some(t)], vec![], out)?;
        }
        "LpNormalization" => {
            let reduce = match n.int_attr("p", 2) {
                1 => "ReduceL1",
                2 => "ReduceL2",
                other => return Err(unsupported(n, format!("p={other} (1 or 2)"))),
            };
            let attrs = vec![
                Attribute::new("axes", AttrValue::Ints(vec![n.int_attr("axis", -1)])),
                Attribute::new("keepdims", AttrValue::Int(1)),
            ];
            let norm = p.node(reduce, &[Some(x)], attrs);
            let quotient = p.node("Div", &[Some(x), Some(norm)], vec![]);
            // A zero vector stays zero (as onnxruntime and the reference give).
            let dtype = p.dtype(x)?;
            let zero = p.zero(dtype);
            let is_zero = p.node("Equal", &[Some(norm), Some(zero)], vec![]);
            p.define(
                "Where",
                &[Some(is_zero), Some(zero), Some(quotient)],
                vec![],
                out,
            )?;
        }
        "ReduceLogSum" | "ReduceLogSumExp" => {
            let source = if n.op_type == "ReduceLogSumExp" {
                p.node("Exp", &[Some(x)], vec![])
            } else {
                x
            };
            let mut inputs = n.inputs().to_vec();
            inputs[0] = Some(source);
            let sum = p.node("ReduceSum", &inputs, n.attributes.clone());
            p.define("Log", &[Some(sum)], vec![], out)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}
