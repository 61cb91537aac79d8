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
use crate::calib::judge::OutputReference;
use crate::calib::SiteStats;
use crate::context::PassContext;
use sculpt_ir::{IrError, Model};
use std::collections::BTreeMap;
use std::sync::Arc;

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
        // The probes run on the judging samples; where too few are held
        // out to judge on, those are the first samples, and the probes'
        // refits then fit on all.
        let split = calibrator.split();
        let probe_samples = split.judging();
        let fitted_only = !probe_samples.is_empty() && probe_samples == split.held_out();
        let reference = OutputReference::new(&mut *calibrator, model, mask, probe_samples)?;
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
        result.map(|_| notes)
    }
}
