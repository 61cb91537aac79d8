//! Activation measurements for the `activation` criterion: per-channel
//! activation energy (CFSP's fine step) and residual-block importance
//! (CFSP's coarse step).

use crate::analysis::residual_blocks::ResidualBlock;
use crate::analysis::zero_groups::Group;
use crate::calib::stats::channel_energy;
use crate::context::PassContext;
use sculpt_ir::{IrError, Model};
use std::collections::HashMap;

/// Sum of squares per index along the channel axis of each activation
/// the groups' consumer slices multiply, over all calibration samples.
pub(super) type ActivationEnergy = HashMap<(String, usize), Vec<f64>>;

pub(super) fn measure_activations(
    model: &Model,
    groups: &[&Group],
    cx: &mut PassContext<'_>,
) -> Result<ActivationEnergy, IrError> {
    let mut wanted: Vec<(String, usize)> = groups
        .iter()
        .flat_map(|g| g.members.iter().filter_map(|m| m.activation.clone()))
        .collect();
    wanted.sort();
    wanted.dedup();
    let calibrator = cx.calibrator("prune", "measures activations")?;
    let all = calibrator.split().all();
    let energy = channel_energy(model, &wanted, calibrator, all).map_err(calibration_failed)?;
    Ok(wanted.into_iter().zip(energy).collect())
}

pub(super) fn calibration_failed(e: String) -> IrError {
    IrError::Invalid(format!("prune: calibration run failed: {e}"))
}

/// Importance of each residual block: mean angular distance (1 − cosine)
/// between its input stream and its output, per calibration sample.
pub(super) fn block_importance(
    model: &Model,
    blocks: &[ResidualBlock],
    cx: &mut PassContext<'_>,
) -> Result<Vec<f64>, IrError> {
    let graph = &model.graph;
    let names: Vec<String> = blocks
        .iter()
        .flat_map(|b| {
            let out = graph.node(b.add).output(0).expect("an Add has an output");
            [
                graph.value(b.stream).name.clone(),
                graph.value(out).name.clone(),
            ]
        })
        .collect();
    let mut sums = vec![(0.0f64, 0usize); blocks.len()];
    let mut pending: Vec<Vec<f32>> = vec![Vec::new(); blocks.len()];
    let calibrator = cx.calibrator("prune", "measures block importance")?;
    let all = calibrator.split().all();
    calibrator
        .visit(model, &names, all, &mut |i, shape, data| {
            let b = i / 2;
            if i % 2 == 0 {
                pending[b] = data.to_vec();
                return;
            }
            let samples = shape.first().copied().unwrap_or(1).max(1);
            let per = data.len() / samples;
            if pending[b].len() != data.len() || per == 0 {
                return;
            }
            for s in 0..samples {
                let (x, y) = (
                    &pending[b][s * per..(s + 1) * per],
                    &data[s * per..(s + 1) * per],
                );
                let dot: f64 = x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum();
                let nx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                let ny: f64 = y.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                if nx > 0.0 && ny > 0.0 {
                    sums[b].0 += 1.0 - dot / (nx * ny);
                    sums[b].1 += 1;
                }
            }
        })
        .map_err(calibration_failed)?;
    Ok(sums
        .into_iter()
        .map(|(s, n)| (s / n.max(1) as f64).max(1e-6))
        .collect())
}
