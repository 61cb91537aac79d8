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
use super::{edit, Prune};
use crate::analysis::zero_groups::ZeroGroups;
use crate::context::PassContext;
use crate::linear::stats::held_out;
use crate::linear::{SiteStats, StatsOptions};
use crate::outputs::OutputReference;
use sculpt_ir::{IrError, Model};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Calibration samples a probe runs when too few are held out.
const PROBE_SAMPLES: usize = 64;

/// Held-out samples enough to judge probes on.
const MIN_HELD_OUT: usize = 32;

impl Prune {
    /// Scales every sequence's costs by its group's measured sensitivity.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn measure_sensitivities(
        &self,
        model: &Model,
        z: &ZeroGroups,
        consumers: &Consumers,
        stats: &[Option<Arc<SiteStats>>],
        sequences: &mut BTreeMap<usize, Sequence>,
        mode: Option<Reconstruct>,
        cx: &mut PassContext<'_>,
    ) -> Result<Vec<String>, IrError> {
        let mask = cx.stats_options(model).row_mask;
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
        let reference = match OutputReference::new(&mut *calibrator, model, mask) {
            Ok(r) => r,
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
                reference.relative_error(&mut *calibrator, &probe)
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
