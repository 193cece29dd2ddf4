"""The protocol, applied once: variants, one task definition, lr selection on the selection
seeds, figures from the evaluation seeds, and what is said when they are missing."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from adaptbench import comparisons, protocol, stats
from adaptbench.errors import UserError
from tests.test_stats import diverged, frame, run


def runs_frame(rows):
    base = dict(task="t", optimizer="adam", params="{}", schedule="constant", lr=0.1, seed=0,
                steps=100, batch_size=32, study="")
    return pd.DataFrame([{**base, "id": i + 1, **r} for i, r in enumerate(rows)])


# ---------------------------------------------------------------- variants


def test_settings_name_the_variant():
    out = protocol.variant_labels(runs_frame([
        {}, {"schedule": "cosine"}, {"params": '{"betas": [0.9, 0.99], "amsgrad": true}'},
        {"optimizer": "sgd"},
    ]))
    assert list(out) == ["adam", "adam+cosine", "adam{amsgrad=true;betas=0.9,0.99}", "sgd"]


def test_a_label_names_a_budget_only_where_it_differs_from_the_tasks_default():
    # the task's defaults were recorded at queue time: adding an sgd run at another budget
    # never renames the default sgd runs
    rows = [{"optimizer": "sgd", "steps": 200, "task_steps": 200, "task_batch_size": 32},
            {"optimizer": "sgd", "steps": 100, "task_steps": 200, "task_batch_size": 32},
            {"optimizer": "adam", "steps": 200, "batch_size": 64, "task_steps": 200,
             "task_batch_size": 32}]
    assert list(protocol.variant_labels(runs_frame(rows))) == ["sgd", "sgd@100steps", "adam/b64"]
    # and the label of the first run is the same with or without the others
    assert list(protocol.variant_labels(runs_frame(rows[:1]))) == ["sgd"]


def test_runs_without_recorded_defaults_are_named_where_a_task_has_several_budgets():
    out = protocol.variant_labels(runs_frame([
        {"steps": 100}, {"steps": 300}, {"task": "u"}, {"batch_size": 64, "task": "u"},
    ]))
    assert list(out) == ["adam@100steps", "adam@300steps", "adam/b32", "adam/b64"]


def test_the_same_experiment_under_two_studies_is_refused_not_pooled_or_deduplicated():
    runs = frame([run("t", "adam", 0, 0.9), {**run("t", "adam", 0, 0.9), "study": "again"}])
    with pytest.raises(UserError, match="report on one study at a time") as exc:
        protocol.select(runs)
    assert "--" not in str(exc.value)  # the core names no command-line flag
    one = protocol.select(runs[runs["study"] == "again"])
    assert len(one.runs) == 1


def test_mixed_budgets_are_flagged():
    runs = frame([run("t", "adam", 0, 0.9), {**run("t", "sgd", 0, 0.8), "steps": 50,
                                                "task_steps": 100}])
    runs["task_steps"] = runs["task_steps"].fillna(100)
    selected = protocol.select(runs)
    assert sorted(selected.runs["optimizer"]) == ["adam", "sgd@50steps"]
    assert any("different budgets" in n for n in selected.notes)


# ---------------------------------------------------------------- definitions


def test_only_the_newest_definition_of_a_task_is_used():
    rows = [run("t", "adam", s, 0.5) | {"fingerprint": "old"} for s in range(2)]
    rows += [run("t", "adam", s, 0.9) | {"fingerprint": "new"} for s in range(2)]
    rows += [run("u", "adam", 0, 0.7) | {"fingerprint": None}]
    selected = protocol.select(frame(rows))
    assert sorted(selected.runs.loc[selected.runs["task"] == "t", "final_test_metric"]) == [0.9, 0.9]
    assert len(selected.runs) == 3
    [note] = selected.notes
    assert "task t: 2 run(s) of an older definition" in note


# ---------------------------------------------------------------- selection and evaluation


def study(eval_metric=None, eval_lr=0.01, stale=False):
    """adam on task t: lr 0.01 wins the selection (val 0.8 vs 0.7) on seeds 0-2; evaluation runs
    on seeds 100-104 at `eval_lr` with test metric `eval_metric`."""
    rows = [run("t", "adam", s, 0.95, 0.80, lr=0.01) for s in range(3)]
    rows += [run("t", "adam", s, 0.99, 0.70, lr=0.1) for s in range(3)]
    rows = [r | {"role": "selection"} for r in rows]
    if eval_metric is not None:
        rows += [run("t", "adam", 100 + s, eval_metric, lr=eval_lr) | {"role": "evaluation"}
                 for s in range(5)]
    if stale:
        rows += [run("t", "adam", 100, 0.1, lr=0.1) | {"role": "evaluation"}]
    return frame(rows)


def test_figures_come_from_the_evaluation_seeds_at_the_selected_lr():
    selected = protocol.select(study(eval_metric=0.85))
    assert selected.source == "evaluation"
    assert sorted(selected.runs["seed"]) == [100, 101, 102, 103, 104]
    [row] = selected.table.to_dict("records")
    assert (row["lr"], row["selection_n"], row["eval_n"], row["source"]) == (0.01, 3, 5, "evaluation")
    summary = stats.tuned_summary(selected)
    assert summary.loc[0, "n"] == 5 and summary.loc[0, "mean"] == pytest.approx(0.85)
    assert "fresh evaluation seeds" in selected.describe()


def test_without_evaluation_runs_the_figures_are_flagged_optimistic():
    selected = protocol.select(study())
    assert selected.source == "selection" and "OPTIMISTIC" in selected.describe()
    summary = stats.tuned_summary(selected)
    assert list(summary["source"]) == ["selection"]
    assert summary.loc[0, "n"] == 3 and summary.loc[0, "mean"] == pytest.approx(0.95)


def test_evaluation_runs_at_an_lr_no_longer_selected_are_left_out_with_a_note():
    selected = protocol.select(study(eval_metric=0.85, stale=True))
    assert len(selected.runs) == 5 and (selected.runs["lr"] == 0.01).all()
    assert any("no longer the selected one" in n for n in selected.notes)


def test_a_group_whose_every_lr_diverged_is_flagged():
    runs = frame([diverged("t", "sgd", s, lr=lr) for s in range(2) for lr in (0.1, 1.0)]
                 + [run("t", "adam", 0, 0.9)])
    selected = protocol.select(runs)
    table = selected.table.set_index("optimizer")
    assert bool(table.loc["sgd", "all_diverged"]) and not bool(table.loc["adam", "all_diverged"])
    assert any("every lr diverged" in n for n in selected.notes)
    assert bool(stats.tuned_summary(selected).set_index("optimizer").loc["sgd", "all_diverged"])


def test_a_choice_at_either_end_of_a_grid_of_three_or_more_lrs_is_named_in_a_note():
    """Hand-worked: adam's best of 0.001/0.01/0.1 is 0.001 (the smallest), sgd's is 0.1 (the
    largest), momentum's 0.01 (inside); rmsprop tried two lrs only, so its choice is at an end
    whatever it is, and no note names it; adagrad diverged everywhere (its own note)."""
    vals = {"adam": (0.9, 0.8, 0.7), "sgd": (0.6, 0.7, 0.8), "momentum": (0.7, 0.9, 0.8)}
    rows = [run("t", o, s, v, lr=lr) for o, vs in vals.items() for s in range(2)
            for lr, v in zip((0.001, 0.01, 0.1), vs)]
    rows += [run("t", "rmsprop", s, v, lr=lr) for s in range(2)
             for lr, v in ((0.01, 0.9), (0.1, 0.5))]
    rows += [diverged("t", "adagrad", s, lr=lr) for s in range(2) for lr in (0.001, 0.01, 0.1)]
    notes = [n for n in protocol.select(frame(rows)).notes if protocol.EDGE_NOTE in n]
    assert len(notes) == 1, protocol.select(frame(rows)).notes
    assert notes[0].startswith("2 of the 3 (task, optimizer) pair(s) tried at 3 or more lrs "
                               "chose the smallest or largest")
    assert "t x adam (0.001, the smallest)" in notes[0] and "t x sgd (0.1, the largest)" in notes[0]
    assert "momentum" not in notes[0] and "rmsprop" not in notes[0] and "adagrad" not in notes[0]
    inside = [run("t", "adam", s, v, lr=lr) for s in range(2)
              for lr, v in ((0.001, 0.7), (0.01, 0.9), (0.1, 0.8))]
    assert not [n for n in protocol.select(frame(inside)).notes if protocol.EDGE_NOTE in n]


def test_the_edge_note_names_a_few_pairs_and_counts_the_rest():
    rows = [run(f"t{k}", "adam", 0, v, lr=lr) for k in range(9)
            for lr, v in ((0.001, 0.9), (0.01, 0.8), (0.1, 0.7))]
    [note] = [n for n in protocol.select(frame(rows)).notes if protocol.EDGE_NOTE in n]
    assert note.startswith("9 of the 9 ") and ", and 3 more;" in note
    assert note.count("(0.001, the smallest)") == 6


def test_statistics_refuse_runs_that_were_not_selected():
    with pytest.raises(ValueError, match="protocol.select"):
        comparisons.win_rates(study())


def test_selection_happens_on_the_selection_seeds_only():
    # an evaluation run with a spectacular validation value must not move the selected lr
    runs = study(eval_metric=0.85)
    extra = run("t", "adam", 200, 0.5, 0.999, lr=0.1) | {"role": "evaluation", "id": 99}
    runs = pd.concat([runs, pd.DataFrame([extra])], ignore_index=True)
    assert protocol.select(runs).table.loc[0, "lr"] == 0.01


def test_fixed_protocol_shows_every_selection_lr():
    selected = protocol.select(study(eval_metric=0.85), protocol.FIXED)
    assert sorted(set(selected.runs["lr"])) == [0.01, 0.1]
    assert (selected.runs["seed"] < 100).all()


def test_queuing_another_budget_does_not_rename_the_runs_already_stored(cli, workdir):
    common = ["-t", "logistic-regression", "--lr", "0.1", "--seeds", "2"]
    assert cli("run", "-o", "adam,sgd", *common).code == 0
    before = pd.read_csv(io.StringIO(cli("report", "--format", "csv").out))
    assert sorted(before["optimizer"]) == ["adam", "sgd"]
    assert cli("run", "-o", "sgd", *common, "--steps", "20").code == 0
    r = cli("report", "--format", "csv")
    after = pd.read_csv(io.StringIO(r.out)).set_index("optimizer")
    assert sorted(after.index) == ["adam", "sgd", "sgd@20steps"]
    assert after.loc["sgd", "mean"] == before.set_index("optimizer").loc["sgd", "mean"]
    assert "different budgets" in r.err  # and the report says the budgets differ
    claims = cli("report", "claims", "--format", "json")
    assert "sgd@20steps" not in claims.out  # claims compare the default budget's runs
    # ... and keep budgets apart, so the note that they differ is not theirs
    assert claims.code == 0 and "different budgets" not in claims.err
    # runs still to come are counted by the budget they feed: a longer one only claim (c) reads
    from adaptbench.tasks import load_tasks

    longer = 4 * load_tasks()["logistic-regression"].steps
    assert cli("queue", "-o", "adam", *common, "--steps", str(longer)).code == 0
    claims = cli("report", "claims", "--format", "json")
    assert ("2 run(s) of these are still queued or running (all at 4x or 16x their task's "
            "default budget, which only claim (c) reads)") in claims.err
    assert cli("queue", "-o", "adagrad", *common).code == 0
    # a budget (c) does not compare (2x) is not counted as one it reads
    assert cli("queue", "-o", "adagrad", *common, "--steps", str(longer // 2)).code == 0
    assert "6 run(s) of these are still queued or running (2 of them at 4x or 16x" in cli(
        "report", "claims", "--format", "json").err
    assert "6 run(s) of these are still queued or running; figures will change" in cli(
        "report", "--format", "json").err
