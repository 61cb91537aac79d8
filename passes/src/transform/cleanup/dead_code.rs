//! Dead code: nodes none of whose outputs is read (by a node, a subgraph
//! capture or a graph output), repeatedly, and initializers nothing reads.

use sculpt_ir::Graph;

/// Removes dead nodes and unused initializers; returns (nodes, initializers) removed.
pub fn remove_dead_code(graph: &mut Graph) -> (u64, u64) {
    let mut nodes_removed = 0;
    loop {
        let uses = graph.use_counts();
        let dead: Vec<_> = graph
            .nodes()
            .filter(|(_, n)| n.outputs().iter().flatten().all(|v| !uses.contains_key(v)))
            .map(|(id, _)| id)
            .collect();
        if dead.is_empty() {
            break;
        }
        for id in dead {
            graph.remove_node(id);
            nodes_removed += 1;
        }
    }
    let uses = graph.use_counts();
    let unused: Vec<_> = graph
        .initializers()
        .filter(|(id, _)| !uses.contains_key(id) && !graph.inputs.contains(id))
        .map(|(id, _)| id)
        .collect();
    for &v in &unused {
        graph.remove_value(v);
    }
    (nodes_removed, unused.len() as u64)
}
