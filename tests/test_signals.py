"""How `adaptbench worker` ends on a signal: an idle `--wait` worker stopped by Ctrl-C, SIGTERM or
a closed terminal (SIGHUP) exits 130, as README says, and says so in one line."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

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
    # it says once that it waits (with --jobs 2, one of the processes says it for both)
    assert _first_line(proc, 60) == f"adaptbench worker: {worker.IDLE_LINE}\n"
    if jobs == "2":
        time.sleep(2)  # the other process, started at the same moment, is polling too
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.splitlines() == [f"worker finished: {jobs} interrupted"]
