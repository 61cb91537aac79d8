#!/usr/bin/env bash
# Fuzzes sculpt's input readers on stable Rust: each target (onnx, text,
# pipeline, npz) for SECONDS (default 60) from the repo's and the corpus's
# small files, printing one JSON line per target (executions, crashes).
# Crash inputs land in fuzz/crashes/; once fixed, copy them into
# fuzz/regressions/TARGET/ so that `cargo test -p sculpt-fuzz` replays them.
# usage: scripts/fuzz.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
seed="${2:-1}"
corpus="${SCULPT_CORPUS:-../shared/corpus}"
cargo build --release -q -p sculpt-fuzz
status=0
for target in onnx text pipeline npz; do
  seeds=(examples tests/models passes/tests/cases fuzz/regressions/"$target")
  case "$target" in
    # Models whose cleanup folds large weights would make runs slow.
    onnx) seeds+=("$corpus/ppocr_mobile_v2_cls" "$corpus/light_squeezenet") ;;
    npz) seeds+=("$corpus/minilm_l6_v2/inputs.npz" "$corpus/ppocr_mobile_v2_cls/inputs.npz") ;;
  esac
  existing=()
  for s in "${seeds[@]}"; do [ -e "$s" ] && existing+=("$s"); done
  target/release/sculpt-fuzz "$target" --seconds "$seconds" --seed "$seed" --crashes fuzz/crashes "${existing[@]}" || status=1
done
exit $status
