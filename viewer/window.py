"""The native window: GLFW + legacy OpenGL, one texture, one quad.

Why GLFW (through the ``glfw`` wheel, which bundles libglfw) rather than pyglet or Qt: the
viewer needs a window, input callbacks and a GL context, nothing more. GLFW is exactly that
(~1 MB, no toolkit, no event loop of its own), so the viewer owns its loop and can interleave
frames with training steps (fit --view). pyglet brings its own app loop and text stack; Qt is a
large dependency with platform-plugin failures on remote machines. GLFW runs under Xvfb
with Mesa's llvmpipe (libgl1-mesa-dri), and the picture is composed on the CPU
(viewer/overlay.py), so the GL side is only a texture upload and needs GL 1.1 at most.
"""

import os
import sys

import numpy as np

from fieldfit.errors import InputError

NO_DISPLAY_FIX = "render to a file instead: fieldfit view RUN --screenshot out.png; or run under xvfb-run, or ssh -X"

_KEYS = None


def has_display() -> bool:
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True  # macOS and Windows always have a desktop session for a local user


def _import_glfw():
    try:
        import glfw
        from OpenGL import GL
    except ImportError as e:
        raise InputError("fieldfit view", f"the viewer window needs glfw and PyOpenGL ({e.name} is missing)",
                         "pip install 'fieldfit[viewer]', or " + NO_DISPLAY_FIX) from None
    except Exception as e:  # the glfw wheel raises ImportError/OSError variants when libglfw cannot load
        raise InputError("fieldfit view", f"cannot load GLFW/OpenGL ({e})", NO_DISPLAY_FIX) from None
    return glfw, GL


def check_display() -> None:
    """InputError (exit 2) with the --screenshot hint when no window can be opened here."""
    if not has_display():
        raise InputError("fieldfit view", "no display to open a window on (DISPLAY is not set)", NO_DISPLAY_FIX)
    _import_glfw()


def _key_names(glfw) -> dict:
    names = {getattr(glfw, f"KEY_{c}"): c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}
    names.update({glfw.KEY_LEFT_BRACKET: "[", glfw.KEY_RIGHT_BRACKET: "]", glfw.KEY_MINUS: "-",
                  glfw.KEY_EQUAL: "=", glfw.KEY_ESCAPE: "escape", glfw.KEY_KP_ADD: "=", glfw.KEY_KP_SUBTRACT: "-"})
    return names


class Window:
    """A GLFW window that shows uint8 pictures and forwards input to a Session."""

    def __init__(self, session, width: int, height: int, title: str = "fieldfit"):
        check_display()
        glfw, GL = _import_glfw()
        self.glfw, self.GL, self.session = glfw, GL, session
        glfw.ERROR_REPORTING = "ignore"  # failures are reported below as one clear line
        if not glfw.init():
            raise InputError("fieldfit view", f"cannot open a window on display {os.environ.get('DISPLAY', '?')!r}",
                             NO_DISPLAY_FIX)
        glfw.window_hint(glfw.RESIZABLE, glfw.TRUE)
        self.win = glfw.create_window(int(width), int(height), title, None, None)
        if not self.win:
            glfw.terminate()
            raise InputError("fieldfit view", "cannot create an OpenGL window (no GL driver?)", NO_DISPLAY_FIX)
        glfw.make_context_current(self.win)
        glfw.swap_interval(0)  # the resolution controller paces frames, not the monitor
        self.keys = _key_names(glfw)
        self.mouse = None  # (x, y) while a button is held
        self.button = None
        self.tex = GL.glGenTextures(1)
        self.capture = False  # keep a read-back of each frame drawn (tests, --grab)
        self.captured = None  # uint8 [H,W,3]: what the last frame drew, read back from OpenGL
        self._callbacks()

    def _callbacks(self) -> None:
        g = self.glfw
        g.set_key_callback(self.win, self._on_key)
        g.set_mouse_button_callback(self.win, self._on_button)
        g.set_cursor_pos_callback(self.win, self._on_cursor)
        g.set_scroll_callback(self.win, lambda w, dx, dy: self.session.scroll(dy))
        g.set_framebuffer_size_callback(self.win, lambda w, fw, fh: self.session.moved())

    def _on_key(self, win, key, scancode, action, mods) -> None:
        name = self.keys.get(key)
        if name is None or action == self.glfw.REPEAT:
            return
        if action == self.glfw.RELEASE:
            self.session.release(name)
        elif name == "escape":
            self.glfw.set_window_should_close(self.win, True)
        else:
            self.session.press(name)

    def _on_button(self, win, button, action, mods) -> None:
        g = self.glfw
        if action == g.PRESS:
            pan = button in (g.MOUSE_BUTTON_RIGHT, g.MOUSE_BUTTON_MIDDLE) or bool(mods & g.MOD_SHIFT)
            self.button, self.mouse = ("pan" if pan else "orbit"), g.get_cursor_pos(self.win)
        elif action == g.RELEASE:
            self.button = self.mouse = None

    def _on_cursor(self, win, x, y) -> None:
        if self.mouse is None:
            return
        dx, dy = x - self.mouse[0], y - self.mouse[1]
        self.mouse = (x, y)
        self.session.drag(dx, dy, self.glfw.get_window_size(self.win)[1], pan=self.button == "pan")

    # -- loop pieces ------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """Framebuffer (width, height) in pixels."""
        return tuple(self.glfw.get_framebuffer_size(self.win))

    def closed(self) -> bool:
        return bool(self.glfw.window_should_close(self.win))

    def poll(self, wait: float = 0.0) -> None:
        """Handle pending input; when ``wait`` > 0 sleep up to that long for input first."""
        if wait > 0:
            self.glfw.wait_events_timeout(wait)
        else:
            self.glfw.poll_events()

    def show(self, img: np.ndarray) -> None:
        """Draw ``img`` (uint8 [H,W,3], the framebuffer's size) as a texture on a full-window quad."""
        GL = self.GL
        h, w = img.shape[:2]
        GL.glViewport(0, 0, w, h)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.tex)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        for p in (GL.GL_TEXTURE_MIN_FILTER, GL.GL_TEXTURE_MAG_FILTER):
            GL.glTexParameteri(GL.GL_TEXTURE_2D, p, GL.GL_NEAREST)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_RGB8, w, h, 0, GL.GL_RGB, GL.GL_UNSIGNED_BYTE,
                        np.ascontiguousarray(img))
        GL.glEnable(GL.GL_TEXTURE_2D)
        GL.glBegin(GL.GL_QUADS)  # image row 0 is the top: texture v = 0 at the top edge
        for (u, v), (x, y) in (((0, 1), (-1, -1)), ((1, 1), (1, -1)), ((1, 0), (1, 1)), ((0, 0), (-1, 1))):
            GL.glTexCoord2f(u, v)
            GL.glVertex2f(x, y)
        GL.glEnd()
        GL.glDisable(GL.GL_TEXTURE_2D)
        GL.glFinish()
        if self.capture:
            self.captured = self._read_back()
        self.glfw.swap_buffers(self.win)

    def _read_back(self) -> np.ndarray:
        GL = self.GL
        w, h = self.size
        GL.glReadBuffer(GL.GL_BACK)  # the front buffer of a GLX window is not readable everywhere (Xvfb)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, w, h, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()

    def close(self) -> None:
        if getattr(self, "win", None):
            self.glfw.destroy_window(self.win)
            self.win = None
            self.glfw.terminate()
