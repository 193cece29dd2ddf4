"""Training claimed runs (one, or a group trained together by `train.execute_group`): in this
process, or in a child process the runs cannot take down.

`adaptbench worker` trains in a long-lived child process (`ChildRunner`), so a task that hangs
past the run time limit ends as a *failed* run, and one that crashes the interpreter or is killed
(e.g. for using too much memory) as a failed *attempt* with the exact reason; either way the
worker goes on with a fresh child. A task's prints reach the worker's log bounded per job. The worker itself never
imports torch and stays responsive: a signal hands the run back to the queue at once, even in the
middle of a long step. `adaptbench run` trains in its own process (`run_here`), where a signal
stops the run at the next step.
"""

from __future__ import annotations

import functools
import io
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from adaptbench.errors import UserError
from adaptbench.spec import RunSpec

PROGRESS_EVERY = 0.5  # seconds between progress messages from the child
STARTUP_SECONDS = 600.0  # importing torch on a busy node can be slow, but not this slow
START_BACKOFF = (1.0, 2.0, 4.0)  # seconds before each new start of a child that died starting
OUTPUT_LINES, OUTPUT_BYTES = 200, 64 * 1024  # a job's task output that reaches the worker's log


@dataclass(frozen=True)
class Job:
    """What the trainer needs to train a group of runs of one task (often a group of one)."""

    specs: tuple[RunSpec, ...]  # runs that differ in seed and learning rate only
    device: str  # a device request: auto, cpu, cuda, ...
    tasks_dirs: tuple[str, ...] = ()
    vectorize: str = "auto"  # train.execute_group's: auto | on | off
    run_ids: tuple[int, ...] = ()  # the runs' ids, for messages


def runs_named(ids: tuple[int, ...]) -> str:
    """'run 3', 'runs 3, 4, 5' (or 'this run' when the ids are unknown)."""
    if not ids:
        return "this run"
    return f"run{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"


@dataclass(frozen=True)
class Outcome:
    """How an attempt at a run ended: a result or failure to store, or 'stopped' (hand it back)."""

    # done | diverged | failed | stopped | refused (this worker cannot train it) | retry (the
    # attempt failed, perhaps of the run's doing: requeue it, counting the attempt)
    status: str
    columns: dict[str, Any] = field(default_factory=dict)  # `runs` columns to store, with status
    curve: list[dict[str, Any]] = field(default_factory=list)


def failed(error: str) -> Outcome:
    return Outcome("failed", {"status": "failed", "error": error})


def error_text(exc: BaseException) -> str:
    """The end of the traceback: enough to see what raised, short enough for the database."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines[-6:])[-4000:]


def provenance(device: Any = None) -> dict[str, str | None]:
    """Versions, host, hardware and code stored with every result (`device`: the torch device
    the run trained on, whose GPU is named on cuda)."""
    import torch

    from adaptbench import __version__

    # str(): torch.__version__ is a torch class, which would make unpickling import torch
    return {"torch_version": str(torch.__version__), "package_version": __version__,
            "host": socket.gethostname(), "python_version": platform.python_version(),
            "hardware": _hardware(device), "code_commit": code_commit()}


def _hardware(device: Any) -> str | None:
    """The CPU model, and the GPU's name when the run trained on cuda."""
    parts = [_cpu_model()]
    if getattr(device, "type", None) == "cuda":
        try:
            import torch

            parts.append(torch.cuda.get_device_name(device))
        except Exception:  # noqa: BLE001 -- provenance never fails a run
            pass
    text = "; ".join(p for p in parts if p)
    return text[:200] or None


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the adaptbench source when it runs from a git checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # a folder, or a file in a worktree
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit[:50] if done.returncode == 0 and commit else None


def outcomes(n: int, outcome: Outcome) -> list[Outcome]:
    """The same outcome for each of a group's `n` runs (a failure or a stop ends them all)."""
    return [outcome] * n


_EXPLAINED: set[tuple[str, str, str]] = set()


def _explain(spec: RunSpec, why: str) -> None:
    """Why a group was not stacked: one line on stderr, once per task, optimizer and reason."""
    key = (spec.task, spec.optimizer, why)
    if key not in _EXPLAINED:
        _EXPLAINED.add(key)
        print(f"adaptbench worker: {spec.task} x {spec.optimizer}: {why}", file=sys.stderr, flush=True)


def run_here(
    job: Job,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Train the job's runs in this process: one outcome per spec, in order. An exception from
    the task fails every run of the group, and is not a crash."""
    n = len(job.specs)
    first = job.specs[0]
    try:
        from adaptbench import devices, train
        from adaptbench.tasks import get_task, loaded_fingerprint, reload_tasks
    except Exception as exc:  # noqa: BLE001 -- e.g. torch is missing on this machine
        return outcomes(n, failed(error_text(exc)))
    try:
        task = get_task(first.task, job.tasks_dirs)
        if first.fingerprint and loaded_fingerprint(task) != first.fingerprint:
            # this process loaded another version of the task: load the files as they are now
            reload_tasks()
            task = get_task(first.task, job.tasks_dirs)
        device = devices.choose(job.device)
    except UserError as exc:  # this worker lacks the task or the device; another may have it
        return outcomes(n, Outcome("refused", {"error": str(exc)}))
    if first.fingerprint and loaded_fingerprint(task) != first.fingerprint:
        # training it would store one definition's result under the other's name
        return outcomes(n, failed(
            f"task {task.name!r} changed since this run was queued (its code or settings "
            "differ); queue the runs again to train the new definition"))
    try:
        results = train.execute_group(list(job.specs), task, device, vectorize=job.vectorize,
                                      progress=progress, should_stop=should_stop,
                                      explain=lambda why: _explain(first, why))
        info = provenance(device)
        return [Outcome(r.status, {**r.outcome(), **info}, r.curve) for r in results]
    except train.Interrupted:
        return outcomes(n, Outcome("stopped"))
    except UserError as exc:
        return outcomes(n, failed(str(exc)))
    except Exception as exc:  # noqa: BLE001 -- the task raised or ran out of memory
        return outcomes(n, failed(error_text(exc)))


class ChildRunner:
    """A child process that trains one job (a run, or a group of runs) at a time for this
    worker; replaced when it dies or is killed (a time limit, a signal, a lost lease).

    Create and use it from the main thread: on Linux the child is killed when the thread that
    started it exits (PR_SET_PDEATHSIG), so an orphaned child never trains on.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._stderr: _Forward | None = None
        self._died_starting = False

    def run(
        self,
        job: Job,
        timeout: float | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] = lambda step, total: None,
    ) -> list[Outcome]:
        """Train `job` in the child: one outcome per spec; all 'stopped' when `should_stop()`
        became true (the child is killed at once), all failed when the job overran `timeout`
        seconds; all 'retry' when the child died (see `_died`)."""
        n = len(job.specs)
        what = runs_named(job.run_ids)
        if not self.alive():
            problem = self.start(should_stop)
            if problem is not None:
                return outcomes(n, Outcome("stopped") if should_stop()
                                else Outcome("refused", {"error": problem}))
        assert self._conn is not None
        try:
            self._conn.send(job)
        except OSError:
            return outcomes(n, self._died(f"before {what} started"))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if should_stop():
                self.kill()
                return outcomes(n, Outcome("stopped"))
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                together = "" if n == 1 else f" for each of the {n} runs trained together"
                return outcomes(n, failed(
                    f"timed out: still running after {timeout:g} s (worker --run-timeout"
                    f"{together}); the training process was killed"
                ))
            try:
                if not self._conn.poll(0.1):
                    continue
                message = self._conn.recv()
            except (EOFError, OSError):
                if should_stop():  # e.g. a SIGTERM to the whole process group: hand it back
                    self.kill()
                    return outcomes(n, Outcome("stopped"))
                return outcomes(n, self._died(f"while training {what}"))
            kind = message[0] if isinstance(message, tuple) and message else None
            if kind == "progress":
                progress(message[1], message[2])
            elif kind == "outcomes" and len(message[1]) == n:
                return message[1]
            else:  # a child that answers out of turn cannot be trusted with the next job
                self.kill()
                return outcomes(n, failed(f"the training process answered {kind!r} for "
                                          f"{what}; it was replaced"))

    def alive(self) -> bool:
        """Whether the child is up (started, and neither killed nor dead)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, should_stop: Callable[[], bool] = lambda: False) -> str | None:
        """Start the child and wait until it has imported torch: None, or what went wrong.

        A child that dies while starting (killed, or crashed while importing) is started again
        after each pause of START_BACKOFF; what went wrong is returned only when every start
        failed, with the child's last line on stderr. A worker starts its child before it
        claims a run, so that no run is held (and no lease can expire) during the seconds that
        importing torch takes.
        """
        problem = self._start_once(should_stop)
        for pause in START_BACKOFF:
            if problem is None or not self._died_starting:
                return problem
            end = time.monotonic() + pause
            while time.monotonic() < end:
                if should_stop():
                    return "stopped while starting"
                time.sleep(0.05)
            problem = self._start_once(should_stop)
        if problem is not None and self._died_starting:
            problem += f" ({len(START_BACKOFF) + 1} starts failed)"
        return problem

    def _start_once(self, should_stop: Callable[[], bool]) -> str | None:
        self.kill()
        self._died_starting = False
        parent_end, child_end = socket.socketpair()
        code = "from adaptbench.runner import serve; serve()"
        args = [str(child_end.fileno()), str(os.getpid()), str(self._threads)]
        # the child's stdout goes to our stderr: a task's prints must not mix with data output;
        # its stderr comes through us, so that we know its last words if it dies
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL, stdout=2, stderr=subprocess.PIPE, close_fds=True,
        )
        self._stderr = _Forward(self._proc.stderr)
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
                self._died_starting = True
                return self._death("while starting")
        self.kill()
        return f"the training process did not start within {STARTUP_SECONDS:g} s"

    def _died(self, when: str) -> Outcome:
        """The child died on its own, while training: each run goes back to the queue as a
        failed attempt (a task that kills its trainer every time ends failed after
        --max-attempts), with what happened."""
        return Outcome("retry", {"error": self._death(when)})

    def _death(self, when: str) -> str:
        """How the child died, which we did not kill: its exit code or signal, and its last
        line on stderr."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        last = self._stderr.last_line() if self._stderr is not None else ""
        self._forget()
        if code is not None and code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            text = f"the training process was killed by signal {-code}{name} {when}"
            if -code == signal.SIGKILL:
                text += ("; not sent by this worker: the kernel's out-of-memory killer or "
                         "another process")
        else:
            text = f"the training process exited with code {code} {when}"
        return f"{text}; its last words: {last}" if last else text

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
        if self._stderr is not None:
            self._stderr.join()
        self._proc, self._conn, self._stderr = None, None, None


class _Forward:
    """A thread that copies a child's stderr to ours, line by line, and keeps its last line."""

    def __init__(self, pipe: Any) -> None:
        self._pipe, self._last = pipe, b""
        self._thread = threading.Thread(target=self._copy, daemon=True, name="adaptbench-stderr")
        self._thread.start()

    def _copy(self) -> None:
        for line in iter(self._pipe.readline, b""):
            if line.strip():
                self._last = line
            try:
                if hasattr(sys.stderr, "buffer"):
                    sys.stderr.buffer.write(line)
                else:  # a stand-in without bytes (tests capturing stderr)
                    sys.stderr.write(line.decode(errors="replace"))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        self._pipe.close()

    def last_line(self) -> str:
        self._thread.join(timeout=2)  # the child is dead: the rest of its stderr is in the pipe
        return self._last.decode(errors="replace").strip()[:500]

    def join(self) -> None:
        self._thread.join(timeout=2)


def serve() -> None:
    """The child's main loop: `python -c '...serve()' FD PARENT_PID THREADS`."""
    fd, parent_pid, threads = (int(a) for a in sys.argv[1:4])
    _exit_with_parent(parent_pid)
    # the worker decides what a signal means (hand the run back); Ctrl-C and a closed terminal
    # (SIGHUP) reach us too
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
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

        with bounded_output(runs_named(job.run_ids)):
            done = run_here(job, progress)
        conn.send(("outcomes", done))


@contextmanager
def bounded_output(what: str) -> Iterator[None]:
    """Let at most OUTPUT_LINES lines or OUTPUT_BYTES bytes of what a task prints (sys.stdout,
    which in the child is the worker's stderr) through during the block; past that, one line
    says the output of `what` was truncated and the rest is dropped. What bypasses sys.stdout
    (os.write(1, ...), C code, subprocesses) is not counted; in-process `adaptbench run` does
    not bound its output."""
    real = sys.stdout
    sys.stdout = _Bounded(real, what)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = real


class _Bounded(io.TextIOBase):
    """A text stream that passes writes through until its budget is spent."""

    def __init__(self, out: Any, what: str) -> None:
        self._out, self._what = out, what
        self._lines = self._bytes = 0
        self._cut = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._cut:
            return len(text)
        # a write that would begin line OUTPUT_LINES + 1 is past the budget, as is one that
        # would end past it
        lines = text.count("\n") + (not text.endswith("\n"))
        size = len(text.encode(errors="replace"))
        if self._lines + lines > OUTPUT_LINES or self._bytes + size > OUTPUT_BYTES:
            self._cut = True
            limit = (f"{OUTPUT_LINES} lines" if self._lines + lines > OUTPUT_LINES
                     else f"{OUTPUT_BYTES // 1024} KiB")
            self._out.write(f"\nadaptbench worker: task output of {self._what} truncated after "
                            f"{limit}\n")
            self._out.flush()
            return len(text)
        self._lines, self._bytes = self._lines + text.count("\n"), self._bytes + size
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()


def signal_on_parent_death(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux's
    PR_SET_PDEATHSIG); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(1, sig) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _exit_with_parent(parent_pid: int) -> None:
    signal_on_parent_death(signal.SIGKILL)

    def watch() -> None:  # everywhere else: poll, so that an orphan stops within a second
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="adaptbench-parent-watch").start()

