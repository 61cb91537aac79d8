#!/usr/bin/env python3
"""`sculpt opt -p cleanup` against onnxsim and onnxslim, side by side.

For every corpus model: node counts (original, sculpt, onnxsim, onnxslim),
whole-process wall time of each tool (a fresh process doing load +
simplify + save, median of --repeat interleaved runs), the ratio of
onnxsim's time to sculpt's, and whether sculpt's output matches the
original in onnxruntime (rtol 1e-4, atol 1e-5 on the corpus inputs).

usage: benches/cleanup_vs_peers.py [--sculpt target/release/sculpt] [--repeat 3] [--json]
needs: pip install onnx onnxruntime onnxsim onnxslim
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

from common import timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))

PEERS = {
    "onnxsim": "import onnx, onnxsim, sys; m, ok = onnxsim.simplify(onnx.load(sys.argv[1])); onnx.save(m, sys.argv[2])",
    "onnxslim": "import onnxslim, sys; onnxslim.slim(sys.argv[1], sys.argv[2])",
}


def nodes(path):
    return len(onnx.load(path, load_external_data=False).graph.node)


def run(path, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: feeds[i.name] for i in s.get_inputs() if i.name in feeds})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sculpt-cleanup-")
    rows = []
    for name in sorted(os.listdir(CORPUS)):
        model = os.path.join(CORPUS, name, "model.onnx")
        if not os.path.exists(model):
            continue
        outs = {t: os.path.join(tmp, f"{name}.{t}.onnx") for t in ["sculpt", *PEERS]}
        times = {t: [] for t in outs}
        failed = {}
        for _ in range(a.repeat):
            t, p = timed([a.sculpt, "opt", model, "-p", "cleanup", "-o", outs["sculpt"]])
            times["sculpt"].append(t)
            if p.returncode:
                failed["sculpt"] = p.stderr.strip()
            for peer, code in PEERS.items():
                t, p = timed([sys.executable, "-c", code, model, outs[peer]])
                times[peer].append(t)
                if p.returncode:
                    failed[peer] = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
        feeds = dict(np.load(os.path.join(CORPUS, name, "inputs.npz")))
        ref = run(model, feeds)
        got = run(outs["sculpt"], feeds)
        same = all(np.allclose(g, r, rtol=1e-4, atol=1e-5) for g, r in zip(got, ref)) and len(got) == len(ref)
        row = dict(model=name, original=nodes(model), equal_outputs=bool(same))
        for t in outs:
            row[f"{t}_nodes"] = None if t in failed else nodes(outs[t])
            row[f"{t}_s"] = statistics.median(times[t])
        row["speedup_vs_onnxsim"] = row["onnxsim_s"] / row["sculpt_s"]
        row["speedup_vs_onnxslim"] = row["onnxslim_s"] / row["sculpt_s"]
        rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    hdr = (f"{'model':<22} {'orig':>5} {'sculpt':>6} {'onnxsim':>7} {'onnxslim':>8}  {'sculpt s':>8} {'onnxsim s':>9} "
           f"{'onnxslim s':>10} {'x onnxsim':>9} {'x onnxslim':>10}  equal")
    print(hdr)
    print("-" * len(hdr))
    fmt = lambda v: "fail" if v is None else str(v)
    for r in rows:
        print(f"{r['model']:<22} {r['original']:>5} {fmt(r['sculpt_nodes']):>6} {fmt(r['onnxsim_nodes']):>7} "
              f"{fmt(r['onnxslim_nodes']):>8}  {r['sculpt_s']:>8.3f} {r['onnxsim_s']:>9.3f} {r['onnxslim_s']:>10.3f} "
              f"{r['speedup_vs_onnxsim']:>8.1f}x {r['speedup_vs_onnxslim']:>9.1f}x  {'yes' if r['equal_outputs'] else 'NO'}")
    print(f"\nwhole-process wall time, median of {a.repeat} interleaved runs each; outputs compared in onnxruntime "
          f"{ort.__version__} on the corpus inputs")


if __name__ == "__main__":
    main()
