"""kill -9 at random moments of a tiny fit (checkpoint writes included), and a resume after each that must work:
bench/kill_resume.py with 6 moments, 3 of them inside a checkpoint write (the bench runs 50)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "bench" / "kill_resume.py"


@pytest.mark.slow
def test_every_kill_moment_resumes(tmp_path):
    out = tmp_path / "kill.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--moments", "6", "--in-write-every", "2", "--seed", "1",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert data["killed"] == data["moments"] == 6  # six kills landed ...
    assert data["resumed"] == data["tries"] == len(rows)  # ... and every try, a kill or not, resumed
    in_write = [r for r in rows if r["kind"] == "in-write"]
    assert len(in_write) >= 3
    for r in in_write:  # each died half way through a checkpoint write: its temporary file is there, the
        assert r["outcome"] == "killed"  # checkpoint before it loads and the run goes on from it
        assert any(name.startswith(".checkpoint.safetensors.") for name in r["temp_files"])
    # a random moment drawn after its process ended ("exit 0", on a busy machine) is checked, resumed, drawn again
    assert all(r["outcome"] in ("killed", "exit 0") for r in rows)
    step = rows[0]["step_before"]
    for r in rows:  # nothing lost, and each resume goes on from the checkpoint the kill left
        assert r["step_before"] == step <= r["step_after_kill"] == r["resumed_from"]
        assert r["resume"] == "exit 0"
        step = r["step_after_resume"]
        assert step == r["step_after_kill"] + 2
    assert data["final_step"] == step
