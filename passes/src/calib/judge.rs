//! Measuring a changed model against its reference on calibration data:
//! the relative squared error of each output, `Σ‖y − y₀‖² / Σ‖y₀‖²` on
//! the samples the reference was run on, averaged over the outputs (so that
//! a small output, a pooled and normalised embedding beside the hidden
//! states it came from, counts as much as a large one). Rows of padding
//! (the zeros of the row mask, `attention_mask` by default) are left out
//! of the outputs laid out by token. The reference's outputs are run
//! once and kept when they are small enough; otherwise each measurement
//! runs the two models side by side ([`crate::calib::twin`]), so memory
//! stays bounded either way.

use crate::calib::twin::{reference_name, twin};
use crate::calib::{Calibrator, ValueChunk};
use sculpt_ir::{IrError, Model};
use std::ops::Range;

/// The most memory the reference outputs may take when kept.
const STORED_OUTPUTS: usize = 256 << 20;

/// What a changed model's outputs are measured against.
pub struct OutputReference<'m> {
    model: &'m Model,
    /// The reference's outputs, each concatenated over the samples, when
    /// they fit.
    stored: Option<Vec<Vec<f32>>>,
    /// The model input whose zeros mark padding rows.
    mask: Option<String>,
    /// The calibration samples it was run on, and the changed models are.
    samples: Range<usize>,
}

fn failed(e: String) -> IrError {
    IrError::Invalid(format!("calibration run failed: {e}"))
}

pub fn output_names(model: &Model) -> Vec<String> {
    model
        .graph
        .outputs
        .iter()
        .map(|&v| model.graph.value(v).name.clone())
        .collect()
}

/// Per output, the sum of squared differences and of the reference's
/// squares.
type ErrorSums = Vec<(f64, f64)>;

/// Adds one chunk's squared differences and the reference's squares to
/// `sums`, per output, leaving out the rows `mask` marks as padding.
fn add_error(y: &[ValueChunk], y0: &[&[f32]], mask: Option<&ValueChunk>, sums: &mut ErrorSums) {
    sums.resize(y.len().max(sums.len()), (0.0, 0.0));
    for ((y, y0), (diff, norm)) in y.iter().zip(y0).zip(sums.iter_mut()) {
        let row = mask.and_then(|m| padding_rows(y, m));
        for (i, (a, b)) in y.data.iter().zip(y0.iter()).enumerate() {
            let padding = row.as_ref().is_some_and(|(width, keep)| !keep[i / width]);
            if !padding && a.is_finite() && b.is_finite() {
                *diff += ((a - b) as f64).powi(2);
                *norm += (*b as f64).powi(2);
            }
        }
    }
}

/// Where `y` has one row per mask entry (`[batch, tokens, …]` beside a
/// `[batch, tokens]` mask): the row width and which rows count.
fn padding_rows(y: &ValueChunk, mask: &ValueChunk) -> Option<(usize, Vec<bool>)> {
    let rows = mask.data.len();
    if rows == 0
        || !y.data.len().is_multiple_of(rows)
        || y.shape.get(..mask.shape.len())? != mask.shape
    {
        return None;
    }
    let width = y.data.len() / rows;
    Some((width, mask.data.iter().map(|&m| m != 0.0).collect()))
}

/// The mean over outputs of each output's relative squared error (outputs
/// that are zero in the reference and the changed model alike left out).
fn mean_relative(sums: &ErrorSums) -> f64 {
    let errors: Vec<f64> = sums
        .iter()
        .filter(|(diff, norm)| *diff > 0.0 || *norm > 0.0)
        .map(|(diff, norm)| diff / norm.max(f64::MIN_POSITIVE))
        .collect();
    errors.iter().sum::<f64>() / errors.len().max(1) as f64
}

impl<'m> OutputReference<'m> {
    /// Runs `model` once on `samples`, keeping its outputs when they fit
    /// in [`STORED_OUTPUTS`]; `mask` names the input whose zeros mark
    /// padding rows (see [`crate::context::PassContext::stats_options`]).
    pub fn new(
        calibrator: &mut dyn Calibrator,
        model: &'m Model,
        mask: Option<String>,
        samples: Range<usize>,
    ) -> Result<Self, IrError> {
        let names = output_names(model);
        let mut stored: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
        let mut bytes = 0usize;
        let mut fits = true;
        calibrator
            .visit_chunks(model, &names, samples.clone(), &mut |chunk| {
                bytes += chunk.iter().map(|c| c.data.len() * 4).sum::<usize>();
                fits &= bytes <= STORED_OUTPUTS;
                if fits {
                    for (all, c) in stored.iter_mut().zip(chunk) {
                        all.extend_from_slice(&c.data);
                    }
                }
            })
            .map_err(failed)?;
        Ok(OutputReference {
            model,
            stored: fits.then_some(stored),
            mask,
            samples,
        })
    }

    /// The reference's outputs as already computed on `samples` (each
    /// concatenated over them).
    pub fn from_outputs(
        model: &'m Model,
        outputs: Vec<Vec<f32>>,
        mask: Option<String>,
        samples: Range<usize>,
    ) -> Self {
        OutputReference {
            model,
            stored: Some(outputs),
            mask,
            samples,
        }
    }

    /// The mean relative squared error of `changed`'s outputs (same
    /// samples).
    pub fn relative_error(
        &self,
        calibrator: &mut dyn Calibrator,
        changed: &Model,
    ) -> Result<f64, IrError> {
        let outputs = output_names(changed);
        let count = outputs.len();
        let mut sums = ErrorSums::new();
        match &self.stored {
            Some(stored) => {
                let mut names = outputs.clone();
                names.extend(self.mask.clone());
                let mut at = vec![0usize; count];
                let mut short = false;
                calibrator
                    .visit_chunks(changed, &names, self.samples.clone(), &mut |chunk| {
                        let mut y0: Vec<&[f32]> = Vec::with_capacity(count);
                        for (i, y) in chunk[..count].iter().enumerate() {
                            let end = at[i] + y.data.len();
                            match stored.get(i).and_then(|s| s.get(at[i]..end)) {
                                Some(part) => y0.push(part),
                                None => short = true,
                            }
                            at[i] = end;
                        }
                        if !short {
                            add_error(&chunk[..count], &y0, chunk.get(count), &mut sums);
                        }
                    })
                    .map_err(failed)?;
                if short {
                    return Err(IrError::Invalid(
                        "the changed model gives more outputs than its reference did".into(),
                    ));
                }
            }
            None => {
                let paired = twin(changed, self.model)?;
                let mut names = outputs.clone();
                names.extend(outputs.iter().map(|n| reference_name(n)));
                names.extend(self.mask.clone());
                calibrator
                    .visit_chunks(&paired, &names, self.samples.clone(), &mut |chunk| {
                        let y0: Vec<&[f32]> = chunk[count..2 * count]
                            .iter()
                            .map(|c| &c.data[..])
                            .collect();
                        add_error(&chunk[..count], &y0, chunk.get(2 * count), &mut sums)
                    })
                    .map_err(failed)?;
            }
        }
        Ok(mean_relative(&sums))
    }
}

/// `changed`'s mean relative output error against `reference` on the
/// judging samples ([`crate::calib::SampleSplit::judging`]), its outputs
/// there run now or `kept` from an earlier run (see
/// [`crate::calib::stats::collect_keeping`]).
pub fn judged_error(
    calibrator: &mut dyn Calibrator,
    reference: &Model,
    changed: &Model,
    mask: Option<String>,
    kept: Option<Vec<Vec<f32>>>,
) -> Result<f64, IrError> {
    let judging = calibrator.split().judging();
    let reference = match kept {
        Some(outputs) => Ok(OutputReference::from_outputs(
            reference, outputs, mask, judging,
        )),
        None => OutputReference::new(&mut *calibrator, reference, mask, judging),
    };
    reference.and_then(|r| r.relative_error(&mut *calibrator, changed))
}
