#!/usr/bin/env python3
"""Writes a synthetic decoder-only transformer with seeded random weights
and external data, streamed tensor by tensor to the side file (memory
stays at one tensor, whatever the model's size).

Each layer: LayerNormalization, grouped-query attention (q and o
hidden × hidden, k and v hidden × kv_heads·head_dim, the kv heads
repeated to every query head, a causal mask), a residual add;
LayerNormalization, a SiLU-gated FFN (gate, up, down), a residual add.
After the last layer a final norm and an LM head tied to the token
embedding (a MatMul by Transpose(embedding): one stored tensor).

The defaults (24 layers, hidden 2048, FFN 8192, 16 query and 4 kv heads,
vocabulary 32000, float16 weights) give about 3.0 GB; `--small` is a
2-layer, hidden-64 version for tests.

usage: scripts/make-large-model.py OUT.onnx [--layers N] [--hidden D] [--ffn F]
       [--heads H] [--kv-heads K] [--vocab V] [--dtype float16|float32] [--small] [--seed S]
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--small", action="store_true", help="2 layers, hidden 64, FFN 256, vocab 512")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.small:
        a.layers, a.hidden, a.ffn, a.heads, a.kv_heads, a.vocab = 2, 64, 256, 4, 2, 512
    d, heads, kv, head_dim = a.hidden, a.heads, a.kv_heads, a.hidden // a.heads
    if heads % kv or d % heads:
        raise SystemExit("heads must divide hidden, and kv-heads divide heads")
    dtype = np.dtype(a.dtype)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    rng = np.random.default_rng(a.seed)
    data_name = os.path.basename(a.out) + ".data"
    data = open(os.path.join(os.path.dirname(os.path.abspath(a.out)), data_name), "wb")
    inits, nodes = [], []

    def weight(name, shape, scale):
        """A seeded normal tensor written to the side file, 4 KiB aligned."""
        array = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype)
        offset = data.tell()
        pad = (-offset) % 4096
        data.write(b"\0" * pad)
        offset += pad
        data.write(array.tobytes())
        t = TensorProto(name=name, data_type=elem, dims=list(shape), data_location=TensorProto.EXTERNAL)
        for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(array.nbytes))):
            t.external_data.add(key=k, value=v)
        inits.append(t)
        return name

    def const(name, values, dt=np.int64):
        inits.append(onnx.numpy_helper.from_array(np.asarray(values, dt), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def norm(x, prefix):
        scale = const(f"{prefix}/scale", np.ones(d), dtype)
        bias = const(f"{prefix}/bias", np.zeros(d), dtype)
        return node("LayerNormalization", [x, scale, bias], f"{prefix}/out", axis=-1, epsilon=1e-5)

    emb = weight("model.embed_tokens.weight", (a.vocab, d), 0.02)
    x = node("Gather", [emb, "input_ids"], "embed")
    # Shapes: [B, S] from the ids; heads split as [B, S, H, head_dim].
    shape_ids = node("Shape", ["input_ids"], "ids_shape")
    q_shape = node("Concat", [shape_ids, const("q_dims", [heads, head_dim])], "q_shape", axis=0)
    kv_shape = node("Concat", [shape_ids, const("kv_dims", [kv, 1, head_dim])], "kv_shape", axis=0)
    kv_wide = node("Concat", [shape_ids, const("kv_wide_dims", [kv, heads // kv, head_dim])], "kv_wide", axis=0)
    out_shape = node("Concat", [shape_ids, const("out_dims", [d])], "out_shape", axis=0)
    # Causal mask [S, S]: 0 on and below the diagonal, a large negative above.
    seq = node("Gather", [shape_ids, const("one", 1)], "seq", axis=0)
    steps = node("Range", [const("zero", 0), seq, const("step", 1)], "steps")
    rows = node("Unsqueeze", [steps, const("axis1", [1])], "rows")
    above = node("Greater", [steps, rows], "above")
    mask = node("Where", [above, const("neg", -1e4, dtype), const("nil", 0.0, dtype)], "mask")
    scale = const("attn_scale", 1.0 / np.sqrt(head_dim), dtype)
    std = 1.0 / np.sqrt(d)
    for i in range(a.layers):
        p = f"model.layers.{i}"
        h = norm(x, f"{p}/input_layernorm")
        q = node("MatMul", [h, weight(f"{p}.self_attn.q_proj.weight", (d, d), std)], f"{p}/q_proj")
        k = node("MatMul", [h, weight(f"{p}.self_attn.k_proj.weight", (d, kv * head_dim), std)], f"{p}/k_proj")
        v = node("MatMul", [h, weight(f"{p}.self_attn.v_proj.weight", (d, kv * head_dim), std)], f"{p}/v_proj")
        q = node("Transpose", [node("Reshape", [q, q_shape], f"{p}/q_heads")], f"{p}/q_t", perm=[0, 2, 1, 3])

        def heads_of(t, name):
            t = node("Reshape", [t, kv_shape], f"{p}/{name}_heads")
            t = node("Expand", [t, kv_wide], f"{p}/{name}_repeat")
            t = node("Reshape", [t, q_shape], f"{p}/{name}_all")
            return node("Transpose", [t], f"{p}/{name}_t", perm=[0, 2, 1, 3])

        k, v = heads_of(k, "k"), heads_of(v, "v")
        kt = node("Transpose", [k], f"{p}/k_tt", perm=[0, 1, 3, 2])
        s = node("Mul", [node("MatMul", [q, kt], f"{p}/scores"), scale], f"{p}/scaled")
        s = node("Softmax", [node("Add", [s, mask], f"{p}/masked")], f"{p}/probs", axis=-1)
        o = node("Transpose", [node("MatMul", [s, v], f"{p}/context")], f"{p}/context_t", perm=[0, 2, 1, 3])
        o = node("Reshape", [o, out_shape], f"{p}/context_flat")
        o = node("MatMul", [o, weight(f"{p}.self_attn.o_proj.weight", (d, d), std)], f"{p}/o_proj")
        x = node("Add", [x, o], f"{p}/attn_residual")
        h = norm(x, f"{p}/post_attention_layernorm")
        g = node("MatMul", [h, weight(f"{p}.mlp.gate_proj.weight", (d, a.ffn), std)], f"{p}/gate_proj")
        g = node("Mul", [g, node("Sigmoid", [g], f"{p}/gate_sigmoid")], f"{p}/gate_silu")
        u = node("MatMul", [h, weight(f"{p}.mlp.up_proj.weight", (d, a.ffn), std)], f"{p}/up_proj")
        f = node("Mul", [g, u], f"{p}/gated")
        f = node("MatMul", [f, weight(f"{p}.mlp.down_proj.weight", (a.ffn, d), 1.0 / np.sqrt(a.ffn))], f"{p}/down_proj")
        x = node("Add", [x, f], f"{p}/mlp_residual")
    x = norm(x, "model.norm")
    head = node("Transpose", [emb], "lm_head/tied", perm=[1, 0])
    node("MatMul", [x, head], "logits")
    data.close()
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", elem, ["batch", "seq", a.vocab])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make-large-model")
    with open(a.out, "wb") as f:
        f.write(model.SerializeToString())
    total = os.path.getsize(a.out) + os.path.getsize(os.path.join(os.path.dirname(os.path.abspath(a.out)), data_name))
    print(f"{a.out}: {a.layers} layers, hidden {d}, FFN {a.ffn}, {heads}/{kv} heads, {len(nodes)} nodes, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
