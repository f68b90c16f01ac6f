"""Shared test helpers: the shared data folder, a CUDA marker that really skips, small CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def data_path(*parts) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests that read real data need ../shared/data beside the repo)")
    return p


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m fieldfit ARGS` in a subprocess; return CompletedProcess (text)."""
    env = dict(os.environ, FIELDFIT_NO_TCMALLOC="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fieldfit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
