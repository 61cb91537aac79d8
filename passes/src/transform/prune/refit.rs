//! Reconstruction: after channels are chosen, every linear site that reads
//! them (an attention output projection, an FFN's second matrix, the next
//! Conv or Gemm) is refitted on calibration statistics so that its output
//! changes as little as possible.
//!
//! - `ls`: the kept rows are refitted by ridge least squares toward the
//!   original rows ([`ridge_refit`]), aiming at the reference model's
//!   output of the site; the removed rows' mean contribution goes into the
//!   bias (one is added where the site has none).
//! - `bias`: FLAP's compensation alone: the bias absorbs the removed rows'
//!   mean contribution; weights stay.
//!
//! Guard: with held-out statistics, a refit that gives a larger error on
//! the held-out samples than the bias compensation alone is dropped for
//! that site, and the record says so.

use crate::analysis::zero_groups::{Member, ZeroGroups};
use crate::calib::{Moments, SiteStats};
use crate::linear::solve::{inner, output_energy, product, select_rows, LeastSquares};
use crate::linear::{find_sites, LinearSite};
use faer::Mat;
use sculpt_ir::{Graph, IrError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// How removed channels are compensated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reconstruct {
    /// Least-squares refit of the kept rows, and the bias.
    Ls,
    /// The bias alone.
    Bias,
}

/// A group's channels as input channels of one consumer site.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSlice {
    /// Index into [`Consumers::sites`].
    pub site: usize,
    pub member: Member,
}

/// The linear sites that read the eligible groups' channels.
pub(crate) struct Consumers {
    pub sites: Vec<LinearSite>,
    pub by_group: BTreeMap<usize, Vec<ConsumerSlice>>,
    /// Consumers that are not refitted, with the reason.
    pub skipped: Vec<String>,
}

impl Consumers {
    pub fn of(graph: &Graph, z: &ZeroGroups, groups: &[usize]) -> Consumers {
        let (all, _) = find_sites(graph);
        let mut sites: Vec<LinearSite> = Vec::new();
        let mut by_group: BTreeMap<usize, Vec<ConsumerSlice>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for &gi in groups {
            for m in &z.groups[gi].members {
                let Some((activation, _)) = &m.activation else {
                    continue;
                };
                let found = all.iter().find(|s| {
                    graph.value(s.weight).name == m.tensor
                        && graph.value(s.input).name == *activation
                });
                let Some(site) = found else {
                    skipped.push(format!(
                        "the reader of '{activation}' through '{}' is not a linear site",
                        m.tensor
                    ));
                    continue;
                };
                if site.groups != 1 {
                    skipped.push(format!("'{}' is a grouped convolution", site.name));
                    continue;
                }
                let index = match sites.iter().position(|s| s.name == site.name) {
                    Some(i) => i,
                    None => {
                        sites.push(site.clone());
                        sites.len() - 1
                    }
                };
                by_group.entry(gi).or_default().push(ConsumerSlice {
                    site: index,
                    member: m.clone(),
                });
            }
        }
        skipped.sort();
        skipped.dedup();
        Consumers {
            sites,
            by_group,
            skipped,
        }
    }

    /// Rows of the slice's site that channel `c` of its group feeds.
    pub fn rows(&self, slice: &ConsumerSlice, c: usize) -> Vec<usize> {
        let site = &self.sites[slice.site];
        let m = &slice.member;
        (m.offset + c * m.block..m.offset + (c + 1) * m.block)
            .flat_map(|channel| site.rows_of_channel(channel).1)
            .collect()
    }

    /// Rows each site loses to `chosen` (by site index).
    pub fn removed_rows(
        &self,
        chosen: &BTreeMap<usize, Vec<usize>>,
    ) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut out: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (gi, list) in chosen {
            for slice in self.by_group.get(gi).into_iter().flatten() {
                let rows = out.entry(slice.site).or_default();
                for &c in list {
                    rows.extend(self.rows(slice, c));
                }
            }
        }
        out
    }
}

/// The new weights and bias of one site.
pub(crate) struct SiteRefit {
    pub site: String,
    pub removed: BTreeSet<usize>,
    /// `[k, n]`, the removed rows zero; `None` where the weights stay.
    pub weight: Option<Mat<f64>>,
    pub bias: Vec<f64>,
    pub record: serde_json::Value,
}

/// What a site looked like in the reference model: the weights and bias
/// the refit aims to reproduce the output of.
pub(super) struct Reference {
    pub weight: Mat<f64>,
    pub bias: Vec<f64>,
}

impl Reference {
    pub fn of(graph: &Graph, site: &LinearSite) -> Result<Reference, IrError> {
        let weight = site.weights(graph)?.remove(0);
        let bias = site
            .bias(graph)?
            .unwrap_or_else(|| vec![0.0; weight.ncols()]);
        Ok(Reference { weight, bias })
    }
}

/// One part of a site's statistics as the least-squares problem of
/// refitting `w`.
fn least_squares(m: &Moments, w: &Mat<f64>) -> LeastSquares {
    let input = m.covariance();
    let (cross_w, energy) = if m.reference_sum.is_some() {
        let cross_w = product(m.cross_covariance().as_ref(), w.as_ref());
        let reference = m.reference_covariance();
        (cross_w, output_energy(reference.as_ref(), w.as_ref()))
    } else {
        let cross_w = product(input.as_ref(), w.as_ref());
        let energy = inner(w.as_ref(), cross_w.as_ref()).max(0.0);
        (cross_w, energy)
    };
    LeastSquares {
        input,
        cross_w,
        energy,
    }
}

/// Least squares over `inputs` inputs needs this many rows per input to
/// generalise (fewer: the refit fits the calibration data's noise).
const ROWS_PER_INPUT: f64 = 2.0;

/// Whether `rows` calibration rows can refit `inputs` inputs.
pub(super) fn enough_rows(rows: f64, inputs: usize) -> bool {
    rows >= ROWS_PER_INPUT * inputs as f64
}

/// The ridge used when none is given and there are no held-out samples
/// to choose one with.
const DEFAULT_DAMP: f64 = 0.01;

/// The ridges tried on the held-out samples when none is given.
const DAMP_CANDIDATES: [f64; 4] = [0.001, 0.01, 0.1, 1.0];

/// The refit of `site` that loses `removed` rows.
pub(super) fn plan(
    site: &LinearSite,
    reference: &Reference,
    stats: &SiteStats,
    removed: &BTreeSet<usize>,
    mode: Reconstruct,
    damp: Option<f64>,
    guard: bool,
) -> SiteRefit {
    let w = &reference.weight;
    let keep: Vec<usize> = (0..w.nrows()).filter(|r| !removed.contains(r)).collect();
    let plain = select_rows(w.as_ref(), &keep);
    let all = &stats.all()[0];
    let full = all.full();
    let mut note = String::new();
    let mut refit = None;
    if mode == Reconstruct::Ls && !full {
        note = "diagonal statistics (memory cap): bias compensation only".into();
    }
    let mut holdout = serde_json::Value::Null;
    let all_ls = least_squares(all, w);
    let mut chosen_damp = damp.unwrap_or(DEFAULT_DAMP);
    let rows = all.rows;
    if mode == Reconstruct::Ls && full && !enough_rows(rows, keep.len()) {
        note = format!(
            "{rows} calibration rows for {} inputs: too few to refit, bias compensation only",
            keep.len()
        );
    }
    if mode == Reconstruct::Ls && full && enough_rows(rows, keep.len()) {
        let accept = if stats.has_holdout() && (guard || damp.is_none()) {
            // Fitted on the first samples, judged on the held-out ones:
            // the ridge (when not given), and whether to refit at all.
            let fit = least_squares(&stats.fit[0], w);
            let h = least_squares(&stats.holdout[0], w);
            let candidates = damp.map_or(DAMP_CANDIDATES.to_vec(), |d| vec![d]);
            let (best, with) = candidates
                .iter()
                .map(|&d| {
                    (
                        d,
                        h.relative_error(&keep, fit.solve(w.as_ref(), &keep, d).as_ref()),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("at least one candidate");
            chosen_damp = best;
            let without = h.relative_error(&keep, plain.as_ref());
            holdout = json!({ "refit": with, "bias_only": without });
            if guard && with > without {
                note = "refit dropped: worse on held-out samples".into();
            }
            !guard || with <= without
        } else {
            true
        };
        if accept {
            refit = Some(all_ls.solve(w.as_ref(), &keep, chosen_damp));
        }
    }
    let kept = refit.as_ref().unwrap_or(&plain);
    // The bias takes what the kept rows' mean no longer gives.
    let (mu, nu) = (all.mean(), all.reference_mean());
    let bias: Vec<f64> = (0..w.ncols())
        .map(|j| {
            let before: f64 = (0..w.nrows()).map(|i| nu[i] * w[(i, j)]).sum();
            let after: f64 = keep
                .iter()
                .enumerate()
                .map(|(a, &i)| mu[i] * kept[(a, j)])
                .sum();
            reference.bias[j] + before - after
        })
        .collect();
    let record = json!({
        "site": site.name,
        "rows": w.nrows(),
        "rows_removed": removed.len(),
        "refit": refit.is_some(),
        "predicted_error": {
            "bias_only": all_ls.relative_error(&keep, plain.as_ref()),
            "refit": refit.as_ref().map(|r| all_ls.relative_error(&keep, r.as_ref())),
        },
        "held_out_error": holdout,
        "damp": refit.as_ref().map(|_| chosen_damp),
        "note": note,
    });
    let weight = refit.map(|r| {
        let mut full = Mat::<f64>::zeros(w.nrows(), w.ncols());
        for (a, &i) in keep.iter().enumerate() {
            for j in 0..w.ncols() {
                full[(i, j)] = r[(a, j)];
            }
        }
        full
    });
    SiteRefit {
        site: site.name.clone(),
        removed: removed.clone(),
        weight,
        bias,
        record,
    }
}

/// Writes refits into `graph`, whose sites may have lost their removed
/// rows already (then only the kept rows are written).
pub(super) fn apply(graph: &mut Graph, refits: &[SiteRefit]) -> Result<(), IrError> {
    for r in refits {
        let (sites, _) = find_sites(graph);
        let site = sites
            .into_iter()
            .find(|s| s.name == r.site)
            .ok_or_else(|| IrError::Invalid(format!("prune: linear site '{}' is gone", r.site)))?;
        if let Some(full) = &r.weight {
            let rows = if site.k == full.nrows() {
                full.clone()
            } else {
                let keep: Vec<usize> = (0..full.nrows())
                    .filter(|i| !r.removed.contains(i))
                    .collect();
                select_rows(full.as_ref(), &keep)
            };
            site.set_weights(graph, &[rows])?;
        }
        site.set_bias(graph, &r.bias)?;
    }
    Ok(())
}
