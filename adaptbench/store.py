"""The results database: SQLAlchemy models, engines from URLs, schema versioning.

SQLite (the default, ``sqlite:///results.db`` in the working folder) runs in WAL mode with a busy
timeout (``ADAPTBENCH_BUSY_TIMEOUT`` seconds), and every write transaction begins IMMEDIATE, so
concurrent workers queue up for the write lock instead of failing with "database is locked".
SQLite is for workers on one machine: a database on a network file system, or in memory, is
refused. Commands that only read open the file so that they cannot write it (`SqliteFile`):
they never change it, whatever its journal mode, and they can read a file they may not write. A
writer notices when its file is deleted or replaced (`faults.DatabaseGone`) before it writes.

PostgreSQL URLs (``postgresql+psycopg://...``) use the same models and queries; there, each
worker connects only while it reads or writes, so hundreds of workers stay far below the
server's connection limit. Connections time out after 10 s and use TCP keepalives
(`POSTGRES_CONNECT`), so a vanished server is an error within seconds, not a hang; the URL's
query options (`?connect_timeout=30`) override them.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from adaptbench import faults
from adaptbench.errors import UserError

# Bump on every change to the tables below, and add the upgrade to MIGRATIONS.
# 2: runs.trajectory; 3: runs.role, fingerprint, eval_seeds, task_steps, task_batch_size;
# 4: runs.task_twin, task_held_out, task_claims; 5: runs.execution, group_size, build_seconds,
# python_version, hardware, code_commit
SCHEMA_VERSION = 5
DEFAULT_URL = "sqlite:///results.db"
DEFAULT_BUSY_TIMEOUT_MS = 30_000
MAX_BUSY_TIMEOUT = 86_400  # seconds: a day; SQLite takes the wait in milliseconds as an int
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING, which claiming relies on
# File systems on which SQLite's locks and WAL shared memory are unreliable (types as Linux names
# them). Not every network file system can be recognised: see the README, "Scaling out".
NETWORK_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre",
    "gpfs", "beegfs", "orangefs", "pvfs2", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs",
    "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
}
SCHEMA_LOCK_KEY = 0x61646170  # PostgreSQL advisory lock held while creating the schema
# libpq connection settings (psycopg): fail a connection attempt after 10 s, and notice a server
# gone mid-transaction after about 10 + 3 x 5 s of silence. A URL's own options win.
POSTGRES_CONNECT = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                    "keepalives_interval": 5, "keepalives_count": 3}


def utcnow() -> datetime:
    """Naive UTC now: stored the same way by every engine, compared as such."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One run: its spec, its place in the queue's lifecycle, its outcome and provenance."""

    __tablename__ = "runs"
    __table_args__ = (
        # claiming reads the queued runs through it (then orders them by budget multiple, id)
        sa.Index("ix_runs_status_id", "status", "id"),
        # a run's selection group: the runs of one task, optimizer, study and role
        sa.Index("ix_runs_selection_group", "task", "optimizer", "study", "role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    spec_hash: Mapped[str] = mapped_column(sa.String(32), unique=True)
    # spec
    task: Mapped[str] = mapped_column(sa.String(100), index=True)
    task_type: Mapped[str] = mapped_column(sa.String(50))
    metric_name: Mapped[str] = mapped_column(sa.String(50))
    higher_is_better: Mapped[bool] = mapped_column(sa.Boolean)
    target: Mapped[float | None] = mapped_column(sa.Float)
    optimizer: Mapped[str] = mapped_column(sa.String(200), index=True)
    params: Mapped[str] = mapped_column(sa.Text, default="{}")  # canonical JSON
    schedule: Mapped[str] = mapped_column(sa.String(50))
    lr: Mapped[float] = mapped_column(sa.Float)
    seed: Mapped[int] = mapped_column(sa.Integer)
    steps: Mapped[int] = mapped_column(sa.Integer)
    batch_size: Mapped[int] = mapped_column(sa.Integer)
    eval_every: Mapped[int] = mapped_column(sa.Integer)
    study: Mapped[str] = mapped_column(sa.String(100), default="", index=True)
    device_request: Mapped[str] = mapped_column(sa.String(20), default="auto")
    # lifecycle
    status: Mapped[str] = mapped_column(sa.String(16), index=True, default="queued")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # outcome
    final_train_loss: Mapped[float | None] = mapped_column(sa.Float)
    final_val_loss: Mapped[float | None] = mapped_column(sa.Float)
    final_test_loss: Mapped[float | None] = mapped_column(sa.Float)
    final_train_metric: Mapped[float | None] = mapped_column(sa.Float)
    final_val_metric: Mapped[float | None] = mapped_column(sa.Float)
    final_test_metric: Mapped[float | None] = mapped_column(sa.Float)
    best_val_metric: Mapped[float | None] = mapped_column(sa.Float)
    best_val_step: Mapped[int | None] = mapped_column(sa.Integer)
    steps_to_target: Mapped[int | None] = mapped_column(sa.Integer)
    wall_seconds: Mapped[float | None] = mapped_column(sa.Float)
    diverged_at_step: Mapped[int | None] = mapped_column(sa.Integer)
    # JSON [[step, [p0, p1, ...]], ...] for tasks that expose their parameters (2-D functions)
    trajectory: Mapped[str | None] = mapped_column(sa.Text)
    # provenance
    device: Mapped[str | None] = mapped_column(sa.String(100))
    torch_version: Mapped[str | None] = mapped_column(sa.String(50))
    package_version: Mapped[str | None] = mapped_column(sa.String(50))
    host: Mapped[str | None] = mapped_column(sa.String(200))
    # spec, schema 3. Last, so that an upgraded table (ALTER TABLE appends) and a new one have
    # the same column order. Server defaults, so that an upgrade fills in the old rows.
    role: Mapped[str] = mapped_column(sa.String(16), default="selection", server_default="selection")
    fingerprint: Mapped[str | None] = mapped_column(sa.String(32))  # tasks.fingerprint at queue time
    eval_seeds: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    task_steps: Mapped[int | None] = mapped_column(sa.Integer)  # the task's default budget
    task_batch_size: Mapped[int | None] = mapped_column(sa.Integer)
    # spec, schema 4: what the task said about itself at queue time (`Task.twin`, `held_out`,
    # `claims`), so that reports never load task code; NULL for runs queued before.
    task_twin: Mapped[str | None] = mapped_column(sa.String(100))
    task_held_out: Mapped[bool | None] = mapped_column(sa.Boolean)
    task_claims: Mapped[bool | None] = mapped_column(sa.Boolean)
    # outcome and provenance, schema 5 (NULL for runs stored before): how the run was trained
    # ("single", or "vectorized" in a stacked pass with group_size - 1 others), the seconds its
    # task took to build (not in wall_seconds), and what it ran on and with
    execution: Mapped[str | None] = mapped_column(sa.String(16))
    group_size: Mapped[int | None] = mapped_column(sa.Integer)
    build_seconds: Mapped[float | None] = mapped_column(sa.Float)
    python_version: Mapped[str | None] = mapped_column(sa.String(50))
    hardware: Mapped[str | None] = mapped_column(sa.String(200))  # CPU model, and GPU on cuda
    code_commit: Mapped[str | None] = mapped_column(sa.String(50))  # git commit of adaptbench


class CurvePoint(Base):
    """One evaluation of a run: loss and metric on one split at one step (the raw curve)."""

    __tablename__ = "curve_points"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(sa.Integer)
    split: Mapped[str] = mapped_column(sa.String(10))
    loss: Mapped[float | None] = mapped_column(sa.Float)
    metric: Mapped[float | None] = mapped_column(sa.Float)
    elapsed: Mapped[float] = mapped_column(sa.Float)


class Meta(Base):
    """Key/value facts about the database itself (the schema version)."""

    __tablename__ = "adaptbench_meta"

    key: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(200))


def resolve_url(db: str | None) -> str:
    """The database URL: --db, else ADAPTBENCH_DB, else results.db in the working folder.

    A bare path (no '://') is taken as an SQLite file.
    """
    if db is not None and not db.strip():
        raise UserError("the database URL is empty; give a file (results.db) or a URL "
                        "(sqlite:///results.db, postgresql+psycopg://user@host/db)")
    url = db or os.environ.get("ADAPTBENCH_DB") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    # psycopg 3 is the driver adaptbench installs (extra `postgres`); SQLAlchemy's default for a
    # bare postgresql:// URL is psycopg2
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return url


def _busy_timeout_ms() -> int:
    raw = os.environ.get("ADAPTBENCH_BUSY_TIMEOUT", str(DEFAULT_BUSY_TIMEOUT_MS // 1000))
    try:
        seconds = float(raw)
    except ValueError:
        raise UserError(
            f"ADAPTBENCH_BUSY_TIMEOUT={raw!r} is not a number of seconds; e.g. 30"
        ) from None
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_BUSY_TIMEOUT):
        raise UserError(f"ADAPTBENCH_BUSY_TIMEOUT must be a number of seconds in "
                        f"[0, {MAX_BUSY_TIMEOUT}], got {raw!r}; e.g. 30")
    return int(seconds * 1000)


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or "mode=memory" in str(url):
        raise UserError(
            f"{str(url)!r} is an in-memory SQLite database, which each connection and process "
            "sees empty; give a file, e.g. --db results.db"
        )
    if database.startswith("file:"):
        return None
    return Path(database)


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding `path` ('ext4', 'nfs4', ...), or None if unknown.

    Linux only (from /proc/self/mounts); elsewhere None.
    """
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", None
    for point, fstype in mounts:
        point = point.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fstype
    return best_type


def _refuse_network_fs(path: Path) -> None:
    fstype = filesystem_type(path if path.exists() else path.parent if str(path.parent) else Path("."))
    if fstype in NETWORK_FS:
        raise UserError(
            f"database {str(path)!r} is on a network file system ({fstype}), where SQLite's "
            "locking is unreliable and results can be lost; put it on a local disk, or use "
            "PostgreSQL to share one queue between machines (--db postgresql+psycopg://...)"
        )


def _check_sqlite_file(path: Path, create: bool, read_only: bool = False) -> None:
    if path.exists():
        if path.is_dir():
            raise UserError(f"database path {str(path)!r} is a folder; give a file path")
        if read_only and not os.access(path, os.R_OK):
            raise UserError(f"database file {str(path)!r} is not readable")
        if not read_only and not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"database file {str(path)!r} is not readable and writable"
                            + (" (commands that only read, such as ls, status and report, can "
                               "read it)" if os.access(path, os.R_OK) else ""))
        return
    if not create:
        raise UserError(
            f"no results database at {str(path)!r}; queue runs first (`adaptbench run ...`) "
            "or point --db / ADAPTBENCH_DB at an existing one"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot create database {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create database {str(path)!r}: folder {str(parent)!r} is not writable")


class SqliteFile:
    """How this process connects to one SQLite file, and the file's identity.

    A reader (`read_only`) never writes: with SQLite's mode=ro, or, when it could write and no
    write-ahead log exists beside the file, read-write with `PRAGMA query_only` (then SQLite
    removes the -wal and -shm files it creates when it closes, which mode=ro cannot; with no
    log there is nothing to merge into the file, so it stays byte-identical).

    A writer remembers the file's identity (device, inode) from its first connection on; every
    later connection and write transaction checks it, so that a file deleted or replaced (moved
    over) under a worker stops it before it writes into a vanished file, or creates a new,
    empty one.
    """

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = os.path.abspath(path)
        self.read_only = read_only
        # a WAL database in a folder we cannot write, without a write-ahead log to read: read
        # as it is, immutable (see `_peek_sqlite`)
        self.immutable = False
        self.identity: tuple[int, int] | None = None
        self.timeout = _busy_timeout_ms() / 1000

    def _uri(self, mode: str) -> str:
        flags = "&immutable=1" if self.immutable else ""
        return f"file:{urllib.request.pathname2url(self.path)}?mode={mode}{flags}"

    def _tidy_reader(self) -> bool:
        """Whether a reader can open read-write and leave no -wal / -shm files behind."""
        folder = os.path.dirname(self.path)
        return (not self.immutable and not os.path.exists(self.path + "-wal")
                and os.access(self.path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK))

    def reader(self) -> sqlite3.Connection:
        """A connection that cannot write."""
        tidy = self._tidy_reader()
        conn = sqlite3.connect(self._uri("rw" if tidy else "ro"), uri=True, timeout=self.timeout,
                               check_same_thread=False)  # as SQLAlchemy's own connect does
        if tidy:
            conn.execute("PRAGMA query_only = 1")
        return conn

    def connect(self) -> sqlite3.Connection:
        """A connection for the engine (its `creator`)."""
        if self.read_only:
            return self.reader()
        if self.identity is not None:
            self.check()
        # once the file exists it is never created again: mode=rw, not rwc
        mode = "rw" if self.identity is not None else "rwc"
        conn = sqlite3.connect(self._uri(mode), uri=True, timeout=self.timeout,
                               check_same_thread=False)
        if self.identity is None:
            self.identity = self._stat()
        return conn

    def check(self) -> None:
        """Raise DatabaseGone when the path no longer names the file first connected to."""
        if self.identity is None or self.read_only:
            return
        try:
            now: tuple[int, int] | None = self._stat()
        except FileNotFoundError:
            now = None
        if now != self.identity:
            how = "deleted" if now is None else "replaced by another file"
            raise faults.DatabaseGone(
                f"database file {self.path!r} was {how} while this process used it; stopping "
                "before writing to it again")

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino


def _check_sqlite_version() -> None:
    import sqlite3

    if sqlite3.sqlite_version_info < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise UserError(
            f"this Python's SQLite is {sqlite3.sqlite_version}; adaptbench needs {need} or newer "
            "(for atomic claims); use a newer Python or PostgreSQL"
        )


def make_engine(db: str | None = None, create: bool = True, read_only: bool = False) -> Engine:
    """An engine for the URL (see `resolve_url`), with the schema created or checked.

    `create=False` is for commands that change existing runs: a missing SQLite file is an error
    instead of a new empty database. `read_only=True` (implies create=False) is for commands
    that only read: an SQLite file is opened read-only, so it is never changed, and a file
    without write permission can be read.
    """
    engine = _open(db, create and not read_only, upgrading=False, read_only=read_only)
    ensure_schema(engine, create and not read_only)
    return engine


def ping(engine: Engine) -> None:
    """A write transaction that writes nothing: whether the database takes writes now (on
    SQLite, whether the write lock can be had; on PostgreSQL, whether the server answers)."""
    with write(engine) as conn:
        conn.exec_driver_sql("SELECT 1")


def _open(db: str | None, create: bool, upgrading: bool, read_only: bool = False) -> Engine:
    """An engine for the URL, its schema not yet checked. An existing SQLite file whose schema
    version is refused is refused here, before the engine's first connection can write to it
    (by switching it to WAL mode)."""
    raw = resolve_url(db)
    try:
        url = make_url(raw)
    except ArgumentError:
        raise UserError(
            f"database URL {raw!r} is malformed; expected e.g. sqlite:///results.db or "
            "postgresql+psycopg://user:pass@host/dbname"
        ) from None
    is_sqlite = url.get_backend_name() == "sqlite"
    kwargs: dict = {}
    sqlite_file = None
    if is_sqlite:
        _check_sqlite_version()
        path = _sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create, read_only)
            _refuse_network_fs(path)
            sqlite_file = SqliteFile(path, read_only)
            if path.exists():
                _peek_sqlite(sqlite_file, url, create, upgrading)
            kwargs["creator"] = sqlite_file.connect
        else:  # a file: URI of the user's own: taken as it is
            kwargs["connect_args"] = {"timeout": _busy_timeout_ms() / 1000}
    else:
        # a connection per transaction: workers write rarely (claim, heartbeat, finish), and
        # idle pooled connections would count against the server's max_connections
        kwargs["poolclass"] = NullPool
        if url.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):  # libpq
            kwargs["connect_args"] = {k: v for k, v in POSTGRES_CONNECT.items() if k not in url.query}
    try:
        engine = sa.create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise UserError(
            f"unknown database dialect {url.drivername!r} in {raw!r}; use sqlite:///FILE or "
            "postgresql+psycopg://USER:PASS@HOST/DB"
        ) from None
    except (ValueError, TypeError) as exc:  # a query option of the URL the driver cannot take
        raise UserError(f"database URL {raw!r} has a setting its driver refuses ({exc}); "
                        "drop or correct the part after '?'") from None
    except ImportError as exc:
        raise UserError(
            f"the driver for {url.drivername!r} is not installed ({exc.name}); for PostgreSQL "
            "install it with: pip install 'adaptbench[postgres]'"
        ) from None
    if is_sqlite:
        _configure_sqlite(engine, sqlite_file)
    return engine


def _peek_sqlite(file: SqliteFile, url: sa.URL, create: bool, upgrading: bool) -> None:
    """Check an SQLite file's schema version with a connection that cannot write (the file
    stays byte-identical, whatever its journal mode)."""
    try:
        try:
            tables, version = _read_version(file.reader())
        except sqlite3.OperationalError as exc:
            if not (file.read_only and _readonly_wal(exc)):
                raise
            # A WAL database that SQLite cannot read without creating its -shm file beside it,
            # in a folder we cannot write. With no write-ahead log to read, every committed
            # write is in the file itself: read it as it is (immutable).
            wal = Path(file.path + "-wal")
            if wal.exists() and wal.stat().st_size:
                raise UserError(
                    f"cannot read database {file.path!r}: it is in WAL mode with writes still "
                    f"in {str(wal)!r}, and SQLite must create {file.path + '-shm'!r} to read "
                    "them, in a folder this user cannot write; make the folder writable, or "
                    "copy the .db and -wal files somewhere writable and read the copy"
                ) from None
            file.immutable = True
            tables, version = _read_version(file.reader())
    except sqlite3.Error as exc:
        raise UserError(f"cannot open database {url!r}: {_first_line(exc)}") from None
    if "adaptbench_meta" in tables:
        _check_version(url, version, upgrading)
    elif not create or "runs" in tables:
        _refuse_foreign(url, "runs" in tables)


def _read_version(conn: sqlite3.Connection) -> tuple[set[str], str | None]:
    """The tables of an SQLite database and its schema version (None without one); closes conn."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = None
        if "adaptbench_meta" in tables:
            row = conn.execute(
                "SELECT value FROM adaptbench_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = row[0] if row else None
        return tables, version
    finally:
        conn.close()


def _readonly_wal(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused to read a WAL database because it could not create its -shm file."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN")
    return "readonly" in str(exc) or "unable to open" in str(exc)


def _refuse_foreign(url: sa.URL, has_runs: bool) -> None:
    if has_runs:
        raise UserError(
            f"database {url!r} has a 'runs' table that adaptbench did not write; use another database"
        )
    raise UserError(
        f"database {url!r} holds no adaptbench results (no tables yet); queue runs first "
        "(`adaptbench run ...`) or point --db at another database"
    )


def _configure_sqlite(engine: Engine, file: SqliteFile | None) -> None:
    busy = _busy_timeout_ms()
    read_only = file is not None and file.read_only

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # we emit BEGIN ourselves (below), so that writers can ask for BEGIN IMMEDIATE
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy}")
        if not read_only:  # a reader leaves the file's journal mode as it is
            _use_wal(cur, busy)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("adaptbench_write", False)
        if immediate and file is not None:
            file.check()  # a pooled connection may still hold a deleted file open
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(cur: Any, busy_ms: int) -> None:
    """Put the database in WAL mode (a lasting property of the file), once.

    Switching a new file to WAL while other processes open it can fail with "database is
    locked" at once, without waiting for the busy timeout: so check first, and retry.
    """
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))
    if mode.lower() != "wal":
        raise UserError(
            f"SQLite could not put the database in WAL mode (it stays in {mode!r} mode), which "
            "concurrent workers need; is it on a network or read-only file system? Use a local "
            "disk, or PostgreSQL"
        )


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so a
    read-then-write can never fail half way with SQLITE_BUSY; the busy timeout makes it wait."""
    with engine.connect() as conn:
        conn.execution_options(adaptbench_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def ensure_schema(engine: Engine, create: bool = True) -> None:
    """Create the tables on first use; refuse a database written by another schema version.

    `create=False` (commands that only read) never writes: a database without adaptbench's
    tables is an error."""
    try:
        has_meta = sa.inspect(engine).has_table("adaptbench_meta")
        if not has_meta and not create:
            _refuse_foreign(engine.url, sa.inspect(engine).has_table("runs"))
        if not has_meta:
            _create_schema(engine)
        with read(engine) as conn:
            version = conn.execute(
                sa.select(Meta.value).where(Meta.key == "schema_version")
            ).scalar_one_or_none()
    except OperationalError as exc:
        message = f"cannot open database {engine.url!r}: {_first_line(exc.orig)}"
        if faults.storage_fault(exc):
            raise faults.StorageFault(message) from None
        if faults.transient(exc):  # a worker waits this out; other commands stop
            raise faults.Unreachable(message) from None
        raise UserError(message) from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot open database {engine.url!r}: {_first_line(exc)}") from None
    _check_version(engine.url, version)
    _check_columns(engine)


def _check_columns(engine: Engine) -> None:
    """Refuse a database that lacks a column this adaptbench writes (a table changed without a
    version bump), with advice, rather than failing later in the middle of a worker's loop."""
    inspector = sa.inspect(engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            raise UserError(
                f"database {engine.url!r} lacks column(s) {', '.join(missing)} of table "
                f"{table.name!r}: an older adaptbench wrote it; read or export it with that "
                "version, or start a new database (--db)"
            )


def _create_schema(engine: Engine) -> None:
    with write(engine) as conn:
        if conn.dialect.name == "postgresql":  # serialise concurrent first uses
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
        inspector = sa.inspect(conn)
        if inspector.has_table("runs") and not inspector.has_table("adaptbench_meta"):
            _refuse_foreign(engine.url, True)
        Base.metadata.create_all(conn)  # only the missing tables
        has_version = conn.execute(
            sa.select(Meta.value).where(Meta.key == "schema_version")
        ).scalar_one_or_none()
        if has_version is None:
            conn.execute(sa.insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))


def _check_version(url: sa.URL, version: str | None, upgrading: bool = False) -> None:
    """Refuse a schema version other than this adaptbench's (when upgrading: other than one
    `upgrade` can start from), saying what to do."""
    found = _parse_version(version)
    if found == SCHEMA_VERSION or (upgrading and found in MIGRATIONS):
        return
    if found in MIGRATIONS:
        advice = f"run `adaptbench db upgrade --db {shlex.quote(repr(url))}`"
    elif upgrading and found is not None and found < SCHEMA_VERSION:
        advice = (
            f"`adaptbench db upgrade` starts from schema version {min(MIGRATIONS)} or later; read "
            "or export it with the adaptbench that wrote it, or start a new database (--db)"
        )
    elif found is not None and found > SCHEMA_VERSION:
        advice = "a newer adaptbench wrote it; upgrade adaptbench (pip install -U adaptbench)"
    else:
        advice = (
            "an older adaptbench wrote it; read or export it with that version, or start a new "
            "database (--db)"
        )
    raise UserError(
        f"database {url!r} has schema version {version}, this adaptbench uses "
        f"{SCHEMA_VERSION}: {advice}"
    )


def _parse_version(version: str | None) -> int | None:
    try:
        return int(version) if version is not None else None
    except ValueError:
        return None


# --- upgrades ---------------------------------------------------------------------------------

def _migrate_2_to_3(conn: Connection) -> str:
    # The columns as schema 3 defines them, written out here rather than taken from `Run`, so
    # that this step stays what it is when a later schema changes the model.
    columns = [
        sa.Column("role", sa.String(16), nullable=False, server_default="selection"),
        sa.Column("fingerprint", sa.String(32)),
        sa.Column("eval_seeds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("task_steps", sa.Integer),
        sa.Column("task_batch_size", sa.Integer),
    ]
    _add_columns(conn, columns)
    conn.exec_driver_sql("CREATE INDEX ix_runs_selection_group ON runs (task, optimizer, study, role)")
    return f"added columns {', '.join(c.name for c in columns)} and index ix_runs_selection_group"


def _migrate_3_to_4(conn: Connection) -> str:
    columns = [
        sa.Column("task_twin", sa.String(100)),
        sa.Column("task_held_out", sa.Boolean),
        sa.Column("task_claims", sa.Boolean),
    ]
    _add_columns(conn, columns)
    return (f"added columns {', '.join(c.name for c in columns)} (empty for the runs stored "
            "before: reports treat their tasks as held-out, in the claims, without a twin)")


def _migrate_4_to_5(conn: Connection) -> str:
    columns = [
        sa.Column("execution", sa.String(16)),
        sa.Column("group_size", sa.Integer),
        sa.Column("build_seconds", sa.Float),
        sa.Column("python_version", sa.String(50)),
        sa.Column("hardware", sa.String(200)),
        sa.Column("code_commit", sa.String(50)),
    ]
    _add_columns(conn, columns)
    return (f"added columns {', '.join(c.name for c in columns)} (empty for the runs stored "
            "before)")


def _add_columns(conn: Connection, columns: list[sa.Column]) -> None:
    sa.Table("runs", sa.MetaData(), *columns)  # CreateColumn compiles columns of a table
    for column in columns:
        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {ddl}")


# from_version -> the step to from_version + 1, run inside `upgrade`'s transaction; says what it did
MIGRATIONS: dict[int, Callable[[Connection], str]] = {
    2: _migrate_2_to_3, 3: _migrate_3_to_4, 4: _migrate_4_to_5}


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: from and to which schema version, and each step's account."""

    url: str
    from_version: int
    to_version: int
    steps: tuple[str, ...]


def upgrade(db: str | None = None) -> Upgrade:
    """Upgrade a database written by an older adaptbench to SCHEMA_VERSION, in place, in one
    transaction (every step and the new version number, or nothing). A database already at
    SCHEMA_VERSION is left as it is; one with a version no step starts from is refused before
    anything is written."""
    engine = _open(db, create=False, upgrading=True)
    try:
        with write(engine) as conn:
            if conn.dialect.name == "postgresql":  # one upgrade at a time, and not during a create
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
            inspector = sa.inspect(conn)
            if not inspector.has_table("adaptbench_meta"):
                _refuse_foreign(engine.url, inspector.has_table("runs"))
            version = conn.execute(
                sa.select(Meta.value).where(Meta.key == "schema_version")
            ).scalar_one_or_none()
            _check_version(engine.url, version, upgrading=True)
            start = found = int(version)  # type: ignore[arg-type]  # _check_version vouched
            steps = []
            while found < SCHEMA_VERSION:
                steps.append(MIGRATIONS[found](conn))
                found += 1
            if steps:
                conn.execute(sa.update(Meta).where(Meta.key == "schema_version").values(value=str(found)))
    except OperationalError as exc:
        raise UserError(f"cannot upgrade database {engine.url!r}: {_first_line(exc.orig)}") from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot upgrade database {engine.url!r}: {_first_line(exc)}") from None
    ensure_schema(engine, create=False)  # what every other command will find
    engine.dispose()
    return Upgrade(repr(engine.url), start, found, tuple(steps))


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
