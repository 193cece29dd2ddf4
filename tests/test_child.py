"""The worker's training process: replaced when it dies while starting, a failed attempt when it
is killed while training, and a task's output bounded in the worker's log."""

from __future__ import annotations

import io
import os
import re
import signal
import sys

import pytest

from adaptbench import runner, worker
from adaptbench.errors import UserError
from tests.test_faults import FIXTURE_TASKS, Workers, wait_until


def fake_python(tmp_path, monkeypatch, fails: str) -> callable:
    """Make the worker start its child through a script that fails while `[ $n -lt ... ]`-style
    shell condition `fails` holds ($n: earlier starts), else runs Python; returns the count."""
    count = tmp_path / "starts"
    script = tmp_path / "python"
    script.write_text(f"""#!/bin/sh
n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
{fails}
exec {sys.executable} "$@"
""")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    monkeypatch.setattr(runner, "START_BACKOFF", (0.1, 0.2, 0.3))
    return lambda: int(count.read_text())


def test_a_child_killed_while_starting_is_replaced_and_the_worker_goes_on(tmp_path, monkeypatch):
    starts = fake_python(tmp_path, monkeypatch, 'if [ "$n" -lt 2 ]; then kill -9 $$; fi')
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "2")
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], isolate=True)
    assert worker.work(w.engine, opts) == {"done": 2}
    assert starts() == 3  # killed twice, then up
    assert {(r["status"], r["attempts"]) for r in w.runs().values()} == {("done", 1)}


def test_a_child_that_never_starts_stops_the_worker_with_its_last_words(tmp_path, monkeypatch):
    starts = fake_python(tmp_path, monkeypatch,
                         """echo "ImportError: No module named 'torch'" >&2; exit 1""")
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "1")
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], isolate=True, wait=True)
    with pytest.raises(UserError, match=re.escape(
            "cannot start a training process: the training process exited with code 1 while "
            "starting; its last words: ImportError: No module named 'torch' (4 starts failed)")):
        worker.work(w.engine, opts)
    assert starts() == 4
    assert [(r["status"], r["attempts"]) for r in w.runs().values()] == [("queued", 0)]


# the child ignores SIGINT and SIGTERM (the worker decides what they mean): SIGUSR1 stands for
# any other signal from outside
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR1])
def test_a_child_killed_from_outside_is_a_failed_attempt_and_the_retry_completes(
        sqlite_workers, sig):
    w = sqlite_workers
    w.queue("-t", "tiny", "--seeds", "1")
    proc = w.start(step_sleep=1.0)
    wait_until(lambda: w.starts(), 60, "the run to start")
    [(_, trainer_pid)] = w.starts()
    os.kill(trainer_pid, sig)
    assert proc.wait(timeout=90) == 0, w.log(0)
    run = w.runs()[1]
    assert (run["status"], run["attempts"], run["error"]) == ("done", 2, None)
    assert len(w.starts()) == 2
    reason = f"the training process was killed by signal {int(sig)} ({sig.name}) while training run 1"
    if sig == signal.SIGKILL:
        reason += ("; not sent by this worker: the kernel's out-of-memory killer or another "
                   "process")
    assert f"run 1 retried: tiny sgd lr=0.1 seed=0 error={reason} [" in w.log(0)
    assert "worker finished: 1 done, 1 retried" in w.log(0)


def test_a_task_that_kills_its_trainer_every_time_fails_after_max_attempts(tmp_path):
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "oom-kill", "--seeds", "1")
    opts = worker.WorkerOptions(tasks_dirs=[FIXTURE_TASKS], isolate=True, max_attempts=2)
    assert worker.work(w.engine, opts) == {"retried": 1, "failed": 1}
    run = w.runs()[1]
    assert (run["status"], run["attempts"]) == ("failed", 2)
    assert run["error"] == (
        "the training process was killed by signal 9 (SIGKILL) while training run 1; not sent "
        "by this worker: the kernel's out-of-memory killer or another process (attempt 2 of 2: "
        "not retried again)")


def test_a_tasks_output_reaches_the_workers_log_bounded(sqlite_workers):
    w = sqlite_workers
    w.queue("-t", "chatty", "--seeds", "1")
    assert w.start().wait(timeout=90) == 0, w.log(0)
    log = w.log(0)
    assert len(re.findall(r"^chatty line", log, re.M)) == runner.OUTPUT_LINES
    assert "adaptbench worker: task output of run 1 truncated after 200 lines" in log
    assert "chatty line 200 " not in log and "run 1 done" in log


def test_bounded_output_cuts_at_the_byte_budget(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with runner.bounded_output("runs 3, 4"):
        for _ in range(100):
            print("x" * 1000)
    assert sys.stdout is out
    text = out.getvalue()
    assert text.count("x" * 1000) == runner.OUTPUT_BYTES // 1001
    assert text.endswith("adaptbench worker: task output of runs 3, 4 truncated after 64 KiB\n")
