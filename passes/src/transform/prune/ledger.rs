//! Exact parameter accounting: the sizes left along each axis of every
//! member tensor, so that what removing one more channel of a group takes
//! out is known exactly, also when groups share tensors (a Conv's weights
//! lose rows to one group and columns to another).

use crate::analysis::zero_groups::{Group, ZeroGroups};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::Graph;
use std::collections::{BTreeMap, HashMap};

pub(super) struct Ledger {
    kept: HashMap<String, Vec<usize>>,
}

impl Ledger {
    pub fn new(graph: &Graph, z: &ZeroGroups) -> Ledger {
        let kept = z
            .groups
            .iter()
            .flat_map(|g| &g.members)
            .filter_map(|m| {
                let t = constant(graph, graph.value_by_name(&m.tensor)?)?;
                Some((
                    m.tensor.clone(),
                    t.dims.iter().map(|&d| d.max(0) as usize).collect(),
                ))
            })
            .collect();
        Ledger { kept }
    }

    /// The params one more channel of `g` holds now.
    pub fn peek(&self, g: &Group) -> u64 {
        g.members
            .iter()
            .filter_map(|m| {
                let dims = self.kept.get(&m.tensor)?;
                let others: usize = dims
                    .iter()
                    .enumerate()
                    .filter(|(a, _)| *a != m.axis)
                    .map(|(_, d)| d)
                    .product();
                Some((others * m.block.min(dims[m.axis])) as u64)
            })
            .sum()
    }

    /// Takes one channel of `g` out; returns the params it held.
    pub fn take(&mut self, g: &Group) -> u64 {
        let removed = self.peek(g);
        for m in &g.members {
            if let Some(dims) = self.kept.get_mut(&m.tensor) {
                dims[m.axis] -= m.block.min(dims[m.axis]);
            }
        }
        removed
    }

    /// Params that removing `chosen` takes out.
    pub fn removed(graph: &Graph, z: &ZeroGroups, chosen: &BTreeMap<usize, Vec<usize>>) -> u64 {
        let mut ledger = Ledger::new(graph, z);
        chosen
            .iter()
            .map(|(&gi, list)| {
                (0..list.len())
                    .map(|_| ledger.take(&z.groups[gi]))
                    .sum::<u64>()
            })
            .sum()
    }

    /// Params of the distinct member tensors of `groups`.
    pub fn tensor_params<'a>(graph: &Graph, groups: impl Iterator<Item = &'a Group>) -> u64 {
        let mut tensors: Vec<&str> = groups
            .flat_map(|g| g.members.iter().map(|m| m.tensor.as_str()))
            .collect();
        tensors.sort();
        tensors.dedup();
        tensors
            .iter()
            .filter_map(|t| constant(graph, graph.value_by_name(t)?)?.element_count())
            .sum()
    }
}
