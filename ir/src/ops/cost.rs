//! Cost model: floating-point operations per node, counted as ONNX tools
//! usually count them (a multiply-add is 2 FLOPs; element-wise ops are one
//! FLOP per output element). Needs static shapes; unknown shapes cost 0
//! and are reported as such.

use super::infer::value_type;
use crate::{AttrValue, Graph, NodeId};

fn static_dims(graph: &Graph, v: Option<crate::ValueId>) -> Option<Vec<i64>> {
    value_type(graph, v?)?.static_dims()
}

fn prod(d: &[i64]) -> u64 {
    d.iter().map(|&v| v.max(0) as u64).product()
}

/// FLOPs of one node, `None` when its shapes are not all known.
pub fn node_flops(graph: &Graph, id: NodeId) -> Option<u64> {
    let node = graph.node(id);
    let out = static_dims(graph, node.output(0));
    let op = node.op_type.as_str();
    match op {
        "Conv" | "ConvTranspose" | "ConvInteger" => {
            let w = static_dims(graph, node.input(1))?;
            let group = node
                .attr("group")
                .and_then(AttrValue::as_int)
                .unwrap_or(1)
                .max(1) as u64;
            let bias = node.input(2).is_some() as u64;
            if op == "ConvTranspose" {
                let x = static_dims(graph, node.input(0))?;
                // Each input element scatters into C_out/group * kernel outputs.
                let per = prod(w.get(1..)?);
                return Some(2 * prod(&x) * per + bias * prod(&out?));
            }
            let out = out?;
            let per_output = prod(w.get(1..)?); // C_in/group * kernel
            let _ = group;
            Some(prod(&out) * (2 * per_output + bias))
        }
        "Gemm" => {
            let a = static_dims(graph, node.input(0))?;
            let out = out?;
            let trans_a = node.attr("transA").and_then(AttrValue::as_int).unwrap_or(0) == 1;
            let k = *a.get(if trans_a { 0 } else { 1 })? as u64;
            Some(prod(&out) * (2 * k + node.input(2).is_some() as u64))
        }
        "MatMul" | "MatMulInteger" => {
            let a = static_dims(graph, node.input(0))?;
            let k = *a.last()? as u64;
            Some(2 * prod(&out?) * k)
        }
        "Constant" | "Shape" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity"
        | "Transpose" | "Concat" | "Gather" | "Slice" | "Split" | "Cast" | "Dropout"
        | "ConstantOfShape" | "Expand" | "Pad" | "Tile" => Some(0),
        "MaxPool" | "AveragePool" => {
            let k = node.attr("kernel_shape").and_then(AttrValue::as_ints)?;
            Some(prod(&out?) * prod(k))
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            Some(prod(&static_dims(graph, node.input(0))?))
        }
        "Softmax" | "LogSoftmax" => Some(5 * prod(&out?)),
        "BatchNormalization" | "InstanceNormalization" => Some(2 * prod(&out?)),
        "LayerNormalization" | "GroupNormalization" | "RMSNormalization" => Some(8 * prod(&out?)),
        _ => out.map(|o| prod(&o)),
    }
}

/// FLOPs of the whole graph and the number of nodes whose cost is unknown.
pub fn graph_flops(graph: &Graph) -> (u64, usize) {
    let mut total = 0u64;
    let mut unknown = 0;
    for (id, _) in graph.nodes() {
        match node_flops(graph, id) {
            Some(f) => total = total.saturating_add(f),
            None => unknown += 1,
        }
    }
    (total, unknown)
}
