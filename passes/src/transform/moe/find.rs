//! Finding FFNs from the graph, not from names: a linear site, an
//! element-wise activation chain (ReLU, GELU exact or tanh, SiLU, written
//! as one op or spelled out with constants), and a linear site reading
//! only that; or the gated form `act(x·Wg) ⊙ (x·Wu) → Wd`, the gate and
//! up projections reading the same input.

use crate::linear::{LinearSite, SiteOp};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{Graph, NodeId, ValueId};
use std::collections::HashSet;

/// Element-wise ops an activation chain may hold.
const ELEMENT_WISE: &[&str] = &[
    "Relu",
    "Gelu",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Neg",
    "Identity",
    "Softplus",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Sqrt",
];

/// One FFN.
#[derive(Clone, Debug)]
pub struct Ffn {
    /// The first projection (the up projection of a gated FFN).
    pub up: LinearSite,
    /// The gated form's gate projection, whose output the activation reads.
    pub gate: Option<LinearSite>,
    /// The activation's nodes in order, from the activated projection's
    /// output to `activated`.
    pub chain: Vec<NodeId>,
    pub activated: ValueId,
    pub down: LinearSite,
}

impl Ffn {
    /// The hidden width (neurons).
    pub fn width(&self) -> usize {
        self.up.n
    }

    /// The site whose output the activation reads.
    pub fn activated_site(&self) -> &LinearSite {
        self.gate.as_ref().unwrap_or(&self.up)
    }

    pub fn name(&self) -> &str {
        &self.down.name
    }
}

fn plain_matrix(site: &LinearSite) -> bool {
    site.groups == 1
        && matches!(
            site.op,
            SiteOp::MatMul | SiteOp::Gemm { trans_a: false, .. }
        )
}

/// The element-wise nodes computing a function of `from` (and constants)
/// only, in topological order, and the values they define.
fn chain_from(graph: &Graph, order: &[NodeId], from: ValueId) -> (Vec<NodeId>, HashSet<ValueId>) {
    let mut reached: HashSet<ValueId> = HashSet::from([from]);
    let mut chain = Vec::new();
    for &id in order {
        let n = graph.node(id);
        if !n.is_onnx() || !ELEMENT_WISE.contains(&n.op_type.as_str()) || n.outputs().len() != 1 {
            continue;
        }
        let mut touches = false;
        let only = n.inputs().iter().flatten().all(|&v| {
            let here = reached.contains(&v);
            touches |= here;
            here || constant(graph, v).is_some()
        });
        if touches && only {
            chain.push(id);
            reached.extend(n.outputs().iter().flatten());
        }
    }
    (chain, reached)
}

/// The chain from `from` to `to`: only the nodes `to` depends on, each
/// value of it read by the chain alone (or by `reader` for `to`).
fn chain_to(
    graph: &Graph,
    order: &[NodeId],
    from: ValueId,
    to: ValueId,
    reader: NodeId,
) -> Option<Vec<NodeId>> {
    let (chain, reached) = chain_from(graph, order, from);
    if !reached.contains(&to) || to == from {
        return None;
    }
    // Keep the nodes `to` needs.
    let mut needed: HashSet<ValueId> = HashSet::from([to]);
    let mut kept = Vec::new();
    for &id in chain.iter().rev() {
        let n = graph.node(id);
        if n.outputs().iter().flatten().any(|v| needed.contains(v)) {
            kept.push(id);
            needed.extend(n.inputs().iter().flatten().filter(|v| reached.contains(v)));
        }
    }
    kept.reverse();
    let inside: HashSet<NodeId> = kept.iter().copied().collect();
    let values: Vec<ValueId> = std::iter::once(from)
        .chain(
            kept.iter()
                .flat_map(|&id| graph.node(id).outputs().iter().flatten().copied()),
        )
        .collect();
    let private = values.iter().all(|&v| {
        !graph.outputs.contains(&v)
            && graph
                .consumers(v)
                .iter()
                .all(|(node, _)| inside.contains(node) || (v == to && *node == reader))
    });
    private.then_some(kept)
}

/// Every FFN among `sites` (in topological order).
pub fn find_ffns(graph: &Graph, sites: &[LinearSite]) -> Vec<Ffn> {
    let Ok(order) = graph.topo_order() else {
        return Vec::new();
    };
    let by_output = |v: ValueId| sites.iter().find(|s| s.output == v);
    let mut found = Vec::new();
    for down in sites.iter().filter(|s| plain_matrix(s)) {
        let Some((producer, _)) = graph.value(down.input).producer else {
            continue;
        };
        let p = graph.node(producer);
        // Gated: Mul(act(x·Wg), x·Wu).
        if p.op_type == "Mul" && p.is_onnx() && p.inputs().len() == 2 {
            let (a, b) = (p.input(0), p.input(1));
            for (act, lin) in [(a, b), (b, a)] {
                let (Some(act), Some(lin)) = (act, lin) else {
                    continue;
                };
                let Some(up) = by_output(lin).filter(|s| plain_matrix(s)) else {
                    continue;
                };
                let gate = sites.iter().find(|g| {
                    plain_matrix(g)
                        && g.input == up.input
                        && g.node != up.node
                        && g.n == up.n
                        && chain_to(graph, &order, g.output, act, producer).is_some()
                });
                let Some(gate) = gate else { continue };
                let chain = chain_to(graph, &order, gate.output, act, producer).expect("checked");
                let single_use =
                    graph.consumers(lin).len() == 1 && graph.consumers(down.input).len() == 1;
                if up.n == down.k && single_use {
                    found.push(Ffn {
                        up: up.clone(),
                        gate: Some(gate.clone()),
                        chain,
                        activated: act,
                        down: down.clone(),
                    });
                }
                break;
            }
            if found.last().is_some_and(|f| f.down.node == down.node) {
                continue;
            }
        }
        // Plain: act(x·W1) → W2.
        for up in sites.iter().filter(|s| plain_matrix(s) && s.n == down.k) {
            if let Some(chain) = chain_to(graph, &order, up.output, down.input, down.node) {
                found.push(Ffn {
                    up: up.clone(),
                    gate: None,
                    chain,
                    activated: down.input,
                    down: down.clone(),
                });
                break;
            }
        }
    }
    found
}
