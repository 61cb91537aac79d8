//! Linear sites: every MatMul, Gemm or Conv of the main graph whose weight
//! is a constant, seen as matrices `W [k, n]`, one per convolution group
//! (a MatMul or Gemm has one): `k` input rows (a Conv's `c_in/g · kh · kw`
//! patch entries, channel-major), `n` outputs. With its bias (Gemm's C,
//! Conv's B, or a constant per-feature Add right after a MatMul) and its
//! input value, a site is what prune's refits, lowrank, quantize and moe
//! read and rewrite.
//!
//! Weights are read and written through the site as f64 matrices in the
//! site's own orientation (Gemm's `transB` and `alpha`, a Conv's layout
//! undone); writing keeps the tensor's element type. Sites are found
//! afresh after the graph changes: node ids and shapes move.

use faer::Mat;
use sculpt_ir::ops::infer::{constant, value_type};
use sculpt_ir::rewrite::Patch;
use sculpt_ir::{AttrValue, Attribute, Graph, IrError, Node, NodeId, Tensor, ValueId};
use std::collections::HashSet;

/// What the site computes.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteOp {
    /// `x · W` over the last axis of `x`.
    MatMul,
    /// `alpha · op(A) · op(B) + beta · C`, B the weight.
    Gemm {
        trans_a: bool,
        trans_b: bool,
        alpha: f64,
        beta: f64,
    },
    /// A convolution over `x [N, C_in, spatial…]`.
    Conv(ConvGeometry),
}

/// A convolution's window: kernel, strides, dilations and padding per
/// spatial axis, and its group count.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeometry {
    pub group: usize,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Begin pads then end pads; for `auto_pad=SAME_*`, worked out from
    /// the input's spatial dims (see [`ConvGeometry::pads_for`]).
    pub pads: Vec<usize>,
    pub auto_pad: String,
}

impl ConvGeometry {
    fn of(n: &Node, kernel: Vec<usize>) -> Result<ConvGeometry, String> {
        let spatial = kernel.len();
        let ints = |name: &str, default: usize| -> Result<Vec<usize>, String> {
            match n.ints_attr(name) {
                None => Ok(vec![default; spatial]),
                Some(v) => v
                    .iter()
                    .map(|&x| usize::try_from(x).map_err(|_| format!("negative {name}")))
                    .collect(),
            }
        };
        let pads = match n.ints_attr("pads") {
            None => vec![0; 2 * spatial],
            Some(v) => v
                .iter()
                .map(|&x| usize::try_from(x).map_err(|_| "negative pads".to_string()))
                .collect::<Result<_, _>>()?,
        };
        let geometry = ConvGeometry {
            group: n.int_attr("group", 1).max(1) as usize,
            strides: ints("strides", 1)?,
            dilations: ints("dilations", 1)?,
            kernel,
            pads,
            auto_pad: n.str_attr("auto_pad").unwrap_or("NOTSET").to_string(),
        };
        if geometry.strides.len() != spatial
            || geometry.dilations.len() != spatial
            || geometry.pads.len() != 2 * spatial
            || geometry.strides.contains(&0)
            || geometry.dilations.contains(&0)
        {
            return Err("strides, dilations or pads do not match the kernel".into());
        }
        Ok(geometry)
    }

    /// Entries of one kernel window per input channel.
    pub fn window(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Begin and end pads for an input of spatial dims `input`.
    pub fn pads_for(&self, input: &[usize]) -> Vec<usize> {
        if !self.auto_pad.starts_with("SAME") {
            return if self.auto_pad == "VALID" {
                vec![0; 2 * self.kernel.len()]
            } else {
                self.pads.clone()
            };
        }
        let k = self.kernel.len();
        let mut pads = vec![0; 2 * k];
        for a in 0..k {
            let out = input[a].div_ceil(self.strides[a]);
            let reach = (self.kernel[a] - 1) * self.dilations[a] + 1;
            let total = ((out - 1) * self.strides[a] + reach).saturating_sub(input[a]);
            let small = total / 2;
            let (begin, end) = if self.auto_pad == "SAME_LOWER" {
                (total - small, small)
            } else {
                (small, total - small)
            };
            pads[a] = begin;
            pads[a + k] = end;
        }
        pads
    }

    /// Output spatial dims for input spatial dims `input`.
    pub fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let pads = self.pads_for(input);
        let k = self.kernel.len();
        (0..k)
            .map(|a| {
                let reach = (self.kernel[a] - 1) * self.dilations[a] + 1;
                (input[a] + pads[a] + pads[a + k]).saturating_sub(reach) / self.strides[a] + 1
            })
            .collect()
    }
}

/// Where a site's output goes, for judging its errors
/// ([`LinearSite::role`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    /// Added to a residual stream.
    Stream,
    /// Multiplied with another activation (attention).
    Attention,
    /// Into the next layer (through an activation function).
    Hidden,
}

/// Where a site's bias lives.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteBias {
    /// An input of the site's node: Gemm's C, Conv's B.
    Input(ValueId),
    /// The constant of an Add that alone reads a MatMul's output.
    Add { node: NodeId, value: ValueId },
}

#[derive(Clone, Debug)]
pub struct LinearSite {
    pub node: NodeId,
    /// The node's name (or op type).
    pub name: String,
    pub op: SiteOp,
    /// The activation the site reads.
    pub input: ValueId,
    pub weight: ValueId,
    pub bias: Option<SiteBias>,
    /// The value holding the site's result with its bias.
    pub output: ValueId,
    /// Input rows per group.
    pub k: usize,
    /// Outputs per group.
    pub n: usize,
    pub groups: usize,
}

/// A site that cannot be read or written, with why.
fn site_error(graph: &Graph, site: &LinearSite, reason: impl Into<String>) -> IrError {
    IrError::node(graph.node(site.node), reason)
}

/// Every linear site of `graph`'s main graph, in topological order, and
/// the nodes that look like sites but are not, with the reason (weights
/// computed at run time, an unsupported layout).
pub fn find_sites(graph: &Graph) -> (Vec<LinearSite>, Vec<(String, String)>) {
    let mut sites = Vec::new();
    let mut skipped = Vec::new();
    let order = graph.topo_order().unwrap_or_else(|_| graph.node_ids());
    for id in order {
        let n = graph.node(id);
        if !n.is_onnx() || !matches!(n.op_type.as_str(), "MatMul" | "Gemm" | "Conv") {
            continue;
        }
        match site_of(graph, id) {
            Ok(Some(site)) => sites.push(site),
            Ok(None) => {}
            Err(why) => skipped.push((n.display_name().to_string(), why)),
        }
    }
    (sites, skipped)
}

/// The site at `id`, `Ok(None)` when its weight is not a constant (a
/// product of two activations is not a site).
fn site_of(graph: &Graph, id: NodeId) -> Result<Option<LinearSite>, String> {
    let n = graph.node(id);
    let (Some(input), Some(weight), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
        return Ok(None);
    };
    let Some(w) = constant(graph, weight) else {
        return Ok(None);
    };
    if constant(graph, input).is_some() {
        return Ok(None);
    }
    if !w.dtype.is_float() {
        return Err(format!("weight of type {} (already quantized)", w.dtype));
    }
    let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
    let (op, k, n_out, groups) = match n.op_type.as_str() {
        "MatMul" => {
            let [k, m] = dims[..] else {
                return Err(format!("weight of rank {} (a batched product)", dims.len()));
            };
            (SiteOp::MatMul, k, m, 1)
        }
        "Gemm" => {
            let [r, c] = dims[..] else {
                return Err("weight is not a matrix".into());
            };
            let trans_b = n.int_attr("transB", 0) == 1;
            let op = SiteOp::Gemm {
                trans_a: n.int_attr("transA", 0) == 1,
                trans_b,
                alpha: n.float_attr("alpha", 1.0),
                beta: n.float_attr("beta", 1.0),
            };
            let (k, m) = if trans_b { (c, r) } else { (r, c) };
            (op, k, m, 1)
        }
        _ => {
            if dims.len() < 3 {
                return Err("convolution weight of rank < 3".into());
            }
            let geometry = ConvGeometry::of(n, dims[2..].to_vec())?;
            let group = geometry.group;
            if !dims[0].is_multiple_of(group) {
                return Err("output channels do not divide into groups".into());
            }
            let k = dims[1] * geometry.window();
            (SiteOp::Conv(geometry), k, dims[0] / group, group)
        }
    };
    let mut site = LinearSite {
        node: id,
        name: n.display_name().to_string(),
        op,
        input,
        weight,
        bias: None,
        output: out,
        k,
        n: n_out,
        groups,
    };
    let total = n_out * groups;
    site.bias = match &site.op {
        SiteOp::MatMul => following_add(graph, out, total).map(|(node, value)| {
            site.output = graph.node(node).output(0).expect("an Add has an output");
            SiteBias::Add { node, value }
        }),
        _ => n
            .input(2)
            .filter(|&b| per_feature(graph, b, total))
            .map(SiteBias::Input),
    };
    if let (SiteOp::Gemm { .. }, Some(c), None) = (&site.op, n.input(2), &site.bias) {
        if !per_feature(graph, c, total) {
            return Err("Gemm's C is not one bias per output feature".into());
        }
    }
    Ok(Some(site))
}

/// `v` is a constant holding one value per feature (`[n]`, or `[1,…,1,n]`).
fn per_feature(graph: &Graph, v: ValueId, features: usize) -> bool {
    constant(graph, v).is_some_and(|t| {
        t.dtype.is_float()
            && t.dims.last().copied() == Some(features as i64)
            && t.dims[..t.dims.len() - 1].iter().all(|&d| d == 1)
    })
}

/// The Add that alone reads `out` and adds a per-feature constant.
fn following_add(graph: &Graph, out: ValueId, features: usize) -> Option<(NodeId, ValueId)> {
    if graph.outputs.contains(&out) || graph.is_captured(out) {
        return None;
    }
    let [(node, slot)] = graph.consumers(out)[..] else {
        return None;
    };
    let add = graph.node(node);
    if add.op_type != "Add" || !add.is_onnx() || add.inputs().len() != 2 {
        return None;
    }
    let other = add.input(1 - slot)?;
    // A bias of higher rank than the product would broadcast it wider.
    let out_rank = value_type(graph, out).and_then(|t| t.shape().map(<[_]>::len));
    let bias_rank = constant(graph, other)?.dims.len();
    let fits = match out_rank {
        Some(r) => bias_rank <= r,
        None => bias_rank == 1,
    };
    (per_feature(graph, other, features) && fits).then_some((node, other))
}

/// `t` as f64 values, or an error naming the tensor.
fn values(graph: &Graph, v: ValueId) -> Result<(Vec<i64>, Vec<f64>), IrError> {
    let t = constant(graph, v)
        .ok_or_else(|| IrError::tensor(graph.value(v).name.clone(), "is not a constant"))?;
    Ok((t.dims.clone(), t.to_f64_vec()?))
}

impl LinearSite {
    /// Looks the site up again by node name (ids move when a pass edits).
    pub fn refind(&self, graph: &Graph) -> Option<LinearSite> {
        find_sites(graph)
            .0
            .into_iter()
            .find(|s| s.name == self.name)
    }

    /// The weight as matrices `[k, n]`, one per group, with Gemm's
    /// `alpha` applied (what multiplies the input rows).
    pub fn weights(&self, graph: &Graph) -> Result<Vec<Mat<f64>>, IrError> {
        let (dims, w) = values(graph, self.weight)?;
        Ok(match &self.op {
            SiteOp::MatMul => {
                let n = dims[1] as usize;
                vec![Mat::from_fn(dims[0] as usize, n, |i, j| w[i * n + j])]
            }
            SiteOp::Gemm { trans_b, alpha, .. } => {
                let (r, c) = (dims[0] as usize, dims[1] as usize);
                vec![if *trans_b {
                    Mat::from_fn(c, r, |i, j| alpha * w[j * c + i])
                } else {
                    Mat::from_fn(r, c, |i, j| alpha * w[i * c + j])
                }]
            }
            SiteOp::Conv(_) => {
                let k = (dims[1..].iter().product::<i64>()) as usize;
                let n = dims[0] as usize / self.groups;
                (0..self.groups)
                    .map(|g| Mat::from_fn(k, n, |i, j| w[(g * n + j) * k + i]))
                    .collect()
            }
        })
    }

    /// Writes `mats` (one `[k', n]` per group) as the weight; `k'` may
    /// differ from the current rows (input channels removed). The tensor
    /// keeps its element type; a shared weight is copied for this site.
    pub fn set_weights(&self, graph: &mut Graph, mats: &[Mat<f64>]) -> Result<(), IrError> {
        let old = constant(graph, self.weight)
            .ok_or_else(|| site_error(graph, self, "weight is not a constant"))?
            .clone();
        if mats.len() != self.groups || mats.iter().any(|m| m.ncols() != self.n) {
            return Err(site_error(graph, self, "new weights do not fit the site"));
        }
        let rows = mats[0].nrows();
        let (dims, flat): (Vec<i64>, Vec<f64>) = match &self.op {
            SiteOp::MatMul => (
                vec![rows as i64, self.n as i64],
                (0..rows)
                    .flat_map(|i| (0..self.n).map(move |j| (i, j)))
                    .map(|(i, j)| mats[0][(i, j)])
                    .collect(),
            ),
            SiteOp::Gemm { trans_b, alpha, .. } => {
                let scale = if *alpha == 0.0 { 1.0 } else { 1.0 / alpha };
                if *trans_b {
                    (
                        vec![self.n as i64, rows as i64],
                        (0..self.n)
                            .flat_map(|j| (0..rows).map(move |i| (i, j)))
                            .map(|(i, j)| mats[0][(i, j)] * scale)
                            .collect(),
                    )
                } else {
                    (
                        vec![rows as i64, self.n as i64],
                        (0..rows)
                            .flat_map(|i| (0..self.n).map(move |j| (i, j)))
                            .map(|(i, j)| mats[0][(i, j)] * scale)
                            .collect(),
                    )
                }
            }
            SiteOp::Conv(geometry) => {
                let window = geometry.window();
                if !rows.is_multiple_of(window) {
                    return Err(site_error(graph, self, "rows are not whole kernel windows"));
                }
                let mut dims = old.dims.clone();
                dims[1] = (rows / window) as i64;
                let mut flat = Vec::with_capacity(rows * self.n * self.groups);
                for (g, m) in mats.iter().enumerate() {
                    debug_assert!(g < self.groups);
                    for j in 0..self.n {
                        flat.extend((0..rows).map(|i| m[(i, j)]));
                    }
                }
                (dims, flat)
            }
        };
        let t = Tensor::from_floats(old.dtype, dims, &flat)?;
        let name = graph.value(self.weight).name.clone();
        let mut patch = Patch::new(graph, &name);
        if patch.graph.consumers(self.weight).len() > 1 {
            let copy = patch.initializer_named("refit", t);
            graph.set_input(self.node, 1, Some(copy));
            Ok(())
        } else {
            patch.set_initializer(self.weight, t)
        }
    }

    /// The bias the site adds per output (all groups), with Gemm's `beta`
    /// applied; `None` when it has none.
    pub fn bias(&self, graph: &Graph) -> Result<Option<Vec<f64>>, IrError> {
        let Some(b) = &self.bias else {
            return Ok(None);
        };
        let v = match b {
            SiteBias::Input(v) | SiteBias::Add { value: v, .. } => *v,
        };
        let (_, mut vals) = values(graph, v)?;
        if let SiteOp::Gemm { beta, .. } = self.op {
            vals.iter_mut().for_each(|x| *x *= beta);
        }
        Ok(Some(vals))
    }

    /// True when a bias can be written (there is one, or one can be added).
    pub fn can_take_bias(&self) -> bool {
        true
    }

    /// Sets the per-output bias to `values`, adding one where the site has
    /// none (Conv's B, Gemm's C, or an Add after a MatMul). Returns the
    /// site as it now is.
    pub fn set_bias(&self, graph: &mut Graph, values: &[f64]) -> Result<(), IrError> {
        let total = self.n * self.groups;
        if values.len() != total {
            return Err(site_error(graph, self, "bias length does not fit the site"));
        }
        let dtype = constant(graph, self.weight)
            .map(|t| t.dtype)
            .ok_or_else(|| site_error(graph, self, "weight is not a constant"))?;
        match (&self.bias, &self.op) {
            (Some(SiteBias::Input(v) | SiteBias::Add { value: v, .. }), op) => {
                let old = constant(graph, *v)
                    .expect("a site bias is constant")
                    .clone();
                let beta = match op {
                    SiteOp::Gemm { beta, .. } if *beta != 0.0 => *beta,
                    _ => 1.0,
                };
                let scaled: Vec<f64> = values.iter().map(|x| x / beta).collect();
                let t = Tensor::from_floats(old.dtype, old.dims.clone(), &scaled)?;
                let name = graph.value(*v).name.clone();
                let mut patch = Patch::new(graph, &name);
                if patch.graph.consumers(*v).len() > 1 {
                    let copy = patch.initializer_named("refit", t);
                    let (node, slot) = match &self.bias {
                        Some(SiteBias::Add { node, .. }) => {
                            let slot = graph
                                .node(*node)
                                .inputs()
                                .iter()
                                .position(|i| *i == Some(*v));
                            (*node, slot.unwrap_or(1))
                        }
                        _ => (self.node, 2),
                    };
                    graph.set_input(node, slot, Some(copy));
                } else {
                    patch.set_initializer(*v, t)?;
                }
                if let SiteOp::Gemm { beta, .. } = op {
                    if *beta == 0.0 {
                        set_float_attr(graph.node_mut(self.node), "beta", 1.0);
                    }
                }
            }
            (None, SiteOp::MatMul) => {
                let t = Tensor::from_floats(dtype, vec![total as i64], values)?;
                let mut patch = Patch::replacing(graph, self.node);
                let b = patch.initializer_named("bias", t);
                patch.insert_after(self.node, "Add", &[Some(b)], vec![])?;
            }
            (None, op) => {
                let t = Tensor::from_floats(dtype, vec![total as i64], values)?;
                let mut patch = Patch::new(graph, &self.name);
                let b = patch.initializer_named("bias", t);
                graph.set_input(self.node, 2, Some(b));
                if matches!(op, SiteOp::Gemm { .. }) {
                    set_float_attr(graph.node_mut(self.node), "beta", 1.0);
                }
            }
        }
        Ok(())
    }

    /// Rows of the weight matrix (group, rows) that input channel `c` of
    /// the site's input feeds.
    pub fn rows_of_channel(&self, c: usize) -> (usize, std::ops::Range<usize>) {
        match &self.op {
            SiteOp::Conv(geometry) => {
                let window = geometry.window();
                let per_group = self.k / window;
                let (g, local) = (c / per_group, c % per_group);
                (g, local * window..(local + 1) * window)
            }
            _ => (0, c..c + 1),
        }
    }

    /// Where the site's result joins a residual stream: the output of the
    /// Add that alone reads it and adds another activation; else the
    /// site's own output. Errors are best judged against that value's
    /// energy.
    pub fn merge_value(&self, graph: &Graph) -> ValueId {
        let out = self.output;
        if let [(node, slot)] = graph.consumers(out)[..] {
            let add = graph.node(node);
            let other = add.input(1 - slot.min(1));
            if add.op_type == "Add"
                && add.is_onnx()
                && add.inputs().len() == 2
                && other.is_some_and(|o| constant(graph, o).is_none())
            {
                if let Some(merged) = add.output(0) {
                    return merged;
                }
            }
        }
        out
    }

    /// What the site's output does next, as far as its errors go: joins a
    /// residual stream, meets another activation in a product (attention
    /// queries, keys, values), or feeds the next layer through an
    /// activation function. Looked up through data movement and
    /// element-wise ops with constants.
    pub fn role(&self, graph: &Graph) -> SiteRole {
        if self.merge_value(graph) != self.output {
            return SiteRole::Stream;
        }
        let mut frontier = vec![self.output];
        for _ in 0..8 {
            let mut next = Vec::new();
            for v in frontier {
                for (id, _) in graph.consumers(v) {
                    let n = graph.node(id);
                    let others_constant = n
                        .inputs()
                        .iter()
                        .flatten()
                        .filter(|&&i| i != v)
                        .all(|&i| constant(graph, i).is_some());
                    match n.op_type.as_str() {
                        "MatMul" | "Einsum" if !others_constant => return SiteRole::Attention,
                        "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" | "Identity" | "Cast"
                        | "Split" | "Slice" => next.extend(n.outputs().iter().flatten()),
                        "Mul" | "Div" | "Add" | "Sub" if others_constant => {
                            next.extend(n.outputs().iter().flatten())
                        }
                        _ => {}
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        SiteRole::Hidden
    }

    /// The site that reads this one's output through element-wise ops
    /// alone (`act(x·W1)·W2`, the activation any function of the output
    /// and constants), by its index in `sites`; `None` where the output,
    /// or a value computed from it on the way, has other readers.
    pub fn next_through_activation(&self, graph: &Graph, sites: &[LinearSite]) -> Option<usize> {
        let order = graph.topo_order().ok()?;
        let mut reached: HashSet<ValueId> = HashSet::from([self.output]);
        let mut chain: HashSet<NodeId> = HashSet::new();
        for id in order {
            let n = graph.node(id);
            if !n.is_onnx() || !ELEMENT_WISE.contains(&n.op_type.as_str()) {
                continue;
            }
            let mut from_output = false;
            let function_of_output = n.inputs().iter().flatten().all(|&v| {
                let here = reached.contains(&v);
                from_output |= here;
                here || constant(graph, v).is_some()
            });
            if from_output && function_of_output && n.outputs().len() == 1 {
                chain.insert(id);
                reached.extend(n.outputs().iter().flatten());
            }
        }
        let next = sites.iter().position(|s| reached.contains(&s.input))?;
        let only_readers = reached.iter().all(|&v| {
            !graph.outputs.contains(&v)
                && graph
                    .consumers(v)
                    .iter()
                    .all(|(node, _)| chain.contains(node) || *node == sites[next].node)
        });
        only_readers.then_some(next)
    }

    /// Input channels per group (rows / window for a Conv).
    pub fn channels_per_group(&self) -> usize {
        match &self.op {
            SiteOp::Conv(geometry) => self.k / geometry.window(),
            _ => self.k,
        }
    }
}

/// Ops applied entry by entry (with broadcast constants): the parts of an
/// activation function.
const ELEMENT_WISE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Erf",
    "Softplus",
    "Softsign",
    "Mish",
    "Clip",
    "Exp",
    "Neg",
    "Abs",
    "Sqrt",
    "Pow",
    "Mul",
    "Div",
    "Add",
    "Sub",
    "Max",
    "Min",
];

fn set_float_attr(n: &mut Node, name: &str, value: f32) {
    n.attributes.retain(|a| a.name != name);
    n.attributes
        .push(Attribute::new(name, AttrValue::Float(value)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use sculpt_ir::text::parse;

    fn graph(text: &str) -> Graph {
        parse(text).unwrap().graph
    }

    fn valid(g: &Graph) -> bool {
        sculpt_ir::verify::verify_model(&sculpt_ir::Model::new(g.clone())).is_empty()
    }

    #[test]
    fn gemm_weights_are_seen_as_input_rows_with_alpha() {
        let g = graph(
            r#"graph "g" (%x: f32[2,3]) -> (%y) {
  init %b = f32[2,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
  init %c = f32[2] [0.5, -0.5]
  %y = Gemm(%x, %b, %c) {transB=1, alpha=2.0, beta=0.5}
}"#,
        );
        let (sites, skipped) = find_sites(&g);
        assert!(skipped.is_empty());
        let [site] = &sites[..] else {
            panic!("one site")
        };
        assert_eq!((site.k, site.n, site.groups), (3, 2, 1));
        let w = site.weights(&g).unwrap().remove(0);
        // W[i, j] = alpha · B[j, i]
        assert_eq!(w[(2, 1)], 12.0);
        assert_eq!(site.bias(&g).unwrap().unwrap(), vec![0.25, -0.25]);
        let mut g2 = g.clone();
        site.set_weights(&mut g2, std::slice::from_ref(&w)).unwrap();
        site.set_bias(&mut g2, &[1.0, 2.0]).unwrap();
        let again = site.refind(&g2).unwrap();
        assert_eq!(again.weights(&g2).unwrap()[0], w);
        assert_eq!(again.bias(&g2).unwrap().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn grouped_convolution_is_one_matrix_per_group() {
        let g = graph(
            r#"graph "g" (%x: f32[1,4,5,5]) -> (%y) {
  init %w = f32[6,2,1,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
  %y = Conv(%x, %w) {group=2}
}"#,
        );
        let site = find_sites(&g).0.remove(0);
        assert_eq!((site.k, site.n, site.groups), (2, 3, 2));
        let w = site.weights(&g).unwrap();
        // Group 1, output 0 is output channel 3: [7, 8].
        assert_eq!((w[1][(0, 0)], w[1][(1, 0)]), (7.0, 8.0));
        assert_eq!(site.rows_of_channel(3), (1, 1..2));
    }

    #[test]
    fn the_next_site_is_found_through_an_activation_alone() {
        // fc1 → GELU (as exported: x·0.5·(1 + erf(x/√2))) → fc2.
        let ffn = r#"graph "g" (%x: f32[2,3]) -> (%y) {
  init %w1 = f32[3,4] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
  init %w2 = f32[4,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
  init %s = f32[] [1.4142135]
  init %one = f32[] [1.0]
  init %half = f32[] [0.5]
  %z = MatMul(%x, %w1) @"fc1"
  %d = Div(%z, %s)
  %e = Erf(%d)
  %p = Add(%e, %one)
  %g = Mul(%z, %p)
  %h = Mul(%g, %half)
  %y = MatMul(%h, %w2) @"fc2"
}"#;
        let g = graph(ffn);
        let sites = find_sites(&g).0;
        assert_eq!(sites[0].next_through_activation(&g, &sites), Some(1));
        assert_eq!(sites[1].next_through_activation(&g, &sites), None);
        // With the pre-activation also a graph output, errors in it count
        // as they are: no next site.
        let g = graph(&ffn.replace("-> (%y)", "-> (%y, %z)"));
        let sites = find_sites(&g).0;
        assert_eq!(sites[0].next_through_activation(&g, &sites), None);
        // Nor when the activation meets another activation (a gate).
        let g = graph(
            &ffn.replace("%g = Mul(%z, %p)", "%g = Mul(%x2, %p)")
                .replace("%d = Div(%z, %s)", "%x2 = Relu(%x)\n  %d = Div(%z, %s)"),
        );
        let sites = find_sites(&g).0;
        assert_eq!(sites[0].next_through_activation(&g, &sites), None);
    }

    #[test]
    fn a_bias_is_added_after_a_matmul_that_has_none() {
        let g = graph(
            r#"graph "g" (%x: f32[2,3]) -> (%y) {
  init %w = f32[3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
  %y = MatMul(%x, %w) @"mm"
}"#,
        );
        let site = find_sites(&g).0.remove(0);
        assert!(site.bias.is_none());
        let mut g2 = g.clone();
        site.set_bias(&mut g2, &[1.0, -1.0]).unwrap();
        let again = site.refind(&g2).unwrap();
        assert!(matches!(again.bias, Some(SiteBias::Add { .. })));
        assert_eq!(again.bias(&g2).unwrap().unwrap(), vec![1.0, -1.0]);
        // The graph output keeps its name.
        assert_eq!(g2.value(g2.outputs[0]).name, "y");
        assert!(valid(&g2));
    }
}
