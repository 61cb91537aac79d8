//! The pass manager: runs a pipeline over a model, caching analyses and
//! dropping the ones a pass does not preserve, timing each pass, recording
//! model statistics before and after, and (with `verify_each`) running the
//! verifier after every pass, naming the pass that broke the IR.

use crate::analysis::cost::Cost;
use crate::calib::{judge, Calibrator};
use crate::context::{JudgingHints, PassContext};
use crate::pipeline::Pipeline;
use crate::transform::cleanup::Cleanup;
use crate::{registry, NamedPass, Pass, PassError, PassOutcome, Result};
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
    /// What the numeric guard said of a lossless pass (see
    /// [`PassManager::guard`]); `None` when it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<GuardVerdict>,
}

/// The numeric guard's word on one lossless pass.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "snake_case")]
pub enum GuardVerdict {
    /// The outputs agree; what was compared.
    Same(String),
    /// The outputs moved: the pass was undone.
    RolledBack(String),
    /// The model could not be run to compare (e.g. an op the runtime
    /// lacks); the pass was kept.
    NotChecked(String),
}

/// Compares the outputs of a model before and after a lossless pass:
/// `Ok(Ok(what was compared))`, `Ok(Err(how they differ))`, or `Err(why
/// they could not be compared)`.
pub type NumericGuard = std::sync::Arc<
    dyn Fn(&Model, &Model) -> std::result::Result<std::result::Result<String, String>, String>
        + Send
        + Sync,
>;

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub passes: Vec<PassRecord>,
    pub before: ModelStats,
    pub after: ModelStats,
    pub total_millis: f64,
}

pub struct PassManager {
    pipeline: Pipeline,
    /// One pass per pipeline step, built once from its options.
    passes: Vec<Box<dyn Pass>>,
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
    /// Run after every lossless pass that changed the model (see
    /// [`Pass::lossless`]); a pass whose outputs moved is rolled back and
    /// named in its record, and the pipeline goes on without it.
    pub guard: Option<NumericGuard>,
}

/// The label of the `cleanup` steps the manager inserts.
pub const INSERTED: &str = "auto";

/// One step of a run: a pipeline step, or a `cleanup#auto` the manager
/// inserts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scheduled {
    Given(usize),
    Inserted,
}

impl PassManager {
    /// The manager for `pipeline`, each step's pass built once: an unknown
    /// pass or option, or an option's bad value, is refused here.
    pub fn new(pipeline: Pipeline) -> Result<PassManager> {
        let passes = pipeline
            .steps
            .iter()
            .map(registry::build)
            .collect::<Result<Vec<_>>>()?;
        Ok(PassManager {
            pipeline,
            passes,
            verify_each: cfg!(debug_assertions),
            canonicalize: true,
            stats_memory: crate::calib::stats::DEFAULT_STATS_MEMORY,
            row_mask: None,
            progress: None,
            guard: None,
        })
    }

    /// The steps that run: the pipeline, with `cleanup#auto` before the
    /// first pass that needs canonical form (unless a cleanup comes right
    /// before it) and after the last transform (unless the pipeline ends
    /// with a cleanup), when `canonicalize` is on.
    fn schedule(&self) -> Vec<Scheduled> {
        let mut steps: Vec<Scheduled> = (0..self.passes.len()).map(Scheduled::Given).collect();
        let Some(first) = self.passes.iter().position(|p| p.needs_canonical()) else {
            return steps;
        };
        if !self.canonicalize {
            return steps;
        }
        let is_cleanup = |i: usize| self.pipeline.steps[i].name == Cleanup::NAME;
        if !is_cleanup(self.passes.len() - 1) {
            steps.push(Scheduled::Inserted);
        }
        if first == 0 || !is_cleanup(first - 1) {
            steps.insert(first, Scheduled::Inserted);
        }
        steps
    }

    /// The names of the steps that run, as reports show them
    /// (`cleanup#auto` for the inserted ones).
    pub fn step_names(&self) -> Vec<String> {
        self.schedule()
            .into_iter()
            .map(|s| self.step_name(s))
            .collect()
    }

    fn step_name(&self, step: Scheduled) -> String {
        match step {
            Scheduled::Given(i) => self.pipeline.steps[i].display_name(),
            Scheduled::Inserted => format!("{}#{INSERTED}", Cleanup::NAME),
        }
    }

    /// True when every step keeps the outputs (inserted cleanups do).
    pub fn lossless(&self) -> bool {
        self.passes.iter().all(|p| p.lossless())
    }

    /// Runs every step in order; stops at the first failure.
    pub fn run(&mut self, model: &mut Model, on_pass: impl FnMut(&str)) -> Result<RunReport> {
        self.run_with(model, None, on_pass)
    }

    /// Like [`PassManager::run`], with calibration data for passes that
    /// measure activations.
    pub fn run_with(
        &mut self,
        model: &mut Model,
        calibrator: Option<&mut dyn Calibrator>,
        mut on_pass: impl FnMut(&str),
    ) -> Result<RunReport> {
        let mut inserted = Cleanup::new(Default::default())?;
        let start = Instant::now();
        let mut cx = PassContext::new(calibrator);
        cx.stats_memory = self.stats_memory;
        cx.row_mask = self.row_mask.clone();
        cx.progress = self.progress.clone();
        let initial = ModelStats::of(model, &mut cx);
        let mut before = initial.clone();
        let mut records = Vec::new();
        for step in self.schedule() {
            let name = self.step_name(step);
            let pass: &mut dyn Pass = match step {
                Scheduled::Given(i) => self.passes[i].as_mut(),
                Scheduled::Inserted => &mut inserted,
            };
            on_pass(&name);
            let guard = self.guard.as_ref().filter(|_| pass.lossless());
            let saved = guard.map(|_| model.clone());
            let judged_reference =
                (pass.judged() && cx.calibrator.is_some()).then(|| model.clone());
            let t = Instant::now();
            let mut outcome: PassOutcome =
                pass.run(model, &mut cx)
                    .map_err(|source| PassError::Failed {
                        pass: name.clone(),
                        source,
                    })?;
            if outcome.changed && !pass.lossless() {
                // What the rewrite left unread (replaced weights, bypassed nodes).
                sculpt_ir::rewrite::remove_dead_code(&mut model.graph);
            }
            let hints = std::mem::take(&mut cx.judging);
            if let Some(reference) = judged_reference.filter(|_| outcome.changed) {
                judge(&mut outcome, &mut cx, &reference, model, hints);
            }
            let millis = t.elapsed().as_secs_f64() * 1e3;
            let check = match (guard, saved) {
                (Some(guard), Some(saved)) if outcome.changed => Some(match guard(&saved, model) {
                    Ok(Ok(what)) => GuardVerdict::Same(what),
                    Ok(Err(moved)) => {
                        *model = saved;
                        outcome.changed = false;
                        cx.invalidate_except(&[]);
                        outcome.details.push(format!(
                            "ROLLED BACK: the pass changed the outputs ({moved}); the model is as before it"
                        ));
                        GuardVerdict::RolledBack(moved)
                    }
                    Err(why) => GuardVerdict::NotChecked(why),
                }),
                _ => None,
            };
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
                check,
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

/// Measures a judged pass's result against the model before it on the
/// held-out calibration samples, and puts the figure in its outcome
/// (`output_rel_error` and a line of details). The rewrite stands when
/// only its measurement fails (the embedded runtime lacks a kernel another
/// runtime has): said, not fatal.
fn judge(
    outcome: &mut PassOutcome,
    cx: &mut PassContext<'_>,
    reference: &Model,
    changed: &Model,
    hints: JudgingHints,
) {
    let mask = cx.stats_options(changed).row_mask;
    let Some(calibrator) = cx.calibrator.as_deref_mut() else {
        return;
    };
    let (measured_model, stand_in_note) = match &hints.stand_in {
        Some((model, why)) => (model, Some(why)),
        None => (changed, None),
    };
    let kept = hints.reference_outputs;
    match judge::judged_error(calibrator, reference, measured_model, mask, kept) {
        Ok(measured) => {
            outcome.stat("output_rel_error", measured);
            outcome.details.push(format!(
                "measured output error on held-out calibration samples: mean relative squared {measured:.3e}"
            ));
            outcome
                .details
                .extend(stand_in_note.map(|why| format!("  ({why})")));
        }
        Err(e) => outcome
            .details
            .push(format!("output error not measured: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"ir_version 8
opset "" 17
graph "g" (%x: f32[2]) -> (%y) {
  %a = Identity(%x)
  %y = Relu(%a)
}
"#;

    fn run(verdict: std::result::Result<String, String>) -> (Model, RunReport) {
        let mut model = sculpt_ir::text::parse(MODEL).unwrap();
        let mut manager =
            PassManager::new(Pipeline::parse("cleanup,prune{ratio=0.0}").unwrap()).unwrap();
        manager.canonicalize = false;
        manager.guard = Some(std::sync::Arc::new(move |_: &Model, _: &Model| {
            Ok(verdict.clone())
        }));
        let report = manager.run(&mut model, |_| {}).unwrap();
        (model, report)
    }

    #[test]
    fn a_lossless_pass_whose_outputs_moved_is_rolled_back() {
        let (model, report) = run(Err("y differs by 0.5".into()));
        assert_eq!(model.graph.node_count(), 2, "the Identity is back");
        let cleanup = &report.passes[0];
        assert!(matches!(&cleanup.check, Some(GuardVerdict::RolledBack(m)) if m.contains("0.5")));
        assert!(!cleanup.outcome.changed);
        assert!(cleanup
            .outcome
            .details
            .iter()
            .any(|d| d.starts_with("ROLLED BACK")));
        // Lossy passes are not guarded.
        assert!(report.passes[1].check.is_none());
    }

    #[test]
    fn a_lossless_pass_whose_outputs_agree_is_kept() {
        let (model, report) = run(Ok("1 output(s)".into()));
        assert_eq!(model.graph.node_count(), 1);
        assert!(matches!(
            &report.passes[0].check,
            Some(GuardVerdict::Same(_))
        ));
    }
}
