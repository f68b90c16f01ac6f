"""Pick the faster of interchangeable kernels by timing them on the GPU, once per problem shape.

Where two kernels compute the same thing to float rounding and which is faster depends on the GPU
(registers, tensor cores, atomics throughput), the first call of a shape runs each candidate once
uncounted (compilation, allocation), then ``reps`` timed runs, and the fastest is kept for the process
(cuDNN's benchmark mode does the same). The candidates must be free of side effects: closures that
return fresh tensors. The choice changes results only at float rounding (GPU training is not bitwise
reproducible anyway: grid gradients are atomic sums).
"""

import time

import torch

MIN_POINTS = 1 << 14  # smaller calls take the default kernel: too short to time, too short to matter


def device_seconds(fn, device) -> float:
    """Seconds of one call of ``fn``, the device synchronised before and after."""
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start


class Choice:
    def __init__(self, timer=device_seconds):
        self.chosen: dict[tuple, str] = {}
        self.timer = timer
        self.pinned: str | None = None  # a candidate's name here is used without timing (benchmark A/Bs)

    def __call__(self, key: tuple, candidates: dict, device=None, reps: int = 3) -> str:
        """The name of the fastest candidate for ``key`` (``candidates``: name -> closure), timed on first use."""
        if self.pinned is not None:
            return self.pinned
        if key not in self.chosen:
            times = {}
            for name, fn in candidates.items():
                fn()  # compile, allocate
                times[name] = min(self.timer(fn, device) for _ in range(reps))
            self.chosen[key] = min(times, key=times.get)
        return self.chosen[key]

    def call(self, key: tuple, impls: dict, *args, device=None):
        """``impls`` (name -> function) is the candidates: the fastest for ``key``, called with ``args``."""
        name = self.pinned or self.chosen.get(key)  # after the first call of a key: no closures built
        if name is None:
            name = self(key, {m: (lambda fn=fn: fn(*args)) for m, fn in impls.items()}, device)
        return impls[name](*args)
