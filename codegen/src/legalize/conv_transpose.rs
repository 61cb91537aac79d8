//! ConvTranspose as a Conv: the input with `stride - 1` zeros between its
//! elements, padded by `dilation·(kernel - 1) - pad` on each side (plus
//! `output_padding` after; cropped where that is negative), convolved at
//! stride 1 with the kernel flipped on its spatial axes and its two
//! channel axes swapped within each group. This is the transposed
//! convolution's definition, so the result is the same sum of the same
//! products.
//!
//! Constant kernels are flipped here, into a new initializer; others by
//! Reshape, Transpose, Reshape and a Slice with negative steps.

use super::{attrs_with, Patch};
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::{AttrValue, Attribute, Node, Tensor};

pub(super) fn rewrite(p: &mut Patch, n: &Node) -> Result<bool> {
    let (Some(x), Some(w), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
        return Err(unsupported(n, "needs an input, weights and an output"));
    };
    let xd = p.dims(x)?;
    let wd = p.dims(w)?;
    let od = p.dims(out)?;
    let k = xd.len().saturating_sub(2);
    if !(1..=2).contains(&k) {
        return Err(unsupported(n, format!("{k}-d (1-d and 2-d only)")));
    }
    let group = n.int_attr("group", 1);
    let kernel = wd[2..].to_vec();
    let strides = n.ints_attr("strides").unwrap_or(vec![1; k]);
    let dilations = n.ints_attr("dilations").unwrap_or(vec![1; k]);
    let out_pad = n.ints_attr("output_padding").unwrap_or(vec![0; k]);
    let (begin, end) = pads(
        n,
        &xd[2..],
        &od[2..],
        &kernel,
        &strides,
        &dilations,
        &out_pad,
    )?;

    // The input with stride - 1 zeros after each element: [N, C, S, 1, ...]
    // padded to [N, C, S, s, ...], then merged to [N, C, S·s, ...] (whose
    // last s - 1 zeros the padding below takes back).
    let mut x = x;
    let mut sizes = xd.clone();
    if strides.iter().any(|&s| s != 1) {
        let mut split = xd[..2].to_vec();
        for &d in &xd[2..] {
            split.extend([d, 1]);
        }
        let x6 = p.reshape(x, &split)?;
        let mut high = vec![0; split.len()];
        for (i, &s) in strides.iter().enumerate() {
            high[3 + 2 * i] = s - 1;
        }
        let spread = p.pad(x6, &vec![0; split.len()], &high);
        for i in 0..k {
            sizes[2 + i] = xd[2 + i] * strides[i];
        }
        x = p.reshape(spread, &sizes)?;
    }
    // Padding before and after each spatial axis; negative is a crop.
    let mut low = vec![0; k + 2];
    let mut high = vec![0; k + 2];
    for i in 0..k {
        let reach = dilations[i] * (kernel[i] - 1);
        low[2 + i] = reach - begin[i];
        high[2 + i] = reach - end[i] + out_pad[i] - (strides[i] - 1);
    }
    if low.iter().chain(&high).any(|&v| v > 0) {
        let positive = |v: &[i64]| -> Vec<i64> { v.iter().map(|&x| x.max(0)).collect() };
        let (lo, hi) = (positive(&low), positive(&high));
        x = p.pad(x, &lo, &hi);
        for i in 0..k {
            sizes[2 + i] += lo[2 + i] + hi[2 + i];
        }
    }
    if low.iter().chain(&high).any(|&v| v < 0) {
        let starts: Vec<i64> = low.iter().map(|&v| (-v).max(0)).collect();
        let ends: Vec<i64> = sizes
            .iter()
            .zip(&high)
            .map(|(&s, &h)| s - (-h).max(0))
            .collect();
        x = p.slice(x, &starts, &ends, &vec![1; k + 2])?;
    }
    let weights = flipped_weights(p, w, &wd, group)?;
    let attrs = attrs_with(
        n,
        vec![
            Attribute::new("kernel_shape", AttrValue::Ints(kernel)),
            Attribute::new("strides", AttrValue::Ints(vec![1; k])),
            Attribute::new("pads", AttrValue::Ints(vec![0; 2 * k])),
        ],
        &["output_padding", "output_shape", "auto_pad"],
    );
    p.define("Conv", &[Some(x), Some(weights), n.input(2)], attrs, out)?;
    Ok(true)
}

/// The pads ConvTranspose removes from the full output, before and after
/// each spatial axis: the `pads` attribute, or, with `output_shape` or
/// `auto_pad=SAME_*`, the total padding that gives the inferred output
/// size, split as ONNX's reference splits it (the odd one after for
/// SAME_UPPER, before otherwise; rounding down).
fn pads(
    n: &Node,
    input: &[i64],
    output: &[i64],
    kernel: &[i64],
    strides: &[i64],
    dilations: &[i64],
    out_pad: &[i64],
) -> Result<(Vec<i64>, Vec<i64>)> {
    let k = input.len();
    let auto = n
        .attr("auto_pad")
        .and_then(AttrValue::as_str)
        .unwrap_or("NOTSET");
    if auto == "VALID" {
        return Ok((vec![0; k], vec![0; k]));
    }
    if auto == "NOTSET" && n.attr("output_shape").is_none() {
        let pads = n.ints_attr("pads").unwrap_or(vec![0; 2 * k]);
        return Ok((pads[..k].to_vec(), pads[k..].to_vec()));
    }
    let mut begin = Vec::new();
    let mut end = Vec::new();
    for i in 0..k {
        let full = strides[i] * (input[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1;
        // Negative when the output is larger: zeros added, not removed.
        let total = full - output[i];
        let half = total.div_euclid(2);
        let (b, e) = if auto == "SAME_UPPER" {
            (half, total - half)
        } else {
            (total - half, half)
        };
        begin.push(b);
        end.push(e);
    }
    Ok((begin, end))
}

/// ConvTranspose's kernel `[C_in, C_out/g, K...]` as a Conv's `[C_out,
/// C_in/g, K...]`, flipped on every spatial axis.
fn flipped_weights(
    p: &mut Patch,
    w: sculpt_ir::ValueId,
    wd: &[i64],
    group: i64,
) -> Result<sculpt_ir::ValueId> {
    let (c_in, c_out_g) = (wd[0], wd[1]);
    let c_in_g = c_in / group;
    let spatial = &wd[2..];
    let conv_dims: Vec<i64> = [c_out_g * group, c_in_g]
        .into_iter()
        .chain(spatial.iter().copied())
        .collect();
    if let Some(t) = p.constant(w) {
        let raw = t.raw_bytes()?;
        let count = t.element_count().unwrap_or(0) as usize;
        let size = raw.len().checked_div(count).unwrap_or(0);
        let plane: i64 = spatial.iter().product();
        let mut flipped = vec![0u8; raw.len()];
        for g in 0..group {
            for i in 0..c_in_g {
                for o in 0..c_out_g {
                    let from = ((g * c_in_g + i) * c_out_g + o) * plane;
                    let to = ((g * c_out_g + o) * c_in_g + i) * plane;
                    for s in 0..plane {
                        // Reversing the flat spatial index reverses every axis.
                        let (a, b) = ((from + s) as usize, (to + plane - 1 - s) as usize);
                        flipped[b * size..(b + 1) * size]
                            .copy_from_slice(&raw[a * size..(a + 1) * size]);
                    }
                }
            }
        }
        return Ok(p.initializer(Tensor::from_raw(t.dtype, conv_dims, flipped.into())));
    }
    let grouped: Vec<i64> = [group, c_in_g, c_out_g]
        .into_iter()
        .chain(spatial.iter().copied())
        .collect();
    let w5 = p.reshape(w, &grouped)?;
    let mut perm = vec![0, 2, 1];
    perm.extend(3..grouped.len() as i64);
    let swapped = p.transpose(w5, &perm);
    let w4 = p.reshape(swapped, &conv_dims)?;
    let rank = conv_dims.len();
    let starts: Vec<i64> = conv_dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if i >= 2 { d - 1 } else { 0 })
        .collect();
    let ends: Vec<i64> = conv_dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if i >= 2 { -d - 1 } else { d })
        .collect();
    let steps: Vec<i64> = (0..rank).map(|i| if i >= 2 { -1 } else { 1 }).collect();
    Ok(p.slice(w4, &starts, &ends, &steps)?)
}
