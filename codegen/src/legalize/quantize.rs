//! QuantizeLinear and DequantizeLinear as the arithmetic ONNX defines
//! them by, in f32:
//! - DequantizeLinear: `(Cast(x) - Cast(zero_point)) · scale`;
//! - QuantizeLinear: `Cast(Clip(Round(x / scale) + zero_point, lo, hi))`,
//!   `lo`/`hi` the output type's range, Round to nearest even.
//!
//! A per-axis scale and zero point are reshaped to broadcast along their
//! axis. Blocked quantization (`block_size`) and types other than i8, u8
//! (and i32 for DequantizeLinear) are refused.

use super::{to, Patch};
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::{AttrValue, DataType, Node, Tensor};

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    let (Some(x), Some(scale), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
        return Err(unsupported(n, "needs an input, a scale and an output"));
    };
    if n.int_attr("block_size", 0) != 0 {
        return Err(unsupported(n, "blocked quantization (block_size)"));
    }
    let xd = p.dims(x)?;
    let axis = n.int_attr("axis", 1);
    let axis = if axis < 0 {
        axis + xd.len() as i64
    } else {
        axis
    } as usize;
    // A scale or zero point in f32; per-axis ones as [1, .., C, .., 1].
    let parameter = |p: &mut Patch, v| -> Result<_> {
        let d = p.dims(v)?;
        let v32 = p.f32_of(v, |_| true)?;
        if d.len() == 1 && d[0] > 1 {
            let mut view = vec![1; xd.len()];
            view[axis] = d[0];
            return Ok(p.reshape(v32, &view)?);
        }
        Ok(v32)
    };
    let scale32 = parameter(p, scale)?;
    let zero = n.input(2).map(|z| parameter(p, z)).transpose()?;
    if n.op_type == "DequantizeLinear" {
        let xtype = p.dtype(x)?;
        if !matches!(xtype, DataType::I8 | DataType::U8 | DataType::I32) {
            return Err(unsupported(n, format!("{xtype} input (i8, u8, i32)")));
        }
        let x32 = p.node("Cast", &[Some(x)], vec![to(DataType::F32)]);
        let centered = match zero {
            Some(z) => p.node("Sub", &[Some(x32), Some(z)], vec![]),
            None => x32,
        };
        let out_type = p.dtype(scale)?;
        if out_type == DataType::F32 {
            p.define("Mul", &[Some(centered), Some(scale32)], vec![], out)?;
        } else {
            let y = p.node("Mul", &[Some(centered), Some(scale32)], vec![]);
            p.define("Cast", &[Some(y)], vec![to(out_type)], out)?;
        }
        return Ok(true);
    }
    let out_type = match n.input(2) {
        Some(z) => p.dtype(z)?,
        None => match n.attr("output_dtype").and_then(AttrValue::as_int) {
            Some(code) if code != 0 => DataType(code as i32),
            _ => DataType::U8,
        },
    };
    let (lo, hi) = match out_type {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        other => return Err(unsupported(n, format!("{other} output (i8, u8)"))),
    };
    let x32 = p.f32_of(x, |_| true)?;
    let q = p.node("Div", &[Some(x32), Some(scale32)], vec![]);
    let rounded = p.node("Round", &[Some(q)], vec![]);
    let shifted = match zero {
        Some(z) => p.node("Add", &[Some(rounded), Some(z)], vec![]),
        None => rounded,
    };
    let bounds = [lo, hi].map(|b| Some(p.initializer(Tensor::from_f32(vec![], &[b]))));
    let clipped = p.node("Clip", &[Some(shifted), bounds[0], bounds[1]], vec![]);
    p.define("Cast", &[Some(clipped)], vec![to(out_type)], out)?;
    Ok(true)
}
