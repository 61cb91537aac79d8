//! Weight-only quantization of one weight: a linear site's matrix or an
//! embedding table, in blocks of int4 or int8 codes ([`super::blocks`]).
//!
//! A site becomes onnxruntime's `com.microsoft::MatMulNBits`
//! (`format=nbits`), or the standard opset-21 blocked `DequantizeLinear`
//! of int4/uint4 (int8/uint8) codes feeding a `MatMul` (`format=dq`); a
//! Gemm's bias becomes an Add after it. A table becomes a gather of its
//! packed rows, dequantized after the lookup ([`super::tables`]).
//! [`Weight::substitute`] writes the dequantized values in f32 instead,
//! for measuring what a choice does to the model's outputs.

use super::blocks::{quantize, Format, Quantized};
use super::tables::{self, Table};
use super::CONTRIB;
use crate::calib::SiteStats;
use crate::linear::solve::output_energy;
use crate::linear::{LinearSite, SiteOp};
use faer::Mat;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, DataType, Graph, IrError, Tensor};
use serde_json::json;
use std::sync::Arc;

/// How a quantized site is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `com.microsoft::MatMulNBits`.
    Nbits,
    /// Opset-21 blocked `DequantizeLinear` → `MatMul`.
    Dq,
}

/// A weight to quantize.
#[derive(Clone)]
pub enum Weight {
    /// A linear site, with its input statistics when GPTQ rounds it.
    Site(LinearSite, Option<Arc<SiteStats>>),
    Table(Table),
}

/// One weight quantized in one format, with what it costs and does.
pub struct Quantization {
    pub quantized: Quantized,
    /// Bytes of codes, scales and zero points as written.
    pub bytes: u64,
    pub record: serde_json::Value,
}

/// The relative output error `tr(ΔᵀCΔ) / tr(WᵀCW)` of replacing `w` by
/// `d`, under the covariance `c`.
fn relative_error(c: &Mat<f64>, w: &Mat<f64>, d: &Mat<f64>) -> f64 {
    let diff = Mat::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] - d[(i, j)]);
    output_energy(c.as_ref(), diff.as_ref())
        / output_energy(c.as_ref(), w.as_ref()).max(f64::MIN_POSITIVE)
}

impl Weight {
    pub fn name(&self) -> &str {
        match self {
            Weight::Site(site, _) => &site.name,
            Weight::Table(t) => &t.name,
        }
    }

    /// Bytes of the weight in f32.
    pub fn f32_bytes(&self, graph: &Graph) -> u64 {
        match self {
            Weight::Site(site, _) => constant(graph, site.weight)
                .and_then(|t| t.element_count())
                .map_or(0, |c| c * 4),
            Weight::Table(t) => (t.rows * t.width * 4) as u64,
        }
    }

    /// Quantizes the weight in `format`: GPTQ when the site has
    /// statistics and `damp` is given, to nearest otherwise.
    pub fn quantize(
        &self,
        graph: &Graph,
        format: Format,
        damp: Option<f64>,
    ) -> Result<Quantization, IrError> {
        match self {
            Weight::Site(site, stats) => {
                let w = site.weights(graph)?.remove(0);
                let all = stats
                    .as_ref()
                    .map(|s| s.all().remove(0))
                    .filter(|m| m.full());
                // GPTQ reads the uncentered second moment: the bias does not
                // absorb the mean of the rounding error.
                let second = all.as_ref().map(|m| m.second_moment());
                let gptq = damp.and_then(|d| second.as_ref().map(|h| (h.as_ref(), d)));
                let quantized = quantize(
                    w.as_ref(),
                    format,
                    gptq.map(|g| g.0),
                    gptq.map_or(0.0, |g| g.1),
                );
                let d = quantized.dequantized();
                let held = stats
                    .as_ref()
                    .filter(|s| s.has_holdout())
                    .map(|s| s.holdout[0].second_moment())
                    .map(|h| relative_error(&h, &w, &d));
                let zeros = if format.symmetric {
                    0
                } else {
                    quantized.packed_zeros().len()
                };
                let bytes = quantized.packed_codes().len() + quantized.scales.len() * 4 + zeros;
                let record = json!({
                    "site": site.name,
                    "shape": [w.nrows(), w.ncols()],
                    "bits": format.bits,
                    "block": format.block,
                    "rounding": if gptq.is_some() { "gptq" } else { "rtn" },
                    "predicted_error": second.as_ref().map(|c| relative_error(c, &w, &d)),
                    "held_out_error": held,
                });
                Ok(Quantization {
                    quantized,
                    bytes: bytes as u64,
                    record,
                })
            }
            Weight::Table(t) => {
                let quantized = tables::quantize_table(graph, t, format)?;
                let bytes = t.rows * t.width * format.bits as usize / 8
                    + quantized.scales.len() * 4
                    + quantized.zeros.len();
                let record = json!({
                    "table": t.name,
                    "shape": [t.rows, t.width],
                    "bits": format.bits,
                    "block": format.block,
                    "rounding": "rtn",
                });
                Ok(Quantization {
                    quantized,
                    bytes: bytes as u64,
                    record,
                })
            }
        }
    }

    /// Writes the dequantized values of `q` in place of the weight, in f32
    /// (a shared weight is copied for this use).
    pub fn substitute(&self, graph: &mut Graph, q: &Quantized) -> Result<(), IrError> {
        let d = q.dequantized();
        match self {
            Weight::Site(site, _) => {
                let site = refind(graph, site)?;
                site.set_weights(graph, &[d])
            }
            Weight::Table(t) => {
                let table = graph.node(t.node).input(0).expect("a table");
                // The table's rows are the quantized matrix's columns.
                let values: Vec<f32> = (0..t.rows)
                    .flat_map(|r| (0..t.width).map(move |c| (r, c)))
                    .map(|(r, c)| d[(c, r)] as f32)
                    .collect();
                let tensor = Tensor::from_f32(vec![t.rows as i64, t.width as i64], &values);
                let name = graph.value(table).name.clone();
                let mut patch = Patch::new(graph, &name);
                if patch.graph.consumers(table).len() > 1 {
                    let copy = patch.initializer_named("substituted", tensor);
                    drop(patch);
                    graph.set_input(t.node, 0, Some(copy));
                    Ok(())
                } else {
                    patch.set_initializer(table, tensor)
                }
            }
        }
    }

    /// Replaces the weight's node by its quantized form.
    pub fn rewrite(
        &self,
        graph: &mut Graph,
        q: &Quantized,
        form: Form,
        accuracy_level: i64,
    ) -> Result<(), IrError> {
        match self {
            Weight::Site(site, _) => {
                let site = refind(graph, site)?;
                match form {
                    Form::Nbits => rewrite_nbits(graph, &site, q, accuracy_level),
                    Form::Dq => rewrite_dq(graph, &site, q),
                }
            }
            Weight::Table(t) => tables::rewrite(graph, t, q),
        }
    }
}

/// The element type of the site's weight, which its scales and bias take
/// (a MatMul computes in its weight's type).
fn weight_type(graph: &Graph, site: &LinearSite) -> DataType {
    sculpt_ir::ops::infer::value_type(graph, site.weight)
        .and_then(|t| t.dtype())
        .unwrap_or(DataType::F32)
}

/// `values` as a tensor of the site's weight type.
fn like_weight(
    graph: &Graph,
    site: &LinearSite,
    dims: Vec<i64>,
    values: impl Iterator<Item = f64>,
) -> Result<Tensor, IrError> {
    let values: Vec<f64> = values.collect();
    Tensor::from_floats(weight_type(graph, site), dims, &values)
}

fn refind(graph: &Graph, site: &LinearSite) -> Result<LinearSite, IrError> {
    site.refind(graph)
        .ok_or_else(|| IrError::Invalid(format!("quantize: linear site '{}' is gone", site.name)))
}

/// The site's bias when it is a Gemm's C (a MatMul's bias is an Add of
/// its own, left where it is).
fn gemm_bias(graph: &Graph, site: &LinearSite) -> Result<Option<Vec<f64>>, IrError> {
    match site.op {
        SiteOp::Gemm { .. } => site.bias(graph),
        _ => Ok(None),
    }
}

/// Defines the site's output as `product` (+ the Gemm's bias), the node
/// `op` (in `domain`) computing `product` from `inputs`.
fn define_product(
    graph: &mut Graph,
    site: &LinearSite,
    op: &str,
    domain: &str,
    inputs: impl FnOnce(&mut Patch<'_>) -> Vec<Option<sculpt_ir::ValueId>>,
    attrs: Vec<Attribute>,
) -> Result<(), IrError> {
    let bias = gemm_bias(graph, site)?
        .map(|b| like_weight(graph, site, vec![b.len() as i64], b.into_iter()))
        .transpose()?;
    let out = graph
        .node(site.node)
        .output(0)
        .expect("a linear site has an output");
    let mut patch = Patch::replacing(graph, site.node);
    let inputs = inputs(&mut patch);
    let product = match bias {
        None => {
            patch.define(op, &inputs, attrs, out)?;
            out
        }
        Some(b) => {
            let bias = patch.initializer_named("bias", b);
            let product = patch.node(op, &inputs, attrs);
            patch.define("Add", &[Some(product), Some(bias)], Vec::new(), out)?;
            product
        }
    };
    drop(patch);
    let (node, _) = graph.value(product).producer.expect("defined above");
    graph.node_mut(node).domain = domain.into();
    Ok(())
}

/// The site as a `MatMulNBits` node.
fn rewrite_nbits(
    graph: &mut Graph,
    site: &LinearSite,
    q: &Quantized,
    accuracy_level: i64,
) -> Result<(), IrError> {
    let blob = q.format.block * q.format.bits as usize / 8;
    let u8_tensor =
        |dims: Vec<i64>, bytes: Vec<u8>| Tensor::from_raw(DataType::U8, dims, bytes.into());
    let attrs = vec![
        Attribute::new("K", AttrValue::Int(q.k as i64)),
        Attribute::new("N", AttrValue::Int(q.n as i64)),
        Attribute::new("bits", AttrValue::Int(q.format.bits as i64)),
        Attribute::new("block_size", AttrValue::Int(q.format.block as i64)),
        Attribute::new("accuracy_level", AttrValue::Int(accuracy_level)),
    ];
    let input = site.input;
    let scales = like_weight(
        graph,
        site,
        vec![(q.n * q.blocks) as i64],
        q.scales.iter().map(|&s| s as f64),
    )?;
    define_product(
        graph,
        site,
        "MatMulNBits",
        CONTRIB,
        |patch| {
            let name = if q.format.bits == 4 { "q4" } else { "q8" };
            let codes = patch.initializer_named(
                name,
                u8_tensor(
                    vec![q.n as i64, q.blocks as i64, blob as i64],
                    q.packed_codes(),
                ),
            );
            let scales = patch.initializer_named("scales", scales);
            let mut inputs = vec![Some(input), Some(codes), Some(scales)];
            if !q.format.symmetric {
                let zeros = q.packed_zeros();
                let len = zeros.len() as i64;
                inputs.push(Some(
                    patch.initializer_named("zero_points", u8_tensor(vec![len], zeros)),
                ));
            }
            inputs
        },
        attrs,
    )
}

/// The site as `MatMul(x, DequantizeLinear(codes, scales[, zeros]))`, the
/// codes `[k, n]` in blocks along `k` (opset 21). Symmetric codes are
/// signed (the middle code is 0), others unsigned with zero points.
fn rewrite_dq(graph: &mut Graph, site: &LinearSite, q: &Quantized) -> Result<(), IrError> {
    let (k, n, block, blocks) = (q.k, q.n, q.format.block, q.blocks);
    let middle = 1i64 << (q.format.bits - 1);
    let signed = q.format.symmetric;
    let shift = if signed { middle } else { 0 };
    let code_type = match (q.format.bits, signed) {
        (4, true) => DataType::I4,
        (4, false) => DataType::U4,
        (_, true) => DataType::I8,
        (_, false) => DataType::U8,
    };
    let codes: Vec<i64> = (0..k)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| q.codes[(j * blocks + i / block) * block + i % block] as i64 - shift)
        .collect();
    let scales = like_weight(
        graph,
        site,
        vec![blocks as i64, n as i64],
        (0..blocks).flat_map(|b| (0..n).map(move |j| q.scales[j * blocks + b] as f64)),
    )?;
    let zeros: Vec<i64> = (0..blocks)
        .flat_map(|b| (0..n).map(move |j| q.zeros[j * blocks + b] as i64))
        .collect();
    let codes = Tensor::from_ints(code_type, vec![k as i64, n as i64], &codes)?;
    let zeros = Tensor::from_ints(code_type, vec![blocks as i64, n as i64], &zeros)?;
    let attrs = vec![
        Attribute::new("axis", AttrValue::Int(0)),
        Attribute::new("block_size", AttrValue::Int(block as i64)),
    ];
    let input = site.input;
    define_product(
        graph,
        site,
        "MatMul",
        "",
        |patch| {
            let codes = patch.initializer_named("codes", codes);
            let scales = patch.initializer_named("scales", scales);
            let mut dq_inputs = vec![Some(codes), Some(scales)];
            if !signed {
                dq_inputs.push(Some(patch.initializer_named("zero_points", zeros)));
            }
            let weight = patch.node("DequantizeLinear", &dq_inputs, attrs);
            vec![Some(input), Some(weight)]
        },
        Vec::new(),
    )
}
