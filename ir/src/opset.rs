//! Raising a model's default-domain opset, node by node, keeping every
//! node's meaning.
//!
//! Passes that write ops of a newer opset (per-axis QuantizeLinear needs
//! 13, blocked DequantizeLinear 21) raise the model first. Each change
//! between the versions crossed is applied to the nodes it concerns, in
//! the main graph and in every If/Loop/Scan body:
//!
//! - 10: Slice's `starts`/`ends`/`axes` and TopK's `k` become inputs;
//! - 11: Clip's `min`/`max` and Pad's `pads`/`value` become inputs,
//!   Scatter becomes ScatterElements;
//! - 12: Dropout's `ratio` becomes an input;
//! - 13: Squeeze/Unsqueeze/ReduceSum `axes` and Split's `split` become
//!   inputs; Softmax, LogSoftmax and Hardmax, which flattened the axes
//!   from `axis` on, do so explicitly (Flatten, the op on the last axis,
//!   Reshape back) unless `axis` is already the last;
//! - 18: the other reductions' `axes` become an input;
//! - 20: DFT's `axis` becomes an input.
//!
//! What cannot be carried over is refused with the node and the reason
//! (Upsample and Resize across 11, whose coordinate rules changed;
//! BatchNormalization with `spatial=0`; models older than opset 7).

use crate::ops::infer::value_type;
use crate::rewrite::Patch;
use crate::{AttrValue, Attribute, DataType, Graph, IrError, Model, NodeId, Result, Tensor};

/// The oldest opset [`raise_opset`] starts from.
pub const OLDEST_RAISED: i64 = 7;

/// Raises `model`'s default-domain opset to `target` (nothing when it is
/// there already).
pub fn raise_opset(model: &mut Model, target: i64) -> Result<()> {
    let from = model.onnx_opset();
    if from >= target {
        return Ok(());
    }
    if from < OLDEST_RAISED {
        return Err(IrError::Invalid(format!(
            "cannot raise opset {from} to {target}: models before opset {OLDEST_RAISED} are not converted"
        )));
    }
    raise_graph(&mut model.graph, from, target)?;
    match model
        .opset_imports
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        Some(o) => o.version = target,
        None => model.opset_imports.push(crate::OpsetImport {
            domain: String::new(),
            version: target,
        }),
    }
    model.ir_version = model.ir_version.max(ir_version_for(target));
    Ok(())
}

/// The IR version that opset `opset` was released with (initializers
/// outside the graph inputs need 4 or more).
fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn raise_graph(graph: &mut Graph, from: i64, target: i64) -> Result<()> {
    // Softmax's rewrite reads its input's rank.
    crate::ops::infer::infer_graph(graph)?;
    for id in graph.node_ids() {
        for attr in graph.node_mut(id).attributes.iter_mut() {
            for body in attr.value.graphs_mut() {
                raise_graph(body, from, target)?;
            }
        }
        if graph.node(id).is_onnx() {
            raise_node(graph, id, from, target)?;
        }
    }
    Ok(())
}

const REDUCTIONS_18: [&str; 9] = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

fn raise_node(graph: &mut Graph, id: NodeId, from: i64, target: i64) -> Result<()> {
    let crosses = |v: i64| from < v && target >= v;
    let op = graph.node(id).op_type.clone();
    let refuse = |graph: &Graph, why: &str| {
        let n = graph.node(id);
        IrError::Invalid(format!(
            "cannot raise opset {from} to {target}: node '{}' ({}) {why}",
            n.display_name(),
            n.op_type
        ))
    };
    match op.as_str() {
        "Upsample" if crosses(10) => {
            return Err(refuse(
                graph,
                "is gone from opset 10 on (Resize's coordinate rules differ)",
            ))
        }
        "Resize" if crosses(11) => {
            return Err(refuse(graph, "changed its coordinate rules at opset 11"))
        }
        "BatchNormalization" if crosses(9) => {
            if graph.node(id).int_attr("spatial", 1) != 1 {
                return Err(refuse(graph, "has spatial=0, which opset 9 dropped"));
            }
            take_attr(graph, id, "spatial");
        }
        "Slice" if crosses(10) => {
            let starts = take_ints(graph, id, "starts");
            let ends = take_ints(graph, id, "ends");
            let axes = take_ints(graph, id, "axes");
            let (Some(starts), Some(ends)) = (starts, ends) else {
                return Err(refuse(graph, "lacks starts or ends"));
            };
            let mut patch = Patch::new(graph, &node_base(graph, id));
            let inputs = vec![
                Some(patch.ints(&starts)),
                Some(patch.ints(&ends)),
                axes.map(|a| patch.ints(&a)),
            ];
            append_inputs(graph, id, inputs);
        }
        "TopK" if crosses(10) => {
            let Some(k) = take_attr(graph, id, "k").and_then(|a| a.value.as_int()) else {
                return Err(refuse(graph, "lacks k"));
            };
            let mut patch = Patch::new(graph, &node_base(graph, id));
            let k = patch.ints(&[k]);
            append_inputs(graph, id, vec![Some(k)]);
        }
        "Clip" if crosses(11) => {
            let min = take_attr(graph, id, "min").and_then(|a| a.value.as_float());
            let max = take_attr(graph, id, "max").and_then(|a| a.value.as_float());
            let dtype = input_dtype(graph, id)?;
            let mut patch = Patch::new(graph, &node_base(graph, id));
            let mut scalar = |v: Option<f32>| -> Result<Option<crate::ValueId>> {
                v.map(|v| Ok(patch.initializer(Tensor::from_floats(dtype, vec![], &[v as f64])?)))
                    .transpose()
            };
            let inputs = vec![scalar(min)?, scalar(max)?];
            append_inputs(graph, id, inputs);
        }
        "Pad" if crosses(11) => {
            let Some(pads) = take_ints(graph, id, "pads") else {
                return Err(refuse(graph, "lacks pads"));
            };
            let value = take_attr(graph, id, "value").and_then(|a| a.value.as_float());
            let dtype = input_dtype(graph, id)?;
            let mut patch = Patch::new(graph, &node_base(graph, id));
            let pads = patch.ints(&pads);
            let value = match value {
                Some(v) if v != 0.0 => {
                    Some(patch.initializer(Tensor::from_floats(dtype, vec![], &[v as f64])?))
                }
                _ => None,
            };
            append_inputs(graph, id, vec![Some(pads), value]);
        }
        "Scatter" if crosses(11) => graph.node_mut(id).op_type = "ScatterElements".into(),
        "Dropout" if crosses(12) => {
            // Inference ignores the ratio; carried over all the same.
            if let Some(ratio) = take_attr(graph, id, "ratio").and_then(|a| a.value.as_float()) {
                let mut patch = Patch::new(graph, &node_base(graph, id));
                let ratio = patch.initializer(Tensor::from_f32(vec![], &[ratio]));
                append_inputs(graph, id, vec![Some(ratio)]);
            }
        }
        "Squeeze" | "Unsqueeze" | "ReduceSum" if crosses(13) => axes_to_input(graph, id, "axes"),
        "Split" if crosses(13) => axes_to_input(graph, id, "split"),
        "Softmax" | "LogSoftmax" | "Hardmax" if crosses(13) => {
            flatten_softmax(graph, id).map_err(|why| refuse(graph, &why))?
        }
        r if REDUCTIONS_18.contains(&r) && crosses(18) => axes_to_input(graph, id, "axes"),
        "DFT" if crosses(20) => {
            // The axis became the third input, its default -2 (was 1).
            let axis = take_attr(graph, id, "axis")
                .and_then(|a| a.value.as_int())
                .unwrap_or(1);
            let dft_length = graph.node(id).input(1);
            let mut patch = Patch::new(graph, &node_base(graph, id));
            let axis = patch.initializer(Tensor::from_i64(vec![], &[axis]));
            append_inputs(graph, id, vec![dft_length, Some(axis)]);
        }
        _ => {}
    }
    Ok(())
}

fn node_base(graph: &Graph, id: NodeId) -> String {
    graph.node(id).display_name().to_string()
}

fn take_attr(graph: &mut Graph, id: NodeId, name: &str) -> Option<Attribute> {
    let attrs = &mut graph.node_mut(id).attributes;
    let at = attrs.iter().position(|a| a.name == name)?;
    Some(attrs.remove(at))
}

fn take_ints(graph: &mut Graph, id: NodeId, name: &str) -> Option<Vec<i64>> {
    take_attr(graph, id, name).and_then(|a| a.value.as_ints().map(<[i64]>::to_vec))
}

fn input_dtype(graph: &Graph, id: NodeId) -> Result<DataType> {
    graph
        .node(id)
        .input(0)
        .and_then(|x| value_type(graph, x))
        .and_then(|t| t.dtype())
        .ok_or_else(|| {
            IrError::Invalid(format!(
                "cannot raise the opset of node '{}': its input's type is unknown",
                graph.node(id).display_name()
            ))
        })
}

/// Puts `extra` after the node's first input, dropping trailing omitted
/// ones.
fn append_inputs(graph: &mut Graph, id: NodeId, extra: Vec<Option<crate::ValueId>>) {
    let mut inputs: Vec<_> = graph.node(id).inputs().iter().take(1).copied().collect();
    inputs.extend(extra);
    while inputs.len() > 1 && inputs.last() == Some(&None) {
        inputs.pop();
    }
    graph.set_inputs(id, inputs);
}

/// The ints attribute `name` becomes the node's second input.
fn axes_to_input(graph: &mut Graph, id: NodeId, name: &str) {
    if let Some(values) = take_ints(graph, id, name) {
        let mut patch = Patch::new(graph, &node_base(graph, id));
        let values = patch.ints(&values);
        append_inputs(graph, id, vec![Some(values)]);
    }
}

/// Before opset 13, Softmax (and LogSoftmax, Hardmax) flattened the input
/// to 2-D at `axis` and normalized each row; from 13 on it normalizes
/// along `axis` alone. The same where `axis` is the last axis; otherwise
/// the old meaning is written out.
fn flatten_softmax(graph: &mut Graph, id: NodeId) -> std::result::Result<(), String> {
    let node = graph.node(id);
    let x = node.input(0).ok_or("has no input")?;
    let rank = value_type(graph, x).and_then(|t| t.shape().map(|s| s.len() as i64));
    let axis = node.int_attr("axis", 1);
    let axis = match rank {
        Some(rank) if axis == -1 || axis == rank - 1 => return Ok(()),
        Some(rank) if axis < 0 => axis + rank,
        None if axis < 0 => return Err("has a negative axis and an input of unknown rank".into()),
        _ => axis,
    };
    let op = node.op_type.clone();
    let mut patch = Patch::new(graph, &node_base(graph, id));
    let flat = patch.node(
        "Flatten",
        &[Some(x)],
        vec![Attribute::new("axis", AttrValue::Int(axis))],
    );
    let normalized = patch.node(
        &op,
        &[Some(flat)],
        vec![Attribute::new("axis", AttrValue::Int(-1))],
    );
    let shape = patch.node("Shape", &[Some(x)], Vec::new());
    let node = graph.node_mut(id);
    node.op_type = "Reshape".into();
    node.attributes.clear();
    graph.set_inputs(id, vec![Some(normalized), Some(shape)]);
    Ok(())
}
