//! The pass manager: runs a pipeline over a model, caching analyses and
//! dropping the ones a pass does not preserve, timing each pass, recording
//! model statistics before and after, and (with `verify_each`) running the
//! verifier after every pass, naming the pass that broke the IR.

use crate::analysis::cost::Cost;
use crate::context::{Calibrator, PassContext};
use crate::pipeline::{Pipeline, PipelineStep};
use crate::{registry, Pass, PassError, PassOutcome, Result};
use sculpt_ir::Model;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelStats {
    pub nodes: usize,
    pub params: u64,
    /// Bytes the parameters take as stored.
    pub param_bytes: u64,
    pub flops: u64,
    pub weight_bytes: u64,
}

impl ModelStats {
    pub fn of(model: &Model, cx: &mut PassContext) -> ModelStats {
        let flops = cx.analysis::<Cost>(model).flops;
        ModelStats {
            nodes: model.graph.node_count(),
            params: model.graph.param_count(),
            param_bytes: model.graph.param_bytes(),
            flops,
            weight_bytes: model.graph.weight_bytes(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PassRecord {
    pub pass: String,
    pub millis: f64,
    pub outcome: PassOutcome,
    pub before: ModelStats,
    pub after: ModelStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub passes: Vec<PassRecord>,
    pub before: ModelStats,
    pub after: ModelStats,
    pub total_millis: f64,
}

pub struct PassManager {
    pub pipeline: Pipeline,
    pub verify_each: bool,
    /// Run `cleanup` before the first pass that analyses the graph and
    /// after the last transform, where the pipeline does not already.
    pub canonicalize: bool,
    /// Most memory activation statistics may take, in bytes.
    pub stats_memory: u64,
    /// The model input that marks padding rows for statistics (`none`: no
    /// mask; unset: `attention_mask` where the model has it).
    pub row_mask: Option<String>,
    /// Where passes report the progress of long work.
    pub progress: Option<crate::context::Progress>,
}

/// The label of the `cleanup` steps the manager inserts.
pub const INSERTED: &str = "auto";

impl PassManager {
    pub fn new(pipeline: Pipeline) -> PassManager {
        PassManager {
            pipeline,
            verify_each: cfg!(debug_assertions),
            canonicalize: true,
            stats_memory: crate::context::DEFAULT_STATS_MEMORY,
            row_mask: None,
            progress: None,
        }
    }

    /// The steps that run: the pipeline, with `cleanup#auto` before the
    /// first pass that needs canonical form (unless a cleanup comes right
    /// before it) and after the last transform (unless the pipeline ends
    /// with a cleanup), when `canonicalize` is on.
    pub fn steps(&self) -> Result<Vec<(PipelineStep, Box<dyn Pass>)>> {
        let mut steps: Vec<(PipelineStep, Box<dyn Pass>)> = self
            .pipeline
            .steps
            .iter()
            .map(|s| Ok((s.clone(), registry::build(s)?)))
            .collect::<Result<Vec<_>>>()?;
        if !self.canonicalize {
            return Ok(steps);
        }
        let is_cleanup = |s: &PipelineStep| s.name == "cleanup";
        let Some(first) = steps.iter().position(|(_, p)| p.needs_canonical()) else {
            return Ok(steps);
        };
        let inserted = || -> Result<(PipelineStep, Box<dyn Pass>)> {
            let step = PipelineStep {
                name: "cleanup".into(),
                label: Some(INSERTED.into()),
                options: crate::pipeline::Options::new("cleanup", Default::default()),
            };
            let pass = registry::build(&step)?;
            Ok((step, pass))
        };
        if !steps.last().is_some_and(|(s, _)| is_cleanup(s)) {
            steps.push(inserted()?);
        }
        if first == 0 || !is_cleanup(&steps[first - 1].0) {
            steps.insert(first, inserted()?);
        }
        Ok(steps)
    }

    /// Runs every step in order; stops at the first failure.
    pub fn run(&self, model: &mut Model, on_pass: impl FnMut(&str)) -> Result<RunReport> {
        self.run_with(model, None, on_pass)
    }

    /// Like [`PassManager::run`], with calibration data for passes that
    /// measure activations.
    pub fn run_with(
        &self,
        model: &mut Model,
        calibrator: Option<&mut dyn Calibrator>,
        mut on_pass: impl FnMut(&str),
    ) -> Result<RunReport> {
        let passes: Vec<(String, Box<dyn Pass>)> = self
            .steps()?
            .into_iter()
            .map(|(s, p)| (s.display_name(), p))
            .collect();
        let start = Instant::now();
        let mut cx = PassContext::new(calibrator);
        cx.stats_memory = self.stats_memory;
        cx.row_mask = self.row_mask.clone();
        cx.progress = self.progress.clone();
        let initial = ModelStats::of(model, &mut cx);
        let mut before = initial.clone();
        let mut records = Vec::new();
        for (name, mut pass) in passes {
            on_pass(&name);
            let t = Instant::now();
            let outcome: PassOutcome =
                pass.run(model, &mut cx)
                    .map_err(|source| PassError::Failed {
                        pass: name.clone(),
                        source,
                    })?;
            let millis = t.elapsed().as_secs_f64() * 1e3;
            if outcome.changed {
                cx.invalidate_except(pass.preserves());
            }
            if self.verify_each {
                let problems = sculpt_ir::verify::verify_model(model);
                if !problems.is_empty() {
                    return Err(PassError::Verify {
                        pass: name,
                        problems: problems
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
            }
            let after = ModelStats::of(model, &mut cx);
            records.push(PassRecord {
                pass: name,
                millis,
                outcome,
                before: before.clone(),
                after: after.clone(),
            });
            before = after;
        }
        Ok(RunReport {
            pipeline: self.pipeline.to_string(),
            passes: records,
            before: initial,
            after: before,
            total_millis: start.elapsed().as_secs_f64() * 1e3,
        })
    }
}
