"""Where the browser viewer listens: the port and host checked before anything is loaded, viser imported on
demand, and the one line that tells the user where to point a browser (through an ssh tunnel from a laptop).

The default host is 127.0.0.1: only this machine reaches the viewer, and a laptop reaches it through
``ssh -L PORT:127.0.0.1:PORT user@server``. viser itself would listen on every interface and move to the next port
when one is taken; fieldfit asks it for exactly ``host:port`` and stops with one line (exit 2) otherwise.
"""

import contextlib
import errno
import io
import socket

from fieldfit.errors import InputError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7007


def quiet():
    """viser prints a banner and "Server stopped" with rich on stdout: fieldfit prints its own single line."""
    return contextlib.redirect_stdout(io.StringIO())


def port_error(port: int) -> InputError:
    return InputError(f"--port {port}", "already in use (another viewer or server is listening there)",
                      f"choose a free one, e.g. --port {port + 1}")


def check_port(host: str, port: int) -> None:
    """InputError when ``host:port`` cannot be listened on: the port is taken, or the host is not this machine's."""
    if not 0 < int(port) < 65536:
        raise InputError(f"--port {port}", "must be between 1 and 65535", "e.g. --port 7007")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port just closed is free
        try:
            s.bind((host, int(port)))
        except (socket.gaierror, UnicodeError) as e:  # gaierror first: it is an OSError too
            raise InputError(f"--host {host}", f"not an address ({e})", "e.g. --host 127.0.0.1") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise port_error(port) from None
            raise InputError(f"--host {host}", f"cannot listen there ({e.strerror or e})",
                             "use the default 127.0.0.1, or an address of this machine") from None


def require_viser():
    """The viser module; InputError naming the extra to install when it is missing."""
    try:
        import viser
    except ImportError:
        raise InputError("--web", "the browser viewer needs the viser package, which is not installed",
                         "pip install 'fieldfit[web]'") from None
    return viser


def access_line(host: str, port: int) -> str:
    """The one line that says where the viewer is and how to reach it from a laptop."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return (f"web viewer at http://{shown}:{port}  (from a laptop: ssh -L {port}:127.0.0.1:{port} user@this-server, "
            f"then open http://localhost:{port}); Ctrl-C stops it")


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "access_line", "check_port", "port_error", "quiet", "require_viser"]
