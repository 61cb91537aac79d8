//! `ResidualBlocks`: the residual blocks of the main graph. A block is an
//! `Add(stream, branch)` where `branch` is computed from `stream` and has
//! the same shape (checked with every symbolic dim bound to its own size);
//! its nodes are those on paths from `stream` to `branch` that nothing
//! outside the block needs (shared shape computations stay). Skipping the
//! block means `Add(stream, branch)` becomes `stream`, and its nodes die.
//!
//! Blocks are classified by what they hold: `attention` (a Softmax),
//! `conv` (a Conv), `ffn` (MatMul or Gemm without Softmax), or `other`.

use sculpt_ir::ops::{cost, infer};
use sculpt_ir::{Graph, NodeId, ValueId};
use std::collections::HashSet;

#[derive(Clone, Debug)]
pub struct ResidualBlock {
    /// The Add that closes the block.
    pub add: NodeId,
    pub stream: ValueId,
    pub branch: ValueId,
    pub nodes: Vec<NodeId>,
    pub kind: &'static str,
    /// FLOPs of the block's nodes per sample (symbolic dims bound as
    /// [`residual_blocks_at`] was asked, else 1).
    pub flops: u64,
    /// A readable name: the Add's name, or the branch value's.
    pub label: String,
}

fn producers_closure(graph: &Graph, start: ValueId) -> HashSet<NodeId> {
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(v) = stack.pop() {
        if let Some((p, _)) = graph.value(v).producer {
            if seen.insert(p) {
                stack.extend(graph.node(p).inputs().iter().flatten().copied());
            }
        }
    }
    seen
}

fn consumers_closure(graph: &Graph, start: ValueId, consumers: &[Vec<NodeId>]) -> HashSet<NodeId> {
    let mut seen = HashSet::new();
    let mut stack: Vec<ValueId> = vec![start];
    while let Some(v) = stack.pop() {
        for &c in consumers.get(v.index()).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c) {
                stack.extend(graph.node(c).outputs().iter().flatten().copied());
            }
        }
    }
    seen
}

/// Every residual block of `graph`, in topological order of their Adds,
/// its FLOPs counted with every unknown input dim 1.
pub fn residual_blocks(graph: &Graph) -> Vec<ResidualBlock> {
    residual_blocks_at(graph, &std::collections::HashMap::new())
}

/// [`residual_blocks`], the FLOPs counted with the unknown input dims
/// `dims` names bound (see [`infer::bind_dims`]), the others 1.
pub fn residual_blocks_at(
    graph: &Graph,
    dims: &std::collections::HashMap<String, usize>,
) -> Vec<ResidualBlock> {
    let Ok(shapes) = infer::static_shape_copy(graph) else {
        return Vec::new();
    };
    let mut costs = graph.clone();
    infer::bind_dims(&mut costs, dims);
    let _ = infer::infer_graph(&mut costs);
    let mut consumers: Vec<Vec<NodeId>> = Vec::new();
    for (id, n) in graph.nodes() {
        for v in n.inputs().iter().flatten() {
            if consumers.len() <= v.index() {
                consumers.resize(v.index() + 1, Vec::new());
            }
            consumers[v.index()].push(id);
        }
    }
    let static_dims = |v: ValueId| infer::value_type(&shapes, v).and_then(|t| t.static_dims());
    let Ok(order) = graph.topo_order() else {
        return Vec::new();
    };
    let mut blocks = Vec::new();
    for add in order {
        let n = graph.node(add);
        if !n.is_onnx() || n.op_type != "Add" || n.inputs().len() != 2 {
            continue;
        }
        let (Some(a), Some(b), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
            continue;
        };
        for (stream, branch) in [(a, b), (b, a)] {
            let (Some(s), Some(br), Some(o)) =
                (static_dims(stream), static_dims(branch), static_dims(out))
            else {
                continue;
            };
            if s != br || s != o {
                continue;
            }
            let upstream = producers_closure(graph, branch);
            let downstream = consumers_closure(graph, stream, &consumers);
            let candidates: HashSet<NodeId> = upstream
                .intersection(&downstream)
                .copied()
                .filter(|&c| c != add)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            // Nodes needed outside the block stay, with what they need.
            let mut needed_outside: Vec<NodeId> = candidates
                .iter()
                .copied()
                .filter(|&c| {
                    graph.node(c).outputs().iter().flatten().any(|v| {
                        graph.outputs.contains(v)
                            || consumers.get(v.index()).is_some_and(|cs| {
                                cs.iter().any(|x| *x != add && !candidates.contains(x))
                            })
                    })
                })
                .collect();
            let mut kept: HashSet<NodeId> = HashSet::new();
            while let Some(k) = needed_outside.pop() {
                if kept.insert(k) {
                    for v in graph.node(k).inputs().iter().flatten() {
                        if let Some((p, _)) = graph.value(*v).producer {
                            if candidates.contains(&p) {
                                needed_outside.push(p);
                            }
                        }
                    }
                }
            }
            if graph
                .value(branch)
                .producer
                .is_none_or(|(p, _)| kept.contains(&p))
            {
                continue;
            }
            let mut nodes: Vec<NodeId> = candidates.difference(&kept).copied().collect();
            nodes.sort();
            let ops: HashSet<&str> = nodes
                .iter()
                .map(|&id| graph.node(id).op_type.as_str())
                .collect();
            let kind = if ops.contains("Softmax") {
                "attention"
            } else if ops.contains("Conv") {
                "conv"
            } else if ops.contains("MatMul") || ops.contains("Gemm") {
                "ffn"
            } else {
                "other"
            };
            let flops = nodes
                .iter()
                .filter_map(|&id| cost::node_flops(&costs, id))
                .sum();
            let label = if n.name.is_empty() {
                graph.value(branch).name.clone()
            } else {
                n.name.clone()
            };
            blocks.push(ResidualBlock {
                add,
                stream,
                branch,
                nodes,
                kind,
                flops,
                label,
            });
            break;
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_flops_follow_the_bound_dims() {
        let model = sculpt_ir::text::parse(
            "graph \"g\" (%x: f32[N,S,4]) -> (%y) {\n  init %w = f32[4,4] [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]\n  %h = MatMul(%x, %w)\n  %r = Relu(%h)\n  %y = Add(%x, %r)\n}\n",
        )
        .unwrap();
        let at_one = residual_blocks(&model.graph);
        let dims = std::collections::HashMap::from([("S".to_string(), 8usize)]);
        let at_eight = residual_blocks_at(&model.graph, &dims);
        assert_eq!(at_one.len(), 1);
        assert!(at_one[0].flops > 0);
        assert_eq!(at_eight[0].flops, 8 * at_one[0].flops);
    }
}
