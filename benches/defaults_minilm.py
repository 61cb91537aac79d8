#!/usr/bin/env python3
"""What a user gets without knowing sculpt's options, on minilm_l6_v2: each
calibrated pass as a user writes it (`-p "prune{budget=0.2}" --calib
calib.npz`, defaults for the rest), beside the configuration that measured
best when the defaults were chosen, so a default is seen to be that best.
Fitted on calib.npz, measured on eval.npz in onnxruntime (mean cosine of
the sentence embeddings against the original's), with the file size and
the whole command's time.

Give two binaries (`--sculpt A --sculpt B`, e.g. the commits before and
after a change) and the table has a column pair for each: the same run,
the same machine, side by side.

usage: benches/defaults_minilm.py [--sculpt target/release/sculpt ...] [--only prune,quantize] [--json]
"""
import argparse
import json
import os
import sys
import tempfile

from common import REPO, cosine, minilm, session, timed

# (pass, pipeline as a user writes it, what it is)
CONFIGS = [
    ("prune", "prune{budget=0.2}", "default criterion (-20% of all params)"),
    ("prune", "prune{criterion=obs budget=0.2}", "obs spelled out"),
    ("prune", "prune{criterion=activation budget=0.2}", "activation + ls refit"),
    ("lowrank", "lowrank{budget=0.3}", "default method (-30% of linear params)"),
    ("lowrank", "lowrank{method=svd budget=0.3}", "plain svd"),
    ("quantize", "quantize{}", "default: int4 GPTQ, tables"),
    ("quantize", "quantize{policy=int8}", "int8 default"),
    ("quantize", "quantize{policy=int8 calib=minmax ops=" + "|".join([
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "LeakyRelu", "Sigmoid",
        "Softmax", "AveragePool", "GlobalAveragePool", "Concat", "Where", "Reshape", "Transpose", "Squeeze",
        "Unsqueeze", "Flatten", "Slice", "Split", "Gather", "GatherElements", "MaxPool", "Resize"]) + "}",
     "int8, every op onnxruntime quantizes, minmax"),
    ("quantize", "quantize{policy=int8 activations=uint8}", "int8 U8S8 (its 16-bit sums saturate without VNNI)"),
    ("moe", "moe{experts=16 k=8}", "default (E=16, k=8)"),
]


def run(binary, model, pipeline, calib, out):
    seconds, r = timed([binary, "opt", model, "-p", pipeline, "--calib", calib, "-o", out])
    if r.returncode != 0:
        return None, seconds, r.stderr.strip().splitlines()[-1][:120]
    return os.path.getsize(out) / 1e6, seconds, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", action="append", help="a sculpt binary (repeat for side by side)")
    ap.add_argument("--only", default="", help="comma-separated passes")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    binaries = a.sculpt or [os.path.join(REPO, "target", "release", "sculpt")]
    only = set(filter(None, a.only.split(",")))
    model, calib, feeds, reference = minilm()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pass_, pipeline, what in CONFIGS:
            if only and pass_ not in only:
                continue
            row = {"pass": pass_, "pipeline": pipeline, "what": what, "results": []}
            for i, binary in enumerate(binaries):
                out = os.path.join(tmp, f"{i}.onnx")
                mb, seconds, error = run(binary, model, pipeline, calib, out)
                result = {"binary": binary, "mb": mb, "seconds": seconds, "error": error}
                if error is None:
                    emb = session(out, 2).run(["sentence_embedding"], feeds)[0]
                    result["cosine"] = cosine(emb, reference)
                    os.remove(out)
                row["results"].append(result)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    head = "| pass | pipeline | what |" + "".join(f" cosine [{i}] | MB [{i}] | s [{i}] |" for i in range(len(binaries)))
    print("\n".join(f"[{i}] {b}" for i, b in enumerate(binaries)))
    print(head)
    print("|---|---|---|" + "---:|---:|---:|" * len(binaries))
    for r in rows:
        cells = ""
        for res in r["results"]:
            if res["error"]:
                cells += f" refused: {res['error']} | | {res['seconds']:.1f} |"
            else:
                cells += f" {res['cosine']:.4f} | {res['mb']:.1f} | {res['seconds']:.1f} |"
        print(f"| {r['pass']} | `{r['pipeline']}` | {r['what']} |{cells}")


if __name__ == "__main__":
    main()
