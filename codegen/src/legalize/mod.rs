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

use crate::emit::unsupported;
pub(super) use crate::emit::{int_attr, ints_attr};
use crate::Result;
use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{
    AttrValue, Attribute, DataType, Graph, Initializer, Node, NodeId, Tensor, Type, Value, ValueId,
};

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
            if !n.is_onnx() {
                continue;
            }
            let base = n.display_name().to_string();
            let mut p = Patch {
                g,
                opset,
                node: id,
                base,
            };
            changed |= match round {
                Round::Rewrite => match n.op_type.as_str() {
                    "ConvTranspose" => conv_transpose::rewrite(&mut p, &n)?,
                    "DepthToSpace" | "SpaceToDepth" => depth_space::rewrite(&mut p, &n)?,
                    "Trilu" | "Mish" | "LpNormalization" | "ReduceLogSum" | "ReduceLogSumExp" => {
                        composites::rewrite(&mut p, &n)?
                    }
                    "Range" | "ConstantOfShape" | "EyeLike" => constants::rewrite(&mut p, &n)?,
                    "QuantizeLinear" | "DequantizeLinear" => quantize::rewrite(&mut p, &n)?,
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

/// Builds the nodes that replace one node (`node`) of `g`.
pub(crate) struct Patch<'g> {
    g: &'g mut Graph,
    opset: i64,
    node: NodeId,
    /// The replaced node's name, which new values' names start with.
    base: String,
}

impl Patch<'_> {
    /// Static dims of `v` (every shape is static here).
    fn dims(&self, n: &Node, v: ValueId) -> Result<Vec<i64>> {
        value_type(self.g, v)
            .and_then(|t| t.static_dims())
            .ok_or_else(|| {
                let name = &self.g.value(v).name;
                unsupported(n, format!("the shape of '{name}' is not static"))
            })
    }

    fn dtype(&self, n: &Node, v: ValueId) -> Result<DataType> {
        match value_type(self.g, v) {
            Some(Type::Tensor { dtype, .. }) => Ok(dtype),
            _ => Err(unsupported(n, "element type unknown")),
        }
    }

    fn constant(&self, v: ValueId) -> Option<Tensor> {
        constant(self.g, v).cloned()
    }

    fn fresh_name(&self, suffix: &str) -> String {
        self.g.unique_name(&format!("{}_{suffix}", self.base))
    }

    fn initializer(&mut self, t: Tensor) -> ValueId {
        let mut v = Value::new(self.fresh_name("const"));
        v.init = Some(Initializer::Dense(t));
        self.g.add_value(v)
    }

    fn ints(&mut self, values: &[i64]) -> ValueId {
        self.initializer(Tensor::from_i64(vec![values.len() as i64], values))
    }

    /// A new node with one output.
    fn node(&mut self, op: &str, inputs: &[Option<ValueId>], attrs: Vec<Attribute>) -> ValueId {
        let mut node = Node::new(op);
        node.name = self.fresh_name(&op.to_lowercase());
        node.attributes = attrs;
        let out = self.fresh_name("out");
        let id = self.g.add_node(node, inputs.to_vec(), vec![Some(out)]);
        self.g.node(id).output(0).expect("one output")
    }

    /// The replaced node's output `out` now defined by a new `op` node;
    /// the replaced node goes.
    fn define(
        &mut self,
        op: &str,
        inputs: &[Option<ValueId>],
        attrs: Vec<Attribute>,
        out: ValueId,
    ) {
        let mut node = Node::new(op);
        node.name = self.g.node(self.node).name.clone();
        node.attributes = attrs;
        self.g.detach_node(self.node);
        self.g
            .add_node_defining(node, inputs.to_vec(), vec![Some(out)]);
    }

    /// The replaced node's output `out` now an initializer holding `t`.
    fn define_constant(&mut self, out: ValueId, t: Tensor) {
        self.g.detach_node(self.node);
        self.g.value_mut(out).init = Some(Initializer::Dense(t));
    }

    /// A scalar 0 of `dtype` (bool: false).
    fn zero(&mut self, dtype: DataType) -> ValueId {
        let bytes = dtype.bit_width().unwrap_or(8).div_ceil(8);
        self.initializer(Tensor::from_raw(dtype, vec![], vec![0u8; bytes].into()))
    }

    /// `v` as f32: itself when it is f32; a converted initializer when it
    /// is a constant and `fold` says so; else a Cast.
    fn f32_of(&mut self, n: &Node, v: ValueId, fold: impl Fn(&Tensor) -> bool) -> Result<ValueId> {
        if self.dtype(n, v)? == DataType::F32 {
            return Ok(v);
        }
        let folded = self
            .constant(v)
            .filter(|t| fold(t))
            .and_then(|t| Some((t.to_f32_vec().ok()?, t.dims)));
        Ok(match folded {
            Some((values, dims)) => self.initializer(Tensor::from_f32(dims, &values)),
            None => self.node("Cast", &[Some(v)], vec![to(DataType::F32)]),
        })
    }

    /// `x` viewed as `dims`: a new initializer when `x` is a constant.
    fn reshape(&mut self, x: ValueId, dims: &[i64]) -> Result<ValueId> {
        if let Some(t) = self.constant(x) {
            let raw = t.raw_bytes()?.into_owned();
            return Ok(self.initializer(Tensor::from_raw(t.dtype, dims.to_vec(), raw.into())));
        }
        let shape = self.ints(dims);
        Ok(self.node("Reshape", &[Some(x), Some(shape)], vec![]))
    }

    fn transpose(&mut self, x: ValueId, perm: &[i64]) -> ValueId {
        let attr = Attribute::new("perm", AttrValue::Ints(perm.to_vec()));
        self.node("Transpose", &[Some(x)], vec![attr])
    }

    /// `x` padded with zeros, `low` before and `high` after each axis.
    fn pad(&mut self, x: ValueId, low: &[i64], high: &[i64]) -> ValueId {
        let pads: Vec<i64> = low.iter().chain(high).copied().collect();
        if self.opset >= 11 {
            let pads = self.ints(&pads);
            self.node("Pad", &[Some(x), Some(pads)], vec![])
        } else {
            let attr = Attribute::new("pads", AttrValue::Ints(pads));
            self.node("Pad", &[Some(x)], vec![attr])
        }
    }

    /// `x[starts..ends]` on every axis, with `steps` (negative: backwards).
    fn slice(
        &mut self,
        n: &Node,
        x: ValueId,
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> Result<ValueId> {
        let axes: Vec<i64> = (0..starts.len() as i64).collect();
        if self.opset >= 10 {
            let ids = [starts, ends, &axes, steps].map(|v| Some(self.ints(v)));
            return Ok(self.node("Slice", &[Some(x), ids[0], ids[1], ids[2], ids[3]], vec![]));
        }
        if steps.iter().any(|&s| s != 1) {
            return Err(unsupported(
                n,
                "needs a Slice with steps, which opset < 10 lacks",
            ));
        }
        let attrs = vec![
            Attribute::new("starts", AttrValue::Ints(starts.to_vec())),
            Attribute::new("ends", AttrValue::Ints(ends.to_vec())),
            Attribute::new("axes", AttrValue::Ints(axes)),
        ];
        Ok(self.node("Slice", &[Some(x)], attrs))
    }
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

/// Cast's `to` attribute.
fn to(dtype: DataType) -> Attribute {
    Attribute::new("to", AttrValue::Int(dtype.0 as i64))
}
