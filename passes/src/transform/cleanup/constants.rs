//! Constants: `Constant` nodes become initializers, and nodes whose inputs
//! are all constant are evaluated (`sculpt_ir::ops::eval`) and replaced by
//! initializers holding their results. Shape computations whose values
//! inference could work out from static dims (Shape → Gather → Concat …)
//! are replaced the same way.
//!
//! Never folded: nodes outside the default domain, nodes with subgraphs,
//! random ops, nodes producing graph outputs, and results larger than the
//! budget allows (per tensor, and in total growth of the weights), so that
//! folding never blows up the model.

use sculpt_ir::ops::eval::{self, Const};
use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{AttrValue, DataType, Graph, Initializer, IrError, NodeId, Tensor};

pub struct Budget {
    pub per_tensor: u64,
    pub growth_left: u64,
}

fn constant_attr_tensor(node: &sculpt_ir::Node) -> Option<Tensor> {
    let attr = node.attributes.first()?;
    if node.attributes.len() != 1 {
        return None;
    }
    Some(match (attr.name.as_str(), &attr.value) {
        ("value", AttrValue::Tensor(t)) => {
            let mut t = t.clone();
            t.extra = None;
            t
        }
        ("value_float", AttrValue::Float(f)) => {
            Tensor::from_raw(DataType::F32, vec![], f.to_le_bytes().to_vec().into())
        }
        ("value_floats", AttrValue::Floats(v)) => Tensor::from_f32(vec![v.len() as i64], v),
        ("value_int", AttrValue::Int(i)) => Tensor::from_i64(vec![], &[*i]),
        ("value_ints", AttrValue::Ints(v)) => Tensor::from_i64(vec![v.len() as i64], v),
        _ => return None,
    })
}

/// `Constant` nodes → initializers. Returns how many.
pub fn constant_nodes_to_initializers(graph: &mut Graph) -> u64 {
    let mut count = 0;
    for id in graph.node_ids() {
        let node = graph.node(id);
        if node.op_type != "Constant" || !node.is_onnx() || node.outputs().len() != 1 {
            continue;
        }
        let Some(out) = node.output(0) else { continue };
        if graph.outputs.contains(&out) {
            continue;
        }
        let Some(tensor) = constant_attr_tensor(node) else {
            continue;
        };
        graph.detach_node(id);
        let v = graph.value_mut(out);
        v.init = Some(Initializer::Dense(tensor));
        v.ty = None;
        count += 1;
    }
    count
}

fn is_random(op: &str) -> bool {
    op.starts_with("Random") || matches!(op, "Multinomial" | "Bernoulli" | "Dropout")
}

/// Ops whose output is their input with other dims: folded without
/// evaluation by re-labelling the data.
fn is_reshape_like(op: &str) -> bool {
    matches!(
        op,
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity"
    )
}

/// `ConstantOfShape`, filled by repeating the fill value's bytes.
fn constant_of_shape(node: &sculpt_ir::Node, shape: &Tensor, limit: u64) -> Option<Tensor> {
    let dims = shape.to_i64_vec().ok()?;
    let count = sculpt_ir::element_count(&dims)?;
    let fill = match node.attr("value") {
        Some(v) => {
            let t = v.as_tensor()?;
            (t.element_count()? == 1).then_some(())?;
            let raw = t.raw_bytes().ok()?.into_owned();
            (t.dtype, raw)
        }
        None => (DataType::F32, 0f32.to_le_bytes().to_vec()),
    };
    let (dtype, one) = fill;
    if dtype.bit_width()? % 8 != 0 || count.checked_mul(one.len() as u64)? > limit {
        return None;
    }
    Some(Tensor::from_raw(
        dtype,
        dims,
        one.repeat(count as usize).into(),
    ))
}

/// Evaluates every foldable node. Returns how many were folded.
pub fn fold(graph: &mut Graph, budget: &mut Budget) -> Result<u64, IrError> {
    let (_, known) = infer::infer_graph_with_values(graph)?;
    let mut count = 0;
    for id in graph.topo_order()? {
        if let Some(results) = fold_node(graph, id, &known, budget) {
            let outputs: Vec<_> = graph.node(id).outputs().to_vec();
            graph.detach_node(id);
            for (v, t) in outputs.into_iter().zip(results) {
                if let Some(v) = v {
                    // The initializer carries its own type.
                    let value = graph.value_mut(v);
                    value.init = Some(Initializer::Dense(t));
                    value.ty = None;
                }
            }
            count += 1;
        }
    }
    Ok(count)
}

fn fold_node(
    graph: &Graph,
    id: NodeId,
    known: &infer::KnownInts,
    budget: &mut Budget,
) -> Option<Vec<Tensor>> {
    let node = graph.node(id);
    if !node.is_onnx()
        || node.subgraphs().next().is_some()
        || is_random(&node.op_type)
        || node.op_type == "Constant"
    {
        return None;
    }
    let outputs: Vec<_> = node.outputs().iter().flatten().copied().collect();
    if outputs.is_empty()
        || outputs.len() != node.outputs().len()
        || outputs.iter().any(|v| graph.outputs.contains(v))
    {
        return None;
    }
    // Shape arithmetic worked out by inference.
    if let [out] = outputs.as_slice() {
        if let Some(values) = known.get(out) {
            let ty = value_type(graph, *out)?;
            let dims = ty.static_dims()?;
            let c = Const {
                dtype: ty.dtype()?,
                dims: dims
                    .iter()
                    .map(|&d| usize::try_from(d).ok())
                    .collect::<Option<_>>()?,
                vals: eval::Vals::Int(values.clone()),
            };
            if c.len() == values.len() {
                return c.to_tensor().map(|t| vec![t]);
            }
        }
    }
    // Every present input must be constant (omitted optional inputs are `None`).
    let inputs: Vec<Option<&Tensor>> = node
        .inputs()
        .iter()
        .map(|v| match v {
            None => Some(None),
            Some(v) => constant(graph, *v).map(Some),
        })
        .collect::<Option<_>>()?;
    if inputs.iter().all(Option::is_none) {
        return None;
    }
    let input_bytes: u64 = inputs.iter().flatten().map(|t| t.byte_size()).sum();
    let results = if node.op_type == "ConstantOfShape" {
        vec![constant_of_shape(
            node,
            inputs.first()?.as_ref()?,
            budget.per_tensor,
        )?]
    } else if is_reshape_like(&node.op_type) {
        let data = inputs.first()?.as_ref()?;
        let dims = value_type(graph, outputs[0])?.static_dims()?;
        if sculpt_ir::element_count(&dims)? != data.element_count()? {
            return None;
        }
        let mut t = (*data).clone();
        t.dims = dims;
        t.extra = None;
        t.doc_string.clear();
        vec![t]
    } else {
        let consts: Vec<Option<Const>> = inputs
            .iter()
            .map(|t| match t {
                Some(t) => Const::from_tensor(t).map(Some),
                None => Some(None),
            })
            .collect::<Option<_>>()?;
        eval::eval(node, &consts, budget.per_tensor as usize)?
            .iter()
            .map(Const::to_tensor)
            .collect::<Option<Vec<_>>>()?
    };
    let out_bytes: u64 = results.iter().map(Tensor::byte_size).sum();
    if results.iter().any(|t| t.byte_size() > budget.per_tensor) {
        return None;
    }
    let growth = out_bytes.saturating_sub(input_bytes);
    if growth > budget.growth_left {
        return None;
    }
    budget.growth_left -= growth;
    Some(results)
}
