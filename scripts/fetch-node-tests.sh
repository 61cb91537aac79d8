#!/usr/bin/env bash
# Fetches the ONNX backend node test cases (onnx 1.22.0 is the last wheel
# that ships them) into target/onnx-node-tests, once.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/onnx-node-tests
[ -d "$dest/node" ] && exit 0
tmp=$(mktemp -d)
python3 -m pip download --quiet --no-deps --only-binary=:all: onnx==1.22.0 -d "$tmp"
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/onnx-1.22.0*.whl")[0]
prefix = "onnx/backend/test/data/node/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = sys.argv[2] + "/node/" + name[len(prefix):]
            import os
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(z.read(name))
PY
rm -rf "$tmp"
