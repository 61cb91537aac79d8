//! Common-subexpression elimination: a node with the same op, domain,
//! attributes and inputs as an earlier node is replaced by it. Nodes with
//! subgraphs and random ops are never merged; neither is a node whose
//! outputs are graph outputs or captured by subgraphs.
//!
//! Shape values are also merged by what they hold: `Shape(x)` and
//! `Shape(y)` when x and y have the same dims (numbers and symbols), and
//! `Gather(Shape(x), i)` and `Gather(Shape(y), j)` when they pick the same
//! dims. Equal symbols name equal sizes (ONNX `dim_param` semantics, kept
//! by shape inference), so these are equal at run time.

use prost::Message;
use sculpt_ir::onnx::export::attribute_to_proto;
use sculpt_ir::{Graph, NodeId};
use std::collections::HashMap;

type Key = (
    String,
    String,
    String,
    Vec<Option<sculpt_ir::ValueId>>,
    Vec<u8>,
    usize,
);

/// The dims a shape-reading node yields, as text, when all are numbers or
/// symbols: `Shape(x)` → dims of x; `Gather(Shape(x), const)` → those dims.
fn shape_value_key(graph: &Graph, id: NodeId) -> Option<Key> {
    use sculpt_ir::ops::infer::{constant, value_type};
    let n = graph.node(id);
    if !n.is_onnx() || !n.attributes.iter().all(|a| a.name == "axis") {
        return None;
    }
    let dims_of = |shape_node: &sculpt_ir::Node| -> Option<Vec<sculpt_ir::Dim>> {
        if shape_node.op_type != "Shape"
            || !shape_node.is_onnx()
            || !shape_node.attributes.is_empty()
        {
            return None;
        }
        let dims = value_type(graph, shape_node.input(0)?)?.shape()?.to_vec();
        dims.iter()
            .all(|d| {
                matches!(d, sculpt_ir::Dim::Symbol(_))
                    || matches!(d, sculpt_ir::Dim::Known(v) if *v >= 0)
            })
            .then_some(dims)
    };
    let (kind, picked, out_rank) = match n.op_type.as_str() {
        "Shape" => ("shape", dims_of(n)?, 1),
        "Gather" => {
            if n.attr("axis")
                .and_then(sculpt_ir::AttrValue::as_int)
                .unwrap_or(0)
                != 0
            {
                return None;
            }
            let (src, _) = graph.value(n.input(0)?).producer?;
            let dims = dims_of(graph.node(src))?;
            let idx_t = constant(graph, n.input(1)?)?;
            let idx = idx_t.to_i64_vec().ok()?;
            let r = dims.len() as i64;
            let picked = idx
                .iter()
                .map(|&i| {
                    dims.get(usize::try_from(if i < 0 { i + r } else { i }).ok()?)
                        .cloned()
                })
                .collect::<Option<Vec<_>>>()?;
            ("gather", picked, idx_t.dims.len())
        }
        _ => return None,
    };
    let text: Vec<u8> = picked
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes();
    Some((
        format!("shape-value:{kind}"),
        String::new(),
        String::new(),
        Vec::new(),
        text,
        out_rank,
    ))
}

fn key(graph: &Graph, id: NodeId) -> Option<Key> {
    if let Some(k) = shape_value_key(graph, id) {
        return Some(k);
    }
    let n = graph.node(id);
    if n.subgraphs().next().is_some()
        || n.op_type.starts_with("Random")
        || matches!(n.op_type.as_str(), "Multinomial" | "Bernoulli")
    {
        return None;
    }
    let mut attrs = Vec::new();
    for a in &n.attributes {
        attrs.extend(attribute_to_proto(a).encode_length_delimited_to_vec());
    }
    Some((
        n.op_type.clone(),
        n.domain.clone(),
        n.overload.clone(),
        n.inputs().to_vec(),
        attrs,
        n.outputs().len(),
    ))
}

/// Merges duplicate nodes. Returns how many were removed.
pub fn merge_duplicates(graph: &mut Graph) -> u64 {
    let Ok(order) = graph.topo_order() else {
        return 0;
    };
    let mut seen: HashMap<Key, NodeId> = HashMap::new();
    let mut count = 0;
    for id in order {
        let Some(k) = key(graph, id) else { continue };
        match seen.get(&k) {
            None => {
                seen.insert(k, id);
            }
            Some(&first) => {
                let dup_outs = graph.node(id).outputs().to_vec();
                let keep_outs = graph.node(first).outputs().to_vec();
                let blocked = dup_outs
                    .iter()
                    .flatten()
                    .any(|v| graph.outputs.contains(v) || graph.is_captured(*v))
                    || dup_outs
                        .iter()
                        .zip(&keep_outs)
                        .any(|(a, b)| a.is_some() && b.is_none());
                if blocked {
                    continue;
                }
                for (d, k) in dup_outs.iter().zip(&keep_outs) {
                    if let (Some(d), Some(k)) = (d, k) {
                        graph.replace_all_uses(*d, *k);
                    }
                }
                graph.remove_node(id);
                count += 1;
            }
        }
    }
    count
}
