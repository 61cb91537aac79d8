//! `Cost`: FLOPs of the main graph for one sample (symbolic input dims
//! bound to 1), from `sculpt_ir::ops::cost` over inferred shapes, and the
//! count of nodes whose cost stays unknown.

use super::Analysis;
use sculpt_ir::Model;

#[derive(Clone, Debug)]
pub struct Cost {
    pub flops: u64,
    pub unknown_nodes: usize,
}

impl Analysis for Cost {
    const NAME: &'static str = "cost";

    fn compute(model: &Model) -> Cost {
        let mut graph = model.graph.clone();
        let _ = sculpt_ir::ops::infer::bind_input_dims(&mut graph, 1);
        let (flops, unknown_nodes) = sculpt_ir::ops::cost::graph_flops(&graph);
        Cost {
            flops,
            unknown_nodes,
        }
    }
}
