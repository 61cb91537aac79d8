#!/usr/bin/env python3
"""Compressed models through the MLIR back end, in one table: for each
corpus model and each compression that applies to it (scripts/iree_check.py
COMPRESSIONS: fp32, fp16, int8, int4, lowrank, prune, moe), `sculpt opt`
makes the ONNX file (fitted on calib.npz, else inputs.npz), `sculpt emit
--target cpu` the module and its recipe, `iree-compile` the .vmfb with
that recipe; then, side by side in one run:

- correct: the module against onnxruntime running the same ONNX file, on
  eval.npz rows (inputs.npz where there is none), judged as COMPRESSIONS
  says (rtol 1e-4; cosine >= 0.999; int8: fidelity to the fp32 original
  no more than 0.002 below onnxruntime's own);
- fast: IREE llvm-cpu on one thread against onnxruntime on one thread
  (same file), and against the model's fp32 module;
- small: the .vmfb's size.
With --cuda-compile, each module is also compiled with the cuda recipe
(sm_80) and the table says whether it compiled. A compression that cannot
be emitted is a row with sculpt's error.

usage: benches/mlir_compressed.py [--sculpt target/release/sculpt] [--rows 16] [--runs 10]
       [--compressions fp32,int8,...] [--cuda-compile] [--json out.json] [MODEL | FOLDER ...]

A FOLDER holds model.onnx and inputs.npz (eval.npz, calib.npz if it has
them), as the decoder LLM ../shared/llm builds does:
  benches/mlir_compressed.py --compressions fp32,int4 target/llm/smollm2_135m
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


def rows_of(folder, shapes, count):
    """Up to `count` eval.npz rows (inputs.npz where there is none), each
    at the shapes of inputs.npz (batch 1)."""
    path = os.path.join(folder, "eval.npz")
    if not os.path.exists(path):
        return [dict(np.load(os.path.join(folder, "inputs.npz")))]
    data = dict(np.load(path))
    n = min(count, min(v.shape[0] for v in data.values()))
    return [{k: v[i:i + 1].reshape(shapes[k]) for k, v in data.items()} for i in range(n)]


def check(iree, vmfb, rows, fp32_session, session, kind, tmp, name):
    """The module on each row against onnxruntime on the same file
    (fidelity: on the output iree_check.FIDELITY_OUTPUT names, else all)."""
    got, ref, original = [], [], []
    for feeds in rows:
        outs = session.run(None, feeds)
        got.append(iree_check.run_module(iree, vmfb, list(feeds.values()), len(outs), tmp, "local-task"))
        ref.append(outs)
        original.append(fp32_session.run(None, feeds))
    names = [o.name for o in session.get_outputs()]
    scored = [i for i, o in enumerate(names) if o == iree_check.FIDELITY_OUTPUT.get(name)] or list(range(len(names)))
    fidelities = (iree_check.fidelity(got, original, scored), iree_check.fidelity(ref, original, scored))
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    return iree_check.judge(flat(got), flat(ref), kind, fidelities)


def measure(a, iree, tmp, folder, compression, fp32_ms):
    name = os.path.basename(os.path.normpath(folder))
    feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
    row = dict(model=name, compression=compression)
    path = iree_check.compress(a.sculpt, folder, compression, os.path.join(tmp, f"{name}.{compression}.onnx"))
    if path is None:
        return None
    mlir = os.path.join(tmp, f"{name}.{compression}.mlirbc")
    try:
        flags = iree_check.emit(a, path, feeds, mlir, "linalg")
    except RuntimeError as e:
        row["error"] = str(e)
        return row
    vmfb = os.path.join(tmp, f"{name}.{compression}.vmfb")
    t = time.perf_counter()
    iree_check.compile_module(iree, mlir, vmfb, flags)
    row["compile_s"] = time.perf_counter() - t
    row["vmfb_mb"] = os.path.getsize(vmfb) / 1e6
    shapes = {k: v.shape for k, v in feeds.items()}
    fp32_session = common.session(os.path.join(folder, "model.onnx"))
    session = common.session(path)
    report, ok = check(iree, vmfb, rows_of(folder, shapes, a.rows), fp32_session, session,
                       iree_check.COMPRESSIONS[compression][1], tmp, name)
    row.update(check=report, ok=ok)
    row["iree_ms"] = iree_check.iree_latency(iree, vmfb, list(feeds.values()), tmp, a.runs)
    row["ort_ms"] = common.latency(path, feeds, 1, a.runs)
    row["ratio"] = row["iree_ms"] / row["ort_ms"]
    row["vs_fp32"] = row["iree_ms"] / fp32_ms if fp32_ms else 1.0
    if a.cuda_compile:
        cuda = mlir.replace(".mlirbc", ".cuda.mlirbc")
        try:
            iree_check.compile_module(iree, cuda, cuda + ".vmfb", iree_check.emit(a, path, feeds, cuda, "linalg", "sm_80"))
            row["cuda"] = "compiled"
        except RuntimeError as e:
            row["cuda"] = f"failed: {str(e)[-200:]}"
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--rows", type=int, default=16, help="eval.npz rows checked per module")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--compressions", default=",".join(iree_check.COMPRESSIONS))
    ap.add_argument("--cuda-compile", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    iree = iree_check.tools()
    rows = []
    cuda = " cuda sm_80 |" if a.cuda_compile else ""
    print(f"| model | compression | check against onnxruntime (same file) | IREE 1 thread (ms) | onnxruntime 1 thread (ms) "
          f"| IREE / ORT | IREE / IREE fp32 | .vmfb (MB) |{cuda}")
    print("|---|---|---|---:|---:|---:|---:|---:|" + ("---|" if a.cuda_compile else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models or iree_check.MODELS:
            folder = model if os.path.isdir(model) else os.path.join(iree_check.CORPUS, model)
            name = os.path.basename(os.path.normpath(folder))
            fp32_ms = None
            for compression in a.compressions.split(","):
                try:
                    row = measure(a, iree, tmp, folder, compression, fp32_ms)
                except RuntimeError as e:
                    row = dict(model=name, compression=compression, error=str(e)[-300:])
                if row is None:
                    continue
                rows.append(row)
                if "error" in row:
                    print(f"| {name} | {compression} | not emitted: {row['error']} | | | | | |" + (" |" if cuda else ""),
                          flush=True)
                    continue
                if compression == "fp32":
                    fp32_ms = row["iree_ms"]
                extra = f" {row['cuda']} |" if a.cuda_compile else ""
                print(f"| {name} | {compression} | {row['check']} | {row['iree_ms']:.2f} | {row['ort_ms']:.2f} | "
                      f"{row['ratio']:.2f}× | {row['vs_fp32']:.2f}× | {row['vmfb_mb']:.1f} |{extra}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    sys.exit(0 if all(r.get("ok", False) for r in rows if "error" not in r) else 1)


if __name__ == "__main__":
    main()
