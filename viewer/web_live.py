"""Training while viewing in a browser (``fieldfit SCENE --view web``): the web viewer as a training-step hook.

Like ``viewer.live.LiveView`` for the window: the trainer calls ``LiveWeb(step, state)`` after every step, and the
hook draws between steps on the training thread, sharing the device by time (after a round of frames that took d
seconds, training gets ``d * (1 - share) / share`` seconds, and at least the frame period, before the next). It
costs training nothing while no tab is open: the weights are copied into the view only when a tab will draw. The
server starts before training (its port checked, the address logged); tabs that open before the method has
described its run wait for the first step after it. The panel's pause button holds training in the hook while the
tabs keep drawing. After training the final model stays served until Ctrl-C.
"""

import time

from fieldfit.errors import InputError

from .web import IDLE_WAIT_S, WebViewer, serve
from .web_net import access_line


class LiveWeb:
    def __init__(self, run, device="cpu", host: str = "127.0.0.1", port: int = 7007, fps: float = 30.0,
                 share: float = 0.5):
        self.run, self.device, self.fps, self.share = run, device, float(fps), float(share)
        self.viewer = WebViewer(host=host, port=port, fps=self.fps / self.share, live=True)
        self.run.log(access_line(host, port))
        self.closed = False  # the run cannot be drawn: training goes on without the viewer
        self.state = None
        self.next_draw = 0.0

    def _open(self) -> bool:
        from fieldfit.runs import CONFIG

        from .registry import open_view

        if not (self.run.path / CONFIG).is_file():  # the method has not described the run yet: next step
            return False
        try:
            view = open_view(self.run.path, self.device, live=True)
            if self.state is not None:
                view.sync(self.state()[0])
        except InputError as e:
            self.run.log(f"viewer: cannot draw this run while it trains ({e}); training goes on")
            self.closed = True
            return False
        self.viewer.attach(view)
        return True

    def __call__(self, step: int, state=None) -> None:
        if self.closed:
            return
        self.state = state
        viewer = self.viewer
        if viewer.view is None and not self._open():
            return
        viewer.info = f"step {step}"
        viewer.pump(draw=False)  # the tabs' input at every step (it costs next to nothing); drawing shares time
        if time.perf_counter() >= self.next_draw and not viewer.paused:
            if viewer.clients:
                self._sync()
            start = time.perf_counter()
            if viewer.pump():
                spent = time.perf_counter() - start
                self.next_draw = time.perf_counter() + max(spent * (1 - self.share) / self.share,
                                                           1.0 / self.fps - spent)
        if viewer.paused:
            self.run.log(f"viewer: training paused at step {step} (the panel's button resumes)")
            if viewer.clients:
                self._sync()  # the tabs show the weights training stopped at
            while viewer.paused and viewer.clients:  # closing the last tab resumes training too
                viewer.pump(IDLE_WAIT_S)
            viewer.paused = False
            self.run.log(f"viewer: training resumed at step {step}")

    def _sync(self) -> None:
        if self.state is not None:
            self.viewer.view.sync(self.state()[0])
            self.viewer.changed()

    def finish(self) -> None:
        """After training: serve the final model until Ctrl-C."""
        viewer = self.viewer
        if self.closed or viewer.stopped:
            self.close()
            return
        if viewer.view is None and not self._open():
            self.close()
            return
        viewer.live, viewer.paused, viewer.info = False, False, ""
        if self.state is not None:
            viewer.view.sync(self.state()[0], force=True)
        viewer.changed()
        print(f"training done; the final model stays at {viewer.url}: Ctrl-C stops the viewer", flush=True)
        serve(viewer)

    def close(self) -> None:
        self.viewer.stop()
