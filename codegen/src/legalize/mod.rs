//! Legalization: ops outside the emitted set rewritten, in the IR, into
//! ops inside it, before emission. Each rewrite is exact (the graph
//! computes the same function) and replaces one node by a few, the last
//! of which defines the node's original output value, so names and uses
//! are kept. Both dialects emit the result, so a rewrite here covers
//! linalg and TOSA at once.
//!
//! The rewrites, one file each: [`conv_transpose`] (as a convolution of
//! the zero-interleaved input with the flipped kernel), [`lift_1d`] (1-d
//! convolutions and pools as 2-d ones over an `[N, C, 1, L]` view),
//! [`depth_space`] (DepthToSpace and SpaceToDepth as reshape, transpose,
//! reshape), [`composites`] (Trilu, Mish, LpNormalization,
//! ReduceLogSum, ReduceLogSumExp as the ops they are defined by),
//! [`constants`] (Range, ConstantOfShape, EyeLike folded into
//! initializers) and [`quantize`] (QuantizeLinear, DequantizeLinear as
//! f32 arithmetic and casts); then [`upcast`] puts the ops on f16 and
//! bf16 in f32 between casts.
//!
//! Runs on a graph with static shapes ([`crate::emit::bind_shapes`]'s
//! form) and leaves one, its types inferred again.

mod composites;
mod constants;
mod conv_transpose;
mod depth_space;
mod lift_1d;
mod quantize;
mod upcast;

use crate::Result;
use sculpt_ir::ops::infer;
pub(super) use sculpt_ir::rewrite::{cast_to as to, Patch};
use sculpt_ir::{Attribute, Graph, Node};

/// Rewrites every node that has a rewrite, inferring the types again
/// after each round.
/// `opset` is the model's default-domain opset: the new Pad and Slice
/// nodes take their operands the way that opset does.
pub fn legalize(g: &mut Graph, opset: i64) -> Result<()> {
    // ConvTranspose first: a 1-d one becomes a 1-d Conv, lifted next.
    for round in [Round::Rewrite, Round::Lift, Round::Upcast] {
        let mut changed = false;
        for id in g.topo_order()? {
            let n = g.node(id).clone();
            // MatMulNBits, the one op from another domain emitted, is
            // upcast like the ONNX ones.
            let upcast_too = n.domain == "com.microsoft" && n.op_type == "MatMulNBits";
            let visited = n.is_onnx() || (upcast_too && matches!(round, Round::Upcast));
            if !visited {
                continue;
            }
            let mut p = Patch::replacing(g, id).for_opset(opset);
            changed |= match round {
                Round::Rewrite => match n.op_type.as_str() {
                    "ConvTranspose" => conv_transpose::rewrite(&mut p, &n)?,
                    "DepthToSpace" | "SpaceToDepth" => depth_space::rewrite(&mut p, &n)?,
                    "Trilu" | "Mish" | "LpNormalization" | "ReduceLogSum" | "ReduceLogSumExp" => {
                        composites::rewrite(&mut p, &n)?
                    }
                    "Range" | "ConstantOfShape" | "EyeLike" => constants::rewrite(&mut p, &n)?,
                    "QuantizeLinear" => quantize::rewrite(&mut p, &n)?,
                    _ => false,
                },
                Round::Lift => lift_1d::rewrite(&mut p, &n)?,
                Round::Upcast => upcast::rewrite(&mut p, &n)?,
            };
        }
        if changed {
            let keep = g.inputs.clone();
            g.clear_types_except(&keep);
            infer::infer_graph(g)?;
        }
    }
    Ok(())
}

enum Round {
    Rewrite,
    Lift,
    /// Last: the nodes the rounds before made are upcast too.
    Upcast,
}

/// `n`'s attributes with `replaced` ones swapped in (and added when
/// missing), and `dropped` ones left out.
fn attrs_with(n: &Node, replaced: Vec<Attribute>, dropped: &[&str]) -> Vec<Attribute> {
    let mut out: Vec<Attribute> = n
        .attributes
        .iter()
        .filter(|a| !dropped.contains(&a.name.as_str()))
        .filter(|a| !replaced.iter().any(|r| r.name == a.name))
        .cloned()
        .collect();
    out.extend(replaced);
    out
}
