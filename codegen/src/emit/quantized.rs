//! Quantized weights kept quantized, in the shapes IREE fuses: codes as
//! `i4` / `i8` tensor constants, read through a dequantizing
//! `linalg.generic` (all loops parallel, the codes through the identity
//! map, one scale and one zero point per block through a projection,
//! `uitofp`, `subf`, `mulf` and nothing else) that feeds the contraction
//! directly. IREE's dispatch creation clones such a generic into the
//! contraction's dispatch, so the f32 weight is never written to memory;
//! its constant folding leaves it alone, as it widens its input.
//!
//! The ops from outside the ONNX domain that sculpt's passes write are
//! dispatched here too: `com.microsoft::MatMulNBits` is emitted, and
//! `com.microsoft::MoE` is refused with the way round it.

use super::{Elem, Emitter, MapIn, Operand};
use crate::ops::unsupported;
use crate::Result;
use sculpt_ir::ops::nbits::NBitsWeight;
use sculpt_ir::Node;
use std::fmt::Write;

/// Up to this many 4-bit codes are stored as `i8` ([`Emitter::nibble_constant`]).
const SMALL_NIBBLES: usize = 1024;

impl Emitter<'_> {
    /// An op outside the ONNX domain.
    pub(super) fn custom_op(&mut self, n: &Node) -> Result<String> {
        match (n.domain.as_str(), n.op_type.as_str()) {
            ("com.microsoft", "MatMulNBits") => {
                let od = n
                    .output(0)
                    .and_then(|v| self.dims(v))
                    .ok_or_else(|| unsupported(n, "output shape is not static"))?;
                self.matmul_nbits(n, &od)
            }
            ("com.microsoft", "MoE") => Err(unsupported(
                n,
                "com.microsoft::MoE (moe form=ort) has no MLIR form: run moe with form=onnx to emit the experts",
            )),
            _ => Err(unsupported(
                n,
                "op outside the ONNX domain (of those, only com.microsoft::MatMulNBits is emitted)",
            )),
        }
    }

    /// `A · Wᵀ (+ bias)` with `W` dequantized per block: `A` viewed as
    /// `[rows, blocks, block]` (zero-padded to whole blocks), the codes as
    /// a `[N, blocks, block]` constant, the contraction over the last two
    /// dims.
    fn matmul_nbits(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let w = NBitsWeight::read(self.g, n).map_err(|e| match e {
            sculpt_ir::IrError::Node { reason, .. } => unsupported(n, reason),
            other => unsupported(n, other.to_string()),
        })?;
        let dialect = std::mem::take(&mut self.dialect);
        let result = self.dequantized_product(n, &w, od);
        self.dialect = dialect;
        result
    }

    fn dequantized_product(&mut self, n: &Node, w: &NBitsWeight, od: &[i64]) -> Result<String> {
        let a = self.input(n, 0)?;
        if a.elem != Elem::F32 {
            return Err(unsupported(
                n,
                format!("input A is {} (f32 only)", a.elem.mlir()),
            ));
        }
        let (k, blocks, block, cols) = (w.k as i64, w.blocks as i64, w.block as i64, w.n as i64);
        if a.dims.last() != Some(&k) {
            return Err(unsupported(n, "A's last dim is not K"));
        }
        let rows: i64 = a.dims[..a.dims.len() - 1].iter().product();
        let flat = Operand::f32(self.reshape(&a, &[rows, k])?, &[rows, k]);
        let padded = self.pad_axes(&flat, &[0, 0], &[0, blocks * block - k], 0.0);
        let a3 = [rows, blocks, block];
        let a3 = Operand::f32(self.reshape(&padded, &a3)?, &a3);
        let weight = self.dequantized_weight(n, w)?;
        let init = Operand::f32(self.filled(&[rows, cols], 0.0), &[rows, cols]);
        let d = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        let product = self.accumulate(
            &["parallel", "parallel", "reduction", "reduction"],
            &[
                MapIn {
                    operand: &a3,
                    exprs: d("d0,d2,d3"),
                },
                MapIn {
                    operand: &weight,
                    exprs: d("d1,d2,d3"),
                },
            ],
            &init,
            &d("d0,d1"),
            &|b, x, acc| {
                let p = b.bin("arith.mulf", &x[0], &x[1]);
                b.bin("arith.addf", acc, &p)
            },
        );
        let mut product = Operand::f32(product, &[rows, cols]);
        if n.input(5).is_some() {
            let bias = self.input(n, 5)?;
            if bias.elem != Elem::F32 || bias.dims != [cols] {
                return Err(unsupported(n, "bias is not f32 [N]"));
            }
            let sum = self.elementwise(&[rows, cols], &[product, bias], &|b, x| {
                b.bin("arith.addf", &x[0], &x[1])
            });
            product = Operand::f32(sum, &[rows, cols]);
        }
        self.reshape(&product, od)
    }

    /// The dequantizing generic: `(code − zero) · scale`, `[N, blocks,
    /// block]` f32, from the codes (`i4` or `i8` constant) and per-block
    /// zero points and scales (`[N, blocks]` constants).
    fn dequantized_weight(&mut self, n: &Node, w: &NBitsWeight) -> Result<Operand> {
        let dims = [w.n as i64, w.blocks as i64, w.block as i64];
        let codes = match w.bits {
            4 => {
                let codes: Vec<i64> = w.codes.iter().map(|&c| i64::from(c)).collect();
                self.nibble_constant(n, &codes, &dims, false)?
            }
            8 => {
                let t = sculpt_ir::Tensor::from_raw(
                    sculpt_ir::DataType::U8,
                    dims.to_vec(),
                    w.codes.clone().into(),
                );
                Operand {
                    name: self.constant(&t, n.display_name())?,
                    dims: dims.to_vec(),
                    elem: Elem::U8,
                }
            }
            bits => {
                return Err(unsupported(
                    n,
                    format!("{bits}-bit codes (4 and 8 are emitted)"),
                ))
            }
        };
        let per_block = [dims[0], dims[1]];
        let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let zeros = Operand::f32(
            self.f32_constant(&per_block, &as_f32(&w.zeros), n.display_name())?,
            &per_block,
        );
        let scales = Operand::f32(
            self.f32_constant(&per_block, &as_f32(&w.scales), n.display_name())?,
            &per_block,
        );
        let identity = vec!["d0".to_string(), "d1".into(), "d2".into()];
        let per_block_map = vec!["d0".to_string(), "d1".into()];
        let code_type = codes.elem.mlir();
        let name = self.generic(
            &dims,
            Elem::F32,
            &[
                MapIn {
                    operand: &codes,
                    exprs: identity,
                },
                MapIn {
                    operand: &zeros,
                    exprs: per_block_map.clone(),
                },
                MapIn {
                    operand: &scales,
                    exprs: per_block_map,
                },
            ],
            &|b, x| {
                let code = b.assign(format!("arith.uitofp {} : {code_type} to f32", x[0]));
                let centred = b.bin("arith.subf", &code, &x[1]);
                b.bin("arith.mulf", &centred, &x[2])
            },
        );
        Ok(Operand::f32(name, &dims))
    }

    /// A constant of 4-bit codes (`values`, signed or not) as `i4`. MLIR's
    /// dense literal stores a sub-byte element in a byte of its own; IREE
    /// packs them two to a byte when it serializes the module (it takes no
    /// `i4` resource blob). Up to [`SMALL_NIBBLES`] codes are stored as
    /// `i8` instead: IREE 3.13 inlines constants that small into their
    /// dispatch, and cannot emulate `i4` there.
    fn nibble_constant(
        &mut self,
        n: &Node,
        values: &[i64],
        dims: &[i64],
        signed: bool,
    ) -> Result<Operand> {
        if values.len() <= SMALL_NIBBLES {
            let dtype = if signed {
                sculpt_ir::DataType::I8
            } else {
                sculpt_ir::DataType::U8
            };
            let t = sculpt_ir::Tensor::from_ints(dtype, dims.to_vec(), values)?;
            return Ok(Operand {
                name: self.constant(&t, n.display_name())?,
                dims: dims.to_vec(),
                elem: if signed { Elem::I8 } else { Elem::U8 },
            });
        }
        let mut hex = String::with_capacity(values.len() * 2);
        for c in values {
            let _ = write!(hex, "{:02X}", c & 0xF);
        }
        let operand = Operand {
            name: self.fresh(),
            dims: dims.to_vec(),
            elem: Elem::U4,
        };
        self.line(&format!(
            "{} = arith.constant dense<\"0x{hex}\"> : {}",
            operand.name,
            operand.ty()
        ));
        Ok(operand)
    }
}

impl Emitter<'_> {
    /// DequantizeLinear as one dequantizing generic: `(x − zero) · scale`,
    /// the scale and zero point read through a projection of `x`'s loops
    /// (a scalar, one per channel on `axis`, or one per block of
    /// `block_size` along it). A constant 4-bit `x` becomes an `i4`
    /// constant; 8-bit ones stay `i8`.
    pub(super) fn dequantize(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let (x, signed) = self.quantized_input(n)?;
        let rank = x.dims.len();
        let axis = super::axis_index(n.int_attr("axis", 1), rank);
        let block = n.int_attr("block_size", 0);
        let scale = self.input(n, 1)?;
        if scale.elem != Elem::F32 {
            return Err(unsupported(
                n,
                format!("scale is {} (f32, f16, bf16)", scale.elem.mlir()),
            ));
        }
        let map = |p: &Operand| -> Result<Vec<String>> {
            let loops = (0..rank).map(|i| format!("d{i}"));
            match p.dims.len() {
                0 => Ok(vec![]),
                1 if block == 0 && p.dims[0] == x.dims[axis] => Ok(vec![format!("d{axis}")]),
                1 if block == 0 && p.dims[0] == 1 => Ok(vec!["0".into()]),
                r if r == rank && block > 0 => Ok(loops
                    .enumerate()
                    .map(|(i, d)| {
                        if i == axis {
                            format!("{d} floordiv {block}")
                        } else {
                            d
                        }
                    })
                    .collect()),
                _ => Err(unsupported(
                    n,
                    "scale or zero point shape does not fit x, axis and block_size",
                )),
            }
        };
        // A constant zero point (4-bit ones included) is converted here.
        let zero = match n.input(2) {
            Some(v) => match sculpt_ir::ops::infer::constant(self.g, v) {
                Some(t) => {
                    let values: Vec<f32> = t.to_i64_vec()?.iter().map(|&z| z as f32).collect();
                    let name = self.f32_constant(&t.dims, &values, n.display_name())?;
                    Some(Operand::f32(name, &t.dims))
                }
                None => {
                    let z = self.input(n, 2)?;
                    Some(self.as_f32(&z))
                }
            },
            None => None,
        };
        let mut inputs = vec![MapIn {
            operand: &x,
            exprs: (0..rank).map(|i| format!("d{i}")).collect(),
        }];
        inputs.push(MapIn {
            operand: &scale,
            exprs: map(&scale)?,
        });
        if let Some(z) = &zero {
            inputs.push(MapIn {
                operand: z,
                exprs: map(z)?,
            });
        }
        let to_float = if signed {
            "arith.sitofp"
        } else {
            "arith.uitofp"
        };
        let code_type = x.elem.mlir();
        let has_zero = zero.is_some();
        let eight_bit = n
            .input(0)
            .and_then(|v| super::elem_of(self.g, v))
            .is_some_and(|e| matches!(e, Elem::I8 | Elem::U8));
        self.integer_dequantize |= eight_bit;
        Ok(self.generic(od, Elem::F32, &inputs, &|b, v| {
            let value = b.assign(format!("{to_float} {} : {code_type} to f32", v[0]));
            let centred = if has_zero {
                b.bin("arith.subf", &value, &v[2])
            } else {
                value
            };
            b.bin("arith.mulf", &centred, &v[1])
        }))
    }

    /// DequantizeLinear's `x`, and whether its codes are signed: i8, u8,
    /// i32 tensors, or 4-bit constants (as `i4`).
    fn quantized_input(&mut self, n: &Node) -> Result<(Operand, bool)> {
        let v = n
            .input(0)
            .ok_or_else(|| unsupported(n, "missing input 0"))?;
        let dtype = match sculpt_ir::ops::infer::value_type(self.g, v) {
            Some(sculpt_ir::Type::Tensor { dtype, .. }) => dtype,
            _ => return Err(unsupported(n, "x has no tensor type")),
        };
        use sculpt_ir::DataType;
        if matches!(dtype, DataType::I4 | DataType::U4) {
            let t = sculpt_ir::ops::infer::constant(self.g, v).ok_or_else(|| {
                unsupported(
                    n,
                    "4-bit x computed at run time (4-bit constants are emitted)",
                )
            })?;
            let signed = dtype == DataType::I4;
            let codes = t.to_i64_vec()?;
            return Ok((self.nibble_constant(n, &codes, &t.dims, signed)?, signed));
        }
        let x = self.operand(n, v)?;
        match x.elem {
            Elem::I8 | Elem::I32 => Ok((x, true)),
            Elem::U8 => Ok((x, false)),
            other => Err(unsupported(
                n,
                format!("x is {} (i8, u8, i32, 4-bit constants)", other.mlir()),
            )),
        }
    }

    /// `p` in f32 (zero points come in x's integer type).
    fn as_f32(&mut self, p: &Operand) -> Operand {
        if p.elem == Elem::F32 {
            return p.clone();
        }
        let op = match p.elem {
            Elem::U8 | Elem::Bool => "arith.uitofp",
            _ => "arith.sitofp",
        };
        let from = p.elem.mlir();
        let name = self.map(&p.dims, Elem::F32, std::slice::from_ref(p), &|b, v| {
            b.assign(format!("{op} {} : {from} to f32", v[0]))
        });
        Operand::f32(name, &p.dims)
    }
}

/// A DequantizeLinear's codes and parameters, read for an integer
/// contraction: 8-bit codes, one scale and zero point for the tensor or
/// one per column of a `[K, N]` weight.
struct Dequantized {
    codes: sculpt_ir::ValueId,
    /// Whether the codes are u8 (moved to i8 by −128, exactly).
    unsigned: bool,
    scales: Vec<f64>,
    zeros: Vec<i64>,
}

impl Dequantized {
    /// The output scale of a product of these activations (one scale)
    /// with `weight`, for each of its `count` outputs: `sa · sw[j]`.
    fn product_scales(&self, weight: &Dequantized, count: usize) -> Vec<f32> {
        let per_output = |j: usize| weight.scales[if weight.scales.len() == 1 { 0 } else { j }];
        (0..count)
            .map(|j| (self.scales[0] * per_output(j)) as f32)
            .collect()
    }
}

impl Emitter<'_> {
    /// Signed 8-bit weight codes as an i8 constant.
    fn i8_weight(&mut self, n: &Node, dims: &[i64], codes: &[i64]) -> Result<Operand> {
        let t = sculpt_ir::Tensor::from_ints(sculpt_ir::DataType::I8, dims.to_vec(), codes)?;
        Ok(Operand {
            name: self.constant(&t, n.display_name())?,
            dims: dims.to_vec(),
            elem: Elem::I8,
        })
    }

    /// The activations' codes as i8 (u8 ones moved by −128).
    fn signed_codes(&mut self, n: &Node, a: &Dequantized) -> Result<Operand> {
        let codes = self.operand(n, a.codes)?;
        Ok(if a.unsigned {
            self.flip_sign_bit(&codes)
        } else {
            codes
        })
    }

    /// The DequantizeLinear that defines `v`, when it dequantizes i8 or u8
    /// codes (not blocked) with constant parameters: one scale for the
    /// tensor or, given `channels = (axis, count)`, one per index of that
    /// axis (a weight's output channels).
    fn dequantized(
        &self,
        v: sculpt_ir::ValueId,
        channels: Option<(usize, i64)>,
    ) -> Option<Dequantized> {
        use sculpt_ir::ops::infer::constant;
        let (id, _) = self.g.value(v).producer?;
        let dq = self.g.node(id);
        if dq.op_type != "DequantizeLinear" || !dq.is_onnx() || dq.int_attr("block_size", 0) != 0 {
            return None;
        }
        let codes = dq.input(0)?;
        let unsigned = match super::elem_of(self.g, codes)? {
            Elem::I8 => false,
            Elem::U8 => true,
            _ => return None,
        };
        let scales = constant(self.g, dq.input(1)?)?.to_f64_vec().ok()?;
        let zeros = match dq.input(2) {
            Some(z) => constant(self.g, z)?.to_i64_vec().ok()?,
            None => vec![0; scales.len()],
        };
        let rank = super::dims_of(self.g, codes)?.len();
        let per_channel = channels.is_some_and(|(axis, count)| {
            super::axis_index(dq.int_attr("axis", 1), rank) == axis && scales.len() as i64 == count
        });
        if !(scales.len() == 1 || per_channel) || zeros.len() != scales.len() {
            return None;
        }
        let shift = if unsigned { 128 } else { 0 };
        Some(Dequantized {
            codes,
            unsigned,
            scales,
            zeros: zeros.iter().map(|z| z - shift).collect(),
        })
    }

    /// MatMul of two dequantized 8-bit operands (activations per tensor,
    /// a constant `[K, N]` weight per tensor or per column) as an
    /// i8 × i8 → i32 `linalg.matmul`, the zero points corrected in i32
    /// and the scales applied once, in the epilogue:
    /// `y = sa·sb[n] · (Σ a·b − za·Σ_k b[·, n] − zb[n]·Σ_k a[m, ·] + K·za·zb[n])`.
    /// `None` when the operands are not of that form.
    pub(super) fn integer_matmul(&mut self, n: &Node, od: &[i64]) -> Result<Option<String>> {
        let (Some(av), Some(bv)) = (n.input(0), n.input(1)) else {
            return Ok(None);
        };
        self.integer_product(n, od, av, bv, false)
    }

    /// Gemm (alpha = beta = 1, A not transposed) of two dequantized 8-bit
    /// operands as [`Self::integer_matmul`], a transposed weight
    /// transposed back here, C added after.
    pub(super) fn integer_gemm(&mut self, n: &Node, od: &[i64]) -> Result<Option<String>> {
        let plain = n.int_attr("transA", 0) == 0
            && n.float_attr("alpha", 1.0) == 1.0
            && n.float_attr("beta", 1.0) == 1.0;
        let (Some(av), Some(bv), true) = (n.input(0), n.input(1), plain) else {
            return Ok(None);
        };
        let c_fits = n
            .input(2)
            .is_none_or(|v| super::elem_of(self.g, v) == Some(Elem::F32));
        if !c_fits {
            return Ok(None);
        }
        let Some(product) = self.integer_product(n, od, av, bv, n.int_attr("transB", 0) == 1)?
        else {
            return Ok(None);
        };
        if n.input(2).is_none() {
            return Ok(Some(product));
        }
        let c = self.input(n, 2)?;
        let product = Operand::f32(product, od);
        Ok(Some(self.elementwise(od, &[product, c], &|b, x| {
            b.bin("arith.addf", &x[0], &x[1])
        })))
    }

    /// `A · B` of dequantized 8-bit operands (B constant `[K, N]`, or
    /// `[N, K]` when `transposed`) in integers: see [`Self::integer_matmul`].
    fn integer_product(
        &mut self,
        n: &Node,
        od: &[i64],
        av: sculpt_ir::ValueId,
        bv: sculpt_ir::ValueId,
        transposed: bool,
    ) -> Result<Option<String>> {
        let Some(stored) = super::dims_of(self.g, bv) else {
            return Ok(None);
        };
        if stored.len() != 2 {
            return Ok(None);
        }
        let (out_axis, cols) = if transposed {
            (0, stored[0])
        } else {
            (1, stored[1])
        };
        let b = self.dequantized(bv, Some((out_axis, cols)));
        let (Some(a), Some(b)) = (self.dequantized(av, None), b) else {
            return Ok(None);
        };
        let Some(weight) = sculpt_ir::ops::infer::constant(self.g, b.codes) else {
            return Ok(None);
        };
        let bd = vec![stored[1 - out_axis], cols];
        let ad = super::dims_of(self.g, a.codes).unwrap_or_default();
        if ad.is_empty() || ad.last() != Some(&bd[0]) {
            return Ok(None);
        }
        let (k, cols) = (bd[0], bd[1]);
        let rows: i64 = ad[..ad.len() - 1].iter().product();
        // The weight as signed codes, and its column sums.
        let shift = if b.unsigned { 128 } else { 0 };
        let codes = weight.to_i64_vec()?;
        let w: Vec<i64> = (0..(k * cols) as usize)
            .map(|at| {
                let (i, j) = (at / cols as usize, at % cols as usize);
                let stored_at = if transposed { j * k as usize + i } else { at };
                codes[stored_at] - shift
            })
            .collect();
        let column_sums: Vec<i64> = (0..cols as usize)
            .map(|j| (0..k as usize).map(|i| w[i * cols as usize + j]).sum())
            .collect();
        let per_column = |v: &[i64], j: usize| if v.len() == 1 { v[0] } else { v[j] };
        let za = a.zeros[0];
        let offsets: Vec<i64> = (0..cols as usize)
            .map(|j| k * za * per_column(&b.zeros, j) - za * column_sums[j])
            .collect();
        let scales = a.product_scales(&b, cols as usize);
        let w8 = self.i8_weight(n, &bd, &w)?;
        let codes = self.signed_codes(n, &a)?;
        let a2 = Operand {
            name: self.reshape(&codes, &[rows, k])?,
            dims: vec![rows, k],
            elem: Elem::I8,
        };
        let acc = self.filled_of(&[rows, cols], Elem::I32, 0.0);
        let product = self.fresh();
        let i32_ty = super::tensor_type(&[rows, cols], Elem::I32);
        self.line(&format!(
            "{product} = linalg.matmul ins({}, {} : {}, {}) outs({acc} : {i32_ty}) -> {i32_ty}",
            a2.name,
            w8.name,
            a2.ty(),
            w8.ty()
        ));
        let product = Operand {
            name: product,
            dims: vec![rows, cols],
            elem: Elem::I32,
        };
        let i32_vector = |e: &mut Self, v: &[i64]| -> Result<Operand> {
            let t = sculpt_ir::Tensor::from_ints(sculpt_ir::DataType::I32, vec![cols], v)?;
            Ok(Operand {
                name: e.constant(&t, n.display_name())?,
                dims: vec![cols],
                elem: Elem::I32,
            })
        };
        let offsets = i32_vector(self, &offsets)?;
        let scales = Operand::f32(
            self.f32_constant(&[cols], &scales, n.display_name())?,
            &[cols],
        );
        let by_column = vec!["d1".to_string()];
        let mut inputs = vec![
            MapIn {
                operand: &product,
                exprs: vec!["d0".into(), "d1".into()],
            },
            MapIn {
                operand: &offsets,
                exprs: by_column.clone(),
            },
            MapIn {
                operand: &scales,
                exprs: by_column.clone(),
            },
        ];
        // Weight zero points: − zb[n] · Σ_k a[m, k].
        let weight_zeros = b.zeros.iter().any(|&z| z != 0);
        let correction = if weight_zeros {
            let zb: Vec<i64> = (0..cols as usize)
                .map(|j| per_column(&b.zeros, j))
                .collect();
            Some((i32_vector(self, &zb)?, self.row_sums(&a2)))
        } else {
            None
        };
        if let Some((zb, sums)) = &correction {
            inputs.push(MapIn {
                operand: zb,
                exprs: by_column,
            });
            inputs.push(MapIn {
                operand: sums,
                exprs: vec!["d0".into()],
            });
        }
        let result = self.generic(&[rows, cols], Elem::F32, &inputs, &|r, v| {
            let mut sum = r.assign(format!("arith.addi {}, {} : i32", v[0], v[1]));
            if v.len() == 5 {
                let correction = r.assign(format!("arith.muli {}, {} : i32", v[3], v[4]));
                sum = r.assign(format!("arith.subi {sum}, {correction} : i32"));
            }
            let wide = r.assign(format!("arith.sitofp {sum} : i32 to f32"));
            r.bin("arith.mulf", &wide, &v[2])
        });
        Ok(Some(
            self.reshape(&Operand::f32(result, &[rows, cols]), od)?,
        ))
    }

    /// u8 codes as i8 ones 128 lower (the sign bit flipped).
    fn flip_sign_bit(&mut self, codes: &Operand) -> Operand {
        let name = self.map(
            &codes.dims,
            Elem::I8,
            std::slice::from_ref(codes),
            &|r, v| {
                let bit = r.assign("arith.constant -128 : i8".into());
                r.assign(format!("arith.xori {}, {bit} : i8", v[0]))
            },
        );
        Operand {
            name,
            dims: codes.dims.clone(),
            elem: Elem::I8,
        }
    }

    /// `Σ_k a[m, k]` of an i8 `[M, K]`, in i32: `[M]`.
    fn row_sums(&mut self, a: &Operand) -> Operand {
        let init = Operand {
            name: self.filled_of(&a.dims[..1], Elem::I32, 0.0),
            dims: a.dims[..1].to_vec(),
            elem: Elem::I32,
        };
        let name = self.accumulate(
            &["parallel", "reduction"],
            &[MapIn {
                operand: a,
                exprs: vec!["d0".into(), "d1".into()],
            }],
            &init,
            &["d0".into()],
            &|r, v, acc| {
                let wide = r.assign(format!("arith.extsi {} : i8 to i32", v[0]));
                r.assign(format!("arith.addi {acc}, {wide} : i32"))
            },
        );
        Operand {
            name,
            dims: a.dims[..1].to_vec(),
            elem: Elem::I32,
        }
    }
}

impl Emitter<'_> {
    /// Conv of dequantized 8-bit activations (per tensor) and a constant
    /// dequantized 8-bit weight (per tensor or per output channel, zero
    /// points 0, one group) as `linalg.conv_2d_nchw_fchw` i8 × i8 → i32:
    /// the input padded with its zero point's code, so that the padding
    /// counts as zero; `y = sa·sw[f] · (Σ a·w − za·Σ w[f]) + bias[f]`.
    /// `None` when the operands are not of that form.
    pub(super) fn integer_conv(
        &mut self,
        n: &Node,
        od: &[i64],
        (pads, strides, dilations): (&[i64], &[i64], &[i64]),
    ) -> Result<Option<String>> {
        let (Some(xv), Some(wv)) = (n.input(0), n.input(1)) else {
            return Ok(None);
        };
        let filters = od[1];
        let (Some(a), Some(b)) = (
            self.dequantized(xv, None),
            self.dequantized(wv, Some((0, filters))),
        ) else {
            return Ok(None);
        };
        let Some(weight) = sculpt_ir::ops::infer::constant(self.g, b.codes) else {
            return Ok(None);
        };
        if n.int_attr("group", 1) != 1 || b.zeros.iter().any(|&z| z != 0) || weight.dims.len() != 4
        {
            return Ok(None);
        }
        let bias_fits = n.input(2).is_none_or(|v| {
            super::elem_of(self.g, v) == Some(Elem::F32)
                && super::dims_of(self.g, v) == Some(vec![filters])
        });
        if !bias_fits {
            return Ok(None);
        }
        let bias = match n.input(2) {
            Some(_) => Some(self.input(n, 2)?),
            None => None,
        };
        let shift = if b.unsigned { 128 } else { 0 };
        let w: Vec<i64> = weight.to_i64_vec()?.iter().map(|x| x - shift).collect();
        let per_filter = w.len() / filters as usize;
        let za = a.zeros[0];
        let offsets: Vec<i64> = w
            .chunks(per_filter)
            .map(|f| -za * f.iter().sum::<i64>())
            .collect();
        let scales = a.product_scales(&b, filters as usize);
        let w8 = self.i8_weight(n, &weight.dims, &w)?;
        let codes = self.signed_codes(n, &a)?;
        let low = [0, 0, pads[0], pads[1]];
        let high = [0, 0, pads[2], pads[3]];
        let xp = self.pad_axes(&codes, &low, &high, za as f64);
        let acc = self.filled_of(od, Elem::I32, 0.0);
        let product = self.fresh();
        let i32_ty = super::tensor_type(od, Elem::I32);
        self.line(&format!(
            "{product} = linalg.conv_2d_nchw_fchw {} ins({}, {} : {}, {}) outs({acc} : {i32_ty}) -> {i32_ty}",
            super::nn::window_attrs(strides, dilations),
            xp.name,
            w8.name,
            xp.ty(),
            w8.ty()
        ));
        let product = Operand {
            name: product,
            dims: od.to_vec(),
            elem: Elem::I32,
        };
        let offsets =
            sculpt_ir::Tensor::from_ints(sculpt_ir::DataType::I32, vec![filters], &offsets)?;
        let offsets = Operand {
            name: self.constant(&offsets, n.display_name())?,
            dims: vec![filters],
            elem: Elem::I32,
        };
        let scales = Operand::f32(
            self.f32_constant(&[filters], &scales, n.display_name())?,
            &[filters],
        );
        let per_filter_map = vec!["d1".to_string()];
        let mut inputs = vec![
            MapIn {
                operand: &product,
                exprs: (0..4).map(|i| format!("d{i}")).collect(),
            },
            MapIn {
                operand: &offsets,
                exprs: per_filter_map.clone(),
            },
            MapIn {
                operand: &scales,
                exprs: per_filter_map.clone(),
            },
        ];
        if let Some(bias) = &bias {
            inputs.push(MapIn {
                operand: bias,
                exprs: per_filter_map,
            });
        }
        Ok(Some(self.generic(od, Elem::F32, &inputs, &|r, v| {
            let sum = r.assign(format!("arith.addi {}, {} : i32", v[0], v[1]));
            let wide = r.assign(format!("arith.sitofp {sum} : i32 to f32"));
            let scaled = r.bin("arith.mulf", &wide, &v[2]);
            if v.len() == 4 {
                r.bin("arith.addf", &scaled, &v[3])
            } else {
                scaled
            }
        })))
    }
}
