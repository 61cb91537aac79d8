//! Resize (opset 11+), nearest and linear: one `linalg.generic` over the
//! output whose body maps each resized coordinate back to the input (in
//! f64, as ONNX's reference does), then reads the input with
//! `tensor.extract`: the nearest element, or the 2^k corners weighted.

use super::{axis_index, unsupported, Elem, Emitter, Region};
use crate::Result;
use sculpt_ir::{AttrValue, Node};

/// One resized axis: where it is, its input length and its scale.
struct Axis {
    dim: usize,
    len: i64,
    out: i64,
    scale: f64,
}

fn str_attr<'a>(n: &'a Node, name: &str, default: &'a str) -> &'a str {
    n.attr(name).and_then(AttrValue::as_str).unwrap_or(default)
}

/// `r = arith.constant x : f64`.
fn f64_constant(b: &mut Region, x: f64) -> String {
    // The bit pattern: exact, as MLIR reads hexadecimal float literals.
    b.assign(format!("arith.constant 0x{:016X} : f64", x.to_bits()))
}

fn f64_op(b: &mut Region, instr: &str, args: &str) -> String {
    b.assign(format!("{instr} {args} : f64"))
}

impl Emitter<'_> {
    pub(super) fn resize(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        if self.opset < 11 {
            return Err(unsupported(n, "Resize before opset 11"));
        }
        let x = self.input(n, 0)?;
        let rank = x.dims.len();
        let mode = str_attr(n, "mode", "nearest").to_string();
        let transform = str_attr(n, "coordinate_transformation_mode", "half_pixel").to_string();
        let nearest_mode = str_attr(n, "nearest_mode", "round_prefer_floor").to_string();
        if mode != "nearest" && mode != "linear" {
            return Err(unsupported(
                n,
                format!("mode={mode} (nearest and linear only)"),
            ));
        }
        if transform == "tf_crop_and_resize" {
            return Err(unsupported(
                n,
                "coordinate_transformation_mode=tf_crop_and_resize",
            ));
        }
        if n.int_attr("antialias", 0) != 0 || n.int_attr("exclude_outside", 0) != 0 {
            return Err(unsupported(n, "antialias or exclude_outside"));
        }
        if str_attr(n, "keep_aspect_ratio_policy", "stretch") != "stretch" {
            return Err(unsupported(
                n,
                "keep_aspect_ratio_policy other than stretch",
            ));
        }
        let axes: Vec<usize> = n
            .ints_attr("axes")
            .unwrap_or_else(|| (0..rank as i64).collect())
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect();
        // Scales (float input 2) or sizes (int input 3), over `axes`.
        let scales = match n.input(2) {
            Some(v) => sculpt_ir::ops::infer::constant(self.g, v)
                .and_then(|t| t.to_f32_vec().ok())
                .ok_or_else(|| unsupported(n, "scales are computed at run time"))?,
            None => vec![],
        };
        let sizes = self.const_ints(n, 3)?.unwrap_or_default();
        let mut plan = Vec::new();
        for (k, &d) in axes.iter().enumerate() {
            let len = x.dims[d];
            let (out, scale) = if !scales.is_empty() {
                let s = scales[k] as f64;
                (((len as f64) * s).floor() as i64, s)
            } else if !sizes.is_empty() {
                (sizes[k], sizes[k] as f64 / len as f64)
            } else {
                return Err(unsupported(n, "neither scales nor sizes"));
            };
            if out != od[d] {
                return Err(unsupported(
                    n,
                    "output shape disagrees with the scales or sizes",
                ));
            }
            if out != len || scale != 1.0 {
                plan.push(Axis {
                    dim: d,
                    len,
                    out,
                    scale,
                });
            }
        }
        let linear = mode == "linear";
        let (source, ty, elem) = (x.name.clone(), x.ty(), x.elem);
        if elem != Elem::F32 && linear {
            return Err(unsupported(n, "linear resize of a non-float tensor"));
        }
        Ok(self.generic(od, elem, &[], &|b, _| {
            let mut coords: Vec<String> = (0..rank)
                .map(|d| b.assign(format!("linalg.index {d} : index")))
                .collect();
            // Per resized axis: the source coordinate, and for linear the
            // two neighbours and the second one's weight.
            let mut corners = Vec::new();
            for a in &plan {
                let x_ori = source_coordinate(b, &coords[a.dim], a, &transform);
                let floor = f64_op(b, "math.floor", &x_ori);
                if linear {
                    let frac = f64_op(b, "arith.subf", &format!("{x_ori}, {floor}"));
                    let one = f64_constant(b, 1.0);
                    let next = f64_op(b, "arith.addf", &format!("{floor}, {one}"));
                    let (i0, i1) = (clamped(b, &floor, a.len), clamped(b, &next, a.len));
                    let w1 = b.assign(format!("arith.truncf {frac} : f64 to f32"));
                    corners.push((a.dim, i0, i1, w1));
                } else {
                    let pick = nearest(b, &x_ori, &floor, &nearest_mode);
                    coords[a.dim] = clamped(b, &pick, a.len);
                }
            }
            if !linear {
                return b.assign(format!(
                    "tensor.extract {source}[{}] : {ty}",
                    coords.join(", ")
                ));
            }
            let mut total: Option<String> = None;
            for corner in 0..(1usize << corners.len()) {
                let mut at = coords.clone();
                let mut weight: Option<String> = None;
                for (bit, (dim, i0, i1, w1)) in corners.iter().enumerate() {
                    let high = corner >> bit & 1 == 1;
                    at[*dim] = if high { i1.clone() } else { i0.clone() };
                    let w = if high {
                        w1.clone()
                    } else {
                        let one = b.constant(1.0);
                        b.bin("arith.subf", &one, w1)
                    };
                    weight = Some(match weight {
                        Some(acc) => b.bin("arith.mulf", &acc, &w),
                        None => w,
                    });
                }
                let v = b.assign(format!("tensor.extract {source}[{}] : {ty}", at.join(", ")));
                let term = b.bin(
                    "arith.mulf",
                    &v,
                    &weight.expect("at least one resized axis"),
                );
                total = Some(match total {
                    Some(acc) => b.bin("arith.addf", &acc, &term),
                    None => term,
                });
            }
            total.unwrap_or_else(|| {
                b.assign(format!(
                    "tensor.extract {source}[{}] : {ty}",
                    coords.join(", ")
                ))
            })
        }))
    }
}

/// The input coordinate (f64) of output index `index` on `axis`.
fn source_coordinate(b: &mut Region, index: &str, axis: &Axis, transform: &str) -> String {
    let i = b.assign(format!("arith.index_cast {index} : index to i64"));
    let x = b.assign(format!("arith.sitofp {i} : i64 to f64"));
    let scale = f64_constant(b, axis.scale);
    let half = f64_constant(b, 0.5);
    let out_width = axis.scale * axis.len as f64;
    match transform {
        "align_corners" => {
            if out_width == 1.0 {
                return f64_constant(b, 0.0);
            }
            let k = f64_constant(b, (axis.len - 1) as f64 / (out_width - 1.0));
            f64_op(b, "arith.mulf", &format!("{x}, {k}"))
        }
        "asymmetric" => f64_op(b, "arith.divf", &format!("{x}, {scale}")),
        "pytorch_half_pixel" if out_width == 1.0 => f64_constant(b, -0.5),
        "half_pixel_symmetric" => {
            let adjustment = axis.out as f64 / out_width;
            let offset = f64_constant(b, axis.len as f64 / 2.0 * (1.0 - adjustment));
            let t = f64_op(b, "arith.addf", &format!("{x}, {half}"));
            let t = f64_op(b, "arith.divf", &format!("{t}, {scale}"));
            let t = f64_op(b, "arith.subf", &format!("{t}, {half}"));
            f64_op(b, "arith.addf", &format!("{t}, {offset}"))
        }
        "tf_half_pixel_for_nn" => {
            let t = f64_op(b, "arith.addf", &format!("{x}, {half}"));
            f64_op(b, "arith.divf", &format!("{t}, {scale}"))
        }
        // half_pixel, and pytorch_half_pixel with more than one output.
        _ => {
            let t = f64_op(b, "arith.addf", &format!("{x}, {half}"));
            let t = f64_op(b, "arith.divf", &format!("{t}, {scale}"));
            f64_op(b, "arith.subf", &format!("{t}, {half}"))
        }
    }
}

/// The nearest input coordinate of `x` (f64) by `mode`, as ONNX's
/// reference picks between floor and floor + 1.
fn nearest(b: &mut Region, x: &str, floor: &str, mode: &str) -> String {
    let one = f64_constant(b, 1.0);
    let next = f64_op(b, "arith.addf", &format!("{floor}, {one}"));
    let frac = f64_op(b, "arith.subf", &format!("{x}, {floor}"));
    let half = f64_constant(b, 0.5);
    let zero = f64_constant(b, 0.0);
    let up = match mode {
        "floor" => return floor.to_string(),
        "ceil" => b.assign(format!("arith.cmpf ogt, {frac}, {zero} : f64")),
        "round_prefer_ceil" => b.assign(format!("arith.cmpf oge, {frac}, {half} : f64")),
        _ => b.assign(format!("arith.cmpf ogt, {frac}, {half} : f64")),
    };
    b.assign(format!("arith.select {up}, {next}, {floor} : f64"))
}

/// `x` (f64, integral) as an index clamped to `[0, len - 1]`.
fn clamped(b: &mut Region, x: &str, len: i64) -> String {
    let i = b.assign(format!("arith.fptosi {x} : f64 to i64"));
    let (lo, hi) = (
        b.assign("arith.constant 0 : i64".into()),
        b.assign(format!("arith.constant {} : i64", len - 1)),
    );
    let i = b.assign(format!("arith.maxsi {i}, {lo} : i64"));
    let i = b.assign(format!("arith.minsi {i}, {hi} : i64"));
    b.assign(format!("arith.index_cast {i} : i64 to index"))
}
