"""Storage faults are errors, not crashes: a full disk during a run or a queue, and an SQLite file
deleted or replaced under a running worker, end in one line and exit 2 with nothing half-written.
And commands that only read never change the database file, and read one they cannot write."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import digest
from tests.test_faults import FIXTURE_TASKS, Workers, wait_until

READERS = [["status"], ["ls"], ["report"], ["curves"], ["report", "wins"]]


@pytest.fixture
def full_disk():
    """`full_disk("INSERT INTO curve_points", exc)`: every later statement starting so fails."""
    listeners = []

    def arm(prefix: str, exc: BaseException) -> None:
        def fail(conn, cursor, statement, *args):  # noqa: ANN001
            if statement.lstrip().upper().startswith(prefix):
                raise exc

        event.listen(Engine, "before_cursor_execute", fail)
        listeners.append(fail)

    yield arm
    for fail in listeners:
        event.remove(Engine, "before_cursor_execute", fail)


DISK_FULL = [sqlite3.OperationalError("database or disk is full"),
             OSError(errno.ENOSPC, "No space left on device")]


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("adaptbench: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("exc", DISK_FULL, ids=["sqlite-full", "enospc"])
def test_a_full_disk_when_a_worker_stores_a_run_hands_it_back_in_one_line(cli, workdir, full_disk, exc):
    assert cli("queue", "-t", "tiny", "-o", "sgd", "--seeds", "2", "--tasks-dir", FIXTURE_TASKS).code == 0
    full_disk("INSERT INTO CURVE_POINTS", exc)  # after the run's row is updated, in one transaction
    r = cli("worker", "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 2, r.err
    line = _error_line(r.err)
    assert "cannot store run 1: the database's storage failed (" in line
    assert "the run was handed back to the queue" in line
    with sqlite3.connect(workdir / "results.db") as conn:
        rows = conn.execute("SELECT status, attempts, final_test_metric, worker FROM runs").fetchall()
        points = conn.execute("SELECT count(*) FROM curve_points").fetchone()[0]
    assert rows == [("queued", 0, None, None)] * 2  # nothing half-written
    assert points == 0


def test_a_full_disk_while_queueing_is_one_line_and_queues_nothing(cli, workdir, full_disk):
    assert cli("queue", "-t", "tiny", "-o", "sgd", "--seeds", "1", "--tasks-dir", FIXTURE_TASKS).code == 0
    full_disk("INSERT INTO RUNS", DISK_FULL[0])
    r = cli("queue", "-t", "tiny", "-o", "adam", "--seeds", "3", "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 2, r.err
    assert "the database's storage failed (database or disk is full)" in _error_line(r.err)
    with sqlite3.connect(workdir / "results.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_a_worker_stops_it_in_one_line(tmp_path, how):
    w = Workers(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    w.queue("-t", "tiny", "--seeds", "2")
    proc = w.start("--lease", "1", step_sleep=1.0)
    wait_until(lambda: w.starts(), 60, "the run to start")
    path = tmp_path / "q.db"
    w.engine.dispose()
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:  # moved over by a copy: the worker's file is not the one at the path any more
        shutil.copy(path, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", path)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert proc.wait(timeout=60) == 2, w.log(0)
    line = _error_line(w.log(0))
    assert f"database file {str(path)!r} was {how}" in line
    assert "run 1's result is not stored" in line
    if how == "deleted":
        assert not path.exists()  # not created again, empty
    else:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# --- commands that only read -----------------------------------------------------------------

def _finished_db(cli, workdir) -> Path:
    assert cli("run", "-t", "tiny", "-o", "sgd", "--seeds", "2", "--tasks-dir", FIXTURE_TASKS).code == 0
    gc.collect()  # the command's engine, and with it its connections, as at the end of a process
    return workdir / "results.db"


def _beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_commands_that_only_read_leave_the_file_byte_identical(cli, workdir, journal):
    db = _finished_db(cli, workdir)
    with sqlite3.connect(db) as conn:
        assert conn.execute(f"PRAGMA journal_mode = {journal}").fetchone()[0] == journal
    conn.close()
    before = digest(db)
    for args in READERS:
        r = cli(*args)
        gc.collect()
        assert r.code == 0, (args, r.err)
        assert digest(db) == before, args
        assert _beside(db) == ["results.db"], args
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal


def test_commands_that_only_read_write_nothing_into_an_empty_or_foreign_file(cli, workdir):
    empty = workdir / "empty.db"
    empty.touch()
    foreign = workdir / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    conn.close()
    before = digest(foreign)
    for args in READERS:
        for db, why in ((empty, "holds no adaptbench results"), (foreign, "holds no adaptbench results")):
            r = cli(*args, "--db", db)
            assert r.code == 2 and why in _error_line(r.err), (args, r.err)
    assert empty.stat().st_size == 0 and digest(foreign) == before
    assert _beside(empty) == ["empty.db"] and _beside(foreign) == ["foreign.db"]


def _read_only_runner(folder: Path):
    """A function running `adaptbench ARGS` in a process that cannot write `folder` or its
    files: as another user sees a chmod 555/444 folder, or (as root, who ignores permissions)
    through a read-only bind mount in a private mount namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTBENCH_")}
    if os.geteuid() != 0:
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "adaptbench.cli", *args], cwd=folder,
                                  capture_output=True, text=True, env=env, timeout=120)
        return run
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("as root, a read-only view needs `unshare -m` (mount namespaces)")
    view = Path(tempfile.mkdtemp(prefix="adaptbench-ro-"))

    def run_root(*args: str) -> subprocess.CompletedProcess[str]:
        command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "adaptbench.cli", *args])
        script = (f"mount --bind '{folder}' '{view}' && mount -o remount,bind,ro '{view}' && "
                  f"cd '{view}' && exec {command}")
        return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                              text=True, env=env, timeout=120)
    return run_root


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_commands_that_only_read_read_a_database_they_cannot_write(cli, workdir):
    db = _finished_db(cli, workdir)
    folder = workdir / "archive"
    folder.mkdir()
    shutil.move(db, folder / "results.db")
    run = _read_only_runner(folder)
    try:
        for args in (["status"], ["ls"], ["report"]):
            r = run(*args, "--db", "results.db")
            assert r.returncode == 0, (args, r.stderr)
        assert "done" in run("ls", "--db", "results.db").stdout
        r = run("cancel", "--all", "--db", "results.db")
        assert r.returncode == 2 and "is not readable and writable (commands that only read" in r.stderr
    finally:
        folder.chmod(0o755)
    assert _beside(folder / "results.db") == ["results.db"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_wal_database_with_pending_writes_says_what_it_needs(cli, workdir):
    db = _finished_db(cli, workdir)
    folder = workdir / "archive"
    folder.mkdir()
    code = (f"import os, sqlite3; c = sqlite3.connect({str(folder / 'results.db')!r}); "
            "c.execute(\"UPDATE runs SET study = 'x'\"); c.commit(); os._exit(0)")
    shutil.move(db, folder / "results.db")
    subprocess.run([sys.executable, "-c", code], check=True)  # a writer killed: its log stays
    (folder / "results.db-shm").unlink()
    run = _read_only_runner(folder)
    try:
        r = run("ls", "--db", "results.db")
    finally:
        folder.chmod(0o755)
    assert r.returncode == 2, r.stderr
    assert "is in WAL mode with writes still in" in _error_line(r.stderr)
    assert "make the folder writable" in r.stderr
