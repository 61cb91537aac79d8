#!/usr/bin/env python3
"""The emitted MLIR through IREE, on the CPU here and on an NVIDIA GPU
where there is one.

For each model and dialect (linalg, tosa): `sculpt emit --mlir --dialect D`
(static shapes from its inputs.npz),
then `iree-compile` for llvm-cpu and for cuda (sm_80), then
`iree-run-module` on the llvm-cpu module, compared with the reference
outputs.npz (onnxruntime) at rtol 1e-4. With --cuda, the cuda module is
run on the GPU (`--device=cuda`), compared the same way, and timed with
iree-benchmark-module.

IREE comes from pip (iree-base-compiler, iree-base-runtime); the wheels are
tagged for Python 3.12, so they are downloaded for 3.12 and unzipped into
target/iree: iree-compile and iree-run-module are native executables.

usage: scripts/iree_check.py [--sculpt target/release/sculpt] [--cuda] [--dialects linalg,tosa] [MODEL ...]

A GPU machine without the compiler (335 MB) runs a bundle made here:
  scripts/iree_check.py --bundle DIR [--bundle-target sm_80|llvm-cpu] [MODEL ...]
writes, per model and dialect, the compiled module with its inputs and
reference outputs as .npy, plus iree-run-module and iree-benchmark-module;
  python3 DIR/iree_check.py --from-bundle DIR [--device cuda|local-task]
then needs only numpy: it runs, compares (rtol 1e-4) and times each module.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))
IREE = os.path.join(REPO, "target", "iree")
MODELS = ["resnet18", "mobilenet_v3_small", "ppocr_mobile_v2_cls", "minilm_l6_v2"]


def tools(fetch=True):
    """iree-compile, iree-run-module and iree-benchmark-module, fetched once."""
    found = {}
    for name, pattern in [("compile", "**/_mlir_libs/iree-compile"),
                          ("run", "**/_runtime_libs/iree-run-module"),
                          ("benchmark", "**/_runtime_libs/iree-benchmark-module")]:
        hits = glob.glob(os.path.join(IREE, pattern), recursive=True)
        if hits:
            found[name] = hits[0]
    if len(found) == 3:
        return found
    if not fetch:
        raise RuntimeError(f"the IREE wheels in {IREE} lack {sorted({'compile', 'run', 'benchmark'} - set(found))}")
    os.makedirs(IREE, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                    "--python-version", "3.12", "--no-deps", "-d", IREE,
                    "iree-base-compiler", "iree-base-runtime"], check=True)
    for wheel in glob.glob(os.path.join(IREE, "*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(IREE)
        os.remove(wheel)
    for path in glob.glob(os.path.join(IREE, "**", "iree-*"), recursive=True):
        os.chmod(path, 0o755)
    return tools(fetch=False)


def compile_module(iree, mlir, out, device):
    flags = {
        # IREE's CPU code for direct convolutions is slow (a few GFLOP/s
        # here); as im2col + matmul they run 5-15x faster.
        "llvm-cpu": ["--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
                     "--iree-llvmcpu-target-cpu=host",
                     "--iree-preprocessing-pass-pipeline=builtin.module(util.func(iree-global-opt-convert-conv2d-to-img2col))"],
        "sm_80": ["--iree-hal-target-device=cuda", "--iree-cuda-target=sm_80"],
    }[device]
    r = subprocess.run([iree["compile"], *flags, mlir, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iree-compile for {device}: {r.stderr[-2000:]}")


def run_module(iree, vmfb, inputs, outputs, outdir, device):
    """Runs @main on `inputs`, returning its `outputs` results."""
    args = [iree["run"], f"--module={vmfb}", "--function=main", f"--device={device}"]
    for i, x in enumerate(inputs):
        path = os.path.join(outdir, f"in{i}.npy")
        np.save(path, x)
        args.append(f"--input=@{path}")
    paths = [os.path.join(outdir, f"out{i}.npy") for i in range(outputs)]
    args += [f"--output=@{p}" for p in paths]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iree-run-module: {r.stderr[-2000:]}")
    return [np.load(p) for p in paths]


def compare(got, ref):
    """(max abs error over every output, whether all are within rtol 1e-4, atol 1e-5)."""
    err = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
    ok = len(got) == len(ref) and all(np.allclose(g, r, rtol=1e-4, atol=1e-5) for g, r in zip(got, ref))
    return err, ok


def benchmark(iree, vmfb, inputs, outdir, device):
    args = [iree["benchmark"], f"--module={vmfb}", "--function=main", f"--device={device}",
            "--benchmark_format=json", "--benchmark_repetitions=5"]
    for i in range(len(inputs)):
        args.append(f"--input=@{os.path.join(outdir, f'in{i}.npy')}")
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    runs = json.loads(r.stdout[r.stdout.index("{"):])["benchmarks"]
    median = [b for b in runs if b.get("aggregate_name") == "median"] or runs
    return median[0]["real_time"], median[0].get("time_unit", "ms")


def emit(a, folder, feeds, mlir, dialect):
    """`sculpt emit` of the model in `folder`, shapes bound from `feeds`."""
    cmd = [a.sculpt, "emit", os.path.join(folder, "model.onnx"), "--mlir", "-o", mlir, "--dialect", dialect]
    for k, v in feeds.items():
        cmd += ["--shape", f"{k}={','.join(str(d) for d in v.shape)}"]
    subprocess.run(cmd, check=True, capture_output=True)


def run_and_time(iree, vmfb, inputs, ref, tmp, device):
    """Runs `vmfb` on `device`, compares with `ref` and times it: (a report
    line, whether it matched)."""
    got = run_module(iree, vmfb, inputs, len(ref), tmp, device)
    err, ok = compare(got, ref)
    t, unit = benchmark(iree, vmfb, inputs, tmp, device)
    return f"{device} run: max abs err {err:.2e} {'ok' if ok else 'DIFFERS'}, median {t:.3f} {unit}", ok


def check_model(a, iree, tmp, name, dialect):
    """Emits `name` in `dialect`, compiles it for llvm-cpu and cuda, runs the
    llvm-cpu module (and the cuda one with --cuda); prints one line, and
    returns whether every run matched the reference."""
    folder = os.path.join(CORPUS, name)
    feeds = np.load(os.path.join(folder, "inputs.npz"))
    ref = list(np.load(os.path.join(folder, "outputs.npz")).values())
    mlir = os.path.join(tmp, f"{name}.{dialect}.mlir")
    emit(a, folder, feeds, mlir, dialect)
    line = [f"{name} ({dialect})"]
    # IREE 3.13 knows no sm_90 target ("missing GPU target"): sm_80 code runs on Hopper too.
    for device in ["llvm-cpu", "sm_80"]:
        vmfb = os.path.join(tmp, f"{name}.{dialect}.{device}.vmfb")
        compile_module(iree, mlir, vmfb, device)
        line.append(f"{device}: compiled")
    got = run_module(iree, os.path.join(tmp, f"{name}.{dialect}.llvm-cpu.vmfb"), list(feeds.values()), len(ref), tmp,
                     "local-task")
    err, ok = compare(got, ref)
    line.append(f"llvm-cpu run: max abs err {err:.2e} {'ok' if ok else 'DIFFERS'}")
    if a.cuda:
        vmfb = os.path.join(tmp, f"{name}.{dialect}.sm_80.vmfb")
        report, cuda_ok = run_and_time(iree, vmfb, list(feeds.values()), ref, tmp, "cuda")
        line.append(report)
        ok &= cuda_ok
    print(" | ".join(line), flush=True)
    return ok


def make_bundle(a, iree, out):
    """Compiles each model and dialect for a.bundle_target into `out`, with
    its inputs, reference outputs, the two runtime tools and this script."""
    os.makedirs(out, exist_ok=True)
    for tool in ["run", "benchmark"]:
        shutil.copy2(iree[tool], out)
    shutil.copy2(os.path.abspath(__file__), out)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models or MODELS:
            folder = os.path.join(CORPUS, name)
            feeds = np.load(os.path.join(folder, "inputs.npz"))
            ref = list(np.load(os.path.join(folder, "outputs.npz")).values())
            for dialect in a.dialects.split(","):
                mlir = os.path.join(tmp, f"{name}.{dialect}.mlir")
                emit(a, folder, feeds, mlir, dialect)
                entry = f"{name}.{dialect}"
                compile_module(iree, mlir, os.path.join(out, f"{entry}.vmfb"), a.bundle_target)
                for i, x in enumerate(feeds.values()):
                    np.save(os.path.join(out, f"{entry}.in{i}.npy"), x)
                for i, r in enumerate(ref):
                    np.save(os.path.join(out, f"{entry}.ref{i}.npy"), r)
                entries.append({"module": entry, "inputs": len(feeds), "outputs": len(ref)})
                print(f"bundled {entry} for {a.bundle_target}", flush=True)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"target": a.bundle_target, "modules": entries}, f, indent=1)


def run_bundle(folder, device):
    """Runs every module of a bundle on `device`; returns whether all match."""
    iree = {"run": os.path.join(folder, "iree-run-module"),
            "benchmark": os.path.join(folder, "iree-benchmark-module")}
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for m in manifest["modules"]:
            entry, vmfb = m["module"], os.path.join(folder, m["module"] + ".vmfb")
            if not os.path.exists(vmfb):
                print(f"{entry}: not in this bundle", flush=True)
                continue
            inputs = [np.load(os.path.join(folder, f"{entry}.in{i}.npy")) for i in range(m["inputs"])]
            ref = [np.load(os.path.join(folder, f"{entry}.ref{i}.npy")) for i in range(m["outputs"])]
            report, good = run_and_time(iree, vmfb, inputs, ref, tmp, device)
            print(f"{entry} | {report}", flush=True)
            ok &= good
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--cuda", action="store_true", help="also run the cuda module on this machine's GPU")
    ap.add_argument("--dialects", default="linalg,tosa", help="the dialects to emit, comma-separated")
    ap.add_argument("--bundle", metavar="DIR", help="write compiled modules and data for another machine")
    ap.add_argument("--bundle-target", default="sm_80", choices=["sm_80", "llvm-cpu"])
    ap.add_argument("--from-bundle", metavar="DIR", help="run a bundle (needs numpy only)")
    ap.add_argument("--device", default="cuda", help="the IREE device a bundle runs on")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    if a.from_bundle:
        sys.exit(0 if run_bundle(a.from_bundle, a.device) else 1)
    iree = tools()
    if a.bundle:
        make_bundle(a, iree, a.bundle)
        return
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models or MODELS:
            for dialect in a.dialects.split(","):
                failed |= not check_model(a, iree, tmp, name, dialect)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
