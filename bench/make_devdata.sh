#!/usr/bin/env bash
# Build .devdata/ (git-ignored) for a GPU machine that has no network and no ../shared beside the
# checkout: lego_400 (all 100 train views, every 8th of the 200 test views: 25), the armadillo mesh,
# and wheels of the two packages that machine lacks (trimesh, libigl; CPython 3.12, manylinux x86_64).
# About 33 MB, small enough to travel with the working tree.
#
#   bash bench/make_devdata.sh            (needs ../shared/data and pip with network or a local index)
#
# Then on the device: FIELDFIT_DATA=$PWD/.devdata bash bench/gpu_check.sh, which installs the wheels (see its
# header for the short calls).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${FIELDFIT_DATA:-$REPO/../shared/data}"
OUT="$REPO/.devdata"
PY="${PYTHON:-python3}"
[ -f "$SRC/lego_400/transforms_train.json" ] || { echo "make_devdata: no $SRC/lego_400; set FIELDFIT_DATA" >&2; exit 2; }

mkdir -p "$OUT/lego_400/train" "$OUT/lego_400/test" "$OUT/meshes" "$OUT/wheels"
cp "$SRC/lego_400/transforms_train.json" "$OUT/lego_400/"
cp "$SRC/lego_400/train/"*.png "$OUT/lego_400/train/"
cp "$SRC/meshes/armadillo.obj" "$OUT/meshes/"
"$PY" - "$SRC/lego_400" "$OUT/lego_400" <<'EOF'
import json, shutil, sys
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((src / "transforms_test.json").read_text())
meta["frames"] = meta["frames"][::8]
for f in meta["frames"]:
    shutil.copy(src / (f["file_path"] + ".png"), out / (f["file_path"] + ".png"))
(out / "transforms_test.json").write_text(json.dumps(meta, indent=1))
print(f"lego_400: {len(meta['frames'])} test views")
EOF
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d "$OUT/wheels" trimesh==5.2.0 libigl==2.6.3
du -sh "$OUT"
