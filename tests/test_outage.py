"""Database outages: workers wait them out (backoff, one line when the database is lost and one
when it is back, the run in training trains on) and stop, in one line, only past --db-outage.

The PostgreSQL test stops the session's loopback server mid-study and starts it again.
"""

from __future__ import annotations

import collections
import re
import signal
import time

import pytest
import sqlalchemy as sa

from adaptbench import faults, queue, store, worker
from tests.test_faults import FIXTURE_TASKS, Workers, wait_until


def _refused() -> sa.exc.OperationalError:
    """What SQLAlchemy raises when the server is down."""
    return sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_an_outage_is_waited_out_with_one_line_when_lost_and_one_when_back(monkeypatch):
    monkeypatch.setattr(faults, "BACKOFF_FIRST", 0.01)
    lines: list[str] = []
    outage = faults.Outage(None, log=lines.append)
    failures = iter(range(4))

    def flaky() -> str:
        if next(failures, None) is not None:
            raise _refused()
        return "stored"

    assert outage.call(flaky) == "stored"
    assert len(lines) == 2, lines
    assert lines[0].startswith("adaptbench worker: database unreachable (")
    assert "retrying until it is back (--db-outage)" in lines[0]
    assert re.fullmatch(r"adaptbench worker: database back after \d+\.\d s", lines[1])


def test_an_outage_past_the_limit_is_one_error_and_other_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr(faults, "BACKOFF_FIRST", 0.01)
    outage = faults.Outage(0.2, log=lambda line: None)

    def down() -> None:
        raise _refused()

    start = time.monotonic()
    with pytest.raises(faults.Unreachable, match=r"unreachable for 0 s \(worker --db-outage 0.2\)"):
        outage.call(down)
    assert time.monotonic() - start < 2
    calls = []

    def broken() -> None:  # a bug, not an outage: raised at once
        calls.append(1)
        raise sa.exc.ProgrammingError("SELECT nonsense", {}, Exception("syntax error"))

    with pytest.raises(sa.exc.ProgrammingError):
        faults.Outage(None).call(broken)
    assert calls == [1]


def test_heartbeats_during_an_outage_keep_the_training_going(tmp_path, monkeypatch, capsys):
    """The heartbeat fails for a while: the run trains on and is stored, the lease renewed."""
    monkeypatch.setenv("ADAPTBENCH_TEST_STEP_SLEEP", "0.6")  # 5 steps: a run of 3 s
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "1")
    real, beats = queue.heartbeat, collections.Counter()

    def heartbeat(*args, **kwargs):
        beats["tried"] += 1
        if beats["tried"] <= 3:  # about the first second of the run
            raise _refused()
        beats["held"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "heartbeat", heartbeat)
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], lease_seconds=1.0)
    assert worker.work(w.engine, opts) == {"done": 1}
    assert beats["held"] >= 1, beats  # a beat after the outage renewed the lease
    assert [r["status"] for r in w.runs().values()] == ["done"]
    err = capsys.readouterr().err
    assert err.count("database unreachable") == 1 and err.count("database back") == 1, err


def test_a_worker_gives_up_on_an_unreachable_server_after_db_outage_in_one_line(cli):
    import socket

    with socket.socket() as s:  # a loopback port that nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("worker", "--db", f"postgresql://postgres@127.0.0.1:{port}/x", "--db-outage", "1")
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("adaptbench worker: database unreachable (")
    assert "retrying for up to 1 s (--db-outage)" in lines[0]
    assert lines[1].startswith("adaptbench: error: the database has been unreachable for ")
    assert "Traceback" not in r.err


def test_bad_db_outage_is_one_line(cli):
    r = cli("worker", "--db-outage", "-1")
    assert r.code == 2 and r.err.startswith("adaptbench: error: --db-outage must be")


def test_postgres_connections_time_out_and_keep_alive_unless_the_url_says_otherwise(monkeypatch):
    psycopg = pytest.importorskip("psycopg")
    seen = []

    def connect(*args, **kwargs):
        seen.append(kwargs)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(psycopg, "connect", connect)
    for url in ("postgresql://u@127.0.0.1:9/x", "postgresql://u@127.0.0.1:9/x?connect_timeout=3"):
        with pytest.raises(faults.Unreachable):
            store.make_engine(url)
    assert {k: seen[0][k] for k in store.POSTGRES_CONNECT} == store.POSTGRES_CONNECT
    assert str(seen[-1]["connect_timeout"]) == "3"
    assert seen[-1]["keepalives_idle"] == store.POSTGRES_CONNECT["keepalives_idle"]


@pytest.mark.slow
def test_four_waiting_workers_ride_out_a_postgres_outage_and_every_run_is_done_once(
        postgres_server, postgres_url, tmp_path):
    if not hasattr(postgres_server, "stop_server"):
        pytest.skip("an external PostgreSQL server (ADAPTBENCH_TEST_POSTGRES) is not stopped by tests")
    n = 24
    w = Workers(postgres_url, tmp_path)
    w.queue("-t", "tiny", "--seeds", str(n))
    for _ in range(4):  # groups of 3 runs take 5 stacked steps x 0.2 s: the outage catches some
        # mid-training (`auto` would first time the steps, and one worker would claim them all)
        w.start("--wait", "--lease", "2", "--vectorize", "on", "--group-size", "3", step_sleep=0.2)
    done = lambda: sum(r["status"] == "done" for r in w.runs().values())  # noqa: E731
    wait_until(lambda: done() >= 6, 120, "the first runs")
    postgres_server.stop_server()
    try:
        time.sleep(6)  # three leases: every lease held at the start has expired by the end
        assert all(p.poll() is None for p in w.procs), w.logs()
    finally:
        postgres_server.start_server()
    wait_until(lambda: done() == n, 120, "every run to be done")
    assert all(p.poll() is None for p in w.procs), w.logs()  # all four rode it out
    for p in w.procs:
        p.send_signal(signal.SIGTERM)
    for i, p in enumerate(w.procs):
        assert p.wait(timeout=30) == 130, w.log(i)
    runs = w.runs()
    assert collections.Counter(r["status"] for r in runs.values()) == {"done": n}
    assert w.duplicate_curve_points() == 0
    done_lines = collections.Counter(re.findall(r"^run (\d+) done:", w.logs(), re.M))
    assert sorted(map(int, done_lines)) == sorted(runs) and set(done_lines.values()) == {1}
    for i in range(4):
        log = w.log(i)
        assert log.count("database unreachable") == 1, log
        assert log.count("database back after") == 1, log
        assert "Traceback" not in log
