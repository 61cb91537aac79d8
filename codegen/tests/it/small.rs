//! Emitted MLIR for small hand-written graphs, one per op family
//! (snapshots), each verified by MLIR and, where the CPU path covers it,
//! run and compared with tract.

use sculpt_codegen::{
    emit_mlir, CodegenError, CpuModule, Dialect, Elem, EmitOptions, HostTensor, MlirContext,
};
use sculpt_runtime::{Array, Engine, Session};

/// An `.npz`-style array as the CPU path takes it.
pub fn host(a: &Array) -> HostTensor {
    HostTensor {
        elem: Elem::of(a.dtype).expect("an element type the emitter covers"),
        dims: a.shape.iter().map(|&d| d as i64).collect(),
        bytes: a.data.clone(),
    }
}

/// The largest difference between tract's outputs and the CPU path's,
/// relative to the largest magnitude of each output.
pub fn worst_relative_diff(expected: &[Array], got: &[HostTensor]) -> f64 {
    let mut worst = 0f64;
    for (e, g) in expected.iter().zip(got) {
        let g = Array {
            name: e.name.clone(),
            dtype: g.elem.dtype(),
            shape: g.dims.iter().map(|&d| d as usize).collect(),
            data: g.bytes.clone(),
        };
        assert_eq!(e.dtype, g.dtype, "{}: element type", e.name);
        let (e, g) = (e.to_f64().unwrap(), g.to_f64().unwrap());
        let scale = e.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
        for (a, b) in e.iter().zip(&g) {
            let d = if a == b { 0.0 } else { (a - b).abs() / scale };
            worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
        }
    }
    worst
}

/// Emits in both dialects (verified), snapshots the text, runs the CPU
/// path on `arrays` and compares with tract. An op with no TOSA form is
/// refused under `--dialect tosa`, and the snapshot keeps the refusal.
fn check_arrays(name: &str, text: &str, arrays: &[Array]) {
    check_arrays_within(name, text, arrays, 1e-5);
}

/// [`check_arrays`] with the CPU path within `tolerance` of tract
/// (relative to each output's largest magnitude).
fn check_arrays_within(name: &str, text: &str, arrays: &[Array], tolerance: f64) {
    let m = sculpt_ir::text::parse(text).unwrap();
    let expected = Session::new(Engine::Tract, &m, arrays)
        .unwrap()
        .run(arrays)
        .unwrap();
    for (dialect, suffix) in [(Dialect::Linalg, ""), (Dialect::Tosa, "_tosa")] {
        let options = EmitOptions {
            dialect,
            ..EmitOptions::default()
        };
        let snapshot = format!("{name}{suffix}");
        let emitted = match emit_mlir(&m, &options) {
            Ok(e) => e,
            Err(e @ CodegenError::Unsupported { .. }) if dialect == Dialect::Tosa => {
                insta::assert_snapshot!(snapshot.clone(), format!("refused: {e}"));
                continue;
            }
            Err(e) => panic!("{snapshot}: {e}"),
        };
        insta::assert_snapshot!(snapshot.clone(), emitted.text);
        let context = MlirContext::new();
        let cpu = CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())
            .unwrap_or_else(|e| panic!("{snapshot}: {e}"));
        let args: Vec<HostTensor> = arrays.iter().map(host).collect();
        let got = cpu.run(&args).unwrap();
        let worst = worst_relative_diff(&expected, &got);
        assert!(
            worst <= tolerance,
            "{snapshot}: the CPU path differs from tract by {worst}"
        );
    }
}

/// Varied f32 inputs of the given shapes.
fn varied(inputs: &[(&str, Vec<usize>)]) -> Vec<Array> {
    inputs
        .iter()
        .map(|(n, shape)| {
            let count: usize = shape.iter().product();
            let v: Vec<f32> = (0..count)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
                .collect();
            Array::from_f32(n, shape.clone(), &v)
        })
        .collect()
}

/// [`check_arrays`] on varied f32 inputs of the given shapes.
fn check(name: &str, text: &str, inputs: &[(&str, Vec<usize>)]) {
    check_arrays(name, text, &varied(inputs));
}

fn i64_array(name: &str, shape: Vec<usize>, values: &[i64]) -> Array {
    Array {
        name: name.into(),
        dtype: sculpt_ir::DataType::I64,
        shape,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The CPU path of `text` emitted with channels-last convolutions
/// against tract, on varied inputs of the given shapes.
fn check_channels_last(text: &str, inputs: &[(&str, Vec<usize>)]) {
    let arrays = varied(inputs);
    let m = sculpt_ir::text::parse(text).unwrap();
    let expected = Session::new(Engine::Tract, &m, &arrays)
        .unwrap()
        .run(&arrays)
        .unwrap();
    let options = EmitOptions {
        layout: sculpt_codegen::Layout::Nhwc,
        ..EmitOptions::default()
    };
    let emitted = emit_mlir(&m, &options).unwrap();
    assert!(emitted.text.contains("linalg.conv_2d_nhwc_hwcf"));
    let context = MlirContext::new();
    let cpu = CpuModule::compile(&context, &emitted.text, emitted.outputs.clone()).unwrap();
    let args: Vec<HostTensor> = arrays.iter().map(host).collect();
    let worst = worst_relative_diff(&expected, &cpu.run(&args).unwrap());
    assert!(worst <= 1e-5, "channels-last differs from tract by {worst}");
}

#[test]
fn conv_bias_relu_and_grouped_conv() {
    let text = CONV_GRAPH.replace(
        "elided\"x\"",
        &format!(
            "[{}]",
            (0..144)
                .map(|i| format!("{:.1}", (i % 7) as f32 - 3.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    check("conv", &text, &[("x", vec![1, 4, 5, 5])]);
    check_channels_last(&text, &[("x", vec![1, 4, 5, 5])]);
}

/// Convolutions: plain with a bias and padding, grouped, 1×1 with a
/// bias, depthwise with dilations and uneven pads.
const CONV_GRAPH: &str = r#"graph "g" (%x: f32[1,4,5,5]) -> (%y, %p, %d) {
  init %w = f32[4,4,3,3] elided"x"
  init %b = f32[4] [0.5, -0.5, 1.0, 0.0]
  init %dw = f32[4,2,1,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
  init %pw = f32[3,4,1,1] [1.0, -2.0, 3.0, 0.5, -1.0, 2.0, 0.25, 1.0, 0.0, 1.5, -0.5, 2.0]
  init %pb = f32[3] [0.5, 0.0, -1.0]
  init %depth = f32[4,1,2,2] [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 1.0, 2.0, -2.0, 1.0, 0.5, 0.25, 0.5, 0.75, 1.0]
  %c = Conv(%x, %w, %b) {pads=[1, 1, 1, 1], strides=[2, 2]}
  %r = Relu(%c)
  %y = Conv(%r, %dw) {group=2}
  %p = Conv(%r, %pw, %pb)
  %d = Conv(%x, %depth) {group=4, pads=[1, 0, 0, 1], dilations=[2, 1]}
}"#;

#[test]
fn gemm_and_batched_matmul() {
    check(
        "matmul",
        r#"graph "g" (%x: f32[2,3], %a: f32[2,3,4], %b: f32[2,4,2]) -> (%y, %z) {
  init %w = f32[4,3] [1.0, 0.0, 2.0, 0.5, 1.0, -1.0, 0.0, 3.0, 1.0, 2.0, 2.0, 1.0]
  init %c = f32[4] [1.0, 2.0, 3.0, 4.0]
  %y = Gemm(%x, %w, %c) {transB=1, alpha=2.0, beta=0.5}
  %z = MatMul(%a, %b)
}"#,
        &[
            ("x", vec![2, 3]),
            ("a", vec![2, 3, 4]),
            ("b", vec![2, 4, 2]),
        ],
    );
}

#[test]
fn pooling() {
    check(
        "pool",
        r#"graph "g" (%x: f32[1,2,6,6]) -> (%y, %z, %w) {
  %y = MaxPool(%x) {kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]}
  %z = AveragePool(%x) {kernel_shape=[2, 2], strides=[2, 2]}
  %w = GlobalAveragePool(%x)
}"#,
        &[("x", vec![1, 2, 6, 6])],
    );
}

#[test]
fn elementwise_with_broadcasting() {
    check(
        "elementwise",
        r#"graph "g" (%x: f32[2,3,4], %s: f32[3,1]) -> (%y) {
  init %k = f32[4] [1.0, 2.0, 3.0, 4.0]
  init %lo = f32[] [0.25]
  init %hi = f32[] [0.75]
  %a = Add(%x, %k)
  %m = Mul(%a, %s)
  %h = HardSwish(%m)
  %g = Sigmoid(%h)
  %c = Clip(%g, %lo, %hi)
  %t = Tanh(%c)
  %y = Sub(%t, %x)
}"#,
        &[("x", vec![2, 3, 4]), ("s", vec![3, 1])],
    );
}

#[test]
fn batch_norm_and_shapes() {
    check(
        "shapes",
        r#"graph "g" (%x: f32[1,2,2,3]) -> (%y, %r) {
  init %sc = f32[2] [1.0, 2.0]
  init %sh = f32[2] [0.5, -0.5]
  init %mu = f32[2] [0.1, 0.2]
  init %va = f32[2] [1.0, 4.0]
  init %one = i64[1] [1]
  init %hw = i64[2] [2, 3]
  %n = BatchNormalization(%x, %sc, %sh, %mu, %va)
  %t = Transpose(%n) {perm=[0, 2, 3, 1]}
  %f = Flatten(%t) {axis=1}
  %y = ReduceMean(%f, %one) {keepdims=1}
  %r = ReduceSum(%n, %hw) {keepdims=0}
}"#,
        &[("x", vec![1, 2, 2, 3])],
    );
}

#[test]
fn unsupported_ops_name_the_node() {
    let m = sculpt_ir::text::parse(
        r#"graph "g" (%x: f32[2,3]) -> (%y) {
  %y = Mod(%x, %x) @"remainder"
}"#,
    )
    .unwrap();
    let err = emit_mlir(&m, &EmitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("remainder") && err.contains("Mod"), "{err}");
}

#[test]
fn symbolic_inputs_need_a_shape() {
    let m = sculpt_ir::text::parse(
        r#"graph "g" (%x: f32[N,3]) -> (%y) {
  %y = Relu(%x)
}"#,
    )
    .unwrap();
    let err = emit_mlir(&m, &EmitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--shape x="), "{err}");
    let mut options = EmitOptions::default();
    options.shapes.insert("x".into(), vec![2, 3]);
    assert!(emit_mlir(&m, &options).is_ok());
}

#[test]
fn the_op_table_in_the_docs_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/mlir-ops.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        doc,
        sculpt_codegen::ops_table(),
        "regenerate with `sculpt emit-ops > docs/mlir-ops.md`"
    );
}

#[test]
fn softmax() {
    check(
        "softmax",
        r#"graph "g" (%x: f32[2,3]) -> (%y) {
  %y = Softmax(%x) {axis=-1}
}"#,
        &[("x", vec![2, 3])],
    );
}

#[test]
fn concat() {
    check(
        "concat",
        r#"graph "g" (%x: f32[2,3], %z: f32[2,2]) -> (%y) {
  %y = Concat(%x, %z) {axis=1}
}"#,
        &[("x", vec![2, 3]), ("z", vec![2, 2])],
    );
}

#[test]
fn lrn() {
    check(
        "lrn",
        r#"graph "g" (%x: f32[1,5,2,3]) -> (%y) {
  %y = LRN(%x) {size=3, alpha=0.5, beta=0.75, bias=2.0}
}"#,
        &[("x", vec![1, 5, 2, 3])],
    );
}

fn f32_values(name: &str, shape: Vec<usize>, values: &[f32]) -> Array {
    Array::from_f32(name, shape, values)
}

#[test]
fn gather_rows_and_columns_with_negative_indices() {
    check_arrays(
        "gather",
        r#"graph "g" (%ids: i64[2,3]) -> (%rows, %cols, %mid) {
  init %table = f32[5,4] [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0]
  init %picks = i64[2] [3, -4]
  init %picks32 = i32[3] [2, -3, 1]
  %rows = Gather(%table, %ids) {axis=0}
  %cols = Gather(%table, %picks) {axis=1}
  %cube = Reshape(%table, %cube_shape)
  init %cube_shape = i64[3] [2, 5, 2]
  %mid = Gather(%cube, %picks32) {axis=1}
}"#,
        &[i64_array("ids", vec![2, 3], &[0, 4, -1, 2, -5, 3])],
    );
}

#[test]
fn layer_normalization() {
    check(
        "layer_norm",
        r#"opset "" 17
graph "g" (%x: f32[2,3,4]) -> (%y, %z) {
  init %scale = f32[4] [1.0, 0.5, -2.0, 1.5]
  init %bias = f32[4] [0.0, 0.25, -1.0, 2.0]
  init %scale2 = f32[3,4] [1.0, 0.5, -2.0, 1.5, 1.0, 0.5, -2.0, 1.5, 1.0, 0.5, -2.0, 1.5]
  %y = LayerNormalization(%x, %scale, %bias) {axis=-1, epsilon=1e-5}
  %z = LayerNormalization(%x, %scale2) {axis=1}
}"#,
        &[("x", vec![2, 3, 4])],
    );
}

#[test]
fn masks_comparisons_logic_where_and_casts() {
    check_arrays(
        "masks",
        r#"opset "" 17
graph "g" (%x: f32[2,3], %m: i64[2,3]) -> (%y, %s, %f, %nan, %inf) {
  init %zero = f32[] [0.0]
  init %low = f32[1] [-1000.0]
  init %one = i64[] [1]
  %b = Cast(%m) {to=9}
  %n = Not(%b)
  %gt = Greater(%x, %zero)
  %and = And(%gt, %b)
  %or = Or(%and, %n)
  %xor = Xor(%or, %gt)
  %w = Where(%xor, %x, %low)
  %c = Cast(%xor) {to=1}
  %y = Add(%w, %c)
  %e = LessOrEqual(%m, %one)
  %ci = Cast(%e) {to=7}
  %s = Mul(%ci, %m)
  %f = Cast(%x) {to=7}
  %q = Div(%x, %x)
  %nan = IsNaN(%q)
  %r = Reciprocal(%x)
  %inf = IsInf(%r) {detect_negative=0}
}"#,
        &[
            f32_values("x", vec![2, 3], &[0.0, -1.5, 2.75, 0.5, -2.25, 3.0]),
            i64_array("m", vec![2, 3], &[1, 0, 1, 2, 0, -3]),
        ],
    );
}

#[test]
fn slices_splits_and_pads() {
    check(
        "slices",
        r#"opset "" 17
graph "g" (%x: f32[4,6]) -> (%back, %strided, %p, %q, %padded) {
  init %starts = i64[2] [3, -1]
  init %ends = i64[2] [0, -7]
  init %axes = i64[2] [0, 1]
  init %steps = i64[2] [-1, -2]
  init %s2 = i64[1] [1]
  init %e2 = i64[1] [100]
  init %a2 = i64[1] [1]
  init %st2 = i64[1] [2]
  init %sizes = i64[2] [2, 2]
  init %pads = i64[4] [1, 0, 0, 2]
  init %v = f32[] [0.5]
  %back = Slice(%x, %starts, %ends, %axes, %steps)
  %strided = Slice(%x, %s2, %e2, %a2, %st2)
  %p, %q = Split(%x, %sizes) {axis=0}
  %padded = Pad(%x, %pads, %v)
}"#,
        &[("x", vec![4, 6])],
    );
}

#[test]
fn reductions() {
    check(
        "reductions",
        r#"opset "" 17
graph "g" (%x: f32[2,3,4]) -> (%l2, %max, %min, %prod, %l1, %sq, %sum, %mean) {
  init %axes = i64[1] [-1]
  %l2 = ReduceL2(%x) {axes=[1], keepdims=0}
  %max = ReduceMax(%x) {axes=[2]}
  %min = ReduceMin(%x) {axes=[0, 2], keepdims=0}
  %prod = ReduceProd(%x) {axes=[1]}
  %l1 = ReduceL1(%x) {axes=[2]}
  %sq = ReduceSumSquare(%x) {axes=[0]}
  %sum = ReduceSum(%x, %axes) {keepdims=0}
  %mean = ReduceMean(%x)
}"#,
        &[("x", vec![2, 3, 4])],
    );
}

#[test]
fn broadcast_matmul_vectors_expand_and_log_softmax() {
    check(
        "broadcasts",
        r#"opset "" 17
graph "g" (%a: f32[2,1,3,4], %b: f32[5,4,2], %v: f32[4], %c: f32[3,1]) -> (%ab, %av, %e, %ls) {
  init %shape = i64[3] [2, 3, 4]
  %ab = MatMul(%a, %b)
  %av = MatMul(%a, %v)
  %e = Expand(%c, %shape)
  %ls = LogSoftmax(%a) {axis=2}
}"#,
        &[
            ("a", vec![2, 1, 3, 4]),
            ("b", vec![5, 4, 2]),
            ("v", vec![4]),
            ("c", vec![3, 1]),
        ],
    );
}

#[test]
fn more_activations_prelu_tile_and_cast_like() {
    check(
        "activations",
        r#"opset "" 17
graph "g" (%x: f32[2,3,4]) -> (%elu, %selu, %sp, %ss, %thr, %fl, %ce, %sg, %sin, %cos, %pr, %tile, %like) {
  init %slope = f32[4] [0.1, 0.2, 0.3, 0.4]
  init %reps = i64[3] [1, 2, 3]
  init %ints = i64[1] [0]
  %elu = Elu(%x) {alpha=0.5}
  %selu = Selu(%x)
  %sp = Softplus(%x)
  %ss = Softsign(%x)
  %thr = ThresholdedRelu(%x) {alpha=0.75}
  %fl = Floor(%x)
  %ce = Ceil(%x)
  %sg = Sign(%x)
  %sin = Sin(%x)
  %cos = Cos(%x)
  %pr = PRelu(%x, %slope)
  %tile = Tile(%x, %reps)
  %like = CastLike(%x, %ints)
}"#,
        &[("x", vec![2, 3, 4])],
    );
    // Halves to even in both dialects (the inputs hold ties).
    check(
        "round",
        r#"graph "g" (%x: f32[2,3]) -> (%y) {
  %y = Round(%x)
}"#,
        &[("x", vec![2, 3])],
    );
}

#[test]
fn instance_and_group_normalization() {
    check(
        "norms",
        r#"opset "" 21
graph "g" (%x: f32[2,4,3,2]) -> (%inst, %group) {
  init %scale = f32[4] [1.0, 0.5, -2.0, 1.5]
  init %bias = f32[4] [0.0, 0.25, -1.0, 2.0]
  %inst = InstanceNormalization(%x, %scale, %bias) {epsilon=1e-5}
  %group = GroupNormalization(%x, %scale, %bias) {num_groups=2, epsilon=1e-5}
}"#,
        &[("x", vec![2, 4, 3, 2])],
    );
}

#[test]
fn argmax_and_argmin() {
    check(
        "argmax",
        r#"opset "" 13
graph "g" (%x: f32[2,3,4]) -> (%a, %b, %c) {
  %a = ArgMax(%x) {axis=2}
  %b = ArgMin(%x) {axis=1, keepdims=0}
  %c = ArgMax(%x) {axis=0, select_last_index=1}
}"#,
        &[("x", vec![2, 3, 4])],
    );
}

#[test]
fn resize_nearest_and_linear() {
    check(
        "resize",
        r#"opset "" 13
graph "g" (%x: f32[1,2,3,4]) -> (%near, %lin, %down) {
  init %roi = f32[0] []
  init %up = f32[4] [1.0, 1.0, 2.0, 1.5]
  init %half = f32[4] [1.0, 1.0, 0.67, 0.5]
  init %sizes = i64[4] [1, 2, 5, 7]
  %near = Resize(%x, %roi, %up) {mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"}
  %lin = Resize(%x, %roi, _, %sizes) {mode="linear", coordinate_transformation_mode="align_corners"}
  %down = Resize(%x, %roi, %half) {mode="linear"}
}"#,
        &[("x", vec![1, 2, 3, 4])],
    );
}

/// `count` varied values in [-2, 2] as text, for constant weights.
fn weights(count: usize) -> String {
    let v: Vec<String> = (0..count)
        .map(|i| format!("{:.2}", ((i * 29 % 13) as f32 - 6.0) / 3.0))
        .collect();
    format!("[{}]", v.join(", "))
}

#[test]
fn transposed_and_1d_convolutions() {
    let text = r#"opset "" 17
graph "g" (%x: f32[1,4,3,3], %s: f32[1,2,7]) -> (%up, %grouped, %wide, %line, %back, %maxp, %avgp) {
  init %w = f32[4,3,3,3] W108
  init %b = f32[3] [0.5, -0.5, 1.0]
  init %gw = f32[4,1,2,2] W16
  init %lw = f32[3,2,3] W18
  init %tw = f32[2,3,4] W24
  %up = ConvTranspose(%x, %w, %b) {strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0]}
  %grouped = ConvTranspose(%x, %gw) {group=2, strides=[2, 1], dilations=[1, 2]}
  %wide = ConvTranspose(%x, %w) {strides=[3, 2], output_shape=[10, 8]}
  %line = Conv(%s, %lw, %b) {pads=[1, 2], strides=[2], dilations=[2]}
  %back = ConvTranspose(%s, %tw) {strides=[3], pads=[2, 1]}
  %maxp = MaxPool(%s) {kernel_shape=[3], strides=[2], pads=[1, 1]}
  %avgp = AveragePool(%s) {kernel_shape=[2], pads=[0, 1]}
}"#
    .replace("W108", &weights(108))
    .replace("W16", &weights(16))
    .replace("W18", &weights(18))
    .replace("W24", &weights(24));
    check(
        "conv_transpose",
        &text,
        &[("x", vec![1, 4, 3, 3]), ("s", vec![1, 2, 7])],
    );
}

#[test]
fn einsum_cumsum_and_gather_elements() {
    let arrays = [
        f32_values(
            "a",
            vec![2, 3, 4],
            &(0..24).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(),
        ),
        f32_values(
            "b",
            vec![2, 4, 2],
            &(0..16).map(|i| (i % 5) as f32 * 0.5).collect::<Vec<_>>(),
        ),
        i64_array(
            "idx",
            vec![2, 2, 4],
            &[0, -1, 2, 1, 2, 0, -3, 1, 1, 1, 0, 2, -2, 2, 1, 0],
        ),
    ];
    check_arrays(
        "einsum",
        r#"opset "" 14
graph "g" (%a: f32[2,3,4], %b: f32[2,4,2], %idx: i64[2,2,4]) -> (%bmm, %implicit, %outer, %cum, %rev, %picked) {
  init %axis = i64[] [1]
  %bmm = Einsum(%a, %b) {equation="bij,bjk->bik"}
  %implicit = Einsum(%a, %a) {equation="bij, bkj"}
  %outer = Einsum(%a) {equation="bij->jb"}
  %cum = CumSum(%a, %axis)
  %rev = CumSum(%a, %axis) {exclusive=1, reverse=1}
  %picked = GatherElements(%a, %idx) {axis=1}
}"#,
        &arrays,
    );
}

#[test]
fn rewritten_ops() {
    check(
        "rewritten",
        r#"opset "" 18
graph "g" (%x: f32[1,8,2,3], %m: f32[2,3,4]) -> (%dcr, %crd, %s2d, %upper, %lower, %mish, %lp, %lse, %range, %eye) {
  init %k = i64[] [1]
  init %start = i64[] [1]
  init %limit = i64[] [11]
  init %delta = i64[] [3]
  init %plane = f32[3,4] [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
  %dcr = DepthToSpace(%x) {blocksize=2}
  %crd = DepthToSpace(%x) {blocksize=2, mode="CRD"}
  %s2d = SpaceToDepth(%dcr) {blocksize=2}
  %upper = Trilu(%m, %k)
  %lower = Trilu(%m) {upper=0}
  %mish = Mish(%m)
  %lp = LpNormalization(%m) {axis=1, p=2}
  %lse = ReduceLogSumExp(%m) {keepdims=0}
  %range = Range(%start, %limit, %delta)
  %eye = EyeLike(%plane) {k=-1}
}"#,
        &[("x", vec![1, 8, 2, 3]), ("m", vec![2, 3, 4])],
    );
}

#[test]
fn inverse_trigonometry_and_mod() {
    check(
        "trigonometry",
        r#"opset "" 18
graph "g" (%m: f32[2,3,4]) -> (%asin, %acos, %atanh, %acosh, %tan, %atan, %sinh, %cosh, %asinh, %rem) {
  init %scale = f32[] [0.4]
  init %three = f32[] [1.5]
  %small = Mul(%m, %scale)
  %asin = Asin(%small)
  %acos = Acos(%small)
  %atanh = Atanh(%small)
  %abs = Abs(%m)
  %big = Add(%abs, %three)
  %acosh = Acosh(%big)
  %tan = Tan(%small)
  %atan = Atan(%m)
  %sinh = Sinh(%m)
  %cosh = Cosh(%m)
  %asinh = Asinh(%m)
  %rem = Mod(%m, %three) {fmod=1}
}"#,
        &[("m", vec![2, 3, 4])],
    );
}

/// `values` as f16, little-endian bytes.
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| sculpt_ir::codec::f32_to_f16(v).to_le_bytes())
        .collect()
}

/// `values` as an f16 initializer's text-form data.
fn f16_hex(values: &[f32]) -> String {
    let hex: String = f16_bytes(values)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hex\"{hex}\"")
}

#[test]
fn half_precision_computes_in_f32_between_casts() {
    let half = |name: &str, shape: Vec<usize>, values: Vec<f32>| Array {
        name: name.into(),
        dtype: sculpt_ir::DataType::F16,
        shape,
        data: f16_bytes(&values),
    };
    let w: Vec<f32> = (0..54)
        .map(|i| ((i * 29 % 13) as f32 - 6.0) / 4.0)
        .collect();
    let x: Vec<f32> = (0..48)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
        .collect();
    // f16 rounds each op's output once (tract rounds some steps more
    // often): a few f16 units in the last place.
    let text = r#"opset "" 17
graph "g" (%x: f16[1,3,4,4]) -> (%y, %n, %p) {
  init %w = f16[2,3,3,3] @W@
  init %b = f16[2] @B@
  init %scale = f16[4] @SCALE@
  init %shift = f16[4] @SHIFT@
  %c = Conv(%x, %w, %b) {pads=[1, 1, 1, 1]}
  %r = Relu(%c)
  %y = Transpose(%r) {perm=[0, 2, 3, 1]}
  %n = LayerNormalization(%x, %scale, %shift) {axis=-1}
  %m = MaxPool(%x) {kernel_shape=[2, 2], strides=[2, 2]}
  %p = Softmax(%m) {axis=1}
}"#
    .replace("@W@", &f16_hex(&w))
    .replace("@B@", &f16_hex(&[0.5, -0.25]))
    .replace("@SCALE@", &f16_hex(&[1.0, 0.5, 2.0, 1.5]))
    .replace("@SHIFT@", &f16_hex(&[0.0, 0.25, -0.5, 1.0]));
    check_arrays_within("half", &text, &[half("x", vec![1, 3, 4, 4], x)], 4e-3);
}

#[test]
fn quantize_dequantize_around_a_conv() {
    let weights: Vec<String> = (0..54)
        .map(|i| ((i * 37 % 23) as i64 - 11).to_string())
        .collect();
    let text = r#"opset "" 13
graph "g" (%x: f32[1,3,4,4]) -> (%y, %q) {
  init %xs = f32[] [0.05]
  init %xz = u8[] [128]
  init %w = i8[2,3,3,3] [@W@]
  init %ws = f32[2] [0.02, 0.03]
  init %wz = i8[2] [0, 0]
  init %b = f32[2] [0.1, -0.2]
  %q = QuantizeLinear(%x, %xs, %xz)
  %xd = DequantizeLinear(%q, %xs, %xz)
  %wd = DequantizeLinear(%w, %ws, %wz) {axis=0}
  %y = Conv(%xd, %wd, %b) {pads=[1, 1, 1, 1]}
}"#
    .replace("@W@", &weights.join(", "));
    check("qdq", &text, &[("x", vec![1, 3, 4, 4])]);
    // u8 activations and per-filter i8 weights: an integer convolution,
    // its input padded with the zero point's code.
    let m = sculpt_ir::text::parse(&text).unwrap();
    let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap();
    let integer = emitted.text.lines().any(|l| {
        l.contains("linalg.conv_2d_nchw_fchw") && l.contains("xi8>) outs(") && l.contains("xi32>")
    });
    assert!(integer, "the convolution is i8 × i8 → i32");
}

#[test]
fn half_batch_norm_over_many_channels() {
    // Per-channel parameters longer than the small-constant limit stay
    // constants the emitter can fold.
    let c = 96;
    let values =
        |k: usize| -> Vec<f32> { (0..c).map(|i| 0.5 + ((i * k) % 7) as f32 / 8.0).collect() };
    let x: Vec<f32> = (0..c * 4)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
        .collect();
    let text = r#"opset "" 15
graph "g" (%x: f16[1,96,2,2]) -> (%y) {
  init %scale = f16[96] @S@
  init %shift = f16[96] @B@
  init %mean = f16[96] @M@
  init %var = f16[96] @V@
  %y = BatchNormalization(%x, %scale, %shift, %mean, %var)
}"#
    .replace("@S@", &f16_hex(&values(3)))
    .replace("@B@", &f16_hex(&values(5)))
    .replace("@M@", &f16_hex(&values(2)))
    .replace("@V@", &f16_hex(&values(1)));
    let input = Array {
        name: "x".into(),
        dtype: sculpt_ir::DataType::F16,
        shape: vec![1, c, 2, 2],
        data: f16_bytes(&x),
    };
    check_arrays_within("half_batch_norm", &text, &[input], 4e-3);
}

#[test]
fn ceil_mode_pools() {
    check(
        "ceil_pools",
        r#"opset "" 19
graph "g" (%x: f32[1,2,7,6]) -> (%max, %avg, %avg_in, %line) {
  init %shape = i64[3] [1, 2, 42]
  %max = MaxPool(%x) {kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1}
  %avg = AveragePool(%x) {kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1}
  %avg_in = AveragePool(%x) {kernel_shape=[2, 3], strides=[3, 2], pads=[0, 1, 1, 0], ceil_mode=1, count_include_pad=1}
  %flat = Reshape(%x, %shape)
  %line = MaxPool(%flat) {kernel_shape=[4], strides=[3], ceil_mode=1}
}"#,
        &[("x", vec![1, 2, 7, 6])],
    );
}

/// `values` as a text-form list.
fn list<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

#[test]
fn matmul_nbits_codes_stay_4_and_8_bit() {
    // K = 20 in blocks of 16: the second block is padded. 4 bits with
    // packed zero points and a bias (40 columns: over 1024 codes, so i4);
    // 8 bits with the default zero point.
    let text = r#"opset "" 21
opset "com.microsoft" 1
graph "g" (%x: f32[2,3,20]) -> (%y4, %y8) {
  init %q4 = u8[40,2,8] @Q4@
  init %s4 = f32[80] @S4@
  init %z4 = u8[40] @Z4@
  init %b4 = f32[40] @B4@
  init %q8 = u8[3,2,16] @Q8@
  init %s8 = f32[6] [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
  %y4 = MatMulNBits(%x, %q4, %s4, %z4, _, %b4) {K=20, N=40, bits=4, block_size=16, $domain="com.microsoft"}
  %y8 = MatMulNBits(%x, %q8, %s8) {K=20, N=3, bits=8, block_size=16, $domain="com.microsoft"}
}"#
    .replace("@Q4@", &list((0..640).map(|i| (i * 37 + 11) % 256)))
    .replace("@S4@", &list((0..80).map(|i| ((i * 7) % 11) as f32 / 16.0 - 0.25)))
    .replace("@Z4@", &list((0..40).map(|i| (i * 29 + 7) % 256)))
    .replace("@B4@", &list((0..40).map(|i| (i % 5) as f32 / 4.0 - 0.5)))
    .replace("@Q8@", &list((0..96).map(|i| (i * 53 + 7) % 256)));
    check("matmul_nbits", &text, &[("x", vec![2, 3, 20])]);
    let m = sculpt_ir::text::parse(&text).unwrap();
    let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap();
    assert!(
        emitted.text.contains("tensor<40x2x16xi4>"),
        "4-bit codes as i4"
    );
    assert!(
        !emitted.text.contains("arith.shrui"),
        "no unpacking in the module"
    );
}

#[test]
fn int8_qdq_matmul_is_an_integer_matmul() {
    // S8S8 with per-column weight scales and zero points, U8S8, and a
    // Gemm with a transposed weight scaled per row.
    let weights: Vec<i64> = (0..24).map(|i| (i * 37 % 23) - 11).collect();
    let text = r#"opset "" 13
graph "g" (%x: f32[2,2,4], %x2: f32[3,4]) -> (%y, %yu, %yg) {
  init %xs = f32[] [0.05]
  init %xz = i8[] [3]
  init %uz = u8[] [128]
  init %w = i8[4,6] @W@
  init %ws = f32[6] [0.02, 0.03, 0.01, 0.04, 0.02, 0.05]
  init %wz = i8[6] [0, 1, -2, 0, 3, 0]
  %q = QuantizeLinear(%x, %xs, %xz)
  %xd = DequantizeLinear(%q, %xs, %xz)
  %wd = DequantizeLinear(%w, %ws, %wz) {axis=1}
  %y = MatMul(%xd, %wd)
  %qu = QuantizeLinear(%x, %xs, %uz)
  %xu = DequantizeLinear(%qu, %xs, %uz)
  %yu = MatMul(%xu, %wd)
  init %wt = i8[6,4] @W@
  init %c = f32[6] [0.5, -0.5, 1.0, 0.0, 0.25, -1.0]
  %wtd = DequantizeLinear(%wt, %ws) {axis=0}
  %q2 = QuantizeLinear(%x2, %xs, %xz)
  %x2d = DequantizeLinear(%q2, %xs, %xz)
  %yg = Gemm(%x2d, %wtd, %c) {transB=1}
}"#
    .replace("@W@", &list(weights));
    check(
        "int8_matmul",
        &text,
        &[("x", vec![2, 2, 4]), ("x2", vec![3, 4])],
    );
    let m = sculpt_ir::text::parse(&text).unwrap();
    let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap();
    let integer = emitted
        .text
        .lines()
        .filter(|l| l.contains("linalg.matmul") && l.contains("xi8>) outs(") && l.contains("xi32>"))
        .count();
    assert_eq!(integer, 3, "the three products as i8 × i8 → i32");
    assert!(emitted.integer_dequantize);
}

#[test]
fn onnxruntime_moe_is_refused_with_the_way_round() {
    let text = r#"opset "" 17
opset "com.microsoft" 1
graph "g" (%x: f32[4,8], %router: f32[4,2]) -> (%y) {
  init %w1 = f32[2,8,4] elided
  init %w2 = f32[2,4,8] elided
  %y = MoE(%x, %router, %w1, _, %w2) {k=1, activation_type="relu", $domain="com.microsoft"} @"ffn_moe"
}"#
    .replace(
        "f32[2,8,4] elided",
        &format!("f32[2,8,4] {}", list((0..64).map(|i| i as f32 / 64.0))),
    )
    .replace(
        "f32[2,4,8] elided",
        &format!("f32[2,4,8] {}", list((0..64).map(|i| i as f32 / 64.0))),
    );
    let m = sculpt_ir::text::parse(&text).unwrap();
    let e = emit_mlir(&m, &EmitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ffn_moe") && e.contains("form=onnx"), "{e}");
}

#[test]
fn integer_clip_bounds_positions() {
    // As decoders clip position ids: both bounds, and a lower one alone.
    check_arrays(
        "integer_clip",
        r#"opset "" 17
graph "g" (%p: i64[2,4]) -> (%both, %low) {
  init %lo = i64[] [0]
  init %hi = i64[] [5]
  %both = Clip(%p, %lo, %hi)
  %low = Clip(%p, %lo)
}"#,
        &[i64_array("p", vec![2, 4], &[-3, 0, 2, 5, 7, -1, 9, 4])],
    );
}

#[test]
fn blocked_4_bit_dequantize_feeds_a_matmul() {
    // opset 21's blocked DequantizeLinear (quantize format=dq): 4-bit
    // codes and zero points, a scale per block of 2 rows (packed two to
    // a byte, the first in the low bits: u4 0, 15, 3, 12, 7, 8, 1, 9 and
    // i4 -8, 7, 3, -2, 0, 1, -1, 5).
    check(
        "blocked_dq",
        r#"opset "" 21
graph "g" (%x: f32[3,4]) -> (%y, %ys) {
  init %w = u4[4,2] hex"F0C38791"
  init %s = f32[2,2] [0.5, 0.25, 0.125, 1.0]
  init %z = u4[2,2] hex"78F0"
  init %ws = i4[4,2] hex"78E3105F"
  %wd = DequantizeLinear(%w, %s, %z) {axis=0, block_size=2}
  %y = MatMul(%x, %wd)
  %wsd = DequantizeLinear(%ws, %s) {axis=0, block_size=2}
  %ys = MatMul(%x, %wsd)
}"#,
        &[("x", vec![3, 4])],
    );
}
