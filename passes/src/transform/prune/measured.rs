//! Allocation by measured error: the costs a criterion predicts for one
//! layer are not in the same units as another's once the errors travel to
//! the model's outputs (through normalisations, attention, later layers).
//! For every group, a probe removes a share of its channels the way the
//! pass would (masked, and refitted on the fitted calibration samples)
//! and runs the held-out samples; the relative error of the model's
//! outputs, divided by the cost predicted for the same channels, scales
//! all of the group's costs. Judged on samples the refit did not see, a
//! large refit's overfitting counts against it.

use super::refit::{self, Consumers, Reconstruct};
use super::select::Sequence;
use super::{edit, measure, Prune};
use crate::analysis::zero_groups::ZeroGroups;
use crate::context::{Calibrator, PassContext, ValueChunk};
use crate::linear::stats::held_out;
use crate::linear::twin::{reference_name, twin};
use crate::linear::{SiteStats, StatsOptions};
use sculpt_ir::{IrError, Model};
use std::collections::BTreeMap;

/// Calibration samples a probe runs when too few are held out.
const PROBE_SAMPLES: usize = 64;

/// Held-out samples enough to judge probes on.
const MIN_HELD_OUT: usize = 32;

/// The most memory the reference outputs of the probe samples may take;
/// past it, each probe runs beside the reference instead.
const STORED_OUTPUTS: usize = 256 << 20;

/// The reference model's outputs on the probe samples, chunk by chunk,
/// when they fit in [`STORED_OUTPUTS`].
fn reference_outputs(
    calibrator: &mut dyn Calibrator,
    reference: &Model,
) -> Result<Option<Vec<Vec<ValueChunk>>>, IrError> {
    let names = output_names(reference);
    let mut chunks = Vec::new();
    let mut bytes = 0usize;
    let mut fits = true;
    calibrator
        .visit_chunks(reference, &names, &mut |chunk| {
            bytes += chunk.iter().map(|c| c.data.len() * 4).sum::<usize>();
            fits &= bytes <= STORED_OUTPUTS;
            if fits {
                chunks.push(chunk.to_vec());
            }
        })
        .map_err(measure::calibration_failed)?;
    Ok(fits.then_some(chunks))
}

fn output_names(model: &Model) -> Vec<String> {
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

/// Relative squared error of `probe`'s outputs against the reference's
/// on the probe samples: against `stored` outputs, or with the two run
/// side by side.
fn output_error(
    calibrator: &mut dyn Calibrator,
    probe: &Model,
    reference: &Model,
    stored: Option<&[Vec<ValueChunk>]>,
) -> Result<f64, IrError> {
    let outputs = output_names(probe);
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    match stored {
        Some(stored) => {
            let mut at = 0;
            calibrator
                .visit_chunks(probe, &outputs, &mut |chunk| {
                    if let Some(y0) = stored.get(at) {
                        add_error(chunk, y0, &mut diff, &mut norm);
                    }
                    at += 1;
                })
                .map_err(measure::calibration_failed)?;
        }
        None => {
            let paired = twin(probe, reference)?;
            let mut names = outputs.clone();
            names.extend(outputs.iter().map(|n| reference_name(n)));
            let half = outputs.len();
            calibrator
                .visit_chunks(&paired, &names, &mut |chunk| {
                    add_error(&chunk[..half], &chunk[half..], &mut diff, &mut norm)
                })
                .map_err(measure::calibration_failed)?;
        }
    }
    Ok(diff / norm.max(f64::MIN_POSITIVE))
}

impl Prune {
    /// Scales every sequence's costs by its group's measured sensitivity.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn measure_sensitivities(
        &self,
        model: &Model,
        z: &ZeroGroups,
        consumers: &Consumers,
        stats: &[Option<SiteStats>],
        sequences: &mut BTreeMap<usize, Sequence>,
        mode: Option<Reconstruct>,
        cx: &mut PassContext<'_>,
    ) -> Result<Vec<String>, IrError> {
        let calibrator = cx.calibrator("prune", "measures each group's effect on the outputs")?;
        let held = held_out(calibrator.samples(), StatsOptions::default().holdout);
        // Too few held-out samples make a noisy judge: then the probes
        // run (and are refitted) on the first samples.
        let (probe_samples, fitted_only) = if held.len() < MIN_HELD_OUT {
            (0..PROBE_SAMPLES, false)
        } else {
            (held, true)
        };
        calibrator.select_samples(Some(probe_samples));
        let stored = match reference_outputs(&mut *calibrator, model) {
            Ok(s) => s,
            Err(e) => {
                calibrator.select_samples(None);
                return Err(e);
            }
        };
        let mut notes = Vec::new();
        let mut result = Ok(());
        for (&gi, sequence) in sequences.iter_mut() {
            let g = &z.groups[gi];
            let n = (super::select::cap(g, self.max_share) / 2)
                .max(1)
                .min(sequence.channels.len());
            let predicted: f64 = sequence.costs[..n].iter().sum();
            if n == 0 || predicted <= 0.0 {
                continue;
            }
            let chosen: BTreeMap<usize, Vec<usize>> =
                [(gi, sequence.channels[..n].to_vec())].into();
            let mut probe = model.clone();
            let probe_result = (|| -> Result<f64, IrError> {
                if let Some(mode) = mode {
                    let refits =
                        self.refit_once(&probe, consumers, stats, &chosen, mode, fitted_only)?;
                    refit::apply(&mut probe.graph, &refits)?;
                }
                edit::edit(&mut probe.graph, z, &chosen, true)?;
                output_error(&mut *calibrator, &probe, model, stored.as_deref())
            })();
            let measured = match probe_result {
                Ok(e) => e,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let scale = measured / predicted;
            sequence.costs.iter_mut().for_each(|c| *c *= scale);
            notes.push(format!(
                "{}: {n} of {} channels: output error {measured:.3e} (predicted cost {predicted:.3e})",
                g.sources.first().map_or("?", String::as_str),
                g.channels
            ));
        }
        calibrator.select_samples(None);
        result.map(|_| notes)
    }
}
