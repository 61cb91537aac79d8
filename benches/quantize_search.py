#!/usr/bin/env python3
"""Mixed-precision search on minilm_l6_v2: `quantize{search=true}` at a
share of the uniform int8 model's size, against random policies of the
same size, in one run on the same calibration and eval data.

Rows:
- uniform int8 (QDQ, `policy=int8 ops=MatMul|Gemm|Gather`) and uniform
  int4 (`policy=int4`): the sizes the budget sits between;
- the searched policy at `--share` (default 0.6) of the int8 file's size;
- `--random` (default 5) policies drawn at random over the same weights
  and choices, each as large as the searched one or larger (never
  smaller), applied with `policy=FILE.toml`.

Per row: file size, mean cosine of the sentence embeddings on eval.npz
against the original's (eval_outputs.npz) in onnxruntime, and the tool's
wall time. The search also writes its plot (search.svg) and policy
(search.toml) to --keep when given.

usage: benches/quantize_search.py [--sculpt target/release/sculpt] [--share 0.6] [--random 5] [--keep DIR] [--json]
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import numpy as np

from common import REPO, cosine, minilm, session, timed



def sculpt(binary, model, pipeline, calib, out, report=None):
    cmd = [binary, "opt", model, "-p", pipeline, "--calib", calib, "-o", out]
    if report:
        cmd += ["--report", report]
    seconds, r = timed(cmd)
    if r.returncode != 0:
        raise SystemExit(f"{pipeline}: {r.stderr[-3000:]}")
    return seconds


def quantize_stats(report):
    with open(report) as f:
        run = json.load(f)["run"]
    for p in run["passes"]:
        if p["pass"] == "quantize":
            return p["outcome"]
    raise SystemExit(f"{report}: no quantize pass")


def random_policy(weights, target, rng):
    """Per weight a random candidate, total bytes in [target, 1.01 target]:
    drawn at random, then single random switches toward the target."""
    picks = [rng.randrange(len(w["candidates"])) for w in weights]
    total = lambda: sum(w["candidates"][p]["bytes"] for w, p in zip(weights, picks))
    for _ in range(100000):
        t = total()
        if target <= t <= 1.01 * target:
            break
        i = rng.randrange(len(weights))
        cands = weights[i]["candidates"]
        now = cands[picks[i]]["bytes"]
        options = [j for j, c in enumerate(cands) if (c["bytes"] > now) == (t < target) and c["bytes"] != now]
        if options:
            picks[i] = rng.choice(options)
    lines = ['default = "fp32"', ""]
    for w, p in zip(weights, picks):
        lines += ["[[rule]]", f'precision = "{w["candidates"][p]["precision"]}"', f"name = {json.dumps(w['weight'])}", ""]
    return "\n".join(lines), total()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--share", type=float, default=0.6)
    ap.add_argument("--random", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model, calib, feeds, reference = minilm()
    rng = random.Random(a.seed)
    rows = []

    def row(tool, config, path, seconds):
        emb = session(path, 2).run(["sentence_embedding"], feeds)[0]
        rows.append({"tool": tool, "config": config, "size_mb": os.path.getsize(path) / 1e6,
                     "cosine": cosine(emb, reference), "tool_s": seconds})
        print(rows[-1], file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        int8 = os.path.join(tmp, "int8.onnx")
        pipeline = "quantize{policy=int8 ops=MatMul|Gemm|Gather calib=percentile}"
        row("sculpt", pipeline, int8, sculpt(a.sculpt, model, pipeline, calib, int8))
        int4 = os.path.join(tmp, "int4.onnx")
        report = os.path.join(tmp, "int4.json")
        row("sculpt", "quantize{policy=int4}", int4, sculpt(a.sculpt, model, "quantize{policy=int4}", calib, int4, report))
        # What the file holds besides the weights (graph, names, types).
        overhead = os.path.getsize(int4) - dict(quantize_stats(report)["statistics"])["weight_bytes_after"]
        budget = int(a.share * os.path.getsize(int8)) - overhead
        searched = os.path.join(tmp, "search.onnx")
        svg, toml = os.path.join(tmp, "search.svg"), os.path.join(tmp, "search.toml")
        pipeline = f"quantize{{search=true budget=size:{budget} plot={svg} policy_out={toml}}}"
        report = os.path.join(tmp, "search.json")
        row("sculpt", f"search, budget {a.share} x int8 file", searched,
            sculpt(a.sculpt, model, pipeline, calib, searched, report))
        outcome = quantize_stats(report)
        weights = [r for r in outcome["records"] if "candidates" in r]
        picked_bytes = sum(next(c["bytes"] for c in w["candidates"] if c["precision"] == w["picked"]) for w in weights)
        for i in range(a.random):
            text, _ = random_policy(weights, picked_bytes, rng)
            path = os.path.join(tmp, f"random{i}.toml")
            with open(path, "w") as f:
                f.write(text)
            out = os.path.join(tmp, f"random{i}.onnx")
            row("sculpt", f"random policy {i + 1} (same choices, >= searched size)", out,
                sculpt(a.sculpt, model, f"quantize{{policy={path}}}", calib, out))
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            for f in (svg, toml):
                shutil.copy(f, a.keep)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"budget: {a.share} x the int8 file = {a.share * rows[0]['size_mb']:.2f} MB")
    print("| policy | size MB | cosine (eval) | tool s |")
    print("|---|---:|---:|---:|")
    for r in rows:
        config = r['config'].replace('|', '\\|')
        print(f"| {config} | {r['size_mb']:.2f} | {r['cosine']:.4f} | {r['tool_s']:.1f} |")


if __name__ == "__main__":
    main()
