#!/usr/bin/env python3
"""int8 QDQ (W8A8) side by side with onnxruntime's quantize_static, in one
run, same calibration data.

Models: resnet18, mobilenet_v3_small (random weights: calibration and
eval are seeded normal images, disjoint), minilm_l6_v2 and
ppocr_mobile_v2_cls (their calib.npz to fit, eval.npz to measure).

sculpt: `quantize{policy=int8 calib=M}` for each range method M.
onnxruntime: quantize_static(QDQ, per_channel=True, MinMax, S8S8), the
calibration samples fed one at a time.

Per row: file size, fidelity on the eval samples against the fp32 model
in onnxruntime (mean cosine of the outputs; minilm: of the sentence
embeddings; ppocr also: agreement of the predicted class), onnxruntime
latency for one sample on 1 and 2 threads, and the tool's wall time
(whole process, load and save included). sculpt runs once per runtime of
`--runtimes` (tract, ort: the calibration runs on onnxruntime), and the
last column is onnxruntime's quantize_static time over sculpt's.

usage: benches/quantize_int8.py [--sculpt target/release/sculpt] [--models a,b]
       [--methods minmax,...] [--runtimes tract,ort] [--json]
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

from common import cosine, latency, session, timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))
MODELS = ["resnet18", "mobilenet_v3_small", "minilm_l6_v2", "ppocr_mobile_v2_cls"]
METHODS = ["minmax", "percentile", "entropy", "mse"]
# Transformers: only the linear sites (their residual stream, GELU and
# attention-mask values do not survive per-tensor int8).
EXTRA = {"minilm_l6_v2": ["quantize{policy=int8 ops=MatMul|Gemm|Gather calib=percentile}",
                          "quantize{policy=int8 ops=MatMul|Gemm|Gather calib=percentile activations=uint8}",
                          "quantize{policy=int8 ops=MatMul|Gemm|Gather calib=percentile activations=uint8 smooth_mul=true}"]}


def data(name, tmp):
    """(calib.npz path, eval feeds) for a model: the corpus's, or seeded
    normal images (32 to calibrate, 16 to evaluate) where it has none."""
    folder = os.path.join(CORPUS, name)
    calib = os.path.join(folder, "calib.npz")
    if os.path.exists(calib):
        return calib, dict(np.load(os.path.join(folder, "eval.npz")))
    shape = [1, 3, 224, 224]
    rng = np.random.default_rng(0)
    key = list(np.load(os.path.join(folder, "inputs.npz")).keys())[0]
    calib = os.path.join(tmp, f"{name}_calib.npz")
    np.savez(calib, **{key: rng.standard_normal([32] + shape[1:]).astype(np.float32)})
    return calib, {key: rng.standard_normal([16] + shape[1:]).astype(np.float32)}


def ort_quantize(model, calib, out):
    code = (
        "import sys, numpy as np\n"
        "from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationMethod, CalibrationDataReader\n"
        "class Reader(CalibrationDataReader):\n"
        "    def __init__(self, path):\n"
        "        d = dict(np.load(path)); n = len(next(iter(d.values())))\n"
        "        self.items = iter([{k: v[i:i+1] for k, v in d.items()} for i in range(n)])\n"
        "    def get_next(self):\n"
        "        return next(self.items, None)\n"
        "quantize_static(sys.argv[1], sys.argv[3], Reader(sys.argv[2]), quant_format=QuantFormat.QDQ,\n"
        "    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,\n"
        "    calibrate_method=CalibrationMethod.MinMax)\n"
    )
    seconds, r = timed([sys.executable, "-c", code, model, calib, out])
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1][:200]
    return seconds, None


def sculpt_quantize(sculpt, model, pipeline, calib, out, runtime):
    seconds, r = timed([sculpt, "opt", model, "-p", pipeline, "--calib", calib, "-o", out,
                        "--runtime", runtime])
    if r.returncode != 0:
        return None, r.stderr.strip()[-300:]
    return seconds, None


def run_all(path, feeds):
    """The first output for every eval sample, one sample at a time."""
    s = session(path, 2)
    n = len(next(iter(feeds.values())))
    names = [i.name for i in s.get_inputs()]
    out = s.get_outputs()[0].name
    if "sentence_embedding" in [o.name for o in s.get_outputs()]:
        out = "sentence_embedding"
    return np.concatenate([s.run([out], {k: feeds[k][i:i + 1] for k in names})[0] for i in range(n)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--runtimes", default="tract,ort")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            model = os.path.join(CORPUS, name, "model.onnx")
            calib, feeds = data(name, tmp)
            one = {k: v[:1] for k, v in feeds.items()}
            reference = run_all(model, feeds)
            runs = [("original", "fp32", model, 0.0, None)]
            seconds, err = ort_quantize(model, calib, os.path.join(tmp, f"{name}_ort.onnx"))
            runs.append(("onnxruntime", "quantize_static QDQ per-channel MinMax S8S8",
                         os.path.join(tmp, f"{name}_ort.onnx"), seconds, err))
            pipelines = [f"quantize{{policy=int8 calib={m}}}" for m in a.methods.split(",")] + EXTRA.get(name, [])
            for i, pipeline in enumerate(pipelines):
                for runtime in a.runtimes.split(","):
                    out = os.path.join(tmp, f"{name}_sculpt_{i}_{runtime}.onnx")
                    seconds, err = sculpt_quantize(a.sculpt, model, pipeline, calib, out, runtime)
                    runs.append((f"sculpt ({runtime})", pipeline, out, seconds, err))
            peer_seconds = runs[1][3]
            for tool, config, path, seconds, err in runs:
                row = {"model": name, "tool": tool, "config": config}
                if err:
                    row["error"] = err
                else:
                    got = run_all(path, feeds)
                    row.update({
                        "size_mb": os.path.getsize(path) / 1e6,
                        "cosine": cosine(got, reference),
                        "top1_agree": float(np.mean(got.reshape(len(got), -1).argmax(1)
                                                    == reference.reshape(len(got), -1).argmax(1))),
                        "ms_1": latency(path, one, 1, runs=30, warmup=5),
                        "ms_2": latency(path, one, 2, runs=30, warmup=5),
                        "tool_s": seconds,
                        "peer_over_tool": peer_seconds / seconds if peer_seconds and seconds else None,
                    })
                rows.append(row)
                print(row, file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| model | tool | config | size MB | cosine (eval) | top-1 agree | ort ms 1 thr | ort ms 2 thr | tool s | quantize_static s / tool s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['tool']} | `{r['config']}` | failed: {r['error']} |||||||")
            continue
        print(f"| {r['model']} | {r['tool']} | `{r['config']}` | {r['size_mb']:.1f} | {r['cosine']:.4f} | "
              f"{r['top1_agree']:.3f} | {r['ms_1']:.2f} | {r['ms_2']:.2f} | {r['tool_s']:.1f} | "
              f"{'' if r['peer_over_tool'] is None else format(r['peer_over_tool'], '.2f')} |")


if __name__ == "__main__":
    main()
