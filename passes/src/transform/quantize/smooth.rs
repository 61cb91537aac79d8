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
//!
//! Preserves: the model's function exactly (up to float rounding).

use crate::context::Calibrator;
use crate::linear::stats::{collect, StatsOptions, StatsRequest};
use crate::linear::{LinearSite, SiteOp};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{DataType, IrError, Model, NodeId, Tensor, ValueId};
use std::collections::HashMap;

/// One smoothable input: the LayerNormalization making it, the sites
/// reading it.
struct Group {
    norm: NodeId,
    sites: Vec<LinearSite>,
    input: ValueId,
}

fn groups(model: &Model, sites: &[LinearSite]) -> Vec<Group> {
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
            let (norm, _) = graph.value(x).producer?;
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
            (foldable && !visible).then_some(Group {
                norm,
                sites,
                input: x,
            })
        })
        .collect();
    found.sort_by_key(|g| g.norm.index());
    found
}

/// Smooths every foldable input of `sites` with strength `alpha`;
/// returns how many inputs were.
pub fn smooth(
    model: &mut Model,
    sites: &[LinearSite],
    alpha: f64,
    calibrator: &mut dyn Calibrator,
    options: &StatsOptions,
) -> Result<usize, IrError> {
    let groups = groups(model, sites);
    if groups.is_empty() {
        return Ok(0);
    }
    let requests: Vec<StatsRequest> = groups
        .iter()
        .map(|g| StatsRequest::for_site(model, &g.sites[0], false))
        .collect();
    let stats = collect(model, &requests, calibrator, options)
        .map_err(|e| IrError::Invalid(format!("quantize: smoothing statistics failed: {e}")))?;
    for (group, stats) in groups.iter().zip(stats) {
        let m = &stats.fit[0];
        let rows = m.rows.max(1.0);
        let rms: Vec<f64> = m.sum_sq.iter().map(|s| (s / rows).sqrt()).collect();
        let weights: Vec<_> = group
            .sites
            .iter()
            .map(|s| s.weights(&model.graph).map(|mut w| w.remove(0)))
            .collect::<Result<_, _>>()?;
        let scales: Vec<f64> = (0..rms.len())
            .map(|j| {
                let wmax = weights
                    .iter()
                    .flat_map(|w| (0..w.ncols()).map(move |c| w[(j, c)].abs()))
                    .fold(0.0f64, f64::max);
                let s = rms[j].powf(alpha) / wmax.powf(1.0 - alpha);
                if s.is_finite() && s > 1e-5 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        for (site, w) in group.sites.iter().zip(weights) {
            let scaled = faer::Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] * scales[i]);
            site.set_weights(&mut model.graph, &[scaled])?;
        }
        let graph = &mut model.graph;
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
            let v = graph.node(group.norm).input(slot).expect("checked");
            let t = constant(graph, v).expect("checked").to_f32_vec()?;
            let divided: Vec<f32> = t
                .iter()
                .zip(&scales)
                .map(|(&x, &s)| (x as f64 / s) as f32)
                .collect();
            let dims = vec![divided.len() as i64];
            let mut patch = Patch::new(graph, "smooth");
            let fresh = patch.initializer_named("norm", Tensor::from_f32(dims, &divided));
            graph.set_input(group.norm, slot, Some(fresh));
        }
    }
    Ok(groups.len())
}
