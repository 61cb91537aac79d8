//! Ops whose output is fixed once the shapes are, computed here into
//! initializers: Range and ConstantOfShape with constant inputs, and
//! EyeLike (which reads only its input's shape).

use super::Patch;
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::ops::eval::{self, Const, Vals};
use sculpt_ir::{DataType, Node, Tensor};

/// The largest constant folded here (bytes).
const LIMIT: usize = 1 << 28;

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    let Some(out) = n.output(0) else {
        return Err(unsupported(n, "no output"));
    };
    let runtime = || unsupported(n, "an input is computed at run time");
    let inputs: Vec<Option<Const>> = n
        .inputs()
        .iter()
        .map(|v| {
            v.and_then(|v| p.constant(v))
                .and_then(|t| Const::from_tensor(&t))
        })
        .collect();
    let value = match n.op_type.as_str() {
        "ConstantOfShape" => {
            inputs.first().cloned().flatten().ok_or_else(runtime)?;
            eval::eval(n, &inputs, LIMIT)
                .and_then(|mut v| v.pop())
                .ok_or_else(|| unsupported(n, "the value or shape cannot be folded"))?
        }
        "Range" => {
            let scalars: Vec<&Const> = inputs.iter().flatten().collect();
            if scalars.len() != 3 {
                return Err(runtime());
            }
            range(n, scalars[0], scalars[1], scalars[2])?
        }
        "EyeLike" => {
            let x = n.input(0).ok_or_else(|| unsupported(n, "no input"))?;
            let d = p.dims(x)?;
            if d.len() != 2 {
                return Err(unsupported(n, "input of rank other than 2"));
            }
            let dtype = match n.attr("dtype").and_then(|a| a.as_int()) {
                Some(code) => DataType(code as i32),
                None => p.dtype(x)?,
            };
            let k = n.int_attr("k", 0);
            let ones = (0..d[0]).flat_map(|i| (0..d[1]).map(move |j| i64::from(j - i == k)));
            let vals = if dtype.is_float() {
                Vals::Float(ones.map(|v| v as f64).collect())
            } else {
                Vals::Int(ones.collect())
            };
            Const {
                dtype,
                dims: d.iter().map(|&v| v as usize).collect(),
                vals,
            }
        }
        _ => return Ok(false),
    };
    let tensor: Tensor = value
        .to_tensor()
        .ok_or_else(|| unsupported(n, "element type cannot be folded"))?;
    p.define_constant(out, tensor)?;
    Ok(true)
}

/// `start, start + delta, ...` up to `limit` (excluded), in the inputs'
/// type; float values are computed in f64 and then rounded once.
fn range(n: &Node, start: &Const, limit: &Const, delta: &Const) -> Result<Const> {
    let scalar = |c: &Const| -> f64 {
        match &c.vals {
            Vals::Float(v) => v.first().copied().unwrap_or(0.0),
            Vals::Int(v) => v.first().copied().unwrap_or(0) as f64,
        }
    };
    let (s, l, d) = (scalar(start), scalar(limit), scalar(delta));
    if d == 0.0 {
        return Err(unsupported(n, "delta is 0"));
    }
    let count = ((l - s) / d).ceil().max(0.0) as usize;
    if count > LIMIT / 8 {
        return Err(unsupported(n, "more elements than sculpt folds"));
    }
    let vals = match start.vals {
        Vals::Float(_) => Vals::Float((0..count).map(|i| s + i as f64 * d).collect()),
        Vals::Int(_) => Vals::Int((0..count).map(|i| (s + i as f64 * d) as i64).collect()),
    };
    Ok(Const {
        dtype: start.dtype,
        dims: vec![count],
        vals,
    })
}
