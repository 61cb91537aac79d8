//! Nodes checked against the ONNX op schemas (every version of every op of
//! the standard domains, generated from the onnx package into
//! [`super::schema_table`] by `scripts/gen-op-schemas.py`), so that a model
//! that breaks them is refused at import with the node and the reason
//! rather than written out or run.
//!
//! Checked, in the main graph, subgraphs and function bodies:
//! - every node's domain is imported (by the model, or by the function
//!   whose body holds it), or names a model-local function;
//! - a standard-domain op exists in the imported opset version, with an
//!   input and output count within its schema's, its required attributes
//!   present, and its attributes known and of the schema's type;
//! - the values a runtime cannot take: zero or negative strides,
//!   dilations, kernels and block sizes, a `perm` that is not a
//!   permutation, `axis` out of range of a known rank, constant Slice
//!   steps of zero, If branches whose output count differs from the
//!   node's;
//! - model-local functions do not call themselves (directly or not).
//!
//! Ops of other domains (onnxruntime's `com.microsoft`, custom ones) pass
//! when their domain is imported: sculpt has no schema for them.

use super::schema_table::SCHEMAS;
use crate::verify::VerifyError;
use crate::{AttrValue, Graph, Model, Node, OpsetImport};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Float,
    Int,
    String,
    Tensor,
    Graph,
    Floats,
    Ints,
    Strings,
    Tensors,
    Graphs,
    SparseTensor,
    SparseTensors,
    Type,
    Types,
}

impl AttrKind {
    fn of(value: &AttrValue) -> Option<AttrKind> {
        Some(match value {
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::String(_) => AttrKind::String,
            AttrValue::Tensor(_) => AttrKind::Tensor,
            AttrValue::Graph(_) => AttrKind::Graph,
            AttrValue::SparseTensor(_) => AttrKind::SparseTensor,
            AttrValue::Type(_) => AttrKind::Type,
            AttrValue::Floats(_) => AttrKind::Floats,
            AttrValue::Ints(_) => AttrKind::Ints,
            AttrValue::Strings(_) => AttrKind::Strings,
            AttrValue::Tensors(_) => AttrKind::Tensors,
            AttrValue::Graphs(_) => AttrKind::Graphs,
            AttrValue::SparseTensors(_) => AttrKind::SparseTensors,
            AttrValue::Types(_) => AttrKind::Types,
            // A function's attribute reference: typed where it is bound.
            AttrValue::Ref { .. } => return None,
        })
    }

    /// Whether `value` is of this kind. An empty list carries no element
    /// type in ONNX, so it passes as any list kind.
    fn accepts(self, value: &AttrValue) -> bool {
        let Some(kind) = AttrKind::of(value) else {
            return true;
        };
        let empty_list = match value {
            AttrValue::Floats(v) => v.is_empty(),
            AttrValue::Ints(v) => v.is_empty(),
            AttrValue::Strings(v) => v.is_empty(),
            AttrValue::Tensors(v) => v.is_empty(),
            AttrValue::Graphs(v) => v.is_empty(),
            _ => false,
        };
        kind == self
            || empty_list
                && matches!(
                    self,
                    AttrKind::Floats
                        | AttrKind::Ints
                        | AttrKind::Strings
                        | AttrKind::Tensors
                        | AttrKind::Graphs
                        | AttrKind::SparseTensors
                        | AttrKind::Types
                )
    }
}

/// One version of one op: its input and output counts (`u32::MAX`:
/// variadic) and attributes (name, kind, required).
pub struct Schema {
    pub domain: &'static str,
    pub name: &'static str,
    pub since: i64,
    pub inputs: (u32, u32),
    pub outputs: (u32, u32),
    pub attributes: &'static [(&'static str, AttrKind, bool)],
}

/// The domains the schema table covers.
fn is_standard(domain: &str) -> bool {
    matches!(
        domain,
        "" | "ai.onnx.ml" | "ai.onnx.preview.training" | "ai.onnx.preview"
    )
}

/// `ai.onnx` is the default domain's other name.
fn canonical(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

/// What the schema table says of an op at an opset version.
pub enum Lookup {
    Found(&'static Schema),
    /// The op exists from a later version on.
    Later(i64),
    Unknown,
}

/// The schema of `domain`'s `op` in force at `version`.
pub fn lookup(domain: &str, op: &str, version: i64) -> Lookup {
    let domain = canonical(domain);
    let start = SCHEMAS.partition_point(|s| (s.domain, s.name) < (domain, op));
    let versions = SCHEMAS[start..]
        .iter()
        .take_while(|s| s.domain == domain && s.name == op);
    let mut first = None;
    let mut found = None;
    for s in versions {
        first.get_or_insert(s.since);
        if s.since <= version {
            found = Some(s);
        }
    }
    match (found, first) {
        (Some(s), _) => Lookup::Found(s),
        (None, Some(since)) => Lookup::Later(since),
        (None, None) => Lookup::Unknown,
    }
}

/// Every problem of `model`'s nodes against the schemas.
pub fn check_model(model: &Model) -> Vec<VerifyError> {
    let functions: BTreeSet<(&str, &str)> = model
        .functions
        .iter()
        .map(|f| (canonical(&f.domain), f.name.as_str()))
        .collect();
    let mut errors = Vec::new();
    let scope = Scope {
        imports: imports(&model.opset_imports),
        functions: &functions,
    };
    scope.graph(
        &model.graph,
        &format!("graph '{}'", model.graph.name),
        &mut errors,
    );
    for f in &model.functions {
        let mut imports = scope.imports.clone();
        imports.extend(self::imports(&f.opset_imports));
        let inner = Scope {
            imports,
            functions: &functions,
        };
        inner.graph(&f.body, &format!("function '{}'", f.name), &mut errors);
    }
    if let Some(cycle) = recursion(model) {
        errors.push(VerifyError {
            location: format!("function '{cycle}'"),
            message:
                "calls itself (directly or through other functions); recursion cannot be expanded"
                    .into(),
        });
    }
    errors
}

fn imports(list: &[OpsetImport]) -> BTreeMap<String, i64> {
    list.iter()
        .map(|o| (canonical(&o.domain).to_string(), o.version))
        .collect()
}

/// The imports and functions visible to the nodes of one graph.
struct Scope<'a> {
    imports: BTreeMap<String, i64>,
    functions: &'a BTreeSet<(&'a str, &'a str)>,
}

impl Scope<'_> {
    fn graph(&self, g: &Graph, location: &str, errors: &mut Vec<VerifyError>) {
        for (_, v) in g.values() {
            let dims = v.ty.as_ref().and_then(|t| t.shape()).unwrap_or(&[]);
            // -1 is a common way to write an unknown dim; below is nothing.
            if let Some(d) = dims.iter().find_map(|d| d.known().filter(|&d| d < -1)) {
                errors.push(VerifyError {
                    location: format!("{location}, value '{}'", v.name),
                    message: format!("dim {d} is negative (an unknown dim is a name, or left out)"),
                });
            }
        }
        for (_, n) in g.nodes() {
            let at = format!("{location}, node '{}' ({})", n.display_name(), n.op_type);
            if let Err(message) = self.node(g, n) {
                errors.push(VerifyError {
                    location: at.clone(),
                    message,
                });
            }
            for sub in n.subgraphs() {
                self.graph(sub, &format!("{at}, subgraph '{}'", sub.name), errors);
            }
        }
    }

    fn node(&self, g: &Graph, n: &Node) -> Result<(), String> {
        let domain = canonical(&n.domain);
        if self.functions.contains(&(domain, n.op_type.as_str())) {
            return Ok(());
        }
        let Some(&version) = self.imports.get(domain) else {
            // Models before IR version 3 import nothing; the default domain
            // is checked at import (`check_opsets`).
            if domain.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "its domain '{domain}' is not imported by the model (opset_import)"
            ));
        };
        if !is_standard(domain) {
            return Ok(());
        }
        let schema = match lookup(domain, &n.op_type, version) {
            Lookup::Found(s) => s,
            Lookup::Later(since) => {
                return Err(format!(
                    "'{}' is an op from opset {since} of domain '{domain}', and the model imports opset {version}",
                    n.op_type
                ))
            }
            Lookup::Unknown => {
                return Err(format!(
                    "'{}' is not an op of domain '{domain}' (no such ONNX op; a custom op needs its own domain)",
                    n.op_type
                ))
            }
        };
        arity(n, schema)?;
        attributes(n, schema)?;
        values(g, n)
    }
}

/// How many of `list` count: trailing ones left out ("") do not.
fn present(list: &[Option<crate::ValueId>]) -> usize {
    list.iter().rposition(Option::is_some).map_or(0, |i| i + 1)
}

fn arity(n: &Node, s: &Schema) -> Result<(), String> {
    let (inputs, outputs) = (present(n.inputs()) as u32, present(n.outputs()) as u32);
    let range = |(lo, hi): (u32, u32)| match (lo, hi) {
        (lo, u32::MAX) => format!("{lo} or more"),
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo} to {hi}"),
    };
    let within = |count: u32, bounds: (u32, u32), what: &str, verb: &str| {
        if (bounds.0..=bounds.1).contains(&count) {
            Ok(())
        } else {
            Err(format!(
                "{count} {what}, where opset {} of {} {verb} {}",
                s.since,
                s.name,
                range(bounds)
            ))
        }
    };
    within(inputs, s.inputs, "inputs", "takes")?;
    within(outputs, s.outputs, "outputs", "gives")
}

fn attributes(n: &Node, s: &Schema) -> Result<(), String> {
    for (name, _, required) in s.attributes {
        if *required && n.attr(name).is_none() {
            return Err(format!("the required attribute '{name}' is missing"));
        }
    }
    for a in &n.attributes {
        let Some((_, kind, _)) = s.attributes.iter().find(|(name, ..)| *name == a.name) else {
            return Err(format!(
                "attribute '{}' is not one of {}'s (opset {})",
                a.name, s.name, s.since
            ));
        };
        if !kind.accepts(&a.value) {
            return Err(format!(
                "attribute '{}' is {:?}, where {} takes {:?}",
                a.name,
                AttrKind::of(&a.value).expect("checked by accepts"),
                s.name,
                kind
            ));
        }
    }
    Ok(())
}

/// The rank of `n`'s input `i`, where the graph knows it.
fn input_rank(g: &Graph, n: &Node, i: usize) -> Option<i64> {
    let v = n.input(i)?;
    let value = g.value(v);
    if let Some(t) = value.tensor() {
        return Some(t.dims.len() as i64);
    }
    Some(value.ty.as_ref()?.shape()?.len() as i64)
}

/// `n`'s constant input `i` (an initializer).
fn constant<'g>(g: &'g Graph, n: &Node, i: usize) -> Option<&'g crate::Tensor> {
    let v = n.input(i)?;
    g.value(v).tensor()
}

/// The values of `n`'s constant input `i`, as integers.
fn constant_ints(g: &Graph, n: &Node, i: usize) -> Option<Vec<i64>> {
    constant(g, n, i)?.to_i64_vec().ok()
}

/// Attribute values a runtime cannot work with.
fn values(g: &Graph, n: &Node) -> Result<(), String> {
    let positive = |name: &str| -> Result<(), String> {
        match n.ints_attr(name) {
            Some(v) if v.iter().any(|&x| x <= 0) => {
                Err(format!("'{name}' {v:?} has a value below 1"))
            }
            _ => Ok(()),
        }
    };
    match n.op_type.as_str() {
        "Conv" | "ConvTranspose" | "ConvInteger" | "QLinearConv" | "DeformConv" | "MaxPool"
        | "AveragePool" | "LpPool" | "MaxUnpool" | "MaxRoiPool" | "Col2Im" | "Im2Col" => {
            for name in ["strides", "dilations", "kernel_shape", "pooled_shape"] {
                positive(name)?;
            }
        }
        "DepthToSpace" | "SpaceToDepth" if n.int_attr("blocksize", 1) <= 0 => {
            return Err("'blocksize' must be 1 or more".into());
        }
        "LRN" if n.int_attr("size", 1) <= 0 => {
            return Err("'size' must be 1 or more".into());
        }
        "Transpose" => {
            if let Some(perm) = n.ints_attr("perm") {
                let mut seen = vec![false; perm.len()];
                for &p in &perm {
                    match usize::try_from(p).ok().filter(|&p| p < perm.len()) {
                        Some(p) if !seen[p] => seen[p] = true,
                        _ => return Err(format!("'perm' {perm:?} is not a permutation")),
                    }
                }
                if let Some(rank) = input_rank(g, n, 0) {
                    if rank != perm.len() as i64 {
                        return Err(format!(
                            "'perm' {perm:?} has {} entries for an input of rank {rank}",
                            perm.len()
                        ));
                    }
                }
            }
        }
        "Slice" => {
            if let Some(steps) = constant_ints(g, n, 4) {
                if steps.contains(&0) {
                    return Err(format!("Slice steps {steps:?} hold a 0"));
                }
            }
        }
        "Range" => {
            if let Some(delta) = constant(g, n, 2).and_then(|t| t.to_f64_vec().ok()) {
                if delta.iter().any(|d| *d == 0.0 || !d.is_finite()) {
                    return Err(format!(
                        "Range's delta {delta:?} is 0 or not finite: the range never ends"
                    ));
                }
            }
        }
        "Div" | "Mod" => {
            let divisor = constant(g, n, 1).filter(|t| t.dtype.is_integer());
            if let Some(values) = divisor.and_then(|t| t.to_i64_vec().ok()) {
                if values.contains(&0) {
                    return Err("an integer division by a constant 0".into());
                }
            }
        }
        "Gather" => {
            if let (Some(dims), Some(indices)) = (input_dims(g, n, 0), constant_ints(g, n, 1)) {
                let axis = n.int_attr("axis", 0);
                if let Some(size) = dim_at(&dims, axis) {
                    if let Some(bad) = indices.iter().find(|&&i| i >= size || i < -size) {
                        return Err(format!(
                            "index {bad} is out of range for axis {axis} of size {size}"
                        ));
                    }
                }
            }
        }
        "TopK" => {
            let dims = input_dims(g, n, 0);
            let k = constant_ints(g, n, 1);
            let axis = n.int_attr("axis", -1);
            if let (Some(dims), Some(&[k])) = (dims, k.as_deref()) {
                if let Some(size) = dim_at(&dims, axis) {
                    if k < 0 || k > size {
                        return Err(format!("k = {k} is not within 0 to the axis's size {size}"));
                    }
                }
            }
        }
        "Reshape" => {
            if let Some(shape) = constant_ints(g, n, 1) {
                if shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1) {
                    return Err(format!(
                        "shape {shape:?}: at most one -1, and no other negative"
                    ));
                }
            }
        }
        "Einsum" => {
            if let Some(equation) = n.str_attr("equation") {
                einsum(equation, n.inputs().len())?;
            }
        }
        "If" => {
            let outputs = present(n.outputs());
            for branch in ["then_branch", "else_branch"] {
                if let Some(AttrValue::Graph(b)) = n.attr(branch) {
                    if b.outputs.len() != outputs {
                        return Err(format!(
                            "'{branch}' gives {} outputs, the node has {outputs}",
                            b.outputs.len()
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    axis(g, n)?;
    axes(g, n)
}

/// The static dims of `n`'s input `i`, where known.
fn input_dims(g: &Graph, n: &Node, i: usize) -> Option<Vec<i64>> {
    let value = g.value(n.input(i)?);
    match value.tensor() {
        Some(t) => Some(t.dims.clone()),
        None => value.ty.as_ref()?.static_dims(),
    }
}

/// The size of `dims`' (possibly negative) `axis`.
fn dim_at(dims: &[i64], axis: i64) -> Option<i64> {
    let at = if axis < 0 {
        axis.checked_add(dims.len() as i64)?
    } else {
        axis
    };
    usize::try_from(at).ok().and_then(|a| dims.get(a)).copied()
}

/// An Einsum equation's terms: one per input, output labels among the
/// inputs'.
fn einsum(equation: &str, inputs: usize) -> Result<(), String> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (left, right) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = left.split(',').collect();
    if terms.len() != inputs {
        return Err(format!(
            "equation '{equation}' has {} input terms for {inputs} inputs",
            terms.len()
        ));
    }
    let valid = |t: &str| {
        t.replace("...", "")
            .chars()
            .all(|c| c.is_ascii_alphabetic())
            && t.matches("...").count() <= 1
    };
    if let Some(bad) = terms.iter().chain(right.iter()).find(|t| !valid(t)) {
        return Err(format!(
            "equation '{equation}': term '{bad}' is not letters (and one ...)"
        ));
    }
    if let Some(r) = right {
        if let Some(c) = r
            .chars()
            .find(|&c| c.is_ascii_alphabetic() && !left.contains(c))
        {
            return Err(format!(
                "equation '{equation}': output label '{c}' is in no input"
            ));
        }
    }
    Ok(())
}

/// `axes` (an attribute, or a constant input from the opset that made it
/// one) against the rank, where known.
fn axes(g: &Graph, n: &Node) -> Result<(), String> {
    let op = n.op_type.as_str();
    let from_input = match op {
        "Squeeze" | "Unsqueeze" => Some(1),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => Some(1),
        "Slice" => Some(3),
        _ => return Ok(()),
    };
    let Some(axes) = n
        .ints_attr("axes")
        .or_else(|| from_input.and_then(|i| constant_ints(g, n, i)))
    else {
        return Ok(());
    };
    let Some(mut rank) = input_rank(g, n, 0) else {
        return Ok(());
    };
    if op == "Unsqueeze" {
        rank += axes.len() as i64;
    }
    if let Some(bad) = axes.iter().find(|&&a| !(-rank..rank).contains(&a)) {
        return Err(format!("axis {bad} is out of range for rank {rank}"));
    }
    let mut seen: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + rank } else { a })
        .collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(())
}

/// `axis` against the input's rank, where known: in `-r..r`, or `-r..=r`
/// for the ops whose axis may point past the last dim.
fn axis(g: &Graph, n: &Node) -> Result<(), String> {
    let inclusive = match n.op_type.as_str() {
        "Flatten" => true,
        "Concat" | "Gather" | "GatherElements" | "ScatterElements" | "Split" | "ArgMax"
        | "ArgMin" | "Softmax" | "LogSoftmax" | "Hardmax" | "Compress" | "TopK" | "OneHot"
        | "LayerNormalization" | "QuantizeLinear" | "DequantizeLinear" | "CumSum" => false,
        _ => return Ok(()),
    };
    let (Some(axis), Some(rank)) = (n.attr_i64("axis"), input_rank(g, n, 0)) else {
        return Ok(());
    };
    // OneHot's axis is into the output, one rank up; per-tensor
    // (De)QuantizeLinear ignore it.
    let rank = match n.op_type.as_str() {
        "OneHot" => rank + 1,
        "QuantizeLinear" | "DequantizeLinear" if input_rank(g, n, 1) == Some(0) => return Ok(()),
        _ => rank,
    };
    let top = if inclusive { rank } else { rank - 1 };
    if rank > 0 && !(-rank..=top).contains(&axis) {
        return Err(format!(
            "'axis' {axis} is out of range for an input of rank {rank}"
        ));
    }
    Ok(())
}

/// A function that calls itself, through any chain of calls.
fn recursion(model: &Model) -> Option<String> {
    let key = |domain: &str, name: &str| (canonical(domain).to_string(), name.to_string());
    let calls: BTreeMap<(String, String), Vec<(String, String)>> = model
        .functions
        .iter()
        .map(|f| {
            let mut called = Vec::new();
            collect_calls(&f.body, &mut called);
            (key(&f.domain, &f.name), called)
        })
        .collect();
    fn collect_calls(g: &Graph, out: &mut Vec<(String, String)>) {
        for (_, n) in g.nodes() {
            out.push((canonical(&n.domain).to_string(), n.op_type.clone()));
            for sub in n.subgraphs() {
                collect_calls(sub, out);
            }
        }
    }
    // Depth-first, colouring functions on the current path.
    fn visit(
        f: &(String, String),
        calls: &BTreeMap<(String, String), Vec<(String, String)>>,
        on_path: &mut BTreeSet<(String, String)>,
        done: &mut BTreeSet<(String, String)>,
    ) -> Option<String> {
        if on_path.contains(f) {
            return Some(f.1.clone());
        }
        if done.contains(f) {
            return None;
        }
        on_path.insert(f.clone());
        for callee in calls.get(f).into_iter().flatten() {
            if calls.contains_key(callee) {
                if let Some(found) = visit(callee, calls, on_path, done) {
                    return Some(found);
                }
            }
        }
        on_path.remove(f);
        done.insert(f.clone());
        None
    }
    let (mut on_path, mut done) = (BTreeSet::new(), BTreeSet::new());
    calls
        .keys()
        .find_map(|f| visit(f, &calls, &mut on_path, &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_picks_the_version_in_force() {
        match lookup("", "Slice", 9) {
            Lookup::Found(s) => assert_eq!(s.since, 1),
            _ => panic!("Slice-1"),
        }
        match lookup("", "Slice", 13) {
            Lookup::Found(s) => assert_eq!((s.since, s.inputs), (13, (3, 5))),
            _ => panic!("Slice-13"),
        }
        assert!(matches!(lookup("", "Gelu", 13), Lookup::Later(20)));
        assert!(matches!(lookup("", "Frobnicate", 17), Lookup::Unknown));
        assert!(matches!(lookup("ai.onnx", "Relu", 17), Lookup::Found(_)));
    }

    #[test]
    fn the_table_is_sorted() {
        assert!(SCHEMAS
            .windows(2)
            .all(|w| (w[0].domain, w[0].name, w[0].since) < (w[1].domain, w[1].name, w[1].since)));
    }
}
