"""Run folders owned safely: --out never takes a user's folder, parallel fits never share one, a refused resume
leaves the run working, one writer at a time, writes that survive a full disk and clean up after a kill."""

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest

import fieldfit
from conftest import run_main
from fieldfit.api import prepare
from fieldfit.errors import InputError
from fieldfit.runs import CHECKPOINT, CONFIG, LOCK, Run

TINY = ("--steps", "3", "--levels", "2", "--max-res", "32", "--units", "8")  # a rings fit of a fraction of a second


def fit_rings(out, *extra):
    res = run_main("rings", *TINY, "--out", out, *extra)
    assert res.returncode == 0, res.stderr
    return out


def refused(res, *needles, code=2):
    """One line on stderr (at most two with a usage line), the exit code, no traceback, the needles in it."""
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr


def hashes(folder) -> dict:
    """relative path -> sha256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def image(path, seed):
    rng = np.random.default_rng(seed)
    iio.imwrite(path, (rng.random((12, 16, 3)) * 255).astype(np.uint8))
    return path


# -- --out --------------------------------------------------------------------------------------------------------
def test_out_refuses_a_folder_with_the_users_files_unless_overwrite(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    (mine / CONFIG).write_text('{"mine": true}\n')
    (mine / "reconstruction.png").write_bytes(b"my picture")
    before = hashes(mine)
    refused(run_main("rings", *TINY, "--out", mine), str(mine), "not empty", "--overwrite")
    assert hashes(mine) == before  # nothing changed, nothing added (no lock file left)

    fit_rings(mine, "--overwrite")  # the files a fit writes are replaced; the others are left alone
    assert (mine / "notes.txt").read_text() == "my notes\n"
    assert json.loads((mine / CONFIG).read_text())["method"] == "rbf"
    assert fieldfit.load(mine, device="cpu").metrics["steps"] == 3
    assert not (mine / LOCK).exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    fit_rings(empty)  # an empty folder is fine


def test_out_onto_another_run_refuses_and_overwrite_leaves_no_old_file_behind(tmp_path):
    out = fit_rings(tmp_path / "run")
    (out / "mesh.ply").write_bytes(b"an old run's mesh")
    before = hashes(out)
    pic = image(tmp_path / "pic.png", 0)
    refused(run_main(pic, *TINY, "--out", out), "a fieldfit run", "--overwrite")
    assert hashes(out) == before
    res = run_main(pic, *TINY, "--out", out, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert not (out / "mesh.ply").exists()  # the old run's outputs do not sit beside the new one
    cfg = json.loads((out / CONFIG).read_text())
    assert cfg["input"] == str(pic)
    assert cfg["height"] == 12
    assert fieldfit.load(out, device="cpu").render().rgb.shape == (12, 16, 3)  # config and checkpoint agree


def test_a_file_as_out_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    refused(run_main("rings", *TINY, "--out", f), "is a file")
    assert f.read_text() == "x"


# -- parallel fits ------------------------------------------------------------------------------------------------
def _together(n, fn):
    """Call fn(k) for k < n in n threads released at once; [(k, result or exception)]."""
    barrier, out = threading.Barrier(n), []

    def go(k):
        barrier.wait()
        try:
            out.append((k, fn(k)))
        except Exception as e:  # noqa: BLE001 - the test looks at what each thread met
            out.append((k, e))

    threads = [threading.Thread(target=go, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(out, key=lambda r: r[0])


def test_two_fits_with_the_same_out_at_once_one_wins_whole(tmp_path):
    out = tmp_path / "same"
    results = _together(2, lambda k: fieldfit.fit("rings", steps=3, levels=2, max_res=32, units=8, seed=k + 1,
                                                  out=out, device="cpu"))
    won = [k for k, r in results if not isinstance(r, Exception)]
    lost = [r for _, r in results if isinstance(r, Exception)]
    assert len(won) == 1, results
    assert len(lost) == 1, results
    assert isinstance(lost[0], InputError)
    assert "in use by another fieldfit process" in str(lost[0]) or "not empty" in str(lost[0])
    cfg = json.loads((out / CONFIG).read_text())
    assert cfg["seed"] == won[0] + 1  # the config is the winner's ...
    assert fieldfit.load(out, device="cpu").metrics["steps"] == 3  # ... and so is the checkpoint it loads
    assert not (out / LOCK).exists()


def test_seeds_started_together_keep_their_own_run_folders(tmp_path, monkeypatch):
    """Three fits claim their folders at once (threads, in the same second): three folders. They then train one
    after the other (matplotlib's pyplot, which draws curve.png, is not thread-safe)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20250101-120000")
    for seeds in ((1, 2, 3), (0, 0, 0)):  # names apart by seed; the same name three times
        jobs = [r for _, r in _together(3, lambda k, s=seeds: prepare("rings", "rbf", steps=3, seed=s[k],
                                                                       options=dict(levels=2, max_res=32, units=8)))]
        try:
            assert all(isinstance(j, tuple) for j in jobs), jobs
            for package, job in jobs:
                package.fit(job)
        finally:
            for _, job in jobs:
                job.run.release()
        names = sorted(job.run.path.name for _, job in jobs)
        if seeds[0]:
            assert names == [f"rings-rbf-20250101-120000-seed{s}" for s in seeds]
        else:
            assert names == ["rings-rbf-20250101-120000", "rings-rbf-20250101-120000-2",
                             "rings-rbf-20250101-120000-3"]
        for _, job in jobs:
            assert json.loads((job.run.path / CONFIG).read_text())["seed"] == job.seed
            assert fieldfit.load(job.run.path, device="cpu").metrics["steps"] == 3


# -- resume -------------------------------------------------------------------------------------------------------
def test_refused_resumes_leave_the_run_working(tmp_path):
    run = fit_rings(tmp_path / "run")
    pic = image(tmp_path / "other.png", 1)
    before = hashes(run)
    refused(run_main("--resume", run, "--max-res", "16"), "--max-res 16", "the run has --max-res 32")
    refused(run_main("--resume", run, "--levels", "3"), "--levels 3", "the run has --levels 2")
    refused(run_main("--resume", run, "--units", "16"), "--units 16", "the run has --units 8")
    refused(run_main(pic, "--resume", run), "other.png", "is not the input")
    refused(run_main("csg", "--resume", run), "csg", "is not the input")
    refused(run_main("--resume", run, "--method", "bsp"), "--method bsp")
    refused(run_main("--resume", run, "--out", tmp_path / "elsewhere"), "--out")
    after = hashes(run)
    assert {k: v for k, v in after.items() if k != "log"} == {k: v for k, v in before.items() if k != "log"}
    assert not (tmp_path / "elsewhere").exists()

    res = run_main("eval", run)
    assert res.returncode == 0, res.stderr
    res = run_main("--resume", run, "--steps", "5", "--lr", "0.005")  # not a shape option: fine
    assert res.returncode == 0, res.stderr
    assert "resumed from step 3" in (run / "log").read_text()
    assert json.loads((run / CONFIG).read_text())["config"]["lr"] == 0.005


def test_a_resume_without_a_usable_checkpoint_writes_nothing(tmp_path):
    run = fit_rings(tmp_path / "run")
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[: len(data) // 2])  # cut short (not by fieldfit: its writes are atomic)
    config = (run / CONFIG).read_bytes()
    refused(run_main("--resume", run, "--steps", "5"), CHECKPOINT, "unreadable checkpoint")
    assert (run / CONFIG).read_bytes() == config
    (run / CHECKPOINT).unlink()
    refused(run_main("--resume", run, "--steps", "5"), "nothing to resume")
    assert (run / CONFIG).read_bytes() == config


def test_moved_input(tmp_path):
    """The input is recorded by absolute path and hash: the run is found from any folder; once moved, eval says
    so in one line and a resume takes the new place (same content) but not another file."""
    src = image(tmp_path / "pic.png", 2)
    res = run_main("pic.png", *TINY, "--out", tmp_path / "run", cwd=tmp_path)  # a relative path
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    cfg = json.loads((run / CONFIG).read_text())
    assert cfg["input"] == str(src)
    assert cfg["input_hash"].startswith("sha256:")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_main("eval", run, cwd=elsewhere).returncode == 0  # another working folder

    moved = tmp_path / "moved.png"
    src.rename(moved)
    refused(run_main("eval", run), "pic.png", "not there any more")
    refused(run_main("--resume", run, "--steps", "5"), "not there any more", "--resume")
    res = run_main(moved, "--resume", run, "--steps", "5")
    assert res.returncode == 0, res.stderr
    assert json.loads((run / CONFIG).read_text())["input"] == str(moved)
    image(src, 3)  # another picture where the old one was
    refused(run_main(src, "--resume", run, "--steps", "6"), "is not the input")


# -- one writer at a time -----------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_the_lock_goes_with_its_holder(tmp_path, monkeypatch):
    run = fit_rings(tmp_path / "run")
    holder = Run.open(run).acquire()  # as another fit would
    try:
        refused(run_main("--resume", run, "--steps", "5"), f"in use by another fieldfit process (pid {os.getpid()})")
        refused(run_main("rings", *TINY, "--out", run, "--overwrite"), "in use by another fieldfit process")
        res = run_main("eval", run)  # readers need no lock
        assert res.returncode == 0, res.stderr
    finally:
        holder.release()
    assert not (run / LOCK).exists()

    from fieldfit.methods import rbf

    def broken(job):
        raise RuntimeError("a bug in a method")

    monkeypatch.setattr(rbf, "fit", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run_main("--resume", run, "--steps", "5")
    monkeypatch.undo()
    assert not (run / LOCK).exists()  # released on the way out
    res = run_main("--resume", run, "--steps", "5")
    assert res.returncode == 0, res.stderr


def test_a_lock_is_released_when_its_process_is_killed(tmp_path):
    run = fit_rings(tmp_path / "run")
    # another process holding the lock as fieldfit does (flock on RUN/.fieldfit.lock, its pid inside); no torch import
    code = (f"import fcntl, os, time; fd = os.open({str(run / LOCK)!r}, os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
            "time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        refused(run_main("--resume", run, "--steps", "5"), f"(pid {p.pid})")
    finally:
        p.kill()
        p.wait()
    res = run_main("--resume", run, "--steps", "5")  # the lock file is still there, its lock is not
    assert res.returncode == 0, res.stderr


# -- durable writes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("err", "call", "says"), [(errno.ENOSPC, "fsync", "No space left on device"),
                                                    (errno.EROFS, "replace", "Read-only file system")])
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, err, call, says):
    run = fit_rings(tmp_path / "run")
    before = (run / CHECKPOINT).read_bytes()
    real = getattr(os, call)

    def failing(*args):  # fails for the checkpoint's temporary file only
        target = os.readlink(f"/proc/self/fd/{args[0]}") if call == "fsync" else str(args[0])
        if CHECKPOINT in os.path.basename(target):
            raise OSError(err, os.strerror(err))
        return real(*args)

    monkeypatch.setattr(os, call, failing)
    res = run_main("--resume", run, "--steps", "6")
    monkeypatch.undo()
    refused(res, CHECKPOINT, says)
    assert (run / CHECKPOINT).read_bytes() == before
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    res = run_main("--resume", run, "--steps", "6")  # the disk is back: it goes on from the kept checkpoint
    assert res.returncode == 0, res.stderr
    assert "resumed from step 3" in (run / "log").read_text()


def test_stale_temporary_files_are_removed_by_the_next_writer(tmp_path):
    run = fit_rings(tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)  # a process that has ended
    stale = [run / f".{CHECKPOINT}.{dead}.ab12cd34.safetensors", run / ".mesh.ply.k2j4h5g6.tmp",
             run / ".config.json.zz9yx8w7.json"]
    kept = [run / ".mesh.obj.q1w2e3r4.tmp", run / ".metrics.json.1.aaaa1111.json", run / ".notes.txt",
            run / "my.file.abcdefgh.txt"]
    for p in stale + kept:
        p.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    for p in stale[1:]:
        os.utime(p, (hour_ago, hour_ago))  # writers that do not name their pid: removed once old
    # kept: a young temporary file of such a writer, one of a live process (pid 1), and files that are not temporary
    res = run_main("--resume", run, "--steps", "5")
    assert res.returncode == 0, res.stderr
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
