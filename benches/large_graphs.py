#!/usr/bin/env python3
"""Scaling with graph size: `sculpt inspect` and `sculpt opt -p cleanup`
on synthetic graphs of 10^4 to 2·10^5 nodes, and onnxsim on the same
files (optional), so that superlinear passes show up as a time per node
that grows with the size.

Graphs (seeded, tiny tensors, so that time is graph work, not data):
- identity: a chain of Identity nodes (cleanup bypasses them all);
- residual: Relu then Add of a per-node constant (7 distinct values, so
  that cleanup merges the duplicate initializers and keeps the nodes);
- branches: two identical Sigmoid branches joined by Add (CSE merges
  them).

Per row: nodes, wall time of each command (a fresh process: load, work,
save), microseconds per node, and peak RSS.

usage: benches/large_graphs.py [--sculpt target/release/sculpt] [--sizes 10000,50000,100000,200000] [--peers] [--json]
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import REPO, measured

ONNXSIM = "import onnx, onnxsim, sys; m, ok = onnxsim.simplify(onnx.load(sys.argv[1])); onnx.save(m, sys.argv[2])"


def make(kind, nodes, path):
    """A `kind` graph of about `nodes` nodes."""
    per_step = {"identity": 1, "residual": 2, "branches": 3}[kind]
    body, inits, x = [], [], "v0"
    for i in range(nodes // per_step):
        y = f"v{i + 1}"
        if kind == "identity":
            body.append(helper.make_node("Identity", [x], [y]))
        elif kind == "residual":
            c = f"c{i}"
            inits.append(numpy_helper.from_array(np.full([4], i % 7, np.float32), c))
            body += [helper.make_node("Relu", [x], [f"r{i}"]), helper.make_node("Add", [f"r{i}", c], [y])]
        else:
            body += [helper.make_node("Sigmoid", [x], [f"a{i}"]), helper.make_node("Sigmoid", [x], [f"b{i}"]),
                     helper.make_node("Add", [f"a{i}", f"b{i}"], [y])]
        x = y
    graph = helper.make_graph(body, kind, [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--sizes", default="10000,50000,100000,200000")
    ap.add_argument("--peers", action="store_true", help="onnxsim too (pip install onnxsim)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model, out = os.path.join(tmp, "g.onnx"), os.path.join(tmp, "out.onnx")
        for kind in ("identity", "residual", "branches"):
            for size in map(int, a.sizes.split(",")):
                nodes = make(kind, size, model)
                commands = {"inspect": [a.sculpt, "inspect", model],
                            # The pass alone: the default numeric check would time tract.
                            "cleanup": [a.sculpt, "opt", model, "-p", "cleanup", "-o", out, "--no-check"]}
                if a.peers:
                    commands["onnxsim"] = [sys.executable, "-c", ONNXSIM, model, out]
                for name, cmd in commands.items():
                    seconds, rss, _, err = measured(cmd, a.timeout)
                    if err and seconds is not None:
                        raise SystemExit(f"{' '.join(cmd)}: {err}")
                    rows.append({"graph": kind, "nodes": nodes, "command": name, "seconds": seconds,
                                 "us_per_node": None if seconds is None else 1e6 * seconds / nodes, "rss_mib": rss})
                    print(rows[-1], file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| graph | nodes | command | s | µs/node | peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        if r["seconds"] is None:
            print(f"| {r['graph']} | {r['nodes']} | {r['command']} | > {a.timeout:.0f} | | |")
        else:
            print(f"| {r['graph']} | {r['nodes']} | {r['command']} | {r['seconds']:.2f} | {r['us_per_node']:.1f} | {r['rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
