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

use crate::calib::ranges::{collect_histograms, RangeMethod};
use crate::calib::stats::StatsRequest;
use crate::context::PassContext;
use crate::linear::{find_sites, LinearSite, SiteOp};
use crate::options::{Auto, FilePath, OptionValue, Patterns};
use crate::{NamedPass, Pass, PassOutcome};
use blocks::Format;
use policy::{Choice, Policy, Precision};
use rayon::prelude::*;
use sculpt_ir::{DataType, IrError, Model, NodeId, OpsetImport};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use weights::{Form, Quantization, Weight};

/// The domain of onnxruntime's contrib ops.
const CONTRIB: &str = "com.microsoft";

crate::choice! {
    /// How weight-only blocks are rounded.
    pub enum Rounding {
        /// Row by row, each row's error spread over the rows left.
        Gptq = "gptq",
        /// To nearest.
        Rtn = "rtn",
    }
}

crate::choice! {
    /// How an activation's int8 range is chosen from its histogram.
    pub enum RangeChoice {
        MinMax = "minmax",
        Percentile = "percentile",
        Entropy = "entropy",
        Mse = "mse",
    }
}

crate::choice! {
    /// int8 activation codes.
    pub enum ActivationCodes {
        Int8 = "int8",
        Uint8 = "uint8",
    }
}

crate::choice! {
    /// How fp16/bf16 is applied.
    pub enum HalfForm {
        /// The nodes compute in it, Casts at the regions' edges.
        Regions = "regions",
        /// Weights stored in it, cast to f32 where read.
        Weights = "weights",
    }
}

crate::choice! {
    /// How weight-only sites are written.
    pub enum FormatOption {
        /// int4 as nbits, int8 as dq.
        Auto = "auto",
        Nbits = "nbits",
        Dq = "dq",
    }
}

/// `policy=`: a precision for every node, or a TOML policy file (read
/// once, when the pass is built).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyText(pub String);

impl OptionValue for PolicyText {
    fn kind() -> String {
        "int4|w8|int8|fp16|bf16|fp32|FILE.toml".into()
    }
    fn parse(text: &str) -> Result<PolicyText, String> {
        Ok(PolicyText(text.into()))
    }
    fn text(&self) -> String {
        self.0.clone()
    }
}

/// `smooth=`: SmoothQuant's strength, `auto` or `none`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothOption(pub Option<smooth::Strength>);

impl OptionValue for SmoothOption {
    fn kind() -> String {
        "number|auto|none".into()
    }
    fn parse(text: &str) -> Result<SmoothOption, String> {
        match text {
            "none" => Ok(SmoothOption(None)),
            "auto" => Ok(SmoothOption(Some(smooth::Strength::Auto))),
            _ => match f64::parse(text)? {
                alpha if (0.0..=1.0).contains(&alpha) => {
                    Ok(SmoothOption(Some(smooth::Strength::Fixed(alpha))))
                }
                _ => Err("0 to 1, auto or none".into()),
            },
        }
    }
    fn text(&self) -> String {
        match self.0 {
            None => "none".into(),
            Some(smooth::Strength::Auto) => "auto".into(),
            Some(smooth::Strength::Fixed(alpha)) => alpha.to_string(),
        }
    }
}

crate::pass_options! {
    /// Options of `quantize`.
    pub struct QuantizeOptions {
        /// the precision of every node (int4/w8: weight-only blocks; int8: int8 weights and activations as QuantizeLinear/DequantizeLinear pairs; fp16/bf16: half-precision regions), or a TOML policy: default, include, exclude and [[rule]] tables (precision, op, name, layers)
        policy: PolicyText = PolicyText("int4".into()),
        /// rules after the policy's, ;-separated: PRECISION[/BLOCK] [op=A|B] [name=GLOB|GLOB] [layers=N-M]; the last matching rule wins
        rules: Option<String> = None,
        /// choose each weight-only weight's precision among choices: the model's output error measured with each candidate alone, then the least total error within budget
        search: bool = false,
        /// search: size:BYTES (K/M/G) or size:P% of all the model's weight bytes, or error:E (sum of measured relative output errors)
        budget: Option<search::Budget> = None,
        /// search: the precisions to choose from (int4, w8 or fp32, each with an optional /BLOCK)
        choices: Patterns = Patterns::of(&["int4", "int4/128", "w8/128"]),
        /// search: calibration samples each sensitivity probe runs
        probe_samples: usize = 16,
        /// search: write size against error, the Pareto points and the pick, as SVG
        plot: Option<FilePath> = None,
        /// search: write the policy picked as TOML (policy=FILE.toml applies it again)
        policy_out: Option<FilePath> = None,
        /// int8: how an activation's range is chosen from its histogram: whole range, a percentile each side (the default: it measured best on all four corpus models, benches/quantize_int8.py), least KL divergence, least squared error
        calib: RangeChoice = RangeChoice::Percentile,
        /// int8, calib=percentile: the share (%) of values kept on each side
        percentile: f64 = 99.999,
        /// int8: SmoothQuant strength α (0 to 1; auto: per input, the α of least predicted output error, or none where none helps; none: off): each LayerNormalization output feeding only MatMul/Gemm sites is divided per channel by rms(x)^α / max|W|^(1-α), folded into the norm, the weights multiplied (exact), so outlier channels stop setting the activation scale
        smooth: SmoothOption = SmoothOption(Some(smooth::Strength::Auto)),
        /// int8: also smooth the inputs no LayerNormalization makes (an FFN's activation output), each through a per-channel Mul before its quantizer (one elementwise op)
        smooth_mul: bool = false,
        /// int8: activation codes (S8S8 or U8S8 with int8 weights). U8S8 runs faster in onnxruntime on x86, but on CPUs without VNNI its 16-bit sums can saturate (minilm_l6_v2 on an AVX2 EPYC: cosine 0.974 against 0.995 with S8S8, benches/defaults_minilm.py)
        activations: ActivationCodes = ActivationCodes::Int8,
        /// int8: the op types to quantize (|-separated); auto: in models with attention the matrix products and embedding lookups (MatMul, Gemm, Gather: minilm_l6_v2's cosine 0.9954 against 0.991 with every op), otherwise those onnxruntime's quantizer takes (Conv, MatMul, Gemm, Add, Mul, pooling, Concat, Resize, data movement...)
        ops: Auto<Patterns> = Auto::Auto,
        /// fp16/bf16: regions = the nodes compute in it, Casts at the regions' edges; weights = weights stored in it and cast to f32 where read (smaller files for runtimes without half kernels, e.g. bf16 on onnxruntime's CPU provider)
        half: HalfForm = HalfForm::Regions,
        /// fp16/bf16: op types left f32 (default Softmax, LogSoftmax, LayerNormalization, reductions, Pow, Exp, Log)
        keep: Patterns = Patterns::default(),
        /// weight-only sites: nbits = com.microsoft::MatMulNBits (onnxruntime, tract); dq = opset-21 blocked DequantizeLinear of int4/uint4 (int8/uint8) codes feeding MatMul (standard ONNX; the model is raised to opset 21); auto = int4 as nbits, int8 as dq (onnxruntime's 8-bit MatMulNBits is slower than f32 on x86)
        format: FormatOption = FormatOption::Auto,
        /// rows of W per scale, along the input axis (a power of two, 16 or more), unless a precision says /BLOCK
        block: usize = 32,
        /// false: a zero point per block, the block's min and max spanning the codes; true: the middle code is zero, scales only
        symmetric: bool = false,
        /// gptq: row by row, each row's rounding error spread over the rows left through the inverse input second moment (needs calibration data, else rtn); rtn: round to nearest
        round: Rounding = Rounding::Gptq,
        /// gptq: added to the second moment's diagonal, times its mean
        damp: f64 = 0.01,
        /// embedding tables too (Gathers of constant f32 tables, see min_table): int4/int8 rows with block scales and zero points, gathered then dequantized with standard ops
        tables: bool = true,
        /// tables: only those of at least this many elements
        min_table: usize = 4096,
        /// MatMulNBits' accuracy_level: the least precision onnxruntime may compute in (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)
        accuracy_level: usize = 0,
        /// only nodes whose name matches one of these |-separated patterns (* wildcards)
        include: Patterns = Patterns::default(),
        /// leave nodes whose name matches one of these patterns f32
        exclude: Patterns = Patterns::default(),
    }
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
    /// The int8 ops as given (`auto`: decided from the graph,
    /// [`Quantize::resolve_int8_ops`]).
    ops_option: Auto<Patterns>,
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

impl NamedPass for Quantize {
    const NAME: &'static str = "quantize";
    const SUMMARY: &'static str = "a precision policy: weight-only int4/int8 blocks for MatMul/Gemm and embedding tables (MatMulNBits or blocked DequantizeLinear, GPTQ-rounded), int8 QDQ (W8A8, calibrated ranges), fp16/bf16 regions; uniform, by rules, or searched within a size or error budget";
    type Options = QuantizeOptions;

    fn new(o: QuantizeOptions) -> crate::Result<Quantize> {
        let invalid =
            |option: &str, reason: String| crate::options::invalid(Self::NAME, option, reason);
        let given = o.policy.0.as_str();
        let mut policy = if given.ends_with(".toml") {
            let text = std::fs::read_to_string(given)
                .map_err(|e| invalid("policy", format!("cannot read {given}: {e}")))?;
            Policy::from_toml(&text).map_err(|e| invalid("policy", format!("{given}: {e}")))?
        } else {
            Policy::uniform(Choice::parse(given).map_err(|e| invalid("policy", e))?)
        };
        if let Some(rules) = &o.rules {
            policy
                .add_inline_rules(rules)
                .map_err(|e| invalid("rules", e))?;
        }
        policy.include.extend(o.include.0);
        policy.exclude.extend(o.exclude.0);
        if !(50.0..=100.0).contains(&o.percentile) {
            return Err(invalid("percentile", "50 to 100".into()));
        }
        let method = match o.calib {
            RangeChoice::Percentile => RangeMethod::Percentile(o.percentile),
            RangeChoice::Entropy => RangeMethod::Entropy,
            RangeChoice::Mse => RangeMethod::Mse,
            RangeChoice::MinMax => RangeMethod::MinMax,
        };
        if o.block < 16 || !o.block.is_power_of_two() {
            return Err(invalid("block", "a power of two, 16 or more".into()));
        }
        if o.damp <= 0.0 {
            return Err(invalid("damp", "must be above 0".into()));
        }
        if o.accuracy_level > 4 {
            return Err(invalid("accuracy_level", "0 to 4".into()));
        }
        let search = match (o.search, o.budget) {
            (true, Some(budget)) => {
                let choices = o
                    .choices
                    .0
                    .iter()
                    .map(|c| Choice::parse(c).and_then(search::check_choice))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("choices", e))?;
                if choices.len() < 2 {
                    return Err(invalid("choices", "give two or more to choose from".into()));
                }
                Some(search::SearchSpec {
                    budget,
                    choices,
                    probe_samples: o.probe_samples,
                })
            }
            (true, None) => {
                return Err(invalid(
                    "search",
                    "needs budget=size:BYTES, size:P% or error:E".into(),
                ))
            }
            (false, Some(_)) => return Err(invalid("budget", "needs search=true".into())),
            (false, None) => None,
        };
        if search.is_none() && (o.plot.is_some() || o.policy_out.is_some()) {
            return Err(invalid(
                "plot",
                "plot and policy_out need search=true".into(),
            ));
        }
        let path = |p: Option<FilePath>| p.map(|p| p.0.display().to_string());
        Ok(Quantize {
            policy,
            search,
            plot: path(o.plot),
            policy_out: path(o.policy_out),
            smooth: o.smooth.0,
            smooth_mul: o.smooth_mul,
            qdq: qdq::QdqSpec {
                codes: match o.activations {
                    ActivationCodes::Uint8 => qdq::Codes::Uint8,
                    ActivationCodes::Int8 => qdq::Codes::Int8,
                },
                method,
                ops: match &o.ops {
                    Auto::Value(ops) if !ops.0.is_empty() => ops.0.clone(),
                    _ => qdq::default_ops(),
                },
            },
            ops_option: o.ops,
            block: o.block,
            symmetric: o.symmetric,
            form: match o.format {
                FormatOption::Dq => Some(Form::Dq),
                FormatOption::Nbits => Some(Form::Nbits),
                FormatOption::Auto => None,
            },
            rounding: o.round,
            damp: o.damp,
            accuracy_level: o.accuracy_level as i64,
            tables: o.tables,
            min_table: o.min_table,
            keep: o.keep.0,
            half_weights: o.half == HalfForm::Weights,
        })
    }
}

impl Quantize {
    /// The int8 ops left `auto`, decided from the graph: a model with
    /// attention ([`qdq::has_attention`]) quantizes its matrix products and
    /// embedding lookups, keeping the residual stream and attention's
    /// elementwise ops f32 (minilm_l6_v2: cosine 0.995 against 0.991 with
    /// every op, `benches/defaults_minilm.py`); other models take every op
    /// onnxruntime's quantizer takes. Returns a line for the report when
    /// the graph decided.
    fn resolve_int8_ops(&mut self, graph: &sculpt_ir::Graph) -> Option<String> {
        if self.ops_option != Auto::Auto || !qdq::has_attention(graph) {
            return None;
        }
        self.qdq.ops = ["MatMul", "Gemm", "Gather"].map(String::from).to_vec();
        Some("int8 ops for a model with attention: MatMul|Gemm|Gather (ops=auto)".into())
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
        Self::NAME
    }

    fn needs_canonical(&self) -> bool {
        true
    }

    fn judged(&self) -> bool {
        true
    }

    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<PassOutcome, IrError> {
        let before = model.graph.param_bytes();
        // A branch's weights kept in the main graph: into the branch, where
        // the body's rewrites find them.
        sculpt_ir::rewrite::move_constants_into_bodies(&mut model.graph);
        let precisions = self.policy.precisions();
        let mut outcome = PassOutcome::default();
        let int8_tables = self.tables && precisions.contains(&Precision::Int8);
        if self.search.is_some() || int8_tables || precisions.iter().any(|p| p.is_weight_only()) {
            self.weight_only(model, cx, &mut outcome)?;
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
        // The replaced weights are read by nothing now.
        sculpt_ir::rewrite::remove_dead_code(&mut model.graph);
        let after = model.graph.param_bytes();
        outcome.stat("weight_bytes_before", before);
        outcome.stat("weight_bytes_after", after);
        if outcome.changed {
            outcome.details.push(format!(
                "weights {before} -> {after} bytes ({:.2}x smaller)",
                before as f64 / after.max(1) as f64
            ));
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
    /// search) gives `int4`/`w8`.
    fn weight_only(
        &mut self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
        outcome: &mut PassOutcome,
    ) -> Result<(), IrError> {
        if self.may_write_dq() {
            // Blocked DequantizeLinear and 4-bit codes are opset 21's.
            sculpt_ir::opset::raise_opset(model, 21)?;
        }
        let mut skipped = Vec::new();
        let mut targets = self.weight_only_targets(model, &mut skipped);
        // GPTQ's statistics, and the model's outputs on the judging
        // samples from the same run.
        let gptq = self.rounding == Rounding::Gptq && cx.calibrator.is_some();
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
            let stats = cx.site_stats_judged(model, &requests, "quantize")?;
            for (&i, s) in sites.iter().zip(stats) {
                if let Weight::Site(_, slot) = &mut targets[i].0 {
                    *slot = Some(s);
                }
            }
        }
        let candidates = self.candidates(model, &targets, gptq.then_some(self.damp))?;
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
            return Ok(());
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
        Ok(())
    }

    /// Per weight, each choice to weigh (the policy's, or the search's)
    /// with the weight quantized so (`None` for fp32).
    fn candidates(
        &self,
        model: &Model,
        targets: &[(Weight, Choice)],
        damp: Option<f64>,
    ) -> Result<Vec<Vec<search::Candidate>>, IrError> {
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
        Ok(candidates)
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
            sculpt_ir::rewrite::remove_dead_code(body);
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
            sculpt_ir::rewrite::remove_dead_code(body);
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
                sculpt_ir::rewrite::remove_dead_code(graph);
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
        if let Some(line) = self.resolve_int8_ops(&model.graph) {
            outcome.details.push(line);
        }
        let options = cx.stats_options(model);
        let calibrator = cx.calibrator("quantize policy=int8", "ranges activations")?;
        let fitting = calibrator.split().fitting();
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
                    fitting.clone(),
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
        // The model's outputs on the judging samples come from the same
        // run, while it still computes what it did before this pass
        // (smoothing moves values, not the function) and when the ranges
        // are fitted on those samples too.
        let judging = calibrator.split().judging();
        let keep = match !outcome.changed
            && judging.start >= fitting.start
            && judging.end <= fitting.end
        {
            true => crate::calib::judge::output_names(model),
            false => Vec::new(),
        };
        let (histograms, kept) =
            collect_histograms(model, &names, calibrator, fitting, &keep, judging)
                .map_err(|e| IrError::Invalid(format!("quantize: calibration run failed: {e}")))?;
        if !keep.is_empty() {
            cx.judging.reference_outputs = kept;
        }
        let histograms: HashMap<_, _> = plan.ranged.iter().copied().zip(histograms).collect();
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
