"""bench/fused_lanes.py: the fused kernel's schedules replayed from a tiny run's marches."""

import json
import subprocess
import sys

from conftest import REPO
from fieldfit.cli import main as cli

SCRIPT = REPO / "bench" / "fused_lanes.py"


def test_replays_every_schedule(tmp_path):
    assert cli(["blocks", "--steps", "3", "--resolution", "16", "--levels", "1", "--base-res", "8", "--max-res", "8",
                "--units", "8", "--out", str(tmp_path / "run")]) == 0
    out = tmp_path / "lanes.json"
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "run"), "--size", "24", "--programs", "3",
                          "--block", "8", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["rays"] == 24 * 24
    assert data["field_evaluations"] > 0
    rows = data["schedules"]
    assert len(rows) == 5  # fixed blocks in two orders, refill after 1, 2 and 4 of 8 lanes
    for name, row in rows.items():
        # every schedule evaluates each ray's samples once, in passes of 8 lanes
        assert row["field_evaluations"] == data["field_evaluations"], name
        assert row["block_passes"] * 8 >= row["field_evaluations"], name
        assert 0 < row["lane_use"] <= 1, name
        assert row["rounds"] * 3 >= row["block_passes"] >= row["rounds"], name
    # refilling each lane at once never makes more passes than waiting for the whole block
    assert rows["image order, refill after 1 lanes"]["block_passes"] <= rows["image order, fixed blocks (no refill)"][
        "block_passes"]
