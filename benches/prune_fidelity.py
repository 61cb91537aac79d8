#!/usr/bin/env python3
"""Fidelity of pruned models on held-out data, in onnxruntime: what the
refit (reconstruct=ls) and the OBS criterion recover, side by side with
pruning without compensation, at the same share of the model's params.

Every pipeline is `sculpt opt MODEL -p "prune{... budget=B}" --calib calib.npz`
on the raw export (the pass manager runs cleanup around prune); budgets
are shares of all the params of the cleaned model (what cleanup leaves:
BatchNormalization folded), and so is the share reported as removed.

- minilm_l6_v2: mean cosine of the sentence embeddings on eval.npz against
  the original model's (eval_outputs.npz).
- ppocr_mobile_v2_cls: accuracy on eval.npz against labels.tsv (the
  original model: 62/64), top-1 agreement and logit cosine with the
  original.
- resnet18, mobilenet_v3_small (seeded random weights: weak evidence):
  top-1 agreement and logit cosine with the original on 64 standard-normal
  images, calibrated on 32 others.

Also the pass time and peak memory (whole process) of each run.

usage: benches/prune_fidelity.py [--sculpt target/release/sculpt] [--models minilm_l6_v2,...] [--json]
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

import numpy as np

from common import cosine, session

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))

METHODS = {
    "activation, no refit": "criterion=activation reconstruct=none",
    "activation + ls": "criterion=activation reconstruct=ls",
    "obs + ls": "criterion=obs reconstruct=ls",
}
BUDGETS = {
    "minilm_l6_v2": [0.05, 0.1, 0.2],
    "ppocr_mobile_v2_cls": [0.1, 0.25, 0.4],
    "resnet18": [0.1, 0.3],
    "mobilenet_v3_small": [0.1, 0.3],
}


def prune(sculpt, model, pipeline, calib, out):
    """Runs sculpt; returns (params after, seconds, peak RSS MiB)."""
    start = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "peak_kb %M", sculpt, "opt", model, "-p", pipeline,
                        "--calib", calib, "-o", out], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{pipeline} on {model}: {r.stderr}")
    peak = int(re.search(r"peak_kb (\d+)", r.stderr).group(1)) / 1024
    rows = [l.split() for l in r.stderr.splitlines() if l.startswith("total")]
    return int(rows[-1][4]), seconds, peak


def params_of(sculpt, model, tmp):
    """Params of the model after cleanup (what budgets are shares of)."""
    clean = os.path.join(tmp, "clean.onnx")
    subprocess.run([sculpt, "opt", model, "-p", "cleanup", "-o", clean], check=True, capture_output=True)
    s = json.loads(subprocess.run([sculpt, "inspect", clean, "--json"], check=True, capture_output=True).stdout)
    return s["params"]


def images(seed, n):
    return np.random.default_rng(seed).standard_normal((n, 3, 224, 224)).astype(np.float32)


def evaluate(name, folder, tmp):
    """(calibration file, scorer(model path) -> dict of metrics)."""
    if name == "minilm_l6_v2":
        feeds = dict(np.load(os.path.join(folder, "eval.npz")))
        ref = np.load(os.path.join(folder, "eval_outputs.npz"))["sentence_embedding"]

        def score(path):
            emb = session(path, 2).run(["sentence_embedding"], feeds)[0]
            return {"cosine": cosine(emb, ref)}
        return os.path.join(folder, "calib.npz"), score
    if name == "ppocr_mobile_v2_cls":
        x = np.load(os.path.join(folder, "eval.npz"))["x"]
        rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(folder, "labels.tsv"))][1:]
        labels = np.array([int(r[2]) for r in rows if r[0] == "eval"])

        def logits(path):
            s = session(path, 2)
            n = s.get_inputs()[0].name
            return np.concatenate([s.run(None, {n: x[i:i + 1]})[0] for i in range(len(x))])
        base = logits(os.path.join(folder, "model.onnx"))

        def score(path):
            out = logits(path)
            return {"accuracy": float(np.mean(np.where(out.argmax(1) == 1, 180, 0) == labels)),
                    "agreement": float(np.mean(out.argmax(1) == base.argmax(1))),
                    "cosine": cosine(out, base)}
        return os.path.join(folder, "calib.npz"), score
    model = os.path.join(folder, "model.onnx")
    s0 = session(model, 2)
    input_name = s0.get_inputs()[0].name
    calib = os.path.join(tmp, f"{name}_calib.npz")
    np.savez(calib, **{input_name: images(99, 32)})
    test = images(1234, 64)

    def logits(path):
        s = session(path, 2)
        return np.concatenate([s.run(None, {input_name: test[i:i + 16]})[0] for i in range(0, 64, 16)])
    base = logits(model)

    def score(path):
        out = logits(path)
        return {"agreement": float(np.mean(out.argmax(1) == base.argmax(1))), "cosine": cosine(out, base)}
    return calib, score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--models", default=",".join(BUDGETS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            folder = os.path.join(CORPUS, name)
            model = os.path.join(folder, "model.onnx")
            calib, score = evaluate(name, folder, tmp)
            total = params_of(a.sculpt, model, tmp)
            for budget in BUDGETS[name]:
                for method, options in METHODS.items():
                    out = os.path.join(tmp, "pruned.onnx")
                    after, seconds, peak = prune(a.sculpt, model, f"prune{{{options} budget={budget}}}", calib, out)
                    row = {"model": name, "budget": budget, "method": method, "params": after,
                           "removed": 1 - after / total, "seconds": seconds, "peak_mib": peak}
                    row.update(score(out))
                    rows.append(row)
                    if not a.json:
                        print(f"  {name} {budget} {method}: {row}", flush=True)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print()
    print("| model | budget | method | params removed | metric | time s | peak MiB |")
    print("|---|---:|---|---:|---|---:|---:|")
    for r in rows:
        metrics = ", ".join(f"{k} {r[k]:.4f}" for k in ("cosine", "accuracy", "agreement") if k in r)
        print(f"| {r['model']} | {r['budget']:.2f} | {r['method']} | {100 * r['removed']:.1f}% | {metrics} | "
              f"{r['seconds']:.1f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
