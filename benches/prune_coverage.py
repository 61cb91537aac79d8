#!/usr/bin/env python3
"""Pruning coverage, as Torch-Pruning reports it: for every corpus model,
the share of parameters in prunable zero-invariant groups, and whether
prune at ratio 0.3 gives a valid model equivalent to its masked twin.

For each model: `sculpt opt -p cleanup`, `sculpt inspect --zig --json`,
then `prune{criterion=random ratio=0.3 seed=S mode=mask|remove}` for
--seeds seeds; the two are compared in onnxruntime (rtol 1e-4, atol 1e-5)
on the model's inputs.npz, and the removed model is checked with
onnx.checker (full_check). Prints a markdown table; --json for machines.

usage: benches/prune_coverage.py [--sculpt target/release/sculpt] [--seeds 2] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def outputs(path, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})


def stats(sculpt, path):
    v = json.loads(run([sculpt, "inspect", path, "--json"]))
    return v["params"], v["flops"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    names = a.models or sorted(d for d in os.listdir(CORPUS) if os.path.isfile(os.path.join(CORPUS, d, "model.onnx")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = os.path.join(CORPUS, name)
            feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
            base = os.path.join(tmp, name + ".onnx")
            run([a.sculpt, "opt", os.path.join(folder, "model.onnx"), "-p", "cleanup", "-o", base])
            z = json.loads(run([a.sculpt, "inspect", base, "--zig", "--json"]))
            groups = z["groups"]
            row = {
                "model": name,
                "params": z["total_params"],
                "prunable_share": z["prunable_params"] / max(z["total_params"], 1),
                "groups": len(groups),
                "prunable_groups": sum(g["prunable"] for g in groups),
                "kinds": sorted({g["kind"] for g in groups if g["prunable"]}),
                "equivalent": True,
                "valid": True,
                "max_abs_err": 0.0,
            }
            reasons = {}
            for g in groups:
                for r in g["reasons"]:
                    key = r.split(": ", 1)[-1].split(" (")[0] if ": " in r else r
                    reasons[key[:60]] = reasons.get(key[:60], 0) + 1
            row["top_reasons"] = sorted(reasons.items(), key=lambda kv: -kv[1])[:2]
            for seed in range(a.seeds):
                paths = {}
                for mode in ("mask", "remove"):
                    paths[mode] = os.path.join(tmp, f"{name}.{seed}.{mode}.onnx")
                    run([a.sculpt, "opt", base, "-p",
                         f"prune{{criterion=random ratio={a.ratio} seed={seed} mode={mode}}}", "-o", paths[mode]])
                try:
                    onnx.checker.check_model(onnx.load(paths["remove"]), full_check=True)
                except Exception as e:  # noqa: BLE001
                    row["valid"] = False
                    row["error"] = str(e)[:200]
                    continue
                for x, y in zip(outputs(paths["mask"], feeds), outputs(paths["remove"], feeds)):
                    err = float(np.max(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
                    row["max_abs_err"] = max(row["max_abs_err"], err)
                    if not np.allclose(x, y, rtol=1e-4, atol=1e-5):
                        row["equivalent"] = False
                if seed == 0:
                    (p0, f0), (p1, f1) = stats(a.sculpt, base), stats(a.sculpt, paths["remove"])
                    row["params_after"], row["flops"], row["flops_after"] = p1, f0, f1
            rows.append(row)
            print(f"{name}: done", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"| model | params | prunable | prunable groups | kinds | prune {a.ratio}: valid | mask == remove | params after | FLOPs after | main reasons a group is refused |")
    print("|---|---:|---:|---:|---|---|---|---:|---:|---|")
    for r in rows:
        reasons = "; ".join(f"{k} ({n})" for k, n in r["top_reasons"])
        print(f"| {r['model']} | {r['params']/1e6:.2f}M | {100*r['prunable_share']:.1f}% | {r['prunable_groups']}/{r['groups']} | "
              f"{', '.join(r['kinds'])} | {'yes' if r['valid'] else 'NO'} | {'yes' if r['equivalent'] else 'NO'} (max {r['max_abs_err']:.1e}) | "
              f"{r.get('params_after', 0)/1e6:.2f}M | {r.get('flops_after', 0)/max(r.get('flops', 1),1):.2f}x | {reasons} |")


if __name__ == "__main__":
    main()
