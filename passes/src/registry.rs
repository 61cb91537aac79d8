//! The passes a pipeline can name, with their options, for `sculpt passes`
//! and for building pipeline steps.

use crate::pipeline::{Options, PipelineStep};
use crate::{Pass, PassError, Result};

pub struct OptionInfo {
    pub name: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub options: &'static [OptionInfo],
    build: fn(&Options) -> Result<Box<dyn Pass>>,
}

pub static PASSES: &[PassInfo] = &[PassInfo {
    name: "cleanup",
    summary: "dead-code and unused-initializer removal, topological sort, shape inference (exact)",
    options: &[
        OptionInfo {
            name: "dce",
            kind: "bool",
            default: "true",
            help: "remove nodes and initializers nothing reads",
        },
        OptionInfo {
            name: "infer",
            kind: "bool",
            default: "true",
            help: "infer value types and shapes",
        },
    ],
    build: |o| {
        Ok(Box::new(crate::transform::cleanup::Cleanup::from_options(
            o,
        )?))
    },
}];

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    PASSES.iter().find(|p| p.name == name)
}

/// Builds the pass for one step, rejecting unknown names and options.
pub fn build(step: &PipelineStep) -> Result<Box<dyn Pass>> {
    let info = lookup(&step.name).ok_or_else(|| PassError::UnknownPass {
        name: step.name.clone(),
        known: PASSES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })?;
    let known: Vec<&str> = info.options.iter().map(|o| o.name).collect();
    step.options.reject_unknown(&known)?;
    (info.build)(&step.options)
}
