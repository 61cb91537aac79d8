"""The installed wheel's Python API and command, on a corpus model
(SCULPT_CORPUS, default ../shared/corpus) and hostile inputs."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import sculpt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.environ.get("SCULPT_CORPUS", os.path.join(REPO, "..", "shared", "corpus"))
MINILM = os.path.join(CORPUS, "minilm_l6_v2")
PPOCR = os.path.join(CORPUS, "ppocr_mobile_v2_cls")


def run(model, feeds):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return s.run(None, {k: feeds[k] for k in names})


def test_optimize_from_a_path_and_from_a_model_proto():
    path = os.path.join(PPOCR, "model.onnx")
    feeds = dict(np.load(os.path.join(PPOCR, "inputs.npz")))
    expected = run(path, feeds)
    from_path = sculpt.optimize(path, "cleanup")
    from_proto = sculpt.optimize(onnx.load(path), "cleanup")
    assert isinstance(from_path, onnx.ModelProto)
    assert from_path.SerializeToString() == from_proto.SerializeToString()
    np.testing.assert_allclose(run(from_path, feeds)[0], expected[0], rtol=1e-4, atol=1e-5)


def test_calibration_from_an_iterable_of_feeds_matches_the_npz():
    """What onnxruntime's CalibrationDataReader yields (one sample per
    feed) gives the model the same npz does."""
    path = os.path.join(PPOCR, "model.onnx")
    calib_path = os.path.join(PPOCR, "calib.npz")
    calib = dict(np.load(calib_path))
    feeds = ({k: v[i:i + 1] for k, v in calib.items()} for i in range(len(calib["x"])))
    pipeline = "quantize{policy=int8}"
    from_feeds, report = sculpt.optimize(path, pipeline, calib=feeds, report=True, runtime="tract")
    from_npz = sculpt.optimize(path, pipeline, calib=calib_path, runtime="tract")
    assert from_feeds.SerializeToString() == from_npz.SerializeToString()
    assert report["runtime"] == "tract"
    ops = {n.op_type for n in from_feeds.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_calibration_reader_objects_are_read_to_the_end():
    class Reader:
        def __init__(self, arrays):
            self.items = iter([{k: v[i:i + 1] for k, v in arrays.items()} for i in range(4)])

        def get_next(self):
            return next(self.items, None)

    path = os.path.join(PPOCR, "model.onnx")
    arrays = {k: v[:4] for k, v in np.load(os.path.join(PPOCR, "calib.npz")).items()}
    model = sculpt.optimize(path, "quantize{policy=int8}", calib=Reader(arrays))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_a_lossy_pass_on_onnxruntime_with_output_and_report(tmp_path):
    out = tmp_path / "small.onnx"
    result, report = sculpt.optimize(os.path.join(MINILM, "model.onnx"), "quantize{}",
                                     calib=os.path.join(MINILM, "calib.npz"), output=out,
                                     report=True, runtime="ort")
    assert result is None and out.exists()
    assert report["runtime"] == "ort"
    assert os.path.getsize(out) < os.path.getsize(os.path.join(MINILM, "model.onnx")) / 3
    feeds = dict(np.load(os.path.join(MINILM, "inputs.npz")))
    got = run(str(out), feeds)[1]
    want = run(os.path.join(MINILM, "model.onnx"), feeds)[1]
    cos = (got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want)
    assert cos > 0.98


def test_inspect_zig_and_passes():
    summary = sculpt.inspect(os.path.join(PPOCR, "model.onnx"))
    assert summary["params"] > 0 and "Conv" in json.dumps(summary)
    groups = sculpt.zig(os.path.join(PPOCR, "model.onnx"))
    assert groups
    names = [p["name"] for p in sculpt.passes()]
    assert {"cleanup", "prune", "quantize", "lowrank", "moe"} <= set(names)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage", b"\x0a" * 64, os.urandom(4096)])
def test_bad_models_raise(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(sculpt.SculptError):
        sculpt.optimize(str(path), "cleanup")
    with pytest.raises(sculpt.SculptError):
        sculpt.inspect(str(path))


def test_bad_arguments_raise_with_sculpts_message(tmp_path):
    path = os.path.join(PPOCR, "model.onnx")
    with pytest.raises(sculpt.SculptError, match="unknown pass"):
        sculpt.optimize(path, "no_such_pass")
    with pytest.raises(sculpt.SculptError, match="prune"):
        sculpt.optimize(path, "prune{ratio=banana}")
    with pytest.raises(sculpt.SculptError):
        sculpt.optimize(os.path.join(tmp_path, "missing.onnx"), "cleanup")
    with pytest.raises(TypeError):
        sculpt.optimize(b"bytes are not a model")
    with pytest.raises(ValueError, match="changes shape"):
        sculpt.optimize(path, "quantize{policy=int8}",
                        calib=[{"x": np.zeros([1, 3, 48, 192], np.float32)},
                               {"x": np.zeros([1, 3, 48, 96], np.float32)}])
    with pytest.raises(sculpt.SculptError, match="calibration"):
        sculpt.optimize(path, "quantize{policy=int8}", calib={"x": np.zeros([0], np.float32)})


def test_the_command_is_on_path(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "sculpt")
    out = tmp_path / "out.onnx"
    r = subprocess.run([exe, "opt", os.path.join(PPOCR, "model.onnx"), "-p", "cleanup", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.exists()
    r = subprocess.run([exe, "opt", "nope.onnx", "-p", "cleanup", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: ")
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "sculpt" in r.stdout


def test_the_readme_python_example_runs_as_written():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = text.split("```python\n")[1:]
    assert blocks, "the README shows a Python example"
    for block in blocks:
        code = block.split("```")[0]
        r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def hostile_models(tmp_path):
    """The malformed models of scripts/hostile-inputs.py, as files."""
    spec = importlib.util.spec_from_file_location("hostile", os.path.join(REPO, "scripts", "hostile-inputs.py"))
    hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hostile)
    models = {name: m.SerializeToString() for name, m in hostile.cases().items()}
    with open(os.path.join(REPO, "examples", "models", "tiny_cnn.onnx"), "rb") as f:
        models.update(hostile.corrupt(f.read()))
    for name, raw in models.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(raw)
        yield name, path


def test_hostile_models_raise_in_process_and_never_crash_the_interpreter(tmp_path):
    """Each malformed model through optimize, inspect and zig in this
    process: a result or a SculptError, nothing else (a crash would end
    the test run)."""
    refused = 0
    for name, path in hostile_models(tmp_path):
        for call in (lambda: sculpt.optimize(str(path), "cleanup", output=tmp_path / "out.onnx"),
                     lambda: sculpt.inspect(str(path)),
                     lambda: sculpt.zig(str(path))):
            try:
                call()
            except sculpt.SculptError as e:
                assert str(e), name
                assert "internal error" not in str(e), f"{name}: {e}"
                refused += 1
    assert refused > 50
