//! Measuring a changed model against its reference on calibration data:
//! the relative squared error of all its outputs, `Σ‖y − y₀‖² / Σ‖y₀‖²`,
//! on the samples the calibrator visits. The reference's outputs are run
//! once and kept when they are small enough; otherwise each measurement
//! runs the two models side by side ([`crate::linear::twin`]), so memory
//! stays bounded either way.

use crate::context::{Calibrator, ValueChunk};
use crate::linear::twin::{reference_name, twin};
use sculpt_ir::{IrError, Model};

/// The most memory the reference outputs may take when kept.
const STORED_OUTPUTS: usize = 256 << 20;

/// What a changed model's outputs are measured against.
pub struct OutputReference<'m> {
    model: &'m Model,
    /// The reference's outputs, chunk by chunk, when they fit.
    stored: Option<Vec<Vec<ValueChunk>>>,
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

/// Adds the squared differences and the reference's squares of one chunk.
fn add_error(y: &[ValueChunk], y0: &[ValueChunk], diff: &mut f64, norm: &mut f64) {
    for (y, y0) in y.iter().zip(y0) {
        for (a, b) in y.data.iter().zip(&y0.data) {
            if a.is_finite() && b.is_finite() {
                *diff += ((a - b) as f64).powi(2);
                *norm += (*b as f64).powi(2);
            }
        }
    }
}

impl<'m> OutputReference<'m> {
    /// Runs `model` once on the calibrator's samples, keeping its outputs
    /// when they fit in [`STORED_OUTPUTS`].
    pub fn new(calibrator: &mut dyn Calibrator, model: &'m Model) -> Result<Self, IrError> {
        let names = output_names(model);
        let mut chunks = Vec::new();
        let mut bytes = 0usize;
        let mut fits = true;
        calibrator
            .visit_chunks(model, &names, &mut |chunk| {
                bytes += chunk.iter().map(|c| c.data.len() * 4).sum::<usize>();
                fits &= bytes <= STORED_OUTPUTS;
                if fits {
                    chunks.push(chunk.to_vec());
                }
            })
            .map_err(failed)?;
        Ok(OutputReference {
            model,
            stored: fits.then_some(chunks),
        })
    }

    /// The relative squared error of `changed`'s outputs (same samples).
    pub fn relative_error(
        &self,
        calibrator: &mut dyn Calibrator,
        changed: &Model,
    ) -> Result<f64, IrError> {
        let outputs = output_names(changed);
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        match &self.stored {
            Some(stored) => {
                let mut at = 0;
                calibrator
                    .visit_chunks(changed, &outputs, &mut |chunk| {
                        if let Some(y0) = stored.get(at) {
                            add_error(chunk, y0, &mut diff, &mut norm);
                        }
                        at += 1;
                    })
                    .map_err(failed)?;
            }
            None => {
                let paired = twin(changed, self.model)?;
                let mut names = outputs.clone();
                names.extend(outputs.iter().map(|n| reference_name(n)));
                let half = outputs.len();
                calibrator
                    .visit_chunks(&paired, &names, &mut |chunk| {
                        add_error(&chunk[..half], &chunk[half..], &mut diff, &mut norm)
                    })
                    .map_err(failed)?;
            }
        }
        Ok(diff / norm.max(f64::MIN_POSITIVE))
    }
}
