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

/// Damped least squares `min ‖Z·W − Y‖² + λ‖W‖²` from rows added one
/// chunk at a time: `ZᵀZ` and `ZᵀY` are all that is kept.
pub struct NormalEquations {
    gram: Mat<f64>,
    cross: Mat<f64>,
}

impl NormalEquations {
    pub fn new(inputs: usize, outputs: usize) -> NormalEquations {
        NormalEquations {
            gram: Mat::zeros(inputs, inputs),
            cross: Mat::zeros(inputs, outputs),
        }
    }

    /// Columns of `Z`.
    pub fn inputs(&self) -> usize {
        self.gram.nrows()
    }

    pub fn add(&mut self, z: &Mat<f64>, y: &Mat<f64>) {
        self.gram += z.transpose() * z;
        self.cross += z.transpose() * y;
    }

    /// `W = (ZᵀZ + λI)⁻¹ ZᵀY`, `λ = damp · mean diag ZᵀZ`.
    pub fn solve(&self, damp: f64) -> Mat<f64> {
        self.solve_toward(damp, None)
    }

    /// `min ‖Z·W − Y‖² + λ‖W − P‖²`: the damping pulls toward `prior`
    /// (toward 0 without one).
    pub fn solve_toward(&self, damp: f64, prior: Option<&Mat<f64>>) -> Mat<f64> {
        let lambda = damp * mean_diagonal(self.gram.as_ref()).max(f64::MIN_POSITIVE);
        let mut cross = self.cross.clone();
        if let Some(p) = prior {
            cross += p * faer::Scale(lambda);
        }
        spd_solve(damped(self.gram.as_ref(), lambda).as_ref(), cross.as_ref())
    }

    /// `‖Z·W − Y‖²` on these rows, less the targets' energy.
    pub fn error(&self, w: &Mat<f64>) -> f64 {
        inner(w.as_ref(), product(self.gram.as_ref(), w.as_ref()).as_ref())
            - 2.0 * inner(w.as_ref(), self.cross.as_ref())
    }
}

/// The lower Cholesky factor `L` of a symmetric positive semi-definite
/// matrix (`a = L Lᵀ`), with jitter (as in [`spd_solve`]) where it is
/// singular; `None` only for an indefinite or non-finite matrix.
pub fn cholesky_lower(a: MatRef<'_, f64>) -> Option<Mat<f64>> {
    let scale = mean_diagonal(a).abs().max(f64::MIN_POSITIVE);
    let mut jitter = 0.0;
    for step in 0..12 {
        if let Ok(llt) = damped(a, jitter).llt(Side::Lower) {
            let l = llt.L().to_owned();
            if l.col_iter().all(|c| c.iter().all(|v| v.is_finite())) {
                return Some(l);
            }
        }
        jitter = scale * 10f64.powi(step * 2 - 10);
    }
    None
}

/// `L⁻ᵀ b` for a lower triangular `L`.
pub fn solve_lower_transposed(l: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut x = b.to_owned();
    l.transpose().solve_upper_triangular_in_place(x.as_mut());
    x
}

/// The thin SVD `a = U diag(s) Vᵀ`, singular values descending.
pub fn thin_svd(a: MatRef<'_, f64>) -> Option<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let svd = a.thin_svd().ok()?;
    let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
    if s.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some((svd.U().to_owned(), s, svd.V().to_owned()))
}

/// The eigendecomposition `a = V diag(λ) Vᵀ` of a symmetric matrix (its
/// lower half read), eigenvalues descending.
pub fn symmetric_eigen(a: MatRef<'_, f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    let evd = a.self_adjoint_eigen(faer::Side::Lower).ok()?;
    let ascending: Vec<f64> = evd.S().column_vector().iter().copied().collect();
    if ascending.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n = ascending.len();
    let u = evd.U();
    let vectors = Mat::from_fn(u.nrows(), n, |i, j| u[(i, n - 1 - j)]);
    Some((ascending.into_iter().rev().collect(), vectors))
}

/// The inverse of a symmetric positive semi-definite matrix (jittered as
/// in [`spd_solve`]).
pub fn spd_inverse(a: MatRef<'_, f64>) -> Mat<f64> {
    spd_solve(a, Mat::<f64>::identity(a.nrows(), a.nrows()).as_ref())
}

/// A weight's least-squares refit on activation statistics: with `x` the
/// site's input (rows `keep` kept) and `x_ref` what the reference input
/// was, `min ‖x_ref·W − x_keep·W'‖² + λ‖W' − W_keep‖²` (a ridge toward
/// the original rows) over centered rows (a bias absorbs the means). Built
/// from `Cov(x)`, `Cov(x, x_ref)·W` and the reference output's energy
/// `tr(Wᵀ Cov(x_ref) W)`.
pub struct LeastSquares {
    pub input: Mat<f64>,
    pub cross_w: Mat<f64>,
    pub energy: f64,
}

impl LeastSquares {
    /// `W' = (C_SS + λI)⁻¹ (C_S,ref W + λ W_S)`, `λ = damp · mean diag C_SS`.
    pub fn solve(&self, w: MatRef<'_, f64>, keep: &[usize], damp: f64) -> Mat<f64> {
        let c_ss = submatrix(self.input.as_ref(), keep, keep);
        let lambda = damp * mean_diagonal(c_ss.as_ref()).max(0.0);
        let mut rhs = select_rows(self.cross_w.as_ref(), keep);
        for j in 0..rhs.ncols() {
            for (a, &i) in keep.iter().enumerate() {
                rhs[(a, j)] += lambda * w[(i, j)];
            }
        }
        spd_solve(damped(c_ss.as_ref(), lambda).as_ref(), rhs.as_ref())
    }

    /// Mean squared output error of `new` (the kept rows) against the
    /// reference output, `tr(W'ᵀ C_SS W') − 2 tr(W'ᵀ C_S,ref W) +
    /// tr(Wᵀ C_ref W)`, relative to the reference output's energy.
    pub fn relative_error(&self, keep: &[usize], new: MatRef<'_, f64>) -> f64 {
        let c_ss = submatrix(self.input.as_ref(), keep, keep);
        let quadratic = inner(new, product(c_ss.as_ref(), new).as_ref());
        let cross = inner(new, select_rows(self.cross_w.as_ref(), keep).as_ref());
        (quadratic - 2.0 * cross + self.energy).max(0.0) / self.energy.max(f64::MIN_POSITIVE)
    }
}

/// The output energy `tr(Wᵀ C W)` (the variance of the site's output).
pub fn output_energy(covariance: MatRef<'_, f64>, weight: MatRef<'_, f64>) -> f64 {
    inner(weight, product(covariance, weight).as_ref()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_without_ridge_is_least_squares() {
        // x = [a, b, a + b]: dropping the third row, the refit puts its
        // weight on the first two exactly.
        let cov = Mat::from_fn(3, 3, |i, j| match (i, j) {
            (0, 0) | (1, 1) => 1.0,
            (0, 2) | (2, 0) | (1, 2) | (2, 1) => 1.0,
            (2, 2) => 2.0,
            _ => 0.0,
        });
        let w = Mat::from_fn(3, 1, |i, _| [1.0, 2.0, 3.0][i]);
        let ls = LeastSquares {
            cross_w: product(cov.as_ref(), w.as_ref()),
            energy: output_energy(cov.as_ref(), w.as_ref()),
            input: cov,
        };
        let refit = ls.solve(w.as_ref(), &[0, 1], 0.0);
        assert!((refit[(0, 0)] - 4.0).abs() < 1e-9);
        assert!((refit[(1, 0)] - 5.0).abs() < 1e-9);
        assert!(ls.relative_error(&[0, 1], refit.as_ref()) < 1e-9);
        // Keeping the first two rows as they are loses E(3a + 3b)² = 18
        // of the output's energy E(4a + 5b)² = 41.
        let plain = select_rows(w.as_ref(), &[0, 1]);
        let err = ls.relative_error(&[0, 1], plain.as_ref());
        assert!((err - 18.0 / 41.0).abs() < 1e-9, "{err}");
    }

    #[test]
    fn singular_systems_still_solve() {
        let a = Mat::from_fn(2, 2, |_, _| 1.0);
        let b = Mat::from_fn(2, 1, |_, _| 2.0);
        let x = spd_solve(a.as_ref(), b.as_ref());
        assert!((x[(0, 0)] + x[(1, 0)] - 2.0).abs() < 1e-3);
    }
}
