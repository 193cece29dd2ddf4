"""Every mistake a user can make: one line on stderr, exit 2, no traceback, database untouched."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

BAD_RUNS = [
    (["-o", "adm", "-t", "sparse-text"], "did you mean 'adam'"),
    (["-o", "adam", "-t", "sprase-text"], "did you mean 'sparse-text'"),
    (["-o", "adam", "-t", "sparse-text", "--lr", "0"], "positive number"),
    (["-o", "adam", "-t", "sparse-text", "--lr", "-1e-3"], "positive number"),
    (["-o", "adam", "-t", "sparse-text", "--lr", "fast"], "not a number"),
    (["-o", "adam", "-t", "sparse-text", "--lr", "nan"], "positive number"),
    (["-o", "adam", "-t", "sparse-text", "--seed", "-1"], "seeds must be >= 0"),
    (["-o", "adam", "-t", "sparse-text", "--seeds", "0"], "Invalid value for '--seeds'"),
    (["-o", "adam", "-t", "sparse-text", "--steps", "-5"], "--steps: steps must be a positive"),
    (["-o", "adam", "-t", "sparse-text", "--steps", "0"], "--steps: steps must be a positive"),
    (["-o", "adam", "-t", "sparse-text", "--batch-size", "0"], "--batch-size"),
    (["-o", "adam", "-t", "sparse-text", "--opt", "betas"], "malformed"),
    (["-o", "adam", "-t", "sparse-text", "--opt", "=3"], "malformed"),
    (["-o", "adam", "-t", "sparse-text", "--opt", "momentum=0.9"], "no hyperparameter 'momentum'"),
    (["-o", "adam", "-t", "sparse-text", "--opt", "eps=tiny"], "not a number"),
    (["-o", "adam", "-t", "sparse-text", "--schedule", "cosin"], "did you mean 'cosine'"),
    (["-o", "adam", "-t", "sparse-text", "--device", "tpu"], "unknown device"),
    (["-o", "nosuchmodule:factory", "-t", "sparse-text"], "cannot be loaded"),
    (["-t", "sparse-text"], "no optimizer given"),
    (["-o", "adam"], "no task given"),
    (["-o", "adam", "-t", "sparse-text", "--seeds", "two"], "--seeds"),
    (["-o", "adam", "-t", "sparse-text", "--tasks-dir", "no/such/folder"], "does not exist"),
]


def _assert_one_line_error(result, expected: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert expected in lines[0], lines[0]
    assert lines[0].startswith("adaptbench: error: ")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump(path) -> str:
    """The database's whole content as SQL (independent of WAL checkpoints)."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.parametrize("command", ["run", "queue"])
@pytest.mark.parametrize(("args", "expected"), BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_grid_input(cli, workdir, command, args, expected):
    result = cli(command, *args)
    _assert_one_line_error(result, expected)
    assert not (workdir / "results.db").exists()


def test_bad_input_leaves_an_existing_database_untouched(cli, workdir):
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "2").code == 0
    db = workdir / "results.db"
    before = _dump(db)
    for args, expected in BAD_RUNS:
        _assert_one_line_error(cli("queue", *args), expected)
    assert _dump(db) == before
    assert "2" in cli("status").out


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("foo://x/y", "unknown database dialect 'foo'"),
        ("postgresql+nodriver://u@h/d", "unknown database dialect"),
        ("sqlite:///no/such/folder/r.db", "does not exist"),
        ("not a url://", "malformed"),
    ],
)
def test_bad_database_url(cli, workdir, db, expected):
    _assert_one_line_error(cli("queue", "-o", "adam", "-t", "sparse-text", "--db", db), expected)


def test_database_path_that_is_a_folder(cli, workdir):
    (workdir / "adir").mkdir()
    _assert_one_line_error(cli("status", "--db", "adir"), "is a folder")


def test_database_inside_a_file_is_unwritable(cli, workdir):
    (workdir / "afile").write_text("x")
    _assert_one_line_error(cli("queue", "-o", "adam", "-t", "sparse-text", "--db", "afile/r.db"), "cannot create database")


def test_a_file_that_is_not_a_database(cli, workdir):
    (workdir / "notes.db").write_text("these are my notes, not a database\n" * 50)
    before = _digest(workdir / "notes.db")
    _assert_one_line_error(cli("status", "--db", "notes.db"), "cannot open database")
    assert _digest(workdir / "notes.db") == before


def test_unknown_command_and_bad_choices(cli, workdir):
    _assert_one_line_error(cli("bogus"), "No such command")
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    _assert_one_line_error(cli("report", "--format", "xml"), "--format")
    _assert_one_line_error(cli("worker", "--jobs", "0"), "--jobs")


@pytest.mark.parametrize(("args", "expected"), [
    (["-o", "adam", "-t", "sparse-text", "--opt", "betas=0.9"], "not valid for 'adam'"),
    (["-o", "adam", "-t", "sparse-text", "--opt", "eps=-1"], "Invalid epsilon value"),
    (["-o", "nesterov", "-t", "sparse-text", "--opt", "momentum=0"], "not valid for 'nesterov'"),
    (["-o", "adam", "-t", "sparse-text", "--seed", "4294967296"], "< 2^31"),
    (["-o", "adam", "-t", "sparse-text", "--study", "x" * 101], "at most 100 characters"),
    (["-o", "adam", "-t", "sparse-text", "--device", "cuda:x"], "unknown device"),
])
def test_bad_values_are_refused_before_queuing(cli, workdir, args, expected):
    _assert_one_line_error(cli("queue", *args), expected)
    assert not (workdir / "results.db").exists()


def test_run_needs_its_device_before_queuing(cli, workdir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _assert_one_line_error(cli("run", "-o", "adam", "-t", "sparse-text", "--device", "cuda"), "not available")
    assert not (workdir / "results.db").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["worker", "--lease", "nan"], "--lease"),
    (["worker", "--lease", "0.1"], "--lease must be a number of seconds in [1, 86400], got 0.1"),
    (["worker", "--lease", "1e308"], "--lease"),
    (["worker", "--run-timeout", "nan"], "--run-timeout"),
    (["ls", "--limit", "-1"], "--limit"),
])
def test_bad_numbers_for_existing_database(cli, workdir, args, expected):
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    before = _dump(workdir / "results.db")
    _assert_one_line_error(cli(*args), expected)
    assert _dump(workdir / "results.db") == before


def test_read_commands_never_write_a_non_adaptbench_file(cli, workdir):
    (workdir / "empty.db").touch()
    _assert_one_line_error(cli("status", "--db", "empty.db"), "holds no adaptbench results")
    with sqlite3.connect(workdir / "empty.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
def test_a_busy_timeout_that_is_not_a_sane_number_is_one_line(cli, workdir, monkeypatch, value):
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    monkeypatch.setenv("ADAPTBENCH_BUSY_TIMEOUT", value)
    _assert_one_line_error(cli("status"), "ADAPTBENCH_BUSY_TIMEOUT")


def test_an_empty_or_badly_optioned_database_url_is_one_line(cli, workdir):
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    _assert_one_line_error(cli("status", "--db", ""), "the database URL is empty")
    _assert_one_line_error(cli("ls", "--db", "sqlite:///results.db?timeout=abc"),
                           "has a setting its driver refuses")
    _assert_one_line_error(cli("cancel", "1" * 30), "run ids are positive integers below 2^63")
