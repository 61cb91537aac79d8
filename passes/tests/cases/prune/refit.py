#!/usr/bin/env python3
"""Writes refit.sculpt (two calibrated prune cases) with its calibration
data and the expected refitted weights, computed here independently with
numpy: least squares (with intercept) of the original outputs on the kept
channels' activations, as `prune{reconstruct=ls damp=0}` must give.

usage: python3 refit.py   (from any folder; writes beside itself)
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(11)


def fmt(a):
    return "[" + ", ".join(repr(float(v)) for v in np.asarray(a, np.float32).ravel()) + "]"


def init(name, a):
    dims = ",".join(str(d) for d in a.shape)
    return f"  init %{name} = f32[{dims}] {fmt(a)}"


def lstsq_with_intercept(features, targets):
    design = np.hstack([features, np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
    return coef[:-1], coef[-1]


def relu(a):
    return np.maximum(a, 0)


# --- FFN: x[N,4] -> MatMul(w1)+b1 -> Relu -> MatMul(w2)+b2 ---
x = rng.standard_normal((64, 4)).astype(np.float32)
w1 = rng.standard_normal((4, 6)).astype(np.float32)
b1 = (0.3 * rng.standard_normal(6)).astype(np.float32)
w2 = rng.standard_normal((6, 3)).astype(np.float32)
b2 = (0.1 * rng.standard_normal(3)).astype(np.float32)
for weak in (1, 4):  # the two neurons magnitude pruning takes
    w1[:, weak] *= 0.1
    b1[weak] *= 0.1
    w2[weak] *= 0.1
np.savez(os.path.join(HERE, "refit_ffn.npz"), x=x)
h = relu(x.astype(np.float64) @ w1 + b1)
y = h @ w2 + b2
keep = [0, 2, 3, 5]
w2_new, b2_new = lstsq_with_intercept(h[:, keep], y)

# --- conv chain: x[N,2,5,5] -> Conv3x3(w3)+b3 -> Relu -> Conv3x3(w4)+b4 ---
xc = rng.standard_normal((16, 2, 5, 5)).astype(np.float32)
w3 = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
b3 = (0.3 * rng.standard_normal(4)).astype(np.float32)
w4 = (0.3 * rng.standard_normal((3, 4, 3, 3))).astype(np.float32)
b4 = (0.1 * rng.standard_normal(3)).astype(np.float32)
w3[2] *= 0.05  # the channel magnitude pruning takes
b3[2] *= 0.05
w4[:, 2] *= 0.05
np.savez(os.path.join(HERE, "refit_conv.npz"), x=xc)


def patches(a):
    """im2col of [N,C,5,5], 3x3 windows, padding 1: rows (n, y, x), entries (c, ky, kx)."""
    n, c, hh, ww = a.shape
    p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
    rows = []
    for i in range(n):
        for yy in range(hh):
            for xx in range(ww):
                rows.append(p[i, :, yy:yy + 3, xx:xx + 3].reshape(-1))
    return np.array(rows)


def conv(a, w, b):
    out = patches(a) @ w.reshape(w.shape[0], -1).T.astype(np.float64) + b
    n = a.shape[0]
    return out.reshape(n, a.shape[2], a.shape[3], -1).transpose(0, 3, 1, 2)


hc = relu(conv(xc.astype(np.float64), w3, b3))
yc = conv(hc, w4, b4)
targets = yc.transpose(0, 2, 3, 1).reshape(-1, 3)
kept = [0, 1, 3]
w4_cols, b4_new = lstsq_with_intercept(patches(hc[:, kept]), targets)
w4_new = w4_cols.T.reshape(3, len(kept), 3, 3)

case = f"""// RUN: prune{{criterion=magnitude ratio=0.25 reconstruct=ls damp=0 guard=false}}
// Written by refit.py (the expected values are numpy's least squares).
// TOLERANCE: 1e-4
/// An FFN loses its two weakest hidden neurons; the second matrix and its
/// bias are refitted on the calibration data: numpy's least-squares
/// solution on the four kept neurons' activations.
// CALIB: refit_ffn.npz
// EXPECT: %w2 = {fmt(w2_new)}
// EXPECT: %b2 = {fmt(b2_new)}
ir_version 8
opset "" 17
graph "ffn" (%x: f32[N,4]) -> (%y) {{
{init("w1", w1)}
{init("b1", b1)}
{init("w2", w2)}
{init("b2", b2)}
  %h0 = MatMul(%x, %w1) @"fc1"
  %h1 = Add(%h0, %b1)
  %h = Relu(%h1)
  %y0 = MatMul(%h, %w2) @"fc2"
  %y = Add(%y0, %b2)
}}
// -----
/// A convolution loses its weakest channel; the next 3x3 convolution is
/// refitted on im2col patches (zero padding included) of the kept
/// channels: numpy's least-squares solution.
// CALIB: refit_conv.npz
// EXPECT: %w4 = {fmt(w4_new)}
// EXPECT: %b4 = {fmt(b4_new)}
ir_version 8
opset "" 17
graph "convs" (%x: f32[N,2,5,5]) -> (%y) {{
{init("w3", w3)}
{init("b3", b3)}
{init("w4", w4)}
{init("b4", b4)}
  %c = Conv(%x, %w3, %b3) {{pads=[1, 1, 1, 1]}} @"conv1"
  %r = Relu(%c)
  %y = Conv(%r, %w4, %b4) {{pads=[1, 1, 1, 1]}} @"conv2"
}}
"""
open(os.path.join(HERE, "refit.sculpt"), "w").write(case)
