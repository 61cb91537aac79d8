//! Element-wise ops, each one `linalg.generic` with broadcasting maps:
//! float activations, arithmetic on floats and signed integers,
//! comparisons, logic on `i1`, NaN/Inf tests, `Where` and `Cast`.

use super::{Elem, Emitter, Operand, Region};
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::{AttrValue, Node};

/// `r = arith.select c, a, b : ty`.
fn select(b: &mut Region, c: &str, x: &str, y: &str, ty: &str) -> String {
    b.assign(format!("arith.select {c}, {x}, {y} : {ty}"))
}

/// The default `alpha` of an activation.
pub(super) fn unary_alpha(op: &str) -> f64 {
    match op {
        "LeakyRelu" => 0.01,
        "Elu" | "ThresholdedRelu" => 1.0,
        "Selu" => 1.6732632423543772,
        _ => 0.2,
    }
}

/// What a float unary op reads besides its input: its attributes, and
/// Clip's bounds.
struct UnaryParams {
    op: String,
    lo: f64,
    hi: f64,
    alpha: f64,
    gamma: f64,
    beta: f64,
    tanh_gelu: bool,
}

/// One element of a float unary op: `x` is the element's SSA name.
fn unary_scalar(b: &mut Region, p: &UnaryParams, x: &str) -> String {
    match p.op.as_str() {
        "Relu" => {
            let z = b.constant(0.0);
            b.bin("arith.maximumf", x, &z)
        }
        "LeakyRelu" => {
            let z = b.constant(0.0);
            let k = b.constant(p.alpha);
            let scaled = b.bin("arith.mulf", x, &k);
            let neg = b.assign(format!("arith.cmpf olt, {x}, {z} : f32"));
            select(b, &neg, &scaled, x, "f32")
        }
        "Clip" => {
            let (l, h) = (b.constant(p.lo), b.constant(p.hi));
            let m = b.bin("arith.maximumf", x, &l);
            b.bin("arith.minimumf", &m, &h)
        }
        "HardSigmoid" | "HardSwish" => {
            let (al, be) = if p.op == "HardSwish" {
                (1.0 / 6.0, 0.5)
            } else {
                (p.alpha, p.beta)
            };
            let (k, c, z, one) = (
                b.constant(al),
                b.constant(be),
                b.constant(0.0),
                b.constant(1.0),
            );
            let s = b.bin("arith.mulf", x, &k);
            let s = b.bin("arith.addf", &s, &c);
            let s = b.bin("arith.maximumf", &s, &z);
            let s = b.bin("arith.minimumf", &s, &one);
            if p.op == "HardSwish" {
                b.bin("arith.mulf", x, &s)
            } else {
                s
            }
        }
        "Sigmoid" => {
            let one = b.constant(1.0);
            let neg = b.op("arith.negf", x);
            let e = b.op("math.exp", &neg);
            let d = b.bin("arith.addf", &one, &e);
            b.bin("arith.divf", &one, &d)
        }
        "Gelu" => {
            let (half, one) = (b.constant(0.5), b.constant(1.0));
            let inner = if p.tanh_gelu {
                let k0 = b.constant((2.0 / std::f64::consts::PI).sqrt());
                let k1 = b.constant(0.044715);
                let x2 = b.bin("arith.mulf", x, x);
                let x3 = b.bin("arith.mulf", &x2, x);
                let t = b.bin("arith.mulf", &x3, &k1);
                let t = b.bin("arith.addf", x, &t);
                let t = b.bin("arith.mulf", &t, &k0);
                b.op("math.tanh", &t)
            } else {
                let k = b.constant(std::f64::consts::FRAC_1_SQRT_2);
                let t = b.bin("arith.mulf", x, &k);
                b.op("math.erf", &t)
            };
            let s = b.bin("arith.addf", &inner, &one);
            let s = b.bin("arith.mulf", &s, x);
            b.bin("arith.mulf", &s, &half)
        }
        "Reciprocal" => {
            let one = b.constant(1.0);
            b.bin("arith.divf", &one, x)
        }
        "Elu" | "Selu" => {
            // x < 0: p.alpha · (eᕽ − 1); Selu scales both sides by p.gamma.
            let (z, one, k) = (b.constant(0.0), b.constant(1.0), b.constant(p.alpha));
            let e = b.op("math.exp", x);
            let e = b.bin("arith.subf", &e, &one);
            let e = b.bin("arith.mulf", &e, &k);
            let neg = b.assign(format!("arith.cmpf olt, {x}, {z} : f32"));
            let y = select(b, &neg, &e, x, "f32");
            if p.op == "Selu" {
                let g = b.constant(p.gamma);
                b.bin("arith.mulf", &y, &g)
            } else {
                y
            }
        }
        "Softplus" => {
            let e = b.op("math.exp", x);
            b.op("math.log1p", &e)
        }
        "Softsign" => {
            let one = b.constant(1.0);
            let a = b.op("math.absf", x);
            let d = b.bin("arith.addf", &a, &one);
            b.bin("arith.divf", x, &d)
        }
        "ThresholdedRelu" => {
            let (z, k) = (b.constant(0.0), b.constant(p.alpha));
            let above = b.assign(format!("arith.cmpf ogt, {x}, {k} : f32"));
            select(b, &above, x, &z, "f32")
        }
        "Sign" => {
            let (z, one, minus) = (b.constant(0.0), b.constant(1.0), b.constant(-1.0));
            let pos = b.assign(format!("arith.cmpf ogt, {x}, {z} : f32"));
            let neg = b.assign(format!("arith.cmpf olt, {x}, {z} : f32"));
            let s = select(b, &neg, &minus, &z, "f32");
            select(b, &pos, &one, &s, "f32")
        }
        other => b.op(math_function(other), x),
    }
}

/// The `math`/`arith` operation of a unary op that is one instruction.
fn math_function(op: &str) -> &'static str {
    match op {
        "Tanh" => "math.tanh",
        "Erf" => "math.erf",
        "Exp" => "math.exp",
        "Sqrt" => "math.sqrt",
        "Log" => "math.log",
        "Abs" => "math.absf",
        "Floor" => "math.floor",
        "Ceil" => "math.ceil",
        "Round" => "math.roundeven",
        "Sin" => "math.sin",
        "Cos" => "math.cos",
        "Tan" => "math.tan",
        "Asin" => "math.asin",
        "Acos" => "math.acos",
        "Atan" => "math.atan",
        "Sinh" => "math.sinh",
        "Cosh" => "math.cosh",
        "Asinh" => "math.asinh",
        "Acosh" => "math.acosh",
        "Atanh" => "math.atanh",
        _ => "arith.negf",
    }
}

impl Emitter<'_> {
    /// Float activations and math functions of one float input.
    pub(super) fn unary(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        if n.op_type == "Clip" && matches!(x.elem, Elem::I64 | Elem::I32) {
            return self.integer_clip(n, x, od);
        }
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let op = n.op_type.clone();
        let (lo, hi) = if op == "Clip" {
            (
                self.const_scalar(n, 1)?
                    .unwrap_or(n.float_attr("min", f32::MIN as f64)),
                self.const_scalar(n, 2)?
                    .unwrap_or(n.float_attr("max", f32::MAX as f64)),
            )
        } else {
            (0.0, 0.0)
        };
        let params = UnaryParams {
            op,
            lo,
            hi,
            alpha: n.float_attr("alpha", unary_alpha(&n.op_type)),
            gamma: n.float_attr("gamma", 1.0507009873554805),
            beta: n.float_attr("beta", 0.5),
            tanh_gelu: matches!(n.attr("approximate"), Some(AttrValue::String(s)) if &s[..] == b"tanh"),
        };
        Ok(self.elementwise(od, &[x], &|b, a| unary_scalar(b, &params, &a[0])))
    }

    /// Clip of i64 or i32 (positions, lengths): `min(max(x, lo), hi)`
    /// with the bounds given (constant), signed.
    fn integer_clip(&mut self, n: &Node, x: Operand, od: &[i64]) -> Result<String> {
        let bound = |e: &Self, slot: usize| -> Result<Option<i64>> {
            Ok(e.const_ints(n, slot)?.and_then(|v| v.first().copied()))
        };
        let (lo, hi) = (bound(self, 1)?, bound(self, 2)?);
        let (elem, ty) = (x.elem, x.elem.mlir());
        Ok(self.map(od, elem, &[x], &|b, a| {
            let mut v = a[0].clone();
            if let Some(lo) = lo {
                let l = b.constant_of(lo as f64, elem);
                v = b.assign(format!("arith.maxsi {v}, {l} : {ty}"));
            }
            if let Some(hi) = hi {
                let h = b.constant_of(hi as f64, elem);
                v = b.assign(format!("arith.minsi {v}, {h} : {ty}"));
            }
            v
        }))
    }

    /// PRelu: `x < 0 ? x · slope : x`, the slope broadcast.
    pub(super) fn prelu(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let operands = self.operands(n, &[0, 1])?;
        if operands.iter().any(|o| !o.elem.is_float()) {
            return Err(unsupported(n, "integer input (float only)"));
        }
        Ok(self.elementwise(od, &operands, &|b, a| {
            let z = b.constant(0.0);
            let scaled = b.bin("arith.mulf", &a[0], &a[1]);
            let neg = b.assign(format!("arith.cmpf olt, {}, {z} : f32", a[0]));
            select(b, &neg, &scaled, &a[0], "f32")
        }))
    }

    /// Add, Sub, Mul, Div, Max, Min, Pow (two inputs) and Sum, Mean, Max,
    /// Min over any number of inputs, on floats or signed integers.
    pub(super) fn arithmetic(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<String> {
        let slots: Vec<usize> = (0..n.inputs().len()).collect();
        if slots.is_empty() {
            return Err(unsupported(n, "no inputs"));
        }
        let operands = self.operands(n, &slots)?;
        if operands.iter().any(|o| o.elem != elem) || elem == Elem::Bool {
            return Err(unsupported(
                n,
                "operands of mixed or bool element types (ONNX wants one numeric type)",
            ));
        }
        let float = elem.is_float();
        let op = n.op_type.clone();
        let fmod = n.int_attr("fmod", 0) != 0;
        let instr = match (op.as_str(), float) {
            ("Add" | "Sum" | "Mean", true) => "arith.addf",
            ("Sub", true) => "arith.subf",
            ("Mul", true) => "arith.mulf",
            ("Div", true) => "arith.divf",
            ("Max", true) => "arith.maximumf",
            ("Min", true) => "arith.minimumf",
            ("Pow", true) => "math.powf",
            ("Mod", true) if fmod => "arith.remf",
            ("Mod", true) => return Err(unsupported(n, "fmod=0 on floats (ONNX wants fmod=1)")),
            ("Mod", false) => "arith.remsi",
            ("Add" | "Sum", false) => "arith.addi",
            ("Sub", false) => "arith.subi",
            ("Mul", false) => "arith.muli",
            ("Div", false) => "arith.divsi",
            ("Max", false) => "arith.maxsi",
            ("Min", false) => "arith.minsi",
            _ => return Err(unsupported(n, "integer operands")),
        };
        let count = operands.len() as f64;
        let ty = elem.mlir();
        Ok(self.map(od, elem, &operands, &|b, a| {
            let mut acc = a[0].clone();
            for x in &a[1..] {
                acc = b.assign(format!("{instr} {acc}, {x} : {ty}"));
            }
            if op == "Mean" {
                let k = b.constant(count);
                acc = b.bin("arith.divf", &acc, &k);
            }
            if op == "Mod" && !fmod {
                // The remainder takes the divisor's sign (Python's %).
                let zero = b.constant_of(0.0, elem);
                let nonzero = b.assign(format!("arith.cmpi ne, {acc}, {zero} : {ty}"));
                let r_neg = b.assign(format!("arith.cmpi slt, {acc}, {zero} : {ty}"));
                let d_neg = b.assign(format!("arith.cmpi slt, {}, {zero} : {ty}", a[1]));
                let signs = b.assign(format!("arith.xori {r_neg}, {d_neg} : i1"));
                let fix = b.assign(format!("arith.andi {nonzero}, {signs} : i1"));
                let shifted = b.assign(format!("arith.addi {acc}, {} : {ty}", a[1]));
                acc = select(b, &fix, &shifted, &acc, ty);
            }
            acc
        }))
    }

    /// Equal, Less, LessOrEqual, Greater, GreaterOrEqual → i1.
    pub(super) fn compare(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let operands = self.operands(n, &[0, 1])?;
        let elem = operands[0].elem;
        if operands[1].elem != elem {
            return Err(unsupported(n, "operands of different element types"));
        }
        let predicate = match (n.op_type.as_str(), elem.is_float()) {
            ("Equal", true) => "oeq",
            ("Less", true) => "olt",
            ("LessOrEqual", true) => "ole",
            ("Greater", true) => "ogt",
            ("GreaterOrEqual", true) => "oge",
            ("Equal", false) => "eq",
            ("Less", false) => "slt",
            ("LessOrEqual", false) => "sle",
            ("Greater", false) => "sgt",
            _ => "sge",
        };
        let instr = if elem.is_float() {
            "arith.cmpf"
        } else {
            "arith.cmpi"
        };
        let ty = elem.mlir();
        Ok(self.map(od, Elem::Bool, &operands, &|b, a| {
            b.assign(format!("{instr} {predicate}, {}, {} : {ty}", a[0], a[1]))
        }))
    }

    /// And, Or, Xor, Not on bool tensors.
    pub(super) fn logic(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let slots: &[usize] = if n.op_type == "Not" { &[0] } else { &[0, 1] };
        let operands = self.operands(n, slots)?;
        if operands.iter().any(|o| o.elem != Elem::Bool) {
            return Err(unsupported(n, "non-bool operands"));
        }
        let op = n.op_type.clone();
        Ok(
            self.map(od, Elem::Bool, &operands, &|b, a| match op.as_str() {
                "Not" => {
                    let t = b.constant_of(1.0, Elem::Bool);
                    b.assign(format!("arith.xori {}, {t} : i1", a[0]))
                }
                other => {
                    let instr = match other {
                        "And" => "arith.andi",
                        "Or" => "arith.ori",
                        _ => "arith.xori",
                    };
                    b.assign(format!("{instr} {}, {} : i1", a[0], a[1]))
                }
            }),
        )
    }

    /// IsNaN, and IsInf (with its detect_positive / detect_negative).
    pub(super) fn float_class(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let nan = n.op_type == "IsNaN";
        let positive = n.int_attr("detect_positive", 1) != 0;
        let negative = n.int_attr("detect_negative", 1) != 0;
        Ok(self.map(od, Elem::Bool, &[x], &|b, a| {
            let x = a[0].as_str();
            if nan {
                return b.assign(format!("arith.cmpf uno, {x}, {x} : f32"));
            }
            let inf = b.constant(f64::INFINITY);
            let ninf = b.constant(f64::NEG_INFINITY);
            let is_pos = b.assign(format!("arith.cmpf oeq, {x}, {inf} : f32"));
            let is_neg = b.assign(format!("arith.cmpf oeq, {x}, {ninf} : f32"));
            match (positive, negative) {
                (true, true) => b.assign(format!("arith.ori {is_pos}, {is_neg} : i1")),
                (true, false) => is_pos,
                (false, true) => is_neg,
                (false, false) => b.constant_of(0.0, Elem::Bool),
            }
        }))
    }

    /// Where(cond, x, y).
    pub(super) fn select(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<String> {
        let operands = self.operands(n, &[0, 1, 2])?;
        if operands[0].elem != Elem::Bool {
            return Err(unsupported(n, "condition is not bool"));
        }
        let ty = elem.mlir();
        Ok(self.map(od, elem, &operands, &|b, a| {
            select(b, &a[0], &a[1], &a[2], ty)
        }))
    }

    /// Cast between f32, i64, i32 and bool (float → int truncates toward
    /// zero; anything → bool is `≠ 0`).
    pub(super) fn cast(&mut self, n: &Node, od: &[i64], to: Elem) -> Result<String> {
        let x = self.input(n, 0)?;
        let from = x.elem;
        if from == to {
            return Ok(x.name);
        }
        let (f, t) = (from.mlir(), to.mlir());
        let float = |e: Elem| e.is_float() || e.is_half();
        Ok(self.map(od, to, &[x], &|b, a| {
            let x = a[0].as_str();
            match (from, to) {
                (Elem::F32, Elem::F16 | Elem::BF16) | (Elem::BF16, Elem::F16) => {
                    b.assign(format!("arith.truncf {x} : {f} to {t}"))
                }
                (Elem::F16, Elem::BF16) => {
                    let wide = b.assign(format!("arith.extf {x} : {f} to f32"));
                    b.assign(format!("arith.truncf {wide} : f32 to {t}"))
                }
                _ if float(from) && float(to) => b.assign(format!("arith.extf {x} : {f} to {t}")),
                (_, Elem::Bool) if float(from) => {
                    let z = b.constant_of(0.0, from);
                    b.assign(format!("arith.cmpf une, {x}, {z} : {f}"))
                }
                (_, Elem::Bool) => {
                    let z = b.constant_of(0.0, from);
                    b.assign(format!("arith.cmpi ne, {x}, {z} : {f}"))
                }
                (Elem::Bool | Elem::U8, _) if float(to) => {
                    b.assign(format!("arith.uitofp {x} : {f} to {t}"))
                }
                _ if float(to) => b.assign(format!("arith.sitofp {x} : {f} to {t}")),
                (_, Elem::U8) if float(from) => b.assign(format!("arith.fptoui {x} : {f} to {t}")),
                _ if float(from) => b.assign(format!("arith.fptosi {x} : {f} to {t}")),
                (Elem::I8, Elem::U8) | (Elem::U8, Elem::I8) => x.to_string(),
                (Elem::Bool | Elem::U8, _) if to.bytes() > from.bytes() => {
                    b.assign(format!("arith.extui {x} : {f} to {t}"))
                }
                _ if from.bytes() > to.bytes() => {
                    b.assign(format!("arith.trunci {x} : {f} to {t}"))
                }
                _ => b.assign(format!("arith.extsi {x} : {f} to {t}")),
            }
        }))
    }

    /// `x · a + b` with per-channel `a`, `b` (dims `[C, 1, ...]`).
    pub(super) fn scale_shift(&mut self, x: Operand, a: Operand, b: Operand, od: &[i64]) -> String {
        self.elementwise(od, &[x, a, b], &|r, v| {
            let m = r.bin("arith.mulf", &v[0], &v[1]);
            r.bin("arith.addf", &m, &v[2])
        })
    }
}
