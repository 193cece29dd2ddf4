"""Progress of training: the plain line per finished run, with [k/N] and a time estimate."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr
from types import SimpleNamespace

LINE = re.compile(r"^run (\d+) done: noisy-quadratic adam lr=0\.01 seed=\d test_metric=\S+ "
                  r"\(\d+\.\ds\) \[(\d+)/(\d+)(?:, eta (\d+):(\d\d):(\d\d))?\]$", re.M)
FAST = ["-o", "adam", "-t", "noisy-quadratic", "--lr", "0.01", "--steps", "10"]


def _positions(err: str) -> list[tuple[int, int, bool]]:
    return [(int(m[2]), int(m[3]), m[4] is not None) for m in LINE.finditer(err)]


def test_run_off_a_terminal_logs_each_run_with_n_of_total_and_eta(cli):
    r = cli("run", *FAST, "--seeds", "3")
    assert r.code == 0, r.err
    # an estimate while runs are left, none after the last
    assert _positions(r.err) == [(1, 3, True), (2, 3, True), (3, 3, False)]


def test_worker_counts_what_it_finished_against_what_is_still_queued(cli):
    assert cli("queue", *FAST, "--seeds", "2").code == 0
    r = cli("worker")
    assert r.code == 0, r.err
    assert _positions(r.err) == [(1, 2, True), (2, 2, False)]


def test_worker_total_grows_with_runs_queued_meanwhile(cli):
    """N is this worker's finished runs plus those queued now: two runs queued and none taken,
    two finished lines read [1/3] and [2/4]."""
    from adaptbench import worker
    from adaptbench.store import make_engine

    assert cli("queue", *FAST, "--seeds", "2").code == 0
    events = worker.log_events(make_engine(None))
    spec = SimpleNamespace(task="noisy-quadratic", optimizer="adam", lr=0.01, seed=0)
    err = io.StringIO()
    with redirect_stderr(err):
        for _ in range(2):
            events.finished(SimpleNamespace(run_id=9, spec=spec), "done",
                            {"final_test_metric": 0.5, "wall_seconds": 0.1})
    assert _positions(err.getvalue()) == [(1, 3, True), (2, 4, True)]


def test_a_run_handed_back_or_retried_is_not_counted_as_finished(cli):
    """A run that goes back to the queue (a signal, a killed training process) is counted among
    the runs left, not the finished: with two runs queued, a requeued one reads [0/2]."""
    from adaptbench import worker
    from adaptbench.store import make_engine

    assert cli("queue", *FAST, "--seeds", "2").code == 0
    events = worker.log_events(make_engine(None))
    spec = SimpleNamespace(task="noisy-quadratic", optimizer="adam", lr=0.01, seed=0)
    err = io.StringIO()
    with redirect_stderr(err):
        for status in ("requeued", "retried"):
            events.finished(SimpleNamespace(run_id=1, spec=spec), status, {"error": "killed"})
    assert re.findall(r"\[(\d+)/(\d+)\]$", err.getvalue(), re.M) == [("0", "2"), ("0", "2")]
