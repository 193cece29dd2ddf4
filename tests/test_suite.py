"""The built-in suite as a whole: sparse tasks with dense twins, measured properties, targets
derived by the recorded rule from the recorded tuning, budgets that fit the study."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest
import torch

from adaptbench.spec import LONG_BUDGETS, LONG_TRAINING_TASKS, RunSpec
from adaptbench.tasks import builtin_dir, load_tasks, measured
from adaptbench.train import execute

TASKS = {name: t for name, t in load_tasks().items() if t.source.startswith(str(builtin_dir()))}
SPARSE = sorted(n for n, t in TASKS.items() if t.task_type == "sparse")
TUNING = json.loads((builtin_dir() / "tuning.json").read_text())
# the tasks benchmarks/tuning.py has tuned (its --json output, tuning.json); at least one
TUNED = sorted(n for n in TUNING["default"] if n in TASKS and TASKS[n].claims)
TIMINGS = json.loads((builtin_dir() / "timings.json").read_text())
LONG_SECONDS = 30.0  # a 16x run of a long-arm task takes at most this on one CPU thread


def test_at_least_five_sparse_tasks_each_with_a_dense_twin_like_it():
    assert len(SPARSE) >= 5
    for name in SPARSE:
        sparse = TASKS[name]
        twin = TASKS[sparse.twin]
        assert twin.task_type == "dense" and twin.twin is None
        for key in ("steps", "batch_size", "lrs", "metric", "higher_is_better", "eval_every"):
            assert getattr(twin, key) == getattr(sparse, key), (name, key)


def test_sparse_tasks_have_sparse_gradients_and_their_twins_dense_ones():
    for name in SPARSE:
        sparse, dense = measured(TASKS[name]), measured(TASKS[TASKS[name].twin])
        assert sparse["gradient_density"] < 0.5, name
        assert dense["gradient_density"] > 0.9, name


@pytest.mark.parametrize("name", SPARSE)
def test_sgd_trains_a_sparse_task_and_its_twin_alike(name):
    """The twin changes only the basis of the sparse layer, to which SGD is blind."""
    sparse, twin = TASKS[name], TASKS[TASKS[name].twin]
    lr = sorted(sparse.lrs)[len(sparse.lrs) // 2]
    spec = RunSpec(name, "sgd", lr, 0, 20, sparse.batch_size)
    a = execute(spec, sparse, torch.device("cpu"))
    b = execute(dataclasses.replace(spec, task=twin.name), twin, torch.device("cpu"))
    assert a.status == b.status == "done"
    assert a.final["final_val_loss"] == pytest.approx(b.final["final_val_loss"], rel=1e-3, abs=1e-5)


def _round_towards_easy(value: float, higher_is_better: bool) -> float:
    scale = 10 ** (math.floor(math.log10(abs(value))) - 2)
    q = value / scale
    return (math.floor(q + 1e-9) if higher_is_better else math.ceil(q - 1e-9)) * scale


def test_every_target_is_the_recorded_rule_applied_to_the_recorded_tuning():
    tuned = TUNING["default"]
    assert TUNED
    for name in TUNED:
        task = TASKS[name]
        vals = [o["val_at_best"] for o in tuned[name]["optimizers"].values()]
        expected = _round_towards_easy(statistics.median(vals), task.higher_is_better)
        assert task.target == pytest.approx(expected, rel=1e-9), name


def test_no_tuned_lr_sits_at_the_edge_of_its_grid_at_the_default_budget():
    for name in TUNED:
        info = TUNING["default"][name]
        grid = sorted(TASKS[name].lrs)
        for opt, o in info["optimizers"].items():
            assert grid[0] < o["best_lr"] < grid[-1], (name, opt, o["best_lr"])


def test_every_default_run_is_quick_and_the_long_arm_holds_the_quick_tasks():
    # CPU seconds of one thread: what a run costs a core, whatever else the machine was doing
    seconds = TIMINGS["cpu_seconds"]
    claims = [n for n, t in TASKS.items() if t.claims]
    for name in TASKS:
        assert seconds[name] <= 10.0, name
    assert set(LONG_TRAINING_TASKS) <= set(claims)
    for name in claims:
        fits = seconds[name] * max(LONG_BUDGETS) <= LONG_SECONDS
        assert fits == (name in LONG_TRAINING_TASKS), (name, seconds[name])


def test_the_metric_is_measured_more_finely_than_optimizers_differ():
    for name in TUNED:
        info = TUNING["default"][name]
        if TASKS[name].held_out:
            assert info["metric_se"] < info["typical_difference"], name
