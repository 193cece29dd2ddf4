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

# Output schemas (column -> dtype), so that empty results keep their types and merge cleanly.
_S, _F, _I = object, float, int
SUMMARY_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "metric_name": _S, "n": _I,
    "diverged": _I, "mean": _F, "ci_low": _F, "ci_high": _F, "loss_mean": _F,
    "loss_ci_low": _F, "loss_ci_high": _F,
}
SELECT_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "val_mean": _F, "n": _I,
    "diverged": _I,
}
TASK_RATE_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "opponent": _S, "win_rate": _F, "pairs": _I,
}
WIN_SCHEMA = {
    "task_type": _S, "optimizer": _S, "opponent": _S, "win_rate": _F, "tasks": _I, "pairs": _I,
}
RANK_SCHEMA = {"task_type": _S, "task": _S, "optimizer": _S, "rank": _F, "seeds": _I}
FRIEDMAN_SCHEMA = {
    "task_type": _S, "optimizers": _I, "tasks": _I, "statistic": _F, "p_value": _F,
}
PAIRWISE_SCHEMA = {
    "task_type": _S, "optimizer": _S, "opponent": _S, "tasks": _I, "win_rate": _F,
    "statistic": _F, "p_value": _F, "p_holm": _F,
}
RATIO_SCHEMA = {"task_type": _S, "task": _S, "optimizer": _S, "cost": _F, "ratio": _F}
PROFILE_SCHEMA = {"task_type": _S, "optimizer": _S, "tau": _F, "fraction": _F}
SUMMARY_COLUMNS = list(SUMMARY_SCHEMA)
SELECT_COLUMNS = list(SELECT_SCHEMA)
WIN_COLUMNS = list(WIN_SCHEMA)


def _table(rows: list[dict] | pd.DataFrame, schema: dict[str, type]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the schema's columns, in order, and dtypes."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=list(schema))
    return df[list(schema)].astype(schema).reset_index(drop=True)


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
    return _table(rows, SUMMARY_SCHEMA)


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
        return _table([], SELECT_SCHEMA)
    done = res["status"] == "done"
    val = res["final_val_metric"].astype(float).where(done)
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
    return _table(best.sort_values(["task", "optimizer"]), SELECT_SCHEMA)


def tuned_summary(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """`summary` restricted to the lr that `select_lr` picked for each (task, optimizer)."""
    chosen = select_lr(runs)[["task", "optimizer", "lr"]]
    return _table(summary(runs, metric).merge(chosen, on=["task", "optimizer", "lr"]),
                  SUMMARY_SCHEMA)


def tuned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The result runs at each (task, optimizer)'s tuned lr, with a `score` to compare them by.

    `score` is the final test metric oriented so that larger is better, -inf for a diverged run
    (the worst; two diverged runs tie) and NaN for a done run without a test metric.
    """
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
        values = table.to_numpy(dtype=float)  # seeds × optimizers, -inf = diverged
        for i, j in permutations(range(values.shape[1]), 2):
            both = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
            if not both.any():
                continue
            sa, sb = values[both, i], values[both, j]
            scores = (sa > sb) + 0.5 * (sa == sb)
            rows.append({
                "task": task, "task_type": task_type[task], "optimizer": table.columns[i],
                "opponent": table.columns[j], "win_rate": float(scores.mean()),
                "pairs": int(both.sum()),
            })
    return _table(rows, TASK_RATE_SCHEMA)


def win_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired win rate of each optimizer over each other, per task type, at tuned lrs.

    Runs pair by (task, seed) at each optimizer's `select_lr` choice; the per-task rate is the
    mean over the seeds both have, the task-type rate the unweighted mean over tasks. Pairs with
    no common seed in a task type are left out. Columns: task_type, optimizer, opponent,
    win_rate, tasks (tasks that contributed), pairs (paired seeds over those tasks).
    """
    per_task = pairwise_task_rates(runs)
    out = per_task.groupby(["task_type", "optimizer", "opponent"], sort=True).agg(
        win_rate=("win_rate", "mean"), tasks=("task", "nunique"), pairs=("pairs", "sum"),
    )
    return _table(out.reset_index(), WIN_SCHEMA)


def win_matrix(rates: pd.DataFrame, task_type: str) -> pd.DataFrame:
    """One task type of `win_rates` as a matrix: rows optimizer, columns opponent, NaN diagonal."""
    part = rates[rates["task_type"] == task_type]
    names = sorted(set(part["optimizer"]) | set(part["opponent"]))
    matrix = part.pivot(index="optimizer", columns="opponent", values="win_rate")
    matrix = matrix.reindex(index=names, columns=names).astype(float)
    matrix.index.name, matrix.columns.name = "optimizer", "opponent"
    return matrix


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order (NaN stays NaN, not counted)."""
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="mergesort")]
    m, running = len(order), 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
    return adjusted


def ranks(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of each optimizer per task (1 = best), over the seeds every optimizer has.

    Scores are `tuned_runs` scores, so a diverged run ranks last and ties share the average
    rank. Columns: task_type, task, optimizer, rank, seeds.
    """
    task_type = _per_task(results_only(runs), "task_type")
    rows = []
    for task, table in _task_scores(runs).items():
        complete = table.dropna()
        if complete.empty or table.shape[1] < 2:
            continue
        per_seed = complete.rank(axis=1, ascending=False, method="average")
        for optimizer, rank in per_seed.mean().items():
            rows.append({"task_type": task_type[task], "task": task, "optimizer": optimizer,
                         "rank": float(rank), "seeds": len(complete)})
    return _table(rows, RANK_SCHEMA)


def friedman(runs: pd.DataFrame) -> pd.DataFrame:
    """Friedman test per task type: do the optimizers' per-task mean ranks differ?

    Blocks are the tasks on which every optimizer of the task type has paired seeds (others are
    left out: filter the optimizers to keep more); needs at least 3 optimizers and 2 such tasks.
    Task types that fall short get no row. Columns: task_type, optimizers,
    tasks, statistic, p_value.
    """
    table = ranks(runs)
    rows = []
    for kind, part in table.groupby("task_type", sort=True):
        wide = part.pivot(index="task", columns="optimizer", values="rank").dropna()
        if wide.shape[1] < 3 or wide.shape[0] < 2:
            continue
        result = sps.friedmanchisquare(*(wide[c].to_numpy() for c in wide.columns))
        rows.append({"task_type": kind, "optimizers": wide.shape[1], "tasks": wide.shape[0],
                     "statistic": float(result.statistic), "p_value": float(result.pvalue)})
    return _table(rows, FRIEDMAN_SCHEMA)


def pairwise_tests(runs: pd.DataFrame) -> pd.DataFrame:
    """Wilcoxon signed-rank test per pair of optimizers over tasks, Holm-corrected per task type.

    The paired value per task is the per-task win rate minus ½ (scale-free, and diverged runs
    count as losses); tasks where they tie are dropped by the test ('wilcox' zero method).
    Columns: task_type, optimizer, opponent, tasks, win_rate (unweighted mean over tasks),
    statistic, p_value, p_holm. One row per unordered pair (optimizer < opponent).
    """
    per_task = pairwise_task_rates(runs)
    per_task = per_task[per_task["optimizer"] < per_task["opponent"]]
    rows = []
    for (kind, a, b), part in per_task.groupby(["task_type", "optimizer", "opponent"], sort=True):
        diff = part["win_rate"].to_numpy() - 0.5
        if np.all(diff == 0):  # no task separates them; scipy would warn and give p = 1
            statistic, p_value = 0.0, 1.0
        else:
            result = sps.wilcoxon(diff, zero_method="wilcox")
            statistic, p_value = float(result.statistic), float(result.pvalue)
        rows.append({"task_type": kind, "optimizer": a, "opponent": b, "tasks": len(part),
                     "win_rate": float(part["win_rate"].mean()), "statistic": statistic,
                     "p_value": p_value})
    out = _table([{**row, "p_holm": math.nan} for row in rows], PAIRWISE_SCHEMA)
    for _, index in out.groupby("task_type").groups.items():
        out.loc[index, "p_holm"] = holm(out.loc[index, "p_value"])
    return out


def performance_ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """Dolan–Moré performance ratios of steps to target, per task and optimizer at tuned lrs.

    Cost is the median over seeds of steps_to_target, a run that diverged or never reached
    the target costing ∞ (so an optimizer failing on half the seeds or more fails the task).
    Ratio = cost / best cost on the task (∞ if the optimizer failed or every optimizer did).
    Only tasks with a target, run by every optimizer present in the task type, are used.
    Columns: task_type, task, optimizer, cost, ratio.
    """
    at = tuned_runs(runs)
    has_target = at.groupby("task")["target"].transform(lambda t: t.notna().any())
    at = at[has_target.astype(bool)]
    reached = at["steps_to_target"].astype(float).where(at["status"] == "done", np.inf)
    at = at.assign(cost=reached.fillna(np.inf))
    cost = at.groupby(["task_type", "task", "optimizer"], sort=True)["cost"].median()
    cost = cost.reset_index()
    cost["ratio"] = np.inf
    kept = []
    for _, part in cost.groupby("task_type", sort=True):
        wide = part.pivot(index="task", columns="optimizer", values="cost").dropna()
        wide = wide.clip(lower=1)  # a target met at step 0 counts as 1 step: ratios stay defined
        best = wide.min(axis=1)
        ratio = wide.div(best, axis=0).where(np.isfinite(wide.to_numpy()), np.inf)
        long = ratio.stack().rename("ratio").reset_index()
        kept.append(part.drop(columns="ratio").merge(long, on=["task", "optimizer"]))
    if not kept:
        return _table([], RATIO_SCHEMA)
    return _table(pd.concat(kept, ignore_index=True), RATIO_SCHEMA)


def performance_profile(runs: pd.DataFrame) -> pd.DataFrame:
    """Dolan–Moré performance profile per task type: the fraction of tasks within τ of best.

    ρ(τ) = share of the task type's tasks whose ratio is ≤ τ, given at every τ where some
    profile steps (the finite ratios), so the rows are the exact step functions.
    Columns: task_type, optimizer, tau, fraction.
    """
    ratios = performance_ratios(runs)
    rows = []
    for kind, part in ratios.groupby("task_type", sort=True):
        finite = part["ratio"][np.isfinite(part["ratio"])]
        taus = np.unique(np.concatenate([[1.0], finite.to_numpy(float)]))
        tasks = part["task"].nunique()
        for optimizer, mine in part.groupby("optimizer", sort=True):
            values = mine["ratio"].to_numpy(float)
            for tau in taus:
                rows.append({"task_type": kind, "optimizer": optimizer, "tau": float(tau),
                             "fraction": float((values <= tau).sum() / tasks)})
    return _table(rows, PROFILE_SCHEMA)
