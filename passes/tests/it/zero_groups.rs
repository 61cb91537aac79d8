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
            out += &format!(
                "  {} axis {} offset {} block {}{}\n",
                m.tensor,
                m.axis,
                m.offset,
                m.block,
                m.activation
                    .as_ref()
                    .map_or(String::new(), |(a, _)| format!(" (reads {a})"))
            );
        }
        for f in &g.fixes {
            out += &format!("  FIX {f:?}\n");
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
        r#"opset "" 17
opset "com.example" 1
graph "g" (%x: f32[N,2,4,4]) -> (%y, %z) {{
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

/// A graph with zero-filled f32 initializers `inits` (name, dims) and `body`.
fn graph(signature: &str, inits: &[(&str, &[i64])], body: &str) -> String {
    let mut text = format!("graph \"g\" {signature} {{\n");
    for (name, dims) in inits {
        let n: i64 = dims.iter().product();
        let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
        text += &format!(
            "  init %{name} = f32[{}] {}\n",
            dims.join(","),
            zeros(n as usize)
        );
    }
    text + body + "\n}"
}

#[test]
fn concat_offsets_and_split_sizes() {
    let text = graph(
        "(%x: f32[N,3,4,4]) -> (%y)",
        &[
            ("wa", &[2, 3, 1, 1]),
            ("wb", &[4, 3, 1, 1]),
            ("s", &[6, 1, 1]),
            ("wc", &[5, 6, 1, 1]),
            ("wd", &[5, 2, 1, 1]),
            ("we", &[5, 4, 1, 1]),
        ],
        r#"  init %sizes = i64[2] [2, 4]
  %a = Conv(%x, %wa) @"a"
  %b = Conv(%x, %wb) @"b"
  %c = Concat(%a, %b) {axis=1} @"cat"
  %n = Mul(%c, %s) @"scale"
  %p = Conv(%n, %wc) @"after_cat"
  %q, %r = Split(%n, %sizes) {axis=1} @"split"
  %pd = Conv(%q, %wd) @"after_split_0"
  %pe = Conv(%r, %we) @"after_split_1"
  %t = Add(%p, %pd)
  %y = Add(%t, %pe)"#,
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn slice_of_a_concatenation() {
    let text = graph(
        "(%x: f32[N,3,4,4]) -> (%y)",
        &[
            ("wa", &[2, 3, 1, 1]),
            ("wb", &[4, 3, 1, 1]),
            ("wc", &[5, 4, 1, 1]),
        ],
        r#"  init %st = i64[1] [2]
  init %en = i64[1] [6]
  init %ax = i64[1] [1]
  %a = Conv(%x, %wa) @"a"
  %b = Conv(%x, %wb) @"b"
  %c = Concat(%a, %b) {axis=1} @"cat"
  %s = Slice(%c, %st, %en, %ax) @"take_b"
  %y = Conv(%s, %wc) @"after""#,
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn grouped_conv_goes_in_whole_groups_and_group_norm_too() {
    let text = graph(
        "(%x: f32[N,3,4,4]) -> (%y)",
        &[
            ("w0", &[8, 3, 1, 1]),
            ("gw", &[4, 4, 3, 3]),
            ("gs", &[4]),
            ("gb", &[4]),
            ("w2", &[6, 4, 1, 1]),
        ],
        r#"  %a = Conv(%x, %w0) @"expand"
  %g = Conv(%a, %gw) {group=2, pads=[1, 1, 1, 1]} @"grouped"
  %n = GroupNormalization(%g, %gs, %gb) {num_groups=2} @"gn"
  %y = Conv(%n, %w2) @"project""#,
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn instance_norm_keeps_channels_and_channel_shuffle_refuses() {
    let text = graph(
        "(%x: f32[1,3,4,4]) -> (%y)",
        &[
            ("w0", &[4, 3, 1, 1]),
            ("is", &[4]),
            ("ib", &[4]),
            ("w1", &[4, 4, 1, 1]),
            ("w2", &[5, 4, 1, 1]),
        ],
        r#"  init %split = i64[5] [1, 2, 2, 4, 4]
  init %merge = i64[4] [1, 4, 4, 4]
  %a = Conv(%x, %w0) @"c0"
  %n = InstanceNormalization(%a, %is, %ib) @"in"
  %b = Conv(%n, %w1) @"c1"
  %r = Reshape(%b, %split) @"shuffle.split"
  %t = Transpose(%r) {perm=[0, 2, 1, 3, 4]} @"shuffle.swap"
  %m = Reshape(%t, %merge) @"shuffle.merge"
  %y = Conv(%m, %w2) @"c2""#,
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn attention_heads_and_grouped_query_attention() {
    // 4 query heads of 2, 2 K/V heads of 2 shared by pairs of query heads.
    let text = graph(
        "(%x: f32[1,3,8]) -> (%y)",
        &[
            ("wq", &[8, 8]),
            ("bq", &[8]),
            ("wk", &[8, 4]),
            ("wv", &[8, 4]),
            ("wo", &[8, 8]),
        ],
        r#"  init %qs = i64[4] [1, 3, 4, 2]
  init %ks = i64[4] [1, 3, 2, 2]
  init %vs = i64[4] [1, 3, 2, 2]
  init %ex = i64[5] [1, 2, 2, 3, 2]
  init %kh = i64[4] [1, 4, 3, 2]
  init %vh = i64[4] [1, 4, 3, 2]
  init %os = i64[3] [1, 3, 8]
  init %ax = i64[1] [2]
  %q0 = MatMul(%x, %wq) @"q"
  %q1 = Add(%q0, %bq)
  %q2 = Reshape(%q1, %qs) @"q.split"
  %q = Transpose(%q2) {perm=[0, 2, 1, 3]}
  %k0 = MatMul(%x, %wk) @"k"
  %k1 = Reshape(%k0, %ks) @"k.split"
  %k2 = Transpose(%k1) {perm=[0, 2, 1, 3]}
  %k3 = Unsqueeze(%k2, %ax)
  %k4 = Expand(%k3, %ex)
  %k5 = Reshape(%k4, %kh) @"k.repeat"
  %k = Transpose(%k5) {perm=[0, 1, 3, 2]}
  %v0 = MatMul(%x, %wv) @"v"
  %v1 = Reshape(%v0, %vs) @"v.split"
  %v2 = Transpose(%v1) {perm=[0, 2, 1, 3]}
  %v3 = Unsqueeze(%v2, %ax)
  %v4 = Expand(%v3, %ex)
  %v = Reshape(%v4, %vh) @"v.repeat"
  %s = MatMul(%q, %k) @"scores"
  %p = Softmax(%s) {axis=-1}
  %c = MatMul(%p, %v) @"context"
  %c1 = Transpose(%c) {perm=[0, 2, 1, 3]}
  %c2 = Reshape(%c1, %os) @"merge"
  %y0 = MatMul(%c2, %wo) @"o"
  %y = Add(%y0, %x) @"residual""#,
    );
    insta::assert_snapshot!(render(&text));
}

#[test]
fn gather_on_channels_and_runtime_shapes_refuse() {
    let text = graph(
        "(%x: f32[N,3,4,4], %shape: i64[2]) -> (%y, %z)",
        &[("w0", &[4, 3, 1, 1]), ("w1", &[4, 3, 1, 1])],
        r#"  init %idx = i64[2] [0, 2]
  %a = Conv(%x, %w0) @"a"
  %y = Gather(%a, %idx) {axis=1} @"pick"
  %b = Conv(%x, %w1) @"b"
  %z = Reshape(%b, %shape) @"dynamic""#,
    );
    insta::assert_snapshot!(render(&text));
}
