//! `opset{to=N}`: raises the model's default-domain opset to `N`, node by
//! node ([`sculpt_ir::opset::raise_opset`]): attributes that became
//! inputs are moved, ops whose meaning changed are written out in the new
//! form, and what cannot be carried over is refused with the node and the
//! reason. A model at `N` or above is left as it is.
//!
//! Preserves: the model's function exactly.

use crate::context::PassContext;
use crate::{NamedPass, Pass, PassOutcome};
use sculpt_ir::{IrError, Model};

/// The newest default-domain opset sculpt writes.
pub const NEWEST_OPSET: i64 = 21;

crate::pass_options! {
    /// Options of `opset`.
    pub struct RaiseOpsetOptions {
        /// the opset to raise to (7 to 21; a model already there is left alone)
        to: usize = NEWEST_OPSET as usize,
    }
}

pub struct RaiseOpset {
    target: i64,
}

impl NamedPass for RaiseOpset {
    const NAME: &'static str = "opset";
    const SUMMARY: &'static str = "raise the default-domain opset, node by node: attributes that became inputs are moved, Softmax's pre-13 flattening is written out, what cannot be converted is refused with the node";
    type Options = RaiseOpsetOptions;

    fn new(options: RaiseOpsetOptions) -> crate::Result<RaiseOpset> {
        let target = options.to as i64;
        if !(sculpt_ir::opset::OLDEST_RAISED..=NEWEST_OPSET).contains(&target) {
            return Err(crate::options::invalid(
                Self::NAME,
                "to",
                format!("{} to {NEWEST_OPSET}", sculpt_ir::opset::OLDEST_RAISED),
            ));
        }
        Ok(RaiseOpset { target })
    }
}

impl Pass for RaiseOpset {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn lossless(&self) -> bool {
        true
    }

    fn run(&mut self, model: &mut Model, _: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        let from = model.onnx_opset();
        sculpt_ir::opset::raise_opset(model, self.target)?;
        let mut outcome = PassOutcome {
            changed: from < self.target,
            ..Default::default()
        };
        outcome.stat("opset_before", from as u64);
        outcome.stat("opset_after", model.onnx_opset() as u64);
        outcome.details.push(if outcome.changed {
            format!("default-domain opset {from} -> {}", self.target)
        } else {
            format!("opset {from} is already at or above {}", self.target)
        });
        Ok(outcome)
    }
}
