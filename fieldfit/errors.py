"""User-facing errors: one line, naming the file and the fix; the CLI exits with code 2."""


class InputError(Exception):
    """Bad user input (missing file, malformed json, wrong image size, NaN vertices, ...).

    The message must name the offending file (or argument) and say what to do.
    The CLI prints it on one line, without a traceback, and exits with code 2. ``detail``: what a library said
    at length (a decoder's multi-line advice), for the run's log only, never the terminal.
    """

    def __init__(self, path, problem: str, fix: str = "", detail: str = ""):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        self.detail = detail
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class FitError(Exception):
    """A fit that cannot produce its result (diverged, empty surface); the CLI exits with 1."""


class Stopped(KeyboardInterrupt):
    """A fit stopped by SIGINT (Ctrl-C) or SIGTERM, its checkpoint saved; the CLI prints the message on one line and
    exits with 128 + the signal's number (130, 143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class Silent(Exception):
    """A rank other than 0 of a distributed fit stopping because rank 0 did (rank 0 printed why): the CLI prints
    nothing and exits with ``exit_code``."""

    def __init__(self, exit_code: int = 2):
        super().__init__(f"exit {exit_code}")
        self.exit_code = int(exit_code)
