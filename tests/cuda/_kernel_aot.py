"""Compile every fieldfit.cuda Triton kernel for sm_90 without a GPU (run as a script).

The interpreter runs kernels as Python and accepts code the real compiler rejects (e.g. a name
re-bound inside a loop with another type), so CPU CI also lowers each kernel to a cubin with the
ptxas bundled in the triton wheel. Prints one line per kernel; exit 1 if any failed, 3 if this
triton cannot compile for CUDA here (no bundled ptxas).
Must run WITHOUT TRITON_INTERPRET (kernels defined under it are interpreter objects).

Each line also gives what the cubin asks of an SM (read with the wheel's cuobjdump): registers per
thread, stack bytes per thread (register spills and local arrays), shared memory per program, and how
many programs (and warps) of it fit on one sm_90 SM at once. A GPU hides memory latency with resident
warps, so this is the CPU's view of a kernel's occupancy; it is not a timing.

    python tests/_kernel_aot.py [--json PATH]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

assert os.environ.get("TRITON_INTERPRET", "") in ("", "0"), "unset TRITON_INTERPRET"

import triton  # noqa: E402 - after the TRITON_INTERPRET check
from triton.backends.compiler import GPUTarget  # noqa: E402 - after the TRITON_INTERPRET check
from triton.compiler import ASTSource  # noqa: E402 - after the TRITON_INTERPRET check

from fieldfit.cuda import _composite_triton as C  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _fused_triton as FU  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _grid_triton as G  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _raster_triton as RA  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _ray_setup_triton as RS  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _rbf_triton as R  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _terminate_triton as TE  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _traverse_triton as T  # noqa: E402 - after the TRITON_INTERPRET check
from fieldfit.cuda import _triplane_triton as TP  # noqa: E402 - after the TRITON_INTERPRET check


def _sig(fn, types, consts):
    """Signature dict from the kernel's parameter names: pointers get `types`, ints i32."""
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        else:
            sig[name] = types.get(name, types["*"] if name.endswith("_ptr") else "i32")
    return sig


def specs():
    out = []
    for dt in ("fp32", "fp64"):
        p = {"*": "*" + dt}
        kern = 3 if dt == "fp64" else 0
        rbf = dict(D=7, KERNEL=kern)
        out += [
            (f"rbf fwd {dt}", R._rbf_fwd_kernel, p, dict(rbf, BN=R.BN_FWD, BK=R.BK_FWD), R.WARPS_FWD, True),
        ]
        for dim in (2, 3):
            fwd = G._dense_launch(forward=True)
            bwd = G._dense_launch(need_x=True)
            out += [
                (f"dense fwd {dim}d {dt}", G._dense_fwd_kernel, p, dict(DIM=dim, BN=fwd["BN"], BF=G.DENSE_BF),
                 fwd["num_warps"], True),
                (f"dense bwd {dim}d {dt}", G._dense_bwd_kernel, p,
                 dict(NEED_G=True, NEED_X=True, DIM=dim, BN=bwd["BN"], BF=G.DENSE_BF), bwd["num_warps"], True),
                (f"dense bwd per point {dim}d {dt}", G._dense_bwd_point_kernel, p,
                 dict(NEED_G=True, NEED_X=True, DIM=dim, BN=G.DENSE_BN_POINT), G.DENSE_WARPS_POINT, True),
            ]
        tp3 = dict(p, meta_ptr="*i64")  # tri-plane: planes (DIM 2) and volumes (DIM 3) of one flat buffer
        for dim, cl in ((2, False), (3, False), (2, True), (3, True)):  # channels-first / -last buffers
            fwd = G._dense_launch(forward=True)
            bwd = G._dense_launch(need_x=True)
            lay = "cl" if cl else "cf"
            out += [
                (f"triplane fwd {dim}d {lay} {dt}", TP._fwd_kernel, tp3, dict(DIM=dim, CL=cl, BN=fwd["BN"], BF=4),
                 fwd["num_warps"], True),
                (f"triplane bwd {dim}d {lay} {dt}", TP._bwd_kernel, tp3,
                 dict(NEED_G=True, NEED_X=True, DIM=dim, CL=cl, BN=bwd["BN"], BF=4), bwd["num_warps"], True),
                (f"triplane bwd per point {dim}d {lay} {dt}", TP._bwd_point_kernel, tp3,
                 dict(NEED_G=True, NEED_X=True, DIM=dim, CL=cl, BN=TP.BN_POINT), TP.WARPS_POINT, True),
            ]
        hp = dict(p, res_ptr="*i32", hashed_ptr="*i32")
        for dim, pow2 in ((3, True), (3, False), (1, True)):
            out += [
                (f"hash fwd {dim}d pow2={pow2} {dt}", G._hash_fwd_kernel, hp,
                 dict(DIM=dim, POW2=pow2, BN=G._hash_bn(2), BF=2), 4, True),
                (f"hash bwd {dim}d pow2={pow2} {dt}", G._hash_bwd_kernel, hp,
                 dict(NEED_T=True, NEED_X=True, DIM=dim, POW2=pow2, BN=G._hash_bn(2, True), BF=2, MERGE=False), 4,
                 True),
            ]
        out.append((f"hash bwd 3d table only, runs merged {dt}", G._hash_bwd_kernel, hp,  # training: no dx
                    dict(NEED_T=True, NEED_X=False, DIM=3, POW2=True, BN=G._hash_bn(2), BF=2, MERGE=True), 4, True))
        cp = dict(p, offs_ptr="*i64")
        out += [
            (f"composite fwd {dt}", C._composite_fwd_kernel, cp, dict(MAX_TAU=64.0, BS=C.BS), 2, True),
            (f"composite bwd {dt}", C._composite_bwd_kernel, cp,
             dict(NEED_SIG=True, NEED_T=True, HAS_GW=True, HAS_GT=True, MAX_TAU=64.0, BS=C.BS), 2, True),
            (f"composite bwd weights only {dt}", C._composite_bwd_kernel, cp,  # training: transmittance unused
             dict(NEED_SIG=True, NEED_T=False, HAS_GW=True, HAS_GT=False, MAX_TAU=64.0, BS=C.BS), 2, True),
        ]
        tp = dict(p, bin_ptr="*u8", count_ptr="*i32", offs_ptr="*i64", ri_ptr="*i64")
        for jit in (False, True):
            out.append((f"traverse jitter={jit} {dt}", T._traverse_kernel, tp, dict(HAS_JITTER=jit, BS=T.BS), 2, False))
    # the tensor-core forward is float32 only (tf32x3 products), 16 <= D <= 64
    for d in (16, 32, 64):
        out.append((f"rbf fwd dot D={d} fp32", R._rbf_fwd_dot_kernel, {"*": "*fp32"},
                    dict(D=d, DP=d, KERNEL=0, BN=R.BN_DOT, BK=R.BK_DOT, PREC="tf32x3"), R.WARPS_DOT, True))
    # the fused rbf backward is float32 only (tf32x3 products); D = 7 and 32, K = 13 and 64
    for d, dp, bk in ((7, 16, 16), (32, 32, 64)):
        consts = dict(D=d, DP=dp, KERNEL=0, NEED_X=True, NEED_P=True, BN=R.BN_BWD, BK=bk, PREC="tf32x3")
        out += [
            (f"rbf bwd D={d} fp32", R._rbf_bwd_kernel, {"*": "*fp32"}, consts, R.WARPS_BWD, True,
             dict(num_stages=R.STAGES_BWD)),
            (f"rbf param grads D={d} fp32", R._rbf_param_kernel, {"*": "*fp32"},
             dict(D=d, DP=dp, NEED_C=True, NEED_LP=True, BK=bk), 4, True),
        ]
    consts = dict(D=32, DP=32, KERNEL=0, NEED_X=True, NEED_P=True, BN=R.BN_BWD, BK=64, PREC="tf32x3")
    out.append(("rbf bwd D=32 fp32, at most 128 registers", R._rbf_bwd_kernel, {"*": "*fp32"}, consts, R.WARPS_BWD,
                True, dict(num_stages=R.STAGES_BWD, maxnreg=128)))  # kernels_bench's register-capped backward
    out.append(("rbf bwd D=32 fp32, tiles of 32 units", R._rbf_bwd_kernel, {"*": "*fp32"}, dict(consts, BK=32),
                R.WARPS_BWD, True, dict(num_stages=R.STAGES_BWD)))  # kernels_bench's half-width unit tiles
    # the depth-peeling rasteriser (float32 screen coordinates, int32 face lists, int64 face ids)
    rp = {"*": "*fp32", "fid_ptr": "*i32", "offs_ptr": "*i64", "prev_f_ptr": "*i64", "out_f_ptr": "*i64"}
    for first in (True, False):
        out.append((f"raster peel first={first} fp32", RA._peel_kernel, rp, dict(FIRST=first, TILE=RA.TILE), 4, True))
    # the fused frame kernel is float32 only; the GPU default field: 16 levels x 2 features, 32 units, SH 3
    # (with the decoder's tail, the exp activation and a projection to 16, the defaults, and without them). Levels
    # unrolled (not the default, UNROLL_LEVELS) are left out: that variant alone takes 80 s to compile on 2 CPU cores.
    fp = {"*": "*fp32", "bin_ptr": "*u8", "res_ptr": "*i32", "hashed_ptr": "*i32", "mp_ptr": "*i32", "mv_ptr": "*i32",
          "ev_ptr": "*i32", "next_ptr": "*i32", "dscale": "fp32", "dshift": "fp32", "exp_cap": "fp32",
          "early_stop": "fp32", "alpha_thre": "fp32", "stop_tau": "fp32"}
    base = dict(B=16, BB=16, KERNEL=0, MAX_TAU=64.0, REFILL=FU.REFILL, BLOCK=FU.BLOCK, BK=32, HAS_TAIL=True, EXP=True,
                HAS_PROJ=False, BJ=16)
    for pow2, tail, proj in ((True, True, True), (True, True, False), (False, True, False), (True, False, False)):
        consts = dict(base, ENC=0, L=16, F=2, BF=2, POW2=pow2, UNROLL=False, HAS_TAIL=tail, EXP=tail, HAS_PROJ=proj)
        out.append((f"fused frame hash pow2={pow2} tail={tail} projection={proj} fp32", FU._fused_kernel, fp, consts,
                    FU.WARPS, False, dict(maxnreg=FU.MAX_REGISTERS)))
    tri = dict(fp, res_ptr="*i64", hashed_ptr="*i64", mp_ptr="*i64", mv_ptr="*i64")  # entry tables in their place
    for enc, lay in ((1, "channels-first"), (2, "channels-last")):
        consts = dict(base, ENC=enc, L=0, F=4, BF=4, POW2=False, UNROLL=False)
        out.append((f"fused frame triplane {lay} fp32", FU._fused_kernel, tri, consts, FU.WARPS, False,
                    dict(maxnreg=FU.MAX_REGISTERS)))
    # a fused frame's ray setup (float32 only): spans alone (the rounds marcher) and with SH degree 3
    rs = {"*": "*fp32", "near": "fp32", "far": "fp32"}
    for degree in (-1, 3):
        out.append((f"ray setup sh={degree} fp32", RS._ray_setup_kernel, rs, dict(DEGREE=degree, BLOCK=RS.BLOCK), 4,
                    False))
    out.append(("sh bases degree 3 fp32", RS._sh_kernel, {"*": "*fp32"}, dict(DEGREE=3, BLOCK=RS.BLOCK), 4, False))
    out.append(("sample positions fp32", RS._positions_kernel, {"*": "*fp32", "ri_ptr": "*i64"}, dict(BLOCK=RS.BLOCK),
                4, False))
    # one round of early termination: float64 in the march (float32 allowed), with and without the alpha test
    for dt in ("fp64", "fp32"):
        for alpha in (True, False):
            out.append((f"terminate round alpha={alpha} {dt}", TE._terminate_round_kernel,
                        {"*": "*" + dt, "offs_ptr": "*i64", "idx_ptr": "*i64", "keep_ptr": "*u8"},
                        dict(HAS_ALPHA=alpha, BS=TE.BS), 2, False))
    return out


# An sm_90 SM (H100, H200): 2048 threads, 65536 registers (given to warps in units of 256), 228 KiB of
# shared memory of which the driver keeps 1 KiB per program, at most 32 programs.
SM90 = dict(threads=2048, registers=65536, register_unit=256, shared=233472, shared_reserved=1024, programs=32)


def resident_programs(registers: int, shared: int, warps: int, sm: dict = SM90) -> int:
    """Programs of a kernel that fit on one SM at once, limited by threads, registers and shared memory."""
    unit = sm["register_unit"]
    per_warp = -(-registers * 32 // unit) * unit
    return min(sm["programs"], sm["threads"] // (32 * warps), sm["registers"] // (per_warp * warps),
               sm["shared"] // (shared + sm["shared_reserved"]))


def _cuobjdump():
    try:
        from triton import knobs  # noqa: PLC0415 - triton >= 3.4 names its bundled CUDA tools here

        path = knobs.nvidia.cuobjdump.path
    except Exception:  # noqa: BLE001 - older triton, or no bundled tool
        path = None
    return path if path and os.path.exists(path) else shutil.which("cuobjdump")


def resources(kernel, warps: int, tool) -> dict | None:
    """Registers, stack bytes (spills) and shared bytes of a compiled kernel, and its residency on an sm_90 SM."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    regs, stack = re.search(r"REG:(\d+)", text), re.search(r"STACK:(\d+)", text)
    if regs is None or stack is None:
        return None
    shared = int(kernel.metadata.shared)
    programs = resident_programs(int(regs.group(1)), shared, warps)
    return dict(registers=int(regs.group(1)), stack_bytes=int(stack.group(1)), shared_bytes=shared,
                programs_per_sm=programs, warps_per_sm=programs * warps)


def _describe(row: dict | None) -> str:
    if row is None:
        return ""
    return (f" ({row['registers']} registers, {row['stack_bytes']} stack bytes, {row['shared_bytes']} shared bytes:"
            f" {row['programs_per_sm']} per SM, {row['warps_per_sm']} warps)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", dest="out_path", help="also write the kernels' resources to this JSON file")
    out_path = ap.parse_args(argv).out_path
    target = GPUTarget("cuda", 90, 32)
    tool = _cuobjdump()
    rows = []
    failed = 0
    names = [spec[0] for spec in specs()]
    if len(set(names)) != len(names):  # a repeated name means a spec list built wrongly
        print(f"FAIL spec list: repeated names {sorted({n for n in names if names.count(n) > 1})}")
        return 1
    for name, fn, types, consts, warps, fusion, *more in specs():
        try:
            src = ASTSource(fn, _sig(fn, types, consts), consts)
            options = dict(num_warps=warps, enable_fp_fusion=fusion, **(more[0] if more else {}))
            kernel = triton.compile(src, target=target, options=options)
            row = resources(kernel, warps, tool) if tool else None
            rows.append(dict(kernel=name, num_warps=warps, **(row or {})))
            print(f"ok   {name}{_describe(row)}")
        except Exception as exc:  # noqa: BLE001 - report every kernel, then fail
            text = str(exc)
            if "ptxas" in text and ("not found" in text or "No such file" in text):
                print(f"cannot compile for CUDA here: {text[:300]}")
                return 3
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {text[:2000]}")
    if out_path:
        note = ("per kernel, the cubin for sm_90 with the wrappers' launch settings: registers and stack bytes per "
                "thread, shared bytes per program, programs and warps resident per SM (tests/_kernel_aot.py)")
        Path(out_path).write_text(json.dumps(dict(triton=triton.__version__, target="sm_90", sm=SM90, note=note,
                                                  kernels=rows), indent=1))
        print(f"wrote {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
