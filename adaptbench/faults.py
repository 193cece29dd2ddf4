"""Database faults: which errors a worker waits out, which are faults of the storage, and the
backoff that waits out an outage.

A database that cannot be reached (a restarted or stopped server, a network cut, SQLite's write
lock held past the busy timeout) is *transient*: a worker retries with capped exponential
backoff, logging one line when the database is lost and one when it is back, for as long as
`worker --db-outage` allows. A full disk, an I/O error, a read-only file, or a database file
deleted or replaced under a worker are *storage faults*: waiting does not mend them, so the
command stops with one line (exit 2).
"""

from __future__ import annotations

import errno
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adaptbench.errors import UserError

T = TypeVar("T")
BACKOFF_FIRST = 0.5  # seconds before the first retry; doubling up to BACKOFF_CAP
BACKOFF_CAP = 5.0  # a returning database is noticed within this (plus 20% jitter)
# After an outage a worker waits this long before its next claim (which reaps expired leases),
# so that the workers that held runs through the outage renew their leases or store their
# results first: every worker retries within BACKOFF_CAP * 1.2 s of the database's return.
SETTLE = BACKOFF_CAP * 1.2 + 2.0
STOP_PATIENCE = 5.0  # after a stop request, how long a worker holding a run still waits
# errno values of a storage fault (a full disk or quota, an I/O error, a read-only file system)
STORAGE_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}
# SQLite's result codes for the same (sqlite3.Error.sqlite_errorname, Python 3.11+), and the
# start of their messages for older Pythons
SQLITE_STORAGE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CORRUPT", "SQLITE_NOTADB")
SQLITE_STORAGE_TEXT = ("database or disk is full", "disk i/o error", "attempt to write a readonly",
                       "database disk image is malformed", "file is not a database")
# PostgreSQL's SQLSTATEs for the same on the server: disk_full, io_error, data_corrupted
POSTGRES_STORAGE = {"53100", "58030", "XX001"}


class Unreachable(UserError):
    """The database could not be reached, for longer than the command was willing to wait."""


class StorageFault(UserError):
    """The storage under the database failed (a full disk, an I/O error, a read-only file)."""


class DatabaseGone(StorageFault):
    """The SQLite file was deleted or replaced while this process had it open."""


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def storage_fault(exc: BaseException) -> bool:
    """Whether `exc` (a driver error, or SQLAlchemy's wrapping of one) is a fault of the storage."""
    if isinstance(exc, StorageFault):
        return True
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError):
        return orig.errno in STORAGE_ERRNOS
    if type(orig).__module__.startswith("sqlite3"):
        name = getattr(orig, "sqlite_errorname", "")
        if name:
            return name.startswith(SQLITE_STORAGE)
        return str(orig).lower().startswith(SQLITE_STORAGE_TEXT)
    return getattr(orig, "sqlstate", None) in POSTGRES_STORAGE


def transient(exc: BaseException) -> bool:
    """Whether waiting may mend `exc`: a lost connection, a server that is down or restarting,
    a lock held too long. Not a storage fault, a broken schema or a bug."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, Unreachable):
        return True
    if not isinstance(exc, DBAPIError) or storage_fault(exc):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):  # SQLite's OperationalError is broad
        return any(word in str(exc.orig) for word in ("locked", "busy"))
    return True  # psycopg: refused, reset, the server shutting down or starting up, ...


def user_message(exc: BaseException) -> str | None:
    """The one line a command prints for a storage or database fault, or None when `exc` is
    not one (a bug, which stays a traceback). The failed transaction was rolled back."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and storage_fault(exc):
        return f"cannot write: {first_line(exc)}"
    if storage_fault(exc):
        return (f"the database's storage failed ({first_line(exc)}); the write in progress was "
                "rolled back, nothing of it is stored")
    if transient(exc):
        return f"the database is unreachable ({first_line(exc)})"
    return None


def log(line: str) -> None:
    sys.stderr.write(line + "\n")  # one write per line: workers may share a log file
    sys.stderr.flush()


class Outage:
    """Waits out database outages for one worker process (its main and heartbeat threads).

    `call(fn, ...)` retries `fn` while the database is unreachable, with capped exponential
    backoff, up to `limit` seconds from the moment the database was lost (None: for ever), then
    raises `Unreachable`. The first failure logs one line ("lost"), the first success after it
    one more ("back"). `probe` is a cheap write transaction: a claim after an outage first
    probes, then waits SETTLE seconds (see above).
    """

    def __init__(self, limit: float | None, probe: Callable[[], Any] | None = None,
                 stopping: Callable[[], bool] = lambda: False,
                 log: Callable[[str], None] = log) -> None:
        self.limit, self._probe, self._stopping, self._log = limit, probe, stopping, log
        self._lock = threading.Lock()
        self._since: float | None = None  # when the database was lost (monotonic), or None
        self._back_at = -float("inf")
        self._last = ""

    @property
    def down(self) -> bool:
        return self._since is not None

    def lost(self, exc: BaseException) -> None:
        """Record a failed attempt; logs the first of an outage."""
        with self._lock:
            self._last = first_line(exc)[:200]
            if self._since is not None:
                return
            self._since = time.monotonic()
        how_long = "until it is back" if self.limit is None else f"for up to {self.limit:g} s"
        self._log(f"adaptbench worker: database unreachable ({self._last}); "
                  f"retrying {how_long} (--db-outage)")

    def back(self) -> None:
        """Record a successful attempt; logs the first after an outage."""
        with self._lock:
            if self._since is None:
                return
            down_for = time.monotonic() - self._since
            self._since, self._back_at = None, time.monotonic()
        self._log(f"adaptbench worker: database back after {down_for:.1f} s")

    def expired(self) -> bool:
        """Whether the current outage has lasted longer than the limit."""
        since = self._since
        return since is not None and self.limit is not None and time.monotonic() - since > self.limit

    def gave_up(self) -> Unreachable:
        """The error that ends the wait."""
        since = self._since
        down_for = 0.0 if since is None else time.monotonic() - since
        limit = "" if self.limit is None else f" (worker --db-outage {self.limit:g})"
        return Unreachable(f"the database has been unreachable for {down_for:.0f} s{limit}: "
                           f"{self._last}; stopping")

    def call(self, fn: Callable[..., T], *args: Any, settle: bool = False,
             idle: bool = False) -> T:
        """`fn(*args)`, retried through an outage. `settle`: a claim (see SETTLE). `idle`: the
        worker holds no run, so a stop request ends the wait at once (else after
        STOP_PATIENCE seconds) by raising `Unreachable`."""
        delay, stop_seen = BACKOFF_FIRST, None
        while True:
            try:
                if settle and self.down and self._probe is not None:
                    self._probe()
                    self.back()
                if settle:
                    self._wait(self._back_at + SETTLE - time.monotonic(), idle)
                result = fn(*args)
            except Exception as exc:
                if not transient(exc):
                    raise
                self.lost(exc)
                if self._stopping():
                    stop_seen = stop_seen or time.monotonic()
                    if idle or time.monotonic() - stop_seen > STOP_PATIENCE:
                        raise self.gave_up() from None
                if self.expired():
                    raise self.gave_up() from None
                self._wait(delay * random.uniform(0.8, 1.2), idle)
                delay = min(BACKOFF_CAP, delay * 2)
                continue
            self.back()
            return result

    def _wait(self, seconds: float, idle: bool) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if idle and self._stopping():
                return
            time.sleep(max(0.0, min(0.1, end - time.monotonic())))
