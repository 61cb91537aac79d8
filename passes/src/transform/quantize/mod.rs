//! `quantize`: a precision policy applied to a model. The policy
//! ([`policy`]) gives every node a precision: by default one for all
//! (`policy=int4|w8|int8|fp16|bf16|fp32`), refined by rules (`rules=`, or
//! a TOML file as `policy=`), or searched within a budget ([`search`]).
//! Each precision is written in the form onnxruntime runs fast:
//!
//! - `int4` / `w8`: weight-only blocks ([`weights`], [`blocks`]). Every
//!   constant-weight MatMul, and Gemm with an untransposed input, has its
//!   weight `W [k, n]` cut along `k` into blocks of `block` rows per output,
//!   each with an f32 scale and, when `symmetric=false`, a zero point;
//!   written as `com.microsoft::MatMulNBits` (`format=nbits`) or opset-21
//!   blocked DequantizeLinear → MatMul (`format=dq`). `round=gptq` (with
//!   calibration data) rounds row after row and spreads each row's error
//!   over the rows left through the inverse of the input's second moment
//!   (GPTQ); `round=rtn` (and any run without data) rounds to nearest.
//!   With `tables=true` embedding tables go to blocks too ([`tables`]):
//!   gathered packed, dequantized after the lookup.
//! - `int8`: QuantizeLinear/DequantizeLinear pairs (W8A8, [`qdq`]),
//!   activations ranged on calibration data, optionally after SmoothQuant
//!   ([`smooth`]); the model is raised to opset 13 first.
//! - `fp16` / `bf16`: half-precision regions with Casts at their edges
//!   ([`half`]); the ops of `keep=` stay f32.
//!
//! The steps run in that order, each on the nodes the policy gives its
//! precision. Convolutions and transposed-input sites are not
//! weight-only quantized and are listed in the report with the reason.
//!
//! Preserves: the model's function up to the rounding of its weights (and
//! activations). The report gives per weight the precision, block size and
//! predicted relative output error, and the whole model's output error
//! measured on held-out calibration samples.

mod blocks;
mod half;
mod policy;
mod qdq;
mod search;
mod smooth;
mod tables;
mod weights;

use crate::context::PassContext;
use crate::linear::stats::{collect_with_judging_outputs, StatsRequest};
use crate::linear::{find_sites, LinearSite, SiteOp};
use crate::outputs::{fitting_samples, report_judged_error};
use crate::pipeline::Options;
use crate::ranges::{collect_histograms, RangeMethod};
use crate::{Pass, PassOutcome};
use blocks::Format;
use policy::{Choice, Policy, Precision};
use rayon::prelude::*;
use sculpt_ir::{DataType, IrError, Model, NodeId, OpsetImport};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use weights::{Form, Quantization, Weight};

/// The domain of onnxruntime's contrib ops.
const CONTRIB: &str = "com.microsoft";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounding {
    Gptq,
    Rtn,
}

pub struct Quantize {
    policy: Policy,
    search: Option<search::SearchSpec>,
    /// Where a search writes its plot and its policy.
    plot: Option<String>,
    policy_out: Option<String>,
    /// SmoothQuant's strength for int8 (`None`: no smoothing).
    smooth: Option<smooth::Strength>,
    /// Smooth inputs no LayerNormalization makes too, through a `Mul`.
    smooth_mul: bool,
    qdq: qdq::QdqSpec,
    block: usize,
    symmetric: bool,
    /// How weight-only sites are written (`None`: by precision, see
    /// [`Quantize::form_of`]).
    form: Option<Form>,
    rounding: Rounding,
    damp: f64,
    accuracy_level: i64,
    /// Embedding tables (Gathers of constant tables) too.
    tables: bool,
    /// Tables of fewer elements stay f32 (a token-type table of two rows).
    min_table: usize,
    /// Op types half-precision regions leave f32.
    keep: Vec<String>,
    /// fp16/bf16 as stored weights only (compute stays f32).
    half_weights: bool,
}

impl Quantize {
    pub fn from_options(options: &Options) -> crate::Result<Quantize> {
        let given = options.get("policy").unwrap_or("int4");
        let mut policy = if given.ends_with(".toml") {
            let text = std::fs::read_to_string(given)
                .map_err(|e| options.invalid("policy", format!("cannot read {given}: {e}")))?;
            Policy::from_toml(&text)
                .map_err(|e| options.invalid("policy", format!("{given}: {e}")))?
        } else {
            Policy::uniform(Choice::parse(given).map_err(|e| options.invalid("policy", e))?)
        };
        if let Some(rules) = options.get("rules") {
            policy
                .add_inline_rules(rules)
                .map_err(|e| options.invalid("rules", e))?;
        }
        policy.include.extend(options.patterns("include"));
        policy.exclude.extend(options.patterns("exclude"));
        let format = options.choice("format")?;
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
        if damp <= 0.0 || !damp.is_finite() {
            return Err(options.invalid("damp", "must be above 0"));
        }
        let accuracy_level = options.usize("accuracy_level")?;
        if accuracy_level > 4 {
            return Err(options.invalid("accuracy_level", "0 to 4"));
        }
        let smooth = match options.get("smooth") {
            Some("none") => None,
            Some("auto") | None => Some(smooth::Strength::Auto),
            Some(_) => match options.f64("smooth")? {
                alpha if (0.0..=1.0).contains(&alpha) => Some(smooth::Strength::Fixed(alpha)),
                _ => return Err(options.invalid("smooth", "0 to 1, auto or none")),
            },
        };
        let search = match (options.bool("search")?, options.get("budget")) {
            (true, Some(budget)) => {
                let budget =
                    search::Budget::parse(budget).map_err(|e| options.invalid("budget", e))?;
                let choices = options
                    .patterns("choices")
                    .iter()
                    .map(|c| Choice::parse(c).and_then(search::check_choice))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| options.invalid("choices", e))?;
                if choices.len() < 2 {
                    return Err(options.invalid("choices", "give two or more to choose from"));
                }
                Some(search::SearchSpec {
                    budget,
                    choices,
                    probe_samples: options.usize("probe_samples")?,
                })
            }
            (true, None) => {
                return Err(options.invalid("search", "needs budget=size:BYTES, size:P% or error:E"))
            }
            (false, Some(_)) => return Err(options.invalid("budget", "needs search=true")),
            (false, None) => None,
        };
        if search.is_none() && (options.given("plot") || options.given("policy_out")) {
            return Err(options.invalid("plot", "plot and policy_out need search=true"));
        }
        Ok(Quantize {
            policy,
            search,
            plot: options.get("plot").map(String::from),
            policy_out: options.get("policy_out").map(String::from),
            smooth,
            smooth_mul: options.bool("smooth_mul")?,
            qdq: qdq::QdqSpec { codes, method, ops },
            block,
            symmetric: options.bool("symmetric")?,
            form: match format {
                "dq" => Some(Form::Dq),
                "nbits" => Some(Form::Nbits),
                _ => None,
            },
            rounding: match options.choice("round")? {
                "rtn" => Rounding::Rtn,
                _ => Rounding::Gptq,
            },
            damp,
            accuracy_level: accuracy_level as i64,
            tables: options.bool("tables")?,
            min_table: options.usize("min_table")?,
            keep: options.patterns("keep"),
            half_weights: options.choice("half")? == "weights",
        })
    }

    /// How a weight-only site of `precision` is written: as asked, or
    /// int4 as MatMulNBits and int8 as blocked DequantizeLinear →
    /// MatMul (onnxruntime's 8-bit MatMulNBits kernel is slower than
    /// f32 on x86, the DequantizeLinear form faster).
    fn form_of(&self, precision: Precision) -> Form {
        match (self.form, precision) {
            (Some(form), _) => form,
            (None, Precision::W8) => Form::Dq,
            (None, _) => Form::Nbits,
        }
    }

    fn smoothing_strength(&self) -> String {
        match self.smooth {
            Some(smooth::Strength::Fixed(alpha)) => format!("α {alpha}"),
            _ => "α chosen per input".into(),
        }
    }

    /// Whether some weight may be written as blocked DequantizeLinear.
    fn may_write_dq(&self) -> bool {
        let mut precisions = self.policy.precisions();
        if let Some(spec) = &self.search {
            precisions.extend(spec.choices.iter().map(|c| c.precision));
        }
        precisions
            .into_iter()
            .filter(|p| p.is_weight_only())
            .any(|p| self.form_of(p) == Form::Dq)
    }

    /// The block format of a weight-only choice.
    fn format(&self, choice: Choice) -> Format {
        Format {
            bits: choice.precision.bits(),
            block: choice.block.unwrap_or(self.block),
            symmetric: self.symmetric,
        }
    }

    /// Why `site` cannot be weight-only quantized, if it cannot.
    fn refusal(&self, g: &sculpt_ir::Graph, site: &LinearSite) -> Option<String> {
        match site.op {
            SiteOp::Conv(_) => {
                return Some("a convolution (MatMulNBits is a matrix product)".into())
            }
            SiteOp::Gemm { trans_a: true, .. } => {
                return Some("Gemm with transA=1 (its input is not row by row)".into())
            }
            _ => {}
        }
        // A MatMul's input has its weight's type (which is known); the
        // scales take it too (MatMulNBits and DequantizeLinear take f32
        // and f16 on onnxruntime's CPU).
        let weight_type = sculpt_ir::ops::infer::value_type(g, site.weight).and_then(|t| t.dtype());
        if !matches!(weight_type, Some(DataType::F32 | DataType::F16)) {
            return Some("the weight is neither f32 nor f16".into());
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

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn needs_canonical(&self) -> bool {
        true
    }

    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        let reference = model.clone();
        let before = model.graph.param_bytes();
        // A branch's weights kept in the main graph: into the branch, where
        // the body's rewrites find them.
        sculpt_ir::rewrite::move_constants_into_bodies(&mut model.graph);
        let precisions = self.policy.precisions();
        let mut outcome = PassOutcome::default();
        let mut kept = None;
        let int8_tables = self.tables && precisions.contains(&Precision::Int8);
        if self.search.is_some() || int8_tables || precisions.iter().any(|p| p.is_weight_only()) {
            kept = self.weight_only(model, cx, &mut outcome)?;
        }
        if precisions.contains(&Precision::Int8) {
            self.int8(model, cx, &mut outcome)?;
        }
        for (precision, dtype) in [
            (Precision::F16, DataType::F16),
            (Precision::Bf16, DataType::BF16),
        ] {
            if precisions.contains(&precision) {
                self.half(model, precision, dtype, &mut outcome)?;
            }
        }
        crate::transform::cleanup::dead_code::remove_dead_code(&mut model.graph);
        let after = model.graph.param_bytes();
        outcome.stat("weight_bytes_before", before);
        outcome.stat("weight_bytes_after", after);
        if outcome.changed {
            outcome.details.push(format!(
                "weights {before} -> {after} bytes ({:.2}x smaller)",
                before as f64 / after.max(1) as f64
            ));
            report_judged_error(&mut outcome, cx, &reference, model, kept)?;
        }
        Ok(outcome)
    }
}

impl Quantize {
    fn is(&self, model: &Model, id: sculpt_ir::NodeId, precision: Precision) -> bool {
        self.policy.resolve_node(&model.graph, id).precision == precision
    }

    /// The weights the policy (or a search) makes weight-only, with their
    /// choice; the ones that cannot be are added to `skipped`.
    fn weight_only_targets(
        &self,
        model: &Model,
        skipped: &mut Vec<(String, String)>,
    ) -> Vec<(Weight, Choice)> {
        let graph = &model.graph;
        let (sites, refused) = find_sites(graph);
        let mut found = Vec::new();
        for site in sites {
            let choice = self.policy.resolve_node(graph, site.node);
            if !choice.precision.is_weight_only() {
                continue;
            }
            match self.refusal(graph, &site) {
                None => found.push((Weight::Site(site, None), choice)),
                Some(why) => skipped.push((site.name.clone(), why)),
            }
        }
        skipped.extend(refused);
        if self.tables {
            let format = Format {
                bits: 4,
                block: 16,
                symmetric: self.symmetric,
            };
            let (tables, refused) = tables::find_tables(graph, format, self.min_table);
            for t in tables {
                let mut choice = self.policy.resolve_node(graph, t.node);
                // An int8 table is 8-bit blocks too (per-tensor int8 codes
                // would round every row to one scale), of up to 128 codes:
                // 8 bits need fewer scales than 4.
                if choice.precision == Precision::Int8 {
                    choice.precision = Precision::W8;
                    choice.block = choice
                        .block
                        .or_else(|| [128, 64, 32, 16].into_iter().find(|b| t.width % b == 0));
                }
                if !choice.precision.is_weight_only() {
                    continue;
                }
                let block = self.format(choice).block;
                if t.width % block != 0 {
                    skipped.push((
                        t.name.clone(),
                        format!(
                            "its width {} is not a multiple of the block {block}",
                            t.width
                        ),
                    ));
                    continue;
                }
                found.push((Weight::Table(t), choice));
            }
            skipped.extend(refused);
        }
        found
    }

    /// Weight-only quantization of the sites and tables the policy (or a
    /// search) gives `int4`/`w8`. Returns the reference outputs on the
    /// judging samples when the statistics run computed them.
    fn weight_only(
        &mut self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
        outcome: &mut PassOutcome,
    ) -> Result<Option<Vec<Vec<f32>>>, IrError> {
        if self.may_write_dq() {
            // Blocked DequantizeLinear and 4-bit codes are opset 21's.
            sculpt_ir::opset::raise_opset(model, 21)?;
        }
        let mut skipped = Vec::new();
        let mut targets = self.weight_only_targets(model, &mut skipped);
        // GPTQ's statistics, and the model's outputs on the judging
        // samples from the same run.
        let gptq = self.rounding == Rounding::Gptq && cx.calibrator.is_some();
        let mut kept = None;
        let sites: Vec<usize> = (0..targets.len())
            .filter(|&i| matches!(targets[i].0, Weight::Site(..)))
            .collect();
        if gptq && !sites.is_empty() {
            let requests: Vec<StatsRequest> = sites
                .iter()
                .map(|&i| match &targets[i].0 {
                    Weight::Site(s, _) => StatsRequest::for_site(model, s, true),
                    Weight::Table(_) => unreachable!("sites only"),
                })
                .collect();
            let (stats, outputs) = collect_with_judging_outputs(model, &requests, cx, "quantize")?;
            kept = outputs;
            for (&i, s) in sites.iter().zip(stats) {
                if let Weight::Site(_, slot) = &mut targets[i].0 {
                    *slot = Some(s);
                }
            }
        }
        let damp = gptq.then_some(self.damp);
        // Per weight, the choices to weigh: the policy's, or the search's.
        let options: Vec<Vec<Choice>> = targets
            .iter()
            .map(|(w, choice)| match &self.search {
                None => vec![*choice],
                Some(spec) => spec
                    .choices
                    .iter()
                    .copied()
                    .filter(|c| match w {
                        Weight::Table(t) => t.width % self.format(*c).block == 0,
                        Weight::Site(..) => true,
                    })
                    .collect(),
            })
            .collect();
        let pairs: Vec<(usize, Choice)> = options
            .iter()
            .enumerate()
            .flat_map(|(i, cs)| cs.iter().map(move |&c| (i, c)))
            .collect();
        let quantized: Vec<Option<Quantization>> = pairs
            .par_iter()
            .map(|&(i, c)| match c.precision {
                Precision::F32 => Ok(None),
                _ => targets[i]
                    .0
                    .quantize(&model.graph, self.format(c), damp)
                    .map(Some),
            })
            .collect::<Result<_, _>>()?;
        let mut candidates: Vec<Vec<search::Candidate>> =
            options.iter().map(|_| Vec::new()).collect();
        for ((i, c), q) in pairs.into_iter().zip(quantized) {
            candidates[i].push((c, q));
        }
        let weights: Vec<Weight> = targets.into_iter().map(|(w, _)| w).collect();
        let picks = match &self.search {
            None => vec![0; weights.len()],
            Some(spec) => {
                let found = search::search(model, &self.policy, &weights, &candidates, spec, cx)?;
                outcome.details.extend(found.details);
                outcome.records.extend(found.records);
                if let Some(path) = &self.plot {
                    outcome.files.push((path.into(), found.svg.into_bytes()));
                }
                if let Some(path) = &self.policy_out {
                    outcome
                        .files
                        .push((path.into(), found.policy.to_toml().into_bytes()));
                }
                found.picks
            }
        };
        let chosen: Vec<(&Weight, &search::Candidate)> = weights
            .iter()
            .zip(&candidates)
            .zip(&picks)
            .filter_map(|((w, c), &p)| c.get(p).map(|c| (w, c)))
            .filter(|(_, (_, q))| q.is_some())
            .collect();
        let mut in_bodies = Vec::new();
        self.quantize_bodies(&mut model.graph, &mut in_bodies, &mut skipped)?;
        if chosen.is_empty() && in_bodies.is_empty() {
            for (name, why) in &skipped {
                outcome
                    .details
                    .push(format!("  not quantized: {name}: {why}"));
            }
            return Ok(kept);
        }
        let nbits = chosen
            .iter()
            .any(|(_, (c, _))| self.form_of(c.precision) == Form::Nbits)
            || model.graph.any_node(&|n| n.domain == CONTRIB);
        if nbits && !model.opset_imports.iter().any(|o| o.domain == CONTRIB) {
            model.opset_imports.push(OpsetImport {
                domain: CONTRIB.into(),
                version: 1,
            });
        }
        let (mut sites, mut tables) = (in_bodies.len(), 0usize);
        for record in in_bodies {
            outcome.details.push(format!(
                "  {} (in a subgraph): {}, rtn",
                record["site"].as_str().unwrap_or("?"),
                record["precision"].as_str().unwrap_or("?")
            ));
            outcome.records.push(record);
        }
        for (w, (choice, q)) in &chosen {
            let q = q.as_ref().expect("filtered above");
            let form = match w {
                Weight::Site(..) => self.form_of(choice.precision),
                Weight::Table(_) => Form::Nbits,
            };
            w.rewrite(&mut model.graph, &q.quantized, form, self.accuracy_level)?;
            match w {
                Weight::Site(..) => sites += 1,
                Weight::Table(_) => tables += 1,
            }
            let mut record = q.record.clone();
            record["precision"] = json!(choice.to_string());
            outcome.details.push(format!(
                "  {}: {choice}, {}{}",
                w.name(),
                record["rounding"].as_str().unwrap_or("?"),
                record["predicted_error"]
                    .as_f64()
                    .map_or(String::new(), |e| format!(
                        ", predicted output error {e:.3e}"
                    ))
            ));
            outcome.records.push(record);
        }
        outcome.changed = true;
        outcome.stat("sites_quantized", sites);
        outcome.stat("tables_quantized", tables);
        outcome.details.insert(
            0,
            format!(
                "weight-only ({}, {}): {sites} sites and {tables} tables",
                match self.form {
                    Some(Form::Nbits) => "MatMulNBits",
                    Some(Form::Dq) => "blocked DequantizeLinear",
                    None => "int4 as MatMulNBits, int8 as blocked DequantizeLinear",
                },
                if self.symmetric {
                    "symmetric"
                } else {
                    "with zero points"
                },
            ),
        );
        for (name, why) in &skipped {
            outcome
                .details
                .push(format!("  not quantized: {name}: {why}"));
        }
        Ok(kept)
    }

    /// Weight-only sites inside If/Loop/Scan bodies (at any depth), rounded
    /// to nearest: calibration runs see the main graph's values only.
    /// Their records go to `records`.
    fn quantize_bodies(
        &self,
        graph: &mut sculpt_ir::Graph,
        records: &mut Vec<serde_json::Value>,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<(), IrError> {
        sculpt_ir::ops::infer::for_each_body_typed(graph, &mut |body| {
            let (sites, _) = find_sites(body);
            for site in sites {
                let choice = self.policy.resolve_node(body, site.node);
                if !choice.precision.is_weight_only() {
                    continue;
                }
                if let Some(why) = self.refusal(body, &site) {
                    skipped.push((site.name.clone(), why));
                    continue;
                }
                let weight = Weight::Site(site, None);
                let q = weight.quantize(body, self.format(choice), None)?;
                let form = self.form_of(choice.precision);
                weight.rewrite(body, &q.quantized, form, self.accuracy_level)?;
                let mut record = q.record;
                record["precision"] = json!(choice.to_string());
                record["in_subgraph"] = json!(true);
                records.push(record);
            }
            crate::transform::cleanup::dead_code::remove_dead_code(body);
            Ok(())
        })
    }

    /// int8 inside If/Loop/Scan bodies (at any depth): the weights of the
    /// matrix products and convolutions the policy gives `int8`, per
    /// output channel as in the main graph; their activations, which no
    /// calibration run sees, stay f32. Returns how many weights.
    fn int8_bodies(&self, graph: &mut sculpt_ir::Graph) -> Result<usize, IrError> {
        let mut weights = 0;
        sculpt_ir::ops::infer::for_each_body_typed(graph, &mut |body| {
            let chosen = self.nodes_of(body, Precision::Int8);
            let plan = qdq::weights_plan(body, |id| chosen.contains(&id));
            weights += qdq::rewrite(body, &plan, &HashMap::new(), &self.qdq)?.weights;
            crate::transform::cleanup::dead_code::remove_dead_code(body);
            Ok::<(), IrError>(())
        })?;
        Ok(weights)
    }

    /// The nodes of `graph` the policy gives `precision`.
    fn nodes_of(&self, graph: &sculpt_ir::Graph, precision: Precision) -> HashSet<NodeId> {
        graph
            .node_ids()
            .into_iter()
            .filter(|&id| self.policy.resolve_node(graph, id).precision == precision)
            .collect()
    }

    /// The nodes the policy gives `precision` (fp16 or bf16) as regions
    /// of `dtype`.
    fn half(
        &self,
        model: &mut Model,
        precision: Precision,
        dtype: DataType,
        outcome: &mut PassOutcome,
    ) -> Result<(), IrError> {
        if dtype == DataType::BF16 {
            // Cast and most ops take bfloat16 from opset 13.
            sculpt_ir::opset::raise_opset(model, 13)?;
        }
        sculpt_ir::ops::infer::infer_graph(&mut model.graph)?;
        let keep: Vec<String> = if self.keep.is_empty() {
            half::KEPT.iter().map(|s| s.to_string()).collect()
        } else {
            self.keep.clone()
        };
        // The main graph, then every If/Loop/Scan body: values cross a
        // body's edge in f32 (a node whose output a body reads stays f32,
        // a body's outputs are cast back).
        let mut done = half::HalfOutcome::default();
        let mut stored = 0;
        let mut in_bodies = 0;
        let mut one_graph = |graph: &mut sculpt_ir::Graph, in_body: bool| {
            let chosen = self.nodes_of(graph, precision);
            let before = (done.nodes, stored);
            if self.half_weights {
                let (count, kept) = half::store_weights(graph, dtype, |id| chosen.contains(&id))?;
                stored += count;
                done.kept.extend(kept);
            } else {
                done.add(half::convert(graph, dtype, &keep, |id| {
                    chosen.contains(&id)
                })?);
            }
            if in_body {
                in_bodies += done.nodes - before.0 + stored - before.1;
                crate::transform::cleanup::dead_code::remove_dead_code(graph);
            }
            Ok::<(), IrError>(())
        };
        one_graph(&mut model.graph, false)?;
        sculpt_ir::ops::infer::for_each_body_typed(&mut model.graph, &mut |body| {
            one_graph(body, true)
        })?;
        if self.half_weights {
            outcome.changed |= stored > 0;
            outcome.stat("half_weights", stored);
            outcome.details.push(format!(
                "{}: {stored} weights stored in it, cast to f32 where read ({in_bodies} inside If/Loop/Scan bodies)",
                precision.name()
            ));
        } else {
            outcome.changed |= done.nodes > 0;
            outcome.stat("half_nodes", done.nodes);
            outcome.stat("half_casts", done.casts);
            outcome.details.push(format!(
                "{}: {} nodes computed in it ({in_bodies} inside If/Loop/Scan bodies), {} Casts at the regions' edges",
                precision.name(),
                done.nodes,
                done.casts
            ));
            if dtype == DataType::BF16 && done.nodes > 0 {
                outcome.details.push(
                    "  note: onnxruntime's CPU provider has no bf16 kernels for most ops (GPU providers do); half=weights stores bf16 weights and computes in f32".into(),
                );
            }
        }
        for (name, why) in &done.kept {
            outcome.details.push(format!("  kept f32: {name}: {why}"));
        }
        Ok(())
    }

    /// int8 QDQ around the nodes the policy gives `int8` (of the `ops=`
    /// types), activations ranged on the calibration samples but the
    /// judging ones.
    fn int8(
        &mut self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
        outcome: &mut PassOutcome,
    ) -> Result<(), IrError> {
        sculpt_ir::opset::raise_opset(model, 13)?;
        sculpt_ir::ops::infer::infer_graph(&mut model.graph)?;
        let options = cx.stats_options(model);
        let calibrator = cx.calibrator("quantize policy=int8", "ranges activations")?;
        calibrator.select_samples(fitting_samples(calibrator.samples()));
        let smoothed = match self.smooth {
            Some(strength) => {
                let (sites, _) = find_sites(&model.graph);
                let sites: Vec<LinearSite> = sites
                    .into_iter()
                    .filter(|s| self.is(model, s.node, Precision::Int8))
                    .collect();
                smooth::smooth(
                    model,
                    &sites,
                    strength,
                    self.smooth_mul,
                    calibrator,
                    &options,
                )?
            }
            None => smooth::Smoothed {
                folded: 0,
                divisions: Vec::new(),
            },
        };
        let body_weights = self.int8_bodies(&mut model.graph)?;
        if body_weights > 0 {
            outcome.changed = true;
            outcome.stat("weights_quantized_in_bodies", body_weights);
            outcome.details.push(format!(
                "int8 inside If/Loop/Scan bodies: {body_weights} weights of matrix products and convolutions, per output channel; their activations stay f32 (calibration runs see the main graph's values only)"
            ));
        }
        let chosen = |id| self.is(model, id, Precision::Int8) && !smoothed.divisions.contains(&id);
        let plan = qdq::plan(&model.graph, &self.qdq, chosen, &HashSet::new());
        let (divided, smoothed) = (smoothed.divisions.len(), smoothed.folded);
        if plan.nodes.is_empty() {
            calibrator.select_samples(None);
            outcome.changed |= smoothed + divided > 0;
            outcome.stat("inputs_smoothed", smoothed + divided);
            outcome.details.push(format!(
                "int8: no node to quantize ({} inputs smoothed ({divided} through a Mul))",
                smoothed + divided
            ));
            return Ok(());
        }
        let names: Vec<String> = plan
            .ranged
            .iter()
            .map(|&v| model.graph.value(v).name.clone())
            .collect();
        let histograms = collect_histograms(model, &names, calibrator);
        calibrator.select_samples(None);
        let histograms: HashMap<_, _> =
            plan.ranged
                .iter()
                .copied()
                .zip(histograms.map_err(|e| {
                    IrError::Invalid(format!("quantize: calibration run failed: {e}"))
                })?)
                .collect();
        // Values 8 bits would lose stay f32, and the nodes around them.
        let kept = qdq::unquantizable(&model.graph, &histograms, &self.qdq);
        let plan = match kept.is_empty() {
            true => plan,
            false => {
                let kept: HashSet<_> = kept.iter().map(|(v, _)| *v).collect();
                qdq::plan(&model.graph, &self.qdq, chosen, &kept)
            }
        };
        let records: Vec<serde_json::Value> = plan
            .nodes
            .iter()
            .map(|&id| {
                let n = model.graph.node(id);
                json!({"node": n.display_name(), "op": n.op_type, "precision": "int8"})
            })
            .collect();
        let done = qdq::rewrite(&mut model.graph, &plan, &histograms, &self.qdq)?;
        let (activations, weights) = (done.activations, done.weights);
        outcome.changed = true;
        outcome.records.extend(records);
        outcome.stat("nodes_quantized", plan.nodes.len());
        outcome.stat("activations_quantized", activations);
        outcome.stat("weights_quantized", weights);
        outcome.details.push(format!(
            "int8 QDQ ({:?} activations, ranges by {:?}): {} nodes, {activations} activations and {weights} weights",
            self.qdq.codes,
            self.qdq.method,
            plan.nodes.len()
        ));
        outcome.stat("activations_kept_f32", kept.len());
        outcome.stat("inputs_smoothed", smoothed + divided);
        if smoothed > 0 {
            outcome.details.push(format!(
                "  {smoothed} LayerNormalization outputs smoothed into the weights reading them (SmoothQuant {})",
                self.smoothing_strength()
            ));
        }
        if divided > 0 {
            outcome.details.push(format!(
                "  {divided} other inputs smoothed through a Mul before their quantizer (SmoothQuant {})",
                self.smoothing_strength()
            ));
        }
        for (_, why) in &kept {
            outcome.details.push(format!("  kept f32: {why}"));
        }
        Ok(())
    }
}
