#!/usr/bin/env python3
"""The MLIR back end against onnxruntime on the CPU: what does sculpt's
emitted module become once IREE compiles it?

For each model and dialect: `sculpt emit --mlir --dialect D --target cpu`
(timed), then `iree-compile` with the recipe sculpt wrote beside the module
(timed), then
`iree-benchmark-module` on one thread (median of --runs), next to
onnxruntime's CPU latency on one thread for the same inputs.npz, measured
in the same run. Prints a markdown table; --json also writes the rows.

IREE comes from scripts/iree_check.py's fetch (pip wheels for Python 3.12,
unzipped into target/iree; the tools are native executables).

usage: benches/mlir_latency.py [--sculpt target/release/sculpt] [--runs 20] [--json out.json] [MODEL ...]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import iree_check  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODELS = ["resnet18", "mobilenet_v3_small", "ppocr_mobile_v2_cls", "minilm_l6_v2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    iree = iree_check.tools()
    rows = []
    print("| model | dialect | sculpt emit (s) | iree-compile (s) | IREE llvm-cpu (ms) | onnxruntime (ms) | IREE / ORT |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models or MODELS:
            folder = os.path.join(iree_check.CORPUS, name)
            feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
            ort_ms = common.latency(os.path.join(folder, "model.onnx"), feeds, 1, a.runs)
            for dialect in ["linalg", "tosa"]:
                mlir = os.path.join(tmp, f"{name}.{dialect}.mlir")
                t = time.perf_counter()
                flags = iree_check.emit(a, os.path.join(folder, "model.onnx"), feeds, mlir, dialect)
                emit_s = time.perf_counter() - t
                vmfb = os.path.join(tmp, f"{name}.{dialect}.vmfb")
                t = time.perf_counter()
                iree_check.compile_module(iree, mlir, vmfb, flags)
                compile_s = time.perf_counter() - t
                iree_ms = iree_check.iree_latency(iree, vmfb, list(feeds.values()), tmp, a.runs)
                row = dict(model=name, dialect=dialect, emit_s=emit_s, compile_s=compile_s,
                           iree_ms=iree_ms, ort_ms=ort_ms, ratio=iree_ms / ort_ms)
                rows.append(row)
                print(f"| {name} | {dialect} | {emit_s:.2f} | {compile_s:.1f} | {iree_ms:.2f} | {ort_ms:.2f} | "
                      f"{row['ratio']:.2f}× |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
