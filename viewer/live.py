"""Training while viewing (``fieldfit SCENE --view``): the viewer window as a training-step hook.

The trainer calls ``LiveView(step, state)`` after every optimisation step (``Run.step_hook``;
``state() -> (tensors, meta)`` is the checkpoint closure, so the view copies the current
weights from it). Training and drawing share the device by time: after a frame that took
d seconds, the next frame waits until training has had ``d * (1 - share) / share`` seconds
(and at least the frame period), so with share 0.5 drawing never takes more than half of the
wall time; the resolution controller aims each frame at share / fps seconds. Input is polled
after every step. P pauses training (the window keeps drawing); closing the window lets
training go on without it. The trainer does not count the hook's time against its budget.

The view opens at the first step after the method wrote config.json: the run is built with untrained
weights (``fieldfit.load(run_dir, trained=False)``) and takes the trainer's through ``model.sync``. Methods
call the hook from their optimisation loops only (dnmp: in its radiance stage), so before that the window
is not open yet.
"""

import time

from fieldfit.errors import InputError


class LiveView:
    def __init__(self, run, device="cpu", fps: float = 30.0, share: float = 0.5, size=None):
        from .window import check_display

        check_display()  # fail before training starts, with the --screenshot hint
        self.run, self.device, self.fps, self.share, self.size = run, device, float(fps), float(share), size
        self.session = self.window = None
        self.closed = False
        self.next_draw = 0.0  # perf_counter time before which training keeps the device
        self.state = None
        self.last_tick = time.perf_counter()

    def _open(self) -> None:
        from fieldfit.runs import CONFIG

        from .app import default_size
        from .registry import open_view
        from .session import Session
        from .window import Window

        if not (self.run.path / CONFIG).is_file():  # the method has not described the run yet: next step
            return
        try:
            view = open_view(self.run.path, self.device, live=True)
            if self.state is not None:  # the weights first: the view's modes and mesh come from them
                view.sync(self.state()[0])
        except InputError as e:
            self.run.log(f"viewer: cannot draw this run while it trains ({e}); training goes on")
            self.closed = True
            return
        w, h = self.size or default_size(view)
        self.session = Session(view, fps=self.fps / self.share, aspect=w / h)
        self.session.live = True
        self.window = Window(self.session, w, h, title=f"fieldfit {self.run.path.name} (training)")

    def __call__(self, step: int, state=None) -> None:
        if self.closed:
            return
        self.state = state
        if self.session is None:
            self._open()
            if self.closed or self.session is None:
                return
        self.session.info = f"step {step}"
        self.window.poll()
        self._tick()
        if time.perf_counter() >= self.next_draw or self.session.paused:
            self._draw(sync=True)
        if self.session.paused:
            self._hold(step)
        self._gone()

    def _hold(self, step: int) -> None:
        """P: training waits here while the window keeps drawing, until P again or the window closes."""
        self.run.log(f"viewer: training paused at step {step} (P resumes)")
        while self.session.paused and not self._gone():
            self.window.poll(0.0 if self.session.needs_frame() else 0.05)
            self._tick()
            if self.session.needs_frame():
                self._draw(sync=False)
        self.run.log(f"viewer: training resumed at step {step}")

    def _tick(self) -> None:
        now = time.perf_counter()
        self.session.advance(now - self.last_tick)
        self.last_tick = now

    def _draw(self, sync: bool) -> None:
        start = time.perf_counter()
        if sync and self.state is not None:
            self.session.view.sync(self.state()[0])
        self.session.dirty = True
        self.window.show(self.session.frame(*self.window.size))
        spent = time.perf_counter() - start
        self.next_draw = time.perf_counter() + max(spent * (1.0 - self.share) / self.share, 1.0 / self.fps - spent)

    def _gone(self) -> bool:
        """Close down when the user closed the window; True when closed."""
        if not self.closed and self.window is not None and self.window.closed():
            self.window.close()
            self.closed = True
            self.run.log("viewer closed; training goes on")
        return self.closed

    def finish(self) -> None:
        """After training: keep showing the final model until the window is closed."""
        if self.closed or self.session is None:
            return
        from .app import run_window

        self.session.live = False
        self.session.paused = False
        self.session.info = ""
        if self.state is not None:
            self.session.view.sync(self.state()[0], force=True)
        self.session.dirty = True
        print("training done; close the viewer window (or press Esc) to exit", flush=True)
        run_window(self.session, self.window)
        self.window.close()
        self.closed = True
