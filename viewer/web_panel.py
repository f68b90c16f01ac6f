"""The browser viewer's control panel, one per tab (viser's per-client GUI).

view: render mode (the view's modes), overlay (the status text drawn into the picture, as in the window);
camera: scene camera (the run's presets: "test:3", "front", ...), previous / next / home;
resolution: the scale of the last picture and the frame rate (readouts), pin scale and the pinned scale;
training (a fit viewed while it trains): its step and a pause / resume button.

The widgets' callbacks run on viser's threads and only ``post`` their change to the drawing thread; a value the
server sets itself (``event.client`` is None) is not an input. Readouts are refreshed at most every
``READOUT_EVERY_S`` seconds, and only when their value changed.
"""

READOUT_EVERY_S = 0.25
FREE = "(free)"  # the scene-camera list's entry while the camera is not at one
PAUSE, RESUME = "pause training", "resume training"


class Panel:
    def __init__(self, viewer, client):
        self.viewer, self.client = viewer, client
        gui, s = client.handle.gui, client.session
        self.refreshed = 0.0
        with gui.add_folder("view"):
            self.mode = gui.add_dropdown("mode", list(s.view.modes), initial_value=s.mode)
            self.overlay = gui.add_checkbox("overlay", s.overlay, hint="status text (fps, scale, mode) in the picture")
        with gui.add_folder("camera"):
            names = [p.name for p in s.controls.presets]
            here = names[s.controls.preset_index] if s.controls.preset_index >= 0 else FREE
            self.camera = gui.add_dropdown("scene camera", [FREE, *names], initial_value=here) if names else None
            self.moves = gui.add_button_group("go to", ["previous", "next", "home"] if names else ["home"])
        with gui.add_folder("resolution"):
            self.scale = gui.add_number("scale", 1.0, disabled=True, hint="render scale of the last picture")
            self.fps = gui.add_number("fps", 0.0, disabled=True, hint="pictures per second while the camera moves")
            pinned = s.res.pinned
            self.pin = gui.add_checkbox("pin scale", pinned is not None, hint="render every picture at one scale")
            self.pinned = gui.add_slider("pinned scale", min=0.1, max=1.0, step=0.05,
                                         initial_value=1.0 if pinned is None else pinned, disabled=pinned is None)
        self.step = self.pause = None
        if viewer.live:
            with gui.add_folder("training"):
                self.step = gui.add_text("step", "", disabled=True)
                self.pause = gui.add_button(RESUME if viewer.paused else PAUSE)
        self._listen()

    def _on(self, handle, apply, click: bool = False) -> None:
        """Call ``apply(value)`` on the drawing thread when the user changes ``handle``."""

        def callback(event):
            if event.client is not None:
                value = event.target.value
                self.viewer.post(lambda: apply(value))

        (handle.on_click if click else handle.on_update)(callback)

    def _listen(self) -> None:
        s = self.client.session
        self._on(self.mode, self._set_mode)
        self._on(self.overlay, lambda v: (setattr(s, "overlay", bool(v)), self._redraw()))
        if self.camera is not None:
            self._on(self.camera, lambda name: name != FREE and self.viewer.jump(self.client, name))
        self._on(self.moves, lambda where: self.viewer.jump(self.client, where), click=True)
        self._on(self.pin, lambda on: self._pin(self.pinned.value if on else None))
        self._on(self.pinned, lambda v: self.pin.value and self._pin(v))
        if self.pause is not None:
            self._on(self.pause, lambda _: self._toggle_pause(), click=True)

    def _redraw(self) -> None:
        self.client.session.dirty = True

    def _set_mode(self, mode: str) -> None:
        if mode in self.client.session.view.modes:
            self.client.session.mode = mode
            self._redraw()

    def _pin(self, scale) -> None:
        self.client.session.res.pin(None if scale is None else float(scale))
        self.pinned.disabled = scale is None
        self._redraw()

    def _toggle_pause(self) -> None:
        viewer = self.viewer
        viewer.paused = not viewer.paused
        for client in viewer.clients.values():
            if client.panel.pause is not None:
                client.panel.pause.label = RESUME if viewer.paused else PAUSE
            client.session.dirty = True  # the status line says paused / training

    def refresh(self, now: float) -> None:
        """Readouts: the last picture's scale, the frame rate, the training step, the scene camera."""
        if now - self.refreshed < READOUT_EVERY_S:
            return
        self.refreshed = now
        c, s = self.client, self.client.session
        _set(self.scale, round(c.scale, 3) if c.scale is not None else 1.0)
        _set(self.fps, round(s.fps, 1))
        if self.step is not None:
            _set(self.step, self.viewer.info)
        if self.camera is not None:
            i = s.controls.preset_index
            moved = i < 0 or not _at(s, s.controls.presets[i].camera)
            _set(self.camera, FREE if moved else s.controls.presets[i].name)


def _set(handle, value) -> None:
    if handle.value != value:
        handle.value = value


def _at(session, camera) -> bool:
    """Whether the session's camera is still at the scene camera ``camera`` (same pose)."""
    import numpy as np

    return bool(np.allclose(session.camera.c2w, camera.c2w, atol=1e-9))


__all__ = ["FREE", "Panel", "READOUT_EVERY_S"]
