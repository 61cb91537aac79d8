#!/usr/bin/env bash
# Runs sculpt's whole test suite. Installs the Python cross-check tools
# (onnx, onnxruntime, numpy) and the ONNX backend node tests when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import onnx, onnxruntime, numpy" 2>/dev/null ||
  python3 -m pip install --quiet onnx onnxruntime numpy
scripts/fetch-node-tests.sh
cargo test --workspace --release --no-fail-fast "$@"
