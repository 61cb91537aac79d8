//! `ZeroValues`: the values of the main graph that are identically zero
//! for every (finite) input, found by forward propagation from all-zero
//! initializers: a Conv, MatMul or Gemm with zero weights and a zero or
//! absent bias gives zero; so does a product with a zero factor, a sum of
//! zeros, and any op that maps zero to zero (Relu, Gelu, Tanh, Erf,
//! pooling, reshapes, Concat of zeros, …) applied to zero.
//!
//! This is what a model whose zero-invariant groups were zeroed (by
//! training or by `prune{mode=mask}`) looks like; `erase{zero=true}` uses it
//! to drop branches that contribute nothing. The finite-input assumption
//! is the usual one (0 · x = 0 needs x finite).

use super::Analysis;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, Graph, Model, ValueId};
use std::collections::HashSet;

#[derive(Clone, Debug, Default)]
pub struct ZeroValues {
    pub zero: HashSet<ValueId>,
}

/// Ops with f(0) = 0 in their first input (other inputs: attributes-like).
const ZERO_PRESERVING: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Tanh",
    "Neg",
    "Abs",
    "Sqrt",
    "Sin",
    "Erf",
    "Gelu",
    "FastGelu",
    "HardSwish",
    "Softsign",
    "Elu",
    "Selu",
    "Celu",
    "Identity",
    "Dropout",
    "Cast",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Expand",
    "Tile",
    "Slice",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "Resize",
    "Upsample",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceL1",
    "ReduceL2",
    "Split",
    "DepthToSpace",
    "SpaceToDepth",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Mish",
    "Swish",
];

fn all_zero(graph: &Graph, v: Option<ValueId>) -> bool {
    v.and_then(|v| constant(graph, v))
        .and_then(|t| t.to_f32_vec().ok())
        .is_some_and(|vals| vals.iter().all(|&x| x == 0.0))
}

impl ZeroValues {
    pub fn of_graph(graph: &Graph) -> ZeroValues {
        let mut zero: HashSet<ValueId> = HashSet::new();
        let Ok(order) = graph.topo_order() else {
            return ZeroValues { zero };
        };
        for (id, v) in graph.initializers() {
            if !graph.inputs.contains(&id) && v.tensor().is_some() && all_zero(graph, Some(id)) {
                zero.insert(id);
            }
        }
        for id in order {
            let n = graph.node(id);
            if !n.is_onnx() {
                continue;
            }
            let z = |i: usize| n.input(i).is_some_and(|v| zero.contains(&v));
            let absent_or_zero = |i: usize| n.input(i).is_none() || z(i);
            let is_zero = match n.op_type.as_str() {
                "Conv" | "ConvTranspose" => (z(0) || z(1)) && absent_or_zero(2),
                "MatMul" | "Mul" => z(0) || z(1),
                "Gemm" => {
                    let beta_zero = n.attr("beta").and_then(AttrValue::as_float) == Some(0.0);
                    (z(0) || z(1)) && (absent_or_zero(2) || beta_zero)
                }
                "Div" => z(0),
                "Add" | "Sub" | "Sum" | "Max" | "Min" | "Mean" | "Concat" => {
                    (0..n.inputs().len()).all(z)
                }
                "Clip" => {
                    let lo = n
                        .input(1)
                        .and_then(|v| constant(graph, v))
                        .and_then(|t| t.to_f32_vec().ok());
                    let hi = n
                        .input(2)
                        .and_then(|v| constant(graph, v))
                        .and_then(|t| t.to_f32_vec().ok());
                    let min = n
                        .attr("min")
                        .and_then(AttrValue::as_float)
                        .or(lo.and_then(|v| v.first().copied()));
                    let max = n
                        .attr("max")
                        .and_then(AttrValue::as_float)
                        .or(hi.and_then(|v| v.first().copied()));
                    z(0) && min.is_none_or(|m| m <= 0.0) && max.is_none_or(|m| m >= 0.0)
                }
                "Pad" => {
                    let mode = n
                        .attr("mode")
                        .and_then(AttrValue::as_str)
                        .unwrap_or("constant");
                    z(0) && (mode != "constant"
                        || absent_or_zero(2)
                        || n.attr("value")
                            .and_then(AttrValue::as_float)
                            .is_some_and(|v| v == 0.0))
                }
                op if ZERO_PRESERVING.contains(&op) => z(0),
                _ => false,
            };
            if is_zero {
                zero.extend(n.outputs().iter().flatten().copied());
            }
        }
        ZeroValues { zero }
    }
}

impl Analysis for ZeroValues {
    const NAME: &'static str = "zero_values";

    fn compute(model: &Model) -> ZeroValues {
        ZeroValues::of_graph(&model.graph)
    }
}
