"""The results database: SQLAlchemy models, engines from URLs, schema versioning.

SQLite (the default, ``sqlite:///results.db`` in the working folder) runs in WAL mode with a busy
timeout, and every write transaction begins IMMEDIATE, so concurrent workers queue up for the
write lock instead of failing with "database is locked". PostgreSQL URLs use the same models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from adaptbench.errors import UserError

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///results.db"
DEFAULT_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    """Naive UTC now: stored the same way by every engine, compared as such."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One run: its spec, its place in the queue's lifecycle, its outcome and provenance."""

    __tablename__ = "runs"

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
    # provenance
    device: Mapped[str | None] = mapped_column(sa.String(100))
    torch_version: Mapped[str | None] = mapped_column(sa.String(50))
    package_version: Mapped[str | None] = mapped_column(sa.String(50))
    host: Mapped[str | None] = mapped_column(sa.String(200))


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
    url = db or os.environ.get("ADAPTBENCH_DB") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def _busy_timeout_ms() -> int:
    raw = os.environ.get("ADAPTBENCH_BUSY_TIMEOUT", str(DEFAULT_BUSY_TIMEOUT_MS // 1000))
    try:
        seconds = float(raw)
    except ValueError:
        raise UserError(
            f"ADAPTBENCH_BUSY_TIMEOUT={raw!r} is not a number of seconds; e.g. 30"
        ) from None
    if seconds < 0:
        raise UserError(f"ADAPTBENCH_BUSY_TIMEOUT must be >= 0 seconds, got {raw!r}")
    return int(seconds * 1000)


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _check_sqlite_file(path: Path, create: bool) -> None:
    if path.exists():
        if path.is_dir():
            raise UserError(f"database path {str(path)!r} is a folder; give a file path")
        if not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"database file {str(path)!r} is not readable and writable")
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


def make_engine(db: str | None = None, create: bool = True) -> Engine:
    """An engine for the URL (see `resolve_url`), with the schema created or checked.

    `create=False` is for commands that only read: a missing SQLite file is an error instead of
    a new empty database.
    """
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
    if is_sqlite:
        path = _sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create)
        kwargs["connect_args"] = {"timeout": _busy_timeout_ms() / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise UserError(
            f"unknown database dialect {url.drivername!r} in {raw!r}; use sqlite:///FILE or "
            "postgresql+psycopg://USER:PASS@HOST/DB"
        ) from None
    except ImportError as exc:
        raise UserError(
            f"the driver for {url.drivername!r} is not installed ({exc.name}); for PostgreSQL "
            "install it with: pip install 'adaptbench[postgres]'"
        ) from None
    if is_sqlite:
        _configure_sqlite(engine)
    ensure_schema(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    busy = _busy_timeout_ms()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # we emit BEGIN ourselves (below), so that writers can ask for BEGIN IMMEDIATE
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("adaptbench_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


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


def ensure_schema(engine: Engine) -> None:
    """Create the tables on first use; refuse a database written by another schema version."""
    try:
        inspector = sa.inspect(engine)
        has_runs = inspector.has_table("runs")
        has_meta = inspector.has_table("adaptbench_meta")
    except sa.exc.DBAPIError as exc:
        raise UserError(f"cannot open database {engine.url!r}: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot open database {engine.url!r}: {exc}") from None
    if has_runs and not has_meta:
        raise UserError(
            f"database {engine.url!r} has a 'runs' table that adaptbench did not write; "
            "use another database"
        )
    if not has_meta:
        try:
            with write(engine) as conn:
                Base.metadata.create_all(conn)
                conn.execute(sa.insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        except sa.exc.IntegrityError:
            pass  # another process created it at the same moment
        except sa.exc.ProgrammingError:
            pass  # PostgreSQL: a concurrent CREATE TABLE won the race
        except OperationalError as exc:
            raise UserError(f"cannot create tables in {engine.url!r}: {exc.orig}") from None
    with read(engine) as conn:
        version = conn.execute(
            sa.select(Meta.value).where(Meta.key == "schema_version")
        ).scalar_one_or_none()
    if version is None or int(version) != SCHEMA_VERSION:
        raise UserError(
            f"database {engine.url!r} has schema version {version}, this adaptbench uses "
            f"{SCHEMA_VERSION}; export it with the adaptbench that wrote it, or use a new "
            "database (--db)"
        )
