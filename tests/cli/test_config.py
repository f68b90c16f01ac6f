"""Typed configs: flags come from the methods' Config dataclasses; what does not apply is refused in one line."""

import math

import pytest

from conftest import run_cli, run_main
from fieldfit.config import config_flags, given_options
from fieldfit.errors import InputError
from fieldfit.methods import bsp, dnmp, pronerf, rbf
from fieldfit.trainer import Budget


def _one_line(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip().splitlines()
    assert len(err) <= 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_every_config_field_is_typed_and_every_flag_has_help():
    for package in (rbf, bsp, dnmp, pronerf):
        for task, cls in package.CONFIGS.items():
            assert task in package.TASKS
            assert cls.DEFAULT_SECONDS > 0
            flags = config_flags(cls)
            assert flags, cls
            for name, f in flags.items():
                assert f.help, (cls.__name__, name)
                assert f.type in (int, float, str, bool), (cls.__name__, name, f.type)
            cfg = cls()
            assert type(cfg).from_dict(cfg.to_dict()) == cfg  # config.json round trip


def test_given_options_parse_check_and_name_the_flag():
    cls = rbf.CONFIGS["sdf"]
    got = given_options(cls, {"max_res": "64", "lr": "0.01", "kernel": "gaussian", "batch": None}, "rbf sdf")
    assert got == {"max_res": 64, "lr": 0.01, "kernel": "gaussian"}
    for given, needle in (({"max_res": "big"}, "--max-res big"), ({"batch": "-1"}, "--batch -1"),
                          ({"lr": "nan"}, "finite"), ({"kernel": "foo"}, "choose one of"),
                          ({"units": 1.5}, "integer"), ({"convexes": 8}, "not an option of rbf sdf")):
        with pytest.raises(InputError, match=needle):
            given_options(cls, given, "rbf sdf")
    with pytest.raises(InputError) as e:
        given_options(cls, {"grid_ratio": 0.25}, "rbf sdf")  # an image option on a shape
    assert "--thin-frac" in e.value.fix  # the message lists the options that do apply


def test_budget_is_one_object_and_refuses_nonsense():
    assert Budget.of(None, None, 60.0) == Budget(time_budget=60.0)
    assert Budget.of(30, None, 60.0) == Budget(time_budget=30.0)
    assert Budget.of(30, 100, 60.0) == Budget(steps=100)  # steps win
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(InputError, match="--time-budget"):
            Budget.of(bad, None, 60.0)
    for bad in (0, -5, 2.5):
        with pytest.raises(InputError, match="--steps"):
            Budget.of(None, bad, 60.0)
    b = Budget(time_budget=100.0)
    assert b.share(0.25) == Budget(time_budget=25.0)
    assert b.left(seconds_spent=30) == Budget(time_budget=70.0)
    assert Budget(steps=10).left(steps_done=4) == Budget(steps=6)
    assert b.progress(0, 50.0) == 0.5


def test_cli_refuses_flags_of_another_method_or_task(tmp_path):
    _one_line(run_cli("csg", "--method", "bsp", "--units", "8", "--out", tmp_path / "a"), "--units",
              "not an option of --method bsp", "--convexes")
    _one_line(run_main("rings", "--thin-frac", "0.2", "--steps", "1", "--out", tmp_path / "b"), "--thin-frac",
              "image inputs", "--grid-ratio")
    _one_line(run_main("csg", "--method", "pronerf", "--out", tmp_path / "c"), "--method pronerf", "fits: radiance")
    _one_line(run_main("csg", "--time-budget", "-1", "--out", tmp_path / "d"), "--time-budget -1")
    _one_line(run_main("csg", "--steps", "0", "--out", tmp_path / "e"), "--steps 0")
    _one_line(run_main("csg", "--method", "nope", "--out", tmp_path / "f"), "--method nope", "unknown method")
    for name in "abcdef":  # refused before any work: no run folder left behind
        assert not (tmp_path / name).exists(), name


def test_method_help_lists_its_own_flags():
    res = run_cli("--method", "bsp", "--help")
    assert res.returncode == 0
    assert "--convexes" in res.stdout
    assert "--grid-ratio" not in res.stdout
    res = run_cli("--help")  # a process: argparse's --help exits
    assert res.returncode == 0
    assert "--grid-ratio" in res.stdout
    assert "--thin-frac" in res.stdout
