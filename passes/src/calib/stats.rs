//! Activation statistics of linear sites' inputs on calibration data, in
//! one streaming pass through the [`Calibrator`]: for every requested
//! input, seen as rows of `k` entries (a MatMul's or Gemm's input rows, a
//! Conv's im2col patches, per group), the row count, the mean, the
//! per-entry second moment and, where asked and within the memory cap,
//! the Gram matrix `XᵀX` (f64, `k × k`; each chunk's product is taken in
//! f32 and summed in f64). A request can pair its input with the same
//! activation of a reference model (run side by side, see
//! [`crate::calib::twin`]): then the cross product `XᵀX_ref` is kept
//! too, so refits can aim at the reference model's outputs.
//!
//! Of the samples a run visits, the held-out ones
//! ([`crate::calib::SampleSplit::held_out`] of their count) are kept apart
//! (same statistics), for checking a fit on data it was not fitted on.
//!
//! Memory stays bounded: one chunk of samples is held at a time, a Conv
//! keeps at most `max_positions` patch rows per sample (evenly spaced),
//! and when the Gram matrices would pass the cap the largest requests fall
//! back to per-entry moments, which the result says.

use crate::calib::{Calibrator, SampleSplit, ValueChunk};
use crate::linear::sites::{ConvGeometry, LinearSite, SiteOp};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;
use sculpt_ir::Model;
use std::ops::Range;
use std::sync::Arc;

/// How a site's input is read as rows of `k` entries.
#[derive(Clone, Debug, PartialEq)]
pub enum RowLayout {
    /// The last axis holds the entries; every other index is a row.
    Last,
    /// Axis 0 holds the entries, axis 1 the rows (Gemm with `transA`).
    First,
    /// Axis 1 holds the entries (channels), every other index is a row
    /// (a convolution's output).
    Channels,
    /// One row per output position of a convolution, per group.
    Patches(ConvGeometry),
}

/// The statistics wanted for one activation.
#[derive(Clone, Debug)]
pub struct StatsRequest {
    /// The activation (a value name in the model visited).
    pub value: String,
    /// The same activation in the reference model, when refits aim at it.
    pub reference: Option<String>,
    pub layout: RowLayout,
    /// Entries per row, per group.
    pub k: usize,
    pub groups: usize,
    /// Gram matrices (else per-entry moments only).
    pub full: bool,
}

impl StatsRequest {
    /// The statistics of `site`'s input.
    pub fn for_site(model: &Model, site: &LinearSite, full: bool) -> StatsRequest {
        let layout = match &site.op {
            SiteOp::MatMul => RowLayout::Last,
            SiteOp::Gemm { trans_a, .. } => {
                if *trans_a {
                    RowLayout::First
                } else {
                    RowLayout::Last
                }
            }
            SiteOp::Conv(geometry) => RowLayout::Patches(geometry.clone()),
        };
        StatsRequest {
            value: model.graph.value(site.input).name.clone(),
            reference: None,
            layout,
            k: site.k,
            groups: site.groups,
            full,
        }
    }

    fn gram_bytes(&self) -> u64 {
        let one = (self.k * self.k * 8 * self.groups) as u64;
        // Fit and held-out parts, and the cross and reference products
        // when paired.
        one * 2 * if self.reference.is_some() { 3 } else { 1 }
    }
}

/// Sums over rows of one group's input.
#[derive(Clone, Debug)]
pub struct Moments {
    pub rows: f64,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
    /// Per channel, the least and greatest value seen.
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// Σ x xᵀ.
    pub gram: Option<Mat<f64>>,
    /// Σ x_ref (paired requests).
    pub reference_sum: Option<Vec<f64>>,
    /// Σ x x_refᵀ (paired requests).
    pub cross: Option<Mat<f64>>,
    /// Σ x_ref x_refᵀ (paired requests).
    pub reference_gram: Option<Mat<f64>>,
}

impl Moments {
    fn new(k: usize, full: bool, paired: bool) -> Moments {
        Moments {
            rows: 0.0,
            sum: vec![0.0; k],
            sum_sq: vec![0.0; k],
            lo: vec![f64::INFINITY; k],
            hi: vec![f64::NEG_INFINITY; k],
            gram: full.then(|| Mat::zeros(k, k)),
            reference_sum: paired.then(|| vec![0.0; k]),
            cross: (full && paired).then(|| Mat::zeros(k, k)),
            reference_gram: (full && paired).then(|| Mat::zeros(k, k)),
        }
    }

    pub fn k(&self) -> usize {
        self.sum.len()
    }

    /// The statistics of the rows of `x` (full).
    pub fn from_rows(x: MatRef<'_, f64>) -> Moments {
        let (n, k) = (x.nrows(), x.ncols());
        let mut m = Moments::new(k, true, false);
        m.rows = n as f64;
        for i in 0..n {
            for j in 0..k {
                m.sum[j] += x[(i, j)];
                m.sum_sq[j] += x[(i, j)] * x[(i, j)];
                m.lo[j] = m.lo[j].min(x[(i, j)]);
                m.hi[j] = m.hi[j].max(x[(i, j)]);
            }
        }
        let mut g = Mat::<f64>::zeros(k, k);
        matmul(g.as_mut(), Accum::Replace, x.transpose(), x, 1.0, Par::Seq);
        m.gram = Some(g);
        m
    }

    pub fn mean(&self) -> Vec<f64> {
        let n = self.rows.max(1.0);
        self.sum.iter().map(|s| s / n).collect()
    }

    pub fn reference_mean(&self) -> Vec<f64> {
        let n = self.rows.max(1.0);
        match &self.reference_sum {
            Some(s) => s.iter().map(|x| x / n).collect(),
            None => self.mean(),
        }
    }

    /// E[x xᵀ] (the Gram matrix per row), or its diagonal as a diagonal
    /// matrix when only moments were kept.
    pub fn second_moment(&self) -> Mat<f64> {
        let n = self.rows.max(1.0);
        match &self.gram {
            Some(g) => Mat::from_fn(g.nrows(), g.ncols(), |i, j| g[(i, j)] / n),
            None => Mat::from_fn(self.k(), self.k(), |i, j| {
                if i == j {
                    self.sum_sq[i] / n
                } else {
                    0.0
                }
            }),
        }
    }

    /// Cov(x) = E[x xᵀ] − μμᵀ.
    pub fn covariance(&self) -> Mat<f64> {
        let mu = self.mean();
        let mut c = self.second_moment();
        for j in 0..c.ncols() {
            for i in 0..c.nrows() {
                c[(i, j)] -= mu[i] * mu[j];
            }
        }
        c
    }

    /// E[x x_refᵀ] (E[x xᵀ] when unpaired).
    pub fn cross_moment(&self) -> Mat<f64> {
        match &self.cross {
            Some(x) => {
                let n = self.rows.max(1.0);
                Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] / n)
            }
            None => self.second_moment(),
        }
    }

    /// Cov(x_ref) (Cov(x) when unpaired).
    pub fn reference_covariance(&self) -> Mat<f64> {
        let Some(g) = &self.reference_gram else {
            return self.covariance();
        };
        let n = self.rows.max(1.0);
        let nu = self.reference_mean();
        Mat::from_fn(g.nrows(), g.ncols(), |i, j| g[(i, j)] / n - nu[i] * nu[j])
    }

    /// Cov(x, x_ref) = E[x x_refᵀ] − μ μ_refᵀ (Cov(x) when unpaired).
    pub fn cross_covariance(&self) -> Mat<f64> {
        let (mu, nu) = (self.mean(), self.reference_mean());
        let mut c = self.cross_moment();
        for j in 0..c.ncols() {
            for i in 0..c.nrows() {
                c[(i, j)] -= mu[i] * nu[j];
            }
        }
        c
    }

    /// Σ_j Var(x_j): the trace of the covariance.
    pub fn total_variance(&self) -> f64 {
        let mu = self.mean();
        let n = self.rows.max(1.0);
        (0..self.k())
            .map(|j| self.sum_sq[j] / n - mu[j] * mu[j])
            .sum()
    }

    /// Whether the Gram matrix was kept.
    pub fn full(&self) -> bool {
        self.gram.is_some()
    }

    /// These sums plus `other`'s (same shape).
    pub fn merged(&self, other: &Moments) -> Moments {
        let pairwise = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect::<Vec<_>>()
        };
        let add = |a: &[f64], b: &[f64]| pairwise(a, b, |x, y| x + y);
        let add_mat = |a: &Option<Mat<f64>>, b: &Option<Mat<f64>>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        Moments {
            rows: self.rows + other.rows,
            sum: add(&self.sum, &other.sum),
            sum_sq: add(&self.sum_sq, &other.sum_sq),
            lo: pairwise(&self.lo, &other.lo, f64::min),
            hi: pairwise(&self.hi, &other.hi, f64::max),
            gram: add_mat(&self.gram, &other.gram),
            reference_sum: match (&self.reference_sum, &other.reference_sum) {
                (Some(a), Some(b)) => Some(add(a, b)),
                _ => None,
            },
            cross: add_mat(&self.cross, &other.cross),
            reference_gram: add_mat(&self.reference_gram, &other.reference_gram),
        }
    }
}

/// The statistics of one request: per group, fitted and held-out parts.
#[derive(Clone, Debug)]
pub struct SiteStats {
    pub fit: Vec<Moments>,
    pub holdout: Vec<Moments>,
    /// The Gram matrices were dropped to stay within the memory cap.
    pub diagonal_fallback: bool,
}

impl SiteStats {
    /// Fitted and held-out parts together.
    pub fn all(&self) -> Vec<Moments> {
        self.fit
            .iter()
            .zip(&self.holdout)
            .map(|(a, b)| a.merged(b))
            .collect()
    }

    pub fn has_holdout(&self) -> bool {
        self.holdout.iter().any(|m| m.rows > 0.0)
    }
}

/// The default cap on activation statistics (`--stats-memory`).
pub const DEFAULT_STATS_MEMORY: u64 = 4 << 30;

#[derive(Clone, Debug)]
pub struct StatsOptions {
    /// Patch rows kept per sample and convolution.
    pub max_positions: usize,
    /// Most bytes the Gram matrices may take.
    pub memory: u64,
    /// A value (usually a graph input such as `attention_mask`) whose
    /// zero elements mark rows that do not count (padding): used for
    /// inputs whose rows per sample match its elements per sample.
    pub row_mask: Option<String>,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            max_positions: 1024,
            memory: DEFAULT_STATS_MEMORY,
            row_mask: None,
        }
    }
}

impl SiteStats {
    /// The fitted part alone (as if no samples were held out).
    pub fn fitted_only(&self) -> SiteStats {
        let empty = |m: &Moments| Moments::new(m.k(), m.full(), m.reference_sum.is_some());
        SiteStats {
            fit: self.fit.clone(),
            holdout: self.fit.iter().map(empty).collect(),
            diagonal_fallback: self.diagonal_fallback,
        }
    }
}

/// Gathers the statistics of every request in one pass over the
/// calibration data. The result is in request order; requests for the
/// same activation read the same way (the Q, K and V projections of one
/// input) share one computation and one result.
pub fn collect(
    model: &Model,
    requests: &[StatsRequest],
    calibrator: &mut dyn Calibrator,
    options: &StatsOptions,
    samples: Range<usize>,
) -> Result<Vec<Arc<SiteStats>>, String> {
    collect_keeping(model, requests, calibrator, options, samples, &[], 0..0)
        .map(|(stats, _)| stats)
}

/// Values kept from a statistics run: per value, its data concatenated
/// over the samples kept.
pub type KeptValues = Vec<Vec<f32>>;

/// [`collect`] on `samples`, keeping beside the statistics the values
/// `keep` take on the samples `kept_samples` (calibration sample indices),
/// each concatenated over them: a pass's reference outputs on its judging
/// samples, without another run. `None` when one of them does not have
/// the sample axis first.
pub fn collect_keeping(
    model: &Model,
    requests: &[StatsRequest],
    calibrator: &mut dyn Calibrator,
    options: &StatsOptions,
    samples: Range<usize>,
    keep: &[String],
    kept_samples: Range<usize>,
) -> Result<(Vec<Arc<SiteStats>>, Option<KeptValues>), String> {
    let key = |r: &StatsRequest| format!("{r:?}");
    let mut unique: Vec<StatsRequest> = Vec::new();
    let mut index: Vec<usize> = Vec::with_capacity(requests.len());
    for r in requests {
        match unique.iter().position(|u| key(u) == key(r)) {
            Some(i) => index.push(i),
            None => {
                index.push(unique.len());
                unique.push(r.clone());
            }
        }
    }
    let (stats, kept) = collect_unique(
        model,
        unique,
        calibrator,
        options,
        samples,
        keep,
        kept_samples,
    )?;
    let stats: Vec<Arc<SiteStats>> = stats.into_iter().map(Arc::new).collect();
    Ok((index.into_iter().map(|i| stats[i].clone()).collect(), kept))
}

fn collect_unique(
    model: &Model,
    mut requests: Vec<StatsRequest>,
    calibrator: &mut dyn Calibrator,
    options: &StatsOptions,
    samples: Range<usize>,
    keep: &[String],
    kept_samples: Range<usize>,
) -> Result<(Vec<SiteStats>, Option<KeptValues>), String> {
    let mut fallback = vec![false; requests.len()];
    let mut order: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].full).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(requests[i].gram_bytes()));
    let mut total: u64 = order.iter().map(|&i| requests[i].gram_bytes()).sum();
    for i in order {
        if total <= options.memory {
            break;
        }
        total -= requests[i].gram_bytes();
        requests[i].full = false;
        fallback[i] = true;
    }
    let mut names: Vec<String> = Vec::new();
    let mut slot = |name: &str| match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    };
    let slots: Vec<(usize, Option<usize>)> = requests
        .iter()
        .map(|r| (slot(&r.value), r.reference.as_deref().map(&mut slot)))
        .collect();
    let mask_slot = options.row_mask.as_deref().map(&mut slot);
    let keep_slots: Vec<usize> = keep.iter().map(|n| slot(n)).collect();
    let mut kept = Keeper::new(keep_slots, &samples, kept_samples);
    let fit_samples = SampleSplit::new(samples.len()).fitted().end;
    let mut acc: Vec<SiteStats> = requests
        .iter()
        .map(|r| {
            let m = Moments::new(r.k, r.full, r.reference.is_some());
            SiteStats {
                fit: vec![m.clone(); r.groups],
                holdout: vec![m; r.groups],
                diagonal_fallback: false,
            }
        })
        .collect();
    let mut first_sample = 0usize;
    let mut problem: Option<String> = None;
    calibrator.visit_chunks(model, &names, samples, &mut |chunk: &[ValueChunk]| {
        let count = chunk
            .first()
            .and_then(|c| c.shape.first())
            .copied()
            .unwrap_or(1);
        let outcomes: Vec<Result<(), String>> = acc
            .par_iter_mut()
            .zip(requests.par_iter())
            .zip(slots.par_iter())
            .map(|((stats, request), &(x, reference))| {
                let x = &chunk[x];
                let reference = reference.map(|r| &chunk[r]);
                let mask = mask_slot.map(|m| &chunk[m]);
                let inputs = Inputs { x, reference, mask };
                accumulate(stats, request, &inputs, first_sample, fit_samples, options)
            })
            .collect();
        if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
            problem.get_or_insert(e);
        }
        kept.take(chunk, first_sample, count);
        first_sample += count;
    })?;
    if let Some(e) = problem {
        return Err(e);
    }
    for (stats, flag) in acc.iter_mut().zip(fallback) {
        stats.diagonal_fallback = flag;
    }
    acc.par_iter_mut().for_each(|stats| {
        for m in stats.fit.iter_mut().chain(stats.holdout.iter_mut()) {
            m.gram.iter_mut().for_each(mirror_lower);
            m.reference_gram.iter_mut().for_each(mirror_lower);
        }
    });
    Ok((acc, kept.finish()))
}

/// Keeps, from the chunks of a calibration run, the values at some slots
/// of each chunk on some of the samples visited.
pub struct Keeper {
    slots: Vec<usize>,
    /// The kept samples, counted from the first one visited.
    samples: Range<usize>,
    values: Option<KeptValues>,
}

impl Keeper {
    /// Keeps the values at `slots` on calibration samples `kept` of a run
    /// over `visited`.
    pub fn new(slots: Vec<usize>, visited: &Range<usize>, kept: Range<usize>) -> Keeper {
        Keeper {
            values: Some(vec![Vec::new(); slots.len()]),
            slots,
            samples: kept.start.saturating_sub(visited.start)
                ..kept.end.saturating_sub(visited.start),
        }
    }

    /// Takes what it keeps from `chunk`, which holds `count` samples from
    /// the `first`-th one visited. A value not laid out by sample (axis 0)
    /// makes it keep nothing.
    pub fn take(&mut self, chunk: &[ValueChunk], first: usize, count: usize) {
        let wanted = self.samples.start.max(first)..self.samples.end.min(first + count);
        let by_sample = self
            .slots
            .iter()
            .all(|&at| chunk[at].shape.first() == Some(&count));
        match self.values.as_mut() {
            Some(_) if !by_sample => self.values = None,
            Some(values) if !wanted.is_empty() => {
                for (&at, values) in self.slots.iter().zip(values.iter_mut()) {
                    let v = &chunk[at];
                    let per = v.data.len() / count.max(1);
                    let from = (wanted.start - first) * per;
                    values.extend_from_slice(&v.data[from..from + wanted.len() * per]);
                }
            }
            _ => {}
        }
    }

    /// The values kept, each concatenated over the samples.
    pub fn finish(self) -> Option<KeptValues> {
        self.values
    }
}

/// One chunk of a request's input, its reference, and the row mask.
struct Inputs<'a> {
    x: &'a ValueChunk,
    reference: Option<&'a ValueChunk>,
    mask: Option<&'a ValueChunk>,
}

/// Adds one chunk of one request's input (and its reference) to `stats`:
/// its first samples to the fitted part, the rest (past `fit_samples`) to
/// the held-out part.
fn accumulate(
    stats: &mut SiteStats,
    request: &StatsRequest,
    inputs: &Inputs<'_>,
    first_sample: usize,
    fit_samples: usize,
    options: &StatsOptions,
) -> Result<(), String> {
    let (x, reference) = (inputs.x, inputs.reference);
    if let Some(r) = reference {
        if r.shape != x.shape {
            return Err(format!(
                "'{}' has shape {:?} here and {:?} in the reference model",
                request.value, x.shape, r.shape
            ));
        }
    }
    let samples = match request.layout {
        RowLayout::First => x.shape.get(1).copied().unwrap_or(1),
        _ => x.shape.first().copied().unwrap_or(1),
    };
    let split = fit_samples.saturating_sub(first_sample).min(samples);
    for group in 0..request.groups {
        for (range, held) in [(0..split, false), (split..samples, true)] {
            if range.is_empty() {
                continue;
            }
            let at = first_sample + range.start;
            let kept = kept_rows(request, x, inputs.mask, range.clone());
            let mut rows_x = rows(request, x, range.clone(), group, at, options)?;
            let mut rows_r = reference
                .map(|r| rows(request, r, range.clone(), group, at, options))
                .transpose()?;
            if let Some(kept) = &kept {
                rows_x = rows_x.pick(kept);
                rows_r = rows_r.map(|r| r.pick(kept));
            }
            let part = if held {
                &mut stats.holdout[group]
            } else {
                &mut stats.fit[group]
            };
            add_rows(part, rows_x.view(), rows_r.as_ref().map(Rows::view));
        }
    }
    Ok(())
}

/// Which rows of samples `range` the mask keeps, when it applies: a
/// row-per-element input (`Last` layout) with as many rows per sample as
/// the mask has elements per sample.
fn kept_rows(
    request: &StatsRequest,
    x: &ValueChunk,
    mask: Option<&ValueChunk>,
    range: std::ops::Range<usize>,
) -> Option<Vec<usize>> {
    let mask = mask?;
    if request.layout != RowLayout::Last {
        return None;
    }
    let samples = x.shape.first().copied()?.max(1);
    if mask.shape.first() != Some(&samples) {
        return None;
    }
    let rows_per_sample = x.data.len() / samples / request.k.max(1);
    let per_sample = mask.data.len() / samples;
    if per_sample != rows_per_sample {
        return None;
    }
    let data = &mask.data[range.start * per_sample..range.end * per_sample];
    Some((0..data.len()).filter(|&i| data[i] != 0.0).collect())
}

/// Rows of `k` entries, stored row after row.
struct Rows {
    data: Vec<f32>,
    k: usize,
}

impl Rows {
    fn zeros(rows: usize, k: usize) -> Rows {
        Rows {
            data: vec![0.0; rows * k],
            k,
        }
    }

    fn count(&self) -> usize {
        self.data.len() / self.k.max(1)
    }

    fn view(&self) -> MatRef<'_, f32> {
        MatRef::from_row_major_slice(&self.data, self.count(), self.k)
    }

    fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.k..(i + 1) * self.k]
    }

    /// Only rows `kept`.
    fn pick(&self, kept: &[usize]) -> Rows {
        let mut data = Vec::with_capacity(kept.len() * self.k);
        for &r in kept {
            data.extend_from_slice(&self.data[r * self.k..(r + 1) * self.k]);
        }
        Rows { data, k: self.k }
    }
}

/// The rows of samples `range` of a chunk, for one group; `first` is the
/// index of the range's first sample overall.
fn rows(
    request: &StatsRequest,
    x: &ValueChunk,
    range: std::ops::Range<usize>,
    group: usize,
    first: usize,
    options: &StatsOptions,
) -> Result<Rows, String> {
    let k = request.k;
    let bad = || {
        format!(
            "'{}' has shape {:?}, which does not give rows of {k}",
            request.value, x.shape
        )
    };
    match &request.layout {
        RowLayout::Last => {
            let samples = x.shape.first().copied().unwrap_or(1).max(1);
            let per_sample = x.data.len() / samples;
            if !per_sample.is_multiple_of(k) || *x.shape.last().unwrap_or(&0) != k {
                return Err(bad());
            }
            let data = x.data[range.start * per_sample..range.end * per_sample].to_vec();
            Ok(Rows { data, k })
        }
        RowLayout::First => {
            let [rows_k, m] = x.shape[..] else {
                return Err(bad());
            };
            if rows_k != k {
                return Err(bad());
            }
            let mut out = Rows::zeros(range.len(), k);
            for (r, sample) in range.enumerate() {
                for (i, v) in out.row_mut(r).iter_mut().enumerate() {
                    *v = x.data[i * m + sample];
                }
            }
            Ok(out)
        }
        RowLayout::Channels => {
            let samples = x.shape.first().copied().unwrap_or(1).max(1);
            if x.shape.get(1) != Some(&k) {
                return Err(bad());
            }
            let per_sample = x.data.len() / samples;
            let plane = per_sample / k.max(1);
            let mut out = Rows::zeros(range.len() * plane, k);
            for (s, sample) in range.enumerate() {
                let image = &x.data[sample * per_sample..(sample + 1) * per_sample];
                for c in 0..k {
                    for p in 0..plane {
                        out.data[(s * plane + p) * k + c] = image[c * plane + p];
                    }
                }
            }
            Ok(out)
        }
        RowLayout::Patches(geometry) => {
            let samples = x.shape.first().copied().unwrap_or(1).max(1);
            let per_sample = x.data.len() / samples;
            let mut data = Vec::new();
            for (i, s) in range.enumerate() {
                let image = &x.data[s * per_sample..(s + 1) * per_sample];
                let one = patches(request, geometry, x, image, group, first + i, options)?;
                data.extend_from_slice(&one.data);
            }
            Ok(Rows { data, k })
        }
    }
}

/// im2col for one image and group: one row per kept output position,
/// entries (input channel, kernel offset), zero where padding is read.
fn patches(
    request: &StatsRequest,
    geometry: &ConvGeometry,
    x: &ValueChunk,
    image: &[f32],
    group: usize,
    sample_index: usize,
    options: &StatsOptions,
) -> Result<Rows, String> {
    let spatial = geometry.kernel.len();
    if x.shape.len() != spatial + 2 {
        return Err(format!(
            "'{}' has shape {:?}, not [N, C, {} spatial dims]",
            request.value, x.shape, spatial
        ));
    }
    let channels = x.shape[1];
    let per_group = channels / geometry.group.max(1);
    let window = geometry.window();
    if per_group * window != request.k {
        return Err(format!(
            "'{}' has {channels} channels, which does not fit the convolution",
            request.value
        ));
    }
    let dims = &x.shape[2..];
    let plane: usize = dims.iter().product();
    let out = geometry.output_dims(dims);
    let positions: usize = out.iter().product();
    let pads = geometry.pads_for(dims);
    let step = positions.div_ceil(options.max_positions.max(1)).max(1);
    let start = sample_index % step;
    let kept: Vec<usize> = (start..positions).step_by(step).collect();
    let mut m = Rows::zeros(kept.len(), request.k);
    let offsets: Vec<Vec<usize>> = (0..window).map(|w| unravel(w, &geometry.kernel)).collect();
    let mut at = vec![0i64; spatial];
    for (row, &p) in kept.iter().enumerate() {
        let o = unravel(p, &out);
        for (wi, kernel_at) in offsets.iter().enumerate() {
            let mut inside = true;
            for a in 0..spatial {
                at[a] = (o[a] * geometry.strides[a] + kernel_at[a] * geometry.dilations[a]) as i64
                    - pads[a] as i64;
                inside &= at[a] >= 0 && (at[a] as usize) < dims[a];
            }
            if !inside {
                continue;
            }
            let mut flat = 0usize;
            for a in 0..spatial {
                flat = flat * dims[a] + at[a] as usize;
            }
            let out = m.row_mut(row);
            for ci in 0..per_group {
                let c = group * per_group + ci;
                out[ci * window + wi] = image[c * plane + flat];
            }
        }
    }
    Ok(m)
}

/// The multi-index of `i` in row-major `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut out = vec![0; dims.len()];
    for a in (0..dims.len()).rev() {
        out[a] = i % dims[a].max(1);
        i /= dims[a].max(1);
    }
    out
}

/// Adds rows `x` (and the paired reference rows `r`) to `m`.
fn add_rows(m: &mut Moments, x: MatRef<'_, f32>, r: Option<MatRef<'_, f32>>) {
    let k = x.ncols();
    m.rows += x.nrows() as f64;
    for i in 0..x.nrows() {
        for j in 0..k {
            let v = x[(i, j)] as f64;
            m.sum[j] += v;
            m.sum_sq[j] += v * v;
            m.lo[j] = m.lo[j].min(v);
            m.hi[j] = m.hi[j].max(v);
        }
    }
    if let (Some(sum), Some(r)) = (&mut m.reference_sum, r) {
        for i in 0..r.nrows() {
            for (j, sum) in sum.iter_mut().enumerate() {
                *sum += r[(i, j)] as f64;
            }
        }
    }
    if let Some(g) = &mut m.gram {
        add_gram(g, x);
    }
    if let (Some(c), Some(r)) = (&mut m.cross, r) {
        let mut p = Mat::<f32>::zeros(k, k);
        matmul(
            p.as_mut(),
            Accum::Replace,
            x.transpose(),
            r,
            1.0f32,
            Par::Seq,
        );
        for j in 0..k {
            for i in 0..k {
                c[(i, j)] += p[(i, j)] as f64;
            }
        }
    }
    if let (Some(g), Some(r)) = (&mut m.reference_gram, r) {
        add_gram(g, r);
    }
}

/// `g += xᵀx` on the lower half (the upper is copied once all rows are
/// in: [`mirror_lower`]), the product in f32, summed in f64.
fn add_gram(g: &mut Mat<f64>, x: MatRef<'_, f32>) {
    let k = x.ncols();
    let mut p = Mat::<f32>::zeros(k, k);
    triangular::matmul(
        p.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        x.transpose(),
        BlockStructure::Rectangular,
        x,
        BlockStructure::Rectangular,
        1.0f32,
        Par::Seq,
    );
    for j in 0..k {
        for i in j..k {
            g[(i, j)] += p[(i, j)] as f64;
        }
    }
}

/// Copies the lower half of `g` (what [`add_gram`] sums) onto its upper
/// half.
fn mirror_lower(g: &mut Mat<f64>) {
    for j in 0..g.ncols() {
        for i in 0..j {
            g[(i, j)] = g[(j, i)];
        }
    }
}

/// Per index along `axis` of each value: the sum of squares over the
/// calibration samples `samples` (the activation energy of each channel),
/// in one streamed run.
pub fn channel_energy(
    model: &Model,
    values: &[(String, usize)],
    calibrator: &mut dyn Calibrator,
    samples: Range<usize>,
) -> Result<Vec<Vec<f64>>, String> {
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    let mut energy: Vec<Vec<f64>> = vec![Vec::new(); values.len()];
    calibrator.visit(model, &names, samples, &mut |i, shape, data| {
        let axis = values[i].1;
        if axis >= shape.len() {
            return;
        }
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let e = &mut energy[i];
        e.resize(len, 0.0);
        for (k, x) in data.iter().enumerate() {
            e[(k / inner.max(1)) % len.max(1)] += (*x as f64).powi(2);
        }
    })?;
    Ok(energy)
}

/// What was measured of a list of linear sites (by index in that list):
/// their input statistics, and the energy of the stream each one's output
/// joins ([`LinearSite::merge_value`]; `None` where that is the site's own
/// output): errors at a site are judged against that energy, so that a
/// branch's error counts by the size of what it is added to.
pub struct SiteData {
    pub stats: Vec<Option<Arc<SiteStats>>>,
    pub stream_energy: Vec<Option<f64>>,
}

impl SiteData {
    pub fn none(sites: usize) -> SiteData {
        SiteData {
            stats: vec![None; sites],
            stream_energy: vec![None; sites],
        }
    }

    /// Measures `sites` in one calibration run: Gram matrices where `full`.
    pub fn collect(
        model: &Model,
        sites: &[LinearSite],
        full: bool,
        calibrator: &mut dyn Calibrator,
        options: &StatsOptions,
    ) -> Result<SiteData, String> {
        let graph = &model.graph;
        let mut requests: Vec<StatsRequest> = sites
            .iter()
            .map(|s| StatsRequest::for_site(model, s, full))
            .collect();
        let mut merges: Vec<Option<usize>> = Vec::new();
        for site in sites {
            let merge = site.merge_value(graph);
            if merge == site.output {
                merges.push(None);
                continue;
            }
            let layout = match site.op {
                SiteOp::Conv(_) => RowLayout::Channels,
                _ => RowLayout::Last,
            };
            merges.push(Some(requests.len()));
            requests.push(StatsRequest {
                value: graph.value(merge).name.clone(),
                reference: None,
                layout,
                k: site.n * site.groups,
                groups: 1,
                full: false,
            });
        }
        let all = calibrator.split().all();
        let mut stats = collect(model, &requests, calibrator, options, all)?;
        let stream_energy = merges
            .iter()
            .map(|m| m.map(|i| stats[i].all()[0].total_variance()))
            .collect();
        stats.truncate(sites.len());
        Ok(SiteData {
            stats: stats.into_iter().map(Some).collect(),
            stream_energy,
        })
    }
}
