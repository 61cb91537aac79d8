#!/usr/bin/env python3
"""1 → 2 thread speed-ups per command: each sculpt command on minilm_l6_v2
(and the ppocr model for the convolutional passes) with rayon's pool at
1 and at 2 threads (RAYON_NUM_THREADS, which tract's matrix products
share), interleaved, median of --repeat runs.

usage: benches/threads.py [--sculpt target/release/sculpt] [--repeat 3] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

from common import CORPUS, REPO, timed


def commands(out):
    minilm = os.path.join(CORPUS, "minilm_l6_v2")
    model, calib = os.path.join(minilm, "model.onnx"), os.path.join(minilm, "calib.npz")
    ppocr = os.path.join(CORPUS, "ppocr_mobile_v2_cls", "model.onnx")
    opt = lambda m, p, *extra: ["opt", m, "-p", p, "-o", out, "--no-check", *extra]
    return {
        "inspect minilm": ["inspect", model],
        "cleanup minilm": opt(model, "cleanup"),
        "cleanup minilm, checked": ["opt", model, "-p", "cleanup", "-o", out, "--check"],
        "prune minilm (activation, ls refit)": opt(
            model, "prune{criterion=activation ratio=0.3 protect=*attention* reconstruct=ls}", "--calib", calib),
        "lowrank minilm (asvd)": opt(model, "lowrank{method=asvd ratio=0.5}", "--calib", calib),
        "quantize minilm int4 (gptq)": opt(model, "quantize{policy=int4}", "--calib", calib),
        "quantize minilm int8 (W8A8)": opt(model, "quantize{policy=int8 ops=MatMul|Gemm|Gather activations=uint8}", "--calib", calib),
        "erase minilm (budget 0.2)": opt(model, "erase{budget=0.2}", "--calib", calib),
        "prune ppocr (magnitude)": opt(ppocr, "prune{criterion=magnitude ratio=0.3}"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in commands(os.path.join(tmp, "out.onnx")).items():
            times = {1: [], 2: []}
            for _ in range(a.repeat):
                for threads in (1, 2):
                    os.environ["RAYON_NUM_THREADS"] = str(threads)
                    seconds, r = timed([a.sculpt] + args)
                    if r.returncode != 0:
                        raise SystemExit(f"{name}: {r.stderr[-2000:]}")
                    times[threads].append(seconds)
            one, two = statistics.median(times[1]), statistics.median(times[2])
            rows.append({"command": name, "s_1_thread": one, "s_2_threads": two, "speedup": one / two})
            print(rows[-1], file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| command | s, 1 thread | s, 2 threads | speed-up |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['command']} | {r['s_1_thread']:.2f} | {r['s_2_threads']:.2f} | {r['speedup']:.2f}× |")


if __name__ == "__main__":
    main()
