//! Reference evaluation of ops on constant tensors, for constant folding.
//!
//! Values are held as f64 (float types) or i64 (integer and boolean types)
//! with their ONNX element type, and written back in that type: f32 results
//! of +, -, *, / and sqrt are exactly what f32 arithmetic gives (f64 then
//! rounding is correctly rounded for these). Ops or types outside the set
//! return `None`: the caller leaves the node alone.

use crate::{codec, AttrValue, DataType, Node, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub enum Vals {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

/// A constant being evaluated: element type, dims and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub dtype: DataType,
    pub dims: Vec<usize>,
    pub vals: Vals,
}

fn is_int_type(dt: DataType) -> bool {
    codec::is_codec_int(dt)
}

fn is_float_type(dt: DataType) -> bool {
    codec::is_codec_float(dt)
}

impl Const {
    pub fn from_tensor(t: &Tensor) -> Option<Const> {
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<_>>>()?;
        let vals = if is_float_type(t.dtype) {
            Vals::Float(t.to_f64_vec().ok()?)
        } else if is_int_type(t.dtype) {
            Vals::Int(t.to_i64_vec().ok()?)
        } else {
            return None;
        };
        Some(Const {
            dtype: t.dtype,
            dims,
            vals,
        })
    }

    pub fn len(&self) -> usize {
        match &self.vals {
            Vals::Float(v) => v.len(),
            Vals::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ints(&self) -> Option<&[i64]> {
        match &self.vals {
            Vals::Int(v) => Some(v),
            Vals::Float(_) => None,
        }
    }

    fn as_f64(&self) -> Vec<f64> {
        match &self.vals {
            Vals::Float(v) => v.clone(),
            Vals::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    fn with(&self, dims: Vec<usize>, vals: Vals) -> Const {
        Const {
            dtype: self.dtype,
            dims,
            vals,
        }
    }

    /// Gathers elements by flat index.
    fn pick(&self, idx: &[usize], dims: Vec<usize>) -> Const {
        let vals = match &self.vals {
            Vals::Float(v) => Vals::Float(idx.iter().map(|&i| v[i]).collect()),
            Vals::Int(v) => Vals::Int(idx.iter().map(|&i| v[i]).collect()),
        };
        self.with(dims, vals)
    }

    /// The tensor in its element type, as raw little-endian data.
    pub fn to_tensor(&self) -> Option<Tensor> {
        let raw = match &self.vals {
            Vals::Float(v) => codec::encode_floats(self.dtype, v.iter().copied())?,
            Vals::Int(v) => codec::encode_ints(self.dtype, v)?,
        };
        Some(Tensor::from_raw(
            self.dtype,
            self.dims.iter().map(|&d| d as i64).collect(),
            raw.into(),
        ))
    }

    fn byte_size(&self) -> usize {
        self.len() * self.dtype.bit_width().unwrap_or(64) / 8
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Flat index into a tensor of `dims` broadcast to `out` for each output element.
fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let r = out.len();
    let src_strides = strides(dims);
    let out_strides = strides(out);
    (0..n)
        .map(|flat| {
            let mut idx = 0;
            for k in 0..r {
                let coord = (flat / out_strides[k]) % out[k].max(1);
                if k + dims.len() >= r {
                    let j = k + dims.len() - r;
                    if dims[j] != 1 {
                        idx += coord * src_strides[j];
                    }
                }
            }
            idx
        })
        .collect()
}

/// Evaluates `node` on constant inputs (`None` for omitted optional
/// inputs). Returns one constant per output, or `None` when the op, its
/// types or its attributes are outside what this evaluator does, or when
/// the result would exceed `limit_bytes`.
pub fn eval(node: &Node, inputs: &[Option<Const>], limit_bytes: usize) -> Option<Vec<Const>> {
    if !node.is_onnx() {
        return None;
    }
    let x = |i: usize| inputs.get(i).and_then(|c| c.as_ref());
    let out = eval_one(node, inputs, &x, limit_bytes)?;
    (out.byte_size() <= limit_bytes).then_some(vec![out])
}

fn eval_one<'a>(
    node: &Node,
    inputs: &'a [Option<Const>],
    x: &dyn Fn(usize) -> Option<&'a Const>,
    limit: usize,
) -> Option<Const> {
    let op = node.op_type.as_str();
    match op {
        "Identity" => x(0).cloned(),
        "Constant" => Const::from_tensor(node.attr("value")?.as_tensor()?),
        "Cast" => {
            let to = DataType(node.attr_i64("to")? as i32);
            let a = x(0)?;
            let vals = match (&a.vals, is_float_type(to), is_int_type(to)) {
                (Vals::Float(v), true, _) => Vals::Float(
                    v.iter()
                        .map(|&f| {
                            if to == DataType::F32 {
                                f as f32 as f64
                            } else {
                                f
                            }
                        })
                        .collect(),
                ),
                (Vals::Int(v), true, _) => Vals::Float(v.iter().map(|&i| i as f64).collect()),
                (Vals::Int(v), _, true) => Vals::Int(v.iter().map(|&i| wrap_int(i, to)).collect()),
                (Vals::Float(v), _, true) => {
                    if v.iter().any(|f| !f.is_finite()) {
                        return None;
                    }
                    Vals::Int(
                        v.iter()
                            .map(|&f| {
                                if to == DataType::BOOL {
                                    (f != 0.0) as i64
                                } else {
                                    wrap_int(f.trunc() as i64, to)
                                }
                            })
                            .collect(),
                    )
                }
                _ => return None,
            };
            Some(Const {
                dtype: to,
                dims: a.dims.clone(),
                vals,
            })
        }
        "DequantizeLinear" => dequantize(node, x(0)?, x(1)?, x(2)),
        "Shape" | "Size" => None, // folded from types by the caller
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => None, // shape ops: the caller reshapes with inferred dims
        // The other op families, each answering None for ops it lacks.
        _ => eval_selection(node, inputs, x)
            .or_else(|| eval_layout_and_fills(node, x, limit))
            .or_else(|| eval_binary(node, inputs, x))
            .or_else(|| eval_unary_and_reductions(node, x)),
    }
}

/// Concat, Gather and Slice of constants.
fn eval_selection<'a>(
    node: &Node,
    inputs: &'a [Option<Const>],
    x: &dyn Fn(usize) -> Option<&'a Const>,
) -> Option<Const> {
    let op = node.op_type.as_str();
    match op {
        "Concat" => {
            let parts: Vec<&Const> = (0..inputs.len()).map(x).collect::<Option<_>>()?;
            let first = parts.first()?;
            let ax = crate::normalize_axis(node.attr_i64("axis")?, first.dims.len())?;
            let outer: usize = first.dims[..ax].iter().product();
            let mut dims = first.dims.clone();
            dims[ax] = parts
                .iter()
                .map(|p| p.dims.get(ax).copied())
                .sum::<Option<usize>>()?;
            let is_float = matches!(first.vals, Vals::Float(_));
            let (mut fv, mut iv) = (Vec::new(), Vec::new());
            for o in 0..outer {
                for p in &parts {
                    if p.dims.len() != first.dims.len() || p.dtype != first.dtype {
                        return None;
                    }
                    let inner: usize = p.dims[ax..].iter().product();
                    match &p.vals {
                        Vals::Float(v) => fv.extend_from_slice(&v[o * inner..(o + 1) * inner]),
                        Vals::Int(v) => iv.extend_from_slice(&v[o * inner..(o + 1) * inner]),
                    }
                }
            }
            Some(first.with(
                dims,
                if is_float {
                    Vals::Float(fv)
                } else {
                    Vals::Int(iv)
                },
            ))
        }
        "Gather" => {
            let data = x(0)?;
            let idx = x(1)?;
            let ax = crate::normalize_axis(node.attr_i64("axis").unwrap_or(0), data.dims.len())?;
            let n = data.dims[ax] as i64;
            let ids: Vec<usize> = idx
                .ints()?
                .iter()
                .map(|&i| {
                    usize::try_from(if i < 0 { i + n } else { i })
                        .ok()
                        .filter(|&i| (i as i64) < n)
                })
                .collect::<Option<_>>()?;
            let outer: usize = data.dims[..ax].iter().product();
            let inner: usize = data.dims[ax + 1..].iter().product();
            let mut flat = Vec::with_capacity(outer * ids.len() * inner);
            for o in 0..outer {
                for &i in &ids {
                    flat.extend((0..inner).map(|k| (o * data.dims[ax] + i) * inner + k));
                }
            }
            let mut dims = data.dims[..ax].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&data.dims[ax + 1..]);
            Some(data.pick(&flat, dims))
        }
        "Slice" => {
            let data = x(0)?;
            let starts = x(1)?.ints()?.to_vec();
            let ends = x(2)?.ints()?.to_vec();
            let axes: Vec<i64> = match x(3) {
                Some(a) => a.ints()?.to_vec(),
                None if inputs.get(3).is_some_and(Option::is_some) => return None,
                None => (0..starts.len() as i64).collect(),
            };
            let steps: Vec<i64> = match x(4) {
                Some(s) => s.ints()?.to_vec(),
                None => vec![1; starts.len()],
            };
            let r = data.dims.len();
            let mut ranges: Vec<Vec<usize>> = data.dims.iter().map(|&d| (0..d).collect()).collect();
            for (k, &a) in axes.iter().enumerate() {
                let a = crate::normalize_axis(a, r)?;
                let n = data.dims[a] as i64;
                let step = *steps.get(k)?;
                if step == 0 {
                    return None;
                }
                let fix = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
                let (mut s, mut e) = (fix(*starts.get(k)?), fix(*ends.get(k)?));
                let mut idx = Vec::new();
                if step > 0 {
                    s = s.clamp(0, n);
                    e = e.clamp(0, n);
                    let mut i = s;
                    while i < e {
                        idx.push(i as usize);
                        i += step;
                    }
                } else {
                    s = s.clamp(-1, n - 1);
                    e = e.clamp(-1, n - 1);
                    let mut i = s;
                    while i > e {
                        idx.push(i as usize);
                        i += step;
                    }
                }
                ranges[a] = idx;
            }
            let st = strides(&data.dims);
            let dims: Vec<usize> = ranges.iter().map(Vec::len).collect();
            let mut flat = vec![0usize];
            for (k, rg) in ranges.iter().enumerate() {
                let s = st[k];
                flat = flat
                    .iter()
                    .flat_map(|&base| rg.iter().map(move |&i| base + i * s))
                    .collect();
            }
            Some(data.pick(&flat, dims))
        }
        _ => None,
    }
}

/// Transpose, and the ops that make tensors from sizes: ConstantOfShape, Range, Expand (at most `limit` elements).
fn eval_layout_and_fills<'a>(
    node: &Node,
    x: &dyn Fn(usize) -> Option<&'a Const>,
    limit: usize,
) -> Option<Const> {
    let op = node.op_type.as_str();
    match op {
        "Transpose" => {
            let data = x(0)?;
            let r = data.dims.len();
            let perm: Vec<usize> = match node.ints_attr("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| usize::try_from(a).ok().filter(|&a| a < r))
                    .collect::<Option<_>>()?,
                None => (0..r).rev().collect(),
            };
            let st = strides(&data.dims);
            let dims: Vec<usize> = perm.iter().map(|&p| data.dims[p]).collect();
            let mut flat = vec![0usize];
            for &p in &perm {
                let s = st[p];
                flat = flat
                    .iter()
                    .flat_map(|&base| (0..data.dims[p]).map(move |i| base + i * s))
                    .collect();
            }
            Some(data.pick(&flat, dims))
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = x(0)?
                .ints()?
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<_>>()?;
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            let bytes_per = node
                .attr("value")
                .and_then(AttrValue::as_tensor)
                .map_or(Some(4), |t| t.dtype.bit_width().map(|b| b / 8))?;
            if n.checked_mul(bytes_per.max(1))? > limit {
                return None;
            }
            let fill = match node.attr("value") {
                Some(v) => Const::from_tensor(v.as_tensor()?)?,
                None => Const {
                    dtype: DataType::F32,
                    dims: vec![1],
                    vals: Vals::Float(vec![0.0]),
                },
            };
            if fill.len() != 1 || n > (1 << 28) {
                return None;
            }
            let vals = match fill.vals {
                Vals::Float(v) => Vals::Float(vec![v[0]; n]),
                Vals::Int(v) => Vals::Int(vec![v[0]; n]),
            };
            Some(Const {
                dtype: fill.dtype,
                dims,
                vals,
            })
        }
        "Range" => {
            let (s, l, d) = (x(0)?, x(1)?, x(2)?);
            match (&s.vals, &l.vals, &d.vals) {
                (Vals::Int(s), Vals::Int(l), Vals::Int(d)) => {
                    let (s, l, d) = (*s.first()?, *l.first()?, *d.first()?);
                    if d == 0 {
                        return None;
                    }
                    let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
                    if n > 1 << 24 {
                        return None;
                    }
                    Some(Const {
                        dtype: x(0)?.dtype,
                        dims: vec![n],
                        vals: Vals::Int((0..n as i64).map(|i| s + i * d).collect()),
                    })
                }
                _ => None,
            }
        }
        "Expand" => {
            let data = x(0)?;
            let shape: Vec<usize> = x(1)?
                .ints()?
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<_>>()?;
            let dims = broadcast_dims(&data.dims, &shape)?;
            if dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))?
                .checked_mul(8)?
                > limit
            {
                return None;
            }
            let idx = broadcast_index(&data.dims, &dims);
            Some(data.pick(&idx, dims))
        }
        _ => None,
    }
}

/// Where and the broadcasting binary ops.
fn eval_binary<'a>(
    node: &Node,
    inputs: &'a [Option<Const>],
    x: &dyn Fn(usize) -> Option<&'a Const>,
) -> Option<Const> {
    let op = node.op_type.as_str();
    match op {
        "Where" => {
            let (c, a, b) = (x(0)?, x(1)?, x(2)?);
            let dims = broadcast_dims(&broadcast_dims(&c.dims, &a.dims)?, &b.dims)?;
            let (ci, ai, bi) = (
                broadcast_index(&c.dims, &dims),
                broadcast_index(&a.dims, &dims),
                broadcast_index(&b.dims, &dims),
            );
            let cond = c.ints()?;
            let vals = match (&a.vals, &b.vals) {
                (Vals::Float(p), Vals::Float(q)) => Vals::Float(
                    (0..ci.len())
                        .map(|k| if cond[ci[k]] != 0 { p[ai[k]] } else { q[bi[k]] })
                        .collect(),
                ),
                (Vals::Int(p), Vals::Int(q)) => Vals::Int(
                    (0..ci.len())
                        .map(|k| if cond[ci[k]] != 0 { p[ai[k]] } else { q[bi[k]] })
                        .collect(),
                ),
                _ => return None,
            };
            Some(a.with(dims, vals))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Mod" => {
            let (a, b) = (x(0)?, x(1)?);
            if inputs.len() != 2 || a.dtype != b.dtype {
                return None;
            }
            let dims = broadcast_dims(&a.dims, &b.dims)?;
            let (ai, bi) = (
                broadcast_index(&a.dims, &dims),
                broadcast_index(&b.dims, &dims),
            );
            let compare = matches!(
                op,
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
            );
            let vals = match (&a.vals, &b.vals) {
                (Vals::Float(p), Vals::Float(q)) => {
                    let f = |x: f64, y: f64| -> Option<f64> {
                        Some(match op {
                            "Add" => x + y,
                            "Sub" => x - y,
                            "Mul" => x * y,
                            "Div" => x / y,
                            "Pow" => x.powf(y),
                            "Max" => x.max(y),
                            "Min" => x.min(y),
                            "Equal" => (x == y) as i64 as f64,
                            "Less" => (x < y) as i64 as f64,
                            "Greater" => (x > y) as i64 as f64,
                            "LessOrEqual" => (x <= y) as i64 as f64,
                            "GreaterOrEqual" => (x >= y) as i64 as f64,
                            _ => return None,
                        })
                    };
                    let v: Vec<f64> = (0..ai.len())
                        .map(|k| f(p[ai[k]], q[bi[k]]))
                        .collect::<Option<_>>()?;
                    if compare {
                        Vals::Int(v.into_iter().map(|x| x as i64).collect())
                    } else {
                        Vals::Float(v)
                    }
                }
                (Vals::Int(p), Vals::Int(q)) => {
                    let f = |x: i64, y: i64| -> Option<i64> {
                        match op {
                            "Add" => x.checked_add(y),
                            "Sub" => x.checked_sub(y),
                            "Mul" => x.checked_mul(y),
                            "Div" => x.checked_div(y),
                            "Mod" if y > 0 && node.attr_i64("fmod").unwrap_or(0) == 0 => {
                                Some(x.rem_euclid(y))
                            }
                            "Pow" => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)),
                            "Max" => Some(x.max(y)),
                            "Min" => Some(x.min(y)),
                            "Equal" => Some((x == y) as i64),
                            "Less" => Some((x < y) as i64),
                            "Greater" => Some((x > y) as i64),
                            "LessOrEqual" => Some((x <= y) as i64),
                            "GreaterOrEqual" => Some((x >= y) as i64),
                            "And" => Some((x != 0 && y != 0) as i64),
                            "Or" => Some((x != 0 || y != 0) as i64),
                            _ => None,
                        }
                    };
                    Vals::Int(
                        (0..ai.len())
                            .map(|k| f(p[ai[k]], q[bi[k]]).map(|v| wrap_int(v, a.dtype)))
                            .collect::<Option<_>>()?,
                    )
                }
                _ => return None,
            };
            let dtype = if compare { DataType::BOOL } else { a.dtype };
            Some(Const { dtype, dims, vals })
        }
        _ => None,
    }
}

/// Element-wise unary ops and reductions.
fn eval_unary_and_reductions<'a>(
    node: &Node,
    x: &dyn Fn(usize) -> Option<&'a Const>,
) -> Option<Const> {
    let op = node.op_type.as_str();
    match op {
        "Neg" | "Abs" | "Sqrt" | "Exp" | "Log" | "Reciprocal" | "Floor" | "Ceil" | "Not"
        | "Relu" | "Sigmoid" | "Tanh" | "Erf" => {
            let a = x(0)?;
            let vals = match &a.vals {
                Vals::Float(v) => Vals::Float(
                    v.iter()
                        .map(|&f| match op {
                            "Neg" => Some(-f),
                            "Abs" => Some(f.abs()),
                            "Sqrt" => Some(f.sqrt()),
                            "Reciprocal" => Some(1.0 / f),
                            "Floor" => Some(f.floor()),
                            "Ceil" => Some(f.ceil()),
                            "Relu" => Some(f.max(0.0)),
                            // Transcendentals are left to the runtime for
                            // f32, whose results may differ in the last bit.
                            "Exp" | "Log" | "Sigmoid" | "Tanh" | "Erf"
                                if a.dtype == DataType::F64 =>
                            {
                                match op {
                                    "Exp" => Some(f.exp()),
                                    "Log" => Some(f.ln()),
                                    "Tanh" => Some(f.tanh()),
                                    "Sigmoid" => Some(1.0 / (1.0 + (-f).exp())),
                                    _ => None,
                                }
                            }
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                Vals::Int(v) => Vals::Int(
                    v.iter()
                        .map(|&i| match op {
                            "Neg" => i.checked_neg(),
                            "Abs" => i.checked_abs(),
                            "Not" => Some((i == 0) as i64),
                            "Relu" => Some(i.max(0)),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
            };
            Some(a.with(a.dims.clone(), vals))
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let a = x(0)?;
            let all = a.as_f64();
            let keep = node.attr_i64("keepdims").unwrap_or(1) == 1;
            let axes_given = node
                .ints_attr("axes")
                .or_else(|| x(1).and_then(|c| c.ints().map(<[i64]>::to_vec)));
            if a.dims.len() > 1
                && axes_given
                    .as_ref()
                    .is_some_and(|ax| ax.len() < a.dims.len())
            {
                return None; // partial reductions are left to the runtime
            }
            if axes_given.as_ref().is_some_and(Vec::is_empty)
                && node.attr_i64("noop_with_empty_axes").unwrap_or(0) == 1
            {
                return Some(a.clone());
            }
            let r = match op {
                "ReduceProd" => all.iter().product(),
                "ReduceSum" => all.iter().sum(),
                "ReduceMax" => all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                _ => all.iter().copied().fold(f64::INFINITY, f64::min),
            };
            let dims = if keep { vec![1; a.dims.len()] } else { vec![] };
            let vals = match a.vals {
                Vals::Float(_) if op == "ReduceSum" || op == "ReduceProd" => return None, // summation order matters
                Vals::Float(_) => Vals::Float(vec![r]),
                Vals::Int(_) => Vals::Int(vec![r as i64]),
            };
            Some(a.with(dims, vals))
        }
        _ => None,
    }
}

/// Wraps an integer into the range of `dt` as a two's-complement cast would.
/// `(x - zero_point) · scale`, with the scale (and zero point) per
/// tensor, per index along `axis`, or per block of `block_size` indices
/// along it (opset 21), computed in the scale's type.
fn dequantize(node: &Node, x: &Const, scale: &Const, zero: Option<&Const>) -> Option<Const> {
    let rank = x.dims.len();
    let axis = crate::normalize_axis(node.int_attr("axis", 1), rank.max(1));
    let block = node.int_attr("block_size", 0).max(0) as usize;
    let (xs, ss) = (x.ints()?, scale.as_f64());
    let zs = match zero {
        Some(z) => z.ints()?.to_vec(),
        None => vec![0; ss.len()],
    };
    if zs.len() != ss.len() {
        return None;
    }
    let x_strides = strides(&x.dims);
    let param_index: Box<dyn Fn(usize) -> usize> = if ss.len() == 1 {
        Box::new(|_| 0)
    } else if block == 0 {
        let axis = axis?;
        (scale.dims.len() == 1 && scale.dims[0] == *x.dims.get(axis)?).then_some(())?;
        let (stride, len) = (x_strides[axis], x.dims[axis]);
        Box::new(move |i| i / stride % len)
    } else {
        let axis = axis?;
        let mut want = x.dims.clone();
        want[axis] = want[axis].div_ceil(block);
        (scale.dims == want).then_some(())?;
        let s_strides = strides(&scale.dims);
        let dims = x.dims.clone();
        Box::new(move |i| {
            (0..dims.len())
                .map(|a| {
                    let at = i / x_strides[a] % dims[a];
                    (if a == axis { at / block } else { at }) * s_strides[a]
                })
                .sum()
        })
    };
    let vals = xs
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let k = param_index(i);
            let y = (q - zs[k]) as f64 * ss[k];
            if scale.dtype == DataType::F32 {
                y as f32 as f64
            } else {
                y
            }
        })
        .collect();
    Some(Const {
        dtype: scale.dtype,
        dims: x.dims.clone(),
        vals: Vals::Float(vals),
    })
}

fn wrap_int(v: i64, dt: DataType) -> i64 {
    match dt {
        DataType::I32 => v as i32 as i64,
        DataType::U32 => v as u32 as i64,
        DataType::I16 => v as i16 as i64,
        DataType::U16 => v as u16 as i64,
        DataType::I8 => v as i8 as i64,
        DataType::U8 => v as u8 as i64,
        DataType::BOOL => (v != 0) as i64,
        _ => v,
    }
}
