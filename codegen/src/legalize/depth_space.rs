//! DepthToSpace and SpaceToDepth as Reshape, Transpose, Reshape: the
//! permutations ONNX defines them by (DCR and CRD orders for
//! DepthToSpace), so every element lands where the op puts it.

use super::Patch;
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::{AttrValue, Node};

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
        return Err(unsupported(n, "needs an input and an output"));
    };
    let d = p.dims(x)?;
    let od = p.dims(out)?;
    let b = n.int_attr("blocksize", 0);
    if d.len() != 4 || b < 1 {
        return Err(unsupported(n, "needs a 4-d input and a blocksize"));
    }
    let (batch, c, h, w) = (d[0], d[1], d[2], d[3]);
    let (split, perm): (Vec<i64>, Vec<i64>) = if n.op_type == "SpaceToDepth" {
        (vec![batch, c, h / b, b, w / b, b], vec![0, 3, 5, 1, 2, 4])
    } else {
        let crd = n.attr("mode").and_then(AttrValue::as_str) == Some("CRD");
        if crd {
            (vec![batch, c / (b * b), b, b, h, w], vec![0, 1, 4, 2, 5, 3])
        } else {
            (vec![batch, b, b, c / (b * b), h, w], vec![0, 3, 4, 1, 5, 2])
        }
    };
    let x6 = p.reshape(x, &split)?;
    let moved = p.transpose(x6, &perm);
    let shape = p.ints(&od);
    p.define("Reshape", &[Some(moved), Some(shape)], vec![], out)?;
    Ok(true)
}
