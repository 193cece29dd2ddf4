"""The queue on SQLite and PostgreSQL: atomic claims, leases, stale workers, cancel, retry, schema.

Every engine test runs twice: on an SQLite file and on a PostgreSQL database (a server the test
session starts on loopback; see conftest.py). Worker processes and signals are in test_faults.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from adaptbench import queue, store
from adaptbench.errors import UserError
from adaptbench.filters import RunFilter as Selection
from adaptbench.spec import RunSpec
from adaptbench.store import CurvePoint, Meta, Run, make_engine
from adaptbench.tasks import Task

FIXTURE_TASKS = Path(__file__).parent / "fixtures" / "tasks"
TINY = Task(name="tiny", task_type="regression", description="", build=lambda seed, device: None,
            metric="mse", higher_is_better=False, steps=5, batch_size=8, eval_every=5)
TASKS = {"tiny": TINY}
POINT = {"step": 5, "split": "val", "loss": 1.0, "metric": 1.0, "elapsed": 0.1}
DONE = {"status": "done", "final_test_metric": 1.0}


def specs(n: int, study: str = "") -> list[RunSpec]:
    return [RunSpec("tiny", "sgd", 0.1, seed, 5, 8, study=study) for seed in range(n)]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    """A new, empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'q.db'}"
    return request.getfixturevalue("postgres_url")


def rows(engine) -> dict[int, dict]:
    with store.read(engine) as conn:
        return {r.id: r._asdict() for r in conn.execute(sa.select(Run.__table__))}


def curve_count(engine) -> int:
    with store.read(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(CurvePoint)).scalar_one()


# --- claiming ---------------------------------------------------------------------------------

def drain_concurrently(engine, take, threads: int = 6) -> list[list[queue.Claim]]:
    """Call `take(worker name)` -> claims from `threads` threads at once until it returns none,
    finishing each claim (done, one curve point); check that every run was taken once and
    done once. Returns what each call took."""
    taken: list[list[queue.Claim]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def claimer(name: str) -> None:
        try:
            start.wait()
            while claims := take(name):
                taken.append(claims)
                for c in claims:
                    assert queue.finish(engine, c, DONE, [POINT])
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    pool = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(c.run_id for claims in taken for c in claims) == sorted(rows(engine))  # once each
    assert {(r["status"], r["attempts"]) for r in rows(engine).values()} == {("done", 1)}
    assert curve_count(engine) == len(rows(engine))
    return taken


def test_concurrent_claimers_take_each_run_exactly_once(engine):
    queue.enqueue(engine, specs(60), TASKS)
    taken = drain_concurrently(engine, lambda name: [c] if (c := queue.claim(engine, name)) else [])
    assert len(taken) == 60


def test_claim_takes_the_oldest_queued_run_and_only_among_run_ids(engine):
    ids = [q.run_id for q in queue.enqueue(engine, specs(3), TASKS)]
    assert queue.claim(engine, "w", run_ids=[ids[2]]).run_id == ids[2]
    assert queue.claim(engine, "w", run_ids=[]) is None
    assert queue.claim(engine, "w").run_id == ids[0]


def test_time_spent_from_stored_times_on_every_backend(engine):
    from datetime import datetime, timedelta

    from adaptbench import results, timing

    # the task's default budget is 5 steps: three runs at 1x (two of them in parallel), one at
    # 4x, one still queued
    ids = [q.run_id for q in queue.enqueue(
        engine, [RunSpec("tiny", "sgd", 0.1, seed, steps, 8)
                 for seed, steps in enumerate([5, 5, 5, 20, 20])], TASKS)]
    t0 = datetime(2026, 3, 1, 10, 0, 0)
    done = {ids[0]: (0, 60, "single"), ids[1]: (30, 90, "vectorized"),
            ids[2]: (600, 630, "vectorized"), ids[3]: (1000, 1300, "single")}
    with store.write(engine) as conn:
        for run_id, (start, end, how) in done.items():
            conn.execute(sa.update(Run).where(Run.id == run_id).values(
                status="done", started_at=t0 + timedelta(seconds=start),
                finished_at=t0 + timedelta(seconds=end), wall_seconds=end - start - 1.0,
                build_seconds=0.5, execution=how))
    table = timing.time_table(results.load_columns(engine, timing.COLUMNS)).set_index("budget")
    assert list(table.index) == ["1x", "4x", "all"]
    assert table["finished"].tolist() == [3, 1, 4]
    assert table["still_active"].tolist() == [0, 1, 1]
    assert table.loc["1x", "stacked"] == pytest.approx(2 / 3)
    # busy: [0, 90] and [600, 630] at 1x; compute: the runs' own seconds, summed
    assert table.loc["1x", "busy_h"] * 3600 == pytest.approx(120.0)
    assert table.loc["all", "busy_h"] * 3600 == pytest.approx(420.0)
    assert table.loc["all", "train_eval_h"] * 3600 == pytest.approx(59 + 59 + 29 + 299)
    assert table.loc["all", "build_h"] * 3600 == pytest.approx(2.0)
    assert table.loc["all", "first_started"] == "2026-03-01 10:00:00"
    assert table.loc["all", "last_finished"] == "2026-03-01 10:21:40"


def test_claims_take_the_smallest_budget_multiple_first_then_the_oldest(engine):
    # the task's default budget is 5 steps: 16x, 4x, then 1x queued, oldest first within each
    budgets = [80, 80, 20, 5, 5, 80]
    ids = [q.run_id for q in queue.enqueue(
        engine, [RunSpec("tiny", "sgd", 0.1, seed, steps, 8) for seed, steps in enumerate(budgets)],
        TASKS)]
    with store.write(engine) as conn:  # stored before the default was recorded: counts as 1x
        conn.execute(sa.update(Run).where(Run.id == ids[5]).values(task_steps=None))
    order = [queue.claim(engine, "w").run_id for _ in budgets]
    assert order == [ids[3], ids[4], ids[5], ids[2], ids[0], ids[1]]
    group = queue.claim_group(engine, "w", max_members=4)
    assert group == []


def test_enqueue_twice_at_once_stores_each_spec_once(engine):
    batch = specs(50)
    start = threading.Barrier(4)
    results: list[list[queue.Enqueued]] = []

    def enqueuer() -> None:
        start.wait()
        results.append(queue.enqueue(engine, batch, TASKS))

    threads = [threading.Thread(target=enqueuer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(rows(engine)) == 50
    assert len(results) == 4
    assert len({tuple(q.run_id for q in r) for r in results}) == 1  # all saw the same ids
    assert sum(q.new for r in results for q in r) == 50  # and each spec was new exactly once


# --- leases ---------------------------------------------------------------------------------

def test_an_expired_lease_is_requeued_and_the_stale_worker_cannot_write(engine):
    [q] = queue.enqueue(engine, specs(1), TASKS)
    stale = queue.claim(engine, "a", lease_seconds=0.3)
    assert queue.claim(engine, "b") is None  # held
    time.sleep(0.6)
    fresh = queue.claim(engine, "b", lease_seconds=30)
    assert fresh is not None and fresh.run_id == q.run_id and fresh.attempt == 2
    # the reaped worker wakes up: none of its writes may touch the retry
    assert not queue.heartbeat(engine, stale)
    assert not queue.finish(engine, stale, DONE, [POINT])
    assert not queue.release(engine, stale)
    assert rows(engine)[q.run_id]["status"] == "running" and curve_count(engine) == 0
    assert queue.finish(engine, fresh, {"status": "done"}, [POINT])
    assert rows(engine)[q.run_id]["status"] == "done" and curve_count(engine) == 1


def test_a_retried_finish_of_a_stored_result_succeeds_and_stores_nothing_twice(engine):
    queue.enqueue(engine, specs(1), TASKS)
    c = queue.claim(engine, "a")
    assert queue.finish(engine, c, DONE, [POINT])
    assert queue.finish(engine, c, DONE, [POINT])  # its commit's answer was lost: tried again
    assert curve_count(engine) == 1


def test_a_claim_without_plugins_leaves_plugin_runs_queued(engine):
    queue.enqueue(engine, [RunSpec("tiny", "mod:make", 0.1, 0, 5, 8), *specs(1)], TASKS)
    assert queue.has_work(engine, plugins=False)
    assert queue.claim(engine, "a", plugins=False).spec.optimizer == "sgd"
    assert not queue.has_work(engine, plugins=False) and queue.has_work(engine)
    assert queue.claim(engine, "a", plugins=False) is None
    assert queue.queued_plugin_runs(engine) == 1
    assert queue.claim(engine, "b").spec.optimizer == "mod:make"


def test_heartbeats_keep_the_lease(engine):
    queue.enqueue(engine, specs(1), TASKS)
    c = queue.claim(engine, "a", lease_seconds=0.5)
    for _ in range(5):
        time.sleep(0.2)
        assert queue.heartbeat(engine, c, lease_seconds=0.5)
        assert queue.claim(engine, "b") is None
    assert queue.finish(engine, c, DONE, [])


def test_a_run_whose_lease_expires_on_every_attempt_fails_with_the_reason(engine):
    [q] = queue.enqueue(engine, specs(1), TASKS)
    for _ in range(2):
        assert queue.claim(engine, "w", lease_seconds=0.1, max_attempts=2) is not None
        time.sleep(0.3)
    assert queue.claim(engine, "w", max_attempts=2) is None
    row = rows(engine)[q.run_id]
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "lease expired on each of 2 attempts" in row["error"]


def test_release_requeues_at_once_without_counting_an_attempt(engine):
    [q] = queue.enqueue(engine, specs(1), TASKS)
    c = queue.claim(engine, "a")
    assert queue.release(engine, c)
    row = rows(engine)[q.run_id]
    assert (row["status"], row["attempts"], row["worker"], row["lease_expires_at"]) == ("queued", 0, None, None)
    again = queue.claim(engine, "b")
    assert again.attempt == 1
    assert not queue.finish(engine, c, DONE, [])  # the released claim stays dead


def test_lease_times_come_from_one_clock(engine):
    queue.enqueue(engine, specs(1), TASKS)
    c = queue.claim(engine, "a", lease_seconds=30)
    row = rows(engine)[c.run_id]
    assert (row["lease_expires_at"] - row["started_at"]).total_seconds() == pytest.approx(30, abs=0.01)
    assert abs((row["started_at"] - store.utcnow()).total_seconds()) < 60  # naive UTC on both engines


# --- cancel and retry -----------------------------------------------------------------------

def test_cancel_queued_and_running_runs(engine):
    ids = [q.run_id for q in queue.enqueue(engine, specs(3), TASKS)]
    running = queue.claim(engine, "w")
    assert queue.cancel(engine, Selection(run_ids=[ids[0], ids[1]])) == {"queued": 1, "running": 1}
    assert [rows(engine)[i]["status"] for i in ids] == ["cancelled", "cancelled", "queued"]
    # the worker of the cancelled run learns it at its next heartbeat, and cannot store a result
    assert not queue.heartbeat(engine, running)
    assert not queue.finish(engine, running, DONE, [POINT])
    assert queue.cancel(engine, Selection(tasks=["tiny"])) == {"queued": 1, "running": 0}


def test_cancel_refuses_finished_runs_and_changes_nothing(engine):
    ids = [q.run_id for q in queue.enqueue(engine, specs(2), TASKS)]
    c = queue.claim(engine, "w")
    queue.finish(engine, c, DONE, [])
    before = rows(engine)
    with pytest.raises(UserError, match=r"cannot cancel run 1 \(done\)"):
        queue.cancel(engine, Selection(run_ids=ids))
    assert rows(engine) == before


def test_retry_requeues_failed_runs_and_with_status_diverged_and_cancelled(engine):
    ids = [q.run_id for q in queue.enqueue(engine, specs(4), TASKS)]
    outcomes = [{"status": "failed", "error": "boom"}, {"status": "diverged", "diverged_at_step": 3},
                DONE, None]
    for outcome in outcomes[:3]:
        c = queue.claim(engine, "w")
        queue.finish(engine, c, outcome, [POINT])
    queue.cancel(engine, Selection(run_ids=[ids[3]]))
    assert queue.retry(engine, Selection()) == {"failed": 1, "diverged": 0, "cancelled": 0}
    r = rows(engine)[ids[0]]
    assert (r["status"], r["attempts"], r["error"], r["finished_at"]) == ("queued", 0, None, None)
    assert queue.retry(engine, Selection(statuses=["diverged", "cancelled"])) == {"failed": 0, "diverged": 1, "cancelled": 1}
    r = rows(engine)[ids[1]]
    assert r["status"] == "queued" and r["diverged_at_step"] is None
    assert curve_count(engine) == 1  # only the done run keeps its curve
    assert rows(engine)[ids[2]]["status"] == "done"


def test_retry_refuses_done_and_running_runs_and_changes_nothing(engine):
    ids = [q.run_id for q in queue.enqueue(engine, specs(2), TASKS)]
    queue.finish(engine, queue.claim(engine, "w"), DONE, [])
    queue.claim(engine, "w")
    before = rows(engine)
    for run_id, status in zip(ids, ("done", "running")):
        with pytest.raises(UserError, match=rf"cannot retry run {run_id} \({status}\)"):
            queue.retry(engine, Selection(run_ids=[run_id]))
    with pytest.raises(UserError, match="no run with id 99"):
        queue.retry(engine, Selection(run_ids=[99]))
    with pytest.raises(UserError, match="did you mean 'tiny'"):
        queue.retry(engine, Selection(tasks=["tinyy"]))
    assert rows(engine) == before


# --- schema -----------------------------------------------------------------------------------

def test_many_first_uses_at_once_create_the_schema_once(url):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        try:
            start.wait()
            make_engine(url).dispose()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    engine = make_engine(url)
    with store.read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Meta)).scalar_one() == 1


@pytest.mark.parametrize(("version", "advice"), [("99", "upgrade adaptbench"), ("0", "older adaptbench")])
def test_another_schema_version_says_what_to_do(url, version, advice):
    with store.write(make_engine(url)) as conn:
        conn.execute(sa.update(Meta).values(value=version))
    with pytest.raises(UserError, match=f"schema version {version}.*{advice}"):
        make_engine(url)


def test_a_table_missing_a_column_is_refused_with_advice(tmp_path):
    path = tmp_path / "old.db"
    make_engine(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN host")
    with pytest.raises(UserError, match="lacks column.*host.*older adaptbench"):
        make_engine(f"sqlite:///{path}")


def test_a_foreign_runs_table_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(UserError, match="did not write"):
        make_engine(f"sqlite:///{path}")


# --- what SQLite cannot do -----------------------------------------------------------------

@pytest.mark.parametrize("db", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(db):
    with pytest.raises(UserError, match="in-memory SQLite"):
        make_engine(db)


def test_sqlite_on_a_network_file_system_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(UserError, match=r"network file system \(nfs4\).*PostgreSQL"):
        make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    assert not (tmp_path / "r.db").exists()


def test_filesystem_type_of_a_local_folder(tmp_path):
    fstype = store.filesystem_type(tmp_path)
    assert fstype is None or fstype not in store.NETWORK_FS


def test_busy_timeout_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_BUSY_TIMEOUT", "2.5")
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    monkeypatch.setenv("ADAPTBENCH_BUSY_TIMEOUT", "soon")
    with pytest.raises(UserError, match="ADAPTBENCH_BUSY_TIMEOUT"):
        make_engine(f"sqlite:///{tmp_path / 'r.db'}")


@pytest.mark.parametrize("given", ["postgresql://u@h/d", "postgres://u@h/d", "postgresql+psycopg://u@h/d"])
def test_postgres_urls_use_psycopg_3(given):
    assert store.resolve_url(given) == "postgresql+psycopg://u@h/d"


# --- the cancel and retry commands -------------------------------------------------------------

def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_cancel_and_retry_commands(cli, workdir):
    assert cli("queue", "-t", "tiny", "-o", "sgd,adam", "--seeds", "2", "--study", "s1",
               "--tasks-dir", FIXTURE_TASKS).code == 0
    r = cli("cancel", "--optim", "adam")
    assert r.code == 0 and "cancelled 2 run(s)" in r.err
    r = cli("cancel", "1")
    assert r.code == 0 and "cancelled 1 run(s): 1 queued" in r.err
    statuses = {int(i): s for i, s in (line.split(",")[:2] for line in cli("ls", "-f", "csv").out.splitlines()[1:])}
    assert statuses == {1: "cancelled", 2: "queued", 3: "cancelled", 4: "cancelled"}
    r = cli("retry")  # default: failed runs only; there are none
    assert r.code == 0 and "queued 0 run(s)" in r.err
    r = cli("retry", "--status", "cancelled", "--study", "s1", "--optim", "adam")
    assert r.code == 0 and "queued 2 run(s) again: 2 cancelled" in r.err
    r = cli("retry", "1")  # explicit ids: any retryable status
    assert r.code == 0 and "1 cancelled" in r.err
    r = cli("retry", "2")  # already queued: nothing to do, not an error
    assert r.code == 0 and "queued 0 run(s)" in r.err
    r = cli("cancel", "--all")
    assert r.code == 0 and "cancelled 4 run(s)" in r.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cancel"], "say which runs to cancel"),
        (["cancel", "--status", "done", "--all"], "--status: status 'done' is not allowed"),
        (["cancel", "--task", "tiniest"], "did you mean 'tiny'"),
        (["cancel", "7"], "no run with id 7"),
        (["cancel", "x"], "'run_ids'"),
        (["retry", "--status", "done"], "--status: status 'done' is not allowed"),
        (["retry", "--status", "faild"], "did you mean 'failed'"),
        (["retry", "--optim", "adamw"], "--optim: no stored run has optimizer 'adamw'"),
        (["retry", "1", "2", "3"], "no run with id 3"),
    ],
)
def test_cancel_and_retry_bad_input_is_one_line_and_changes_nothing(cli, workdir, args, expected):
    assert cli("queue", "-t", "tiny", "-o", "sgd", "--seeds", "2", "--tasks-dir", FIXTURE_TASKS).code == 0
    assert cli("cancel", "2").code == 0
    before = _dump(workdir / "results.db")
    r = cli(*args)
    assert r.code == 2, r
    assert r.out == "" and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert expected in r.err
    assert _dump(workdir / "results.db") == before


def test_cancel_without_a_database_creates_none(cli, workdir):
    r = cli("cancel", "--all", "--db", "missing.db")
    assert r.code == 2 and "no results database" in r.err
    assert not (workdir / "missing.db").exists()


def test_every_run_column_is_either_kept_or_cleared_by_retry():
    """A new column of `runs` must be put in one of the two lists: kept on retry, or cleared."""
    columns = {c.name for c in Run.__table__.columns}
    kept, cleared = queue._SPEC_AND_LIFECYCLE, set(queue.OUTCOME_COLUMNS)
    assert not kept & cleared
    assert kept | cleared == columns
    assert {"role", "fingerprint", "eval_seeds", "task_steps", "task_batch_size"} <= kept


def test_retry_keeps_the_schema3_spec_columns(engine):
    [q] = queue.enqueue(engine, specs(1), TASKS)
    kept = {"role": "evaluation", "fingerprint": "0123456789abcdef", "eval_seeds": 3,
            "task_steps": 5, "task_batch_size": 8}
    with store.write(engine) as conn:
        conn.execute(sa.update(Run).where(Run.id == q.run_id).values(**kept))
    queue.finish(engine, queue.claim(engine, "w"), {"status": "failed", "error": "boom", "host": "h"}, [POINT])
    assert queue.retry(engine, Selection()) == {"failed": 1, "diverged": 0, "cancelled": 0}
    r = rows(engine)[q.run_id]
    assert {k: r[k] for k in kept} == kept
    assert r["host"] is None and r["status"] == "queued"
