//! Applying a choice of channels: every member slice of a chosen channel
//! zeroed (`mask`) or taken out (`remove`), and in remove mode every
//! count that spells the width out (Reshape targets, Split sizes, Slice
//! bounds, `group`/`num_groups`) lowered to match.

use crate::analysis::zero_groups::{Fix, ZeroGroups};
use crate::util::weights::remove_indices;
use sculpt_ir::{AttrValue, DataType, Graph, Initializer, IrError, Tensor, ValueId};
use std::collections::{BTreeMap, BTreeSet};

/// The initializer called `name`, or an error naming it.
pub(super) fn initializer<'g>(
    graph: &'g Graph,
    name: &str,
) -> Result<(ValueId, &'g Tensor), IrError> {
    let v = graph
        .value_by_name(name)
        .ok_or_else(|| IrError::tensor(name.to_string(), "no such tensor"))?;
    let t = graph.value(v).tensor().ok_or_else(|| {
        IrError::tensor(name.to_string(), "is not an initializer: cannot edit it")
    })?;
    Ok((v, t))
}

/// Applies the chosen channels: slices (or zeroes) every member, and in
/// remove mode shrinks every spelled-out count.
pub(super) fn edit(
    graph: &mut Graph,
    z: &ZeroGroups,
    chosen: &BTreeMap<usize, Vec<usize>>,
    mask: bool,
) -> Result<(), IrError> {
    let mut gone: BTreeMap<String, BTreeMap<usize, BTreeSet<usize>>> = BTreeMap::new();
    let mut entries: BTreeMap<(String, usize), i64> = BTreeMap::new();
    let mut attributes: BTreeMap<(String, String, Option<usize>), i64> = BTreeMap::new();
    for (&gi, list) in chosen {
        let g = &z.groups[gi];
        for m in &g.members {
            let set = gone
                .entry(m.tensor.clone())
                .or_default()
                .entry(m.axis)
                .or_default();
            for &c in list {
                set.extend(m.offset + c * m.block..m.offset + (c + 1) * m.block);
            }
        }
        for f in &g.fixes {
            match f {
                Fix::Entry {
                    tensor,
                    entry,
                    per_channel,
                } => {
                    *entries.entry((tensor.clone(), *entry)).or_default() +=
                        (per_channel * list.len()) as i64
                }
                Fix::Attribute {
                    node_output,
                    attribute,
                    entry,
                    per_channel,
                } => {
                    *attributes
                        .entry((node_output.clone(), attribute.clone(), *entry))
                        .or_default() += (per_channel * list.len()) as i64
                }
            }
        }
    }
    for (name, axes) in &gone {
        let v = graph
            .value_by_name(name)
            .ok_or_else(|| IrError::tensor(name.clone(), "no such tensor"))?;
        let mut t = graph.value(v).tensor().cloned().ok_or_else(|| {
            IrError::tensor(name.clone(), "is not an initializer: cannot slice it")
        })?;
        for (axis, set) in axes {
            t = remove_indices(&t, *axis, set, mask)
                .ok_or_else(|| IrError::tensor(name.clone(), "cannot slice this tensor"))?;
        }
        graph.value_mut(v).init = Some(Initializer::Dense(t));
    }
    if mask {
        return Ok(());
    }
    for ((name, entry), decrement) in entries {
        let (v, t) = initializer(graph, &name)?;
        let mut values = t.to_i64_vec()?;
        let slot = values
            .get_mut(entry)
            .ok_or_else(|| IrError::tensor(name.clone(), "entry out of range"))?;
        *slot -= decrement;
        let fixed = match t.dtype {
            DataType::I64 => Tensor::from_i64(t.dims.clone(), &values),
            DataType::I32 => {
                let raw: Vec<u8> = values
                    .iter()
                    .flat_map(|&x| (x as i32).to_le_bytes())
                    .collect();
                Tensor::from_raw(DataType::I32, t.dims.clone(), raw.into())
            }
            _ => {
                return Err(IrError::tensor(
                    name.clone(),
                    "is not an int32/int64 count vector",
                ))
            }
        };
        graph.value_mut(v).init = Some(Initializer::Dense(fixed));
    }
    for ((output, attribute, entry), decrement) in attributes {
        let node = graph
            .value_by_name(&output)
            .and_then(|v| graph.value(v).producer)
            .map(|(n, _)| n)
            .ok_or_else(|| IrError::Invalid(format!("prune: no node produces '{output}'")))?;
        let attrs = &mut graph.node_mut(node).attributes;
        let a = attrs
            .iter_mut()
            .find(|a| a.name == attribute)
            .ok_or_else(|| {
                IrError::Invalid(format!(
                    "prune: the node of '{output}' has no attribute '{attribute}'"
                ))
            })?;
        match (&mut a.value, entry) {
            (AttrValue::Int(i), None) => *i -= decrement,
            (AttrValue::Ints(v), Some(e)) if e < v.len() => v[e] -= decrement,
            _ => {
                return Err(IrError::Invalid(format!(
                "prune: attribute '{attribute}' of the node of '{output}' has an unexpected form"
            )))
            }
        }
    }
    // Shapes changed: drop the inferred types of intermediates.
    let keep: Vec<_> = graph.inputs.iter().chain(&graph.outputs).copied().collect();
    graph.clear_types_except(&keep);
    Ok(())
}
