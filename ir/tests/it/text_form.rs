//! The text form on small hand-written graphs: snapshots of the printed
//! form, round-trips, and parse errors with positions.

use sculpt_ir::text::{parse, print, PrintOptions};

const SMALL: &str = r#"
// A residual block with every kind of attribute.
ir_version 8
opset "" 17
opset "com.example" 1
meta "author" "sculpt tests"
graph "block" (%x: f32[N,4,8,8]) -> (%y: f32[N,4,8,8]) {
  init %w = f32[4,4,1,1] hex"0000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f000000000000000000000000000000000000803f"
  init %b = f32[4] [0.5, -1.0, 1e-5, inf]
  init %shape = i64[2] [-1, 4]
  %c: f32[N,4,8,8] = Conv(%x, %w, %b) {dilations=[1, 1], group=1, kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1]} @"conv"
  %r = Relu(%c)
  %s = Add(%r, %x) {$doc="residual"}
  %y = Clip(%s, _, _) {$domain=""}
  %flag = Constant() {value=tensor bool[] [1]}
  %z, _ = If(%flag) {then_branch=graph "then" () -> (%t) {
    %t = Identity(%y)
  }, else_branch=graph "else" () -> (%e) {
    %e = Neg(%y)
  }}
  %u = CustomOp(%z) {alpha=0.25, name_list=["a", "b\"q"], empty=ints[], f=[1.0, 2.5], $domain="com.example"} @"custom op"
}
"#;

#[test]
fn small_graph_prints_as_expected() {
    let model = parse(SMALL).unwrap();
    insta::assert_snapshot!(print(&model, &PrintOptions::default()));
}

#[test]
fn small_graph_round_trips() {
    let model = parse(SMALL).unwrap();
    let text = print(
        &model,
        &PrintOptions {
            full: true,
            ..Default::default()
        },
    );
    let again = parse(&text).unwrap();
    assert!(again == model);
    sculpt_ir::verify::check(&again).unwrap();
}

#[test]
fn functions_round_trip() {
    let text = r#"
ir_version 8
opset "" 17
opset "local" 1
graph "g" (%x: f32[3]) -> (%y: f32[3]) {
  %y = Scale(%x) {factor=2.0, $domain="local"}
}
function "Scale" (%a) -> (%b) {
  domain "local"
  attributes ["factor"]
  opset "" 17
  %f = Constant() {value_float=ref float "factor"}
  %b = Mul(%a, %f)
}
"#;
    let model = parse(text).unwrap();
    assert_eq!(model.functions.len(), 1);
    let printed = print(&model, &PrintOptions::default());
    assert!(parse(&printed).unwrap() == model);
    insta::assert_snapshot!(printed);
}

#[test]
fn parse_errors_name_the_position() {
    let cases = [
        (
            "graph \"g\" (%x: f32[2]) -> (%y) {\n  %y = Relu(%x\n}",
            "line 3",
        ),
        (
            "graph \"g\" (%x: q7[2]) -> (%x) {}",
            "unknown element type 'q7'",
        ),
        (
            "graph \"g\" () -> (%y) {\n  %y = Relu(%nope)\n}",
            "'nope' is used by node",
        ),
        (
            "graph \"g\" (%x: f32[1]) -> (%x) {\n  init %w = f32[2] [1.0]\n}",
            "needs 8 bytes",
        ),
        (
            "graph \"g\" (%x: f32[1]) -> (%y) {\n  %y = Relu(%x)\n  %y = Neg(%x)\n}",
            "defined twice",
        ),
        (
            "graph \"g\" (%x: f32[1]) -> (%b) {\n  %a = Relu(%b)\n  %b = Relu(%a)\n}",
            "cycle",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "error for {text:?} was {err:?}, wanted {want:?}"
        );
    }
}
