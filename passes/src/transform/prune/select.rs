//! Choosing channels. Each criterion orders every eligible group's
//! channels for removal, with the cost of each next removal
//! ([`Sequence`]); [`allocate`] then takes channels from the groups until
//! the parameter target is met: the cheapest next removal per parameter
//! across all groups (or, with `per_layer`, the same share of every
//! group), never more than `max_share` of a group, and never its last
//! channel.

use super::ledger::Ledger;
use crate::analysis::zero_groups::{Group, ZeroGroups};
use crate::util::rng::Rng;
use crate::util::weights::channel_energy;
use sculpt_ir::Graph;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// One group's channels in the order they would go, and the cost each
/// next removal adds.
#[derive(Clone, Debug, Default)]
pub(super) struct Sequence {
    pub channels: Vec<usize>,
    pub costs: Vec<f64>,
}

impl Sequence {
    /// Channels sorted by their own score, lowest first (independent costs).
    pub fn by_score(scores: &[f64]) -> Sequence {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        Sequence {
            costs: order.iter().map(|&c| scores[c]).collect(),
            channels: order,
        }
    }
}

/// Magnitude: a channel's L2 norm over all its slices, per element.
pub(super) fn magnitude(graph: &Graph, g: &Group) -> Option<Vec<f64>> {
    Some(
        channel_energy(graph, g, |_| true)?
            .iter()
            .map(|&(sq, n)| sq.sqrt() / (n.max(1) as f64).sqrt())
            .collect(),
    )
}

/// Random scores (for property tests and baselines).
pub(super) fn random(g: &Group, rng: &mut Rng) -> Vec<f64> {
    (0..g.channels).map(|_| rng.next_f64()).collect()
}

/// Activation (CFSP's fine step): for every consumer slice, the weight
/// norm times the norm of the activation channel it multiplies, summed
/// over consumers; squared and divided by the group's total, so that a
/// score is the channel's share of its layer's output energy (comparable
/// across layers, as FLAP standardises its scores).
pub(super) fn activation(
    graph: &Graph,
    g: &Group,
    activations: &HashMap<(String, usize), Vec<f64>>,
) -> Option<Vec<f64>> {
    if !g.members.iter().any(|m| m.activation.is_some()) {
        return magnitude(graph, g);
    }
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
    let total: f64 = score.iter().map(|s| s * s).sum();
    Some(
        score
            .iter()
            .map(|s| s * s / total.max(f64::MIN_POSITIVE))
            .collect(),
    )
}

/// How many channels of `g` may go at most.
pub(super) fn cap(g: &Group, max_share: f64) -> usize {
    ((max_share * g.channels as f64).floor() as usize).min(g.channels.saturating_sub(1))
}

#[derive(PartialEq)]
struct Next {
    /// Cost of the group's next removal per parameter it frees.
    key: f64,
    group: usize,
}

impl Eq for Next {}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Next {
    /// Reversed: the heap pops the cheapest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then(other.group.cmp(&self.group))
    }
}

/// How [`allocate`] takes channels.
pub(super) struct Allocation {
    /// Parameters to remove.
    pub target: f64,
    pub per_layer: bool,
    pub max_share: f64,
    /// Rank by cost per parameter freed (costs that are errors), or by
    /// cost alone (costs already normalised per element).
    pub per_param: bool,
}

/// Channels to remove per group (index into `z.groups`), in removal order.
pub(super) fn allocate(
    graph: &Graph,
    z: &ZeroGroups,
    sequences: &BTreeMap<usize, Sequence>,
    how: &Allocation,
) -> BTreeMap<usize, Vec<usize>> {
    let caps: HashMap<usize, usize> = sequences
        .iter()
        .map(|(&gi, s)| (gi, cap(&z.groups[gi], how.max_share).min(s.channels.len())))
        .collect();
    if how.per_layer {
        let pick = |share: f64| -> BTreeMap<usize, Vec<usize>> {
            sequences
                .iter()
                .map(|(&gi, s)| {
                    let n = ((share * z.groups[gi].channels as f64) as usize).min(caps[&gi]);
                    (gi, s.channels[..n].to_vec())
                })
                .collect()
        };
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if (Ledger::removed(graph, z, &pick(mid)) as f64) < how.target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return pick(hi);
    }
    // Marginal costs made non-decreasing, so a group's later removals
    // never look cheaper than its earlier ones.
    let costs: HashMap<usize, Vec<f64>> = sequences
        .iter()
        .map(|(&gi, s)| {
            let mut running = f64::NEG_INFINITY;
            let c = s
                .costs
                .iter()
                .map(|&c| {
                    running = running.max(c);
                    running
                })
                .collect();
            (gi, c)
        })
        .collect();
    let mut ledger = Ledger::new(graph, z);
    let key = |ledger: &Ledger, gi: usize, taken: usize| -> Option<f64> {
        if taken >= caps[&gi] {
            return None;
        }
        let cost = costs[&gi][taken];
        Some(if how.per_param {
            cost / ledger.peek(&z.groups[gi]).max(1) as f64
        } else {
            cost
        })
    };
    let mut heap: BinaryHeap<Next> = sequences
        .keys()
        .filter_map(|&gi| {
            Some(Next {
                key: key(&ledger, gi, 0)?,
                group: gi,
            })
        })
        .collect();
    let mut chosen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut removed = 0.0f64;
    while removed < how.target {
        let Some(next) = heap.pop() else { break };
        let gi = next.group;
        let taken = chosen.get(&gi).map_or(0, Vec::len);
        // Another group's removals may have shrunk this group's channels.
        let Some(now) = key(&ledger, gi, taken) else {
            continue;
        };
        if now > next.key && heap.peek().is_some_and(|top| top.key < now) {
            heap.push(Next {
                key: now,
                group: gi,
            });
            continue;
        }
        chosen
            .entry(gi)
            .or_default()
            .push(sequences[&gi].channels[taken]);
        removed += ledger.take(&z.groups[gi]) as f64;
        if let Some(k) = key(&ledger, gi, taken + 1) {
            heap.push(Next { key: k, group: gi });
        }
    }
    chosen
}

/// Trims each group's list so that its remaining width is a multiple of
/// `round_to` (removing fewer).
pub(super) fn round_widths(
    z: &ZeroGroups,
    chosen: &mut BTreeMap<usize, Vec<usize>>,
    round_to: usize,
) {
    if round_to <= 1 {
        return;
    }
    for (gi, list) in chosen.iter_mut() {
        let total = z.groups[*gi].channels;
        let keep = (total - list.len()).div_ceil(round_to) * round_to;
        list.truncate(total.saturating_sub(keep.min(total)));
    }
}
