"""Workers: the claim -> execute -> finish loop, in this process or in N processes.

A worker holds one run at a time, or a group of compatible runs (`queue.claim_group`: the same
task and settings, other seeds and learning rates) that `train.execute_group` trains together,
each run under its own lease, which a heartbeat thread renews. With `isolate=True` (what
`adaptbench worker` uses) the runs train in a child process
(`runner.ChildRunner`): the worker never imports torch, enforces `run_timeout`, and survives a
task that crashes the interpreter or runs out of memory. Without it (`adaptbench run`) the run
trains here and torch is imported lazily, so importing this module is cheap.

Signals: the first SIGINT/SIGTERM hands the current runs back to the queue and stops the worker;
a second one stops it at once (the runs' leases then expire and other workers retry them).

Database outages are waited out (`faults.Outage`): every call to the queue is retried while the
database is unreachable, for up to `WorkerOptions.db_outage` seconds, and the run in training
trains on; its result is stored when the database returns if the claim still holds. Storage
faults (a full disk, the SQLite file deleted under the worker) stop the worker with one line.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from adaptbench import entry, faults, queue, runner
from adaptbench.errors import UserError
from adaptbench.queue import Claim

# a closed terminal or ssh session (SIGHUP) stops a worker as Ctrl-C and SIGTERM do: the run in
# hand goes back to the queue
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
IDLE_LINE = "nothing to train; waiting for runs to be queued (--wait; Ctrl-C stops)"
DEFAULT_DB_OUTAGE = 300.0  # seconds a worker without --wait waits out an unreachable database


@dataclass
class WorkerOptions:
    """How a worker behaves; the same for in-process and multi-process workers."""

    db: str | None = None
    lease_seconds: float = queue.DEFAULT_LEASE_SECONDS
    max_runs: int | None = None  # stop after this many runs
    wait: bool = False  # poll for new work instead of exiting when the queue is empty
    poll_seconds: float = 1.0
    device: str | None = None  # override each run's stored device request
    tasks_dirs: Sequence[str] = ()
    threads: int | None = None  # torch intra-op threads for the training process
    max_attempts: int = queue.MAX_ATTEMPTS
    run_timeout: float | None = None  # fail a run still training after this many seconds
    isolate: bool = False  # train in a child process (required for run_timeout)
    # how long to wait out an unreachable database before stopping; None: for ever
    db_outage: float | None = DEFAULT_DB_OUTAGE
    # False: never claim a run whose optimizer is a plugin (`module:attr`), so that no code named
    # by whoever can queue runs is imported; such runs stay queued for a worker that allows it
    plugins: bool = True
    # how a group of runs trains (train.execute_group's auto | on | off); "off" also claims one
    # run at a time
    vectorize: str = "auto"
    group_size: int = 32  # the most runs claimed and trained together


@dataclass
class Events:
    """Callbacks a front end can hook (progress bars, log lines). All optional."""

    claimed: Callable[[Claim], None] = lambda c: None
    progress: Callable[[Claim, int, int], None] = lambda c, step, total: None
    finished: Callable[[Claim, str, dict[str, Any]], None] = lambda c, status, outcome: None
    # a --wait worker found nothing to train (once each time it goes from work, or its start, to
    # waiting)
    idle: Callable[[], None] = lambda: None


@dataclass
class StopFlag:
    """Set by the first SIGINT/SIGTERM: finish nothing new, hand the current run back."""

    requested: bool = False
    signals: int = 0
    lost_lease: set[int] = field(default_factory=set)
    # what the heartbeat met that stops the worker: a storage fault, or an outage past its limit
    fault: BaseException | None = None


class Heartbeat:
    """A background thread that extends the leases of the runs being trained (a group's runs
    each under its own claim). A run whose lease was lost (reaped, cancelled) is added to
    `StopFlag.lost_lease` and no longer renewed; the others still are.

    Through a database outage it retries with the worker's backoff and the training goes on;
    a storage fault, or an outage past --db-outage, stops the training (`StopFlag.fault`)."""

    def __init__(self, engine: Engine, claims: Sequence[Claim], lease_seconds: float,
                 flag: StopFlag, outage: faults.Outage | None = None) -> None:
        self._engine, self._claims, self._lease, self._flag = engine, list(claims), lease_seconds, flag
        self._outage = outage or faults.Outage(None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="adaptbench-heartbeat")

    def _beat(self) -> None:
        interval = max(0.2, self._lease / 3)
        wait, delay = interval, faults.BACKOFF_FIRST
        while not self._stop.wait(wait):
            held = [c for c in self._claims if c.run_id not in self._flag.lost_lease]
            if not held:
                return
            try:
                for c in held:
                    if not queue.heartbeat(self._engine, c, self._lease):
                        self._flag.lost_lease.add(c.run_id)
            except Exception as exc:  # noqa: BLE001 -- the training must not die of a heartbeat
                if faults.storage_fault(exc):
                    self._flag.fault = exc
                    return
                if faults.transient(exc):
                    self._outage.lost(exc)
                    if self._outage.expired():
                        self._flag.fault = self._outage.gave_up()
                        return
                # retry sooner than the next beat: the lease must not run out meanwhile
                wait = min(interval, delay * random.uniform(0.8, 1.2))
                delay = min(faults.BACKOFF_CAP, delay * 2)
                continue
            self._outage.back()
            wait, delay = interval, faults.BACKOFF_FIRST

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def execute_group(
    engine: Engine,
    claims: Sequence[Claim],
    opts: WorkerOptions,
    flag: StopFlag,
    events: Events,
    child: runner.ChildRunner | None = None,
    outage: faults.Outage | None = None,
) -> list[str]:
    """Train claimed runs of one task together (`train.execute_group`, here or in `child`) and
    store each one's outcome under its own claim.

    Returns each run's final status, 'requeued' (handed back after a signal), 'retried' (its
    training process died: back in the queue, the attempt counted, until --max-attempts) or
    'lost' (the
    lease was taken over, or the run cancelled: its result is not stored; the group's other
    runs train on and are stored). A failure in training fails every run of the group. Raises
    UserError, after handing the group back, when this worker cannot train it (a task or device
    it does not have), and when it cannot store it (a storage fault, the database unreachable
    past --db-outage). `run_timeout` is per run: a group of n runs may train n times as long.
    """
    outage = outage or faults.Outage(opts.db_outage, stopping=lambda: flag.requested)
    ids = {c.run_id for c in claims}
    flag.lost_lease.difference_update(ids)  # this worker may have lost them on an earlier attempt
    job = runner.Job(tuple(c.spec for c in claims), opts.device or claims[0].device_request,
                     tuple(map(str, opts.tasks_dirs)), opts.vectorize,
                     tuple(c.run_id for c in claims))

    def should_stop() -> bool:
        return flag.requested or flag.fault is not None or ids <= flag.lost_lease

    def progress(step: int, total: int) -> None:
        for c in claims:
            events.progress(c, step, total)

    with Heartbeat(engine, claims, opts.lease_seconds, flag, outage):
        if child is None:
            outcomes = runner.run_here(job, progress, should_stop)
        else:
            timeout = None if opts.run_timeout is None else opts.run_timeout * len(claims)
            outcomes = child.run(job, timeout, should_stop, progress)
    lost = ids & flag.lost_lease
    held = [c for c in claims if c.run_id not in lost]
    if flag.fault is not None:
        raise _cannot_store(engine, held or claims, flag.fault)
    if held and outcomes[0].status == "refused":
        for c in held:
            outage.call(queue.release, engine, c)
        raise UserError(f"{outcomes[0].columns['error']} (run {held[0].run_id} was handed back "
                        f"to the queue{_with_group(held[1:])})")
    _hand_back(engine, [c for c, o in zip(claims, outcomes)
                        if c.run_id not in lost and o.status == "stopped"], outage, flag)
    statuses = []
    for i, (claim, outcome) in enumerate(zip(claims, outcomes)):
        if claim.run_id in lost:
            status = "lost"
        elif outcome.status == "stopped":
            status = "requeued"
        else:
            try:
                if outcome.status == "retry":  # the training process died: a failed attempt
                    now = outage.call(queue.fail_attempt, engine, claim,
                                      outcome.columns["error"], opts.max_attempts)
                    stored, status = now is not None, "retried" if now == "queued" else "failed"
                else:
                    stored = outage.call(queue.finish, engine, claim, outcome.columns,
                                         outcome.curve)
                    status = outcome.status
            except Exception as exc:
                if not (faults.storage_fault(exc) or isinstance(exc, faults.Unreachable)):
                    raise
                unstored = [c for c, o in zip(claims[i:], outcomes[i:])
                            if c.run_id not in lost and o.status != "stopped"]
                raise _cannot_store(engine, unstored, exc) from None
            # not stored: reaped (an outage, a pause longer than the lease) or cancelled
            # meanwhile; the retry's result wins
            status = status if stored else "lost"
        events.finished(claim, status, outcome.columns)
        statuses.append(status)
    return statuses


def _with_group(others: Sequence[Claim]) -> str:
    """', with runs 7, 8 of its group' (the other runs a message about one run also covers)."""
    if not others:
        return ""
    return f", with run{'s' if len(others) > 1 else ''} " \
           f"{', '.join(str(c.run_id) for c in others)} of its group"


def _hand_back(engine: Engine, claims: Sequence[Claim], outage: faults.Outage,
               flag: StopFlag) -> None:
    """Put runs back in the queue after a stop request; during an outage, give up after a
    few seconds (the leases then expire and other workers retry the runs)."""
    for i, claim in enumerate(claims):
        try:
            outage.call(queue.release, engine, claim)
        except faults.Unreachable:
            if not flag.requested:
                raise
            group = _with_group(claims[i + 1:])
            faults.log(f"adaptbench worker: run {claim.run_id}{group}{',' if group else ''} "
                       "could not be handed back (the database is unreachable); it returns to "
                       "the queue when its lease expires")
            return


def _cannot_store(engine: Engine, claims: Sequence[Claim], exc: BaseException) -> UserError:
    """The one-line error that stops a worker which cannot store the result of `claims[0]`
    (and of the group's other runs in `claims`); the runs are handed back if the database
    still takes those writes."""
    claim, others = claims[0], claims[1:]
    group = _with_group(others)
    if isinstance(exc, faults.DatabaseGone):
        return faults.DatabaseGone(f"{exc}; run {claim.run_id}'s result is not stored{group}")
    released = [_release_quietly(engine, c) for c in claims]
    back = "was handed back to the queue" if released[0] else \
        "returns to the queue when its lease expires"
    if isinstance(exc, faults.Unreachable):
        return faults.Unreachable(f"{exc}; run {claim.run_id} {back}{group}")
    return faults.StorageFault(
        f"cannot store run {claim.run_id}: the database's storage failed ({faults.first_line(exc)}); "
        f"the run {back}{group}. Nothing of it was stored; mend the storage (free space), then "
        "start the worker again")


def work(
    engine: Engine,
    opts: WorkerOptions,
    run_ids: Sequence[int] | None = None,
    events: Events | None = None,
    flag: StopFlag | None = None,
) -> dict[str, int]:
    """Claim and execute runs until the queue (or `run_ids`) is drained; counts per outcome."""
    from adaptbench.store import ping

    events = events or Events()
    flag = flag or StopFlag()
    outage = faults.Outage(opts.db_outage, probe=lambda: ping(engine), stopping=lambda: flag.requested)
    # the child process talks over a Unix socket pair: elsewhere, train here (no --run-timeout)
    child = runner.ChildRunner(opts.threads) if opts.isolate and os.name == "posix" else None
    if child is None and opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    worker_id = queue.new_worker_id()
    tally: dict[str, int] = {}
    done = 0
    waiting = False
    try:
        while not flag.requested and (opts.max_runs is None or done < opts.max_runs):
            if child is not None and not child.alive() and outage.call(
                    queue.has_work, engine, run_ids, opts.plugins, idle=True):
                problem = child.start(lambda: flag.requested)
                if problem is not None and not flag.requested:
                    raise UserError(f"cannot start a training process: {problem}")
                continue
            size = 1 if opts.vectorize == "off" else opts.group_size
            if opts.max_runs is not None:
                size = min(size, opts.max_runs - done)
            claims = outage.call(queue.claim_group, engine, worker_id, opts.lease_seconds, size,
                                 run_ids, opts.max_attempts, opts.plugins, settle=True, idle=True)
            if not claims:
                if opts.wait and not flag.requested:
                    if not waiting:
                        events.idle()
                        waiting = True
                    _sleep(opts.poll_seconds, flag)
                    continue
                break
            waiting = False
            for claim in claims:
                events.claimed(claim)
            try:
                statuses = execute_group(engine, claims, opts, flag, events, child, outage)
            except UserError:
                raise  # the runs are already back in the queue, or cannot be
            except BaseException:  # a second signal, or a bug: hand the runs back before leaving
                if child is not None:
                    child.kill()
                for claim in claims:
                    _release_quietly(engine, claim)
                raise
            for status in statuses:
                tally[status] = tally.get(status, 0) + 1
                if status not in ("requeued", "retried"):
                    done += 1
    except faults.Unreachable:
        if not flag.requested:
            raise
    finally:
        if child is not None:
            child.close()
    if flag.requested and "requeued" not in tally:  # stopped by a signal while idle
        tally["interrupted"] = tally.get("interrupted", 0) + 1
    return tally


def open_engine(opts: WorkerOptions, flag: StopFlag) -> Engine:
    """The worker's engine; a database unreachable at start is waited out as during work."""
    from adaptbench.store import make_engine

    outage = faults.Outage(opts.db_outage, stopping=lambda: flag.requested)
    return outage.call(make_engine, opts.db, idle=True)


def _release_quietly(engine: Engine, claim: Claim) -> bool:
    """One try at handing a run back; whether it went back."""
    try:
        return queue.release(engine, claim)
    except BaseException:  # noqa: BLE001 -- leaving anyway: the lease will expire instead
        return False


def _sleep(seconds: float, flag: StopFlag) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not flag.requested:
        time.sleep(max(0.0, min(0.1, end - time.monotonic())))


def install_signal_handlers(flag: StopFlag) -> None:
    """First SIGINT/SIGTERM/SIGHUP: stop after handing the current run back; second: stop now.
    One the command was started with ignored (`nohup`, a background job) stays ignored."""

    def handler(signum: int, _frame: Any) -> None:
        flag.signals += 1
        flag.requested = True
        if flag.signals > 1:
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        if sig not in entry.IGNORED_AT_START:
            signal.signal(sig, handler)


@contextmanager
def handling_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """`install_signal_handlers` for the duration of a block, then the previous handlers again
    (a command run in-process, e.g. from tests, must not leave its handlers behind)."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    install_signal_handlers(flag)
    try:
        yield flag
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _child(opts: WorkerOptions, result_queue: Any, says_idle: bool = True, index: int = 0,
           parent: int | None = None) -> None:
    flag = StopFlag()
    tally: dict[str, int] = {"crashed": 1}  # an error other than the ones below
    try:
        try:
            install_signal_handlers(flag)
            # Ctrl-C reaches the whole process group; the parent forwards it as SIGTERM, once
            # per press, so each press counts once here. A closed terminal (SIGHUP) too. All
            # three were blocked from this process's start (`_group_signals_held`): now that
            # they are handled or ignored, they are unblocked (a SIGTERM that came meanwhile is
            # handled now), so that the processes this one starts do not inherit the mask.
            for sig in STOP_SIGNALS:
                if sig != signal.SIGTERM:
                    signal.signal(sig, signal.SIG_IGN)
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            if parent is not None:
                _stop_with_parent(parent)
            engine = open_engine(opts, flag)
            tally = work(engine, opts, events=log_events(engine, says_idle=says_idle), flag=flag)
        except UserError as exc:
            if isinstance(exc, faults.Unreachable) and flag.requested:
                tally = {"interrupted": 1}  # stopped while waiting for the database at start
            else:
                print(f"adaptbench: error: {exc}", file=sys.stderr, flush=True)
                tally = {"refused": 1}
    except KeyboardInterrupt:  # a second signal, wherever it came
        tally = {"interrupted": 1}
    finally:
        # a late signal must not cut the report short
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        result_queue.put((index, tally))


def _stop_with_parent(parent: int) -> None:
    """A --jobs process whose worker dies (SIGKILL) stops as on SIGTERM, handing its runs back,
    instead of polling for ever (Linux; elsewhere its runs' leases expire when it is stopped)."""
    if not runner.signal_on_parent_death(signal.SIGTERM):
        return
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def log_events(engine: Engine | None = None, total: int | None = None,
               says_idle: bool = True) -> Events:
    """Events that print one plain line per finished run to stderr, ending in `[k/N, eta T]`,
    and, with `says_idle`, one line each time a --wait worker finds nothing to train.

    k counts the runs this worker finished; N is `total` when the runs are known in advance
    (`adaptbench run`), else k plus the runs still queued in `engine` and those this worker
    holds (one count per finished run: the queue may grow while a worker drains it). The
    estimate is the mean time per run so far times the runs left, shared among the workers now
    training (those holding runs, and this one).
    """
    start = time.monotonic()
    finished_runs = 0
    held = 0  # runs this worker claimed and has not finished (the rest of its group)

    def position(c: Claim) -> str:
        if total is not None:
            left, others = max(0, total - finished_runs), 0
        elif engine is not None:
            try:
                counts = queue.counts(engine)
                others = queue.workers_training(engine, besides=getattr(c, "worker", None))
            except (DBAPIError, faults.StorageFault):  # the count is decoration: a busy database must not stop the worker
                return f" [{finished_runs}]"
            left = counts.get("queued", 0) + held
        else:
            return f" [{finished_runs}]"
        text = f" [{finished_runs}/{finished_runs + left}"
        if left and finished_runs:
            mean = (time.monotonic() - start) / finished_runs
            text += f", eta {_clock(mean * left / (others + 1))}"
        return text + "]"

    def claimed(c: Claim) -> None:
        nonlocal held
        held += 1

    def finished(c: Claim, status: str, outcome: dict[str, Any]) -> None:
        nonlocal finished_runs, held
        finished_runs += status not in ("retried", "requeued", "lost")  # not finished here
        held = max(0, held - 1)
        s = c.spec
        extra = ""
        if status == "done" and outcome.get("final_test_metric") is not None:
            extra = f" test_metric={outcome['final_test_metric']:.4g} ({outcome.get('wall_seconds') or 0:.1f}s)"
        elif status in ("failed", "retried"):
            extra = " error=" + ((outcome.get("error") or "").strip().splitlines() or [""])[-1][:300]
        elif status == "lost":
            extra = " (not stored: the run was cancelled, or its lease expired and it was requeued)"
        # one write per line: workers sharing a log file must not interleave mid-line
        sys.stderr.write(f"run {c.run_id} {status}: {s.task} {s.optimizer} lr={s.lr:g} "
                         f"seed={s.seed}{extra}{position(c)}\n")
        sys.stderr.flush()

    def idle() -> None:
        if says_idle:
            sys.stderr.write(f"adaptbench worker: {IDLE_LINE}\n")
            sys.stderr.flush()

    return Events(claimed=claimed, finished=finished, idle=idle)


def _clock(seconds: float) -> str:
    """A duration as H:MM:SS (Rich's TimeRemainingColumn writes the same)."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@contextmanager
def _group_signals_held(term: bool = False) -> Iterator[None]:
    """Ctrl-C and a closed terminal reach the whole process group, children included. A worker
    process hears them from its parent, as SIGTERM, and multiprocessing's resource tracker must
    not hear them at all (it ignores SIGINT, not SIGHUP: it would die and a new one print a
    traceback); neither must from its first instruction, which no handler can do. So they are
    blocked while such a process is started: it inherits the mask and never receives them, and
    here they wait until the start is done (ignoring them instead would lose a press). With
    `term`, SIGTERM too: one sent to this process while a worker process starts is passed on
    once the start has given it a pid; that process unblocks it once it has its handler. (The
    mask is this thread's: a signal sent to the process may still be taken by another thread
    and handled meanwhile; `work_parallel` checks after each start.)"""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: no process groups to speak of
        yield
        return
    group = {sig for sig in STOP_SIGNALS if term or sig != signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, group)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def work_parallel(opts: WorkerOptions, jobs: int, flag: StopFlag | None = None) -> dict[str, int]:
    """Run `jobs` worker processes against the same database; each drains the shared queue.

    A stop signal is forwarded to each process as SIGTERM; after one (or one already in `flag`),
    no further process is started (each counts as interrupted). A process that ends without
    reporting counts as "crashed" (killed from outside, out of memory): its runs return to the
    queue when their leases expire.
    """
    ctx = multiprocessing.get_context("spawn")
    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    child_opts = WorkerOptions(**{**opts.__dict__, "threads": threads})
    procs: list[Any] = []
    stops = 0
    told: dict[int, int] = {}  # SIGTERMs sent to each process (by index)

    def stop(i: int) -> None:
        p = procs[i]
        if p.pid and p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
            told[i] = told.get(i, 0) + 1

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stops
        stops += 1
        for i in range(len(procs)):
            stop(i)

    old = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS
           if sig not in entry.IGNORED_AT_START}
    stops += flag.signals if flag is not None else 0
    try:
        with _group_signals_held():
            if os.name == "posix":  # started here, else by the queue or the first start
                from multiprocessing import resource_tracker

                resource_tracker.ensure_running()
            results = ctx.Queue()
        # the first process says when the queue is empty (the others find it so at about the
        # same time, or are still training)
        for i in range(jobs):
            if stops:  # a stop asked for already: the processes not started yet never will be
                break
            procs.append(ctx.Process(target=_child, daemon=False,
                                     args=(child_opts, results, i == 0, i, os.getpid())))
            with _group_signals_held(term=True):
                procs[-1].start()
            if stops and not told.get(i):  # a signal the start held was handled before the
                stop(i)  # process had a pid (another thread may take it)
        for p in procs:
            p.join()
    except BaseException:  # a failed start: the processes already started stop too
        for i, p in enumerate(procs):
            if p.pid is not None:
                if not told.get(i):  # a second SIGTERM would make it quit without handing back
                    stop(i)
                p.join()
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    parts: dict[int, dict[str, int]] = {}
    for _ in procs:
        try:
            index, part = results.get(timeout=1)
        except Exception:  # noqa: BLE001 -- processes that did not report: below
            break
        parts[index] = part
    tally: dict[str, int] = {"interrupted": jobs - len(procs)} if len(procs) < jobs else {}
    for i in range(len(procs)):
        for k, v in parts.get(i, {"crashed": 1}).items():
            tally[k] = tally.get(k, 0) + v
    return tally
