"""`adaptbench db upgrade`: a database written by an earlier release (schema 2) upgraded to 5,
and one at schema 4 (schema 2 upgraded by the steps of that time) upgraded to 5.

The fixture tests/fixtures/schema2.db holds real runs made by that release's CLI (see
tests/fixtures/make_schema2.py). Every test works on a copy.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from adaptbench import store
from adaptbench.store import make_engine
from tests.conftest import digest

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA2 = FIXTURES / "schema2.db"
NEW_COLUMNS = {"role": "selection", "fingerprint": None, "eval_seeds": 0, "task_steps": None,
               "task_batch_size": None, "task_twin": None, "task_held_out": None,
               "task_claims": None, "execution": None, "group_size": None, "build_seconds": None,
               "python_version": None, "hardware": None, "code_commit": None}
HINT = "has schema version 2, this adaptbench uses 5: run `adaptbench db upgrade --db {url}`"


def sqlite_rows(path: Path, table: str) -> list[dict]:
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def sqlite_value(path: Path, query: str) -> object:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(query).fetchone()[0]


def files_beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


@pytest.fixture
def old_db(workdir) -> Path:
    path = workdir / "old.db"
    shutil.copyfile(SCHEMA2, path)
    return path


def test_the_fixture_is_what_the_previous_release_wrote():
    assert sqlite_value(SCHEMA2, "SELECT value FROM adaptbench_meta") == "2"
    statuses = [r["status"] for r in sqlite_rows(SCHEMA2, "runs")]
    assert {"done", "diverged", "failed", "queued"} <= set(statuses)
    assert "role" not in sqlite_rows(SCHEMA2, "runs")[0]


# --- (a) every other command refuses a schema-2 database and leaves it as it is ------------------

COMMANDS = [
    ["ls"], ["ls", "--format", "csv"], ["status"], ["report"], ["report", "claims"], ["curves"],
    ["queue", "-o", "adam", "-t", "logistic-regression", "--seeds", "1"],
    ["run", "-o", "adam", "-t", "logistic-regression", "--seeds", "1", "--device", "cpu"],
    ["worker"], ["cancel", "--all"], ["retry"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_commands_refuse_a_schema2_database_with_the_upgrade_hint(cli, old_db, args):
    before = digest(old_db)
    r = cli(*args, "--db", old_db)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert HINT.format(url=f"sqlite:///{old_db}") in r.err
    assert digest(old_db) == before
    assert files_beside(old_db) == ["old.db"]


def test_a_rollback_journal_database_is_not_switched_to_wal(cli, old_db):
    """A file someone switched out of WAL mode is refused without being switched back."""
    with closing(sqlite3.connect(old_db)) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    before = digest(old_db)
    for args in (["ls"], ["report"], ["status"]):
        assert cli(*args, "--db", old_db).code == 2
    assert digest(old_db) == before
    assert sqlite_value(old_db, "PRAGMA journal_mode") == "delete"


# --- (b), (c) the upgrade keeps every old value; new columns get their defaults ------------------

def test_upgrade_keeps_every_old_value_and_fills_in_the_new_columns(cli, old_db):
    r = cli("db", "upgrade", "--db", old_db)
    assert r.code == 0, r.err
    assert (f"upgraded sqlite:///{old_db} from schema 2 to 5: added columns role, fingerprint, "
            "eval_seeds, task_steps, task_batch_size") in r.err
    assert "added columns task_twin, task_held_out, task_claims" in r.err
    assert ("added columns execution, group_size, build_seconds, python_version, hardware, "
            "code_commit") in r.err
    assert sqlite_value(old_db, "SELECT value FROM adaptbench_meta WHERE key = 'schema_version'") == "5"

    old, new = sqlite_rows(SCHEMA2, "runs"), sqlite_rows(old_db, "runs")
    assert len(new) == len(old) == 13
    for before, after in zip(old, new):
        assert {k: after[k] for k in before} == before
        assert {k: after[k] for k in NEW_COLUMNS} == NEW_COLUMNS
    assert sqlite_rows(old_db, "curve_points") == sqlite_rows(SCHEMA2, "curve_points")

    listed = list(csv.DictReader(io.StringIO(cli("ls", "--format", "csv", "--db", old_db).out)))
    assert [(int(r["id"]), r["status"], r["study"]) for r in listed] == [
        (r["id"], r["status"], r["study"]) for r in old
    ]
    everything = json.loads(cli("ls", "--all", "--format", "json", "--db", old_db).out)
    assert {r["role"] for r in everything} == {"selection"}
    # the fixture holds the same experiments with and without the study label 'pilot': a study
    # is part of a run's identity, so a report over both refuses to pool them
    pooled = cli("report", "--format", "csv", "--db", old_db)
    assert pooled.code == 2 and "--study: " in pooled.err and "pilot" in pooled.err
    report = cli("report", "--format", "csv", "--db", old_db, "--task",
                 "logistic-regression,rosenbrock", "--optim", "sgd")
    assert report.code == 0, report.err
    assert "logistic-regression" in report.out and "rosenbrock" in report.out
    assert cli("status", "--db", old_db).code == 0


def test_an_upgraded_table_is_the_same_as_a_new_one(old_db, workdir):
    assert store.upgrade(str(old_db)).steps
    make_engine(str(workdir / "new.db")).dispose()

    assert table_shape(old_db) == table_shape(workdir / "new.db")


def table_shape(path: Path) -> dict:
    """The columns of `runs` (in order, with types and defaults) and the indexes."""
    with closing(sqlite3.connect(path)) as conn:
        columns = conn.execute("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('runs')").fetchall()
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
    return {"columns": columns, "indexes": indexes}


def test_an_upgraded_database_queues_trains_and_retries(cli, old_db):
    assert cli("db", "upgrade", "--db", old_db).code == 0
    r = cli("run", "-o", "adam", "-t", "logistic-regression", "--lr", "0.01", "--seed", "7",
            "--device", "cpu", "--db", old_db)
    assert r.code == 0, r.err
    assert cli("worker", "--db", old_db).code == 0  # trains the run the old release queued
    assert cli("retry", "--db", old_db).code == 0  # the failed run again
    rows = {r["id"]: r for r in sqlite_rows(old_db, "runs")}
    assert len(rows) == 14 and rows[14]["status"] == "done" and rows[14]["role"] == "selection"
    assert rows[13]["status"] == "done"
    assert rows[12]["status"] == "queued" and rows[12]["role"] == "selection"


# --- schema 4 (the release before groups of runs) to 5 ----------------------------------------

SCHEMA5_COLUMNS = ("execution", "group_size", "build_seconds", "python_version", "hardware",
                   "code_commit")


def to_schema4(url: str) -> None:
    """Upgrade a schema-2 database to 4 with the steps of that time (as that release did)."""
    engine = sa.create_engine(url)  # plain: no checks of the version
    with engine.begin() as conn:
        store._migrate_2_to_3(conn)
        store._migrate_3_to_4(conn)
        conn.execute(sa.update(store.Meta).values(value="4"))
    engine.dispose()


def _check_4_to_5(cli, url: str) -> None:
    to_schema4(url)
    old_runs = all_rows(url, "runs")
    assert not set(SCHEMA5_COLUMNS) & set(old_runs[0])
    r = cli("ls", "--db", url)
    assert r.code == 2 and "has schema version 4, this adaptbench uses 5: run `adaptbench db " \
        "upgrade" in r.err, r.err
    r = cli("db", "upgrade", "--db", url)
    assert r.code == 0, r.err
    assert (f"from schema 4 to 5: added columns {', '.join(SCHEMA5_COLUMNS)} (empty for the runs "
            "stored before)") in r.err
    new_runs = all_rows(url, "runs")
    for before, after in zip(old_runs, new_runs, strict=True):
        assert {k: after[k] for k in before} == before
        assert {k: after[k] for k in SCHEMA5_COLUMNS} == dict.fromkeys(SCHEMA5_COLUMNS)
    # a run trained after the upgrade records how and on what it trained
    assert cli("run", "-o", "adam", "-t", "logistic-regression", "--lr", "0.01", "--seed", "7",
               "--steps", "20", "--device", "cpu", "--db", url).code == 0
    trained = all_rows(url, "runs")[-1]
    assert trained["status"] == "done" and trained["execution"] == "single"
    assert trained["group_size"] == 1 and trained["build_seconds"] > 0
    assert trained["python_version"] and trained["hardware"]


def test_upgrade_from_schema4_adds_the_schema5_columns_empty(cli, old_db):
    _check_4_to_5(cli, f"sqlite:///{old_db}")


def test_upgrade_from_schema4_on_postgresql(cli, old_db, postgres_url):
    load_schema2_into_postgres(postgres_url, old_db)
    _check_4_to_5(cli, postgres_url)


def test_a_table_upgraded_from_schema4_is_the_same_as_a_new_one(old_db, workdir):
    to_schema4(f"sqlite:///{old_db}")
    assert store.upgrade(str(old_db)).steps
    make_engine(str(workdir / "new.db")).dispose()
    assert table_shape(old_db) == table_shape(workdir / "new.db")


# --- (d) twice is a no-op ------------------------------------------------------------------------

def test_upgrading_twice_is_a_no_op(cli, old_db):
    assert cli("db", "upgrade", "--db", old_db).code == 0
    before = digest(old_db)
    r = cli("db", "upgrade", "--db", old_db)
    assert r.code == 0, r.err
    assert "already has schema version 5; nothing to do" in r.err
    assert digest(old_db) == before


def test_a_failed_upgrade_changes_nothing(old_db, monkeypatch):
    def half_done(conn):
        store._migrate_2_to_3(conn)
        raise RuntimeError("stopped half way")

    monkeypatch.setitem(store.MIGRATIONS, 2, half_done)
    with pytest.raises(RuntimeError, match="half way"):
        store.upgrade(str(old_db))
    assert sqlite_value(old_db, "SELECT value FROM adaptbench_meta") == "2"
    assert sqlite_rows(old_db, "runs") == sqlite_rows(SCHEMA2, "runs")


# --- (e) what the upgrade does not know is refused, untouched -------------------------------------

@pytest.mark.parametrize("version", ["1", "99", "two"])
def test_an_unknown_schema_version_is_refused_untouched(cli, old_db, version):
    with closing(sqlite3.connect(old_db)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("UPDATE adaptbench_meta SET value = ?", (version,))
        conn.commit()
    before = digest(old_db)
    for args in (["db", "upgrade"], ["ls"]):
        r = cli(*args, "--db", old_db)
        assert r.code == 2, r.err
        assert len(r.err.strip().splitlines()) == 1
        assert f"schema version {version}, this adaptbench uses 5" in r.err
        assert "db upgrade --db" not in r.err
    assert digest(old_db) == before
    assert files_beside(old_db) == ["old.db"]


def test_a_file_that_is_not_an_adaptbench_database_is_refused_untouched(cli, workdir):
    other = workdir / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.commit()
    text = workdir / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    foreign = workdir / "foreign.db"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
    for path, says in ((other, "holds no adaptbench results"), (text, "cannot open database"),
                       (foreign, "did not write")):
        before = digest(path)
        r = cli("db", "upgrade", "--db", path)
        assert r.code == 2 and says in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert digest(path) == before
    r = cli("db", "upgrade", "--db", workdir / "missing.db")
    assert r.code == 2 and "no results database" in r.err
    assert not (workdir / "missing.db").exists()


# --- (f) the same on PostgreSQL -------------------------------------------------------------------

def load_schema2_into_postgres(url: str, sqlite_copy: Path) -> None:
    """A schema-2 PostgreSQL database: the old release's DDL (tests/fixtures/
    schema2_postgresql.sql, compiled from its models), then every row of the SQLite fixture."""
    source = sa.create_engine(f"sqlite:///{sqlite_copy}")  # plain: no WAL switch, no checks
    target = sa.create_engine(url)
    lines = (FIXTURES / "schema2_postgresql.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    with source.connect() as src, target.begin() as dst:
        for statement in filter(str.strip, ddl.split(";\n")):
            dst.exec_driver_sql(statement)
        for name in ("adaptbench_meta", "runs", "curve_points"):
            table = sa.Table(name, sa.MetaData(), autoload_with=src)
            rows = [dict(r._mapping) for r in src.execute(sa.select(table))]
            dst.execute(sa.Table(name, sa.MetaData(), autoload_with=dst).insert(), rows)
        for name in ("runs", "curve_points"):
            dst.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
    source.dispose()
    target.dispose()


def all_rows(url: str, table: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
        rows = [dict(r._mapping) for r in conn.execute(sa.select(reflected).order_by(reflected.c.id))]
    engine.dispose()
    return rows


def test_upgrade_on_postgresql(cli, old_db, postgres_url):
    load_schema2_into_postgres(postgres_url, old_db)
    old_runs = all_rows(postgres_url, "runs")
    old_curves = all_rows(postgres_url, "curve_points")
    assert old_runs == all_rows(f"sqlite:///{old_db}", "runs")  # the copy is faithful

    r = cli("ls", "--db", postgres_url)
    assert r.code == 2 and HINT.format(url=postgres_url) in r.err, r.err
    r = cli("db", "upgrade", "--db", postgres_url)
    assert r.code == 0, r.err
    assert "from schema 2 to 5: added columns role, fingerprint, eval_seeds" in r.err
    new_runs = all_rows(postgres_url, "runs")
    for before, after in zip(old_runs, new_runs, strict=True):
        assert {k: after[k] for k in before} == before
        assert {k: after[k] for k in NEW_COLUMNS} == NEW_COLUMNS
    assert all_rows(postgres_url, "curve_points") == old_curves

    again = cli("db", "upgrade", "--db", postgres_url)
    assert again.code == 0 and "nothing to do" in again.err
    listed = list(csv.DictReader(io.StringIO(cli("ls", "--format", "csv", "--db", postgres_url).out)))
    assert len(listed) == 13
    assert cli("report", "--format", "csv", "--study", "pilot", "--db", postgres_url).code == 0
    r = cli("queue", "-o", "adam", "-t", "logistic-regression", "--lr", "0.01", "--seed", "7",
            "--db", postgres_url)
    assert r.code == 0, r.err
    assert all_rows(postgres_url, "runs")[-1]["role"] == "selection"


def test_a_failed_upgrade_on_postgresql_changes_nothing(old_db, postgres_url, monkeypatch):
    load_schema2_into_postgres(postgres_url, old_db)
    before = all_rows(postgres_url, "runs")

    def half_done(conn):
        store._migrate_2_to_3(conn)
        raise RuntimeError("stopped half way")

    monkeypatch.setitem(store.MIGRATIONS, 2, half_done)
    with pytest.raises(RuntimeError, match="half way"):
        store.upgrade(postgres_url)
    assert all_rows(postgres_url, "runs") == before
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value FROM adaptbench_meta").scalar_one() == "2"
    engine.dispose()
