"""Workers under load and under fire: real worker processes, SIGKILL, SIGTERM, broken tasks.

Workers run as `python -m adaptbench.cli worker ...` subprocesses on the fixture tasks in
tests/fixtures/tasks. The `tiny` task appends "seed pid" to $ADAPTBENCH_TEST_LOG each time a
run starts, and sleeps $ADAPTBENCH_TEST_STEP_SLEEP seconds per step, so a test can hold a run
mid-training and count how often each run was executed.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from adaptbench import store
from adaptbench.store import CurvePoint, Run, make_engine
from tests.conftest import invoke

FIXTURE_TASKS = str(Path(__file__).parent / "fixtures" / "tasks")


class Workers:
    """Worker subprocesses on one database, each with its stderr in a file."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.start_log = folder / "starts.log"
        self.procs: list[subprocess.Popen] = []
        self.engine = make_engine(url)

    def queue(self, *args: str) -> None:
        r = invoke("queue", *args, "-o", "sgd", "--tasks-dir", FIXTURE_TASKS, "--db", self.url)
        assert r.code == 0, r.err

    def start(self, *args: str, step_sleep: float = 0.0, command: str = "worker") -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTBENCH_")}
        env.update(ADAPTBENCH_TEST_LOG=str(self.start_log), ADAPTBENCH_TEST_STEP_SLEEP=str(step_sleep))
        n = len(self.procs)
        extra = ["--tasks-dir", FIXTURE_TASKS, "--db", self.url]
        proc = subprocess.Popen(
            [sys.executable, "-m", "adaptbench.cli", command, *args, *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / f"worker{n}.log", "wb"), env=env,
        )
        self.procs.append(proc)
        return proc

    def log(self, i: int) -> str:
        return (self.folder / f"worker{i}.log").read_text()

    def logs(self) -> str:
        return "".join(self.log(i) for i in range(len(self.procs)))

    def starts(self) -> list[tuple[int, int]]:
        if not self.start_log.exists():
            return []
        return [tuple(map(int, line.split())) for line in self.start_log.read_text().splitlines()]

    def runs(self) -> dict[int, dict]:
        with store.read(self.engine) as conn:
            return {r.id: r._asdict() for r in conn.execute(sa.select(Run.__table__))}

    def duplicate_curve_points(self) -> int:
        with store.read(self.engine) as conn:
            stmt = (
                sa.select(CurvePoint.run_id)
                .group_by(CurvePoint.run_id, CurvePoint.step, CurvePoint.split)
                .having(sa.func.count() > 1)
            )
            return len(conn.execute(stmt).all())

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def wait_until(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of a dead process is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def assert_drained_exactly_once(w: Workers, n: int) -> None:
    for i, p in enumerate(w.procs):
        assert p.wait(timeout=120) == 0, w.log(i)
    runs = w.runs()
    assert len(runs) == n
    assert collections.Counter(r["status"] for r in runs.values()) == {"done": n}
    assert {r["attempts"] for r in runs.values()} == {1}
    # each run was started once, stored once and reported done by one worker
    assert sorted(seed for seed, _ in w.starts()) == list(range(n))
    assert w.duplicate_curve_points() == 0
    done_lines = collections.Counter(re.findall(r"^run (\d+) done:", w.logs(), re.M))
    assert sorted(map(int, done_lines)) == sorted(runs) and set(done_lines.values()) == {1}
    assert "database is locked" not in w.logs()
    assert "Traceback" not in w.logs()


def test_four_workers_drain_200_runs_on_sqlite_exactly_once(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "200")
    for _ in range(4):
        w.start("--vectorize", "on")  # auto may build a group twice: stacked to time it, then alone
    assert_drained_exactly_once(w, 200)


def test_four_workers_drain_200_runs_on_postgres_exactly_once(postgres_workers):
    w = postgres_workers
    w.queue("-t", "tiny", "--seeds", "200")
    for _ in range(2):
        w.start("--jobs", "2", "--vectorize", "on")  # 2 x 2 worker processes
    assert_drained_exactly_once(w, 200)


def test_a_sigkilled_workers_run_is_done_once_by_another_worker_after_the_lease(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "1")
    a = w.start("--lease", "1", step_sleep=2.0)
    wait_until(lambda: w.starts(), 60, "the run to start")
    [(_, trainer_pid)] = w.starts()
    a.send_signal(signal.SIGKILL)  # the worker only; its training process must not outlive it
    a.wait()
    wait_until(lambda: not alive(trainer_pid), 5, "the orphaned training process to exit")
    assert w.runs()[1]["status"] == "running"  # until the lease expires
    b = w.start("--lease", "1", "--wait", "--max-runs", "1")
    assert b.wait(timeout=60) == 0, w.log(1)
    run = w.runs()[1]
    assert run["status"] == "done" and run["attempts"] == 2
    assert f":{b.pid}:" in run["worker"]
    assert [seed for seed, _ in w.starts()] == [0, 0]  # started by a, then by b
    assert "run 1 done" in w.log(1) and "run 1" not in w.log(0)
    assert w.duplicate_curve_points() == 0


def test_sigterm_puts_the_run_back_at_once_and_cancel_stops_a_running_run(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "2")
    # one run at a time: claimed together, run 2 would wait for run 1 (test_groups.py has that)
    worker = w.start("--lease", "1.5", "--group-size", "1", step_sleep=2.0)
    wait_until(lambda: len(w.starts()) == 1, 60, "run 1 to start")
    # cancel: the worker drops run 1 at its next heartbeat and moves on to run 2
    assert invoke("cancel", "1", "--db", w.url).code == 0
    wait_until(lambda: len(w.starts()) == 2, 60, "run 2 to start")
    assert "run 1 lost" in w.log(0)
    # SIGTERM mid-run: run 2 is back in the queue within a second, and the worker exits
    trainer_pid = w.starts()[1][1]
    worker.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    wait_until(lambda: w.runs()[2]["status"] == "queued", 1.0, "run 2 to be queued again")
    assert time.monotonic() - sent < 1.0
    assert worker.wait(timeout=10) == 130
    runs = w.runs()
    assert runs[1]["status"] == "cancelled"
    assert (runs[2]["attempts"], runs[2]["worker"], runs[2]["lease_expires_at"]) == (0, None, None)
    assert not alive(trainer_pid)
    assert "Traceback" not in w.log(0)


def test_failing_tasks_end_as_failed_with_the_reason_and_the_worker_goes_on(sqlite_workers):
    w = sqlite_workers
    # the worker goes on after each failure: stuck is last, so that no fresh training process
    # has to start after its time limit (that would only make the test slower)
    w.queue("-t", "crash,oom,oom-kill,tiny,stuck", "--seeds", "1")
    worker = w.start("--run-timeout", "2")
    wait_until(lambda: any(r["task"] == "stuck" and r["status"] == "running" for r in w.runs().values()),
               90, "the stuck run")
    if Path(f"/proc/{worker.pid}/maps").exists():  # the worker itself never loads torch
        assert "libtorch" not in Path(f"/proc/{worker.pid}/maps").read_text()
    assert worker.wait(timeout=90) == 0, w.log(0)
    runs = {r["task"]: r for r in w.runs().values()}
    expected = {
        "crash": "ValueError: task exploded on purpose",
        "oom": "can't allocate memory",
        "oom-kill": "killed by signal 9 (SIGKILL) while training run 3; not sent by this worker: "
                    "the kernel's out-of-memory killer or another process (attempt 3 of 3",
        "stuck": "timed out: still running after 2 s",
    }
    for task, text in expected.items():
        assert runs[task]["status"] == "failed", runs[task]
        assert text in runs[task]["error"]
    assert runs["tiny"]["status"] == "done"
    assert runs["oom-kill"]["attempts"] == 3  # a killed training process is a failed attempt
    assert "worker finished: 1 done, 4 failed, 2 retried" in w.log(0)


def test_in_process_worker_hands_the_run_back_at_the_next_step(tmp_path, monkeypatch):
    """`adaptbench run` trains in its own process: a stop request ends the run at the next step."""
    from adaptbench import queue, worker

    monkeypatch.setenv("ADAPTBENCH_TEST_STEP_SLEEP", "0.2")
    monkeypatch.setenv("ADAPTBENCH_TEST_LOG", str(tmp_path / "starts.log"))
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "2")
    flag = worker.StopFlag()
    threading.Timer(0.5, lambda: setattr(flag, "requested", True)).start()
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], lease_seconds=5, group_size=1)
    assert worker.work(w.engine, opts, flag=flag) == {"requeued": 1}
    assert [r["status"] for r in w.runs().values()] == ["queued", "queued"]
    assert w.runs()[1]["attempts"] == 0
    assert queue.counts(w.engine) == {"queued": 2}


def test_a_waiting_worker_says_once_each_time_it_runs_out_of_work(tmp_path):
    """`worker --wait` says when it has nothing to train: at its start on an empty queue and
    again after the runs queued meanwhile, not at every poll."""
    from adaptbench import worker

    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    flag = worker.StopFlag()
    seen: list[str] = []

    def idle() -> None:
        seen.append("idle")
        if seen.count("idle") == 1:
            w.queue("-t", "tiny", "--seeds", "2")  # while it waits
        else:
            threading.Timer(0.5, lambda: setattr(flag, "requested", True)).start()

    events = worker.Events(finished=lambda c, status, outcome: seen.append(status), idle=idle)
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], wait=True, poll_seconds=0.05,
                                group_size=1)
    assert worker.work(w.engine, opts, events=events, flag=flag) == {"done": 2, "interrupted": 1}
    assert seen == ["idle", "done", "done", "idle"]  # ten polls or so while waiting, one line


def test_a_worker_without_the_runs_task_hands_it_back_and_stops(tmp_path):
    from adaptbench import worker
    from adaptbench.errors import UserError

    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "2")
    with pytest.raises(UserError, match=r"unknown task 'tiny'.*run 1 was handed back"):
        worker.work(w.engine, worker.WorkerOptions())  # no --tasks-dir
    assert [(r["status"], r["attempts"]) for r in w.runs().values()] == [("queued", 0)] * 2


def test_a_second_ctrl_c_quits_adaptbench_run_at_once(sqlite_workers):
    w = sqlite_workers
    # a task stuck inside one step cannot see the first Ctrl-C; the second quits at once
    run = w.start("-t", "stuck", "-o", "sgd", "--seeds", "1", command="run")
    wait_until(lambda: any(r["status"] == "running" for r in w.runs().values()), 60, "the stuck run")
    run.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert run.poll() is None
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=5) == 130
    assert [r["status"] for r in w.runs().values()] == ["queued"]  # handed back, not left running
    assert "Traceback" not in w.log(0)
