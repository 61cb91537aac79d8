#!/usr/bin/env python3
"""Weight-only int4 on minilm_l6_v2, side by side with onnxruntime's
MatMulNBits quantizer, in one run on the same eval data.

sculpt: `quantize{...}` with --calib calib.npz (GPTQ on the calibration
statistics; rtn rounds to nearest). onnxruntime:
`onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`
(default RTN weight-only config), at the same block size and symmetry.
Both write com.microsoft::MatMulNBits for the MatMuls; side by side,
sculpt leaves the embedding tables alone (tables=false) as onnxruntime
does, and a last row quantizes them too.

Per row: file size, mean cosine of the sentence embeddings on eval.npz
against the original model's (eval_outputs.npz), onnxruntime latency at
batch 1 x 32 tokens on 1 and 2 threads, and the tool's wall time (whole
process, model load and save included).

usage: benches/quantize_fidelity.py [--sculpt target/release/sculpt] [--block 32] [--json]
(needs `pip install onnx_ir` for onnxruntime's quantizer)
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

from common import REPO, cosine, latency, minilm, session, timed



def ort_quantize(model, out, block, symmetric):
    """onnxruntime's quantizer in its own process (its wall time)."""
    code = (
        "import sys, onnx\n"
        "from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig\n"
        f"cfg = DefaultWeightOnlyQuantConfig(block_size={block}, is_symmetric={symmetric})\n"
        f"q = MatMulNBitsQuantizer(onnx.load(sys.argv[1]), block_size={block}, is_symmetric={symmetric}, algo_config=cfg)\n"
        "q.process()\n"
        "q.model.save_model_to_file(sys.argv[2], False)\n"
    )
    seconds, r = timed([sys.executable, "-c", code, model, out])
    if r.returncode != 0:
        raise SystemExit(f"onnxruntime quantizer failed: {r.stderr[-2000:]}")
    return seconds


def sculpt_quantize(sculpt, model, pipeline, calib, out):
    seconds, r = timed([sculpt, "opt", model, "-p", pipeline, "--calib", calib, "-o", out])
    if r.returncode != 0:
        raise SystemExit(f"{pipeline}: {r.stderr}")
    return seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model, calib, feeds, reference = minilm()
    one = {k: v[:1] for k, v in feeds.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("original", None, model, 0.0)]
        for symmetric in (True, False):
            sym = "true" if symmetric else "false"
            for rounding in ("rtn", "gptq"):
                pipeline = f"quantize{{block={a.block} symmetric={sym} round={rounding} tables=false}}"
                out = os.path.join(tmp, f"sculpt_{rounding}_{sym}.onnx")
                seconds = sculpt_quantize(a.sculpt, model, pipeline, calib, out)
                runs.append(("sculpt", pipeline, out, seconds))
            out = os.path.join(tmp, f"ort_{sym}.onnx")
            seconds = ort_quantize(model, out, a.block, symmetric)
            runs.append(("onnxruntime", f"MatMulNBitsQuantizer(block_size={a.block}, is_symmetric={symmetric})", out, seconds))
        # The whole model: the embedding tables in int4 as well.
        pipeline = f"quantize{{block={a.block}}}"
        out = os.path.join(tmp, "sculpt_tables.onnx")
        runs.append(("sculpt", pipeline, out, sculpt_quantize(a.sculpt, model, pipeline, calib, out)))
        for tool, config, path, seconds in runs:
            s = session(path, 1)
            emb = s.run(["sentence_embedding"], feeds)[0]
            size = os.path.getsize(path) + sum(
                os.path.getsize(os.path.join(os.path.dirname(path), f))
                for f in os.listdir(os.path.dirname(path)) if f.endswith(".data") and f.startswith(os.path.basename(path)))
            rows.append({
                "tool": tool, "config": config or "fp32", "size_mb": size / 1e6,
                "cosine": cosine(emb, reference), "ms_1": latency(path, one, 1, runs=40, warmup=5), "ms_2": latency(path, one, 2, runs=40, warmup=5),
                "tool_s": seconds,
            })
            print(rows[-1], file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| tool | config | size MB | cosine (eval) | ort ms 1 thread | ort ms 2 threads | tool s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tool']} | `{r['config']}` | {r['size_mb']:.1f} | {r['cosine']:.4f} | {r['ms_1']:.2f} | "
              f"{r['ms_2']:.2f} | {r['tool_s']:.1f} |")


if __name__ == "__main__":
    main()
