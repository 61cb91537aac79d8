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
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import iree_check  # noqa: E402

MODELS = ["resnet18", "mobilenet_v3_small", "ppocr_mobile_v2_cls", "minilm_l6_v2"]


def ort_latency(path, feeds, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def iree_latency(iree, vmfb, inputs, tmp, runs):
    args = [iree["benchmark"], f"--module={vmfb}", "--function=main", "--device=local-task",
            "--task_topology_max_group_count=1", "--benchmark_format=json",
            f"--benchmark_repetitions={runs}", "--benchmark_min_time=1x"]
    for i, x in enumerate(inputs):
        path = os.path.join(tmp, f"bench_in{i}.npy")
        np.save(path, x)
        args.append(f"--input=@{path}")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iree-benchmark-module: {r.stderr[-2000:]}")
    runs = json.loads(r.stdout[r.stdout.index("{"):])["benchmarks"]
    single = [b["real_time"] for b in runs if b.get("run_type") == "iteration"]
    unit = runs[0].get("time_unit", "ms")
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return statistics.median(single) * scale


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
            ort_ms = ort_latency(os.path.join(folder, "model.onnx"), feeds, a.runs)
            for dialect in ["linalg", "tosa"]:
                mlir = os.path.join(tmp, f"{name}.{dialect}.mlir")
                t = time.perf_counter()
                flags = iree_check.emit(a, os.path.join(folder, "model.onnx"), feeds, mlir, dialect)
                emit_s = time.perf_counter() - t
                vmfb = os.path.join(tmp, f"{name}.{dialect}.vmfb")
                t = time.perf_counter()
                iree_check.compile_module(iree, mlir, vmfb, flags)
                compile_s = time.perf_counter() - t
                iree_ms = iree_latency(iree, vmfb, list(feeds.values()), tmp, a.runs)
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
