#!/usr/bin/env python3
"""tract against onnxruntime as sculpt's runtime (`--runtime tract|ort`),
side by side in one run: every calibrated pass on minilm_l6_v2 at 1 and 2
threads (RAYON_NUM_THREADS; onnxruntime's sessions take the same count),
and the verdicts of `check` and the figures of `bench` on both.

Per pass and thread count: the tool's wall time on each runtime, the
speed-up, and the result: the output's fidelity on eval.npz (mean cosine
of the sentence embeddings, in onnxruntime) and its size, for each
runtime. Equal results mean the statistics did not depend on the runtime.

usage: benches/runtimes.py [--sculpt target/release/sculpt] [--threads 1,2] [--passes a,b] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from common import CORPUS, REPO, cosine, session, timed

MINILM = os.path.join(CORPUS, "minilm_l6_v2")
PASSES = {
    "prune obs budget 0.2": "prune{criterion=obs budget=0.2}",
    "lowrank budget 0.3": "lowrank{budget=0.3}",
    "moe E=16 k=8": "moe{experts=16 k=8}",
    "quantize int4": "quantize{}",
    "quantize int8": "quantize{policy=int8}",
}
RUNTIMES = ["tract", "ort"]


def embeddings(path, feeds):
    s = session(path, 2)
    names = [i.name for i in s.get_inputs()]
    return s.run(["sentence_embedding"], {k: feeds[k] for k in names})[0]


def passes(a, tmp, feeds, reference):
    rows = []
    model, calib = os.path.join(MINILM, "model.onnx"), os.path.join(MINILM, "calib.npz")
    for label, pipeline in PASSES.items():
        if a.passes and label not in a.passes.split(","):
            continue
        for threads in a.threads.split(","):
            row = {"pass": label, "threads": int(threads)}
            for runtime in RUNTIMES:
                out = os.path.join(tmp, f"{runtime}.onnx")
                os.environ["RAYON_NUM_THREADS"] = threads
                seconds, r = timed([a.sculpt, "opt", model, "-p", pipeline, "--calib", calib,
                                    "-o", out, "--runtime", runtime])
                os.environ.pop("RAYON_NUM_THREADS")
                if r.returncode != 0:
                    row[runtime] = {"error": r.stderr.strip()[-300:]}
                    continue
                row[runtime] = {"s": seconds, "mb": os.path.getsize(out) / 1e6,
                                "cosine": cosine(embeddings(out, feeds), reference)}
            if all("s" in row[rt] for rt in RUNTIMES):
                row["speedup"] = row["tract"]["s"] / row["ort"]["s"]
            rows.append(row)
            print(row, file=sys.stderr)
    return rows


def verdicts(a, tmp):
    """`check` of a model against its cleanup (same) and its int8 quantized
    form (differs beyond the default tolerance), and `bench`, per runtime."""
    model = os.path.join(MINILM, "model.onnx")
    inputs = os.path.join(MINILM, "inputs.npz")
    same, lossy = os.path.join(tmp, "same.onnx"), os.path.join(tmp, "lossy.onnx")
    subprocess.run([a.sculpt, "opt", model, "-p", "cleanup", "-o", same], check=True, capture_output=True)
    subprocess.run([a.sculpt, "opt", model, "-p", "quantize{policy=int8}", "--calib-random", "8",
                    "-o", lossy], check=True, capture_output=True)
    rows = []
    for runtime in RUNTIMES:
        row = {"runtime": runtime}
        for name, other in [("check same", same), ("check int8", lossy)]:
            r = subprocess.run([a.sculpt, "check", model, other, "--inputs", inputs, "--json",
                                "--runtime", runtime], capture_output=True, text=True)
            row[name] = "agree" if r.returncode == 0 else "differ"
        r = subprocess.run([a.sculpt, "bench", model, "--inputs", inputs, "--json", "--runtime", runtime,
                            "--runs", "20"], capture_output=True, text=True, check=True)
        row["bench median ms"] = json.loads(r.stdout)["median_ms"]
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passes", default="")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    feeds = dict(np.load(os.path.join(MINILM, "eval.npz")))
    reference = embeddings(os.path.join(MINILM, "model.onnx"), feeds)
    with tempfile.TemporaryDirectory() as tmp:
        rows = passes(a, tmp, feeds, reference)
        checks = verdicts(a, tmp)
    if a.json:
        print(json.dumps({"passes": rows, "verdicts": checks}, indent=1))
        return
    print("| pass (minilm) | threads | tract s | ort s | speed-up | tract: cosine, MB | ort: cosine, MB |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        cells = []
        for rt in RUNTIMES:
            x = r[rt]
            cells.append(f"failed: {x['error']}" if "error" in x else f"{x['cosine']:.4f}, {x['mb']:.1f}")
        t = lambda rt: f"{r[rt]['s']:.1f}" if "s" in r[rt] else "-"
        speedup = f"{r['speedup']:.2f}×" if "speedup" in r else "-"
        print(f"| {r['pass']} | {r['threads']} | {t('tract')} | {t('ort')} | {speedup} | {cells[0]} | {cells[1]} |")
    print()
    print("| runtime | check vs cleanup | check vs int8 | bench median ms (1×32 tokens) |")
    print("|---|---|---|---:|")
    for r in checks:
        print(f"| {r['runtime']} | {r['check same']} | {r['check int8']} | {r['bench median ms']:.2f} |")


if __name__ == "__main__":
    main()
