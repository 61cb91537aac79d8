#!/usr/bin/env python3
"""The emitted MLIR through IREE, on the CPU here and on an NVIDIA GPU
where there is one.

For each model and dialect (linalg, tosa): `sculpt emit --mlir --dialect D
--target cpu|cuda` (static shapes from its inputs.npz), then `iree-compile`
with the recipe sculpt wrote beside the module (MODULE.iree-flags) for
llvm-cpu and for cuda (sm_80), then `iree-run-module` on the llvm-cpu
module, compared with the reference outputs.npz (onnxruntime) at rtol
1e-4. With --cuda, the cuda module is run on the GPU (`--device=cuda`),
compared by cosine (its recipe's matmuls take f16 inputs), and timed with
iree-benchmark-module.

IREE comes from pip (iree-base-compiler, iree-base-runtime); the wheels are
tagged for Python 3.12, so they are downloaded for 3.12 and unzipped into
target/iree: iree-compile and iree-run-module are native executables.

usage: scripts/iree_check.py [--sculpt target/release/sculpt] [--cuda] [--dialects linalg,tosa] [MODEL ...]

A GPU machine without the compiler (335 MB) runs a bundle made here:
  scripts/iree_check.py --bundle DIR [--bundle-target sm_80|llvm-cpu] [MODEL ...]
writes, per model and compression (fp32 in each dialect; fp16, int8,
int4, lowrank, prune, moe where they apply: COMPRESSIONS, --compressions)
the compiled module with its inputs and onnxruntime's outputs for the same
ONNX file as .npy, plus iree-run-module and iree-benchmark-module;
  python3 DIR/iree_check.py --from-bundle DIR [--device cuda|local-task]
then needs only numpy: it runs, compares (as COMPRESSIONS says; cosine on
a GPU) and times each module.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
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


def compile_module(iree, mlir, out, flags):
    """iree-compile with `flags`: the recipe `sculpt emit --target` wrote
    beside the module (see `read_recipe`)."""
    r = subprocess.run([iree["compile"], *flags, mlir, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iree-compile: {r.stderr[-2000:]}")


def read_recipe(mlir):
    """The iree-compile flags `sculpt emit --target` wrote beside `mlir`."""
    with open(os.path.splitext(mlir)[0] + ".iree-flags") as f:
        return [line.strip() for line in f if line.strip()]


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


# The compressions a module is checked and bundled with: name, sculpt
# pipeline (None: the model as it is), and how its module is compared with
# onnxruntime running the same ONNX file: "rtol" (1e-4 relative), "cosine"
# (>= 0.999) or "fidelity" (int8: cosine to the fp32 original no more than
# 0.002 below onnxruntime's own).
COMPRESSIONS = {
    "fp32": (None, "rtol"),
    "fp16": ("quantize{policy=fp16}", "cosine"),
    "int8": ("quantize{policy=int8}", "fidelity"),
    "int4": ("quantize{}", "cosine"),
    "lowrank": ("lowrank{budget=0.3}", "rtol"),
    "prune": ("prune{budget=0.2}", "rtol"),
    "moe": ("moe{experts=16 k=8}", "rtol"),
}


def compress(sculpt, folder, compression, out):
    """The model in `folder` with `compression` applied (fitted on its
    calib.npz, else its inputs.npz), written to `out`; the path of the
    ONNX file to emit, or None when the compression changes nothing."""
    pipeline = COMPRESSIONS[compression][0]
    model = os.path.join(folder, "model.onnx")
    if pipeline is None:
        return model
    calib = os.path.join(folder, "calib.npz")
    if not os.path.exists(calib):
        calib = os.path.join(folder, "inputs.npz")
    r = subprocess.run([sculpt, "opt", model, "-p", pipeline, "--calib", calib, "-o", out, "--report", out + ".json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sculpt opt -p '{pipeline}': {r.stderr.strip().splitlines()[-1:]}")
    with open(out + ".json") as f:
        report = json.load(f)
    changed = any(step["outcome"]["changed"] for step in report["run"]["passes"]
                  if not step["pass"].startswith("cleanup"))
    return out if changed else None


def iree_latency(iree, vmfb, inputs, tmp, runs):
    """Median milliseconds of one run of @main on one thread (local-task)."""
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


def emit(a, onnx_path, feeds, mlir, dialect, device="llvm-cpu"):
    """`sculpt emit` of `onnx_path` for `device` (llvm-cpu: --target cpu,
    sm_*: --target cuda), shapes bound from `feeds`; returns the recipe."""
    target = ["--target", "cpu"] if device == "llvm-cpu" else ["--target", "cuda", "--chip", device]
    cmd = [a.sculpt, "emit", onnx_path, "--mlir", "-o", mlir, "--dialect", dialect, *target]
    for k, v in feeds.items():
        cmd += ["--shape", f"{k}={','.join(str(d) for d in v.shape)}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "sculpt emit failed")
    return read_recipe(mlir)


def run_and_time(iree, vmfb, inputs, ref, tmp, device):
    """Runs `vmfb` on the GPU, compares with `ref` (cosine: the cuda
    recipe's matmuls take f16 inputs) and times it: (a report line,
    whether it matched)."""
    got = run_module(iree, vmfb, inputs, len(ref), tmp, device)
    report, ok = judge(got, ref, "cosine")
    t, unit = benchmark(iree, vmfb, inputs, tmp, device)
    return f"{device} run: {report}, median {t:.3f} {unit}", ok


def check_model(a, iree, tmp, name, dialect):
    """Emits `name` in `dialect`, compiles it for llvm-cpu and cuda, runs the
    llvm-cpu module (and the cuda one with --cuda); prints one line, and
    returns whether every run matched the reference."""
    folder = os.path.join(CORPUS, name)
    feeds = np.load(os.path.join(folder, "inputs.npz"))
    ref = list(np.load(os.path.join(folder, "outputs.npz")).values())
    line = [f"{name} ({dialect})"]
    # IREE 3.13 knows no sm_90 target ("missing GPU target"): sm_80 code runs on Hopper too.
    for device in ["llvm-cpu", "sm_80"]:
        mlir = os.path.join(tmp, f"{name}.{dialect}.{device}.mlir")
        flags = emit(a, os.path.join(folder, "model.onnx"), feeds, mlir, dialect, device)
        vmfb = os.path.join(tmp, f"{name}.{dialect}.{device}.vmfb")
        compile_module(iree, mlir, vmfb, flags)
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


def cosine(got, ref):
    """The least cosine similarity over the outputs."""
    return min(float(np.dot(g.ravel().astype(np.float64), r.ravel().astype(np.float64))
                     / (np.linalg.norm(g.astype(np.float64)) * np.linalg.norm(r.astype(np.float64)) + 1e-30))
               for g, r in zip(got, ref))


def judge(got, ref, check, fidelities=None):
    """(a report, whether it passes) for `got` against onnxruntime's `ref`
    on the same file: `check` as in COMPRESSIONS (fidelity: `fidelities`
    is (the module's, onnxruntime's) cosine to the fp32 original)."""
    if check == "rtol":
        err, ok = compare(got, ref)
        rel = max(float(np.max(np.abs(g - r)) / (np.max(np.abs(r)) + 1e-30)) for g, r in zip(got, ref))
        return f"max rel err {rel:.1e} {'ok' if ok else 'DIFFERS'}", ok
    if check == "cosine":
        c = cosine(got, ref)
        return f"cosine {c:.5f} {'ok' if c >= 0.999 else 'DIFFERS'}", c >= 0.999
    mine, theirs = fidelities
    ok = mine >= theirs - 0.002
    return f"fidelity {mine:.4f} (onnxruntime {theirs:.4f}) {'ok' if ok else 'WORSE'}", ok


# The output a model's fidelity is scored on, where it has several, as
# ../shared/corpus/MANIFEST.md scores it: minilm's sentence embedding, not
# its per-token states (whose padded positions carry no meaning).
FIDELITY_OUTPUT = {"minilm_l6_v2": "sentence_embedding"}


def fidelity(rows, fp32_rows, scored):
    """The mean over rows of the cosine of the `scored` outputs (indices)
    to the fp32 original's."""
    return float(np.mean([cosine([row[i] for i in scored], [orig[i] for i in scored])
                          for row, orig in zip(rows, fp32_rows)]))


def ort_outputs(path, feeds):
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, dict(feeds))


def onnx_outputs(path):
    """The graph outputs of the ONNX file at `path` (names, in order)."""
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_outputs()


def make_bundle(a, iree, out):
    """Compiles each model, with each compression that applies to it, for
    a.bundle_target into `out`, with its inputs, onnxruntime's outputs for
    the same ONNX file, the two runtime tools and this script."""
    os.makedirs(out, exist_ok=True)
    for tool in ["run", "benchmark"]:
        shutil.copy2(iree[tool], out)
    shutil.copy2(os.path.abspath(__file__), out)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models or MODELS:
            folder = os.path.join(CORPUS, name)
            feeds = dict(np.load(os.path.join(folder, "inputs.npz")))
            fp32 = list(np.load(os.path.join(folder, "outputs.npz")).values())
            for compression in a.compressions.split(","):
                try:
                    path = compress(a.sculpt, folder, compression, os.path.join(tmp, f"{name}.{compression}.onnx"))
                except RuntimeError as e:
                    print(f"{name} {compression}: not made: {e}", flush=True)
                    continue
                if path is None:
                    continue
                ref = ort_outputs(path, feeds)
                check = COMPRESSIONS[compression][1]
                if a.bundle_target != "llvm-cpu" and check == "rtol":
                    check = "cosine"  # the cuda recipe's matmuls take f16 inputs
                dialects = a.dialects.split(",") if compression == "fp32" else ["linalg"]
                for dialect in dialects:
                    entry = f"{name}.{compression}.{dialect}"
                    mlir = os.path.join(tmp, f"{entry}.mlir")
                    try:
                        flags = emit(a, path, feeds, mlir, dialect, a.bundle_target)
                        compile_module(iree, mlir, os.path.join(out, f"{entry}.vmfb"), flags)
                    except RuntimeError as e:
                        print(f"{entry}: not bundled: {e}", flush=True)
                        continue
                    for i, x in enumerate(feeds.values()):
                        np.save(os.path.join(out, f"{entry}.in{i}.npy"), x)
                    for i, (r, f) in enumerate(zip(ref, fp32)):
                        np.save(os.path.join(out, f"{entry}.ref{i}.npy"), r)
                        np.save(os.path.join(out, f"{entry}.fp32_{i}.npy"), f)
                    names = [o.name for o in onnx_outputs(path)]
                    scored = [i for i, o in enumerate(names) if o == FIDELITY_OUTPUT.get(name)] or list(range(len(ref)))
                    entries.append({"module": entry, "inputs": len(feeds), "outputs": len(ref), "check": check,
                                    "scored": scored, "ort_fidelity": fidelity([ref], [fp32], scored)})
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
            fp32 = [np.load(os.path.join(folder, f"{entry}.fp32_{i}.npy")) for i in range(m["outputs"])]
            got = run_module(iree, vmfb, inputs, len(ref), tmp, device)
            mine = fidelity([got], [fp32], m["scored"])
            report, good = judge(got, ref, m["check"], (mine, m["ort_fidelity"]))
            t, unit = benchmark(iree, vmfb, inputs, tmp, device)
            report = f"{device} run: {report}, median {t:.3f} {unit}"
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
    ap.add_argument("--compressions", default="fp32,fp16,int8,int4,lowrank,prune,moe",
                    help="bundle: the compressions each model is bundled with (COMPRESSIONS)")
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
