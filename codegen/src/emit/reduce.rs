//! Reductions over f32: one `linalg.generic` with reduction iterators
//! into a filled init, with an element-wise step before (|x|, x²) or after
//! (÷ count, √) where the op needs one.

use super::{axis_index, f32_type, tensor_type, unsupported, Elem, Emitter, MapIn, Operand};
use crate::Result;
use sculpt_ir::Node;

/// For a reduction over `axes` of a rank-`rank` input: the loop dims, the
/// output map's results (reduced axes kept as 0) and the iterator types.
fn reduction_maps(rank: usize, axes: &[usize]) -> (Vec<String>, Vec<String>, Vec<&'static str>) {
    let dims = (0..rank).map(|i| format!("d{i}")).collect();
    let out_map = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                "0".into()
            } else {
                format!("d{i}")
            }
        })
        .collect();
    let iterators = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                "\"reduction\""
            } else {
                "\"parallel\""
            }
        })
        .collect();
    (dims, out_map, iterators)
}

impl Emitter<'_> {
    /// ReduceSum, Mean, Max, Min, Prod, L1, L2, SumSquare over
    /// [`Self::reduced_axes`].
    pub(super) fn reduce(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let Some(axes) = self.reduced_axes(n, x.dims.len())? else {
            return Ok(x.name);
        };
        let op = n.op_type.as_str();
        let dims = x.dims.clone();
        let source = match op {
            "ReduceL1" => Operand::f32(
                self.elementwise(&dims, &[x], &|b, a| b.op("math.absf", &a[0])),
                &dims,
            ),
            "ReduceL2" | "ReduceSumSquare" => Operand::f32(
                self.elementwise(&dims, &[x], &|b, a| b.bin("arith.mulf", &a[0], &a[0])),
                &dims,
            ),
            _ => x,
        };
        let (combine, init) = match op {
            "ReduceMax" => ("arith.maximumf", f64::NEG_INFINITY),
            "ReduceMin" => ("arith.minimumf", f64::INFINITY),
            "ReduceProd" => ("arith.mulf", 1.0),
            _ => ("arith.addf", 0.0),
        };
        let (reduced, kept) = self.reduce_axes(&source, &axes, combine, init);
        let result = match op {
            "ReduceMean" => {
                let count: i64 = axes.iter().map(|&i| source.dims[i]).product();
                self.elementwise(&kept, &[Operand::f32(reduced, &kept)], &|b, a| {
                    let k = b.constant(count as f64);
                    b.bin("arith.divf", &a[0], &k)
                })
            }
            "ReduceL2" => self.elementwise(&kept, &[Operand::f32(reduced, &kept)], &|b, a| {
                b.op("math.sqrt", &a[0])
            }),
            _ => reduced,
        };
        self.reshape(&Operand::f32(result, &kept), od)
    }

    /// ArgMax / ArgMin along `axis` (i64 indices; ties to the first
    /// index, or the last with `select_last_index`): one generic with the
    /// running best value and its index as outputs.
    pub(super) fn arg_extreme(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        if !x.elem.is_float() {
            return Err(unsupported(n, "integer input (float only)"));
        }
        let rank = x.dims.len();
        let axis = axis_index(n.int_attr("axis", 0), rank);
        let max = n.op_type == "ArgMax";
        let last = n.int_attr("select_last_index", 0) != 0;
        let predicate = match (max, last) {
            (true, false) => "ogt",
            (true, true) => "oge",
            (false, false) => "olt",
            (false, true) => "ole",
        };
        let mut kept = x.dims.clone();
        kept[axis] = 1;
        let best = self.filled(
            &kept,
            if max {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
        );
        let (zero, empty, index) = (self.fresh(), self.fresh(), self.fresh());
        let ity = tensor_type(&kept, Elem::I64);
        self.line(&format!("{zero} = arith.constant 0 : i64"));
        self.line(&format!("{empty} = tensor.empty() : {ity}"));
        self.line(&format!(
            "{index} = linalg.fill ins({zero} : i64) outs({empty} : {ity}) -> {ity}"
        ));
        let (dims, out_map, iterators) = reduction_maps(rank, &[axis]);
        let (r, a, v, i, k, ki, better, nv, ni) = (
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
        );
        let fty = f32_type(&kept);
        self.line(&format!(
            "{r}:2 = linalg.generic {{indexing_maps = [affine_map<({d}) -> ({d})>, affine_map<({d}) -> ({o})>, affine_map<({d}) -> ({o})>], iterator_types = [{}]}} ins({} : {}) outs({best}, {index} : {fty}, {ity}) {{",
            iterators.join(", "),
            x.name,
            x.ty(),
            d = dims.join(", "),
            o = out_map.join(", ")
        ));
        self.line(&format!("^bb0({a}: f32, {v}: f32, {i}: i64):"));
        self.line(&format!("  {k} = linalg.index {axis} : index"));
        self.line(&format!("  {ki} = arith.index_cast {k} : index to i64"));
        self.line(&format!(
            "  {better} = arith.cmpf {predicate}, {a}, {v} : f32"
        ));
        self.line(&format!("  {nv} = arith.select {better}, {a}, {v} : f32"));
        self.line(&format!("  {ni} = arith.select {better}, {ki}, {i} : i64"));
        self.line(&format!("  linalg.yield {nv}, {ni} : f32, i64"));
        self.line(&format!("}} -> ({fty}, {ity})"));
        let indices = Operand {
            name: format!("{r}#1"),
            dims: kept,
            elem: Elem::I64,
        };
        self.reshape(&indices, od)
    }

    /// The axes a Reduce* op reduces: from the attribute (before opset 18;
    /// ReduceSum before 13) or a constant input; none means all, or `None`
    /// (nothing to reduce) with `noop_with_empty_axes`.
    pub(super) fn reduced_axes(&self, n: &Node, rank: usize) -> Result<Option<Vec<usize>>> {
        let axes = match n.ints_attr("axes") {
            Some(a) => Some(a),
            None => self.const_ints(n, 1)?,
        };
        Ok(match axes {
            Some(a) if !a.is_empty() => Some(a.iter().map(|&a| axis_index(a, rank)).collect()),
            _ if n.int_attr("noop_with_empty_axes", 0) != 0 => None,
            _ => Some((0..rank).collect()),
        })
    }

    /// `x` reduced over `axes` with `combine` from `init`, keeping the
    /// reduced axes as 1; returns the result and its dims.
    pub(super) fn reduce_axes(
        &mut self,
        x: &Operand,
        axes: &[usize],
        combine: &str,
        init: f64,
    ) -> (String, Vec<i64>) {
        let rank = x.dims.len();
        let kept: Vec<i64> = (0..rank)
            .map(|i| if axes.contains(&i) { 1 } else { x.dims[i] })
            .collect();
        let (dims, out_map, iterators) = reduction_maps(rank, axes);
        let filled = self.filled(&kept, init);
        let (r, a, o, s) = (self.fresh(), self.fresh(), self.fresh(), self.fresh());
        self.line(&format!(
            "{r} = linalg.generic {{indexing_maps = [affine_map<({d}) -> ({d})>, affine_map<({d}) -> ({})>], iterator_types = [{}]}} ins({} : {}) outs({filled} : {}) {{",
            out_map.join(", "),
            iterators.join(", "),
            x.name,
            x.ty(),
            f32_type(&kept),
            d = dims.join(", ")
        ));
        self.line(&format!("^bb0({a}: f32, {o}: f32):"));
        self.line(&format!("  {s} = {combine} {a}, {o} : f32"));
        self.line(&format!("  linalg.yield {s} : f32"));
        self.line(&format!("}} -> {}", f32_type(&kept)));
        (r, kept)
    }

    /// CumSum along a constant axis: `out[.., i, ..] = Σ x[.., j, ..]`
    /// over j ≤ i (j < i when exclusive; j ≥ i, j > i reversed), as one
    /// generic whose extra reduction loop walks j.
    pub(super) fn cumsum(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.input(n, 0)?;
        if x.elem == Elem::Bool {
            return Err(unsupported(n, "bool input"));
        }
        let rank = x.dims.len();
        let axis = self
            .const_ints(n, 1)?
            .and_then(|a| a.first().copied())
            .ok_or_else(|| unsupported(n, "no axis"))?;
        let axis = axis_index(axis, rank);
        let predicate = match (
            n.int_attr("reverse", 0) != 0,
            n.int_attr("exclusive", 0) != 0,
        ) {
            (false, false) => "sle",
            (false, true) => "slt",
            (true, false) => "sge",
            (true, true) => "sgt",
        };
        let exprs = (0..rank)
            .map(|k| {
                if k == axis {
                    format!("d{rank}")
                } else {
                    format!("d{k}")
                }
            })
            .collect();
        let out_map: Vec<String> = (0..rank).map(|k| format!("d{k}")).collect();
        let mut iterators = vec!["parallel"; rank];
        iterators.push("reduction");
        let elem = x.elem;
        let init = Operand {
            name: self.filled_of(od, elem, 0.0),
            dims: od.to_vec(),
            elem,
        };
        let add = if elem.is_float() {
            "arith.addf"
        } else {
            "arith.addi"
        };
        let ty = elem.mlir();
        Ok(self.accumulate(
            &iterators,
            &[MapIn { operand: &x, exprs }],
            &init,
            &out_map,
            &|b, a, acc| {
                let i = b.assign(format!("linalg.index {axis} : index"));
                let j = b.assign(format!("linalg.index {rank} : index"));
                let taken = b.assign(format!("arith.cmpi {predicate}, {j}, {i} : index"));
                let zero = b.constant_of(0.0, elem);
                let term = b.assign(format!("arith.select {taken}, {}, {zero} : {ty}", a[0]));
                b.assign(format!("{add} {acc}, {term} : {ty}"))
            },
        ))
    }
}
