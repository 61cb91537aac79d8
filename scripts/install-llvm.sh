#!/usr/bin/env bash
# Installs Debian's LLVM 22 (MLIR libraries and tools) for the MLIR back
# end (`codegen/`, `sculpt emit`), unless it is there. Exits non-zero when
# it cannot (no root, no apt).
set -euo pipefail
[ -x /usr/lib/llvm-22/bin/mlir-opt ] && [ -f /usr/lib/llvm-22/lib/libmlir_c_runner_utils.so ] && exit 0
packages="libmlir-22-dev llvm-22-dev libclang-22-dev libpolly-22-dev libzstd-dev zlib1g-dev mlir-22-tools"
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else exit 1; fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $packages
