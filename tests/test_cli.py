"""The CLI end to end: run, queue + worker, report, listing commands and pipeline output."""

from __future__ import annotations

import gc
import io
import json
import sqlite3

import pandas as pd
import pytest
from scipy import stats as sps

from tests.conftest import digest, invoke

FAST = ["--steps", "30"]


def db_runs(path="results.db") -> pd.DataFrame:
    with sqlite3.connect(path) as conn:
        return pd.read_sql("SELECT * FROM runs ORDER BY id", conn)


def test_run_creates_database_with_three_done_runs_and_prints_summary(cli, workdir):
    r = cli("run", "--optim", "rmsprop", "--task", "sparse-text", *FAST)
    assert r.code == 0, r.err
    runs = db_runs()
    assert list(runs["status"]) == ["done"] * 3
    assert sorted(runs["seed"]) == [0, 1, 2]
    assert set(runs["lr"]) == {1e-3}  # rmsprop's conventional default
    assert "sparse-text" in r.out and "rmsprop" in r.out
    with sqlite3.connect("results.db") as conn:
        points = conn.execute("SELECT COUNT(*) FROM curve_points").fetchone()[0]
    assert points > 0


def test_run_twice_adds_nothing(cli, workdir):
    args = ["run", "-o", "adam", "-t", "tabular-mlp", "--seeds", "2", *FAST]
    assert cli(*args).code == 0
    before = db_runs()
    r = cli(*args)
    assert r.code == 0
    assert "0 new" in r.err
    after = db_runs()
    assert len(after) == 2
    pd.testing.assert_frame_equal(before, after)


def test_grid_expansion_from_comma_lists_and_repeats(cli, workdir):
    r = cli("queue", "-o", "adam,sgd", "-o", "momentum", "-t", "sparse-text",
            "--lr", "0.01,0.1", "--seed", "3", "--seed", "5", "--format", "json")
    assert r.code == 0, r.err
    queued = json.loads(r.out)
    assert len(queued) == 3 * 2 * 2
    runs = db_runs()
    assert set(runs["optimizer"]) == {"adam", "sgd", "momentum"}
    assert set(runs["seed"]) == {3, 5}
    assert set(runs["status"]) == {"queued"}


def test_queue_prints_ids_one_per_line_when_piped(cli, workdir):
    r = cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "2")
    assert r.code == 0
    assert r.out.split() == ["1", "2"]


def test_queue_then_worker_stores_the_same_metrics_as_run(workdir):
    common = ["-o", "adam", "-t", "tabular-mlp", "--seeds", "2", *FAST]
    assert invoke("run", *common, "--db", "a.db").code == 0
    assert invoke("queue", *common, "--db", "b.db").code == 0
    assert set(db_runs("b.db")["status"]) == {"queued"}
    w = invoke("worker", "--db", "b.db")
    assert w.code == 0, w.err
    cols = ["task", "optimizer", "lr", "seed", "spec_hash", "status", "final_train_loss",
            "final_val_metric", "final_test_metric", "final_test_loss", "best_val_metric"]
    pd.testing.assert_frame_equal(db_runs("a.db")[cols], db_runs("b.db")[cols])


def test_detach_only_queues(cli, workdir):
    r = cli("run", "-o", "adam", "-t", "sparse-text", "--detach")
    assert r.code == 0
    assert set(db_runs()["status"]) == {"queued"}
    s = cli("status", "--format", "json")
    counts = {row["status"]: row["runs"] for row in json.loads(s.out)}
    assert counts["queued"] == 3 and counts["done"] == 0


def _ended(r):
    """A command's result once its engine and connections are gone, as at the end of a process."""
    gc.collect()
    return r


def test_status_of_a_study_counts_its_runs_and_refuses_an_unknown_label(cli, workdir):
    assert _ended(cli("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "2", "--study", "one")).code == 0
    assert _ended(cli("queue", "-o", "sgd", "-t", "rosenbrock", "--seeds", "1")).code == 0
    counts = {row["status"]: row["runs"]
              for row in json.loads(_ended(cli("status", "--study", "one", "--format", "json")).out)}
    assert counts["queued"] == 2
    # no write-ahead log left to be folded into the file later: its bytes are the whole state
    assert sorted(p.name for p in workdir.iterdir()) == ["results.db"]
    before = digest(workdir / "results.db")
    for args in (["status"], ["status", "--time"]):
        r = _ended(cli(*args, "--study", "onw"))
        assert r.code == 2 and "no stored run has study 'onw'" in r.err and "one" in r.err
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert digest(workdir / "results.db") == before
    assert sorted(p.name for p in workdir.iterdir()) == ["results.db"]


def test_report_csv_mean_and_ci_match_scipy(cli, workdir):
    assert cli("run", "-o", "adam", "-t", "tabular-mlp", "--seeds", "4", *FAST).code == 0
    r = cli("report", "--format", "csv")
    assert r.code == 0, r.err
    table = pd.read_csv(io.StringIO(r.out))
    assert {"mean", "ci_low", "ci_high", "n"} <= set(table.columns)
    row = table.iloc[0]
    values = db_runs()["final_test_metric"].to_numpy()
    mean = values.mean()
    low, high = sps.t.interval(0.95, len(values) - 1, loc=mean, scale=sps.sem(values))
    assert row["n"] == 4
    assert row["mean"] == pytest.approx(mean, rel=1e-12)
    assert row["ci_low"] == pytest.approx(low, rel=1e-9)
    assert row["ci_high"] == pytest.approx(high, rel=1e-9)


def test_report_json_and_markdown(cli, workdir):
    assert cli("run", "-o", "adam,sgd", "-t", "sparse-text", "--seeds", "2", *FAST).code == 0
    records = json.loads(cli("report", "--format", "json").out)
    # a budget other than the task's default is part of the label, whatever else is stored
    assert {r["optimizer"] for r in records} == {"adam@30steps", "sgd@30steps"}
    md = cli("report", "--format", "markdown").out
    assert md.count("|") > 10 and "adam" in md
    wins = pd.read_csv(io.StringIO(cli("report", "wins", "--format", "csv").out))
    pair = wins.set_index(["optimizer", "opponent"])["win_rate"]
    assert pair[("adam@30steps", "sgd@30steps")] + pair[("sgd@30steps", "adam@30steps")] == pytest.approx(1.0)


def test_piped_table_has_no_colour_or_box_drawing(cli, workdir):
    assert cli("run", "-o", "adam", "-t", "sparse-text", "--seeds", "1", *FAST).code == 0
    for args in (["report"], ["ls"], ["status"], ["tasks"], ["optims"]):
        out = cli(*args).out
        assert out.strip(), args
        assert "\x1b[" not in out, args
        assert not any(0x2500 <= ord(ch) <= 0x257F for ch in out), args


def test_tasks_and_optims_list_json(cli):
    tasks = json.loads(cli("tasks", "--format", "json").out)
    names = {t["name"] for t in tasks}
    assert {"sparse-text", "tabular-mlp", "digits-cnn"} <= names
    assert len({t["type"] for t in tasks}) >= 3
    optims = json.loads(cli("optims", "--format", "json").out)
    names = {o["name"] for o in optims if o["kind"] == "optimizer"}
    assert {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad",
            "adadelta", "adamax", "nadam", "radam"} <= names


def test_ls_filters(cli, workdir):
    assert cli("queue", "-o", "adam,sgd", "-t", "sparse-text", "--seeds", "2").code == 0
    rows = json.loads(cli("ls", "--optim", "sgd", "--format", "json").out)
    assert len(rows) == 2 and {r["optimizer"] for r in rows} == {"sgd"}


def test_read_commands_do_not_create_a_database(cli, workdir):
    for args in (["report"], ["status"], ["ls"]):
        r = cli(*args)
        assert r.code == 2
        assert "no results database" in r.err
    assert not (workdir / "results.db").exists()


def test_db_from_environment(cli, workdir, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_DB", str(workdir / "env.db"))
    assert cli("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    assert (workdir / "env.db").exists() and not (workdir / "results.db").exists()


def test_adaptive_lr_preset_queues_exactly_the_claims_grid(cli, workdir):
    from adaptbench.spec import LONG_TRAINING_TASKS
    from adaptbench.tasks import load_tasks

    tasks = {n: t for n, t in load_tasks().items() if t.claims}
    r = cli("queue", "--study", "adaptive-lr", "--format", "json")
    assert r.code == 0, r.err
    runs = db_runs()
    optims = {"adam", "rmsprop", "adagrad", "sgd", "momentum"}
    assert set(runs["optimizer"]) == optims
    assert set(runs["task"]) == set(tasks)  # the demonstration tasks are left out
    assert set(runs["seed"]) == {0, 1, 2, 3, 4}
    assert set(runs["study"]) == {"adaptive-lr"}
    default = runs[runs["steps"] == runs["task_steps"]]
    assert len(default) == len(optims) * 5 * sum(len(t.lrs) for t in tasks.values())
    for name, task in tasks.items():
        assert sorted(set(runs[runs["task"] == name]["lr"])) == sorted(task.lrs)
    # the long arm: 4x and 16x the default steps, on the quick tasks only, each fully tuned
    long = runs[runs["steps"] != runs["task_steps"]]
    assert set(long["task"]) == set(LONG_TRAINING_TASKS)
    assert set((long["steps"] / long["task_steps"]).astype(int)) <= {4, 16}
    assert len(long) == 2 * len(optims) * 5 * sum(len(tasks[t].lrs) for t in LONG_TRAINING_TASKS)


def test_the_robust_preset_varies_schedule_eps_and_accumulator(cli, workdir):
    r = cli("queue", "--study", "adaptive-lr-robust", "-t", "tabular-mlp", "--seeds", "1",
            "--lr", "0.01")
    assert r.code == 0, r.err
    runs = db_runs()
    variants = {(o, p, s) for o, p, s in zip(runs["optimizer"], runs["params"], runs["schedule"])}
    warm = {(o, "{}", "warmup-cosine") for o in ("adam", "rmsprop", "adagrad", "sgd", "momentum")}
    eps = {(o, json.dumps({"eps": e}), "constant") for o in ("adam", "rmsprop")
           for e in (1e-6, 1e-4, 1e-2)}
    acc = {("adagrad", json.dumps({"initial_accumulator_value": 0.1}), "constant")}
    # the plain optimizers are the adaptive-lr study's default arm: not queued again
    assert variants == warm | eps | acc
    assert len(runs) == len(variants)
    # its arms set their own settings: one given on the command line is refused
    for extra in (["--opt", "eps=1e-3"], ["--schedule", "cosine"]):
        r = cli("queue", "--study", "adaptive-lr-robust", "-t", "tabular-mlp", *extra)
        assert r.code == 2 and "sets the" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_queued_run_records_what_its_task_says_about_itself(cli, workdir):
    assert cli("queue", "-o", "adam", "-t", "hashed-ctr,rosenbrock", "--seeds", "1").code == 0
    runs = db_runs().set_index("task")
    assert runs.loc["hashed-ctr", "task_twin"] == "hashed-ctr-dense"
    assert runs.loc["rosenbrock", "task_held_out"] == 0 and runs.loc["rosenbrock", "task_claims"] == 0
    assert runs.loc["hashed-ctr", "task_held_out"] == 1


def test_adaptive_lr_preset_narrowed_by_options(cli, workdir):
    r = cli("queue", "--study", "adaptive-lr", "-t", "sparse-text", "-o", "adam,sgd",
            "--lr", "0.01,0.1", "--seeds", "2")
    assert r.code == 0, r.err
    runs = db_runs()
    # sparse-text is in the long arm: its default budget, 4x and 16x
    assert len(runs) == 2 * 2 * 2 * 3 and set(runs["lr"]) == {0.01, 0.1}
    assert set(runs["steps"] // runs["task_steps"]) == {1, 4, 16}


def test_curves_export_matches_the_stored_points(cli, workdir):
    assert cli("run", "-o", "adam,sgd", "-t", "tabular-mlp", "--seeds", "1", *FAST).code == 0
    table = pd.read_csv(io.StringIO(cli("curves").out))
    with sqlite3.connect("results.db") as conn:
        stored = pd.read_sql("SELECT run_id, step, split, loss, metric FROM curve_points", conn)
    assert len(table) == len(stored) > 0
    only = pd.read_csv(io.StringIO(cli("curves", "--optim", "sgd").out))
    sgd_id = int(db_runs().query("optimizer == 'sgd'")["id"].iloc[0])
    assert set(only["run_id"]) == {sgd_id}
    assert set(pd.read_csv(io.StringIO(cli("curves", str(sgd_id)).out))["run_id"]) == {sgd_id}


def test_busy_time_is_the_union_of_the_runs_intervals():
    from datetime import datetime, timedelta

    from adaptbench.timing import busy_seconds

    t0 = datetime(2026, 1, 1, 12, 0, 0)
    at = [t0 + timedelta(seconds=s) for s in range(40)]
    starts = [at[0], at[5], at[20], at[30], at[31], None]
    ends = [at[10], at[15], at[25], at[30], None, at[39]]
    # [0,15] and [20,25]; an empty interval and the ones missing an end count for nothing
    assert busy_seconds(starts, ends) == 20.0
    assert busy_seconds([], []) == 0.0


def test_status_time_splits_compute_and_busy_hours_by_budget(cli, workdir):
    common = ["-o", "adam", "-t", "rosenbrock", "--seeds", "2", "--vectorize", "off"]
    assert cli("run", *common).code == 0
    assert cli("run", *common, "--steps", "500", "--lr", "0.01").code == 0  # a quarter budget
    assert cli("queue", "-o", "sgd", "-t", "rosenbrock", "--seeds", "1").code == 0
    r = cli("status", "--time", "--format", "json")
    assert r.code == 0, r.err
    rows = {row["budget"]: row for row in json.loads(r.out)}
    assert list(rows) == ["0.25x", "1x", "all"]
    runs = db_runs()
    finished = runs[runs["status"].isin(["done", "diverged"])]
    assert [rows[b]["finished"] for b in rows] == [2, 2, 4]
    assert [rows[b]["still_active"] for b in rows] == [0, 1, 1]
    assert rows["all"]["stacked"] == 0.0
    assert rows["all"]["train_eval_h"] * 3600 == pytest.approx(finished["wall_seconds"].sum())
    assert rows["all"]["build_h"] * 3600 == pytest.approx(finished["build_seconds"].sum())
    # one process trained them one after another: the intervals do not overlap
    span = (pd.to_datetime(finished["finished_at"]) - pd.to_datetime(finished["started_at"]))
    assert rows["all"]["busy_h"] * 3600 == pytest.approx(span.dt.total_seconds().sum())
    assert rows["all"]["busy_h"] * 3600 >= finished["wall_seconds"].sum() * 0.99
    assert rows["all"]["last_finished"] == str(pd.to_datetime(finished["finished_at"]).max())[:19]
    table = cli("status", "--time")
    assert table.code == 0 and "busy_h" in table.out and "0.25x" in table.out
