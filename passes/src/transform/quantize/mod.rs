//! `quantize`: weight-only int4 for linear sites, as onnxruntime's
//! `com.microsoft::MatMulNBits` (which tract runs too).
//!
//! Every constant-weight MatMul, and Gemm with an untransposed input, has
//! its weight `W [k, n]` cut along `k` into blocks of `block` rows per
//! output (16 or more, a power of two), each with an f32 scale and, when
//! `symmetric=false`, a 4-bit zero point ([`blocks`]). `round=gptq` (with
//! calibration data) rounds row after row and spreads each row's error
//! over the rows left through the inverse of the input's second moment
//! (GPTQ), so that the output error stays small; `round=rtn` (and any run
//! without data) rounds to nearest. A Gemm's bias becomes an Add after the
//! new node. With `tables=true` (the default) embedding tables go to int4
//! as well ([`tables`]): gathered packed, dequantized after the lookup.
//! `include=`/`exclude=` select sites and tables by node name.
//!
//! Other precisions (int8 QDQ, fp16, mixed policies) are not built yet:
//! `policy` takes `int4` only. Convolutions and transposed-input sites
//! are left alone and listed in the report with the reason.
//!
//! Preserves: the model's function up to the rounding of its weights. The
//! report gives per site the block size and the relative output error of
//! the quantized weight, predicted on the calibration statistics (on the
//! held-out part too), and the whole model's measured output error.

mod blocks;
mod qdq;
mod smooth;
mod tables;

use crate::context::PassContext;
use crate::linear::solve::output_energy;
use crate::linear::stats::{collect_keeping, StatsRequest};
use crate::linear::{find_sites, LinearSite, SiteOp, SiteStats};
use crate::outputs::{fitting_samples, judging_samples, output_names, report_judged_error};
use crate::pipeline::Options;
use crate::ranges::{collect_histograms, RangeMethod};
use crate::util::glob::any_match;
use crate::{Pass, PassOutcome};
use blocks::{quantize, Format, Quantized};
use faer::Mat;
use rayon::prelude::*;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, DataType, IrError, Model, OpsetImport, Tensor};
use serde_json::json;
use std::sync::Arc;

/// The domain of onnxruntime's contrib ops.
const CONTRIB: &str = "com.microsoft";

/// The precision the pass writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// Weight-only int4 (MatMulNBits).
    Int4,
    /// int8 weights and activations (QDQ).
    Int8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounding {
    Gptq,
    Rtn,
}

pub struct Quantize {
    policy: Policy,
    /// SmoothQuant's α for int8 (`None`: no smoothing).
    smooth: Option<f64>,
    qdq: qdq::QdqSpec,
    format: Format,
    rounding: Rounding,
    damp: f64,
    accuracy_level: i64,
    include: Vec<String>,
    exclude: Vec<String>,
    /// Embedding tables (Gathers of constant tables) in int4 too.
    tables: bool,
    /// Tables of fewer elements stay f32 (a token-type table of two rows).
    min_table: usize,
}

impl Quantize {
    pub fn from_options(options: &Options) -> crate::Result<Quantize> {
        let policy = match options.choice("policy")? {
            "int8" => Policy::Int8,
            _ => Policy::Int4,
        };
        options.choice("format")?;
        let percentile = options.f64("percentile")?;
        if !(50.0..=100.0).contains(&percentile) {
            return Err(options.invalid("percentile", "50 to 100"));
        }
        let method = match options.choice("calib")? {
            "percentile" => RangeMethod::Percentile(percentile),
            "entropy" => RangeMethod::Entropy,
            "mse" => RangeMethod::Mse,
            _ => RangeMethod::MinMax,
        };
        let codes = match options.choice("activations")? {
            "uint8" => qdq::Codes::Uint8,
            _ => qdq::Codes::Int8,
        };
        let ops = match options.patterns("ops") {
            given if given.is_empty() => qdq::default_ops(),
            given => given,
        };
        let block = options.usize("block")?;
        if block < 16 || !block.is_power_of_two() {
            return Err(options.invalid("block", "a power of two, 16 or more"));
        }
        let damp = options.f64("damp")?;
        if damp <= 0.0 {
            return Err(options.invalid("damp", "must be above 0"));
        }
        let accuracy_level = options.usize("accuracy_level")?;
        if accuracy_level > 4 {
            return Err(options.invalid("accuracy_level", "0 to 4"));
        }
        let smooth = match options.get("smooth") {
            Some("none") => None,
            _ => options.opt_f64("smooth")?,
        };
        if smooth.is_some_and(|a| !(0.0..=1.0).contains(&a)) {
            return Err(options.invalid("smooth", "0 to 1 (or none)"));
        }
        Ok(Quantize {
            policy,
            smooth,
            qdq: qdq::QdqSpec { codes, method, ops },
            format: Format {
                bits: 4,
                block,
                symmetric: options.bool("symmetric")?,
            },
            rounding: match options.choice("round")? {
                "rtn" => Rounding::Rtn,
                _ => Rounding::Gptq,
            },
            damp,
            accuracy_level: accuracy_level as i64,
            include: options.patterns("include"),
            exclude: options.patterns("exclude"),
            tables: options.bool("tables")?,
            min_table: options.usize("min_table")?,
        })
    }

    /// Why `site` is left alone, if it is.
    fn refusal(&self, model: &Model, site: &LinearSite) -> Option<String> {
        if !self.include.is_empty() && !any_match(&self.include, &site.name) {
            return Some("not included".into());
        }
        if any_match(&self.exclude, &site.name) {
            return Some("excluded".into());
        }
        match site.op {
            SiteOp::Conv(_) => {
                return Some("a convolution (MatMulNBits is a matrix product)".into())
            }
            SiteOp::Gemm { trans_a: true, .. } => {
                return Some("Gemm with transA=1 (its input is not row by row)".into())
            }
            _ => {}
        }
        let g = &model.graph;
        // A MatMul's input has its weight's type (which is known).
        let weight_type = sculpt_ir::ops::infer::value_type(g, site.weight).and_then(|t| t.dtype());
        if weight_type != Some(DataType::F32) {
            return Some("the weight is not f32".into());
        }
        let input_rank = sculpt_ir::ops::infer::value_type(g, site.input)
            .and_then(|t| t.shape().map(|s| s.len()));
        if input_rank.is_some_and(|r| r < 2) {
            return Some("a vector input (MatMulNBits takes a matrix or a batch of them)".into());
        }
        if matches!(site.op, SiteOp::Gemm { .. }) && site.bias.is_some() {
            if let Ok(None) | Err(_) = site.bias(g) {
                return Some("Gemm whose C is not one value per output".into());
            }
        }
        None
    }
}

/// One site's quantized weight and its numbers.
struct Plan {
    site: LinearSite,
    quantized: Quantized,
    record: serde_json::Value,
}

/// The relative output error `tr(ΔᵀCΔ) / tr(WᵀCW)` of replacing `w` by
/// `d`, under the covariance `c`.
fn relative_error(c: &Mat<f64>, w: &Mat<f64>, d: &Mat<f64>) -> f64 {
    let diff = Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] - d[(i, j)]);
    output_energy(c.as_ref(), diff.as_ref())
        / output_energy(c.as_ref(), w.as_ref()).max(f64::MIN_POSITIVE)
}

impl Quantize {
    fn plan(
        &self,
        model: &Model,
        site: LinearSite,
        stats: Option<&SiteStats>,
    ) -> Result<Plan, IrError> {
        let w = site.weights(&model.graph)?.remove(0);
        let all = stats.map(|s| s.all().remove(0)).filter(|m| m.full());
        // GPTQ reads the uncentered second moment: the bias does not
        // absorb the mean of the rounding error.
        let second = all.as_ref().map(|m| m.second_moment());
        let h = match self.rounding {
            Rounding::Gptq => second.as_ref().map(|h| h.as_ref()),
            Rounding::Rtn => None,
        };
        let quantized = quantize(w.as_ref(), self.format, h, self.damp);
        let d = quantized.dequantized();
        let held = stats
            .filter(|s| s.has_holdout())
            .map(|s| s.holdout[0].second_moment())
            .map(|h| relative_error(&h, &w, &d));
        let record = json!({
            "site": site.name,
            "shape": [w.nrows(), w.ncols()],
            "bits": self.format.bits,
            "block": self.format.block,
            "rounding": if h.is_some() { "gptq" } else { "rtn" },
            "predicted_error": second.as_ref().map(|c| relative_error(c, &w, &d)),
            "held_out_error": held,
        });
        Ok(Plan {
            site,
            quantized,
            record,
        })
    }
}

/// Replaces `plan`'s site by a `MatMulNBits` node (and an Add for a
/// Gemm's bias).
fn rewrite(model: &mut Model, plan: &Plan, accuracy_level: i64) -> Result<(), IrError> {
    let graph = &mut model.graph;
    let site = plan.site.refind(graph).ok_or_else(|| {
        IrError::Invalid(format!(
            "quantize: linear site '{}' is gone",
            plan.site.name
        ))
    })?;
    let q = &plan.quantized;
    let bias = match site.op {
        SiteOp::Gemm { .. } => site.bias(graph)?,
        _ => None,
    };
    let out = graph
        .node(site.node)
        .output(0)
        .expect("a linear site has an output");
    let mut patch = Patch::replacing(graph, site.node);
    let blob = q.format.block * q.format.bits as usize / 8;
    let u8_tensor =
        |dims: Vec<i64>, bytes: Vec<u8>| Tensor::from_raw(DataType::U8, dims, bytes.into());
    let codes = patch.initializer_named(
        "q4",
        u8_tensor(
            vec![q.n as i64, q.blocks as i64, blob as i64],
            q.packed_codes(),
        ),
    );
    let scales = patch.initializer_named(
        "scales",
        Tensor::from_f32(vec![(q.n * q.blocks) as i64], &q.scales),
    );
    let mut inputs = vec![Some(site.input), Some(codes), Some(scales)];
    if !q.format.symmetric {
        let zeros = q.packed_zeros();
        let len = zeros.len() as i64;
        inputs.push(Some(
            patch.initializer_named("zero_points", u8_tensor(vec![len], zeros)),
        ));
    }
    let attrs = vec![
        Attribute::new("K", AttrValue::Int(q.k as i64)),
        Attribute::new("N", AttrValue::Int(q.n as i64)),
        Attribute::new("bits", AttrValue::Int(q.format.bits as i64)),
        Attribute::new("block_size", AttrValue::Int(q.format.block as i64)),
        Attribute::new("accuracy_level", AttrValue::Int(accuracy_level)),
    ];
    let product = match &bias {
        None => {
            patch.define("MatMulNBits", &inputs, attrs, out)?;
            out
        }
        Some(b) => {
            let values: Vec<f32> = b.iter().map(|&x| x as f32).collect();
            let bias =
                patch.initializer_named("bias", Tensor::from_f32(vec![b.len() as i64], &values));
            let product = patch.node("MatMulNBits", &inputs, attrs);
            patch.define("Add", &[Some(product), Some(bias)], Vec::new(), out)?;
            product
        }
    };
    drop(patch);
    let (node, _) = graph.value(product).producer.expect("defined above");
    graph.node_mut(node).domain = CONTRIB.into();
    Ok(())
}

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn needs_canonical(&self) -> bool {
        true
    }

    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        match self.policy {
            Policy::Int4 => self.weight_only(model, cx),
            Policy::Int8 => self.int8(model, cx),
        }
    }
}

impl Quantize {
    fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || any_match(&self.include, name))
            && !any_match(&self.exclude, name)
    }

    /// `policy=int8`: QDQ around the chosen ops, activations ranged on
    /// the calibration samples but the judging ones.
    fn int8(
        &mut self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
    ) -> Result<PassOutcome, IrError> {
        let before = model.graph.param_bytes();
        let reference = model.clone();
        sculpt_ir::opset::raise_opset(model, 13)?;
        sculpt_ir::ops::infer::infer_graph(&mut model.graph)?;
        let options = cx.stats_options(model);
        let calibrator = cx.calibrator("quantize policy=int8", "ranges activations")?;
        calibrator.select_samples(fitting_samples(calibrator.samples()));
        let smoothed = match self.smooth {
            Some(alpha) => {
                let (sites, _) = find_sites(&model.graph);
                let sites: Vec<LinearSite> = sites
                    .into_iter()
                    .filter(|s| self.selects(&s.name))
                    .collect();
                smooth::smooth(model, &sites, alpha, calibrator, &options)?
            }
            None => 0,
        };
        let graph = &model.graph;
        let plan = qdq::plan(graph, &self.qdq, |id| {
            self.selects(graph.node(id).display_name())
        });
        let mut outcome = PassOutcome::default();
        if plan.nodes.is_empty() {
            calibrator.select_samples(None);
            outcome.changed = smoothed > 0;
            outcome.stat("inputs_smoothed", smoothed);
            outcome.details.push(format!(
                "int8: no node to quantize ({smoothed} inputs smoothed)"
            ));
            return Ok(outcome);
        }
        let names: Vec<String> = plan
            .ranged
            .iter()
            .map(|&v| model.graph.value(v).name.clone())
            .collect();
        let records: Vec<serde_json::Value> = plan
            .nodes
            .iter()
            .map(|&id| {
                let n = model.graph.node(id);
                json!({"node": n.display_name(), "op": n.op_type, "precision": "int8"})
            })
            .collect();
        let histograms = collect_histograms(model, &names, calibrator);
        calibrator.select_samples(None);
        let histograms = histograms
            .map_err(|e| IrError::Invalid(format!("quantize: calibration run failed: {e}")))?;
        let done = qdq::rewrite(&mut model.graph, &plan, &histograms, &self.qdq)?;
        let (activations, weights) = (done.activations, done.weights);
        crate::transform::cleanup::dead_code::remove_dead_code(&mut model.graph);
        let after = model.graph.param_bytes();
        outcome.changed = true;
        outcome.records = records;
        outcome.stat("nodes_quantized", plan.nodes.len());
        outcome.stat("activations_quantized", activations);
        outcome.stat("weights_quantized", weights);
        outcome.stat("weight_bytes_before", before);
        outcome.stat("weight_bytes_after", after);
        outcome.details.push(format!(
            "int8 QDQ ({:?} activations, ranges by {:?}): {} nodes, {activations} activations and {weights} weights; weights {before} -> {after} bytes",
            self.qdq.codes,
            self.qdq.method,
            plan.nodes.len()
        ));
        outcome.stat("activations_kept_f32", done.kept.len());
        outcome.stat("inputs_smoothed", smoothed);
        if smoothed > 0 {
            outcome.details.push(format!(
                "  {smoothed} LayerNormalization outputs smoothed into the weights reading them (SmoothQuant α {})",
                self.smooth.unwrap_or(0.0)
            ));
        }
        for (name, why) in &done.kept {
            outcome.details.push(format!("  kept f32: {name}: {why}"));
        }
        report_judged_error(&mut outcome, cx, &reference, model, None)?;
        Ok(outcome)
    }

    /// `policy=int4`: MatMulNBits for the linear sites, int4 tables.
    fn weight_only(
        &mut self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
    ) -> Result<PassOutcome, IrError> {
        let (sites, mut skipped) = find_sites(&model.graph);
        let mut chosen = Vec::new();
        for site in sites {
            match self.refusal(model, &site) {
                None => chosen.push(site),
                Some(why) if why == "not included" || why == "excluded" => {}
                Some(why) => skipped.push((site.name.clone(), why)),
            }
        }
        // GPTQ's statistics, and the model's outputs on the judging
        // samples from the same run.
        let gptq = self.rounding == Rounding::Gptq && cx.calibrator.is_some();
        let (stats, kept): (Vec<Option<Arc<SiteStats>>>, _) = if gptq && !chosen.is_empty() {
            let requests: Vec<StatsRequest> = chosen
                .iter()
                .map(|s| StatsRequest::for_site(model, s, true))
                .collect();
            let options = cx.stats_options(model);
            let calibrator = cx.calibrator("quantize", "measures activations")?;
            let judging = judging_samples(calibrator.samples());
            let outputs = output_names(model);
            let (stats, kept) =
                collect_keeping(model, &requests, calibrator, &options, &outputs, judging)
                    .map_err(|e| {
                        IrError::Invalid(format!("quantize: calibration run failed: {e}"))
                    })?;
            (stats.into_iter().map(Some).collect(), kept)
        } else {
            (vec![None; chosen.len()], None)
        };
        let plans: Vec<Plan> = chosen
            .into_par_iter()
            .zip(stats.par_iter())
            .map(|(site, s)| self.plan(model, site, s.as_deref()))
            .collect::<Result<_, _>>()?;
        let reference = model.clone();
        if !model.opset_imports.iter().any(|o| o.domain == CONTRIB) && !plans.is_empty() {
            model.opset_imports.push(OpsetImport {
                domain: CONTRIB.into(),
                version: 1,
            });
        }
        let mut outcome = PassOutcome::default();
        let (mut before, mut after) = (0u64, 0u64);
        for plan in &plans {
            rewrite(model, plan, self.accuracy_level)?;
            let q = &plan.quantized;
            before += (q.k * q.n * 4) as u64;
            after += (q.n * q.blocks * q.format.block / 2 + q.scales.len() * 4) as u64;
            outcome.records.push(plan.record.clone());
        }
        let mut quantized_tables = 0;
        if self.tables {
            let (found, refused) = tables::find_tables(&model.graph, self.format, self.min_table);
            let found: Vec<_> = found
                .into_iter()
                .filter(|t| {
                    (self.include.is_empty() || any_match(&self.include, &t.name))
                        && !any_match(&self.exclude, &t.name)
                })
                .collect();
            let graph = &model.graph;
            let codes: Vec<Quantized> = found
                .par_iter()
                .map(|t| tables::quantize_table(graph, t, self.format))
                .collect::<Result<_, _>>()?;
            for (t, q) in found.iter().zip(&codes) {
                tables::rewrite(&mut model.graph, t, q)?;
                before += (t.rows * t.width * 4) as u64;
                after += (t.rows * t.width / 2 + q.scales.len() * 4 + q.zeros.len()) as u64;
                outcome.records.push(json!({
                    "table": t.name,
                    "shape": [t.rows, t.width],
                    "bits": self.format.bits,
                    "block": self.format.block,
                    "rounding": "rtn",
                }));
            }
            quantized_tables = found.len();
            skipped.extend(refused);
        }
        crate::transform::cleanup::dead_code::remove_dead_code(&mut model.graph);
        outcome.changed = !plans.is_empty() || quantized_tables > 0;
        outcome.stat("sites_quantized", plans.len());
        outcome.stat("tables_quantized", quantized_tables);
        outcome.stat("weight_bytes_before", before);
        outcome.stat("weight_bytes_after", after);
        outcome.details.push(format!(
            "int4 (block {}, {}): {} sites and {quantized_tables} tables, their weights {before} -> {after} bytes",
            self.format.block,
            if self.format.symmetric {
                "symmetric"
            } else {
                "with zero points"
            },
            plans.len()
        ));
        for r in outcome.records.iter().filter(|r| r["site"].is_string()) {
            outcome.details.push(format!(
                "  {}: {}, predicted output error {}",
                r["site"].as_str().unwrap_or("?"),
                r["rounding"].as_str().unwrap_or("?"),
                r["predicted_error"]
                    .as_f64()
                    .map_or("-".into(), |e| format!("{e:.3e}"))
            ));
        }
        for (name, why) in &skipped {
            outcome
                .details
                .push(format!("  not quantized: {name}: {why}"));
        }
        if outcome.changed {
            report_judged_error(&mut outcome, cx, &reference, model, kept)?;
        }
        Ok(outcome)
    }
}
