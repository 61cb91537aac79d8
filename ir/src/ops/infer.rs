//! Shape inference for the common ONNX ops. Inference reads input types
//! and, where an op's output shape depends on a constant input (Reshape's
//! shape, Slice's starts), the initializer or `Constant` behind it. Ops it
//! does not know, or inputs it cannot see, leave the output type unknown:
//! inference never guesses.

use crate::{AttrValue, DataType, Dim, Graph, Node, NodeId, Tensor, Type, ValueId};

/// Infers types for every node output, in topological order, filling in
/// only what is unknown. Returns how many values got a (better) type.
pub fn infer_graph(graph: &mut Graph) -> crate::Result<usize> {
    infer_graph_with_values(graph).map(|(n, _)| n)
}

/// Like [`infer_graph`], and also returns the integer values of small
/// shape-computation tensors it could work out (for shape folding).
pub fn infer_graph_with_values(graph: &mut Graph) -> crate::Result<(usize, KnownInts)> {
    let (n, known) = infer_graph_with_known(graph)?;
    Ok((n, known.ints))
}

/// Values that shape inference worked out: integer tensors, and shape
/// vectors whose entries are numbers or symbols.
#[derive(Default)]
pub struct Known {
    pub ints: KnownInts,
    pub dims: std::collections::HashMap<ValueId, Vec<Dim>>,
}

fn infer_graph_with_known(graph: &mut Graph) -> crate::Result<(usize, Known)> {
    infer_scoped(graph, &Scope::new())
}

/// The types of the values enclosing scopes define, by name, as a
/// subgraph body sees them.
type Scope = std::collections::HashMap<String, Type>;

/// Runs `f` on `graph` with the outer values it captures typed as `scope`
/// has them; the types are taken off again after, since a body does not
/// declare what it captures.
fn with_captured_types<T>(graph: &mut Graph, scope: &Scope, f: impl FnOnce(&mut Graph) -> T) -> T {
    let untyped_outer: Vec<(ValueId, Type)> = graph
        .values()
        .filter(|(_, x)| x.outer && x.ty.is_none())
        .filter_map(|(v, x)| Some((v, scope.get(&x.name)?.clone())))
        .collect();
    for (v, t) in &untyped_outer {
        graph.value_mut(*v).ty = Some(t.clone());
    }
    let result = f(graph);
    for (v, _) in untyped_outer {
        graph.value_mut(v).ty = None;
    }
    result
}

fn infer_scoped(graph: &mut Graph, scope: &Scope) -> crate::Result<(usize, Known)> {
    with_captured_types(graph, scope, |graph| infer_typed(graph, scope))
}

/// [`infer_scoped`] once the captured values are typed.
fn infer_typed(graph: &mut Graph, scope: &Scope) -> crate::Result<(usize, Known)> {
    let order = graph.topo_order()?;
    let mut changed = 0;
    let mut known = Known::default();
    for id in order {
        changed += infer_bodies(graph, id, scope)?;
        let inferred = infer_node_with(graph, id, &known);
        if let Some((v, values)) = eval_shape_op(graph, id, &known, &inferred) {
            known.ints.insert(v, values);
        } else if let Some((v, dims)) = eval_symbolic_shape(graph, id, &known) {
            known.dims.insert(v, dims);
        }
        let outputs: Vec<Option<ValueId>> = graph.node(id).outputs().to_vec();
        for (v, ty) in outputs.into_iter().zip(inferred) {
            let (Some(v), Some(ty)) = (v, ty) else {
                continue;
            };
            let value = graph.value_mut(v);
            if is_better(&ty, value.ty.as_ref()) {
                value.ty = Some(ty);
                changed += 1;
            }
        }
    }
    Ok((changed, known))
}

/// Calls `f` on every If/Loop/Scan body of `graph`, at any depth (a body
/// before the bodies in it), the outer values each body reads typed as
/// the graphs around it have them while `f` runs: a pass can then treat
/// a body like a main graph. A body does not declare what it captures,
/// so those types are taken off again.
pub fn for_each_body_typed<E>(
    graph: &mut Graph,
    f: &mut dyn FnMut(&mut Graph) -> Result<(), E>,
) -> Result<(), E> {
    each_body_in_scope(graph, &Scope::new(), f)
}

fn each_body_in_scope<E>(
    graph: &mut Graph,
    scope: &Scope,
    f: &mut dyn FnMut(&mut Graph) -> Result<(), E>,
) -> Result<(), E> {
    let holders: Vec<NodeId> = graph
        .node_ids()
        .into_iter()
        .filter(|&id| graph.node(id).subgraphs().next().is_some())
        .collect();
    if holders.is_empty() {
        return Ok(());
    }
    let mut inner = scope.clone();
    for (v, value) in graph.values() {
        if let Some(t) = value_type(graph, v) {
            inner.insert(value.name.clone(), t);
        }
    }
    for id in holders {
        for attribute in &mut graph.node_mut(id).attributes {
            for body in attribute.value.graphs_mut() {
                with_captured_types(body, &inner, |body| {
                    f(body).and_then(|()| each_body_in_scope(body, &inner, f))
                })?;
            }
        }
    }
    Ok(())
}

/// Inference inside the subgraphs of node `id`, the values they capture
/// typed as `graph` (and the scopes around it) has them.
fn infer_bodies(graph: &mut Graph, id: NodeId, scope: &Scope) -> crate::Result<usize> {
    let captured: Vec<String> = graph
        .node(id)
        .subgraphs()
        .flat_map(|g| g.captured_names())
        .collect();
    if captured.is_empty() && graph.node(id).subgraphs().next().is_none() {
        return Ok(0);
    }
    let mut inner = scope.clone();
    for name in captured {
        if let Some(t) = graph
            .value_by_name(&name)
            .and_then(|v| value_type(graph, v))
        {
            inner.insert(name, t);
        }
    }
    let mut changed = 0;
    for attribute in &mut graph.node_mut(id).attributes {
        for body in attribute.value.graphs_mut() {
            changed += infer_scoped(body, &inner)?.0;
        }
    }
    Ok(changed)
}

/// The type both `a` and `b` have: equal, or the element type with the
/// dims they agree on (`None` when the element types differ).
fn common_type(a: &Type, b: &Type) -> Option<Type> {
    if a == b {
        return Some(a.clone());
    }
    let dtype = a.dtype().filter(|d| Some(*d) == b.dtype())?;
    let shape = match (a.shape(), b.shape()) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown })
                .collect(),
        ),
        _ => None,
    };
    Some(Type::Tensor { dtype, shape })
}

/// An If's outputs: the types its branches' outputs share.
fn infer_if(node: &Node) -> Option<Vec<Option<Type>>> {
    let branch = |name: &str| match node.attr(name) {
        Some(AttrValue::Graph(g)) => Some(g),
        _ => None,
    };
    let (then, other) = (branch("then_branch")?, branch("else_branch")?);
    let types =
        |g: &Graph| -> Vec<Option<Type>> { g.outputs.iter().map(|&v| value_type(g, v)).collect() };
    let (a, b) = (types(then), types(other));
    (a.len() == node.outputs().len() && b.len() == a.len()).then(|| {
        a.iter()
            .zip(&b)
            .map(|(x, y)| common_type(x.as_ref()?, y.as_ref()?))
            .collect()
    })
}

/// A new type is better when the old one is missing or less specific.
fn is_better(new: &Type, old: Option<&Type>) -> bool {
    let rank_known = |t: &Type| {
        t.shape()
            .map(|s| s.iter().filter(|d| matches!(d, Dim::Known(_))).count())
    };
    match old {
        None => true,
        Some(Type::Other(_)) => false,
        Some(old @ Type::Tensor { dtype, shape }) => {
            if new.dtype() != Some(*dtype) && *dtype != DataType::UNDEFINED {
                return false;
            }
            match (shape, new.shape()) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a.len() == b.len() && rank_known(new) > rank_known(old),
                _ => *dtype == DataType::UNDEFINED && new.dtype().is_some(),
            }
        }
    }
}

/// The type of a value: its declared type, or the type of its initializer.
pub fn value_type(graph: &Graph, v: ValueId) -> Option<Type> {
    let value = graph.value(v);
    if let Some(t) = value.tensor() {
        return Some(Type::tensor(t.dtype, &t.dims));
    }
    value.ty.clone()
}

/// A constant value: an initializer (not overridable by a graph input) or
/// the output of a `Constant` node with a `value` attribute.
pub fn constant(graph: &Graph, v: ValueId) -> Option<&Tensor> {
    let value = graph.value(v);
    if let Some(t) = value.tensor() {
        return (!graph.inputs.contains(&v)).then_some(t);
    }
    let (node, _) = value.producer?;
    let node = graph.node(node);
    if node.op_type == "Constant" && node.is_onnx() {
        return node.attr("value").and_then(AttrValue::as_tensor);
    }
    None
}

fn const_ints(graph: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    let t = constant(graph, v?)?;
    if !t.dtype.is_integer() {
        return None;
    }
    t.to_i64_vec().ok()
}

/// Integer values of small shape-computation tensors (the Shape → Gather →
/// Concat → Reshape chains exporters emit), found while inferring.
pub type KnownInts = std::collections::HashMap<ValueId, Vec<i64>>;

/// Largest shape-computation tensor tracked, in elements.
const KNOWN_LIMIT: usize = 64;

/// Follows shape vectors with symbolic entries through Shape, Gather,
/// Unsqueeze, Squeeze, Identity, integer Cast and Concat: the value of the
/// node's first output as dims, when not all of them are numbers.
fn eval_symbolic_shape(graph: &Graph, id: NodeId, known: &Known) -> Option<(ValueId, Vec<Dim>)> {
    let node = graph.node(id);
    if !node.is_onnx() {
        return None;
    }
    let out = node.output(0)?;
    let c = Ctx { graph, node, known };
    let dims: Vec<Dim> = match node.op_type.as_str() {
        "Shape" if node.attributes.is_empty() => c.shape(0)?,
        "Identity" | "Unsqueeze" | "Squeeze" => c.dims(0)?,
        "Cast" if !DataType(node.attr_i64("to")? as i32).is_float() => c.dims(0)?,
        "Concat" => (0..node.inputs().len())
            .map(|i| c.dims(i))
            .collect::<Option<Vec<_>>>()?
            .concat(),
        "Gather" => {
            let data = c.dims(0)?;
            let n = data.len() as i64;
            c.ints(1)?
                .iter()
                .map(|&i| {
                    data.get(usize::try_from(if i < 0 { i + n } else { i }).ok()?)
                        .cloned()
                })
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    (dims.len() <= KNOWN_LIMIT && dims.iter().any(|d| !matches!(d, Dim::Known(_))))
        .then_some((out, dims))
}

/// Evaluates integer shape arithmetic for one node when its inputs are
/// known: the value of its first output, if small.
fn eval_shape_op(
    graph: &Graph,
    id: NodeId,
    known: &Known,
    inferred: &[Option<Type>],
) -> Option<(ValueId, Vec<i64>)> {
    let node = graph.node(id);
    let out = node.output(0)?;
    let c = Ctx { graph, node, known };
    let op = node.op_type.as_str();
    let vals: Vec<i64> = match op {
        "Shape" => {
            let dims = c.ty(0)?.static_dims()?;
            let rank = dims.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + rank).max(0) } else { v.min(rank) } as usize;
            let start = clamp(node.attr_i64("start").unwrap_or(0));
            let end = clamp(node.attr_i64("end").unwrap_or(rank));
            dims.get(start..end.max(start))?.to_vec()
        }
        "Size" => vec![c.ty(0)?.static_dims()?.iter().product()],
        "Constant" => const_ints(graph, Some(out))?,
        "Identity" | "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => c.ints(0)?,
        "Cast" => {
            let to = DataType(node.attr_i64("to")? as i32);
            if to.is_float() {
                return None;
            }
            c.ints(0)?
        }
        "Concat" => (0..node.inputs().len())
            .map(|i| c.ints(i))
            .collect::<Option<Vec<_>>>()?
            .concat(),
        "Gather" if c.ints(0).is_none() => {
            // Gather of single dims out of Shape(x), where those dims are known.
            let (shape_node, _) = graph.value(node.input(0)?).producer?;
            let shape_node = graph.node(shape_node);
            if shape_node.op_type != "Shape"
                || !shape_node.is_onnx()
                || shape_node
                    .attributes
                    .iter()
                    .any(|a| a.name == "start" || a.name == "end")
            {
                return None;
            }
            let dims = value_type(graph, shape_node.input(0)?)?.shape()?.to_vec();
            let n = dims.len() as i64;
            c.ints(1)?
                .iter()
                .map(|&i| {
                    dims.get(usize::try_from(if i < 0 { i + n } else { i }).ok()?)?
                        .known()
                })
                .collect::<Option<_>>()?
        }
        "Gather" => {
            let data = c.ints(0)?;
            if c.shape(0)?.len() != 1 {
                return None;
            }
            let n = data.len() as i64;
            c.ints(1)?
                .iter()
                .map(|&i| {
                    data.get(usize::try_from(if i < 0 { i + n } else { i }).ok()?)
                        .copied()
                })
                .collect::<Option<_>>()?
        }
        "Slice" => {
            let data = c.ints(0)?;
            if c.shape(0)?.len() != 1 {
                return None;
            }
            let n = data.len() as i64;
            let (st, en) = (*c.ints(1)?.first()?, *c.ints(2)?.first()?);
            let step = match node.input(4) {
                Some(_) => *c.ints(4)?.first()?,
                None => 1,
            };
            if step != 1 {
                return None;
            }
            let fix = |v: i64| (if v < 0 { v.saturating_add(n) } else { v }).clamp(0, n) as usize;
            data.get(fix(st)..fix(en).max(fix(st)))?.to_vec()
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Equal" => {
            let (a, b) = (c.ints(0)?, c.ints(1)?);
            let n = a.len().max(b.len());
            if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
                return None;
            }
            (0..n)
                .map(|i| {
                    let (x, y) = (a[i.min(a.len() - 1)], b[i.min(b.len() - 1)]);
                    match op {
                        "Add" => x.checked_add(y),
                        "Sub" => x.checked_sub(y),
                        "Mul" => x.checked_mul(y),
                        "Div" => x.checked_div_euclid(y),
                        "Max" => Some(x.max(y)),
                        "Min" => Some(x.min(y)),
                        _ => Some((x == y) as i64),
                    }
                })
                .collect::<Option<_>>()?
        }
        "Where" => {
            let (cond, a, b) = (c.ints(0)?, c.ints(1)?, c.ints(2)?);
            let n = cond.len().max(a.len()).max(b.len());
            let at = |v: &Vec<i64>, i: usize| v.get(i.min(v.len().saturating_sub(1))).copied();
            (0..n)
                .map(|i| {
                    Some(if at(&cond, i)? != 0 {
                        at(&a, i)?
                    } else {
                        at(&b, i)?
                    })
                })
                .collect::<Option<_>>()?
        }
        "ConstantOfShape" => {
            let dims = c.ints(0)?;
            let count = usize::try_from(dims.iter().product::<i64>()).ok()?;
            if count > KNOWN_LIMIT {
                return None;
            }
            let fill = match node.attr("value").and_then(AttrValue::as_tensor) {
                Some(t) if !t.dtype.is_float() => *t.to_i64_vec().ok()?.first()?,
                Some(_) => return None,
                None => return None,
            };
            vec![fill; count]
        }
        _ => return None,
    };
    let is_int = inferred
        .first()
        .and_then(|t| t.as_ref()?.dtype())
        .is_none_or(|d| !d.is_float());
    (vals.len() <= KNOWN_LIMIT && is_int).then_some((out, vals))
}

struct Ctx<'a> {
    graph: &'a Graph,
    node: &'a Node,
    known: &'a Known,
}

impl Ctx<'_> {
    fn ty(&self, i: usize) -> Option<Type> {
        value_type(self.graph, self.node.input(i)?)
    }
    fn dtype(&self, i: usize) -> Option<DataType> {
        self.ty(i)?.dtype()
    }
    fn shape(&self, i: usize) -> Option<Vec<Dim>> {
        self.ty(i)?.shape().map(<[Dim]>::to_vec)
    }
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        let v = self.node.input(i)?;
        const_ints(self.graph, Some(v)).or_else(|| self.known.ints.get(&v).cloned())
    }
    /// A shape-vector input as dims: numbers where known, symbols where
    /// they come from symbolic dims.
    fn dims(&self, i: usize) -> Option<Vec<Dim>> {
        match self.ints(i) {
            Some(v) => Some(v.into_iter().map(Dim::Known).collect()),
            None => self.known.dims.get(&self.node.input(i)?).cloned(),
        }
    }
}

fn tensor(dtype: DataType, shape: Vec<Dim>) -> Option<Type> {
    Some(Type::Tensor {
        dtype,
        shape: Some(shape),
    })
}

fn rank_only(dtype: DataType) -> Option<Type> {
    Some(Type::Tensor { dtype, shape: None })
}

/// Numpy-style broadcast of several shapes.
pub fn broadcast(shapes: &[Vec<Dim>]) -> Option<Vec<Dim>> {
    let rank = shapes.iter().map(Vec::len).max()?;
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut dim = Dim::Known(1);
        for s in shapes {
            let Some(d) = (i + s.len()).checked_sub(rank).map(|j| &s[j]) else {
                continue;
            };
            dim = match (&dim, d) {
                (_, Dim::Known(1)) => dim,
                (Dim::Known(1), d) => d.clone(),
                (Dim::Known(a), Dim::Known(b)) if a != b => return None,
                (a, b) if a == b => dim,
                (Dim::Known(_), _) => dim,
                (_, Dim::Known(_)) => d.clone(),
                // An unknown dim broadcast against a symbol is either 1 or
                // that symbol: the result is the symbol either way.
                (Dim::Symbol(_), Dim::Unknown) => dim,
                (Dim::Unknown, Dim::Symbol(_)) => d.clone(),
                _ => Dim::Unknown,
            };
        }
        out.push(dim);
    }
    Some(out)
}

/// Product of dims; a single symbol times known dims that multiply to 1
/// stays that symbol.
fn mul_dims(dims: &[Dim]) -> Dim {
    let symbols: Vec<&Dim> = dims
        .iter()
        .filter(|d| !matches!(d, Dim::Known(_)))
        .collect();
    let known = dims
        .iter()
        .filter_map(Dim::known)
        .try_fold(1i64, |acc, v| acc.checked_mul(v));
    match (symbols.as_slice(), known) {
        ([], Some(k)) => Dim::Known(k),
        ([s @ Dim::Symbol(_)], Some(1)) => (*s).clone(),
        _ => Dim::Unknown,
    }
}

/// Binds each distinct symbolic (or unknown) dim of the graph inputs to its
/// own unusual size (97, 89, 83, …) and re-infers. With every shape static,
/// shape arithmetic folds through; distinct sizes keep distinct dims apart,
/// so shape comparisons made on the bound graph hold for the symbolic one
/// (barring sizes that coincide by construction).
pub fn bind_input_dims_distinct(graph: &mut Graph) -> crate::Result<usize> {
    const SIZES: &[i64] = &[
        97, 89, 83, 79, 73, 71, 67, 61, 59, 53, 47, 43, 41, 37, 31, 29,
    ];
    let mut bound: Vec<Dim> = Vec::new();
    for v in graph.inputs.clone() {
        if let Some(Type::Tensor {
            shape: Some(dims), ..
        }) = &mut graph.value_mut(v).ty
        {
            for d in dims.iter_mut() {
                if matches!(d, Dim::Known(v) if *v >= 0) {
                    continue;
                }
                let key = match d {
                    Dim::Symbol(_) => d.clone(),
                    _ => Dim::Symbol(format!("?{}", bound.len())),
                };
                let slot = bound.iter().position(|b| *b == key).unwrap_or_else(|| {
                    bound.push(key);
                    bound.len() - 1
                });
                *d = Dim::Known(SIZES.get(slot).copied().unwrap_or(101 + 2 * slot as i64));
            }
        }
    }
    infer_graph(graph)
}

/// A copy of `graph` whose intermediate types are inferred afresh with every
/// symbolic input dim bound to its own size (see
/// [`bind_input_dims_distinct`]): value ids are those of `graph`, and shapes
/// are static wherever inference reaches.
pub fn static_shape_copy(graph: &Graph) -> crate::Result<Graph> {
    let mut g = graph.clone();
    let inputs = g.inputs.clone();
    g.clear_types_except(&inputs);
    bind_input_dims_distinct(&mut g)?;
    Ok(g)
}

/// Binds every symbolic or unknown dim of the graph inputs to `size` and
/// re-infers, so that costs can be counted per `size` samples.
pub fn bind_input_dims(graph: &mut Graph, size: i64) -> crate::Result<usize> {
    for v in graph.inputs.clone() {
        if let Some(Type::Tensor {
            shape: Some(dims), ..
        }) = &mut graph.value_mut(v).ty
        {
            for d in dims.iter_mut() {
                if !matches!(d, Dim::Known(v) if *v >= 0) {
                    *d = Dim::Known(size);
                }
            }
        }
    }
    infer_graph(graph)
}

/// The sizes [`bind_dims`] gave: by dim name, and the dims past the
/// leading one nothing named (counted as 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DimBinding {
    pub bound: std::collections::BTreeMap<String, i64>,
    pub unbound: Vec<String>,
}

/// The name [`bind_dims`] knows an unknown input dim by: its symbol, or
/// `input:axis` for one without a name (or named `?`).
fn dim_name(input: &str, axis: usize, d: &Dim) -> String {
    match d {
        Dim::Symbol(s) if s.chars().any(|c| c.is_alphanumeric()) => s.clone(),
        _ => format!("{input}:{axis}"),
    }
}

/// Gives every symbolic or unknown input dim of `graph` a size: from
/// `named` (see [`dim_name`]), else 1. Types are not inferred again.
pub fn bind_dims(
    graph: &mut Graph,
    named: &std::collections::HashMap<String, usize>,
) -> DimBinding {
    let mut binding = DimBinding::default();
    for v in graph.inputs.clone() {
        let input = graph.value(v).name.clone();
        if let Some(Type::Tensor {
            shape: Some(dims), ..
        }) = &mut graph.value_mut(v).ty
        {
            for (axis, d) in dims.iter_mut().enumerate() {
                if matches!(d, Dim::Known(n) if *n >= 0) {
                    continue;
                }
                let name = dim_name(&input, axis, d);
                let size = match named.get(&name) {
                    Some(&n) => n as i64,
                    None => {
                        if axis > 0 && !binding.unbound.contains(&name) {
                            binding.unbound.push(name.clone());
                        }
                        1
                    }
                };
                binding.bound.insert(name, size);
                *d = Dim::Known(size);
            }
        }
    }
    binding
}

/// The sizes inputs of these shapes (by input name) give `graph`'s
/// unknown input dims, by the names [`bind_dims`] takes.
pub fn dims_of_inputs(
    graph: &Graph,
    shapes: &[(String, Vec<usize>)],
) -> std::collections::HashMap<String, usize> {
    let mut named = std::collections::HashMap::new();
    for &v in &graph.inputs {
        let value = graph.value(v);
        let (Some(dims), Some((_, shape))) = (
            value.ty.as_ref().and_then(Type::shape),
            shapes.iter().find(|(n, _)| *n == value.name),
        ) else {
            continue;
        };
        for (axis, (d, &size)) in dims.iter().zip(shape).enumerate() {
            if !matches!(d, Dim::Known(n) if *n >= 0) {
                named.insert(dim_name(&value.name, axis, d), size);
            }
        }
    }
    named
}

/// Output spatial size of a sliding window (Conv, pooling).
/// Windows along one axis. With `ceil`, a last partial window counts, as
/// long as it starts inside the input or its leading padding.
fn window_out(
    input: &Dim,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pads: (i64, i64),
    ceil: bool,
) -> Dim {
    match input {
        Dim::Known(n) if stride > 0 => {
            let eff = dilation * (kernel - 1) + 1;
            let span = n + pads.0 + pads.1 - eff;
            if span < 0 {
                return Dim::Unknown;
            }
            let mut q = if ceil {
                (span + stride - 1) / stride
            } else {
                span / stride
            };
            if ceil && q * stride >= n + pads.0 {
                q -= 1;
            }
            Dim::Known(q + 1)
        }
        _ => Dim::Unknown,
    }
}

/// A rank read from a shape tensor's length: `None` when negative or
/// beyond any real tensor's (which would only allocate nonsense).
fn plausible_rank(r: i64) -> Option<usize> {
    usize::try_from(r).ok().filter(|&r| r <= 1024)
}

fn sliding_window(c: &Ctx, x: &[Dim], kernel: &[i64], channels_out: Dim) -> Option<Vec<Dim>> {
    let spatial = x.len().checked_sub(2)?;
    if kernel.len() != spatial {
        return None;
    }
    let strides = c.node.ints_attr("strides").unwrap_or(vec![1; spatial]);
    let dilations = c.node.ints_attr("dilations").unwrap_or(vec![1; spatial]);
    let ceil = c.node.attr_i64("ceil_mode").unwrap_or(0) == 1;
    let auto_pad = c
        .node
        .attr("auto_pad")
        .and_then(AttrValue::as_str)
        .unwrap_or("NOTSET");
    let pads = c.node.ints_attr("pads").unwrap_or(vec![0; 2 * spatial]);
    if pads.len() != 2 * spatial || strides.len() != spatial || dilations.len() != spatial {
        return None;
    }
    let mut out = vec![x[0].clone(), channels_out];
    for i in 0..spatial {
        let d = match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => match &x[i + 2] {
                Dim::Known(n) => Dim::Known((n + strides[i] - 1) / strides[i]),
                _ => Dim::Unknown,
            },
            "VALID" => window_out(&x[i + 2], kernel[i], strides[i], dilations[i], (0, 0), ceil),
            _ => window_out(
                &x[i + 2],
                kernel[i],
                strides[i],
                dilations[i],
                (pads[i], pads[i + spatial]),
                ceil,
            ),
        };
        out.push(d);
    }
    Some(out)
}

const UNARY: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Erf",
    "Gelu",
    "HardSwish",
    "HardSigmoid",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Clip",
    "Softmax",
    "LogSoftmax",
    "Identity",
    "Floor",
    "Ceil",
    "Round",
    "Reciprocal",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Sign",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "RMSNormalization",
    "LpNormalization",
    "LRN",
    "PRelu",
    "Mish",
    "ThresholdedRelu",
    "Shrink",
    "Hardmax",
    "CumSum",
    "Trilu",
    "Dropout",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "FastGelu",
    "BiasGelu",
    "QuantizeLinear",
    "DequantizeLinear",
    "GroupNormalization",
    "Swish",
    "Silu",
];
const BINARY: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "BitShift",
];
const COMPARE: &[&str] = &[
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// Output types of one node (one entry per output; `None` = unknown).
pub fn infer_node(graph: &Graph, id: NodeId) -> Vec<Option<Type>> {
    infer_node_with(graph, id, &Known::default())
}

fn infer_node_with(graph: &Graph, id: NodeId, known: &Known) -> Vec<Option<Type>> {
    let node = graph.node(id);
    let n_out = node.outputs().len();
    let mut out = vec![None; n_out];
    if !node.is_onnx()
        && !matches!(
            node.op_type.as_str(),
            "FastGelu"
                | "BiasGelu"
                | "SkipLayerNormalization"
                | "SimplifiedLayerNormalization"
                | "MatMulNBits"
        )
    {
        return out;
    }
    if n_out == 0 {
        return out;
    }
    if node.op_type == "If" {
        return infer_if(node).unwrap_or(out);
    }
    let c = Ctx { graph, node, known };
    let first = infer_first(&c);
    if let Some(t) = first {
        out[0] = Some(t);
    }
    match node.op_type.as_str() {
        "Split" => {
            if let (Some(dt), Some(x)) = (c.dtype(0), c.shape(0)) {
                let axis = crate::normalize_axis(node.attr_i64("axis").unwrap_or(0), x.len());
                // Sizes from the input (when it is known), the attribute,
                // or equal parts (the last one smaller, from opset 18).
                let given = node.input(1).is_some() || node.attr("split").is_some();
                let sizes = c.ints(1).or_else(|| node.ints_attr("split"));
                if let Some(axis) = axis {
                    for (i, o) in out.iter_mut().enumerate() {
                        let mut s = x.clone();
                        s[axis] = match (&sizes, &x[axis]) {
                            (Some(sz), _) if sz.len() == n_out => Dim::Known(sz[i]),
                            (None, Dim::Known(n)) if !given => {
                                let chunk = (n + n_out as i64 - 1) / n_out as i64;
                                let size = if i + 1 < n_out {
                                    chunk
                                } else {
                                    n - chunk * (n_out as i64 - 1)
                                };
                                if size >= 0
                                    && (n % n_out as i64 == 0 || node.attr("num_outputs").is_some())
                                {
                                    Dim::Known(size)
                                } else {
                                    Dim::Unknown
                                }
                            }
                            _ => Dim::Unknown,
                        };
                        *o = tensor(dt, s);
                    }
                }
            }
        }
        "Dropout" if n_out > 1 => {
            if let Some(x) = c.shape(0) {
                out[1] = tensor(DataType::BOOL, x);
            }
        }
        "BatchNormalization" if n_out > 1 => {}
        "LayerNormalization" => {}
        "TopK" => {
            if let (Some(Type::Tensor { shape: Some(s), .. }), true) = (&out[0], n_out > 1) {
                out[1] = tensor(DataType::I64, s.clone());
            }
        }
        _ => {}
    }
    out
}

fn infer_first(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    if op == "MatMulNBits" {
        // com.microsoft: A [..., K] times the dequantized B [N, K]ᵀ.
        let mut shape = c.shape(0)?;
        *shape.last_mut()? = Dim::Known(node.attr_i64("N")?);
        return tensor(c.dtype(0)?, shape);
    }
    if UNARY.contains(&op) {
        let dt = c.dtype(0)?;
        let dt = if op == "QuantizeLinear" {
            c.dtype(2).unwrap_or(DataType::U8)
        } else if op == "DequantizeLinear" {
            c.dtype(1).unwrap_or(DataType::F32)
        } else {
            dt
        };
        return match c.shape(0) {
            Some(s) => tensor(dt, s),
            None => rank_only(dt),
        };
    }
    if BINARY.contains(&op) || COMPARE.contains(&op) || op == "Where" {
        let n = node.inputs().len();
        let shapes: Option<Vec<Vec<Dim>>> = (0..n).map(|i| c.shape(i)).collect();
        let dt = if COMPARE.contains(&op) {
            DataType::BOOL
        } else if op == "Where" {
            c.dtype(1)?
        } else {
            c.dtype(0)?
        };
        return match shapes.and_then(|s| broadcast(&s)) {
            Some(s) => tensor(dt, s),
            None => rank_only(dt),
        };
    }
    match op {
        "Not" | "IsNaN" | "IsInf" => tensor(DataType::BOOL, c.shape(0)?),
        "Cast" => {
            let to = DataType(node.attr_i64("to")? as i32);
            match c.shape(0) {
                Some(s) => tensor(to, s),
                None => rank_only(to),
            }
        }
        "CastLike" => tensor(c.dtype(1)?, c.shape(0)?),
        "Constant" => {
            let t = node.attr("value")?.as_tensor()?;
            Some(Type::tensor(t.dtype, &t.dims))
        }
        "Shape" => {
            let rank = c.shape(0)?.len() as i64;
            let start = node.attr_i64("start").unwrap_or(0);
            let end = node.attr_i64("end").unwrap_or(rank);
            let clamp = |v: i64| {
                if v < 0 {
                    (v + rank).max(0)
                } else {
                    v.min(rank)
                }
            };
            Some(Type::tensor(
                DataType::I64,
                &[(clamp(end) - clamp(start)).max(0)],
            ))
        }
        "Size" => Some(Type::tensor(DataType::I64, &[])),
        // The other op families, each answering None for ops it lacks.
        _ => infer_windows(c)
            .or_else(|| infer_products(c))
            .or_else(|| infer_reshaping(c))
            .or_else(|| infer_axis_ops(c))
            .or_else(|| infer_slicing(c))
            .or_else(|| infer_generators(c)),
    }
}

/// Convolutions and pooling: sliding windows over the spatial axes.
fn infer_windows(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Conv" | "ConvInteger" => {
            let x = c.shape(0)?;
            let w = c.shape(1)?;
            let kernel: Vec<i64> = match node.ints_attr("kernel_shape") {
                Some(k) => k,
                None => w.get(2..)?.iter().map(Dim::known).collect::<Option<_>>()?,
            };
            let dt = if op == "ConvInteger" {
                DataType::I32
            } else {
                c.dtype(0)?
            };
            tensor(dt, sliding_window(c, &x, &kernel, w[0].clone())?)
        }
        "ConvTranspose" => {
            let x = c.shape(0)?;
            let w = c.shape(1)?;
            let group = node.attr_i64("group").unwrap_or(1);
            let spatial = x.len().checked_sub(2)?;
            let cout = w
                .get(1)?
                .known()
                .map_or(Dim::Unknown, |v| Dim::Known(v * group));
            let mut s = vec![x[0].clone(), cout];
            if let Some(os) = node.ints_attr("output_shape") {
                s.extend(os.iter().rev().take(spatial).rev().map(|&v| Dim::Known(v)));
                return tensor(c.dtype(0)?, s);
            }
            let kernel: Vec<i64> = match node.ints_attr("kernel_shape") {
                Some(k) => k,
                None => w.get(2..)?.iter().map(Dim::known).collect::<Option<_>>()?,
            };
            let strides = node.ints_attr("strides").unwrap_or(vec![1; spatial]);
            let dil = node.ints_attr("dilations").unwrap_or(vec![1; spatial]);
            let outpad = node.ints_attr("output_padding").unwrap_or(vec![0; spatial]);
            let auto = node.attr("auto_pad").and_then(AttrValue::as_str);
            let pads = match auto {
                Some("SAME_UPPER" | "SAME_LOWER") => {
                    // The output is the input times the stride.
                    for i in 0..spatial {
                        let stride = *strides.get(i)?;
                        s.push(
                            x[i + 2]
                                .known()
                                .map_or(Dim::Unknown, |n| Dim::Known(n * stride)),
                        );
                    }
                    return tensor(c.dtype(0)?, s);
                }
                Some("VALID") => vec![0; 2 * spatial],
                _ => node.ints_attr("pads").unwrap_or(vec![0; 2 * spatial]),
            };
            for i in 0..spatial {
                s.push(match x[i + 2] {
                    Dim::Known(n) => Dim::Known(
                        strides.get(i)? * (n - 1)
                            + outpad.get(i)?
                            + (kernel.get(i)? - 1) * dil.get(i)?
                            + 1
                            - pads.get(i)?
                            - pads.get(i + spatial)?,
                    ),
                    _ => Dim::Unknown,
                });
            }
            tensor(c.dtype(0)?, s)
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let x = c.shape(0)?;
            let kernel = node.ints_attr("kernel_shape")?;
            let ch = x.get(1)?.clone();
            tensor(c.dtype(0)?, sliding_window(c, &x, &kernel, ch)?)
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let x = c.shape(0)?;
            let mut s = x[..2.min(x.len())].to_vec();
            s.extend(std::iter::repeat_n(
                Dim::Known(1),
                x.len().saturating_sub(2),
            ));
            tensor(c.dtype(0)?, s)
        }
        _ => None,
    }
}

/// Matrix products.
fn infer_products(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Gemm" => {
            let a = c.shape(0)?;
            let b = c.shape(1)?;
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let m = if node.attr_i64("transA").unwrap_or(0) == 1 {
                &a[1]
            } else {
                &a[0]
            };
            let n = if node.attr_i64("transB").unwrap_or(0) == 1 {
                &b[0]
            } else {
                &b[1]
            };
            tensor(c.dtype(0)?, vec![m.clone(), n.clone()])
        }
        "MatMul" | "MatMulInteger" => {
            let mut a = c.shape(0)?;
            let mut b = c.shape(1)?;
            let dt = if op == "MatMulInteger" {
                DataType::I32
            } else {
                c.dtype(0)?
            };
            let (a1, b1) = (a.len() == 1, b.len() == 1);
            if a1 {
                a.insert(0, Dim::Known(1));
            }
            if b1 {
                b.push(Dim::Known(1));
            }
            if a.len() < 2 || b.len() < 2 {
                return None;
            }
            let batch = broadcast(&[a[..a.len() - 2].to_vec(), b[..b.len() - 2].to_vec()])?;
            let mut s = batch;
            if !a1 {
                s.push(a[a.len() - 2].clone());
            }
            if !b1 {
                s.push(b[b.len() - 1].clone());
            }
            tensor(dt, s)
        }
        _ => None,
    }
}

/// Reshaping and joining: Flatten, Reshape, Transpose, Concat.
fn infer_reshaping(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Flatten" => {
            let x = c.shape(0)?;
            let axis = node.attr_i64("axis").unwrap_or(1);
            let axis = if axis < 0 {
                axis + x.len() as i64
            } else {
                axis
            } as usize;
            if axis > x.len() {
                return None;
            }
            tensor(
                c.dtype(0)?,
                vec![mul_dims(&x[..axis]), mul_dims(&x[axis..])],
            )
        }
        "Reshape" => {
            let dt = c.dtype(0)?;
            let Some(target) = c.ints(1) else {
                if let Some(dims) = c.dims(1) {
                    // Symbolic target: 0 copies the input dim, -1 stays unknown.
                    let x = c.shape(0);
                    let allowzero = node.attr_i64("allowzero").unwrap_or(0) == 1;
                    let s = dims
                        .iter()
                        .enumerate()
                        .map(|(i, d)| match d {
                            Dim::Known(0) if !allowzero => x
                                .as_ref()
                                .and_then(|x| x.get(i).cloned())
                                .unwrap_or(Dim::Unknown),
                            Dim::Known(-1) => Dim::Unknown,
                            d => d.clone(),
                        })
                        .collect();
                    return tensor(dt, s);
                }
                let rank = c.shape(1).and_then(|s| s.first()?.known());
                return match rank.and_then(plausible_rank) {
                    Some(r) => tensor(dt, vec![Dim::Unknown; r]),
                    None => rank_only(dt),
                };
            };
            let x = c.shape(0);
            let allowzero = node.attr_i64("allowzero").unwrap_or(0) == 1;
            let mut s: Vec<Dim> = target
                .iter()
                .enumerate()
                .map(|(i, &d)| match d {
                    0 if !allowzero => x
                        .as_ref()
                        .and_then(|x| x.get(i).cloned())
                        .unwrap_or(Dim::Unknown),
                    -1 => Dim::Unknown,
                    d => Dim::Known(d),
                })
                .collect();
            if let (Some(pos), Some(total)) = (
                target.iter().position(|&d| d == -1),
                x.as_ref().and_then(|x| mul_dims(x).known()),
            ) {
                let rest = s
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pos)
                    .try_fold(1i64, |acc, (_, d)| d.known().map(|v| acc * v));
                if let Some(rest) = rest.filter(|&r| r > 0 && total % r == 0) {
                    s[pos] = Dim::Known(total / rest);
                }
            }
            tensor(dt, s)
        }
        "Transpose" => {
            let x = c.shape(0)?;
            let perm = node
                .ints_attr("perm")
                .unwrap_or_else(|| (0..x.len() as i64).rev().collect());
            let s = perm
                .iter()
                .map(|&p| x.get(usize::try_from(p).ok()?).cloned())
                .collect::<Option<Vec<_>>>()?;
            tensor(c.dtype(0)?, s)
        }
        "Concat" => {
            let shapes: Vec<Vec<Dim>> = (0..node.inputs().len())
                .map(|i| c.shape(i))
                .collect::<Option<_>>()?;
            let first = shapes.first()?;
            let axis = crate::normalize_axis(node.attr_i64("axis")?, first.len())?;
            let mut s = first.clone();
            s[axis] = shapes
                .iter()
                .try_fold(0i64, |acc, sh| sh.get(axis)?.known().map(|v| acc + v))
                .map_or(Dim::Unknown, Dim::Known);
            tensor(c.dtype(0)?, s)
        }
        _ => None,
    }
}

/// Ops that drop, add or pick along axes: Squeeze, Unsqueeze, Gather, reductions.
fn infer_axis_ops(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Squeeze" | "Unsqueeze" => {
            let x = c.shape(0)?;
            let axes = node.ints_attr("axes").or_else(|| c.ints(1));
            let dt = c.dtype(0)?;
            if op == "Squeeze" {
                let Some(axes) = axes else {
                    return tensor(dt, x.into_iter().filter(|d| *d != Dim::Known(1)).collect());
                };
                let axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| crate::normalize_axis(a, x.len()))
                    .collect::<Option<_>>()?;
                tensor(
                    dt,
                    x.into_iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, d)| d)
                        .collect(),
                )
            } else {
                let axes = axes?;
                let rank = x.len() + axes.len();
                let axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| crate::normalize_axis(a, rank))
                    .collect::<Option<_>>()?;
                let mut rest = x.into_iter();
                let s = (0..rank)
                    .map(|i| {
                        if axes.contains(&i) {
                            Some(Dim::Known(1))
                        } else {
                            rest.next()
                        }
                    })
                    .collect::<Option<Vec<_>>>()?;
                tensor(dt, s)
            }
        }
        "Gather" => {
            let x = c.shape(0)?;
            let idx = c.shape(1)?;
            let axis = crate::normalize_axis(node.attr_i64("axis").unwrap_or(0), x.len())?;
            let mut s = x[..axis].to_vec();
            s.extend(idx);
            s.extend_from_slice(&x[axis + 1..]);
            tensor(c.dtype(0)?, s)
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2"
        | "ReduceL1" | "ReduceSumSquare" | "ReduceLogSumExp" | "ArgMax" | "ArgMin" => {
            let x = c.shape(0)?;
            let keep = node.attr_i64("keepdims").unwrap_or(1) == 1;
            let dt = if op.starts_with("Arg") {
                DataType::I64
            } else {
                c.dtype(0)?
            };
            let axes = if op.starts_with("Arg") {
                Some(vec![node.attr_i64("axis").unwrap_or(0)])
            } else {
                node.ints_attr("axes").or_else(|| c.ints(1))
            };
            let unknown_axes = axes.is_none() && !op.starts_with("Arg") && node.input(1).is_some();
            if unknown_axes {
                // Axes computed at run time: only the rank is known, and
                // only when it is kept.
                return keep
                    .then(|| tensor(dt, vec![Dim::Unknown; x.len()]))
                    .flatten();
            }
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|&a| crate::normalize_axis(a, x.len()))
                    .collect::<Option<_>>()?,
                _ if node.attr_i64("noop_with_empty_axes").unwrap_or(0) == 1 => {
                    return tensor(dt, x)
                }
                _ => (0..x.len()).collect(),
            };
            let s = x
                .into_iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    if axes.contains(&i) {
                        keep.then_some(Dim::Known(1))
                    } else {
                        Some(d)
                    }
                })
                .collect();
            tensor(dt, s)
        }
        _ => None,
    }
}

/// Slicing, filling and padding: Slice, ConstantOfShape, Expand, Tile, Pad.
fn infer_slicing(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Slice" => {
            let x = c.shape(0)?;
            let dt = c.dtype(0)?;
            let (Some(starts), Some(ends)) = (c.ints(1), c.ints(2)) else {
                // Bounds known only at run time: the sliced axes are unknown.
                let axes: Vec<usize> = match node.input(3) {
                    Some(_) => c
                        .ints(3)?
                        .iter()
                        .map(|&a| crate::normalize_axis(a, x.len()))
                        .collect::<Option<_>>()?,
                    None => (0..x.len()).collect(),
                };
                let s = x
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        if axes.contains(&i) {
                            Dim::Unknown
                        } else {
                            d.clone()
                        }
                    })
                    .collect();
                return tensor(dt, s);
            };
            let axes = match node.input(3) {
                Some(_) => c.ints(3)?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match node.input(4) {
                Some(_) => c.ints(4)?,
                None => vec![1; starts.len()],
            };
            let mut s = x.clone();
            for (k, &a) in axes.iter().enumerate() {
                let a = crate::normalize_axis(a, x.len())?;
                let Dim::Known(n) = x[a] else {
                    s[a] = Dim::Unknown;
                    continue;
                };
                let step = *steps.get(k)?;
                if step == 0 {
                    return None;
                }
                if n < 0 {
                    return None;
                }
                let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
                let fix = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
                let (st, en) = (fix(*starts.get(k)?), fix(*ends.get(k)?));
                let len = if step > 0 {
                    let (st, en) = (clamp(st, 0, n), clamp(en, 0, n));
                    if en > st {
                        (en - st + step - 1) / step
                    } else {
                        0
                    }
                } else {
                    let (st, en) = (clamp(st, 0, n - 1), clamp(en, -1, n - 1));
                    if st > en {
                        (st - en + (-step) - 1) / (-step)
                    } else {
                        0
                    }
                };
                s[a] = Dim::Known(len);
            }
            tensor(dt, s)
        }
        "ConstantOfShape" => {
            let dims = c.ints(0)?;
            let dt = node
                .attr("value")
                .and_then(AttrValue::as_tensor)
                .map_or(DataType::F32, |t| t.dtype);
            Some(Type::tensor(dt, &dims))
        }
        "Expand" => {
            let x = c.shape(0)?;
            let target: Vec<Dim> = match c.ints(1) {
                Some(dims) => dims.into_iter().map(Dim::Known).collect(),
                // A shape computed at run time, of known length: the rank
                // is known, and so is every dim of x that is not 1.
                None => {
                    let length = plausible_rank(c.shape(1)?.first()?.known()?)?;
                    let rank = length.max(x.len());
                    let mut dims = vec![Dim::Unknown; rank];
                    for (d, xd) in dims[rank - x.len()..].iter_mut().zip(&x) {
                        if xd.known().is_some_and(|v| v != 1) {
                            *d = xd.clone();
                        }
                    }
                    return tensor(c.dtype(0)?, dims);
                }
            };
            tensor(c.dtype(0)?, broadcast(&[x, target])?)
        }
        "Tile" => {
            let x = c.shape(0)?;
            let reps = c.ints(1)?;
            let s = x
                .iter()
                .zip(&reps)
                .map(|(d, &r)| d.known().map_or(Dim::Unknown, |v| Dim::Known(v * r)))
                .collect();
            tensor(c.dtype(0)?, s)
        }
        "Pad" => {
            let x = c.shape(0)?;
            let pads = node.ints_attr("pads").or_else(|| c.ints(1))?;
            let r = x.len();
            let axes: Vec<usize> = match node.input(3) {
                Some(_) => c
                    .ints(3)?
                    .iter()
                    .map(|&a| crate::normalize_axis(a, r))
                    .collect::<Option<_>>()?,
                None => (0..r).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return None;
            }
            let mut s = x;
            for (k, &a) in axes.iter().enumerate() {
                s[a] = s[a].known().map_or(Dim::Unknown, |v| {
                    Dim::Known(v + pads[k] + pads[k + axes.len()])
                });
            }
            tensor(c.dtype(0)?, s)
        }
        _ => None,
    }
}

/// Resampling, generators and the rest: Resize, Range, NonZero, TopK, DepthToSpace, EyeLike, GatherElements, Einsum.
fn infer_generators(c: &Ctx) -> Option<Type> {
    let node = c.node;
    let op = node.op_type.as_str();
    match op {
        "Resize" | "Upsample" => {
            let x = c.shape(0)?;
            let dt = c.dtype(0)?;
            if let Some(sizes) = node
                .input(3)
                .and_then(|_| c.ints(3))
                .filter(|s| s.len() == x.len())
            {
                return Some(Type::tensor(dt, &sizes));
            }
            let scales_input = if op == "Upsample" { 1 } else { 2 };
            let scales = node
                .input(scales_input)
                .and_then(|v| constant(c.graph, v))
                .and_then(|t| t.to_f32_vec().ok())
                .filter(|s| s.len() == x.len());
            match scales {
                Some(sc) => tensor(
                    dt,
                    x.iter()
                        .zip(sc)
                        .map(|(d, s)| {
                            d.known()
                                .map_or(Dim::Unknown, |v| Dim::Known((v as f32 * s).floor() as i64))
                        })
                        .collect(),
                ),
                None => tensor(dt, vec![Dim::Unknown; x.len()]),
            }
        }
        "Range" => {
            let dt = c.dtype(0)?;
            let len = match (c.ints(0), c.ints(1), c.ints(2)) {
                (Some(s), Some(l), Some(d)) if d.first().is_some_and(|&d| d != 0) => {
                    let (s, l, d) = (*s.first()?, *l.first()?, *d.first()?);
                    Dim::Known(((l - s) as f64 / d as f64).ceil().max(0.0) as i64)
                }
                _ => Dim::Unknown,
            };
            tensor(dt, vec![len])
        }
        "NonZero" => tensor(
            DataType::I64,
            vec![Dim::Known(c.shape(0)?.len() as i64), Dim::Unknown],
        ),
        "TopK" => {
            let mut x = c.shape(0)?;
            let axis = crate::normalize_axis(node.attr_i64("axis").unwrap_or(-1), x.len())?;
            x[axis] = c
                .ints(1)
                .and_then(|k| k.first().copied())
                .map_or(Dim::Unknown, Dim::Known);
            tensor(c.dtype(0)?, x)
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let x = c.shape(0)?;
            let b = node.attr_i64("blocksize")?;
            if x.len() != 4 {
                return None;
            }
            let k = |d: &Dim, f: &dyn Fn(i64) -> i64| {
                d.known().map_or(Dim::Unknown, |v| Dim::Known(f(v)))
            };
            let s = if op == "DepthToSpace" {
                vec![
                    x[0].clone(),
                    k(&x[1], &|v| v / (b * b)),
                    k(&x[2], &|v| v * b),
                    k(&x[3], &|v| v * b),
                ]
            } else {
                vec![
                    x[0].clone(),
                    k(&x[1], &|v| v * b * b),
                    k(&x[2], &|v| v / b),
                    k(&x[3], &|v| v / b),
                ]
            };
            tensor(c.dtype(0)?, s)
        }
        // `dtype` overrides the input's element type.
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" => {
            let dtype = node.attr_i64("dtype").map(|d| DataType(d as i32));
            tensor(dtype.unwrap_or(c.dtype(0)?), c.shape(0)?)
        }
        "GatherElements" => tensor(c.dtype(0)?, c.shape(1)?),
        "Einsum" => {
            let equation = node.attr("equation").and_then(AttrValue::as_str)?;
            let dims: Vec<Vec<i64>> = (0..node.inputs().len())
                .map(|i| {
                    c.shape(i)?
                        .iter()
                        .map(Dim::known)
                        .collect::<Option<Vec<i64>>>()
                })
                .collect::<Option<_>>()?;
            let views: Vec<&[i64]> = dims.iter().map(Vec::as_slice).collect();
            let plan = einsum_plan(equation, &views).ok()?;
            let out = plan.output.chars().map(|l| Dim::Known(plan.size(l)));
            tensor(c.dtype(0)?, out.collect())
        }
        _ => None,
    }
}

/// An Einsum equation (without ellipses) resolved against its operands'
/// dims: every letter (the output's first, in order, then the summed
/// ones), each operand's term, the output term and each letter's size.
#[derive(Clone, Debug, PartialEq)]
pub struct EinsumPlan {
    pub letters: Vec<char>,
    pub terms: Vec<String>,
    pub output: String,
    pub sizes: Vec<i64>,
}

impl EinsumPlan {
    /// The size of letter `l` (0 when it is not in the equation).
    pub fn size(&self, l: char) -> i64 {
        self.letters
            .iter()
            .position(|&c| c == l)
            .map_or(0, |i| self.sizes[i])
    }
}

/// Resolves `equation` against operands of `dims`; the error says what
/// does not fit. Without `->`, the output is the letters used once, in
/// alphabetical order (as numpy and ONNX read it).
pub fn einsum_plan(equation: &str, dims: &[&[i64]]) -> Result<EinsumPlan, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains("...") {
        return Err("an ellipsis ('...') in the equation".into());
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r.to_string())),
        None => (eq.as_str(), None),
    };
    let terms: Vec<String> = lhs.split(',').map(str::to_string).collect();
    if terms.len() != dims.len() {
        return Err(format!(
            "{} terms in '{equation}' for {} operands",
            terms.len(),
            dims.len()
        ));
    }
    let mut seen: Vec<(char, i64, usize)> = Vec::new();
    for (term, d) in terms.iter().zip(dims) {
        if term.chars().count() != d.len() {
            return Err(format!(
                "term '{term}' does not match an operand of rank {}",
                d.len()
            ));
        }
        for (l, &size) in term.chars().zip(d.iter()) {
            if !l.is_ascii_alphabetic() {
                return Err(format!("'{l}' in '{equation}' is not a letter"));
            }
            match seen.iter_mut().find(|(c, ..)| *c == l) {
                Some((_, s, _)) if *s != size => {
                    return Err(format!("letter '{l}' has sizes {s} and {size}"))
                }
                Some((.., uses)) => *uses += 1,
                None => seen.push((l, size, 1)),
            }
        }
    }
    let output = rhs.unwrap_or_else(|| {
        let mut once: Vec<char> = seen.iter().filter(|s| s.2 == 1).map(|s| s.0).collect();
        once.sort_unstable();
        once.into_iter().collect()
    });
    let mut letters: Vec<char> = Vec::new();
    for l in output.chars() {
        if letters.contains(&l) || !seen.iter().any(|s| s.0 == l) {
            return Err(format!("output letter '{l}' repeated or not in the inputs"));
        }
        letters.push(l);
    }
    letters.extend(seen.iter().map(|s| s.0).filter(|l| !output.contains(*l)));
    let sizes = letters
        .iter()
        .map(|l| seen.iter().find(|s| s.0 == *l).map_or(0, |s| s.1))
        .collect();
    Ok(EinsumPlan {
        letters,
        terms,
        output,
        sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_bind_by_name_from_sample_shapes() {
        let model = crate::text::parse(
            "graph \"g\" (%ids: i64[batch,seq], %x: f32[?,3]) -> (%y) {\n  %y = Identity(%x)\n}\n",
        )
        .unwrap();
        let shapes = vec![
            ("ids".to_string(), vec![1, 32]),
            ("x".to_string(), vec![5, 3]),
        ];
        let named = dims_of_inputs(&model.graph, &shapes);
        assert_eq!(named.get("seq"), Some(&32));
        assert_eq!(named.get("x:0"), Some(&5));
        let mut g = model.graph.clone();
        let binding = bind_dims(&mut g, &named);
        assert_eq!(binding.bound.get("batch"), Some(&1));
        assert!(binding.unbound.is_empty());
        let ids = g.inputs[0];
        assert_eq!(
            g.value(ids).ty.as_ref().and_then(Type::static_dims),
            Some(vec![1, 32])
        );
    }
}
