//! `prune`: removes channels of zero-invariant groups ([`ZeroGroups`]).
//!
//! Options: `criterion=zero|magnitude` (`zero`: channels whose slices are
//! all exactly zero, lossless; `magnitude`: the L2 norm of a channel's
//! slices normalised by their size), `ratio=R` (share of the prunable
//! parameters to remove, for `magnitude`), `mode=remove|mask`, `seed=S`
//! with `criterion=random` (random channels, for property tests).
//!
//! `mode=mask` zeroes the chosen channels' slices and keeps every shape;
//! `mode=remove` slices them out of every member tensor and fixes Reshape
//! targets that spell out channel counts. Every group keeps at least one
//! channel. Defining property: for any choice of channels, mask and remove
//! give the same outputs.
//!
//! Not yet: the activation criterion, per-layer ratios, `round_to`,
//! `protect`, and folding a removed channel's constant output into the
//! consumer's bias (so only channels whose output is zero once masked are
//! exact: with `criterion=zero` that is all of them unless a bias or BN
//! shift keeps a zeroed channel alive; such channels are not chosen).

use crate::analysis::zero_groups::{Group, ZeroGroups};
use crate::manager::PassContext;
use crate::pipeline::Options;
use crate::{Pass, PassOutcome};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, Attribute, Graph, Initializer, IrError, Model, Tensor};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Criterion {
    Zero,
    Magnitude,
    Random,
}

pub struct Prune {
    criterion: Criterion,
    ratio: f64,
    mask: bool,
    seed: u64,
}

impl Prune {
    pub fn from_options(options: &Options) -> crate::Result<Prune> {
        let bad = |option: &str, reason: String| crate::PassError::Option {
            pass: "prune".into(),
            option: option.into(),
            reason,
        };
        let criterion = match options.get("criterion").unwrap_or("zero") {
            "zero" => Criterion::Zero,
            "magnitude" => Criterion::Magnitude,
            "random" => Criterion::Random,
            other => {
                return Err(bad(
                    "criterion",
                    format!("'{other}' is not zero, magnitude or random"),
                ))
            }
        };
        let ratio = options.f64("ratio", 0.0)?;
        if !(0.0..1.0).contains(&ratio) {
            return Err(bad(
                "ratio",
                "a share of the prunable parameters, at least 0 and below 1".into(),
            ));
        }
        let mask = match options.get("mode").unwrap_or("remove") {
            "remove" => false,
            "mask" => true,
            other => return Err(bad("mode", format!("'{other}' is not remove or mask"))),
        };
        Ok(Prune {
            criterion,
            ratio,
            mask,
            seed: options.usize("seed", 0)? as u64,
        })
    }
}

/// Element `i` of `dims` laid out row-major: (outer, index along `axis`, inner).
fn slices(dims: &[i64], axis: usize) -> (usize, usize, usize) {
    let d: Vec<usize> = dims.iter().map(|&x| x.max(0) as usize).collect();
    (
        d[..axis].iter().product(),
        d[axis],
        d[axis + 1..].iter().product(),
    )
}

/// Per channel: (sum of squares, element count) of every member slice,
/// in one pass over each member tensor.
fn channel_energy(graph: &Graph, g: &Group) -> Option<Vec<(f64, usize)>> {
    let mut acc = vec![(0.0f64, 0usize); g.channels];
    for m in &g.members {
        let t = constant(graph, graph.value_by_name(&m.tensor)?)?;
        let v = t.to_f32_vec().ok()?;
        let (_, len, inner) = slices(&t.dims, m.axis);
        for (i, x) in v.iter().enumerate() {
            let c = (i / inner.max(1)) % len.max(1) / m.block.max(1);
            if let Some(slot) = acc.get_mut(c) {
                slot.0 += (*x as f64).powi(2);
                slot.1 += 1;
            }
        }
    }
    Some(acc)
}

/// The channels of `g` and their scores (lower = pruned first); `None` for
/// channels that must not be chosen.
fn scores(graph: &Graph, g: &Group, criterion: Criterion, rng: &mut u64) -> Vec<Option<f64>> {
    if criterion == Criterion::Random {
        return (0..g.channels)
            .map(|_| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                Some((*rng >> 11) as f64)
            })
            .collect();
    }
    let Some(energy) = channel_energy(graph, g) else {
        return vec![None; g.channels];
    };
    energy
        .into_iter()
        .map(|(sq, n)| match criterion {
            Criterion::Zero => (sq == 0.0).then_some(0.0),
            _ => Some(sq.sqrt() / (n.max(1) as f64).sqrt()),
        })
        .collect()
}

/// `t` with the channels in `removed` (along `axis`, `block` wide) taken
/// out, or zeroed when `mask`.
fn apply(
    t: &Tensor,
    axis: usize,
    block: usize,
    removed: &BTreeSet<usize>,
    mask: bool,
) -> Option<Tensor> {
    let raw = t.raw_bytes().ok()?;
    let width = t.dtype.bit_width()? / 8;
    let (outer, len, inner) = slices(&t.dims, axis);
    let row = inner * width;
    let gone = |i: usize| removed.contains(&(i / block));
    let mut out = Vec::with_capacity(raw.len());
    for o in 0..outer {
        for i in 0..len {
            let src = &raw[(o * len + i) * row..(o * len + i + 1) * row];
            match (gone(i), mask) {
                (false, _) => out.extend_from_slice(src),
                (true, true) => out.extend(std::iter::repeat_n(0u8, row)),
                (true, false) => {}
            }
        }
    }
    let mut dims = t.dims.clone();
    if !mask {
        dims[axis] = (0..len).filter(|&i| !gone(i)).count() as i64;
    }
    Some(Tensor::from_raw(t.dtype, dims, out.into()))
}

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn run(
        &mut self,
        model: &mut Model,
        _cx: &mut PassContext<'_>,
    ) -> Result<PassOutcome, IrError> {
        let graph = &mut model.graph;
        // Weights held by Constant nodes become initializers, so that
        // every member slice can be edited in place.
        crate::transform::cleanup::constants::constant_nodes_to_initializers(graph);
        let z = ZeroGroups::of_graph(graph);
        let mut rng = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // (score, group, channel) for every choosable channel.
        let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
        for (gi, g) in z
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.prunable && g.channels > 1)
        {
            for (c, s) in scores(graph, g, self.criterion, &mut rng)
                .into_iter()
                .enumerate()
            {
                if let Some(s) = s {
                    candidates.push((s, gi, c));
                }
            }
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let target = (self.ratio * z.prunable_params as f64) as u64;
        let mut chosen: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        let mut removed_params = 0u64;
        for (_, gi, c) in candidates {
            if self.criterion != Criterion::Zero && removed_params >= target {
                break;
            }
            let g = &z.groups[gi];
            let set = chosen.entry(gi).or_default();
            if set.len() + 1 >= g.channels {
                continue; // keep one channel per group
            }
            set.insert(c);
            removed_params += g.params_per_channel;
        }
        // Per tensor, every (axis, block, removed) to apply together.
        let mut edits: HashMap<String, Vec<(usize, usize, BTreeSet<usize>)>> = HashMap::new();
        let mut shape_edits: HashMap<String, Vec<(usize, usize, usize)>> = HashMap::new();
        for (gi, set) in &chosen {
            let g = &z.groups[*gi];
            for m in &g.members {
                edits
                    .entry(m.tensor.clone())
                    .or_default()
                    .push((m.axis, m.block, set.clone()));
            }
            for (t, entry, per) in &g.shape_fixes {
                shape_edits
                    .entry(t.clone())
                    .or_default()
                    .push((*entry, *per, set.len()));
            }
        }
        for (name, list) in &edits {
            let Some(v) = graph.value_by_name(name) else {
                continue;
            };
            let Some(mut t) = graph.value(v).tensor().cloned() else {
                continue;
            };
            for (axis, block, set) in list {
                t = apply(&t, *axis, *block, set, self.mask)
                    .ok_or_else(|| IrError::tensor(name.clone(), "cannot slice this tensor"))?;
            }
            graph.value_mut(v).init = Some(Initializer::Dense(t));
        }
        if !self.mask {
            for (name, list) in &shape_edits {
                let Some(v) = graph.value_by_name(name) else {
                    continue;
                };
                let Some(t) = graph.value(v).tensor() else {
                    continue;
                };
                let mut target = t.to_i64_vec()?;
                for &(entry, per, removed) in list {
                    target[entry] -= (per * removed) as i64;
                }
                let dims = t.dims.clone();
                graph.value_mut(v).init = Some(Initializer::Dense(Tensor::from_i64(dims, &target)));
            }
            // Depthwise convolutions have one group per channel.
            for id in graph.node_ids() {
                let n = graph.node(id);
                let group = n.attr("group").and_then(AttrValue::as_int).unwrap_or(1);
                if n.op_type != "Conv" || group <= 1 {
                    continue;
                }
                let Some(w) = n.input(1).and_then(|w| constant(graph, w)) else {
                    continue;
                };
                if w.dims.get(1) == Some(&1) && w.dims[0] != group {
                    let channels = w.dims[0];
                    let attrs = &mut graph.node_mut(id).attributes;
                    attrs.retain(|a| a.name != "group");
                    attrs.push(Attribute::new("group", AttrValue::Int(channels)));
                }
            }
            // Shapes changed: drop the inferred types of intermediates.
            let keep: Vec<_> = graph.inputs.iter().chain(&graph.outputs).copied().collect();
            graph.clear_types_except(&keep);
        }
        let channels: usize = chosen.values().map(BTreeSet::len).sum();
        Ok(PassOutcome {
            changed: channels > 0,
            statistics: vec![
                ("channels_pruned".into(), channels as u64),
                ("params_pruned".into(), removed_params),
            ],
            details: vec![format!(
                "{} channels in {} groups, {} of {} prunable params",
                channels,
                chosen.len(),
                removed_params,
                z.prunable_params
            )],
        })
    }
}
