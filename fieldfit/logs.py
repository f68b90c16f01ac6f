"""Experiment logs of a fit: ``RUN/metrics.csv`` always, TensorBoard event files in ``RUN/tensorboard/`` on request.

The trainer (``trainer.fit_loop``) and the few loops of a method outside it (dnmp's point fit and geometry stage)
write through one ``MetricLog``: ``add`` after each step, ``row`` when ``due`` (at the first step, then every
``LOG_EVERY_S`` seconds of training, at each evaluation and at the end), ``rewind`` when training goes back to an
earlier step (a rollback), ``close`` at the end. Only the process that writes the run logs: the fit that
``api.prepare`` made it for, which sets ``run.log_options``; a run opened otherwise (eval, view, render, an export
that fits a bsp proxy of it) has none, and its training loops write no logs.

metrics.csv: one header line, then one row per logging interval, each line flushed as it is written. Columns:
  step            optimisation steps done (for dnmp, over its stages)
  seconds         seconds of training (evaluation, checkpoints and drawing left out, as the budget counts them)
  loss            mean training loss of the steps since the previous row
  psnr            training-batch PSNR in dB from the mean colour error of those steps (empty where a task has
                  no colours: shapes)
  lr              learning rate of the first parameter group at the row's step
  <unit>_per_s    rays, pixels or points trained per second of training since the previous row
  eval_<metric>   the task's evaluation during training (psnr on held-out pixels, iou on probe points); empty
                  between evaluations
A resume appends under the same header after dropping the rows of steps past the checkpoint's (what the resumed
fit trains again), so steps increase down the file.

TensorBoard (``--log tensorboard``, ``pip install 'fieldfit[tensorboard]'``): the same scalars (tags ``loss``,
``psnr/train``, ``lr``, ``throughput/<unit>_per_s``, ``eval/<metric>``) at the same rows, and for image and
radiance fits a picture of a test view (tag ``test_view``) every ``--log-image-every`` seconds of training and at
the end. Events after the checkpoint's step are purged on resume (SummaryWriter's ``purge_step``).
"""

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .runs import write_bytes, write_error

KINDS = ("csv", "tensorboard")
CSV = "metrics.csv"
TENSORBOARD = "tensorboard"
LOG_EVERY_S = 1.0  # seconds of training between rows (tests set 0: a row per step)
MAX_IMAGE_SIDE = 512  # test-view pictures are shrunk to at most this many pixels a side
INSTALL = "pip install 'fieldfit[tensorboard]'"


def tensorboard_missing() -> str | None:
    """Why torch's TensorBoard writer cannot be used here (None when it can)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401, PLC0415 - optional, checked lazily
    except ImportError as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else "tensorboard is not installed"
    return None


@dataclass(frozen=True)
class LogOptions:
    """What a fit logs besides metrics.csv: ``kind`` csv | tensorboard, and for tensorboard a test-view picture
    every ``image_every_s`` seconds of training."""

    kind: str = "csv"
    image_every_s: float = 60.0

    @classmethod
    def of(cls, kind: str = "csv", image_every_s=60.0) -> "LogOptions":
        """Checked options: InputError for an unknown kind, a bad number of seconds, or tensorboard asked for and
        not installed (before any training)."""
        kind = "csv" if kind is None else str(kind)
        if kind not in KINDS:
            raise InputError(f"--log {kind}", "unknown log kind", f"use {' or '.join(KINDS)}")
        seconds = 60.0 if image_every_s is None else image_every_s
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise InputError(f"--log-image-every {image_every_s}", "must be a finite number of seconds > 0",
                             "e.g. --log-image-every 60")
        if kind == "tensorboard" and tensorboard_missing() is not None:
            raise InputError("--log tensorboard", "needs the tensorboard package, which is not installed",
                             f"{INSTALL}, or leave --log out (metrics.csv is always written)")
        return cls(kind, seconds)


def _number(value, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _psnr(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


class MetricLog:
    """The logs of one fit into ``run`` (see the module doc).

    Args:
        run: the run folder (``runs.Run``).
        metric: the task's evaluation (psnr | iou), named in the column ``eval_<metric>``.
        unit: what a step's ``batch`` counts (rays | pixels | points), named in the column ``<unit>_per_s``.
        options: ``LogOptions`` (default: ``run.log_options``); None there too: nothing is written.
        start_step, start_seconds: the step and training seconds training starts from (a resume: rows past it
            are dropped).
        step_offset, seconds_offset: added to every step and second written (a stage after another: dnmp's
            radiance stage after its geometry stage).
        preview: ``() -> [H,W,3]`` float image of a test view, for TensorBoard; None: no pictures.
    """

    def __init__(self, run, metric: str = "metric", unit: str = "items", options: LogOptions | None = None,
                 start_step: int = 0, start_seconds: float = 0.0, step_offset: int = 0, seconds_offset: float = 0.0,
                 preview=None):
        self.run, self.preview, self.offset, self.seconds_offset = run, preview, int(step_offset), float(seconds_offset)
        self.options = options or getattr(run, "log_options", None)
        self.path = Path(run.path) / CSV
        self.columns = ["step", "seconds", "loss", "psnr", "lr", f"{unit}_per_s", f"eval_{metric}"]
        self.start = int(start_step) + self.offset
        self.last_step = None  # the step of the last row written
        self.last_row_s = -math.inf
        self.last_image_s = -math.inf
        self.file = self.writer = None
        self.lr = None
        self._reset_sums(float(start_seconds))

    # -- the trainer's side ---------------------------------------------------------------------------------------
    def add(self, out: dict) -> None:
        """Count one step's result: ``loss`` (required), optional ``mse`` (colour error of the batch, for psnr),
        ``batch`` (items trained) and ``lr``. Tensors are read at the next row only."""
        self.steps += 1
        self.loss = self.loss + out["loss"]
        if out.get("mse") is not None:
            self.mse = out["mse"] if self.mse is None else self.mse + out["mse"]
            self.mse_steps += 1
        self.items += int(out.get("batch") or 0)
        if out.get("lr") is not None:
            self.lr = float(out["lr"])

    def due(self, seconds: float) -> bool:
        """Whether a row is due at ``seconds`` of training (the first step's always is)."""
        return self.last_step is None or seconds - self.last_row_s >= LOG_EVERY_S

    def row(self, step: int, seconds: float, evaluation=None, final: bool = False) -> None:
        """Write the row of ``step`` (the sums since the previous row, and ``evaluation`` when one ran; ``final``:
        the fit's last, with a picture); nothing when there is nothing new or the step is not past the last
        row's."""
        step = int(step) + self.offset
        if self.options is None:  # not the fit writing the run
            self._reset_sums(seconds)
            return
        if (self.steps == 0 and evaluation is None) or (self.last_step is not None and step <= self.last_step):
            return
        interval = seconds - self.since_s
        shown = seconds + self.seconds_offset
        loss = float(self.loss) / self.steps if self.steps else None
        psnr = _psnr(float(self.mse) / self.mse_steps) if self.mse_steps else None
        rate = self.items / interval if self.items and interval > 0 else None
        values = [step, _number(shown, ".3f"), _number(loss, ".6g"), _number(psnr, ".4f"), _number(self.lr, ".6g"),
                  _number(rate, ".6g"), _number(None if evaluation is None else float(evaluation), ".6g")]
        self._write_csv(values)
        if self.options.kind == "tensorboard":
            self._write_events(step, seconds, loss, psnr, rate, evaluation, final)
        self.last_step, self.last_row_s = step, seconds
        self._reset_sums(seconds)

    def rewind(self, step: int, seconds: float) -> None:
        """Training went back to ``step`` at ``seconds`` (a rollback): drop the rows past it (the files are
        reopened at the next row) and what was summed since."""
        step = int(step) + self.offset
        self.close()
        self.start = step
        self.last_step = None if self.last_step is None else min(self.last_step, step)
        self.last_row_s = self.last_image_s = -math.inf
        self._reset_sums(float(seconds))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()
        self.file = self.writer = None

    def __enter__(self) -> "MetricLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- files ------------------------------------------------------------------------------------------------
    def _reset_sums(self, seconds: float) -> None:
        self.steps, self.loss, self.mse, self.mse_steps, self.items = 0, 0.0, None, 0, 0
        self.since_s = seconds

    def _open_csv(self) -> None:
        """Open metrics.csv for appending: a new file gets the header; an existing one keeps its rows up to the
        step training starts from (rewritten, under this header, when some must go or its header differs)."""
        header = ",".join(self.columns) + "\n"
        if self.path.is_file():
            rows, same, dropped = self._kept_rows()
            if dropped or not same:
                text = io.StringIO()
                w = csv.DictWriter(text, self.columns, extrasaction="ignore", lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
                write_bytes(self.path, text.getvalue().encode())
            if rows:
                self.last_step = int(rows[-1]["step"])
        else:
            write_bytes(self.path, header.encode())
        try:
            self.file = open(self.path, "a", newline="")  # noqa: SIM115 - held open for the fit, closed by close()
        except OSError as e:
            raise write_error(self.path, e) from None

    def _kept_rows(self) -> tuple[list[dict], bool, bool]:
        """(rows of steps up to ``start``, whether the header is this log's, whether rows were dropped)."""
        try:
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                same = reader.fieldnames == self.columns
        except (OSError, UnicodeDecodeError, csv.Error):
            return [], False, True
        kept = []
        for r in rows:
            try:
                step = int(r.get("step") or "")
            except ValueError:  # a line a killed process left half written
                continue
            if step <= self.start:
                kept.append(r)
        return kept, same, len(kept) != len(rows)

    def _write_csv(self, values) -> None:
        if self.file is None:
            self._open_csv()
        try:
            self.file.write(",".join(str(v) for v in values) + "\n")
            self.file.flush()
        except OSError as e:
            raise write_error(self.path, e) from None

    def _write_events(self, step, seconds, loss, psnr, rate, evaluation, final) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional (LogOptions.of checked it)

            # events of steps past the one training starts from (a resume, a rollback) are purged
            self.writer = SummaryWriter(str(Path(self.run.path) / TENSORBOARD), purge_step=self.start + 1,
                                        flush_secs=10)
        w, unit = self.writer, self.columns[5]
        for tag, value in (("loss", loss), ("psnr/train", psnr), ("lr", self.lr), (f"throughput/{unit}", rate),
                           (f"eval/{self.columns[6][5:]}", evaluation)):
            if value is not None and math.isfinite(float(value)):
                w.add_scalar(tag, float(value), step)
        if self.preview is not None and (final or seconds - self.last_image_s >= self.options.image_every_s):
            self.last_image_s = seconds
            w.add_image("test_view", _picture(self.preview()), step, dataformats="HWC")
        w.flush()


def _picture(image):
    """[H,W,3] float image -> uint8 numpy at most MAX_IMAGE_SIDE a side (every k-th pixel)."""
    import numpy as np

    a = image.detach().float().cpu().numpy() if hasattr(image, "detach") else np.asarray(image, np.float32)
    if a.ndim == 2:
        a = a[..., None]
    a = a[..., :3] if a.shape[-1] >= 3 else np.repeat(a[..., :1], 3, axis=-1)
    k = max(1, math.ceil(max(a.shape[:2]) / MAX_IMAGE_SIDE))
    return (np.clip(a[::k, ::k], 0, 1) * 255.0 + 0.5).astype(np.uint8)


__all__ = ["CSV", "KINDS", "LOG_EVERY_S", "TENSORBOARD", "LogOptions", "MetricLog", "tensorboard_missing"]
