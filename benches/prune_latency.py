#!/usr/bin/env python3
"""onnxruntime CPU latency and size before and after pruning, next to the
FLOP count: does pruning turn into real speed?

For each model: `sculpt opt model.onnx -p "cleanup"` (the baseline) and
`-p "cleanup,prune{criterion=magnitude ratio=R round_to=N per_layer=P}"`
for R in 0.3 and 0.5, ranked globally (P=false: removes the most params)
and per layer (P=true: the same share of every layer, so of FLOPs too). All variants are timed in the same run, interleaved, on the
model's inputs.npz (batch as given), median of --runs after warm-up;
--threads onnxruntime intra-op threads. Prints a markdown table.

usage: benches/prune_latency.py [--sculpt target/release/sculpt] [--runs 50] [--threads 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))
MODELS = ["resnet18", "mobilenet_v3_small", "minilm_l6_v2", "ppocr_mobile_v2_cls"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--round-to", type=int, default=8)
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    print(f"| model | variant | params | file | FLOPs | latency (ms) | speed-up | FLOPs ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models or MODELS:
            folder = os.path.join(CORPUS, name)
            feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
            variants = [("cleanup", "cleanup")] + [
                (f"prune {r}{' per_layer' if per_layer else ''}",
                 f"cleanup,prune{{criterion=magnitude ratio={r} round_to={a.round_to} per_layer={str(per_layer).lower()}}}")
                for per_layer in (False, True) for r in (0.3, 0.5)
            ]
            rows = []
            for label, pipeline in variants:
                out = os.path.join(tmp, f"{name}.{label.replace(' ', '_')}.onnx")
                subprocess.run([a.sculpt, "opt", os.path.join(folder, "model.onnx"), "-p", pipeline, "-o", out],
                               check=True, capture_output=True)
                stats = json.loads(subprocess.run([a.sculpt, "inspect", out, "--json"], check=True,
                                                  capture_output=True).stdout)
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                opts.intra_op_num_threads = a.threads
                s = ort.InferenceSession(out, opts, providers=["CPUExecutionProvider"])
                names = {i.name for i in s.get_inputs()}
                f = {k: v for k, v in feeds.items() if k in names}
                for _ in range(5):
                    s.run(None, f)
                rows.append({"label": label, "session": s, "feeds": f, "times": [],
                             "params": stats["params"], "flops": stats["flops"], "bytes": os.path.getsize(out)})
            for _ in range(a.runs):
                for r in rows:
                    t = time.perf_counter()
                    r["session"].run(None, r["feeds"])
                    r["times"].append((time.perf_counter() - t) * 1e3)
            base = rows[0]
            base_ms = statistics.median(base["times"])
            for r in rows:
                ms = statistics.median(r["times"])
                print(f"| {name} | {r['label']} | {r['params']/1e6:.2f}M | {r['bytes']/2**20:.1f} MiB | {r['flops']/1e9:.3f}G | "
                      f"{ms:.2f} | {base_ms/ms:.2f}x | {base['flops']/max(r['flops'],1):.2f}x |")


if __name__ == "__main__":
    main()
