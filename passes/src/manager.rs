//! The pass manager: runs a pipeline over a model, caching analyses and
//! dropping the ones a pass does not preserve, timing each pass, recording
//! model statistics before and after, and (with `verify_each`) running the
//! verifier after every pass, naming the pass that broke the IR.

use crate::analysis::{cost::Cost, Analysis};
use crate::pipeline::Pipeline;
use crate::{registry, PassError, PassOutcome, Result};
use sculpt_ir::Model;
use serde::Serialize;
use std::any::Any;
use std::collections::HashMap;
use std::time::Instant;

/// Receives one chunk of one value: (index in the requested values, shape,
/// data).
pub type Visit<'a> = dyn FnMut(usize, &[usize], &[f32]) + 'a;

/// Runs models on calibration data for passes that need activations. The
/// runtime crate provides it; passes never run models themselves.
pub trait Calibrator {
    /// Runs `model` on the calibration samples, in chunks, and hands every
    /// chunk of every value in `values` to `visit(index in values, shape,
    /// data)`, samples in order (the chunk's first axis).
    fn visit(
        &mut self,
        model: &Model,
        values: &[String],
        visit: &mut Visit<'_>,
    ) -> Result<(), String>;

    /// Each value in `values` for all samples, flattened (samples in order).
    fn values(&mut self, model: &Model, values: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut all = vec![Vec::new(); values.len()];
        self.visit(model, values, &mut |i, _, data| {
            all[i].extend_from_slice(data)
        })?;
        Ok(all)
    }

    /// The same for the model's outputs.
    fn outputs(&mut self, model: &Model) -> Result<Vec<Vec<f32>>, String> {
        let names: Vec<String> = model
            .graph
            .outputs
            .iter()
            .map(|&v| model.graph.value(v).name.clone())
            .collect();
        self.values(model, &names)
    }
}

/// Cached analyses, shared by the passes of one run, and the calibrator.
#[derive(Default)]
pub struct PassContext<'a> {
    cache: HashMap<&'static str, Box<dyn Any>>,
    pub calibrator: Option<&'a mut dyn Calibrator>,
}

impl PassContext<'_> {
    /// The analysis `A` of `model`, computed once and cached.
    pub fn analysis<A: Analysis>(&mut self, model: &Model) -> &A {
        self.cache
            .entry(A::NAME)
            .or_insert_with(|| Box::new(A::compute(model)))
            .downcast_ref::<A>()
            .expect("analysis cached under its own name")
    }

    fn invalidate_except(&mut self, preserved: &[&str]) {
        self.cache.retain(|name, _| preserved.contains(name));
    }

    pub fn cached(&self) -> Vec<&'static str> {
        self.cache.keys().copied().collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelStats {
    pub nodes: usize,
    pub params: u64,
    pub flops: u64,
    pub weight_bytes: u64,
}

impl ModelStats {
    pub fn of(model: &Model, cx: &mut PassContext) -> ModelStats {
        let flops = cx.analysis::<Cost>(model).flops;
        ModelStats {
            nodes: model.graph.node_count(),
            params: model.graph.param_count(),
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
}

impl PassManager {
    pub fn new(pipeline: Pipeline) -> PassManager {
        PassManager {
            pipeline,
            verify_each: cfg!(debug_assertions),
        }
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
        let passes = self
            .pipeline
            .steps
            .iter()
            .map(|s| Ok((s.display_name(), registry::build(s)?)))
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        let mut cx = PassContext {
            cache: HashMap::new(),
            calibrator,
        };
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
