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
//! - [`dead_code`]: nodes nothing reads and initializers nothing reads go;
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
pub mod dead_code;
mod gemm;
mod identities;
pub(crate) mod initializers;

use crate::context::PassContext;
use crate::pipeline::Options;
use crate::{Pass, PassOutcome};
use sculpt_ir::{IrError, Model};

pub struct Cleanup {
    pub dce: bool,
    pub infer: bool,
    pub fold: bool,
    pub simplify: bool,
    pub fuse: bool,
    pub cse: bool,
    /// Largest constant folding may create, in bytes.
    pub fold_limit: u64,
    /// Most the model's weights may grow through folding, in bytes.
    pub fold_growth: u64,
    /// Fold nodes of weights other nodes read too (see [`constants`]).
    pub untie: bool,
    /// Turn graph inputs with initializer defaults into plain constants.
    pub constant_input_defaults: bool,
}

impl Cleanup {
    pub fn from_options(options: &Options) -> crate::Result<Cleanup> {
        Ok(Cleanup {
            dce: options.bool("dce")?,
            infer: options.bool("infer")?,
            fold: options.bool("fold")?,
            simplify: options.bool("simplify")?,
            fuse: options.bool("fuse")?,
            cse: options.bool("cse")?,
            fold_limit: options.bytes("fold_limit")?,
            fold_growth: options.bytes("fold_growth")?,
            untie: options.bool("untie")?,
            constant_input_defaults: options.choice("input_defaults")? == "constant",
        })
    }
}

/// Rounds of rewriting before giving up on reaching a fixpoint.
const MAX_ROUNDS: usize = 16;

impl Pass for Cleanup {
    fn name(&self) -> &'static str {
        "cleanup"
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
        if self.constant_input_defaults {
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
            per_tensor: self.fold_limit,
            growth_left: self.fold_growth,
            untie: self.untie,
        };
        for _ in 0..MAX_ROUNDS {
            let mut round = 0;
            if self.fold {
                let n = constants::constant_nodes_to_initializers(graph);
                outcome.stat("constants_to_initializers", n);
                round += n;
                let n = constants::fold(graph, &mut budget)?;
                outcome.stat("nodes_folded", n);
                round += n;
            }
            if self.simplify {
                let n = identities::bypass_no_ops(graph)?;
                outcome.stat("no_ops_removed", n);
                round += n;
                let n = identities::merge_chains(graph)?;
                outcome.stat("chains_merged", n);
                round += n;
            }
            if self.fuse {
                let n = affine::fold_into_producers(graph)?;
                outcome.stat("affine_ops_folded", n);
                round += n;
                let n = gemm::fuse_matmul_add(graph)?;
                outcome.stat("gemms_fused", n);
                round += n;
            }
            if self.cse {
                let n = cse::merge_duplicates(graph);
                outcome.stat("duplicates_merged", n);
                round += n;
                let n = initializers::merge_duplicates(graph);
                outcome.stat("initializers_merged", n);
                round += n;
            }
            if self.dce {
                let (nodes, inits) = dead_code::remove_dead_code(graph);
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
        if self.infer {
            let typed = sculpt_ir::ops::infer::infer_graph(graph)? as u64;
            outcome.stat("types_inferred", typed);
            changed |= typed > 0;
        }
        outcome.changed = changed;
        Ok(outcome)
    }
}
