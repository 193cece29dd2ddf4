"""`adaptbench report ...` end to end: every sub-command on a database from a real (tiny)
`run --study adaptive-lr`, on synthetic databases, on an empty one, with bad input, and
without torch."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats as sps

from adaptbench import results
from adaptbench.store import CurvePoint, Run, make_engine, write
from tests.conftest import invoke

COMMANDS = [
    ["report"], ["report", "summary"], ["report", "summary", "--lr", "fixed"],
    ["report", "summary", "--ci", "bootstrap"], ["report", "wins"], ["report", "ranks"],
    ["report", "compare", "adam", "sgd"], ["report", "profile"], ["report", "lr"],
    ["report", "speed"], ["report", "speed", "--metric", "train"], ["report", "claims"],
]
FORMATS = ["table", "csv", "json", "markdown"]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """A real, tiny adaptive-lr study: 3 of its optimizers x 2 cheap tasks x 2 lrs x 2 seeds."""
    path = tmp_path_factory.mktemp("study") / "study.db"
    r = invoke("run", "--study", "adaptive-lr", "-o", "adam,sgd,adagrad",
               "-t", "noisy-quadratic,rosenbrock", "--lr", "0.01,0.1", "--seeds", "2",
               "--steps", "20", "--db", str(path))
    assert r.code == 0, r.err
    return str(path)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[1:]) or "bare")
def test_every_command_in_every_format_on_a_study_database(study_db, args):
    for fmt in FORMATS:
        r = invoke(*args, "--db", study_db, "--format", fmt)
        assert r.code == 0, (args, fmt, r.err)
        assert "Traceback" not in r.err
        if fmt == "json":
            json.loads(r.out)
        elif fmt == "csv":
            table = pd.read_csv(io.StringIO(r.out))
            if "table" in table.columns:  # several sections: one column names each row's
                assert table["table"].notna().all()
        else:
            assert r.out.strip()


def test_summary_states_its_protocol(study_db):
    tuned = invoke("report", "--db", study_db)
    assert "lr tuned per (task, optimizer) on the mean validation metric" in tuned.out
    assert "t-interval" in tuned.out
    fixed = invoke("report", "summary", "--lr", "fixed", "--ci", "bootstrap", "--db", study_db)
    assert "every lr (fixed-lr protocol)" in fixed.out and "BCa bootstrap" in fixed.out
    csv = invoke("report", "--db", study_db, "--format", "csv")
    assert "lr tuned per (task, optimizer)" in csv.err  # data formats carry no title


def test_tuned_summary_recomputed_from_the_stored_runs(study_db):
    r = invoke("report", "--db", study_db, "--format", "csv")
    table = pd.read_csv(io.StringIO(r.out))
    # the study ran at 20 steps, not the tasks' default budgets: the labels say so
    assert set(table["optimizer"]) == {"adam@20steps", "sgd@20steps", "adagrad@20steps"}
    table["optimizer"] = table["optimizer"].str.replace("@20steps", "")
    table = table.set_index(["task", "optimizer"])
    # a group whose every lr diverged gets no evaluation runs: its figures stay the selection's
    evaluated = ~table["all_diverged"]
    assert evaluated.sum() >= 4
    assert (table.loc[evaluated, "source"] == "evaluation").all()
    assert (table.loc[evaluated, "eval_n"] == 10).all()
    assert (table.loc[~evaluated, "source"] == "selection").all()
    with sqlite3.connect(study_db) as conn:
        runs = pd.read_sql("SELECT * FROM runs", conn)
    evaluation = runs[runs["role"] == "evaluation"]
    assert (evaluation["seed"] >= 1_000_000).all()
    assert set(evaluation["seed"]).isdisjoint(runs.loc[runs["role"] == "selection", "seed"])
    for (task, opt), part in runs[runs["role"] == "selection"].groupby(["task", "optimizer"]):
        by_lr = {}
        for lr, group in part.groupby("lr"):
            div = (group["status"] == "diverged").mean()
            sign = 1 if group["higher_is_better"].iloc[0] else -1
            val = group.loc[group["status"] == "done", "final_val_metric"].mean() * sign
            by_lr[lr] = (div, -val if val == val else np.inf, lr)
        lr = min(by_lr, key=by_lr.get)
        row = table.loc[(task, opt)]
        assert row["lr"] == lr
        if row["all_diverged"]:
            continue
        # the figures come from the evaluation runs of the selected lr, none other
        mine = evaluation[(evaluation["task"] == task) & (evaluation["optimizer"] == opt)]
        assert set(mine["lr"]) == {lr} and len(mine) == 10
        x = mine[mine["status"] == "done"]["final_test_metric"].to_numpy()
        assert row["n"] == len(x)
        if len(x):
            assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
        if len(x) > 1 and np.ptp(x) > 0:
            low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-9)


def test_claims_on_the_tiny_study_say_what_is_missing(study_db):
    r = invoke("report", "claims", "--db", study_db, "--format", "json")
    out = json.loads(r.out)
    verdicts = {c["claim"]: c for c in out["claims"]}
    assert {c["verdict"] for c in verdicts.values()} == {"not enough data"}
    assert "rmsprop" in verdicts["a"]["reason"] and "found 0" in verdicts["a"]["reason"]
    # both tasks are outside (a) and (b): a demonstration, and a task whose val = test, which
    # (c) would count (it reads the training loss), but not at 20 steps (no budget of (c))
    assert "task rosenbrock is left out of the claims (a demonstration" in r.err
    assert ("task noisy-quadratic is left out of claims (a) and (b) (validation = test: no "
            "held-out figure); claim (c), which reads the training loss, counts it where it is "
            "one of (c)'s tasks") in r.err
    assert out["missing"] == []


def test_claims_count_the_missing_runs_already_queued(workdir):
    tasks = str(Path(__file__).parent / "fixtures" / "tasks")
    for optim, more in (("adam", []), ("sgd", ["--detach"])):
        r = invoke("run", "--study", "adaptive-lr", "-o", optim, "-t", "tiny", "--tasks-dir", tasks,
                   "--seeds", "2", "--eval-seeds", "0", "--db", "q.db", *more)
        assert r.code == 0, r.err
    r = invoke("report", "claims", "--db", "q.db", "--format", "json")
    missing = {row["optimizer"]: row for row in json.loads(r.out)["missing"]}
    assert {o: (m["steps"], m["seeds"], m["needed"], m["queued"]) for o, m in missing.items()} == {
        "adam": (5, 2, 5, 0), "sgd": (5, 0, 5, 4), "rmsprop": (5, 0, 5, 0),
        "adagrad": (5, 0, 5, 0), "momentum": (5, 0, 5, 0)}
    assert "4 run(s) of these are still queued or running" in r.err
    r = invoke("report", "claims", "--db", "q.db")
    assert "queued or running now" in r.out


@pytest.fixture(scope="module")
def claims_db(tmp_path_factory):
    """A synthetic adaptive-lr study in which every claim holds (benchmarks/calibration.py
    writes it through the store's code)."""
    from tests.test_stats_reports import CAL

    folder = tmp_path_factory.mktemp("claims")
    s = CAL.Scenario("all", "", shift={"adam": 4.0}, sparse_shift={"rmsprop": 3.5},
                     speed={"adam": 0.5}, gaps={"adagrad": (0.02, 0.06, 0.08)})
    CAL.write_study(str(folder / "claims.db"), s, 3, str(folder))
    return str(folder / "claims.db")


def test_claims_verdicts_name_their_scope_and_runs_in_every_format(claims_db):
    got = json.loads(invoke("report", "claims", "--db", claims_db, "--format", "json").out)
    verdicts = {c["claim"]: c for c in got["claims"]}
    assert {c["verdict"] for c in verdicts.values()} == {"supported"}
    assert verdicts["a"]["scope"] == ("on this suite of 10 tasks of types dense, sparse (speed: "
                                      "the 10 of them with a target); runs: accuracy 500, "
                                      "speed 250")
    assert "Holm over the 6 parts tested" in verdicts["b"]["reason"]
    assert got["missing"] == []
    stats = pd.DataFrame(got["statistics"])
    assert {"part", "side", "p_value", "p_holm", "runs"} <= set(stats.columns)
    assert (stats.loc[stats["verdict"] != "context", "p_holm"] <= 0.05).all()
    r = invoke("report", "claims", "--db", claims_db, "--format", "markdown")
    assert r.code == 0 and "SUPPORTED on this suite's 5 sparse tasks and their dense twins" in r.out
    assert "Traceback" not in r.err and "SUPPORTED" not in r.err  # notes only on stderr
    csv_out = pd.read_csv(io.StringIO(invoke("report", "claims", "--db", claims_db,
                                             "--format", "csv").out))
    assert set(csv_out["table"]) == {"claims", "statistics"}
    # a narrower filter is the same question on fewer tasks: (b) then lacks its twins
    narrow = json.loads(invoke("report", "claims", "--db", claims_db, "--format", "json",
                               "--task-type", "sparse").out)
    verdicts = {c["claim"]: c for c in narrow["claims"]}
    assert verdicts["b"]["verdict"] == "not enough data"
    assert "dense twins without results: dense-0" in verdicts["b"]["reason"]


def test_claims_read_the_robust_arm_with_best_variants(tmp_path):
    # a study with the robustness arm (benchmarks/calibration.py --variants): Adam 2σ better
    # than the plain rivals, each rival's warmup-cosine variant as good as Adam
    from tests.test_stats_reports import CAL

    s = next(x for x in CAL.SCENARIOS if x.name == "adam-best-untuned")
    path = str(tmp_path / "robust.db")
    CAL.write_study(path, s, 11, str(tmp_path), variants=True)
    both = ["--study", "adaptive-lr", "--study", "adaptive-lr-robust"]
    got = {}
    for variants in ("plain", "best"):
        r = invoke("report", "claims", "--db", path, *both, "--variants", variants, "-f", "json")
        assert r.code == 0, r.err
        got[variants] = pd.DataFrame(json.loads(r.out)["statistics"])
        claims = {c["claim"]: c for c in json.loads(r.out)["claims"]}
        assert ("best variant" in claims["a"]["scope"]) == (variants == "best")
    accuracy = {v: set(t.loc[(t["claim"] == "a") & (t["part"] == "accuracy"), "verdict"])
                for v, t in got.items()}
    assert accuracy == {"plain": {"supported"}, "best": {"not supported"}}
    page = tmp_path / "page.html"
    r = invoke("report", "html", "--db", path, "--variants", "best", "-o", str(page))
    assert r.code == 0, r.err
    assert "each optimizer at its best variant per task" in page.read_text()


def test_report_help_explains_each_command_in_one_line(study_db):
    r = invoke("report", "--help")
    lines = r.out.split("Commands:")[1].strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["summary", "wins", "ranks", "compare", "profile", "lr", "speed", "claims", "html"]
    assert all(len(line) <= 80 for line in lines)


# ---------------------------------------------------------------- synthetic databases


def synthetic_db(path, rows: list[dict], points: list[dict] = ()) -> str:
    """A database with these runs (and curve points), written through the real schema."""
    engine = make_engine(str(path))
    base = {"metric_name": "accuracy", "higher_is_better": True, "target": 0.7, "params": "{}",
            "schedule": "constant", "steps": 100, "batch_size": 32, "eval_every": 20,
            "study": "", "task_type": "dense", "status": "done"}
    with write(engine) as conn:
        for i, row in enumerate(rows):
            full = {**base, **row}
            full.setdefault("final_val_metric", full.get("final_test_metric"))
            conn.execute(sa.insert(Run).values(spec_hash=f"h{i}", **full))
        if points:
            conn.execute(sa.insert(CurvePoint), list(points))
    engine.dispose()
    return str(path)


def test_compare_on_a_synthetic_database(workdir):
    rows = []
    for t in range(6):
        for s in range(3):
            rows += [dict(task=f"t{t}", optimizer="adam", lr=0.01, seed=s, final_test_metric=0.9),
                     dict(task=f"t{t}", optimizer="sgd", lr=0.1, seed=s, final_test_metric=0.5)]
    db = synthetic_db(workdir / "s.db", rows)
    out = json.loads(invoke("report", "compare", "adam", "sgd", "--db", db, "--format", "json").out)
    overall = out["overall"][0]
    assert overall["tasks"] == 6 and overall["a_wins"] == 6
    assert overall["p_value"] == pytest.approx(2 / 64)
    assert overall["verdict"].startswith("adam better: wins 6 of 6 tasks")
    assert all(t["verdict"].startswith("no significant difference") or "adam better" in t["verdict"]
               for t in out["tasks"])


def test_filters_apply_to_every_command(workdir):
    rows = [dict(task=t, task_type=k, optimizer=o, lr=0.01, seed=s, final_test_metric=v + s / 100)
            for t, k in (("a", "dense"), ("b", "sparse")) for o, v in (("adam", 0.9), ("sgd", 0.8))
            for s in range(2)]
    db = synthetic_db(workdir / "f.db", rows)
    for args in (["report"], ["report", "wins"], ["report", "lr"], ["report", "ranks"]):
        out = invoke(*args, "--db", db, "--task-type", "sparse", "--format", "csv").out
        assert "dense" not in out and "sparse" in out, args
    out = invoke("report", "--db", db, "--optim", "adam", "--task", "a", "--format", "json").out
    assert [(r["task"], r["optimizer"]) for r in json.loads(out)] == [("a", "adam")]


def test_speed_reads_the_curves_at_budget_fractions(workdir):
    rows = [dict(task="t", optimizer=o, lr=0.01, seed=0, final_test_metric=v)
            for o, v in (("early", 0.8), ("late", 0.9))]
    curve = {"early": [0.5, 0.8, 0.8, 0.8, 0.8, 0.8], "late": [0.5, 0.3, 0.5, 0.7, 0.9, 0.9]}
    points = [dict(run_id=i + 1, step=step, split="val", loss=1 - v, metric=v, elapsed=0.0)
              for i, o in enumerate(curve) for step, v in zip(range(0, 101, 20), curve[o])]
    db = synthetic_db(workdir / "c.db", rows, points)
    out = json.loads(invoke("report", "speed", "--db", db, "--format", "json").out)
    ranks = {r["optimizer"]: (r["rank_10"], r["rank_25"], r["rank_100"]) for r in out["by_task"]}
    assert ranks == {"early": (1.5, 1.0, 2.0), "late": (1.5, 2.0, 1.0)}


def test_speed_and_curves_by_the_full_batch_training_loss(workdir):
    # val metrics say "early" leads throughout; the train_full losses say "late" wins at the end
    rows = [dict(task="t", optimizer=o, lr=0.01, seed=0, final_test_metric=0.5)
            for o in ("early", "late")]
    val = {"early": [0.5, 0.9, 0.9, 0.9, 0.9, 0.9], "late": [0.5, 0.1, 0.1, 0.1, 0.1, 0.1]}
    full = {"early": [2.0, 0.5, 0.9, 0.9, 0.9, 0.9], "late": [2.0, 1.0, 0.4, 0.3, 0.2, 0.1]}
    points = [dict(run_id=i + 1, step=step, split=split, loss=loss, metric=0.0, elapsed=0.0)
              for split, table in (("val", val), ("train_full", full))
              for i, o in enumerate(table) for step, loss in zip(range(0, 101, 20), table[o])]
    for p in points:
        if p["split"] == "val":
            p["metric"] = 1 - p["loss"]
    db = synthetic_db(workdir / "c.db", rows, points)
    out = json.loads(invoke("report", "speed", "--db", db, "--split", "train_full",
                            "--format", "json").out)
    ranks = {r["optimizer"]: (r["rank_10"], r["rank_25"], r["rank_100"]) for r in out["by_task"]}
    assert ranks == {"early": (1.5, 1.0, 2.0), "late": (1.5, 2.0, 1.0)}  # by val: early first at 100%
    r = invoke("report", "speed", "--db", db, "--split", "train_full")
    assert "full-batch training loss" in r.out
    r = invoke("plot", "curves", "--db", db, "--split", "train_full", "-o", "full.png")
    assert r.code == 0, r.err
    assert (workdir / "full.png").stat().st_size > 0


def test_every_command_on_an_empty_database(workdir):
    make_engine(str(workdir / "empty.db")).dispose()
    for args in COMMANDS:
        if args[1:2] == ["compare"]:
            continue
        r = invoke(*args, "--db", "empty.db")
        assert r.code == 0, (args, r.err)
    r = invoke("report", "claims", "--db", "empty.db", "--format", "json")
    assert {c["verdict"] for c in json.loads(r.out)["claims"]} == {"not enough data"}


BAD = [
    (["report", "compare", "adam", "lion"], "no results for optimizer 'lion'"),
    (["report", "compare", "adam", "adam"], "two different optimizers"),
    (["report", "summary", "--ci", "wald"], "--ci"),
    (["report", "--format", "xml"], "--format"),
    (["report", "lr", "--within", "-5"], "--within"),
    (["report", "profile", "--metric", "train"], "--split: steps to target need a metric"),
    (["report", "wins", "--metric", "validation"], "--metric"),
    (["report", "claims", "--split", "train_full"], "--split"),
    (["report", "claims", "--format", "yaml"], "--format"),
]


@pytest.mark.parametrize("args,expected", BAD, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_input_is_one_line_and_exit_2(workdir, args, expected):
    rows = [dict(task="t", optimizer=o, lr=0.01, seed=0, final_test_metric=0.5) for o in ("adam", "sgd")]
    db = synthetic_db(workdir / "b.db", rows)
    r = invoke(*args, "--db", db)
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err
    assert len([line for line in r.err.splitlines() if line.strip()]) == 1, r.err
    assert expected in r.err


def test_loaders_agree_and_curves_near_fractions_keep_the_nearest(study_db):
    engine = make_engine(study_db, create=False)
    full = results.load_runs(engine)
    columns = ["id", "task", "lr", "seed", "higher_is_better", "final_test_metric", "steps_to_target"]
    fast = results.load_columns(engine, columns)
    pd.testing.assert_frame_equal(fast.astype({"steps_to_target": float}),
                                  full[columns].astype({"steps_to_target": float}),
                                  check_dtype=False)
    assert results.load_curves(engine, []).empty


def test_curves_near_fractions_keep_the_nearest_evaluations(workdir):
    # Two runs evaluated every 20 steps, of 100 and of 60 steps (the last evaluation at 60).
    rows = [dict(task="t", optimizer="a", lr=0.01, seed=0, steps=100, final_test_metric=0.5),
            dict(task="t", optimizer="b", lr=0.01, seed=0, steps=60, final_test_metric=0.5)]
    points = [dict(run_id=r, step=step, split=split, loss=1.0, metric=0.5, elapsed=0.0)
              for r, last in ((1, 100), (2, 60)) for step in range(0, last + 1, 20)
              for split in ("val", "test")]
    engine = make_engine(synthetic_db(workdir / "n.db", rows, points), create=False)
    everything = results.load_curves(engine, [1, 2], ["val"])
    near = results.load_curves(engine, [1, 2], ["val"], near=(0.1, 1.0))
    assert set(everything["split"]) == {"val"} and len(everything) == 6 + 4
    # |step - f * steps| <= 20: run 1 -> 0, 20 (10% = 10) and 80, 100; run 2 -> 0, 20 and 40, 60
    got = {(r, s) for r, s in zip(near["run_id"], near["step"])}
    assert got == {(1, 0), (1, 20), (1, 80), (1, 100), (2, 0), (2, 20), (2, 40), (2, 60)}


PROBE = """
import sys
from adaptbench.cli import main
for args in {commands!r}:
    try:
        main(args + ["--db", sys.argv[1], "--format", "csv"])
    except SystemExit as exc:
        assert exc.code in (0, None), (args, exc.code)
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""


def test_no_report_command_imports_torch(study_db):
    commands = [c for c in COMMANDS if c != ["report"]] + [["report"]]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(commands=commands), study_db],
                          capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "NO-TORCH", proc.stderr


def test_postgresql_gives_the_same_reports_as_sqlite(workdir, postgres_url):
    rows, points = [], []
    for t, kind in (("a", "dense"), ("b", "sparse")):
        for o, v in (("adam", 0.9), ("sgd", 0.7), ("rmsprop", 0.8)):
            for lr in (0.01, 0.1):
                for s in range(3):
                    rows.append(dict(task=t, task_type=kind, optimizer=o, lr=lr, seed=s,
                                     final_test_metric=v - lr + s / 50, steps_to_target=40,
                                     final_test_loss=1 - v))
                    points += [dict(run_id=len(rows), step=step, split=split, loss=1 - v * step / 100,
                                    metric=v * step / 100, elapsed=0.0)
                               for step in range(0, 101, 20) for split in ("train", "val")]
    lite = synthetic_db(workdir / "same.db", rows, points)
    pg = synthetic_db(postgres_url, rows, points)
    for args in (["report"], ["report", "wins"], ["report", "ranks"],
                 ["report", "compare", "adam", "sgd"], ["report", "profile"], ["report", "lr"],
                 ["report", "speed"], ["report", "claims"]):
        a = invoke(*args, "--db", lite, "--format", "csv")
        b = invoke(*args, "--db", pg, "--format", "csv")
        assert a.code == b.code == 0, (args, a.err, b.err)
        assert a.out == b.out, args


SUBCOMMANDS = [["summary"], ["wins"], ["ranks"], ["compare", "adam", "sgd"], ["profile"],
               ["lr"], ["speed"], ["claims"]]


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=lambda a: a[0])
def test_options_before_a_subcommand_are_applied_to_it(study_db, sub):
    # each shared option, written before the subcommand, gives what it gives written after it
    for option in (["--task", "rosenbrock"], ["--task-type", "nonconvex"], ["--optim", "adam,sgd"],
                   ["--study", "adaptive-lr"], ["--split", "val"], ["--metric", "val"],
                   ["--db", study_db], ["--format", "csv"]):
        rest = [] if option[0] == "--db" else ["--db", study_db]
        before = invoke("report", *option, *sub, *rest)
        after = invoke("report", *sub, *option, *rest)
        assert before.code == after.code == 0, (option, before.err, after.err)
        assert before.out == after.out, option
    # and a filter really filters: the rosenbrock-only output differs from the whole study's
    narrowed = invoke("report", "--task", "rosenbrock", *sub, "--db", study_db, "--format", "csv")
    whole = invoke("report", *sub, "--db", study_db, "--format", "csv")
    if sub[0] not in ("claims",):
        assert narrowed.out != whole.out, sub
        assert "noisy-quadratic" not in narrowed.out


@pytest.mark.parametrize("sub", [s for s in SUBCOMMANDS if s[0] != "summary"], ids=lambda a: a[0])
def test_an_option_a_subcommand_does_not_take_is_refused_before_it(study_db, sub):
    for option in (["--lr", "fixed"], ["--ci", "bootstrap"]):
        r = invoke("report", *option, *sub, "--db", study_db)
        assert r.code == 2 and r.out == "", (option, r.err)
        assert f"option {option[0]} does not apply to `report {sub[0]}`" in r.err
        assert len(r.err.strip().splitlines()) == 1


def test_an_option_given_twice_with_different_values_is_refused(study_db):
    r = invoke("report", "--task", "rosenbrock", "wins", "--task", "noisy-quadratic",
               "--db", study_db)
    assert r.code == 2 and "given twice" in r.err
    same = invoke("report", "--task", "rosenbrock", "wins", "--task", "rosenbrock",
                  "--db", study_db)
    assert same.code == 0, same.err


def test_an_unknown_filter_value_is_an_error_with_a_suggestion(study_db):
    r = invoke("report", "--task", "rosenbrok", "--db", study_db)
    assert r.code == 2 and "--task: no stored run has task 'rosenbrok' (did you mean 'rosenbrock'?)" in r.err


# ---------------------------------------------------------------- a study still in progress

STILL = "note: 1 run(s) of these are still queued or running; figures will change when they finish"


@pytest.fixture(scope="module")
def unfinished_db(tmp_path_factory):
    """Two finished optimizers on one task, and one more adam run still queued."""
    path = str(tmp_path_factory.mktemp("unfinished") / "u.db")
    r = invoke("run", "-o", "adam,sgd", "-t", "noisy-quadratic", "--lr", "0.01", "--seeds", "2",
               "--steps", "10", "--db", path)
    assert r.code == 0, r.err
    assert invoke("queue", "-o", "adam", "-t", "noisy-quadratic", "--lr", "0.01", "--seed", "7",
                  "--steps", "10", "--db", path).code == 0
    return path


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[1:]) or "bare")
def test_every_report_notes_runs_still_queued_once(unfinished_db, args):
    r = invoke(*args, "--db", unfinished_db)
    assert r.code == 0, r.err
    assert r.err.count(STILL) == 1, r.err


def test_no_note_when_the_filter_leaves_the_queued_runs_out(unfinished_db):
    r = invoke("report", "summary", "-o", "sgd", "--db", unfinished_db)
    assert r.code == 0, r.err
    assert "still queued" not in r.err
    assert STILL in invoke("report", "summary", "-o", "adam", "--db", unfinished_db).err


# ---------------------------------------------------------------- parquet files

@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[1:]) or "bare")
def test_every_report_writes_parquet_like_its_csv(study_db, args, tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "out.parquet"
    r = invoke(*args, "--db", study_db, "--format", "parquet", "--output", path)
    assert r.code == 0, r.err
    assert r.out == ""
    table = pd.read_parquet(path)
    csv = pd.read_csv(io.StringIO(invoke(*args, "--db", study_db, "--format", "csv").out))
    assert list(table.columns) == list(csv.columns)
    assert len(table) == len(csv)
    if "table" in table.columns:  # several sections in one file, named as in CSV
        assert list(table["table"]) == list(csv["table"])


@pytest.mark.parametrize("args", [["ls"], ["curves"]])
def test_listing_writes_parquet(study_db, args, tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "out.parquet"
    r = invoke(*args, "--db", study_db, "-f", "parquet", "--output", path)
    assert r.code == 0, r.err
    table = pd.read_parquet(path)
    csv = pd.read_csv(io.StringIO(invoke(*args, "--db", study_db, "-f", "csv").out))
    assert list(table.columns) == list(csv.columns) and len(table) == len(csv) > 0
    assert table["id" if args == ["ls"] else "run_id"].dtype.kind == "i"


@pytest.mark.parametrize("extra, message", [
    ([], "--format parquet writes a file: add --output FILE.parquet"),
    (["--output", "out.csv"], "--output must name a .parquet file, got 'out.csv'"),
])
@pytest.mark.parametrize("args", [["ls"], ["curves"], ["report"], ["report", "ranks"]])
def test_parquet_needs_a_parquet_file(study_db, args, extra, message):
    r = invoke(*args, "--db", study_db, "--format", "parquet", *extra)
    assert r.code == 2
    assert r.err.strip().splitlines() == [f"adaptbench: error: {message}"]


def test_output_without_parquet_is_refused(study_db):
    r = invoke("ls", "--db", study_db, "--output", "out.parquet")
    assert r.code == 2 and "--output is for --format parquet" in r.err


@pytest.mark.parametrize("args", [["ls"], ["report", "summary"]])
def test_parquet_without_pyarrow_says_how_to_install_it(study_db, args, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now fails
    path = tmp_path / "out.parquet"
    r = invoke(*args, "--db", study_db, "--format", "parquet", "--output", path)
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "adaptbench: error: --format parquet needs pyarrow: pip install 'adaptbench[parquet]'"]
    assert not path.exists()
