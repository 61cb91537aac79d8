#!/usr/bin/env python3
"""sculpt on a ~3 GB decoder-only model with external data, beside
onnxsim (and onnxslim where installed) on the same file.

The model comes from scripts/make-large-model.py: by default 12 layers,
hidden 2048, FFN 8192, GQA, tied embedding, float32 weights (3.1 GB;
`quantize` takes f32 weights only so far); `--model-args` passes other
options (e.g. "--layers 24 --dtype float16", the script's own default,
also about 3 GB), `--small` a 2-layer one.

Per command: wall time, peak RSS and the peak of private (anonymous)
memory, sampled from /proc every 5 ms (`common.measured`): mapped weight
pages are reclaimable page cache and do not count as private. Outputs are written
with external data; a command that fails or passes `--timeout` says so.

usage: benches/large_model.py [--dir DIR] [--small] [--model-args "..."] [--keep] [--peers] [--timeout S] [--json]
needs for --peers: pip install onnxsim onnxslim
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from common import REPO, measured

PEERS = {
    "onnxsim": "import onnx, onnxsim, sys; m, ok = onnxsim.simplify(onnx.load(sys.argv[1])); "
               "onnx.save(m, sys.argv[2], save_as_external_data=True)",
    "onnxslim": "import onnxslim, sys; onnxslim.slim(sys.argv[1], sys.argv[2])",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--dir", default=None, help="where the model and outputs go (needs ~3x the model on disk)")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--model-args", default="--layers 12 --dtype float32")
    ap.add_argument("--keep", action="store_true", help="keep the generated model")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="sculpt-large-")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "decoder.onnx")
    if not os.path.exists(model):
        gen = [sys.executable, os.path.join(REPO, "scripts", "make-large-model.py"), model]
        gen += ["--small"] if a.small else a.model_args.split()
        subprocess.run(gen, check=True)
    size = (os.path.getsize(model) + os.path.getsize(model + ".data")) / 1e9
    out = os.path.join(work, "out.onnx")
    commands = {
        "sculpt inspect": [a.sculpt, "inspect", model],
        "sculpt opt -p cleanup": [a.sculpt, "opt", model, "-p", "cleanup", "-o", out, "--external-data"],
        "sculpt opt -p prune (magnitude, 30% of FFN channels)": [
            a.sculpt, "opt", model, "-p", "prune{criterion=magnitude ratio=0.3 protect=*attn*}", "-o", out, "--external-data"],
        "sculpt opt -p erase": [a.sculpt, "opt", model, "-p", "erase", "-o", out, "--external-data"],
        "sculpt opt -p quantize (int4, RTN)": [
            a.sculpt, "opt", model, "-p", "quantize{policy=int4 round=rtn}", "-o", out, "--external-data"],
    }
    if a.peers:
        for name, code in PEERS.items():
            commands[name] = [sys.executable, "-c", code, model, out]
    rows = []
    for name, cmd in commands.items():
        seconds, rss, anon, err = measured(cmd, a.timeout)
        rows.append({"command": name, "seconds": seconds, "peak_rss_mib": rss, "peak_private_mib": anon, "error": err})
        print(rows[-1], file=sys.stderr)
        for f in (out, out + ".data"):
            if os.path.exists(f):
                os.remove(f)
    if not a.keep and not a.dir:
        shutil.rmtree(work)
    if a.json:
        print(json.dumps({"model_gb": size, "rows": rows}, indent=1))
        return
    print(f"model: {size:.2f} GB with external data\n")
    print("| command | s | peak RSS MiB | peak private MiB | result |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"| {r['command']} | {secs} | {r['peak_rss_mib']:.0f} | {r['peak_private_mib']:.0f} | {r['error'] or 'ok'} |")


if __name__ == "__main__":
    main()
