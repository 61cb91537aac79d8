//! `--dialect tosa`: each ONNX op as TOSA ops (the TOSA 1.0 forms MLIR 22
//! parses: zero-point operands, `!tosa.shape` values, `tosa.const`).
//!
//! TOSA's convolutions and pools are NHWC: the activation is transposed
//! in and out (consumers cancel adjacent transposes) and constant
//! weights are permuted here. TOSA's element-wise ops broadcast only
//! between equal ranks, so operands are first reshaped to the output's
//! rank. Data movement (reshape, transpose, concat, split, constants)
//! is shared with linalg, through helpers that follow the dialect.

use super::{float_lit, lrn_params, tensor_type, unsupported, Elem, Emitter, Operand};
use crate::Result;
use sculpt_ir::{AttrValue, Node};

impl Emitter<'_> {
    /// `r = "tosa.op"(args) <{props}> : (arg types) -> out_ty` (the
    /// generic form: MLIR 22 and IREE's MLIR print some TOSA ops
    /// differently, but read this one alike), returning `r`.
    pub(super) fn tosa_generic(
        &mut self,
        op: &str,
        args: &[(&str, String)],
        props: &str,
        out_ty: &str,
    ) -> String {
        let r = self.fresh();
        let names: Vec<&str> = args.iter().map(|a| a.0).collect();
        let types: Vec<&str> = args.iter().map(|a| a.1.as_str()).collect();
        let props = if props.is_empty() {
            String::new()
        } else {
            format!(" <{{{props}}}>")
        };
        self.line(&format!(
            "{r} = \"tosa.{op}\"({}){props} : ({}) -> {out_ty}",
            names.join(", "),
            types.join(", ")
        ));
        r
    }

    /// A TOSA op on tensors, producing `out` of `elem`.
    fn tosa_line(
        &mut self,
        op: &str,
        args: &[&Operand],
        attrs: &str,
        out: &[i64],
        elem: Elem,
    ) -> Operand {
        let args: Vec<(&str, String)> = args.iter().map(|a| (a.name.as_str(), a.ty())).collect();
        let name = self.tosa_generic(op, &args, attrs, &tensor_type(out, elem));
        Operand {
            name,
            dims: out.to_vec(),
            elem,
        }
    }

    /// A TOSA op whose last operand is a `!tosa.shape` of `shape`
    /// (reshape, tile, pad, slice...).
    fn tosa_with_shape(
        &mut self,
        op: &str,
        args: &[&Operand],
        shape: &[i64],
        out: &[i64],
        elem: Elem,
    ) -> Operand {
        let s = self.shape_value(shape);
        let mut typed: Vec<(&str, String)> =
            args.iter().map(|a| (a.name.as_str(), a.ty())).collect();
        let shape_ty = format!("!tosa.shape<{}>", shape.len());
        typed.insert(1, (s.as_str(), shape_ty));
        let name = self.tosa_generic(op, &typed, "", &tensor_type(out, elem));
        Operand {
            name,
            dims: out.to_vec(),
            elem,
        }
    }

    /// A constant of `dims` filled with `value`.
    fn tosa_splat(&mut self, value: f64, elem: Elem, dims: &[i64]) -> Operand {
        let r = self.fresh();
        let ty = tensor_type(dims, elem);
        self.line(&format!(
            "{r} = \"tosa.const\"() <{{values = dense<{}> : {ty}}}> : () -> {ty}",
            elem.literal(value)
        ));
        Operand {
            name: r,
            dims: dims.to_vec(),
            elem,
        }
    }

    /// A constant broadcastable against rank-`rank` tensors.
    fn tosa_scalar(&mut self, value: f64, elem: Elem, rank: usize) -> Operand {
        self.tosa_splat(value, elem, &vec![1; rank])
    }

    /// The zero-point operand TOSA's float ops take.
    fn tosa_zero_point(&mut self) -> Operand {
        self.tosa_splat(0.0, Elem::F32, &[1])
    }

    fn tosa_reshape(&mut self, x: &Operand, dims: &[i64]) -> Result<Operand> {
        Ok(Operand {
            name: self.reshape(x, dims)?,
            dims: dims.to_vec(),
            elem: x.elem,
        })
    }

    /// `x` with leading 1s up to `rank` (TOSA broadcasts equal ranks only).
    fn tosa_rank(&mut self, x: &Operand, rank: usize) -> Result<Operand> {
        if x.dims.len() >= rank {
            return Ok(x.clone());
        }
        let mut dims = vec![1; rank - x.dims.len()];
        dims.extend(&x.dims);
        self.tosa_reshape(x, &dims)
    }

    /// A broadcasting element-wise op on operands brought to `out`'s rank.
    fn tosa_binary(
        &mut self,
        op: &str,
        a: &Operand,
        b: &Operand,
        out: &[i64],
        elem: Elem,
    ) -> Result<Operand> {
        let (a, b) = (self.tosa_rank(a, out.len())?, self.tosa_rank(b, out.len())?);
        if op == "mul" {
            // The shift operand (integer rescaling), 0.
            let shift = self.fresh();
            self.line(&format!(
                "{shift} = \"tosa.const\"() <{{values = dense<0> : tensor<1xi8>}}> : () -> tensor<1xi8>"
            ));
            let shift = Operand {
                name: shift,
                dims: vec![1],
                elem: Elem::I32,
            };
            let args = [
                (a.name.as_str(), a.ty()),
                (b.name.as_str(), b.ty()),
                (shift.name.as_str(), "tensor<1xi8>".to_string()),
            ];
            let name = self.tosa_generic("mul", &args, "", &tensor_type(out, elem));
            return Ok(Operand {
                name,
                dims: out.to_vec(),
                elem,
            });
        }
        Ok(self.tosa_line(op, &[&a, &b], "", out, elem))
    }

    fn tosa_unary(&mut self, op: &str, x: &Operand) -> Operand {
        self.tosa_line(op, &[x], "", &x.dims.clone(), x.elem)
    }

    /// `x` times a constant.
    fn tosa_scale(&mut self, x: &Operand, k: f64) -> Result<Operand> {
        let c = self.tosa_scalar(k, x.elem, x.dims.len());
        self.tosa_binary("mul", x, &c, &x.dims.clone(), x.elem)
    }

    fn tosa_clamp(&mut self, x: &Operand, lo: f64, hi: f64) -> Operand {
        let attrs = format!(
            "min_val = {} : f32, max_val = {} : f32",
            float_lit(lo),
            float_lit(hi)
        );
        self.tosa_line("clamp", &[x], &attrs, &x.dims.clone(), Elem::F32)
    }

    fn tosa_negate(&mut self, x: &Operand) -> Operand {
        let zp = self.tosa_zero_point();
        self.tosa_line("negate", &[x, &zp, &zp], "", &x.dims.clone(), x.elem)
    }

    /// A reduction over each of `axes` (kept as 1).
    fn tosa_reduce(&mut self, op: &str, x: &Operand, axes: &[usize]) -> Operand {
        let mut r = x.clone();
        for &a in axes {
            let mut dims = r.dims.clone();
            dims[a] = 1;
            r = self.tosa_line(op, &[&r], &format!("axis = {a} : i32"), &dims, r.elem);
        }
        r
    }

    fn tosa_to_nhwc(&mut self, x: &Operand) -> Operand {
        let d = &x.dims;
        let dims = vec![d[0], d[2], d[3], d[1]];
        Operand {
            name: self.transpose(x, &[0, 2, 3, 1]),
            dims,
            elem: x.elem,
        }
    }

    fn tosa_to_nchw(&mut self, x: &Operand) -> Operand {
        let d = &x.dims;
        let dims = vec![d[0], d[3], d[1], d[2]];
        Operand {
            name: self.transpose(x, &[0, 3, 1, 2]),
            dims,
            elem: x.elem,
        }
    }

    /// The TOSA form of `n`; `None` for the data-movement ops whose
    /// shared helpers follow the dialect.
    pub(super) fn tosa_op(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<Option<Operand>> {
        let op = n.op_type.as_str();
        let result = match op {
            "Identity" | "Dropout" | "Constant" | "Shape" | "Size" | "Flatten" | "Reshape"
            | "Squeeze" | "Unsqueeze" | "Transpose" | "Concat" | "Slice" => return Ok(None),
            // TOSA has no float division (reciprocal · x rounds twice,
            // which moves a quantized value across a rounding tie).
            "Div" if elem.is_float() => return Ok(None),
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" | "Sum" | "Mean" => {
                self.tosa_arithmetic(n, od, elem)?
            }
            "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Erf" | "Exp" | "Sqrt" | "Neg" | "Abs"
            | "HardSigmoid" | "HardSwish" | "Clip" | "Gelu" | "Log" | "Reciprocal" | "Elu"
            | "Selu" | "Softplus" | "Softsign" | "ThresholdedRelu" | "Floor" | "Ceil" | "Round"
            | "Sign" | "Sin" | "Cos" => self.tosa_activation(n)?,
            "PRelu" => {
                let (x, slope) = (self.input(n, 0)?, self.input(n, 1)?);
                let zero = self.tosa_scalar(0.0, Elem::F32, od.len());
                let positive = self.tosa_binary("greater_equal", &x, &zero, od, Elem::Bool)?;
                let scaled = self.tosa_binary("mul", &x, &slope, od, Elem::F32)?;
                let x = self.tosa_rank(&x, od.len())?;
                self.tosa_line("select", &[&positive, &x, &scaled], "", od, Elem::F32)
            }
            "CastLike" => self.tosa_cast(n, elem)?,
            "Tile" => {
                let x = self.input(n, 0)?;
                let multiples: Vec<i64> = x.dims.iter().zip(od).map(|(i, o)| o / i).collect();
                self.tosa_with_shape("tile", &[&x], &multiples, od, elem)
            }
            "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                let (name, x, y) = match op {
                    "Equal" => ("equal", &a, &b),
                    "Greater" => ("greater", &a, &b),
                    "GreaterOrEqual" => ("greater_equal", &a, &b),
                    "Less" => ("greater", &b, &a),
                    _ => ("greater_equal", &b, &a),
                };
                self.tosa_binary(name, x, y, od, Elem::Bool)?
            }
            "And" | "Or" | "Xor" => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                let name = format!("logical_{}", op.to_lowercase());
                self.tosa_binary(&name, &a, &b, od, Elem::Bool)?
            }
            "Not" => {
                let x = self.input(n, 0)?;
                self.tosa_unary("logical_not", &x)
            }
            "IsNaN" | "IsInf" => self.tosa_float_class(n, od)?,
            "Where" => {
                let operands = self.operands(n, &[0, 1, 2])?;
                let aligned = operands
                    .iter()
                    .map(|o| self.tosa_rank(o, od.len()))
                    .collect::<Result<Vec<_>>>()?;
                self.tosa_line(
                    "select",
                    &[&aligned[0], &aligned[1], &aligned[2]],
                    "",
                    od,
                    elem,
                )
            }
            "Cast" => self.tosa_cast(n, elem)?,
            "Expand" => {
                let x = self.input(n, 0)?;
                let x = self.tosa_rank(&x, od.len())?;
                let multiples: Vec<i64> = x.dims.iter().zip(od).map(|(i, o)| o / i).collect();
                if multiples.iter().all(|&m| m == 1) {
                    x
                } else {
                    self.tosa_with_shape("tile", &[&x], &multiples, od, elem)
                }
            }
            "BatchNormalization" => self.tosa_batch_norm(n, od)?,
            "LayerNormalization"
            | "InstanceNormalization"
            | "GroupNormalization"
            | "RMSNormalization" => self.tosa_normalization(n, od)?,
            "Conv" => self.tosa_conv(n, od)?,
            "MaxPool" | "AveragePool" => self.tosa_pool(n, od)?,
            "GlobalAveragePool" | "GlobalMaxPool" => {
                // One reduction over the flattened spatial axes.
                let x = self.input(n, 0)?;
                let count: i64 = x.dims[2..].iter().product();
                let flat = self.tosa_reshape(&x, &[x.dims[0], x.dims[1], count])?;
                let r = if op == "GlobalMaxPool" {
                    self.tosa_reduce("reduce_max", &flat, &[2])
                } else {
                    let s = self.tosa_reduce("reduce_sum", &flat, &[2]);
                    self.tosa_scale(&s, 1.0 / count as f64)?
                };
                self.tosa_reshape(&r, od)?
            }
            "Gemm" => self.tosa_gemm(n, od)?,
            "MatMul" => self.tosa_matmul(n, od)?,
            "Softmax" | "LogSoftmax" => self.tosa_softmax(n, od)?,
            "LRN" => self.tosa_lrn(n, od)?,
            "Split" => unreachable!("Split is emitted before the op dispatch"),
            "Gather" => self.tosa_gather(n, od)?,
            "Pad" => self.tosa_pad(n, od)?,
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" => self.tosa_reduction(n, od)?,
            _ => return Err(unsupported(n, "no TOSA form (see `sculpt emit-ops`)")),
        };
        Ok(Some(result))
    }

    fn tosa_arithmetic(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<Operand> {
        let slots: Vec<usize> = (0..n.inputs().len()).collect();
        let operands = self.operands(n, &slots)?;
        if operands.is_empty() || operands.iter().any(|o| o.elem != elem) || elem == Elem::Bool {
            return Err(unsupported(
                n,
                "operands of mixed or bool element types (ONNX wants one numeric type)",
            ));
        }
        let op = n.op_type.as_str();
        let name = match op {
            "Add" | "Sum" | "Mean" => "add",
            "Sub" => "sub",
            "Mul" => "mul",
            "Max" => "maximum",
            "Min" => "minimum",
            "Pow" if elem.is_float() => "pow",
            "Div" if elem == Elem::I32 => "intdiv",
            _ => return Err(unsupported(n, "no TOSA form for this element type")),
        };
        let mut acc = operands[0].clone();
        for x in &operands[1..] {
            acc = self.tosa_binary(name, &acc, x, od, elem)?;
        }
        if op == "Mean" {
            acc = self.tosa_scale(&acc, 1.0 / operands.len() as f64)?;
        }
        self.tosa_rank(&acc, od.len())
    }

    fn tosa_activation(&mut self, n: &Node) -> Result<Operand> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let op = n.op_type.as_str();
        let alpha = n.float_attr("alpha", super::elementwise::unary_alpha(op));
        let rank = x.dims.len();
        let dims = x.dims.clone();
        Ok(match op {
            "Elu" | "Selu" => {
                let e = self.tosa_unary("exp", &x);
                let one = self.tosa_scalar(1.0, Elem::F32, rank);
                let e = self.tosa_binary("sub", &e, &one, &dims, Elem::F32)?;
                let e = self.tosa_scale(&e, alpha)?;
                let zero = self.tosa_scalar(0.0, Elem::F32, rank);
                let negative = self.tosa_binary("greater", &zero, &x, &dims, Elem::Bool)?;
                let y = self.tosa_line("select", &[&negative, &e, &x], "", &dims, Elem::F32);
                if op == "Selu" {
                    self.tosa_scale(&y, n.float_attr("gamma", 1.0507009873554805))?
                } else {
                    y
                }
            }
            "Softplus" => {
                let e = self.tosa_unary("exp", &x);
                let one = self.tosa_scalar(1.0, Elem::F32, rank);
                let s = self.tosa_binary("add", &e, &one, &dims, Elem::F32)?;
                self.tosa_unary("log", &s)
            }
            "Softsign" => {
                let a = self.tosa_unary("abs", &x);
                let one = self.tosa_scalar(1.0, Elem::F32, rank);
                let d = self.tosa_binary("add", &a, &one, &dims, Elem::F32)?;
                let r = self.tosa_unary("reciprocal", &d);
                self.tosa_binary("mul", &x, &r, &dims, Elem::F32)?
            }
            "ThresholdedRelu" => {
                let k = self.tosa_scalar(alpha, Elem::F32, rank);
                let above = self.tosa_binary("greater", &x, &k, &dims, Elem::Bool)?;
                let zero = self.tosa_splat(0.0, Elem::F32, &dims);
                self.tosa_line("select", &[&above, &x, &zero], "", &dims, Elem::F32)
            }
            "Sign" => {
                let zero = self.tosa_splat(0.0, Elem::F32, &dims);
                let one = self.tosa_splat(1.0, Elem::F32, &dims);
                let minus = self.tosa_splat(-1.0, Elem::F32, &dims);
                let pos = self.tosa_binary("greater", &x, &zero, &dims, Elem::Bool)?;
                let neg = self.tosa_binary("greater", &zero, &x, &dims, Elem::Bool)?;
                let s = self.tosa_line("select", &[&neg, &minus, &zero], "", &dims, Elem::F32);
                self.tosa_line("select", &[&pos, &one, &s], "", &dims, Elem::F32)
            }
            "Round" => {
                // Halves to even: floor, plus 1 above the half, or at
                // the half when the floor is odd.
                let floor = self.tosa_unary("floor", &x);
                let fraction = self.tosa_binary("sub", &x, &floor, &dims, Elem::F32)?;
                let half = self.tosa_splat(0.5, Elem::F32, &dims);
                let (zero, one) = (
                    self.tosa_splat(0.0, Elem::F32, &dims),
                    self.tosa_splat(1.0, Elem::F32, &dims),
                );
                let above = self.tosa_binary("greater", &fraction, &half, &dims, Elem::Bool)?;
                let at_half = self.tosa_binary("equal", &fraction, &half, &dims, Elem::Bool)?;
                let halved = self.tosa_scale(&floor, 0.5)?;
                let halved = self.tosa_unary("floor", &halved);
                let even = self.tosa_scale(&halved, 2.0)?;
                let odd = self.tosa_binary("greater", &floor, &even, &dims, Elem::Bool)?;
                let tie_up = self.tosa_binary("logical_and", &at_half, &odd, &dims, Elem::Bool)?;
                let up = self.tosa_binary("logical_or", &above, &tie_up, &dims, Elem::Bool)?;
                let step = self.tosa_line("select", &[&up, &one, &zero], "", &dims, Elem::F32);
                self.tosa_binary("add", &floor, &step, &dims, Elem::F32)?
            }
            "Relu" => self.tosa_clamp(&x, 0.0, f32::MAX as f64),
            "Clip" => {
                let lo = self
                    .const_scalar(n, 1)?
                    .unwrap_or(n.float_attr("min", f32::MIN as f64));
                let hi = self
                    .const_scalar(n, 2)?
                    .unwrap_or(n.float_attr("max", f32::MAX as f64));
                // min(max(x, lo), hi) is hi everywhere when lo > hi;
                // tosa.clamp wants lo <= hi.
                self.tosa_clamp(&x, lo.min(hi), hi)
            }
            "LeakyRelu" => {
                let zero = self.tosa_scalar(0.0, Elem::F32, x.dims.len());
                let positive = self.tosa_binary("greater_equal", &x, &zero, &x.dims, Elem::Bool)?;
                let scaled = self.tosa_scale(&x, alpha)?;
                self.tosa_line(
                    "select",
                    &[&positive, &x, &scaled],
                    "",
                    &x.dims.clone(),
                    Elem::F32,
                )
            }
            "HardSigmoid" | "HardSwish" => {
                let (a, b) = if op == "HardSwish" {
                    (1.0 / 6.0, 0.5)
                } else {
                    (alpha, n.float_attr("beta", 0.5))
                };
                let s = self.tosa_scale(&x, a)?;
                let c = self.tosa_scalar(b, Elem::F32, x.dims.len());
                let s = self.tosa_binary("add", &s, &c, &x.dims, Elem::F32)?;
                let s = self.tosa_clamp(&s, 0.0, 1.0);
                if op == "HardSwish" {
                    self.tosa_binary("mul", &x, &s, &x.dims, Elem::F32)?
                } else {
                    s
                }
            }
            "Gelu" => {
                let tanh = matches!(n.attr("approximate"), Some(AttrValue::String(s)) if &s[..] == b"tanh");
                let inner = if tanh {
                    let x2 = self.tosa_binary("mul", &x, &x, &x.dims, Elem::F32)?;
                    let x3 = self.tosa_binary("mul", &x2, &x, &x.dims, Elem::F32)?;
                    let t = self.tosa_scale(&x3, 0.044715)?;
                    let t = self.tosa_binary("add", &x, &t, &x.dims, Elem::F32)?;
                    let t = self.tosa_scale(&t, (2.0 / std::f64::consts::PI).sqrt())?;
                    self.tosa_unary("tanh", &t)
                } else {
                    let t = self.tosa_scale(&x, std::f64::consts::FRAC_1_SQRT_2)?;
                    self.tosa_unary("erf", &t)
                };
                let one = self.tosa_scalar(1.0, Elem::F32, x.dims.len());
                let s = self.tosa_binary("add", &inner, &one, &x.dims, Elem::F32)?;
                let s = self.tosa_binary("mul", &s, &x, &x.dims, Elem::F32)?;
                self.tosa_scale(&s, 0.5)?
            }
            "Sqrt" => {
                let half = self.tosa_scalar(0.5, Elem::F32, x.dims.len());
                self.tosa_binary("pow", &x, &half, &x.dims, Elem::F32)?
            }
            "Neg" => self.tosa_negate(&x),
            other => self.tosa_unary(tosa_function(other), &x),
        })
    }

    fn tosa_float_class(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        if n.op_type == "IsNaN" {
            let same = self.tosa_binary("equal", &x, &x, od, Elem::Bool)?;
            return Ok(self.tosa_unary("logical_not", &same));
        }
        let mut found: Option<Operand> = None;
        for (attr, value) in [
            ("detect_positive", f64::INFINITY),
            ("detect_negative", f64::NEG_INFINITY),
        ] {
            if n.int_attr(attr, 1) == 0 {
                continue;
            }
            let c = self.tosa_scalar(value, Elem::F32, od.len());
            let hit = self.tosa_binary("equal", &x, &c, od, Elem::Bool)?;
            found = Some(match found {
                Some(f) => self.tosa_binary("logical_or", &f, &hit, od, Elem::Bool)?,
                None => hit,
            });
        }
        match found {
            Some(f) => Ok(f),
            None => Ok(self.tosa_splat(0.0, Elem::Bool, od)),
        }
    }

    /// Cast; float → integer truncates toward zero as ONNX does (TOSA's
    /// cast rounds to nearest).
    fn tosa_cast(&mut self, n: &Node, to: Elem) -> Result<Operand> {
        let mut x = self.input(n, 0)?;
        if x.elem == to {
            return Ok(x);
        }
        if x.elem.is_half() && matches!(to, Elem::I32 | Elem::I8 | Elem::Bool) {
            // Truncated as f32 below (f32 holds every f16 and bf16 exactly).
            x = self.tosa_line("cast", &[&x], "", &x.dims.clone(), Elem::F32);
        }
        let source = if x.elem.is_float() && matches!(to, Elem::I64 | Elem::I32 | Elem::I8) {
            let zero = self.tosa_scalar(0.0, Elem::F32, x.dims.len());
            let positive = self.tosa_binary("greater_equal", &x, &zero, &x.dims, Elem::Bool)?;
            let down = self.tosa_unary("floor", &x);
            let up = self.tosa_unary("ceil", &x);
            self.tosa_line(
                "select",
                &[&positive, &down, &up],
                "",
                &x.dims.clone(),
                Elem::F32,
            )
        } else {
            x
        };
        Ok(self.tosa_line("cast", &[&source], "", &source.dims.clone(), to))
    }

    fn tosa_batch_norm(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let (a, b) = self.batch_norm_affine(n)?;
        let mut shape = vec![1, a.len() as i64];
        shape.extend(std::iter::repeat_n(1, od.len().saturating_sub(2)));
        let an = Operand::f32(self.f32_constant(&shape, &a, n.display_name())?, &shape);
        let bn = Operand::f32(self.f32_constant(&shape, &b, n.display_name())?, &shape);
        let x = self.input(n, 0)?;
        let scaled = self.tosa_binary("mul", &x, &an, od, Elem::F32)?;
        self.tosa_binary("add", &scaled, &bn, od, Elem::F32)
    }

    fn tosa_normalization(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        let plan = self.norm_plan(n, &x.dims)?;
        let view = plan.view.clone();
        let x = self.tosa_reshape(&x, &view)?;
        let count: i64 = plan.axes.iter().map(|&a| view[a]).product();
        // RMSNormalization scales by the root mean square: no centering.
        let centered = if n.op_type == "RMSNormalization" {
            x
        } else {
            let sum = self.tosa_reduce("reduce_sum", &x, &plan.axes);
            let mean = self.tosa_scale(&sum, 1.0 / count as f64)?;
            self.tosa_binary("sub", &x, &mean, &view, Elem::F32)?
        };
        let squares = self.tosa_binary("mul", &centered, &centered, &view, Elem::F32)?;
        let sq_sum = self.tosa_reduce("reduce_sum", &squares, &plan.axes);
        let var = self.tosa_scale(&sq_sum, 1.0 / count as f64)?;
        let eps = self.tosa_scalar(n.float_attr("epsilon", 1e-5), Elem::F32, view.len());
        let var = self.tosa_binary("add", &var, &eps, &var.dims.clone(), Elem::F32)?;
        let rstd = self.tosa_unary("rsqrt", &var);
        let y = self.tosa_binary("mul", &centered, &rstd, &view, Elem::F32)?;
        let y = self.tosa_reshape(&y, od)?;
        let scale = self.norm_affine(n, 1, &plan)?;
        let mut y = self.tosa_binary("mul", &y, &scale, od, Elem::F32)?;
        if n.input(2).is_some() {
            let bias = self.norm_affine(n, 2, &plan)?;
            y = self.tosa_binary("add", &y, &bias, od, Elem::F32)?;
        }
        Ok(y)
    }

    /// TOSA wants every window position used: `(in - 1 + pads - (k - 1)·d)`
    /// divisible by the stride. Trailing padding or input rows and columns
    /// that no window reaches are dropped (the output is unchanged).
    fn tosa_fit_windows(
        &mut self,
        x: &Operand,
        kernel: &[i64],
        pads: &[i64],
        strides: &[i64],
        dilations: &[i64],
    ) -> (Operand, Vec<i64>) {
        let mut pads = pads.to_vec();
        let mut crop = [0i64; 2];
        for i in 0..2 {
            let size = x.dims[1 + i];
            let span = size - 1 + pads[i] + pads[i + 2] - (kernel[i] - 1) * dilations[i];
            let mut extra = span.rem_euclid(strides[i]);
            let from_pad = extra.min(pads[i + 2]);
            pads[i + 2] -= from_pad;
            extra -= from_pad;
            crop[i] = extra;
        }
        if crop == [0, 0] {
            return (x.clone(), pads);
        }
        let d = &x.dims;
        let dims = [d[0], d[1] - crop[0], d[2] - crop[1], d[3]];
        let name = self.extract_slice(x, &[0, 0, 0, 0], &dims, &[1; 4]);
        (
            Operand {
                name,
                dims: dims.to_vec(),
                elem: x.elem,
            },
            pads,
        )
    }

    /// NCHW pads `[t, l, b, r]` as TOSA's `[t, b, l, r]`.
    fn tosa_pads(pads: &[i64]) -> String {
        format!("{}, {}, {}, {}", pads[0], pads[2], pads[1], pads[3])
    }

    fn tosa_conv(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        // The weights' dims only: they are emitted permuted, below.
        let wd = n
            .input(1)
            .and_then(|v| self.dims(v))
            .ok_or_else(|| unsupported(n, "weight shape unknown"))?;
        if x.dims.len() != 4 || !x.elem.is_float() {
            return Err(unsupported(n, "a convolution that is not 2-d on f32"));
        }
        let (pads, strides, dilations) = self.spatial(n, 2)?;
        let group = n.int_attr("group", 1);
        let (c_in, c_out) = (x.dims[1], wd[0]);
        if wd[2..] == [1, 1]
            && group == 1
            && x.dims[0] == 1
            && strides == [1, 1]
            && pads.iter().all(|&p| p == 0)
        {
            // A 1×1 convolution of one image: W[Cout, Cin] · X[Cin, H·W].
            let w = self.input(n, 1)?;
            let pixels = od[2] * od[3];
            let w3 = self.tosa_reshape(&w, &[1, c_out, c_in])?;
            let x3 = self.tosa_reshape(&x, &[1, c_in, pixels])?;
            let product = self.tosa_batch_matmul(&w3, &x3);
            let y = self.tosa_reshape(&product, od)?;
            if n.input(2).is_none() {
                return Ok(y);
            }
            let bias = self.input(n, 2)?;
            let bias = self.tosa_reshape(&bias, &[1, c_out, 1, 1])?;
            return self.tosa_binary("add", &y, &bias, od, Elem::F32);
        }
        let bias = match n.input(2) {
            Some(_) => self.input(n, 2)?,
            None => self.tosa_splat(0.0, Elem::F32, &[c_out]),
        };
        let zp = self.tosa_zero_point();
        let nhwc = self.tosa_to_nhwc(&x);
        let kernel = [wd[2], wd[3]];
        let (nhwc, pads) = self.tosa_fit_windows(&nhwc, &kernel, &pads, &strides, &dilations);
        let out = [od[0], od[2], od[3], od[1]];
        let attrs = format!(
            "acc_type = f32, dilation = array<i64: {}, {}>, pad = array<i64: {}>, stride = array<i64: {}, {}>",
            dilations[0],
            dilations[1],
            Self::tosa_pads(&pads),
            strides[0],
            strides[1]
        );
        let y = if group == 1 {
            let w = self.permuted_input(n, 1, &[0, 2, 3, 1])?;
            self.tosa_line(
                "conv2d",
                &[&nhwc, &w, &bias, &zp, &zp],
                &attrs,
                &out,
                Elem::F32,
            )
        } else if group == c_in && wd[1] == 1 {
            // Depthwise: [C·M, 1, kh, kw] → [kh, kw, C, M].
            let m = c_out / c_in;
            let hwio = self.permuted_input(n, 1, &[2, 3, 1, 0])?;
            let w = self.tosa_reshape(&hwio, &[wd[2], wd[3], c_in, m])?;
            self.tosa_line(
                "depthwise_conv2d",
                &[&nhwc, &w, &bias, &zp, &zp],
                &attrs,
                &out,
                Elem::F32,
            )
        } else {
            // Grouped: one conv2d per group on its slices, concatenated.
            let w_all = self.permuted_input(n, 1, &[0, 2, 3, 1])?;
            let (gi, go) = (c_in / group, c_out / group);
            let mut parts = Vec::new();
            for g in 0..group {
                let xd = [nhwc.dims[0], nhwc.dims[1], nhwc.dims[2], gi];
                let xs = self.extract_slice(&nhwc, &[0, 0, 0, g * gi], &xd, &[1; 4]);
                let wd = [go, w_all.dims[1], w_all.dims[2], w_all.dims[3]];
                let ws = self.extract_slice(&w_all, &[g * go, 0, 0, 0], &wd, &[1; 4]);
                let bs = self.extract_slice(&bias, &[g * go], &[go], &[1]);
                let part_out = [out[0], out[1], out[2], go];
                parts.push(self.tosa_line(
                    "conv2d",
                    &[
                        &Operand::f32(xs, &xd),
                        &Operand::f32(ws, &wd),
                        &Operand::f32(bs, &[go]),
                        &zp,
                        &zp,
                    ],
                    &attrs,
                    &part_out,
                    Elem::F32,
                ));
            }
            let refs: Vec<&Operand> = parts.iter().collect();
            self.tosa_line("concat", &refs, "axis = 3 : i32", &out, Elem::F32)
        };
        Ok(self.tosa_to_nchw(&y))
    }

    fn tosa_pool(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        if x.dims.len() != 4 {
            return Err(unsupported(n, "1-d and 2-d pooling only"));
        }
        let (mut pads, strides, dilations) = self.spatial(n, 2)?;
        if dilations.iter().any(|&d| d != 1) {
            return Err(unsupported(
                n,
                "dilated pooling (TOSA pools have no dilation)",
            ));
        }
        let kernel = n
            .ints_attr("kernel_shape")
            .ok_or_else(|| unsupported(n, "no kernel_shape"))?;
        // ceil_mode's last windows reach past the end: TOSA's padding,
        // which its pools neither take the max of nor count.
        let extra =
            super::nn::ceil_extra(&x.dims[2..], &od[2..], &kernel, &pads, &strides, &[1, 1]);
        let mut nhwc = self.tosa_to_nhwc(&x);
        let max = n.op_type == "MaxPool";
        // TOSA's average leaves padding out of the count: with
        // count_include_pad=1, pad with zeros first.
        if !max && n.int_attr("count_include_pad", 0) != 0 && pads.iter().any(|&p| p != 0) {
            let padding = [0, 0, pads[0], pads[2], pads[1], pads[3], 0, 0];
            let value = self.tosa_splat(0.0, Elem::F32, &[1]);
            let d = &nhwc.dims;
            let padded = [
                d[0],
                d[1] + pads[0] + pads[2],
                d[2] + pads[1] + pads[3],
                d[3],
            ];
            nhwc = self.tosa_with_shape("pad", &[&nhwc, &value], &padding, &padded, Elem::F32);
            pads = vec![0; 4];
        }
        pads[2] += extra[0];
        pads[3] += extra[1];
        let (nhwc, pads) = self.tosa_fit_windows(&nhwc, &kernel, &pads, &strides, &[1, 1]);
        let out = [od[0], od[2], od[3], od[1]];
        let attrs = format!(
            "kernel = array<i64: {}, {}>, pad = array<i64: {}>, stride = array<i64: {}, {}>",
            kernel[0],
            kernel[1],
            Self::tosa_pads(&pads),
            strides[0],
            strides[1]
        );
        let y = if max {
            self.tosa_line("max_pool2d", &[&nhwc], &attrs, &out, Elem::F32)
        } else {
            let zp = self.tosa_zero_point();
            self.tosa_line(
                "avg_pool2d",
                &[&nhwc, &zp, &zp],
                &format!("acc_type = f32, {attrs}"),
                &out,
                Elem::F32,
            )
        };
        Ok(self.tosa_to_nchw(&y))
    }

    /// `tosa.matmul` of `[B, M, K]` by `[B, K, N]`.
    fn tosa_batch_matmul(&mut self, a: &Operand, b: &Operand) -> Operand {
        let zp = self.tosa_zero_point();
        let out = [a.dims[0], a.dims[1], b.dims[2]];
        self.tosa_line("matmul", &[a, b, &zp, &zp], "", &out, Elem::F32)
    }

    fn tosa_gemm(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let a = if n.int_attr("transA", 0) == 1 {
            self.permuted_input(n, 0, &[1, 0])?
        } else {
            self.input(n, 0)?
        };
        let b = if n.int_attr("transB", 0) == 1 {
            self.permuted_input(n, 1, &[1, 0])?
        } else {
            self.input(n, 1)?
        };
        let a3 = self.tosa_reshape(&a, &[1, a.dims[0], a.dims[1]])?;
        let b3 = self.tosa_reshape(&b, &[1, b.dims[0], b.dims[1]])?;
        let product = self.tosa_batch_matmul(&a3, &b3);
        let mut y = self.tosa_reshape(&product, od)?;
        let (alpha, beta) = (n.float_attr("alpha", 1.0), n.float_attr("beta", 1.0));
        if alpha != 1.0 {
            y = self.tosa_scale(&y, alpha)?;
        }
        if n.input(2).is_some() {
            let mut c = self.input(n, 2)?;
            if beta != 1.0 {
                c = self.tosa_scale(&c, beta)?;
            }
            y = self.tosa_binary("add", &y, &c, od, Elem::F32)?;
        }
        Ok(y)
    }

    fn tosa_matmul(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let mut a = self.input(n, 0)?;
        let mut b = self.input(n, 1)?;
        if !a.elem.is_float() || !b.elem.is_float() {
            return Err(unsupported(n, "integer operands (float only)"));
        }
        if a.dims.len() == 1 {
            a = self.tosa_reshape(&a, &[1, a.dims[0]])?;
        }
        if b.dims.len() == 1 {
            b = self.tosa_reshape(&b, &[b.dims[0], 1])?;
        }
        let (ra, rb) = (a.dims.len(), b.dims.len());
        let (m, k, nn) = (a.dims[ra - 2], a.dims[ra - 1], b.dims[rb - 1]);
        if rb == 2 {
            let rows: i64 = a.dims[..ra - 1].iter().product();
            let a3 = self.tosa_reshape(&a, &[1, rows, k])?;
            let b3 = self.tosa_reshape(&b, &[1, k, nn])?;
            let p = self.tosa_batch_matmul(&a3, &b3);
            return self.tosa_reshape(&p, od);
        }
        let rank = ra.max(rb);
        let (a, b) = (self.tosa_rank(&a, rank)?, self.tosa_rank(&b, rank)?);
        let batch_dims = super::nn::broadcast_batch(n, &a.dims[..rank - 2], &b.dims[..rank - 2])?;
        let batch: i64 = batch_dims.iter().product();
        let mut flat = Vec::new();
        for (x, rows, cols) in [(&a, m, k), (&b, k, nn)] {
            let multiples: Vec<i64> = x.dims[..rank - 2]
                .iter()
                .zip(&batch_dims)
                .map(|(d, b)| b / d)
                .chain([1, 1])
                .collect();
            let tiled = if multiples.iter().all(|&t| t == 1) {
                x.clone()
            } else {
                let mut full = batch_dims.clone();
                full.extend([rows, cols]);
                self.tosa_with_shape("tile", &[x], &multiples, &full, Elem::F32)
            };
            flat.push(self.tosa_reshape(&tiled, &[batch, rows, cols])?);
        }
        let p = self.tosa_batch_matmul(&flat[0], &flat[1]);
        self.tosa_reshape(&p, od)
    }

    /// LRN: the window sum of x² over channels as an average pool along
    /// a `[N, C, H·W, 1]` view (zero-padded), so `x · (bias + alpha ·
    /// mean)^-beta`.
    fn tosa_lrn(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        if x.dims.len() != 4 {
            return Err(unsupported(n, "LRN on a tensor that is not NCHW"));
        }
        let (size, alpha, beta, bias) = lrn_params(n);
        let (batch, c, plane) = (x.dims[0], x.dims[1], x.dims[2] * x.dims[3]);
        let squares = self.tosa_binary("mul", &x, &x, od, Elem::F32)?;
        let view = self.tosa_reshape(&squares, &[batch, c, plane, 1])?;
        let (low, high) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
        let zero = self.tosa_splat(0.0, Elem::F32, &[1]);
        let padded_dims = [batch, c + size - 1, plane, 1];
        let padded = self.tosa_with_shape(
            "pad",
            &[&view, &zero],
            &[0, 0, low, high, 0, 0, 0, 0],
            &padded_dims,
            Elem::F32,
        );
        let zp = self.tosa_zero_point();
        let attrs = format!(
            "acc_type = f32, kernel = array<i64: {size}, 1>, pad = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>"
        );
        let mean = self.tosa_line(
            "avg_pool2d",
            &[&padded, &zp, &zp],
            &attrs,
            &view.dims,
            Elem::F32,
        );
        let mean = self.tosa_reshape(&mean, od)?;
        let scaled = self.tosa_scale(&mean, alpha)?;
        let b = self.tosa_scalar(bias, Elem::F32, 4);
        let base = self.tosa_binary("add", &scaled, &b, od, Elem::F32)?;
        let e = self.tosa_scalar(-beta, Elem::F32, 4);
        let p = self.tosa_binary("pow", &base, &e, od, Elem::F32)?;
        self.tosa_binary("mul", &x, &p, od, Elem::F32)
    }

    fn tosa_softmax(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        let axes = self.softmax_axes(n, od.len());
        let max = self.tosa_reduce("reduce_max", &x, &axes);
        let shifted = self.tosa_binary("sub", &x, &max, od, Elem::F32)?;
        let e = self.tosa_unary("exp", &shifted);
        let sum = self.tosa_reduce("reduce_sum", &e, &axes);
        if n.op_type == "LogSoftmax" {
            let l = self.tosa_unary("log", &sum);
            return self.tosa_binary("sub", &shifted, &l, od, Elem::F32);
        }
        let r = self.tosa_unary("reciprocal", &sum);
        self.tosa_binary("mul", &e, &r, od, Elem::F32)
    }

    /// Gather as `tosa.gather` on data viewed as `[N, K, C]` (the axes
    /// before, at and after `axis`), the indices as `[N, W]` i32 (wrapped
    /// when negative, the same row for every N).
    fn tosa_gather(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let (data, indices, axis) = self.gather_operands(n)?;
        let outer: i64 = data.dims[..axis].iter().product();
        let k = data.dims[axis];
        let inner: i64 = data.dims[axis + 1..].iter().product();
        let w: i64 = indices.dims.iter().product();
        let values = self.tosa_reshape(&data, &[outer, k, inner])?;
        let flat = self.tosa_reshape(&indices, &[1, w])?;
        let idx = self.tosa_line("cast", &[&flat], "", &[1, w], Elem::I32);
        let zero = self.tosa_splat(0.0, Elem::I32, &[1, 1]);
        let size = self.tosa_splat(k as f64, Elem::I32, &[1, 1]);
        let negative = self.tosa_binary("greater", &zero, &idx, &[1, w], Elem::Bool)?;
        let wrapped = self.tosa_binary("add", &idx, &size, &[1, w], Elem::I32)?;
        let mut idx = self.tosa_line(
            "select",
            &[&negative, &wrapped, &idx],
            "",
            &[1, w],
            Elem::I32,
        );
        if outer > 1 {
            idx = self.tosa_with_shape("tile", &[&idx], &[outer, 1], &[outer, w], Elem::I32);
        }
        let out = [outer, w, inner];
        let g = self.tosa_line("gather", &[&values, &idx], "", &out, data.elem);
        self.tosa_reshape(&g, od)
    }

    fn tosa_pad(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        let (low, high, value) = self.pad_amounts(n, x.dims.len())?;
        let padding: Vec<i64> = low.iter().zip(&high).flat_map(|(l, h)| [*l, *h]).collect();
        let fill = self.tosa_splat(value, x.elem, &[1]);
        Ok(self.tosa_with_shape("pad", &[&x, &fill], &padding, od, x.elem))
    }

    fn tosa_reduction(&mut self, n: &Node, od: &[i64]) -> Result<Operand> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let rank = x.dims.len();
        let Some(axes) = self.reduced_axes(n, rank)? else {
            return Ok(x);
        };
        let op = n.op_type.as_str();
        let source = match op {
            "ReduceL1" => self.tosa_unary("abs", &x),
            "ReduceL2" | "ReduceSumSquare" => {
                self.tosa_binary("mul", &x, &x, &x.dims.clone(), Elem::F32)?
            }
            _ => x.clone(),
        };
        let name = match op {
            "ReduceMax" => "reduce_max",
            "ReduceMin" => "reduce_min",
            "ReduceProd" => "reduce_product",
            _ => "reduce_sum",
        };
        let mut r = self.tosa_reduce(name, &source, &axes);
        if op == "ReduceMean" {
            let count: i64 = axes.iter().map(|&i| x.dims[i]).product();
            r = self.tosa_scale(&r, 1.0 / count as f64)?;
        }
        if op == "ReduceL2" {
            let half = self.tosa_scalar(0.5, Elem::F32, rank);
            r = self.tosa_binary("pow", &r, &half, &r.dims.clone(), Elem::F32)?;
        }
        self.tosa_reshape(&r, od)
    }
}

/// The TOSA operation of an activation that is one operation.
fn tosa_function(op: &str) -> &'static str {
    match op {
        "Sigmoid" => "sigmoid",
        "Tanh" => "tanh",
        "Erf" => "erf",
        "Exp" => "exp",
        "Log" => "log",
        "Abs" => "abs",
        "Floor" => "floor",
        "Ceil" => "ceil",
        "Sin" => "sin",
        "Cos" => "cos",
        _ => "reciprocal",
    }
}
