"""Vectorized execution: a stacked group trains every member as it would train alone.

The table: every built-in task x every built-in optimizer, two members (seed 0 at the
optimizer's default lr, seed 1 at a third of it), each member's curve, final metrics,
divergence and trajectory against the same run trained alone by `train.execute` (torch.optim on
the task's module), over 20 steps on the first TABLE_EXAMPLES examples of each split (the
task's data and model otherwise; the data of a slow-to-build task is built once per seed).
In float32 the stacked forward and backward (batched matrix products, grouped convolutions)
round differently from the run alone, so values agree within FLOAT32_RTOL (measured worst
5e-6 relative over the table) and metrics within that or METRIC_ATOL (an accuracy moves by 1/n
when one example's prediction flips); in float64 (the small tasks, converted) within
FLOAT64_RTOL. One pair is looser (ROUGHER): RMSprop's first updates are about 10·lr·sign(g)
(alpha 0.99), so a gradient coordinate that is exactly 0 alone and ±1e-12 stacked (a dead
ReLU of the CNN, summed in another order) moves by 10·lr; digits-cnn's losses then differ by
up to 1e-2 relative after 20 steps.

Everything here runs on the CPU unless ADAPTBENCH_TEST_DEVICE names another device
(`ADAPTBENCH_TEST_DEVICE=cuda python -m pytest tests/test_stacked.py` on a machine with a GPU).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import time

import pytest
import torch
from torch import nn

from adaptbench import stacked, train
from adaptbench.optimizers import OPTIMIZERS
from adaptbench.spec import RunSpec
from adaptbench.tasks import Problem, Task, load_tasks

# ADAPTBENCH_TEST_DEVICE=cuda runs every comparison here on a GPU (default: the CPU)
DEVICE = torch.device(os.environ.get("ADAPTBENCH_TEST_DEVICE", "cpu"))
TASKS = load_tasks()
FLOAT32_RTOL, FLOAT32_ATOL = 2e-5, 1e-6
ROUGHER = {("digits-cnn", "rmsprop"): 3e-2}
METRIC_ATOL = 2e-3
TABLE_EXAMPLES = 256
FLOAT64_RTOL = 1e-10
STEPS, EVAL_EVERY = 20, 10
# tasks whose modules vmap cannot batch: trained one run at a time, with the reason
UNSTACKABLE = {"char-rnn": "aten::lstm"}
SMALL = ["rosenbrock", "noisy-quadratic", "logistic-regression", "diabetes-mlp", "friedman-mlp"]


@pytest.fixture(autouse=True)
def _fresh_process():
    """What a process has decided about groups (`auto`'s measurements, tasks that refused to
    stack) starts empty in every test, as in a new worker."""
    stacked._DECIDED.clear()
    stacked._REFUSED.clear()
    yield
    stacked._DECIDED.clear()
    stacked._REFUSED.clear()


def evaluations(stacked_seconds: float, alone_seconds: float) -> dict[str, tuple[float, float]]:
    """What `_seconds_per_evaluation` gives: every split's seconds stacked and alone."""
    return dict.fromkeys(stacked.POINT_SPLITS + stacked.FINAL_SPLITS, (stacked_seconds, alone_seconds))


def short(task: Task) -> Task:
    return dataclasses.replace(task, steps=STEPS, eval_every=EVAL_EVERY)


@functools.cache
def table_task(name: str) -> Task:
    """The task cut to its first TABLE_EXAMPLES examples per split, 20 steps; a build that
    takes over 0.1 s builds its data once per seed (each run gets a copy of the fresh model)."""
    task = TASKS[name]
    built: dict[int, Problem] = {}

    def cut(p: Problem) -> Problem:
        def part(split):
            return tuple(t[:TABLE_EXAMPLES] for t in split)

        return dataclasses.replace(p, train=part(p.train), val=part(p.val), test=part(p.test))

    def build(seed: int, device) -> Problem:
        if seed in built:
            return dataclasses.replace(built[seed], model=copy.deepcopy(built[seed].model))
        started = time.perf_counter()
        problem = cut(task.build(seed, device))
        if time.perf_counter() - started > 0.1:
            built[seed] = dataclasses.replace(problem, model=copy.deepcopy(problem.model))
        return problem

    return dataclasses.replace(short(task), build=build)


def members(task: Task, optimizer: str, lrs: tuple[float, float] | None = None,
            steps: int = STEPS, seeds: tuple[int, ...] = (0, 0, 1)) -> list[RunSpec]:
    """By default: two lrs on seed 0 and the first of them on seed 1."""
    lr = OPTIMIZERS[optimizer].default_lr
    a, b = lrs or (lr, lr / 3)
    pairs = list(zip(seeds, (a, b, a)))
    return [RunSpec(task=task.name, optimizer=optimizer, lr=lr_, seed=seed, steps=steps,
                    batch_size=task.batch_size) for seed, lr_ in pairs]


def assert_alike(got: train.RunResult, want: train.RunResult, rtol: float, atol: float,
                 label: str, metric_atol: float = 0.0) -> float:
    """The stacked member's result against the run alone; the worst relative difference."""
    assert got.status == want.status, (label, got.status, want.status)
    assert got.diverged_at_step == want.diverged_at_step, label
    assert got.steps_to_target == want.steps_to_target, label
    assert [(p["step"], p["split"]) for p in got.curve] == [(p["step"], p["split"]) for p in want.curve], label
    worst = 0.0
    pairs = [(p["loss"], q["loss"], atol) for p, q in zip(got.curve, want.curve)]
    pairs += [(p["metric"], q["metric"], max(atol, metric_atol)) for p, q in zip(got.curve, want.curve)]
    pairs += [(got.final[key], want.final[key], max(atol, metric_atol) if "metric" in key else atol)
              for key in want.final]
    pairs += [(got.best_val_metric, want.best_val_metric, max(atol, metric_atol))]
    if want.trajectory is not None:
        assert [s for s, _ in got.trajectory] == [s for s, _ in want.trajectory], label
        pairs += [(a, b, atol) for (_, xs), (_, ys) in zip(got.trajectory, want.trajectory)
                  for a, b in zip(xs, ys)]
    for a, b, tol in pairs:
        assert (a is None) == (b is None), label
        if a is None:
            continue
        assert abs(a - b) <= tol + rtol * abs(b), (label, a, b)
        worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    return worst


@pytest.mark.parametrize("name", sorted(TASKS))
def test_table_every_optimizer_stacked_equals_alone(name):
    task = table_task(name)
    if name in UNSTACKABLE:  # alone is all there is to compare with: a few steps show it trains
        task = dataclasses.replace(task, steps=4, eval_every=2)
    for optimizer in OPTIMIZERS:
        specs = members(task, optimizer, seeds=(0, 1), steps=task.steps)
        reasons: list[str] = []
        got = train.execute_group(specs, task, DEVICE, "on", explain=reasons.append)
        if name in UNSTACKABLE:  # trained one run at a time: every optimizer still trains
            assert {r.execution for r in got} == {"single"}
            assert UNSTACKABLE[name] in reasons[0]
            assert all(math.isfinite(p["loss"]) for r in got if r.status == "done" for p in r.curve
                       if p["loss"] is not None)
            continue
        assert {r.execution for r in got} == {"vectorized"}, reasons
        for spec, result in zip(specs, got):
            assert_alike(result, train.execute(spec, task, DEVICE),
                         ROUGHER.get((name, optimizer), FLOAT32_RTOL), FLOAT32_ATOL,
                         f"{name} {optimizer} lr={spec.lr} seed={spec.seed}", METRIC_ATOL)


def in_float64(task: Task) -> Task:
    """The task with its model and floating-point data in float64."""

    def build(seed: int, device):
        p = task.build(seed, device)

        def cast(split):
            return tuple(t.double() if t.is_floating_point() else t for t in split)

        return dataclasses.replace(p, model=p.model.double(), train=cast(p.train),
                                   val=cast(p.val), test=cast(p.test))

    return dataclasses.replace(short(task), build=build)


@pytest.mark.parametrize("name", SMALL)
def test_in_float64_stacked_equals_alone_to_rounding(name):
    task = in_float64(TASKS[name])
    for optimizer in ("sgd", "momentum", "adam", "rmsprop", "adagrad"):
        specs = members(task, optimizer)
        got = train.execute_group(specs, task, DEVICE, "on")
        assert {r.execution for r in got} == {"vectorized"}
        for spec, result in zip(specs, got):
            assert_alike(result, train.execute(spec, task, DEVICE), FLOAT64_RTOL, 1e-12,
                         f"{name} {optimizer} lr={spec.lr} seed={spec.seed}")


def test_a_diverging_member_stops_alone_and_the_others_train_on():
    task = short(TASKS["tabular-mlp"])
    specs = members(task, "sgd", lrs=(1e-2, 1e4))
    got = train.execute_group(specs, task, DEVICE, "on")
    alone = [train.execute(spec, task, DEVICE) for spec in specs]
    assert [r.status for r in alone] == ["done", "diverged", "done"]
    for result, want in zip(got, alone):
        assert_alike(result, want, FLOAT32_RTOL, FLOAT32_ATOL, "tabular-mlp sgd")
    assert got[1].diverged_at_step is not None and got[1].final["final_test_metric"] is None


def test_steps_to_target_are_refined_per_member_as_alone():
    base = TASKS["friedman-mlp"]
    task = dataclasses.replace(base, steps=300, eval_every=50)
    specs = members(task, "adam", lrs=(3e-3, 1e-3), steps=300)
    alone = [train.execute(spec, task, DEVICE) for spec in specs]
    # a target between the members' metrics at 300 steps: reached by some, not by others
    finals = sorted(r.final["final_val_metric"] for r in alone)
    task = dataclasses.replace(task, target=(finals[0] + finals[1]) / 2 if finals[0] != finals[1]
                               else finals[0])
    alone = [train.execute(spec, task, DEVICE) for spec in specs]
    reached = [r.steps_to_target for r in alone]
    assert any(s is not None and s % task.eval_every for s in reached), reached  # refined
    got = train.execute_group(specs, task, DEVICE, "on")
    assert [r.steps_to_target for r in got] == reached


@pytest.mark.parametrize("name", ["diabetes-mlp", "friedman-mlp"])
def test_evaluating_some_members_gives_their_figures_and_nan_for_the_others(name):
    # diabetes' validation split is evaluated in one stacked call; friedman's 5,000 examples
    # member by member, each in two chunks (4,096 and 904)
    task = short(TASKS[name])
    group = stacked.Stacked(members(task, "adam"), task, DEVICE)
    for step in range(3):
        group.train_step(step)
    every = group.evaluate("val")
    some = group.evaluate("val", [2, 0])
    for want, got in zip(every, some):
        assert got[0] == pytest.approx(want[0], rel=1e-6) and got[2] == pytest.approx(want[2], rel=1e-6)
        assert math.isnan(got[1])
    assert all(math.isnan(v) for v in group.evaluate("val", [])[0])


class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x):
        return nn.functional.dropout(self.linear(x), 0.5, self.training)


def _regression(seed: int, model: nn.Module, offset: float = 0.0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g)
    y = x.sum(1, keepdim=True)
    splits = [(x[a:b], y[a:b]) for a, b in ((0, 24), (24, 32), (32, 40))]

    def mse(out, target):
        return ((out - target) ** 2).mean() + offset

    return Problem(model, *splits, loss=mse, metric=mse)


def _task(name: str, build) -> Task:
    return Task(name=name, task_type="regression", description="", build=build, metric="mse",
                higher_is_better=False, steps=10, batch_size=8, eval_every=5, lrs=(0.1,))


@pytest.mark.parametrize("build, reason, lasting", [
    (lambda seed, device: _regression(seed, _Noisy()), "vmap cannot batch", True),
    (lambda seed, device: _regression(seed, nn.Linear(3, 1), offset=float(seed)),
     "depends on the seed outside its model and data", False),
], ids=["random-in-training", "loss-depends-on-seed"])
def test_a_task_that_cannot_stack_exactly_trains_run_by_run_and_says_why(build, reason, lasting):
    builds = []

    def counted(seed, device):
        builds.append(seed)
        return build(seed, device)

    task = _task("odd", counted)
    specs = [RunSpec(task="odd", optimizer="sgd", lr=0.1, seed=s, steps=10, batch_size=8)
             for s in (0, 1)]
    for mode in ("on", "auto"):
        stacked._REFUSED.clear()
        reasons: list[str] = []
        got = train.execute_group(specs, task, DEVICE, mode, explain=reasons.append)
        assert [r.execution for r in got] == ["single", "single"]
        assert len(reasons) == 1 and reason in reasons[0], reasons
        assert [r.status for r in got] == ["done", "done"]
        # a model without a batching rule: this process does not build the task's next group
        # stacked (one build per run, not one per seed before them), and says why again; a
        # refusal that depends on the group is tried again
        builds.clear()
        again: list[str] = []
        got = train.execute_group(specs, task, DEVICE, mode, explain=again.append)
        assert [r.execution for r in got] == ["single", "single"] and again == reasons
        assert builds == ([0, 1] if lasting else [0, 1, 0, 1])


def test_a_refusal_that_depends_on_the_seeds_does_not_hold_for_other_seeds():
    # seed 1's loss is offset: a group with seed 1 cannot stack, a group of seeds 2 and 3 can
    task = _task("odd", lambda seed, device: _regression(seed, nn.Linear(3, 1),
                                                         offset=float(seed == 1)))

    def group(*seeds):
        return [RunSpec(task="odd", optimizer="sgd", lr=0.1, seed=s, steps=10, batch_size=8)
                for s in seeds]

    reasons: list[str] = []

    def execution(specs):
        return {r.execution for r in train.execute_group(specs, task, DEVICE, "on",
                                                         explain=reasons.append)}

    assert execution(group(0, 1)) == {"single"} and "seed 1" in reasons[0]
    assert execution(group(2, 3)) == {"vectorized"} and len(reasons) == 1


def test_memory_running_out_while_a_group_is_built_or_measured_trains_it_one_by_one(monkeypatch):
    task = short(TASKS["noisy-quadratic"])
    specs = members(task, "adam")
    try:  # what a CPU allocation that fails raises: a RuntimeError, not torch.OutOfMemoryError
        torch.empty(2**50)
    except RuntimeError as exc:
        cpu = exc
    assert stacked.out_of_memory(cpu) and stacked.out_of_memory(torch.OutOfMemoryError("x"))
    assert not stacked.out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    for where in ("Stacked", "faster"):
        with monkeypatch.context() as m:
            def fail(*args, **kwargs):
                raise cpu

            m.setattr(stacked, where, fail)
            reasons: list[str] = []
            got = train.execute_group(specs, task, DEVICE, "auto", explain=reasons.append)
            assert {r.execution for r in got} == {"single"} and {r.status for r in got} == {"done"}
            assert len(reasons) == 1 and "ran out of memory" in reasons[0]
            assert stacked._REFUSED == {}  # the next group may fit
    with monkeypatch.context() as m:  # any other error is the task's: it is not hidden
        def broken(*args, **kwargs):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

        m.setattr(stacked, "Stacked", broken)
        with pytest.raises(RuntimeError, match="mat1"):
            train.execute_group(specs, task, DEVICE, "auto")
    assert train.execute_group(specs, task, DEVICE, "on")[0].execution == "vectorized"


class _ModeAware(nn.Module):
    """Shifts its output by 1 in training mode only: trains differently in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x):
        return self.linear(x) + (1.0 if self.training else 0.0)


def test_members_train_in_training_mode_and_evaluate_in_eval_mode():
    task = _task("modes", lambda seed, device: _regression(seed, _ModeAware()))
    specs = [RunSpec(task="modes", optimizer="sgd", lr=0.1, seed=s, steps=10, batch_size=8)
             for s in (0, 1)]
    got = train.execute_group(specs, task, DEVICE, "on")
    assert {r.execution for r in got} == {"vectorized"}
    for spec, result in zip(specs, got):
        assert_alike(result, train.execute(spec, task, DEVICE), FLOAT32_RTOL, FLOAT32_ATOL, "modes")


def test_groups_of_different_settings_or_plugins_are_not_stacked():
    task = short(TASKS["tabular-mlp"])
    specs = members(task, "adam")
    assert stacked.compatible(specs) is None
    assert "differ in optimizer" in stacked.compatible([specs[0], dataclasses.replace(specs[1], optimizer="sgd")])
    assert "differ in steps" in stacked.compatible([specs[0], dataclasses.replace(specs[1], steps=5)])
    assert "settings" in stacked.compatible([specs[0], dataclasses.replace(specs[1], params={"eps": 1e-3})])
    plugin = [dataclasses.replace(s, optimizer="torch.optim:SGD") for s in specs]
    assert "no stacked update rule" in stacked.compatible(plugin)


def test_auto_stacks_only_where_the_measurement_says_it_is_faster(monkeypatch):
    task = short(TASKS["noisy-quadratic"])
    specs = members(task, "adam")
    for stacked_seconds, expected in ((1.0, "single"), (0.1, "vectorized")):
        stacked._DECIDED.clear()
        timed = []

        def seconds_per_step(members, alone, rounds, s=stacked_seconds):
            timed.append((type(members).__name__, type(alone).__name__, rounds))
            return s, 0.2

        monkeypatch.setattr(stacked, "_seconds_per_step", seconds_per_step)
        monkeypatch.setattr(stacked, "_seconds_per_evaluation", lambda members, alone: evaluations(0.0, 0.0))
        # stacked: 1.0 s for 3 runs vs 3 x 0.2 s alone -> one by one; 0.1 s -> stacked
        assert {r.execution for r in train.execute_group(specs, task, DEVICE, "auto")} == {expected}
        assert timed == [("Stacked", "Single", stacked.MEASURE_STEPS)]
        if expected == "single":  # decided: the next such group is not even built stacked
            with monkeypatch.context() as m:
                m.setattr(stacked, "Stacked", None)
                assert train.execute_group(specs, task, DEVICE, "auto")[0].execution == "single"
    assert train.execute_group(specs, task, DEVICE, "off")[0].execution == "single"
    stacked._DECIDED.clear()


def test_auto_counts_the_builds_one_by_one_would_repeat(monkeypatch):
    # per step, stacked 0.25 s for 3 runs vs 3 x 0.1 s alone: not 1.25x faster on the steps
    # alone; but one by one builds the task 3 times where the stacked pass builds it for 1 seed
    monkeypatch.setattr(stacked, "_seconds_per_step", lambda members, alone, rounds: (0.25, 0.1))
    monkeypatch.setattr(stacked, "_seconds_per_evaluation", lambda members, alone: evaluations(0.0, 0.0))
    base = short(TASKS["noisy-quadratic"])
    specs = members(base, "adam", seeds=(0, 0, 0))
    for pause, expected in ((0.0, "single"), (0.5, "vectorized")):
        def build(seed, device, pause=pause):
            time.sleep(pause)
            return base.build(seed, device)

        task = dataclasses.replace(base, build=build)
        stacked._DECIDED.clear()
        # 20 steps: 5 s stacked vs 6 s alone + 2 extra builds of `pause` s; stacked when
        # 5 <= 0.8 x (6 + 2 x pause), i.e. from pause = 0.125 s
        assert train.execute_group(specs, task, DEVICE, "auto")[0].execution == expected
    stacked._DECIDED.clear()


def test_auto_counts_the_evaluations_as_often_as_the_runs_evaluate(monkeypatch):
    # the steps stacked: 0.1 s for 3 runs vs 3 x 0.2 s alone, six times faster; but evaluating
    # a split costs `split` s stacked against 0.025 s for each run alone
    monkeypatch.setattr(stacked, "_seconds_per_step", lambda members, alone, rounds: (0.1, 0.2))
    task = short(TASKS["noisy-quadratic"])  # 20 steps, evaluated every 10: at 0, 10, 20, finals
    assert task.steps == 20 and task.eval_every == 10
    specs = members(task, "adam")
    for split, expected in ((1.0, "single"), (0.2, "vectorized")):
        monkeypatch.setattr(stacked, "_seconds_per_evaluation",
                            lambda members, alone, split=split: evaluations(split, 0.025))
        stacked._DECIDED.clear()
        # 3 points of 3 splits and 3 final splits: stacked 20 x 0.1 + 12 x split vs
        # 3 x (20 x 0.2 + 12 x 0.025) = 12.9 s (and a build of milliseconds), of which 0.8 is
        # 10.32: one by one at split = 1 (14 s), stacked at 0.2 (4.4 s); on the steps alone
        # (2 s vs 12 s) both would stack
        assert {r.execution for r in train.execute_group(specs, task, DEVICE, "auto")} == {expected}


@pytest.mark.parametrize("name", ["tabular-mlp", "skipgram"])
def test_a_group_auto_declines_trains_as_alone_on_the_problems_built_to_measure_it(monkeypatch, name):
    # auto measures (seed 0's problem trains a few steps alone and is restored), declines, and
    # the runs train one by one, the first run of each seed on the problem built for the
    # measurement: every result is the run's alone, bit for bit
    monkeypatch.setattr(stacked, "AUTO_MARGIN", 0.0)  # stacked only if it cost nothing
    base = short(TASKS[name])
    builds = []

    def build(seed, device):
        builds.append(seed)
        return base.build(seed, device)

    task = dataclasses.replace(base, build=build)
    specs = members(task, "adam")  # seeds 0, 0, 1
    got = train.execute_group(specs, task, DEVICE, "auto")
    assert builds == [0, 1, 0] and [r.execution for r in got] == ["single"] * 3
    timing = {"wall_seconds", "build_seconds"}
    for spec, result in zip(specs, got):
        want = train.execute(spec, task, DEVICE)
        assert len(result.curve) == len(want.curve)
        assert result.curve == [{**p, "elapsed": q["elapsed"]} for p, q in zip(want.curve, result.curve)]
        mine, theirs = dataclasses.asdict(result), dataclasses.asdict(want)
        assert {k: v for k, v in mine.items() if k not in timing | {"curve"}} == \
            {k: v for k, v in theirs.items() if k not in timing | {"curve"}}
        assert result.build_seconds > 0


@pytest.mark.parametrize("steps,eval_every", [(20, 10), (25, 10), (7, 10), (1, 1), (30, 7)])
def test_evaluation_points_are_those_the_training_loop_evaluates(monkeypatch, steps, eval_every):
    task = dataclasses.replace(TASKS["noisy-quadratic"], steps=steps, eval_every=eval_every,
                               target=None)
    spec = members(task, "sgd", steps=steps)[0]
    seen = []
    evaluate = train.Single.evaluate

    def counted(self, split, only=None):
        seen.append(split)
        return evaluate(self, split, only)

    monkeypatch.setattr(train.Single, "evaluate", counted)
    train.execute(spec, task, DEVICE)
    assert seen.count(train.TRAIN_FULL) == stacked.evaluation_points(steps, eval_every)
    assert seen.count("test") == stacked.evaluation_points(steps, eval_every) + 1  # the finals
    assert seen.count("train") == 1


@pytest.mark.parametrize("name", ["tabular-mlp", "diabetes-mlp"])
def test_the_evaluation_measurement_alternates_every_split_after_an_untimed_round(monkeypatch, name):
    # tabular-mlp's splits (8,192 examples and more) are evaluated member by member: timed for
    # one member, times the 3 members; diabetes-mlp's (under 300) in one stacked call: timed so
    task = short(TASKS[name])
    specs = members(task, "adam")
    group = stacked.Stacked(specs, task, DEVICE)
    alone = train.Single(specs[0], task, DEVICE)
    one_by_one = name == "tabular-mlp"
    splits = [train.TRAIN_FULL, "val", "test", "train"]
    assert [group.batched(s) for s in splits] == [not one_by_one] * 4
    calls, clock = [], [0.0]
    # a clock that each evaluation advances: 1 s a call stacked, 0.25 s alone
    monkeypatch.setattr(stacked.time, "perf_counter", lambda: clock[0])
    for who, method, cost in ((group, "evaluate", 1.0), (group, "evaluate_member", 1.0),
                              (alone, "evaluate", 0.25)):
        real = getattr(who, method)

        def timed(*args, real=real, method=method, cost=cost):
            calls.append((method, args))
            clock[0] += cost
            return real(*args)

        monkeypatch.setattr(who, method, timed)
    got = stacked._seconds_per_evaluation(group, alone, rounds=2)
    assert got == {s: ((3.0 if one_by_one else 1.0), 0.25) for s in splits}
    mine = ("evaluate_member", (0,)) if one_by_one else ("evaluate", ())
    assert calls == [c for _ in range(3) for s in splits
                     for c in ((mine[0], (s, *mine[1])), ("evaluate", (s,)))]


def test_the_measurement_alternates_the_same_work_and_leaves_both_as_they_were(monkeypatch):
    task = short(TASKS["tabular-mlp"])
    specs = members(task, "adam")
    group = stacked.Stacked(specs, task, DEVICE)
    alone = train.Single(specs[0], task, DEVICE)
    before, before_alone = group.state(), alone.state()
    calls, clock = [], [0.0]
    # a clock that each step advances: 1 s per stacked step, 0.25 s per step alone
    monkeypatch.setattr(stacked.time, "perf_counter", lambda: clock[0])
    for who, cost in ((group, 1.0), (alone, 0.25)):
        step = who.train_step

        def timed(k, step=step, who=who, cost=cost):
            calls.append((type(who).__name__, k))
            clock[0] += cost
            return step(k)

        monkeypatch.setattr(who, "train_step", timed)
    assert stacked._seconds_per_step(group, alone, 3) == (1.0, 0.25)
    # two untimed steps each, then per round one stacked step and as many alone as it holds
    n = len(specs)
    assert calls == [("Stacked", 0), ("Single", 0), ("Stacked", 1), ("Single", 1)] + [
        c for r in range(3) for c in [("Stacked", 2 + r)]
        + [("Single", 2 + r * n + j) for j in range(n)]]
    for (old, new), weights in (((before, group.state()), "params"),
                                ((before_alone, alone.state()), "model")):
        assert all(torch.equal(old[weights][k], new[weights][k]) for k in old[weights])
        assert old["order"][1] == new["order"][1]
        assert torch.equal(old["order"][0], new["order"][0])


def test_a_stop_request_interrupts_a_stacked_group():
    task = short(TASKS["tabular-mlp"])
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(train.Interrupted):
        train.execute_group(members(task, "adam"), task, DEVICE, "on", should_stop=should_stop)


def test_wall_seconds_are_each_members_share_and_the_build_is_apart():
    task = short(TASKS["tabular-mlp"])
    got = train.execute_group(members(task, "adam"), task, DEVICE, "on")
    assert all(r.build_seconds > 0 and r.wall_seconds > 0 for r in got)
    assert len({r.wall_seconds for r in got}) == 1
    assert all(math.isfinite(p["elapsed"]) for r in got for p in r.curve)
