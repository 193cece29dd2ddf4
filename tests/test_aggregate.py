"""Tests for adaptbench.aggregate against rliable (Agarwal et al. 2021), on fixed data.

What is compared, and how closely:
- Point estimates (IQM, mean over tasks, probability of improvement) are the same arithmetic as
  rliable's (`rliable.metrics`), so they must agree to 1e-12.
- Intervals: rliable's `get_interval_estimates` (StratifiedBootstrap, StratifiedIndependent-
  Bootstrap; percentile method) draws its resamples from numpy's global RandomState, ours from a
  seeded Generator, so the two are independent Monte Carlo estimates of the same bootstrap
  quantiles. A quantile q estimated from B resamples has a standard error of about
  sqrt(q(1 - q)/B) / f(q); for a roughly normal bootstrap distribution, at q = 2.5% that is
  0.68/sqrt(B) of the 95% interval's width. Each bound may therefore differ by up to
  TOLERANCE_SE = 5 standard errors of the difference, 5 · 0.68 · sqrt(1/B_rliable + 1/B_ours)
  of the width: 3.7% of it with 10,000 rliable resamples against our 50,000, 11% with 1,000
  (rliable's probability-of-improvement bootstrap calls scipy's Mann–Whitney test per task in a
  Python loop: 1,000 resamples take it 3 s or more). A bug of substance (resampling tasks when it should not,
  or pooling seeds across tasks) moves a bound by far more: the seeds-only and seeds-and-tasks
  intervals on this data differ by over 400% of the narrower one's width.
- rliable 1.2.0 needs arch < 8, and arch 7.2 calls pandas' private `deprecate_kwarg` with the
  pandas 2 signature; `rliable_modules` adapts that call while rliable loads (nothing else).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from adaptbench import aggregate as ag
from adaptbench import inference

OURS = 50_000
TOLERANCE_SE = 5
OPTIMIZERS = (("adam", 0.02), ("sgd", 0.0), ("rmsprop", -0.01))


def fixed_scores() -> dict[str, np.ndarray]:
    """3 optimizers x 6 tasks x 10 seeds: task levels U(0.5, 0.9), shifts +0.02 / 0 / -0.01,
    seed noise N(0, 0.05²), all from numpy's default_rng(0) in this order."""
    rng = np.random.default_rng(0)
    level = rng.uniform(0.5, 0.9, size=6)
    return {name: level + shift + rng.normal(0, 0.05, size=(10, 6)) for name, shift in OPTIMIZERS}


@pytest.fixture(scope="module")
def rliable_modules():
    pytest.importorskip("rliable")
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg
    takes_class_first = next(iter(inspect.signature(original).parameters)) == "klass"

    def pandas2_signature(*args, **kwargs):
        if takes_class_first and args and isinstance(args[0], str):
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    decorators.deprecate_kwarg = pandas2_signature
    try:
        from rliable import library, metrics
    finally:
        decorators.deprecate_kwarg = original
    return library, metrics


def rliable_interval(library, data, func, reps: int, task_bootstrap: bool = False):
    state = np.random.get_state()
    np.random.seed(1)  # rliable resamples from numpy's global generator
    try:
        _, ci = library.get_interval_estimates({"x": data}, func, reps=reps,
                                               task_bootstrap=task_bootstrap)
    finally:
        np.random.set_state(state)
    return float(ci["x"][0, 0]), float(ci["x"][1, 0])


def assert_close_interval(ours: ag.Interval, ref: tuple[float, float], reps: int):
    width = ref[1] - ref[0]
    tolerance = TOLERANCE_SE * 0.68 * math.sqrt(1 / reps + 1 / OURS) * width
    assert abs(ours.low - ref[0]) <= tolerance, (ours, ref, tolerance)
    assert abs(ours.high - ref[1]) <= tolerance, (ours, ref, tolerance)


def test_point_estimates_equal_rliables(rliable_modules):
    _, metrics = rliable_modules
    scores = fixed_scores()
    for x in scores.values():
        assert ag.iqm(x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
        assert ag.mean_over_tasks(x) == pytest.approx(metrics.aggregate_mean(x), abs=1e-12)
    for a in scores:
        for b in scores:
            assert ag.probability_of_improvement(scores[a], scores[b]) == pytest.approx(
                metrics.probability_of_improvement(scores[a], scores[b]), abs=1e-12)
    # Different numbers of runs, and ties (scores on a grid of 0.1).
    rng = np.random.default_rng(2)
    x, y = np.round(rng.uniform(size=(7, 4)), 1), np.round(rng.uniform(size=(4, 4)), 1)
    assert ag.probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-12)
    assert ag.iqm(x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)


@pytest.mark.parametrize("task_bootstrap", [False, True])
@pytest.mark.parametrize("name", ["iqm", "mean_over_tasks"])
def test_stratified_intervals_match_rliables(rliable_modules, name, task_bootstrap):
    library, metrics = rliable_modules
    theirs = {"iqm": metrics.aggregate_iqm, "mean_over_tasks": metrics.aggregate_mean}[name]
    x = fixed_scores()["adam"]
    ref = rliable_interval(library, x, lambda s: np.array([theirs(s)]), 10_000, task_bootstrap)
    ours = ag.stratified_bootstrap_ci(x, getattr(ag, name), n_resamples=OURS,
                                      task_bootstrap=task_bootstrap)
    assert ours.resampled == (ag.SEEDS_AND_TASKS if task_bootstrap else ag.SEEDS)
    assert ours.tasks == 6 and ours.reason == ""
    assert ours.estimate == pytest.approx(theirs(x), abs=1e-12)
    assert_close_interval(ours, ref, 10_000)


@pytest.mark.parametrize("task_bootstrap", [False, True])
def test_batched_mean_intervals_match_rliables(rliable_modules, task_bootstrap):
    # the count-weighted batch that reports use, every optimizer of the fixed data at once
    library, metrics = rliable_modules
    scores = fixed_scores()
    names = [name for name, _ in OPTIMIZERS]
    per_task = [np.stack([scores[n][:, t] for n in names]) for t in range(6)]
    est, low, high, resampled = ag.mean_intervals(per_task, n_resamples=OURS,
                                                  task_bootstrap=task_bootstrap)
    assert resampled == (ag.SEEDS_AND_TASKS if task_bootstrap else ag.SEEDS)
    for i, name in enumerate(names):
        ref = rliable_interval(library, scores[name], lambda s: np.array([metrics.aggregate_mean(s)]),
                               10_000, task_bootstrap)
        assert est[i] == pytest.approx(metrics.aggregate_mean(scores[name]), abs=1e-12)
        assert_close_interval(ag.Interval(est[i], low[i], high[i], 6, resampled, ""), ref, 10_000)


def test_batched_iqm_intervals_match_scipys_percentile_bootstrap():
    from scipy import stats as sps

    rows = np.random.default_rng(4).normal(size=(3, 12))
    est, low, high = ag.iqm_intervals(rows, n_resamples=OURS)
    for i, row in enumerate(rows):
        ref = sps.bootstrap((row,), lambda x, axis: sps.trim_mean(x, 0.25, axis=axis),
                            method="percentile", n_resamples=20_000,
                            rng=np.random.default_rng(1)).confidence_interval
        assert est[i] == pytest.approx(sps.trim_mean(row, 0.25), abs=1e-12)
        width = ref.high - ref.low
        se = TOLERANCE_SE * 0.68 * math.sqrt(1 / 20_000 + 1 / OURS) * width
        assert abs(low[i] - ref.low) <= se and abs(high[i] - ref.high) <= se


def test_probability_of_improvement_interval_matches_rliables(rliable_modules):
    library, metrics = rliable_modules
    scores = fixed_scores()
    x, y = scores["adam"], scores["sgd"]
    ref = rliable_interval(library, [x, y],
                           lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
                           1_000)
    ours = ag.stratified_bootstrap_ci((x, y), ag.probability_of_improvement, n_resamples=OURS,
                                      task_bootstrap=False)
    assert ours.estimate == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    assert_close_interval(ours, ref, 1_000)


def test_two_samples_share_the_task_draws():
    # Every run of task j scores j in both samples: if x and y drew different tasks, the means
    # of their resampled task ids would differ in some resample.
    x = np.tile(np.arange(6.0), (5, 1))
    y = np.tile(np.arange(6.0), (3, 1))

    def gap(a, b):
        return np.abs(ag.mean_over_tasks(a) - ag.mean_over_tasks(b))

    seen = []

    def spread(a, b):
        seen.append(np.ptp(ag.mean_over_tasks(a)))
        return gap(a, b)

    ours = ag.stratified_bootstrap_ci((x, y), spread, n_resamples=500, task_bootstrap=True)
    assert ours.resampled == ag.SEEDS_AND_TASKS
    assert (ours.low, ours.high) == (0.0, 0.0)
    assert seen[-1] > 0  # the tasks were resampled


def test_paired_win_values_per_task_with_different_seed_counts():
    # Per task, the paired win (1), tie (½) or loss (0) of A against B on each common seed.
    wins = [np.array([1.0, 1.0, 0.5]), np.array([0.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0]),
            np.array([0.5]), np.array([1.0, 0.0, 1.0, 1.0, 1.0]), np.array([1.0, 1.0])]
    rate = np.mean([w.mean() for w in wins])
    counts = []

    def counting(a):
        counts.append(np.sum(~np.isnan(a), axis=-2))
        return ag.mean_over_tasks(a)

    seeds = ag.stratified_bootstrap_ci(wins, counting, n_resamples=2000, task_bootstrap=False)
    assert seeds.estimate == pytest.approx(rate) and seeds.resampled == ag.SEEDS
    assert seeds.low < rate < seeds.high
    assert (counts[-1] == [3, 2, 4, 1, 5, 2]).all()  # each task keeps its own number of seeds
    both = ag.stratified_bootstrap_ci(wins, ag.mean_over_tasks, n_resamples=2000)
    assert both.resampled == ag.SEEDS_AND_TASKS
    assert both.high - both.low > seeds.high - seeds.low
    again = ag.stratified_bootstrap_ci(wins, ag.mean_over_tasks, n_resamples=2000)
    assert again == both  # deterministic for a seed
    assert ag.stratified_bootstrap_ci(wins, ag.mean_over_tasks, n_resamples=2000, seed=1) != both


def test_fewer_than_five_tasks_resample_seeds_only_and_say_so():
    x = np.random.default_rng(0).normal(size=(10, ag.MIN_TASKS_FOR_TASK_BOOTSTRAP - 1))
    asked = ag.stratified_bootstrap_ci(x, ag.mean_over_tasks, n_resamples=1000)
    seeds = ag.stratified_bootstrap_ci(x, ag.mean_over_tasks, n_resamples=1000,
                                       task_bootstrap=False)
    assert asked.resampled == ag.SEEDS and "fewer than 5" in asked.reason
    assert (asked.low, asked.high) == (seeds.low, seeds.high) and seeds.reason == ""
    five = np.random.default_rng(0).normal(size=(10, ag.MIN_TASKS_FOR_TASK_BOOTSTRAP))
    assert ag.stratified_bootstrap_ci(five, ag.mean_over_tasks).resampled == ag.SEEDS_AND_TASKS


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one run"):
        ag.stratified_bootstrap_ci([np.array([1.0]), np.array([])], ag.mean_over_tasks)
    with pytest.raises(ValueError, match="confidence"):
        ag.stratified_bootstrap_ci(np.ones((3, 2)), ag.mean_over_tasks, confidence=95)
    with pytest.raises(ValueError, match="tasks"):
        ag.stratified_bootstrap_ci((np.ones((3, 2)), np.ones((3, 3))),
                                   ag.probability_of_improvement)


def test_stratified_interval_covers_with_two_tasks_where_tasks_alone_cannot():
    # Two tasks with the same true mean, 10 seeds each, seed noise N(0, 1). The seeds-only
    # stratified interval covers the mean of the two tasks' true means near the nominal 95%
    # (a percentile bootstrap of a mean of 20 values runs a little short of it: about 93%, from
    # the n/(n-1) shrinkage of each task's bootstrap variance and normal instead of t tails);
    # a bootstrap over the two task means alone returns their range, which covers it half of
    # the time. 1,000 trials: a Monte Carlo standard error of 0.7 points at 95%.
    rng = np.random.default_rng(11)
    trials, truth = 1000, 0.0
    stratified = tasks_only = 0
    for _ in range(trials):
        x = rng.normal(truth, 1.0, size=(10, 2))
        ci = ag.stratified_bootstrap_ci(x, ag.mean_over_tasks, n_resamples=1000,
                                        seed=int(rng.integers(1 << 31)))
        stratified += ci.low <= truth <= ci.high
        low, high = inference.percentile_bootstrap(x.mean(axis=0)[None], n_resamples=1000)
        tasks_only += low[0] <= truth <= high[0]
    assert 0.89 <= stratified / trials <= 0.97
    assert 0.40 <= tasks_only / trials <= 0.60


@pytest.mark.parametrize("task_bootstrap", [False, True])
def test_batched_improvement_intervals_match_the_per_pair_bootstrap(task_bootstrap):
    # the count-weighted batch (U = c_x · W · c_y) against `stratified_bootstrap_ci`, which the
    # test above checks against rliable; both random streams at OURS resamples
    scores = fixed_scores()
    names = [name for name, _ in OPTIMIZERS]
    samples = [[scores[n][:, t] for t in range(6)] for n in names]
    pairs = [(0, 1), (0, 2), (1, 2)]
    est, low, high, resampled = ag.improvement_intervals(samples, pairs, n_resamples=OURS,
                                                         task_bootstrap=task_bootstrap)
    for p, (a, b) in enumerate(pairs):
        ref = ag.stratified_bootstrap_ci((scores[names[a]], scores[names[b]]),
                                         ag.probability_of_improvement, n_resamples=OURS,
                                         task_bootstrap=task_bootstrap)
        assert resampled == ref.resampled and est[p] == pytest.approx(ref.estimate, abs=1e-12)
        assert_close_interval(ag.Interval(est[p], low[p], high[p], 6, resampled, ""),
                              (ref.low, ref.high), OURS)
