//! Channels whose producing weights are zero but whose output is not: a
//! bias, a BN shift or an activation of them makes the channel a constant
//! per-channel value. Removing such a channel stays exact when its
//! contribution is folded into each consumer's bias first.
//!
//! The value is evaluated per channel through the ops between the producer
//! and the consumers (element-wise ops with constant operands, BN, pooling
//! without padding, shape ops), and folded where a constant input gives a
//! constant contribution: a Gemm or MatMul (+ bias Add), or a Conv without
//! padding. A channel that reaches anything else is left alone.

use crate::analysis::zero_groups::{Group, Member, ZeroGroups};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, Graph, Initializer, IrError, Node, NodeId, Tensor, ValueId};
use std::collections::{BTreeMap, HashMap};

/// A bias to raise: `tensor[o] += delta[o]`.
pub(super) type BiasDeltas = BTreeMap<String, Vec<f64>>;

/// A consumer that contracts the group's channels and has a bias.
struct Consumer {
    weight: Member,
    /// Sum over the member slice of one channel (and a Conv's kernel) of
    /// the weights, per output feature, times what the output multiplies.
    node: NodeId,
    bias: String,
    bias_scale: f64,
}

fn tensor_f64(graph: &Graph, name: &str) -> Option<(Vec<i64>, Vec<f64>)> {
    let t = constant(graph, graph.value_by_name(name)?)?;
    let v = t.to_f32_vec().ok()?;
    Some((t.dims.clone(), v.into_iter().map(f64::from).collect()))
}

fn pads_are_zero(n: &Node) -> bool {
    let auto = n
        .attr("auto_pad")
        .and_then(|a| match a {
            AttrValue::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        })
        .unwrap_or_default();
    (auto.is_empty() || auto == "NOTSET" || auto == "VALID")
        && n.attr("pads")
            .and_then(AttrValue::as_ints)
            .is_none_or(|p| p.iter().all(|&x| x == 0))
}

/// The value of a constant operand at channel `c`: a scalar, or a member
/// slice of the group that holds one value per channel.
fn operand_at(graph: &Graph, g: &Group, v: ValueId, c: usize) -> Option<f64> {
    let t = constant(graph, v)?;
    let values = t.to_f32_vec().ok()?;
    if values.len() == 1 {
        return Some(values[0] as f64);
    }
    let name = &graph.value(v).name;
    let m = g.members.iter().find(|m| &m.tensor == name)?;
    let (_, len, inner) = crate::util::weights::slices(&t.dims, m.axis);
    if values.len() != len * inner.max(1) || inner > 1 {
        return None;
    }
    let slice = &values[m.offset + c * m.block..m.offset + (c + 1) * m.block];
    slice
        .iter()
        .all(|&x| x == slice[0])
        .then_some(slice[0] as f64)
}

/// One op on the channel's value; `x` are the values of its non-constant
/// inputs in order, `k(i)` its constant input `i` at this channel.
fn apply_op(n: &Node, x: &[f64], k: &dyn Fn(usize) -> Option<f64>) -> Option<f64> {
    let a = *x.first()?;
    let binary = |f: fn(f64, f64) -> f64| -> Option<f64> {
        // Operand order: non-constant inputs keep their slots.
        let left = if n.input(0).is_some() && k(0).is_none() {
            a
        } else {
            k(0)?
        };
        let right = match (k(1), x.get(1)) {
            (Some(r), _) => r,
            (None, Some(&r)) => r,
            (None, None) => a,
        };
        Some(f(left, right))
    };
    let erf = |v: f64| libm::erf(v);
    Some(match n.op_type.as_str() {
        "Identity" | "Dropout" | "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" | "Transpose"
        | "GlobalAveragePool" | "GlobalMaxPool" | "MaxPool" => a,
        "AveragePool" if pads_are_zero(n) => a,
        "Cast" => a,
        "Add" => binary(|p, q| p + q)?,
        "Sub" => binary(|p, q| p - q)?,
        "Mul" => binary(|p, q| p * q)?,
        "Div" => binary(|p, q| p / q)?,
        "Relu" => a.max(0.0),
        "LeakyRelu" => {
            if a < 0.0 {
                a * n.float_attr("alpha", 0.01)
            } else {
                a
            }
        }
        "Clip" => {
            let lo = k(1).unwrap_or(n.float_attr("min", f64::NEG_INFINITY));
            let hi = k(2).unwrap_or(n.float_attr("max", f64::INFINITY));
            a.max(lo).min(hi)
        }
        "Sigmoid" => 1.0 / (1.0 + (-a).exp()),
        "HardSigmoid" => {
            (n.float_attr("alpha", 0.2) * a + n.float_attr("beta", 0.5)).clamp(0.0, 1.0)
        }
        "HardSwish" => a * (a / 6.0 + 0.5).clamp(0.0, 1.0),
        "Tanh" => a.tanh(),
        "Erf" => erf(a),
        "Exp" => a.exp(),
        "Neg" => -a,
        "Abs" => a.abs(),
        "Sqrt" => a.sqrt(),
        "Gelu" => match n.attr("approximate") {
            Some(AttrValue::String(s)) if &s[..] == b"tanh" => {
                0.5 * a
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3))).tanh())
            }
            _ => 0.5 * a * (1.0 + erf(a / std::f64::consts::SQRT_2)),
        },
        "BatchNormalization" => {
            let eps = n.float_attr("epsilon", 1e-5);
            (a - k(3)?) / (k(4)? + eps).sqrt() * k(1)? + k(2)?
        }
        _ => return None,
    })
}

/// The region of nodes between the group's single producer and its
/// consumers, in order, and the consumers; `None` where the channels
/// meet anything that would not keep them constant.
fn region(graph: &Graph, g: &Group, source_out: ValueId) -> Option<(Vec<NodeId>, Vec<Consumer>)> {
    let mut order = Vec::new();
    let mut consumers = Vec::new();
    let mut inside: Vec<ValueId> = vec![source_out];
    for node in graph.topo_order().ok()? {
        let n = graph.node(node);
        let reads: Vec<usize> = (0..n.inputs().len())
            .filter(|&i| n.input(i).is_some_and(|v| inside.contains(&v)))
            .collect();
        if reads.is_empty() {
            continue;
        }
        let input = graph.value(n.input(reads[0])?).name.clone();
        let weight_member = g.members.iter().find(|m| {
            m.activation.as_ref().is_some_and(|(a, _)| *a == input)
                && n.input(1).is_some_and(|w| graph.value(w).name == m.tensor)
        });
        if let Some(m) = weight_member.filter(|_| reads == [0]) {
            consumers.push(consumer(graph, node, m)?);
            continue;
        }
        // Every other input must be a constant.
        let ok = n
            .inputs()
            .iter()
            .flatten()
            .all(|&x| inside.contains(&x) || constant(graph, x).is_some());
        let out = n.output(0)?;
        if !ok || n.outputs().len() != 1 || graph.outputs.contains(&out) {
            return None;
        }
        order.push(node);
        inside.push(out);
    }
    Some((order, consumers))
}

fn consumer(graph: &Graph, node: NodeId, m: &Member) -> Option<Consumer> {
    let n = graph.node(node);
    let (bias, scale) = match n.op_type.as_str() {
        "Conv" if n.int_attr("group", 1) == 1 && pads_are_zero(n) => (n.input(2)?, 1.0),
        "Gemm" => (
            n.input(2)?,
            n.float_attr("alpha", 1.0) / n.float_attr("beta", 1.0),
        ),
        "MatMul" => {
            // The bias is the per-feature constant of the one Add after it.
            let out = n.output(0)?;
            let readers = graph.consumers(out);
            let [(add, _)] = readers[..] else { return None };
            let add = graph.node(add);
            if add.op_type != "Add" {
                return None;
            }
            let other = add.inputs().iter().flatten().find(|&&x| x != out)?;
            let t = constant(graph, *other)?;
            if t.dims.len() != 1 {
                return None;
            }
            (*other, 1.0)
        }
        _ => return None,
    };
    if constant(graph, bias)?.dtype != sculpt_ir::DataType::F32 {
        return None;
    }
    Some(Consumer {
        weight: m.clone(),
        node,
        bias: graph.value(bias).name.clone(),
        bias_scale: scale,
    })
}

/// For group `g`: its channels that are zero at the producer's weights but
/// not as a whole, with the bias deltas that removing each keeps exact.
pub(super) fn constant_channels(graph: &Graph, g: &Group) -> Vec<(usize, BiasDeltas)> {
    find(graph, g).unwrap_or_default()
}

fn find(graph: &Graph, g: &Group) -> Option<Vec<(usize, BiasDeltas)>> {
    let [source] = &g.sources[..] else {
        return None;
    };
    let (_, s) = graph.nodes().find(|(_, n)| n.display_name() == source)?;
    let out_axis = match s.op_type.as_str() {
        "Conv" if s.int_attr("group", 1) == 1 => 0,
        "Gemm" if s.int_attr("transB", 0) == 1 => 0,
        "Gemm" | "MatMul" => 1,
        _ => return None,
    };
    let w = graph.value(s.input(1)?).name.clone();
    let weight = g
        .members
        .iter()
        .find(|m| m.tensor == w && m.axis == out_axis && m.block == 1)?;
    let zero_weights = channel_zero(graph, g, weight)?;
    let all_zero: Vec<bool> = {
        let mut z = vec![true; g.channels];
        for m in &g.members {
            for (c, is_zero) in channel_zero(graph, g, m)?.into_iter().enumerate() {
                z[c] &= is_zero;
            }
        }
        z
    };
    let candidates: Vec<usize> = (0..g.channels)
        .filter(|&c| zero_weights[c] && !all_zero[c])
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (order, consumers) = region(graph, g, s.output(0)?)?;
    let bias_at = |c: usize| -> Option<f64> {
        let Some(b) = s.input(2) else {
            return Some(0.0);
        };
        let scale = if s.op_type == "Gemm" {
            s.float_attr("beta", 1.0)
        } else {
            1.0
        };
        let t = constant(graph, b)?.to_f32_vec().ok()?;
        Some(*t.get(c).or(t.first())? as f64 * scale)
    };
    let mut result = Vec::new();
    'channel: for c in candidates {
        let mut values: HashMap<ValueId, f64> = HashMap::new();
        let Some(b) = bias_at(c) else { continue };
        values.insert(s.output(0)?, b);
        for &id in &order {
            let n = graph.node(id);
            let x: Vec<f64> = n
                .inputs()
                .iter()
                .flatten()
                .filter_map(|v| values.get(v).copied())
                .collect();
            let k = |i: usize| -> Option<f64> {
                let v = n.input(i)?;
                if values.contains_key(&v) {
                    return None;
                }
                operand_at(graph, g, v, c)
            };
            let Some(y) = apply_op(n, &x, &k) else {
                continue 'channel;
            };
            values.insert(n.output(0)?, y);
        }
        let mut deltas = BiasDeltas::new();
        for cons in &consumers {
            let n = graph.node(cons.node);
            let Some(&v) = n.input(0).and_then(|x| values.get(&x)) else {
                continue 'channel;
            };
            let Some((dims, w)) = tensor_f64(graph, &cons.weight.tensor) else {
                continue 'channel;
            };
            let m = &cons.weight;
            let (outer, len, inner) = crate::util::weights::slices(&dims, m.axis);
            // Features are the weight's other matrix axis (Conv: axis 0).
            let features = if m.axis == 0 { inner } else { outer };
            let mut delta = vec![0.0f64; features];
            for o in 0..outer {
                for i in m.offset + c * m.block..m.offset + (c + 1) * m.block {
                    for r in 0..inner {
                        let x = w[(o * len + i) * inner + r];
                        let f = if m.axis == 0 { r } else { o };
                        delta[f] += x * v * cons.bias_scale;
                    }
                }
            }
            let entry = deltas
                .entry(cons.bias.clone())
                .or_insert_with(|| vec![0.0; features]);
            if entry.len() != delta.len() {
                continue 'channel;
            }
            for (e, d) in entry.iter_mut().zip(delta) {
                *e += d;
            }
        }
        result.push((c, deltas));
    }
    Some(result)
}

/// Per channel of `g`: is `m`'s slice all zero?
fn channel_zero(graph: &Graph, g: &Group, m: &Member) -> Option<Vec<bool>> {
    let energy = crate::util::weights::channel_energy(graph, g, |other| other == m)?;
    Some(
        energy
            .into_iter()
            .map(|(squares, _)| squares == 0.0)
            .collect(),
    )
}

/// Raises every bias by its deltas.
pub(super) fn fold(graph: &mut Graph, deltas: &BiasDeltas) -> Result<(), IrError> {
    for (name, delta) in deltas {
        let (v, t) = super::edit::initializer(graph, name)?;
        let mut values = t.to_f32_vec()?;
        if values.len() != delta.len() {
            return Err(IrError::tensor(
                name.clone(),
                "bias size does not match its weights",
            ));
        }
        for (x, d) in values.iter_mut().zip(delta) {
            *x += *d as f32;
        }
        let folded = Tensor::from_f32(t.dims.clone(), &values);
        graph.value_mut(v).init = Some(Initializer::Dense(folded));
    }
    Ok(())
}

/// Every group's constant channels.
pub(super) fn all(
    graph: &Graph,
    z: &ZeroGroups,
    groups: &[usize],
) -> BTreeMap<usize, Vec<(usize, BiasDeltas)>> {
    groups
        .iter()
        .map(|&gi| (gi, constant_channels(graph, &z.groups[gi])))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}
