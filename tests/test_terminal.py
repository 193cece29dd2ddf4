"""Terminal tables fit the console without breaking a number or a name; `--version`; a closed
pipe (`adaptbench ... | head -1`) exits 0."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from adaptbench import __version__
from adaptbench import render as rd
from tests.conftest import invoke

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDTH = 100
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """A small real database: 2 optimizers x 2 tasks x 2 lrs x 2 seeds, a few steps each."""
    path = tmp_path_factory.mktemp("terminal") / "results.db"
    r = invoke("run", "-o", "adam,sgd", "-t", "tabular-mlp,sparse-text", "--lr", "0.001,0.01",
               "--seeds", "2", "--steps", "20", "--db", str(path))
    assert r.code == 0, r.err
    return str(path)


@pytest.fixture
def terminal(monkeypatch):
    """Rich output as on a terminal WIDTH columns wide (Rich reads FORCE_COLOR and COLUMNS)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.delenv("NO_COLOR", raising=False)


def hidden_keys(err: str) -> set[str]:
    match = re.search(r"hidden to fit \d+ columns: (.*) \(--wide shows them\)", err)
    return set(match.group(1).split(", ")) if match else set()


def shown_whole(cell: str, out: str) -> bool:
    """Whether `cell` appears in `out` on one line, not as part of a longer number or name."""
    return re.search(r"(?<![\w.@-])" + re.escape(cell) + r"(?![\w.@-])", out) is not None


def expected_cells(csv_text: str, columns: list[str] | None, hidden: set[str]) -> set[str]:
    """Every number (and name) of the CSV output, as the terminal table writes it, in the
    columns that are shown."""
    table = pd.read_csv(io.StringIO(csv_text))
    parts = ([part.dropna(axis=1, how="all").drop(columns="table")
              for _, part in table.groupby("table")] if "table" in table.columns else [table])
    cells: set[str] = set()
    for part in parts:
        names = list(part.columns)
        for i, column in enumerate(names):
            owner = next((names[j] for j in (i - 1, i - 2) if j >= 0 and column.endswith(
                ("ci_low", "ci_high")) and not names[j].endswith(("ci_low", "ci_high"))), column)
            if columns is not None and column not in columns or owner in hidden:
                continue
            if column in rd.FREE_TEXT:
                continue
            show = rd._formatter(column, part[column])
            cells |= {show(v) for v in part[column]} - {rd.MISSING}
    return cells


COMMANDS = [
    (["tasks"], None),
    (["report"], None),
    (["report", "summary"], None),
    (["report", "compare", "adam@20steps", "sgd@20steps"], None),
    (["report", "wins"], ["win_rate", "ci_low", "ci_high"]),
    (["ls"], None),
]


@pytest.mark.parametrize("args, columns", COMMANDS, ids=lambda a: " ".join(a or []))
def test_terminal_table_fits_and_keeps_every_shown_number_whole(args, columns, db, terminal):
    extra = [] if args == ["tasks"] else ["--db", db]
    r = invoke(*args, *extra)
    assert r.code == 0, r.err
    out = ANSI.sub("", r.out)
    assert out.strip()
    assert max(map(len, out.splitlines())) <= WIDTH
    csv = invoke(*args, *extra, "--format", "csv")
    hidden = hidden_keys(r.err)
    cells = expected_cells(csv.out, columns, hidden)
    assert cells
    broken = sorted(c for c in cells if not shown_whole(c, out))
    assert not broken, f"not shown whole: {broken}"
    if hidden:
        assert "--wide" in r.err


@pytest.mark.parametrize("args, columns", COMMANDS, ids=lambda a: " ".join(a or []))
def test_wide_shows_every_column(args, columns, db, terminal):
    extra = [] if args == ["tasks"] else ["--db", db]
    r = invoke(*args, *extra, "--wide")
    assert r.code == 0, r.err
    assert "hidden" not in r.err
    out = ANSI.sub("", r.out)
    csv = invoke(*args, *extra, "--format", "csv").out
    broken = sorted(c for c in expected_cells(csv, columns, set()) if not shown_whole(c, out))
    assert not broken, f"not shown whole: {broken}"
    if columns is None:
        header = pd.read_csv(io.StringIO(csv), nrows=0).columns
        for name in header:
            if name != "table" and not name.endswith(("ci_low", "ci_high")):
                assert shown_whole(name, out), name


def test_summary_merges_each_interval_into_one_column(db, terminal):
    r = invoke("report", "--db", db, "--wide")
    out = ANSI.sub("", r.out)
    assert "mean [low, high]" in out and "loss_mean [low, high]" in out
    assert "ci_low" not in out and "loss_ci_high" not in out
    summary = pd.read_csv(io.StringIO(invoke("report", "--db", db, "--format", "csv").out))
    row = summary.iloc[0]
    cell = (f"{rd.format_number(row['mean'])} [{rd.format_number(row['ci_low'])}, "
            f"{rd.format_number(row['ci_high'])}]")
    assert cell in out


def test_piped_and_data_output_are_unchanged_by_wide(db):
    for fmt in ("table", "csv", "json", "markdown"):
        assert (invoke("report", "--db", db, "--format", fmt).out
                == invoke("report", "--db", db, "--format", fmt, "--wide").out)
    assert "hidden" not in invoke("ls", "--db", db).err


def test_version():
    r = invoke("--version")
    assert r.code == 0
    assert r.out == f"adaptbench {__version__}\n"


def adaptbench_command() -> str:
    return f"{sys.executable} -c 'from adaptbench.cli import main; main()'"


@pytest.mark.parametrize("args", [
    "queue -o adam -t sparse-text --lr 0.1,0.2,0.3,0.4 --seeds 200",
    "ls",
])
def test_a_closed_pipe_exits_zero(args, tmp_path):
    db = tmp_path / "pipe.db"
    assert invoke("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "300", "--db", db).code == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAPTBENCH_DB": str(db)}
    script = f"set -o pipefail; {adaptbench_command()} {args} | head -1 > /dev/null"
    codes = []
    for _ in range(5):  # the pipe closes at a different point each time
        done = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        codes.append(done.returncode)
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert codes == [0] * 5


@pytest.mark.parametrize("args", [
    ["report", "ranks"], ["report", "lr"], ["report", "speed"], ["report", "profile"],
    ["report", "claims"], ["report", "wins", "--statistic", "improvement"], ["status"],
    ["optims"],
], ids=lambda a: " ".join(a))
def test_every_other_table_command_fits_a_100_column_terminal(db, terminal, args):
    from rich.cells import cell_len

    r = invoke(*args, "--db", db) if args[0] not in ("optims",) else invoke(*args)
    assert r.code == 0, r.err
    lines = ANSI.sub("", r.out).splitlines()
    assert lines and max(cell_len(line) for line in lines) <= WIDTH, args


def test_optims_in_an_80_column_terminal_shows_every_setting_whole(monkeypatch):
    from rich.cells import cell_len

    from adaptbench.optimizers import OPTIMIZERS, format_setting

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    r = invoke("optims")
    assert r.code == 0, r.err
    out = ANSI.sub("", r.out)
    assert max(cell_len(line) for line in out.splitlines()) <= 80
    header = next(line for line in out.splitlines() if "settings" in line).split()
    assert header == ["name", "default_lr", "settings", "differs"]  # the rest hidden, with a note
    assert hidden_keys(r.err) == {"reference", "runs", "description", "update"}
    for info in OPTIMIZERS.values():
        for key, value in info.settings.items():
            assert shown_whole(f"{key}={format_setting(value)}", out), (info.name, key)
    wide = ANSI.sub("", invoke("optims", "--wide").out)
    assert "update" in wide and "v = μ·v + g" in wide and "hidden" not in invoke("optims", "--wide").err
