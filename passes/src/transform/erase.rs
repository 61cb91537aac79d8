//! `erase`: removes whole operators.
//!
//! `zero=true` (lossless, given finite inputs): where an Add, Sub or Sum
//! adds a branch that is identically zero ([`ZeroValues`]: its
//! zero-invariant groups are all zero), the branch is dropped and the other
//! operand passes straight through; everything that only fed the branch goes
//! with it. The result equals the zeroed (masked) model exactly.
//!
//! `budget=B metric=contribution` (lossy, needs calibration data): see
//! [`crate::transform::erase_blocks`].

use crate::analysis::zero_values::ZeroValues;
use crate::manager::PassContext;
use crate::pipeline::Options;
use crate::transform::cleanup::dead_code::remove_dead_code;
use crate::{Pass, PassOutcome};
use sculpt_ir::ops::infer::{self, value_type};
use sculpt_ir::{Graph, IrError, Model, Node, NodeId, ValueId};

pub struct Erase {
    pub zero: bool,
}

impl Erase {
    pub fn from_options(options: &Options) -> crate::Result<Erase> {
        Ok(Erase {
            zero: options.bool("zero", true)?,
        })
    }
}

/// A copy of `graph` with every symbolic input dim bound to its own size
/// and all shapes re-inferred: value ids are the same, shapes are static.
fn with_static_shapes(graph: &Graph) -> Result<Graph, IrError> {
    let mut g = graph.clone();
    let keep: Vec<ValueId> = g.inputs.clone();
    let ids: Vec<ValueId> = g
        .values()
        .map(|(id, _)| id)
        .filter(|id| !keep.contains(id))
        .collect();
    for id in ids {
        g.value_mut(id).ty = None;
    }
    infer::bind_input_dims_distinct(&mut g)?;
    Ok(g)
}

/// The operand of an Add/Sub/Sum that survives when all others are zero,
/// provided the zeros do not broadcast it to a larger shape (checked on
/// `shapes`, the graph with static shapes).
fn surviving_operand(
    graph: &Graph,
    shapes: &Graph,
    id: NodeId,
    zero: &ZeroValues,
) -> Option<ValueId> {
    let n = graph.node(id);
    if !n.is_onnx() || !matches!(n.op_type.as_str(), "Add" | "Sub" | "Sum") {
        return None;
    }
    let out = n.output(0)?;
    let inputs: Vec<ValueId> = n.inputs().iter().flatten().copied().collect();
    let live: Vec<ValueId> = inputs
        .iter()
        .copied()
        .filter(|v| !zero.zero.contains(v))
        .collect();
    let [keep] = live.as_slice() else { return None };
    if n.op_type == "Sub" && inputs.first() != Some(keep) {
        return None; // 0 - x is -x, not x
    }
    let (kt, ot) = (value_type(shapes, *keep)?, value_type(shapes, out)?);
    let same = kt.static_dims()? == ot.static_dims()? && kt.dtype() == ot.dtype();
    same.then_some(*keep)
}

/// Drops every zero branch. Returns (branches erased, nodes removed).
pub fn erase_zero_branches(graph: &mut Graph) -> Result<(u64, u64), IrError> {
    let before = graph.node_count();
    let mut branches = 0;
    loop {
        let zero = ZeroValues::of_graph(graph);
        let shapes = with_static_shapes(graph)?;
        let mut changed = false;
        for id in graph.topo_order()? {
            if !graph.contains_node(id) {
                continue;
            }
            let Some(keep) = surviving_operand(graph, &shapes, id, &zero) else {
                continue;
            };
            let out = graph.node(id).output(0).expect("checked");
            if !graph.bypass(id, out, keep) {
                // `out` keeps its name (a graph output fed by a graph
                // input, say): an Identity stands in for the Add.
                let mut identity = Node::new("Identity");
                identity.name = graph.node(id).name.clone();
                graph.detach_node(id);
                graph.add_node_defining(identity, vec![Some(keep)], vec![Some(out)]);
            }
            branches += 1;
            changed = true;
        }
        remove_dead_code(graph);
        if !changed {
            break;
        }
    }
    Ok((branches, (before - graph.node_count()) as u64))
}

impl Pass for Erase {
    fn name(&self) -> &'static str {
        "erase"
    }

    fn run(&mut self, model: &mut Model, _cx: &mut PassContext) -> Result<PassOutcome, IrError> {
        let mut outcome = PassOutcome::default();
        if self.zero {
            let (branches, nodes) = erase_zero_branches(&mut model.graph)?;
            outcome
                .statistics
                .push(("zero_branches_erased".into(), branches));
            outcome.statistics.push(("nodes_removed".into(), nodes));
            outcome.changed |= nodes > 0;
        }
        Ok(outcome)
    }
}
