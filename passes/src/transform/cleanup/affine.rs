//! Per-channel affine folding: an inference BatchNormalization, or a Mul,
//! Div, Add or Sub by a per-channel constant, applied to the output of a
//! Conv, a Gemm or an inference BatchNormalization that nothing else reads,
//! is folded into that producer's parameters:
//! `y = x · s + t` per output channel becomes `W' = W · s`, `b' = b · s + t`
//! (Conv, Gemm) or `scale' = scale · s`, `shift' = shift · s + t`
//! (BatchNormalization). For a BatchNormalization consumer,
//! `s = scale / sqrt(var + ε)` and `t = shift − mean · s`. Computed in f64,
//! stored in f32: exact up to floating-point reassociation.
//!
//! Not folded: training-mode BatchNormalization, a producer whose output
//! has another reader or is a graph output, constants that are not f32, not
//! per-channel, or that would broadcast the output to a larger shape.

use sculpt_ir::ops::infer::constant;
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, DataType, Graph, IrError, Node, NodeId, Tensor, ValueId};

fn f32_const(graph: &Graph, v: Option<ValueId>) -> Option<(Vec<f32>, Vec<i64>)> {
    let t = constant(graph, v?)?;
    (t.dtype == DataType::F32).then(|| Some((t.to_f32_vec().ok()?, t.dims.clone())))?
}

/// Points inputs 1 and 2 of `node` (weights and bias, or scale and shift)
/// at new initializers holding `first` and `second`, named after input 1.
fn set_parameters(
    graph: &mut Graph,
    node: NodeId,
    first: Option<Tensor>,
    second: (Vec<i64>, &[f32]),
) -> Option<()> {
    let base = graph.value(graph.node(node).input(1)?).name.clone();
    let mut patch = Patch::new(graph, &base);
    let weights = first.map(|t| patch.initializer_named("folded", t));
    let bias = patch.initializer_named("folded_bias", Tensor::from_f32(second.0, second.1));
    if let Some(w) = weights {
        graph.set_input(node, 1, Some(w));
    }
    graph.set_input(node, 2, Some(bias));
    Some(())
}

/// The f32 weights of `w` with element `i` multiplied by
/// `scale[channel_of(i)]`, or `None` where every scale is 1 (the weights
/// stay as they are).
fn scaled_weights(
    graph: &Graph,
    w: ValueId,
    scale: &[f64],
    channel_of: impl Fn(usize) -> usize,
) -> Option<Option<Tensor>> {
    let t = constant(graph, w)?;
    if t.dtype != DataType::F32 {
        return None;
    }
    if scale.iter().all(|&s| s == 1.0) {
        return Some(None);
    }
    let raw = t.raw_bytes().ok()?;
    let mut out = Vec::with_capacity(raw.len());
    for (i, c) in raw.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64 * scale[channel_of(i)];
        out.extend_from_slice(&(v as f32).to_le_bytes());
    }
    Some(Some(Tensor::from_raw(
        DataType::F32,
        t.dims.clone(),
        out.into(),
    )))
}

/// Values of a constant that varies only along axis 1 of an output of
/// `rank` dims with `c` channels, one per channel.
fn per_channel(graph: &Graph, v: Option<ValueId>, c: usize, rank: usize) -> Option<Vec<f64>> {
    let (vals, dims) = f32_const(graph, v)?;
    if dims.len() > rank {
        return None;
    }
    let offset = rank - dims.len();
    for (i, &d) in dims.iter().enumerate() {
        let axis = i + offset;
        if d != 1 && !(axis == 1 && d == c as i64) {
            return None;
        }
    }
    match vals.len() {
        1 => Some(vec![vals[0] as f64; c]),
        n if n == c => Some(vals.iter().map(|&x| x as f64).collect()),
        _ => None,
    }
}

struct Affine {
    scale: Vec<f64>,
    shift: Vec<f64>,
}

/// The per-channel affine map `consumer` applies to `x`, if it is one.
fn consumer_affine(
    graph: &Graph,
    node: &Node,
    x: ValueId,
    c: usize,
    rank: usize,
) -> Option<Affine> {
    if !node.is_onnx() || node.outputs().iter().flatten().count() != 1 {
        return None;
    }
    let other = |node: &Node| -> Option<(usize, ValueId)> {
        let slot = node.inputs().iter().position(|v| *v == Some(x))?;
        Some((slot, node.input(1 - slot)?))
    };
    let ones = vec![1.0; c];
    let zeros = vec![0.0; c];
    match node.op_type.as_str() {
        "BatchNormalization" => {
            if node.input(0) != Some(x) || node.int_attr("training_mode", 0) == 1 {
                return None;
            }
            let eps = node.float_attr("epsilon", 1e-5);
            // BatchNormalization parameters are plain [C] vectors.
            let p = |i| {
                f32_const(graph, node.input(i))
                    .filter(|(v, _)| v.len() == c)
                    .map(|(v, _)| v.iter().map(|&x| x as f64).collect::<Vec<f64>>())
            };
            let (scale, shift, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
            let s: Vec<f64> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
            let t = (0..c).map(|i| shift[i] - mean[i] * s[i]).collect();
            Some(Affine { scale: s, shift: t })
        }
        "Mul" if node.inputs().len() == 2 => Some(Affine {
            scale: per_channel(graph, Some(other(node)?.1), c, rank)?,
            shift: zeros,
        }),
        "Add" if node.inputs().len() == 2 => Some(Affine {
            scale: ones,
            shift: per_channel(graph, Some(other(node)?.1), c, rank)?,
        }),
        "Sub" if node.input(0) == Some(x) => {
            let a = per_channel(graph, node.input(1), c, rank)?;
            Some(Affine {
                scale: ones,
                shift: a.iter().map(|v| -v).collect(),
            })
        }
        "Div" if node.input(0) == Some(x) => {
            let d = per_channel(graph, node.input(1), c, rank)?;
            Some(Affine {
                scale: d.iter().map(|v| 1.0 / v).collect(),
                shift: zeros,
            })
        }
        _ => None,
    }
}

/// Folds every foldable affine consumer. Returns how many.
pub fn fold_into_producers(graph: &mut Graph) -> Result<u64, IrError> {
    let mut count = 0;
    for id in graph.topo_order()? {
        if graph.contains_node(id) && fold_one(graph, id).is_some() {
            count += 1;
        }
    }
    Ok(count)
}

fn fold_one(graph: &mut Graph, consumer: NodeId) -> Option<()> {
    let cnode = graph.node(consumer).clone();
    let out = cnode.output(0)?;
    // The producer-defined input the affine map applies to.
    let x = cnode.inputs().iter().flatten().copied().find(|&v| {
        graph.value(v).producer.is_some_and(|(p, _)| {
            let n = graph.node(p);
            n.is_onnx() && matches!(n.op_type.as_str(), "Conv" | "Gemm" | "BatchNormalization")
        })
    })?;
    if graph.consumers(x).len() != 1 || graph.outputs.contains(&x) || graph.is_captured(x) {
        return None;
    }
    let (prod_id, _) = graph.value(x).producer?;
    let producer = graph.node(prod_id).clone();
    if producer.outputs().iter().flatten().count() != 1 {
        return None;
    }
    match producer.op_type.as_str() {
        "Conv" => {
            let w = producer.input(1)?;
            let w_dims = constant(graph, w)?.dims.clone();
            let c = *w_dims.first()? as usize;
            let affine = consumer_affine(graph, &cnode, x, c, w_dims.len())?;
            let per = (sculpt_ir::element_count(&w_dims)? as usize / c.max(1)).max(1);
            let new_w = scaled_weights(graph, w, &affine.scale, |i| i / per)?;
            let bias = match producer.input(2) {
                Some(b) => f32_const(graph, Some(b))?.0,
                None => vec![0.0; c],
            };
            if bias.len() != c {
                return None;
            }
            let new_b: Vec<f32> = (0..c)
                .map(|i| (bias[i] as f64 * affine.scale[i] + affine.shift[i]) as f32)
                .collect();
            set_parameters(graph, prod_id, new_w, (vec![c as i64], &new_b))?;
        }
        "Gemm" => {
            let w = producer.input(1)?;
            let w_dims = constant(graph, w)?.dims.clone();
            let trans_b = producer.int_attr("transB", 0) == 1;
            let beta = producer.float_attr("beta", 1.0);
            let [rows, cols] = <[i64; 2]>::try_from(w_dims.as_slice()).ok()?;
            let (rows, cols) = (rows as usize, cols as usize);
            let c = if trans_b { rows } else { cols };
            let affine = consumer_affine(graph, &cnode, x, c, 2)?;
            let new_w = scaled_weights(graph, w, &affine.scale, |i| {
                if trans_b {
                    i / cols
                } else {
                    i % cols
                }
            })?;
            let bias = match producer.input(2) {
                Some(b) => per_channel(graph, Some(b), c, 2)?,
                None => vec![0.0; c],
            };
            let new_b: Vec<f32> = (0..c)
                .map(|i| (beta * bias[i] * affine.scale[i] + affine.shift[i]) as f32)
                .collect();
            set_parameters(graph, prod_id, new_w, (vec![c as i64], &new_b))?;
            let attrs = &mut graph.node_mut(prod_id).attributes;
            attrs.retain(|a| a.name != "beta");
            attrs.push(Attribute::new("beta", AttrValue::Float(1.0)));
        }
        "BatchNormalization" => {
            if producer.int_attr("training_mode", 0) == 1 {
                return None;
            }
            let rank = sculpt_ir::ops::infer::value_type(graph, x)?.shape()?.len();
            let (scale, _) = f32_const(graph, producer.input(1))?;
            let (shift, _) = f32_const(graph, producer.input(2))?;
            let c = scale.len();
            if shift.len() != c {
                return None;
            }
            let affine = consumer_affine(graph, &cnode, x, c, rank)?;
            let new_scale: Vec<f32> = (0..c)
                .map(|i| (scale[i] as f64 * affine.scale[i]) as f32)
                .collect();
            let new_shift: Vec<f32> = (0..c)
                .map(|i| (shift[i] as f64 * affine.scale[i] + affine.shift[i]) as f32)
                .collect();
            let new_scale = Tensor::from_f32(vec![c as i64], &new_scale);
            set_parameters(
                graph,
                prod_id,
                Some(new_scale),
                (vec![c as i64], &new_shift),
            )?;
        }
        _ => return None,
    }
    graph.bypass(consumer, out, x).then_some(())
}
