//! `ZeroGroups`: zero-invariant groups (OTOv2/OTOv3). A group is a set of
//! parameter slices — (tensor, axis, offset, block) — indexed by the same
//! channels, such that when all of them are zero at a channel, that channel
//! contributes nothing downstream and all the slices can be removed
//! together.
//!
//! Groups come from per-op axis contracts, not from known architectures.
//! Channel-producing ops (Conv output channels, Gemm/MatMul output
//! features, embedding tables) open a *channel space* on their output's
//! channel axis. Each activation carries a [`Layout`]: the axis and the
//! segments of channel spaces laid along it (a Concat lays several side by
//! side; Flatten widens every channel into a block of indices). Every op
//! says how it maps the layout (the `contract_*` functions below):
//! element-wise ops keep it, normalisations add their parameters, Transpose
//! moves it, Concat/Split/Slice shift offsets, Reshape folds it into blocks
//! or splits it into heads, consumers that contract over it (Conv input
//! channels, Gemm/MatMul input features) add their input-side slices.
//! Combining two spaces element-wise (a residual Add, the two operands of
//! an attention MatMul) couples them into one group.
//!
//! Some structures must go in units larger than a channel: the heads of a
//! head-split Reshape, the groups of a grouped Conv or GroupNormalization,
//! and the K/V heads shared by several query heads (grouped-query
//! attention). The space is then *coarsened*: one unit spans several
//! channels, and every slice and layout on it widens accordingly.
//!
//! Anything the contracts do not cover — an unknown op, a Gather or a
//! reduction over the channel axis, a Reshape that moves it, normalisation
//! across it, a graph output — makes the touching group unprunable, with
//! the node and the reason. The analysis never guesses.

use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{normalize_axis, Graph, Model, Node, ValueId};
use serde::Serialize;
use std::collections::HashMap;

/// One parameter slice of a group: channel `c` owns the indices
/// `offset + c·block .. offset + (c+1)·block` of `tensor` along `axis`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct Member {
    pub tensor: String,
    pub axis: usize,
    pub offset: usize,
    pub block: usize,
    /// For a consumer's input-side slice: the activation it multiplies
    /// (same axis position, offset and block on that value's channel axis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<(String, usize)>,
}

/// A constant or attribute that spells out a channel count and must shrink
/// by `per_channel` for every channel removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fix {
    /// Entry `entry` of the integer constant `tensor` (a Reshape target,
    /// Split sizes, Slice bounds).
    Entry {
        tensor: String,
        entry: usize,
        per_channel: usize,
    },
    /// The integer attribute (or entry of an integer-list attribute) of the
    /// node that produces `node_output`.
    Attribute {
        node_output: String,
        attribute: String,
        entry: Option<usize>,
        per_channel: usize,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// Channels (or heads, or conv groups: the units removed one at a time).
    pub channels: usize,
    /// What opened it: "conv", "gemm", "matmul", "embedding"; "heads",
    /// "conv_groups" and "norm_groups" after coarsening; "residual_stream"
    /// once a LayerNormalization normalises across it.
    pub kind: String,
    /// The nodes whose output channels these are.
    pub sources: Vec<String>,
    pub members: Vec<Member>,
    /// Parameters per channel (all member slices of one channel).
    pub params_per_channel: u64,
    pub prunable: bool,
    pub reasons: Vec<String>,
    pub fixes: Vec<Fix>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ZeroGroups {
    pub groups: Vec<Group>,
    pub total_params: u64,
    pub prunable_params: u64,
}

/// A run of one channel space along an activation's channel axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    space: usize,
    offset: usize,
    block: usize,
}

/// The channel spaces an activation carries, all on one axis.
#[derive(Clone, Debug)]
struct Layout {
    axis: usize,
    segments: Vec<Segment>,
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
    fixes: Vec<Vec<Fix>>,
}

impl Spaces {
    fn open(&mut self, channels: usize, kind: &str, source: &str) -> usize {
        self.parent.push(self.parent.len());
        self.channels.push(channels);
        self.kind.push(kind.into());
        self.sources.push(vec![source.into()]);
        self.members.push(Vec::new());
        self.reasons.push(Vec::new());
        self.fixes.push(Vec::new());
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

    fn units(&mut self, s: usize) -> usize {
        let r = self.find(s);
        self.channels[r]
    }

    fn union(&mut self, a: usize, b: usize, at: &str) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.channels[a] != self.channels[b] {
            let why = format!(
                "{at}: couples {} with {} channels",
                self.channels[a], self.channels[b]
            );
            self.refuse(a, why.clone());
            self.refuse(b, why);
        }
        self.parent[b] = a;
        let m = std::mem::take(&mut self.members[b]);
        self.members[a].extend(m);
        let r = std::mem::take(&mut self.reasons[b]);
        for reason in r {
            self.refuse(a, reason);
        }
        let s = std::mem::take(&mut self.sources[b]);
        self.sources[a].extend(s);
        let f = std::mem::take(&mut self.fixes[b]);
        self.fixes[a].extend(f);
        if self.kind[a] != self.kind[b] && rank_of_kind(&self.kind[b]) > rank_of_kind(&self.kind[a])
        {
            self.kind[a] = self.kind[b].clone();
        }
    }

    fn add(&mut self, s: usize, member: Member) {
        let r = self.find(s);
        self.members[r].push(member);
    }

    fn fix(&mut self, s: usize, fix: Fix) {
        let r = self.find(s);
        self.fixes[r].push(fix);
    }

    fn refuse(&mut self, s: usize, reason: String) {
        let r = self.find(s);
        if !self.reasons[r].contains(&reason) {
            self.reasons[r].push(reason);
        }
    }
}

/// Which kind names a merged group: the most specific structure wins.
fn rank_of_kind(kind: &str) -> u8 {
    match kind {
        "residual_stream" => 4,
        "heads" => 3,
        "conv_groups" | "norm_groups" => 2,
        _ => 1,
    }
}

fn label(n: &Node) -> String {
    format!("node '{}' ({})", n.display_name(), n.op_type)
}

/// Where one entry of an integer vector (a Reshape target, Slice bounds)
/// comes from: a constant tensor's entry, or something computed at run
/// time from shapes (which follow the pruned sizes by themselves).
enum EntrySource {
    Constant {
        tensor: String,
        entry: usize,
        value: i64,
    },
    Runtime,
}

/// The walk over the graph in topological order.
struct Walk<'g> {
    graph: &'g Graph,
    /// `graph` with every symbolic input dim bound to its own size.
    shapes: Graph,
    sp: Spaces,
    layouts: HashMap<ValueId, Layout>,
}

impl<'g> Walk<'g> {
    fn dims(&self, v: ValueId) -> Option<Vec<i64>> {
        value_type(&self.shapes, v).and_then(|t| t.static_dims())
    }

    fn rank(&self, v: ValueId) -> Option<usize> {
        self.dims(v).map(|d| d.len())
    }

    fn is_const(&self, v: ValueId) -> bool {
        constant(self.graph, v).is_some()
    }

    fn const_ints(&self, v: ValueId) -> Option<Vec<i64>> {
        constant(self.graph, v)?.to_i64_vec().ok()
    }

    fn name(&self, v: ValueId) -> String {
        self.graph.value(v).name.clone()
    }

    fn refuse_layout(&mut self, layout: &Layout, why: String) {
        for s in &layout.segments {
            self.sp.refuse(s.space, why.clone());
        }
    }

    /// Widens one unit of `space` to `factor` of its current units.
    fn coarsen(&mut self, space: usize, factor: usize, at: &str) -> bool {
        let r = self.sp.find(space);
        if factor == 1 {
            return true;
        }
        if factor == 0 || !self.sp.channels[r].is_multiple_of(factor) {
            let why = format!(
                "{at}: needs units of {factor} channels, which do not divide {}",
                self.sp.channels[r]
            );
            self.sp.refuse(r, why);
            return false;
        }
        self.sp.channels[r] /= factor;
        for m in &mut self.sp.members[r] {
            m.block *= factor;
        }
        for f in &mut self.sp.fixes[r] {
            match f {
                Fix::Entry { per_channel, .. } | Fix::Attribute { per_channel, .. } => {
                    *per_channel *= factor
                }
            }
        }
        let values: Vec<ValueId> = self.layouts.keys().copied().collect();
        for v in values {
            let mut layout = self.layouts.remove(&v).expect("listed");
            for seg in &mut layout.segments {
                if self.sp.find(seg.space) == r {
                    seg.block *= factor;
                }
            }
            self.layouts.insert(v, layout);
        }
        true
    }

    /// The layout `v` carries now (coarsening rewrites the map).
    fn layout(&self, v: ValueId) -> Layout {
        self.layouts[&v].clone()
    }

    /// Couples the layouts of `a` and `b` segment by segment (operands of
    /// an element-wise op, or the batch axes of an attention MatMul).
    /// Blocks that differ by a whole factor coarsen the finer space
    /// (grouped-query attention: one K/V head serves several query heads).
    fn couple(&mut self, a: ValueId, b: ValueId, at: &str) -> bool {
        let (la, lb) = (self.layout(a), self.layout(b));
        if la.segments.len() != lb.segments.len() {
            let why = format!("{at}: operands carry different channel layouts");
            self.refuse_layout(&la, why.clone());
            self.refuse_layout(&lb, why);
            return false;
        }
        for i in 0..la.segments.len() {
            let (x, y) = (self.layout(a).segments[i], self.layout(b).segments[i]);
            let aligned = x.offset == y.offset
                && (x.block == y.block || {
                    let (fine, factor) = if y.block > x.block {
                        (x.space, y.block / x.block)
                    } else {
                        (y.space, x.block / y.block)
                    };
                    x.block.max(y.block) % x.block.min(y.block) == 0
                        && self.coarsen(fine, factor, at)
                });
            if !aligned {
                let why = format!("{at}: operands carry channels at different offsets or blocks");
                self.sp.refuse(x.space, why.clone());
                self.sp.refuse(y.space, why);
                return false;
            }
            self.sp.union(x.space, y.space, at);
        }
        true
    }

    /// Adds `tensor`'s slices along `axis` for every segment of `layout`.
    fn add_slices(
        &mut self,
        layout: &Layout,
        tensor: ValueId,
        axis: usize,
        reads: Option<ValueId>,
    ) {
        let name = self.name(tensor);
        let activation = reads.map(|v| (self.name(v), layout.axis));
        for seg in &layout.segments {
            self.sp.add(
                seg.space,
                Member {
                    tensor: name.clone(),
                    axis,
                    offset: seg.offset,
                    block: seg.block,
                    activation: activation.clone(),
                },
            );
        }
    }

    /// Opens a space of `channels` on `out`'s `axis`, owning `slices`
    /// (tensor, axis) of its producer.
    fn open(
        &mut self,
        n: &Node,
        kind: &str,
        channels: usize,
        slices: &[(ValueId, usize)],
        out: ValueId,
        axis: usize,
    ) -> usize {
        let s = self.sp.open(channels, kind, n.display_name());
        for &(t, a) in slices {
            let tensor = self.name(t);
            self.sp.add(
                s,
                Member {
                    tensor,
                    axis: a,
                    offset: 0,
                    block: 1,
                    activation: None,
                },
            );
        }
        self.layouts.insert(
            out,
            Layout {
                axis,
                segments: vec![Segment {
                    space: s,
                    offset: 0,
                    block: 1,
                }],
            },
        );
        s
    }

    /// Where entry `entry` of the integer vector `v` comes from.
    fn entry_source(&self, v: ValueId, entry: usize) -> Option<EntrySource> {
        if let Some(values) = self.const_ints(v) {
            return Some(EntrySource::Constant {
                tensor: self.name(v),
                entry,
                value: *values.get(entry)?,
            });
        }
        let (p, _) = self.graph.value(v).producer?;
        let p = self.graph.node(p);
        if p.op_type != "Concat" || !p.is_onnx() {
            return None;
        }
        let mut start = 0;
        for piece in p.inputs().iter().flatten() {
            let len = self.dims(*piece)?.first().copied().unwrap_or(1) as usize;
            if entry < start + len {
                return match self.const_ints(*piece) {
                    Some(values) => Some(EntrySource::Constant {
                        tensor: self.name(*piece),
                        entry: entry - start,
                        value: values[entry - start],
                    }),
                    None if self.read_from_shape(*piece, 16) => Some(EntrySource::Runtime),
                    None => None,
                };
            }
            start += len;
        }
        None
    }

    /// `v` is computed from a Shape (or Size) of some activation, so it
    /// follows pruned sizes at run time (up to `depth` producers back).
    fn read_from_shape(&self, v: ValueId, depth: usize) -> bool {
        let Some((p, _)) = self.graph.value(v).producer else {
            return false;
        };
        let p = self.graph.node(p);
        match p.op_type.as_str() {
            "Shape" | "Size" => true,
            "Constant" => false,
            _ => {
                depth > 0
                    && p.inputs()
                        .iter()
                        .flatten()
                        .any(|&i| self.read_from_shape(i, depth - 1))
            }
        }
    }

    fn walk(&mut self) {
        let Ok(order) = self.graph.topo_order() else {
            return;
        };
        for id in order {
            let graph = self.graph;
            let n = graph.node(id);
            let carried: Vec<(usize, Layout)> = n
                .inputs()
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, self.layouts.get(&(*v)?)?.clone())))
                .collect();
            let here = label(n);
            self.refuse_captures(n, &here);
            if !n.is_onnx() {
                for (_, l) in &carried {
                    self.refuse_layout(l, format!("{here}: op outside the ONNX domain"));
                }
                continue;
            }
            let Some(out) = n.output(0) else { continue };
            let outcome = match n.op_type.as_str() {
                "Conv" | "ConvTranspose" => self.contract_conv(n, &carried, out),
                "Gemm" | "MatMul" => self.contract_matmul(n, &carried, out),
                "Gather" => self.contract_gather(n, &carried, out),
                _ if carried.is_empty() => Ok(()),
                op => self.contract_carrying(op, n, &carried, out),
            };
            if let Err(why) = outcome {
                for (_, l) in &carried {
                    self.refuse_layout(l, format!("{here}: {why}"));
                }
                self.layouts.remove(&out);
            }
        }
        for &o in &self.graph.outputs {
            if let Some(l) = self.layouts.get(&o).cloned() {
                self.refuse_layout(&l, format!("reaches the graph output '{}'", self.name(o)));
            }
        }
    }

    /// A subgraph (If/Loop/Scan body) that reads an outer activation by
    /// name is a consumer too; the contracts do not follow channels into
    /// bodies, so the groups it reads are refused.
    fn refuse_captures(&mut self, n: &Node, here: &str) {
        for a in &n.attributes {
            for body in a.value.graphs() {
                for name in body.captured_names() {
                    let Some(v) = self.graph.value_by_name(&name) else {
                        continue;
                    };
                    if let Some(l) = self.layouts.get(&v).cloned() {
                        self.refuse_layout(
                            &l,
                            format!(
                                "{here}: '{name}' is read inside its subgraph '{}', which the analysis does not follow",
                                a.name
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Conv and ConvTranspose: input channels are contracted, output
    /// channels open a space; a grouped Conv goes in whole groups.
    fn contract_conv(
        &mut self,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let transpose = n.op_type == "ConvTranspose";
        let (Some(x), Some(w)) = (n.input(0), n.input(1)) else {
            return Err("missing inputs".into());
        };
        let wd = self.dims(w).unwrap_or_default();
        if !self.is_const(w) || wd.len() < 3 {
            return Err("weights are not a constant".into());
        }
        if let Some((i, _)) = carried.iter().find(|(i, _)| *i != 0) {
            return Err(format!("channels reach parameter input {i}"));
        }
        let group = n.int_attr("group", 1).max(1) as usize;
        let (in_axis, out_axis) = if transpose { (0, 1) } else { (1, 0) };
        let cout = if transpose {
            wd[1] as usize * group
        } else {
            wd[0] as usize
        };
        let input = carried.first().map(|(_, l)| l.clone());
        if let Some(l) = &input {
            if l.axis != 1 {
                return Err(format!("channels reach the convolution on axis {}", l.axis));
            }
        }
        let mut slices = vec![(w, out_axis)];
        slices.extend(n.input(2).map(|b| (b, 0)));
        if group == 1 {
            if let Some(l) = &input {
                self.add_slices(l, w, in_axis, Some(x));
            }
            self.open(n, "conv", cout, &slices, out, 1);
            return Ok(());
        }
        if transpose {
            return Err(format!("grouped transposed convolution (group={group})"));
        }
        // Grouped: group k reads input channels of group k only, so a
        // unit is one group on both sides, and the attribute counts them.
        let here = label(n);
        let Some(l) = input else {
            let s = self.open(n, "conv_groups", cout, &slices, out, 1);
            self.sp.refuse(
                s,
                format!("{here}: grouped convolution whose input channels cannot be removed with its groups"),
            );
            return Ok(());
        };
        let cin = self.dims(x).and_then(|d| d.get(1).copied()).unwrap_or(0) as usize;
        let [seg] = l.segments[..] else {
            return Err("grouped convolution over several channel spaces".into());
        };
        let units = self.sp.units(seg.space);
        if seg.offset != 0 || units * seg.block != cin || !units.is_multiple_of(group) {
            return Err(format!(
                "grouped convolution (group={group}) does not align with the channel space"
            ));
        }
        let kind = if cout == group && cin == group {
            "conv"
        } else {
            "conv_groups"
        };
        let s = self.open(n, kind, cout, &slices, out, 1);
        if self.coarsen(s, cout / group, &here) && self.coarsen(seg.space, units / group, &here) {
            // Added once a unit is one group.
            self.sp.fix(
                s,
                Fix::Attribute {
                    node_output: self.name(out),
                    attribute: "group".into(),
                    entry: None,
                    per_channel: 1,
                },
            );
            self.sp.union(seg.space, s, &here);
        }
        Ok(())
    }

    /// Gemm and MatMul: with a constant matrix, the input features are
    /// contracted and the output features open a space; between two
    /// activations (attention), batch axes couple and rows/columns pass.
    fn contract_matmul(
        &mut self,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let gemm = n.op_type == "Gemm";
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            return Err("missing inputs".into());
        };
        let (ra, rb, ro) = (
            self.rank(a).unwrap_or(0),
            self.rank(b).unwrap_or(0),
            self.rank(out).unwrap_or(0),
        );
        let trans_a = gemm && n.int_attr("transA", 0) == 1;
        let trans_b = gemm && n.int_attr("transB", 0) == 1;
        let la = carried
            .iter()
            .find(|(i, _)| *i == 0)
            .map(|(_, l)| l.clone());
        let lb = carried
            .iter()
            .find(|(i, _)| *i == 1)
            .map(|(_, l)| l.clone());
        if carried.iter().any(|(i, _)| *i == 2) {
            return Err("channels reach the bias of a Gemm".into());
        }
        if self.is_const(b) && rb == 2 && lb.is_none() {
            let wd = self.dims(b).unwrap_or_default();
            if let Some(l) = &la {
                if trans_a {
                    return Err("transposed input".into());
                }
                if l.axis + 1 == ra {
                    self.add_slices(l, b, if trans_b { 1 } else { 0 }, Some(a));
                } else if ra == ro {
                    // Rows pass through.
                    self.layouts.insert(out, l.clone());
                } else {
                    return Err("channels on an axis the product broadcasts".into());
                }
            }
            let features = if trans_b { wd[0] } else { wd[1] } as usize;
            let kind = if gemm { "gemm" } else { "matmul" };
            let mut slices = vec![(b, if trans_b { 0 } else { 1 })];
            let mut bias_ok = true;
            if let Some(c) = n.input(2) {
                match self.dims(c) {
                    Some(cd) if cd.last().copied() == Some(features as i64) => {
                        slices.push((c, cd.len() - 1))
                    }
                    Some(cd) if cd.iter().all(|&d| d == 1) => {}
                    _ => bias_ok = false,
                }
            }
            if la.as_ref().is_some_and(|l| l.axis + 1 != ra) {
                // Rows carry a space already; the output features open none.
                return Ok(());
            }
            let s = self.open(n, kind, features, &slices, out, ro.saturating_sub(1));
            if !bias_ok {
                self.sp.refuse(
                    s,
                    format!("{}: bias does not broadcast per feature", label(n)),
                );
            }
            return Ok(());
        }
        if gemm || ra < 2 || rb < 2 || ra != rb || ra != ro {
            return Err("product of activations with these ranks".into());
        }
        // Two activations: [.., M, K] × [.., K, N].
        let batch = |l: &Layout| l.axis + 2 < ra;
        match (&la, &lb) {
            (Some(x), Some(y)) if batch(x) && x.axis == y.axis => {
                if self.couple(a, b, &label(n)) {
                    let l = self.layout(a);
                    self.layouts.insert(out, l);
                }
                Ok(())
            }
            (Some(x), Some(y)) if x.axis + 1 == ra && y.axis + 2 == rb => {
                // Contracted on both sides: coupled, and gone from the output.
                self.couple(a, b, &label(n));
                Ok(())
            }
            (Some(x), None) if x.axis + 2 == ra => {
                self.layouts.insert(out, x.clone());
                Ok(())
            }
            (None, Some(y)) if y.axis + 1 == rb => {
                self.layouts.insert(out, y.clone());
                Ok(())
            }
            _ => Err("channels on an axis this product mixes".into()),
        }
    }

    /// Gather: a constant table gathered on axis 0 is an embedding (its
    /// columns open a space); an activation gathered on another axis keeps
    /// its channels.
    fn contract_gather(
        &mut self,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let (Some(data), Some(indices)) = (n.input(0), n.input(1)) else {
            return Err("missing inputs".into());
        };
        let rank = self.rank(data).unwrap_or(0);
        let axis = normalize_axis(n.int_attr("axis", 0), rank).ok_or("bad axis")?;
        let ri = self.rank(indices).unwrap_or(0);
        if carried.iter().any(|(i, _)| *i == 1) {
            return Err("channels used as indices".into());
        }
        match carried.first() {
            Some((_, l)) if l.axis == axis => Err("gathers along the channel axis".into()),
            Some((_, l)) => {
                let new_axis = if axis < l.axis {
                    l.axis - 1 + ri
                } else {
                    l.axis
                };
                self.layouts.insert(
                    out,
                    Layout {
                        axis: new_axis,
                        ..l.clone()
                    },
                );
                Ok(())
            }
            None => {
                let dd = self.dims(data).unwrap_or_default();
                let float = constant(self.graph, data).is_some_and(|t| t.dtype.is_float());
                if float && rank == 2 && axis == 0 && dd[1] > 1 {
                    self.open(n, "embedding", dd[1] as usize, &[(data, 1)], out, ri);
                }
                Ok(())
            }
        }
    }

    /// Ops that take a layout through without contracting it.
    fn contract_carrying(
        &mut self,
        op: &str,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let first = carried[0].1.clone();
        let only_data = carried.len() == 1 && carried[0].0 == 0;
        match op {
            "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Clip" | "HardSwish" | "HardSigmoid"
            | "Gelu" | "Erf" | "Elu" | "Selu" | "Softplus" | "Softsign" | "Identity"
            | "Dropout" | "Cast" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Swish" | "Mish" | "Celu"
            | "IsNaN" | "IsInf" | "Not" | "Sign" | "Floor" | "Ceil" | "Round"
            | "ThresholdedRelu" | "Shrink" | "Sin" | "Cos" => {
                if !only_data {
                    return Err("channels reach a parameter input".into());
                }
                self.layouts.insert(out, first);
                Ok(())
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "LpPool"
            | "GlobalLpPool" | "LRN" | "Upsample" | "DepthToSpace" | "SpaceToDepth" => {
                if op.ends_with("Space") || op.ends_with("Depth") {
                    return Err("moves channels into space".into());
                }
                if first.axis != 1 || !only_data {
                    return Err("pooling over the channel axis".into());
                }
                // LRN normalises across neighbouring channels.
                if op == "LRN" {
                    return Err("LRN normalises across neighbouring channels".into());
                }
                self.layouts.insert(out, first);
                Ok(())
            }
            "Resize" => {
                if !only_data {
                    return Err("channels reach the scales".into());
                }
                let scales = n
                    .input(2)
                    .and_then(|s| constant(self.graph, s)?.to_f32_vec().ok());
                let sizes = n.input(3).and_then(|s| self.const_ints(s));
                let keeps = match (scales, sizes) {
                    (Some(s), _) if !s.is_empty() => s.get(first.axis) == Some(&1.0),
                    (_, Some(_)) => false,
                    _ => n.input(3).is_none(),
                };
                if !keeps {
                    return Err("resizes the channel axis, or its size is spelled out".into());
                }
                self.layouts.insert(out, first);
                Ok(())
            }
            "BatchNormalization" | "InstanceNormalization" => {
                if first.axis != 1 || !only_data {
                    return Err("normalisation does not run per channel here".into());
                }
                for p in n.inputs()[1..].iter().flatten() {
                    self.add_slices(&first, *p, 0, None);
                }
                self.layouts.insert(out, first);
                Ok(())
            }
            "GroupNormalization" => self.contract_group_norm(n, &first, only_data, out),
            "LayerNormalization" | "RMSNormalization" => {
                self.contract_layer_norm(n, first, only_data, out)
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let rank = self.rank(out).unwrap_or(0);
                let axis = normalize_axis(n.int_attr("axis", -1), rank).ok_or("bad axis")?;
                if axis == first.axis {
                    return Err("normalises over the channel axis".into());
                }
                self.layouts.insert(out, first);
                Ok(())
            }
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp" => {
                self.contract_reduce(n, first, out)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Sum" | "Max" | "Min" | "Mean" | "PRelu" | "Where"
            | "Pow" | "And" | "Or" | "Xor" | "Equal" | "Less" | "Greater" | "LessOrEqual"
            | "GreaterOrEqual" => self.contract_elementwise(op, n, carried, out),
            "Transpose" => {
                let rank = self.rank(out).unwrap_or(0);
                let perm = n
                    .ints_attr("perm")
                    .unwrap_or_else(|| (0..rank as i64).rev().collect());
                let axis = perm
                    .iter()
                    .position(|&p| p == first.axis as i64)
                    .ok_or("bad permutation")?;
                self.layouts.insert(out, Layout { axis, ..first });
                Ok(())
            }
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                if !only_data {
                    return Err("channels reach the shape".into());
                }
                self.contract_reshape(n, first, out)
            }
            "Expand" | "Tile" => {
                let (Some(x), o) = (n.input(0).and_then(|x| self.dims(x)), self.dims(out)) else {
                    return Err("shape unknown".into());
                };
                let o = o.ok_or("shape unknown")?;
                let axis = first.axis + o.len() - x.len();
                if !only_data || o[axis] != x[first.axis] {
                    return Err("repeats along the channel axis".into());
                }
                let layout = Layout { axis, ..first };
                if op == "Expand" {
                    // The target shape may spell out the channel count.
                    self.fix_spelled_count(n, &layout)?;
                }
                self.layouts.insert(out, layout);
                Ok(())
            }
            "Pad" => self.contract_pad(n, first, only_data, out),
            "Concat" => self.contract_concat(n, carried, out),
            "Split" => self.contract_split(n, &first, only_data),
            "Slice" => self.contract_slice(n, first, only_data, out),
            "Shape" | "Size" => Ok(()),
            _ => Err("no axis contract for this op".into()),
        }
    }

    /// LayerNormalization and RMSNormalization: channels before the normalised
    /// axes pass; normalised ones are a residual stream, coupled by the statistics.
    fn contract_layer_norm(
        &mut self,
        n: &Node,
        first: Layout,
        only_data: bool,
        out: ValueId,
    ) -> Result<(), String> {
        let rank = self.rank(out).unwrap_or(0);
        let axis = normalize_axis(n.int_attr("axis", -1), rank).ok_or("bad axis")?;
        if !only_data {
            return Err("channels reach the scale or bias".into());
        }
        if first.axis < axis {
            self.layouts.insert(out, first);
            return Ok(());
        }
        for p in n.inputs()[1..].iter().flatten() {
            let prank = self.rank(*p).unwrap_or(0);
            if let Some(a) = (first.axis + prank).checked_sub(rank) {
                self.add_slices(&first, *p, a, None);
            }
        }
        for seg in &first.segments {
            let r = self.sp.find(seg.space);
            self.sp.kind[r] = "residual_stream".into();
            self.sp.refuse(
                r,
                format!("{}: normalises across these channels (removing one changes the statistics of the rest): a residual-stream group, not prunable channel by channel", label(n)),
            );
        }
        self.layouts.insert(out, first);
        Ok(())
    }

    /// Reductions over axes other than the channels' (the channel axis moves
    /// down past removed axes).
    fn contract_reduce(&mut self, n: &Node, first: Layout, out: ValueId) -> Result<(), String> {
        let rank = self
            .dims(n.input(0).ok_or("no input")?)
            .map_or(0, |d| d.len());
        let axes = n
            .ints_attr("axes")
            .or_else(|| n.input(1).and_then(|a| self.const_ints(a)))
            .ok_or("reduces over every axis, or axes computed at run time")?;
        let axes: Vec<usize> = axes
            .iter()
            .filter_map(|&a| normalize_axis(a, rank))
            .collect();
        if axes.is_empty() || axes.contains(&first.axis) {
            return Err("reduces over the channel axis (as a decomposed RMSNorm or LayerNorm does: the whole hidden size is coupled)".into());
        }
        let keep = n.int_attr("keepdims", 1) == 1;
        let before = axes.iter().filter(|&&a| a < first.axis).count();
        let axis = if keep {
            first.axis
        } else {
            first.axis - before
        };
        self.layouts.insert(out, Layout { axis, ..first });
        Ok(())
    }

    /// Pad, with no padding along the channel axis.
    fn contract_pad(
        &mut self,
        n: &Node,
        first: Layout,
        only_data: bool,
        out: ValueId,
    ) -> Result<(), String> {
        let rank = self.rank(out).unwrap_or(0);
        let pads = n
            .ints_attr("pads")
            .or_else(|| n.input(1).and_then(|p| self.const_ints(p)));
        let axes = n.input(3).and_then(|a| self.const_ints(a));
        let ok = match (pads, axes) {
            (Some(p), None) if p.len() == 2 * rank => {
                p[first.axis] == 0 && p[first.axis + rank] == 0
            }
            (Some(p), Some(axes)) => axes.iter().enumerate().all(|(i, &a)| {
                normalize_axis(a, rank) != Some(first.axis) || (p[i] == 0 && p[i + axes.len()] == 0)
            }),
            _ => false,
        };
        if !ok || !only_data {
            return Err("pads along the channel axis".into());
        }
        self.layouts.insert(out, first);
        Ok(())
    }

    fn contract_group_norm(
        &mut self,
        n: &Node,
        first: &Layout,
        only_data: bool,
        out: ValueId,
    ) -> Result<(), String> {
        let groups = n.int_attr("num_groups", 0).max(0) as usize;
        let [seg] = first.segments[..] else {
            return Err("group normalisation over several channel spaces".into());
        };
        let channels = self.dims(out).and_then(|d| d.get(1).copied()).unwrap_or(0) as usize;
        let units = self.sp.units(seg.space);
        if first.axis != 1 || !only_data || groups == 0 || seg.offset != 0 {
            return Err("group normalisation does not run per channel group here".into());
        }
        if units * seg.block != channels || !units.is_multiple_of(groups) {
            return Err("groups do not align with the channel space".into());
        }
        let here = label(n);
        if !self.coarsen(seg.space, units / groups, &here) {
            return Ok(());
        }
        let per_group = channels / groups;
        for p in n.inputs()[1..].iter().flatten() {
            let len = self.dims(*p).and_then(|d| d.first().copied()).unwrap_or(0) as usize;
            let block = if len == groups { 1 } else { per_group };
            self.sp.add(
                seg.space,
                Member {
                    tensor: self.name(*p),
                    axis: 0,
                    offset: 0,
                    block,
                    activation: None,
                },
            );
        }
        self.sp.fix(
            seg.space,
            Fix::Attribute {
                node_output: self.name(out),
                attribute: "num_groups".into(),
                entry: None,
                per_channel: 1,
            },
        );
        let r = self.sp.find(seg.space);
        if rank_of_kind(&self.sp.kind[r]) < rank_of_kind("norm_groups") {
            self.sp.kind[r] = "norm_groups".into();
        }
        let l = self.layout(n.input(0).expect("carried"));
        self.layouts.insert(out, l);
        Ok(())
    }

    fn contract_elementwise(
        &mut self,
        op: &str,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let here = label(n);
        let ro = self.rank(out).ok_or("shape unknown")?;
        let od = self.dims(out).unwrap_or_default();
        // Every carried operand, with its axis in the output.
        let mut aligned: Vec<Layout> = Vec::new();
        for (i, l) in carried {
            let r = self.rank(n.input(*i).expect("carried")).unwrap_or(0);
            if matches!(op, "Pow" | "Div") && *i == 1 {
                return Err("channels reach a divisor or exponent".into());
            }
            aligned.push(Layout {
                axis: l.axis + ro - r,
                ..l.clone()
            });
        }
        let axis = aligned[0].axis;
        if aligned.iter().any(|l| l.axis != axis) {
            return Err("operands carry channels on different axes".into());
        }
        let operand = |k: usize| n.input(carried[k].0).expect("carried");
        for k in 1..carried.len() {
            if !self.couple(operand(0), operand(k), &here) {
                return Ok(());
            }
        }
        let layout = Layout {
            axis,
            ..self.layout(operand(0))
        };
        for (i, v) in n.inputs().iter().enumerate() {
            let Some(v) = *v else { continue };
            if carried.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let vd = self.dims(v).unwrap_or_default();
            let at = (axis + vd.len()).checked_sub(ro);
            match at.map(|a| vd[a]) {
                None | Some(1) => {} // broadcast along the channels
                Some(_) if self.is_const(v) && op == "Div" && i == 1 => {
                    return Err("divides by a per-channel constant".into());
                }
                Some(len) if self.is_const(v) && len == od[axis] => {
                    self.add_slices(&layout, v, at.expect("some"), None);
                }
                Some(_) => {
                    return Err(format!(
                        "combined with '{}', which has no channel group",
                        self.name(v)
                    ));
                }
            }
        }
        self.layouts.insert(out, layout);
        Ok(())
    }

    fn contract_reshape(&mut self, n: &Node, first: Layout, out: ValueId) -> Result<(), String> {
        let input = n.input(0).expect("carried");
        let (Some(x), Some(y)) = (self.dims(input), self.dims(out)) else {
            let runtime = n.op_type == "Reshape" && n.input(1).is_some_and(|t| !self.is_const(t));
            return Err(if runtime {
                "the reshape target is computed at run time".into()
            } else {
                "shape unknown".into()
            });
        };
        let a = first.axis;
        let xa = x[a];
        let prefix: i64 = x[..a].iter().product();
        // The output axis with as many elements before it as x's channel
        // axis has (the first that is not a unit axis).
        let b = (0..y.len())
            .find(|&b| y[..b].iter().product::<i64>() == prefix && (y[b] != 1 || xa == 1))
            .ok_or("reshape moves the channel axis across others (as a channel shuffle does)")?;
        let yb = y[b];
        // Products of the axes right after the channel axis.
        let runs = |d: &[i64], from: usize| -> Vec<i64> {
            d[from..]
                .iter()
                .scan(1i64, |p, &k| {
                    *p *= k;
                    Some(*p)
                })
                .collect()
        };
        let mut layout = Layout { axis: b, ..first };
        if yb >= xa {
            // Same size, or merged with the axes after it (channel × spatial blocks).
            let merged = yb / xa.max(1);
            if yb % xa.max(1) != 0 || (merged > 1 && !runs(&x, a + 1).contains(&merged)) {
                return Err("reshape merges the channel axis unevenly".into());
            }
            for seg in &mut layout.segments {
                seg.offset *= merged as usize;
                seg.block *= merged as usize;
            }
        } else {
            // Split: each index of the new axis spans `d` channels (heads).
            let d = (xa / yb.max(1)) as usize;
            if xa % yb.max(1) != 0 || !runs(&y, b + 1).contains(&(d as i64)) {
                return Err("reshape splits the channel axis unevenly".into());
            }
            let here = label(n);
            for i in 0..layout.segments.len() {
                let seg = self.layout(input).segments[i];
                if !seg.offset.is_multiple_of(d) {
                    return Err("reshape splits a channel segment across heads".into());
                }
                if !seg.block.is_multiple_of(d) {
                    let before = self.sp.units(seg.space);
                    if !d.is_multiple_of(seg.block)
                        || !self.coarsen(seg.space, d / seg.block, &here)
                    {
                        return Err("the heads do not align with the channels".into());
                    }
                    let r = self.sp.find(seg.space);
                    if before != self.sp.channels[r] && rank_of_kind(&self.sp.kind[r]) < 3 {
                        self.sp.kind[r] = "heads".into();
                    }
                }
            }
            layout = Layout {
                axis: b,
                ..self.layout(input)
            };
            for seg in &mut layout.segments {
                seg.offset /= d;
                seg.block /= d;
            }
        }
        if n.op_type == "Reshape" {
            self.fix_spelled_count(n, &layout)?;
        }
        self.layouts.insert(out, layout);
        Ok(())
    }

    /// A Reshape or Expand target entry that spells out the size of the channel axis
    /// shrinks with it; -1 and 0 (copy) follow by themselves, and entries
    /// computed at run time come from shapes, which follow too.
    fn fix_spelled_count(&mut self, n: &Node, layout: &Layout) -> Result<(), String> {
        let target = n.input(1).ok_or("no target")?;
        match self.entry_source(target, layout.axis) {
            Some(EntrySource::Constant {
                tensor,
                entry,
                value,
            }) if value > 0 => {
                for seg in &layout.segments {
                    self.sp.fix(
                        seg.space,
                        Fix::Entry {
                            tensor: tensor.clone(),
                            entry,
                            per_channel: seg.block,
                        },
                    );
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(format!("the {} target is computed at run time", n.op_type)),
        }
    }

    fn contract_concat(
        &mut self,
        n: &Node,
        carried: &[(usize, Layout)],
        out: ValueId,
    ) -> Result<(), String> {
        let rank = self.rank(out).ok_or("shape unknown")?;
        let axis = normalize_axis(n.int_attr("axis", 0), rank).ok_or("bad axis")?;
        let here = label(n);
        if carried.iter().all(|(_, l)| l.axis == axis) {
            // Side by side: offsets shift by the sizes before.
            let mut segments = Vec::new();
            let mut start = 0usize;
            for (i, v) in n.inputs().iter().enumerate() {
                let Some(v) = *v else { continue };
                let len = self
                    .dims(v)
                    .and_then(|d| d.get(axis).copied())
                    .ok_or("shape unknown")?;
                if carried.iter().any(|(j, _)| *j == i) {
                    let l = self.layout(v);
                    segments.extend(l.segments.iter().map(|s| Segment {
                        offset: s.offset + start,
                        ..*s
                    }));
                }
                start += len as usize;
            }
            self.layouts.insert(out, Layout { axis, segments });
            return Ok(());
        }
        // Along another axis: every operand must carry the same channels.
        let first = carried[0].1.clone();
        if carried.iter().any(|(_, l)| l.axis != first.axis) {
            return Err("operands carry channels on different axes".into());
        }
        let lead = n.input(carried[0].0).expect("carried");
        for (i, v) in n.inputs().iter().enumerate() {
            let Some(v) = *v else { continue };
            match carried.iter().find(|(j, _)| *j == i) {
                Some(_) => {
                    if v != lead && !self.couple(lead, v, &here) {
                        return Ok(());
                    }
                }
                None if self.is_const(v) => {
                    let f = self.layout(lead);
                    self.add_slices(&f, v, first.axis, None);
                }
                None => {
                    return Err(format!(
                        "concatenated with '{}', which has no channel group",
                        self.name(v)
                    ))
                }
            }
        }
        let l = self.layout(lead);
        self.layouts.insert(out, l);
        Ok(())
    }

    /// The segments of `layout` inside `start..end` of its axis, shifted
    /// to start there; an error for a segment that straddles a bound.
    fn segments_within(
        &mut self,
        layout: &Layout,
        start: usize,
        end: usize,
    ) -> Result<Vec<Segment>, String> {
        let mut inside = Vec::new();
        for seg in &layout.segments {
            let len = self.sp.units(seg.space) * seg.block;
            let (s, e) = (seg.offset, seg.offset + len);
            if s >= start && e <= end {
                inside.push(Segment {
                    offset: s - start,
                    ..*seg
                });
            } else if e > start && s < end {
                return Err("cuts through a channel space".into());
            }
        }
        Ok(inside)
    }

    fn contract_split(&mut self, n: &Node, first: &Layout, only_data: bool) -> Result<(), String> {
        let x = n.input(0).ok_or("no input")?;
        let xd = self.dims(x).ok_or("shape unknown")?;
        let axis = normalize_axis(n.int_attr("axis", 0), xd.len()).ok_or("bad axis")?;
        if !only_data {
            return Err("channels reach the split sizes".into());
        }
        let outputs: Vec<ValueId> = n.outputs().iter().flatten().copied().collect();
        if axis != first.axis {
            for o in outputs {
                self.layouts.insert(o, first.clone());
            }
            return Ok(());
        }
        // Where the sizes are spelled out: an input tensor, or the attribute.
        let (sizes, fix_at) = if let Some(sz) = n.input(1).filter(|_| n.inputs().len() > 1) {
            let sizes = self
                .const_ints(sz)
                .ok_or("split sizes computed at run time")?;
            (sizes, Ok(self.name(sz)))
        } else if let Some(sizes) = n.ints_attr("split") {
            (sizes, Err(self.name(outputs[0])))
        } else {
            return Err(
                "splits into equal parts: removing channels would make them unequal".into(),
            );
        };
        let mut start = 0usize;
        for (k, (o, size)) in outputs.iter().zip(&sizes).enumerate() {
            let end = start + *size as usize;
            let inside = self.segments_within(first, start, end)?;
            for seg in &inside {
                let fix = match &fix_at {
                    Ok(tensor) => Fix::Entry {
                        tensor: tensor.clone(),
                        entry: k,
                        per_channel: seg.block,
                    },
                    Err(node_output) => Fix::Attribute {
                        node_output: node_output.clone(),
                        attribute: "split".into(),
                        entry: Some(k),
                        per_channel: seg.block,
                    },
                };
                self.sp.fix(seg.space, fix);
            }
            if !inside.is_empty() {
                self.layouts.insert(
                    *o,
                    Layout {
                        axis,
                        segments: inside,
                    },
                );
            }
            start = end;
        }
        Ok(())
    }

    fn contract_slice(
        &mut self,
        n: &Node,
        first: Layout,
        only_data: bool,
        out: ValueId,
    ) -> Result<(), String> {
        let x = n.input(0).ok_or("no input")?;
        let xd = self.dims(x).ok_or("shape unknown")?;
        if !only_data {
            return Err("channels reach the slice bounds".into());
        }
        let (starts, ends) = (
            n.input(1).ok_or("old Slice")?,
            n.input(2).ok_or("old Slice")?,
        );
        let axes = match n.input(3) {
            Some(a) => self.const_ints(a).ok_or("axes computed at run time")?,
            None => (0..xd.len() as i64).collect(),
        };
        let steps = match n.input(4) {
            Some(s) => self.const_ints(s).ok_or("steps computed at run time")?,
            None => vec![1; axes.len()],
        };
        let Some(k) = axes
            .iter()
            .position(|&a| normalize_axis(a, xd.len()) == Some(first.axis))
        else {
            self.layouts.insert(out, first);
            return Ok(());
        };
        let (Some(s), Some(e)) = (self.const_ints(starts), self.const_ints(ends)) else {
            return Err("slice bounds computed at run time".into());
        };
        let len = xd[first.axis];
        if steps[k] != 1 || s[k] < 0 || e[k] < 0 {
            return Err("slices the channel axis with a step or from the end".into());
        }
        let (start, end) = (s[k].min(len) as usize, e[k].min(len) as usize);
        let inside = self.segments_within(&first, start, end)?;
        // Bounds after removed channels move down with them.
        for seg in &first.segments {
            let seg_end = seg.offset + self.sp.units(seg.space) * seg.block;
            for (tensor, bound, raw) in [(starts, start, s[k]), (ends, end, e[k])] {
                if seg_end <= bound && raw < len {
                    self.sp.fix(
                        seg.space,
                        Fix::Entry {
                            tensor: self.name(tensor),
                            entry: k,
                            per_channel: seg.block,
                        },
                    );
                }
            }
        }
        if !inside.is_empty() {
            self.layouts.insert(
                out,
                Layout {
                    axis: first.axis,
                    segments: inside,
                },
            );
        }
        Ok(())
    }
}

impl ZeroGroups {
    pub fn of_graph(graph: &Graph) -> ZeroGroups {
        let shapes = infer::static_shape_copy(graph).unwrap_or_else(|_| graph.clone());
        let mut walk = Walk {
            graph,
            shapes,
            sp: Spaces::default(),
            layouts: HashMap::new(),
        };
        walk.walk();
        let mut sp = walk.sp;
        let mut groups: Vec<Group> = Vec::new();
        for r in 0..sp.parent.len() {
            if sp.find(r) != r {
                continue;
            }
            let mut members = std::mem::take(&mut sp.members[r]);
            members.sort();
            members.dedup();
            let mut fixes = std::mem::take(&mut sp.fixes[r]);
            fixes.sort();
            fixes.dedup();
            let mut reasons = std::mem::take(&mut sp.reasons[r]);
            let mut params_per_channel = 0;
            for m in &members {
                let Some(v) = graph.value_by_name(&m.tensor) else {
                    continue;
                };
                let mut readers: Vec<_> = graph.consumers(v).into_iter().map(|(n, _)| n).collect();
                readers.dedup();
                let readers = readers.len();
                if readers > 1 {
                    reasons.push(format!("tensor '{}' is read by {readers} nodes", m.tensor));
                }
                if graph.is_captured(v) {
                    reasons.push(format!(
                        "tensor '{}' is also read inside a subgraph",
                        m.tensor
                    ));
                }
                let Some(t) = constant(graph, v) else {
                    reasons.push(format!(
                        "parameter '{}' is computed at run time (by {})",
                        m.tensor,
                        graph
                            .value(v)
                            .producer
                            .map_or("a graph input".into(), |(p, _)| label(graph.node(p)))
                    ));
                    continue;
                };
                let n = t.element_count().unwrap_or(0);
                let along = t.dims.get(m.axis).copied().unwrap_or(0).max(0) as u64;
                if let Some(per_index) = n.checked_div(along) {
                    params_per_channel += per_index * m.block as u64;
                }
            }
            groups.push(Group {
                channels: sp.channels[r],
                kind: sp.kind[r].clone(),
                sources: std::mem::take(&mut sp.sources[r]),
                prunable: reasons.is_empty(),
                members,
                params_per_channel,
                reasons,
                fixes,
            });
        }
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
