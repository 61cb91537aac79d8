//! What a pass gets besides the model: cached analyses, and the
//! [`Calibrator`] through which passes that measure activations run the
//! model on calibration data (the runtime crate provides it; passes never
//! run models themselves).

use crate::analysis::Analysis;
use sculpt_ir::Model;
use std::any::Any;
use std::collections::HashMap;

/// One requested value for one chunk of calibration samples: its shape
/// (the chunk's samples on axis 0) and its data as f32.
#[derive(Clone, Debug, Default)]
pub struct ValueChunk {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Receives one chunk of one value: (index in the requested values, shape,
/// data).
pub type Visit<'a> = dyn FnMut(usize, &[usize], &[f32]) + 'a;

/// Receives every requested value for one chunk of samples, in request order.
pub type VisitChunk<'a> = dyn FnMut(&[ValueChunk]) + 'a;

/// Runs models on calibration samples for passes that need activations.
pub trait Calibrator {
    /// Runs `model` on the calibration samples, a chunk of samples at a
    /// time (samples in order), and hands `visit` the values named in
    /// `values` for each chunk. Only one chunk is held at a time.
    fn visit_chunks(
        &mut self,
        model: &Model,
        values: &[String],
        visit: &mut VisitChunk<'_>,
    ) -> Result<(), String>;

    /// How many calibration samples are visited (all, or the selection).
    fn samples(&self) -> usize;

    /// Visit only the samples in `range` from now on (`None`: all).
    fn select_samples(&mut self, range: Option<std::ops::Range<usize>>);

    /// The shape of one sample of each model input, by input name (the
    /// sample axis first, 1): what symbolic dims are for these data.
    fn sample_shapes(&self) -> Vec<(String, Vec<usize>)> {
        Vec::new()
    }

    /// Like [`Calibrator::visit_chunks`], one value at a time:
    /// `visit(index in values, shape, data)`.
    fn visit(
        &mut self,
        model: &Model,
        values: &[String],
        visit: &mut Visit<'_>,
    ) -> Result<(), String> {
        self.visit_chunks(model, values, &mut |chunk| {
            for (i, c) in chunk.iter().enumerate() {
                visit(i, &c.shape, &c.data);
            }
        })
    }

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
}

/// The default cap on activation statistics (`--stats-memory`).
pub const DEFAULT_STATS_MEMORY: u64 = 4 << 30;

impl<'a> PassContext<'a> {
    pub fn new(calibrator: Option<&'a mut dyn Calibrator>) -> PassContext<'a> {
        PassContext {
            cache: HashMap::new(),
            calibrator,
            stats_memory: DEFAULT_STATS_MEMORY,
            row_mask: None,
            progress: None,
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
    pub fn stats_options(&self, model: &Model) -> crate::linear::StatsOptions {
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
        crate::linear::StatsOptions {
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
}
