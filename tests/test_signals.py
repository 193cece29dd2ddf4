"""How `adaptbench worker` ends on a signal: an idle `--wait` worker stopped by Ctrl-C, SIGTERM or
a closed terminal (SIGHUP) exits 130, as README says, and says so in one line."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaptbench import worker
from tests.conftest import invoke


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line the process writes to stderr, within `timeout` seconds."""
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return proc.stderr.readline()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_idle_waiting_worker_stopped_by_a_signal_exits_130(tmp_path, sig, jobs):
    db = str(tmp_path / "r.db")
    assert invoke("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "1", "--steps", "5",
                  "--db", db).code == 0
    assert invoke("cancel", "--all", "--db", db).code == 0  # nothing left to train: idle
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptbench.cli", "worker", "--wait", "--jobs", jobs, "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # it says once that it waits (with --jobs 2, one of the processes says it for both; the
    # other may still be starting, and counts as interrupted all the same)
    assert _first_line(proc, 60) == f"adaptbench worker: {worker.IDLE_LINE}\n"
    assert proc.poll() is None, proc.communicate()
    if sig == signal.SIGTERM:
        os.kill(proc.pid, sig)  # as `kill`, Slurm or Kubernetes send it
    else:
        os.killpg(proc.pid, sig)  # as a terminal sends them: to every process of the group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.splitlines() == [f"worker finished: {jobs} interrupted"]


def _children(pid: int) -> dict[int, str]:
    """The child processes of `pid` (Linux /proc), each with its command line."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def _unheard(pid: int) -> set[int]:
    """The signals a process blocks or ignores (Linux /proc)."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigBlk:", "SigIgn:")):
            mask |= int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_jobs_processes_never_see_ctrl_c_and_one_that_dies_makes_the_worker_exit_1(tmp_path):
    """The worker's processes (and multiprocessing's resource tracker) are started with Ctrl-C
    and SIGHUP blocked, as no handler could from their first instruction; a worker
    process killed from outside is counted as crashed, and the worker exits 1."""
    db = str(tmp_path / "r.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptbench.cli", "worker", "--wait", "--jobs", "2", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert _first_line(proc, 60) == f"adaptbench worker: {worker.IDLE_LINE}\n"
    children = _children(proc.pid)
    workers = [pid for pid, cmd in children.items() if "resource_tracker" not in cmd]
    assert len(workers) == 2 and len(children) == 3, children
    for pid in children:
        assert {signal.SIGINT, signal.SIGHUP} <= _unheard(pid), children[pid]
    for pid in workers:
        assert signal.SIGTERM not in _unheard(pid)  # how the worker passes them on
    assert not {signal.SIGINT, signal.SIGHUP} & _unheard(proc.pid)  # the worker hears them
    os.kill(workers[1], signal.SIGKILL)
    time.sleep(1)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (proc.returncode, err)
    assert err.splitlines() == ["worker finished: 1 crashed, 1 interrupted"]


def test_a_signal_while_the_worker_opens_the_database_starts_no_processes(cli, monkeypatch):
    """A stop asked for before the --jobs processes exist is not lost: none is started."""
    opened = worker.open_engine

    def open_and_stop(opts, flag):
        flag.requested = True  # what the signal handler does
        return opened(opts, flag)

    def never(*args):
        raise AssertionError("processes started after a stop")

    monkeypatch.setattr(worker, "open_engine", open_and_stop)
    monkeypatch.setattr(worker, "work_parallel", never)
    r = cli("worker", "--jobs", "2", "--wait")
    assert r.code == 130, r.err
    assert r.err.splitlines() == ["worker finished: 1 interrupted"]
