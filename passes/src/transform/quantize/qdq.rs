//! int8 QDQ (W8A8): QuantizeLinear/DequantizeLinear pairs in the form
//! onnxruntime's QDQ fusions turn into integer kernels (QLinearConv,
//! QLinearMatMul, QLinearAdd, QGemm, ...).
//!
//! The quantized nodes are those whose op is in the chosen set (by
//! default the ops onnxruntime's quantizer takes). For each:
//! - every f32 activation it reads or writes gets one Q→DQ pair, all its
//!   readers reading the DQ; its scale and zero point come from the
//!   value's calibrated range ([`crate::calib::ranges`]), per tensor, int8 (or
//!   uint8) codes;
//! - ops that only move data (Reshape, Transpose, MaxPool, Gather, ...)
//!   give their output their input's parameters, so that onnxruntime can
//!   drop the pair around them;
//! - constant weights of Conv, ConvTranspose, Gemm and MatMul are int8
//!   per output channel, symmetric; their 1-D biases int32 at the scale
//!   input × weight; other constants int8 per tensor, symmetric;
//! - Relu and Clip right after a quantized node are removed: the
//!   quantization of their output, whose range starts at their lower
//!   bound, clamps the same way.
//!
//! What stays f32, because codes there would cost accuracy for no
//! integer kernel: a MatMul/Gemm output no quantized node reads (it runs
//! as MatMulIntegerToFloat, or QGemm with a float output); an elementwise
//! or pooling op whose output no quantized node reads; values that may
//! carry a mask's stand-in for −∞ ([`mask_carriers`]); and values whose
//! histogram says 8 bits would lose them ([`unquantizable`]), with the
//! plan made again around them.
//!
//! Preserves: the model's function up to the rounding of weights and
//! activations.

use super::blocks::Format;
use crate::calib::ranges::{scale_and_zero, Histogram, RangeMethod};
use sculpt_ir::ops::infer::{constant, value_type};
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, DataType, Graph, IrError, NodeId, Tensor, ValueId};
use std::collections::{HashMap, HashSet};

/// The ops that compute quantized by default: with [`MOVES_DATA`], those
/// onnxruntime's quantizer takes (its QDQ and QLinear registries) less
/// the normalizations and index-valued ops, which its CPU kernels run in
/// float anyway.
const COMPUTES: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Relu",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "Softmax",
    "AveragePool",
    "GlobalAveragePool",
    "Concat",
    "Where",
];

/// The op types quantized unless the pipeline names others.
pub fn default_ops() -> Vec<String> {
    COMPUTES
        .iter()
        .chain(MOVES_DATA)
        .map(|s| s.to_string())
        .collect()
}

/// Whether the graph computes attention: a Softmax over the product of two
/// computed values (queries times keys), through at most a few elementwise
/// ops (scaling, the mask) in between.
pub fn has_attention(g: &Graph) -> bool {
    const BETWEEN: &[&str] = &["Div", "Mul", "Add", "Sub", "Where", "Cast"];
    let computed = |v: ValueId| g.value(v).init.is_none();
    g.nodes().any(|(_, n)| {
        if n.op_type != "Softmax" || !n.is_onnx() {
            return false;
        }
        let mut frontier: Vec<ValueId> = n.input(0).into_iter().collect();
        for _ in 0..4 {
            let mut next = Vec::new();
            for v in frontier {
                let Some((p, _)) = g.value(v).producer else {
                    continue;
                };
                let p = g.node(p);
                if p.op_type == "MatMul" && p.inputs().iter().flatten().all(|&i| computed(i)) {
                    return true;
                }
                if BETWEEN.contains(&p.op_type.as_str()) {
                    next.extend(p.inputs().iter().flatten().copied());
                }
            }
            frontier = next;
        }
        false
    })
}

/// Ops worth quantizing whatever reads their output: onnxruntime runs
/// them on integer codes (writing codes, or floats: [`FLOAT_OUTPUT`]).
const KEEPS_INTEGER_KERNEL: &[&str] = &["Conv", "ConvTranspose", "MatMul", "Gemm"];

/// Ops onnxruntime runs on integer codes with a float output
/// (MatMulIntegerToFloat, QGemm without an output scale).
const FLOAT_OUTPUT: &[&str] = &["MatMul", "Gemm"];

/// Ops whose output holds (some of) their input's values: it is
/// quantized with its input's parameters.
const MOVES_DATA: &[&str] = &[
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Slice",
    "Split",
    "Gather",
    "GatherElements",
    "MaxPool",
    "Resize",
];

/// The input slots of `op` that carry data to quantize (the rest are
/// shapes, indices, scales).
fn data_slots(op: &str, inputs: usize) -> Vec<usize> {
    match op {
        "Conv" | "ConvTranspose" | "Gemm" => (0..inputs.min(3)).collect(),
        "MatMul" => vec![0, 1],
        "Add" | "Mul" | "Concat" => (0..inputs).collect(),
        "Where" => vec![1, 2],
        _ => vec![0],
    }
}

/// Activation codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codes {
    Int8,
    Uint8,
}

impl Codes {
    fn dtype(self) -> DataType {
        match self {
            Codes::Int8 => DataType::I8,
            Codes::Uint8 => DataType::U8,
        }
    }

    /// What code 0 of an unsigned range becomes.
    fn offset(self) -> i64 {
        match self {
            Codes::Int8 => -128,
            Codes::Uint8 => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct QdqSpec {
    pub codes: Codes,
    pub method: RangeMethod,
    pub ops: Vec<String>,
}

/// How a constant input is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum WeightKind {
    /// int8 symmetric, one scale per slice along the axis.
    PerChannel(usize),
    /// int32 at (input scale × weight scale) of the node's weight.
    Bias,
    PerTensor,
}

/// What the rewrite does, decided before calibration.
pub struct QdqPlan {
    pub nodes: Vec<NodeId>,
    /// Relu/Clip nodes folded into the quantization of their input.
    removable: Vec<NodeId>,
    /// Activations calibrated for their own range.
    pub ranged: Vec<ValueId>,
    /// Activations that take another's parameters.
    same_as: Vec<(ValueId, ValueId)>,
    weights: Vec<(NodeId, usize, WeightKind)>,
}

fn is_f32(graph: &Graph, v: ValueId) -> bool {
    value_type(graph, v).and_then(|t| t.dtype()) == Some(DataType::F32)
}

/// Picks the nodes and values to quantize among the nodes `chosen`
/// accepts; none that reads or writes a value of `kept` (but a matrix
/// product's float output: [`FLOAT_OUTPUT`]).
pub fn plan(
    graph: &Graph,
    spec: &QdqSpec,
    chosen: impl Fn(NodeId) -> bool,
    kept: &HashSet<ValueId>,
) -> QdqPlan {
    let ops: HashSet<&str> = spec.ops.iter().map(String::as_str).collect();
    let order = graph.topo_order().unwrap_or_else(|_| graph.node_ids());
    let uses = graph.use_counts();
    let mut nodes = Vec::new();
    let mut ranged: Vec<ValueId> = Vec::new();
    let mut same_as = Vec::new();
    let mut weights = Vec::new();
    let mut removable = Vec::new();
    let mut seen: HashSet<ValueId> = HashSet::new();
    let mut quantized_output: HashSet<ValueId> = HashSet::new();
    let masks = mask_carriers(graph, &order);
    let takes = |id: NodeId| {
        let node = graph.node(id);
        if !node.is_onnx() || !ops.contains(node.op_type.as_str()) || !chosen(id) {
            return false;
        }
        let op = node.op_type.as_str();
        // A matrix product or convolution whose input stays f32 still has
        // its weight quantized.
        let integer_kernel = KEEPS_INTEGER_KERNEL.contains(&op);
        let float_output = FLOAT_OUTPUT.contains(&op);
        let floats = data_slots(op, node.inputs().len())
            .iter()
            .filter_map(|&s| node.input(s))
            .all(|v| {
                is_f32(graph, v) && !masks.contains(&v) && (integer_kernel || !kept.contains(&v))
            });
        floats
            && node
                .outputs()
                .iter()
                .flatten()
                .all(|&v| is_f32(graph, v) && (float_output || !kept.contains(&v)))
    };
    let mut taken: HashSet<NodeId> = order.iter().copied().filter(|&id| takes(id)).collect();
    // Whether a quantized node reads `v` as data.
    let read_quantized = |taken: &HashSet<NodeId>, v: ValueId| {
        graph.consumers(v).iter().any(|&(reader, slot)| {
            taken.contains(&reader)
                && data_slots(
                    &graph.node(reader).op_type,
                    graph.node(reader).inputs().len(),
                )
                .contains(&slot)
        })
    };
    // An elementwise or pooling op gets an integer kernel only between
    // quantized neighbours (QLinearAdd reads and writes codes): one whose
    // output no quantized node reads would only round its inputs (a
    // residual Add before a LayerNormalization). Dropping one can strand
    // the op before it: last nodes first, each after all its readers.
    for &id in order.iter().rev() {
        let node = graph.node(id);
        let op = node.op_type.as_str();
        let stranded = taken.contains(&id)
            && !KEEPS_INTEGER_KERNEL.contains(&op)
            && !MOVES_DATA.contains(&op)
            && !node
                .outputs()
                .iter()
                .flatten()
                .any(|&y| read_quantized(&taken, y));
        if stranded {
            taken.remove(&id);
        }
    }
    let read_quantized = |v: ValueId| read_quantized(&taken, v);
    for id in order {
        if !taken.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        let op = node.op_type.as_str();
        let slots = data_slots(op, node.inputs().len());
        let x = node.input(0);
        // Relu/Clip on a quantized node's sole output: folded away.
        if matches!(op, "Relu" | "Clip")
            && x.is_some_and(|x| {
                quantized_output.contains(&x)
                    && uses.get(x) == 1
                    && !graph.outputs.contains(&x)
                    && !graph.outputs.contains(&node.output(0).unwrap_or(x))
            })
        {
            removable.push(id);
            let y = node.output(0).expect("Relu has an output");
            ranged.push(y);
            seen.insert(y);
            continue;
        }
        nodes.push(id);
        for &slot in &slots {
            let Some(v) = node.input(slot) else { continue };
            if constant(graph, v).is_some() {
                let kind = weight_kind(graph, id, slot);
                weights.push((id, slot, kind));
            } else if !kept.contains(&v) && seen.insert(v) {
                ranged.push(v);
            }
        }
        for &y in node.outputs().iter().flatten() {
            // A matrix product whose output no quantized node reads keeps
            // it f32: onnxruntime runs it as MatMulIntegerToFloat or QGemm
            // with a float output, and the output's own rounding is saved.
            if FLOAT_OUTPUT.contains(&op) && (!read_quantized(y) || kept.contains(&y)) {
                continue;
            }
            quantized_output.insert(y);
            if !seen.insert(y) {
                continue;
            }
            match x {
                Some(x) if MOVES_DATA.contains(&op) && constant(graph, x).is_none() => {
                    same_as.push((y, x))
                }
                _ => ranged.push(y),
            }
        }
    }
    // A value removed Relus read is the Relu's output under another
    // name: calibrated as the output.
    ranged.retain(|v| {
        !removable
            .iter()
            .any(|&r| graph.node(r).input(0) == Some(*v))
    });
    QdqPlan {
        nodes,
        removable,
        ranged,
        same_as,
        weights,
    }
}

/// A float constant holding a value this large (or infinite) stands in
/// for −∞ or +∞: an attention mask's −3.4e38 or −10000.
const INFINITY_STAND_IN: f32 = 1e4;

/// Ops whose output is bounded whatever their input: a mask's stand-in
/// for −∞ does not pass them (Softmax turns it into 0).
const SQUASHES: &[&str] = &["Softmax", "Sigmoid", "Tanh", "Erf", "Exp", "Relu", "Clip"];

/// The values that may carry a stand-in for ±∞: made, through any ops
/// but [`SQUASHES`], from a small float constant holding one. They stay
/// f32: calibration samples may hold no masked position at all, and a
/// range without the stand-in would clip it to an ordinary value.
fn mask_carriers(graph: &Graph, order: &[NodeId]) -> HashSet<ValueId> {
    let holds_stand_in = |v: ValueId| {
        constant(graph, v).is_some_and(|t| {
            t.dtype.is_float()
                && t.dims.iter().product::<i64>() <= 1024
                && t.to_f32_vec()
                    .is_ok_and(|x| x.iter().any(|x| x.abs() >= INFINITY_STAND_IN || x.is_nan()))
        })
    };
    let mut carriers = HashSet::new();
    for &id in order {
        let node = graph.node(id);
        if SQUASHES.contains(&node.op_type.as_str())
            || KEEPS_INTEGER_KERNEL.contains(&node.op_type.as_str())
        {
            continue;
        }
        if node
            .inputs()
            .iter()
            .flatten()
            .any(|&v| carriers.contains(&v) || holds_stand_in(v))
        {
            carriers.extend(node.outputs().iter().flatten().copied());
        }
    }
    carriers
}

/// A plan that quantizes only the constant weights of the matrix
/// products and convolutions `chosen` accepts (per output channel), for a
/// graph no calibration run sees: every activation stays f32.
pub fn weights_plan(graph: &Graph, chosen: impl Fn(NodeId) -> bool) -> QdqPlan {
    let mut weights = Vec::new();
    let mut nodes = Vec::new();
    for (id, node) in graph.nodes() {
        let op = node.op_type.as_str();
        if !node.is_onnx() || !KEEPS_INTEGER_KERNEL.contains(&op) || !chosen(id) {
            continue;
        }
        let before = weights.len();
        for slot in data_slots(op, node.inputs().len()) {
            let kind = weight_kind(graph, id, slot);
            let is_weight = node
                .input(slot)
                .and_then(|v| constant(graph, v))
                .is_some_and(|t| t.dtype == DataType::F32);
            if is_weight && matches!(kind, WeightKind::PerChannel(_)) {
                weights.push((id, slot, kind));
            }
        }
        if weights.len() > before {
            nodes.push(id);
        }
    }
    QdqPlan {
        nodes,
        removable: Vec::new(),
        ranged: Vec::new(),
        same_as: Vec::new(),
        weights,
    }
}

fn weight_kind(graph: &Graph, id: NodeId, slot: usize) -> WeightKind {
    let node = graph.node(id);
    let rank = node
        .input(slot)
        .and_then(|v| value_type(graph, v))
        .and_then(|t| t.shape().map(|s| s.len()));
    match (node.op_type.as_str(), slot, rank) {
        ("Conv", 1, _) => WeightKind::PerChannel(0),
        ("ConvTranspose", 1, _) => WeightKind::PerChannel(1),
        ("Gemm", 1, Some(2)) => WeightKind::PerChannel(if node.int_attr("transB", 0) == 1 {
            0
        } else {
            1
        }),
        ("MatMul", 1, Some(2)) => WeightKind::PerChannel(1),
        ("Conv" | "ConvTranspose" | "Gemm", 2, Some(1)) => WeightKind::Bias,
        _ => WeightKind::PerTensor,
    }
}

/// Scale and zero point of each quantized activation.
type Params = HashMap<ValueId, (f32, i64)>;

/// An activation whose middle 99% spans fewer steps than this stays f32:
/// its range is set by outliers (an attention mask's −∞ stand-ins) and
/// its codes would lose the values that matter.
const MIN_BULK_STEPS: f64 = 16.0;

/// An activation whose values fall in fewer codes than this (each code
/// holding 0.1% of them) stays f32: its range is set by a second cluster
/// far away (attention scores plus a mask's −3.4e38), whose rounding
/// would merge every value of the first.
const MIN_CODES_IN_USE: usize = 8;

/// What [`rewrite`] did.
pub struct QdqOutcome {
    pub activations: usize,
    pub weights: usize,
}

/// The ranged activations whose histogram says 8-bit codes would lose
/// them, with why: they stay f32, and so do the nodes around them
/// ([`plan`] again with them kept).
pub fn unquantizable(
    graph: &Graph,
    histograms: &HashMap<ValueId, Histogram>,
    spec: &QdqSpec,
) -> Vec<(ValueId, String)> {
    let mut kept: Vec<(ValueId, String)> = histograms
        .iter()
        .filter(|(_, h)| h.count > 0)
        .filter_map(|(&v, h)| {
            let (lo, hi) = h.range(spec.method, 255);
            if hi <= lo {
                return None;
            }
            let (scale, _) = scale_and_zero(lo, hi, 255);
            let steps = h.bulk(0.005) / scale;
            let in_use = h.codes_in_use(lo, hi, 255, 0.001);
            let name = &graph.value(v).name;
            if steps < MIN_BULK_STEPS {
                Some(format!(
                    "{name}: range {lo:.3e}..{hi:.3e} leaves its middle 99% {steps:.1} steps"
                ))
            } else if in_use < MIN_CODES_IN_USE {
                Some(format!(
                    "{name}: range {lo:.3e}..{hi:.3e} puts its values in {in_use} codes"
                ))
            } else {
                None
            }
            .map(|why| (v, why))
        })
        .collect();
    kept.sort_by_key(|(v, _)| v.index());
    kept
}

/// Rewrites the planned nodes, their activations ranged by
/// `histograms`; a ranged value without one stays f32.
pub fn rewrite(
    graph: &mut Graph,
    plan: &QdqPlan,
    histograms: &HashMap<ValueId, Histogram>,
    spec: &QdqSpec,
) -> Result<QdqOutcome, IrError> {
    let mut params: Params = HashMap::new();
    for v in &plan.ranged {
        let Some(h) = histograms.get(v) else { continue };
        let (lo, hi) = h.range(spec.method, 255);
        let (scale, zero) = scale_and_zero(lo, hi, 255);
        params.insert(*v, (scale as f32, zero as i64 + spec.codes.offset()));
    }
    for &(y, x) in &plan.same_as {
        if let Some(&p) = params.get(&x) {
            params.insert(y, p);
        }
    }
    // Folded Relu/Clip: their input is their output from now on.
    // (Only where the output is quantized: its codes do the clamping.)
    for &r in &plan.removable {
        let n = graph.node(r);
        let (x, y) = (n.input(0).expect("checked"), n.output(0).expect("checked"));
        let Some(p) = params.remove(&y) else { continue };
        params.insert(x, p);
        graph.replace_all_uses(y, x);
        graph.remove_node(r);
    }
    let weights = quantize_weights(graph, plan, &params)?;
    let mut readers: HashMap<ValueId, Vec<(NodeId, usize)>> = HashMap::new();
    for (id, node) in graph.nodes() {
        for (slot, v) in node.inputs().iter().enumerate() {
            if let Some(v) = v {
                readers.entry(*v).or_default().push((id, slot));
            }
        }
    }
    let mut activations: Vec<(&ValueId, &(f32, i64))> = params.iter().collect();
    activations.sort_by_key(|(v, _)| v.index());
    for (&v, &(scale, zero)) in &activations {
        let name = graph.value(v).name.clone();
        let mut patch = Patch::new(graph, &name);
        let scale = patch.initializer_named("scale", Tensor::from_f32(vec![], &[scale]));
        let zero = patch.initializer_named(
            "zero_point",
            Tensor::from_ints(spec.codes.dtype(), vec![], &[zero])?,
        );
        let q = patch.node(
            "QuantizeLinear",
            &[Some(v), Some(scale), Some(zero)],
            Vec::new(),
        );
        let dq = patch.node(
            "DequantizeLinear",
            &[Some(q), Some(scale), Some(zero)],
            Vec::new(),
        );
        for &(node, slot) in readers.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
            graph.set_input(node, slot, Some(dq));
        }
    }
    Ok(QdqOutcome {
        activations: activations.len(),
        weights,
    })
}

/// Replaces each planned constant input by the DequantizeLinear of its
/// codes.
fn quantize_weights(graph: &mut Graph, plan: &QdqPlan, params: &Params) -> Result<usize, IrError> {
    // Per-channel weight scales, for the biases of the same node.
    let mut channel_scales: HashMap<NodeId, Vec<f32>> = HashMap::new();
    let mut done: HashMap<(ValueId, WeightKind), ValueId> = HashMap::new();
    let mut ordered = plan.weights.clone();
    // Weights before biases.
    ordered.sort_by_key(|w| w.2 == WeightKind::Bias);
    let mut count = 0;
    for (node, slot, kind) in ordered {
        let Some(v) = graph.node(node).input(slot) else {
            continue;
        };
        // A weight several nodes share is quantized once (biases never
        // are shared: their scale is their node's).
        if let Some(&dq) = done.get(&(v, kind)) {
            graph.set_input(node, slot, Some(dq));
            continue;
        }
        let t = constant(graph, v).expect("planned as constant").clone();
        if t.dtype != DataType::F32 {
            continue;
        }
        let values = t.to_f32_vec()?;
        let name = graph.value(v).name.clone();
        let bias_scales = match kind {
            WeightKind::Bias => {
                let input = graph.node(node).input(0).and_then(|x| params.get(&x));
                match (input, channel_scales.get(&node)) {
                    (Some(&(sx, _)), Some(sw)) if sw.len() == values.len() => {
                        Some(sw.iter().map(|&s| s * sx).collect::<Vec<f32>>())
                    }
                    // The input or weight was not quantized: the bias stays.
                    _ => continue,
                }
            }
            _ => None,
        };
        let mut patch = Patch::new(graph, &name);
        let (codes, scales, axis) = match kind {
            WeightKind::PerChannel(axis) => {
                let (codes, scales) = per_channel(&values, &t.dims, axis);
                (codes, scales, Some(axis))
            }
            WeightKind::PerTensor => {
                let (codes, scales) = per_channel(&values, &[values.len() as i64], usize::MAX);
                (codes, scales, None)
            }
            WeightKind::Bias => {
                let scales = bias_scales.expect("set above");
                let codes: Vec<i64> = values
                    .iter()
                    .zip(&scales)
                    .map(|(&b, &s)| {
                        let s = if s > 0.0 { s as f64 } else { 1.0 };
                        (b as f64 / s)
                            .round()
                            .clamp(i32::MIN as f64, i32::MAX as f64) as i64
                    })
                    .collect();
                let dims = t.dims.clone();
                let q = patch.initializer_named(
                    "quantized",
                    Tensor::from_ints(DataType::I32, dims, &codes)?,
                );
                let s = patch.initializer_named(
                    "scale",
                    Tensor::from_f32(vec![scales.len() as i64], &scales),
                );
                let dq = patch.node(
                    "DequantizeLinear",
                    &[Some(q), Some(s)],
                    vec![Attribute::new("axis", AttrValue::Int(0))],
                );
                graph.set_input(node, slot, Some(dq));
                count += 1;
                continue;
            }
        };
        if matches!(kind, WeightKind::PerChannel(_)) {
            channel_scales.insert(node, scales.clone());
        }
        let q = patch.initializer_named(
            "quantized",
            Tensor::from_ints(DataType::I8, t.dims.clone(), &codes)?,
        );
        let scale_dims = match axis {
            Some(_) => vec![scales.len() as i64],
            None => vec![],
        };
        let s = patch.initializer_named("scale", Tensor::from_f32(scale_dims.clone(), &scales));
        let z = patch.initializer_named(
            "zero_point",
            Tensor::from_ints(DataType::I8, scale_dims, &vec![0; scales.len()])?,
        );
        let attrs = axis
            .map(|a| vec![Attribute::new("axis", AttrValue::Int(a as i64))])
            .unwrap_or_default();
        let dq = patch.node("DequantizeLinear", &[Some(q), Some(s), Some(z)], attrs);
        graph.set_input(node, slot, Some(dq));
        done.insert((v, kind), dq);
        count += 1;
    }
    Ok(count)
}

/// Symmetric int8 codes of `values` (dims `dims`), one scale per slice
/// along `axis` (`usize::MAX`: one for all), each the error-least of the
/// clipped ranges [`Format`] tries.
fn per_channel(values: &[f32], dims: &[i64], axis: usize) -> (Vec<i64>, Vec<f32>) {
    let format = Format {
        bits: 8,
        block: values.len().max(1),
        symmetric: true,
    };
    let (outer, channels, inner) = if axis == usize::MAX {
        (1, 1, values.len())
    } else {
        let d: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        (
            d[..axis].iter().product::<usize>(),
            d[axis],
            d[axis + 1..].iter().product::<usize>(),
        )
    };
    let at = |o: usize, c: usize, i: usize| (o * channels + c) * inner + i;
    let mut codes = vec![0i64; values.len()];
    let mut scales = vec![0f32; channels];
    for c in 0..channels {
        let slice: Vec<f64> = (0..outer)
            .flat_map(|o| (0..inner).map(move |i| (o, i)))
            .map(|(o, i)| values[at(o, c, i)] as f64)
            .collect();
        let (scale, _) = format.fit(&slice);
        let scale = scale as f32;
        scales[c] = scale;
        for o in 0..outer {
            for i in 0..inner {
                let w = values[at(o, c, i)] as f64;
                codes[at(o, c, i)] = (w / scale as f64).round().clamp(-127.0, 127.0) as i64;
            }
        }
    }
    (codes, scales)
}
