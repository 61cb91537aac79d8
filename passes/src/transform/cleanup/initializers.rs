//! Duplicate initializers: initializers with the same element type, dims
//! and bytes are merged into the first. Graph inputs (overridable
//! defaults), graph outputs and values captured by subgraphs are left alone.

use sculpt_ir::{Graph, ValueId};
use std::collections::HashMap;

/// Merges duplicates. Returns how many initializers were merged away.
pub fn merge_duplicates(graph: &mut Graph) -> u64 {
    // Candidates share element type and dims; only those are compared.
    let mut groups: HashMap<(i32, Vec<i64>), Vec<ValueId>> = HashMap::new();
    for (id, v) in graph.initializers() {
        let Some(t) = v.tensor() else { continue };
        if graph.inputs.contains(&id) || graph.outputs.contains(&id) {
            continue;
        }
        groups
            .entry((t.dtype.0, t.dims.clone()))
            .or_default()
            .push(id);
    }
    let mut count = 0;
    let mut groups: Vec<_> = groups.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for group in groups {
        let mut kept: Vec<ValueId> = Vec::new();
        for &id in &group {
            let bytes = graph.value(id).tensor().and_then(|t| t.raw_bytes().ok());
            let same = kept.iter().copied().find(|&k| {
                let other = graph.value(k).tensor().and_then(|t| t.raw_bytes().ok());
                bytes.is_some() && other == bytes
            });
            match same {
                Some(keep) if !graph.is_captured(id) => {
                    graph.replace_all_uses(id, keep);
                    graph.remove_value(id);
                    count += 1;
                }
                _ => kept.push(id),
            }
        }
    }
    count
}
