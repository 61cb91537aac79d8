#!/usr/bin/env python3
"""Malformed models and arguments, one or more per class of hostile input,
through sculpt's commands: every invocation must end with exit code 0 or 1
(never a panic, a signal or a hang), say why in one `error:` line when it
fails, and leave no output file behind when it fails.

The classes are those of issue #15 (tract panics during `run`, models that
break the op schemas, shape bombs, path tricks, bad npz, bad options). New
cases are easy to add: `case(name, model_proto)` or `invocation(...)`.

usage: scripts/hostile-inputs.py [--sculpt target/release/sculpt] [--keep DIR] [-v]
prints a table of the failures (empty when all behave) and a summary line;
exits 1 if any invocation panicked, hung or wrote output despite failing.
"""
import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def model(nodes, inputs, outputs, inits=(), opset=17, domains=(), functions=(), ir=8):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    imports = [helper.make_opsetid("", opset)] if opset is not None else []
    imports += [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(g, opset_imports=imports, functions=list(functions))
    m.ir_version = ir
    return m


def vi(name, dtype=F, shape=(1, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def unary(op, x_shape=(1, 4), y_shape=None, dtype=F, **attrs):
    return model([helper.make_node(op, ["x"], ["y"], **attrs)],
                 [vi("x", dtype, x_shape)], [vi("y", dtype, y_shape)])


def cases():
    """(name, ModelProto or bytes, commands) per hostile model."""
    out = {}

    def case(name, m):
        out[name] = m

    # tract would panic on these during `run`.
    case("range_delta_zero", model(
        [helper.make_node("Range", ["s", "l", "d"], ["r"]), helper.make_node("Cast", ["r"], ["y"], to=F)],
        [vi("x")], [vi("y", F, None)], [const("s", np.int64(0)), const("l", np.int64(10)), const("d", np.int64(0))]))
    case("range_delta_nan", model(
        [helper.make_node("Range", ["s", "l", "d"], ["y"])],
        [vi("x")], [vi("y", F, None)],
        [const("s", np.float32(0)), const("l", np.float32(10)), const("d", np.float32("nan"))]))
    case("range_delta_from_input", model(
        [helper.make_node("ReduceSum", ["x"], ["d"], keepdims=0),
         helper.make_node("Range", ["s", "l", "d"], ["y"])],
        [vi("x", F, (4,))], [vi("y", F, None)], [const("s", np.float32(0)), const("l", np.float32(10))]))
    case("slice_step_zero", model(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], [vi("x")], [vi("y", F, None)],
        [const("st", [0]), const("en", [4]), const("ax", [1]), const("sp", [0])]))
    case("conv_stride_zero", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0])], [vi("x", F, (1, 1, 4, 4))],
        [vi("y", F, None)], [const("w", np.ones((1, 1, 2, 2), np.float32))]))
    case("conv_dilation_zero", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], dilations=[0, 0])], [vi("x", F, (1, 1, 4, 4))],
        [vi("y", F, None)], [const("w", np.ones((1, 1, 2, 2), np.float32))]))
    case("gather_index_out_of_range", model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [vi("x")], [vi("y", F, None)],
        [const("i", np.array([7], np.int64))]))
    case("gather_axis_out_of_range", model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=5)], [vi("x")], [vi("y", F, None)],
        [const("i", np.array([0], np.int64))]))
    case("transpose_perm_out_of_range", unary("Transpose", perm=[0, 5]))
    case("transpose_perm_repeated", unary("Transpose", perm=[1, 1]))
    case("squeeze_axis_out_of_range", model(
        [helper.make_node("Squeeze", ["x", "a"], ["y"])], [vi("x")], [vi("y", F, None)], [const("a", [9])]))
    case("squeeze_non_unit_axis", model(
        [helper.make_node("Squeeze", ["x", "a"], ["y"])], [vi("x")], [vi("y", F, None)], [const("a", [1])]))
    case("int_div_by_zero", model(
        [helper.make_node("Div", ["x", "z"], ["y"])], [vi("x", I64)], [vi("y", I64, None)],
        [const("z", np.zeros((1, 4), np.int64))]))
    case("int_div_by_zero_from_input", model(
        [helper.make_node("Div", ["z", "x"], ["y"])], [vi("x", I64)], [vi("y", I64, None)],
        [const("z", np.ones((1, 4), np.int64))]))
    case("int_mod_by_zero", model(
        [helper.make_node("Mod", ["x", "z"], ["y"])], [vi("x", I64)], [vi("y", I64, None)],
        [const("z", np.zeros((1, 4), np.int64))]))
    case("div_min_by_minus_one", model(
        [helper.make_node("Div", ["a", "b"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
        [vi("x", I64)], [vi("y", I64, None)],
        [const("a", np.array([np.iinfo(np.int64).min], np.int64)), const("b", np.array([-1], np.int64))]))
    case("maxpool_kernel_zero", model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[0, 0])], [vi("x", F, (1, 1, 4, 4))],
        [vi("y", F, None)]))
    case("avgpool_stride_zero", model(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[0, 0])],
        [vi("x", F, (1, 1, 4, 4))], [vi("y", F, None)]))
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "then", [], [vi("a"), ])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["b"]), helper.make_node("Neg", ["x"], ["c"])],
                              "else", [], [vi("b"), vi("c")])
    case("if_branch_arity", model(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["cond"]),
         helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
        [vi("x")], [vi("y", F, None)], [const("zero", np.float32(0))]))
    ghost = helper.make_graph([helper.make_node("Identity", ["nowhere"], ["a"])], "then", [], [vi("a")])
    ghost2 = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "else", [], [vi("b")])
    case("subgraph_reads_missing_outer", model(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["cond"]),
         helper.make_node("If", ["cond"], ["y"], then_branch=ghost, else_branch=ghost2)],
        [vi("x")], [vi("y", F, None)], [const("zero", np.float32(0))]))
    case("reshape_two_minus_one", model(
        [helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x")], [vi("y", F, None)], [const("s", [-1, -1])]))
    case("expand_incompatible", model(
        [helper.make_node("Expand", ["x", "s"], ["y"])], [vi("x")], [vi("y", F, None)], [const("s", [3, 5])]))
    case("concat_axis_out_of_range", model(
        [helper.make_node("Concat", ["x", "x"], ["y"], axis=7)], [vi("x")], [vi("y", F, None)]))
    case("onehot_depth_negative", model(
        [helper.make_node("OneHot", ["x", "d", "v"], ["y"])], [vi("x", I64, (3,))], [vi("y", F, None)],
        [const("d", np.int64(-5)), const("v", np.array([0, 1], np.float32))]))
    case("tile_negative", model(
        [helper.make_node("Tile", ["x", "r"], ["y"])], [vi("x")], [vi("y", F, None)], [const("r", [1, -3])]))
    case("topk_k_too_big", model(
        [helper.make_node("TopK", ["x", "k"], ["y", "i"])], [vi("x")], [vi("y", F, None), vi("i", I64, None)],
        [const("k", [9])]))
    case("split_sizes_wrong", model(
        [helper.make_node("Split", ["x", "s"], ["y", "z"], axis=1)], [vi("x")], [vi("y", F, None), vi("z", F, None)],
        [const("s", [3, 3])]))
    case("matmul_mismatch", model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x")], [vi("y", F, None)],
        [const("w", np.ones((5, 2), np.float32))]))
    case("constant_of_shape_negative", model(
        [helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
        [vi("x")], [vi("y", F, None)], [const("s", [1, -4])]))
    case("pad_negative_past_size", model(
        [helper.make_node("Pad", ["x", "p"], ["y"])], [vi("x")], [vi("y", F, None)], [const("p", [0, -9, 0, 0])]))
    case("depth_to_space_zero", model(
        [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=0)], [vi("x", F, (1, 4, 2, 2))], [vi("y", F, None)]))
    case("resize_scales_zero", model(
        [helper.make_node("Resize", ["x", "", "s"], ["y"])], [vi("x", F, (1, 1, 4, 4))], [vi("y", F, None)],
        [const("s", np.array([1, 1, 0, 0], np.float32))]))
    case("cumsum_axis_out_of_range", model(
        [helper.make_node("CumSum", ["x", "a"], ["y"])], [vi("x")], [vi("y", F, None)], [const("a", np.int64(5))]))
    case("softmax_axis_out_of_range", unary("Softmax", axis=4))
    case("argmax_axis_out_of_range", unary("ArgMax", y_shape=None, axis=4))
    case("reduce_axis_out_of_range", model(
        [helper.make_node("ReduceSum", ["x", "a"], ["y"])], [vi("x")], [vi("y", F, None)], [const("a", [6])]))
    case("flatten_axis_out_of_range", unary("Flatten", axis=9))
    case("einsum_bad_equation", model(
        [helper.make_node("Einsum", ["x"], ["y"], equation="ij->ijk")], [vi("x")], [vi("y", F, None)]))
    case("lrn_size_zero", model(
        [helper.make_node("LRN", ["x"], ["y"], size=0)], [vi("x", F, (1, 2, 2, 2))], [vi("y", F, None)]))
    case("gather_elements_out_of_range", model(
        [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)], [vi("x")], [vi("y", F, None)],
        [const("i", np.full((1, 4), 11, np.int64))]))
    case("scatter_nd_out_of_range", model(
        [helper.make_node("ScatterND", ["x", "i", "u"], ["y"])], [vi("x")], [vi("y", F, None)],
        [const("i", np.array([[0, 99]], np.int64)), const("u", np.array([1.0], np.float32))]))
    case("nonzero_then_reshape", model(
        [helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x")], [vi("y", F, None)], [const("s", [3, 3])]))
    # Schema violations.
    case("evil_domain", model([helper.make_node("Relu", ["x"], ["y"], domain="com.evil")], [vi("x")], [vi("y")]))
    case("evil_domain_imported_unknown_op", model(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.evil")], [vi("x")], [vi("y")], domains=["com.evil"]))
    case("cast_without_to", unary("Cast"))
    case("concat_without_axis", model([helper.make_node("Concat", ["x", "x"], ["y"])], [vi("x")], [vi("y", F, None)]))
    case("attr_wrong_type", model(
        [helper.make_node("Concat", ["x", "x"], ["y"], axis=1.5)], [vi("x")], [vi("y", F, None)]))
    case("attr_string_for_int", model(
        [helper.make_node("Softmax", ["x"], ["y"], axis="one")], [vi("x")], [vi("y", F, None)]))
    case("too_few_inputs", model([helper.make_node("Add", ["x"], ["y"])], [vi("x")], [vi("y")]))
    case("too_many_inputs", model([helper.make_node("Relu", ["x", "x", "x"], ["y"])], [vi("x")], [vi("y")]))
    case("too_many_outputs", model([helper.make_node("Relu", ["x"], ["y", "z"])], [vi("x")], [vi("y"), vi("z")]))
    case("zero_outputs", model(
        [helper.make_node("Relu", ["x"], []), helper.make_node("Neg", ["x"], ["y"])], [vi("x")], [vi("y")]))
    case("unknown_default_op", model([helper.make_node("Frobnicate", ["x"], ["y"])], [vi("x")], [vi("y")]))
    case("opset_none", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=None))
    case("opset_zero", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=0))
    case("opset_negative", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=-1))
    case("opset_huge", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=2**62))
    case("ir_version_99", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], ir=99))
    f = helper.make_function("local", "Loop1", ["a"], ["b"], [helper.make_node("Loop1", ["a"], ["b"], domain="local")],
                             [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    case("recursive_function", model([helper.make_node("Loop1", ["x"], ["y"], domain="local")], [vi("x")], [vi("y")],
                                     domains=["local"], functions=[f]))
    fa = helper.make_function("local", "A", ["a"], ["b"], [helper.make_node("B", ["a"], ["b"], domain="local")],
                              [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    fb = helper.make_function("local", "B", ["a"], ["b"], [helper.make_node("A", ["a"], ["b"], domain="local")],
                              [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    case("mutually_recursive_functions", model([helper.make_node("A", ["x"], ["y"], domain="local")], [vi("x")],
                                               [vi("y")], domains=["local"], functions=[fa, fb]))
    # Graph structure.
    case("cycle", model([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                         helper.make_node("Identity", ["b"], ["y"])], [vi("x")], [vi("y")]))
    case("dangling_input", model([helper.make_node("Add", ["x", "ghost"], ["y"])], [vi("x")], [vi("y")]))
    case("duplicate_output", model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])],
                                   [vi("x")], [vi("y")]))
    case("output_never_defined", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y"), vi("z")]))
    bad = const("w", np.ones(4, np.float32))
    bad.dims[:] = [3]
    case("initializer_size_mismatch", model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], [bad]))
    case("input_2_pow_40", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, (2**20, 2**20))],
                                 [vi("y", F, (2**20, 2**20))]))
    case("input_negative_dims", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, (-1, 3, -5))],
                                      [vi("y", F, None)]))
    case("input_symbolic_dims", model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ("N", 3, "M"))],
                                      [vi("y", F, None)]))
    ext = const("w", np.ones((1, 4), np.float32))
    ext.ClearField("raw_data")
    ext.ClearField("float_data")
    ext.data_location = TensorProto.EXTERNAL
    for key, value in [("location", "../../../etc/passwd"), ("offset", "0"), ("length", "16")]:
        ext.external_data.add(key=key, value=value)
    case("external_data_dotdot", model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], [ext]))
    ext_abs = onnx.TensorProto()
    ext_abs.CopyFrom(ext)
    ext_abs.external_data[0].value = "/etc/passwd"
    case("external_data_absolute", model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], [ext_abs]))
    ext_long = onnx.TensorProto()
    ext_long.CopyFrom(ext)
    ext_long.external_data[0].value = "weights.bin"
    ext_long.external_data[2].value = str(2**40)
    case("external_data_past_end", model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], [ext_long]))
    return out


# Models that break the ONNX spec: opt, run and check must refuse them.
MUST_REFUSE = {
    "ids_out_of_vocabulary", "ids_below_vocabulary", "external_data_named_pipe",
    "evil_domain", "cast_without_to", "concat_without_axis", "attr_wrong_type", "attr_string_for_int",
    "too_few_inputs", "too_many_inputs", "too_many_outputs", "unknown_default_op", "opset_none", "opset_zero",
    "opset_negative", "opset_huge", "ir_version_99", "recursive_function", "mutually_recursive_functions", "cycle",
    "dangling_input", "duplicate_output", "output_never_defined", "initializer_size_mismatch",
    "external_data_dotdot", "external_data_absolute", "external_data_past_end", "truncated", "empty", "garbage",
    "if_branch_arity", "subgraph_reads_missing_outer", "transpose_perm_out_of_range", "transpose_perm_repeated",
    "conv_stride_zero", "conv_dilation_zero", "maxpool_kernel_zero", "avgpool_stride_zero", "slice_step_zero",
    "depth_to_space_zero", "lrn_size_zero", "softmax_axis_out_of_range", "flatten_axis_out_of_range",
    "concat_axis_out_of_range", "gather_axis_out_of_range", "argmax_axis_out_of_range", "einsum_bad_equation",
    "input_negative_dims", "named_pipe",
}


def corrupt(raw):
    """Byte-level damage of a valid model."""
    rng = np.random.default_rng(0)
    flipped = bytearray(raw)
    for i in rng.integers(0, len(raw), 8):
        flipped[i] ^= 0xFF
    return {"truncated": raw[: len(raw) // 2], "bit_flipped": bytes(flipped), "empty": b"",
            "garbage": bytes(rng.integers(0, 256, 4096, dtype=np.uint8))}


def run(cmd, timeout):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        return "hang", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sculpt", default=os.path.join(REPO, "target", "release", "sculpt"))
    ap.add_argument("--keep", help="write the cases here and keep them")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("-v", action="store_true", help="print every invocation's error line")
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp()
    os.makedirs(tmp, exist_ok=True)
    files = {}
    for name, m in cases().items():
        path = os.path.join(tmp, name + ".onnx")
        with open(path, "wb") as fh:
            fh.write(m.SerializeToString())
        files[name] = path
    tiny = os.path.join(REPO, "examples", "models", "tiny_cnn.onnx")
    for name, raw in corrupt(open(tiny, "rb").read()).items():
        path = os.path.join(tmp, name + ".onnx")
        with open(path, "wb") as fh:
            fh.write(raw)
        files[name] = path
    fifo = os.path.join(tmp, "fifo.onnx")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    files["named_pipe"] = fifo
    # External data at a named pipe beside the model.
    pipe_dir = os.path.join(tmp, "pipe_data")
    os.makedirs(pipe_dir, exist_ok=True)
    data_pipe = os.path.join(pipe_dir, "weights.bin")
    if not os.path.exists(data_pipe):
        os.mkfifo(data_pipe)
    piped = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    piped.ClearField("raw_data")
    piped.data_location = TensorProto.EXTERNAL
    for key, value in [("location", "weights.bin"), ("offset", "0"), ("length", "16")]:
        piped.external_data.add(key=key, value=value)
    files["external_data_named_pipe"] = os.path.join(pipe_dir, "model.onnx")
    onnx.save(model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x")], [vi("y")], [piped]),
              files["external_data_named_pipe"])
    inputs = dict(np.load(os.path.join(REPO, "examples", "models", "tiny_cnn_inputs.npz")))
    npz = {}
    key = list(inputs)[0]
    for name, arrays in [("npz_wrong_dtype", {key: inputs[key].astype(np.int32)}),
                         ("npz_wrong_shape", {key: np.ones((2, 7), np.float32)}),
                         ("npz_wrong_name", {"nope": inputs[key]}),
                         ("npz_empty", {})]:
        path = os.path.join(tmp, name + ".npz")
        np.savez(path, **arrays)
        npz[name] = path
    bomb = os.path.join(tmp, "npz_zip_bomb.npz")
    import zipfile
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 3, 32, 32), np.float32))
        import io
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        with z.open(key + ".npy", "w", force_zip64=True) as f:
            f.write(buf.getvalue())
            chunk = bytes(1 << 24)
            for _ in range(64):
                f.write(chunk)
    npz["npz_zip_bomb"] = bomb
    # Token ids beyond an embedding table, given at run time.
    lookup = os.path.join(tmp, "token_lookup.onnx")
    onnx.save(model([helper.make_node("Gather", ["table", "ids"], ["y"])],
                    [vi("ids", I64, (1, 4))], [vi("y", F, (1, 4, 4))],
                    inits=[const("table", np.ones((10, 4), np.float32))]), lookup)
    for name, ids in [("ids_out_of_vocabulary", 1000), ("ids_below_vocabulary", -1000)]:
        path = os.path.join(tmp, name + ".npz")
        np.savez(path, ids=np.full((1, 4), ids, np.int64))
        npz[name] = (path, lookup)
    out = os.path.join(tmp, "out.onnx")
    invocations = []
    for name, path in files.items():
        invocations += [
            (name, ["inspect", path]),
            (name, ["opt", path, "-p", "cleanup", "-o", out]),
            (name, ["run", path]),
            (name, ["check", path, path]),
            (name, ["print", path]),
        ]
    invocations += [
        ("ppocr_run", ["run", os.path.join(REPO, "..", "shared", "corpus", "ppocr_mobile_v2_cls", "model.onnx")]),
        ("calib_random_zero", ["opt", tiny, "-p", "quantize{policy=int8}", "--calib-random", "0", "-o", out]),
        ("calib_random_huge", ["opt", tiny, "-p", "quantize{policy=int8}", "--calib-random", "100000000", "-o", out]),
        ("dim_bomb", ["run", files["input_symbolic_dims"], "--dim", "N=1000000", "--dim", "M=1000000"]),
        ("rtol_nan", ["check", tiny, tiny, "--rtol", "nan"]),
        ("atol_negative", ["check", tiny, tiny, "--atol", "-1"]),
        ("cfsp_nan", ["opt", tiny, "-p", "prune{cfsp=nan}", "-o", out]),
        ("unknown_option", ["opt", tiny, "-p", "cleanup{frobnicate=1}", "-o", out]),
        ("unknown_pass", ["opt", tiny, "-p", "frobnicate", "-o", out]),
        ("unbalanced_pipeline", ["opt", tiny, "-p", "prune{ratio=0.5", "-o", out]),
        ("report_unwritable", ["opt", tiny, "-p", "cleanup", "-o", out, "--report", "/missing/r.json"]),
    ]
    for name, path in npz.items():
        path, target = path if isinstance(path, tuple) else (path, tiny)
        invocations += [(name, ["run", target, "--inputs", path]),
                        (name, ["opt", target, "-p", "quantize{policy=int8}", "--calib", path, "-o", out])]
    failures = []
    counts = {"ok": 0, "refused": 0}
    for name, args in invocations:
        if os.path.exists(out):
            os.remove(out)
        code, stderr = run([a.sculpt] + args, a.timeout)
        lines = [l for l in stderr.strip().splitlines() if l.strip()]
        last = lines[-1] if lines else ""
        problem = None
        if code == "hang":
            problem = "hang"
        elif code not in (0, 1):
            problem = f"exit {code}"
        elif "panicked" in stderr:
            problem = "panic"
        elif code == 1 and os.path.exists(out):
            problem = "wrote output despite failing"
        elif code == 1 and not any(l.startswith("error:") for l in lines):
            problem = "no error line"
        elif code == 0 and name in MUST_REFUSE and args[0] in ("opt", "run", "check"):
            problem = "accepted"
        if code == 0:
            counts["ok"] += 1
        elif code == 1:
            counts["refused"] += 1
        if a.v:
            print(f"{name:32} {' '.join(args[:1]):8} {code!s:5} {last[:150]}")
        if problem:
            failures.append((name, " ".join(args[:1]), problem, last or stderr[-300:]))
    if failures:
        print("| case | command | problem | stderr |")
        print("|---|---|---|---|")
        for f in failures:
            print("| " + " | ".join(str(x).replace("|", "\\|")[:200] for x in f) + " |")
    print(f"{len(invocations)} invocations over {len(files) + len(npz)} cases: "
          f"{counts['ok']} ran, {counts['refused']} refused with an error, {len(failures)} misbehaved")
    if not a.keep:
        shutil.rmtree(tmp)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
