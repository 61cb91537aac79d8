//! No-ops and chains.
//!
//! Bypassed (their output replaced by their input): Identity; Dropout in
//! inference (no training_mode, or a constant false one; `is_test` not 0 in
//! old opsets) whose mask nothing reads; Reshape, Flatten, Squeeze,
//! Unsqueeze and Expand whose output shape equals their input shape;
//! Transpose with the identity permutation; Cast to the type it already
//! has; Pad with all-zero pads; Slice with unit steps that keeps the whole
//! shape; Mul or Div by ones and Sub of zeros that do not broadcast the
//! input to a larger shape. (Add of zeros is kept: -0 + 0 is +0.)
//!
//! Merged: Transpose of a Transpose (one permutation, composed), and a
//! Reshape of a reshape-like op (Reshape, Flatten, Squeeze, Unsqueeze) when
//! the outer target shape is constant and has no 0 entries (which would
//! copy dims of the inner op's output).
//!
//! A no-op whose output is a graph output is bypassed only where its input
//! can take over the output's name (see `Graph::bypass`).

use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{AttrValue, Attribute, DataType, Dim, Graph, IrError, Node, NodeId, ValueId};

fn same_shape(graph: &Graph, a: ValueId, b: ValueId) -> bool {
    let (Some(ta), Some(tb)) = (value_type(graph, a), value_type(graph, b)) else {
        return false;
    };
    match (ta.shape(), tb.shape()) {
        (Some(x), Some(y)) => {
            x == y
                && x.iter()
                    .all(|d| !matches!(d, Dim::Unknown) && !matches!(d, Dim::Known(v) if *v < 0))
        }
        _ => false,
    }
}

fn const_ints(graph: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    constant(graph, v?)?.to_i64_vec().ok()
}

fn const_all(graph: &Graph, v: Option<ValueId>, value: f32) -> bool {
    v.and_then(|v| constant(graph, v))
        .and_then(|t| t.to_f32_vec().ok())
        .is_some_and(|vals| !vals.is_empty() && vals.iter().all(|&x| x == value))
}

fn perm_of(graph: &Graph, node: &Node) -> Option<Vec<i64>> {
    match node.attr("perm").and_then(AttrValue::as_ints) {
        Some(p) => Some(p.to_vec()),
        None => {
            let rank = value_type(graph, node.input(0)?)?.shape()?.len() as i64;
            Some((0..rank).rev().collect())
        }
    }
}

/// The value a no-op node passes through, if `node` is one.
fn passthrough(graph: &Graph, node: &Node) -> Option<ValueId> {
    if !node.is_onnx() {
        return None;
    }
    let x = node.input(0)?;
    let out = node.output(0)?;
    let single_output = node.outputs().iter().flatten().count() == 1;
    let ok = match node.op_type.as_str() {
        "Identity" => true,
        "Dropout" => {
            let uses = graph.use_counts();
            let mask_unused = node.output(1).is_none_or(|m| !uses.contains_key(&m));
            let training = match node.input(2) {
                None => false,
                Some(v) => const_ints(graph, Some(v)).is_none_or(|t| t.iter().any(|&x| x != 0)),
            };
            let is_test_zero = node.attr("is_test").and_then(AttrValue::as_int) == Some(0);
            mask_unused && !training && !is_test_zero
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Expand" => {
            single_output && same_shape(graph, x, out)
        }
        "Transpose" => {
            perm_of(graph, node).is_some_and(|p| p.iter().enumerate().all(|(i, &a)| a == i as i64))
        }
        "Cast" => {
            let to = node.attr("to").and_then(AttrValue::as_int);
            value_type(graph, x)
                .and_then(|t| t.dtype())
                .is_some_and(|d| Some(d.0 as i64) == to)
        }
        "Pad" => {
            let pads = node
                .attr("pads")
                .and_then(AttrValue::as_ints)
                .map(<[i64]>::to_vec)
                .or_else(|| const_ints(graph, node.input(1)));
            pads.is_some_and(|p| p.iter().all(|&v| v == 0))
        }
        "Slice" => {
            let steps_one = match node.input(4) {
                None => true,
                Some(v) => const_ints(graph, Some(v)).is_some_and(|s| s.iter().all(|&v| v == 1)),
            };
            steps_one && same_shape(graph, x, out)
        }
        "Mul" | "Div" => {
            let one = const_all(graph, node.input(1), 1.0)
                || (node.op_type == "Mul" && const_all(graph, Some(x), 1.0));
            let x = if node.op_type == "Mul" && const_all(graph, Some(x), 1.0) {
                node.input(1)?
            } else {
                x
            };
            return (one && same_shape(graph, x, out) && same_dtype(graph, x, out)).then_some(x);
        }
        "Sub" => {
            const_all(graph, node.input(1), 0.0)
                && same_shape(graph, x, out)
                && same_dtype(graph, x, out)
        }
        _ => false,
    };
    ok.then_some(x)
}

fn same_dtype(graph: &Graph, a: ValueId, b: ValueId) -> bool {
    let d = |v| value_type(graph, v).and_then(|t| t.dtype());
    d(a).is_some() && d(a) == d(b) && d(a) != Some(DataType::BOOL)
}

/// Bypasses every no-op. Returns how many.
pub fn bypass_no_ops(graph: &mut Graph) -> Result<u64, IrError> {
    infer::infer_graph(graph)?;
    let mut count = 0;
    for id in graph.topo_order()? {
        if !graph.contains_node(id) {
            continue;
        }
        let node = graph.node(id);
        let (Some(x), Some(out)) = (passthrough(graph, node), node.output(0)) else {
            continue;
        };
        if graph.bypass(id, out, x) {
            count += 1;
        }
    }
    Ok(count)
}

fn producer(graph: &Graph, v: ValueId, op: &[&str]) -> Option<NodeId> {
    let (p, _) = graph.value(v).producer?;
    let n = graph.node(p);
    (n.is_onnx() && op.contains(&n.op_type.as_str())).then_some(p)
}

/// Merges Transpose∘Transpose and Reshape∘reshape-like. Returns how many.
pub fn merge_chains(graph: &mut Graph) -> Result<u64, IrError> {
    infer::infer_graph(graph)?;
    let mut count = 0;
    for id in graph.topo_order()? {
        let node = graph.node(id).clone();
        if !node.is_onnx() {
            continue;
        }
        let Some(x) = node.input(0) else { continue };
        match node.op_type.as_str() {
            "Transpose" => {
                let Some(inner) = producer(graph, x, &["Transpose"]) else {
                    continue;
                };
                let inner_node = graph.node(inner);
                let (Some(p1), Some(p2), Some(src)) = (
                    perm_of(graph, inner_node),
                    perm_of(graph, &node),
                    inner_node.input(0),
                ) else {
                    continue;
                };
                if p1.len() != p2.len() {
                    continue;
                }
                let composed: Option<Vec<i64>> = p2
                    .iter()
                    .map(|&i| usize::try_from(i).ok().and_then(|i| p1.get(i).copied()))
                    .collect();
                let Some(composed) = composed else { continue };
                let n = graph.node_mut(id);
                n.attributes.retain(|a| a.name != "perm");
                n.attributes
                    .push(Attribute::new("perm", AttrValue::Ints(composed)));
                graph.set_input(id, 0, Some(src));
                count += 1;
            }
            "Reshape" => {
                let Some(inner) =
                    producer(graph, x, &["Reshape", "Flatten", "Squeeze", "Unsqueeze"])
                else {
                    continue;
                };
                let Some(target) = const_ints(graph, node.input(1)) else {
                    continue;
                };
                let allowzero = node.attr("allowzero").and_then(AttrValue::as_int) == Some(1);
                if target.contains(&0) && !allowzero {
                    continue;
                }
                let Some(src) = graph.node(inner).input(0) else {
                    continue;
                };
                graph.set_input(id, 0, Some(src));
                count += 1;
            }
            _ => {}
        }
    }
    Ok(count)
}
