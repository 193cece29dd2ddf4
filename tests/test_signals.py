"""How `adaptbench worker` ends on a signal: an idle `--wait` worker stopped by Ctrl-C, SIGTERM or
a closed terminal (SIGHUP) exits 130, as README says, and says so in one line."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
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


def _signals(pid: int, kind: str) -> set[int]:
    """The signals a process blocks ("SigBlk") or ignores ("SigIgn"), from Linux /proc."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith(kind + ":"))
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


@pytest.fixture
def idle_jobs_worker(tmp_path):
    """`worker --wait --jobs 2` on an empty queue, once it says so: the process, its two
    worker processes, and all its children with their command lines. Whatever a test leaves
    of them is killed at its end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptbench.cli", "worker", "--wait", "--jobs", "2", "--db",
         str(tmp_path / "r.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    children: dict[int, str] = {}
    try:
        assert _first_line(proc, 60) == f"adaptbench worker: {worker.IDLE_LINE}\n"
        children = _children(proc.pid)
        workers = [pid for pid, cmd in children.items() if "resource_tracker" not in cmd]
        assert len(workers) == 2 and len(children) == 3, children
        yield proc, workers, children
    finally:
        _kill_group(proc)


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


LINUX_PROC = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                                reason="reads the children of a process from /proc (Linux)")


@LINUX_PROC
def test_jobs_processes_never_see_ctrl_c_and_one_that_dies_makes_the_worker_exit_1(
        idle_jobs_worker):
    """Ctrl-C and SIGHUP reach the whole process group: the worker's processes ignore them (it
    passes them on as SIGTERM) and multiprocessing's resource tracker must not hear SIGHUP,
    which it does not ignore; both were started with them blocked, as no handler could from
    their first instruction. A worker process killed from outside is counted as crashed, and
    the worker exits 1."""
    proc, workers, children = idle_jobs_worker
    [tracker] = set(children) - set(workers)
    assert signal.SIGHUP in _signals(tracker, "SigBlk") and signal.SIGINT in _signals(tracker, "SigIgn")
    group = {signal.SIGINT, signal.SIGHUP}
    deadline = time.monotonic() + 60
    for pid in workers:  # the second may still be starting: blocked until it ignores them
        # ignored, then unblocked, so that the training processes they start do not inherit
        # the mask
        while not (group <= _signals(pid, "SigIgn") and not group & _signals(pid, "SigBlk")):
            assert group <= _signals(pid, "SigBlk") | _signals(pid, "SigIgn")
            assert time.monotonic() < deadline, "a worker process never got ready"
            time.sleep(0.05)
        assert signal.SIGTERM not in _signals(pid, "SigIgn")  # how the worker passes them on
    assert not group & (_signals(proc.pid, "SigBlk") | _signals(proc.pid, "SigIgn"))
    os.kill(workers[1], signal.SIGKILL)
    time.sleep(1)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (proc.returncode, err)
    assert err.splitlines() == ["worker finished: 1 crashed, 1 interrupted"]


@LINUX_PROC
def test_jobs_processes_stop_when_their_worker_is_killed(idle_jobs_worker):
    """A worker killed with SIGKILL cannot pass anything on: its --wait processes stop by
    themselves instead of polling for ever."""
    proc, workers, _ = idle_jobs_worker
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a --jobs process outlived its worker"
        time.sleep(0.2)


def test_jobs_workers_on_an_empty_queue_exit_0(cli):
    r = cli("worker", "--jobs", "2")
    assert r.code == 0, r.err
    assert r.err.splitlines() == ["worker finished: no runs"]


def test_a_signal_while_the_worker_opens_the_database_starts_no_processes(cli, monkeypatch):
    """A stop asked for before the --jobs processes exist is not lost: none is started."""
    import multiprocessing.context

    opened = worker.open_engine

    def open_and_stop(opts, flag):
        flag.requested, flag.signals = True, 1  # what the signal handler does
        return opened(opts, flag)

    def never(self):
        raise AssertionError("a process started after a stop")

    monkeypatch.setattr(worker, "open_engine", open_and_stop)
    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", never)
    r = cli("worker", "--jobs", "2", "--wait")
    assert r.code == 130, r.err
    assert r.err.splitlines() == ["worker finished: 2 interrupted"]


SIGTERM_IN_START = """
import multiprocessing.context, os, signal, sys
start = multiprocessing.context.SpawnProcess.start
def start_under_a_sigterm(self):
    os.kill(os.getpid(), signal.SIGTERM)  # held until the start is done, or taken by a thread
    start(self)
multiprocessing.context.SpawnProcess.start = start_under_a_sigterm
from adaptbench.entry import main
sys.argv = ["adaptbench", "worker", "--jobs", "2", "--wait", "--db", sys.argv[1]]
main()
"""


def test_a_sigterm_while_a_process_starts_reaches_it(tmp_path):
    """SIGTERM (kill, Slurm) sent while a --jobs process is being started, before it has a pid,
    is passed on once it has one: the worker stops instead of waiting for ever."""
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_IN_START, str(tmp_path / "r.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    with _killed_at_the_end(proc):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["worker finished: 2 interrupted"]


@contextmanager
def _killed_at_the_end(proc: subprocess.Popen):
    """Whatever is left of the process's group is killed when the block ends."""
    try:
        yield
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill what is left of the process's group (its session: it was started in a new one)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_worker_started_with_sighup_ignored_keeps_ignoring_it(tmp_path, jobs):
    """`nohup adaptbench worker &` survives the terminal closing: a signal the worker was
    started with ignored stays ignored; SIGTERM still stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptbench", "worker", "--wait", "--jobs", jobs, "--db",
         str(tmp_path / "r.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    with _killed_at_the_end(proc):
        assert _first_line(proc, 60) == f"adaptbench worker: {worker.IDLE_LINE}\n"
        os.killpg(proc.pid, signal.SIGHUP)
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"worker finished: {jobs} interrupted"]


@LINUX_PROC
def test_the_training_process_leaves_ctrl_c_and_sighup_to_its_worker(tmp_path):
    """A closed terminal sends SIGHUP to the whole group: the process training a run ignores it
    (and Ctrl-C, and SIGTERM), so that its worker hands the run back instead of losing the
    process mid-run."""
    db = str(tmp_path / "r.db")
    assert invoke("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "1", "--steps", "1000000",
                  "--db", db).code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptbench", "worker", "--vectorize", "off", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stop = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    with _killed_at_the_end(proc):
        deadline = time.monotonic() + 60
        while True:
            trainers = [pid for pid, cmd in _children(proc.pid).items() if "serve()" in cmd]
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                running = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'"
                                       ).fetchone()[0]
            if running and trainers and signal.SIGINT in _signals(trainers[0], "SigIgn"):
                time.sleep(1)  # training
                break
            assert time.monotonic() < deadline, "no training process"
            time.sleep(0.1)
        assert stop <= _signals(trainers[0], "SigIgn")
        os.killpg(proc.pid, signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run 1 requeued" in err and "worker finished: 1 requeued" in err
