//! `criterion=obs`: channels chosen knowing the refit that follows
//! (Optimal Brain Surgeon, in ZipLM's structured form). For a consumer
//! site with input covariance `C` and weight `W`, removing the rows `B`
//! of one channel and refitting the rest by least squares raises the
//! site's output error by `tr(W_Bᵀ [(C⁻¹)_BB]⁻¹ W_B)`; the update that
//! achieves it is `W -= (C⁻¹)_:B [(C⁻¹)_BB]⁻¹ W_B`, and `C⁻¹` loses the
//! channel by the same Schur complement. Each group's channels are
//! removed greedily in batches (a sixty-fourth of the group at a time),
//! the cost of each summed over the group's consumer sites, each relative
//! to that site's output energy `tr(Wᵀ C W)`: the costs are shares of an
//! output's variance, comparable across layers.

use super::refit::{enough_rows, ConsumerSlice, Consumers};
use super::select::Sequence;
use crate::calib::SiteData;
use crate::calib::SiteStats;
use crate::linear::solve::{damped, mean_diagonal, output_energy, spd_inverse};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use sculpt_ir::Graph;

/// One consumer site's state during one group's greedy removal.
struct State {
    /// Inverse of the damped input covariance, with removed rows taken out
    /// by Schur complements.
    hinv: Mat<f64>,
    /// The weight with the removals' least-squares compensation applied.
    w: Mat<f64>,
    /// The site's output energy, the unit of its costs.
    energy: f64,
}

impl State {
    fn new(stats: &SiteStats, w: Mat<f64>, damp: f64, stream: Option<f64>) -> State {
        let m = &stats.all()[0];
        let c = m.covariance();
        let lambda = damp * mean_diagonal(c.as_ref()).max(0.0);
        let energy = stream
            .unwrap_or_else(|| output_energy(c.as_ref(), w.as_ref()))
            .max(f64::MIN_POSITIVE);
        State {
            hinv: spd_inverse(damped(c.as_ref(), lambda.max(1e-12)).as_ref()),
            w,
            energy,
        }
    }

    /// The error removing `rows` adds, relative to the output energy.
    fn cost(&self, rows: &[usize]) -> f64 {
        let n = self.w.ncols();
        if let [i] = rows {
            let d = self.hinv[(*i, *i)];
            if d <= 0.0 {
                return f64::INFINITY;
            }
            let s: f64 = (0..n).map(|j| self.w[(*i, j)].powi(2)).sum();
            return s / d / self.energy;
        }
        let s = Mat::from_fn(rows.len(), rows.len(), |a, b| self.hinv[(rows[a], rows[b])]);
        let s_inv = spd_inverse(s.as_ref());
        let wb = Mat::from_fn(rows.len(), n, |a, j| self.w[(rows[a], j)]);
        let mut t = Mat::<f64>::zeros(rows.len(), n);
        matmul(
            t.as_mut(),
            Accum::Replace,
            s_inv.as_ref(),
            wb.as_ref(),
            1.0,
            Par::Seq,
        );
        let mut total = 0.0;
        for a in 0..rows.len() {
            for j in 0..n {
                total += wb[(a, j)] * t[(a, j)];
            }
        }
        total.max(0.0) / self.energy
    }

    /// Removes `rows`, compensating the rest.
    fn remove(&mut self, rows: &[usize]) {
        if rows.is_empty() {
            return;
        }
        let k = self.hinv.nrows();
        let s = Mat::from_fn(rows.len(), rows.len(), |a, b| self.hinv[(rows[a], rows[b])]);
        let s_inv = spd_inverse(s.as_ref());
        let u = Mat::from_fn(k, rows.len(), |i, a| self.hinv[(i, rows[a])]);
        let mut us = Mat::<f64>::zeros(k, rows.len());
        matmul(
            us.as_mut(),
            Accum::Replace,
            u.as_ref(),
            s_inv.as_ref(),
            1.0,
            Par::Seq,
        );
        let wb = Mat::from_fn(rows.len(), self.w.ncols(), |a, j| self.w[(rows[a], j)]);
        matmul(
            self.w.as_mut(),
            Accum::Add,
            us.as_ref(),
            wb.as_ref(),
            -1.0,
            Par::Seq,
        );
        matmul(
            self.hinv.as_mut(),
            Accum::Add,
            us.as_ref(),
            u.transpose(),
            -1.0,
            Par::Seq,
        );
        for &r in rows {
            for j in 0..self.w.ncols() {
                self.w[(r, j)] = 0.0;
            }
            for i in 0..k {
                self.hinv[(r, i)] = 0.0;
                self.hinv[(i, r)] = 0.0;
            }
        }
    }
}

/// The removal order of group `gi`'s channels (up to `limit` of them) by
/// OBS cost; `None` when a consumer site has no Gram statistics.
pub(super) fn sequence(
    graph: &Graph,
    consumers: &Consumers,
    data: &SiteData,
    gi: usize,
    channels: usize,
    limit: usize,
    damp: f64,
) -> Option<Sequence> {
    let slices: &[ConsumerSlice] = consumers.by_group.get(&gi)?;
    // Without Gram matrices, or with too few rows to trust them, each
    // channel is judged alone.
    if slices.iter().any(|s| {
        data.stats[s.site]
            .as_ref()
            .is_some_and(|st| !st.fit[0].full() || !enough_rows(st.fit[0].rows, st.fit[0].k()))
    }) {
        return diagonal_sequence(graph, consumers, data, slices, channels, limit);
    }
    let mut states = Vec::new();
    for slice in slices {
        let st = data.stats[slice.site].as_ref()?;
        let w = consumers.sites[slice.site].weights(graph).ok()?.remove(0);
        states.push(State::new(st, w, damp, data.stream_energy[slice.site]));
    }
    let rows = |slice: &ConsumerSlice, c: usize| consumers.rows(slice, c);
    let batch = (channels / 64).max(1);
    let mut left: Vec<usize> = (0..channels).collect();
    let mut out = Sequence::default();
    while out.channels.len() < limit && !left.is_empty() {
        let mut costs: Vec<(f64, usize)> = left
            .iter()
            .map(|&c| {
                let cost: f64 = slices
                    .iter()
                    .zip(&states)
                    .map(|(slice, state)| state.cost(&rows(slice, c)))
                    .sum();
                (cost, c)
            })
            .collect();
        costs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let take = batch.min(limit - out.channels.len()).min(costs.len());
        for &(cost, c) in &costs[..take] {
            out.channels.push(c);
            out.costs.push(cost);
        }
        for (slice, state) in slices.iter().zip(states.iter_mut()) {
            let gone: Vec<usize> = costs[..take]
                .iter()
                .flat_map(|&(_, c)| rows(slice, c))
                .collect();
            state.remove(&gone);
        }
        let taken: Vec<usize> = costs[..take].iter().map(|&(_, c)| c).collect();
        left.retain(|c| !taken.contains(c));
    }
    Some(out)
}

/// Without Gram matrices (the memory cap): each channel's cost on its own,
/// `Σ var(x_i) ‖W_i‖²` over its rows, relative to the same energy as the
/// full criterion; no compensation between channels.
fn diagonal_sequence(
    graph: &Graph,
    consumers: &Consumers,
    data: &SiteData,
    slices: &[ConsumerSlice],
    channels: usize,
    limit: usize,
) -> Option<Sequence> {
    let mut cost = vec![0.0f64; channels];
    for slice in slices {
        let all = &data.stats[slice.site].as_ref()?.all()[0];
        let w = consumers.sites[slice.site].weights(graph).ok()?.remove(0);
        let mu = all.mean();
        let n = all.rows.max(1.0);
        let var: Vec<f64> = (0..all.k())
            .map(|i| (all.sum_sq[i] / n - mu[i] * mu[i]).max(0.0))
            .collect();
        let row_energy = |i: usize| (0..w.ncols()).map(|j| w[(i, j)].powi(2)).sum::<f64>() * var[i];
        let energy = data.stream_energy[slice.site]
            .unwrap_or_else(|| (0..w.nrows()).map(row_energy).sum())
            .max(f64::MIN_POSITIVE);
        for (c, total) in cost.iter_mut().enumerate() {
            *total += consumers
                .rows(slice, c)
                .into_iter()
                .map(row_energy)
                .sum::<f64>()
                / energy;
        }
    }
    let mut sequence = Sequence::by_score(&cost);
    sequence.channels.truncate(limit);
    sequence.costs.truncate(limit);
    Some(sequence)
}
