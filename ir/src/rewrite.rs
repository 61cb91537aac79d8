//! [`Patch`]: the one way passes and the back end build new nodes and
//! constants in a graph.
//!
//! A patch works on behalf of one place in the graph (a node it replaces,
//! or a name new values start with). Every value it makes gets a fresh
//! name from that base, and its type inferred at once, so the next step of
//! the same rewrite can read it. When a rewrite makes a new node define an
//! existing value ([`Patch::define`]), the node's inferred type is checked
//! against the value's declared type: a rewrite that would change a type or
//! a known dim is an error naming the node, not a silently wrong graph.

use crate::ops::infer::{self, constant, value_type};
use crate::{
    AttrValue, Attribute, DataType, Dim, Graph, Initializer, IrError, Node, NodeId, Result, Tensor,
    Type, Value, ValueId,
};

/// The default-domain opset new nodes are written for, unless told.
const CURRENT_OPSET: i64 = 21;

/// Builds the nodes and constants of one rewrite in `graph`.
pub struct Patch<'g> {
    pub graph: &'g mut Graph,
    /// The model's default-domain opset: new Pad and Slice nodes take their
    /// operands the way it does.
    opset: i64,
    /// The node being replaced, while it is still in the graph.
    replaced: Option<NodeId>,
    /// The replaced node's name and op (or the base), for errors and names.
    origin: Node,
    /// What new values' names start with.
    base: String,
}

impl<'g> Patch<'g> {
    /// A patch that adds to `graph`, naming what it makes after `base`.
    /// New nodes take the operands of the current opset unless
    /// [`Patch::for_opset`] says otherwise.
    pub fn new(graph: &'g mut Graph, base: &str) -> Patch<'g> {
        let mut origin = Node::new("Patch");
        origin.name = base.to_string();
        Patch {
            graph,
            opset: CURRENT_OPSET,
            replaced: None,
            origin,
            base: base.to_string(),
        }
    }

    /// A patch that replaces `node` (see [`Patch::define`]).
    pub fn replacing(graph: &'g mut Graph, node: NodeId) -> Patch<'g> {
        let n = graph.node(node);
        let base = n.display_name().to_string();
        let mut origin = Node::new(n.op_type.clone());
        origin.name = n.name.clone();
        origin.domain = n.domain.clone();
        Patch {
            graph,
            opset: CURRENT_OPSET,
            replaced: Some(node),
            origin,
            base,
        }
    }

    /// Takes the replaced node out of the graph (its outputs stay, with no
    /// producer, for new nodes to define).
    pub fn detach_replaced(&mut self) -> Option<Node> {
        let id = self.replaced.take()?;
        self.graph.detach_node(id)
    }

    /// New Pad and Slice nodes take their operands as `opset` does.
    pub fn for_opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// An error about the place this patch rewrites.
    pub fn error(&self, reason: impl Into<String>) -> IrError {
        IrError::node(&self.origin, reason)
    }

    /// Static dims of `v`.
    pub fn dims(&self, v: ValueId) -> Result<Vec<i64>> {
        value_type(self.graph, v)
            .and_then(|t| t.static_dims())
            .ok_or_else(|| {
                let name = &self.graph.value(v).name;
                self.error(format!("the shape of '{name}' is not static"))
            })
    }

    pub fn dtype(&self, v: ValueId) -> Result<DataType> {
        match value_type(self.graph, v) {
            Some(Type::Tensor { dtype, .. }) => Ok(dtype),
            _ => {
                let name = &self.graph.value(v).name;
                Err(self.error(format!("the element type of '{name}' is unknown")))
            }
        }
    }

    pub fn constant(&self, v: ValueId) -> Option<Tensor> {
        constant(self.graph, v).cloned()
    }

    /// A value name not used in the graph: `<base>_<suffix>`, numbered if taken.
    pub fn fresh_name(&self, suffix: &str) -> String {
        self.graph.unique_name(&format!("{}_{suffix}", self.base))
    }

    /// A node name not used in the graph: `<base>_<suffix>`, numbered if
    /// taken.
    pub fn fresh_node_name(&self, suffix: &str) -> String {
        self.graph
            .unique_node_name(&format!("{}_{suffix}", self.base))
    }

    /// A new initializer holding `t`, named `<base>_<suffix>`.
    pub fn initializer_named(&mut self, suffix: &str, t: Tensor) -> ValueId {
        let mut v = Value::new(self.fresh_name(suffix));
        v.init = Some(Initializer::Dense(t));
        self.graph.add_value(v)
    }

    /// A new initializer holding `t`.
    pub fn initializer(&mut self, t: Tensor) -> ValueId {
        self.initializer_named("const", t)
    }

    /// A new i64 vector initializer.
    pub fn ints(&mut self, values: &[i64]) -> ValueId {
        self.initializer(Tensor::from_i64(vec![values.len() as i64], values))
    }

    /// Replaces the tensor of the initializer `v` (its readers see the new
    /// data; no other value changes).
    pub fn set_initializer(&mut self, v: ValueId, t: Tensor) -> Result<()> {
        if self.graph.value(v).init.is_none() {
            let name = &self.graph.value(v).name;
            return Err(self.error(format!("'{name}' is not an initializer")));
        }
        let value = self.graph.value_mut(v);
        value.init = Some(Initializer::Dense(t));
        value.ty = None;
        Ok(())
    }

    /// A new node with one output, named after the base; its output's type
    /// is inferred at once.
    pub fn node(&mut self, op: &str, inputs: &[Option<ValueId>], attrs: Vec<Attribute>) -> ValueId {
        self.node_with_outputs(op, inputs, attrs, 1)[0]
    }

    /// A new node with `outputs` outputs (TopK's values and indices),
    /// named after the base; their types are inferred at once.
    pub fn node_with_outputs(
        &mut self,
        op: &str,
        inputs: &[Option<ValueId>],
        attrs: Vec<Attribute>,
        outputs: usize,
    ) -> Vec<ValueId> {
        let mut node = Node::new(op);
        node.name = self.fresh_node_name(&op.to_lowercase());
        node.attributes = attrs;
        let names = (0..outputs)
            .map(|i| match i {
                0 => Some(self.fresh_name("out")),
                _ => Some(self.fresh_name(&format!("out{i}"))),
            })
            .collect();
        let id = self.graph.add_node(node, trimmed(inputs), names);
        self.type_outputs(id);
        self.graph
            .node(id)
            .outputs()
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    fn type_outputs(&mut self, id: NodeId) {
        let types = infer::infer_node(self.graph, id);
        let outputs = self.graph.node(id).outputs().to_vec();
        for (v, ty) in outputs.into_iter().zip(types) {
            if let (Some(v), Some(ty)) = (v, ty) {
                self.graph.value_mut(v).ty = Some(ty);
            }
        }
    }

    /// `out` is now defined by a new `op` node (named like the replaced
    /// node, when there is one, which goes). Its inferred type must agree
    /// with the type `out` had.
    pub fn define(
        &mut self,
        op: &str,
        inputs: &[Option<ValueId>],
        attrs: Vec<Attribute>,
        out: ValueId,
    ) -> Result<NodeId> {
        let before = value_type(self.graph, out);
        let mut node = Node::new(op);
        node.name = match self.replaced {
            Some(_) => self.origin.name.clone(),
            None => self.fresh_node_name(&op.to_lowercase()),
        };
        node.attributes = attrs;
        if let Some((p, _)) = self.graph.value(out).producer {
            if Some(p) == self.replaced {
                self.replaced = None;
            }
            self.graph.detach_node(p);
        }
        self.graph.value_mut(out).init = None;
        let id = self
            .graph
            .add_node_defining(node, trimmed(inputs), vec![Some(out)]);
        let inferred = infer::infer_node(self.graph, id)
            .into_iter()
            .next()
            .flatten();
        if let (Some(was), Some(now)) = (&before, &inferred) {
            if !compatible(was, now) {
                let name = &self.graph.value(out).name;
                return Err(self.error(format!(
                    "the rewrite would change '{name}' from {} to {}",
                    describe(was),
                    describe(now)
                )));
            }
        }
        if before.is_none() {
            self.graph.value_mut(out).ty = inferred;
        }
        Ok(id)
    }

    /// Puts a new `op` node after `node` (which has one output): the
    /// output value keeps its name, type and readers, and is now computed
    /// by `op` from a fresh value holding `node`'s result (its first
    /// input) and `others`. Returns the fresh value; `node` is re-added
    /// under a new id, which this returns too.
    pub fn insert_after(
        &mut self,
        node: NodeId,
        op: &str,
        others: &[Option<ValueId>],
        attrs: Vec<Attribute>,
    ) -> Result<(ValueId, NodeId)> {
        let outputs = self.graph.node(node).outputs().to_vec();
        let [Some(out)] = outputs[..] else {
            return Err(self.error("can only insert after a node with one output"));
        };
        let old = self
            .graph
            .detach_node(node)
            .expect("the node is in the graph");
        if self.replaced == Some(node) {
            self.replaced = None;
        }
        let inputs = old.inputs().to_vec();
        let fresh = self.fresh_name("out");
        let moved = self.graph.add_node(old, inputs, vec![Some(fresh)]);
        self.type_outputs(moved);
        let computed = self.graph.node(moved).output(0).expect("one output");
        let mut inputs = vec![Some(computed)];
        inputs.extend_from_slice(others);
        let mut next = Node::new(op);
        next.name = self.fresh_node_name(&op.to_lowercase());
        next.attributes = attrs;
        let before = value_type(self.graph, out);
        self.graph.add_node_defining(next, inputs, vec![Some(out)]);
        if before.is_none() {
            self.graph.value_mut(out).ty = None;
        }
        Ok((computed, moved))
    }

    /// The replaced node's output `out` is now an initializer holding `t`.
    pub fn define_constant(&mut self, out: ValueId, t: Tensor) -> Result<()> {
        if let Some(was) = value_type(self.graph, out) {
            let now = Type::tensor(t.dtype, &t.dims);
            if !compatible(&was, &now) {
                let name = &self.graph.value(out).name;
                return Err(self.error(format!(
                    "the rewrite would change '{name}' from {} to {}",
                    describe(&was),
                    describe(&now)
                )));
            }
        }
        if let Some((p, _)) = self.graph.value(out).producer {
            if Some(p) == self.replaced {
                self.replaced = None;
            }
            self.graph.detach_node(p);
        }
        let v = self.graph.value_mut(out);
        v.init = Some(Initializer::Dense(t));
        v.ty = None;
        Ok(())
    }

    /// A scalar 0 of `dtype` (bool: false).
    pub fn zero(&mut self, dtype: DataType) -> ValueId {
        let bytes = dtype.bit_width().unwrap_or(8).div_ceil(8);
        self.initializer(Tensor::from_raw(dtype, vec![], vec![0u8; bytes].into()))
    }

    /// `v` as f32: itself when it is f32; a converted initializer when it
    /// is a constant and `fold` says so; else a Cast.
    pub fn f32_of(&mut self, v: ValueId, fold: impl Fn(&Tensor) -> bool) -> Result<ValueId> {
        if self.dtype(v)? == DataType::F32 {
            return Ok(v);
        }
        let folded = self
            .constant(v)
            .filter(|t| fold(t))
            .and_then(|t| Some((t.to_f32_vec().ok()?, t.dims)));
        Ok(match folded {
            Some((values, dims)) => self.initializer(Tensor::from_f32(dims, &values)),
            None => self.node("Cast", &[Some(v)], vec![cast_to(DataType::F32)]),
        })
    }

    /// `x` viewed as `dims`: a new initializer when `x` is a constant.
    pub fn reshape(&mut self, x: ValueId, dims: &[i64]) -> Result<ValueId> {
        if let Some(t) = self.constant(x) {
            let raw = t.raw_bytes()?.into_owned();
            return Ok(self.initializer(Tensor::from_raw(t.dtype, dims.to_vec(), raw.into())));
        }
        let shape = self.ints(dims);
        Ok(self.node("Reshape", &[Some(x), Some(shape)], vec![]))
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[i64]) -> ValueId {
        let attr = Attribute::new("perm", AttrValue::Ints(perm.to_vec()));
        self.node("Transpose", &[Some(x)], vec![attr])
    }

    /// `x` padded with zeros, `low` before and `high` after each axis.
    pub fn pad(&mut self, x: ValueId, low: &[i64], high: &[i64]) -> ValueId {
        let pads: Vec<i64> = low.iter().chain(high).copied().collect();
        if self.opset >= 11 {
            let pads = self.ints(&pads);
            self.node("Pad", &[Some(x), Some(pads)], vec![])
        } else {
            let attr = Attribute::new("pads", AttrValue::Ints(pads));
            self.node("Pad", &[Some(x)], vec![attr])
        }
    }

    /// `x[starts..ends]` on every axis, with `steps` (negative: backwards).
    pub fn slice(
        &mut self,
        x: ValueId,
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> Result<ValueId> {
        let axes: Vec<i64> = (0..starts.len() as i64).collect();
        if self.opset >= 10 {
            let ids = [starts, ends, &axes, steps].map(|v| Some(self.ints(v)));
            return Ok(self.node("Slice", &[Some(x), ids[0], ids[1], ids[2], ids[3]], vec![]));
        }
        if steps.iter().any(|&s| s != 1) {
            return Err(self.error("needs a Slice with steps, which opset < 10 lacks"));
        }
        let attrs = vec![
            Attribute::new("starts", AttrValue::Ints(starts.to_vec())),
            Attribute::new("ends", AttrValue::Ints(ends.to_vec())),
            Attribute::new("axes", AttrValue::Ints(axes)),
        ];
        Ok(self.node("Slice", &[Some(x)], attrs))
    }
}

/// `inputs` without trailing omitted ones (ONNX leaves them out; some
/// runtimes refuse an explicit empty last input).
fn trimmed(inputs: &[Option<ValueId>]) -> Vec<Option<ValueId>> {
    let keep = inputs
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    inputs[..keep].to_vec()
}

/// Cast's `to` attribute.
pub fn cast_to(dtype: DataType) -> Attribute {
    Attribute::new("to", AttrValue::Int(dtype.0 as i64))
}

/// Two types can describe the same value: equal element types, and where
/// both know the rank, the same rank with no two known dims differing.
fn compatible(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (
            Type::Tensor {
                dtype: da,
                shape: sa,
            },
            Type::Tensor {
                dtype: db,
                shape: sb,
            },
        ) => {
            da == db
                && match (sa, sb) {
                    (Some(x), Some(y)) => {
                        x.len() == y.len()
                            && x.iter().zip(y).all(|(p, q)| match (p, q) {
                                (Dim::Known(p), Dim::Known(q)) => p == q,
                                _ => true,
                            })
                    }
                    _ => true,
                }
        }
        _ => true,
    }
}

fn describe(t: &Type) -> String {
    match t {
        Type::Tensor {
            dtype,
            shape: Some(s),
        } => {
            let dims: Vec<String> = s.iter().map(Dim::to_string).collect();
            format!("{dtype}[{}]", dims.join(","))
        }
        Type::Tensor { dtype, shape: None } => format!("{dtype}[..]"),
        Type::Other(_) => "a non-tensor type".into(),
    }
}

/// Moves every initializer of `graph` that one If/Loop/Scan body alone
/// reads (no node of `graph`, no graph output, no other body) into that
/// body as its own initializer, and so on at every depth. Exporters keep
/// a branch's weights in the main graph; a pass that rewrites the
/// constant weights of a body's nodes then finds them in the body.
/// Returns how many moved; the model's function is unchanged.
pub fn move_constants_into_bodies(graph: &mut Graph) -> usize {
    let mut readers: std::collections::HashMap<String, Vec<(NodeId, usize, usize)>> =
        std::collections::HashMap::new();
    for (id, node) in graph.nodes() {
        for (a, attribute) in node.attributes.iter().enumerate() {
            for (b, body) in attribute.value.graphs().enumerate() {
                for name in body.captured_names() {
                    readers.entry(name).or_default().push((id, a, b));
                }
            }
        }
    }
    let initializers: std::collections::HashMap<String, ValueId> = graph
        .initializers()
        .map(|(v, value)| (value.name.clone(), v))
        .collect();
    let mut moved = 0;
    for (name, bodies) in readers {
        let [(holder, a, b)] = bodies[..] else {
            continue;
        };
        let Some(&v) = initializers.get(&name) else {
            continue;
        };
        let only_the_body = graph.consumers(v).is_empty()
            && !graph.outputs.contains(&v)
            && !graph.inputs.contains(&v);
        if !only_the_body {
            continue;
        }
        let init = graph.value_mut(v).init.take();
        graph.remove_value(v);
        let body = graph.node_mut(holder).attributes[a]
            .value
            .graphs_mut()
            .swap_remove(b);
        match body.value_by_name(&name) {
            Some(inner) => {
                let value = body.value_mut(inner);
                value.outer = false;
                value.init = init;
            }
            None => {
                let mut value = Value::new(name);
                value.init = init;
                body.add_value(value);
            }
        }
        moved += 1;
    }
    for id in graph.node_ids() {
        for attribute in &mut graph.node_mut(id).attributes {
            for body in attribute.value.graphs_mut() {
                moved += move_constants_into_bodies(body);
            }
        }
    }
    moved
}

/// Removes dead nodes (nodes none of whose outputs is read by a node, a
/// body's capture or a graph output), repeatedly, and initializers nothing
/// reads; returns (nodes, initializers) removed.
pub fn remove_dead_code(graph: &mut Graph) -> (u64, u64) {
    let mut nodes_removed = 0;
    loop {
        let uses = graph.use_counts();
        let dead: Vec<_> = graph
            .nodes()
            .filter(|(_, n)| n.outputs().iter().flatten().all(|v| !uses.contains_key(v)))
            .map(|(id, _)| id)
            .collect();
        if dead.is_empty() {
            break;
        }
        for id in dead {
            graph.remove_node(id);
            nodes_removed += 1;
        }
    }
    let uses = graph.use_counts();
    let unused: Vec<_> = graph
        .initializers()
        .filter(|(id, _)| !uses.contains_key(id) && !graph.inputs.contains(id))
        .map(|(id, _)| id)
        .collect();
    for &v in &unused {
        graph.remove_value(v);
    }
    (nodes_removed, unused.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> (Graph, ValueId, NodeId) {
        let mut g = Graph::new("g");
        let mut x = Value::new("x");
        x.ty = Some(Type::tensor(DataType::F32, &[2, 3]));
        let x = g.add_value(x);
        g.inputs.push(x);
        let id = g.add_node(Node::new("Relu"), vec![Some(x)], vec![Some("y".into())]);
        let y = g.node(id).output(0).unwrap();
        g.value_mut(y).ty = Some(Type::tensor(DataType::F32, &[2, 3]));
        g.outputs.push(y);
        (g, x, id)
    }

    #[test]
    fn define_keeps_names_and_checks_types() {
        let (mut g, x, id) = graph();
        let y = g.node(id).output(0).unwrap();
        let mut p = Patch::replacing(&mut g, id);
        p.define("Sigmoid", &[Some(x)], vec![], y).unwrap();
        assert_eq!(g.node_count(), 1);
        assert_eq!(g.value(y).name, "y");

        let (mut g, x, id) = graph();
        let y = g.node(id).output(0).unwrap();
        let mut p = Patch::replacing(&mut g, id);
        let t = p.transpose(x, &[1, 0]);
        let err = p.define("Relu", &[Some(t)], vec![], y).unwrap_err();
        assert!(err.to_string().contains("f32[2,3] to f32[3,2]"), "{err}");
    }

    #[test]
    fn new_values_are_typed_and_named_after_the_base() {
        let (mut g, x, _) = graph();
        let mut p = Patch::new(&mut g, "site");
        let r = p.reshape(x, &[6]).unwrap();
        assert_eq!(p.dims(r).unwrap(), vec![6]);
        assert!(g.value(r).name.starts_with("site_"));
    }
}
