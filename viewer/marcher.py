"""Which marcher draws the viewer's radiance frames on a GPU: the fastest one, timed on live frames.

A frame can be marched three ways (``render.march.MARCH_MODES``: packed, rounds, fused), giving the
same picture up to float rounding. Which is fastest depends on the GPU, the field, how far it is trained
and the number of rays, and dynamic resolution changes the number of rays while the camera moves. So on a
GPU, with FIELDFIT_MARCH unset, the view does what cuDNN's benchmark mode does: per size class of frame
(rays rounded to a power of 4, i.e. the side to a power of 2) it draws a few frames with each candidate,
the first of each uncounted (compilation, allocator), and then keeps the fastest. A candidate that raises is
dropped for the rest of the session. Decisions taken before the weights changed (training while viewing)
are timed again after ``max_age_s``.

Pure logic: the caller times the frames (synchronising the device) and passes the seconds.
"""

import math
import time


class MarcherChoice:
    def __init__(self, candidates, trials: int = 2, max_age_s: float = 30.0, clock=time.perf_counter):
        if not candidates:
            raise ValueError("MarcherChoice needs at least one candidate")
        self.candidates = list(candidates)
        self.trials, self.max_age_s, self.clock = int(trials), float(max_age_s), clock
        self.times: dict[tuple[int, str], list[float]] = {}  # (size class, marcher) -> seconds, warm-up first
        self.chosen: dict[int, tuple[str, float]] = {}  # size class -> (marcher, clock when chosen)
        self.changed_at = -math.inf  # clock of the last weight change
        self.last, self.settled = None, False  # the last pick, and whether it was a decision (not a trial)

    @staticmethod
    def size_class(n_rays: int) -> int:
        return round(math.log(max(n_rays, 1), 4))

    def pick(self, n_rays: int) -> str:
        """The marcher of the next frame of ``n_rays`` rays: a candidate still being timed, else the chosen one."""
        self.last, self.settled = self._pick(self.size_class(n_rays))
        return self.last

    def _pick(self, k: int) -> tuple[str, bool]:
        if k in self.chosen:
            mode, when = self.chosen[k]
            if mode in self.candidates and not (self.changed_at > when and self.clock() - when > self.max_age_s):
                return mode, True
            del self.chosen[k]
            for m in self.candidates:
                self.times.pop((k, m), None)
        for m in self.candidates:
            if len(self.times.get((k, m), ())) < 1 + self.trials:
                return m, False
        best = min(self.candidates, key=lambda m: min(self.times[(k, m)][1:]))
        self.chosen[k] = (best, self.clock())
        return best, True

    def record(self, n_rays: int, mode: str, seconds: float) -> None:
        """A frame of ``n_rays`` rays marched by ``mode`` took ``seconds`` (device synchronised)."""
        k = self.size_class(n_rays)
        if k not in self.chosen:
            self.times.setdefault((k, mode), []).append(float(seconds))

    def failed(self, mode: str) -> None:
        """``mode`` raised: never pick it again (the last candidate is kept: its error is the user's to see)."""
        if mode in self.candidates and len(self.candidates) > 1:
            self.candidates.remove(mode)

    def weights_changed(self) -> None:
        self.changed_at = self.clock()

    def chosen_for(self, n_rays: int) -> str | None:
        """The decision for frames of ``n_rays`` rays, None while still timing."""
        got = self.chosen.get(self.size_class(n_rays))
        return got[0] if got else None
