//! `prune`: removes channels (heads, conv groups) of zero-invariant groups
//! ([`ZeroGroups`]).
//!
//! Which channels (`criterion=`):
//! - `zero`: every channel whose slices are all exactly zero (lossless;
//!   what an OTO/HESSO-trained model gives), and every channel that only a
//!   bias keeps alive (folded, see below). `ratio` is ignored.
//! - `magnitude`: the L2 norm of a channel's slices, normalised by their
//!   size; the smallest go first.
//! - `activation` (CFSP's fine step): a consumer slice's weight norm times
//!   the norm of the activation channel it multiplies, measured on
//!   calibration data, ranked globally. CFSP's coarse step, the budget
//!   split across residual blocks by importance (angular distance between
//!   a block's input and output), is `cfsp=S`: scores are scaled by
//!   `(importance / mean)^S`, so the least important blocks lose most.
//!   The default is 0 (off): on minilm_l6_v2 and resnet18 every S > 0
//!   measured worse (`benches/prune_fidelity.py`).
//! - `random` (seeded; for property tests).
//!
//! How many: `ratio=R` of the prunable parameters, ranked globally, or per
//! group with `per_layer=true`; `round_to=N` keeps every group's remaining
//! width a multiple of N (removing fewer); `protect=P1|P2` leaves groups
//! whose source node or member tensor matches a pattern (`*` wildcards).
//! Every group keeps at least one channel.
//!
//! `mode=mask` zeroes the chosen channels' slices and keeps every shape;
//! `mode=remove` (default) slices them out of every member tensor and
//! applies the group's fixes (Reshape targets, Split sizes, Slice bounds,
//! `group`/`num_groups` attributes). Defining property: for any choice of
//! channels, mask and remove give the same outputs.
//!
//! With `criterion=zero`, a channel whose producing weights are zero but
//! whose bias (or BN shift) is not outputs a constant; it is removed too,
//! its contribution folded into each consumer's bias first
//! ([`constant_channels`]), where that is exact.

mod constant_channels;

use crate::analysis::residual_blocks::residual_blocks;
use crate::analysis::zero_groups::{Fix, Group, Member, ZeroGroups};
use crate::manager::PassContext;
use crate::pipeline::Options;
use crate::{Pass, PassOutcome};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, DataType, Graph, Initializer, IrError, Model, Tensor, Value, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Criterion {
    Zero,
    Magnitude,
    Activation,
    Random,
}

pub struct Prune {
    criterion: Criterion,
    ratio: f64,
    per_layer: bool,
    round_to: usize,
    /// Strength of CFSP's budget split by block importance.
    cfsp: f64,
    protect: Vec<String>,
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
            "activation" => Criterion::Activation,
            "random" => Criterion::Random,
            other => {
                return Err(bad(
                    "criterion",
                    format!("'{other}' is not zero, magnitude, activation or random"),
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
        let round_to = options.usize("round_to", 1)?;
        if round_to == 0 {
            return Err(bad("round_to", "must be at least 1".into()));
        }
        Ok(Prune {
            criterion,
            ratio,
            per_layer: options.bool("per_layer", false)?,
            round_to,
            cfsp: options.f64("cfsp", 0.0)?,
            protect: options
                .get("protect")
                .map(|p| {
                    p.split('|')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            mask,
            seed: options.usize("seed", 0)? as u64,
        })
    }
}

/// `text` matches `pattern`, where `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// (outer, length along `axis`, inner) of row-major `dims`.
fn slices(dims: &[i64], axis: usize) -> (usize, usize, usize) {
    let d: Vec<usize> = dims.iter().map(|&x| x.max(0) as usize).collect();
    (
        d[..axis].iter().product(),
        d[axis],
        d[axis + 1..].iter().product(),
    )
}

/// The channel that index `i` along a member's axis belongs to.
fn channel_of(m: &Member, i: usize) -> Option<usize> {
    i.checked_sub(m.offset).map(|k| k / m.block.max(1))
}

/// Per channel: sum of squares and element count of the slices of the
/// members `which` selects.
fn channel_energy(
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

/// Sum of squares per index along the channel axis of each activation,
/// over all calibration samples.
type ActivationEnergy = HashMap<(String, usize), Vec<f64>>;

fn measure_activations(
    model: &Model,
    groups: &[&Group],
    cx: &mut PassContext<'_>,
) -> Result<ActivationEnergy, IrError> {
    let mut wanted: Vec<(String, usize)> = groups
        .iter()
        .flat_map(|g| g.members.iter().filter_map(|m| m.activation.clone()))
        .collect();
    wanted.sort();
    wanted.dedup();
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let calibrator = calibrator(cx)?;
    let mut energy: Vec<Vec<f64>> = vec![Vec::new(); wanted.len()];
    calibrator
        .visit(model, &names, &mut |i, shape, data| {
            let axis = wanted[i].1;
            if axis >= shape.len() {
                return;
            }
            let len = shape[axis];
            let inner: usize = shape[axis + 1..].iter().product();
            let e = &mut energy[i];
            e.resize(len, 0.0);
            for (k, x) in data.iter().enumerate() {
                e[(k / inner.max(1)) % len.max(1)] += (*x as f64).powi(2);
            }
        })
        .map_err(calibration_failed)?;
    Ok(wanted.into_iter().zip(energy).collect())
}

fn calibrator<'a, 'c>(
    cx: &'a mut PassContext<'c>,
) -> Result<&'a mut (dyn crate::Calibrator + 'c), IrError> {
    cx.calibrator.as_deref_mut().ok_or_else(|| {
        IrError::Invalid(
            "prune with criterion=activation measures activations on calibration data: give --calib DATA.npz or --calib-random N".into(),
        )
    })
}

fn calibration_failed(e: String) -> IrError {
    IrError::Invalid(format!("prune: calibration run failed: {e}"))
}

/// Importance of each residual block: mean angular distance (1 − cosine)
/// between its input stream and its output, per calibration sample.
fn block_importance(
    model: &Model,
    blocks: &[crate::analysis::residual_blocks::ResidualBlock],
    cx: &mut PassContext<'_>,
) -> Result<Vec<f64>, IrError> {
    let graph = &model.graph;
    let names: Vec<String> = blocks
        .iter()
        .flat_map(|b| {
            let out = graph.node(b.add).output(0).expect("an Add has an output");
            [
                graph.value(b.stream).name.clone(),
                graph.value(out).name.clone(),
            ]
        })
        .collect();
    let mut sums = vec![(0.0f64, 0usize); blocks.len()];
    let mut pending: Vec<Vec<f32>> = vec![Vec::new(); blocks.len()];
    calibrator(cx)?
        .visit(model, &names, &mut |i, shape, data| {
            let b = i / 2;
            if i % 2 == 0 {
                pending[b] = data.to_vec();
                return;
            }
            let samples = shape.first().copied().unwrap_or(1).max(1);
            let per = data.len() / samples;
            if pending[b].len() != data.len() || per == 0 {
                return;
            }
            for s in 0..samples {
                let (x, y) = (
                    &pending[b][s * per..(s + 1) * per],
                    &data[s * per..(s + 1) * per],
                );
                let dot: f64 = x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum();
                let nx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                let ny: f64 = y.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                if nx > 0.0 && ny > 0.0 {
                    sums[b].0 += 1.0 - dot / (nx * ny);
                    sums[b].1 += 1;
                }
            }
        })
        .map_err(calibration_failed)?;
    Ok(sums
        .into_iter()
        .map(|(s, n)| (s / n.max(1) as f64).max(1e-6))
        .collect())
}

/// Scores of the channels of `g` (lower = pruned first); `None` for
/// channels that must not be chosen.
fn scores(
    graph: &Graph,
    g: &Group,
    criterion: Criterion,
    activations: &ActivationEnergy,
    rng: &mut u64,
) -> Vec<Option<f64>> {
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
    let Some(energy) = channel_energy(graph, g, |_| true) else {
        return vec![None; g.channels];
    };
    match criterion {
        Criterion::Zero => energy
            .iter()
            .map(|&(sq, _)| (sq == 0.0).then_some(0.0))
            .collect(),
        Criterion::Activation if g.members.iter().any(|m| m.activation.is_some()) => {
            let mut score = vec![0.0f64; g.channels];
            for m in g.members.iter().filter(|m| m.activation.is_some()) {
                let key = m.activation.clone().expect("filtered");
                let (Some(weights), Some(x)) =
                    (channel_energy(graph, g, |o| o == m), activations.get(&key))
                else {
                    continue;
                };
                for (c, s) in score.iter_mut().enumerate() {
                    let start = m.offset + c * m.block;
                    let xs: f64 = x.iter().skip(start).take(m.block).sum();
                    *s += weights[c].0.sqrt() * xs.sqrt();
                }
            }
            score.into_iter().map(Some).collect()
        }
        _ => energy
            .iter()
            .map(|&(sq, n)| Some(sq.sqrt() / (n.max(1) as f64).sqrt()))
            .collect(),
    }
}

/// `t` with the indices `gone` along `axis` taken out, or zeroed when `mask`.
fn apply(t: &Tensor, axis: usize, gone: &BTreeSet<usize>, mask: bool) -> Option<Tensor> {
    let raw = t.raw_bytes().ok()?;
    let width = t.dtype.bit_width()? / 8;
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

/// Every group keeps at least one channel.
fn keep_one(
    z: &ZeroGroups,
    mut chosen: BTreeMap<usize, Vec<usize>>,
) -> BTreeMap<usize, Vec<usize>> {
    for (gi, list) in chosen.iter_mut() {
        list.truncate(z.groups[*gi].channels.saturating_sub(1));
    }
    chosen
}

/// Sizes left along each axis of every member tensor: what removing one
/// more channel of a group takes out, exactly, when groups share tensors
/// (a Conv's weights lose rows to one group and columns to another).
struct Ledger {
    kept: HashMap<String, Vec<usize>>,
}

impl Ledger {
    fn new(graph: &Graph, z: &ZeroGroups) -> Ledger {
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

    /// Takes one channel of `g` out; returns the params it held.
    fn take(&mut self, g: &Group) -> u64 {
        let mut removed = 0;
        for m in &g.members {
            let Some(dims) = self.kept.get_mut(&m.tensor) else {
                continue;
            };
            let others: usize = dims
                .iter()
                .enumerate()
                .filter(|(a, _)| *a != m.axis)
                .map(|(_, d)| d)
                .product();
            let along = m.block.min(dims[m.axis]);
            dims[m.axis] -= along;
            removed += (others * along) as u64;
        }
        removed
    }

    /// Params that removing `chosen` takes out.
    fn removed(graph: &Graph, z: &ZeroGroups, chosen: &BTreeMap<usize, Vec<usize>>) -> u64 {
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
    fn tensor_params<'a>(graph: &Graph, groups: impl Iterator<Item = &'a Group>) -> u64 {
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

/// Initializers read by several nodes (exporters and `cleanup` share
/// equal tensors) get one copy per reader, sharing the bytes, so that each
/// reader's parameters and counts can be edited on their own. Copies left
/// equal are merged again after editing.
fn unshare_initializers(graph: &mut Graph) {
    let shared: Vec<_> = graph
        .initializers()
        .filter(|(v, _)| !graph.inputs.contains(v) && !graph.outputs.contains(v))
        .map(|(v, _)| v)
        .collect();
    for v in shared {
        let readers = graph.consumers(v);
        for &(node, _) in readers.iter().skip(1) {
            let tensor = graph.value(v).tensor().expect("listed").clone();
            let name = graph.unique_name(&graph.value(v).name);
            let copy = graph.add_value(Value {
                init: Some(Initializer::Dense(tensor)),
                ..Value::new(name)
            });
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
/// that each group's slices can be edited. `sculpt inspect --zig` analyses
/// the model in this form too.
pub fn prepare(graph: &mut Graph) {
    crate::transform::cleanup::constants::parameters_to_initializers(graph);
    unshare_initializers(graph);
}

impl Prune {
    fn protected(&self, g: &Group) -> bool {
        self.protect.iter().any(|p| {
            g.sources.iter().any(|s| glob_match(p, s))
                || g.members.iter().any(|m| glob_match(p, &m.tensor))
        })
    }

    /// Chosen channels per group (by index into `z.groups`), in the order
    /// chosen.
    fn choose(
        &self,
        model: &Model,
        z: &ZeroGroups,
        cx: &mut PassContext<'_>,
    ) -> Result<(BTreeMap<usize, Vec<usize>>, constant_channels::BiasDeltas), IrError> {
        let graph = &model.graph;
        let eligible: Vec<usize> = (0..z.groups.len())
            .filter(|&i| {
                let g = &z.groups[i];
                g.prunable && g.channels > 1 && !self.protected(g)
            })
            .collect();
        let activations = if self.criterion == Criterion::Activation {
            let groups: Vec<&Group> = eligible.iter().map(|&i| &z.groups[i]).collect();
            measure_activations(model, &groups, cx)?
        } else {
            HashMap::new()
        };
        let mut rng = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let scored: HashMap<usize, Vec<Option<f64>>> = eligible
            .iter()
            .map(|&i| {
                (
                    i,
                    scores(graph, &z.groups[i], self.criterion, &activations, &mut rng),
                )
            })
            .collect();
        let lowest_first = |gi: usize| -> Vec<(f64, usize)> {
            let mut v: Vec<(f64, usize)> = scored[&gi]
                .iter()
                .enumerate()
                .filter_map(|(c, s)| s.map(|s| (s, c)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        // A share of what may go: prunable groups that are not protected.
        let target = self.ratio
            * Ledger::tensor_params(graph, eligible.iter().map(|&i| &z.groups[i])) as f64;
        let mut chosen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut constant = BTreeMap::new();
        if self.criterion == Criterion::Zero {
            constant = constant_channels::all(graph, z, &eligible);
            for &gi in &eligible {
                let mut list: Vec<usize> = lowest_first(gi).into_iter().map(|(_, c)| c).collect();
                list.extend(constant.get(&gi).into_iter().flatten().map(|(c, _)| *c));
                chosen.insert(gi, list);
            }
        } else if self.per_layer {
            // One channel share for every group, the least that removes the target.
            let pick = |share: f64| -> BTreeMap<usize, Vec<usize>> {
                eligible
                    .iter()
                    .map(|&gi| {
                        let n = (share * z.groups[gi].channels as f64) as usize;
                        (
                            gi,
                            lowest_first(gi)
                                .into_iter()
                                .take(n)
                                .map(|(_, c)| c)
                                .collect(),
                        )
                    })
                    .collect()
            };
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            for _ in 0..40 {
                let mid = (lo + hi) / 2.0;
                if (Ledger::removed(graph, z, &keep_one(z, pick(mid))) as f64) < target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            chosen = pick(hi);
        } else {
            let mut ledger = Ledger::new(graph, z);
            let mut removed = 0.0f64;
            let mut candidates: Vec<(f64, usize, usize)> = eligible
                .iter()
                .flat_map(|&gi| lowest_first(gi).into_iter().map(move |(s, c)| (s, gi, c)))
                .collect();
            if self.criterion == Criterion::Activation {
                let weights = self.block_weights(model, z, &eligible, cx)?;
                for (s, gi, _) in &mut candidates {
                    *s *= weights[gi];
                }
            }
            candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, gi, c) in candidates {
                if removed >= target {
                    break;
                }
                let g = &z.groups[gi];
                let list = chosen.entry(gi).or_default();
                if list.len() + 1 >= g.channels {
                    continue;
                }
                list.push(c);
                removed += ledger.take(g) as f64;
            }
        }
        let mut chosen = keep_one(z, chosen);
        if self.round_to > 1 {
            for (gi, list) in chosen.iter_mut() {
                let total = z.groups[*gi].channels;
                let keep = (total - list.len()).div_ceil(self.round_to) * self.round_to;
                list.truncate(total.saturating_sub(keep.min(total)));
            }
        }
        chosen.retain(|_, l| !l.is_empty());
        // Constant channels that stay chosen fold into their consumers' biases.
        let mut folds = constant_channels::BiasDeltas::new();
        for (gi, list) in &chosen {
            for (c, deltas) in constant.get(gi).into_iter().flatten() {
                if !list.contains(c) {
                    continue;
                }
                for (bias, delta) in deltas {
                    let acc = folds
                        .entry(bias.clone())
                        .or_insert_with(|| vec![0.0; delta.len()]);
                    for (a, d) in acc.iter_mut().zip(delta) {
                        *a += d;
                    }
                }
            }
        }
        Ok((chosen, folds))
    }

    /// CFSP's coarse step: each group's importance relative to the mean
    /// block, `(importance / mean)^cfsp`, from the residual block holding
    /// its sources (1 for groups outside blocks, such as a residual stream).
    fn block_weights(
        &self,
        model: &Model,
        z: &ZeroGroups,
        eligible: &[usize],
        cx: &mut PassContext<'_>,
    ) -> Result<HashMap<usize, f64>, IrError> {
        let graph = &model.graph;
        let blocks = residual_blocks(graph);
        let importance = block_importance(model, &blocks, cx)?;
        let block_of: HashMap<&str, usize> = blocks
            .iter()
            .enumerate()
            .flat_map(|(b, block)| {
                block
                    .nodes
                    .iter()
                    .map(move |&n| (graph.node(n).display_name(), b))
            })
            .collect();
        let mean = importance.iter().sum::<f64>() / importance.len().max(1) as f64;
        let mean = if mean > 0.0 { mean } else { 1.0 };
        Ok(eligible
            .iter()
            .map(|&gi| {
                let homes: BTreeSet<Option<usize>> = z.groups[gi]
                    .sources
                    .iter()
                    .map(|s| block_of.get(s.as_str()).copied())
                    .collect();
                let weight = match homes.into_iter().collect::<Vec<_>>()[..] {
                    [Some(b)] => (importance[b] / mean).powf(self.cfsp),
                    _ => 1.0,
                };
                (gi, weight)
            })
            .collect())
    }
}

/// The initializer called `name`, or an error naming it.
fn initializer<'g>(graph: &'g Graph, name: &str) -> Result<(ValueId, &'g Tensor), IrError> {
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
fn edit(
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
            t = apply(&t, *axis, set, mask)
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

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        prepare(&mut model.graph);
        let z = ZeroGroups::of_graph(&model.graph);
        let (chosen, folds) = self.choose(model, &z, cx)?;
        let params = Ledger::removed(&model.graph, &z, &chosen);
        constant_channels::fold(&mut model.graph, &folds)?;
        edit(&mut model.graph, &z, &chosen, self.mask)?;
        crate::transform::cleanup::initializers::merge_duplicates(&mut model.graph);
        let channels: usize = chosen.values().map(Vec::len).sum();
        Ok(PassOutcome {
            changed: channels > 0,
            statistics: vec![
                ("channels_pruned".into(), channels as u64),
                ("params_pruned".into(), params),
            ],
            details: vec![format!(
                "{} channels in {} groups, {} of {} prunable params",
                channels,
                chosen.len(),
                params,
                z.prunable_params
            )],
        })
    }
}
