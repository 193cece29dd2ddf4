"""Aggregate scores over tasks and seeds, with stratified bootstrap intervals, as rliable does.

Agarwal et al. (2021), "Deep reinforcement learning at the edge of the statistical precipice"
(NeurIPS; the `rliable` package): the interquartile mean of all runs, the probability of
improvement, and percentile intervals from a bootstrap that resamples runs (seeds) within each
task, so that a task never stands in for another, and optionally the tasks as well.

Scores are arrays of shape (..., runs, tasks): one column per task, one row per run, larger is
better; any leading axes are a batch (the bootstrap passes (resamples, runs, tasks)). NaN marks
a missing run, so tasks may have different numbers of runs (`per_task_matrix` pads them).
Every function here needs only numpy; the tests check them against rliable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_TASKS_FOR_TASK_BOOTSTRAP = 5
SEEDS = "seeds"
SEEDS_AND_TASKS = "seeds and tasks"
N_RESAMPLES = 9999

Scores = np.ndarray | Sequence[np.ndarray]  # (runs, tasks) matrix, or one 1-D array per task


@dataclass(frozen=True)
class Interval:
    """A statistic over tasks with its bootstrap interval, and what the bootstrap resampled.

    `resampled` is "seeds" (runs within each task; the tasks are taken as fixed) or "seeds and
    tasks" (also the tasks, as draws from a population of tasks). `reason` says why tasks were
    not resampled when that was asked for; it is empty otherwise.
    """

    estimate: float
    low: float
    high: float
    tasks: int
    resampled: str
    reason: str = ""


def per_task_matrix(per_task: Sequence[np.ndarray]) -> np.ndarray:
    """One 1-D array of run scores per task as a (runs, tasks) matrix, NaN below a task's runs."""
    columns = [np.asarray(v, dtype=float).ravel() for v in per_task]
    columns = [c[~np.isnan(c)] for c in columns]
    out = np.full((max((len(c) for c in columns), default=0), len(columns)), np.nan)
    for j, c in enumerate(columns):
        out[:len(c), j] = c
    return out


def _matrix(scores: Scores) -> np.ndarray:
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        return per_task_matrix(list(scores.T.astype(float)))  # missing (NaN) runs moved last
    if isinstance(scores, np.ndarray):
        raise ValueError(f"Invalid scores: expected a (runs, tasks) matrix, got shape {scores.shape}")
    return per_task_matrix(scores)


def iqm(scores: np.ndarray) -> np.ndarray | float:
    """Interquartile mean of all runs of all tasks, pooled (`rliable.metrics.aggregate_iqm`:
    `scipy.stats.trim_mean(scores, 0.25, axis=None)`): the mean of the middle half, after
    dropping floor(m/4) of the m scores at each end. Over the last two axes; NaN is ignored."""
    a = np.asarray(scores, dtype=float)
    flat = np.sort(a.reshape(a.shape[:-2] + (-1,)), axis=-1)  # NaN sorts last
    m = np.sum(~np.isnan(flat), axis=-1)
    cut = m // 4
    k = np.arange(flat.shape[-1])
    keep = (k >= cut[..., None]) & (k < (m - cut)[..., None])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(keep, flat, 0.0).sum(axis=-1) / (m - 2 * cut)
    return float(out) if out.ndim == 0 else out


def mean_over_tasks(scores: np.ndarray) -> np.ndarray | float:
    """Mean over tasks of each task's mean over its runs: tasks weigh equally whatever their
    number of runs (`rliable.metrics.aggregate_mean` when no run is missing). With paired
    win values (1 win, ½ tie, 0 loss of A against B on a common seed) this is A's win rate."""
    a = np.asarray(scores, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        task_means = np.nansum(a, axis=-2) / np.sum(~np.isnan(a), axis=-2)
    out = task_means.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """P(X > Y) averaged over tasks (`rliable.metrics.probability_of_improvement`).

    Per task: the Mann–Whitney U statistic of X's runs against Y's, #(x > y) + ½ #(x = y) over
    all pairs of runs, divided by n_x · n_y; then the mean over tasks, which weigh equally.
    x is (..., runs_x, tasks), y (..., runs_y, tasks); the run counts may differ.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"Invalid scores: {x.shape[-1]} tasks against {y.shape[-1]}")
    u = np.zeros(np.broadcast_shapes(x.shape[:-2], y.shape[:-2]) + x.shape[-1:])
    for i in range(x.shape[-2]):  # one run of x at a time: memory stays that of y
        xi = x[..., i, None, :]
        u += np.sum(xi > y, axis=-2) + 0.5 * np.sum(xi == y, axis=-2)  # NaN compares False
    pairs = np.sum(~np.isnan(x), axis=-2) * np.sum(~np.isnan(y), axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (u / pairs).mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def _resampled(
    matrix: np.ndarray, runs: np.ndarray, tasks: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, runs, tasks): in slot j of resample b, runs drawn with replacement from task
    tasks[b, j]'s own runs, as many as it has (NaN after them)."""
    n = runs[tasks][:, None, :]  # (resamples, 1, tasks)
    shape = (tasks.shape[0], matrix.shape[0], tasks.shape[1])
    draws = np.minimum((rng.random(shape) * n).astype(np.intp), n - 1)
    values = matrix[draws, tasks[:, None, :]]
    return np.where(np.arange(matrix.shape[0])[None, :, None] < n, values, np.nan)


def stratified_bootstrap_ci(
    data: Scores | tuple[Scores, ...],
    statistic: Callable[..., np.ndarray | float],
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    task_bootstrap: bool = True,
) -> Interval:
    """Percentile interval of a statistic over tasks, from a stratified bootstrap
    (rliable's `StratifiedBootstrap` / `get_interval_estimates`, method 'percentile').

    `data` is one sample, a (runs, tasks) matrix or a list of one 1-D array of run scores per
    task (counts may differ), or a tuple of such samples for a statistic of several (as
    `probability_of_improvement(x, y)`), all over the same tasks. `statistic(*samples)` must
    accept arrays with a leading resample axis, (resamples, runs, tasks), NaN for no run, and
    return one value per resample: `iqm`, `mean_over_tasks` and `probability_of_improvement`
    do.

    Each resample draws, within every task, as many runs as the task has, with replacement;
    each sample independently (X's and Y's runs are not paired). With `task_bootstrap` the
    tasks are resampled too, with replacement, the same task draws for every sample, and each
    drawn task has its runs drawn afresh: the interval then speaks for tasks like these, not
    only for these tasks. That needs tasks to draw from: with fewer than
    `MIN_TASKS_FOR_TASK_BOOTSTRAP` (5) tasks only the runs are resampled and `reason` says so
    (with 2 tasks a bootstrap over tasks can only return their range).

    The interval is the (1 ± confidence)/2 quantiles of the resampled statistics (linear
    interpolation). Deterministic for a given seed; memory about n_resamples × runs × tasks
    floats per sample.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"Invalid confidence level: {confidence} (must be in (0, 1))")
    if n_resamples < 1:
        raise ValueError(f"Invalid number of resamples: {n_resamples}")
    samples = [_matrix(s) for s in (data if isinstance(data, tuple) else (data,))]
    n_tasks = samples[0].shape[1]
    if any(s.shape[1] != n_tasks for s in samples):
        raise ValueError("Invalid data: the samples cover different numbers of tasks")
    runs = [np.sum(~np.isnan(s), axis=0) for s in samples]
    if n_tasks == 0 or any((r == 0).any() for r in runs):
        raise ValueError("Invalid data: every task needs at least one run")
    estimate = float(statistic(*samples))
    resample_tasks = task_bootstrap and n_tasks >= MIN_TASKS_FOR_TASK_BOOTSTRAP
    reason = ""
    if task_bootstrap and not resample_tasks:
        reason = (f"{n_tasks} task{'s' if n_tasks != 1 else ''}, fewer than "
                  f"{MIN_TASKS_FOR_TASK_BOOTSTRAP}: only the seeds were resampled")
    rng = np.random.default_rng(seed)
    if resample_tasks:
        tasks = rng.integers(0, n_tasks, (n_resamples, n_tasks))
    else:
        tasks = np.broadcast_to(np.arange(n_tasks), (n_resamples, n_tasks))
    resampled = [_resampled(s, r, tasks, rng) for s, r in zip(samples, runs)]
    values = np.asarray(statistic(*resampled), dtype=float)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha]) if not np.isnan(values).any() else (
        math.nan, math.nan)
    return Interval(estimate, float(low), float(high), n_tasks,
                    SEEDS_AND_TASKS if resample_tasks else SEEDS, reason)


def _counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """How often each of n items is drawn in each of the resamples of n draws: (resamples, n)."""
    draws = rng.integers(0, n, (n_resamples, n))
    flat = (draws + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def mean_intervals(
    per_task: Sequence[np.ndarray], confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
    seed: int = 0, task_bootstrap: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """`stratified_bootstrap_ci(..., mean_over_tasks)` for many groups at once that share their
    tasks and per-task run counts: `per_task[t]` is a (groups, runs_t) array of task t's values.

    The same resampling scheme (runs within each task; tasks too from 5 tasks up, each drawn
    task with runs drawn afresh), computed as count-weighted sums (a resample's mean is counts ·
    values / n), so that all groups and resamples cost a few matrix products; another random
    stream than `stratified_bootstrap_ci`, so the bounds agree within Monte Carlo error.
    Returns (estimate, low, high) per group and what was resampled.
    """
    tasks = len(per_task)
    values = [np.asarray(v, dtype=float) for v in per_task]
    estimate = np.mean([v.mean(axis=1) for v in values], axis=0)
    rng = np.random.default_rng(seed)
    if task_bootstrap and tasks >= MIN_TASKS_FOR_TASK_BOOTSTRAP:
        picks = rng.integers(0, tasks, (n_resamples, tasks))
        total = np.zeros((len(estimate), n_resamples))
        flat = picks.ravel()
        order = np.argsort(flat, kind="stable")
        ends = np.cumsum(np.bincount(flat, minlength=tasks))
        for t in range(tasks):  # every time task t was drawn, in any slot of any resample
            drawn_in = order[(ends[t - 1] if t else 0):ends[t]] // tasks
            if len(drawn_in):
                n = values[t].shape[1]
                means = values[t] @ _counts(rng, n, len(drawn_in)).T / n  # (groups, draws)
                for g in range(len(estimate)):
                    total[g] += np.bincount(drawn_in, weights=means[g], minlength=n_resamples)
        resampled, stats = SEEDS_AND_TASKS, total / tasks
    else:
        stats = sum(v @ _counts(rng, v.shape[1], n_resamples).T / v.shape[1] for v in values) / tasks
        resampled = SEEDS
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha], axis=1)
    return estimate, low, high, resampled


def iqm_intervals(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interquartile mean of each row of a (groups, n) array, with a percentile bootstrap
    interval over its values (`stratified_bootstrap_ci(row[:, None], iqm, task_bootstrap=False)`
    in another random stream).

    With the row sorted, a resample that draws value i c_i times holds it at sorted positions
    [C_{i-1}, C_i) (C the running count), so its weight in the trimmed mean is the overlap of
    that range with the kept positions [n//4, n - n//4): the weights depend on the counts alone,
    and every row's resampled IQMs are one matrix product.
    """
    x = np.sort(np.asarray(values, dtype=float), axis=1)
    n = x.shape[1]
    cut = n // 4
    estimate = x[:, cut:n - cut].mean(axis=1)
    counts = _counts(np.random.default_rng(seed), n, n_resamples)
    upper = np.cumsum(counts, axis=1)
    lower = upper - counts
    weights = np.clip(np.minimum(upper, n - cut) - np.maximum(lower, cut), 0, None)
    stats = x @ weights.T / (n - 2 * cut)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha], axis=1)
    return estimate, low, high


def improvement_intervals(
    samples: Sequence[Sequence[np.ndarray]], pairs: Sequence[tuple[int, int]],
    confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0,
    task_bootstrap: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """`stratified_bootstrap_ci((x, y), probability_of_improvement)` for many pairs at once.

    `samples[k][t]` holds the run scores of contender k on task t (every contender over the same
    tasks); `pairs` lists (x, y) contender indices. The same resampling scheme as
    `stratified_bootstrap_ci` (each contender's runs within each task, independently; the tasks
    too from 5 tasks up, each drawn task with runs drawn afresh), computed from counts: with W
    the task's comparison matrix (1 where x_i > y_j, ½ where equal), a resample that draws x's
    runs c_x times and y's c_y times has U = c_x · W · c_y. Another random stream than
    `stratified_bootstrap_ci`. Returns (estimate, low, high) per pair and what was resampled.
    """
    tasks = len(samples[0])
    comparisons = [[(np.greater.outer(samples[a][t], samples[b][t])
                     + 0.5 * np.equal.outer(samples[a][t], samples[b][t])).astype(float)
                    for t in range(tasks)] for a, b in pairs]
    estimate = np.array([np.mean([w.mean() for w in per_task]) for per_task in comparisons])
    rng = np.random.default_rng(seed)
    used = sorted({k for pair in pairs for k in pair})

    def add(total: np.ndarray, rows: Any, t: int, count: int) -> None:
        counts = {k: _counts(rng, len(samples[k][t]), count) for k in used}
        for p, (a, b) in enumerate(pairs):
            w = comparisons[p][t]
            total[p, rows] += ((counts[a] @ w) * counts[b]).sum(axis=1) / w.size

    total = np.zeros((len(pairs), n_resamples))
    if task_bootstrap and tasks >= MIN_TASKS_FOR_TASK_BOOTSTRAP:
        picks = rng.integers(0, tasks, (n_resamples, tasks))
        for slot in range(tasks):
            for t in range(tasks):
                rows = np.flatnonzero(picks[:, slot] == t)
                if len(rows):
                    add(total, rows, t, len(rows))
        resampled = SEEDS_AND_TASKS
    else:
        for t in range(tasks):
            add(total, slice(None), t, n_resamples)
        resampled = SEEDS
    alpha = (1 - confidence) / 2
    low, high = np.quantile(total / tasks, [alpha, 1 - alpha], axis=1)
    return estimate, low, high, resampled
