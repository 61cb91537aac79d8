//! ZIG analysis on hand-written graphs: which slices group together, and
//! which groups are refused and why.

use sculpt_passes::analysis::zero_groups::ZeroGroups;

fn render(text: &str) -> String {
    let model = sculpt_ir::text::parse(text).unwrap();
    let z = ZeroGroups::of_graph(&model.graph);
    let mut out = format!(
        "prunable params {} of {}\n",
        z.prunable_params, z.total_params
    );
    for g in &z.groups {
        out += &format!(
            "{} {} ch, {} params/ch, from {}\n",
            g.kind,
            g.channels,
            g.params_per_channel,
            g.sources.join(" + ")
        );
        for m in &g.members {
            out += &format!("  {} axis {} block {}\n", m.tensor, m.axis, m.block);
        }
        for r in &g.reasons {
            out += &format!("  UNPRUNABLE: {r}\n");
        }
    }
    out
}

fn zeros(n: usize) -> String {
    format!("hex\"{}\"", "0".repeat(8 * n))
}

#[test]
fn conv_bn_relu_conv() {
    let text = format!(
        r#"graph "g" (%x: f32[N,3,8,8]) -> (%y) {{
  init %w1 = f32[4,3,3,3] {}
  init %b1 = f32[4] {}
  init %s = f32[4] {}
  init %t = f32[4] {}
  init %m = f32[4] {}
  init %v = f32[4] {}
  init %w2 = f32[5,4,1,1] {}
  %c = Conv(%x, %w1, %b1) {{pads=[1, 1, 1, 1]}} @"conv1"
  %n = BatchNormalization(%c, %s, %t, %m, %v) @"bn1"
  %r = Relu(%n)
  %y = Conv(%r, %w2) @"conv2"
}}"#,
        zeros(108),
        zeros(4),
        zeros(4),
        zeros(4),
        zeros(4),
        zeros(4),
        zeros(20)
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn residual_add_couples_channels_and_flatten_folds_blocks() {
    let text = format!(
        r#"graph "g" (%x: f32[N,2,4,4]) -> (%y) {{
  init %w0 = f32[3,2,1,1] {}
  init %w1 = f32[3,3,1,1] {}
  init %fc = f32[48,10] {}
  %a = Conv(%x, %w0) @"stem"
  %b = Conv(%a, %w1) @"branch"
  %s = Add(%a, %b) @"residual"
  %f = Flatten(%s) {{axis=1}}
  %y = MatMul(%f, %fc) @"fc"
}}"#,
        zeros(6),
        zeros(9),
        zeros(480)
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn depthwise_couples_and_unknown_ops_refuse() {
    let text = format!(
        r#"graph "g" (%x: f32[N,2,4,4]) -> (%y, %z) {{
  init %w0 = f32[4,2,1,1] {}
  init %dw = f32[4,1,3,3] {}
  init %w2 = f32[4,4,1,1] {}
  %a = Conv(%x, %w0) @"expand"
  %d = Conv(%a, %dw) {{group=4, pads=[1, 1, 1, 1]}} @"depthwise"
  %y = Conv(%d, %w2) @"project"
  %z = Custom(%y) {{$domain="com.example"}} @"mystery"
}}"#,
        zeros(8),
        zeros(36),
        zeros(16)
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn ffn_neurons_group_and_the_residual_stream_refuses() {
    let text = format!(
        r#"graph "g" (%x: f32[B,S,4]) -> (%y) {{
  init %w1 = f32[4,8] {}
  init %b1 = f32[8] {}
  init %w2 = f32[8,4] {}
  init %b2 = f32[4] {}
  init %g = f32[4] {}
  init %be = f32[4] {}
  %h = MatMul(%x, %w1) @"ffn.in"
  %hb = Add(%h, %b1)
  %a = Relu(%hb)
  %o = MatMul(%a, %w2) @"ffn.out"
  %ob = Add(%o, %b2)
  %r = Add(%ob, %x) @"residual"
  %y = LayerNormalization(%r, %g, %be) {{axis=-1}} @"ln"
}}"#,
        zeros(32),
        zeros(8),
        zeros(32),
        zeros(4),
        zeros(4),
        zeros(4)
    );
    insta::assert_snapshot!(render(&text));
}
