#!/usr/bin/env python3
"""Budgeted erasure of FFN blocks on minilm_l6_v2: contribution vs random.

For 1, 2 and 3 erased FFN blocks, runs
  sculpt opt model.onnx -p "erase{blocks=K kind=ffn metric=...},cleanup" --calib calib.npz
then, on the calibration-disjoint eval.npz, reports the mean cosine
similarity of the sentence embeddings to eval_outputs.npz (the original
model's), and onnxruntime CPU latency (median of --runs, batch 1, seq 32).
metric=random is averaged over --seeds seeds.

usage: benches/erase_ffn.py [--sculpt target/release/sculpt] [--seeds 3] [--runs 50]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))
MODEL = os.path.join(CORPUS, "minilm_l6_v2")


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def fidelity(path, feeds, ref):
    s = session(path)
    emb = s.run(["sentence_embedding"], feeds)[0]
    num = (emb * ref).sum(1)
    den = np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def latency(path, feeds, runs):
    s = session(path)
    one = {k: v[:1] for k, v in feeds.items()}
    for _ in range(5):
        s.run(None, one)
    t = []
    for _ in range(runs):
        start = time.perf_counter()
        s.run(None, one)
        t.append((time.perf_counter() - start) * 1e3)
    return statistics.median(t)


def erase(sculpt, pipeline, out):
    subprocess.run([sculpt, "opt", os.path.join(MODEL, "model.onnx"), "-p", pipeline, "--calib",
                    os.path.join(MODEL, "calib.npz"), "-o", out], check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()
    feeds = dict(np.load(os.path.join(MODEL, "eval.npz")))
    ref = np.load(os.path.join(MODEL, "eval_outputs.npz"))["sentence_embedding"]
    tmp = tempfile.mkdtemp(prefix="sculpt-erase-")
    base = os.path.join(MODEL, "model.onnx")
    print(f"{'erased FFN blocks':<18} {'metric':<14} {'cosine':>8} {'ORT ms':>8}")
    print(f"{0:<18} {'(original)':<14} {fidelity(base, feeds, ref):>8.4f} {latency(base, feeds, a.runs):>8.2f}")
    for k in (1, 2, 3):
        out = os.path.join(tmp, f"contribution_{k}.onnx")
        erase(a.sculpt, f"erase{{blocks={k} kind=ffn}},cleanup", out)
        print(f"{k:<18} {'contribution':<14} {fidelity(out, feeds, ref):>8.4f} {latency(out, feeds, a.runs):>8.2f}")
        cos, lat = [], []
        for seed in range(a.seeds):
            out = os.path.join(tmp, f"random_{k}_{seed}.onnx")
            erase(a.sculpt, f"erase{{blocks={k} kind=ffn metric=random seed={seed}}},cleanup", out)
            cos.append(fidelity(out, feeds, ref))
            lat.append(latency(out, feeds, a.runs))
        print(f"{k:<18} {'random (mean)':<14} {np.mean(cos):>8.4f} {np.mean(lat):>8.2f}")
    print(f"\ncosine: mean over {len(ref)} eval sentences of the sentence embedding vs the original's; "
          f"latency: onnxruntime {ort.__version__} CPU, 1 thread, batch 1, seq 32, median of {a.runs}")


if __name__ == "__main__":
    main()
