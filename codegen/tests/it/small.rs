//! Emitted MLIR for small hand-written graphs, one per op family
//! (snapshots), each verified by MLIR and, where the CPU path covers it,
//! run and compared with tract.

use sculpt_codegen::{emit_mlir, CpuModule, EmitOptions, MlirContext};
use sculpt_runtime::{Array, Session};

/// Emits (verified), snapshots the text, runs the CPU path on `inputs`
/// and compares with tract.
fn check(name: &str, text: &str, inputs: &[(&str, Vec<usize>)]) {
    let m = sculpt_ir::text::parse(text).unwrap();
    let emitted = emit_mlir(&m, &EmitOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::assert_snapshot!(name, emitted.text);
    let arrays: Vec<Array> = inputs
        .iter()
        .map(|(n, shape)| {
            let count: usize = shape.iter().product();
            let v: Vec<f32> = (0..count)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
                .collect();
            Array::from_f32(n, shape.clone(), &v)
        })
        .collect();
    let expected = Session::new(&m, &arrays).unwrap().run(&arrays).unwrap();
    let context = MlirContext::new();
    let cpu = CpuModule::compile(&context, &emitted.text, emitted.outputs.clone())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut args: Vec<(Vec<f32>, Vec<i64>)> = arrays
        .iter()
        .map(|a| {
            let v = a.to_f64().unwrap().into_iter().map(|x| x as f32).collect();
            (v, a.shape.iter().map(|&d| d as i64).collect())
        })
        .collect();
    let got = cpu.run(&mut args).unwrap();
    for (e, g) in expected.iter().zip(&got) {
        let e = e.to_f64().unwrap();
        for (a, b) in e.iter().zip(g) {
            assert!(
                (a - *b as f64).abs() <= 1e-4 * a.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn conv_bias_relu_and_grouped_conv() {
    check(
        "conv",
        r#"graph "g" (%x: f32[1,4,5,5]) -> (%y) {
  init %w = f32[4,4,3,3] elided"x"
  init %b = f32[4] [0.5, -0.5, 1.0, 0.0]
  init %dw = f32[4,2,1,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
  %c = Conv(%x, %w, %b) {pads=[1, 1, 1, 1], strides=[2, 2]}
  %r = Relu(%c)
  %y = Conv(%r, %dw) {group=2}
}"#
        .replace(
            "elided\"x\"",
            &format!(
                "[{}]",
                (0..144)
                    .map(|i| format!("{:.1}", (i % 7) as f32 - 3.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .as_str(),
        &[("x", vec![1, 4, 5, 5])],
    );
}

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
