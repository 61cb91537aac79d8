#!/usr/bin/env python3
"""Low-rank rewriting on held-out data, in onnxruntime.

minilm_l6_v2 (calib.npz fits, eval.npz measures: mean cosine of the sentence
embeddings to the original model's), for svd, asvd and whiten at 10-50% of
the linear sites' params removed (`lowrank{method=M budget=B}`; the ranks
are allocated across sites by predicted error scaled by measured probes),
with uniform ratios beside them: params, FLOPs, onnxruntime latency (one
thread, batch 1 x 32 tokens) and pass time.

ppocr_mobile_v2_cls: accuracy against labels.tsv at -20% and -40% of the
convolutions' params, channel and spatial splits.

minilm at -40% of all params: prune, lowrank, and prune then lowrank, each
as near that size as it gets.

usage: benches/lowrank_fidelity.py [--sculpt target/release/sculpt] [--json] [--quick]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

from common import cosine, latency, session

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))


def run(sculpt, model, pipeline, calib, out):
    start = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "peak_kb %M", sculpt, "opt", model, "-p", pipeline,
                        "--calib", calib, "-o", out], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{pipeline}: {r.stderr}")
    peak = int(r.stderr.rsplit("peak_kb", 1)[1].split()[0]) / 1024
    s = json.loads(subprocess.run([sculpt, "inspect", out, "--json"], check=True, capture_output=True).stdout)
    return s["params"], s["flops"], seconds, peak


def minilm(sculpt, tmp, quick):
    folder = os.path.join(CORPUS, "minilm_l6_v2")
    model = os.path.join(folder, "model.onnx")
    calib = os.path.join(folder, "calib.npz")
    feeds = dict(np.load(os.path.join(folder, "eval.npz")))
    ref = np.load(os.path.join(folder, "eval_outputs.npz"))["sentence_embedding"]
    one = {k: v[:1] for k, v in feeds.items()}
    rows = []
    base_params, base_flops, _, _ = run(sculpt, model, "cleanup", calib, os.path.join(tmp, "clean.onnx"))
    base_ms = latency(os.path.join(tmp, "clean.onnx"), one)
    rows.append({"model": "minilm_l6_v2", "config": "original", "params": base_params, "flops": base_flops,
                 "ms": base_ms, "cosine": 1.0, "seconds": 0.0, "peak_mib": 0.0})
    shares = [0.1, 0.3] if quick else [0.1, 0.2, 0.3, 0.4, 0.5]
    for share in shares:
        for method in ("svd", "asvd", "whiten"):
            for how in ("budget", "ratio"):
                out = os.path.join(tmp, "lr.onnx")
                pipeline = f"lowrank{{method={method} {how}={share}}}"
                params, flops, seconds, peak = run(sculpt, model, pipeline, calib, out)
                emb = session(out, 2).run(["sentence_embedding"], feeds)[0]
                rows.append({"model": "minilm_l6_v2", "config": pipeline, "params": params, "flops": flops,
                             "ms": latency(out, one), "cosine": cosine(emb, ref), "seconds": seconds,
                             "peak_mib": peak})
                print(rows[-1], flush=True)
    # -40% of all params: prune alone, lowrank alone, both.
    target = 0.6 * base_params
    for pipeline in ("prune{criterion=obs budget=0.4 max_share=0.9}",
                     "lowrank{budget=0.85}",
                     "prune{criterion=obs budget=0.34},lowrank{budget=0.46}"):
        out = os.path.join(tmp, "mix.onnx")
        params, flops, seconds, peak = run(sculpt, model, pipeline, calib, out)
        emb = session(out, 2).run(["sentence_embedding"], feeds)[0]
        rows.append({"model": "minilm_l6_v2", "config": pipeline, "params": params, "flops": flops,
                     "ms": latency(out, one), "cosine": cosine(emb, ref), "seconds": seconds,
                     "peak_mib": peak, "target_params": target})
        print(rows[-1], flush=True)
    return rows


def ppocr(sculpt, tmp):
    folder = os.path.join(CORPUS, "ppocr_mobile_v2_cls")
    model = os.path.join(folder, "model.onnx")
    calib = os.path.join(folder, "calib.npz")
    x = np.load(os.path.join(folder, "eval.npz"))["x"]
    labels = np.array([int(r.split("\t")[2]) for r in open(os.path.join(folder, "labels.tsv")).read().splitlines()[1:]
                       if r.startswith("eval")])
    rows = []
    for share in (0.2, 0.4):
        for split in ("channel", "spatial"):
            out = os.path.join(tmp, "ppocr.onnx")
            pipeline = f"lowrank{{budget={share} conv={split}}}"
            params, flops, seconds, peak = run(sculpt, model, pipeline, calib, out)
            s = session(out)
            n = s.get_inputs()[0].name
            logits = np.concatenate([s.run(None, {n: x[i:i + 1]})[0] for i in range(len(x))])
            acc = float(np.mean(np.where(logits.argmax(1) == 1, 180, 0) == labels))
            rows.append({"model": "ppocr_mobile_v2_cls", "config": pipeline, "params": params, "flops": flops,
                         "accuracy": acc, "seconds": seconds, "peak_mib": peak})
            print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = minilm(a.sculpt, tmp, a.quick) + ppocr(a.sculpt, tmp)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print()
    print("| model | pipeline | params | FLOPs/token | ort ms (1 thread, 1x32) | fidelity | pass s | peak MiB |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        fid = f"cosine {r['cosine']:.4f}" if "cosine" in r else f"accuracy {r['accuracy']:.4f}"
        ms = f"{r['ms']:.2f}" if "ms" in r else "-"
        print(f"| {r['model']} | `{r['config']}` | {r['params'] / 1e6:.2f}M | {r['flops'] / 1e6:.1f}M | {ms} | {fid} | "
              f"{r['seconds']:.1f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
