"""sculpt: a compiler for trained neural networks. ONNX in, smaller and
faster ONNX out.

    import sculpt
    small = sculpt.optimize("model.onnx", "quantize{}", calib="calib.npz")
    onnx.save(small, "model.int4.onnx")

Models are given as a path or an ``onnx.ModelProto``; results come back as
a ModelProto (``onnx`` must be installed) or, with ``output=``, are written
to that file (the way for models over 2 GB). Failures raise
:class:`SculptError` with sculpt's message.
"""
import importlib.util
import json
import os
import tempfile

from . import _sculpt
from ._sculpt import SculptError

__all__ = ["optimize", "inspect", "zig", "passes", "SculptError", "__version__"]
__version__ = _sculpt.__version__


def optimize(model, pipeline="", calib=None, check=None, output=None, report=False,
             runtime="auto", inputs=None, rtol=None, atol=None, verbose=False, options=()):
    """Runs a pass pipeline on ``model`` and returns the result.

    model: a path, or an ``onnx.ModelProto``.
    pipeline: sculpt's pipeline text, e.g. ``"cleanup"`` or
        ``"prune{criterion=obs budget=0.2}"`` (``sculpt.passes()`` lists
        them); ``""`` round-trips the model.
    calib: calibration data for the passes that measure activations: an
        ``.npz`` path, a dict of arrays (axis 0 the samples), or an
        iterable of feed dicts (what onnxruntime's
        ``CalibrationDataReader`` yields), stacked along axis 0.
    check: None checks the numerics of lossless pipelines (models up to
        1 GiB of weights); True insists, also after lossy passes, within
        ``rtol``/``atol``; False never checks.
    output: write the result to this path and return None (models over
        2 GB must take this way); otherwise a ModelProto is returned.
    report: also return the run's report (a dict): ``(model, report)``.
    runtime: what runs the model for calibration and checks: ``"auto"``
        (onnxruntime where it is installed, else tract), ``"ort"`` or
        ``"tract"``.
    inputs: the inputs of the numeric check (a path or a dict of arrays).
    verbose: print what each pass did and the run table (to stderr).
    options: more command-line options of ``sculpt opt``, as strings.
    """
    _use_installed_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="sculpt-") as tmp:
        source = _model_path(model, tmp)
        target = os.fspath(output) if output is not None else os.path.join(tmp, "out.onnx")
        args = ["sculpt", "opt", source, "-p", pipeline, "-o", target, "--runtime", runtime]
        if calib is not None:
            args += ["--calib", _calib_path(calib, tmp)]
        if inputs is not None:
            args += ["--inputs", _arrays_path(inputs, tmp, "inputs.npz")]
        if check is True:
            args.append("--check")
        elif check is False:
            args.append("--no-check")
        elif check is not None:
            raise TypeError(f"check: True, False or None, not {check!r}")
        if rtol is not None:
            args += ["--rtol", str(rtol)]
        if atol is not None:
            args += ["--atol", str(atol)]
        report_path = os.path.join(tmp, "report.json")
        if report:
            args += ["--report", report_path]
        if not verbose:
            args.append("--quiet")
        args += [str(o) for o in options]
        _sculpt.run(args)
        result = None if output is not None else _load(target)
        if report:
            with open(report_path) as f:
                return result, json.load(f)
        return result


def inspect(model, dims=None):
    """The model's summary (inputs, outputs, op histogram, parameters,
    FLOPs, opsets, size), as ``sculpt inspect --json`` gives it. ``dims``
    binds symbolic input dims for the FLOPs: ``{"batch": 1}``."""
    with tempfile.TemporaryDirectory(prefix="sculpt-") as tmp:
        return json.loads(_sculpt.inspect(_model_path(model, tmp), dict(dims or {})))


def zig(model):
    """The model's zero-invariant groups (the structures pruning removes
    whole), as ``sculpt inspect --zig --json`` gives them."""
    with tempfile.TemporaryDirectory(prefix="sculpt-") as tmp:
        return json.loads(_sculpt.zig(_model_path(model, tmp)))


def passes():
    """Every pass: name, summary and options (name, kind, default, help)."""
    return json.loads(_sculpt.passes())


def _use_installed_onnxruntime():
    """Points sculpt at the onnxruntime library of this interpreter's
    ``onnxruntime`` package (unless ORT_DYLIB_PATH already names one)."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return
    capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
    try:
        names = sorted(n for n in os.listdir(capi)
                       if (n.startswith("libonnxruntime.so") or n.endswith(".dylib")
                           or n == "onnxruntime.dll") and "providers" not in n)
    except OSError:
        return
    if names:
        os.environ["ORT_DYLIB_PATH"] = os.path.join(capi, names[-1])


def _model_path(model, tmp):
    """A path to ``model``: itself, or a ModelProto written into ``tmp``."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        import onnx

        path = os.path.join(tmp, "model.onnx")
        over_2gb = model.ByteSize() > (2 << 30) - (1 << 20) if hasattr(model, "ByteSize") else False
        onnx.save_model(model, path, save_as_external_data=over_2gb)
        return path
    raise TypeError(f"model: a path or an onnx.ModelProto, not {type(model).__name__}")


def _load(path):
    try:
        import onnx
    except ImportError as e:
        raise ImportError("returning a ModelProto needs the onnx package (pip install onnx), "
                          "or pass output= to write the model to a file") from e
    return onnx.load_model(path)


def _calib_path(calib, tmp):
    """An .npz path for the calibration data ``calib``."""
    if isinstance(calib, (str, os.PathLike)):
        return os.fspath(calib)
    if isinstance(calib, dict):
        return _arrays_path(calib, tmp, "calib.npz")
    try:
        feeds = iter(calib)
    except TypeError:
        feeds = None
    if feeds is None and hasattr(calib, "get_next"):
        feeds = iter(calib.get_next, None)
    if feeds is None:
        raise TypeError("calib: an .npz path, a dict of arrays or an iterable of feed dicts, "
                        f"not {type(calib).__name__}")
    return _arrays_path(_stacked(feeds), tmp, "calib.npz")


def _stacked(feeds):
    """Feed dicts stacked along axis 0, input by input."""
    import numpy as np

    columns = {}
    count = 0
    for feed in feeds:
        if not isinstance(feed, dict):
            raise TypeError(f"calib: feed {count} is a {type(feed).__name__}, not a dict of arrays")
        if columns and set(feed) != set(columns):
            raise ValueError(f"calib: feed {count} has inputs {sorted(feed)}, "
                             f"the first had {sorted(columns)}")
        for name, value in feed.items():
            columns.setdefault(name, []).append(np.asarray(value))
        count += 1
    if not count:
        raise ValueError("calib: the iterable gave no feeds")
    stacked = {}
    for name, parts in columns.items():
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1 or any(p.ndim == 0 for p in parts):
            raise ValueError(f"calib: input '{name}' changes shape between feeds ({sorted(shapes)}); "
                             "give feeds of one shape (pad them), with axis 0 the batch")
        stacked[name] = np.concatenate(parts, axis=0)
    return stacked


def _arrays_path(arrays, tmp, name):
    if isinstance(arrays, (str, os.PathLike)):
        return os.fspath(arrays)
    if not isinstance(arrays, dict):
        raise TypeError(f"expected a dict of arrays, not {type(arrays).__name__}")
    import numpy as np

    path = os.path.join(tmp, name)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path
