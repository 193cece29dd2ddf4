"""Training one claimed run: in this process, or in a child process the run cannot take down.

`adaptbench worker` trains in a long-lived child process (`ChildRunner`), so a task that hangs
past the run time limit, crashes the interpreter or is killed for using too much memory ends as
a *failed* run with the reason, and the worker goes on with a fresh child. The worker itself never
imports torch and stays responsive: a signal hands the run back to the queue at once, even in the
middle of a long step. `adaptbench run` trains in its own process (`run_here`), where a signal
stops the run at the next step.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from adaptbench.errors import UserError
from adaptbench.spec import RunSpec

PROGRESS_EVERY = 0.5  # seconds between progress messages from the child
STARTUP_SECONDS = 600.0  # importing torch on a busy node can be slow, but not this slow


@dataclass(frozen=True)
class Job:
    """What the trainer needs to train one run."""

    spec: RunSpec
    device: str  # a device request: auto, cpu, cuda, ...
    tasks_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """How an attempt at a run ended: a result or failure to store, or 'stopped' (hand it back)."""

    status: str  # done | diverged | failed | stopped | refused (this worker cannot train it)
    columns: dict[str, Any] = field(default_factory=dict)  # `runs` columns to store, with status
    curve: list[dict[str, Any]] = field(default_factory=list)


def failed(error: str) -> Outcome:
    return Outcome("failed", {"status": "failed", "error": error})


def error_text(exc: BaseException) -> str:
    """The end of the traceback: enough to see what raised, short enough for the database."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines[-6:])[-4000:]


def provenance() -> dict[str, str]:
    """Versions and host stored with every result."""
    import torch

    from adaptbench import __version__

    # str(): torch.__version__ is a torch class, which would make unpickling import torch
    return {"torch_version": str(torch.__version__), "package_version": __version__, "host": socket.gethostname()}


def run_here(
    job: Job,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Train the run in this process. An exception from the task is a failed run, not a crash."""
    try:
        from adaptbench import devices, train
        from adaptbench.tasks import get_task, loaded_fingerprint, reload_tasks
    except Exception as exc:  # noqa: BLE001 -- e.g. torch is missing on this machine
        return failed(error_text(exc))
    try:
        task = get_task(job.spec.task, job.tasks_dirs)
        if job.spec.fingerprint and loaded_fingerprint(task) != job.spec.fingerprint:
            # this process loaded another version of the task: load the files as they are now
            reload_tasks()
            task = get_task(job.spec.task, job.tasks_dirs)
        device = devices.choose(job.device)
    except UserError as exc:  # this worker lacks the task or the device; another may have it
        return Outcome("refused", {"error": str(exc)})
    if job.spec.fingerprint and loaded_fingerprint(task) != job.spec.fingerprint:
        # training it would store one definition's result under the other's name
        return failed(f"task {task.name!r} changed since this run was queued (its code or "
                      f"settings differ); queue the runs again to train the new definition")
    try:
        result = train.execute(job.spec, task, device, progress=progress, should_stop=should_stop)
        return Outcome(result.status, {**result.outcome(), **provenance()}, result.curve)
    except train.Interrupted:
        return Outcome("stopped")
    except UserError as exc:
        return failed(str(exc))
    except Exception as exc:  # noqa: BLE001 -- the task raised or ran out of memory
        return failed(error_text(exc))


class ChildRunner:
    """A child process that trains one run at a time for this worker; replaced when it dies or
    is killed (a time limit, a signal, a lost lease).

    Create and use it from the main thread: on Linux the child is killed when the thread that
    started it exits (PR_SET_PDEATHSIG), so an orphaned child never trains on.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    def run(
        self,
        job: Job,
        timeout: float | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] = lambda step, total: None,
    ) -> Outcome:
        """Train `job` in the child: its outcome, 'stopped' when `should_stop()` became true
        (the child is killed at once), or failed when it overran `timeout` seconds or died."""
        if not self.alive():
            problem = self.start(should_stop)
            if problem is not None:
                return Outcome("stopped") if should_stop() else Outcome("refused", {"error": problem})
        assert self._conn is not None
        try:
            self._conn.send(job)
        except OSError:
            return self._died("before the run started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if should_stop():
                self.kill()
                return Outcome("stopped")
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                return failed(
                    f"timed out: still running after {timeout:g} s (worker --run-timeout); the "
                    "training process was killed"
                )
            try:
                if not self._conn.poll(0.1):
                    continue
                message = self._conn.recv()
            except (EOFError, OSError):
                return self._died("while training this run")
            if message[0] == "progress":
                progress(message[1], message[2])
            elif message[0] == "outcome":
                return message[1]

    def alive(self) -> bool:
        """Whether the child is up (started, and neither killed nor dead)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, should_stop: Callable[[], bool] = lambda: False) -> str | None:
        """Start the child and wait until it has imported torch: None, or what went wrong.

        A worker starts its child before it claims a run, so that no run is held (and no lease
        can expire) during the seconds that importing torch takes.
        """
        self.kill()
        parent_end, child_end = socket.socketpair()
        code = "from adaptbench.runner import serve; serve()"
        args = [str(child_end.fileno()), str(os.getpid()), str(self._threads)]
        # the child's stdout goes to our stderr: a task's prints must not mix with data output
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL, stdout=2, close_fds=True,
        )
        child_end.close()
        self._conn = Connection(parent_end.detach())
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if should_stop():
                self.kill()
                return "stopped while starting"
            try:
                if self._conn.poll(0.1) and self._conn.recv() == ("ready",):
                    return None
            except (EOFError, OSError):
                return self._died("while starting").columns["error"]
        self.kill()
        return f"the training process did not start within {STARTUP_SECONDS:g} s"

    def _died(self, when: str) -> Outcome:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        self._forget()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            how = f"was killed by {name}"
            if -code == signal.SIGKILL:
                how += " (often the out-of-memory killer: the task used too much memory)"
        else:
            how = f"exited with code {code}"
        return failed(f"the training process {how} {when}")

    def kill(self) -> None:
        """Stop the child now (SIGKILL); the next run starts a fresh one."""
        if self._proc is not None:
            try:
                self._proc.kill()
            except OSError:
                pass
            self._proc.wait()
        self._forget()

    def close(self) -> None:
        """Stop the child: it holds nothing worth a graceful exit, and torch's takes a second."""
        self.kill()

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None


def serve() -> None:
    """The child's main loop: `python -c '...serve()' FD PARENT_PID THREADS`."""
    fd, parent_pid, threads = (int(a) for a in sys.argv[1:4])
    _exit_with_parent(parent_pid)
    # the worker decides what a signal means (hand the run back); Ctrl-C reaches us too
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        import torch

        import adaptbench.train  # noqa: F401 -- imported once, before the first run is timed

        if threads:
            torch.set_num_threads(threads)
        # torch's first optimizer step imports more of torch (about a second): do it now, so
        # that it counts in neither the first run's wall time nor its time limit
        weight = torch.nn.Parameter(torch.zeros(1))
        weight.grad = torch.zeros(1)
        torch.optim.SGD([weight], lr=0.1).step()
    except Exception:  # noqa: BLE001 -- each run will report the import error as its failure
        pass
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        last = [0.0]

        def progress(step: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY or step == total:
                last[0] = now
                conn.send(("progress", step, total))

        conn.send(("outcome", run_here(job, progress)))


def _exit_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:  # everywhere else: poll, so that an orphan stops within a second
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="adaptbench-parent-watch").start()

