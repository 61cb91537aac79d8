//! Network layers on f32: convolution and pooling (linalg named ops over
//! a `tensor.pad`), Gemm and MatMul (`linalg.matmul` /
//! `linalg.batch_matmul`), batch and layer normalization, LRN, Softmax.

use super::{axis_index, f32_type, lrn_params, unsupported, Elem, Emitter, Layout, MapIn, Operand};
use crate::Result;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{AttrValue, Node};

/// The broadcast of two MatMul operands' batch dims (equal ranks).
pub(super) fn broadcast_batch(n: &Node, a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x != y && x != 1 && y != 1 {
                Err(unsupported(n, "batch dimensions do not broadcast"))
            } else {
                Ok(x.max(y))
            }
        })
        .collect()
}

/// The `dilations` and `strides` attributes of a linalg convolution or
/// pooling op over two spatial dims.
pub(super) fn window_attrs(strides: &[i64], dilations: &[i64]) -> String {
    format!(
        "{{dilations = dense<[{}, {}]> : tensor<2xi64>, strides = dense<[{}, {}]> : tensor<2xi64>}}",
        dilations[0], dilations[1], strides[0], strides[1]
    )
}

/// The padding past the end of each spatial axis that ceil_mode's last
/// windows reach (0 without ceil_mode): `output`'s windows need
/// `(out − 1)·stride + dilation·(kernel − 1) + 1` elements.
pub(super) fn ceil_extra(
    input: &[i64],
    output: &[i64],
    kernel: &[i64],
    pads: &[i64],
    strides: &[i64],
    dilations: &[i64],
) -> Vec<i64> {
    let k = input.len();
    (0..k)
        .map(|i| {
            let needed = (output[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1;
            (needed - input[i] - pads[i] - pads[i + k]).max(0)
        })
        .collect()
}

/// How a normalization op normalizes (see [`Emitter::norm_plan`]).
pub(super) struct NormPlan {
    pub view: Vec<i64>,
    pub axes: Vec<usize>,
    pub affine: Option<Vec<i64>>,
}

impl Emitter<'_> {
    /// An f32 input of `n`, or an error naming the element type.
    fn float_input(&mut self, n: &Node, slot: usize) -> Result<Operand> {
        let x = self.input(n, slot)?;
        if !x.elem.is_float() {
            return Err(unsupported(
                n,
                format!("input {slot} is {} (float only)", x.elem.mlir()),
            ));
        }
        Ok(x)
    }

    /// `tensor.pad` with `value` on the spatial axes (NCHW).
    fn pad_spatial(&mut self, x: &Operand, pads: &[i64], value: f64) -> Operand {
        let k = x.dims.len() - 2;
        let mut low = vec![0i64, 0];
        let mut high = vec![0i64, 0];
        low.extend(&pads[..k]);
        high.extend(&pads[k..]);
        self.pad_axes(x, &low, &high, value)
    }

    pub(super) fn spatial(&self, n: &Node, k: usize) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>)> {
        let auto = n
            .attr("auto_pad")
            .and_then(AttrValue::as_str)
            .unwrap_or("NOTSET");
        if auto != "NOTSET" && auto != "VALID" {
            return Err(unsupported(
                n,
                format!("auto_pad={auto} (run cleanup or export with explicit pads)"),
            ));
        }
        let pads = n.ints_attr("pads").unwrap_or(vec![0; 2 * k]);
        let strides = n.ints_attr("strides").unwrap_or(vec![1; k]);
        let dilations = n.ints_attr("dilations").unwrap_or(vec![1; k]);
        Ok((pads, strides, dilations))
    }

    pub(super) fn conv(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.float_input(n, 0)?;
        let w = self.float_input(n, 1)?;
        if x.dims.len() != 4 {
            return Err(unsupported(
                n,
                format!("{}-d convolution (1-d and 2-d only)", x.dims.len() - 2),
            ));
        }
        let (pads, strides, dilations) = self.spatial(n, 2)?;
        let group = n.int_attr("group", 1);
        let spatial = (pads.as_slice(), strides.as_slice(), dilations.as_slice());
        if let Some(product) = self.integer_conv(n, od, spatial)? {
            return Ok(product);
        }
        let pointwise = w.dims[2..] == [1, 1]
            && group == 1
            && x.dims[0] == 1
            && strides == [1, 1]
            && pads.iter().all(|&p| p == 0);
        if pointwise {
            return self.pointwise_conv(n, &x, &w, od);
        }
        match self.layout {
            Layout::Nchw => self.conv_nchw(n, &x, &w, od, spatial),
            Layout::Nhwc => self.conv_nhwc(n, &x, &w, od, spatial),
        }
    }

    /// A convolution on NCHW as ONNX lays it out: the input padded, the
    /// bias broadcast into the init, `linalg.conv_2d_nchw_fchw` (groups:
    /// `conv_2d_ngchw_gfchw` on views with the group axis split out).
    fn conv_nchw(
        &mut self,
        n: &Node,
        x: &Operand,
        w: &Operand,
        od: &[i64],
        (pads, strides, dilations): (&[i64], &[i64], &[i64]),
    ) -> Result<String> {
        let group = n.int_attr("group", 1);
        let xp = self.pad_spatial(x, pads, 0.0);
        // Init: the bias broadcast over the output, or zeros.
        let init = match n.input(2) {
            Some(_) => {
                let bias = self.float_input(n, 2)?;
                let reshaped = self.reshape(&bias, &[od[1], 1, 1])?;
                let bias = Operand::f32(reshaped, &[od[1], 1, 1]);
                self.elementwise(od, &[bias], &|_, a| a[0].clone())
            }
            None => self.filled(od, 0.0),
        };
        let attrs = window_attrs(strides, dilations);
        let r = self.fresh();
        if group == 1 {
            self.line(&format!(
                "{r} = linalg.conv_2d_nchw_fchw {attrs} ins({}, {} : {}, {}) outs({init} : {}) -> {}",
                xp.name,
                w.name,
                xp.ty(),
                w.ty(),
                f32_type(od),
                f32_type(od)
            ));
            return Ok(r);
        }
        // Grouped: expand the group axis out of channels and filters.
        let (g, pd, wd) = (group, &xp.dims, &w.dims);
        let xg = vec![pd[0], g, pd[1] / g, pd[2], pd[3]];
        let wg = vec![g, wd[0] / g, wd[1], wd[2], wd[3]];
        let og = vec![od[0], g, od[1] / g, od[2], od[3]];
        let xe = self.reshape(&xp, &xg)?;
        let we = self.reshape(w, &wg)?;
        let ie = self.reshape(&Operand::f32(init, od), &og)?;
        self.line(&format!(
            "{r} = linalg.conv_2d_ngchw_gfchw {attrs} ins({xe}, {we} : {}, {}) outs({ie} : {}) -> {}",
            f32_type(&xg),
            f32_type(&wg),
            f32_type(&og),
            f32_type(&og)
        ));
        self.reshape(&Operand::f32(r, &og), od)
    }

    /// A convolution computed channels-last (`--conv-layout nhwc`): the input transposed to NHWC and padded, the weights
    /// permuted here (constants) to the filter layout of the op, the bias
    /// broadcast into the init, and the result transposed back to NCHW.
    /// IREE propagates and cancels the transposes between neighbouring
    /// convolutions, so they remain only at the graph's edges. Group 1:
    /// `linalg.conv_2d_nhwc_hwcf`; one input channel per group
    /// (depthwise): `depthwise_conv_2d_nhwc_hwc` (`_hwcm` with a channel
    /// multiplier); other groups: `conv_2d_nhwgc_gfhwc`.
    fn conv_nhwc(
        &mut self,
        n: &Node,
        x: &Operand,
        w: &Operand,
        od: &[i64],
        (pads, strides, dilations): (&[i64], &[i64], &[i64]),
    ) -> Result<String> {
        let group = n.int_attr("group", 1);
        let (batch, c_in, f) = (x.dims[0], x.dims[1], od[1]);
        let (kh, kw) = (w.dims[2], w.dims[3]);
        let (oh, ow) = (od[2], od[3]);
        let nhwc = Operand::f32(
            self.transpose(x, &[0, 2, 3, 1]),
            &[batch, x.dims[2], x.dims[3], c_in],
        );
        let xp = self.pad_axes(
            &nhwc,
            &[0, pads[0], pads[1], 0],
            &[0, pads[2], pads[3], 0],
            0.0,
        );
        let out = [batch, oh, ow, f];
        // Init: the bias broadcast over the channels-last output, or zeros.
        let init = match n.input(2) {
            Some(_) => {
                let bias = self.float_input(n, 2)?;
                self.elementwise(&out, &[bias], &|_, a| a[0].clone())
            }
            None => self.filled(&out, 0.0),
        };
        let attrs = window_attrs(strides, dilations);
        let depthwise = group == c_in && w.dims[1] == 1;
        let (op, xs, ws, os): (&str, Operand, Operand, Vec<i64>) = if group == 1 {
            let hwcf = self.permuted_input(n, 1, &[2, 3, 1, 0])?;
            ("conv_2d_nhwc_hwcf", xp, hwcf, out.to_vec())
        } else if depthwise && f == c_in {
            let hwc4 = self.permuted_input(n, 1, &[2, 3, 0, 1])?;
            let hwc = Operand::f32(self.reshape(&hwc4, &[kh, kw, c_in])?, &[kh, kw, c_in]);
            ("depthwise_conv_2d_nhwc_hwc", xp, hwc, out.to_vec())
        } else if depthwise {
            let m = f / c_in;
            let hwf = self.permuted_input(n, 1, &[2, 3, 0, 1])?;
            let hwcm = Operand::f32(self.reshape(&hwf, &[kh, kw, c_in, m])?, &[kh, kw, c_in, m]);
            (
                "depthwise_conv_2d_nhwc_hwcm",
                xp,
                hwcm,
                vec![batch, oh, ow, c_in, m],
            )
        } else {
            let (cg, fg) = (c_in / group, f / group);
            let pd = &xp.dims;
            let xg = vec![pd[0], pd[1], pd[2], group, cg];
            let xg = Operand::f32(self.reshape(&xp, &xg)?, &xg);
            let grouped = [group, fg, cg, kh, kw];
            let wg = Operand::f32(self.reshape(w, &grouped)?, &grouped);
            let gfhwc = [group, fg, kh, kw, cg];
            let gfhwc = Operand::f32(self.transpose(&wg, &[0, 1, 3, 4, 2]), &gfhwc);
            (
                "conv_2d_nhwgc_gfhwc",
                xg,
                gfhwc,
                vec![batch, oh, ow, group, fg],
            )
        };
        let init = self.reshape(&Operand::f32(init, &out), &os)?;
        let r = self.fresh();
        self.line(&format!(
            "{r} = linalg.{op} {attrs} ins({}, {} : {}, {}) outs({init} : {}) -> {}",
            xs.name,
            ws.name,
            xs.ty(),
            ws.ty(),
            f32_type(&os),
            f32_type(&os)
        ));
        let result = Operand::f32(self.reshape(&Operand::f32(r, &os), &out)?, &out);
        Ok(self.transpose(&result, &[0, 3, 1, 2]))
    }

    /// A 1×1 convolution of one image as a matmul: `W[Cout, Cin] ·
    /// X[Cin, H·W]`, into the bias broadcast over the pixels.
    fn pointwise_conv(&mut self, n: &Node, x: &Operand, w: &Operand, od: &[i64]) -> Result<String> {
        let (c_in, c_out, pixels) = (x.dims[1], w.dims[0], od[2] * od[3]);
        let w2 = Operand::f32(self.reshape(w, &[c_out, c_in])?, &[c_out, c_in]);
        let x2 = Operand::f32(self.reshape(x, &[c_in, pixels])?, &[c_in, pixels]);
        let out = [c_out, pixels];
        let init = match n.input(2) {
            Some(_) => {
                let bias = self.float_input(n, 2)?;
                let column = Operand::f32(self.reshape(&bias, &[c_out, 1])?, &[c_out, 1]);
                self.elementwise(&out, &[column], &|_, a| a[0].clone())
            }
            None => self.filled(&out, 0.0),
        };
        let r = self.fresh();
        self.line(&format!(
            "{r} = linalg.matmul ins({}, {} : {}, {}) outs({init} : {}) -> {}",
            w2.name,
            x2.name,
            w2.ty(),
            x2.ty(),
            f32_type(&out),
            f32_type(&out)
        ));
        self.reshape(&Operand::f32(r, &out), od)
    }

    pub(super) fn pool(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.float_input(n, 0)?;
        let xd = x.dims.clone();
        if xd.len() != 4 {
            return Err(unsupported(n, "1-d and 2-d pooling only"));
        }
        let global = n.op_type.starts_with("Global");
        let max = n.op_type.ends_with("MaxPool");
        if global {
            // A reduction over the plane (a window the size of the plane
            // as a pooling op is much slower to compile well).
            let (combine, init) = if max {
                ("arith.maximumf", f64::NEG_INFINITY)
            } else {
                ("arith.addf", 0.0)
            };
            let (r, kept) = self.reduce_axes(&x, &[2, 3], combine, init);
            if max {
                return Ok(r);
            }
            let count = (xd[2] * xd[3]) as f64;
            return Ok(self.elementwise(od, &[Operand::f32(r, &kept)], &|b, a| {
                let k = b.constant(count);
                b.bin("arith.divf", &a[0], &k)
            }));
        }
        let (kernel, pads, strides, dilations) = if global {
            (vec![xd[2], xd[3]], vec![0; 4], vec![1, 1], vec![1, 1])
        } else {
            let (p, s, d) = self.spatial(n, 2)?;
            let k = n
                .ints_attr("kernel_shape")
                .ok_or_else(|| unsupported(n, "no kernel_shape"))?;
            (k, p, s, d)
        };
        // ceil_mode's last windows reach past the padding: pad for them,
        // without counting what they cover.
        let extra = ceil_extra(&xd[2..], &od[2..], &kernel, &pads, &strides, &dilations);
        let all_pads = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]];
        let xp = self.pad_spatial(&x, &all_pads, if max { f64::NEG_INFINITY } else { 0.0 });
        let init = self.filled(od, if max { f64::from(f32::MIN) } else { 0.0 });
        let window = self.empty(&kernel, Elem::F32);
        let r = self.fresh();
        let kind = if max {
            "pooling_nchw_max"
        } else {
            "pooling_nchw_sum"
        };
        let attrs = window_attrs(&strides, &dilations);
        self.line(&format!(
            "{r} = linalg.{kind} {attrs} ins({}, {window} : {}, {}) outs({init} : {}) -> {}",
            xp.name,
            xp.ty(),
            f32_type(&kernel),
            f32_type(od),
            f32_type(od)
        ));
        if max {
            return Ok(r);
        }
        // The counted region is the input, with its explicit padding when
        // count_include_pad=1; each window divides by what it covers of it.
        let (plane, uncounted) = if n.int_attr("count_include_pad", 0) != 0 {
            let plane = [1, 1, xd[2] + pads[0] + pads[2], xd[3] + pads[1] + pads[3]];
            (plane, [0, 0, extra[0], extra[1]])
        } else {
            ([1, 1, xd[2], xd[3]], all_pads)
        };
        if uncounted.iter().any(|&p| p != 0) {
            let ones = self.filled(&plane, 1.0);
            let padded = self.pad_spatial(&Operand::f32(ones, &plane), &uncounted, 0.0);
            let counts_dims = [1, 1, od[2], od[3]];
            let zeros = self.filled(&counts_dims, 0.0);
            let window = self.empty(&kernel, Elem::F32);
            let counts = self.fresh();
            self.line(&format!(
                "{counts} = linalg.pooling_nchw_sum {attrs} ins({}, {window} : {}, {}) outs({zeros} : {}) -> {}",
                padded.name,
                padded.ty(),
                f32_type(&kernel),
                f32_type(&counts_dims),
                f32_type(&counts_dims)
            ));
            let parts = [Operand::f32(r, od), Operand::f32(counts, &counts_dims)];
            return Ok(self.elementwise(od, &parts, &|b, a| b.bin("arith.divf", &a[0], &a[1])));
        }
        let count = (kernel[0] * kernel[1]) as f64;
        Ok(self.elementwise(od, &[Operand::f32(r, od)], &|b, a| {
            let k = b.constant(count);
            b.bin("arith.divf", &a[0], &k)
        }))
    }

    /// `linalg.matmul` of two f32 matrices into a zero-filled `[M, N]`.
    fn matmul_2d(&mut self, a: &Operand, b: &Operand) -> String {
        let od = [a.dims[0], b.dims[1]];
        let init = self.filled(&od, 0.0);
        let r = self.fresh();
        self.line(&format!(
            "{r} = linalg.matmul ins({}, {} : {}, {}) outs({init} : {}) -> {}",
            a.name,
            b.name,
            a.ty(),
            b.ty(),
            f32_type(&od),
            f32_type(&od)
        ));
        r
    }

    pub(super) fn gemm(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        if let Some(product) = self.integer_gemm(n, od)? {
            return Ok(product);
        }
        let mut a = self.float_input(n, 0)?;
        let mut b = self.float_input(n, 1)?;
        for (operand, attr) in [(&mut a, "transA"), (&mut b, "transB")] {
            if n.int_attr(attr, 0) == 1 {
                let name = self.transpose(operand, &[1, 0]);
                *operand = Operand::f32(name, &[operand.dims[1], operand.dims[0]]);
            }
        }
        let product = Operand::f32(self.matmul_2d(&a, &b), od);
        let (alpha, beta) = (n.float_attr("alpha", 1.0), n.float_attr("beta", 1.0));
        if n.input(2).is_none() {
            if alpha == 1.0 {
                return Ok(product.name);
            }
            return Ok(self.elementwise(od, &[product], &|b, a| {
                let k = b.constant(alpha);
                b.bin("arith.mulf", &a[0], &k)
            }));
        }
        let c = self.float_input(n, 2)?;
        Ok(self.elementwise(od, &[product, c], &|b, a| {
            let (ka, kb) = (b.constant(alpha), b.constant(beta));
            let p = b.bin("arith.mulf", &a[0], &ka);
            let q = b.bin("arith.mulf", &a[1], &kb);
            b.bin("arith.addf", &p, &q)
        }))
    }

    /// MatMul with numpy semantics: 1-d operands promoted (and the added
    /// axis dropped from the result by the final reshape), batch dims
    /// broadcast, then collapsed into one.
    pub(super) fn matmul(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let mut a = self.float_input(n, 0)?;
        let mut b = self.float_input(n, 1)?;
        if a.dims.len() == 1 {
            let row = [1, a.dims[0]];
            a = Operand::f32(self.reshape(&a, &row)?, &row);
        }
        if b.dims.len() == 1 {
            let column = [b.dims[0], 1];
            b = Operand::f32(self.reshape(&b, &column)?, &column);
        }
        let (ra, rb) = (a.dims.len(), b.dims.len());
        let (m, k, nn) = (a.dims[ra - 2], a.dims[ra - 1], b.dims[rb - 1]);
        if rb == 2 {
            // [.., M, K] x [K, N]: rows of every batch at once.
            let rows: i64 = a.dims[..ra - 1].iter().product();
            let a2 = Operand::f32(self.reshape(&a, &[rows, k])?, &[rows, k]);
            let b2 = Operand::f32(self.reshape(&b, &[k, nn])?, &[k, nn]);
            let r = self.matmul_2d(&a2, &b2);
            return self.reshape(&Operand::f32(r, &[rows, nn]), od);
        }
        // The broadcast batch shape, and each operand expanded to it.
        let rank = ra.max(rb);
        let batch_of = |d: &[i64]| -> Vec<i64> {
            let mut v = vec![1; rank - d.len()];
            v.extend(&d[..d.len() - 2]);
            v
        };
        let batch_dims = broadcast_batch(n, &batch_of(&a.dims), &batch_of(&b.dims))?;
        let batch: i64 = batch_dims.iter().product();
        let mut flat = Vec::new();
        for (operand, rows, cols) in [(&a, m, k), (&b, k, nn)] {
            let mut full = batch_dims.clone();
            full.extend([rows, cols]);
            let expanded = if operand.dims == full {
                operand.name.clone()
            } else {
                self.elementwise(&full, std::slice::from_ref(operand), &|_, v| v[0].clone())
            };
            let name = self.reshape(&Operand::f32(expanded, &full), &[batch, rows, cols])?;
            flat.push(Operand::f32(name, &[batch, rows, cols]));
        }
        let out3 = [batch, m, nn];
        let init = self.filled(&out3, 0.0);
        let r = self.fresh();
        self.line(&format!(
            "{r} = linalg.batch_matmul ins({}, {} : {}, {}) outs({init} : {}) -> {}",
            flat[0].name,
            flat[1].name,
            flat[0].ty(),
            flat[1].ty(),
            f32_type(&out3),
            f32_type(&out3)
        ));
        self.reshape(&Operand::f32(r, &out3), od)
    }

    pub(super) fn batch_norm(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let (a, b) = self.batch_norm_affine(n)?;
        let mut shape = vec![a.len() as i64];
        shape.extend(std::iter::repeat_n(1, od.len().saturating_sub(2)));
        let an = self.f32_constant(&shape, &a, n.display_name())?;
        let bn = self.f32_constant(&shape, &b, n.display_name())?;
        let x = self.float_input(n, 0)?;
        Ok(self.scale_shift(x, Operand::f32(an, &shape), Operand::f32(bn, &shape), od))
    }

    /// Inference BatchNormalization as `x · a + b` per channel: `a =
    /// scale / √(var + ε)`, `b = shift − mean · a` (its parameters must be
    /// constants).
    pub(super) fn batch_norm_affine(&self, n: &Node) -> Result<(Vec<f32>, Vec<f32>)> {
        let param = |i: usize| -> Result<Vec<f32>> {
            n.input(i)
                .and_then(|v| constant(self.g, v))
                .and_then(|t| t.to_f32_vec().ok())
                .ok_or_else(|| unsupported(n, "parameters are not constants"))
        };
        let (scale, shift, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let eps = n.float_attr("epsilon", 1e-5) as f32;
        let a: Vec<f32> = scale
            .iter()
            .zip(&var)
            .map(|(s, v)| s / (v + eps).sqrt())
            .collect();
        let b: Vec<f32> = shift
            .iter()
            .zip(&mean)
            .zip(&a)
            .map(|((s, m), a)| s - m * a)
            .collect();
        Ok((a, b))
    }

    /// How a normalization op normalizes `dims`: the view it reshapes the
    /// input to, the view's axes it normalizes over, and the dims its
    /// scale and bias broadcast as (`None`: as they are, trailing).
    pub(super) fn norm_plan(&self, n: &Node, dims: &[i64]) -> Result<NormPlan> {
        let rank = dims.len();
        let channel_affine = || {
            let mut d = vec![dims[1]];
            d.extend(std::iter::repeat_n(1, rank - 2));
            Some(d)
        };
        Ok(match n.op_type.as_str() {
            "LayerNormalization" | "RMSNormalization" => {
                let axis = axis_index(n.int_attr("axis", -1), rank);
                NormPlan {
                    view: dims.to_vec(),
                    axes: (axis..rank).collect(),
                    affine: None,
                }
            }
            "InstanceNormalization" => NormPlan {
                view: dims.to_vec(),
                axes: (2..rank).collect(),
                affine: channel_affine(),
            },
            _ => {
                let groups = n.int_attr("num_groups", 0);
                if groups <= 0 || rank < 2 || dims[1] % groups != 0 {
                    return Err(unsupported(n, "num_groups does not divide the channels"));
                }
                let per_group: i64 = dims[1..].iter().product::<i64>() / groups;
                NormPlan {
                    view: vec![dims[0], groups, per_group],
                    axes: vec![2],
                    affine: channel_affine(),
                }
            }
        })
    }

    /// The scale (slot 1) or bias (slot 2) of a normalization, shaped to
    /// broadcast over the output: per channel for Instance/GroupNorm (a
    /// GroupNormalization-18 per-group constant is repeated per channel).
    pub(super) fn norm_affine(
        &mut self,
        n: &Node,
        slot: usize,
        plan: &NormPlan,
    ) -> Result<Operand> {
        let p = self.float_input(n, slot)?;
        let Some(affine) = &plan.affine else {
            return Ok(p);
        };
        let channels = affine[0];
        let count: i64 = p.dims.iter().product();
        if count == channels {
            let name = self.reshape(&p, affine)?;
            return Ok(Operand::f32(name, affine));
        }
        let values = n
            .input(slot)
            .and_then(|v| constant(self.g, v))
            .and_then(|t| t.to_f32_vec().ok())
            .filter(|v| !v.is_empty() && channels % v.len() as i64 == 0)
            .ok_or_else(|| unsupported(n, "a per-group scale or bias that is not a constant"))?;
        let repeat = channels as usize / values.len();
        let per_channel: Vec<f32> = values
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, repeat))
            .collect();
        let name = self.f32_constant(affine, &per_channel, n.display_name())?;
        Ok(Operand::f32(name, affine))
    }

    /// Layer, instance and group normalization: `(x − mean) / √(var + ε)`
    /// over the plan's axes, then `· scale + bias`; RMS normalization:
    /// `x / √(mean(x²) + ε) · scale`.
    pub(super) fn normalization(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.float_input(n, 0)?;
        let plan = self.norm_plan(n, &x.dims)?;
        let view = plan.view.clone();
        let x = Operand::f32(self.reshape(&x, &view)?, &view);
        let count: i64 = plan.axes.iter().map(|&a| view[a]).product();
        let eps = n.float_attr("epsilon", 1e-5);
        // RMSNormalization scales by the root mean square: no centering.
        let centered = if n.op_type == "RMSNormalization" {
            x
        } else {
            let (sum, kept) = self.reduce_axes(&x, &plan.axes, "arith.addf", 0.0);
            let mean = Operand::f32(sum, &kept);
            let centered = self.elementwise(&view, &[x, mean], &|b, a| {
                let k = b.constant(count as f64);
                let m = b.bin("arith.divf", &a[1], &k);
                b.bin("arith.subf", &a[0], &m)
            });
            Operand::f32(centered, &view)
        };
        let squares = self.elementwise(&view, std::slice::from_ref(&centered), &|b, a| {
            b.bin("arith.mulf", &a[0], &a[0])
        });
        let (sq_sum, kept) =
            self.reduce_axes(&Operand::f32(squares, &view), &plan.axes, "arith.addf", 0.0);
        let normalized =
            self.elementwise(&view, &[centered, Operand::f32(sq_sum, &kept)], &|b, a| {
                let (k, e) = (b.constant(count as f64), b.constant(eps));
                let var = b.bin("arith.divf", &a[1], &k);
                let var = b.bin("arith.addf", &var, &e);
                let std = b.op("math.sqrt", &var);
                b.bin("arith.divf", &a[0], &std)
            });
        let y = Operand::f32(self.reshape(&Operand::f32(normalized, &view), od)?, od);
        let mut parts = vec![y, self.norm_affine(n, 1, &plan)?];
        let has_bias = n.input(2).is_some();
        if has_bias {
            parts.push(self.norm_affine(n, 2, &plan)?);
        }
        Ok(self.elementwise(od, &parts, &|b, a| {
            let y = b.bin("arith.mulf", &a[0], &a[1]);
            if has_bias {
                b.bin("arith.addf", &y, &a[2])
            } else {
                y
            }
        }))
    }

    /// LRN: `x / (bias + alpha/size · Σ x²)^beta`, the sum over a window
    /// of `size` channels (zero-padded): a `linalg.generic` whose fifth,
    /// reduction dim walks the window.
    pub(super) fn lrn(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.float_input(n, 0)?;
        if x.dims.len() != 4 {
            return Err(unsupported(n, "LRN on a tensor that is not NCHW"));
        }
        let (size, alpha, beta, bias) = lrn_params(n);
        let square = self.elementwise(od, std::slice::from_ref(&x), &|b, a| {
            b.bin("arith.mulf", &a[0], &a[0])
        });
        let (low, high) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
        let padded = self.pad_axes(
            &Operand::f32(square, od),
            &[0, low, 0, 0],
            &[0, high, 0, 0],
            0.0,
        );
        let window = self.empty(&[size], Elem::F32);
        let sums = self.filled(od, 0.0);
        let (r, a, w, o, t) = (
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
            self.fresh(),
        );
        self.line(&format!(
            "{r} = linalg.generic {{indexing_maps = [affine_map<(d0, d1, d2, d3, d4) -> (d0, d1 + d4, d2, d3)>, affine_map<(d0, d1, d2, d3, d4) -> (d4)>, affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>], iterator_types = [\"parallel\", \"parallel\", \"parallel\", \"parallel\", \"reduction\"]}} ins({}, {window} : {}, {}) outs({sums} : {}) {{",
            padded.name,
            padded.ty(),
            f32_type(&[size]),
            f32_type(od)
        ));
        self.line(&format!("^bb0({a}: f32, {w}: f32, {o}: f32):"));
        self.line(&format!("  {t} = arith.addf {a}, {o} : f32"));
        self.line(&format!("  linalg.yield {t} : f32"));
        self.line(&format!("}} -> {}", f32_type(od)));
        let scale = alpha / size as f64;
        Ok(self.elementwise(od, &[x, Operand::f32(r, od)], &|b, a| {
            let (k, c, e) = (b.constant(scale), b.constant(bias), b.constant(-beta));
            let s = b.bin("arith.mulf", &a[1], &k);
            let s = b.bin("arith.addf", &s, &c);
            let p = b.bin("math.powf", &s, &e);
            b.bin("arith.mulf", &a[0], &p)
        }))
    }

    /// The axes Softmax and LogSoftmax normalize over: `axis` (default −1)
    /// from opset 13; before it, every axis from `axis` on (default 1).
    pub(super) fn softmax_axes(&self, n: &Node, rank: usize) -> Vec<usize> {
        let old = self.opset < 13;
        let axis = axis_index(n.int_attr("axis", if old { 1 } else { -1 }), rank);
        if old {
            (axis..rank).collect()
        } else {
            vec![axis]
        }
    }

    /// Softmax decomposed: exp(x − max) / Σ exp(x − max) along `axis`
    /// (before opset 13: over every axis from `axis` on, default 1);
    /// LogSoftmax: (x − max) − log Σ exp(x − max).
    pub(super) fn softmax(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let x = self.float_input(n, 0)?;
        let axes = self.softmax_axes(n, od.len());
        let (max, kept) = self.reduce_axes(&x, &axes, "arith.maximumf", f64::NEG_INFINITY);
        let max = Operand::f32(max, &kept);
        let e = self.elementwise(od, &[x.clone(), max.clone()], &|b, a| {
            let d = b.bin("arith.subf", &a[0], &a[1]);
            b.op("math.exp", &d)
        });
        let (sum, _) = self.reduce_axes(&Operand::f32(e.clone(), od), &axes, "arith.addf", 0.0);
        let sum = Operand::f32(sum, &kept);
        if n.op_type == "LogSoftmax" {
            return Ok(self.elementwise(od, &[x, max, sum], &|b, a| {
                let d = b.bin("arith.subf", &a[0], &a[1]);
                let l = b.op("math.log", &a[2]);
                b.bin("arith.subf", &d, &l)
            }));
        }
        Ok(self.elementwise(od, &[Operand::f32(e, od), sum], &|b, a| {
            b.bin("arith.divf", &a[0], &a[1])
        }))
    }

    /// Einsum without ellipses: one generic whose loops are the output's
    /// letters (parallel) and then the summed ones (reduction); each
    /// operand is read through its letters, and the product of the
    /// operands is added up (a letter repeated in a term reads a
    /// diagonal).
    pub(super) fn einsum(&mut self, n: &Node, od: &[i64]) -> Result<String> {
        let equation = n
            .attr("equation")
            .and_then(AttrValue::as_str)
            .ok_or_else(|| unsupported(n, "no equation"))?;
        let slots: Vec<usize> = (0..n.inputs().len()).collect();
        let operands = self.operands(n, &slots)?;
        let dims: Vec<&[i64]> = operands.iter().map(|o| o.dims.as_slice()).collect();
        let plan = sculpt_ir::ops::infer::einsum_plan(equation, &dims)
            .map_err(|reason| unsupported(n, reason))?;
        let elem = operands[0].elem;
        if elem == Elem::Bool || operands.iter().any(|o| o.elem != elem) {
            return Err(unsupported(n, "operands of mixed or bool element types"));
        }
        let loop_of = |c: char| plan.letters.iter().position(|&l| l == c).unwrap_or(0);
        let inputs: Vec<MapIn> = operands
            .iter()
            .zip(&plan.terms)
            .map(|(operand, term)| MapIn {
                operand,
                exprs: term.chars().map(|c| format!("d{}", loop_of(c))).collect(),
            })
            .collect();
        let out_map: Vec<String> = plan
            .output
            .chars()
            .map(|c| format!("d{}", loop_of(c)))
            .collect();
        let iterators: Vec<&str> = (0..plan.letters.len())
            .map(|i| {
                if i < out_map.len() {
                    "parallel"
                } else {
                    "reduction"
                }
            })
            .collect();
        let init = Operand {
            name: self.filled_of(od, elem, 0.0),
            dims: od.to_vec(),
            elem,
        };
        let (mul, add) = if elem.is_float() {
            ("arith.mulf", "arith.addf")
        } else {
            ("arith.muli", "arith.addi")
        };
        let ty = elem.mlir();
        Ok(
            self.accumulate(&iterators, &inputs, &init, &out_map, &|b, a, acc| {
                let mut product = a[0].clone();
                for x in &a[1..] {
                    product = b.assign(format!("{mul} {product}, {x} : {ty}"));
                }
                b.assign(format!("{add} {acc}, {product} : {ty}"))
            }),
        )
    }
}
