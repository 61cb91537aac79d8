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
    /// FLOPs of the block's nodes per sample (symbolic dims bound to 1).
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

/// Every residual block of `graph`, in topological order of their Adds.
pub fn residual_blocks(graph: &Graph) -> Vec<ResidualBlock> {
    let Ok(shapes) = infer::static_shape_copy(graph) else {
        return Vec::new();
    };
    let mut costs = graph.clone();
    let _ = infer::bind_input_dims(&mut costs, 1);
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
