//! Data movement, for every element type: reshapes, transposes,
//! concatenation, slices, splits, gathers, padding, and the static
//! `Shape`/`Size`.

use super::{axis_index, tensor_type, unsupported, Dialect, Elem, Emitter, MapIn, Operand, Region};
use crate::Result;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, Node, Tensor};

fn list(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// `data` (row-major, `dims`) with its axes permuted by `perm`.
/// An index element (`ity`) as an `index` into a dim of `size`,
/// negative ones counted from the end.
fn wrapped_index(b: &mut Region, index: &str, ity: &str, size: i64) -> String {
    let i = b.assign(format!("arith.index_cast {index} : {ity} to index"));
    let zero = b.assign("arith.constant 0 : index".into());
    let size = b.assign(format!("arith.constant {size} : index"));
    let negative = b.assign(format!("arith.cmpi slt, {i}, {zero} : index"));
    let wrapped = b.assign(format!("arith.addi {i}, {size} : index"));
    b.assign(format!("arith.select {negative}, {wrapped}, {i} : index"))
}

fn permute(data: &[f32], dims: &[i64], perm: &[usize]) -> (Vec<f32>, Vec<i64>) {
    let rank = dims.len();
    let out_dims: Vec<i64> = perm.iter().map(|&p| dims[p]).collect();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1] as usize;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; rank];
    for _ in 0..data.len() {
        let at: usize = (0..rank).map(|k| index[k] * strides[perm[k]]).sum();
        out.push(data[at]);
        for k in (0..rank).rev() {
            index[k] += 1;
            if (index[k] as i64) < out_dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    (out, out_dims)
}

impl Emitter<'_> {
    /// `tensor.reshape` of `x` to `od` (the input itself when equal).
    pub(super) fn reshape(&mut self, x: &Operand, od: &[i64]) -> Result<String> {
        if x.dims == od {
            return Ok(x.name.clone());
        }
        if self.dialect == Dialect::Tosa {
            let shape = self.shape_value(od);
            let args = [
                (x.name.as_str(), x.ty()),
                (shape.as_str(), format!("!tosa.shape<{}>", od.len())),
            ];
            return Ok(self.tosa_generic("reshape", &args, "", &tensor_type(od, x.elem)));
        }
        let shape = self.constant(&Tensor::from_i64(vec![od.len() as i64], od), "shape")?;
        let r = self.fresh();
        self.line(&format!(
            "{r} = tensor.reshape {}({shape}) : ({}, tensor<{}xi64>) -> {}",
            x.name,
            x.ty(),
            od.len(),
            tensor_type(od, x.elem)
        ));
        Ok(r)
    }

    /// A `tosa.const_shape` of `dims`.
    pub(super) fn shape_value(&mut self, dims: &[i64]) -> String {
        let values = format!(
            "values = dense<[{}]> : tensor<{}xindex>",
            list(dims),
            dims.len()
        );
        self.tosa_generic(
            "const_shape",
            &[],
            &values,
            &format!("!tosa.shape<{}>", dims.len()),
        )
    }

    pub(super) fn transpose(&mut self, x: &Operand, perm: &[i64]) -> String {
        let od: Vec<i64> = perm.iter().map(|&p| x.dims[p as usize]).collect();
        if self.dialect == Dialect::Tosa {
            return self.tosa_generic(
                "transpose",
                &[(x.name.as_str(), x.ty())],
                &format!("perms = array<i32: {}>", list(perm)),
                &tensor_type(&od, x.elem),
            );
        }
        let init = self.empty(&od, x.elem);
        let r = self.fresh();
        self.line(&format!(
            "{r} = linalg.transpose ins({} : {}) outs({init} : {}) permutation = [{}]",
            x.name,
            x.ty(),
            tensor_type(&od, x.elem),
            list(perm)
        ));
        r
    }

    pub(super) fn concat(&mut self, n: &Node, od: &[i64], elem: Elem) -> Result<String> {
        let axis = axis_index(n.int_attr("axis", 0), od.len());
        let slots: Vec<usize> = (0..n.inputs().len()).collect();
        let parts = self.operands(n, &slots)?;
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let types: Vec<String> = parts.iter().map(Operand::ty).collect();
        let out = tensor_type(od, elem);
        if self.dialect == Dialect::Tosa {
            let args: Vec<(&str, String)> = names.iter().copied().zip(types).collect();
            return Ok(self.tosa_generic("concat", &args, &format!("axis = {axis} : i32"), &out));
        }
        let r = self.fresh();
        self.line(&format!(
            "{r} = tensor.concat dim({axis}) {} : ({}) -> {out}",
            names.join(", "),
            types.join(", ")
        ));
        Ok(r)
    }

    /// `tensor.extract_slice` of `x` at `offsets` with sizes `od`, strides
    /// `steps` (all positive; all 1 for TOSA's `tosa.slice`).
    pub(super) fn extract_slice(
        &mut self,
        x: &Operand,
        offsets: &[i64],
        od: &[i64],
        steps: &[i64],
    ) -> String {
        if self.dialect == Dialect::Tosa {
            debug_assert!(steps.iter().all(|&s| s == 1));
            let (start, size) = (self.shape_value(offsets), self.shape_value(od));
            let shape_ty = format!("!tosa.shape<{}>", od.len());
            let args = [
                (x.name.as_str(), x.ty()),
                (start.as_str(), shape_ty.clone()),
                (size.as_str(), shape_ty),
            ];
            return self.tosa_generic("slice", &args, "", &tensor_type(od, x.elem));
        }
        let r = self.fresh();
        self.line(&format!(
            "{r} = tensor.extract_slice {}[{}] [{}] [{}] : {} to {}",
            x.name,
            list(offsets),
            list(od),
            list(steps),
            x.ty(),
            tensor_type(od, x.elem)
        ));
        r
    }

    /// Slice with constant starts, ends, axes and steps (inputs since
    /// opset 10, attributes before). The output sizes are the inferred
    /// ones; each axis's start is clamped as ONNX does.
    pub(super) fn slice(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        let (offsets, steps) = self.slice_offsets(n, &x)?;
        if steps.iter().all(|&s| s > 0) {
            if self.dialect == Dialect::Tosa && steps.iter().any(|&s| s != 1) {
                return Err(unsupported(n, "steps other than 1 (tosa.slice has none)"));
            }
            return Ok(self.extract_slice(&x, &offsets, od, &steps));
        }
        if self.dialect == Dialect::Tosa {
            return Err(unsupported(n, "negative steps (tosa.slice has none)"));
        }
        let rank = x.dims.len();
        // Negative steps: a copy whose input map walks backwards.
        let exprs = (0..rank)
            .map(|k| match steps[k] {
                1 if offsets[k] == 0 => format!("d{k}"),
                s if s > 0 => format!("d{k} * {s} + {}", offsets[k]),
                s => format!("{} - d{k} * {}", offsets[k], -s),
            })
            .collect();
        let elem = x.elem;
        Ok(
            self.generic(od, elem, &[MapIn { operand: &x, exprs }], &|_, a| {
                a[0].clone()
            }),
        )
    }

    /// Slice's start offset and step on every axis of `x`.
    fn slice_offsets(&self, n: &Node, x: &Operand) -> Result<(Vec<i64>, Vec<i64>)> {
        let rank = x.dims.len();
        let from_inputs = self.opset >= 10;
        let get = |slot: usize, attr: &str| -> Result<Option<Vec<i64>>> {
            if from_inputs {
                self.const_ints(n, slot)
            } else {
                Ok(n.ints_attr(attr))
            }
        };
        let starts = get(1, "starts")?.ok_or_else(|| unsupported(n, "no starts"))?;
        let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let step_list = if from_inputs {
            self.const_ints(n, 4)?
        } else {
            None
        }
        .unwrap_or_else(|| vec![1; starts.len()]);
        let mut offsets = vec![0i64; rank];
        let mut steps = vec![1i64; rank];
        for ((&start, &axis), &step) in starts.iter().zip(&axes).zip(&step_list) {
            let axis = axis_index(axis, rank);
            let dim = x.dims[axis];
            if step == 0 {
                return Err(unsupported(n, "a step of 0"));
            }
            let s = if start < 0 { start + dim } else { start };
            offsets[axis] = if step > 0 {
                s.clamp(0, dim)
            } else {
                s.clamp(0, dim - 1)
            };
            steps[axis] = step;
        }
        Ok((offsets, steps))
    }

    /// Split: one `tensor.extract_slice` per output, at the offsets the
    /// inferred output sizes give.
    pub(super) fn split(&mut self, n: &Node) -> Result<Vec<String>> {
        let x = self.input(n, 0)?;
        let rank = x.dims.len();
        let axis = axis_index(n.int_attr("axis", 0), rank);
        let mut offsets = vec![0i64; rank];
        let mut parts = Vec::new();
        for v in n.outputs() {
            let v = v.ok_or_else(|| unsupported(n, "an unnamed output"))?;
            let od = self
                .dims(v)
                .ok_or_else(|| unsupported(n, "output shape is not static"))?;
            parts.push(self.extract_slice(&x, &offsets, &od, &vec![1; rank]));
            offsets[axis] += od[axis];
        }
        Ok(parts)
    }

    /// Gather and GatherElements along `axis`: a `linalg.generic` over
    /// the output reading the indices through its map, and the data with
    /// `tensor.extract` at the index (negative ones wrapped) on the axis
    /// and the loop's coordinates elsewhere (Gather: the loops around the
    /// index dims; GatherElements: the same coordinates).
    pub(super) fn gather(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let (data, indices, axis) = self.gather_operands(n)?;
        let rank = data.dims.len();
        let elements = n.op_type == "GatherElements";
        let q = indices.dims.len();
        let (index_loops, other_loop): (Vec<usize>, Box<dyn Fn(usize) -> usize>) = if elements {
            ((0..rank).collect(), Box::new(|j| j))
        } else {
            (
                (axis..axis + q).collect(),
                Box::new(move |j| if j < axis { j } else { j - 1 + q }),
            )
        };
        let exprs = index_loops.iter().map(|d| format!("d{d}")).collect();
        let (dim, ity) = (data.dims[axis], indices.elem.mlir());
        let (source, source_ty) = (data.name.clone(), data.ty());
        Ok(self.generic(
            od,
            data.elem,
            &[MapIn {
                operand: &indices,
                exprs,
            }],
            &|b, a| {
                let k = wrapped_index(b, &a[0], ity, dim);
                let coords: Vec<String> = (0..rank)
                    .map(|j| {
                        if j == axis {
                            k.clone()
                        } else {
                            b.assign(format!("linalg.index {} : index", other_loop(j)))
                        }
                    })
                    .collect();
                b.assign(format!(
                    "tensor.extract {source}[{}] : {source_ty}",
                    coords.join(", ")
                ))
            },
        ))
    }

    /// A gather's data, its indices (i64 or i32) and its axis.
    pub(super) fn gather_operands(&mut self, n: &Node) -> Result<(Operand, Operand, usize)> {
        let data = self.input(n, 0)?;
        let indices = self.input(n, 1)?;
        if !matches!(indices.elem, Elem::I64 | Elem::I32) {
            return Err(unsupported(n, "indices are not i64 or i32"));
        }
        let axis = axis_index(n.int_attr("axis", 0), data.dims.len());
        Ok((data, indices, axis))
    }

    /// `x` as the constant it is, permuted by `perm` here; or a
    /// `tosa.transpose` of it.
    pub(super) fn permuted_input(
        &mut self,
        n: &Node,
        slot: usize,
        perm: &[usize],
    ) -> Result<Operand> {
        let v = n
            .input(slot)
            .ok_or_else(|| unsupported(n, format!("missing input {slot}")))?;
        if let Some(values) = constant(self.g, v).and_then(|t| t.to_f32_vec().ok()) {
            let dims = self.dims(v).unwrap_or_default();
            let out_dims: Vec<i64> = perm.iter().map(|&p| dims[p]).collect();
            let key = (v, perm.to_vec());
            if let Some(name) = self.permuted.get(&key) {
                return Ok(Operand::f32(name.clone(), &out_dims));
            }
            let (data, _) = permute(&values, &dims, perm);
            let name = self.f32_constant(&out_dims, &data, n.display_name())?;
            self.permuted.insert(key, name.clone());
            return Ok(Operand::f32(name, &out_dims));
        }
        let x = self.input(n, slot)?;
        let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
        let dims: Vec<i64> = perm.iter().map(|&p| x.dims[p as usize]).collect();
        Ok(Operand {
            name: self.transpose(&x, &perm),
            dims,
            elem: x.elem,
        })
    }

    /// Tile: the output read back into the input, each index modulo the
    /// input's dim (the repeats are constant).
    pub(super) fn tile(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        let exprs = x
            .dims
            .iter()
            .zip(od)
            .enumerate()
            .map(|(k, (&d, &o))| {
                if d == o {
                    format!("d{k}")
                } else {
                    format!("d{k} mod {d}")
                }
            })
            .collect();
        let elem = x.elem;
        Ok(
            self.generic(od, elem, &[MapIn { operand: &x, exprs }], &|_, a| {
                a[0].clone()
            }),
        )
    }

    /// `tensor.pad` of every axis by `low`/`high` with `value`.
    pub(super) fn pad_axes(
        &mut self,
        x: &Operand,
        low: &[i64],
        high: &[i64],
        value: f64,
    ) -> Operand {
        if low.iter().chain(high).all(|&p| p == 0) {
            return x.clone();
        }
        let pd: Vec<i64> = x
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| d + low[i] + high[i])
            .collect();
        let (c, r) = (self.fresh(), self.fresh());
        let ty = x.elem.mlir();
        self.line(&format!("{c} = {}", x.elem.scalar_constant(value)));
        let idx: Vec<String> = (0..x.dims.len())
            .map(|i| format!("%i{}_{i}: index", self.next))
            .collect();
        self.line(&format!(
            "{r} = tensor.pad {} low[{}] high[{}] {{",
            x.name,
            list(low),
            list(high)
        ));
        self.line(&format!("^bb0({}):", idx.join(", ")));
        self.line(&format!("  tensor.yield {c} : {ty}"));
        self.line(&format!("}} : {} to {}", x.ty(), tensor_type(&pd, x.elem)));
        Operand {
            name: r,
            dims: pd,
            elem: x.elem,
        }
    }

    /// The Pad op in constant mode (pads, value and axes constant).
    pub(super) fn pad_op(&mut self, n: &Node) -> Result<String> {
        let x = self.input(n, 0)?;
        let (low, high, value) = self.pad_amounts(n, x.dims.len())?;
        Ok(self.pad_axes(&x, &low, &high, value).name)
    }

    /// A constant-mode Pad's padding before and after every axis, and its
    /// value (pads, value and axes are inputs from opset 11, attributes
    /// before).
    pub(super) fn pad_amounts(&self, n: &Node, rank: usize) -> Result<(Vec<i64>, Vec<i64>, f64)> {
        let mode = n
            .attr("mode")
            .and_then(AttrValue::as_str)
            .unwrap_or("constant");
        if mode != "constant" {
            return Err(unsupported(n, format!("mode={mode} (constant only)")));
        }
        let (pads, value, axes) = if self.opset >= 11 {
            let pads = self
                .const_ints(n, 1)?
                .ok_or_else(|| unsupported(n, "no pads"))?;
            let value = self.const_scalar(n, 2)?.unwrap_or(0.0);
            let axes = self.const_ints(n, 3)?;
            (pads, value, axes)
        } else {
            let pads = n
                .ints_attr("pads")
                .ok_or_else(|| unsupported(n, "no pads"))?;
            (pads, n.float_attr("value", 0.0), None)
        };
        let axes: Vec<usize> = axes
            .unwrap_or_else(|| (0..rank as i64).collect())
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect();
        if pads.len() != 2 * axes.len() {
            return Err(unsupported(n, "pads do not match the axes"));
        }
        if pads.iter().any(|&p| p < 0) {
            return Err(unsupported(n, "negative pads (cropping)"));
        }
        let (mut low, mut high) = (vec![0; rank], vec![0; rank]);
        for (i, &a) in axes.iter().enumerate() {
            low[a] = pads[i];
            high[a] = pads[i + axes.len()];
        }
        Ok((low, high, value))
    }

    /// Shape (with start/end) and Size: constants, since every shape is
    /// static.
    pub(super) fn shape_constant(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        let values: Vec<i64> = if n.op_type == "Size" {
            vec![x.dims.iter().product()]
        } else {
            let rank = x.dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(n.int_attr("start", 0));
            let end = clamp(n.int_attr("end", rank));
            x.dims[start..end.max(start)].to_vec()
        };
        self.constant(&Tensor::from_i64(od.to_vec(), &values), n.display_name())
    }
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_moves_axes() {
        // [2, 3] transposed.
        let (v, d) = permute(&[0., 1., 2., 3., 4., 5.], &[2, 3], &[1, 0]);
        assert_eq!(d, vec![3, 2]);
        assert_eq!(v, vec![0., 3., 1., 4., 2., 5.]);
    }
}
