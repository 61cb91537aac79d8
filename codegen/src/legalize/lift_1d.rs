//! 1-d Conv, MaxPool and AveragePool as 2-d ones: the input `[N, C, L]`
//! viewed as `[N, C, 1, L]` (a Conv's kernel `[F, C/g, K]` as `[F, C/g,
//! 1, K]`), each spatial attribute given a leading unit entry (pads a
//! leading 0 on both sides), and the result viewed back as `[N, F, L']`.
//! The 2-d op over a height of 1 computes exactly the 1-d one.

use super::{attrs_with, Patch};
use crate::Result;
use sculpt_ir::{AttrValue, Attribute, Node};

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    if !matches!(n.op_type.as_str(), "Conv" | "MaxPool" | "AveragePool") {
        return Ok(false);
    }
    let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
        return Ok(false);
    };
    let xd = p.dims(x)?;
    // A used second output (MaxPool's indices) is refused by the emitter.
    if xd.len() != 3 || n.outputs().len() > 1 && n.output(1).is_some() {
        return Ok(false);
    }
    let od = p.dims(out)?;
    let lifted = |name: &str, unit: i64| -> Option<Attribute> {
        n.ints_attr(name).map(|v| {
            let mut ints = vec![unit];
            ints.extend(v);
            Attribute::new(name, AttrValue::Ints(ints))
        })
    };
    let mut attrs: Vec<Attribute> = [("kernel_shape", 1), ("strides", 1), ("dilations", 1)]
        .into_iter()
        .filter_map(|(name, unit)| lifted(name, unit))
        .collect();
    if let Some(pads) = n.ints_attr("pads") {
        let lifted_pads = vec![0, pads[0], 0, pads[1]];
        attrs.push(Attribute::new("pads", AttrValue::Ints(lifted_pads)));
    }
    let x4 = p.reshape(x, &[xd[0], xd[1], 1, xd[2]])?;
    let mut inputs = vec![Some(x4)];
    if n.op_type == "Conv" {
        let Some(w) = n.input(1) else {
            return Ok(false);
        };
        let wd = p.dims(w)?;
        inputs.push(Some(p.reshape(w, &[wd[0], wd[1], 1, wd[2]])?));
        inputs.push(n.input(2));
    }
    let y4 = p.node(&n.op_type, &inputs, attrs_with(n, attrs, &[]));
    let shape = p.ints(&od);
    p.define("Reshape", &[Some(y4), Some(shape)], vec![], out)?;
    Ok(true)
}
