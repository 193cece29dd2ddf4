"""Shared fixtures: an isolated working folder and an in-process `adaptbench` command."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from adaptbench.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def invoke(*args: str) -> Result:
    """Run `adaptbench ARGS` in this process through the real entry point (main)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def digest(path) -> str:
    """A file's name and the SHA-256 of its bytes: what "left untouched" compares (a failure
    names the file, instead of printing all its bytes)."""
    return f"{path}: sha256 {hashlib.sha256(Path(path).read_bytes()).hexdigest()}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder with no ADAPTBENCH_* settings leaking in from the environment."""
    monkeypatch.chdir(tmp_path)
    for var in ("ADAPTBENCH_DB", "ADAPTBENCH_TASKS", "ADAPTBENCH_BUSY_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def cli(workdir):
    """`cli("run", "--optim", ...)` -> Result(code, out, err), in a fresh working folder."""
    return invoke


# --- PostgreSQL: one throwaway server on loopback per test session ---------------------------

def _pgserver_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "pgserver.py"
    spec = importlib.util.spec_from_file_location("adaptbench_tests_pgserver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server started for this session (initdb in a temp folder, loopback port).

    Skipped only when no server binary is installed; .ci/postgres.sh installs one, so CI never
    skips. ADAPTBENCH_TEST_POSTGRES=postgresql+psycopg://USER@HOST:PORT/DB uses a running
    server instead (the user must be allowed to create databases).
    """
    pgserver = _pgserver_module()
    external = os.environ.get("ADAPTBENCH_TEST_POSTGRES")
    if external:
        yield _ExternalPostgres(external)
        return
    if pgserver.find_bindir() is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in "
            "/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql, "
            "see .ci/postgres.sh) to run the PostgreSQL tests"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("PostgreSQL is installed but psycopg 3 is not: pip install '.[postgres]'")
    with pgserver.TempPostgres() as server:
        yield server


class _ExternalPostgres:
    def __init__(self, url: str) -> None:
        self._url = url

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(self._url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return str(sa.engine.make_url(self._url).set(database=name).render_as_string(hide_password=False))


@pytest.fixture
def postgres_url(postgres_server, request):
    """The URL of a new, empty database on the session's PostgreSQL server."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    return postgres_server.create_database(name)


@pytest.fixture(scope="module")
def shared_postgres_url(postgres_server, request) -> str:
    """One PostgreSQL database per test module, which `engine` empties between its tests."""
    return postgres_server.create_database(request.module.__name__.rsplit(".", 1)[-1] + "_shared")


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    """An engine on an empty queue: an SQLite file, or a PostgreSQL database (one per module,
    emptied between tests: faster than a new one each)."""
    from adaptbench import store

    if request.param == "sqlite":
        engine = store.make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    else:
        engine = store.make_engine(request.getfixturevalue("shared_postgres_url"))
        with store.write(engine) as conn:
            conn.exec_driver_sql("TRUNCATE runs, curve_points RESTART IDENTITY CASCADE")
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_workers(tmp_path):
    """Worker processes on an SQLite file (`tests.test_faults.Workers`); killed at the end."""
    from tests.test_faults import Workers

    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def postgres_workers(tmp_path, postgres_url):
    """Worker processes on a new PostgreSQL database; killed at the end."""
    from tests.test_faults import Workers

    w = Workers(postgres_url, tmp_path)
    yield w
    w.stop_all()
