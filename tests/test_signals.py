"""How `adaptbench worker` ends on a signal: an idle `--wait` worker stopped by Ctrl-C, SIGTERM or
a closed terminal (SIGHUP) exits 130, as README says, and says so in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import invoke


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
    time.sleep(4 if jobs == "1" else 8)  # started and polling
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "worker finished:" in err and "interrupted" in err
    assert "Traceback" not in err
