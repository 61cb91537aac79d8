//! f16 and bf16 computed in f32: every op that computes on a half input
//! or output (all but data movement, Where and Cast, which take halves as
//! they are) reads its half inputs through a Cast to f32 and writes f32,
//! cast back to the half type. Storage stays half (weights too: half
//! constants of rank 2 and more are cast in the module; scalars, vectors
//! and small tensors, which the emitter may read as constants, are
//! converted here); each op's arithmetic
//! is f32's, rounded once to the half type at its output, as
//! onnxruntime's CPU kernels for halves mostly do.

use super::{to, Patch};
use crate::ops::{shape_slots, STORAGE_OPS};
use crate::Result;
use sculpt_ir::ops::infer::value_type;
use sculpt_ir::{DataType, Node, Tensor, Type, ValueId};

/// Constants up to this many elements are converted, not cast.
const CONVERTED: u64 = 64;

fn half_type(p: &Patch, v: ValueId) -> Option<DataType> {
    match value_type(p.graph, v) {
        Some(Type::Tensor { dtype, .. }) if matches!(dtype, DataType::F16 | DataType::BF16) => {
            Some(dtype)
        }
        _ => None,
    }
}

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    if STORAGE_OPS.contains(&n.op_type.as_str()) {
        return Ok(false);
    }
    let shapes = shape_slots(&n.op_type);
    let halves_in: Vec<bool> = n
        .inputs()
        .iter()
        .enumerate()
        .map(|(slot, v)| !shapes.contains(&slot) && v.is_some_and(|v| half_type(p, v).is_some()))
        .collect();
    let halves_out: Vec<Option<DataType>> = n
        .outputs()
        .iter()
        .map(|v| v.and_then(|v| half_type(p, v)))
        .collect();
    if !halves_in.contains(&true) && halves_out.iter().all(Option::is_none) {
        return Ok(false);
    }
    let mut inputs = n.inputs().to_vec();
    for (slot, input) in inputs.iter_mut().enumerate() {
        let Some(v) = *input else { continue };
        if !halves_in[slot] {
            continue;
        }
        // Scalars, vectors (biases, norm parameters, which the emitter
        // reads as constants) and small tensors are converted; larger
        // weights keep their half storage and are cast in the module.
        let small =
            |t: &Tensor| t.dims.len() <= 1 || t.element_count().is_some_and(|c| c <= CONVERTED);
        *input = Some(p.f32_of(v, small)?);
    }
    // The op again, its used outputs fresh f32 (or as they were) values.
    let used = |v: ValueId| !p.graph.consumers(v).is_empty() || p.graph.outputs.contains(&v);
    let outputs: Vec<Option<ValueId>> = n.outputs().to_vec();
    let names: Vec<Option<String>> = outputs
        .iter()
        .map(|v| {
            v.filter(|&v| used(v))
                .map(|v| p.fresh_name(&p.graph.value(v).name.clone()))
        })
        .collect();
    let mut op = n.clone();
    op.name = n.name.clone();
    let id = p.graph.add_node(op, inputs, names);
    let computed: Vec<Option<ValueId>> = p.graph.node(id).outputs().to_vec();
    p.detach_replaced();
    for ((old, new), half) in outputs.iter().zip(computed).zip(halves_out) {
        match (old, new) {
            (Some(old), Some(new)) => {
                let (op, attrs) = match half {
                    Some(dtype) => ("Cast", vec![to(dtype)]),
                    None => ("Identity", vec![]),
                };
                let mut node = Node::new(op);
                node.name = p.fresh_name(&op.to_lowercase());
                node.attributes = attrs;
                p.graph
                    .add_node_defining(node, vec![Some(new)], vec![Some(*old)]);
            }
            (Some(old), None) => p.graph.remove_value(*old),
            _ => {}
        }
    }
    Ok(true)
}
