#!/usr/bin/env bash
# One-shot GPU check of fieldfit.cuda. Installs NOTHING and needs no network.
#
#   bash bench/gpu_check.sh            (from anywhere; uses $PYTHON or python)
#
# 1. Makes this checkout importable as `fieldfit` without installing: if `import fieldfit.cuda`
#    does not already resolve to this checkout, it builds a throwaway symlink tree
#    ($TMP/fieldfit/{cuda,fields,...} -> repo folders, per pyproject's package-dir) and puts it
#    on PYTHONPATH. (A plain PYTHONPATH=repo does not work: the repo folders install as
#    fieldfit.X. `pip install --no-deps --no-build-isolation -e .` would also work offline, but
#    only where setuptools>=68 is already installed, and it changes the environment.)
#    Every command runs from that temp dir, never from the repo root: there the repo's cuda/
#    folder would shadow NVIDIA's `cuda` (cuda-python) package that `import torch` probes.
# 2. Kernel tests on CUDA with the real compiler: TRITON_INTERPRET= pytest tests/cuda/test_kernels_*.py and the
#    grid-layout, raster and viewer-resolution tests, found by name under tests/ (the cpu-interpret cases skip
#    when TRITON_INTERPRET is not 1).
# 3. Kernel benchmark -> bench/results/kernels_<gpu>.json.
# 4. Hooks: bench/frame_gpu.py, bench/sdf_gpu.py, bench/gpu_profile.py and bench/radiance_gpu.py, each run only if
#    present, each stopped after GPU_CHECK_HOOK_TIMEOUT seconds (default 360), each with the options in
#    GPU_CHECK_ARGS_<name> (GPU_CHECK_ARGS_radiance_gpu='--budgets 180 --skip-fps').
# 5. A short summary table. Exit status: non-zero if any test or step failed.
# If $OUT is set (device runner), logs and JSON results are copied there.
# KERNELS_BENCH_ARGS passes options to bench/kernels_bench.py (e.g. "--ops rbf,hash").
# GPU_CHECK_SKIP=tests,bench skips those steps; GPU_CHECK_TESTS (test files, relative to the
# repo) and GPU_CHECK_HOOKS (bench script names) narrow a rerun.
# GPU_CHECK_FORCE_SHIM=1 builds the import shim even when fieldfit already resolves (to test it).
# On a device with no network and no ../shared: `bash bench/make_devdata.sh` here first (lego_400,
# armadillo, trimesh/libigl wheels -> .devdata/), carry .devdata and set FIELDFIT_DATA=$PWD/.devdata: this
# script installs the wheels (step 0) when trimesh is missing.
# A whole session's 15 minutes, as two calls on one machine (times from the H200, 2026-11-27):
#   1. GPU_CHECK_HOOKS='frame_gpu.py sdf_gpu.py' KERNELS_BENCH_ARGS='--ops rbf,dense,triplane,composite,hash,setup,terminate'
#      GPU_CHECK_TESTS='tests/cuda/test_kernels_fused.py tests/cuda/test_kernels_ray_setup.py
#      tests/cuda/test_kernels_render.py tests/cuda/test_kernels_terminate.py tests/cuda/test_kernels_triplane.py
#      tests/fields/test_grid_layout.py tests/cuda/test_kernels_rbf.py'
#      bash bench/gpu_check.sh
#      (about 6 minutes: 1-minute lego PSNR, frame rates, viewer, armadillo, kernels; the rbf tests: the backward's
#      paired products of 2026-11-28 have not run on a GPU; kernels_bench times it uncapped and at 128 registers)
#   2. GPU_CHECK_SKIP=tests,bench GPU_CHECK_HOOKS=radiance_gpu.py GPU_CHECK_ARGS_radiance_gpu='--budgets 180
#      --skip-fps' bash bench/gpu_check.sh        (about 4 minutes: the 3-minute lego PSNR)
# With a few minutes of device time, the frame-rate check alone (a 60 s lego fit, the three marchers at
# 400x400 and 800x800, the fused kernel's launch shapes, the viewer at 800x800; about 150 s on an H200):
#   GPU_CHECK_SKIP=tests,bench GPU_CHECK_HOOKS=frame_gpu.py bash bench/gpu_check.sh
# and the kernel tests and kernel benchmark of the ops below 5x (about 110 s):
#   GPU_CHECK_HOOKS=' ' GPU_CHECK_TESTS='tests/cuda/test_kernels_fused.py tests/cuda/test_kernels_ray_setup.py
#   tests/cuda/test_kernels_render.py' \
#   KERNELS_BENCH_ARGS='--ops rbf,dense,triplane,composite,setup,terminate' bash bench/gpu_check.sh
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
LOGS="${OUT:-$WORK}"
mkdir -p "$LOGS"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 2
touch "$WORK/started"

# --- 0. wheels that travelled with the data (bench/make_devdata.sh), where trimesh is missing ---------------------
# --no-deps: the wheels' own needs (numpy, scipy) are on the device, and with an index of only these wheels pip
# would find none of them and install nothing.
if [ -n "${FIELDFIT_DATA:-}" ] && compgen -G "$FIELDFIT_DATA/wheels/*.whl" >/dev/null && ! "$PY" -c "import trimesh" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --no-compile --target "$WORK/site" "$FIELDFIT_DATA"/wheels/*.whl 2>&1 | grep -v WARNING
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import trimesh" && echo "[gpu_check] installed $FIELDFIT_DATA/wheels into $WORK/site"
fi

# --- 1. import path ------------------------------------------------------------------------------
resolves_here() {
    "$PY" - "$REPO" <<'EOF' 2>/dev/null
import pathlib, sys
import fieldfit.cuda
sys.exit(0 if pathlib.Path(fieldfit.cuda.__file__).resolve().parent == (pathlib.Path(sys.argv[1]) / "cuda").resolve() else 1)
EOF
}
if [ -z "${GPU_CHECK_FORCE_SHIM:-}" ] && resolves_here; then
    echo "[gpu_check] fieldfit already resolves to $REPO"
else
    "$PY" - "$REPO" "$WORK/shim" <<'EOF' || { echo "[gpu_check] could not build the import shim"; exit 2; }
import pathlib, re, sys
repo, shim = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = (repo / "pyproject.toml").read_text()
section = text.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
mapping = dict(re.findall(r'"([\w.]+)"\s*=\s*"([^"]+)"', section))
root = shim / "fieldfit"
root.mkdir(parents=True)
for entry in (repo / mapping.pop("fieldfit")).iterdir():
    (root / entry.name).symlink_to(entry)
for pkg, folder in mapping.items():
    (root / pkg.split(".", 1)[1]).symlink_to(repo / folder)
EOF
    export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
    resolves_here || { echo "[gpu_check] fieldfit still does not import from $REPO"; exit 2; }
    echo "[gpu_check] using import shim $WORK/shim -> $REPO"
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('[gpu_check]', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
    || { echo "[gpu_check] CUDA is not available"; exit 2; }

# --- 2. kernel tests on CUDA -----------------------------------------------------------------------
# One process per file: Triton decides interpreter-or-compiler when a kernel is first defined, so a
# test that imports triton under TRITON_INTERPRET=1 (dispatch tests) must not share a process with
# the CUDA cases.
TESTS_RC=0
: > "$LOGS/gpu_check_tests.log"
# The default list by file name, wherever under tests/ the files live.
DEFAULT_TESTS="$(cd "$REPO" && find tests -name 'test_kernels_*.py' -o -name test_grid_layout.py \
    -o -name test_render_raster.py -o -name test_viewer_resolution.py | sort)"
# shellcheck disable=SC2086  # the list is split and globbed in the repo on purpose
for f in $(cd "$REPO" && echo ${GPU_CHECK_TESTS:-$DEFAULT_TESTS}); do
    f="$REPO/$f"
    [[ ",${GPU_CHECK_SKIP:-}," == *",tests,"* ]] && break
    TRITON_INTERPRET= "$PY" -m pytest -q -rf --tb=short -p no:cacheprovider --rootdir "$REPO" "$f" 2>&1 | tee -a "$LOGS/gpu_check_tests.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && TESTS_RC=$rc
done

# --- 3. kernel benchmark ---------------------------------------------------------------------------
# shellcheck disable=SC2086  # KERNELS_BENCH_ARGS (e.g. "--ops rbf,hash") is split on purpose
BENCH_RC=0
if [[ ",${GPU_CHECK_SKIP:-}," != *",bench,"* ]]; then
    TRITON_INTERPRET= "$PY" "$REPO/bench/kernels_bench.py" ${KERNELS_BENCH_ARGS:-} 2>&1 | tee "$LOGS/gpu_check_bench.log"
    BENCH_RC=${PIPESTATUS[0]}
fi

# --- 4. hooks for the other GPU benchmarks (added by their owners) -----------------------------------
HOOKS_RC=0
HOOK_LINES=""
for hook in ${GPU_CHECK_HOOKS:-frame_gpu.py sdf_gpu.py gpu_profile.py radiance_gpu.py}; do
    if [ -f "$REPO/bench/$hook" ]; then
        args_var="GPU_CHECK_ARGS_${hook%.py}"  # e.g. GPU_CHECK_ARGS_radiance_gpu='--budgets 180 --skip-fps'
        # shellcheck disable=SC2086  # the timeout is one word; the hook's options are split on purpose
        TRITON_INTERPRET= timeout ${GPU_CHECK_HOOK_TIMEOUT:-360} "$PY" "$REPO/bench/$hook" ${!args_var:-} 2>&1 \
            | tee "$LOGS/gpu_check_${hook%.py}.log"
        rc=${PIPESTATUS[0]}
        [ "$rc" -ne 0 ] && HOOKS_RC=$rc
        HOOK_LINES+="bench/$hook: exit $rc"$'\n'
    else
        HOOK_LINES+="bench/$hook: not present, skipped"$'\n'
    fi
done

# Only this run's JSON files (the device runner brings back a limited number of files).
[ -n "${OUT:-}" ] && find "$REPO/bench/results" -name '*.json' -newer "$WORK/started" -exec cp {} "$OUT"/ \; 2>/dev/null || true

# --- 5. summary ------------------------------------------------------------------------------------
echo
echo "=================================== gpu_check summary ==================================="
echo "kernel tests: $(grep -E "passed|failed" "$LOGS/gpu_check_tests.log" | tr "\n" ";")  (exit $TESTS_RC)"
BENCH_JSON="$(sed -n 's/^# wrote //p' "$LOGS/gpu_check_bench.log" | tail -n 1)"
"$PY" - "$BENCH_JSON" <<'EOF'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
if not sys.argv[1] or not path.is_file():
    sys.exit("kernel benchmark: no JSON written (see gpu_check_bench.log)")
data = json.loads(path.read_text())
print(f"benchmark {path}: {data['machine'].get('device_name')}, torch {data['machine']['torch']}")
print(f"{'op':<44} {'pass':<8} {'ref ms':>9} {'kernel ms':>10} {'busy ms':>8} {'speedup':>8} {'fwd err':>8}")
nan = float("nan")
for r in data["results"]:
    print(f"{r['op'][:44]:<44} {r['pass_']:<8} {r['reference_ms']:9.3f} {r.get('kernel_ms', nan):10.3f} "
          f"{r.get('kernel_busy_ms') or nan:8.3f} {r.get('speedup', nan):8.2f} {r.get('fwd_max_abs_err') or 0:8.1e}")
for key in ("rbf_forward_chosen", "dense_backward_chosen", "triplane_backward_chosen"):
    if data.get(key):
        print(f"{key}: {data[key]}")
EOF
printf "%s" "$HOOK_LINES"
echo "exit codes: tests $TESTS_RC, kernel bench $BENCH_RC, hooks $HOOKS_RC"
[ "$TESTS_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ] && [ "$HOOKS_RC" -eq 0 ]
