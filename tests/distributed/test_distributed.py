"""Data-parallel fits (fieldfit.dist) with 2 ranks on the CPU (gloo), started by torchrun as users start them.

Every launch has a time-out, so a rank left waiting fails the test instead of hanging it. The checks that need
ranks inside one program (gradients, the occupancy grid, the agreed loop) run in ``_ranks.py``.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_main

HERE = Path(__file__).parent
LAUNCH_TIMEOUT = 180
SMALL = ("--levels", "3", "--max-res", "64")  # a small image field: the launches, not the fits, are tested


def torchrun(*args, tmp: Path, nproc: int = 2, timeout: float = LAUNCH_TIMEOUT, **popen):
    """``torchrun --nproc_per_node NPROC ARGS`` with TMPDIR=tmp (mirrors of rank 1 land there)."""
    env = dict(os.environ, TMPDIR=str(tmp), OMP_NUM_THREADS="1", FIELDFIT_NO_TCMALLOC="1", PYTHONUNBUFFERED="1",
               FIELDFIT_DIST_TIMEOUT="60")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, env=env, text=True, **popen)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def fieldfit(*args, tmp: Path, nproc: int = 2, **kw):
    return torchrun("-m", "fieldfit", *args, "--device", "cpu", tmp=tmp, nproc=nproc, **kw)


def losses(run: Path) -> list[str]:
    with open(run / "metrics.csv") as f:
        return [row["loss"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    p = torchrun(HERE / "_ranks.py", out, tmp=out)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)], out


def test_gradients_of_two_halves_average_to_the_full_batch(ranks):
    results, _ = ranks
    for r in results:
        assert r["world"] == 2
        assert r["sdf"] < 1e-10  # rbf sdf, float64
        assert r["radiance"] < 1e-10  # rbf radiance through the marcher
        assert r["rows"] < 1e-12  # dnmp's row-sparse Adam


def test_occupancy_grid_is_rank_0s_on_every_rank(ranks):
    results, _ = ranks
    assert results[0]["grid"] == results[1]["grid"]


def test_loop_stops_and_rolls_back_together(ranks):
    results, out = ranks
    a, b = results[0]["loop"], results[1]["loop"]
    assert a["steps"] == b["steps"] > 5  # the slower rank's clock decides for both
    assert a["losses"] == b["losses"]
    assert "another rank's loss not finite; rolled back" in (out / "run" / "log").read_text()
    assert b["mirror_gone"]


def test_same_seed_same_curve(ranks):
    results, _ = ranks
    for r in results:
        first, second = r["curves"]
        assert len(first) > 5
        assert first == second
    assert results[0]["curves"][0] != results[1]["curves"][0]  # each rank trained on its own batches


def test_views_are_dealt_and_collected_in_order(ranks):
    results, _ = ranks
    for r in results:
        assert r["split"] == [[k, k % 2] for k in range(5)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """rings fitted with 2 ranks, then resumed on 1 process and again on 2."""
    tmp = tmp_path_factory.mktemp("fits")
    a = tmp / "a"
    p = fieldfit("rings", "--steps", 20, *SMALL, "--out", a, tmp=tmp)
    assert p.returncode == 0, p.stderr[-2000:]
    first = losses(a)
    one = run_main("--resume", a, "--steps", 30, "--device", "cpu")  # one process: this one
    assert one.returncode == 0, one.stderr[-2000:]
    two = fieldfit("--resume", a, "--steps", 40, tmp=tmp)
    assert two.returncode == 0, two.stderr[-2000:]
    return tmp, a, first, two


def test_only_rank_0_writes(fitted):
    tmp, a, first, two = fitted
    assert len(first) > 1
    assert not list(tmp.glob("fieldfit-mirror-*"))  # rank 1's scratch runs are gone
    assert (a / "reconstruction.png").is_file()
    assert two.stdout.count("results:") == 1  # one rank reports


def test_resume_across_world_sizes(fitted):
    _, a, _, _ = fitted
    log = (a / "log").read_text()
    assert "resumed from step 20" in log
    assert "resumed from step 30" in log
    assert json.loads((a / "metrics.json").read_text())["steps"] == 40


def test_a_killed_rank_stops_the_other_with_one_line(tmp_path):
    p = fieldfit("rings", "--time-budget", 120, *SMALL, "--out", tmp_path / "run", tmp=tmp_path, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        log = tmp_path / "run" / "log"
        deadline = time.time() + 90
        while time.time() < deadline and not (log.is_file() and "step" in log.read_text()):
            time.sleep(0.2)
        assert log.is_file(), "the fit did not start"
        time.sleep(1.0)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        assert len(kids) == 2
        os.kill(max(int(k) for k in kids), signal.SIGKILL)  # the later child: rank 1
        out, err = p.communicate(timeout=90)  # within the time-out, or TimeoutExpired fails the test
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    reasons = [ln for ln in err.splitlines() if ln.startswith("fieldfit: ")]
    assert reasons, err[-3000:]
    assert "stopped answering" in reasons[0] or "stopped at step" in reasons[0], err[-3000:]


def test_bad_input_under_torchrun_is_one_line_and_no_rank_waits(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    p = fieldfit("rings", "--steps", 5, "--out", taken, tmp=tmp_path, timeout=120)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("fieldfit: error")]
    assert len(lines) == 1, p.stderr[-2000:]
    assert "is a file, not a folder" in lines[0]


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the GPUs: --gpus 2 would launch")
def test_gpus_without_gpus_is_one_line():
    p = run_main("rings", "--gpus", "2", "--steps", "5")
    assert p.returncode == 2
    assert "CUDA device" in p.stderr
    assert "torchrun --nproc_per_node" in p.stderr


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_rank_other_than_0_lets_rank_0_report_a_shared_error(rank, monkeypatch, capsys):
    # torchrun stops every rank once one exits with an error: a silent rank leaving first could cut rank 0's line
    from fieldfit import cli
    from fieldfit.errors import Silent

    waits = []
    monkeypatch.setattr(cli.time, "sleep", waits.append)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli._main(["--method", "rbf"]) == 2  # no scene: an InputError every rank meets before joining
    err = capsys.readouterr().err
    assert ("fieldfit: error: SCENE" in err) == (rank == "0")
    assert waits == ([] if rank == "0" else [cli.RANK0_GRACE_S])

    def silent(argv):
        raise Silent(2)  # what the other ranks raise when rank 0's preparation failed

    monkeypatch.setattr(cli, "cmd_fit", silent)
    waits.clear()
    assert cli._main(["rings"]) == 2
    assert waits == [cli.RANK0_GRACE_S]


def test_a_rank_that_lost_its_peers_keeps_the_launchers_sigterm_from_cutting_its_line(monkeypatch):
    # torchrun SIGTERMs the other ranks once one dies: a rank unwinding from the failed collective ignores it, so
    # its one line gets out (the fit's own stop handler would otherwise be gone by then, the default killing it)
    from fieldfit import dist
    from fieldfit.faults import StopSignals

    def dead_peer(*args, **kw):
        raise RuntimeError("Connection closed by peer [127.0.0.1]:29500")

    monkeypatch.setattr(dist, "active", lambda: True)
    monkeypatch.setattr(dist, "rank", lambda: 0)
    monkeypatch.setattr(dist, "world", lambda: 2)
    monkeypatch.setattr(dist.tdist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist.tdist, "all_reduce", dead_peer)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(dist.RankLost, match="stopped answering"), StopSignals():
            dist.agree(1.0, None, True, False)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
    with StopSignals():  # a block left otherwise gives the previous handler back
        assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) == before
