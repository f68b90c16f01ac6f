"""Typed options: each method's ``Config`` is a dataclass whose fields are its command-line flags.

A field made with ``option(default, help, ...)`` is a flag (``--max-res`` for ``max_res``); a plain field
is a setting reachable only from Python (``fieldfit.fit(..., grid_every=8)``) and config.json. A default of
None means "decided by the preset" (``Config.for_...`` named constructors fill it from the scene and the
device). ``given_options`` checks what a user passed against a Config before anything runs: an unknown name,
a value of the wrong type or outside its range is one ``InputError`` naming the flag and the fix.
"""

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, fields

from .errors import InputError

ON = ("on", "true", "yes", "1")
OFF = ("off", "false", "no", "0")
# Sane upper bounds the methods' options share (``option(..., high=)``): beyond them a value means "all the
# memory" or "forever", never a better fit.
MAX_RES = 1 << 16  # grid resolution, cells per side
MAX_BATCH = 1 << 22  # samples (pixels, points, rays) per optimisation step
MAX_POINTS = 10**8  # sampled points (training sets, IoU probes)
MAX_LR = 10.0  # learning rate


def option(default, help: str, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False):
    """A Config field that is also a command-line flag.

    Args:
        default: its value when not given (None: decided by the preset).
        help: one line for ``--help``: what it is, its unit, what None means.
        choices: the allowed values (strings).
        low, high: the allowed range (inclusive; ``low_open``: low itself excluded).
    """
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open}
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp):
    """int for ``int | None``, etc.; tuples and other containers come back as they are."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


@dataclass(frozen=True)
class Flag:
    """A command-line flag of a Config field."""

    name: str  # the field name
    type: type
    help: str
    default: object
    choices: tuple | None
    low: float | None
    high: float | None
    low_open: bool

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    def parse(self, value):
        """The field's value from a command-line string or a Python value; InputError when it does not fit."""
        if value is None:
            return None
        tp = self.type
        try:
            if tp is bool:
                if isinstance(value, bool):
                    out = value
                elif str(value).lower() in ON + OFF:
                    out = str(value).lower() in ON
                else:
                    raise ValueError
            elif tp is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out = int(value) if not isinstance(value, str) else int(value.strip())
            elif tp is float:
                out = float(value)
            else:
                out = str(value)
        except (TypeError, ValueError):
            want = {bool: "on or off", int: "an integer", float: "a number"}.get(tp, "a word")
            raise InputError(f"{self.flag} {value}", f"expected {want}", f"e.g. {self.flag} {self.example()}") from None
        self.check(out)
        return out

    def check(self, v) -> None:
        if self.type is float and not math.isfinite(v):
            raise InputError(f"{self.flag} {v}", "must be a finite number", f"e.g. {self.flag} {self.example()}")
        if self.choices is not None and v not in self.choices:
            raise InputError(f"{self.flag} {v}", "not a known value",
                             f"choose one of {', '.join(map(str, self.choices))}")
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            rel = ">" if self.low_open else ">="
            raise InputError(f"{self.flag} {v}", f"must be {rel} {self.low:g}", f"e.g. {self.flag} {self.example()}")
        if self.high is not None and v > self.high:
            raise InputError(f"{self.flag} {v}", f"must be <= {self.high:g}", f"e.g. {self.flag} {self.example()}")

    def example(self) -> str:
        """A value the flag takes: its default, else its first choice, else its lowest allowed number."""
        if self.default is not None and not isinstance(self.default, bool):
            return str(self.default)
        if self.choices:
            return str(self.choices[0])
        if self.low is not None and self.type in (int, float):
            low = self.type(self.low)
            if self.low_open:  # low itself is refused
                low = low * 2 if low > 0 else low + 1
            return str(low)
        return {bool: "on", int: "1", float: "1.0"}.get(self.type, "VALUE")


def config_flags(cls) -> dict[str, Flag]:
    """name -> Flag for every ``option`` field of the Config dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        m = f.metadata
        out[f.name] = Flag(f.name, _base_type(hints[f.name]), m["help"], None if f.default is MISSING else f.default,
                           m["choices"], m["low"], m["high"], m["low_open"])
    return out


def setting_names(cls) -> set[str]:
    """Every field name of ``cls`` (flags and Python-only settings)."""
    return {f.name for f in fields(cls)}


def given_options(cls, given: dict, what: str) -> dict:
    """``given`` (name -> value, None for not given) checked and parsed against Config ``cls``.

    Names may be flags or Python-only settings; ``what`` says whose options they are for the error
    ("--method bsp", "rbf image fits").
    """
    flags = config_flags(cls)
    names = setting_names(cls)
    out = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in names:
            listing = ", ".join(sorted(f.flag for f in flags.values()))
            raise InputError(flag_name(name), f"not an option of {what}", f"its options: {listing}")
        out[name] = flags[name].parse(value) if name in flags else _setting(name, value)
    return out


def _setting(name: str, value):
    """A Python-only setting as given; InputError for a number that is not finite (nan, inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{name}={value}", "must be a finite number", "leave it out for its default")
    return value


class ConfigBase:
    """Helpers every method's Config dataclass shares (mixin).

    ``SHAPE_OPTIONS``: the names whose value sets the shapes of the saved tensors (grid sizes, layer widths,
    counts); a resume refuses a value other than the run's (``shape_changes``)."""

    SHAPE_OPTIONS: typing.ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """The Config saved by ``to_dict`` (config.json); names it does not know are ignored."""
        names = setting_names(cls)
        hints = typing.get_type_hints(cls)
        kw = {}
        for k, v in (d or {}).items():
            if k in names:
                kw[k] = tuple(v) if isinstance(v, list) and _base_type(hints[k]) is tuple else v
        return cls(**kw)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def shape_changes(cls, saved: dict, given: dict) -> list[tuple[str, object]]:
    """(name, saved value) of each option in ``given`` that Config ``cls`` declares shape-setting
    (``SHAPE_OPTIONS``) and whose value differs from ``saved`` (a run's resolved config)."""
    return [(name, saved.get(name)) for name, value in given.items()
            if name in cls.SHAPE_OPTIONS and value is not None and value != saved.get(name)]


__all__ = ["MAX_BATCH", "MAX_LR", "MAX_POINTS", "MAX_RES", "ConfigBase", "Flag", "config_flags", "flag_name",
           "given_options", "option", "setting_names", "shape_changes"]
