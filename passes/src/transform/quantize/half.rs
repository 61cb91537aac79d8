//! fp16 and bf16 regions: the chosen nodes compute in half precision,
//! their constant inputs stored in it, with a Cast wherever a value
//! crosses the region's edge (into it from f32, out of it to an f32
//! reader or a graph output, which keeps its name and type).
//!
//! A node joins a region only when its op is one whose float inputs and
//! outputs all share one type ([`HALF_OPS`], plus the ops of [`KEPT`]
//! when `keep=` lets them), every f32 value it reads and writes has a
//! known type, every constant it reads survives the conversion (a value
//! beyond the type's range, or a small nonzero value of a short constant
//! such as a norm's epsilon flushed to zero, keeps the node f32), and no
//! subgraph captures its output. The nodes left out are listed.
//!
//! Preserves: the model's function up to the rounding of the region's
//! weights and activations.

use sculpt_ir::ops::infer::{constant, value_type};
use sculpt_ir::rewrite::{cast_to, Patch};
use sculpt_ir::{DataType, Graph, IrError, NodeId, Tensor, Type, ValueId};
use std::collections::{HashMap, HashSet};

/// Ops whose float inputs (see [`data_slots`]) and outputs share one type.
const HALF_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Ceil",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Cos",
    "DepthToSpace",
    "Div",
    "Dropout",
    "Elu",
    "Erf",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Pad",
    "PRelu",
    "Relu",
    "Reshape",
    "Resize",
    "Selu",
    "Sigmoid",
    "Sin",
    "Slice",
    "Softplus",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Ops that could compute in half precision but lose accuracy there (long
/// reductions, exponentials, normalizations): kept f32 unless `keep=`
/// says otherwise.
pub const KEPT: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceMax",
    "ReduceMin",
    "Pow",
    "Exp",
    "Log",
];

/// The input slots of `op` holding its float data (the rest are shapes,
/// indices, scales, or conditions).
fn data_slots(op: &str, inputs: usize) -> Vec<usize> {
    match op {
        "Resize" => vec![0],
        "Where" => vec![1, 2],
        _ => (0..inputs).collect(),
    }
}

/// The half type's largest finite value and smallest positive one.
fn limits(dtype: DataType) -> (f64, f64) {
    if dtype == DataType::BF16 {
        (3.389e38, 9.2e-41)
    } else {
        (65504.0, 5.97e-8)
    }
}

/// Why constant `t` cannot be written in `dtype`, if it cannot.
fn lost_in(t: &Tensor, dtype: DataType) -> Option<String> {
    let values = t.to_f64_vec().ok()?;
    let (max, min) = limits(dtype);
    if let Some(v) = values.iter().find(|v| v.is_finite() && v.abs() > max) {
        return Some(format!("constant {v:e} overflows"));
    }
    if values.len() <= 16 {
        if let Some(v) = values.iter().find(|v| **v != 0.0 && v.abs() < min) {
            return Some(format!("constant {v:e} flushes to zero"));
        }
    }
    None
}

fn is_f32(graph: &Graph, v: ValueId) -> bool {
    value_type(graph, v).and_then(|t| t.dtype()) == Some(DataType::F32)
}

/// What [`convert`] did.
#[derive(Default)]
pub struct HalfOutcome {
    pub nodes: usize,
    pub casts: usize,
    /// Chosen nodes left f32, with the reason.
    pub kept: Vec<(String, String)>,
}

impl HalfOutcome {
    /// Adds what converting another graph did.
    pub fn add(&mut self, other: HalfOutcome) {
        self.nodes += other.nodes;
        self.casts += other.casts;
        self.kept.extend(other.kept);
    }
}

/// The nodes of the region (those `chosen` accepts that compute in half
/// precision), and those left f32 with why.
#[allow(clippy::type_complexity)]
fn choose_region(
    graph: &Graph,
    dtype: DataType,
    keep: &[String],
    chosen: impl Fn(NodeId) -> bool,
) -> (HashSet<NodeId>, Vec<(String, String)>) {
    let captured: HashSet<String> = graph
        .nodes()
        .flat_map(|(_, n)| {
            n.subgraphs()
                .flat_map(|g| g.captured_names())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut region: HashSet<NodeId> = HashSet::new();
    let mut kept = Vec::new();
    for (id, n) in graph.nodes() {
        if !chosen(id) || !n.is_onnx() {
            continue;
        }
        let op = n.op_type.as_str();
        if keep.iter().any(|k| k == op) {
            kept.push((n.display_name().to_string(), format!("{op} is kept f32")));
            continue;
        }
        if !HALF_OPS.contains(&op) && !KEPT.contains(&op) {
            continue;
        }
        let slots = data_slots(op, n.inputs().len());
        let untyped = slots
            .iter()
            .filter_map(|&s| n.input(s))
            .any(|v| value_type(graph, v).and_then(|t| t.dtype()).is_none());
        let inputs: Vec<ValueId> = slots
            .iter()
            .filter_map(|&s| n.input(s))
            .filter(|&v| is_f32(graph, v))
            .collect();
        let outputs: Vec<ValueId> = n.outputs().iter().flatten().copied().collect();
        let any_f32_output = outputs.iter().any(|&v| is_f32(graph, v));
        if inputs.is_empty() && !any_f32_output {
            continue;
        }
        let why = if untyped || inputs.is_empty() || !outputs.iter().all(|&v| is_f32(graph, v)) {
            Some("its inputs and outputs are not all f32 of known type".to_string())
        } else if outputs
            .iter()
            .any(|&v| captured.contains(&graph.value(v).name))
        {
            Some("a subgraph reads its output".to_string())
        } else {
            inputs
                .iter()
                .filter_map(|&v| constant(graph, v))
                .find_map(|t| lost_in(t, dtype))
        };
        match why {
            Some(why) => kept.push((n.display_name().to_string(), why)),
            None => {
                region.insert(id);
            }
        }
    }
    (region, kept)
}

/// Puts the nodes `chosen` accepts (less the op types in `keep`) into
/// `dtype` (F16 or BF16) regions.
pub fn convert(
    graph: &mut Graph,
    dtype: DataType,
    keep: &[String],
    chosen: impl Fn(NodeId) -> bool,
) -> Result<HalfOutcome, IrError> {
    let (region, kept) = choose_region(graph, dtype, keep, chosen);
    // Every reader of every value, read once.
    let mut readers: HashMap<ValueId, Vec<(NodeId, usize)>> = HashMap::new();
    for (id, n) in graph.nodes() {
        for (slot, v) in n.inputs().iter().enumerate() {
            if let Some(v) = v {
                readers.entry(*v).or_default().push((id, slot));
            }
        }
    }
    let mut order: Vec<NodeId> = region.iter().copied().collect();
    order.sort_by_key(|id| id.index());
    let mut casts = 0;
    // Region outputs: half from now on; f32 readers read a Cast back.
    for &id in &order {
        let outputs: Vec<ValueId> = graph.node(id).outputs().iter().flatten().copied().collect();
        for v in outputs {
            let shape = value_type(graph, v).and_then(|t| t.shape().map(<[_]>::to_vec));
            graph.value_mut(v).ty = Some(Type::Tensor { dtype, shape });
            let outside: Vec<(NodeId, usize)> = readers
                .get(&v)
                .map(|r| {
                    r.iter()
                        .filter(|(n, _)| !region.contains(n))
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            let is_output = graph.outputs.contains(&v);
            if outside.is_empty() && !is_output {
                continue;
            }
            let name = graph.value(v).name.clone();
            let mut patch = Patch::new(graph, &name);
            let back = patch.node("Cast", &[Some(v)], vec![cast_to(DataType::F32)]);
            drop(patch);
            casts += 1;
            for (reader, slot) in outside {
                graph.set_input(reader, slot, Some(back));
            }
            if is_output {
                let fresh = graph.value(back).name.clone();
                graph.value_mut(back).name = name;
                graph.value_mut(v).name = fresh;
                for o in graph.outputs.iter_mut().filter(|o| **o == v) {
                    *o = back;
                }
            }
        }
    }
    // Region inputs from f32: converted constants, or one Cast per value.
    let mut converted: HashMap<ValueId, ValueId> = HashMap::new();
    for &id in &order {
        let n = graph.node(id);
        let slots = data_slots(&n.op_type, n.inputs().len());
        for slot in slots {
            let Some(v) = graph.node(id).input(slot) else {
                continue;
            };
            let produced_inside = graph
                .value(v)
                .producer
                .is_some_and(|(p, _)| region.contains(&p));
            if produced_inside || !is_f32(graph, v) {
                continue;
            }
            let half = match converted.get(&v) {
                Some(&h) => h,
                None => {
                    let name = graph.value(v).name.clone();
                    let mut patch = Patch::new(graph, &name);
                    let h = match constant(patch.graph, v) {
                        Some(t) => {
                            let values = t.to_f64_vec()?;
                            let t = Tensor::from_floats(dtype, t.dims.clone(), &values)?;
                            patch.initializer_named(dtype_suffix(dtype), t)
                        }
                        None => {
                            casts += 1;
                            patch.node("Cast", &[Some(v)], vec![cast_to(dtype)])
                        }
                    };
                    converted.insert(v, h);
                    h
                }
            };
            graph.set_input(id, slot, Some(half));
        }
    }
    Ok(HalfOutcome {
        nodes: order.len(),
        casts,
        kept,
    })
}

/// `half=weights`: the f32 constants (more than 16 elements) that the
/// nodes `chosen` accepts read are stored in `dtype` and cast back to f32
/// where they are read, so the file shrinks and every op still computes
/// in f32 (for runtimes without half-precision kernels). Returns how many
/// constants were, and the ones kept f32 with why.
pub fn store_weights(
    graph: &mut Graph,
    dtype: DataType,
    chosen: impl Fn(NodeId) -> bool,
) -> Result<(usize, Vec<(String, String)>), IrError> {
    let mut stored: HashMap<ValueId, ValueId> = HashMap::new();
    let mut kept = Vec::new();
    let mut uses = Vec::new();
    for (id, n) in graph.nodes() {
        if !chosen(id) {
            continue;
        }
        for (slot, v) in n.inputs().iter().enumerate() {
            let Some(v) = *v else { continue };
            let Some(t) = constant(graph, v) else {
                continue;
            };
            if t.dtype != DataType::F32 || t.element_count().is_none_or(|c| c <= 16) {
                continue;
            }
            match lost_in(t, dtype) {
                Some(why) => kept.push((graph.value(v).name.clone(), why)),
                None => uses.push((id, slot, v)),
            }
        }
    }
    for (id, slot, v) in uses {
        let widened = match stored.get(&v) {
            Some(&w) => w,
            None => {
                let t = constant(graph, v).expect("a constant").clone();
                let name = graph.value(v).name.clone();
                let mut patch = Patch::new(graph, &name);
                let half = Tensor::from_floats(dtype, t.dims.clone(), &t.to_f64_vec()?)?;
                let half = patch.initializer_named(dtype_suffix(dtype), half);
                let w = patch.node("Cast", &[Some(half)], vec![cast_to(DataType::F32)]);
                stored.insert(v, w);
                w
            }
        };
        graph.set_input(id, slot, Some(widened));
    }
    Ok((stored.len(), kept))
}

fn dtype_suffix(dtype: DataType) -> &'static str {
    if dtype == DataType::BF16 {
        "bf16"
    } else {
        "fp16"
    }
}
