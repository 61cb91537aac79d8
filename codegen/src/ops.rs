//! What the MLIR back end covers, in one place: the ops it emits and what
//! each becomes (the table `sculpt emit-ops` prints and `docs/mlir-ops.md`
//! holds), the ops that take storage-only element types, the inputs that
//! are shapes rather than tensors, and the error for what it cannot emit.
//! Legalization and emission both read it.

use crate::CodegenError;
use sculpt_ir::Node;

/// The dialect the graph's ops become: `linalg` (named ops and generics
/// on tensors, with `arith`, `math`, `tensor`) or `tosa`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Linalg,
    Tosa,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Dialect, String> {
        match s {
            "linalg" => Ok(Dialect::Linalg),
            "tosa" => Ok(Dialect::Tosa),
            other => Err(format!("unknown dialect '{other}' (linalg or tosa)")),
        }
    }
}

/// The layout linalg convolutions compute in: `nchw` (ONNX's own, the
/// default) or `nhwc` (input transposed, weights permuted at emit time,
/// result transposed back; IREE cancels the transposes between
/// convolutions). On IREE 3.13's llvm-cpu, NCHW with im2col measured
/// faster (resnet18: 136 ms against 598 ms, one thread here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Layout, String> {
        match s {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            other => Err(format!(
                "unknown convolution layout '{other}' (nchw or nhwc)"
            )),
        }
    }
}

/// The ops the emitter covers, with what each becomes in linalg and in
/// TOSA (empty: refused with `--dialect tosa`), for the docs.
pub fn supported_ops() -> &'static [(&'static [&'static str], &'static str, &'static str)] {
    &[
        (&["Conv"], "(1-d: lifted to 2-d over an [N, C, 1, L] view, as are 1-d pools) tensor.pad + linalg.conv_2d_nchw_fchw / conv_2d_ngchw_gfchw (groups), bias in the init; with --conv-layout nhwc: transposed in and out, weights permuted at emit time, linalg.conv_2d_nhwc_hwcf / depthwise_conv_2d_nhwc_hwc(m) / conv_2d_nhwgc_gfhwc; 1×1, stride 1, one image: linalg.matmul", "tosa.transpose to NHWC + tosa.conv2d / depthwise_conv2d (weights permuted at compile time); other groups: tosa.slice per group + tosa.concat; 1×1, stride 1, one image: tosa.matmul"),
        (&["Gemm"], "linalg.transpose + linalg.matmul + linalg.generic (alpha, beta·C)", "tosa.matmul (transposed constants permuted at compile time) + tosa.mul / tosa.add (alpha, beta·C)"),
        (&["MatMul"], "linalg.matmul / linalg.batch_matmul (batch dims broadcast, then collapsed; 1-d operands promoted)", "tosa.matmul (rank 3; batch dims broadcast with tosa.tile, then collapsed)"),
        (&["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean"], "linalg.generic with broadcasting maps (arith float or signed-integer ops)", "tosa.add / sub / mul / maximum / minimum / pow (operands reshaped to one rank); integer Div: tosa.intdiv; float Div stays linalg (arith.divf: TOSA has no exact float division)"),
        (&["Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs"], "linalg.generic over arith/math (float)", "tosa.clamp, sigmoid, tanh, erf, exp, log, reciprocal, negate, abs; Sqrt: tosa.pow ½; the rest composed"),
        (&["Elu", "Selu", "Softplus", "Softsign", "ThresholdedRelu", "Floor", "Ceil", "Sign", "Sin", "Cos"], "linalg.generic over arith/math (float)", "tosa.exp / select / log / abs / floor / ceil / sin / cos, composed"),
        (&["Round"], "linalg.generic: math.roundeven (halves to even)", "tosa.floor, then + 1 above the half or at the half from an odd floor (halves to even)"),
        (&["Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"], "linalg.generic over math.tan / asin / acos / atan / sinh / cosh / asinh / acosh / atanh", ""),
        (&["Mod"], "linalg.generic: arith.remf (fmod=1) / arith.remsi, moved to the divisor's sign for fmod=0", ""),
        (&["PRelu"], "linalg.generic: arith.select on x < 0 (slope broadcast)", "tosa.greater_equal + tosa.mul + tosa.select"),
        (&["CastLike"], "as Cast, to the second input's element type", "as Cast"),
        (&["Tile"], "linalg.generic whose input map takes each index modulo the input's dim (repeats constant)", "tosa.tile"),
        (&["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"], "linalg.generic: arith.cmpf (ordered) / arith.cmpi (signed) → i1", "tosa.equal / greater / greater_equal (Less*: operands swapped)"),
        (&["And", "Or", "Xor", "Not"], "linalg.generic over arith.andi / ori / xori on i1", "tosa.logical_and / or / xor / not"),
        (&["IsNaN", "IsInf"], "linalg.generic: arith.cmpf uno / arith.cmpf oeq ±inf", "tosa.equal (x ≠ x) + logical_not / tosa.equal ±inf"),
        (&["Where"], "linalg.generic: arith.select", "tosa.select"),
        (&["Cast"], "linalg.generic between f32, i64, i32 and bool: arith.sitofp / uitofp / fptosi / extsi / extui / trunci, cmp ≠ 0 for bool", "tosa.cast (float → int: tosa.floor / ceil first, to truncate toward zero)"),
        (&["Expand"], "linalg.generic (broadcasting copy)", "tosa.reshape + tosa.tile"),
        (&["BatchNormalization"], "linalg.generic (scale and shift folded per channel)", "tosa.mul + tosa.add (scale and shift folded per channel)"),
        (&["LayerNormalization", "InstanceNormalization", "GroupNormalization", "RMSNormalization"], "linalg.generic reductions (mean, variance; RMSNorm: mean square only) + normalize, scale, shift (GroupNorm on an [N, G, rest] view)", "tosa.reduce_sum per axis, tosa.rsqrt, mul, add"),
        (&["MaxPool", "AveragePool"], "tensor.pad + linalg.pooling_nchw_max / pooling_nchw_sum (÷ window, or ÷ the counted elements under it: count_include_pad=0, or ceil_mode's padding past the end)", "tosa.max_pool2d / avg_pool2d on NHWC (count_include_pad=1 with pads: tosa.pad first; ceil_mode: more padding past the end)"),
        (&["GlobalAveragePool", "GlobalMaxPool"], "linalg.generic reduction over H and W (÷ H·W)", "tosa.reduce_sum / reduce_max over H and W (÷ H·W)"),
        (&["Flatten", "Reshape", "Squeeze", "Unsqueeze"], "tensor.reshape (shape and axes inputs constant)", "tosa.reshape"),
        (&["Transpose"], "linalg.transpose", "tosa.transpose"),
        (&["Softmax", "LogSoftmax"], "linalg.generic: max, exp(x - max), sum, divide (or subtract the log)", "tosa.reduce_max, sub, exp, reduce_sum, reciprocal, mul (or log, sub)"),
        (&["Concat"], "tensor.concat", "tosa.concat"),
        (&["Slice"], "tensor.extract_slice (positive steps) / linalg.generic with strided maps (negative steps)", "tosa.slice (unit steps)"),
        (&["Split"], "tensor.extract_slice per output (sizes constant)", "tosa.slice per output"),
        (&["Gather"], "linalg.generic over the indices: arith.index_cast (negative indices wrapped) + tensor.extract", "tosa.gather on [N, K, C] (indices cast to i32, negative ones wrapped, tiled over N)"),
        (&["Pad"], "tensor.pad (constant mode)", "tosa.pad"),
        (&["GatherElements"], "linalg.generic over the indices: tensor.extract at the same coordinates but on the axis (negative indices wrapped)", "as linalg when the indices are i64 (TOSA has no i64)"),
        (&["CumSum"], "linalg.generic with the summed index as a reduction loop, adding the elements on the right side of the output's (exclusive, reverse; axis constant)", ""),
        (&["Einsum"], "linalg.generic: the output's letters as parallel loops, the summed letters as reduction loops, the operands' product added up (no ellipsis)", ""),
        (&["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"], "linalg.generic reduction (axes from the attribute or a constant input)", "tosa.reduce_sum / max / min / product per axis (+ abs, square, √, ÷ count)"),
        (&["ArgMax", "ArgMin"], "linalg.generic reduction carrying the best value and its index (ties: first, or last with select_last_index)", "as linalg (its i64 output)"),
        (&["Resize"], "linalg.generic over the output: each resized coordinate mapped back in f64 (every coordinate_transformation_mode but tf_crop_and_resize), then tensor.extract of the nearest element (nearest_mode as given) or of the 2^k linear corners, weighted", ""),
        (&["LRN"], "tensor.pad on channels + linalg.generic (window as a reduction dim) + math.powf", "tosa.avg_pool2d over the channels of a [N, C, H·W, 1] view (tosa.pad first) + tosa.pow"),
        (&["Shape", "Size", "Constant"], "arith.constant (shapes are static)", "tosa.const"),
        (&["Identity", "Dropout"], "the input itself (Dropout in inference mode)", "the input itself"),
        (&["ConvTranspose"], "rewritten first (1-d, 2-d): a Conv at stride 1 of the input with stride − 1 zeros between elements (Reshape + Pad), padded or cropped by dilation·(kernel − 1) − pads, with the kernel flipped and its channel axes swapped per group (constant kernels flipped at compile time)", "as linalg: the same rewrite"),
        (&["QuantizeLinear"], "rewritten first, in f32: Cast(Clip(Round(x ÷ scale) + zero point)) to i8/u8 (per-axis parameters broadcast on their axis; not blocked)", "the same rewrite in TOSA (u8 tensors in linalg: TOSA has no u8)"),
        (&["DequantizeLinear"], "one dequantizing linalg.generic, the form IREE clones into its consumer's dispatch: sitofp/uitofp, − zero point, × scale, the parameters read through a projection (per tensor, per axis, or per block of block_size); 4-bit constants as i4; feeding a MatMul with an 8-bit dequantized constant [K, N] weight (per tensor or per column) and 8-bit dequantized activations (per tensor): linalg.matmul i8 × i8 → i32 (u8 codes moved to i8 by −128), zero points corrected in i32, scales in the epilogue", "as linalg"),
        (&["com.microsoft::MatMulNBits"], "4- and 8-bit codes as an i4 / i8 [N, blocks, block] constant (unpacked at emit time), a dequantizing linalg.generic (scales and zero points per block), and a linalg.generic contraction over blocks and their elements with the activations viewed as [rows, blocks, block] (zero-padded to whole blocks); bias added after; f16 activations in f32 between casts", "as linalg"),
        (&["Range", "ConstantOfShape", "EyeLike"], "folded first into a constant (inputs constant; EyeLike reads only the shape)", "as linalg: folded into a constant"),
        (&["DepthToSpace", "SpaceToDepth"], "rewritten first: Reshape + Transpose + Reshape (DCR and CRD)", "as linalg: the same rewrite"),
        (&["Trilu", "Mish", "LpNormalization", "ReduceLogSum", "ReduceLogSumExp"], "rewritten first: Where with a constant mask (k constant); x·tanh(softplus(x)); x ÷ ReduceL1/L2; Log(ReduceSum(x)); Log(ReduceSum(Exp(x)))", "as linalg: the same rewrite"),
    ]
}

/// Whether `op` (default domain) is in [`supported_ops`] for `dialect`.
pub(crate) fn is_supported(op: &str, dialect: Dialect) -> bool {
    supported_ops()
        .iter()
        .any(|(ops, _, tosa)| ops.contains(&op) && (dialect == Dialect::Linalg || !tosa.is_empty()))
}

/// The op-support table in `docs/mlir-ops.md` (a test keeps it current).
pub fn ops_table() -> String {
    let mut t = String::from(
        "# ONNX ops the MLIR back end emits\n\nGenerated by `sculpt emit-ops` from `codegen/src/ops.rs`. Element types: f32, i64, i32, bool; f16 and bf16 stored as such, with every op but data movement, Where and Cast computing in f32 between casts (the casts are rewritten in before emission); i8 and u8 for data movement, Where, Cast and the quantization ops. Any other op or element type is an error naming the node and the op; so is an op with no TOSA form under `--dialect tosa` (—). TOSA's profiles have no i64, so under `--dialect tosa` an op that reads or writes an i64 tensor (token ids, masks) is emitted in linalg; the rest is TOSA, in MLIR's generic op form (which MLIR 22 and IREE's MLIR both read).\n\n| ONNX op | `--dialect linalg` | `--dialect tosa` |\n|---|---|---|\n",
    );
    for (ops, linalg, tosa) in supported_ops() {
        let tosa = if tosa.is_empty() { "—" } else { tosa };
        t += &format!("| {} | {linalg} | {tosa} |\n", ops.join(", "));
    }
    t
}

/// The ops that take storage-only element types (f16, bf16, i8, u8) as
/// they are: data movement, Where and Cast.
pub(crate) const STORAGE_OPS: &[&str] = &[
    "Identity",
    "Dropout",
    "Constant",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Slice",
    "Split",
    "Gather",
    "GatherElements",
    "Pad",
    "Expand",
    "Tile",
    "Where",
    "Shape",
    "Size",
    "Cast",
    "CastLike",
];

/// The inputs of `op` that give shapes, axes, sizes or bounds: constants
/// the emitter reads, never tensors of the module.
pub(crate) fn shape_slots(op: &str) -> &'static [usize] {
    match op {
        "Reshape" | "Squeeze" | "Unsqueeze" | "Expand" | "Split" | "Tile" => &[1],
        "Slice" => &[1, 2, 3, 4],
        "Pad" => &[1, 3],
        "CumSum" => &[1],
        "Resize" => &[1, 2, 3],
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" => &[1],
        _ => &[],
    }
}

/// The error for `n` when it cannot be emitted.
pub(crate) fn unsupported(n: &Node, reason: impl Into<String>) -> CodegenError {
    CodegenError::Unsupported {
        node: n.display_name().into(),
        op: n.op_type.clone(),
        reason: reason.into(),
    }
}

/// The ops whose output size depends on the data, which a module of
/// static shapes cannot hold, with what writes them.
const DATA_DEPENDENT: &[(&str, &str)] = &[
    (
        "NonZero",
        "moe form=onnx routes each expert's tokens with it",
    ),
    ("Compress", ""),
    ("Unique", ""),
    ("NonMaxSuppression", ""),
];

/// The first node of `g` (in `order`) whose output size depends on the
/// data, as the error that names it: the emitter writes static shapes
/// only, so such a graph is refused before anything is emitted.
pub(crate) fn refuse_data_dependent(
    g: &sculpt_ir::Graph,
    order: &[sculpt_ir::NodeId],
) -> Result<(), CodegenError> {
    for &id in order {
        let n = g.node(id);
        if let Some((_, origin)) = DATA_DEPENDENT
            .iter()
            .find(|(op, _)| n.is_onnx() && *op == n.op_type)
        {
            let origin = if origin.is_empty() {
                String::new()
            } else {
                format!(" ({origin})")
            };
            return Err(unsupported(
                n,
                format!("its output's size depends on the data{origin}; emitted modules have static shapes"),
            ));
        }
    }
    Ok(())
}
