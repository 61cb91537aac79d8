#!/usr/bin/env bash
# Runs sculpt's whole test suite. Installs the Python cross-check tools
# (onnx, onnxruntime, numpy), maturin (for the Python package), the ONNX
# backend node tests and LLVM 22 (for the MLIR back end) when missing. Without LLVM 22 (no root or apt), the
# MLIR back end is left out and everything else still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import onnx, onnxruntime, numpy" 2>/dev/null ||
  python3 -m pip install --quiet onnx onnxruntime numpy
scripts/fetch-node-tests.sh
# No hand-written function over 150 lines, no import loops between files.
python3 scripts/code-shape.py
if scripts/install-llvm.sh; then
  cargo test --workspace --exclude sculpt-python --release --no-fail-fast --features sculpt/mlir "$@"
  # The emitted MLIR through IREE (llvm-cpu run vs the reference outputs,
  # cuda compile); fetches the IREE wheels into target/iree once.
  python3 scripts/iree_check.py
  # A bundle runs where only numpy and the IREE runtime are (the GPU
  # machine's way): made and run here for llvm-cpu on one model.
  bundle=$(mktemp -d)
  python3 scripts/iree_check.py --bundle "$bundle" --bundle-target llvm-cpu --compressions fp32,int8,prune ppocr_mobile_v2_cls
  python3 "$bundle/iree_check.py" --from-bundle "$bundle" --device local-task
  rm -rf "$bundle"
else
  echo "warning: LLVM 22 is not installed and could not be: skipping the MLIR back end (codegen/)" >&2
  cargo test --workspace --exclude sculpt-codegen --exclude sculpt-python --release --no-fail-fast "$@"
fi
# The Python package: the wheel maturin builds, installed into a fresh
# virtual environment, and its tests run there.
python3 -m maturin --version >/dev/null 2>&1 || python3 -m pip install --quiet maturin
rm -rf target/wheels target/pyenv
python3 -m maturin build --release --quiet -m python/Cargo.toml -o target/wheels -i python3
python3 -m venv target/pyenv
target/pyenv/bin/pip install --quiet target/wheels/sculpt-*.whl onnx onnxruntime numpy pytest
target/pyenv/bin/python -m pytest -q python/tests
