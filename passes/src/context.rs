//! What a pass gets besides the model: cached analyses, and the
//! [`Calibrator`] through which passes that measure activations run the
//! model on calibration data (the runtime crate provides it; passes never
//! run models themselves).

use crate::analysis::Analysis;
use crate::calib::stats::{collect_keeping, KeptValues, DEFAULT_STATS_MEMORY};
use crate::calib::{Calibrator, SiteStats, StatsOptions, StatsRequest};
use sculpt_ir::Model;
use std::any::Any;
use std::collections::HashMap;

/// Reports the progress of long work: `(what, done, total)`. Called from
/// any thread.
pub type Progress = std::sync::Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// Cached analyses, shared by the passes of one run, and the calibrator.
#[derive(Default)]
pub struct PassContext<'a> {
    cache: HashMap<&'static str, Box<dyn Any>>,
    pub calibrator: Option<&'a mut dyn Calibrator>,
    /// Most memory activation statistics may take, in bytes.
    pub stats_memory: u64,
    /// A model input whose zeros mark padding rows that statistics skip
    /// (`--calib-mask`); `None`: `attention_mask` when the model has it.
    pub row_mask: Option<String>,
    /// Where long work reports its progress.
    pub progress: Option<Progress>,
    /// What a judged pass hands the manager's measurement of its error
    /// ([`Pass::judged`](crate::Pass::judged)); taken after each pass.
    pub judging: JudgingHints,
}

/// What a judged pass may tell the pass manager for measuring its output
/// error (both optional: without them the manager runs the reference).
#[derive(Default)]
pub struct JudgingHints {
    /// The reference model's outputs on the judging samples, kept from a
    /// statistics run of the pass on the model before it changed it.
    pub reference_outputs: Option<KeptValues>,
    /// A model to measure in place of the result, and a line saying why
    /// (the embedded runtime lacks an op the result uses).
    pub stand_in: Option<(Model, String)>,
}

impl<'a> PassContext<'a> {
    pub fn new(calibrator: Option<&'a mut dyn Calibrator>) -> PassContext<'a> {
        PassContext {
            cache: HashMap::new(),
            calibrator,
            stats_memory: DEFAULT_STATS_MEMORY,
            row_mask: None,
            progress: None,
            judging: JudgingHints::default(),
        }
    }

    /// Reports `done` of `total` steps of `what` (when anyone listens).
    pub fn report_progress(&self, what: &str, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(what, done, total);
        }
    }

    /// Options for activation statistics of `model`: the memory cap, and
    /// the row mask (given, or the model's `attention_mask` input).
    pub fn stats_options(&self, model: &Model) -> StatsOptions {
        let g = &model.graph;
        let row_mask = match self.row_mask.as_deref() {
            Some("none") => None,
            Some(name) => Some(name.to_string()),
            None => g
                .inputs
                .iter()
                .map(|&v| &g.value(v).name)
                .find(|n| n.as_str() == "attention_mask")
                .cloned(),
        };
        StatsOptions {
            memory: self.stats_memory,
            row_mask,
            ..Default::default()
        }
    }

    /// The analysis `A` of `model`, computed once and cached.
    pub fn analysis<A: Analysis>(&mut self, model: &Model) -> &A {
        self.cache
            .entry(A::NAME)
            .or_insert_with(|| Box::new(A::compute(model)))
            .downcast_ref::<A>()
            .expect("analysis cached under its own name")
    }

    pub(crate) fn invalidate_except(&mut self, preserved: &[&str]) {
        self.cache.retain(|name, _| preserved.contains(name));
    }

    pub fn cached(&self) -> Vec<&'static str> {
        self.cache.keys().copied().collect()
    }

    /// The calibrator, or an error saying that `pass` needs calibration
    /// data (and what for).
    pub fn calibrator(
        &mut self,
        pass: &str,
        what: &str,
    ) -> Result<&mut (dyn Calibrator + 'a), sculpt_ir::IrError> {
        self.calibrator.as_deref_mut().ok_or_else(|| {
            sculpt_ir::IrError::Invalid(format!(
                "{pass} {what} on calibration data: give --calib DATA.npz or --calib-random N"
            ))
        })
    }

    /// The statistics of `requests` on every calibration sample, keeping
    /// the model's outputs on the judging samples from the same run for
    /// the manager's measurement of the pass's error; `pass` names who
    /// asks, in errors.
    pub fn site_stats_judged(
        &mut self,
        model: &Model,
        requests: &[StatsRequest],
        pass: &'static str,
    ) -> Result<Vec<std::sync::Arc<SiteStats>>, sculpt_ir::IrError> {
        let options = self.stats_options(model);
        let calibrator = self.calibrator(pass, "measures activations")?;
        let split = calibrator.split();
        let outputs = crate::calib::judge::output_names(model);
        let (stats, kept) = collect_keeping(
            model,
            requests,
            calibrator,
            &options,
            split.all(),
            &outputs,
            split.judging(),
        )
        .map_err(|e| sculpt_ir::IrError::Invalid(format!("{pass}: calibration run failed: {e}")))?;
        self.judging.reference_outputs = kept;
        Ok(stats)
    }
}
