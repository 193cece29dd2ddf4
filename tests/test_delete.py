"""`adaptbench delete`: by id or filter, with confirmation; refusals change nothing."""

from __future__ import annotations

import io
import sqlite3

import pytest
import sqlalchemy as sa

from adaptbench.store import Run, make_engine, write
from tests.conftest import invoke

FAST = ["--steps", "20"]


def table(name: str) -> list[tuple]:
    with sqlite3.connect("results.db") as conn:
        return conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()


def snapshot() -> tuple[list[tuple], list[tuple]]:
    return table("runs"), table("curve_points")


def ids_of(**where: str) -> list[int]:
    with sqlite3.connect("results.db") as conn:
        sql = "SELECT id FROM runs" + (" WHERE " + " AND ".join(f"{k} = ?" for k in where)
                                       if where else "") + " ORDER BY id"
        return [i for (i,) in conn.execute(sql, list(where.values()))]


def curve_run_ids() -> set[int]:
    return {row[1] for row in table("curve_points")}


@pytest.fixture
def stored(cli, workdir):
    """Two trained runs per optimizer (with curves) and two queued ones."""
    assert cli("run", "-o", "adam,sgd", "-t", "tabular-mlp", "--seeds", "2", *FAST).code == 0
    assert cli("queue", "-o", "rmsprop", "-t", "tabular-mlp", "--seeds", "2").code == 0
    return workdir


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer in it."""

    def isatty(self) -> bool:
        return True


def test_delete_by_id_removes_the_runs_and_their_curves(stored):
    first = ids_of(optimizer="adam")[0]
    assert first in curve_run_ids()
    r = invoke("delete", str(first), "--yes")
    assert r.code == 0, r.err
    assert "deleted 1 run(s): 1 done" in r.err
    assert first not in ids_of() and first not in curve_run_ids()
    assert len(ids_of()) == 5


def test_delete_by_filter(stored):
    r = invoke("delete", "--optim", "sgd", "--yes")
    assert r.code == 0, r.err
    assert ids_of(optimizer="sgd") == []
    assert len(ids_of()) == 4
    assert curve_run_ids() == set(ids_of(optimizer="adam"))
    assert invoke("delete", "--status", "queued", "--yes").code == 0
    assert ids_of(optimizer="rmsprop") == []


def test_delete_asks_and_a_yes_deletes(stored, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    r = invoke("delete", "--optim", "rmsprop")
    assert r.code == 0, r.err
    assert "delete 2 run(s) (2 queued)" in r.out
    assert ids_of(optimizer="rmsprop") == []


def test_declined_confirmation_deletes_nothing(stored, monkeypatch):
    before = snapshot()
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    r = invoke("delete", "--optim", "adam")
    assert r.code == 1
    assert "nothing deleted" in r.err
    assert snapshot() == before


def test_without_a_terminal_and_without_yes_it_refuses(stored, monkeypatch):
    before = snapshot()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    r = invoke("delete", "--optim", "adam")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "--yes" in r.err
    assert snapshot() == before


def test_running_runs_are_refused(stored):
    running = ids_of(optimizer="rmsprop")[0]
    engine = make_engine("results.db")
    with write(engine) as conn:
        conn.execute(sa.update(Run).where(Run.id == running).values(status="running"))
    engine.dispose()
    before = snapshot()
    for args in ([str(running)], ["--task", "tabular-mlp"]):
        r = invoke("delete", *args, "--yes")
        assert r.code == 2
        assert r.err.count("\n") == 1 and "running" in r.err and str(running) in r.err
        assert snapshot() == before


@pytest.mark.parametrize("args", [["999"], ["--optim", "adamm"], ["--status", "bogus"], []])
def test_unknown_runs_or_no_selection_are_one_line_errors(stored, args):
    before = snapshot()
    r = invoke("delete", *args, "--yes")
    assert r.code == 2
    assert r.err.count("\n") == 1 and r.err.startswith("adaptbench: error:")
    assert snapshot() == before
