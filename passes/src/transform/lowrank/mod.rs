//! `lowrank`: rewrites linear sites (constant-weight MatMul, Gemm, Conv)
//! as two products through a lower rank, `x·W ≈ (x·A)·B`, where that
//! lowers the parameter count (and FLOPs).
//!
//! The factors ([`factor`]): `method=svd` (truncated SVD of the weight),
//! `asvd` (the SVD of the weight with its input rows scaled by their
//! activation scale), `whiten` (SVD-LLM: the SVD of the weight whitened by
//! the Cholesky factor of its input covariance, which minimises the output
//! error, then `B` refitted by least squares on the same statistics). The
//! data-aware methods read activation statistics (calibration data) and
//! move the mean of what truncation removes into the bias; `auto` is
//! `whiten` with calibration data and `svd` without. With `lookahead`
//! (the default), they weigh the output errors of a site that feeds
//! another through an activation alone (an FFN's first matrix) by what
//! each output's error costs after it: the activation's gain (the
//! output's second moment after it over before it) times the energy of
//! the next weight's row; those errors are then judged against the
//! stream the next site joins.
//!
//! The rank: `rank=R` (or `rank=full`: the exact factors `(W, I)` or
//! `(I, W)`, written even where they do not pay, to check the rewrite),
//! `energy=E` (the least rank keeping
//! that share of the output energy), `ratio=Q` (that share of each site's
//! params removed) or `budget=B` (that share of all the factorable sites'
//! params removed, the ranks allocated across sites by the output error
//! each truncation is predicted to cause, judged against the energy of the
//! stream the site's output joins: a Lagrangian search). `round_to=N`
//! rounds ranks up to multiples of N. A site is factored only where
//! `r·(k+n) ≤ (1 − min_gain)·k·n`. `include=`/`exclude=` select sites by
//! node name (`*` wildcards).
//!
//! Convolutions ([`rewrite`]): `conv=channel` (a Conv with `r` output
//! channels, then a 1×1 Conv) or `conv=spatial` (a `kh×1` then a `1×kw`
//! Conv, for 2-d kernels); grouped convolutions are left alone.
//!
//! Preserves: with `rank=full`, the model's function up to float
//! rounding. Otherwise the report gives, per site, the rank, the params
//! before and after, and the predicted (all calibration samples) and
//! held-out relative output error; and the whole model's output error on
//! calibration samples.

mod factor;
mod rewrite;

pub use factor::Method;
pub use rewrite::ConvSplit;

use crate::allocate::Alternative;
use crate::calib::judge::OutputReference;
use crate::calib::stats::StatsRequest;
use crate::calib::{Moments, RowLayout, SiteStats};
use crate::context::PassContext;
use crate::linear::solve::output_energy;
use crate::linear::{find_sites, LinearSite, SiteOp, SiteRole};
use crate::options::{OptionValue, Patterns, Share};
use crate::util::glob::any_match;
use crate::{NamedPass, Pass, PassOutcome};
use factor::{relative_error, InputStats, Spectrum, Through};
use faer::Mat;
use rayon::prelude::*;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{IrError, Model};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

crate::choice! {
    /// How a weight is factored.
    pub enum MethodOption {
        /// `whiten` with calibration data, `svd` without.
        Auto = "auto",
        Svd = "svd",
        Asvd = "asvd",
        Whiten = "whiten",
    }
}

crate::choice! {
    /// How a budget allocation weighs the sites' predicted errors.
    pub enum Allocate {
        /// Each site probed alone.
        Measured = "measured",
        /// The sites of each role probed together.
        Roles = "roles",
        /// The predictions as they are.
        Predicted = "predicted",
    }
}

/// `rank=`: a count, or `full` (exact factors, even where they do not pay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankOption {
    Full,
    Rank(usize),
}

impl OptionValue for RankOption {
    fn kind() -> String {
        "count|full".into()
    }
    fn parse(text: &str) -> Result<RankOption, String> {
        match text {
            "full" => Ok(RankOption::Full),
            _ => usize::parse(text).map(RankOption::Rank),
        }
    }
    fn text(&self) -> String {
        match self {
            RankOption::Full => "full".into(),
            RankOption::Rank(r) => r.to_string(),
        }
    }
}

crate::pass_options! {
    /// Options of `lowrank`.
    pub struct LowRankOptions {
        /// svd: of the weight; asvd: input rows scaled by activation scale; whiten: by the Cholesky factor of the input covariance (least output error), then B refitted; auto = whiten with calibration data, else svd
        method: MethodOption = MethodOption::Auto,
        /// the rank of every factored site (full: exact, factored even where it does not pay)
        rank: Option<RankOption> = None,
        /// the least rank keeping this share of each site's output energy
        energy: Option<Share> = None,
        /// remove this share of each site's params
        ratio: Option<Share> = None,
        /// remove this share of all factorable sites' params, ranks allocated by predicted output error
        budget: Option<Share> = None,
        /// budget with calibration data: scale each site's predicted errors by the output error a probe factoring it alone measures (one short calibration run per site), or per role of site (stream writers, attention projections, hidden layers: three runs), or trust the predictions
        allocate: Allocate = Allocate::Measured,
        /// allocate=measured|roles: probe rounds, each at the ranks the last allocation chose
        rounds: usize = 1,
        /// data-aware methods: weigh the output errors of a site that feeds another through an activation (an FFN's first matrix) by what they cost after it
        lookahead: bool = true,
        /// round ranks up to multiples of this
        round_to: usize = 1,
        /// factor a site only where r·(k+n) <= (1 - min_gain)·k·n (below 1; negative: also where the factors are larger)
        min_gain: f64 = 0.1,
        /// only sites whose node name matches one of these |-separated patterns (* wildcards)
        include: Patterns = Patterns::default(),
        /// leave sites whose node name matches one of these patterns
        exclude: Patterns = Patterns::default(),
        /// convolutions: r output channels then 1x1, or kh x 1 then 1 x kw (2-d kernels)
        conv: ConvSplit = ConvSplit::Channel,
        /// asvd: the exponent of the activation scale
        alpha: f64 = 0.5,
        /// whiten: ridge of B's refit toward the truncated B
        damp: f64 = 0.001,
    }
}

/// How ranks are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Amount {
    Rank(usize),
    Full,
    Energy(f64),
    Ratio(f64),
    Budget(f64),
}

pub struct LowRank {
    /// `None`: whiten with calibration data, svd without.
    method: Option<Method>,
    amount: Amount,
    round_to: usize,
    min_gain: f64,
    include: Vec<String>,
    exclude: Vec<String>,
    split: ConvSplit,
    alpha: f64,
    damp: f64,
    /// How the budget's errors are calibrated.
    allocate: Allocate,
    /// Probe rounds of a measured allocation.
    rounds: usize,
    /// Errors of a site feeding another through an activation weighed by
    /// what they cost after it.
    lookahead: bool,
}

/// How far one site's measured sensitivity may stray from its role's.
const SITE_SPREAD: f64 = 10.0;

impl NamedPass for LowRank {
    const NAME: &'static str = "lowrank";
    const SUMMARY: &'static str = "rewrite linear sites (MatMul, Gemm, Conv) as two products through a lower rank: truncated SVD, activation-aware SVD, or whitened SVD (SVD-LLM) with a least-squares refit";
    type Options = LowRankOptions;

    fn new(o: LowRankOptions) -> crate::Result<LowRank> {
        let invalid =
            |option: &str, reason: String| crate::options::invalid(Self::NAME, option, reason);
        let given: Vec<&str> = [
            ("rank", o.rank.is_some()),
            ("energy", o.energy.is_some()),
            ("ratio", o.ratio.is_some()),
            ("budget", o.budget.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        let amount = match (o.rank, o.energy, o.ratio, o.budget) {
            _ if given.len() > 1 => {
                return Err(invalid(
                    given[1],
                    format!(
                        "give one of rank, energy, ratio, budget (got {})",
                        given.join(", ")
                    ),
                ))
            }
            (Some(RankOption::Full), ..) => Amount::Full,
            (Some(RankOption::Rank(0)), ..) => {
                return Err(invalid("rank", "must be at least 1".into()))
            }
            (Some(RankOption::Rank(r)), ..) => Amount::Rank(r),
            (_, Some(e), ..) if e.0 <= 0.0 => {
                return Err(invalid("energy", "a share above 0, at most 1".into()))
            }
            (_, Some(e), ..) => Amount::Energy(e.0),
            (_, _, Some(r), _) => Amount::Ratio(r.to_remove(Self::NAME, "ratio")?),
            (_, _, _, Some(b)) => Amount::Budget(b.to_remove(Self::NAME, "budget")?),
            (None, None, None, None) => {
                return Err(invalid(
                    "rank",
                    "say how far to go: rank=R (or full), energy=E, ratio=Q or budget=B".into(),
                ))
            }
        };
        if o.round_to == 0 {
            return Err(invalid("round_to", "must be at least 1".into()));
        }
        if o.min_gain >= 1.0 {
            return Err(invalid("min_gain", "a share below 1".into()));
        }
        if o.damp < 0.0 {
            return Err(invalid("damp", "must not be negative".into()));
        }
        Ok(LowRank {
            method: match o.method {
                MethodOption::Auto => None,
                MethodOption::Svd => Some(Method::Svd),
                MethodOption::Asvd => Some(Method::Asvd),
                MethodOption::Whiten => Some(Method::Whiten),
            },
            amount,
            round_to: o.round_to,
            min_gain: o.min_gain,
            include: o.include.0,
            exclude: o.exclude.0,
            split: o.conv,
            alpha: o.alpha,
            damp: o.damp,
            allocate: o.allocate,
            rounds: o.rounds.max(1),
            lookahead: o.lookahead,
        })
    }
}

/// One site to factor: its matrix `[k, n]` (for a spatial split, the
/// rearranged kernel) and what was measured of its input.
struct Candidate {
    site: LinearSite,
    w: Mat<f64>,
    spatial: bool,
    /// The energy of the stream the site's output joins.
    stream: Option<f64>,
    /// What an error in each output costs further on (see `lookahead`).
    output_weights: Option<Vec<f64>>,
    /// What was measured of the site's input (see `read_stats`), shared
    /// by the sites that read the same activation.
    input: Option<Arc<InputStats>>,
    held_out: HeldOut,
}

impl Candidate {
    fn k(&self) -> usize {
        self.w.nrows()
    }

    fn n(&self) -> usize {
        self.w.ncols()
    }

    fn params(&self) -> usize {
        self.k() * self.n()
    }

    fn factored_params(&self, rank: usize) -> usize {
        rank * (self.k() + self.n())
    }

    /// The largest rank at which factoring pays `min_gain`.
    fn max_rank(&self, min_gain: f64) -> usize {
        let limit = (1.0 - min_gain) * self.params() as f64 / (self.k() + self.n()) as f64;
        (limit.floor().max(0.0) as usize).min(self.k().min(self.n()))
    }

    /// The statistics of the site's input it factors with.
    fn request(&self, model: &Model) -> StatsRequest {
        let mut r = StatsRequest::for_site(model, &self.site, true);
        if let (true, SiteOp::Conv(g)) = (self.spatial, &self.site.op) {
            r.layout = RowLayout::Patches(rewrite::vertical_geometry(g));
            r.k = self.k();
        }
        r
    }

    /// What the site reads of its input's statistics: all of them (fitted
    /// and held out) when there are enough rows to trust them (twice as
    /// many as inputs: with fewer, a covariance is rank-deficient and fits
    /// the calibration data's noise), and the held-out covariance.
    fn read_stats(stats: &SiteStats) -> (Option<InputStats>, Option<Mat<f64>>) {
        let input = Some(stats.all().remove(0))
            .filter(|m| m.rows >= 2.0 * m.k() as f64)
            .map(InputStats::new);
        let held_out = stats
            .has_holdout()
            .then(|| &stats.holdout[0])
            .filter(|m| m.full())
            .map(Moments::covariance);
        (input, held_out)
    }
}

/// The covariance of a site's held-out calibration rows.
type HeldOut = Option<Arc<Mat<f64>>>;

/// A site's decision and its numbers.
struct Plan {
    rank: usize,
    a: Mat<f64>,
    b: Mat<f64>,
    bias_delta: Option<Vec<f64>>,
    record: serde_json::Value,
}

impl LowRank {
    fn eligible(&self, site: &LinearSite) -> Result<(), String> {
        if site.groups != 1 {
            return Err(format!("grouped convolution (group={})", site.groups));
        }
        if !self.include.is_empty() && !any_match(&self.include, &site.name) {
            return Err("not included".into());
        }
        if any_match(&self.exclude, &site.name) {
            return Err("excluded".into());
        }
        Ok(())
    }

    /// The matrix a site factors: its weight, or for a spatial split of a
    /// 2-d convolution the rearranged kernel.
    fn matrix(&self, model: &Model, site: &LinearSite) -> Result<(Mat<f64>, bool), IrError> {
        let spatial = self.split == ConvSplit::Spatial
            && matches!(&site.op, SiteOp::Conv(g) if g.kernel.len() == 2 && g.kernel.iter().all(|&k| k > 1));
        if spatial {
            let t = constant(&model.graph, site.weight).expect("a site's weight is constant");
            return Ok((rewrite::spatial_matrix(t)?, true));
        }
        Ok((site.weights(&model.graph)?.remove(0), false))
    }

    /// The statistics each candidate needs, in one calibration run, which
    /// also keeps the model's outputs on the judging samples (`None` where
    /// they are not laid out by sample).
    fn measure(
        &self,
        model: &Model,
        candidates: &mut [Candidate],
        method: Method,
        cx: &mut PassContext<'_>,
    ) -> Result<(), IrError> {
        let graph = &model.graph;
        let mut requests: Vec<StatsRequest> = candidates.iter().map(|c| c.request(model)).collect();
        let mut merges = Vec::new();
        for c in candidates.iter() {
            let merge = c.site.merge_value(graph);
            if merge == c.site.output {
                merges.push(None);
                continue;
            }
            merges.push(Some(requests.len()));
            requests.push(StatsRequest {
                value: graph.value(merge).name.clone(),
                reference: None,
                layout: match c.site.op {
                    SiteOp::Conv(_) => RowLayout::Channels,
                    _ => RowLayout::Last,
                },
                k: c.site.n * c.site.groups,
                groups: 1,
                full: false,
            });
        }
        // Sites feeding another through an activation: their errors are
        // weighed by what they cost after it (the activation's gain from
        // the second moments on both sides, and the next weight's rows).
        let mut lookahead = Vec::new();
        if self.lookahead && method != Method::Svd {
            let sites: Vec<LinearSite> = candidates.iter().map(|c| c.site.clone()).collect();
            for (i, c) in candidates.iter().enumerate() {
                let dense = |c: &Candidate| !matches!(c.site.op, SiteOp::Conv(_)) && !c.spatial;
                let Some(next) = c.site.next_through_activation(graph, &sites) else {
                    continue;
                };
                if !dense(c) || !dense(&candidates[next]) || candidates[next].k() != c.n() {
                    continue;
                }
                lookahead.push((i, next, requests.len()));
                requests.push(StatsRequest {
                    value: graph.value(c.site.output).name.clone(),
                    reference: None,
                    layout: RowLayout::Last,
                    k: c.n(),
                    groups: 1,
                    full: false,
                });
            }
        }
        let stats = cx.site_stats_judged(model, &requests, "lowrank")?;
        // Read once per activation (the Q, K and V projections share one).
        let mut distinct: Vec<&Arc<SiteStats>> = stats[..candidates.len()].iter().collect();
        distinct.sort_by_key(|s| Arc::as_ptr(s));
        distinct.dedup_by_key(|s| Arc::as_ptr(s));
        let read: Vec<(Option<Arc<InputStats>>, HeldOut)> = distinct
            .par_iter()
            .map(|s| {
                let (input, held) = Candidate::read_stats(s);
                (input.map(Arc::new), held.map(Arc::new))
            })
            .collect();
        for (i, c) in candidates.iter_mut().enumerate() {
            let at = distinct
                .iter()
                .position(|s| Arc::ptr_eq(s, &stats[i]))
                .expect("read above");
            let (input, held) = &read[at];
            c.input = input.clone();
            c.held_out = held.clone();
            c.stream = merges[i].map(|m: usize| stats[m].all()[0].total_variance());
        }
        for (i, next, request) in lookahead {
            let Some(after) = candidates[next].input.clone() else {
                continue;
            };
            let before = stats[request].all().remove(0);
            if let Some(weights) = lookahead_weights(&before, &after.moments, &candidates[next].w) {
                candidates[i].output_weights = Some(weights);
                candidates[i].stream = candidates[next].stream.or(candidates[i].stream);
            }
        }
        Ok(())
    }

    /// Ranks for every candidate (`None`: left as it is); `scales` weigh
    /// each candidate's errors in a budget allocation.
    fn ranks(
        &self,
        candidates: &[Candidate],
        spectra: &[Option<Spectrum>],
        scales: &[f64],
    ) -> Vec<Option<usize>> {
        let round = |r: usize, c: &Candidate| {
            let up = r.div_ceil(self.round_to) * self.round_to;
            up.min(c.k().min(c.n())).max(1)
        };
        let pays = |r: usize, c: &Candidate| {
            (c.factored_params(r) as f64) <= (1.0 - self.min_gain) * c.params() as f64
        };
        if let Amount::Budget(share) = self.amount {
            let chosen = allocate(candidates, spectra, scales, share, self.min_gain);
            return chosen
                .into_iter()
                .zip(candidates)
                .map(|(r, c)| r.map(|r| round(r, c)).filter(|&r| pays(r, c)))
                .collect();
        }
        candidates
            .iter()
            .zip(spectra)
            .map(|(c, spectrum)| {
                let spectrum = spectrum.as_ref()?;
                let r = match self.amount {
                    Amount::Full => return Some(spectrum.len()),
                    Amount::Rank(r) => r.min(spectrum.len()),
                    Amount::Energy(e) => spectrum.rank_for_energy(e),
                    Amount::Ratio(q) => {
                        (((1.0 - q) * c.params() as f64) / (c.k() + c.n()) as f64).floor() as usize
                    }
                    Amount::Budget(_) => unreachable!("handled above"),
                };
                let r = round(r.max(1), c);
                pays(r, c).then_some(r)
            })
            .collect()
    }

    /// The factors of `c` at `rank`, refitted and bias-compensated where
    /// the method reads data.
    fn plan(&self, c: &Candidate, spectrum: &Spectrum, method: Method, rank: usize) -> Plan {
        // Components with no output energy are not in the spectrum.
        let rank = rank.min(spectrum.len());
        let (a, mut b) = spectrum.factors(rank);
        // Full rank is exact as it is.
        let input = c.input.as_ref().filter(|_| self.amount != Amount::Full);
        let method = if c.input.is_none() && self.amount != Amount::Full {
            Method::Svd
        } else {
            method
        };
        let mut bias_delta = None;
        let (mut predicted, mut held) = (None, None);
        if let Some((m, cov)) = input.and_then(|i| Some((&i.moments, i.covariance.as_ref()?))) {
            let through = Through::new(cov.as_ref(), a.as_ref());
            if method == Method::Whiten {
                b = through.refit_b(c.w.as_ref(), b.as_ref(), self.damp);
            }
            if method != Method::Svd && !c.spatial {
                // The mean of what the truncation drops goes into the bias.
                let ab = crate::linear::solve::product(a.as_ref(), b.as_ref());
                let mu = m.mean();
                bias_delta = Some(
                    (0..c.n())
                        .map(|j| (0..c.k()).map(|i| mu[i] * (c.w[(i, j)] - ab[(i, j)])).sum())
                        .collect(),
                );
            }
            let energy = match &c.output_weights {
                // The spectrum's energy is of the weighted outputs.
                Some(_) => output_energy(cov.as_ref(), c.w.as_ref()),
                None => spectrum.energy,
            };
            predicted = Some(through.relative_error(energy, c.w.as_ref(), b.as_ref()));
            let error = |h: &Mat<f64>| {
                let energy = output_energy(h.as_ref(), c.w.as_ref());
                relative_error(h.as_ref(), energy, c.w.as_ref(), a.as_ref(), b.as_ref())
            };
            held = c.held_out.as_deref().map(error);
        }
        let record = json!({
            "site": c.site.name,
            "method": format!("{method:?}").to_lowercase(),
            "rank": rank,
            "shape": [c.k(), c.n()],
            "params_before": c.params(),
            "params_after": c.factored_params(rank),
            "predicted_error": predicted.unwrap_or(spectrum.relative_error(rank)),
            "held_out_error": held,
            "split": if c.spatial { "spatial" } else { "channel" },
        });
        Plan {
            rank,
            a,
            b,
            bias_delta,
            record,
        }
    }
}

/// What an error in each output `j` of a site costs after the activation
/// and the next site `w2` read it: `d_j² = gain_j · ‖w2[j, :]‖²`, the
/// activation's gain `E[act(z_j)²] / E[z_j²]` from the second moments
/// `before` and `after` it (about the share of the time it passes `z_j`
/// on). Kept at least 1/1000 of the largest, so that no output is free.
fn lookahead_weights(before: &Moments, after: &Moments, w2: &Mat<f64>) -> Option<Vec<f64>> {
    if before.k() != w2.nrows() || after.k() != w2.nrows() {
        return None;
    }
    let weights: Vec<f64> = (0..w2.nrows())
        .map(|j| {
            let gain = (after.sum_sq[j] / after.rows.max(1.0))
                / (before.sum_sq[j] / before.rows.max(1.0)).max(f64::MIN_POSITIVE);
            let reach: f64 = (0..w2.ncols()).map(|m| w2[(j, m)].powi(2)).sum();
            (gain.min(1e6) * reach).sqrt()
        })
        .collect();
    let largest = weights.iter().copied().fold(0.0, f64::max);
    (largest > 0.0).then(|| weights.iter().map(|d| d.max(1e-3 * largest)).collect())
}

/// Rewrites every planned site of `model`.
fn apply(
    model: &mut Model,
    candidates: &[Candidate],
    plans: &[Option<Plan>],
) -> Result<(), IrError> {
    for (c, plan) in candidates.iter().zip(plans) {
        let Some(plan) = plan else { continue };
        if let Some(delta) = &plan.bias_delta {
            let bias = c
                .site
                .bias(&model.graph)?
                .unwrap_or_else(|| vec![0.0; delta.len()]);
            let biased: Vec<f64> = bias.iter().zip(delta).map(|(b, d)| b + d).collect();
            c.site.set_bias(&mut model.graph, &biased)?;
        }
        let site = c.site.refind(&model.graph).ok_or_else(|| {
            IrError::Invalid(format!("lowrank: linear site '{}' is gone", c.site.name))
        })?;
        let split = if c.spatial {
            ConvSplit::Spatial
        } else {
            ConvSplit::Channel
        };
        let opset = model.onnx_opset();
        rewrite::factor_site(&mut model.graph, &site, &plan.a, &plan.b, split, opset)?;
    }
    Ok(())
}

/// The error of every rank of `c` (index = rank), in allocation units: its
/// spectrum's tail, against the stream the site joins, times `scale`.
fn tail_errors(c: &Candidate, s: &Spectrum, scale: f64) -> Vec<f64> {
    let unit = c.stream.unwrap_or(s.energy).max(f64::MIN_POSITIVE);
    let mut tail = vec![0.0; s.len() + 1];
    for r in (0..s.len()).rev() {
        tail[r] = tail[r + 1] + scale * s.errors[r] / unit;
    }
    tail
}

/// What every sensitivity probe of a budget allocation shares: the
/// candidates, their spectra, the budget, and the model's outputs on the
/// judging samples (run once).
struct Probes<'a> {
    model: &'a Model,
    candidates: &'a [Candidate],
    spectra: &'a [Option<Spectrum>],
    method: Method,
    share: f64,
    reference: OutputReference<'a>,
}

impl LowRank {
    /// Measured sensitivities: each site (or, with `per_site=false`, all
    /// the sites of one role: stream writers, attention projections,
    /// hidden layers) factored at the budget's share of its params (or at
    /// the ranks `at` gives), the model's output error on held-out
    /// calibration samples divided by what the spectra predicted scales
    /// those sites' errors in the allocation.
    fn measure_sensitivities(
        &self,
        probes: &Probes<'_>,
        at: Option<&[Option<usize>]>,
        per_site: bool,
        scales: &mut [f64],
        cx: &mut PassContext<'_>,
    ) -> Result<Vec<String>, IrError> {
        let Probes {
            model,
            candidates,
            spectra,
            method,
            share,
            reference,
        } = probes;
        // Probed together: the sites of one role, or each site alone.
        let roles: Vec<(SiteRole, usize)> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let role = c.site.role(&model.graph);
                (role, if per_site { i } else { 0 })
            })
            .collect();
        let mut distinct = roles.clone();
        distinct.sort();
        distinct.dedup();
        let calibrator = cx.calibrator("lowrank", "measures the sites' effect on the outputs")?;
        let mut notes = vec!["measured sensitivities by site role:".to_string()];
        let mut result = Ok(());
        for role in distinct {
            let mut predicted = 0.0;
            let plans: Vec<Option<Plan>> = candidates
                .iter()
                .zip(spectra.iter())
                .zip(&roles)
                .enumerate()
                .map(|(i, ((c, s), r))| {
                    let s = s.as_ref().filter(|_| *r == role)?;
                    let rank = match at {
                        Some(ranks) => ranks[i]?,
                        None => ((((1.0 - share) * c.params() as f64) / (c.k() + c.n()) as f64)
                            .floor() as usize)
                            .clamp(1, s.len()),
                    };
                    predicted += tail_errors(c, s, 1.0)[rank];
                    Some(self.plan(c, s, *method, rank))
                })
                .collect();
            if predicted <= 0.0 {
                continue;
            }
            let mut probe = (*model).clone();
            let measured = apply(&mut probe, candidates, &plans)
                .and_then(|_| reference.relative_error(&mut *calibrator, &probe));
            let measured = match measured {
                Ok(m) => m,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            for (scale, r) in scales.iter_mut().zip(&roles) {
                if *r == role {
                    *scale = measured / predicted;
                }
            }
            let what = match (per_site, roles.iter().position(|r| *r == role)) {
                (true, Some(i)) => candidates[i].site.name.clone(),
                _ => format!("{:?} sites", role.0),
            };
            notes.push(format!(
                "  {what}: output error {measured:.3e} (predicted {predicted:.3e})"
            ));
        }
        result.map(|_| notes)
    }
}

/// Budget allocation: ranks that remove `share` of the candidates' params
/// with the least total predicted error, each site's error judged against
/// the energy of the stream it joins ([`crate::allocate`]: a site either
/// stays whole or takes one of its ranks).
fn allocate(
    candidates: &[Candidate],
    spectra: &[Option<Spectrum>],
    scales: &[f64],
    share: f64,
    min_gain: f64,
) -> Vec<Option<usize>> {
    let total: usize = candidates.iter().map(Candidate::params).sum();
    // Per site: whole, then its ranks 1..=max.
    let items: Vec<Vec<Alternative>> = candidates
        .iter()
        .zip(spectra)
        .zip(scales)
        .map(|((c, s), scale)| {
            let whole = Alternative {
                cost: c.params() as f64,
                error: 0.0,
            };
            let ranks = s.as_ref().map(|s| {
                let tail = tail_errors(c, s, *scale);
                let max = c.max_rank(min_gain).min(tail.len() - 1);
                (1..=max)
                    .map(|r| Alternative {
                        cost: c.factored_params(r) as f64,
                        error: tail[r],
                    })
                    .collect::<Vec<_>>()
            });
            std::iter::once(whole)
                .chain(ranks.into_iter().flatten())
                .collect()
        })
        .collect();
    let kept = (1.0 - share) * total as f64;
    let picks = crate::allocate::within_cost(&items, kept)
        .unwrap_or_else(|| crate::allocate::at_price(&items, f64::INFINITY))
        .picks;
    picks.into_iter().map(|p| (p > 0).then_some(p)).collect()
}
impl LowRank {
    /// Every candidate's spectrum, in parallel over sites (`None` where
    /// the factorisation failed).
    fn spectra(
        &self,
        candidates: &[Candidate],
        method: Method,
        progress: Option<crate::context::Progress>,
    ) -> Vec<Option<Spectrum>> {
        let done = AtomicU64::new(0);
        let total = candidates.len() as u64;
        candidates
            .par_iter()
            .map(|c| {
                let spectrum = if self.amount == Amount::Full {
                    Some(Spectrum::identity(c.w.as_ref()))
                } else if c.input.is_none() && method != Method::Svd {
                    // Too few calibration rows: the weight alone.
                    Spectrum::new(c.w.as_ref(), Method::Svd, None, self.alpha)
                } else {
                    Spectrum::weighted(
                        c.w.as_ref(),
                        method,
                        c.input.as_deref(),
                        self.alpha,
                        c.output_weights.as_deref(),
                    )
                };
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(p) = &progress {
                    p("lowrank: factoring sites", d, total);
                }
                spectrum
            })
            .collect()
    }
}

impl Pass for LowRank {
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
        let started = std::time::Instant::now();
        let method = match self.method {
            Some(m) => m,
            None if cx.calibrator.is_some() => Method::Whiten,
            None => Method::Svd,
        };
        if method != Method::Svd && cx.calibrator.is_none() {
            return Err(IrError::Invalid(format!(
                "lowrank method={} reads activation statistics: give --calib DATA.npz or --calib-random N",
                format!("{method:?}").to_lowercase()
            )));
        }
        let mut outcome_notes: Vec<String> = Vec::new();
        let (sites, mut skipped) = find_sites(&model.graph);
        let mut candidates = Vec::new();
        for site in sites {
            match self.eligible(&site) {
                Ok(()) => {
                    let (w, spatial) = self.matrix(model, &site)?;
                    candidates.push(Candidate {
                        site,
                        w,
                        spatial,
                        stream: None,
                        output_weights: None,
                        input: None,
                        held_out: None,
                    });
                }
                Err(why) if why != "not included" && why != "excluded" => {
                    skipped.push((site.name.clone(), why))
                }
                Err(_) => {}
            }
        }
        if cx.calibrator.is_some() {
            self.measure(model, &mut candidates, method, cx)?;
        }
        let stats_seconds = started.elapsed().as_secs_f64();
        let spectra = self.spectra(&candidates, method, cx.progress.clone());
        for (c, s) in candidates.iter().zip(&spectra) {
            if s.is_none() {
                skipped.push((
                    c.site.name.clone(),
                    "the factorisation failed (statistics singular or missing)".into(),
                ));
            }
        }
        let mut scales = vec![1.0; candidates.len()];
        if let Amount::Budget(share) = self.amount {
            if self.allocate != Allocate::Predicted && cx.calibrator.is_some() {
                // Each round probes at the ranks the previous allocation
                // chose (the first at the budget's share of every site).
                let mask = cx.stats_options(model).row_mask;
                let kept = cx.judging.reference_outputs.clone();
                let calibrator = cx.calibrator("lowrank", "measures the model's outputs")?;
                let judging = calibrator.split().judging();
                let reference = match kept.clone() {
                    Some(outputs) => {
                        Ok(OutputReference::from_outputs(model, outputs, mask, judging))
                    }
                    None => OutputReference::new(&mut *calibrator, model, mask, judging),
                };
                let probes = Probes {
                    model,
                    candidates: &candidates,
                    spectra: &spectra,
                    method,
                    share,
                    reference: reference?,
                };
                let mut at: Option<Vec<Option<usize>>> = None;
                for _ in 0..self.rounds {
                    // By role; then (allocate=measured) each site's own
                    // probe, kept within a factor of its role's (one probe
                    // alone is noisy).
                    let notes =
                        self.measure_sensitivities(&probes, at.as_deref(), false, &mut scales, cx)?;
                    outcome_notes.extend(notes);
                    if self.allocate == Allocate::Measured {
                        let mut own = scales.clone();
                        let notes =
                            self.measure_sensitivities(&probes, at.as_deref(), true, &mut own, cx)?;
                        outcome_notes.extend(notes);
                        for (scale, own) in scales.iter_mut().zip(own) {
                            *scale = own.clamp(*scale / SITE_SPREAD, *scale * SITE_SPREAD);
                        }
                    }
                    at = Some(self.ranks(&candidates, &spectra, &scales));
                }
            }
        }
        let ranks = self.ranks(&candidates, &spectra, &scales);
        let plans: Vec<Option<Plan>> = candidates
            .par_iter()
            .zip(spectra.par_iter())
            .zip(ranks.par_iter())
            .map(|((c, s), r)| Some(self.plan(c, s.as_ref()?, method, (*r)?)))
            .collect();
        apply(model, &candidates, &plans)?;
        let mut outcome = PassOutcome::default();
        let (mut before, mut after) = (0usize, 0usize);
        for (c, plan) in candidates.iter().zip(&plans) {
            let Some(plan) = plan else { continue };
            before += c.params();
            after += c.factored_params(plan.rank);
            outcome.records.push(plan.record.clone());
        }
        let factored = outcome.records.len();
        outcome.changed = factored > 0;
        outcome.stat("sites_factored", factored);
        outcome.stat("params_before", before);
        outcome.stat("params_after", after);
        outcome.details.push(format!(
            "method={}: {factored} of {} sites factored, {before} -> {after} params; statistics {stats_seconds:.2} s, total {:.2} s",
            format!("{method:?}").to_lowercase(),
            candidates.len(),
            started.elapsed().as_secs_f64()
        ));
        for r in &outcome.records {
            outcome.details.push(format!(
                "  {}: rank {} ({} -> {} params), predicted error {:.3e}{}",
                r["site"].as_str().unwrap_or("?"),
                r["rank"],
                r["params_before"],
                r["params_after"],
                r["predicted_error"].as_f64().unwrap_or(0.0),
                r["held_out_error"]
                    .as_f64()
                    .map_or(String::new(), |h| format!(", held-out {h:.3e}"))
            ));
        }
        outcome.details.extend(outcome_notes);
        for (name, why) in &skipped {
            outcome
                .details
                .push(format!("  not factored: {name}: {why}"));
        }
        Ok(outcome)
    }
}
