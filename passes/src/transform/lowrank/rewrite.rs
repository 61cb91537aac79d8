//! A linear site replaced by two products through rank `r`, keeping its
//! output value (name, type and readers) and its bias:
//!
//! - MatMul: `x·W` → `(x·A)·B`;
//! - Gemm: `α·op(x)·op(W) + β·C` → `Gemm(Gemm(op(x), A), B, C)` with `α`
//!   in `A` and `β` kept;
//! - Conv, channel split: a Conv with `r` output channels and the original
//!   window (`A` as `[r, c_in, kh, kw]`), then a 1×1 Conv (`B` as
//!   `[c_out, r, 1, 1]`) with the bias;
//! - Conv, spatial split (2-d): a `kh×1` Conv with `r` outputs (the
//!   vertical stride, dilation and padding), then a `1×kw` Conv (the
//!   horizontal ones) with the bias; the factored matrix is
//!   `M[(c_in, y), (c_out, x)] = W[c_out, c_in, y, x]`.

use crate::linear::{ConvGeometry, LinearSite, SiteOp};
use faer::Mat;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, Graph, IrError, Node, Tensor};

crate::choice! {
    /// How a convolution is split.
    pub enum ConvSplit {
        /// r output channels, then a 1x1 convolution.
        Channel = "channel",
        /// kh x 1, then 1 x kw (2-d kernels).
        Spatial = "spatial",
    }
}

/// The matrix the spatial split factors, `[c_in·kh, c_out·kw]`, from a
/// 2-d convolution's weight `[c_out, c_in, kh, kw]`.
pub fn spatial_matrix(w: &Tensor) -> Result<Mat<f64>, IrError> {
    let d: Vec<usize> = w.dims.iter().map(|&x| x.max(0) as usize).collect();
    let [co, ci, kh, kw] = d[..] else {
        return Err(IrError::tensor("", "not a 2-d convolution weight"));
    };
    let v = w.to_f64_vec()?;
    Ok(Mat::from_fn(ci * kh, co * kw, |r, c| {
        let (i, y) = (r / kh, r % kh);
        let (o, x) = (c / kw, c % kw);
        v[((o * ci + i) * kh + y) * kw + x]
    }))
}

fn ints(name: &str, v: Vec<i64>) -> Attribute {
    Attribute::new(name, AttrValue::Ints(v))
}

/// The node's attributes but the ones named in `drop`.
fn keep_attributes(n: &Node, drop: &[&str]) -> Vec<Attribute> {
    n.attributes
        .iter()
        .filter(|a| !drop.contains(&a.name.as_str()))
        .cloned()
        .collect()
}

/// Replaces `site` by the factors `a [k, r]`, `b [r, n]` (one group).
/// `opset` is the model's default-domain opset (before 11, Gemm needs C).
pub fn factor_site(
    graph: &mut Graph,
    site: &LinearSite,
    a: &Mat<f64>,
    b: &Mat<f64>,
    split: ConvSplit,
    opset: i64,
) -> Result<(), IrError> {
    let node = graph.node(site.node).clone();
    let out = node.output(0).expect("a site has an output");
    let dtype = constant(graph, site.weight)
        .map(|t| t.dtype)
        .ok_or_else(|| IrError::node(&node, "weight is not a constant"))?;
    let old_weight = constant(graph, site.weight).cloned().expect("checked");
    let r = a.ncols();
    // A tensor of `dims` whose elements, in order, are `at(index)`.
    let tensor = |dims: Vec<i64>, at: &dyn Fn(usize) -> f64| {
        let count = dims.iter().product::<i64>() as usize;
        let values: Vec<f64> = (0..count).map(at).collect();
        Tensor::from_floats(dtype, dims, &values)
    };
    let mut p = Patch::replacing(graph, site.node);
    match &site.op {
        SiteOp::MatMul => {
            let (k, n) = (a.nrows(), b.ncols());
            let ta = tensor(vec![k as i64, r as i64], &|e| a[(e / r, e % r)])?;
            let tb = tensor(vec![r as i64, n as i64], &|e| b[(e / n, e % n)])?;
            let (ia, ib) = (
                p.initializer_named("lowrank_a", ta),
                p.initializer_named("lowrank_b", tb),
            );
            let t = p.node("MatMul", &[node.input(0), Some(ia)], vec![]);
            p.define("MatMul", &[Some(t), Some(ib)], vec![], out)?;
        }
        SiteOp::Gemm { trans_a, beta, .. } => {
            let (k, n) = (a.nrows(), b.ncols());
            let ta = tensor(vec![k as i64, r as i64], &|e| a[(e / r, e % r)])?;
            let tb = tensor(vec![r as i64, n as i64], &|e| b[(e / n, e % n)])?;
            let (ia, ib) = (
                p.initializer_named("lowrank_a", ta),
                p.initializer_named("lowrank_b", tb),
            );
            // Before opset 11 Gemm's C is required: a zero stands in.
            let zero = if opset < 11 {
                let t = Tensor::from_floats(dtype, vec![1], &[0.0])?;
                Some(p.initializer_named("zero", t))
            } else {
                None
            };
            let first = vec![Attribute::new("transA", AttrValue::Int(*trans_a as i64))];
            let t = p.node("Gemm", &[node.input(0), Some(ia), zero], first);
            let mut second = vec![];
            if node.input(2).is_some() {
                second.push(Attribute::new("beta", AttrValue::Float(*beta as f32)));
            }
            let c = node.input(2).or(zero);
            p.define("Gemm", &[Some(t), Some(ib), c], second, out)?;
        }
        SiteOp::Conv(geometry) if split == ConvSplit::Channel => {
            let d = &old_weight.dims;
            let (c_out, c_in) = (d[0], d[1]);
            let rows = c_in as usize * geometry.window();
            let mut first_dims = vec![r as i64, c_in];
            first_dims.extend_from_slice(&d[2..]);
            // Filter j of the first convolution is column j of A; output
            // channel o of the second reads row o of Bᵀ.
            let ta = tensor(first_dims, &|e| a[(e % rows, e / rows)])?;
            let tb = tensor(vec![c_out, r as i64, 1, 1], &|e| b[(e % r, e / r)])?;
            let (ia, ib) = (
                p.initializer_named("lowrank_a", ta),
                p.initializer_named("lowrank_b", tb),
            );
            let t = p.node(
                "Conv",
                &[node.input(0), Some(ia)],
                keep_attributes(&node, &[]),
            );
            let ones = vec![1; geometry.kernel.len()];
            let pointwise = vec![ints("kernel_shape", ones.clone()), ints("strides", ones)];
            p.define("Conv", &[Some(t), Some(ib), node.input(2)], pointwise, out)?;
        }
        SiteOp::Conv(geometry) => {
            let d = &old_weight.dims;
            let [c_out, c_in, kh, kw] = d[..] else {
                return Err(p.error("the spatial split needs a 2-d convolution"));
            };
            if !matches!(geometry.auto_pad.as_str(), "NOTSET" | "VALID") {
                return Err(p.error("the spatial split needs explicit pads (auto_pad is SAME)"));
            }
            let pads = if geometry.auto_pad == "VALID" {
                vec![0; 4]
            } else {
                geometry.pads.clone()
            };
            let (sh, sw) = (geometry.strides[0] as i64, geometry.strides[1] as i64);
            let (dh, dw) = (geometry.dilations[0] as i64, geometry.dilations[1] as i64);
            let (top, left, bottom, right) = (
                pads[0] as i64,
                pads[1] as i64,
                pads[2] as i64,
                pads[3] as i64,
            );
            // First: [r, c_in, kh, 1] from A[(ci, y), j]; second:
            // [c_out, r, 1, kw] from B[j, (co, x)].
            let (rows, kw_) = ((c_in * kh) as usize, kw as usize);
            let ta = tensor(vec![r as i64, c_in, kh, 1], &|e| a[(e % rows, e / rows)])?;
            let tb = tensor(vec![c_out, r as i64, 1, kw], &|e| {
                let (co, j, x) = (e / (r * kw_), (e / kw_) % r, e % kw_);
                b[(j, co * kw_ + x)]
            })?;
            let (ia, ib) = (
                p.initializer_named("lowrank_a", ta),
                p.initializer_named("lowrank_b", tb),
            );
            let vertical = vec![
                ints("kernel_shape", vec![kh, 1]),
                ints("strides", vec![sh, 1]),
                ints("dilations", vec![dh, 1]),
                ints("pads", vec![top, 0, bottom, 0]),
            ];
            let t = p.node("Conv", &[node.input(0), Some(ia)], vertical);
            let horizontal = vec![
                ints("kernel_shape", vec![1, kw]),
                ints("strides", vec![1, sw]),
                ints("dilations", vec![1, dw]),
                ints("pads", vec![0, left, 0, right]),
            ];
            p.define("Conv", &[Some(t), Some(ib), node.input(2)], horizontal, out)?;
        }
    }
    Ok(())
}

/// The geometry of the vertical patches the spatial split's statistics
/// are taken over (the first, `kh×1`, convolution's windows over every
/// input column).
pub fn vertical_geometry(g: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        group: 1,
        kernel: vec![g.kernel[0], 1],
        strides: vec![g.strides[0], 1],
        dilations: vec![g.dilations[0], 1],
        pads: vec![g.pads[0], 0, g.pads[2], 0],
        auto_pad: g.auto_pad.clone(),
    }
}
