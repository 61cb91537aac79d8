"""Cross-check two ONNX models with onnxruntime and the ONNX checker.

usage: ort_compare.py ORIGINAL CANDIDATE INPUTS.npz [--exact] [--rtol R --atol A]
                      [--reference-npz OUTPUTS.npz] [--min-cosine C]

Runs both models on the inputs with onnxruntime (CPU), compares every output
(with --reference-npz, the candidate's against those outputs, by name, in
place of the original's: what another runtime computed),
and runs onnx.checker.check_model(candidate, full_check=True). Prints one
JSON line; exits 1 when the checker fails or outputs differ.
"""
import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def run(path, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return [o.name for o in sess.get_outputs()], sess.run(None, {n: feeds[n] for n in names if n in feeds})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("candidate")
    ap.add_argument("inputs")
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--no-checker", action="store_true")
    ap.add_argument("--reference-npz")
    ap.add_argument("--min-cosine", type=float,
                    help="lossy results: pass when every float output's cosine to the original's is at least this")
    a = ap.parse_args()
    result = {"model": a.candidate}
    if not a.no_checker:
        try:
            onnx.checker.check_model(onnx.load(a.candidate), full_check=True)
            result["checker"] = "ok"
        except Exception as e:  # noqa: BLE001 - report any checker failure
            result["checker"] = f"failed: {str(e).splitlines()[0]}"
    feeds = dict(np.load(a.inputs))
    names_b, outs_b = run(a.candidate, feeds)
    if a.reference_npz:
        reference = dict(np.load(a.reference_npz))
        names_a = [n for n in names_b if n in reference]
        outs_a = [reference[n] for n in names_a]
    else:
        names_a, outs_a = run(a.original, feeds)
    ok = names_a == names_b
    worst = 0.0
    least_cosine = 1.0
    identical = True
    for x, y in zip(outs_a, outs_b):
        if x.shape != y.shape:
            ok = False
            continue
        identical &= x.tobytes() == y.tobytes()
        if x.dtype.kind in "fc":
            diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
            worst = max(worst, diff)
            if a.min_cosine is not None:
                u, v = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
                cos = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-30))
                least_cosine = min(least_cosine, cos)
                ok &= cos >= a.min_cosine
            else:
                ok &= bool(np.allclose(y, x, rtol=a.rtol, atol=a.atol, equal_nan=True))
        else:
            ok &= bool(np.array_equal(x, y))
    if a.exact:
        ok &= identical
    if a.min_cosine is not None:
        result["least_cosine"] = least_cosine
    result.update(outputs=names_b, identical=identical, max_abs_err=worst, ok=bool(ok and result.get("checker", "ok") == "ok"))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
