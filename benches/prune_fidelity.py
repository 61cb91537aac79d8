#!/usr/bin/env python3
"""Fidelity of pruned models, magnitude vs activation criterion (and the
activation criterion with CFSP's block-importance budget split, cfsp=0.5).

minilm_l6_v2: `sculpt opt model.onnx -p "cleanup,prune{criterion=C ratio=R}"
--calib calib.npz`, then the mean cosine similarity of the sentence
embeddings on the calibration-disjoint eval.npz to eval_outputs.npz (the
original model's).

resnet18 (seeded random weights, no labels): calibration on 32 standard
normal images, evaluation on 64 others: top-1 agreement with the original
model and mean cosine of the logits.

Ratios are shares of the prunable parameters. Prints a markdown table
(--json for machines).

usage: benches/prune_fidelity.py [--sculpt target/release/sculpt] [--ratios 0.1,0.2,0.3,0.4,0.5]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort

CRITERIA = {
    "magnitude": "criterion=magnitude",
    "activation": "criterion=activation",
    "cfsp": "criterion=activation cfsp=0.5",
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def cosine(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def prune(sculpt, model, pipeline, calib, out):
    subprocess.run([sculpt, "opt", model, "-p", pipeline, *calib, "-o", out], check=True, capture_output=True)
    s = json.loads(subprocess.run([sculpt, "inspect", out, "--json"], check=True, capture_output=True).stdout)
    return s["params"], s["flops"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ratios = [float(r) for r in a.ratios.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # minilm
        folder = os.path.join(CORPUS, "minilm_l6_v2")
        model = os.path.join(folder, "model.onnx")
        feeds = dict(np.load(os.path.join(folder, "eval.npz")))
        ref = np.load(os.path.join(folder, "eval_outputs.npz"))["sentence_embedding"]
        calib = ["--calib", os.path.join(folder, "calib.npz")]
        for r in ratios:
            row = {"model": "minilm_l6_v2", "ratio": r}
            for c in ("magnitude", "activation", "cfsp"):
                out = os.path.join(tmp, f"minilm.{c}.{r}.onnx")
                row[c + "_params"], row[c + "_flops"] = prune(a.sculpt, model, f"cleanup,prune{{{CRITERIA[c]} ratio={r}}}", calib, out)
                emb = session(out).run(["sentence_embedding"], feeds)[0]
                row[c] = cosine(emb, ref)
            rows.append(row)
        # resnet18
        folder = os.path.join(CORPUS, "resnet18")
        model = os.path.join(folder, "model.onnx")
        s0 = session(model)
        name = s0.get_inputs()[0].name
        images = np.random.default_rng(1234).standard_normal((64, 3, 224, 224)).astype(np.float32)
        calib_path = os.path.join(tmp, "resnet18_calib.npz")
        np.savez(calib_path, **{name: np.random.default_rng(99).standard_normal((32, 3, 224, 224)).astype(np.float32)})
        base = np.concatenate([s0.run(None, {name: images[i:i + 16]})[0] for i in range(0, 64, 16)])
        for r in ratios:
            row = {"model": "resnet18", "ratio": r}
            for c in ("magnitude", "activation", "cfsp"):
                out = os.path.join(tmp, f"resnet18.{c}.{r}.onnx")
                calib = ["--calib", calib_path] if c != "magnitude" else []
                row[c + "_params"], row[c + "_flops"] = prune(a.sculpt, model, f"cleanup,prune{{{CRITERIA[c]} ratio={r}}}", calib, out)
                s = session(out)
                logits = np.concatenate([s.run(None, {name: images[i:i + 16]})[0] for i in range(0, 64, 16)])
                row[c] = float(np.mean(logits.argmax(1) == base.argmax(1)))
                row[c + "_cosine"] = cosine(logits, base)
            rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| model | ratio | metric | magnitude | activation | activation, cfsp=0.5 | params (mag / act) | FLOPs (mag / act) |")
    print("|---|---:|---|---:|---:|---:|---|---|")
    for r in rows:
        metric = "mean cosine (eval)" if r["model"] == "minilm_l6_v2" else "top-1 agreement (cosine)"
        fmt = (lambda c: f"{r[c]:.4f}") if r["model"] == "minilm_l6_v2" else (lambda c: f"{r[c]:.3f} ({r[c + '_cosine']:.3f})")
        print(f"| {r['model']} | {r['ratio']:.1f} | {metric} | {fmt('magnitude')} | {fmt('activation')} | {fmt('cfsp')} | "
              f"{r['magnitude_params']/1e6:.2f}M / {r['activation_params']/1e6:.2f}M | "
              f"{r['magnitude_flops']/1e9:.2f}G / {r['activation_flops']/1e9:.2f}G |")


if __name__ == "__main__":
    main()
