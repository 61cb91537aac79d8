//! Block quantization of one weight matrix `W [k, n]` (`x·W`, `k` inputs):
//! each output column is cut along `k` into blocks of `block` rows, and
//! every block gets its own scale (and, asymmetric, zero point), as
//! onnxruntime's `MatMulNBits` stores it.
//!
//! - `rtn`: every weight rounded to the nearest code of its block.
//! - `gptq` (Frantar et al. 2022): the rows are rounded one after another,
//!   and the error each row's rounding makes is spread over the rows not
//!   rounded yet through the inverse of the input's second moment
//!   `H = E[x xᵀ]`, so that the output error `E‖x·(W − Q)‖²`, not the
//!   weight error, is what is kept small. A block's scale is set from the
//!   weights as they are when its first row is reached.

use crate::linear::solve::{cholesky_lower, damped, mean_diagonal, spd_inverse};
use faer::{Mat, MatRef};

/// The shares of a block's range its scale is tried at: clipping the few
/// largest weights can round the rest more finely.
const CLIPS: [f64; 6] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75];

/// How the codes of a block map to weights: `w ≈ (code − zero) · scale`,
/// codes `0..2^bits`.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub bits: u32,
    pub block: usize,
    /// Zero point fixed at the middle code (`2^(bits−1)`), the scale from
    /// the largest magnitude; else the block's min and max (and 0) span
    /// the codes.
    pub symmetric: bool,
}

impl Format {
    fn top(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }

    fn middle(&self) -> f64 {
        (1u32 << (self.bits - 1)) as f64
    }

    /// The scale and zero point of a block holding `values`: of the
    /// block's range (or a range shrunk by one of [`CLIPS`]), the one
    /// whose codes stand for the values with the least squared error.
    pub(super) fn fit(&self, values: &[f64]) -> (f64, f64) {
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for &v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let error = |(scale, zero): (f64, f64)| -> f64 {
            values
                .iter()
                .map(|&w| (w - (self.code(w, scale, zero) - zero) * scale).powi(2))
                .sum()
        };
        CLIPS
            .iter()
            .map(|&c| self.range_fit(c * lo, c * hi))
            .map(|fit| (error(fit), fit))
            .fold((f64::INFINITY, (1.0, self.middle())), |best, x| {
                if x.0 < best.0 {
                    x
                } else {
                    best
                }
            })
            .1
    }

    /// The scale and zero point that span `lo..=hi`.
    fn range_fit(&self, lo: f64, hi: f64) -> (f64, f64) {
        if self.symmetric {
            // ±the largest magnitude at ±7 steps (4 bits): the code one
            // step further below goes unused, which measured better than
            // stretching the negative side to it.
            let scale = (hi.max(-lo) / (self.top() - self.middle())).max(f64::MIN_POSITIVE);
            (scale, self.middle())
        } else {
            let scale = ((hi - lo) / self.top()).max(f64::MIN_POSITIVE);
            (scale, (-lo / scale).round().clamp(0.0, self.top()))
        }
    }

    fn code(&self, w: f64, scale: f64, zero: f64) -> f64 {
        (w / scale + zero).round().clamp(0.0, self.top())
    }
}

/// A quantized weight, in `MatMulNBits` order: per output column `j`, per
/// block `b`, the codes of rows `b·block .. (b+1)·block` (rows past `k`
/// hold the zero point).
pub struct Quantized {
    pub k: usize,
    pub n: usize,
    pub blocks: usize,
    /// `codes[(j · blocks + b) · block + r]`.
    pub codes: Vec<u8>,
    /// `scales[j · blocks + b]`.
    pub scales: Vec<f32>,
    /// `zeros[j · blocks + b]`.
    pub zeros: Vec<u8>,
    pub format: Format,
}

impl Quantized {
    /// The weight the codes stand for, `[k, n]`.
    pub fn dequantized(&self) -> Mat<f64> {
        let block = self.format.block;
        Mat::from_fn(self.k, self.n, |i, j| {
            let at = j * self.blocks + i / block;
            let code = self.codes[at * block + i % block] as f64;
            (code - self.zeros[at] as f64) * self.scales[at] as f64
        })
    }

    /// Quantized weights of the same `k` and format side by side: their
    /// output columns one after another.
    pub fn columns(parts: Vec<Quantized>) -> Quantized {
        let mut parts = parts.into_iter();
        let mut all = parts.next().expect("at least one part");
        for p in parts {
            assert_eq!((p.k, p.blocks), (all.k, all.blocks), "parts of one weight");
            all.n += p.n;
            all.codes.extend(p.codes);
            all.scales.extend(p.scales);
            all.zeros.extend(p.zeros);
        }
        all
    }

    /// The codes packed low bits first, `8 / bits` to a byte:
    /// `[n, blocks, block · bits / 8]`.
    pub fn packed_codes(&self) -> Vec<u8> {
        pack(&self.codes, self.format.bits)
    }

    /// The zero points packed like the codes, each column's padded to a
    /// whole byte: `[n · ceil(blocks · bits / 8)]`.
    pub fn packed_zeros(&self) -> Vec<u8> {
        self.zeros
            .chunks(self.blocks)
            .flat_map(|column| pack(column, self.format.bits))
            .collect()
    }
}

fn pack(codes: &[u8], bits: u32) -> Vec<u8> {
    let per_byte = (8 / bits) as usize;
    codes
        .chunks(per_byte)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |byte, (i, &code)| byte | (code << (i as u32 * bits)))
        })
        .collect()
}

/// Quantizes `w` by rounding to nearest (`second_moment` absent) or by
/// GPTQ with the input's second moment `E[x xᵀ]` (`damp` times its mean
/// diagonal added to keep it invertible).
pub fn quantize(
    w: MatRef<'_, f64>,
    format: Format,
    second_moment: Option<MatRef<'_, f64>>,
    damp: f64,
) -> Quantized {
    let (k, n) = (w.nrows(), w.ncols());
    let blocks = k.div_ceil(format.block);
    // Row-major working copy: row i is input i's weights to every output.
    let mut rows: Vec<f64> = (0..k)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| w[(i, j)])
        .collect();
    let inverse_factor = second_moment.and_then(|h| inverse_cholesky_upper(h, damp));
    let mut codes = vec![0u8; n * blocks * format.block];
    let mut scales = vec![0f32; n * blocks];
    let mut zeros = vec![0u8; n * blocks];
    let mut error = vec![0f64; n];
    for i in 0..k {
        let b = i / format.block;
        if i % format.block == 0 {
            let end = (i + format.block).min(k);
            for j in 0..n {
                let block: Vec<f64> = (i..end).map(|r| rows[r * n + j]).collect();
                let (scale, zero) = format.fit(&block);
                // Stored as f32: round with the scale the runtime reads.
                scales[j * blocks + b] = scale as f32;
                zeros[j * blocks + b] = zero as u8;
            }
        }
        for j in 0..n {
            let at = j * blocks + b;
            let (scale, zero) = (scales[at] as f64, zeros[at] as f64);
            let w = rows[i * n + j];
            let code = format.code(w, scale, zero);
            codes[at * format.block + i % format.block] = code as u8;
            error[j] = w - (code - zero) * scale;
        }
        if let Some(u) = &inverse_factor {
            let pivot = u[(i, i)];
            for r in i + 1..k {
                let factor = u[(i, r)] / pivot;
                if factor != 0.0 {
                    let row = &mut rows[r * n..(r + 1) * n];
                    for (x, e) in row.iter_mut().zip(&error) {
                        *x -= factor * e;
                    }
                }
            }
        }
    }
    // Rows past `k` in the last block hold the zero point (they read no
    // input).
    for j in 0..n {
        for i in k..blocks * format.block {
            let at = j * blocks + i / format.block;
            codes[at * format.block + i % format.block] = zeros[at];
        }
    }
    Quantized {
        k,
        n,
        blocks,
        codes,
        scales,
        zeros,
        format,
    }
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = UᵀU`), with `H`
/// damped; inputs that never vary get a unit diagonal (their rows are
/// rounded as they are).
fn inverse_cholesky_upper(h: MatRef<'_, f64>, damp: f64) -> Option<Mat<f64>> {
    let mut h = h.to_owned();
    for i in 0..h.nrows() {
        if h[(i, i)] <= 0.0 {
            h[(i, i)] = 1.0;
        }
    }
    let lambda = damp * mean_diagonal(h.as_ref()).max(f64::MIN_POSITIVE);
    let inverse = spd_inverse(damped(h.as_ref(), lambda).as_ref());
    let l = cholesky_lower(inverse.as_ref())?;
    Some(l.transpose().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::solve::{inner, product};
    use crate::util::rng::Rng;

    fn matrix(k: usize, n: usize, seed: u64) -> Mat<f64> {
        let mut rng = Rng::new(seed);
        Mat::from_fn(k, n, |_, _| rng.normal())
    }

    const INT4: Format = Format {
        bits: 4,
        block: 8,
        symmetric: true,
    };

    #[test]
    fn blocks_round_no_worse_than_over_their_full_range() {
        let w = matrix(20, 3, 1);
        for symmetric in [true, false] {
            let format = Format { symmetric, ..INT4 };
            let q = quantize(w.as_ref(), format, None, 0.01);
            let d = q.dequantized();
            for j in 0..3 {
                for b in 0..q.blocks {
                    let rows = b * 8..((b + 1) * 8).min(20);
                    let values: Vec<f64> = rows.clone().map(|i| w[(i, j)]).collect();
                    let (lo, hi) = values
                        .iter()
                        .fold((0.0f64, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
                    let (scale, zero) = format.range_fit(lo, hi);
                    let full: f64 = values
                        .iter()
                        .map(|&v| (v - (format.code(v, scale, zero) - zero) * scale).powi(2))
                        .sum();
                    let fitted: f64 = rows.map(|i| (w[(i, j)] - d[(i, j)]).powi(2)).sum();
                    assert!(
                        fitted <= full * (1.0 + 1e-5) + 1e-12,
                        "{symmetric} {j} {b}: {fitted} > {full}"
                    );
                    // Over the full range, every value is within half a step.
                    for &v in &values {
                        let back = (format.code(v, scale, zero) - zero) * scale;
                        assert!((back - v).abs() <= 0.5 * scale + 1e-9);
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_columns_in_parts_is_rounding_them_together() {
        let w = matrix(20, 6, 5);
        let whole = quantize(w.as_ref(), INT4, None, 0.0);
        let parts = [0..2, 2..6]
            .map(|c| quantize(w.as_ref().subcols(c.start, c.len()), INT4, None, 0.0))
            .into_iter()
            .collect();
        let joined = Quantized::columns(parts);
        assert_eq!(joined.codes, whole.codes);
        assert_eq!(joined.scales, whole.scales);
        assert_eq!(joined.zeros, whole.zeros);
    }

    #[test]
    fn packing_puts_the_first_code_in_the_low_bits() {
        assert_eq!(pack(&[1, 2, 3, 4], 4), vec![0x21, 0x43]);
        assert_eq!(pack(&[1, 2, 3], 4), vec![0x21, 0x03]);
    }

    #[test]
    fn gptq_has_less_output_error_than_rounding() {
        // Correlated inputs: x = z·M.
        let (k, n) = (32, 6);
        let z = matrix(400, k, 2);
        let x = product(z.as_ref(), matrix(k, k, 3).as_ref());
        let h = Mat::from_fn(k, k, |a, b| {
            (0..x.nrows()).map(|r| x[(r, a)] * x[(r, b)]).sum::<f64>() / x.nrows() as f64
        });
        let w = matrix(k, n, 4);
        let output_error = |q: &Quantized| {
            let d = q.dequantized();
            let diff = Mat::from_fn(k, n, |i, j| w[(i, j)] - d[(i, j)]);
            inner(diff.as_ref(), product(h.as_ref(), diff.as_ref()).as_ref())
        };
        let rtn = quantize(w.as_ref(), INT4, None, 0.01);
        let gptq = quantize(w.as_ref(), INT4, Some(h.as_ref()), 0.01);
        assert!(output_error(&gptq) < 0.8 * output_error(&rtn));
    }
}
