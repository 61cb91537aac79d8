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

use crate::calib::Moments;
use crate::linear::solve::{
    cholesky_lower, damped, inner, mean_diagonal, output_energy, product, product_t,
    solve_lower_transposed, spd_solve, symmetric_eigen, thin_svd,
};
use faer::{Mat, MatRef};

/// What the factorisations read of a site's input: its per-entry moments
/// and, where Gram matrices were kept, its covariance (computed once; the
/// Gram matrix itself is dropped).
pub struct InputStats {
    pub moments: Moments,
    pub covariance: Option<Mat<f64>>,
}

impl InputStats {
    pub fn new(mut moments: Moments) -> InputStats {
        let covariance = moments.full().then(|| moments.covariance());
        moments.gram = None;
        InputStats {
            moments,
            covariance,
        }
    }
}

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
        stats: Option<&InputStats>,
        alpha: f64,
    ) -> Option<Spectrum> {
        Spectrum::weighted(w, method, stats, alpha, None)
    }

    /// The spectrum of `w` with its output columns weighted by `weights`
    /// (`d_j`: what an error in output `j` costs further on), so that the
    /// components and their errors are those of `W·diag(d)`; the factors
    /// still multiply to `W` at full rank.
    pub fn weighted(
        w: MatRef<'_, f64>,
        method: Method,
        stats: Option<&InputStats>,
        alpha: f64,
        weights: Option<&[f64]>,
    ) -> Option<Spectrum> {
        let weighted = weights.map(|d| Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] * d[j]));
        let w = weighted.as_ref().map_or(w, |m| m.as_ref());
        let covariance = stats.and_then(|s| s.covariance.as_ref());
        let (p, s, q) = match method {
            Method::Svd => thin_svd(w)?,
            Method::Asvd => {
                let m = &stats?.moments;
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
            Method::Whiten => whitened(w, covariance?)?,
        };
        let (p, mut q) = canonical_signs(p, q);
        if let Some(d) = weights {
            for j in 0..q.nrows() {
                for c in 0..q.ncols() {
                    q[(j, c)] /= d[j];
                }
            }
        }
        let (errors, energy): (Vec<f64>, f64) = match covariance {
            // Whitened components are orthonormal under the covariance
            // (up to its small ridge): each costs its singular value
            // squared, and all of them make the output energy.
            Some(_) if method == Method::Whiten => {
                let errors: Vec<f64> = s.iter().map(|x| x * x).collect();
                let energy = errors.iter().sum();
                (errors, energy)
            }
            Some(c) => {
                let cp = product(c.as_ref(), p.as_ref());
                let errors = (0..s.len())
                    .map(|i| {
                        let pcp: f64 = (0..p.nrows()).map(|r| p[(r, i)] * cp[(r, i)]).sum();
                        s[i] * s[i] * pcp.max(0.0)
                    })
                    .collect();
                (errors, output_energy(c.as_ref(), w))
            }
            None => (
                (0..s.len())
                    .map(|i| s[i] * s[i] * (0..p.nrows()).map(|r| p[(r, i)].powi(2)).sum::<f64>())
                    .collect(),
                inner(w, w),
            ),
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

/// The SVD `Lᵀ W = U S Vᵀ` of the weight whitened by the Cholesky factor
/// `L` of the covariance `C`, as `W = P S Vᵀ` with `P = L⁻ᵀ U`; found
/// through the smaller of two eigenproblems, not an SVD of the tall or
/// wide product:
/// - `k ≥ n`: `WᵀCW = V S² Vᵀ`, and `P = W V S⁻¹` (no factor of `C` at
///   all);
/// - `k < n`: `Lᵀ W Wᵀ L = U S² Uᵀ` (with a relative ridge on `C` that
///   keeps `L` well conditioned where some inputs carry almost no
///   variance).
///
/// Components with no output energy are dropped (they cost nothing).
fn whitened(w: MatRef<'_, f64>, c: &Mat<f64>) -> Option<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let (k, n) = (w.nrows(), w.ncols());
    let (values, p, q) = if k >= n {
        let m = product_t(w, product(c.as_ref(), w).as_ref());
        let (values, v) = symmetric_eigen(m.as_ref())?;
        (values, product(w, v.as_ref()), v)
    } else {
        let c = damped(c.as_ref(), 1e-6 * mean_diagonal(c.as_ref()).max(0.0));
        let l = cholesky_lower(c.as_ref())?;
        let lw = product_t(l.as_ref(), w);
        let (values, u) = symmetric_eigen(product(lw.as_ref(), lw.transpose()).as_ref())?;
        (
            values,
            solve_lower_transposed(l.as_ref(), u.as_ref()),
            product(lw.transpose(), u.as_ref()),
        )
    };
    // `p` (k ≥ n) or `q` (k < n) still carries the singular values.
    let largest = values.first().copied().unwrap_or(0.0).max(0.0);
    let kept = values
        .iter()
        .take_while(|&&v| v > 1e-24 * largest && v > 0.0)
        .count()
        .max(1);
    let s: Vec<f64> = values[..kept].iter().map(|v| v.max(0.0).sqrt()).collect();
    let scaled = |m: &Mat<f64>| {
        Mat::from_fn(m.nrows(), kept, |i, j| {
            if s[j] > 0.0 {
                m[(i, j)] / s[j]
            } else {
                0.0
            }
        })
    };
    let first = |m: &Mat<f64>| m.as_ref().subcols(0, kept).to_owned();
    let (p, q) = if k >= n {
        (scaled(&p), first(&q))
    } else {
        (first(&p), scaled(&q))
    };
    Some((p, s, q))
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

/// The input covariance `C` seen through `A`: `CA` and `AᵀCA`, all that
/// refitting `B` and the output error of `A·B` read of `C` (`k²r` to
/// build, not `k²n`).
pub struct Through {
    ca: Mat<f64>,
    aca: Mat<f64>,
}

impl Through {
    pub fn new(covariance: MatRef<'_, f64>, a: MatRef<'_, f64>) -> Through {
        let ca = product(covariance, a);
        let aca = product_t(a, ca.as_ref());
        Through { ca, aca }
    }

    /// `B` refitted for the fixed `A`: `(AᵀCA + λI)⁻¹ (AᵀC W + λB)`,
    /// `λ = damp · mean diag AᵀCA` (a ridge toward `b`).
    pub fn refit_b(&self, w: MatRef<'_, f64>, b: MatRef<'_, f64>, damp: f64) -> Mat<f64> {
        let lambda = damp * mean_diagonal(self.aca.as_ref()).max(0.0);
        let mut rhs = product_t(self.ca.as_ref(), w);
        for j in 0..rhs.ncols() {
            for i in 0..rhs.nrows() {
                rhs[(i, j)] += lambda * b[(i, j)];
            }
        }
        spd_solve(damped(self.aca.as_ref(), lambda).as_ref(), rhs.as_ref())
    }

    /// The output error of `A·b` against `w`, relative to `energy` (`w`'s
    /// output energy `tr(WᵀCW)`): `tr(WᵀCW) − 2⟨CA, WBᵀ⟩ + ⟨AᵀCA, BBᵀ⟩`.
    pub fn relative_error(&self, energy: f64, w: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
        let wb = product(w, b.transpose());
        let bb = product(b, b.transpose());
        let error = energy - 2.0 * inner(self.ca.as_ref(), wb.as_ref())
            + inner(self.aca.as_ref(), bb.as_ref());
        error.max(0.0) / energy.max(f64::MIN_POSITIVE)
    }
}

/// The output error of `a·b` against `w` under `covariance`, relative to
/// `energy`, `w`'s output energy `tr(WᵀCW)`.
pub fn relative_error(
    covariance: MatRef<'_, f64>,
    energy: f64,
    w: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
) -> f64 {
    Through::new(covariance, a).relative_error(energy, w, b)
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
        for (k, n) in [(6, 4), (4, 6)] {
            let w = matrix(k, n, 1);
            for method in [Method::Svd, Method::Asvd, Method::Whiten] {
                let stats = InputStats::new(Moments::from_rows(matrix(50, k, 2).as_ref()));
                let spectrum = Spectrum::new(w.as_ref(), method, Some(&stats), 0.5).unwrap();
                let r = k.min(n);
                let (a, b) = spectrum.factors(r);
                let ab = product(a.as_ref(), b.as_ref());
                for i in 0..k {
                    for j in 0..n {
                        assert!((ab[(i, j)] - w[(i, j)]).abs() < 1e-8, "{method:?} {k}x{n}");
                    }
                }
                assert!(spectrum.relative_error(r) < 1e-12);
            }
        }
    }

    #[test]
    fn weighted_outputs_change_the_components_not_the_weight() {
        let (k, n) = (6, 4);
        let w = matrix(k, n, 5);
        let stats = InputStats::new(Moments::from_rows(matrix(60, k, 6).as_ref()));
        let weights = [1.0, 10.0, 0.1, 1.0];
        for method in [Method::Svd, Method::Whiten] {
            let plain = Spectrum::new(w.as_ref(), method, Some(&stats), 0.5).unwrap();
            let weighted =
                Spectrum::weighted(w.as_ref(), method, Some(&stats), 0.5, Some(&weights)).unwrap();
            let (a, b) = weighted.factors(n);
            let ab = product(a.as_ref(), b.as_ref());
            for i in 0..k {
                for j in 0..n {
                    assert!((ab[(i, j)] - w[(i, j)]).abs() < 1e-8, "{method:?}");
                }
            }
            // At rank 1 the weighted factors keep output 1 (weight 10)
            // better than the plain ones do.
            let column_error = |s: &Spectrum| {
                let (a, b) = s.factors(1);
                let ab = product(a.as_ref(), b.as_ref());
                (0..k)
                    .map(|i| (w[(i, 1)] - ab[(i, 1)]).powi(2))
                    .sum::<f64>()
            };
            assert!(column_error(&weighted) < column_error(&plain), "{method:?}");
        }
    }

    #[test]
    fn whitening_predicts_its_own_output_error() {
        for (k, n) in [(6, 4), (4, 6)] {
            whitened_error_is_predicted_and_least(k, n);
        }
    }

    fn whitened_error_is_predicted_and_least(k: usize, n: usize) {
        let w = matrix(k, n, 3);
        let stats = InputStats::new(Moments::from_rows(matrix(80, k, 4).as_ref()));
        let spectrum = Spectrum::new(w.as_ref(), Method::Whiten, Some(&stats), 0.5).unwrap();
        let (a, b) = spectrum.factors(2);
        let c = stats.covariance.as_ref().unwrap();
        let energy = output_energy(c.as_ref(), w.as_ref());
        assert!((energy - spectrum.energy).abs() < 1e-6 * energy);
        let measured = relative_error(c.as_ref(), energy, w.as_ref(), a.as_ref(), b.as_ref());
        assert!((measured - spectrum.relative_error(2)).abs() < 1e-6);
        // The product form of the error is the error itself.
        let ab = product(a.as_ref(), b.as_ref());
        let diff = Mat::from_fn(k, n, |i, j| w[(i, j)] - ab[(i, j)]);
        assert!((measured - output_energy(c.as_ref(), diff.as_ref()) / energy).abs() < 1e-9);
        // And no other rank-2 factorisation does better: plain SVD's is worse.
        let svd = Spectrum::new(w.as_ref(), Method::Svd, Some(&stats), 0.5).unwrap();
        let (a2, b2) = svd.factors(2);
        let svd_error = relative_error(c.as_ref(), energy, w.as_ref(), a2.as_ref(), b2.as_ref());
        assert!(svd_error >= measured);
    }
}
