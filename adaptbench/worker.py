"""Workers: the claim -> execute -> finish loop, in this process or in N processes.

torch is imported lazily (only when a run is executed), so importing this module is cheap.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from adaptbench import queue
from adaptbench.errors import UserError
from adaptbench.queue import Claim


@dataclass
class WorkerOptions:
    """How a worker behaves; the same for in-process and multi-process workers."""

    db: str | None = None
    lease_seconds: float = queue.DEFAULT_LEASE_SECONDS
    max_runs: int | None = None  # stop after this many runs
    wait: bool = False  # poll for new work instead of exiting when the queue is empty
    poll_seconds: float = 2.0
    device: str | None = None  # override each run's stored device request
    tasks_dirs: Sequence[str] = ()
    threads: int | None = None  # torch intra-op threads for this process
    max_attempts: int = queue.MAX_ATTEMPTS


@dataclass
class Events:
    """Callbacks a front end can hook (progress bars, log lines). All optional."""

    claimed: Callable[[Claim], None] = lambda c: None
    progress: Callable[[Claim, int, int], None] = lambda c, step, total: None
    finished: Callable[[Claim, str, dict[str, Any]], None] = lambda c, status, outcome: None


@dataclass
class StopFlag:
    """Set by the first SIGINT/SIGTERM: finish nothing new, hand the current run back."""

    requested: bool = False
    signals: int = 0
    lost_lease: set[int] = field(default_factory=set)


class Heartbeat:
    """A background thread that extends the lease of the run being trained."""

    def __init__(self, engine: Engine, claim: Claim, lease_seconds: float, flag: StopFlag) -> None:
        self._engine, self._claim, self._lease, self._flag = engine, claim, lease_seconds, flag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="adaptbench-heartbeat")

    def _beat(self) -> None:
        interval = max(0.2, self._lease / 3)
        while not self._stop.wait(interval):
            try:
                if not queue.heartbeat(self._engine, self._claim, self._lease):
                    self._flag.lost_lease.add(self._claim.run_id)
                    return
            except Exception:  # a transient DB error: the lease has slack for the next beat
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines[-6:])
    return text[-4000:]


def execute_claim(engine: Engine, claim: Claim, opts: WorkerOptions, flag: StopFlag, events: Events) -> str:
    """Train one claimed run and store its outcome; returns the final status (or 'requeued')."""
    from adaptbench import devices, train
    from adaptbench.tasks import get_task

    try:
        task = get_task(claim.spec.task, opts.tasks_dirs)
        device = devices.choose(opts.device or claim.device_request)
    except UserError as exc:
        outcome = {"status": "failed", "error": str(exc)}
        queue.finish(engine, claim, outcome, [])
        events.finished(claim, "failed", outcome)
        return "failed"

    def should_stop() -> bool:
        return flag.requested or claim.run_id in flag.lost_lease

    try:
        with Heartbeat(engine, claim, opts.lease_seconds, flag):
            result = train.execute(
                claim.spec, task, device,
                progress=lambda step, total: events.progress(claim, step, total),
                should_stop=should_stop,
            )
    except (train.Interrupted, KeyboardInterrupt):
        queue.release(engine, claim)
        events.finished(claim, "requeued", {})
        return "requeued"
    except Exception as exc:  # the task raised or ran out of memory: a result, not a worker crash
        outcome = {"status": "failed", "error": _error_text(exc)}
        queue.finish(engine, claim, outcome, [])
        events.finished(claim, "failed", outcome)
        return "failed"
    outcome = {**result.outcome(), **provenance()}
    if not queue.finish(engine, claim, outcome, result.curve):
        events.finished(claim, "lost", outcome)  # reaped meanwhile: the retry's result wins
        return "lost"
    events.finished(claim, result.status, outcome)
    return result.status


def provenance() -> dict[str, str]:
    """Versions and host stored with every result."""
    import socket

    import torch

    from adaptbench import __version__

    return {"torch_version": torch.__version__, "package_version": __version__, "host": socket.gethostname()}


def work(
    engine: Engine,
    opts: WorkerOptions,
    run_ids: Sequence[int] | None = None,
    events: Events | None = None,
    flag: StopFlag | None = None,
) -> dict[str, int]:
    """Claim and execute runs until the queue (or `run_ids`) is drained; counts per outcome."""
    events = events or Events()
    flag = flag or StopFlag()
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    worker_id = queue.new_worker_id()
    tally: dict[str, int] = {}
    done = 0
    while not flag.requested and (opts.max_runs is None or done < opts.max_runs):
        claim = queue.claim(engine, worker_id, opts.lease_seconds, run_ids, opts.max_attempts)
        if claim is None:
            if opts.wait and not flag.requested:
                _sleep(opts.poll_seconds, flag)
                continue
            break
        events.claimed(claim)
        try:
            status = execute_claim(engine, claim, opts, flag, events)
        except KeyboardInterrupt:
            queue.release(engine, claim)
            raise
        tally[status] = tally.get(status, 0) + 1
        if status != "requeued":
            done += 1
    return tally


def _sleep(seconds: float, flag: StopFlag) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not flag.requested:
        time.sleep(min(0.1, end - time.monotonic()))


def install_signal_handlers(flag: StopFlag) -> None:
    """First SIGINT/SIGTERM: stop after handing the current run back; second: stop now."""

    def handler(signum: int, _frame: Any) -> None:
        flag.signals += 1
        flag.requested = True
        if flag.signals > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _child(opts: WorkerOptions, result_queue: Any) -> None:
    from adaptbench.store import make_engine

    flag = StopFlag()
    install_signal_handlers(flag)
    # Ctrl-C reaches the whole process group; the parent forwards it as SIGTERM, once per press,
    # so each press counts once here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(opts.db)
    try:
        tally = work(engine, opts, events=log_events(), flag=flag)
    except KeyboardInterrupt:
        tally = {"interrupted": 1}
    result_queue.put(tally)


def log_events() -> Events:
    """Events that print one plain line per finished run to stderr."""

    def finished(c: Claim, status: str, outcome: dict[str, Any]) -> None:
        s = c.spec
        extra = ""
        if status == "done":
            extra = f" test_metric={outcome.get('final_test_metric'):.4g} ({outcome.get('wall_seconds', 0):.1f}s)"
        elif status == "failed":
            extra = " error=" + (outcome.get("error") or "").strip().splitlines()[-1][:200]
        print(
            f"run {c.run_id} {status}: {s.task} {s.optimizer} lr={s.lr:g} seed={s.seed}{extra}",
            file=sys.stderr,
            flush=True,
        )

    return Events(finished=finished)


def work_parallel(opts: WorkerOptions, jobs: int) -> dict[str, int]:
    """Run `jobs` worker processes against the same database; each drains the shared queue."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    child_opts = WorkerOptions(**{**opts.__dict__, "threads": threads})
    procs = [ctx.Process(target=_child, args=(child_opts, results), daemon=False) for _ in range(jobs)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    old_int = signal.signal(signal.SIGINT, forward)
    old_term = signal.signal(signal.SIGTERM, forward)
    try:
        for p in procs:
            p.join()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    tally: dict[str, int] = {}
    for _ in procs:
        try:
            part = results.get(timeout=1)
        except Exception:  # a child that crashed reports nothing; its runs' leases expire
            tally["crashed"] = tally.get("crashed", 0) + 1
            continue
        for k, v in part.items():
            tally[k] = tally.get(k, 0) + v
    return tally
