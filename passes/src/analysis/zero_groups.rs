//! `ZeroGroups`: zero-invariant groups (OTOv2/OTOv3). A group is a set of
//! parameter slices — (tensor, axis, channel block) — indexed by the same
//! channels, such that when all of them are zero at a channel, that channel
//! contributes nothing downstream and all the slices can be removed
//! together.
//!
//! Groups come from per-op axis contracts, not from known architectures:
//! channel-producing ops (Conv output channels, Gemm/MatMul output
//! features) open a channel space on their output's channel axis, and the
//! space is followed forward through every op that says how it maps that
//! axis (element-wise ops keep it; BatchNormalization adds its parameters;
//! a broadcast constant adds its matching slice; Transpose moves it;
//! Flatten folds it into blocks; pooling, Pad and Resize keep it). Consumers
//! that contract over it (Conv input channels, Gemm/MatMul input features)
//! add their input-side slices and end it. Adding two channel spaces (a
//! residual Add) couples them into one group; depthwise Conv couples its
//! input and output channels.
//!
//! Anything the contracts do not cover — an unknown op, a Gather or Concat
//! on the channel axis, a Reshape that splits it, normalisation across it,
//! a graph output — makes the touching group unprunable, with the node and
//! the reason. The analysis never guesses.

use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{AttrValue, Graph, Model, Node, ValueId};
use serde::Serialize;
use std::collections::HashMap;

/// One parameter slice of a group: `tensor[.., axis = channel·block .. (channel+1)·block, ..]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct Member {
    pub tensor: String,
    pub axis: usize,
    pub block: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// Channels in the group (each removable on its own).
    pub channels: usize,
    /// What opened it: "conv", "gemm", "matmul".
    pub kind: String,
    /// The nodes whose output channels these are.
    pub sources: Vec<String>,
    pub members: Vec<Member>,
    /// Parameters per channel (all member slices of one channel).
    pub params_per_channel: u64,
    pub prunable: bool,
    pub reasons: Vec<String>,
    /// Reshape targets that spell out the channel count: (constant tensor,
    /// entry, size of one channel in that entry).
    pub shape_fixes: Vec<(String, usize, usize)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ZeroGroups {
    pub groups: Vec<Group>,
    pub total_params: u64,
    pub prunable_params: u64,
}

/// Union-find over channel spaces.
#[derive(Default)]
struct Spaces {
    parent: Vec<usize>,
    channels: Vec<usize>,
    kind: Vec<String>,
    sources: Vec<Vec<String>>,
    members: Vec<Vec<Member>>,
    reasons: Vec<Vec<String>>,
    shape_fixes: Vec<Vec<(String, usize, usize)>>,
}

impl Spaces {
    fn open(&mut self, channels: usize, kind: &str, source: &str) -> usize {
        self.parent.push(self.parent.len());
        self.channels.push(channels);
        self.kind.push(kind.into());
        self.sources.push(vec![source.into()]);
        self.members.push(Vec::new());
        self.reasons.push(Vec::new());
        self.shape_fixes.push(Vec::new());
        self.parent.len() - 1
    }

    fn find(&mut self, s: usize) -> usize {
        let mut r = s;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        self.parent[s] = r;
        r
    }

    fn union(&mut self, a: usize, b: usize, at: &str) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.channels[a] != self.channels[b] {
            self.refuse(
                a,
                format!(
                    "{at}: couples {} with {} channels",
                    self.channels[a], self.channels[b]
                ),
            );
            self.refuse(
                b,
                format!(
                    "{at}: couples {} with {} channels",
                    self.channels[b], self.channels[a]
                ),
            );
        }
        self.parent[b] = a;
        let m = std::mem::take(&mut self.members[b]);
        self.members[a].extend(m);
        let r = std::mem::take(&mut self.reasons[b]);
        self.reasons[a].extend(r);
        let s = std::mem::take(&mut self.sources[b]);
        self.sources[a].extend(s);
        let f = std::mem::take(&mut self.shape_fixes[b]);
        self.shape_fixes[a].extend(f);
    }

    fn fix_shape(&mut self, s: usize, tensor: String, entry: usize, per_channel: usize) {
        let r = self.find(s);
        self.shape_fixes[r].push((tensor, entry, per_channel));
    }

    fn add(&mut self, s: usize, member: Member) {
        let r = self.find(s);
        self.members[r].push(member);
    }

    fn refuse(&mut self, s: usize, reason: String) {
        let r = self.find(s);
        if !self.reasons[r].contains(&reason) {
            self.reasons[r].push(reason);
        }
    }
}

/// Where a channel space lives on an activation: its axis and the block
/// size (channels folded into a larger axis, as Flatten does).
#[derive(Clone, Copy, Debug)]
struct Slot {
    space: usize,
    axis: usize,
    block: usize,
}

/// A Conv's output channels belong to `space`: its weights' axis 0, its
/// bias, and axis 1 of its output `o`.
fn claim_output_channels(
    sp: &mut Spaces,
    slots: &mut HashMap<ValueId, Slot>,
    space: usize,
    graph: &Graph,
    n: &Node,
    o: ValueId,
) {
    for v in [n.input(1), n.input(2)].into_iter().flatten() {
        sp.add(
            space,
            Member {
                tensor: graph.value(v).name.clone(),
                axis: 0,
                block: 1,
            },
        );
    }
    slots.insert(
        o,
        Slot {
            space,
            axis: 1,
            block: 1,
        },
    );
}

fn label(n: &Node) -> String {
    format!("node '{}' ({})", n.display_name(), n.op_type)
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    n.attr(name).and_then(AttrValue::as_int).unwrap_or(default)
}

impl ZeroGroups {
    pub fn of_graph(graph: &Graph) -> ZeroGroups {
        // Shapes with every symbolic input dim bound to its own size.
        let shapes = infer::static_shape_copy(graph).unwrap_or_else(|_| graph.clone());
        let dims = |v: ValueId| value_type(&shapes, v).and_then(|t| t.static_dims());
        let is_const = |v: ValueId| constant(graph, v).is_some();
        let name = |v: ValueId| graph.value(v).name.clone();

        let mut sp = Spaces::default();
        let mut slots: HashMap<ValueId, Slot> = HashMap::new();
        let Ok(order) = graph.topo_order() else {
            return ZeroGroups::default();
        };
        for id in order {
            let n = graph.node(id);
            let here = label(n);
            // Inputs that carry a channel space.
            let carried: Vec<(usize, Slot)> = n
                .inputs()
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, *slots.get(&(*v)?)?)))
                .collect();
            let out = n.output(0);
            let refuse_all = |sp: &mut Spaces, why: &str| {
                for (_, s) in &carried {
                    sp.refuse(s.space, format!("{here}: {why}"));
                }
            };
            if !n.is_onnx() {
                refuse_all(&mut sp, "op outside the ONNX domain");
                continue;
            }
            let op = n.op_type.as_str();
            // 1. Consumers that contract over the channel axis.
            match op {
                "Conv" => {
                    let group = int_attr(n, "group", 1);
                    let (Some(w), Some(o)) = (n.input(1), out) else {
                        continue;
                    };
                    let wd = dims(w).unwrap_or_default();
                    if !is_const(w) || wd.len() < 3 {
                        refuse_all(&mut sp, "weights are not a constant");
                        continue;
                    }
                    let (cout, cin_per_group) = (wd[0] as usize, wd[1] as usize);
                    if let Some((_, s)) = carried.iter().find(|(i, _)| *i == 0) {
                        if s.axis != 1 || s.block != 1 {
                            sp.refuse(
                                s.space,
                                format!(
                                    "{here}: channels reach the Conv on axis {} (block {})",
                                    s.axis, s.block
                                ),
                            );
                        } else if group == 1 {
                            sp.add(
                                s.space,
                                Member {
                                    tensor: name(w),
                                    axis: 1,
                                    block: 1,
                                },
                            );
                        } else if cin_per_group == 1 && group as usize == cout {
                            // Depthwise: input channel c is output channel c.
                            claim_output_channels(&mut sp, &mut slots, s.space, graph, n, o);
                            continue;
                        } else {
                            sp.refuse(s.space, format!("{here}: grouped convolution (group={group}) couples channels in blocks"));
                        }
                    }
                    if group != 1 {
                        continue;
                    }
                    let s = sp.open(cout, "conv", n.display_name());
                    claim_output_channels(&mut sp, &mut slots, s, graph, n, o);
                    continue;
                }
                "Gemm" | "MatMul" => {
                    let (Some(a), Some(w), Some(o)) = (n.input(0), n.input(1), out) else {
                        continue;
                    };
                    let wd = dims(w).unwrap_or_default();
                    let ad = dims(a).unwrap_or_default();
                    let trans_a = op == "Gemm" && int_attr(n, "transA", 0) == 1;
                    let trans_b = op == "Gemm" && int_attr(n, "transB", 0) == 1;
                    if !is_const(w) || wd.len() != 2 {
                        refuse_all(&mut sp, "the matrix multiplied is not a constant matrix");
                        continue;
                    }
                    if let Some((_, s)) = carried.iter().find(|(i, _)| *i == 0) {
                        if s.axis + 1 != ad.len() || trans_a {
                            sp.refuse(
                                s.space,
                                format!("{here}: channels are not the contracted (last) axis"),
                            );
                        } else {
                            sp.add(
                                s.space,
                                Member {
                                    tensor: name(w),
                                    axis: if trans_b { 1 } else { 0 },
                                    block: s.block,
                                },
                            );
                        }
                    }
                    let features = if trans_b { wd[0] } else { wd[1] } as usize;
                    let kind = if op == "Gemm" { "gemm" } else { "matmul" };
                    let s = sp.open(features, kind, n.display_name());
                    sp.add(
                        s,
                        Member {
                            tensor: name(w),
                            axis: if trans_b { 0 } else { 1 },
                            block: 1,
                        },
                    );
                    if let Some(c) = n.input(2) {
                        match dims(c) {
                            Some(cd) if cd.last().copied() == Some(features as i64) => sp.add(
                                s,
                                Member {
                                    tensor: name(c),
                                    axis: cd.len() - 1,
                                    block: 1,
                                },
                            ),
                            Some(cd) if cd.iter().all(|&d| d == 1) => {}
                            _ => {
                                sp.refuse(s, format!("{here}: bias does not broadcast per feature"))
                            }
                        }
                    }
                    let rank = dims(o).map_or(2, |d| d.len());
                    slots.insert(
                        o,
                        Slot {
                            space: s,
                            axis: rank - 1,
                            block: 1,
                        },
                    );
                    continue;
                }
                _ => {}
            }
            if carried.is_empty() {
                continue;
            }
            let Some(o) = out else { continue };
            // 2. Ops that carry the channel axis through.
            let first = carried[0].1;
            let carry = |slots: &mut HashMap<ValueId, Slot>, s: Slot| {
                slots.insert(o, s);
            };
            match op {
                "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Clip" | "HardSwish"
                | "HardSigmoid" | "Gelu" | "Erf" | "Elu" | "Selu" | "Softplus" | "Identity"
                | "Dropout" | "Cast" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Swish" | "Mish"
                | "Celu" => {
                    if carried.iter().any(|(i, _)| *i != 0) {
                        refuse_all(&mut sp, "channels reach a parameter input");
                    } else {
                        carry(&mut slots, first);
                    }
                }
                "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "LpPool"
                | "Resize" | "Upsample" | "LRN" => {
                    if first.axis == 1 && carried.len() == 1 && carried[0].0 == 0 {
                        carry(&mut slots, first);
                    } else {
                        refuse_all(&mut sp, "pooling over the channel axis");
                    }
                }
                "BatchNormalization" | "InstanceNormalization" => {
                    if first.axis != 1 || carried.len() != 1 || carried[0].0 != 0 {
                        refuse_all(&mut sp, "normalisation does not run per channel here");
                        continue;
                    }
                    for i in 1..n.inputs().len() {
                        if let Some(p) = n.input(i) {
                            sp.add(
                                first.space,
                                Member {
                                    tensor: name(p),
                                    axis: 0,
                                    block: 1,
                                },
                            );
                        }
                    }
                    carry(&mut slots, first);
                }
                "Add" | "Sub" | "Mul" | "Div" | "Sum" | "Max" | "Min" | "PRelu" | "Where" => {
                    let od = dims(o).unwrap_or_default();
                    let mut ok = true;
                    for (i, v) in n.inputs().iter().enumerate() {
                        let Some(v) = v else { continue };
                        if let Some((_, s)) = carried.iter().find(|(j, _)| *j == i) {
                            if od.len() != dims(*v).map_or(0, |d| d.len())
                                || s.axis != first.axis
                                || s.block != first.block
                            {
                                sp.refuse(
                                    s.space,
                                    format!("{here}: operands carry channels on different axes"),
                                );
                                ok = false;
                            } else {
                                sp.union(first.space, s.space, &here);
                            }
                            continue;
                        }
                        let vd = dims(*v).unwrap_or_default();
                        let aligned = (first.axis + vd.len()).checked_sub(od.len());
                        let at = aligned.and_then(|a| vd.get(a).copied());
                        match at {
                            None | Some(1) => {
                                if !is_const(*v) && op != "Where" {
                                    // A broadcast activation would still add into every channel.
                                    if matches!(op, "Add" | "Sub" | "Sum" | "Max" | "Min") {
                                        sp.refuse(
                                            first.space,
                                            format!(
                                                "{here}: adds '{}', which has no channel structure",
                                                name(*v)
                                            ),
                                        );
                                    }
                                }
                            }
                            Some(_) if is_const(*v) && op == "Div" && i == 1 => {
                                // Masking would divide by zero.
                                sp.refuse(
                                    first.space,
                                    format!("{here}: divides by a per-channel constant"),
                                );
                            }
                            Some(_) if is_const(*v) => sp.add(
                                first.space,
                                Member {
                                    tensor: name(*v),
                                    axis: aligned.expect("aligned"),
                                    block: first.block,
                                },
                            ),
                            Some(_) => {
                                sp.refuse(
                                    first.space,
                                    format!(
                                        "{here}: combined with '{}', which has no channel group",
                                        name(*v)
                                    ),
                                );
                                ok = false;
                            }
                        }
                    }
                    if ok {
                        carry(&mut slots, first);
                    }
                }
                "Transpose" => {
                    let rank = dims(o).map_or(0, |d| d.len());
                    let perm: Vec<i64> = n
                        .attr("perm")
                        .and_then(AttrValue::as_ints)
                        .map(<[i64]>::to_vec)
                        .unwrap_or_else(|| (0..rank as i64).rev().collect());
                    match perm.iter().position(|&p| p == first.axis as i64) {
                        Some(axis) => carry(&mut slots, Slot { axis, ..first }),
                        None => refuse_all(&mut sp, "bad permutation"),
                    }
                }
                "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                    // Supported: the channel axis and everything before it keep
                    // their sizes (channels stay on the same axis), or the
                    // channel axis merges with the axes after it into one
                    // (channel × spatial blocks, as Flatten before a Gemm).
                    let (Some(x), Some(y)) = (n.input(0).and_then(&dims), dims(o)) else {
                        refuse_all(&mut sp, "shape unknown");
                        continue;
                    };
                    let a = first.axis;
                    let out_block = if y.len() > a && x[..=a] == y[..=a] {
                        Some(first.block)
                    } else if y.len() == a + 1 && x[..a] == y[..a] {
                        Some(first.block * x[a + 1..].iter().product::<i64>() as usize)
                    } else {
                        None
                    };
                    if let Some(block) = out_block {
                        if op == "Reshape" {
                            // The target may spell out the channel count.
                            let target = n
                                .input(1)
                                .and_then(|t| Some((t, constant(graph, t)?.to_i64_vec().ok()?)));
                            match target {
                                Some((t, v)) if v.get(a).is_some_and(|&e| e > 0) => {
                                    sp.fix_shape(first.space, name(t), a, block)
                                }
                                Some(_) => {}
                                None => {
                                    refuse_all(
                                        &mut sp,
                                        "the reshape target is computed at run time",
                                    );
                                    continue;
                                }
                            }
                        }
                        carry(&mut slots, Slot { block, ..first });
                    } else {
                        refuse_all(&mut sp, "reshape splits or moves the channel axis");
                    }
                }
                "Pad" => {
                    let pads = n
                        .attr("pads")
                        .and_then(AttrValue::as_ints)
                        .map(<[i64]>::to_vec)
                        .or_else(|| {
                            n.input(1)
                                .and_then(|p| constant(graph, p)?.to_i64_vec().ok())
                        });
                    let rank = dims(o).map_or(0, |d| d.len());
                    match pads {
                        Some(p)
                            if p.len() == 2 * rank
                                && p[first.axis] == 0
                                && p[first.axis + rank] == 0 =>
                        {
                            carry(&mut slots, first)
                        }
                        _ => refuse_all(&mut sp, "pads along the channel axis"),
                    }
                }
                _ => refuse_all(&mut sp, "no axis contract for this op"),
            }
        }
        for &o in &graph.outputs {
            if let Some(s) = slots.get(&o) {
                sp.refuse(s.space, format!("reaches the graph output '{}'", name(o)));
            }
        }
        // Collect groups.
        let mut by_root: HashMap<usize, Group> = HashMap::new();
        for s in 0..sp.parent.len() {
            let r = sp.find(s);
            by_root.entry(r).or_insert_with(|| Group {
                channels: sp.channels[r],
                kind: sp.kind[r].clone(),
                sources: Vec::new(),
                members: Vec::new(),
                params_per_channel: 0,
                prunable: true,
                reasons: Vec::new(),
                shape_fixes: Vec::new(),
            });
        }
        let roots: Vec<usize> = by_root.keys().copied().collect();
        for r in roots {
            let g = by_root.get_mut(&r).expect("root");
            g.sources = std::mem::take(&mut sp.sources[r]);
            let mut members = std::mem::take(&mut sp.members[r]);
            members.sort();
            members.dedup();
            g.reasons = std::mem::take(&mut sp.reasons[r]);
            g.shape_fixes = std::mem::take(&mut sp.shape_fixes[r]);
            for m in &members {
                let readers = graph
                    .value_by_name(&m.tensor)
                    .map_or(0, |v| graph.consumers(v).len());
                if readers > 1 {
                    g.reasons
                        .push(format!("tensor '{}' is read by {readers} nodes", m.tensor));
                }
            }
            g.params_per_channel = members
                .iter()
                .filter_map(|m| {
                    let v = graph.value_by_name(&m.tensor)?;
                    let t = constant(graph, v)?;
                    let n = t.element_count()?;
                    let along = *t.dims.get(m.axis)? as u64;
                    (along > 0).then(|| n / along * m.block as u64)
                })
                .sum();
            g.members = members;
            g.prunable = g.reasons.is_empty();
        }
        let mut groups: Vec<Group> = by_root.into_values().collect();
        groups.sort_by(|a, b| a.sources.cmp(&b.sources));
        let total_params = graph.param_count();
        // A group covers every channel, so a tensor with a slice in any
        // prunable group is prunable as a whole (counted once).
        let mut prunable_tensors: Vec<&str> = groups
            .iter()
            .filter(|g| g.prunable)
            .flat_map(|g| g.members.iter().map(|m| m.tensor.as_str()))
            .collect();
        prunable_tensors.sort();
        prunable_tensors.dedup();
        let prunable_params = prunable_tensors
            .iter()
            .filter_map(|t| constant(graph, graph.value_by_name(t)?))
            .filter(|t| t.dtype.is_float())
            .filter_map(|t| t.element_count())
            .sum();
        ZeroGroups {
            groups,
            total_params,
            prunable_params,
        }
    }
}

impl super::Analysis for ZeroGroups {
    const NAME: &'static str = "zero_groups";

    fn compute(model: &Model) -> ZeroGroups {
        ZeroGroups::of_graph(&model.graph)
    }
}
