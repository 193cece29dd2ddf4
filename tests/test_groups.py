"""Groups of runs: a worker claims compatible runs together (`queue.claim_group`), trains them in
one pass (`train.execute_group`) and stores each under its own claim; and the provenance each
run records (schema 5).

Engine tests run on an SQLite file and on PostgreSQL (`engine` in conftest.py); worker processes
use the fixture tasks as tests/test_faults.py does.
"""

from __future__ import annotations

import collections
import platform
import re
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from adaptbench import queue, runner, store, worker
from adaptbench.errors import UserError
from adaptbench.filters import RunFilter
from adaptbench.spec import RunSpec
from adaptbench.tasks import Task
from tests.conftest import invoke
from tests.test_faults import FIXTURE_TASKS, Workers, alive, wait_until
from tests.test_queue import drain_concurrently, rows

TINY = Task(name="tiny", task_type="regression", description="", build=lambda seed, device: None,
            metric="mse", higher_is_better=False, steps=5, batch_size=8, eval_every=5)
TASKS = {"tiny": TINY}
DONE = {"status": "done", "final_test_metric": 1.0}
BASE = RunSpec("tiny", "sgd", 0.1, 0, 5, 8)
SCHEMA5 = ("execution", "group_size", "build_seconds", "python_version", "hardware", "code_commit")


def ids(claims) -> list[int]:
    return [c.run_id for c in claims]


def enqueue(engine, *specs: RunSpec, tasks: dict = TASKS, device_request: str = "auto") -> list[int]:
    return [q.run_id for q in queue.enqueue(engine, list(specs), tasks, device_request)]


# --- claiming a group ----------------------------------------------------------------------------

def test_a_group_takes_the_oldest_run_and_only_runs_compatible_with_it_oldest_first(engine):
    [first] = enqueue(engine, BASE)
    # one field apart from the first run each: never in its group
    others = enqueue(engine, replace(BASE, optimizer="adam"), replace(BASE, steps=6),
                     replace(BASE, study="other"), replace(BASE, params={"momentum": 0.9}),
                     replace(BASE, schedule="cosine"), replace(BASE, batch_size=16),
                     replace(BASE, fingerprint="0123456789abcdef"))
    others += enqueue(engine, replace(BASE, seed=9), device_request="cpu")
    others += enqueue(engine, replace(BASE, seed=8), tasks={"tiny": replace(TINY, eval_every=1)})
    # other seeds and lrs (and a fingerprint NULL like the first's): in its group, oldest first
    same = enqueue(engine, replace(BASE, seed=1), replace(BASE, lr=0.01), replace(BASE, seed=2),
                   replace(BASE, seed=3, lr=0.5))
    claims = queue.claim_group(engine, "w", max_members=4)
    assert ids(claims) == [first, *same[:3]]
    assert [(c.spec.seed, c.spec.lr) for c in claims] == [(0, 0.1), (1, 0.1), (0, 0.01), (2, 0.1)]
    # the rest of the group is claimed next, alone: its compatible runs are taken
    assert ids(queue.claim_group(engine, "w", max_members=32, run_ids=[same[3], *others])) == [others[0]]
    assert ids(queue.claim_group(engine, "w", max_members=32, run_ids=[same[3]])) == [same[3]]
    while claims := queue.claim_group(engine, "w", max_members=32):
        assert len(claims) == 1  # every other run differs from every other one
    assert {r["status"] for r in rows(engine).values()} == {"running"}


def test_each_run_of_a_group_has_its_own_claim_lease_and_result(engine):
    run_ids = enqueue(engine, *(replace(BASE, seed=s) for s in range(3)))
    claims = queue.claim_group(engine, "w", lease_seconds=30, max_members=3)
    assert ids(claims) == run_ids
    stored = rows(engine)
    for c in claims:
        row = stored[c.run_id]
        assert (row["status"], row["attempts"], row["worker"]) == ("running", 1, "w")
        assert row["lease_expires_at"] is not None and row["started_at"] is not None
        assert c.attempt == 1 and c.spec.seed == row["seed"]
    assert queue.finish(engine, claims[0], DONE, [])
    assert queue.release(engine, claims[1])
    assert queue.heartbeat(engine, claims[2])
    stored = rows(engine)
    assert [stored[i]["status"] for i in run_ids] == ["done", "queued", "running"]
    assert stored[run_ids[1]]["attempts"] == 0  # a hand-back is not an attempt


def test_a_group_respects_run_ids_plugins_and_max_members(engine):
    plugin = enqueue(engine, replace(BASE, optimizer="mod:make"),
                     replace(BASE, optimizer="mod:make", seed=1))
    run_ids = enqueue(engine, *(replace(BASE, seed=s) for s in range(5)))
    assert ids(queue.claim_group(engine, "w", max_members=32)) == plugin[:1]  # plugins train alone
    assert ids(queue.claim_group(engine, "w", max_members=32, plugins=False)) == run_ids
    assert ids(queue.claim_group(engine, "w", max_members=32)) == plugin[1:]
    assert queue.claim_group(engine, "w", max_members=32) == []
    assert queue.claim_group(engine, "w", max_members=32, run_ids=[]) == []
    more = enqueue(engine, *(replace(BASE, seed=s) for s in range(10, 15)))
    assert ids(queue.claim_group(engine, "w", max_members=2, run_ids=more[2:])) == more[2:4]
    assert ids(queue.claim_group(engine, "w", max_members=1)) == more[:1]
    with pytest.raises(ValueError, match="Invalid group size: 0"):
        queue.claim_group(engine, "w", max_members=0)


def test_a_groups_expired_leases_are_reaped_and_fail_after_max_attempts(engine):
    run_ids = enqueue(engine, *(replace(BASE, seed=s) for s in range(3)))
    assert ids(queue.claim_group(engine, "a", lease_seconds=0.2, max_members=3)) == run_ids
    time.sleep(0.5)
    again = queue.claim_group(engine, "b", lease_seconds=0.2, max_members=3, max_attempts=2)
    assert ids(again) == run_ids and {c.attempt for c in again} == {2}
    time.sleep(0.5)
    assert queue.claim_group(engine, "c", max_members=3, max_attempts=2) == []
    assert {(r["status"], r["attempts"]) for r in rows(engine).values()} == {("failed", 2)}


def test_concurrent_group_claimers_take_each_run_exactly_once(engine):
    # three groups' worth of compatible runs, interleaved with runs that train alone
    specs = [replace(BASE, seed=s, optimizer=("sgd", "adam", "momentum")[s % 3]) for s in range(60)]
    specs += [replace(BASE, seed=s, optimizer="mod:make") for s in range(6)]
    queue.enqueue(engine, specs, TASKS)
    groups = drain_concurrently(engine, lambda name: queue.claim_group(engine, name, max_members=4))
    for claims in groups:
        assert len({(c.spec.optimizer, c.spec.steps) for c in claims}) == 1
    assert max(map(len, groups)) == 4


def test_every_schema5_column_is_cleared_when_a_run_is_retried():
    assert set(SCHEMA5) <= set(queue.OUTCOME_COLUMNS)


# --- the heartbeat of a group --------------------------------------------------------------------

def test_one_heartbeat_renews_every_lease_of_a_group_and_drops_a_cancelled_run(engine):
    run_ids = enqueue(engine, *(replace(BASE, seed=s) for s in range(3)))
    claims = queue.claim_group(engine, "w", lease_seconds=1.0, max_members=3)
    flag = worker.StopFlag()
    with worker.Heartbeat(engine, claims, 1.0, flag):
        time.sleep(0.6)
        queue.cancel(engine, RunFilter(run_ids=(run_ids[0],)))
        time.sleep(1.4)  # past the first lease: only the heartbeat keeps the others held
        # another claimer reaps expired leases: it finds none
        assert queue.claim_group(engine, "x", max_members=3) == []
    assert flag.lost_lease == {run_ids[0]}
    stored = rows(engine)
    assert [stored[i]["status"] for i in run_ids] == ["cancelled", "running", "running"]
    assert all(queue.heartbeat(engine, c) for c in claims[1:])


# --- workers, in this process --------------------------------------------------------------------

@pytest.fixture
def tiny_queue(tmp_path, monkeypatch):
    """Workers on an SQLite file; each build of `tiny` is logged (Workers.starts)."""
    monkeypatch.setenv("ADAPTBENCH_TEST_LOG", str(tmp_path / "starts.log"))
    return Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)


def test_a_worker_trains_a_group_in_one_pass_and_records_how(tiny_queue):
    w = tiny_queue
    w.queue("-t", "tiny", "--seeds", "3", "--lr", "0.01,0.1")
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], group_size=4, vectorize="on")
    claimed: list[int] = []
    events = worker.Events(claimed=lambda c: claimed.append(c.run_id))
    assert worker.work(w.engine, opts, events=events) == {"done": 6}
    runs = w.runs()
    assert claimed == sorted(runs)
    # two claims: runs 1-4 together, then 5-6
    assert len({runs[i]["started_at"] for i in (1, 2, 3, 4)}) == 1
    assert runs[5]["started_at"] == runs[6]["started_at"] != runs[1]["started_at"]
    for i, run in runs.items():
        assert (run["status"], run["attempts"]) == ("done", 1)
        assert (run["execution"], run["group_size"]) == ("vectorized", 4 if i <= 4 else 2)
        assert run["build_seconds"] > 0 and run["wall_seconds"] > 0
        assert run["python_version"] == platform.python_version()
        assert run["hardware"] and run["torch_version"] and run["host"]
        assert run["code_commit"] == runner.code_commit()


def test_the_code_commit_is_the_checkouts_or_none():
    root = Path(runner.__file__).resolve().parent.parent
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert runner.code_commit() == head
    else:
        assert runner.code_commit() is None


def test_the_hardware_names_the_cpu_and_on_cuda_the_gpu(monkeypatch):
    import torch

    cpu = runner._hardware(torch.device("cpu"))
    assert cpu and len(cpu) <= 200
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert runner._hardware(SimpleNamespace(type="cuda", index=0)) == f"{cpu}; NVIDIA H200"

    def no_gpu(device=None):
        raise RuntimeError("Found no NVIDIA driver on your system")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu)  # provenance never fails a run
    assert runner._hardware(SimpleNamespace(type="cuda", index=0)) == cpu


def test_a_vectorized_pass_records_its_group_size(tiny_queue):
    specs = tuple(replace(BASE, seed=s) for s in range(4))
    outcomes = runner.run_here(runner.Job(specs, "cpu", (FIXTURE_TASKS,), "on"))
    assert [(o.status, o.columns["execution"], o.columns["group_size"]) for o in outcomes] == [
        ("done", "vectorized", 4)] * 4
    outcomes = runner.run_here(runner.Job(specs, "cpu", (FIXTURE_TASKS,), "off"))
    assert [(o.columns["execution"], o.columns["group_size"]) for o in outcomes] == [
        ("single", 1)] * 4


def test_max_runs_counts_runs_not_groups(tiny_queue):
    w = tiny_queue
    w.queue("-t", "tiny", "--seeds", "5")
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], max_runs=3)
    assert worker.work(w.engine, opts) == {"done": 3}
    assert queue.counts(w.engine) == {"done": 3, "queued": 2}


def test_a_stop_request_hands_every_run_of_the_group_back(tiny_queue, monkeypatch):
    w = tiny_queue
    monkeypatch.setenv("ADAPTBENCH_TEST_STEP_SLEEP", "0.2")
    w.queue("-t", "tiny", "--seeds", "3")
    flag = worker.StopFlag()
    threading.Timer(0.5, lambda: setattr(flag, "requested", True)).start()
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], lease_seconds=5)
    assert worker.work(w.engine, opts, flag=flag) == {"requeued": 3}
    assert [(r["status"], r["attempts"], r["worker"]) for r in w.runs().values()] == [
        ("queued", 0, None)] * 3


def test_a_lost_lease_drops_that_run_and_stores_the_others(tiny_queue, monkeypatch):
    w = tiny_queue
    monkeypatch.setenv("ADAPTBENCH_TEST_STEP_SLEEP", "0.1")  # 3 runs of 5 steps: 1.5 s
    w.queue("-t", "tiny", "--seeds", "3")
    seen: list[tuple[int, str]] = []

    def progress(c, step: int, total: int) -> None:
        if step == 1 and c.run_id == 1:  # training began: cancel run 2, claimed with run 1
            queue.cancel(w.engine, RunFilter(run_ids=(2,)))

    events = worker.Events(progress=progress,
                           finished=lambda c, status, outcome: seen.append((c.run_id, status)))
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], lease_seconds=1.0)
    assert worker.work(w.engine, opts, events=events) == {"done": 2, "lost": 1}
    assert seen == [(1, "done"), (2, "lost"), (3, "done")]
    runs = w.runs()
    assert [runs[i]["status"] for i in (1, 2, 3)] == ["done", "cancelled", "done"]
    assert runs[2]["final_test_metric"] is None
    with store.read(w.engine) as conn:
        curves = dict(conn.execute(sa.select(store.CurvePoint.run_id, sa.func.count())
                                   .group_by(store.CurvePoint.run_id)).all())
    assert set(curves) == {1, 3}


def test_a_worker_without_the_task_hands_the_whole_group_back(tiny_queue):
    w = tiny_queue
    w.queue("-t", "tiny", "--seeds", "3")
    with pytest.raises(UserError, match=r"unknown task 'tiny'.*\(run 1 was handed back to the "
                                        r"queue, with runs 2, 3 of its group\)"):
        worker.work(w.engine, worker.WorkerOptions())  # no --tasks-dir
    assert [(r["status"], r["attempts"]) for r in w.runs().values()] == [("queued", 0)] * 3


# --- worker processes ----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--vectorize", "off"], ["--group-size", "1"]])
def test_vectorize_off_and_group_size_1_claim_one_run_at_a_time(cli, args):
    assert cli("queue", "-t", "tiny", "-o", "sgd", "--seeds", "3", "--tasks-dir", FIXTURE_TASKS).code == 0
    r = cli("worker", *args, "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 0 and "worker finished: 3 done" in r.err, r.err
    runs = list(Workers("sqlite:///results.db", Path(".")).runs().values())
    for before, after in zip(runs, runs[1:]):  # each claimed after the one before it finished
        assert after["started_at"] >= before["finished_at"]
    assert {(r["execution"], r["group_size"]) for r in runs} == {("single", 1)}


@pytest.mark.parametrize("command", ["worker", "run"])
@pytest.mark.parametrize(("args", "says"), [
    (["--group-size", "0"], "Invalid value for '--group-size'"),
    (["--vectorize", "always"], "Invalid value for '--vectorize'"),
])
def test_bad_group_options_are_one_line(cli, command, args, says):
    extra = ["-t", "tiny", "-o", "sgd", "--tasks-dir", FIXTURE_TASKS] if command == "run" else []
    r = cli(command, *args, *extra)
    assert r.code == 2, r.err
    assert r.err.startswith("adaptbench: error: ") and len(r.err.strip().splitlines()) == 1, r.err
    assert says in r.err


def test_run_trains_groups_with_the_options_given(cli):
    r = cli("run", "-t", "tiny", "-o", "sgd", "--seeds", "4", "--group-size", "3",
            "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 0, r.err
    runs = list(Workers("sqlite:///results.db", Path(".")).runs().values())
    assert [r["status"] for r in runs] == ["done"] * 4
    assert len({r["started_at"] for r in runs[:3]}) == 1 and runs[3]["started_at"] != runs[0]["started_at"]
    for option in ("--vectorize", "--group-size"):
        assert option in cli("run", "--help").out and option in cli("worker", "--help").out
        assert option not in cli("queue", "--help").out


def test_a_failure_fails_every_run_of_the_group_with_the_reason(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "crash,tiny", "--seeds", "2")
    worker_proc = w.start()
    assert worker_proc.wait(timeout=120) == 0, w.log(0)
    runs = {(r["task"], r["seed"]): r for r in w.runs().values()}
    for seed in (0, 1):
        assert runs["crash", seed]["status"] == "failed"
        assert "ValueError: task exploded on purpose" in runs["crash", seed]["error"]
        assert runs["tiny", seed]["status"] == "done"
    assert "worker finished: 2 done, 2 failed" in w.log(0)


def test_run_timeout_is_per_run_a_group_gets_as_many_times_as_long(cli):
    assert cli("queue", "-t", "stuck", "-o", "sgd", "--seeds", "2", "--tasks-dir", FIXTURE_TASKS).code == 0
    start = time.monotonic()
    r = cli("worker", "--run-timeout", "1", "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 0 and "worker finished: 2 failed" in r.err, r.err
    assert time.monotonic() - start >= 2
    for run in Workers("sqlite:///results.db", Path(".")).runs().values():
        assert run["status"] == "failed"
        assert ("timed out: still running after 2 s (worker --run-timeout for each of the 2 runs "
                "trained together)") in run["error"]


def test_sigterm_hands_every_run_of_the_group_back_at_once(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "3")
    proc = w.start("--lease", "2", "--vectorize", "on", step_sleep=2.0)
    wait_until(lambda: w.starts(), 60, "the group to start")  # one build per seed, at once
    [trainer_pid] = {pid for _, pid in w.starts()}
    assert {r["status"] for r in w.runs().values()} == {"running"}  # all three claimed
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: {r["status"] for r in w.runs().values()} == {"queued"}, 2.0,
               "the group to be queued again")
    assert proc.wait(timeout=10) == 130
    assert [(r["attempts"], r["worker"], r["lease_expires_at"]) for r in w.runs().values()] == [
        (0, None, None)] * 3
    assert not alive(trainer_pid)
    assert "worker finished: 3 requeued" in w.log(0)
    assert "Traceback" not in w.log(0)


def test_a_cancelled_run_of_a_group_is_dropped_and_the_others_stored(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "3")
    proc = w.start("--lease", "1", "--vectorize", "on", step_sleep=1.0)  # 5 stacked steps: 5 s
    wait_until(lambda: w.starts(), 60, "the group to start")
    assert invoke("cancel", "2", "--db", w.url).code == 0
    assert proc.wait(timeout=60) == 0, w.log(0)
    assert [r["status"] for r in w.runs().values()] == ["done", "cancelled", "done"]
    assert "run 2 lost" in w.log(0) and "worker finished: 2 done, 1 lost" in w.log(0)


def _killed_group_is_done_once_by_another_worker(w: Workers) -> None:
    w.queue("-t", "tiny", "--seeds", "4")
    a = w.start("--lease", "1", "--vectorize", "on", step_sleep=2.0)
    wait_until(lambda: w.starts(), 60, "the group to start")
    [trainer_pid] = {pid for _, pid in w.starts()}
    assert {r["status"] for r in w.runs().values()} == {"running"}
    a.send_signal(signal.SIGKILL)  # the worker only; its training process must not outlive it
    a.wait()
    wait_until(lambda: not alive(trainer_pid), 5, "the orphaned training process to exit")
    # b's own lease is long: if a's four leases lapse a moment apart, b claims them in two groups,
    # and the second claim must not reap the first group's runs while a loaded machine delays b's
    # heartbeat by a second
    b = w.start("--lease", "30", "--wait", "--max-runs", "4", "--vectorize", "on")
    assert b.wait(timeout=90) == 0, w.log(1)
    runs = w.runs()
    assert {(r["status"], r["attempts"]) for r in runs.values()} == {("done", 2)}
    assert all(f":{b.pid}:" in r["worker"] for r in runs.values())
    # every seed built by a (the stacked group), then again by b; each run stored once
    assert collections.Counter(seed for seed, _ in w.starts()) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert sorted(map(int, re.findall(r"^run (\d+) done", w.log(1), re.M))) == [1, 2, 3, 4]
    assert w.duplicate_curve_points() == 0


def test_a_sigkilled_workers_group_is_done_once_by_another_worker_on_sqlite(sqlite_workers):
    _killed_group_is_done_once_by_another_worker(sqlite_workers)


def test_a_sigkilled_workers_group_is_done_once_by_another_worker_on_postgres(postgres_workers):
    _killed_group_is_done_once_by_another_worker(postgres_workers)
