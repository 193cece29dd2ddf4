"""`import adaptbench`: a results database as DataFrames, through the code the CLI runs."""

from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd
import pytest

import adaptbench
from adaptbench.errors import UserError
from tests.conftest import invoke


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "r.db"
    r = invoke("run", "-o", "adam,sgd", "-t", "logistic-regression,diabetes-mlp", "--lr",
               "0.01,0.1", "--seeds", "2", "--eval-seeds", "2", "--steps", "15",
               "--study", "s", "--db", str(path))
    assert r.code == 0, r.err
    return str(path)


def csv(*args: str) -> pd.DataFrame:
    r = invoke(*args)
    assert r.code == 0, r.err
    return pd.read_csv(io.StringIO(r.out))


def test_runs_and_curves_are_what_ls_and_curves_export(db):
    study = adaptbench.open(db)
    runs = study.runs()
    listed = csv("ls", "--all", "--format", "csv", "--db", db)
    assert list(runs["id"]) == list(listed["id"]) and len(runs) == 16 + 8
    assert set(runs["role"]) == {"selection", "evaluation"}
    assert len(study.runs(status="done")) == (listed["status"] == "done").sum()
    curves = study.curves()
    exported = csv("curves", "--format", "csv", "--db", db)
    assert len(curves) == len(exported)


@pytest.mark.parametrize("method,args", [
    ("summary", ["report", "summary"]), ("wins", ["report", "wins"]),
    ("improvement", ["report", "wins", "--statistic", "improvement"]),
])
def test_reports_are_the_cli_reports(db, method, args):
    ours = getattr(adaptbench.open(db), method)()
    theirs = csv(*args, "--format", "csv", "--db", db)
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs, check_dtype=False)


def test_compare_and_filters(db):
    study = adaptbench.open(db, task="logistic-regression")
    per_task, overall = study.compare("adam", "sgd")
    assert list(per_task["task"]) == ["logistic-regression"]
    cli = csv("report", "compare", "adam", "sgd", "--task", "logistic-regression",
              "--format", "csv", "--db", db)
    assert per_task["advantage"].iloc[0] == pytest.approx(
        cli.loc[cli["table"] == "tasks", "advantage"].iloc[0], rel=1e-12)
    assert set(adaptbench.open(db).where(optim="adam").runs()["optimizer"]) == {"adam"}
    assert {"mean_ranks", "friedman", "pairwise"} == set(study.ranks())
    verdicts, _, _ = study.claims()
    assert set(verdicts["verdict"]) == {"not enough data"}


def test_opening_a_missing_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results database"):
        adaptbench.open(str(tmp_path / "nothing.db"))
    assert not (tmp_path / "nothing.db").exists()


def test_import_adaptbench_is_light():
    code = "import sys, adaptbench; print('pandas' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
