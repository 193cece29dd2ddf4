"""Statistics for reports: pure functions from a runs DataFrame to summary DataFrames.

The input is one row per run (the columns `results.load` returns). Only runs whose status is
`done` or `diverged` are results; every function here drops the rest first. A diverged run is a
result with no metric: it counts as the worst outcome wherever runs are compared.

Every number here can be recomputed from `adaptbench export` output with pandas and scipy:
the t-interval is `scipy.stats.t.interval`, ties are exact equality, and nothing is random
unless a function takes a seed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import pandas as pd
from scipy import stats as sps

from adaptbench.errors import UserError

RESULT_STATUSES = ("done", "diverged")
SPLITS = ("train", "val", "test")

SUMMARY_COLUMNS = [
    "task", "task_type", "optimizer", "lr", "metric_name", "n", "diverged",
    "mean", "ci_low", "ci_high", "loss_mean", "loss_ci_low", "loss_ci_high",
]
SELECT_COLUMNS = ["task", "task_type", "optimizer", "lr", "val_mean", "n", "diverged"]
WIN_COLUMNS = ["task_type", "optimizer", "opponent", "win_rate", "tasks", "pairs"]


@dataclass(frozen=True)
class CI:
    """A mean with its confidence interval; `low`/`high` are NaN when there is no interval."""

    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _clean(values: Iterable[float]) -> np.ndarray:
    if not isinstance(values, (np.ndarray, pd.Series, list, tuple)):
        values = list(values)
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"Invalid confidence level: {confidence} (must be in (0, 1))")


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> CI:
    """Mean and Student-t confidence interval of the non-NaN values.

    mean ± t_{(1+c)/2, n-1} · s/√n with s the sample sd (ddof=1). With one value there is no
    interval (low/high NaN, sd NaN); with none everything is NaN.
    """
    _check_confidence(confidence)
    x = _clean(values)
    n = len(x)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n == 1:
        return CI(mean, math.nan, math.nan, 1, math.nan)
    sd = float(x.std(ddof=1))
    if sd == 0:  # all equal: the interval is the point itself, not NaN from 0/0 in scipy
        return CI(mean, mean, mean, n, 0.0)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return CI(mean, mean - half, mean + half, n, sd)


def bootstrap_ci(
    values: Iterable[float],
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> CI:
    """Mean and BCa bootstrap confidence interval of the non-NaN values (scipy.stats.bootstrap).

    Deterministic for a given seed. Fewer than two values give no interval; all-equal values
    give a zero-width one (BCa itself is undefined there).
    """
    _check_confidence(confidence)
    x = _clean(values)
    n = len(x)
    if n < 2 or float(x.std(ddof=1)) == 0:
        return mean_ci(x, confidence)
    rng_arg = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    result = sps.bootstrap(
        (x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
        method="BCa", vectorized=True, **{rng_arg: np.random.default_rng(seed)},
    )
    low, high = result.confidence_interval
    return CI(float(x.mean()), float(low), float(high), n, float(x.std(ddof=1)))


def results_only(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results (`done` or `diverged`); queued, failed, … runs are not."""
    return runs[runs["status"].isin(RESULT_STATUSES)]


def _check_split(metric: str) -> None:
    if metric not in SPLITS:
        raise ValueError(f"Invalid split: {metric!r} (choose from {', '.join(SPLITS)})")


def _check_unique(runs: pd.DataFrame) -> None:
    """Refuse several runs of one (task, optimizer, lr, seed): pooling them would be silent."""
    keys = ["task", "optimizer", "lr", "seed"]
    dup = runs[runs.duplicated(keys, keep=False)]
    if len(dup):
        row = dup.iloc[0]
        raise UserError(
            f"{int(dup.groupby(keys).ngroups)} (task, optimizer, lr, seed) combinations have "
            f"several runs, e.g. task={row['task']!r} optimizer={row['optimizer']!r} "
            f"lr={row['lr']:g} seed={int(row['seed'])} (they differ in study, params, schedule "
            f"or budget); filter the runs so that each has one"
        )


def _per_task(runs: pd.DataFrame, column: str) -> dict[str, object]:
    return runs.groupby("task", sort=False)[column].first().to_dict()


def summary(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Mean ± t-interval of the final metric and loss per (task, optimizer, lr), over seeds.

    `metric` picks the split ('train', 'val' or 'test'). `n` counts done runs with a finite
    metric, `diverged` the diverged runs; the loss interval uses the done runs with a finite
    loss. Rows are sorted by task, optimizer, lr.
    """
    _check_split(metric)
    res = results_only(runs)
    _check_unique(res)
    rows = []
    for (task, optimizer, lr), group in res.groupby(["task", "optimizer", "lr"], sort=True):
        done = group[group["status"] == "done"]
        value = mean_ci(done[f"final_{metric}_metric"])
        loss = mean_ci(done[f"final_{metric}_loss"])
        rows.append({
            "task": task, "task_type": group["task_type"].iloc[0], "optimizer": optimizer,
            "lr": float(lr), "metric_name": group["metric_name"].iloc[0], "n": value.n,
            "diverged": int((group["status"] == "diverged").sum()),
            "mean": value.mean, "ci_low": value.low, "ci_high": value.high,
            "loss_mean": loss.mean, "loss_ci_low": loss.low, "loss_ci_high": loss.high,
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _signed(values: pd.Series, higher_is_better: pd.Series) -> pd.Series:
    """Values oriented so that larger is better."""
    return values.where(higher_is_better.astype(bool), -values)


def select_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuned learning rate per (task, optimizer): best mean final validation metric.

    Diverged runs count as the worst possible value, so an lr with any diverged seed ranks below
    every lr without; among those, a smaller fraction diverged wins, then the better mean of
    the finite values, then the smaller lr. Done runs without a validation metric are ignored.
    Columns: task, task_type, optimizer, lr, val_mean (mean over the done runs), n (those
    runs), diverged (count at that lr).
    """
    res = results_only(runs)
    _check_unique(res)
    if res.empty:
        return pd.DataFrame(columns=SELECT_COLUMNS)
    done = res["status"] == "done"
    val = res["final_val_metric"].where(done)
    frame = res.assign(
        _val=val,
        _key=_signed(val, res["higher_is_better"]),
        _div=(~done).astype(float),
    )
    frame = frame[frame["_val"].notna() | ~done]
    grouped = frame.groupby(["task", "optimizer", "lr"], sort=True)
    per_lr = grouped.agg(
        task_type=("task_type", "first"),
        val_mean=("_val", "mean"),
        n=("_val", "count"),
        diverged=("_div", "sum"),
        div_frac=("_div", "mean"),
        key=("_key", "mean"),
    ).reset_index()
    per_lr = per_lr.sort_values(
        ["task", "optimizer", "div_frac", "key", "lr"],
        ascending=[True, True, True, False, True], na_position="last", kind="mergesort",
    )
    best = per_lr.groupby(["task", "optimizer"], sort=True).head(1)
    best = best.assign(n=best["n"].astype(int), diverged=best["diverged"].astype(int))
    return best[SELECT_COLUMNS].sort_values(["task", "optimizer"]).reset_index(drop=True)


def tuned_summary(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """`summary` restricted to the lr that `select_lr` picked for each (task, optimizer)."""
    chosen = select_lr(runs)[["task", "optimizer", "lr"]]
    return summary(runs, metric).merge(chosen, on=["task", "optimizer", "lr"])[SUMMARY_COLUMNS]


def tuned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The result runs at each (task, optimizer)'s tuned lr, with `score`: test metric
    oriented so larger is better, -inf for a diverged run, NaN for a done run without one."""
    res = results_only(runs)
    chosen = select_lr(res)[["task", "optimizer", "lr"]]
    at = res.merge(chosen, on=["task", "optimizer", "lr"])
    score = _signed(at["final_test_metric"].astype(float), at["higher_is_better"])
    score = score.where(at["status"] == "done", -np.inf)
    return at.assign(score=score)


def _task_scores(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per task, a seed × optimizer table of `tuned_runs` scores (NaN: no run for that seed)."""
    at = tuned_runs(runs)
    at = at[at["score"].notna()]
    return {
        task: group.pivot(index="seed", columns="optimizer", values="score")
        for task, group in at.groupby("task", sort=True)
    }


def pairwise_task_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and ordered pair of optimizers: win rate over the seeds both have.

    win 1, tie ½ (exact equality; two diverged runs tie), loss 0; a diverged run loses to a
    run that did not diverge. Columns: task, task_type, optimizer, opponent, win_rate, pairs.
    """
    task_type = _per_task(results_only(runs), "task_type")
    rows = []
    for task, table in _task_scores(runs).items():
        for a, b in permutations(table.columns, 2):
            both = table[[a, b]].dropna()
            if both.empty:
                continue
            sa, sb = both[a].to_numpy(), both[b].to_numpy()
            scores = (sa > sb) + 0.5 * (sa == sb)
            rows.append({
                "task": task, "task_type": task_type[task], "optimizer": a, "opponent": b,
                "win_rate": float(scores.mean()), "pairs": len(both),
            })
    return pd.DataFrame(
        rows, columns=["task", "task_type", "optimizer", "opponent", "win_rate", "pairs"]
    )


def win_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired win rate of each optimizer over each other, per task type, at tuned lrs.

    Runs pair by (task, seed) at each optimizer's `select_lr` choice; the per-task rate is the
    mean over the seeds both have, the task-type rate the unweighted mean over tasks. Pairs with
    no common seed in a task type are left out. Columns: task_type, optimizer, opponent,
    win_rate, tasks (tasks that contributed), pairs (paired seeds over those tasks).
    """
    per_task = pairwise_task_rates(runs)
    if per_task.empty:
        return pd.DataFrame(columns=WIN_COLUMNS)
    out = per_task.groupby(["task_type", "optimizer", "opponent"], sort=True).agg(
        win_rate=("win_rate", "mean"), tasks=("task", "nunique"), pairs=("pairs", "sum"),
    )
    return out.reset_index()[WIN_COLUMNS]


def win_matrix(rates: pd.DataFrame, task_type: str) -> pd.DataFrame:
    """One task type of `win_rates` as a matrix: rows optimizer, columns opponent, NaN diagonal."""
    part = rates[rates["task_type"] == task_type]
    names = sorted(set(part["optimizer"]) | set(part["opponent"]))
    matrix = part.pivot(index="optimizer", columns="opponent", values="win_rate")
    matrix = matrix.reindex(index=names, columns=names).astype(float)
    matrix.index.name, matrix.columns.name = "optimizer", "opponent"
    return matrix
