//! `erase`: removes whole operators.
//!
//! `zero=true` (lossless, given finite inputs): where an Add, Sub or Sum
//! adds a branch that is identically zero ([`ZeroValues`]: its
//! zero-invariant groups are all zero), the branch is dropped and the other
//! operand passes straight through; everything that only fed the branch goes
//! with it. The result equals the zeroed (masked) model exactly.
//!
//! `budget=B` or `blocks=K` (lossy, needs calibration data): measures each
//! residual block's contribution on the calibration data (the relative
//! change of the model's outputs when the block is skipped, and the norm of
//! its branch relative to the stream it is added to), then skips the least
//! important blocks until the budget is met: `budget` is a share of the
//! model's FLOPs, `blocks` a number of blocks; `kind=ffn|attention|conv|any`
//! limits which blocks may go; `metric=random seed=S` chooses at random (the
//! baseline the contribution metric is measured against). The chosen
//! blocks and the output error they cause, measured on the calibration
//! data, are reported.

use crate::analysis::cost::Cost;
use crate::analysis::residual_blocks::{residual_blocks_at, ResidualBlock};
use crate::analysis::zero_values::ZeroValues;
use crate::context::PassContext;
use crate::options::Share;
use crate::{NamedPass, Pass, PassOutcome};
use sculpt_ir::ops::infer::{self, value_type};
use sculpt_ir::rewrite::remove_dead_code;
use sculpt_ir::{Graph, IrError, Model, Node, NodeId, ValueId};

crate::choice! {
    /// Which residual blocks may be skipped.
    pub enum BlockKind {
        Ffn = "ffn",
        Attention = "attention",
        Conv = "conv",
        Other = "other",
        Any = "any",
    }
}

crate::choice! {
    /// How blocks are ranked.
    pub enum Metric {
        /// By measured contribution to the outputs.
        Contribution = "contribution",
        /// At random (the baseline).
        Random = "random",
    }
}

crate::pass_options! {
    /// Options of `erase`.
    pub struct EraseOptions {
        /// erase branches whose output is identically zero (exact)
        zero: bool = true,
        /// skip the least important residual blocks until this share of FLOPs is gone (needs --calib)
        budget: Option<Share> = None,
        /// skip this many of the least important residual blocks (needs --calib)
        blocks: Option<usize> = None,
        /// which blocks may be skipped
        kind: BlockKind = BlockKind::Any,
        /// rank blocks by measured contribution, or at random (a baseline)
        metric: Metric = Metric::Contribution,
        /// seed for metric=random
        seed: u64 = 0,
    }
}

pub struct Erase {
    zero: bool,
    /// Share of FLOPs to remove by skipping blocks.
    budget: Option<f64>,
    /// Number of blocks to skip.
    blocks: Option<usize>,
    kind: BlockKind,
    random: bool,
    seed: u64,
}

impl NamedPass for Erase {
    const NAME: &'static str = "erase";
    const SUMMARY: &'static str = "remove whole operators: identically-zero residual branches (exact), and the least important residual blocks within a budget (measured on calibration data)";
    type Options = EraseOptions;

    fn new(o: EraseOptions) -> crate::Result<Erase> {
        Ok(Erase {
            zero: o.zero,
            budget: o.budget.map(|b| b.0),
            blocks: o.blocks,
            kind: o.kind,
            random: o.metric == Metric::Random,
            seed: o.seed,
        })
    }
}

/// Replaces `node` (an Add) by its operand `keep`: bypassed where names
/// allow, else an Identity stands in so the output keeps its name.
fn replace_with_operand(graph: &mut Graph, node: NodeId, keep: ValueId) {
    let out = graph.node(node).output(0).expect("an Add has an output");
    if !graph.bypass(node, out, keep) {
        let mut identity = Node::new("Identity");
        identity.name = graph.node(node).name.clone();
        graph.detach_node(node);
        graph.add_node_defining(identity, vec![Some(keep)], vec![Some(out)]);
    }
}

fn rel_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        for (&p, &q) in x.iter().zip(y) {
            diff += ((p - q) as f64).powi(2);
            norm += (q as f64).powi(2);
        }
    }
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

impl Erase {
    /// Skips the least important residual blocks; see the module doc.
    fn erase_blocks(
        &self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
        outcome: &mut PassOutcome,
    ) -> Result<(), IrError> {
        let calibrator = cx.calibrator.as_deref_mut().ok_or_else(|| {
            IrError::Invalid("erase with budget= or blocks= measures blocks on calibration data: give --calib DATA.npz or --calib-random N".into())
        })?;
        // FLOPs at the calibration samples' sizes (symbolic dims bound
        // from them), so that the budget's share is the share there.
        let dims = infer::dims_of_inputs(&model.graph, &calibrator.sample_shapes());
        let total_flops = Cost::at(model, &dims).flops;
        let blocks: Vec<ResidualBlock> = residual_blocks_at(&model.graph, &dims)
            .into_iter()
            .filter(|b| self.kind == BlockKind::Any || b.kind == self.kind.as_str())
            .collect();
        if !dims.is_empty() {
            let mut sizes: Vec<String> = dims.iter().map(|(d, n)| format!("{d}={n}")).collect();
            sizes.sort();
            outcome.details.push(format!(
                "FLOPs per sample at the calibration data's sizes: {}",
                sizes.join(", ")
            ));
        }
        let calib = |e: String| IrError::Invalid(format!("erase: calibration run failed: {e}"));
        let all = calibrator.split().all();
        let baseline = calibrator.outputs(model, all.clone()).map_err(calib)?;
        let mut scored: Vec<(f64, f64, usize)> = Vec::new(); // (score, branch/stream ratio, index)
        if self.random {
            let mut state = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for i in 0..blocks.len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                scored.push(((state >> 11) as f64, f64::NAN, i));
            }
        } else {
            let names: Vec<String> = blocks
                .iter()
                .flat_map(|b| {
                    [
                        model.graph.value(b.branch).name.clone(),
                        model.graph.value(b.stream).name.clone(),
                    ]
                })
                .collect();
            let values = calibrator
                .values(model, &names, all.clone())
                .map_err(calib)?;
            for (i, b) in blocks.iter().enumerate() {
                let ratio = norm(&values[2 * i]) / norm(&values[2 * i + 1]).max(f64::MIN_POSITIVE);
                let mut skipped = model.clone();
                replace_with_operand(&mut skipped.graph, b.add, b.stream);
                remove_dead_code(&mut skipped.graph);
                let outputs = calibrator.outputs(&skipped, all.clone()).map_err(calib)?;
                scored.push((rel_error(&outputs, &baseline), ratio, i));
            }
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut chosen: Vec<usize> = Vec::new();
        let mut removed_flops = 0u64;
        let mut taken: std::collections::HashSet<NodeId> = std::collections::HashSet::new();
        for &(score, ratio, i) in &scored {
            let done = match (self.blocks, self.budget) {
                (Some(k), _) => chosen.len() >= k,
                (None, Some(share)) => removed_flops as f64 >= share * total_flops as f64,
                (None, None) => true,
            };
            if done {
                break;
            }
            let b = &blocks[i];
            if b.nodes.iter().any(|n| taken.contains(n)) || taken.contains(&b.add) {
                continue;
            }
            taken.extend(b.nodes.iter().copied());
            removed_flops += b.flops;
            chosen.push(i);
            let metric = if self.random {
                "chosen at random".to_string()
            } else {
                format!("output change when skipped {score:.3e}, branch/stream norm {ratio:.3}")
            };
            outcome.details.push(format!(
                "erased {} block '{}' ({} nodes, {} FLOPs): {metric}",
                b.kind,
                b.label,
                b.nodes.len(),
                b.flops
            ));
        }
        for &i in &chosen {
            let b = &blocks[i];
            if model.graph.contains_node(b.add) {
                replace_with_operand(&mut model.graph, b.add, b.stream);
            }
        }
        remove_dead_code(&mut model.graph);
        let after = calibrator.outputs(model, all).map_err(calib)?;
        let err = rel_error(&after, &baseline);
        outcome.details.push(format!(
            "{} of {} candidate blocks erased, {:.1}% of FLOPs; measured output error on the calibration data: relative L2 {err:.4e}",
            chosen.len(),
            blocks.len(),
            100.0 * removed_flops as f64 / total_flops.max(1) as f64
        ));
        outcome.stat("blocks_erased", chosen.len());
        outcome.stat("block_flops_removed", removed_flops);
        outcome.stat("output_rel_error", err);
        outcome.changed |= !chosen.is_empty();
        Ok(())
    }
}

/// The operand of an Add/Sub/Sum that survives when all others are zero,
/// provided the zeros do not broadcast it to a larger shape (checked on
/// `shapes`, the graph with static shapes).
fn surviving_operand(
    graph: &Graph,
    shapes: &Graph,
    id: NodeId,
    zero: &ZeroValues,
) -> Option<ValueId> {
    let n = graph.node(id);
    if !n.is_onnx() || !matches!(n.op_type.as_str(), "Add" | "Sub" | "Sum") {
        return None;
    }
    let out = n.output(0)?;
    let inputs: Vec<ValueId> = n.inputs().iter().flatten().copied().collect();
    let live: Vec<ValueId> = inputs
        .iter()
        .copied()
        .filter(|v| !zero.zero.contains(v))
        .collect();
    let [keep] = live.as_slice() else { return None };
    if n.op_type == "Sub" && inputs.first() != Some(keep) {
        return None; // 0 - x is -x, not x
    }
    let (kt, ot) = (value_type(shapes, *keep)?, value_type(shapes, out)?);
    let same = kt.static_dims()? == ot.static_dims()? && kt.dtype() == ot.dtype();
    same.then_some(*keep)
}

/// Drops every zero branch. Returns (branches erased, nodes removed).
pub fn erase_zero_branches(graph: &mut Graph) -> Result<(u64, u64), IrError> {
    let before = graph.node_count();
    let mut branches = 0;
    loop {
        let zero = ZeroValues::of_graph(graph);
        let shapes = infer::static_shape_copy(graph)?;
        let mut changed = false;
        for id in graph.topo_order()? {
            if !graph.contains_node(id) {
                continue;
            }
            let Some(keep) = surviving_operand(graph, &shapes, id, &zero) else {
                continue;
            };
            replace_with_operand(graph, id, keep);
            branches += 1;
            changed = true;
        }
        remove_dead_code(graph);
        if !changed {
            break;
        }
    }
    Ok((branches, (before - graph.node_count()) as u64))
}

impl Pass for Erase {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn needs_canonical(&self) -> bool {
        true
    }

    /// Zero branches only (no budget or block count): exact.
    fn lossless(&self) -> bool {
        self.budget.is_none() && self.blocks.is_none()
    }

    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        let mut outcome = PassOutcome::default();
        if self.budget.is_some() || self.blocks.is_some() {
            self.erase_blocks(model, cx, &mut outcome)?;
        }
        if self.zero {
            let (branches, nodes) = erase_zero_branches(&mut model.graph)?;
            outcome.stat("zero_branches_erased", branches);
            outcome.stat("nodes_removed", nodes);
            outcome.changed |= nodes > 0;
        }
        Ok(outcome)
    }
}
