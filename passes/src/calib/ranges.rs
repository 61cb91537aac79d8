//! Value ranges on calibration data: what activation quantization reads.
//!
//! One streamed run keeps, per requested value, its exact min and max and
//! a histogram whose bins are powers of two wide and merge in pairs as the
//! range grows, so each value takes at most [`MAX_BINS`] counters however
//! many samples pass, and the range is spanned by at least half as many.
//! From the histogram a clipping range `lo ≤ 0 ≤ hi` is chosen
//! ([`RangeMethod`]): the whole range, a percentile, the range whose
//! 8-bit quantization is closest in distribution (KL divergence, as
//! TensorRT calibrates) or in mean squared error.

use crate::calib::stats::{Keeper, KeptValues};
use crate::calib::{Calibrator, ValueChunk};
use rayon::prelude::*;
use sculpt_ir::Model;
use std::collections::HashMap;

/// Most bins a histogram keeps; the range covers at least half of them.
pub const MAX_BINS: usize = 4096;

/// How a clipping range is chosen from a value's histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeMethod {
    MinMax,
    /// Cut the given share (in percent, e.g. 99.999) on each side.
    Percentile(f64),
    /// Least KL divergence between the clipped distribution and its
    /// quantization.
    Entropy,
    /// Least expected squared quantization error (clipping included).
    Mse,
}

/// A streamed histogram of one value.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Bin width, a power of two; 0 before any non-zero value.
    width: f64,
    /// Index of the first bin: bin `i` holds `[i·width, (i+1)·width)`.
    start: i64,
    counts: Vec<u64>,
    /// Values exactly zero, counted apart until a width is known.
    zeros: u64,
    pub min: f64,
    pub max: f64,
    pub count: u64,
}

impl Histogram {
    pub fn add(&mut self, values: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let mut finite = 0u64;
        for &v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
                finite += 1;
            }
        }
        if lo > hi {
            return;
        }
        let (lo, hi) = (lo as f64, hi as f64);
        if self.count == 0 {
            (self.min, self.max) = (lo, hi);
        } else {
            self.min = self.min.min(lo);
            self.max = self.max.max(hi);
        }
        let magnitude = self.min.abs().max(self.max.abs());
        if magnitude > 0.0 && self.width == 0.0 {
            let fine = magnitude / (MAX_BINS / 4) as f64;
            self.width = 2f64.powi(fine.log2().floor() as i32);
            self.start = 0;
            self.counts = vec![std::mem::take(&mut self.zeros)];
        }
        if self.width > 0.0 {
            let first = (self.min / self.width).floor() as i64;
            let last = (self.max / self.width).floor() as i64;
            self.cover(first, last);
            // The width is a power of two: multiplying by its inverse is
            // exact, and past `start` the bin index is never negative, so
            // truncation is the floor.
            let inverse = 1.0 / self.width;
            let start = self.start as f64;
            let top = self.counts.len() - 1;
            for &v in values {
                if v.is_finite() {
                    let i = (v as f64 * inverse - start) as usize;
                    self.counts[i.min(top)] += 1;
                }
            }
        } else {
            self.zeros += finite;
        }
        self.count += finite;
    }

    /// Widens the bins until `first..=last` fits, then extends to it.
    fn cover(&mut self, first: i64, last: i64) {
        let (mut first, mut last) = (first.min(self.start), last.max(self.end()));
        while (last - first + 1) as usize > MAX_BINS {
            let start = self.start.div_euclid(2);
            let mut merged = vec![0u64; (self.end().div_euclid(2) - start + 1) as usize];
            for (i, &c) in self.counts.iter().enumerate() {
                merged[((self.start + i as i64).div_euclid(2) - start) as usize] += c;
            }
            self.counts = merged;
            self.start = start;
            self.width *= 2.0;
            first = first.div_euclid(2);
            last = last.div_euclid(2);
        }
        if first < self.start {
            let mut grown = vec![0u64; (self.start - first) as usize];
            grown.append(&mut self.counts);
            self.counts = grown;
            self.start = first;
        }
        let len = (last - self.start + 1) as usize;
        if self.counts.len() < len {
            self.counts.resize(len, 0);
        }
    }

    fn end(&self) -> i64 {
        self.start + self.counts.len() as i64 - 1
    }

    /// `(centre, count)` of every non-empty bin.
    fn bins(&self) -> Vec<(f64, f64)> {
        if self.width == 0.0 {
            return vec![(0.0, self.zeros as f64)];
        }
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let centre = (self.start + i as i64) as f64 * self.width + self.width / 2.0;
                (centre.clamp(self.min, self.max), c as f64)
            })
            .collect()
    }

    /// The clipping range `method` picks for `levels` quantization steps
    /// (255 for 8 bits); it always holds 0.
    pub fn range(&self, method: RangeMethod, levels: u32) -> (f64, f64) {
        let full = (self.min.min(0.0), self.max.max(0.0));
        if self.count == 0 || full.0 == full.1 {
            return full;
        }
        match method {
            RangeMethod::MinMax => full,
            RangeMethod::Percentile(p) => {
                let cut = (1.0 - p / 100.0).max(0.0) * self.count as f64;
                (
                    self.quantile(cut, false).min(0.0).max(full.0),
                    self.quantile(cut, true).max(0.0).min(full.1),
                )
            }
            RangeMethod::Mse => self.best(full, levels, |bins, lo, hi| {
                squared_error(bins, lo, hi, levels)
            }),
            RangeMethod::Entropy => self.best(full, levels, |bins, lo, hi| {
                kl_divergence(bins, lo, hi, levels)
            }),
        }
    }

    /// How many of the `levels + 1` codes of the range `lo..hi` each hold
    /// at least `share` of the values (rounded at the bins' resolution).
    pub fn codes_in_use(&self, lo: f64, hi: f64, levels: u32, share: f64) -> usize {
        if self.count == 0 || hi <= lo {
            return 0;
        }
        let step = (hi - lo) / levels as f64;
        let mut per_code: HashMap<i64, f64> = HashMap::new();
        for (centre, count) in self.bins() {
            let code = ((centre.clamp(lo, hi) - lo) / step).round() as i64;
            *per_code.entry(code).or_default() += count;
        }
        let least = share * self.count as f64;
        per_code.values().filter(|&&c| c >= least).count()
    }

    /// The span holding all but `share` of the values on each side.
    pub fn bulk(&self, share: f64) -> f64 {
        let cut = share * self.count as f64;
        self.quantile(cut, true) - self.quantile(cut, false)
    }

    /// The value below which (or, `from_top`, above which) `cut` of the
    /// counted values lie, at a bin edge.
    fn quantile(&self, cut: f64, from_top: bool) -> f64 {
        let mut bins = self.bins();
        if from_top {
            bins.reverse();
        }
        let mut seen = 0.0;
        let half = self.width / 2.0;
        for (centre, count) in bins {
            seen += count;
            if seen > cut {
                return if from_top {
                    centre + half
                } else {
                    centre - half
                };
            }
        }
        if from_top {
            self.max
        } else {
            self.min
        }
    }

    /// Of the ranges shrunk from `full`, together then each side apart,
    /// the one `cost` rates lowest. Ranges narrower than `levels` bins are
    /// not tried: the histogram cannot tell them apart.
    fn best(
        &self,
        full: (f64, f64),
        levels: u32,
        cost: impl Fn(&[(f64, f64)], f64, f64) -> f64 + Sync,
    ) -> (f64, f64) {
        let bins = self.bins();
        let narrowest = (levels as f64 * self.width / (full.1 - full.0)).min(1.0);
        let shares: Vec<f64> = (0..=100)
            .map(|i| 1.0 - i as f64 / 100.0)
            .filter(|&s| s >= narrowest)
            .collect();
        let pick = |candidates: Vec<(f64, f64)>| -> (f64, f64) {
            candidates
                .into_par_iter()
                .map(|(lo, hi)| (cost(&bins, lo, hi), (lo, hi)))
                .reduce(
                    || (f64::INFINITY, full),
                    |a, b| if b.0 < a.0 { b } else { a },
                )
                .1
        };
        let (_, hi) = pick(shares.iter().map(|&s| (s * full.0, s * full.1)).collect());
        let lo = pick(shares.iter().map(|&s| (s * full.0, hi)).collect()).0;
        let hi = pick(shares.iter().map(|&s| (lo, s * full.1)).collect()).1;
        (lo, hi)
    }
}

/// Scale and code of 0 for the range `lo..=hi` over `levels` steps.
pub fn scale_and_zero(lo: f64, hi: f64, levels: u32) -> (f64, f64) {
    if hi <= lo {
        return (1.0, 0.0);
    }
    let scale = (hi - lo) / levels as f64;
    (scale, (-lo / scale).round())
}

fn dequantized(x: f64, scale: f64, zero: f64, levels: u32) -> f64 {
    ((x / scale + zero).round().clamp(0.0, levels as f64) - zero) * scale
}

fn squared_error(bins: &[(f64, f64)], lo: f64, hi: f64, levels: u32) -> f64 {
    let (scale, zero) = scale_and_zero(lo, hi, levels);
    bins.iter()
        .map(|&(x, c)| c * (x - dequantized(x, scale, zero, levels)).powi(2))
        .sum()
}

/// KL(P‖Q) as TensorRT calibrates: P the bins inside `lo..=hi` with the
/// mass outside moved onto the edge bins, Q the inside bins alone (the
/// outside mass is what clipping loses) quantized: each step's mass
/// spread evenly over its non-empty bins.
fn kl_divergence(bins: &[(f64, f64)], lo: f64, hi: f64, levels: u32) -> f64 {
    let (scale, zero) = scale_and_zero(lo, hi, levels);
    let inside: Vec<usize> = (0..bins.len())
        .filter(|&i| (lo..=hi).contains(&bins[i].0))
        .collect();
    let (Some(&first), Some(&last)) = (inside.first(), inside.last()) else {
        return f64::INFINITY;
    };
    let steps: Vec<usize> = inside
        .iter()
        .map(|&i| (bins[i].0 / scale + zero).round().clamp(0.0, levels as f64) as usize)
        .collect();
    let mut per_step = vec![(0.0f64, 0usize); levels as usize + 1];
    for (&i, &step) in inside.iter().zip(&steps) {
        per_step[step].0 += bins[i].1;
        per_step[step].1 += 1;
    }
    let mut p: Vec<f64> = inside.iter().map(|&i| bins[i].1).collect();
    let end = p.len() - 1;
    p[0] += bins[..first].iter().map(|b| b.1).sum::<f64>();
    p[end] += bins[last + 1..].iter().map(|b| b.1).sum::<f64>();
    let p_total: f64 = p.iter().sum();
    let q_total: f64 = per_step.iter().map(|s| s.0).sum();
    // Q is never 0 where P is not (every inside bin is non-empty).
    p.iter()
        .zip(&steps)
        .map(|(&pi, &step)| {
            let q = per_step[step].0 / per_step[step].1 as f64 / q_total;
            let pi = pi / p_total;
            pi * (pi / q).ln()
        })
        .sum()
}

/// Streams the calibration samples `samples` through `model` once and
/// returns the histogram of each value in `names`, keeping beside them
/// the values `keep` take on the samples `kept_samples` (as
/// [`crate::calib::stats::collect_keeping`] does: a pass's reference
/// outputs, without another run).
pub fn collect_histograms(
    model: &Model,
    names: &[String],
    calibrator: &mut dyn Calibrator,
    samples: std::ops::Range<usize>,
    keep: &[String],
    kept_samples: std::ops::Range<usize>,
) -> Result<(Vec<Histogram>, Option<KeptValues>), String> {
    let mut requested = names.to_vec();
    let keep_slots = keep
        .iter()
        .map(|n| match requested.iter().position(|r| r == n) {
            Some(i) => i,
            None => {
                requested.push(n.clone());
                requested.len() - 1
            }
        })
        .collect();
    let mut kept = Keeper::new(keep_slots, &samples, kept_samples);
    let mut histograms = vec![Histogram::default(); names.len()];
    let mut first = 0;
    calibrator.visit_chunks(model, &requested, samples, &mut |chunk: &[ValueChunk]| {
        histograms
            .par_iter_mut()
            .zip(chunk.par_iter())
            .for_each(|(h, c)| h.add(&c.data));
        let count = chunk
            .first()
            .and_then(|c| c.shape.first())
            .copied()
            .unwrap_or(1);
        kept.take(chunk, first, count);
        first += count;
    })?;
    Ok((histograms, kept.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[f32]) -> Histogram {
        let mut h = Histogram::default();
        for part in values.chunks(1000) {
            h.add(part);
        }
        h
    }

    #[test]
    fn counts_every_value_within_the_bin_budget() {
        let values: Vec<f32> = (0..100_000)
            .map(|i| ((i * 7919) % 100_000) as f32 * 1e-3 - 20.0)
            .collect();
        let h = histogram(&values);
        assert_eq!(h.count, 100_000);
        assert_eq!(h.counts.iter().sum::<u64>(), 100_000);
        assert!(h.counts.len() <= MAX_BINS && h.counts.len() >= MAX_BINS / 4);
        assert_eq!(h.min, -20.0);
        assert!((h.max - 79.999).abs() < 1e-4);
    }

    #[test]
    fn growing_ranges_merge_bins() {
        let mut h = Histogram::default();
        h.add(&[0.0, 0.5, 1.0]);
        h.add(&[1000.0, -3000.0]);
        assert_eq!(h.count, 5);
        assert_eq!(h.counts.iter().sum::<u64>(), 5);
        assert!(h.counts.len() <= MAX_BINS);
        assert_eq!(h.range(RangeMethod::MinMax, 255), (-3000.0, 1000.0));
    }

    #[test]
    fn clipping_methods_cut_a_rare_outlier() {
        // Gaussian-like bulk in ±3 and one value at 200.
        let mut values: Vec<f32> = (0..200_000)
            .map(|i| {
                let u = (i as f32 + 0.5) / 200_000.0;
                // inverse of a logistic: heavy enough tails, deterministic
                (u / (1.0 - u)).ln() * 0.55
            })
            .collect();
        values.push(200.0);
        let h = histogram(&values);
        let (_, top) = h.range(RangeMethod::MinMax, 255);
        assert_eq!(top, 200.0);
        for method in [RangeMethod::Percentile(99.99), RangeMethod::Entropy] {
            let (lo, hi) = h.range(method, 255);
            assert!(lo < 0.0 && hi > 2.0 && hi < 50.0, "{method:?}: {lo}..{hi}");
        }
        // One outlier far out still weighs in squared error: MSE clips
        // less, but errs less than the whole range.
        let bins = h.bins();
        let (lo, hi) = h.range(RangeMethod::Mse, 255);
        assert!(hi < 200.0);
        assert!(squared_error(&bins, lo, hi, 255) < squared_error(&bins, h.min, 200.0, 255));
    }

    #[test]
    fn a_far_second_cluster_leaves_few_codes_in_use() {
        // Scores in ±4, and a third of them masked to -3.4e38.
        let spread: Vec<f32> = (0..3000).map(|i| (i % 800) as f32 / 100.0 - 4.0).collect();
        let masked: Vec<f32> = spread
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 3 == 0 { -3.4e38 } else { x })
            .collect();
        let h = histogram(&spread);
        let (lo, hi) = h.range(RangeMethod::MinMax, 255);
        assert!(h.codes_in_use(lo, hi, 255, 0.001) > 200);
        let h = histogram(&masked);
        let (lo, hi) = h.range(RangeMethod::MinMax, 255);
        assert!(h.codes_in_use(lo, hi, 255, 0.001) <= 2);
    }

    #[test]
    fn a_constant_value_has_an_empty_range() {
        let h = histogram(&[0.0; 10]);
        assert_eq!(h.range(RangeMethod::Entropy, 255), (0.0, 0.0));
        assert_eq!(scale_and_zero(0.0, 0.0, 255), (1.0, 0.0));
    }
}
