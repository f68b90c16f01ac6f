"""The argument parser every fieldfit command uses (``fieldfit.cli`` and the viewer)."""

import argparse

from .errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``InputError`` line naming the argument (not a usage block and a line)."""

    def error(self, message):
        raise InputError(self.prog, message, f"{self.prog} -h lists the options")


__all__ = ["Parser"]
