//! What the calibration data says about each FFN, streamed chunk by
//! chunk: the hidden activations' mean and co-activation, then each
//! expert's contribution per token (the norm of its output, less its mean
//! when skipped experts give their mean), from which a linear router
//! `[x, 1]·R` is fitted by least squares, and how often a router's top k
//! hold the k experts that contribute most (recall) on held-out samples.

use super::find::Ffn;
use crate::calib::{Calibrator, ValueChunk};
use crate::linear::solve::{product, NormalEquations};
use faer::Mat;
use rayon::prelude::*;
use sculpt_ir::{IrError, Model};

/// Each FFN's input and hidden rows in one chunk (padding rows left out).
pub struct Rows {
    pub x: Mat<f64>,
    pub h: Mat<f64>,
}

fn failed(e: String) -> IrError {
    IrError::Invalid(format!("moe: calibration run failed: {e}"))
}

/// The rows of `value` (last axis = `width`) that `mask` keeps.
fn rows_of(value: &ValueChunk, width: usize, mask: Option<&ValueChunk>) -> Mat<f64> {
    let rows = value.data.len() / width.max(1);
    let keep: Vec<usize> = match mask {
        Some(m) if m.data.len() == rows => (0..rows).filter(|&r| m.data[r] != 0.0).collect(),
        _ => (0..rows).collect(),
    };
    Mat::from_fn(keep.len(), width, |i, j| {
        value.data[keep[i] * width + j] as f64
    })
}

/// Visits, chunk by chunk of the calibrator's (selected) samples, every
/// FFN's rows.
pub fn visit_rows(
    calibrator: &mut dyn Calibrator,
    model: &Model,
    ffns: &[Ffn],
    mask: Option<&str>,
    samples: std::ops::Range<usize>,
    visit: &mut dyn FnMut(&[Rows]),
) -> Result<(), IrError> {
    let graph = &model.graph;
    let mut names: Vec<String> = Vec::new();
    for f in ffns {
        names.push(graph.value(f.up.input).name.clone());
        names.push(graph.value(f.down.input).name.clone());
    }
    names.extend(mask.map(String::from));
    calibrator
        .visit_chunks(model, &names, samples, &mut |chunk| {
            let mask = mask.map(|_| &chunk[2 * ffns.len()]);
            let rows: Vec<Rows> = ffns
                .par_iter()
                .enumerate()
                .map(|(i, f)| Rows {
                    x: rows_of(&chunk[2 * i], f.up.k, mask),
                    h: rows_of(&chunk[2 * i + 1], f.down.k, mask),
                })
                .collect();
            visit(&rows);
        })
        .map_err(failed)
}

/// The hidden activations' mean and mean square, and (when asked) their
/// co-activation: how often two neurons are active (above 0) together,
/// as MoEfication counts it.
pub struct Hidden {
    pub rows: f64,
    pub sum: Vec<f64>,
    pub squares: Vec<f64>,
    pub gram: Option<Mat<f64>>,
}

impl Hidden {
    pub fn new(width: usize, gram: bool) -> Hidden {
        Hidden {
            rows: 0.0,
            sum: vec![0.0; width],
            squares: vec![0.0; width],
            gram: gram.then(|| Mat::zeros(width, width)),
        }
    }

    pub fn add(&mut self, h: &Mat<f64>) {
        self.rows += h.nrows() as f64;
        for j in 0..h.ncols() {
            self.sum[j] += (0..h.nrows()).map(|i| h[(i, j)]).sum::<f64>();
            self.squares[j] += (0..h.nrows()).map(|i| h[(i, j)] * h[(i, j)]).sum::<f64>();
        }
        if let Some(g) = &mut self.gram {
            let active = Mat::from_fn(h.nrows(), h.ncols(), |i, j| {
                f64::from(u8::from(h[(i, j)] > 0.0))
            });
            *g += active.transpose() * &active;
        }
    }

    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.rows.max(1.0)).collect()
    }
}

/// The experts' outputs for `h` rows: per expert `[rows, out]`.
pub struct Experts<'a> {
    pub groups: &'a [Vec<usize>],
    /// The down projection `[width, out]`.
    pub down: &'a Mat<f64>,
    /// Per expert, the output subtracted before the norm (its mean, or 0).
    pub offsets: &'a [Vec<f64>],
}

impl Experts<'_> {
    /// Per row and expert, the norm of the expert's output less its offset.
    pub fn contributions(&self, h: &Mat<f64>) -> Mat<f64> {
        let mut c = Mat::zeros(h.nrows(), self.groups.len());
        for (e, g) in self.groups.iter().enumerate() {
            let he = Mat::from_fn(h.nrows(), g.len(), |i, j| h[(i, g[j])]);
            let we = Mat::from_fn(g.len(), self.down.ncols(), |i, j| self.down[(g[i], j)]);
            let y = product(he.as_ref(), we.as_ref());
            for i in 0..y.nrows() {
                c[(i, e)] = (0..y.ncols())
                    .map(|j| (y[(i, j)] - self.offsets[e][j]).powi(2))
                    .sum::<f64>()
                    .sqrt();
            }
        }
        c
    }
}

/// `[x, 1]`.
pub fn with_ones(x: &Mat<f64>) -> Mat<f64> {
    Mat::from_fn(x.nrows(), x.ncols() + 1, |i, j| {
        if j < x.ncols() {
            x[(i, j)]
        } else {
            1.0
        }
    })
}

/// Least-squares router: `[x, 1]` to the experts' contributions.
pub struct Fit(NormalEquations);

impl Fit {
    pub fn new(inputs: usize, experts: usize) -> Fit {
        Fit(NormalEquations::new(inputs + 1, experts))
    }

    pub fn add(&mut self, x: &Mat<f64>, targets: &Mat<f64>) {
        self.0.add(&with_ones(x), targets);
    }

    /// `R` `[inputs + 1, experts]`.
    pub fn solve(&self, damp: f64) -> Mat<f64> {
        self.0.solve(damp)
    }
}

/// The `k` largest entries of each row (ties to the lower index).
pub fn top_k(scores: &Mat<f64>, k: usize) -> Vec<Vec<usize>> {
    (0..scores.nrows())
        .map(|i| {
            let mut order: Vec<usize> = (0..scores.ncols()).collect();
            order.sort_by(|&a, &b| scores[(i, b)].total_cmp(&scores[(i, a)]).then(a.cmp(&b)));
            order.truncate(k);
            order
        })
        .collect()
}

/// Share of the oracle's top-k experts (by contribution) that the router's
/// top k hold, summed over rows: (hits, rows·k).
pub fn recall(router: &Mat<f64>, oracle: &Mat<f64>, k: usize) -> (f64, f64) {
    let (r, o) = (top_k(router, k), top_k(oracle, k));
    let hits: usize = r
        .iter()
        .zip(&o)
        .map(|(a, b)| a.iter().filter(|e| b.contains(e)).count())
        .sum();
    (hits as f64, (r.len() * k) as f64)
}

/// The experts' down projections, skipped means and bias refitted by least
/// squares knowing the routing: for each token the dense FFN's output is
/// the target, and the design row holds the hidden activations of the
/// chosen experts (and shared neurons), an indicator per skipped expert
/// (its mean, when skipped experts give one) and 1 (the bias).
pub struct Refit {
    equations: NormalEquations,
    width: usize,
    means: bool,
}

impl Refit {
    pub fn new(width: usize, experts: usize, out: usize, means: bool) -> Refit {
        let cols = width + if means { experts } else { 0 } + 1;
        Refit {
            equations: NormalEquations::new(cols, out),
            width,
            means,
        }
    }

    /// Adds rows `h` routed by `chosen` (per row the chosen experts).
    pub fn add(
        &mut self,
        h: &Mat<f64>,
        chosen: &[Vec<usize>],
        groups: &[Vec<usize>],
        down: &Mat<f64>,
        bias: &[f64],
    ) {
        let experts = groups.len();
        let mut expert_of = vec![usize::MAX; self.width];
        for (e, g) in groups.iter().enumerate() {
            for &j in g {
                expert_of[j] = e;
            }
        }
        let cols = self.equations.inputs();
        let z = Mat::from_fn(h.nrows(), cols, |i, c| {
            if c < self.width {
                let e = expert_of[c];
                if e == usize::MAX || chosen[i].contains(&e) {
                    h[(i, c)]
                } else {
                    0.0
                }
            } else if self.means && c < self.width + experts {
                f64::from(u8::from(!chosen[i].contains(&(c - self.width))))
            } else {
                1.0
            }
        });
        let mut y = product(h.as_ref(), down.as_ref());
        for i in 0..y.nrows() {
            for (o, b) in bias.iter().enumerate() {
                y[(i, o)] += b;
            }
        }
        self.equations.add(&z, &y);
    }

    /// The solution at the damping among `damps` whose solution fits the
    /// rows of `held` (other samples) best, and that damping. The damping
    /// pulls toward `prior` (the weights before the refit), not toward 0.
    pub fn solve(&self, held: &Refit, damps: &[f64], prior: &RefitWeights) -> (RefitWeights, f64) {
        let prior = self.join(prior);
        let (w, damp) = damps
            .iter()
            .map(|&d| (self.equations.solve_toward(d, Some(&prior)), d))
            .min_by(|a, b| {
                let error = |w| held.equations.error(w);
                error(&a.0).total_cmp(&error(&b.0))
            })
            .expect("damping candidates");
        (self.split(w), damp)
    }

    /// The weights as one matrix, rows as [`Refit::add`]'s design columns
    /// (the inverse of [`Refit::split`]).
    fn join(&self, (down, means, bias): &RefitWeights) -> Mat<f64> {
        let cols = self.equations.inputs();
        Mat::from_fn(cols, down.ncols(), |c, o| {
            if c < self.width {
                down[(c, o)]
            } else if c + 1 < cols {
                means.as_ref().map_or(0.0, |m| m[(c - self.width, o)])
            } else {
                bias[o]
            }
        })
    }

    fn split(&self, w: Mat<f64>) -> RefitWeights {
        let out = w.ncols();
        let down = Mat::from_fn(self.width, out, |j, o| w[(j, o)]);
        let experts = w.nrows() - self.width - 1;
        let means = self
            .means
            .then(|| Mat::from_fn(experts, out, |e, o| w[(self.width + e, o)]));
        let bias = (0..out).map(|o| w[(w.nrows() - 1, o)]).collect();
        (down, means, bias)
    }
}

/// (down projection `[width, out]`, skipped means `[E, out]` if any, bias).
pub type RefitWeights = (Mat<f64>, Option<Mat<f64>>, Vec<f64>);
