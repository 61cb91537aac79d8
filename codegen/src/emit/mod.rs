//! The IR as MLIR text: `linalg` named ops where one fits (convolutions,
//! pooling, matmul, transpose), `linalg.generic` with broadcasting
//! indexing maps for element-wise ops, reductions and gathers, `tensor`
//! ops for padding, slicing and reshapes, weights as `dense_resource`
//! blobs.
//!
//! The core here (values, constants, `linalg.generic` building) is shared
//! by the op families, one file each: [`elementwise`] (arithmetic,
//! comparisons, logic, casts, selection), [`nn`] (convolution, pooling,
//! matmul, normalization, softmax), [`movement`] (reshapes, transposes,
//! concatenation, slices, splits, gathers, padding) and [`reduce`].
//!
//! Element types are f32, i64, i32, bool (`i1`), and f16 and bf16, which
//! only data movement, Where and Cast see (the other ops on halves are in
//! f32 between casts by then: [`crate::legalize`]); every value keeps its
//! ONNX element type. Every shape is static: graph inputs are bound first
//! ([`bind_shapes`]) and every other shape is inferred.

mod elementwise;
mod movement;
mod nn;
mod quantized;
mod reduce;
mod resize;
mod tosa;

use crate::ops::{is_supported, shape_slots, unsupported, STORAGE_OPS};
pub use crate::ops::{Dialect, Layout};
use crate::{CodegenError, Result};
use sculpt_ir::ops::infer::{self, constant, value_type};
use sculpt_ir::{AttrValue, DataType, Dim, Graph, Model, Node, Tensor, Type, ValueId};
use std::collections::HashMap;
use std::fmt::Write;

/// Shapes for graph inputs with symbolic dims: input name → dims.
#[derive(Clone, Debug, Default)]
pub struct EmitOptions {
    pub shapes: HashMap<String, Vec<i64>>,
    pub dialect: Dialect,
    /// The layout linalg convolutions compute in.
    pub layout: Layout,
}

/// Constants up to this many elements are written inline; larger ones
/// become `dense_resource` blobs.
const SMALL_CONSTANT: usize = 64;

/// An element type the emitter handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
    I32,
    Bool,
    /// Half precision, stored as such; ops compute on it in f32 (see
    /// [`crate::legalize`]), only data movement, Where and Cast read it
    /// directly.
    F16,
    BF16,
    /// 8-bit integers (quantized tensors): only data movement, Where and
    /// Cast take them (QuantizeLinear and DequantizeLinear are rewritten
    /// into those and f32 arithmetic).
    I8,
    U8,
    /// 4-bit codes (unsigned values in MLIR's signless `i4`): only the
    /// quantized weights [`quantized`] writes, never a graph tensor.
    U4,
}

impl Elem {
    pub fn of(dtype: DataType) -> Option<Elem> {
        Some(match dtype {
            DataType::F32 => Elem::F32,
            DataType::I64 => Elem::I64,
            DataType::I32 => Elem::I32,
            DataType::BOOL => Elem::Bool,
            DataType::F16 => Elem::F16,
            DataType::BF16 => Elem::BF16,
            DataType::I8 => Elem::I8,
            DataType::U8 => Elem::U8,
            _ => return None,
        })
    }

    pub fn dtype(self) -> DataType {
        match self {
            Elem::F32 => DataType::F32,
            Elem::I64 => DataType::I64,
            Elem::I32 => DataType::I32,
            Elem::Bool => DataType::BOOL,
            Elem::F16 => DataType::F16,
            Elem::BF16 => DataType::BF16,
            Elem::I8 => DataType::I8,
            Elem::U8 => DataType::U8,
            Elem::U4 => DataType::U4,
        }
    }

    /// The MLIR scalar type.
    pub fn mlir(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::I64 => "i64",
            Elem::I32 => "i32",
            Elem::Bool => "i1",
            Elem::F16 => "f16",
            Elem::BF16 => "bf16",
            Elem::I8 | Elem::U8 => "i8",
            Elem::U4 => "i4",
        }
    }

    /// Bytes per element in memory (an `i1` takes a byte).
    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::I64 => 8,
            Elem::Bool | Elem::I8 | Elem::U8 | Elem::U4 => 1,
            Elem::F16 | Elem::BF16 => 2,
        }
    }

    /// Whether this is the float type ops compute in (f32).
    fn is_float(self) -> bool {
        self == Elem::F32
    }

    /// f16 or bf16: stored, moved and cast, not computed on.
    fn is_half(self) -> bool {
        matches!(self, Elem::F16 | Elem::BF16)
    }

    /// i8 or u8: stored, moved and cast, not computed on.
    fn is_byte(self) -> bool {
        matches!(self, Elem::I8 | Elem::U8)
    }

    /// `arith.constant` of `x` in this type (a bool literal carries its
    /// type).
    fn scalar_constant(self, x: f64) -> String {
        match self {
            Elem::Bool => format!("arith.constant {}", self.literal(x)),
            _ => format!("arith.constant {} : {}", self.literal(x), self.mlir()),
        }
    }

    /// An exact literal of `x` in this type (`arith.constant` syntax).
    fn literal(self, x: f64) -> String {
        match self {
            Elem::F32 => float_lit(x),
            Elem::F16 => format!("0x{:04X}", sculpt_ir::codec::f32_to_f16(x as f32)),
            Elem::BF16 => format!("0x{:04X}", sculpt_ir::codec::f32_to_bf16(x as f32)),
            Elem::Bool => (x != 0.0).to_string(),
            Elem::I64 | Elem::I32 | Elem::I8 | Elem::U4 => (x as i64).to_string(),
            // Signless i8: u8 values above 127 as their two's-complement bits.
            Elem::U8 => (x as i64 as u8 as i8).to_string(),
        }
    }
}

/// A tensor's static dims and element type: an argument or a result of
/// `@main`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSig {
    pub dims: Vec<i64>,
    pub elem: Elem,
}

impl std::fmt::Display for TensorSig {
    /// `f32[1,3,224,224]`, as the text form writes types.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(i64::to_string).collect();
        let name = match self.elem {
            Elem::Bool => "bool",
            e => e.mlir(),
        };
        write!(f, "{name}[{}]", dims.join(","))
    }
}

fn dims_of(graph: &Graph, v: ValueId) -> Option<Vec<i64>> {
    value_type(graph, v).and_then(|t| t.static_dims())
}

fn elem_of(graph: &Graph, v: ValueId) -> Option<Elem> {
    match value_type(graph, v)? {
        Type::Tensor { dtype, .. } => Elem::of(dtype),
        _ => None,
    }
}

fn tensor_type(dims: &[i64], elem: Elem) -> String {
    if dims.is_empty() {
        return format!("tensor<{}>", elem.mlir());
    }
    let d: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("tensor<{}x{}>", d.join("x"), elem.mlir())
}

fn f32_type(dims: &[i64]) -> String {
    tensor_type(dims, Elem::F32)
}

/// An exact f32 literal: MLIR reads `0x3F800000 : f32` as its bit pattern.
fn float_lit(x: f64) -> String {
    format!("0x{:08X}", (x as f32).to_bits())
}

/// `items` (row-major) nested to `dims`, as a dense literal.
fn nested_literal(dims: &[i64], items: &[String]) -> String {
    match dims.split_first() {
        None => items[0].clone(),
        Some((_, rest)) => {
            let stride: usize = rest.iter().product::<i64>().max(0) as usize;
            let parts: Vec<String> = items
                .chunks(stride.max(1))
                .map(|c| nested_literal(rest, c))
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// LRN's `size`, `alpha`, `beta` and `bias`, with ONNX's defaults.
fn lrn_params(n: &Node) -> (i64, f64, f64, f64) {
    (
        n.int_attr("size", 1),
        n.float_attr("alpha", 1e-4),
        n.float_attr("beta", 0.75),
        n.float_attr("bias", 1.0),
    )
}

/// `axis` (negative counts from the end) as an index into `rank` dims.
fn axis_index(axis: i64, rank: usize) -> usize {
    sculpt_ir::normalize_axis(axis, rank).unwrap_or(rank)
}

/// `model` with every graph input bound to static dims (declared, or from
/// `options`) and every other shape inferred. Run `cleanup` on the result
/// to fold the shape computations that become constant.
pub fn bind_shapes(model: &Model, options: &EmitOptions) -> Result<Model> {
    let mut bound = model.clone();
    bound.graph = static_graph(model, options)?;
    Ok(bound)
}

/// Binds every graph input to static dims (declared, or from `options`)
/// and infers every other shape.
fn static_graph(model: &Model, options: &EmitOptions) -> Result<Graph> {
    let mut g = model.graph.clone();
    for &v in &g.inputs.clone() {
        let name = g.value(v).name.clone();
        let (dtype, shape) = match &g.value(v).ty {
            Some(Type::Tensor { dtype, shape }) => (*dtype, shape.clone()),
            _ => {
                return Err(CodegenError::Shape {
                    input: name,
                    reason: "not a tensor".into(),
                })
            }
        };
        let dims: Vec<i64> = match options.shapes.get(&name) {
            Some(d) => d.clone(),
            None => shape
                .unwrap_or_default()
                .iter()
                .map(|d| match d {
                    Dim::Known(k) => Ok(*k),
                    _ => Err(CodegenError::Shape {
                        input: name.clone(),
                        reason: format!("has symbolic dims; give --shape {name}=D0,D1,..."),
                    }),
                })
                .collect::<Result<_>>()?,
        };
        g.value_mut(v).ty = Some(Type::tensor(dtype, &dims));
    }
    let keep = g.inputs.clone();
    g.clear_types_except(&keep);
    infer::infer_graph(&mut g)?;
    Ok(g)
}

/// The body of a `linalg.generic`: scalar ops, each line one result.
struct Region {
    lines: Vec<String>,
    next: usize,
}

impl Region {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%t{}", self.next)
    }

    /// `r = rhs`, returning `r`.
    fn assign(&mut self, rhs: String) -> String {
        let r = self.fresh();
        self.lines.push(format!("{r} = {rhs}"));
        r
    }

    /// `r = instr args : f32`, returning `r`.
    fn op(&mut self, instr: &str, args: &str) -> String {
        self.assign(format!("{instr} {args} : f32"))
    }

    fn bin(&mut self, instr: &str, a: &str, b: &str) -> String {
        self.op(instr, &format!("{a}, {b}"))
    }

    fn constant(&mut self, v: f64) -> String {
        self.constant_of(v, Elem::F32)
    }

    fn constant_of(&mut self, v: f64, elem: Elem) -> String {
        self.assign(elem.scalar_constant(v))
    }
}

/// A tensor value while emitting: SSA name, dims, element type.
#[derive(Clone, Debug)]
struct Operand {
    name: String,
    dims: Vec<i64>,
    elem: Elem,
}

impl Operand {
    fn f32(name: String, dims: &[i64]) -> Operand {
        Operand {
            name,
            dims: dims.to_vec(),
            elem: Elem::F32,
        }
    }

    fn ty(&self) -> String {
        tensor_type(&self.dims, self.elem)
    }
}

/// One input of a `linalg.generic`: the operand and its indexing-map
/// results over the loop dims (`d0`, `d1`, ...).
struct MapIn<'a> {
    operand: &'a Operand,
    exprs: Vec<String>,
}

struct Emitter<'g> {
    g: &'g Graph,
    dialect: Dialect,
    layout: Layout,
    /// The default-domain opset: Softmax's semantics changed at 13.
    opset: i64,
    body: String,
    names: HashMap<ValueId, String>,
    /// Constants already emitted with their axes permuted (TOSA's layouts).
    permuted: HashMap<(ValueId, Vec<usize>), String>,
    next: usize,
    resources: Vec<(String, String)>,
    /// Whether an 8-bit DequantizeLinear was emitted (see [`Emitted`]).
    integer_dequantize: bool,
}

impl<'g> Emitter<'g> {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%t{}", self.next)
    }

    fn line(&mut self, text: &str) {
        self.body += "    ";
        self.body += text;
        self.body += "\n";
    }

    fn dims(&self, v: ValueId) -> Option<Vec<i64>> {
        dims_of(self.g, v)
    }

    /// The SSA name of `v`, emitting it first when it is a constant.
    fn value(&mut self, v: ValueId) -> Result<String> {
        if let Some(n) = self.names.get(&v) {
            return Ok(n.clone());
        }
        let t = constant(self.g, v)
            .cloned()
            .ok_or_else(|| CodegenError::Unsupported {
                node: self.g.value(v).name.clone(),
                op: "value".into(),
                reason: "used before it is defined".into(),
            })?;
        let name = self.constant(&t, &self.g.value(v).name.clone())?;
        self.names.insert(v, name.clone());
        Ok(name)
    }

    /// `v` as an operand: its name, static dims and element type.
    fn operand(&mut self, n: &Node, v: ValueId) -> Result<Operand> {
        let dims = self
            .dims(v)
            .ok_or_else(|| unsupported(n, "input shape unknown"))?;
        let elem = elem_of(self.g, v).ok_or_else(|| {
            unsupported(
                n,
                format!(
                    "input '{}' has an element type outside f32, f16, bf16, i64, i32, i8, u8, bool",
                    self.g.value(v).name
                ),
            )
        })?;
        Ok(Operand {
            name: self.value(v)?,
            dims,
            elem,
        })
    }

    /// The operand in `slot` of `n`.
    fn input(&mut self, n: &Node, slot: usize) -> Result<Operand> {
        let v = n
            .input(slot)
            .ok_or_else(|| unsupported(n, format!("missing input {slot}")))?;
        self.operand(n, v)
    }

    fn operands(&mut self, n: &Node, slots: &[usize]) -> Result<Vec<Operand>> {
        slots.iter().map(|&i| self.input(n, i)).collect()
    }

    /// A constant input's values as i64 (`None` when the slot is empty);
    /// an error when the input is computed at run time.
    fn const_ints(&self, n: &Node, slot: usize) -> Result<Option<Vec<i64>>> {
        let Some(v) = n.input(slot) else {
            return Ok(None);
        };
        constant(self.g, v)
            .and_then(|t| t.to_i64_vec().ok())
            .map(Some)
            .ok_or_else(|| unsupported(n, format!("input {slot} is not a constant")))
    }

    /// A constant input's first value as f64 (`None` when the slot is
    /// empty); an error when the input is computed at run time.
    fn const_scalar(&self, n: &Node, slot: usize) -> Result<Option<f64>> {
        let Some(v) = n.input(slot) else {
            return Ok(None);
        };
        constant(self.g, v)
            .and_then(|t| t.to_f32_vec().ok())
            .and_then(|v| v.first().map(|&x| x as f64))
            .map(Some)
            .ok_or_else(|| unsupported(n, format!("input {slot} is not a constant")))
    }

    /// Emits a constant tensor: float data and large integer data as
    /// bytes, small integer and bool data as literals.
    fn constant(&mut self, t: &Tensor, label: &str) -> Result<String> {
        let elem = Elem::of(t.dtype).ok_or_else(|| CodegenError::Unsupported {
            node: label.to_string(),
            op: "constant".into(),
            reason: format!(
                "{:?} constants are not emitted (f32, f16, bf16, i64, i32, i8, u8, bool are)",
                t.dtype
            ),
        })?;
        let name = self.fresh();
        let ty = tensor_type(&t.dims, elem);
        let count = t.element_count().unwrap_or(0) as usize;
        if count == 0 && self.dialect == Dialect::Tosa {
            return Err(CodegenError::Unsupported {
                node: label.to_string(),
                op: "constant".into(),
                reason: "zero-size tensors (TOSA has none)".into(),
            });
        }
        let integer = !elem.is_float() && !elem.is_half();
        let literal = if elem == Elem::Bool || (integer && count <= SMALL_CONSTANT) {
            let items: Vec<String> = t
                .to_i64_vec()?
                .iter()
                .map(|&x| elem.literal(x as f64))
                .collect();
            format!("dense<{}>", nested_literal(&t.dims, &items))
        } else {
            let raw = t.raw_bytes()?;
            let mut hex = String::with_capacity(10 + raw.len() * 2);
            for b in raw.iter() {
                let _ = write!(hex, "{b:02X}");
            }
            if count <= SMALL_CONSTANT {
                // Inline: the raw little-endian bytes as one hex string.
                format!("dense<\"0x{hex}\">")
            } else {
                // A blob: its alignment (little-endian u32), then the bytes.
                let key = format!("r{}", self.resources.len());
                let align = (elem.bytes() as u32).to_le_bytes();
                let header: String = align.iter().map(|b| format!("{b:02X}")).collect();
                self.resources
                    .push((key.clone(), format!("0x{header}{hex}")));
                format!("dense_resource<{key}>")
            }
        };
        match self.dialect {
            Dialect::Linalg => self.line(&format!("{name} = arith.constant {literal} : {ty}")),
            Dialect::Tosa => self.line(&format!(
                "{name} = \"tosa.const\"() <{{values = {literal} : {ty}}}> : () -> {ty}"
            )),
        }
        Ok(name)
    }

    fn f32_constant(&mut self, dims: &[i64], values: &[f32], label: &str) -> Result<String> {
        self.constant(&Tensor::from_f32(dims.to_vec(), values), label)
    }

    /// An f32 `tensor.empty` filled with `fill`.
    fn filled(&mut self, dims: &[i64], fill: f64) -> String {
        self.filled_of(dims, Elem::F32, fill)
    }

    /// A `tensor.empty` of `elem` filled with `fill`.
    fn filled_of(&mut self, dims: &[i64], elem: Elem, fill: f64) -> String {
        let ty = tensor_type(dims, elem);
        let (c, e, f) = (self.fresh(), self.fresh(), self.fresh());
        self.line(&format!("{c} = {}", elem.scalar_constant(fill)));
        self.line(&format!("{e} = tensor.empty() : {ty}"));
        self.line(&format!(
            "{f} = linalg.fill ins({c} : {}) outs({e} : {ty}) -> {ty}",
            elem.mlir()
        ));
        f
    }

    /// A `linalg.generic` over `iterators.len()` loops (`"parallel"` or
    /// `"reduction"`), reading each input through its map and
    /// accumulating into `init` through `out_map`: `body(region, input
    /// elements, accumulator)` gives the new accumulator.
    fn accumulate(
        &mut self,
        iterators: &[&str],
        inputs: &[MapIn],
        init: &Operand,
        out_map: &[String],
        body: &dyn Fn(&mut Region, &[String], &str) -> String,
    ) -> String {
        let dims: Vec<String> = (0..iterators.len()).map(|i| format!("d{i}")).collect();
        let map = |exprs: &[String]| {
            format!(
                "affine_map<({}) -> ({})>",
                dims.join(", "),
                exprs.join(", ")
            )
        };
        let mut maps: Vec<String> = inputs.iter().map(|i| map(&i.exprs)).collect();
        maps.push(map(out_map));
        let result = self.fresh();
        let args: Vec<String> = inputs.iter().map(|_| self.fresh()).collect();
        let acc = self.fresh();
        let mut region = Region {
            lines: Vec::new(),
            next: self.next,
        };
        let value = body(&mut region, &args, &acc);
        self.next = region.next;
        let iterators: Vec<String> = iterators.iter().map(|i| format!("\"{i}\"")).collect();
        let mut block_args: Vec<String> = args
            .iter()
            .zip(inputs)
            .map(|(a, i)| format!("{a}: {}", i.operand.elem.mlir()))
            .collect();
        block_args.push(format!("{acc}: {}", init.elem.mlir()));
        let ins_clause = if inputs.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = inputs.iter().map(|i| i.operand.name.as_str()).collect();
            let types: Vec<String> = inputs.iter().map(|i| i.operand.ty()).collect();
            format!("ins({} : {}) ", names.join(", "), types.join(", "))
        };
        let ty = init.ty();
        self.line(&format!(
            "{result} = linalg.generic {{indexing_maps = [{}], iterator_types = [{}]}} {ins_clause}outs({} : {ty}) {{",
            maps.join(", "),
            iterators.join(", "),
            init.name
        ));
        self.line(&format!("^bb0({}):", block_args.join(", ")));
        for l in region.lines {
            self.line(&format!("  {l}"));
        }
        self.line(&format!("  linalg.yield {value} : {}", init.elem.mlir()));
        self.line(&format!("}} -> {ty}"));
        result
    }

    fn empty(&mut self, dims: &[i64], elem: Elem) -> String {
        let e = self.fresh();
        self.line(&format!(
            "{e} = tensor.empty() : {}",
            tensor_type(dims, elem)
        ));
        e
    }

    /// A parallel `linalg.generic` over `out` dims producing `elem`: each
    /// input read through its map; `body(region, input elements)` computes
    /// one element (it may read the loop indices with `linalg.index`).
    fn generic(
        &mut self,
        out: &[i64],
        elem: Elem,
        inputs: &[MapIn],
        body: &dyn Fn(&mut Region, &[String]) -> String,
    ) -> String {
        let init = Operand {
            name: self.empty(out, elem),
            dims: out.to_vec(),
            elem,
        };
        let identity: Vec<String> = (0..out.len()).map(|i| format!("d{i}")).collect();
        let iterators = vec!["parallel"; out.len()];
        self.accumulate(&iterators, inputs, &init, &identity, &|b, a, _| body(b, a))
    }

    /// [`Self::generic`] with each operand broadcast numpy-style to `out`.
    fn map(
        &mut self,
        out: &[i64],
        elem: Elem,
        operands: &[Operand],
        body: &dyn Fn(&mut Region, &[String]) -> String,
    ) -> String {
        let rank = out.len();
        let inputs: Vec<MapIn> = operands
            .iter()
            .map(|op| {
                let r = op.dims.len();
                let exprs = (0..r)
                    .map(|i| {
                        let j = rank - r + i;
                        if op.dims[i] == 1 && out[j] != 1 {
                            "0".to_string()
                        } else {
                            format!("d{j}")
                        }
                    })
                    .collect();
                MapIn { operand: op, exprs }
            })
            .collect();
        self.generic(out, elem, &inputs, body)
    }

    /// [`Self::map`] producing f32.
    fn elementwise(
        &mut self,
        out: &[i64],
        operands: &[Operand],
        body: &dyn Fn(&mut Region, &[String]) -> String,
    ) -> String {
        self.map(out, Elem::F32, operands, body)
    }

    /// Refuses what static emission cannot honour: zero-size tensors, and
    /// shape-giving inputs (Reshape targets, axes, split sizes) computed at
    /// run time.
    fn check_static_inputs(&self, n: &Node, od: &[i64]) -> Result<()> {
        let slots = shape_slots(&n.op_type);
        let data = n
            .inputs()
            .iter()
            .enumerate()
            .filter(|(slot, _)| !slots.contains(slot))
            .filter_map(|(_, v)| *v);
        let empty = od.contains(&0)
            || data
                .into_iter()
                .any(|v| self.dims(v).is_some_and(|d| d.contains(&0)));
        if empty {
            return Err(unsupported(n, "zero-size tensors"));
        }
        for &slot in slots {
            if n.input(slot).is_some_and(|v| constant(self.g, v).is_none()) {
                return Err(unsupported(
                    n,
                    format!("input {slot} (a shape, axes or sizes) is computed at run time"),
                ));
            }
        }
        Ok(())
    }

    /// A Constant node's value (`value`, `value_float(s)`, `value_int(s)`).
    fn constant_node(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let t = match (
            n.attr("value"),
            n.attr("value_float"),
            n.attr("value_floats"),
            n.attr("value_int"),
            n.attr("value_ints"),
        ) {
            (Some(AttrValue::Tensor(t)), ..) => t.clone(),
            (_, Some(AttrValue::Float(x)), ..) => Tensor::from_f32(vec![], &[*x]),
            (_, _, Some(AttrValue::Floats(v)), ..) => Tensor::from_f32(od.to_vec(), v),
            (.., Some(AttrValue::Int(x)), _) => Tensor::from_i64(vec![], &[*x]),
            (.., Some(AttrValue::Ints(v))) => Tensor::from_i64(od.to_vec(), v),
            _ => {
                return Err(unsupported(
                    n,
                    "a value kind other than tensor, float(s), int(s)",
                ))
            }
        };
        self.constant(&t, n.display_name())
    }

    fn emit_node(&mut self, n: &Node) -> Result<()> {
        if !n.is_onnx() {
            let out = n.output(0).ok_or_else(|| unsupported(n, "no output"))?;
            let result = self.custom_op(n)?;
            self.names.insert(out, result);
            return Ok(());
        }
        if !is_supported(&n.op_type, self.dialect) {
            return Err(unsupported(
                n,
                "not in the supported op set (see `sculpt emit-ops`)",
            ));
        }
        let out = n.output(0).ok_or_else(|| unsupported(n, "no output"))?;
        let od = self
            .dims(out)
            .ok_or_else(|| unsupported(n, "output shape is not static"))?;
        let elem = elem_of(self.g, out).ok_or_else(|| {
            unsupported(
                n,
                "output element type is outside f32, f16, bf16, i64, i32, i8, u8, bool (the types emitted)",
            )
        })?;
        let op = n.op_type.as_str();
        self.check_static_inputs(n, &od)?;
        if op == "Split" {
            let parts = self.split(n)?;
            for (v, name) in n.outputs().iter().zip(parts) {
                if let Some(v) = v {
                    self.names.insert(*v, name);
                }
            }
            return Ok(());
        }
        let used_extra = n.outputs()[1..]
            .iter()
            .flatten()
            .any(|&v| !self.g.consumers(v).is_empty() || self.g.outputs.contains(&v));
        if used_extra {
            return Err(unsupported(n, "its second or later outputs are used"));
        }
        let elems = self.data_elems(n);
        if elems.iter().any(|e| e.is_byte())
            && !STORAGE_OPS.contains(&op)
            && op != "DequantizeLinear"
        {
            return Err(unsupported(
                n,
                "i8/u8 tensors: only data movement, Where and Cast take them",
            ));
        }
        // TOSA's profiles have no i64 or u8: ops on such tensors (token
        // ids, masks, quantized data) stay linalg in a TOSA module.
        let dialect = self.dialect;
        if dialect == Dialect::Tosa {
            // DequantizeLinear is linalg too: its dequantizing generic is
            // the form IREE fuses into the consumer.
            if elems.iter().any(|&e| e == Elem::I64 || e == Elem::U8) || op == "DequantizeLinear" {
                self.dialect = Dialect::Linalg;
            } else if let Some(result) = self.tosa_op(n, &od, elem)? {
                self.names.insert(out, result.name);
                return Ok(());
            }
        }
        let result = self.linalg_op(n, &od, elem);
        self.dialect = dialect;
        self.names.insert(out, result?);
        Ok(())
    }

    /// The element types of `n`'s data inputs and outputs (shapes, axes
    /// and bounds are constants read here, not tensors of the module).
    fn data_elems(&self, n: &Node) -> Vec<Elem> {
        let shapes = shape_slots(&n.op_type);
        n.inputs()
            .iter()
            .enumerate()
            .filter(|(slot, _)| !shapes.contains(slot))
            .map(|(_, v)| v)
            .chain(n.outputs())
            .flatten()
            .filter_map(|&v| elem_of(self.g, v))
            .collect()
    }

    /// `n` in linalg (the data-movement ops also serve TOSA: their
    /// helpers follow the dialect).
    fn linalg_op(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<String> {
        let od = od.to_vec();
        let op = n.op_type.as_str();
        let result = match op {
            "Identity" => self.input(n, 0)?.name,
            "Dropout" => {
                let training = self
                    .const_scalar(n, 2)
                    .map_err(|_| unsupported(n, "training_mode is computed at run time"))?;
                if training.unwrap_or(0.0) != 0.0 {
                    return Err(unsupported(n, "training mode (random masks)"));
                }
                self.input(n, 0)?.name
            }
            "Constant" => self.constant_node(n, &od)?,
            "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Erf" | "Exp" | "Sqrt" | "Neg" | "Abs"
            | "HardSigmoid" | "HardSwish" | "Clip" | "Gelu" | "Log" | "Reciprocal" | "Elu"
            | "Selu" | "Softplus" | "Softsign" | "ThresholdedRelu" | "Floor" | "Ceil" | "Round"
            | "Sign" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh"
            | "Asinh" | "Acosh" | "Atanh" => self.unary(n, &od)?,
            "PRelu" => self.prelu(n, &od)?,
            "CastLike" => self.cast(n, &od, elem)?,
            "Tile" => self.tile(n, &od)?,
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" | "Sum" | "Mean" | "Mod" => {
                self.arithmetic(n, &od, elem)?
            }
            "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
                self.compare(n, &od)?
            }
            "And" | "Or" | "Xor" | "Not" => self.logic(n, &od)?,
            "IsNaN" | "IsInf" => self.float_class(n, &od)?,
            "Where" => self.select(n, &od, elem)?,
            "Cast" => self.cast(n, &od, elem)?,
            "Expand" => {
                let x = self.input(n, 0)?;
                self.map(&od, elem, &[x], &|_, a| a[0].clone())
            }
            "LRN" => self.lrn(n, &od)?,
            "BatchNormalization" => self.batch_norm(n, &od)?,
            "LayerNormalization"
            | "InstanceNormalization"
            | "GroupNormalization"
            | "RMSNormalization" => self.normalization(n, &od)?,
            "Conv" => self.conv(n, &od)?,
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" => {
                self.pool(n, &od)?
            }
            "Gemm" => self.gemm(n, &od)?,
            "MatMul" => match self.integer_matmul(n, &od)? {
                Some(product) => product,
                None => self.matmul(n, &od)?,
            },
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                let x = self.input(n, 0)?;
                self.reshape(&x, &od)?
            }
            "Transpose" => {
                let x = self.input(n, 0)?;
                let perm = n
                    .ints_attr("perm")
                    .unwrap_or_else(|| (0..x.dims.len() as i64).rev().collect());
                self.transpose(&x, &perm)
            }
            "Softmax" | "LogSoftmax" => self.softmax(n, &od)?,
            "Concat" => self.concat(n, &od, elem)?,
            "Slice" => self.slice(n, &od)?,
            "Gather" | "GatherElements" => self.gather(n, &od)?,
            "CumSum" => self.cumsum(n, &od)?,
            "Einsum" => self.einsum(n, &od)?,
            "Pad" => self.pad_op(n)?,
            "Shape" | "Size" => self.shape_constant(n, &od)?,
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" => self.reduce(n, &od)?,
            "ArgMax" | "ArgMin" => self.arg_extreme(n, &od)?,
            "Resize" => self.resize(n, &od)?,
            "DequantizeLinear" => self.dequantize(n, &od)?,
            _ => {
                return Err(unsupported(
                    n,
                    "not in the supported op set (see `sculpt emit-ops`)",
                ))
            }
        };
        Ok(result)
    }
}

/// An emitted module: its text, and the signature of `@main`.
#[derive(Clone, Debug)]
pub struct Emitted {
    pub text: String,
    pub inputs: Vec<TensorSig>,
    pub outputs: Vec<TensorSig>,
    /// Whether it dequantizes 8-bit integers (int8 QDQ): its recipe then
    /// asks IREE for integer contractions ([`crate::iree_flags`]).
    pub integer_dequantize: bool,
}

/// Emits `model` as MLIR text (not yet verified: see [`crate::emit_mlir`]).
pub fn emit_text(model: &Model, options: &EmitOptions) -> Result<Emitted> {
    let mut g = static_graph(model, options)?;
    crate::legalize::legalize(&mut g, model.onnx_opset())?;
    let mut e = Emitter {
        g: &g,
        dialect: options.dialect,
        layout: options.layout,
        opset: model.onnx_opset(),
        body: String::new(),
        names: HashMap::new(),
        permuted: HashMap::new(),
        next: 0,
        resources: Vec::new(),
        integer_dequantize: false,
    };
    let signature = |v: ValueId| -> Result<TensorSig> {
        let input = g.value(v).name.clone();
        let dims = dims_of(&g, v).ok_or_else(|| CodegenError::Shape {
            input: input.clone(),
            reason: "shape unknown".into(),
        })?;
        let elem = elem_of(&g, v).ok_or_else(|| CodegenError::Shape {
            input,
            reason:
                "element type outside f32, f16, bf16, i64, i32, i8, u8, bool (the types emitted)"
                    .into(),
        })?;
        Ok(TensorSig { dims, elem })
    };
    let mut params = Vec::new();
    let mut inputs = Vec::new();
    for (i, &v) in g.inputs.iter().enumerate() {
        let sig = signature(v)?;
        let name = format!("%arg{i}");
        params.push(format!("{name}: {}", tensor_type(&sig.dims, sig.elem)));
        inputs.push(sig);
        e.names.insert(v, name);
    }
    let order = g.topo_order()?;
    crate::ops::refuse_data_dependent(&g, &order)?;
    for id in order {
        e.emit_node(g.node(id))?;
    }
    let mut results = Vec::new();
    let mut types = Vec::new();
    let mut outputs = Vec::new();
    for &o in &g.outputs {
        results.push(e.value(o)?);
        let sig = signature(o)?;
        types.push(tensor_type(&sig.dims, sig.elem));
        outputs.push(sig);
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "func.func @main({}) -> ({}) attributes {{llvm.emit_c_interface}} {{",
        params.join(", "),
        types.join(", ")
    );
    text += &e.body;
    let _ = writeln!(
        text,
        "    func.return {} : {}",
        results.join(", "),
        types.join(", ")
    );
    text += "}\n";
    if !e.resources.is_empty() {
        text += "\n{-#\n  dialect_resources: {\n    builtin: {\n";
        let entries: Vec<String> = e
            .resources
            .iter()
            .map(|(k, hex)| format!("      {k}: \"{hex}\""))
            .collect();
        text += &entries.join(",\n");
        text += "\n    }\n  }\n#-}\n";
    }
    Ok(Emitted {
        text,
        inputs,
        outputs,
        integer_dequantize: e.integer_dequantize,
    })
}
