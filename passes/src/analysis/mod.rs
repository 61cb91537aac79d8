//! Analyses: facts computed from a model, cached by the pass context until
//! a pass that does not preserve them changes the model.

pub mod cost;
pub mod residual_blocks;
pub mod zero_groups;
pub mod zero_values;

use sculpt_ir::Model;

pub trait Analysis: Sized + 'static {
    const NAME: &'static str;
    fn compute(model: &Model) -> Self;
}
