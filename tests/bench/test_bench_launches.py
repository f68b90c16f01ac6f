"""bench/launches.py: the GPU code path's launches and host syncs, counted on the CPU (a tiny run)."""

import json
import subprocess
import sys

import pytest

import fieldfit
from conftest import REPO

SCRIPT = REPO / "bench" / "launches.py"


@pytest.mark.slow
def test_counts_frames_and_a_step(tmp_path):
    # a small field (one tri-plane level, 8 units): the interpreter runs every kernel of a GPU frame and step.
    # The interpreter's time grows with the rays and the steps along them: a coarse march (one unit: about 3 steps
    # through the box, every cell occupied as the grid is still full) and 16 rays per training step (batch).
    fieldfit.fit("blocks", steps=3, out=tmp_path / "run", device="cpu", resolution=16, levels=1, base_res=8,
                 max_res=8, units=8, step=1.0, grid_res=16, batch=16)
    out = tmp_path / "launches.json"
    # its own process: the script sets TRITON_INTERPRET before triton is imported, and patches classes
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "run"), "--size", "4", "--modes", "packed,fused",
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads(out.read_text())
    frames = data["frames"]
    assert set(frames) == {"packed", "fused"}  # blocks trains an RBF tri-plane: fusable
    for mode, row in frames.items():
        assert row["aten_launches"] > 0, (mode, row)
        assert row["triton_launches"] >= 1, (mode, row)
        assert row["field_evaluations"] > 0, (mode, row)
    # the fused marcher: the rays' setup and the frame, syncs only for the step count; the others launch per
    # round / pass
    assert frames["fused"]["triton"] == {"_ray_setup_kernel": 1, "_fused_kernel": 1}
    assert frames["fused"]["host_syncs"] <= 2
    assert frames["packed"]["host_syncs"] > frames["fused"]["host_syncs"]
    assert frames["packed"]["aten_launches"] > 2 * frames["fused"]["aten_launches"]
    assert "_rbf_bwd_kernel" in data["step"]["triton"]
    assert data["step"]["host_syncs"] >= 1
    # warm frames make no tensor from host data (on a GPU: a copy and a sync each); a step makes one, its
    # pixel indices (drawn by numpy)
    assert all(row["host_tensors"] == 0 for row in frames.values()), frames
    assert data["step"]["host_tensors"] <= 1
