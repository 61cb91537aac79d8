#!/usr/bin/env python3
"""Import + export speed and peak memory: sculpt vs Python onnx.

For each model, side by side in one run:
  sculpt:  `sculpt opt MODEL -p "" -o OUT` (a fresh process: load, verify, save)
  onnx:    a fresh `python3 -c "onnx.load(MODEL); onnx.save(m, OUT)"`
Reports the median whole-process wall time of --repeat runs, the peak
resident memory (max RSS from wait4), both relative to the model file size,
and the ratio onnx time / sculpt time.

usage: benches/load_save.py [--sculpt target/release/sculpt] [--repeat 5]
                            [--synthetic-mb 1024] [MODEL ...]
Without models, the corpus's four largest are used. --synthetic-mb adds a
generated model of that size (one MatMul chain with large weights).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))


def measure(cmd):
    """Wall seconds and peak RSS (bytes) of one child process. The child is
    started through /usr/bin/time (GNU time, forked from a small process),
    since a child forked from this Python process would inherit its RSS
    high-water mark."""
    fd, report = tempfile.mkstemp()
    os.close(fd)
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-o", report, "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    with open(report) as f:
        peak_kib = int(f.read().split()[-1])
    os.unlink(report)
    return wall, peak_kib * 1024


def synthetic(mb, folder):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    n = 2048
    layers = max(1, int(mb * 2**20 / (n * n * 4)))
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((n, n), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"]))
        x = f"h{i}"
    g = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, f"synthetic_{mb}mb.onnx")
    onnx.save(m, path)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--synthetic-mb", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sculpt-bench-")
    models = a.models
    if not models:
        found = [os.path.join(CORPUS, d, "model.onnx") for d in os.listdir(CORPUS)]
        found = [f for f in found if os.path.exists(f)]
        models = sorted(found, key=os.path.getsize, reverse=True)[:4]
    if a.synthetic_mb:
        # Generated in a child so this process stays small.
        code = f"import sys; sys.path.insert(0, {HERE!r}); import load_save; print(load_save.synthetic({a.synthetic_mb}, {tmp!r}))"
        models.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    rows = []
    for model in models:
        size = os.path.getsize(model)
        out_s = os.path.join(tmp, "sculpt.onnx")
        out_p = os.path.join(tmp, "onnx.onnx")
        py = f"import onnx; m = onnx.load({model!r}); onnx.save(m, {out_p!r})"
        if size > 2**31 - 2**24:
            py = f"import onnx; m = onnx.load({model!r}); onnx.save(m, {out_p!r}, save_as_external_data=True)"
        s_runs, p_runs = [], []
        for _ in range(a.repeat):  # interleaved, so drift hits both alike
            s_runs.append(measure([a.sculpt, "opt", model, "-p", "", "-o", out_s]))
            p_runs.append(measure([sys.executable, "-c", py]))
        s_time = statistics.median(t for t, _ in s_runs)
        p_time = statistics.median(t for t, _ in p_runs)
        s_mem = max(m for _, m in s_runs)
        p_mem = max(m for _, m in p_runs)
        name = os.path.basename(os.path.dirname(model)) if model.endswith("model.onnx") else os.path.basename(model)
        rows.append(dict(model=name, mib=size / 2**20, sculpt_s=s_time, onnx_s=p_time, speedup=p_time / s_time,
                         sculpt_peak_mib=s_mem / 2**20, onnx_peak_mib=p_mem / 2**20,
                         sculpt_peak_x_file=s_mem / size, onnx_peak_x_file=p_mem / size))
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    hdr = f"{'model':<24} {'file MiB':>9} {'sculpt s':>9} {'onnx s':>8} {'speedup':>8} {'sculpt peak':>12} {'x file':>7} {'onnx peak':>10} {'x file':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:<24} {r['mib']:>9.1f} {r['sculpt_s']:>9.3f} {r['onnx_s']:>8.3f} {r['speedup']:>7.1f}x "
              f"{r['sculpt_peak_mib']:>10.1f}Mi {r['sculpt_peak_x_file']:>6.2f}x {r['onnx_peak_mib']:>8.1f}Mi {r['onnx_peak_x_file']:>6.2f}x")
    print(f"\nwhole-process medians of {a.repeat} interleaved runs; peak = max RSS; "
          f"onnx {__import__('onnx').__version__}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
