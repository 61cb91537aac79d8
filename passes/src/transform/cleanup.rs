//! `cleanup`: exact housekeeping. Removes nodes whose outputs nothing reads
//! (repeatedly, so whole dead chains go) and initializers nothing reads,
//! sorts nodes topologically, and infers value types.
//!
//! Preserves: the function of the model exactly (nothing that can reach a
//! graph output is touched). Idempotent.
//!
//! Options: `dce=true|false` (dead-code removal), `infer=true|false`
//! (shape inference).

use crate::manager::PassContext;
use crate::pipeline::Options;
use crate::{Pass, PassOutcome};
use sculpt_ir::{Graph, IrError, Model};

pub struct Cleanup {
    pub dce: bool,
    pub infer: bool,
}

impl Cleanup {
    pub fn from_options(options: &Options) -> crate::Result<Cleanup> {
        Ok(Cleanup {
            dce: options.bool("dce", true)?,
            infer: options.bool("infer", true)?,
        })
    }
}

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

impl Pass for Cleanup {
    fn name(&self) -> &'static str {
        "cleanup"
    }

    fn run(&mut self, model: &mut Model, _cx: &mut PassContext) -> Result<PassOutcome, IrError> {
        let mut outcome = PassOutcome::default();
        let graph = &mut model.graph;
        if self.dce {
            let (nodes, inits) = remove_dead_code(graph);
            outcome.statistics.push(("nodes_removed".into(), nodes));
            outcome
                .statistics
                .push(("initializers_removed".into(), inits));
            outcome.changed |= nodes + inits > 0;
        }
        if graph.topo_order()? != graph.node_ids() {
            graph.sort_topologically()?;
            outcome.changed = true;
        }
        if self.infer {
            let typed = sculpt_ir::ops::infer::infer_graph(graph)? as u64;
            outcome.statistics.push(("types_inferred".into(), typed));
            outcome.changed |= typed > 0;
        }
        Ok(outcome)
    }
}
