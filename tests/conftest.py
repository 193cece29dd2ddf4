"""Shared fixtures: an isolated working folder and an in-process `adaptbench` command."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest

from adaptbench.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def invoke(*args: str) -> Result:
    """Run `adaptbench ARGS` in this process through the real entry point (main)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder with no ADAPTBENCH_* settings leaking in from the environment."""
    monkeypatch.chdir(tmp_path)
    for var in ("ADAPTBENCH_DB", "ADAPTBENCH_TASKS", "ADAPTBENCH_BUSY_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def cli(workdir):
    """`cli("run", "--optim", ...)` -> Result(code, out, err), in a fresh working folder."""
    return invoke
