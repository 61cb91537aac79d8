//! The factorisation of one weight matrix `W [k, n]` into `A [k, r]` and
//! `B [r, n]`, by method:
//!
//! - `svd`: truncated SVD of `W` (the weight error is least).
//! - `asvd`: the input rows scaled by each input's activation scale
//!   `d_i = E[x_i²]^(α/2)` before the SVD and unscaled after (ASVD), so
//!   that rows the activations amplify are kept more exactly.
//! - `whiten` (SVD-LLM): the SVD of `Lᵀ W`, where `L` is the Cholesky factor
//!   of the input covariance; truncating it minimises the output error
//!   `E‖x W − x A B‖²` itself. `B` is then refitted by least squares on the
//!   same statistics.
//!
//! In every case `W = Σ_i s_i p_i q_iᵀ` for an input-side basis `P`
//! (`U`, `D⁻¹U` or `L⁻ᵀU`), and dropping component `i` costs the output
//! error `e_i = s_i² p_iᵀ C p_i` (with `C` the input covariance; `s_i²`
//! for `whiten`, and the weight error `s_i²` for `svd` without data):
//! what rank allocation and the report use. The data-aware methods move
//! the mean of what truncation removes into the bias.

use crate::linear::solve::{
    cholesky_lower, damped, inner, mean_diagonal, product, product_t, solve_lower_transposed,
    spd_solve, thin_svd,
};
use crate::linear::Moments;
use faer::{Mat, MatRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Svd,
    Asvd,
    Whiten,
}

/// A weight's components, most important first.
pub struct Spectrum {
    /// Input-side basis `[k, p]`.
    p: Mat<f64>,
    s: Vec<f64>,
    /// Output-side basis `[n, p]`.
    q: Mat<f64>,
    /// The output error dropping each component costs.
    pub errors: Vec<f64>,
    /// The output energy of the whole weight (errors are shares of it).
    pub energy: f64,
}

impl Spectrum {
    /// The spectrum of `w` by `method`; `stats` (the input's statistics)
    /// is needed for `asvd` and `whiten`, and makes `svd`'s errors output
    /// errors.
    pub fn new(
        w: MatRef<'_, f64>,
        method: Method,
        stats: Option<&Moments>,
        alpha: f64,
    ) -> Option<Spectrum> {
        let covariance = stats.filter(|m| m.full()).map(Moments::covariance);
        let (p, s, q) = match method {
            Method::Svd => thin_svd(w)?,
            Method::Asvd => {
                let m = stats?;
                let n = m.rows.max(1.0);
                let scale: Vec<f64> = m
                    .sum_sq
                    .iter()
                    .map(|&sq| (sq / n).max(1e-12).powf(alpha / 2.0))
                    .collect();
                let scaled = Mat::from_fn(w.nrows(), w.ncols(), |i, j| scale[i] * w[(i, j)]);
                let (u, s, v) = thin_svd(scaled.as_ref())?;
                let p = Mat::from_fn(u.nrows(), u.ncols(), |i, j| u[(i, j)] / scale[i]);
                (p, s, v)
            }
            Method::Whiten => {
                // A relative ridge keeps the whitening well conditioned
                // where some input directions carry (almost) no variance.
                let c = covariance.as_ref()?;
                let c = damped(c.as_ref(), 1e-6 * mean_diagonal(c.as_ref()).max(0.0));
                let l = cholesky_lower(c.as_ref())?;
                let (u, s, v) = thin_svd(product_t(l.as_ref(), w).as_ref())?;
                (solve_lower_transposed(l.as_ref(), u.as_ref()), s, v)
            }
        };
        let (p, q) = canonical_signs(p, q);
        let errors: Vec<f64> = match &covariance {
            Some(c) => {
                let cp = product(c.as_ref(), p.as_ref());
                (0..s.len())
                    .map(|i| {
                        let pcp: f64 = (0..p.nrows()).map(|r| p[(r, i)] * cp[(r, i)]).sum();
                        s[i] * s[i] * pcp.max(0.0)
                    })
                    .collect()
            }
            None => (0..s.len())
                .map(|i| s[i] * s[i] * (0..p.nrows()).map(|r| p[(r, i)].powi(2)).sum::<f64>())
                .collect(),
        };
        let energy = match &covariance {
            Some(c) => inner(w, product(c.as_ref(), w).as_ref()),
            None => inner(w, w),
        };
        Some(Spectrum {
            p,
            s,
            q,
            errors,
            energy: energy.max(f64::MIN_POSITIVE),
        })
    }

    /// The exact factorisation through `min(k, n)`: `(W, I)` or `(I, W)`,
    /// with no error (what `rank=full` writes, cheaply, to check the
    /// rewrite itself).
    pub fn identity(w: MatRef<'_, f64>) -> Spectrum {
        let (k, n) = (w.nrows(), w.ncols());
        let (p, q) = if n <= k {
            (w.to_owned(), Mat::identity(n, n))
        } else {
            (Mat::identity(k, k), w.transpose().to_owned())
        };
        let len = k.min(n);
        Spectrum {
            p,
            s: vec![1.0; len],
            q,
            errors: vec![0.0; len],
            energy: 1.0,
        }
    }

    /// How many components there are (`min(k, n)`).
    pub fn len(&self) -> usize {
        self.s.len()
    }

    /// The output error of keeping `rank` components, relative to the
    /// weight's output energy.
    pub fn relative_error(&self, rank: usize) -> f64 {
        self.errors[rank.min(self.len())..].iter().sum::<f64>() / self.energy
    }

    /// The smallest rank that keeps `share` of the output energy.
    pub fn rank_for_energy(&self, share: f64) -> usize {
        let total: f64 = self.errors.iter().sum();
        let mut kept = 0.0;
        for (i, e) in self.errors.iter().enumerate() {
            if kept >= share * total {
                return i.max(1);
            }
            kept += e;
        }
        self.len()
    }

    /// `A [k, r]`, `B [r, n]` (the singular values split evenly).
    pub fn factors(&self, rank: usize) -> (Mat<f64>, Mat<f64>) {
        let r = rank.min(self.len());
        let a = Mat::from_fn(self.p.nrows(), r, |i, j| self.p[(i, j)] * self.s[j].sqrt());
        let b = Mat::from_fn(r, self.q.nrows(), |i, j| self.s[i].sqrt() * self.q[(j, i)]);
        (a, b)
    }
}

/// Flips each pair of singular vectors so that the largest entry of the
/// output-side one is positive: factors then do not depend on the sign
/// conventions of the SVD routine (or the machine it ran on).
fn canonical_signs(mut p: Mat<f64>, mut q: Mat<f64>) -> (Mat<f64>, Mat<f64>) {
    for j in 0..q.ncols() {
        let mut largest = 0.0f64;
        for i in 0..q.nrows() {
            if q[(i, j)].abs() > largest.abs() {
                largest = q[(i, j)];
            }
        }
        if largest < 0.0 {
            for i in 0..q.nrows() {
                q[(i, j)] = -q[(i, j)];
            }
            for i in 0..p.nrows() {
                p[(i, j)] = -p[(i, j)];
            }
        }
    }
    (p, q)
}

/// `B` refitted for a fixed `A`: `(AᵀCA + λI)⁻¹ (AᵀC W + λB)` with `C` the
/// input covariance, `λ = damp · mean diag AᵀCA` (a ridge toward `B`).
pub fn refit_b(
    covariance: MatRef<'_, f64>,
    w: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    damp: f64,
) -> Mat<f64> {
    let ca = product(covariance, a);
    let aca = product_t(a, ca.as_ref());
    let lambda = damp * mean_diagonal(aca.as_ref()).max(0.0);
    let mut rhs = product_t(ca.as_ref(), w);
    for j in 0..rhs.ncols() {
        for i in 0..rhs.nrows() {
            rhs[(i, j)] += lambda * b[(i, j)];
        }
    }
    spd_solve(damped(aca.as_ref(), lambda).as_ref(), rhs.as_ref())
}

/// The output error of `a·b` against `w` under `covariance`, relative to
/// `w`'s output energy.
pub fn relative_error(
    covariance: MatRef<'_, f64>,
    w: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
) -> f64 {
    let ab = product(a, b);
    let diff = Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] - ab[(i, j)]);
    let error = inner(diff.as_ref(), product(covariance, diff.as_ref()).as_ref());
    let energy = inner(w, product(covariance, w).as_ref());
    error.max(0.0) / energy.max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(k: usize, n: usize, seed: u64) -> Mat<f64> {
        let mut rng = crate::util::rng::Rng::new(seed);
        Mat::from_fn(k, n, |_, _| rng.normal())
    }

    #[test]
    fn full_rank_reproduces_the_weight() {
        let w = matrix(6, 4, 1);
        for method in [Method::Svd, Method::Asvd, Method::Whiten] {
            let stats = Moments::from_rows(matrix(50, 6, 2).as_ref());
            let spectrum = Spectrum::new(w.as_ref(), method, Some(&stats), 0.5).unwrap();
            let (a, b) = spectrum.factors(4);
            let ab = product(a.as_ref(), b.as_ref());
            for i in 0..6 {
                for j in 0..4 {
                    assert!((ab[(i, j)] - w[(i, j)]).abs() < 1e-9, "{method:?}");
                }
            }
            assert!(spectrum.relative_error(4) < 1e-12);
        }
    }

    #[test]
    fn whitening_predicts_its_own_output_error() {
        let w = matrix(6, 4, 3);
        let stats = Moments::from_rows(matrix(80, 6, 4).as_ref());
        let spectrum = Spectrum::new(w.as_ref(), Method::Whiten, Some(&stats), 0.5).unwrap();
        let (a, b) = spectrum.factors(2);
        let c = stats.covariance();
        let measured = relative_error(c.as_ref(), w.as_ref(), a.as_ref(), b.as_ref());
        assert!((measured - spectrum.relative_error(2)).abs() < 1e-9);
        // And no other rank-2 factorisation does better: plain SVD's is worse.
        let svd = Spectrum::new(w.as_ref(), Method::Svd, Some(&stats), 0.5).unwrap();
        let (a2, b2) = svd.factors(2);
        assert!(relative_error(c.as_ref(), w.as_ref(), a2.as_ref(), b2.as_ref()) >= measured);
    }
}
