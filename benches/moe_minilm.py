#!/usr/bin/env python3
"""FFNs as mixtures of experts on minilm_l6_v2, in one table: `moe{...}`
fitted on calib.npz, measured on eval.npz (mean cosine of the sentence
embeddings against the original's), with the FFN FLOPs per token each
token computes (from sculpt's report) and onnxruntime latency at batch
1 x 128 and 8 x 128 tokens (1 thread; synthetic token ids).

Rows: E = 8 and 16 for k = 1 ... E/2 (defaults: co-activation partition,
fitted router, skipped experts give their mean, experts refitted); at
E = 16, k = 8 (half the FFN compute) the centroid and random routers,
the weight-clustering and random partitions, skip=zero, no refit, a
shared expert, and form=ort; the dense model through `cleanup` alone
(written as the others are, so that rows differ by their FFNs only);
beside them, at the same FFN FLOPs, the
FFNs pruned statically to half their neurons by
`prune{criterion=activation}` with no compensation, with the bias
compensation, and with the least-squares refit.

usage: benches/moe_minilm.py [--sculpt target/release/sculpt] [--quick] [--json]
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

from common import REPO, cosine, latency, minilm, session, timed

HALF_PRUNE = "prune{{criterion=activation ratio=0.5 per_layer=true protect=*attention* reconstruct={}}}"


def run(binary, model, pipeline, calib, out):
    report = out + ".json"
    seconds, r = timed([binary, "opt", model, "-p", pipeline, "--calib", calib, "-o", out, "--report", report])
    if r.returncode != 0:
        raise SystemExit(f"{pipeline}: {r.stderr[-3000:]}")
    with open(report) as f:
        passes = json.load(f)["run"]["passes"]
    stats = {}
    for p in passes:
        stats.update(dict(p["outcome"]["statistics"]))
    return seconds, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--quick", action="store_true", help="E = 16, k = 8 rows only")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model, calib, feeds, reference = minilm()
    rng = np.random.default_rng(0)

    def tokens(batch):
        return {"input_ids": rng.integers(1000, 30000, (batch, 128)).astype(np.int64),
                "attention_mask": np.ones((batch, 128), np.int64),
                "token_type_ids": np.zeros((batch, 128), np.int64)}

    one, eight = tokens(1), tokens(8)
    dense_ffn = 6 * 2 * (384 * 1536 + 1536 * 384)
    # The dense model as sculpt writes it, so that rows differ by the FFNs only.
    configs = [("dense, sculpt cleanup", "cleanup")]
    if not a.quick:
        for experts in (8, 16):
            for k in range(1, experts // 2 + 1):
                configs.append((f"E={experts} k={k}", f"moe{{experts={experts} k={k}}}"))
    else:
        configs.append(("E=16 k=8", "moe{experts=16 k=8}"))
    for name, options in [
        ("router=centroid", "router=centroid"), ("router=random", "router=random"),
        ("partition=cluster", "partition=cluster"), ("partition=random", "partition=random"),
        ("skip=zero", "skip=zero"), ("refit=false", "refit=false"), ("form=ort", "form=ort"),
    ]:
        configs.append((f"E=16 k=8 {name}", f"moe{{experts=16 k=8 {options}}}"))
    configs.append(("shared=384 E=12 k=4 (half)", "moe{experts=12 k=4 shared=384}"))
    for reconstruct in ("none", "bias", "ls"):
        configs.append((f"prune half FFN, reconstruct={reconstruct}", HALF_PRUNE.format(reconstruct)))
    rows = [{"config": "dense", "cosine": 1.0, "ffn_mflops": dense_ffn / 1e6,
             "ms_1x128": latency(model, one, 1, runs=20), "ms_8x128": latency(model, eight, 1, runs=10), "tool_s": 0.0}]
    print(rows[-1], file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, pipeline) in enumerate(configs):
            out = os.path.join(tmp, f"{i}.onnx")
            seconds, stats = run(a.sculpt, model, pipeline, calib, out)
            emb = session(out, 2).run(["sentence_embedding"], feeds)[0]
            ffn = stats.get("ffn_flops_per_token_after", dense_ffn if pipeline == "cleanup" else dense_ffn / 2)
            rows.append({"config": name, "pipeline": pipeline, "cosine": cosine(emb, reference),
                         "ffn_mflops": ffn / 1e6, "ms_1x128": latency(out, one, 1, runs=20),
                         "ms_8x128": latency(out, eight, 1, runs=10), "tool_s": seconds})
            print(rows[-1], file=sys.stderr)
            os.remove(out)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| config | cosine (eval) | FFN MFLOPs/token | ort ms 1x128 | ort ms 8x128 | tool s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['cosine']:.4f} | {r['ffn_mflops']:.2f} | {r['ms_1x128']:.1f} | "
              f"{r['ms_8x128']:.1f} | {r['tool_s']:.1f} |")


if __name__ == "__main__":
    main()
