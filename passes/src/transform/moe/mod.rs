//! `moe`: each dense FFN as a mixture of experts with a router, so that a
//! token computes only k of E slices of the FFN (MoEfication; no
//! retraining).
//!
//! - The FFNs are found from the graph ([`find`]): linear → activation →
//!   linear, or the gated form, with biases, in any layout (the input is
//!   flattened to tokens).
//! - The hidden neurons are split into E experts of equal size
//!   ([`partition`]): balanced k-means on the neurons' weight vectors
//!   (`partition=cluster`), on their co-activation over calibration data
//!   (how often two are active together; `coactivation`, the default), or
//!   at random; `shared=S` keeps the S neurons with the largest mean
//!   square activation always on.
//! - The router is a linear map from the FFN input to E scores
//!   ([`router`]): least squares on each expert's contribution per token
//!   (`router=fitted`), the experts' mean input weights (`centroid`), or
//!   random. With `skip=mean` a skipped expert gives its calibration-mean
//!   output (MoE++'s constant experts), and the router is fitted to the
//!   deviation from it; `skip=zero` drops it (MoEfication).
//! - The experts are written with standard ops or onnxruntime's MoE op
//!   ([`emit`]).
//!
//! Preserves: with k = E the function exactly (every expert computes
//! every token: the dense FFN, summed in another order). With k < E the
//! output error is measured on held-out calibration samples and reported,
//! with per FFN the expert sizes, the router's recall of the oracle's top
//! k on held-out samples, and the FLOPs saved per token.

mod emit;
mod find;
mod partition;
mod router;

use crate::context::PassContext;
use crate::linear::find_sites;
use crate::options::Patterns;
use crate::util::glob::any_match;
use crate::util::rng::Rng;
use crate::{NamedPass, Pass, PassOutcome};
use emit::{Form, Plan, Weights};
use faer::Mat;
use find::{find_ffns, Ffn};
use router::{Experts, Fit, Hidden, Refit};
use sculpt_ir::{IrError, Model, OpsetImport};
use serde_json::json;

/// The dampings the refit tries (times the mean of its Gram diagonal).
const REFIT_DAMPING: [f64; 9] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0];

crate::choice! {
    /// How the hidden neurons are split into experts.
    pub enum PartitionBy {
        /// Balanced k-means on their input weights.
        Cluster = "cluster",
        /// Balanced k-means on their co-activation over calibration data.
        Coactivation = "coactivation",
        Random = "random",
    }
}

crate::choice! {
    /// How tokens pick experts.
    pub enum RouterKind {
        /// Least squares from the FFN input to each expert's contribution.
        Fitted = "fitted",
        /// The experts' mean input weights.
        Centroid = "centroid",
        Random = "random",
    }
}

crate::choice! {
    /// What a skipped expert gives.
    pub enum Skip {
        Zero = "zero",
        /// Its calibration-mean output.
        Mean = "mean",
    }
}

crate::pass_options! {
    /// Options of `moe`.
    pub struct MoeOptions {
        /// experts per FFN (E)
        experts: usize = 16,
        /// experts each token computes (k = E is exact)
        k: usize = 8,
        /// balanced k-means of the neurons on their input weights, or on their co-activation (how often two are active together) over calibration data; or at random
        partition: PartitionBy = PartitionBy::Coactivation,
        /// least squares from the FFN input to each expert's contribution per token; the experts' mean input weights; or random
        router: RouterKind = RouterKind::Fitted,
        /// what a skipped expert gives: nothing, or its calibration-mean output (the router then fitted to the deviation from it)
        skip: Skip = Skip::Mean,
        /// onnx: standard ops (TopK, per expert its tokens gathered, computed, scattered back); ort: onnxruntime's com.microsoft::MoE
        form: Form = Form::Onnx,
        /// neurons (the most used on calibration data) every token computes, outside the experts
        shared: usize = 0,
        /// only FFNs whose down or up projection's node name matches one of these |-separated patterns
        include: Patterns = Patterns::default(),
        /// seed of the k-means starts and of random partitions and routers
        seed: u64 = 0,
        /// refit the experts' down projections, the skipped experts' means and the bias by least squares on calibration data, knowing which experts each token chose (with k = E the refit is the identity up to rounding)
        refit: bool = true,
        /// router=fitted with refit: how many times the router is fitted to the experts as refitted, and the experts refitted to the new routing
        rounds: usize = 3,
        /// router fit: added to the input Gram matrix's diagonal, times its mean
        damp: f64 = 0.1,
    }
}

pub struct Moe {
    experts: usize,
    k: usize,
    partition: PartitionBy,
    router: RouterKind,
    skip_mean: bool,
    form: Form,
    include: Vec<String>,
    shared: usize,
    seed: u64,
    damp: f64,
    refit: bool,
    /// Router fit and refit alternations.
    rounds: usize,
}

impl NamedPass for Moe {
    const NAME: &'static str = "moe";
    const SUMMARY: &'static str = "each dense FFN (linear → activation → linear, or gated) as a mixture of experts: the hidden neurons split into E equal experts, a router fitted on calibration data picks k per token (MoEfication; no retraining)";
    type Options = MoeOptions;

    fn new(o: MoeOptions) -> crate::Result<Moe> {
        let invalid =
            |option: &str, reason: String| crate::options::invalid(Self::NAME, option, reason);
        if o.experts < 2 {
            return Err(invalid("experts", "2 or more".into()));
        }
        if o.k == 0 || o.k > o.experts {
            return Err(invalid("k", format!("1 to experts ({})", o.experts)));
        }
        if o.damp <= 0.0 {
            return Err(invalid("damp", "must be above 0".into()));
        }
        Ok(Moe {
            experts: o.experts,
            k: o.k,
            partition: o.partition,
            router: o.router,
            skip_mean: o.skip == Skip::Mean,
            form: o.form,
            include: o.include.0,
            shared: o.shared,
            seed: o.seed,
            damp: o.damp,
            refit: o.refit,
            rounds: o.rounds.max(1),
        })
    }
}

impl Moe {
    /// Whether the calibration data is needed at all.
    fn needs_data(&self) -> bool {
        self.partition == PartitionBy::Coactivation
            || self.router == RouterKind::Fitted
            || self.skip_mean
            || self.shared > 0
            || (self.refit && self.k < self.experts)
    }
}

/// Unit-norm rows.
fn normalized(rows: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    rows.into_iter()
        .map(|r| {
            let n = r
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            r.into_iter().map(|x| x / n).collect()
        })
        .collect()
}

/// FLOPs per token of the dense FFN and of its experts at k of E.
/// FFN FLOPs per token, dense and routed. Written as onnxruntime's MoE
/// (`ort`), the experts are padded to equal size and to `max(d, out)`
/// wide (see `emit::ort_experts`), and the padding is computed too.
fn flops(ffn: &Ffn, out: usize, plan: &Plan, ort: bool) -> (f64, f64) {
    let (d, width) = (ffn.up.k as f64, ffn.width() as f64);
    let projections_in = if ffn.gate.is_some() { 2.0 } else { 1.0 };
    let per_neuron = |d: f64, out: f64| 2.0 * d * projections_in + 2.0 * out;
    let dense = per_neuron(d, out as f64) * width;
    let experts = plan.groups.len() as f64;
    let routed = if ort {
        let size = plan.groups.iter().map(Vec::len).max().unwrap_or(0) as f64;
        let wide = d.max(out as f64);
        experts * size * per_neuron(wide, wide)
    } else {
        plan.groups.iter().map(Vec::len).sum::<usize>() as f64 * per_neuron(d, out as f64)
    };
    let moe = 2.0 * (d + 1.0) * experts
        + plan.shared.len() as f64 * per_neuron(d, out as f64)
        + routed * plan.k as f64 / experts;
    (dense, moe)
}

/// What the calibration runs read: the model, its FFNs, the row mask.
struct Data<'a> {
    model: &'a Model,
    ffns: &'a [Ffn],
    mask: Option<&'a str>,
}

impl Data<'_> {
    /// Visits every FFN's rows on `samples` of the calibration data.
    fn visit(
        &self,
        cx: &mut PassContext<'_>,
        why: &str,
        samples: std::ops::Range<usize>,
        visit: &mut dyn FnMut(&[router::Rows]),
    ) -> Result<(), IrError> {
        let calibrator = cx.calibrator("moe", why)?;
        router::visit_rows(calibrator, self.model, self.ffns, self.mask, samples, visit)
    }
}

/// Per expert, what its contribution is measured from (its mean, or 0).
fn offsets(plan: &Plan, out: usize) -> Vec<Vec<f64>> {
    let experts = plan.groups.len();
    match &plan.means {
        Some(m) => (0..experts)
            .map(|e| (0..out).map(|o| m[(e, o)]).collect())
            .collect(),
        None => vec![vec![0.0; out]; experts],
    }
}

impl Moe {
    /// The routers: fitted to the experts' contributions as `experts`
    /// computes them, or from the weights, or random.
    fn set_routers(
        &self,
        data: &Data<'_>,
        cx: &mut PassContext<'_>,
        plans: &mut [Plan],
        experts: &[Weights],
        rng: &mut Rng,
    ) -> Result<(), IrError> {
        match self.router {
            RouterKind::Fitted => {
                let offsets: Vec<_> = plans
                    .iter()
                    .zip(experts)
                    .map(|(p, w)| offsets(p, w.down.ncols()))
                    .collect();
                let mut fits: Vec<Fit> = data
                    .ffns
                    .iter()
                    .map(|f| Fit::new(f.up.k, self.experts))
                    .collect();
                let samples = cx.calibrator("moe", "fits the routers")?.split().fitting();
                data.visit(cx, "fits the routers", samples, &mut |rows| {
                    for (i, r) in rows.iter().enumerate() {
                        let e = Experts {
                            groups: &plans[i].groups,
                            down: &experts[i].down,
                            offsets: &offsets[i],
                        };
                        fits[i].add(&r.x, &e.contributions(&r.h));
                    }
                })?;
                for (p, fit) in plans.iter_mut().zip(&fits) {
                    p.router = fit.solve(self.damp);
                }
            }
            RouterKind::Centroid => {
                for (p, w) in plans.iter_mut().zip(experts) {
                    let (activated, bias) = w
                        .gate
                        .as_ref()
                        .map_or((&w.up, &w.up_bias), |g| (&g.0, &g.1));
                    let d = activated.nrows();
                    p.router = Mat::from_fn(d + 1, self.experts, |i, e| {
                        let g = &p.groups[e];
                        let v: f64 = g
                            .iter()
                            .map(|&j| if i < d { activated[(i, j)] } else { bias[j] })
                            .sum();
                        v / g.len().max(1) as f64
                    });
                }
            }
            RouterKind::Random => {
                for p in plans.iter_mut() {
                    p.router = Mat::from_fn(p.ffn.up.k + 1, self.experts, |_, _| rng.normal());
                }
            }
        }
        Ok(())
    }

    /// The experts' down projections, skipped means and bias refitted to
    /// the dense FFN's output (`original`'s) knowing the routing: fitted
    /// on the fitting samples, the damping chosen on the held-out ones.
    /// The damping pulls toward the weights before any refit (`original`
    /// and `prior_means`). Sets the plans' means; returns per FFN the
    /// refitted weights and the damping.
    fn refit_experts(
        &self,
        data: &Data<'_>,
        cx: &mut PassContext<'_>,
        plans: &mut [Plan],
        original: &[Weights],
        prior_means: &[Option<Mat<f64>>],
    ) -> Result<Vec<(Weights, f64)>, IrError> {
        let split = cx.calibrator("moe", "refits the experts")?.split();
        let mut parts: Vec<Vec<Refit>> = Vec::new();
        for samples in [split.fitting(), split.judging()] {
            let mut refits: Vec<Refit> = plans
                .iter()
                .zip(original)
                .map(|(p, w)| {
                    Refit::new(p.ffn.width(), self.experts, w.down.ncols(), self.skip_mean)
                })
                .collect();
            data.visit(cx, "refits the experts", samples, &mut |rows| {
                for (i, r) in rows.iter().enumerate() {
                    let scores = router::with_ones(&r.x) * &plans[i].router;
                    let chosen = router::top_k(&scores, self.k);
                    let w = &original[i];
                    refits[i].add(&r.h, &chosen, &plans[i].groups, &w.down, &w.down_bias);
                }
            })?;
            parts.push(refits);
        }
        let held = parts.pop().expect("two parts");
        let fits = parts.pop().expect("two parts");
        Ok(plans
            .iter_mut()
            .zip(original)
            .zip(fits.iter().zip(&held))
            .zip(prior_means)
            .map(|(((p, w), (fit, held)), means)| {
                let prior = (w.down.clone(), means.clone(), w.down_bias.clone());
                let ((down, means, bias), damp) = fit.solve(held, &REFIT_DAMPING, &prior);
                p.means = means;
                let mut w = w.clone();
                w.down = down;
                w.down_bias = bias;
                (w, damp)
            })
            .collect())
    }

    /// Per FFN, the share of the oracle's top k experts (by contribution)
    /// the router picks, on the held-out samples.
    fn recalls(
        &self,
        data: &Data<'_>,
        cx: &mut PassContext<'_>,
        plans: &[Plan],
        experts: &[Weights],
    ) -> Result<Vec<Option<f64>>, IrError> {
        let Some(calibrator) = cx.calibrator.as_deref_mut() else {
            return Ok(vec![None; plans.len()]);
        };
        let samples = calibrator.split().judging();
        let offsets: Vec<_> = plans
            .iter()
            .zip(experts)
            .map(|(p, w)| offsets(p, w.down.ncols()))
            .collect();
        let mut sums = vec![(0.0, 0.0); plans.len()];
        data.visit(cx, "measures the routers' recall", samples, &mut |rows| {
            for (i, r) in rows.iter().enumerate() {
                let e = Experts {
                    groups: &plans[i].groups,
                    down: &experts[i].down,
                    offsets: &offsets[i],
                };
                let scores = router::with_ones(&r.x) * &plans[i].router;
                let (hits, total) = router::recall(&scores, &e.contributions(&r.h), self.k);
                sums[i].0 += hits;
                sums[i].1 += total;
            }
        })?;
        Ok(sums
            .into_iter()
            .map(|(h, t)| (t > 0.0).then(|| h / t))
            .collect())
    }
}

impl Pass for Moe {
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
        let mut outcome = PassOutcome::default();
        let Some((ffns, weights)) = self.ffns_to_factor(model)? else {
            outcome
                .details
                .push("no FFN found (linear → activation → linear, or gated)".into());
            return Ok(outcome);
        };
        let mask = cx.stats_options(model).row_mask;
        let mut rng = Rng::new(self.seed);
        let data = Data {
            model: &*model,
            ffns: &ffns,
            mask: mask.as_deref(),
        };
        let hidden = self.hidden_statistics(&data, cx)?;
        // Partitions (and shared neurons), then the skipped experts' means.
        let mut plans: Vec<Plan> = ffns
            .iter()
            .zip(&weights)
            .enumerate()
            .map(|(i, (f, w))| self.partition(f, w, hidden.as_ref().map(|h| &h[i]), &mut rng))
            .collect();
        let (weights, refit_damping) = self.fit(&data, cx, &mut plans, &weights, &mut rng)?;
        let recalls = self.recalls(&data, cx, &plans, &weights)?;
        self.write(
            model,
            cx,
            &plans,
            &weights,
            &recalls,
            &refit_damping,
            &mut outcome,
        )?;
        Ok(outcome)
    }
}

/// FFNs with their weights.
type FfnsToFactor = (Vec<Ffn>, Vec<Weights>);

impl Moe {
    /// The FFNs to factor (those `include` names), with their weights, in
    /// the model raised to the opset the experts are written in; `None`
    /// when there is none.
    fn ffns_to_factor(&self, model: &mut Model) -> Result<Option<FfnsToFactor>, IrError> {
        let (sites, _) = find_sites(&model.graph);
        let ffns: Vec<Ffn> = find_ffns(&model.graph, &sites)
            .into_iter()
            .filter(|f| {
                self.include.is_empty()
                    || any_match(&self.include, f.name())
                    || any_match(&self.include, &f.up.name)
            })
            .collect();
        if ffns.is_empty() {
            return Ok(None);
        }
        // ScatterND's reduction is opset 16's.
        sculpt_ir::opset::raise_opset(model, 18)?;
        sculpt_ir::ops::infer::infer_graph(&mut model.graph)?;
        let (sites, _) = find_sites(&model.graph);
        let ffns: Vec<Ffn> = find_ffns(&model.graph, &sites)
            .into_iter()
            .filter(|f| ffns.iter().any(|g| g.down.name == f.down.name))
            .collect();
        let weights: Vec<Weights> = ffns
            .iter()
            .map(|f| Weights::read(&model.graph, f))
            .collect::<Result<_, _>>()?;
        for f in &ffns {
            if f.width() < self.experts + self.shared {
                return Err(IrError::node(
                    model.graph.node(f.down.node),
                    format!(
                        "moe: {} neurons cannot make {} experts and {} shared",
                        f.width(),
                        self.experts,
                        self.shared
                    ),
                ));
            }
        }
        Ok(Some((ffns, weights)))
    }

    /// The hidden activations' statistics on the fitting samples, where
    /// the partition or the skipped experts' means need them.
    fn hidden_statistics(
        &self,
        data: &Data<'_>,
        cx: &mut PassContext<'_>,
    ) -> Result<Option<Vec<Hidden>>, IrError> {
        Ok(if self.needs_data() {
            let coactivation = self.partition == PartitionBy::Coactivation;
            let mut acc: Vec<Hidden> = data
                .ffns
                .iter()
                .map(|f| Hidden::new(f.width(), coactivation))
                .collect();
            let samples = cx
                .calibrator("moe", "measures the FFNs' activations")?
                .split()
                .fitting();
            data.visit(cx, "measures the FFNs' activations", samples, &mut |rows| {
                for (a, r) in acc.iter_mut().zip(rows) {
                    a.add(&r.h);
                }
            })?;
            Some(acc)
        } else {
            None
        })
    }

    /// One FFN's experts: its shared neurons (the most used), the routed
    /// ones split into experts, and the skipped experts' mean outputs; the
    /// router is fitted later.
    fn partition(&self, f: &Ffn, w: &Weights, h: Option<&Hidden>, rng: &mut Rng) -> Plan {
        // Used: the mean square activation on calibration data.
        let usage: Vec<f64> = match h {
            Some(h) => h.squares.clone(),
            None => vec![0.0; f.width()],
        };
        let mut by_usage: Vec<usize> = (0..f.width()).collect();
        by_usage.sort_by(|&a, &b| usage[b].total_cmp(&usage[a]));
        let shared: Vec<usize> = {
            let mut s = by_usage[..self.shared].to_vec();
            s.sort();
            s
        };
        let routed: Vec<usize> = (0..f.width()).filter(|j| !shared.contains(j)).collect();
        let features: Vec<Vec<f64>> = match self.partition {
            PartitionBy::Cluster => normalized(
                routed
                    .iter()
                    .map(|&j| {
                        let activated = w.gate.as_ref().map_or(&w.up, |g| &g.0);
                        (0..f.up.k).map(|i| activated[(i, j)]).collect()
                    })
                    .collect(),
            ),
            PartitionBy::Coactivation => {
                let g = h
                    .and_then(|h| h.gram.as_ref())
                    .expect("collected for co-activation");
                normalized(
                    routed
                        .iter()
                        .map(|&j| routed.iter().map(|&l| g[(j, l)]).collect())
                        .collect(),
                )
            }
            PartitionBy::Random => Vec::new(),
        };
        let assignment = match self.partition {
            PartitionBy::Random => partition::random(routed.len(), self.experts, rng),
            _ => partition::balanced_kmeans(&features, self.experts, 8, rng),
        };
        let groups: Vec<Vec<usize>> = partition::groups(&assignment, self.experts)
            .into_iter()
            .map(|g| g.into_iter().map(|j| routed[j]).collect())
            .collect();
        let out = w.down.ncols();
        let means = match (self.skip_mean, h) {
            (true, Some(h)) => {
                let mean = h.mean();
                Some(Mat::from_fn(self.experts, out, |e, o| {
                    groups[e].iter().map(|&j| mean[j] * w.down[(j, o)]).sum()
                }))
            }
            _ => None,
        };
        Plan {
            ffn: f.clone(),
            groups,
            shared,
            router: Mat::zeros(f.up.k + 1, self.experts),
            means,
            k: self.k,
        }
    }

    /// The routers fitted, and the experts refitted to the routing they
    /// get, in alternation: the experts' weights as refitted (the original
    /// ones stay the targets) and the damping each refit chose.
    #[allow(clippy::type_complexity)]
    fn fit(
        &self,
        data: &Data<'_>,
        cx: &mut PassContext<'_>,
        plans: &mut [Plan],
        weights: &[Weights],
        rng: &mut Rng,
    ) -> Result<(Vec<Weights>, Vec<Option<f64>>), IrError> {
        let mut fitted: Vec<Weights> = weights.to_vec();
        let mut refit_damping = vec![None; plans.len()];
        // With k = E every expert computes every token: nothing to refit.
        let refit = self.refit && self.k < self.experts;
        let rounds = if refit && self.router == RouterKind::Fitted {
            self.rounds
        } else {
            1
        };
        let prior_means: Vec<Option<Mat<f64>>> = plans.iter().map(|p| p.means.clone()).collect();
        for _ in 0..rounds {
            self.set_routers(data, cx, plans, &fitted, rng)?;
            if refit {
                for (i, (w, damp)) in self
                    .refit_experts(data, cx, plans, weights, &prior_means)?
                    .into_iter()
                    .enumerate()
                {
                    fitted[i] = w;
                    refit_damping[i] = Some(damp);
                }
            }
        }
        Ok((fitted, refit_damping))
    }

    /// The experts written into the model, with the report.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        model: &mut Model,
        cx: &mut PassContext<'_>,
        plans: &[Plan],
        weights: &[Weights],
        recalls: &[Option<f64>],
        refit_damping: &[Option<f64>],
        outcome: &mut PassOutcome,
    ) -> Result<(), IrError> {
        if self.form == Form::Ort
            && !model
                .opset_imports
                .iter()
                .any(|o| o.domain == "com.microsoft")
        {
            model.opset_imports.push(OpsetImport {
                domain: "com.microsoft".into(),
                version: 1,
            });
        }
        // tract has no MoE op: the error is measured on the same experts
        // and routers written with standard ops.
        let mut judged = (self.form == Form::Ort).then(|| model.clone());
        let (mut dense_total, mut moe_total) = (0.0, 0.0);
        for (i, ((p, w), recall)) in plans.iter().zip(weights).zip(recalls).enumerate() {
            let ort = match self.form {
                Form::Onnx => None,
                Form::Ort => match emit::ort_activation(&model.graph, &p.ffn) {
                    Ok(act) => Some(act),
                    Err(why) => {
                        outcome.details.push(format!(
                            "  {}: written with standard ops (form=onnx): {why}",
                            p.ffn.name()
                        ));
                        None
                    }
                },
            };
            if let Some(j) = judged.as_mut() {
                if ort.is_some_and(|a| !a.exact) {
                    outcome.details.push(format!(
                        "  {}: exact (erf) GELU, which onnxruntime's MoE computes with the tanh approximation (about 1e-3 apart)",
                        p.ffn.name()
                    ));
                }
                emit::rewrite(&mut j.graph, p, w, None)?;
            }
            emit::rewrite(&mut model.graph, p, w, ort)?;
            let (dense, moe) = flops(&p.ffn, w.down.ncols(), p, ort.is_some());
            dense_total += dense;
            moe_total += moe;
            let sizes: Vec<usize> = p.groups.iter().map(Vec::len).collect();
            outcome.details.push(format!(
                "  {}: {} neurons → {} experts of {}{}, top {}; router recall of the oracle's top {} on held-out samples {}; FFN FLOPs per token {:.0} → {:.0} ({:.0}% saved)",
                p.ffn.name(),
                p.ffn.width(),
                self.experts,
                match (sizes.iter().min(), sizes.iter().max()) {
                    (Some(a), Some(b)) if a != b => format!("{a}–{b}"),
                    (Some(a), _) => a.to_string(),
                    _ => "0".into(),
                },
                if p.shared.is_empty() { String::new() } else { format!(" + {} shared", p.shared.len()) },
                self.k,
                self.k,
                recall.map_or("-".into(), |r| format!("{:.3}", r)),
                dense,
                moe,
                100.0 * (1.0 - moe / dense)
            ));
            outcome.records.push(json!({
                "ffn": p.ffn.name(),
                "form": if ort.is_some() { "ort" } else { "onnx" },
                "up": p.ffn.up.name,
                "gated": p.ffn.gate.is_some(),
                "width": p.ffn.width(),
                "expert_sizes": sizes,
                "shared": p.shared.len(),
                "k": self.k,
                "router_recall": recall,
                "refit_damping": refit_damping[i],
                "flops_dense": dense,
                "flops_routed": moe,
            }));
        }
        if let Some(mut j) = judged {
            sculpt_ir::rewrite::remove_dead_code(&mut j.graph);
            cx.judging.stand_in = Some((
                j,
                "measured on the same experts and routers in standard ops: tract has no MoE op"
                    .into(),
            ));
        }
        outcome.changed = true;
        outcome.stat("ffns_factored", plans.len());
        outcome.stat("ffn_flops_per_token_before", dense_total);
        outcome.stat("ffn_flops_per_token_after", moe_total);
        outcome.details.insert(
            0,
            format!(
                "{} FFNs as {} experts, top {} ({:?} partition, {:?} router, skipped experts {}, form {:?}): FFN FLOPs per token {:.0} → {:.0}",
                plans.len(),
                self.experts,
                self.k,
                self.partition,
                self.router,
                if self.skip_mean { "give their mean" } else { "give zero" },
                self.form,
                dense_total,
                moe_total
            ),
        );
        Ok(())
    }
}
