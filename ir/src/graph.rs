//! The graph: nodes (operators) in a petgraph `StableDiGraph`, values in an
//! arena. Edges run from a value's producer to each consumer and carry the
//! value's id; they are kept in step with node inputs by the mutators here,
//! so nothing outside this file touches petgraph indices.

use crate::{Attribute, IrError, Result, Tensor, Type};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use petgraph::Direction;
use std::collections::{BinaryHeap, HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex<u32>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

/// A constant bound to a value name.
#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    Dense(Tensor),
    /// Sparse initializers are kept as their protobuf.
    Sparse(Box<crate::onnx::proto::SparseTensorProto>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: Option<Type>,
    pub init: Option<Initializer>,
    /// The node output that defines this value, if a node does.
    pub producer: Option<(NodeId, usize)>,
    /// Defined in an enclosing graph and captured by name (subgraph bodies).
    pub outer: bool,
    /// `ValueInfoProto` fields the IR does not model (doc_string, metadata_props).
    pub info_extra: Option<Box<crate::onnx::proto::ValueInfoProto>>,
    /// The model declared this value's type in a `value_info` entry. Files
    /// keep those entries; the types inference gave other values are
    /// written only on request ([`crate::onnx::SaveOptions::inferred_shapes`]).
    pub declared: bool,
    /// Removed from the graph; the slot stays so ids remain stable.
    pub dead: bool,
}

impl Value {
    pub fn new(name: impl Into<String>) -> Value {
        Value {
            name: name.into(),
            ty: None,
            init: None,
            producer: None,
            outer: false,
            info_extra: None,
            declared: false,
            dead: false,
        }
    }

    pub fn tensor(&self) -> Option<&Tensor> {
        match &self.init {
            Some(Initializer::Dense(t)) => Some(t),
            _ => None,
        }
    }
}

/// One operator application. ONNX op type, domain and attributes are kept
/// verbatim, so ops no pass understands still round-trip.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub overload: String,
    /// `None` is an omitted optional input (`""` in ONNX). Change through
    /// [`Graph::set_input`] so edges stay in step.
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    pub attributes: Vec<Attribute>,
    pub doc_string: String,
    /// `NodeProto` fields the IR does not model (metadata_props, device configurations).
    pub extra: Option<Box<crate::onnx::proto::NodeProto>>,
}

impl Node {
    pub fn new(op_type: impl Into<String>) -> Node {
        Node {
            name: String::new(),
            op_type: op_type.into(),
            domain: String::new(),
            overload: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes: Vec::new(),
            doc_string: String::new(),
            extra: None,
        }
    }

    pub fn inputs(&self) -> &[Option<ValueId>] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Option<ValueId>] {
        &self.outputs
    }

    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    pub fn attr(&self, name: &str) -> Option<&crate::AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// Integer attribute `name`, when present and an int.
    pub fn attr_i64(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(crate::AttrValue::as_int)
    }

    /// Integer attribute `name`, or `default` when absent or not an int.
    pub fn int_attr(&self, name: &str, default: i64) -> i64 {
        self.attr_i64(name).unwrap_or(default)
    }

    /// Integer-list attribute `name`.
    pub fn ints_attr(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name)
            .and_then(crate::AttrValue::as_ints)
            .map(<[i64]>::to_vec)
    }

    /// Float attribute `name` (an int attribute is read as a float), or
    /// `default`.
    pub fn float_attr(&self, name: &str, default: f64) -> f64 {
        self.attr(name)
            .and_then(crate::AttrValue::as_float)
            .map_or(default, f64::from)
    }

    /// String attribute `name`, when it is valid UTF-8.
    pub fn str_attr(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(crate::AttrValue::as_str)
    }

    /// The node's name, or its op type where it has none.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.op_type
        } else {
            &self.name
        }
    }

    /// True for ops of the default ONNX domain.
    pub fn is_onnx(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }

    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attributes.iter().flat_map(|a| a.value.graphs())
    }
}

/// Reads per value, from [`Graph::use_counts`].
#[derive(Clone, Debug)]
pub struct UseCounts(Vec<u32>);

impl UseCounts {
    /// True when something reads `v`.
    pub fn contains_key(&self, v: &ValueId) -> bool {
        self.get(*v) > 0
    }

    pub fn get(&self, v: ValueId) -> u32 {
        self.0.get(v.index()).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub doc_string: String,
    topology: StableDiGraph<Node, ValueId>,
    values: Vec<Value>,
    /// Nodes added with subgraphs (If/Loop/Scan bodies), so that asking
    /// what bodies capture does not scan every node. A node gets its
    /// subgraphs when it is added ([`Graph::add_node`]); one that lost
    /// them through [`Graph::node_mut`] may stay listed.
    holders: std::collections::BTreeSet<NodeId>,
    /// Per value, the nodes reading it (once per input slot), so that
    /// finding a value's readers never scans the graph.
    readers: Vec<Vec<NodeId>>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// `GraphProto` fields the IR does not model (quantization_annotation,
    /// metadata_props).
    pub extra: Option<Box<crate::onnx::proto::GraphProto>>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    // ---- values ----

    pub fn add_value(&mut self, value: Value) -> ValueId {
        self.values.push(value);
        self.readers.push(Vec::new());
        ValueId((self.values.len() - 1) as u32)
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    /// Live values in creation order.
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.dead)
            .map(|(i, v)| (ValueId(i as u32), v))
    }

    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values()
            .find(|(_, v)| v.name == name)
            .map(|(id, _)| id)
    }

    /// Forgets the declared types of every value but those in `keep`
    /// (shape inference can then start afresh from the inputs).
    pub fn clear_types_except(&mut self, keep: &[ValueId]) {
        for (i, v) in self.values.iter_mut().enumerate() {
            if !v.dead && !keep.contains(&ValueId(i as u32)) {
                v.ty = None;
            }
        }
    }

    /// Live initializers in creation order.
    pub fn initializers(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values().filter(|(_, v)| v.init.is_some())
    }

    pub fn remove_value(&mut self, id: ValueId) {
        let v = &mut self.values[id.index()];
        v.dead = true;
        v.init = None;
    }

    // ---- nodes ----

    /// Adds a node whose inputs are `inputs` and whose outputs are fresh
    /// values with the given names (`None` for omitted optional outputs).
    pub fn add_node(
        &mut self,
        mut node: Node,
        inputs: Vec<Option<ValueId>>,
        output_names: Vec<Option<String>>,
    ) -> NodeId {
        node.inputs = Vec::new();
        node.outputs = Vec::new();
        let holds_subgraphs = node.subgraphs().next().is_some();
        let id = NodeId(self.topology.add_node(node));
        if holds_subgraphs {
            self.holders.insert(id);
        }
        let outputs = output_names
            .into_iter()
            .enumerate()
            .map(|(slot, name)| {
                name.map(|n| {
                    let v = self.add_value(Value::new(n));
                    self.values[v.index()].producer = Some((id, slot));
                    v
                })
            })
            .collect();
        self.topology[id.0].outputs = outputs;
        self.topology[id.0].inputs = inputs.clone();
        for v in inputs.into_iter().flatten() {
            self.link(v, id);
            self.readers[v.index()].push(id);
        }
        id
    }

    /// Adds a node that defines existing values (detached from their old
    /// producer with [`Graph::detach_node`]), keeping their names and uses.
    pub fn add_node_defining(
        &mut self,
        node: Node,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<ValueId>>,
    ) -> NodeId {
        let id = self.add_node(node, inputs, Vec::new());
        self.bind_outputs(id, outputs.clone());
        for v in outputs.into_iter().flatten() {
            // The new producer has no edges yet.
            let mut readers = self.readers[v.index()].clone();
            readers.sort();
            readers.dedup();
            for consumer in readers {
                self.link(v, consumer);
            }
        }
        id
    }

    /// A value name not used in this graph, `base` if free.
    pub fn unique_name(&self, base: &str) -> String {
        if !self.values().any(|(_, v)| v.name == base) {
            return base.to_string();
        }
        let taken: HashSet<&str> = self.values().map(|(_, v)| v.name.as_str()).collect();
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !taken.contains(n.as_str()))
            .expect("a free name")
    }

    /// A node name not used in this graph, `base` if free.
    pub fn unique_node_name(&self, base: &str) -> String {
        let taken: HashSet<&str> = self.nodes().map(|(_, n)| n.name.as_str()).collect();
        if !taken.contains(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !taken.contains(n.as_str()))
            .expect("a free name")
    }

    /// Re-points outputs of `node` at existing values (used by the importer,
    /// which creates values before nodes so that unsorted graphs import).
    pub(crate) fn bind_outputs(&mut self, node: NodeId, outputs: Vec<Option<ValueId>>) {
        for (slot, v) in outputs.iter().enumerate() {
            if let Some(v) = v {
                self.values[v.index()].producer = Some((node, slot));
            }
        }
        self.topology[node.0].outputs = outputs;
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.topology[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.topology[id.0]
    }

    pub fn contains_node(&self, id: NodeId) -> bool {
        self.topology.contains_node(id.0)
    }

    pub fn node_count(&self) -> usize {
        self.topology.node_count()
    }

    /// Node ids in insertion order (not necessarily topological).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.topology.node_indices().map(NodeId).collect()
    }

    /// Nodes in insertion order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.topology
            .node_indices()
            .map(move |i| (NodeId(i), &self.topology[i]))
    }

    /// Whether some node, here or in a subgraph at any depth, satisfies
    /// `predicate`.
    pub fn any_node(&self, predicate: &dyn Fn(&Node) -> bool) -> bool {
        self.nodes()
            .any(|(_, n)| predicate(n) || n.subgraphs().any(|g| g.any_node(predicate)))
    }

    pub fn set_input(&mut self, node: NodeId, slot: usize, value: Option<ValueId>) {
        let old = self.topology[node.0].inputs.get(slot).copied().flatten();
        let inputs = &mut self.topology[node.0].inputs;
        if inputs.len() <= slot {
            inputs.resize(slot + 1, None);
        }
        inputs[slot] = value;
        if let Some(old) = old {
            self.unlink(old, node);
            self.forget_read(old, node);
        }
        if let Some(v) = value {
            self.link(v, node);
            self.readers[v.index()].push(node);
        }
    }

    /// Drops one read of `value` by `node` from the reader index.
    fn forget_read(&mut self, value: ValueId, node: NodeId) {
        let readers = &mut self.readers[value.index()];
        if let Some(at) = readers.iter().position(|&r| r == node) {
            readers.swap_remove(at);
        }
    }

    pub fn set_inputs(&mut self, node: NodeId, values: Vec<Option<ValueId>>) {
        let old = std::mem::take(&mut self.topology[node.0].inputs);
        for v in old.into_iter().flatten() {
            self.unlink(v, node);
            self.forget_read(v, node);
        }
        for v in values.iter().flatten() {
            self.link(*v, node);
            self.readers[v.index()].push(node);
        }
        self.topology[node.0].inputs = values;
    }

    /// Every use of `from` (node inputs, graph outputs) now uses `to`.
    pub fn replace_all_uses(&mut self, from: ValueId, to: ValueId) {
        for (node, slot) in self.consumers(from) {
            self.set_input(node, slot, Some(to));
        }
        for out in &mut self.outputs {
            if *out == from {
                *out = to;
            }
        }
    }

    /// Removes a node; its output values are marked dead.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        let node = self.topology.remove_node(id.0)?;
        self.holders.remove(&id);
        for &v in node.inputs.iter().flatten() {
            self.forget_read(v, id);
        }
        for v in node.outputs.iter().flatten() {
            self.values[v.index()].producer = None;
            self.values[v.index()].dead = true;
        }
        Some(node)
    }

    /// Removes a node but keeps its output values alive with no producer;
    /// the caller must give each a definition (e.g. an initializer).
    pub fn detach_node(&mut self, id: NodeId) -> Option<Node> {
        let node = self.topology.remove_node(id.0)?;
        self.holders.remove(&id);
        for &v in node.inputs.iter().flatten() {
            self.forget_read(v, id);
        }
        for v in node.outputs.iter().flatten() {
            self.values[v.index()].producer = None;
        }
        Some(node)
    }

    /// True when a subgraph of some node reads `value` by name.
    pub fn is_captured(&self, value: ValueId) -> bool {
        debug_assert!(
            self.nodes()
                .all(|(id, n)| n.subgraphs().next().is_none() || self.holders.contains(&id)),
            "a node got subgraphs after it was added"
        );
        let name = &self.values[value.index()].name;
        self.holders
            .iter()
            .filter(|id| self.topology.contains_node(id.0))
            .any(|&id| {
                self.node(id)
                    .subgraphs()
                    .any(|g| g.captured_names().contains(name))
            })
    }

    /// Makes the node that reads `from` as its only data output go away:
    /// every use of `from` now reads `to`. Where `from` is a graph output its
    /// name must survive, so `to` takes the name, provided `to` is defined
    /// by a node and is not itself an interface value. Returns false (and
    /// changes nothing) when that is not possible or `from` is captured by
    /// a subgraph.
    pub fn bypass(&mut self, node: NodeId, from: ValueId, to: ValueId) -> bool {
        if self.is_captured(from) || (self.outputs.contains(&from) && self.is_captured(to)) {
            return false;
        }
        if self.outputs.contains(&from) {
            let to_value = &self.values[to.index()];
            let renamable = to_value.producer.is_some()
                && !self.outputs.contains(&to)
                && !self.inputs.contains(&to)
                && to_value.init.is_none();
            if !renamable {
                return false;
            }
            let name = self.values[from.index()].name.clone();
            let ty = self.values[from.index()].ty.clone();
            self.replace_all_uses(from, to);
            self.remove_node(node);
            let v = &mut self.values[to.index()];
            v.name = name;
            if ty.is_some() {
                v.ty = ty;
            }
            return true;
        }
        self.replace_all_uses(from, to);
        self.remove_node(node);
        true
    }

    /// (node, input slot) pairs that read `value`, in node insertion order.
    pub fn consumers(&self, value: ValueId) -> Vec<(NodeId, usize)> {
        let mut readers = self.readers[value.index()].clone();
        readers.sort();
        readers.dedup();
        let mut uses = Vec::new();
        for reader in readers {
            for (slot, v) in self.topology[reader.0].inputs.iter().enumerate() {
                if *v == Some(value) {
                    uses.push((reader, slot));
                }
            }
        }
        debug_assert_eq!(uses, self.consumers_by_scan(value), "readers out of step");
        uses
    }

    /// [`Graph::consumers`] by looking at every node.
    fn consumers_by_scan(&self, value: ValueId) -> Vec<(NodeId, usize)> {
        let mut uses = Vec::new();
        for (id, node) in self.nodes() {
            for (slot, v) in node.inputs.iter().enumerate() {
                if *v == Some(value) {
                    uses.push((id, slot));
                }
            }
        }
        uses
    }

    /// How many times each value is read (node inputs, subgraph captures,
    /// graph outputs), built once for passes that ask many times.
    pub fn use_counts(&self) -> UseCounts {
        let mut counts = vec![0u32; self.values.len()];
        for (_, node) in self.nodes() {
            for v in node.inputs.iter().flatten() {
                counts[v.index()] += 1;
            }
            for g in node.subgraphs() {
                for name in g.captured_names() {
                    if let Some(outer) = self.value_by_name(&name) {
                        counts[outer.index()] += 1;
                    }
                }
            }
        }
        for v in &self.outputs {
            counts[v.index()] += 1;
        }
        UseCounts(counts)
    }

    fn link(&mut self, value: ValueId, consumer: NodeId) {
        if let Some((producer, _)) = self.values[value.index()].producer {
            if self.topology.contains_node(producer.0) {
                self.topology.add_edge(producer.0, consumer.0, value);
            }
        }
    }

    fn unlink(&mut self, value: ValueId, consumer: NodeId) {
        let edge = self
            .topology
            .edges_directed(consumer.0, Direction::Incoming)
            .find(|e| *e.weight() == value)
            .map(|e| e.id());
        if let Some(e) = edge {
            self.topology.remove_edge(e);
        }
    }

    /// Adds the edges a node needs for values its subgraphs capture by name
    /// from this graph (If/Loop/Scan bodies read enclosing values).
    pub(crate) fn link_captures(&mut self, node: NodeId) {
        let names: Vec<String> = self.topology[node.0]
            .subgraphs()
            .flat_map(|g| g.captured_names())
            .collect();
        for name in names {
            if let Some(v) = self.value_by_name(&name) {
                if !self.topology[node.0].inputs.contains(&Some(v)) {
                    self.link(v, node);
                }
            }
        }
    }

    /// Names this graph (and graphs nested in it) read from enclosing scopes.
    pub fn captured_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .values()
            .filter(|(_, v)| v.outer)
            .map(|(_, v)| v.name.clone())
            .collect();
        for (_, node) in self.nodes() {
            for g in node.subgraphs() {
                for name in g.captured_names() {
                    if self
                        .value_by_name(&name)
                        .is_none_or(|v| self.value(v).outer)
                    {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Nodes in a topological order; ties go to the earlier-inserted node,
    /// so a graph imported in order keeps its order.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let bound = self.topology.node_bound();
        let distinct = |i: NodeIndex, dir: Direction| -> Vec<NodeIndex> {
            let mut n: Vec<NodeIndex> = self.topology.neighbors_directed(i, dir).collect();
            n.sort_unstable();
            n.dedup();
            n
        };
        let mut indegree = vec![0usize; bound];
        for i in self.topology.node_indices() {
            indegree[i.index()] = distinct(i, Direction::Incoming).len();
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<NodeIndex>> = self
            .topology
            .node_indices()
            .filter(|i| indegree[i.index()] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.topology.node_count());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(NodeId(i));
            for s in distinct(i, Direction::Outgoing) {
                let d = &mut indegree[s.index()];
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse(s));
                }
            }
        }
        if order.len() != self.topology.node_count() {
            let mut done = vec![false; bound];
            for n in &order {
                done[n.0.index()] = true;
            }
            let stuck = self
                .topology
                .node_indices()
                .find(|i| !done[i.index()])
                .expect("a node on the cycle");
            return Err(IrError::Cycle {
                graph: self.name.clone(),
                node: self.topology[stuck].display_name().to_string(),
            });
        }
        Ok(order)
    }

    /// Parameter tensors: every dense float initializer and float
    /// `Constant` node (some exporters keep weights there), and the
    /// quantized weights (integer tensors of 8 bits or fewer; wider
    /// integers are shapes and indices, not parameters).
    fn parameter_tensors(&self) -> impl Iterator<Item = &Tensor> {
        let constants = self
            .nodes()
            .filter(|(_, n)| n.op_type == "Constant" && n.is_onnx())
            .filter_map(|(_, n)| n.attr("value").and_then(crate::AttrValue::as_tensor));
        self.initializers()
            .filter_map(|(_, v)| v.tensor())
            .chain(constants)
            .filter(|t| is_parameter_type(t.dtype))
    }

    /// Parameter count, by element (see [`Graph::param_bytes`] for bytes);
    /// the weight of onnxruntime's `MatMulNBits`, two or more codes to a
    /// byte, counts its `K × N` codes.
    pub fn param_count(&self) -> u64 {
        let packed: HashMap<ValueId, u64> = self
            .nodes()
            .filter(|(_, n)| n.op_type == "MatMulNBits" && n.domain == "com.microsoft")
            .filter_map(|(_, n)| {
                let codes = n.attr_i64("K")?.checked_mul(n.attr_i64("N")?)?;
                Some((n.input(1)?, u64::try_from(codes).ok()?))
            })
            .collect();
        let unpacked: u64 = packed
            .iter()
            .filter_map(|(&v, &codes)| {
                let t = self.value(v).tensor()?;
                Some(codes.saturating_sub(t.element_count()?))
            })
            .sum();
        self.parameter_tensors()
            .filter_map(|t| t.element_count())
            .sum::<u64>()
            + unpacked
    }

    /// Bytes the parameters take as stored (a quantized or half-precision
    /// weight counts at its own width).
    pub fn param_bytes(&self) -> u64 {
        self.parameter_tensors().map(Tensor::byte_size).sum()
    }

    /// Bytes of every initializer payload.
    pub fn weight_bytes(&self) -> u64 {
        self.initializers()
            .filter_map(|(_, v)| v.tensor())
            .map(|t| t.byte_size())
            .sum()
    }

    /// Node ids sorted topologically, falling back to insertion order if the
    /// graph has a cycle (printing must work on any graph).
    pub fn order_for_display(&self) -> Vec<NodeId> {
        self.topo_order().unwrap_or_else(|_| self.node_ids())
    }

    /// Re-inserts the nodes in topological order, so that insertion order
    /// (and node ids) follow data flow. Ids of nodes change.
    pub fn sort_topologically(&mut self) -> Result<()> {
        let order = self.topo_order()?;
        let mut old = std::mem::take(&mut self.topology);
        self.holders.clear();
        self.readers.iter_mut().for_each(Vec::clear);
        let mut remap = HashMap::new();
        let mut inputs = Vec::with_capacity(order.len());
        for id in order {
            let mut node = old.remove_node(id.0).expect("node from topo order");
            inputs.push(std::mem::take(&mut node.inputs));
            let holds_subgraphs = node.subgraphs().next().is_some();
            let new = NodeId(self.topology.add_node(node));
            if holds_subgraphs {
                self.holders.insert(new);
            }
            remap.insert(id, new);
        }
        for v in &mut self.values {
            if let Some((n, slot)) = v.producer {
                v.producer = remap.get(&n).map(|&m| (m, slot));
            }
        }
        let ids = self.node_ids();
        for (id, ins) in ids.iter().zip(inputs) {
            self.set_inputs(*id, ins);
        }
        for id in ids {
            if self.node(id).subgraphs().next().is_some() {
                self.link_captures(id);
            }
        }
        Ok(())
    }

    /// Edges (producer, consumer, value), for the verifier.
    pub(crate) fn edges(&self) -> Vec<(NodeId, NodeId, ValueId)> {
        self.topology
            .edge_references()
            .map(|e| (NodeId(e.source()), NodeId(e.target()), *e.weight()))
            .collect()
    }
}

/// Float types, and integer types of 8 bits or fewer but bool (quantized
/// weights).
fn is_parameter_type(dtype: crate::DataType) -> bool {
    dtype.is_float()
        || (dtype != crate::DataType::BOOL
            && (dtype.is_integer() || matches!(dtype, crate::DataType::I4 | crate::DataType::U4))
            && dtype.bit_width().is_some_and(|b| b <= 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, Tensor};

    #[test]
    fn quantized_weights_are_parameters() {
        let mut g = Graph::new("g");
        let mut add = |name: &str, t: Tensor| {
            let mut v = Value::new(name);
            v.init = Some(Initializer::Dense(t));
            g.add_value(v);
        };
        add(
            "w8",
            Tensor::from_ints(DataType::I8, vec![4, 4], &[1; 16]).unwrap(),
        );
        add(
            "w4",
            Tensor::from_ints(DataType::I4, vec![4, 4], &[1; 16]).unwrap(),
        );
        add("scale", Tensor::from_f32(vec![4], &[0.5; 4]));
        add("shape", Tensor::from_i64(vec![2], &[4, 4]));
        assert_eq!(g.param_count(), 16 + 16 + 4);
        assert_eq!(g.param_bytes(), 16 + 8 + 16);
    }
}
