//! `Cost`: FLOPs of the main graph for one sample (symbolic input dims
//! bound to 1), from `sculpt_ir::ops::cost` over inferred shapes, and the
//! count of nodes whose cost stays unknown.

use super::Analysis;
use sculpt_ir::ops::infer;
use sculpt_ir::Model;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Cost {
    pub flops: u64,
    pub unknown_nodes: usize,
}

impl Analysis for Cost {
    const NAME: &'static str = "cost";

    fn compute(model: &Model) -> Cost {
        Cost::at(model, &HashMap::new())
    }
}

impl Cost {
    /// The cost with the unknown input dims `dims` names bound (see
    /// `sculpt_ir::ops::infer::bind_dims`), the others 1.
    pub fn at(model: &Model, dims: &HashMap<String, usize>) -> Cost {
        let mut graph = model.graph.clone();
        infer::bind_dims(&mut graph, dims);
        let _ = infer::infer_graph(&mut graph);
        let (flops, unknown_nodes) = sculpt_ir::ops::cost::graph_flops(&graph);
        Cost {
            flops,
            unknown_nodes,
        }
    }
}
