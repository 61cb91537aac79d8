//! Writing an FFN as routed experts. The FFN's input is flattened to
//! tokens `X [T, d]`, the router scores `X·R + r` pick each token's top k
//! experts (a mask: the scores at or above the k-th largest), and:
//!
//! - `form=onnx` (standard ops, opset 18): per expert, the tokens that
//!   chose it are gathered (`NonZero`, `GatherND`) and its slice of the
//!   FFN computed (the activation's own nodes copied); all experts' rows
//!   are then added back at once (`ScatterND` with `reduction=add`);
//! - `form=ort`: onnxruntime's `com.microsoft::MoE`, the router logits 0
//!   for the chosen experts and -10⁴ for the rest, so that its softmax
//!   weighs each chosen expert 1/k, which the experts' down projections
//!   (scaled by k) undo.
//!
//! Around both: the down projection's bias, the always-on shared neurons
//! (computed for every token), and with `skip=mean` each skipped expert's
//! mean output `(1 − mask)·M`. The result takes the FFN output's place.

use super::find::Ffn;
use faer::Mat;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::{cast_to, Patch};
use sculpt_ir::{AttrValue, Attribute, DataType, Graph, IrError, Tensor, ValueId};
use std::collections::HashMap;

crate::choice! {
    /// How the experts are written.
    pub enum Form {
        /// Standard ops: TopK, per expert its tokens gathered, computed, scattered back.
        Onnx = "onnx",
        /// onnxruntime's `com.microsoft::MoE`.
        Ort = "ort",
    }
}

/// One FFN's factorization, decided.
pub struct Plan {
    pub ffn: Ffn,
    pub groups: Vec<Vec<usize>>,
    /// Neurons every token computes.
    pub shared: Vec<usize>,
    /// `[d + 1, E]`: the router's weights and (last row) bias.
    pub router: Mat<f64>,
    /// `[E, out]`: each expert's mean output, added when it is skipped.
    pub means: Option<Mat<f64>>,
    pub k: usize,
}

/// The FFN's weights as matrices.
#[derive(Clone)]
pub struct Weights {
    pub up: Mat<f64>,
    pub up_bias: Vec<f64>,
    pub gate: Option<(Mat<f64>, Vec<f64>)>,
    pub down: Mat<f64>,
    pub down_bias: Vec<f64>,
}

impl Weights {
    pub fn read(graph: &Graph, ffn: &Ffn) -> Result<Weights, IrError> {
        let matrix = |s: &crate::linear::LinearSite| -> Result<(Mat<f64>, Vec<f64>), IrError> {
            let w = s.weights(graph)?.remove(0);
            let b = s.bias(graph)?.unwrap_or_else(|| vec![0.0; s.n]);
            Ok((w, b))
        };
        let (up, up_bias) = matrix(&ffn.up)?;
        let gate = ffn.gate.as_ref().map(matrix).transpose()?;
        let (down, down_bias) = matrix(&ffn.down)?;
        Ok(Weights {
            up,
            up_bias,
            gate,
            down,
            down_bias,
        })
    }
}

fn f32_tensor(dims: Vec<i64>, values: impl Iterator<Item = f64>) -> Tensor {
    let v: Vec<f32> = values.map(|x| x as f32).collect();
    Tensor::from_f32(dims, &v)
}

/// Columns `cols` of `m` as a `[rows, cols]` f32 initializer.
fn columns(patch: &mut Patch<'_>, m: &Mat<f64>, cols: &[usize], scale: f64) -> ValueId {
    let t = f32_tensor(
        vec![m.nrows() as i64, cols.len() as i64],
        (0..m.nrows()).flat_map(|i| cols.iter().map(move |&j| m[(i, j)] * scale)),
    );
    patch.initializer(t)
}

/// Rows `rows` of `m` as a `[rows, cols]` f32 initializer.
fn rows(patch: &mut Patch<'_>, m: &Mat<f64>, rows: &[usize], scale: f64) -> ValueId {
    let t = f32_tensor(
        vec![rows.len() as i64, m.ncols() as i64],
        rows.iter()
            .flat_map(|&i| (0..m.ncols()).map(move |j| m[(i, j)] * scale)),
    );
    patch.initializer(t)
}

fn vector(patch: &mut Patch<'_>, v: &[f64], at: &[usize]) -> ValueId {
    patch.initializer(f32_tensor(vec![at.len() as i64], at.iter().map(|&i| v[i])))
}

/// The activation's nodes copied after `pre` (the activated projection's
/// output for `neurons`): constants of one element are shared, per-neuron
/// ones sliced. Returns the copy of the activation's output.
fn copy_chain(
    patch: &mut Patch<'_>,
    ffn: &Ffn,
    pre: ValueId,
    neurons: &[usize],
) -> Result<ValueId, IrError> {
    let width = ffn.width();
    let mut map: HashMap<ValueId, ValueId> = HashMap::from([(ffn.activated_site().output, pre)]);
    for &id in &ffn.chain {
        let node = patch.graph.node(id).clone();
        let mut inputs = Vec::new();
        for v in node.inputs() {
            let Some(v) = *v else {
                inputs.push(None);
                continue;
            };
            if let Some(&m) = map.get(&v) {
                inputs.push(Some(m));
                continue;
            }
            let t = constant(patch.graph, v).cloned().ok_or_else(|| {
                IrError::node(
                    &node,
                    "moe: an activation input is neither the FFN's nor a constant",
                )
            })?;
            let count = t.element_count().unwrap_or(0);
            if count == 1 {
                inputs.push(Some(v));
            } else if t.dims.last() == Some(&(width as i64)) && count as usize == width {
                let values = t.to_f64_vec()?;
                let sliced = Tensor::from_floats(
                    t.dtype,
                    vec![neurons.len() as i64],
                    &neurons.iter().map(|&j| values[j]).collect::<Vec<_>>(),
                )?;
                inputs.push(Some(patch.initializer(sliced)));
            } else {
                return Err(IrError::node(
                    &node,
                    "moe: an activation constant is neither a scalar nor one value per neuron",
                ));
            }
        }
        let out = patch.node(&node.op_type, &inputs, node.attributes.clone());
        map.insert(node.output(0).expect("one output"), out);
    }
    map.get(&ffn.activated).copied().ok_or_else(|| {
        IrError::Invalid(format!(
            "moe: {}: the activation's output was not copied",
            ffn.name()
        ))
    })
}

/// The FFN restricted to `neurons`, for token rows `x` `[n, d]`, without
/// the down projection's bias; the down weights scaled by `scale`.
fn slice_output(
    patch: &mut Patch<'_>,
    plan: &Plan,
    w: &Weights,
    x: ValueId,
    neurons: &[usize],
    scale: f64,
) -> Result<ValueId, IrError> {
    let ffn = &plan.ffn;
    let project = |patch: &mut Patch<'_>, m: &Mat<f64>, b: &[f64]| {
        let wv = columns(patch, m, neurons, 1.0);
        let bv = vector(patch, b, neurons);
        patch.node("Gemm", &[Some(x), Some(wv), Some(bv)], vec![])
    };
    let hidden = match &w.gate {
        None => {
            let pre = project(patch, &w.up, &w.up_bias);
            copy_chain(patch, ffn, pre, neurons)?
        }
        Some((g, gb)) => {
            let pre = project(patch, g, gb);
            let act = copy_chain(patch, ffn, pre, neurons)?;
            let up = project(patch, &w.up, &w.up_bias);
            patch.node("Mul", &[Some(act), Some(up)], vec![])
        }
    };
    let down = rows(patch, &w.down, neurons, scale);
    Ok(patch.node("MatMul", &[Some(hidden), Some(down)], vec![]))
}

/// `op` applied element-wise in f64 (the chain's ops; constants are
/// scalars here), `None` for ops this does not evaluate.
fn apply(node: &sculpt_ir::Node, a: f64, b: Option<f64>) -> Option<f64> {
    let alpha = |default: f64| node.float_attr("alpha", default);
    Some(match (node.op_type.as_str(), b) {
        ("Add", Some(b)) => a + b,
        ("Sub", Some(b)) => a - b,
        ("Mul", Some(b)) => a * b,
        ("Div", Some(b)) => a / b,
        ("Pow", Some(b)) => a.powf(b),
        ("Relu", None) => a.max(0.0),
        ("Neg", None) => -a,
        ("Identity", None) => a,
        ("Sqrt", None) => a.sqrt(),
        ("Sigmoid", None) => 1.0 / (1.0 + (-a).exp()),
        ("Tanh", None) => a.tanh(),
        ("Erf", None) => erf(a),
        ("Softplus", None) => a.exp().ln_1p(),
        ("LeakyRelu", None) => {
            if a < 0.0 {
                alpha(0.01) * a
            } else {
                a
            }
        }
        ("Elu", None) => {
            if a < 0.0 {
                alpha(1.0) * (a.exp() - 1.0)
            } else {
                a
            }
        }
        ("HardSigmoid", None) => (alpha(0.2) * a + node.float_attr("beta", 0.5)).clamp(0.0, 1.0),
        ("HardSwish", None) => a * (a / 6.0 + 0.5).clamp(0.0, 1.0),
        ("Gelu", None) => match node.str_attr("approximate") {
            Some("tanh") => {
                0.5 * a
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3))).tanh())
            }
            _ => 0.5 * a * (1.0 + erf(a / std::f64::consts::SQRT_2)),
        },
        _ => return None,
    })
}

/// How onnxruntime's MoE op computes an FFN's activation: its
/// `activation_type`, and whether that is exact (false for an exact, erf
/// GELU, which the op computes with the tanh approximation).
#[derive(Clone, Copy, Debug)]
pub struct OrtActivation {
    pub name: &'static str,
    pub exact: bool,
}

/// A candidate activation: its `activation_type`, exactness, function.
type Candidate = (&'static str, bool, fn(f64) -> f64);

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// The activation onnxruntime's MoE computes for `ffn`, or why it has
/// none: the chain is evaluated on sample points and compared with the
/// op's activations (ReLU, SiLU, tanh GELU; an erf GELU as the tanh one;
/// a SiLU-gated FFN as SwiGLU).
pub fn ort_activation(graph: &Graph, ffn: &Ffn) -> Result<OrtActivation, String> {
    let points: Vec<f64> = (-40..=40).map(|i| i as f64 / 8.0).collect();
    let unknown = |node: &sculpt_ir::Node| {
        format!(
            "its activation (node {}, {}) could not be evaluated",
            node.name, node.op_type
        )
    };
    let got: Vec<f64> = points
        .iter()
        .map(|&p| {
            let mut values: HashMap<ValueId, f64> =
                HashMap::from([(ffn.activated_site().output, p)]);
            for &id in &ffn.chain {
                let node = graph.node(id);
                let args: Vec<f64> = node
                    .inputs()
                    .iter()
                    .flatten()
                    .map(|&v| {
                        values.get(&v).copied().or_else(|| {
                            constant(graph, v)
                                .filter(|t| t.element_count() == Some(1))
                                .and_then(|t| t.to_f64_vec().ok())
                                .map(|v| v[0])
                        })
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| unknown(node))?;
                let y = apply(node, args[0], args.get(1).copied()).ok_or_else(|| unknown(node))?;
                values.insert(node.output(0).expect("one output"), y);
            }
            values
                .get(&ffn.activated)
                .copied()
                .ok_or_else(|| unknown(graph.node(ffn.down.node)))
        })
        .collect::<Result<_, _>>()?;
    let tanh_gelu = |x: f64| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())
    };
    let candidates: Vec<Candidate> = if ffn.gate.is_some() {
        vec![("swiglu", true, silu)]
    } else {
        vec![
            ("relu", true, |x| x.max(0.0)),
            ("silu", true, silu),
            ("gelu", true, tanh_gelu),
            ("gelu", false, |x| {
                0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
            }),
        ]
    };
    candidates
        .into_iter()
        .find(|(_, _, f)| {
            points
                .iter()
                .zip(&got)
                .all(|(&x, &y)| (f(x) - y).abs() <= 1e-6 * (1.0 + y.abs()))
        })
        .map(|(name, exact, _)| OrtActivation { name, exact })
        .ok_or_else(|| {
            if ffn.gate.is_some() {
                "its gate's activation is not SiLU (onnxruntime's MoE gates with SwiGLU only)"
                    .into()
            } else {
                "its activation is not ReLU, GELU or SiLU (the ones onnxruntime's MoE takes)".into()
            }
        })
}

/// The error function: its series for small arguments, the continued
/// fraction of its complement beyond.
fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // 2/√π · Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

/// Replaces `plan`'s FFN by its routed experts.
/// `ort` writes them as onnxruntime's MoE op with that activation,
/// `None` with standard ops.
pub fn rewrite(
    graph: &mut Graph,
    plan: &Plan,
    w: &Weights,
    ort: Option<OrtActivation>,
) -> Result<(), IrError> {
    let ffn = &plan.ffn;
    let (d, out, experts) = (ffn.up.k, w.down.ncols(), plan.groups.len());
    let result = ffn.down.output;
    let name = ffn.name().to_string();
    let mut patch = Patch::new(graph, &format!("{name}/moe"));
    let x = ffn.up.input;
    let shape = patch.node("Shape", &[Some(x)], vec![]);
    let tokens = patch.reshape(x, &[-1, d as i64])?;
    // Router: scores, the k-th largest per token, the mask of the chosen.
    let r = &plan.router;
    let rw = f32_tensor(
        vec![d as i64, experts as i64],
        (0..d).flat_map(|i| (0..experts).map(move |e| r[(i, e)])),
    );
    let rw = patch.initializer_named("router", rw);
    let rb = patch.initializer(f32_tensor(
        vec![experts as i64],
        (0..experts).map(|e| r[(d, e)]),
    ));
    let scores = patch.node("MatMul", &[Some(tokens), Some(rw)], vec![]);
    let scores = patch.node("Add", &[Some(scores), Some(rb)], vec![]);
    let k = patch.ints(&[plan.k as i64]);
    let top = patch.node_with_outputs(
        "TopK",
        &[Some(scores), Some(k)],
        vec![Attribute::new("axis", AttrValue::Int(-1))],
        2,
    )[0];
    let k_th = patch.slice(
        top,
        &[0, plan.k as i64 - 1],
        &[i64::MAX, plan.k as i64],
        &[1, 1],
    )?;
    let chosen = patch.node("GreaterOrEqual", &[Some(scores), Some(k_th)], vec![]);
    let chosen_f = patch.node("Cast", &[Some(chosen)], vec![cast_to(DataType::F32)]);
    // What every token gets: the bias, the shared neurons, skipped means.
    let mut base = {
        let count = patch.node(
            "ReduceProd",
            &[Some(shape)],
            vec![Attribute::new("keepdims", AttrValue::Int(1))],
        );
        let width = patch.ints(&[d as i64]);
        let count = patch.node("Div", &[Some(count), Some(width)], vec![]);
        let out_dim = patch.ints(&[out as i64]);
        let dims = patch.node(
            "Concat",
            &[Some(count), Some(out_dim)],
            vec![Attribute::new("axis", AttrValue::Int(0))],
        );
        let zeros = patch.node(
            "ConstantOfShape",
            &[Some(dims)],
            vec![Attribute::new(
                "value",
                AttrValue::Tensor(Tensor::from_f32(vec![1], &[0.0])),
            )],
        );
        let bias = vector(&mut patch, &w.down_bias, &(0..out).collect::<Vec<_>>());
        patch.node("Add", &[Some(zeros), Some(bias)], vec![])
    };
    if !plan.shared.is_empty() {
        let shared = slice_output(&mut patch, plan, w, tokens, &plan.shared, 1.0)?;
        base = patch.node("Add", &[Some(base), Some(shared)], vec![]);
    }
    if let Some(m) = &plan.means {
        let one = patch.initializer(Tensor::from_f32(vec![], &[1.0]));
        let skipped = patch.node("Sub", &[Some(one), Some(chosen_f)], vec![]);
        let means = rows(&mut patch, m, &(0..experts).collect::<Vec<_>>(), 1.0);
        let skipped = patch.node("MatMul", &[Some(skipped), Some(means)], vec![]);
        base = patch.node("Add", &[Some(base), Some(skipped)], vec![]);
    }
    let routed = match ort {
        Some(act) => {
            let moe = ort_experts(&mut patch, plan, w, tokens, chosen_f, act)?;
            patch.node("Add", &[Some(base), Some(moe)], vec![])
        }
        None => {
            // Row e of the transposed mask holds expert e's tokens: the
            // flattened mask split in E equal parts gives each expert's.
            let by_expert = patch.node("Transpose", &[Some(chosen)], vec![]);
            let flat = patch.reshape(by_expert, &[-1])?;
            let columns = patch.node_with_outputs(
                "Split",
                &[Some(flat)],
                vec![
                    Attribute::new("axis", AttrValue::Int(0)),
                    Attribute::new("num_outputs", AttrValue::Int(experts as i64)),
                ],
                experts,
            );
            let (mut at_all, mut y_all) = (Vec::new(), Vec::new());
            for (g, column) in plan.groups.iter().zip(columns) {
                let at = patch.node("NonZero", &[Some(column)], vec![]);
                // [1, n] → [n, 1]: the rows of this expert's tokens.
                let at = patch.reshape(at, &[-1, 1])?;
                let rows_e = patch.node("GatherND", &[Some(tokens), Some(at)], vec![]);
                y_all.push(Some(slice_output(&mut patch, plan, w, rows_e, g, 1.0)?));
                at_all.push(Some(at));
            }
            // All experts' rows added in at once (a token's k rows too).
            let concat = |patch: &mut Patch<'_>, parts: &[Option<ValueId>]| {
                patch.node(
                    "Concat",
                    parts,
                    vec![Attribute::new("axis", AttrValue::Int(0))],
                )
            };
            let at = concat(&mut patch, &at_all);
            let y = concat(&mut patch, &y_all);
            patch.node(
                "ScatterND",
                &[Some(base), Some(at), Some(y)],
                vec![Attribute::new("reduction", AttrValue::String("add".into()))],
            )
        }
    };
    let lead = patch.slice(shape, &[0], &[-1], &[1])?;
    let out_dim = patch.ints(&[out as i64]);
    let out_shape = patch.node(
        "Concat",
        &[Some(lead), Some(out_dim)],
        vec![Attribute::new("axis", AttrValue::Int(0))],
    );
    patch.define("Reshape", &[Some(routed), Some(out_shape)], vec![], result)?;
    Ok(())
}

/// The routed experts as onnxruntime's `com.microsoft::MoE`, for token rows
/// `tokens` `[T, d]` and the chosen-expert mask `chosen` `[T, E]` (as f32).
///
/// The op's experts are equal in size and map the input's width to
/// itself: smaller experts get neurons of zero weights (they add zero),
/// and an FFN whose output width `out` differs from `d` runs at width
/// `max(d, out)`, the input padded with zero columns or the output sliced.
/// A gated FFN is the op's SwiGLU: gate and up rows interleaved in fc1.
fn ort_experts(
    patch: &mut Patch<'_>,
    plan: &Plan,
    w: &Weights,
    tokens: ValueId,
    chosen: ValueId,
    act: OrtActivation,
) -> Result<ValueId, IrError> {
    let (d, out, experts) = (plan.ffn.up.k, w.down.ncols(), plan.groups.len());
    let width = d.max(out);
    let size = plan.groups.iter().map(Vec::len).max().unwrap_or(0);
    // Each expert's neurons, padded to `size` with `None`.
    fn slots(g: &[usize], size: usize) -> impl Iterator<Item = Option<usize>> + '_ {
        (0..size).map(move |j| g.get(j).copied())
    }
    // fc1 rows: per neuron its (weights, bias) sources, gate first.
    let sources: Vec<(&Mat<f64>, &[f64])> = match &w.gate {
        Some((g, gb)) => vec![(g, gb), (&w.up, &w.up_bias)],
        None => vec![(&w.up, &w.up_bias)],
    };
    let rows_per_neuron = sources.len();
    let fc1 = f32_tensor(
        vec![
            experts as i64,
            (size * rows_per_neuron) as i64,
            width as i64,
        ],
        plan.groups.iter().flat_map(|g| {
            let sources = &sources;
            slots(g, size).flat_map(move |j| {
                sources.iter().flat_map(move |(m, _)| {
                    (0..width).map(move |i| match j {
                        Some(j) if i < d => m[(i, j)],
                        _ => 0.0,
                    })
                })
            })
        }),
    );
    let fc1 = patch.initializer_named("fc1", fc1);
    let fc1_bias = f32_tensor(
        vec![experts as i64, (size * rows_per_neuron) as i64],
        plan.groups.iter().flat_map(|g| {
            let sources = &sources;
            slots(g, size)
                .flat_map(move |j| sources.iter().map(move |(_, b)| j.map_or(0.0, |j| b[j])))
        }),
    );
    let fc1_bias = patch.initializer(fc1_bias);
    // The op weighs each of the k chosen experts 1/k: fc2 is scaled by k.
    let scale = plan.k as f64;
    let fc2 = f32_tensor(
        vec![experts as i64, width as i64, size as i64],
        plan.groups.iter().flat_map(|g| {
            let down = &w.down;
            (0..width).flat_map(move |o| {
                slots(g, size).map(move |j| match j {
                    Some(j) if o < out => down[(j, o)] * scale,
                    _ => 0.0,
                })
            })
        }),
    );
    let fc2 = patch.initializer_named("fc2", fc2);
    let fc2_bias = patch.initializer(Tensor::from_f32(
        vec![experts as i64, width as i64],
        &vec![0.0; experts * width],
    ));
    let input = if out > d {
        let pads = patch.ints(&[0, 0, 0, (out - d) as i64]);
        patch.node("Pad", &[Some(tokens), Some(pads)], vec![])
    } else {
        tokens
    };
    let one = patch.initializer(Tensor::from_f32(vec![], &[1.0]));
    let big = patch.initializer(Tensor::from_f32(vec![], &[1e4]));
    let logits = patch.node("Sub", &[Some(chosen), Some(one)], vec![]);
    let logits = patch.node("Mul", &[Some(logits), Some(big)], vec![]);
    let mut attributes = vec![
        Attribute::new("k", AttrValue::Int(plan.k as i64)),
        Attribute::new("activation_type", AttrValue::String(act.name.into())),
        Attribute::new("normalize_routing_weights", AttrValue::Int(0)),
    ];
    if w.gate.is_some() {
        // silu(gate)·up, gate rows first: onnxruntime's SwiGLU with
        // alpha 1 and beta 0, interleaved.
        attributes.extend([
            Attribute::new("swiglu_fusion", AttrValue::Int(1)),
            Attribute::new("activation_alpha", AttrValue::Float(1.0)),
            Attribute::new("activation_beta", AttrValue::Float(0.0)),
        ]);
    }
    let moe = patch.node(
        "MoE",
        &[
            Some(input),
            Some(logits),
            Some(fc1),
            Some(fc1_bias),
            Some(fc2),
            Some(fc2_bias),
        ],
        attributes,
    );
    mark_contrib(patch.graph, moe);
    if out < d {
        patch.slice(moe, &[0, 0], &[i64::MAX, out as i64], &[1, 1])
    } else {
        Ok(moe)
    }
}

/// The node defining `v` is onnxruntime's contrib op.
fn mark_contrib(graph: &mut Graph, v: ValueId) {
    if let Some((node, _)) = graph.value(v).producer {
        graph.node_mut(node).domain = "com.microsoft".into();
    }
}
