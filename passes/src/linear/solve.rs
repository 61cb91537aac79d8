//! The linear algebra the data-aware passes share (faer, f64): solves
//! with symmetric positive definite matrices (Cholesky, with growing
//! jitter when a covariance is singular), ridge least-squares refits of a
//! weight's kept rows, and the output error a weight change causes under
//! given activation statistics.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par, Side};

/// Mean of the diagonal (the scale ridge terms are measured in).
pub fn mean_diagonal(a: MatRef<'_, f64>) -> f64 {
    let n = a.nrows().min(a.ncols());
    if n == 0 {
        return 0.0;
    }
    (0..n).map(|i| a[(i, i)]).sum::<f64>() / n as f64
}

/// `a + λI`.
pub fn damped(a: MatRef<'_, f64>, lambda: f64) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| {
        a[(i, j)] + if i == j { lambda } else { 0.0 }
    })
}

/// Rows `rows` and columns `cols` of `a`.
pub fn submatrix(a: MatRef<'_, f64>, rows: &[usize], cols: &[usize]) -> Mat<f64> {
    Mat::from_fn(rows.len(), cols.len(), |i, j| a[(rows[i], cols[j])])
}

/// Rows `rows` of `a`, all columns.
pub fn select_rows(a: MatRef<'_, f64>, rows: &[usize]) -> Mat<f64> {
    Mat::from_fn(rows.len(), a.ncols(), |i, j| a[(rows[i], j)])
}

/// Parallel for products large enough to gain from it.
fn par_for(m: usize, n: usize, k: usize) -> Par {
    if m * n * k > 1 << 22 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// `a · b`.
pub fn product(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    let par = par_for(a.nrows(), b.ncols(), a.ncols());
    matmul(out.as_mut(), Accum::Replace, a, b, 1.0, par);
    out
}

/// `aᵀ · b`.
pub fn product_t(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    product(a.transpose(), b)
}

/// `tr(aᵀ b)`: the sum of the elementwise products.
pub fn inner(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            s += a[(i, j)] * b[(i, j)];
        }
    }
    s
}

/// Solves `a x = b` for a symmetric positive semi-definite `a` by
/// Cholesky; where `a` is singular, adds jitter (1e-10, 1e-8, … of its mean
/// diagonal) until it factors.
pub fn spd_solve(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let scale = mean_diagonal(a).abs().max(f64::MIN_POSITIVE);
    let mut jitter = 0.0;
    for step in 0..12 {
        if let Ok(llt) = damped(a, jitter).llt(Side::Lower) {
            let x = llt.solve(b);
            if x.col_iter().all(|c| c.iter().all(|v| v.is_finite())) {
                return x;
            }
        }
        jitter = scale * 10f64.powi(step * 2 - 10);
    }
    // Only an indefinite or non-finite matrix gets here: no update.
    Mat::zeros(a.ncols(), b.ncols())
}

/// The inverse of a symmetric positive semi-definite matrix (jittered as
/// in [`spd_solve`]).
pub fn spd_inverse(a: MatRef<'_, f64>) -> Mat<f64> {
    spd_solve(a, Mat::<f64>::identity(a.nrows(), a.nrows()).as_ref())
}

/// The least-squares refit of a weight's kept rows: with `x` the site's
/// input (rows `keep` kept) and `x_ref` what the reference input was,
/// minimises `‖x_ref·W − x_keep·W'‖² + λ‖W' − W_keep‖²` (a ridge toward
/// the original rows), i.e. `W' = (C_SS + λI)⁻¹ (C_S,ref · W + λ W_S)`,
/// where `C_SS` = Cov(x_keep) and `C_S,ref` = Cov(x_keep, x_ref) (both
/// per row). `lambda = damp · mean diag C_SS`.
pub fn ridge_refit(
    covariance: MatRef<'_, f64>,
    cross: MatRef<'_, f64>,
    weight: MatRef<'_, f64>,
    keep: &[usize],
    damp: f64,
) -> Mat<f64> {
    let c_ss = submatrix(covariance, keep, keep);
    let lambda = damp * mean_diagonal(c_ss.as_ref()).max(0.0);
    let c_s = select_rows(cross, keep);
    let mut rhs = product(c_s.as_ref(), weight);
    let w_s = select_rows(weight, keep);
    for j in 0..rhs.ncols() {
        for i in 0..rhs.nrows() {
            rhs[(i, j)] += lambda * w_s[(i, j)];
        }
    }
    spd_solve(damped(c_ss.as_ref(), lambda).as_ref(), rhs.as_ref())
}

/// The mean squared output error per row, `E‖x_ref·W − x_keep·W'‖²` with
/// centered activations (a bias absorbs the means), from the statistics:
/// `tr(W'ᵀ C_SS W') − 2 tr(W'ᵀ C_S,ref W) + tr(Wᵀ C_ref W)`.
pub fn output_error(
    covariance: MatRef<'_, f64>,
    cross: MatRef<'_, f64>,
    reference_covariance: MatRef<'_, f64>,
    weight: MatRef<'_, f64>,
    keep: &[usize],
    new_weight: MatRef<'_, f64>,
) -> f64 {
    let c_ss = submatrix(covariance, keep, keep);
    let c_s = select_rows(cross, keep);
    let a = inner(new_weight, product(c_ss.as_ref(), new_weight).as_ref());
    let b = inner(new_weight, product(c_s.as_ref(), weight).as_ref());
    let c = inner(weight, product(reference_covariance, weight).as_ref());
    (a - 2.0 * b + c).max(0.0)
}

/// The output energy `tr(Wᵀ C W)` (the variance of the site's output).
pub fn output_energy(covariance: MatRef<'_, f64>, weight: MatRef<'_, f64>) -> f64 {
    inner(weight, product(covariance, weight).as_ref()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_refit_without_ridge_is_least_squares() {
        // x = [a, b, a + b]: dropping the third row, the refit puts its
        // weight on the first two exactly.
        let cov = Mat::from_fn(3, 3, |i, j| match (i, j) {
            (0, 0) | (1, 1) => 1.0,
            (0, 2) | (2, 0) | (1, 2) | (2, 1) => 1.0,
            (2, 2) => 2.0,
            _ => 0.0,
        });
        let w = Mat::from_fn(3, 1, |i, _| [1.0, 2.0, 3.0][i]);
        let refit = ridge_refit(cov.as_ref(), cov.as_ref(), w.as_ref(), &[0, 1], 0.0);
        assert!((refit[(0, 0)] - 4.0).abs() < 1e-9);
        assert!((refit[(1, 0)] - 5.0).abs() < 1e-9);
        let err = output_error(
            cov.as_ref(),
            cov.as_ref(),
            cov.as_ref(),
            w.as_ref(),
            &[0, 1],
            refit.as_ref(),
        );
        assert!(err < 1e-9, "{err}");
        let plain = select_rows(w.as_ref(), &[0, 1]);
        let err = output_error(
            cov.as_ref(),
            cov.as_ref(),
            cov.as_ref(),
            w.as_ref(),
            &[0, 1],
            plain.as_ref(),
        );
        assert!((err - 18.0).abs() < 1e-9, "{err}");
    }

    #[test]
    fn singular_systems_still_solve() {
        let a = Mat::from_fn(2, 2, |_, _| 1.0);
        let b = Mat::from_fn(2, 1, |_, _| 2.0);
        let x = spd_solve(a.as_ref(), b.as_ref());
        assert!((x[(0, 0)] + x[(1, 0)] - 2.0).abs() < 1e-3);
    }
}
