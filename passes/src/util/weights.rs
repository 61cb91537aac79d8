//! Reading and editing parameter tensors: every parameter made an
//! initializer of its own ([`prepare`]), slices along an axis taken out or
//! zeroed ([`remove_indices`]), and the energy of a group's channels.

use crate::analysis::zero_groups::{Group, Member};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{Graph, Tensor};
use std::collections::BTreeSet;

/// (outer, length along `axis`, inner) of row-major `dims`.
pub fn slices(dims: &[i64], axis: usize) -> (usize, usize, usize) {
    let d: Vec<usize> = dims.iter().map(|&x| x.max(0) as usize).collect();
    (
        d[..axis].iter().product(),
        d[axis],
        d[axis + 1..].iter().product(),
    )
}

/// `t` with the indices `gone` along `axis` taken out, or zeroed when
/// `mask` (shape kept). `None` for sub-byte element types.
pub fn remove_indices(
    t: &Tensor,
    axis: usize,
    gone: &BTreeSet<usize>,
    mask: bool,
) -> Option<Tensor> {
    let raw = t.raw_bytes().ok()?;
    let bits = t.dtype.bit_width()?;
    if bits % 8 != 0 {
        return None;
    }
    let width = bits / 8;
    let (outer, len, inner) = slices(&t.dims, axis);
    let row = inner * width;
    let mut out = Vec::with_capacity(raw.len());
    for o in 0..outer {
        for i in 0..len {
            let src = raw.get((o * len + i) * row..(o * len + i + 1) * row)?;
            match (gone.contains(&i), mask) {
                (false, _) => out.extend_from_slice(src),
                (true, true) => out.extend(std::iter::repeat_n(0u8, row)),
                (true, false) => {}
            }
        }
    }
    let mut dims = t.dims.clone();
    if !mask {
        dims[axis] = (0..len).filter(|i| !gone.contains(i)).count() as i64;
    }
    Some(Tensor::from_raw(t.dtype, dims, out.into()))
}

/// The channel that index `i` along a member's axis belongs to.
pub fn channel_of(m: &Member, i: usize) -> Option<usize> {
    i.checked_sub(m.offset).map(|k| k / m.block.max(1))
}

/// Per channel of `g`: sum of squares and element count of the slices of
/// the members `which` selects.
pub fn channel_energy(
    graph: &Graph,
    g: &Group,
    which: impl Fn(&Member) -> bool,
) -> Option<Vec<(f64, usize)>> {
    let mut acc = vec![(0.0f64, 0usize); g.channels];
    for m in g.members.iter().filter(|m| which(m)) {
        let t = constant(graph, graph.value_by_name(&m.tensor)?)?;
        let v = t.to_f32_vec().ok()?;
        let (_, len, inner) = slices(&t.dims, m.axis);
        for (i, x) in v.iter().enumerate() {
            let along = (i / inner.max(1)) % len.max(1);
            if let Some(slot) = channel_of(m, along).and_then(|c| acc.get_mut(c)) {
                slot.0 += (*x as f64).powi(2);
                slot.1 += 1;
            }
        }
    }
    Some(acc)
}

/// Initializers read by several nodes (exporters and `cleanup` share
/// equal tensors) get one copy per reader, sharing the bytes, so that each
/// reader's parameters and counts can be edited on their own. Copies left
/// equal are merged again by `cleanup`.
pub fn unshare_initializers(graph: &mut Graph) {
    let shared: Vec<_> = graph
        .initializers()
        .filter(|(v, _)| !graph.inputs.contains(v) && !graph.outputs.contains(v))
        .map(|(v, _)| v)
        .collect();
    for v in shared {
        let readers = graph.consumers(v);
        for &(node, _) in readers.iter().skip(1) {
            let tensor = graph.value(v).tensor().expect("listed").clone();
            let name = graph.value(v).name.clone();
            let copy = Patch::new(graph, &name).initializer_named("copy", tensor);
            let inputs: Vec<_> = graph
                .node(node)
                .inputs()
                .iter()
                .map(|i| if *i == Some(v) { Some(copy) } else { *i })
                .collect();
            graph.set_inputs(node, inputs);
        }
    }
}

/// Makes every parameter an initializer of its own (Constant nodes and
/// Identity aliases materialised, shared tensors copied per reader), so
/// that each can be edited. `sculpt inspect --zig` analyses the model in
/// this form too.
pub fn prepare(graph: &mut Graph) {
    crate::transform::cleanup::constants::parameters_to_initializers(graph);
    unshare_initializers(graph);
}
