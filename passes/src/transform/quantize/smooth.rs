//! Outlier smoothing before int8 (SmoothQuant, Xiao et al. 2023): a few
//! input channels of a transformer's linear layers run far larger than the
//! rest, and a per-tensor activation scale set by them rounds the others
//! away. Dividing channel `j` of the input by `s_j` and multiplying row `j`
//! of every weight reading it by `s_j` leaves `x·W` unchanged and moves the
//! spread into the weights, which are quantized per output channel:
//! `s_j = rms(x_j)^α / max|W_j|^(1−α)`.
//!
//! The division is folded into the LayerNormalization that makes the input
//! (its scale and bias divided by `s`), so it costs nothing at run time;
//! every site reading the input shares one `s` (Q, K and V), and any other
//! reader (a post-norm residual Add) reads the input times `s` again.
//! Inputs no such norm makes (a GELU's output before an FFN's down
//! projection) are smoothed, when asked, by a `Mul` by `1/s` that only the
//! sites read: one elementwise op, left f32 by the quantizer.
//!
//! Preserves: the model's function exactly (up to float rounding).

use crate::calib::stats::{collect, Moments, StatsOptions, StatsRequest};
use crate::calib::Calibrator;
use crate::linear::{LinearSite, SiteOp};
use faer::Mat;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{DataType, IrError, Model, NodeId, Tensor, ValueId};
use std::collections::HashMap;

/// SmoothQuant's α: one for every input, or each input's own, the one
/// that [`Channels::predicted_error`] finds least (no smoothing at all
/// when none beats it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strength {
    Fixed(f64),
    Auto,
}

/// The strengths an automatic choice tries.
const ALPHAS: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// What the choice of `s` reads of one input and its weights, per channel.
struct Channels {
    rms: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// max |W_j·| over every site's row j.
    weight_max: Vec<f64>,
}

impl Channels {
    fn of(m: &Moments, weights: &[Mat<f64>]) -> Channels {
        let rows = m.rows.max(1.0);
        let weight_max = (0..m.k())
            .map(|j| {
                weights
                    .iter()
                    .flat_map(|w| (0..w.ncols()).map(move |c| w[(j, c)].abs()))
                    .fold(0.0f64, f64::max)
            })
            .collect();
        Channels {
            rms: m.sum_sq.iter().map(|s| (s / rows).sqrt()).collect(),
            lo: m.lo.iter().map(|&v| v.min(0.0)).collect(),
            hi: m.hi.iter().map(|&v| v.max(0.0)).collect(),
            weight_max,
        }
    }

    /// `s_j = rms(x_j)^α / max|W_j|^(1−α)`, 1 where that is degenerate.
    fn scales(&self, alpha: f64) -> Vec<f64> {
        self.rms
            .iter()
            .zip(&self.weight_max)
            .map(|(&rms, &wmax)| {
                let s = rms.powf(alpha) / wmax.powf(1.0 - alpha);
                if s.is_finite() && s > 1e-5 {
                    s
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// The squared error per row that 8-bit rounding is predicted to add
    /// to `x·W` once `x` is divided by `scales` (`None`: left as it is)
    /// and `W`'s rows multiplied: the activation's per-tensor step, as
    /// uniform noise, through every weight, plus each output column's
    /// weight step through the input's second moments.
    fn predicted_error(&self, weights: &[Mat<f64>], scales: Option<&[f64]>) -> f64 {
        let s = |j: usize| scales.map_or(1.0, |s| s[j]);
        let k = self.rms.len();
        let lo = (0..k).map(|j| self.lo[j] / s(j)).fold(0.0, f64::min);
        let hi = (0..k).map(|j| self.hi[j] / s(j)).fold(0.0, f64::max);
        let step = (hi - lo) / 255.0;
        let mut activation = 0.0;
        let mut weight = 0.0;
        let input_energy: f64 = (0..k).map(|j| (self.rms[j] / s(j)).powi(2)).sum();
        for w in weights {
            for c in 0..w.ncols() {
                let mut column_max = 0.0f64;
                for j in 0..k {
                    let scaled = w[(j, c)] * s(j);
                    activation += scaled * scaled;
                    column_max = column_max.max(scaled.abs());
                }
                weight += (column_max / 127.0).powi(2) * input_energy;
            }
        }
        (step * step * activation + weight) / 12.0
    }
}

/// One smoothable input: the LayerNormalization making it (`None`: a
/// `Mul` divides it), the sites reading it.
struct Group {
    norm: Option<NodeId>,
    sites: Vec<LinearSite>,
    input: ValueId,
}

/// What [`smooth`] did.
pub struct Smoothed {
    /// Inputs smoothed inside their LayerNormalization.
    pub folded: usize,
    /// The `Mul` nodes that divide the other inputs smoothed.
    pub divisions: Vec<NodeId>,
}

fn groups(model: &Model, sites: &[LinearSite], with_mul: bool) -> Vec<Group> {
    let graph = &model.graph;
    let mut by_input: HashMap<ValueId, Vec<LinearSite>> = HashMap::new();
    for s in sites {
        if matches!(s.op, SiteOp::MatMul | SiteOp::Gemm { trans_a: false, .. }) && s.groups == 1 {
            by_input.entry(s.input).or_default().push(s.clone());
        }
    }
    let uses = graph.use_counts();
    let mut found: Vec<Group> = by_input
        .into_iter()
        .filter_map(|(x, sites)| {
            let Some((norm, _)) = graph.value(x).producer else {
                return with_mul.then_some(Group {
                    norm: None,
                    sites,
                    input: x,
                });
            };
            let n = graph.node(norm);
            let foldable = n.is_onnx()
                && n.op_type == "LayerNormalization"
                && n.outputs().iter().skip(1).all(Option::is_none)
                && [1, 2].iter().all(|&slot| {
                    n.input(slot).is_some_and(|v| {
                        constant(graph, v).is_some_and(|t| {
                            t.dtype == DataType::F32 && t.dims == [sites[0].k as i64]
                        }) && uses.get(v) == 1
                    })
                });
            let visible = graph.outputs.contains(&x) || graph.is_captured(x);
            let norm = match (foldable && !visible, with_mul) {
                (true, _) => Some(norm),
                (false, true) => None,
                (false, false) => return None,
            };
            Some(Group {
                norm,
                sites,
                input: x,
            })
        })
        .collect();
    found.sort_by_key(|g| g.input.index());
    found
}

/// Smooths every foldable input of `sites` (and, `with_mul`, every other
/// one) at `strength`: with [`Strength::Auto`], only the inputs whose
/// predicted error falls (by a fifth where a Mul is needed).
pub fn smooth(
    model: &mut Model,
    sites: &[LinearSite],
    strength: Strength,
    with_mul: bool,
    calibrator: &mut dyn Calibrator,
    options: &StatsOptions,
    samples: std::ops::Range<usize>,
) -> Result<Smoothed, IrError> {
    let groups = groups(model, sites, with_mul);
    let mut done = Smoothed {
        folded: 0,
        divisions: Vec::new(),
    };
    if groups.is_empty() {
        return Ok(done);
    }
    let requests: Vec<StatsRequest> = groups
        .iter()
        .map(|g| StatsRequest::for_site(model, &g.sites[0], false))
        .collect();
    let stats = collect(model, &requests, calibrator, options, samples)
        .map_err(|e| IrError::Invalid(format!("quantize: smoothing statistics failed: {e}")))?;
    for (group, stats) in groups.iter().zip(stats) {
        let m = &stats.fit[0];
        let weights: Vec<_> = group
            .sites
            .iter()
            .map(|s| s.weights(&model.graph).map(|mut w| w.remove(0)))
            .collect::<Result<_, _>>()?;
        let channels = Channels::of(m, &weights);
        let scales = match strength {
            Strength::Fixed(alpha) => channels.scales(alpha),
            Strength::Auto => {
                // A Mul costs an op at run time: it must earn its place.
                let worth = if group.norm.is_some() { 1.0 } else { 0.8 };
                let unsmoothed = channels.predicted_error(&weights, None);
                let (best, error) = ALPHAS
                    .iter()
                    .map(|&alpha| {
                        let scales = channels.scales(alpha);
                        let error = channels.predicted_error(&weights, Some(&scales));
                        (scales, error)
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("ALPHAS is not empty");
                if error.is_nan() || error >= unsmoothed * worth {
                    continue;
                }
                best
            }
        };
        for (site, w) in group.sites.iter().zip(weights) {
            let scaled = Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] * scales[i]);
            site.set_weights(&mut model.graph, &[scaled])?;
        }
        let graph = &mut model.graph;
        let Some(norm) = group.norm else {
            let inverse: Vec<f32> = scales.iter().map(|&s| (1.0 / s) as f32).collect();
            let mut patch = Patch::new(graph, "smooth");
            let inverse = patch.initializer_named(
                "divide",
                Tensor::from_f32(vec![inverse.len() as i64], &inverse),
            );
            let divided = patch.node("Mul", &[Some(group.input), Some(inverse)], Vec::new());
            let (division, _) = graph.value(divided).producer.expect("made by the patch");
            for (node, slot) in graph.consumers(group.input) {
                if group.sites.iter().any(|s| s.node == node) {
                    graph.set_input(node, slot, Some(divided));
                }
            }
            done.divisions.push(division);
            continue;
        };
        let others: Vec<(NodeId, usize)> = graph
            .consumers(group.input)
            .into_iter()
            .filter(|(n, _)| !group.sites.iter().any(|s| s.node == *n))
            .collect();
        if !others.is_empty() {
            let factors: Vec<f32> = scales.iter().map(|&s| s as f32).collect();
            let mut patch = Patch::new(graph, "smooth");
            let factors = patch.initializer_named(
                "restore",
                Tensor::from_f32(vec![factors.len() as i64], &factors),
            );
            let restored = patch.node("Mul", &[Some(group.input), Some(factors)], Vec::new());
            for (node, slot) in others {
                graph.set_input(node, slot, Some(restored));
            }
        }
        for slot in [1, 2] {
            let v = graph.node(norm).input(slot).expect("checked");
            let t = constant(graph, v).expect("checked").to_f32_vec()?;
            let divided: Vec<f32> = t
                .iter()
                .zip(&scales)
                .map(|(&x, &s)| (x as f64 / s) as f32)
                .collect();
            let dims = vec![divided.len() as i64];
            let mut patch = Patch::new(graph, "smooth");
            let fresh = patch.initializer_named("norm", Tensor::from_f32(dims, &divided));
            graph.set_input(norm, slot, Some(fresh));
        }
        done.folded += 1;
    }
    Ok(done)
}
