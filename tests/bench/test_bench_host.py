"""bench/host_overhead.py: each op's GPU code path, its Triton launches stubbed out, timed on the CPU (few calls)."""

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "bench" / "host_overhead.py"

# Triton launches per call: a change that adds one to an op shows here (on a GPU each costs the host its launcher)
LAUNCHES = {"dense_grid 2D F=8": (1, 2), "dense_grid 3D F=8 channels-last": (1, 2), "hash_grid L=16 F=2": (1, 2),
            "triplane_grid 12 planes F=4 channels-last": (1, 2), "rbf_layer D=32 K=64": (1, 3),
            "composite_packed": (1, 2), "sh_bases degree 3": (1,), "sample_positions": (1,), "terminate_round": (1,)}


def test_every_op_takes_its_kernel_path(tmp_path):
    out = tmp_path / "host.json"
    # its own process: the script sets TRITON_INTERPRET before triton is imported and replaces the kernels
    res = subprocess.run([sys.executable, str(SCRIPT), "--reps", "5", "--out", str(out)], cwd=SCRIPT.parent,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = {r["op"]: r for r in json.loads(out.read_text())["rows"]}
    floor = rows.pop("floor: autograd Function, allocations only")
    assert floor["fwd_us"] > 0
    assert floor["fwd+bwd_us"] > 0
    assert set(rows) == set(LAUNCHES)
    for op, row in rows.items():
        passes = ("fwd", "fwd+bwd")[:len(LAUNCHES[op])]
        # launches counted: the kernel path ran (the reference launches nothing), and no more kernels than before
        assert tuple(row[f"{p}_launches"] for p in passes) == LAUNCHES[op], (op, row)
        assert all(row[f"{p}_us"] > 0 and row[f"{p}_reference_us"] > 0 for p in passes), (op, row)
