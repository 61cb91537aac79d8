//! `cleanup`: exact simplification, run to a fixpoint.
//!
//! Rewrites (one file each, each exact, each refusing where it would not be):
//! - [`constants`]: `Constant` nodes become initializers; nodes whose inputs
//!   are all constant are evaluated and replaced by their results (within
//!   a memory budget); shape computations over static dims are folded;
//! - [`identities`]: Identity, inference Dropout, and no-op Reshape,
//!   Flatten, Squeeze, Unsqueeze, Transpose, Cast, Pad, Slice and Expand are
//!   bypassed; consecutive Transposes and Reshapes are merged;
//! - [`cse`]: identical nodes on identical inputs are merged;
//! - [`initializers`]: initializers with identical type, shape and bytes
//!   are merged;
//! - [`affine`]: inference BatchNormalization, and Mul/Div/Add/Sub by
//!   per-channel constants, are folded into a preceding Conv, Gemm or
//!   BatchNormalization whose output they alone read;
//! - [`gemm`]: MatMul on a 2-D input followed by Add of a constant bias
//!   becomes Gemm;
//! - dead code ([`sculpt_ir::rewrite::remove_dead_code`]): nodes nothing reads and initializers nothing reads go;
//!
//! then nodes are sorted topologically and types inferred.
//!
//! Graph inputs that have initializer defaults (the IR < 4 way of storing
//! weights) are treated as constants and dropped from the inputs, as
//! onnxsim does and onnxruntime recommends (the IR version is raised to 4,
//! where initializers need not be inputs); `input_defaults=keep` leaves them
//! overridable, and then they are not folded.
//!
//! Preserves: every graph output, bit for bit where only structure changed
//! and up to floating-point reassociation where constants were folded
//! (BatchNormalization folding). Idempotent.

mod affine;
pub(crate) mod constants;
mod cse;
mod gemm;
mod identities;
pub(crate) mod initializers;

use crate::context::PassContext;
use crate::options::Bytes;
use crate::{NamedPass, Pass, PassOutcome};
use sculpt_ir::{IrError, Model};

crate::choice! {
    /// What becomes of graph inputs with initializer defaults.
    pub enum InputDefaults {
        /// Plain constants, dropped from the inputs.
        Constant = "constant",
        /// Inputs a caller may still override.
        Keep = "keep",
    }
}

crate::pass_options! {
    /// Options of `cleanup`.
    pub struct CleanupOptions {
        /// Constant nodes to initializers; evaluate nodes on constant inputs; fold static shape computations
        fold: bool = true,
        /// largest constant folding may create
        fold_limit: Bytes = Bytes(512 << 20),
        /// most the weights may grow through folding
        fold_growth: Bytes = Bytes(1 << 30),
        /// fold nodes of weights other nodes read too (a tied embedding's transpose), storing a second copy
        untie: bool = false,
        /// remove Identity, inference Dropout and no-op Reshape/Transpose/Cast/Pad/Slice/Expand/Mul/Sub; merge Transpose and Reshape chains
        simplify: bool = true,
        /// fold BatchNormalization and per-channel Mul/Add into Conv/Gemm/BatchNorm; MatMul+Add to Gemm
        fuse: bool = true,
        /// merge identical nodes, equal shape values and identical initializers
        cse: bool = true,
        /// remove nodes and initializers nothing reads
        dce: bool = true,
        /// infer value types and shapes
        infer: bool = true,
        /// graph inputs with initializer defaults become constants (dropped from the inputs), or stay overridable
        input_defaults: InputDefaults = InputDefaults::Constant,
    }
}

pub struct Cleanup {
    options: CleanupOptions,
}

impl NamedPass for Cleanup {
    const NAME: &'static str = "cleanup";
    const SUMMARY: &'static str = "exact simplification: constant and shape folding, no-op removal, CSE, affine folding into Conv/Gemm/BatchNorm, MatMul+Add to Gemm, dead code";
    type Options = CleanupOptions;

    fn new(options: CleanupOptions) -> crate::Result<Cleanup> {
        Ok(Cleanup { options })
    }
}

/// Rounds of rewriting before giving up on reaching a fixpoint.
const MAX_ROUNDS: usize = 16;

impl Pass for Cleanup {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn lossless(&self) -> bool {
        true
    }

    fn run(
        &mut self,
        model: &mut Model,
        _cx: &mut PassContext<'_>,
    ) -> Result<PassOutcome, IrError> {
        let mut outcome = PassOutcome::default();
        if self.options.input_defaults == InputDefaults::Constant {
            let g = &mut model.graph;
            let before = g.inputs.len();
            let inputs: Vec<_> = g
                .inputs
                .iter()
                .copied()
                .filter(|&v| g.value(v).init.is_none())
                .collect();
            g.inputs = inputs;
            let n = (before - g.inputs.len()) as u64;
            outcome.stat("input_defaults_made_constant", n);
            if n > 0 && model.ir_version < 4 {
                model.ir_version = 4;
            }
        }
        let graph = &mut model.graph;
        let mut budget = constants::Budget {
            per_tensor: self.options.fold_limit.0,
            growth_left: self.options.fold_growth.0,
            untie: self.options.untie,
        };
        for _ in 0..MAX_ROUNDS {
            let mut round = 0;
            if self.options.fold {
                let n = constants::constant_nodes_to_initializers(graph);
                outcome.stat("constants_to_initializers", n);
                round += n;
                let n = constants::fold(graph, &mut budget)?;
                outcome.stat("nodes_folded", n);
                round += n;
            }
            if self.options.simplify {
                let n = identities::bypass_no_ops(graph)?;
                outcome.stat("no_ops_removed", n);
                round += n;
                let n = identities::merge_chains(graph)?;
                outcome.stat("chains_merged", n);
                round += n;
            }
            if self.options.fuse {
                let n = affine::fold_into_producers(graph)?;
                outcome.stat("affine_ops_folded", n);
                round += n;
                let n = gemm::fuse_matmul_add(graph)?;
                outcome.stat("gemms_fused", n);
                round += n;
            }
            if self.options.cse {
                let n = cse::merge_duplicates(graph);
                outcome.stat("duplicates_merged", n);
                round += n;
                let n = initializers::merge_duplicates(graph);
                outcome.stat("initializers_merged", n);
                round += n;
            }
            if self.options.dce {
                let (nodes, inits) = sculpt_ir::rewrite::remove_dead_code(graph);
                outcome.stat("nodes_removed", nodes);
                outcome.stat("initializers_removed", inits);
                round += nodes + inits;
            }
            if round == 0 {
                break;
            }
        }
        let mut changed = outcome.statistics.iter().any(|(_, v)| v.as_f64() > 0.0);
        if graph.topo_order()? != graph.node_ids() {
            graph.sort_topologically()?;
            changed = true;
        }
        if self.options.infer {
            let typed = sculpt_ir::ops::infer::infer_graph(graph)? as u64;
            outcome.stat("types_inferred", typed);
            changed |= typed > 0;
        }
        outcome.changed = changed;
        Ok(outcome)
    }
}
