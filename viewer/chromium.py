"""Headless Chromium driven over the DevTools protocol: open a page, run a line of script, take a screenshot.

For the browser viewer's tests and bench (tests/viewer/test_web.py, bench/web_fps.py), without selenium or a
driver binary: Chromium starts with ``--remote-debugging-port=0`` and writes the port it took to
``DevToolsActivePort`` in its profile folder; the page's DevTools websocket (the ``websockets`` package, which viser
depends on) then carries JSON commands. WebGL runs on SwiftShader (software), so no GPU or display is needed. The
viewport is fixed at ``width`` x ``height`` CSS pixels at one device pixel each.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import numpy as np

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    return next((p for p in map(shutil.which, NAMES) if p), None)


# hide every element that neither is the WebGL canvas nor holds it (panels, notifications): the picture alone
HIDE_ALL_BUT_CANVAS = """(() => {
  const canvas = [...document.querySelectorAll('canvas')].sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!canvas) return false;
  for (const el of document.body.querySelectorAll('*'))
    if (!el.contains(canvas)) el.style.setProperty('visibility', 'hidden', 'important');
  return true;
})()"""


class Chromium:
    """One headless Chromium with one page. ``with Chromium(w, h) as b: b.open(url); img = b.screenshot()``."""

    def __init__(self, width: int, height: int, executable: str | None = None, timeout: float = 30.0):
        from websockets.sync.client import connect

        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no chromium executable on PATH (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="fieldfit-chromium-")
        flags = ["--headless=new", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                 f"--window-size={width},{height}", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox (containers, CI)
        self.proc = subprocess.Popen([exe, *flags, "about:blank"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.next_id = 0
        try:
            port = self._port(timeout)
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
            page = next(p for p in pages if p.get("type") == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
            self.call("Emulation.setDeviceMetricsOverride", width=int(width), height=int(height),
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited at start (code {self.proc.returncode})")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"chromium did not open its DevTools port in {timeout:.0f} s")

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self) -> np.ndarray:
        """The viewport as uint8 [H,W,3]."""
        import imageio.v3 as iio

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(iio.imread(io.BytesIO(data), extension=".png"))[..., :3]

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Chromium", "HIDE_ALL_BUT_CANVAS", "find_chromium"]
