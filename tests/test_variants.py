"""Reports compare like with like: settings name the contender, studies never double-count."""

from __future__ import annotations

import io
import json

import pandas as pd

from adaptbench.results import as_variants


def frame(rows):
    base = dict(task="t", optimizer="adam", params="{}", schedule="constant", lr=0.1, seed=0,
                steps=100, batch_size=32, study="")
    return pd.DataFrame([{**base, "id": i + 1, **r} for i, r in enumerate(rows)])


def test_runs_differing_only_in_study_are_one_experiment():
    out = as_variants(frame([{}, {"study": "again"}, {"seed": 1}]))
    assert list(out["id"]) == [1, 3]
    assert set(out["optimizer"]) == {"adam"}


def test_settings_name_the_variant():
    out = as_variants(frame([
        {}, {"schedule": "cosine"}, {"params": '{"betas": [0.9, 0.99], "amsgrad": true}'},
        {"optimizer": "sgd"},
    ]))
    assert list(out["optimizer"]) == ["adam", "adam+cosine", "adam{amsgrad=true;betas=0.9,0.99}", "sgd"]


def test_budgets_are_named_only_where_a_task_has_several():
    out = as_variants(frame([
        {"steps": 100}, {"steps": 300}, {"task": "u"}, {"batch_size": 64, "task": "u"},
    ]))
    assert list(out["optimizer"]) == ["adam@100steps", "adam@300steps", "adam/b32", "adam/b64"]


def test_reports_work_after_the_same_runs_under_another_schedule_and_study(cli, workdir):
    common = ["-o", "adam", "-t", "logistic-regression", "--steps", "20", "--seeds", "2"]
    assert cli("run", *common).code == 0
    assert cli("run", *common, "--schedule", "cosine").code == 0
    assert cli("run", *common, "--study", "again").code == 0
    r = cli("report", "--format", "csv")
    assert r.code == 0, r.err
    table = pd.read_csv(io.StringIO(r.out))
    assert sorted(table["optimizer"]) == ["adam", "adam+cosine"]
    assert list(table["n"]) == [2, 2]  # the study copy is not counted twice
    runs = pd.DataFrame(json.loads(cli("ls", "--all", "--format", "json").out))
    plain = runs[(runs["schedule"] == "constant") & (runs["study"] == "")]
    assert table.set_index("optimizer").loc["adam", "mean"] == plain["final_test_metric"].mean()
