"""kill -9 at random moments of a tiny fit, and a resume after each: does the run always go on?

One rbf image fit (rings, 256x256, a small grid) is made, then for each moment: a resume of it with a few more
steps is started and killed with SIGKILL at a random moment of its life (loading, training, a checkpoint write, the
outputs), with a checkpoint after every step so that many kills land in a write (a draw that comes after the
process ended is checked and resumed all the same, then drawn again: ``--moments`` counts kills); every
``--in-write-every``-th moment instead dies in the middle of a checkpoint write on purpose (half the file written,
then SIGKILL). After each kill the run is checked (config.json and the checkpoint load through ``fieldfit.load``, every
tensor finite, the checkpoint's step not behind the one before the kill), then resumed to the end of a budget two
steps past its checkpoint: the resume must exit 0, say it resumed from that step and end there.

Each process is forked from this one after fieldfit is imported (no interpreter start per moment); its output
goes to a file beside the run. The count is a correctness count, not a timing.

    python bench/kill_resume.py [--moments 50] [--seed 0] [--in-write-every 5] [--out PATH] [--keep DIR]
        -> bench/results/kill_resume_<date>.json; exit 0 when every try resumed and every kill landed
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # forked children must not inherit a busy OpenMP pool
os.environ.setdefault("FIELDFIT_NO_TCMALLOC", "1")

import argparse
import contextlib
import json
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: F401 - imported once here, so forked children do not pay for it
import torch

import fieldfit
from _common import RESULTS, write
from fieldfit import cli, runs, trainer

FIT = ["rings", "--levels", "3", "--max-res", "64"]
FIRST_STEPS = 10  # the fit every moment resumes
MORE_STEPS = 12  # steps each killed resume is given past its checkpoint


def fork_fit(argv: list[str], out: Path, die_in_write: int | None = None) -> int:
    """Start ``fieldfit ARGV`` in a forked child (a checkpoint after every step); returns its pid. With
    ``die_in_write`` the child kills itself half way through its ``die_in_write``-th checkpoint write."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 99
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        trainer.CHECKPOINT_EVERY_S = 0.0
        if die_in_write:
            _die_in_write(die_in_write)
        code = cli.main(argv)
    except BaseException:  # a child reports whatever ended it, then leaves without unwinding
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_in_write(n: int) -> None:
    """Make the n-th checkpoint write of this process stop half way: half the bytes in the temporary file, then
    SIGKILL (the rename never happens)."""
    original, count = runs.atomic_write, [0]

    def atomic_write(path, write_fn, *args, **kwargs):
        if Path(path).name == runs.CHECKPOINT:
            count[0] += 1
            if count[0] == n:
                def half(tmp):
                    write_fn(tmp)
                    os.truncate(tmp, os.path.getsize(tmp) // 2)
                    os.kill(os.getpid(), signal.SIGKILL)

                return original(path, half, *args, **kwargs)
        return original(path, write_fn, *args, **kwargs)

    runs.atomic_write = atomic_write


def wait(pid: int) -> str:
    """'killed' (SIGKILL) or 'exit N'."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def run_to_end(argv: list[str], out: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    outcome = wait(fork_fit(argv, out))
    return outcome, time.perf_counter() - t0


def check_run(run: Path) -> tuple[int | None, str]:
    """(checkpoint step, problem or ''): the config and checkpoint load and every tensor is finite."""
    try:
        json.loads((run / runs.CONFIG).read_text())
        model = fieldfit.load(run, device="cpu")
        tensors, meta = model.run.load_checkpoint()
        bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            return None, f"not finite: {bad[:3]}"
        return int(meta["step"]), ""
    except Exception as e:  # any failure to load is what this counts
        return None, f"{type(e).__name__}: {e}"


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != runs.LOCK)


def _in_write(row: dict) -> bool:
    """Whether the kill left a checkpoint half written (its temporary file)."""
    return any(name.startswith(f".{runs.CHECKPOINT}.") for name in row["temp_files"])


def moments(n: int, seed: int, in_write_every: int, root: Path) -> dict:
    rng = random.Random(seed)
    run = root / "run"
    t0 = time.perf_counter()  # the first fit in this process: the children then find every lazy import done
    with open(root / "fit.out", "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        code = cli.main([*FIT, "--steps", str(FIRST_STEPS), "--out", str(run)])
    first_s = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the first fit failed ({code}): {(root / 'fit.out').read_text()[-2000:]}")
    step, problem = check_run(run)
    # one resume of MORE_STEPS left alone: how long a process lives, the window the kills are drawn in
    outcome, life_s = run_to_end(["--resume", str(run), "--steps", str(step + MORE_STEPS)], root / "calibrate.out")
    if outcome != "exit 0":
        raise SystemExit(f"the calibration resume failed ({outcome}): {(root / 'calibrate.out').read_text()[-2000:]}")
    step, problem = check_run(run)
    rows, k = [], 0
    while sum(r["outcome"] == "killed" for r in rows) < n and k < 2 * n:  # a kill that came too late is redrawn
        row = {"moment": k, "step_before": step}
        out = root / f"moment{k:03d}.out"
        argv = ["--resume", str(run), "--steps", str(step + MORE_STEPS)]
        if in_write_every and k % in_write_every == in_write_every - 1:
            row["kind"] = "in-write"
            row["write"] = rng.randint(1, MORE_STEPS)
            row["outcome"] = wait(fork_fit(argv, out, die_in_write=row["write"]))
        else:
            row["kind"] = "random"
            row["delay_s"] = round(rng.uniform(0.0, 0.9 * life_s), 4)
            pid = fork_fit(argv, out)
            time.sleep(row["delay_s"])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            row["outcome"] = wait(pid)
        row["temp_files"] = temp_files(run)  # left by a kill during a write (the next writer removes them)
        after, problem = check_run(run)
        row["step_after_kill"] = after
        if problem or after is None or after < step:
            row["problem"] = problem or f"checkpoint went back from step {step} to {after}"
            rows.append(row)
            break
        done = after + 2
        res_out = root / f"resume{k:03d}.out"
        row["resume"], row["resume_s"] = run_to_end(["--resume", str(run), "--steps", str(done)], res_out)
        text = res_out.read_text()
        said = re.search(r"resumed from step (\d+)", text)
        row["resumed_from"] = int(said.group(1)) if said else None
        step, problem = check_run(run)
        row["step_after_resume"] = step
        row["ok"] = (row["resume"] == "exit 0" and row["resumed_from"] == after and step == done and not problem)
        if not row["ok"]:
            row["problem"] = problem or text[-1500:]
            rows.append(row)
            break
        rows.append(row)
        k += 1
    killed = [r for r in rows if r["outcome"] == "killed"]
    return {
        "fit": " ".join(FIT), "first_steps": FIRST_STEPS, "more_steps": MORE_STEPS, "seed": seed,
        "first_fit_s": round(first_s, 3), "process_life_s": round(life_s, 3),
        "moments": n, "tries": len(rows), "resumed": sum(1 for r in rows if r.get("ok")),
        "killed": len(killed),
        "killed_in_write_on_purpose": sum(1 for r in killed if r["kind"] == "in-write"),
        "killed_at_random_in_a_write": sum(1 for r in killed if r["kind"] == "random" and _in_write(r)),
        "ended_before_the_kill": sum(1 for r in rows if r["outcome"] != "killed"),
        "final_step": step, "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moments", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-write-every", type=int, default=5, help="every N-th moment dies inside a checkpoint write")
    ap.add_argument("--out", type=Path, help=f"JSON (default {RESULTS}/kill_resume_<date>.json)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = a.keep or Path(tempfile.mkdtemp(prefix="kill_resume."))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        result = moments(a.moments, a.seed, a.in_write_every, root)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write("kill_resume", result, a.out or RESULTS / f"kill_resume_{time.strftime('%Y-%m-%d')}.json")
    print(f"{result['killed']} kills of {result['moments']} asked for, {result['resumed']} of {result['tries']} tries "
          f"resumed ({result['ended_before_the_kill']} ended before their kill, "
          f"{result['killed_in_write_on_purpose']} inside a checkpoint write on purpose, "
          f"{result['killed_at_random_in_a_write']} at random during one)")
    return 0 if result["resumed"] == result["tries"] and result["killed"] == result["moments"] else 1


if __name__ == "__main__":
    sys.exit(main())
