"""Descriptive statistics and the tuned-lr protocol: pure functions from a runs DataFrame.

The input is one row per run (the columns `results.load_columns` returns; any subset that holds
the columns a function reads). Only runs whose status is `done` or `diverged` are results;
every function here drops the rest first. A diverged run is a result with no metric: it counts
as the worst outcome wherever runs are compared.

Every number here can be recomputed from `adaptbench ls --all --format csv` output with pandas
and scipy: the t-interval is `scipy.stats.t.interval`, the bootstrap is `scipy.stats.bootstrap`
with a fixed seed (from `BCA_MIN_N` values up; below, the t-interval), ties are exact equality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptbench.errors import UserError
from adaptbench.inference import bca_bootstrap, t_interval
from adaptbench.protocol import Selected, check_selected, check_unique, results_only

SPLITS = ("train", "val", "test")
CI_METHODS = ("t", "bootstrap", "iqm")
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
# Fewer values than this get the Student-t interval where a BCa interval was asked for: below
# it BCa covers far less than its nominal level and its bounds jump (see `bca_intervals`).
BCA_MIN_N = 10

# Output schemas (column -> dtype), so that empty results keep their types and merge cleanly.
_S, _F, _I, _B = object, float, int, bool
SUMMARY_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "metric_name": _S, "n": _I,
    "diverged": _I, "mean": _F, "ci_low": _F, "ci_high": _F, "loss_mean": _F,
    "loss_ci_low": _F, "loss_ci_high": _F,
}
LR_CURVE_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "metric_name": _S, "n": _I,
    "diverged": _I, "mean": _F, "in_band": _B, "best": _B,
}
TUNABILITY_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "metric_name": _S, "best_lr": _F,
    "best_mean": _F, "lr_low": _F, "lr_high": _F, "band_decades": _F, "band_lrs": _I,
    "lrs": _I, "at_edge": _B,
}
SUMMARY_COLUMNS = list(SUMMARY_SCHEMA)


def table(rows: list[dict] | pd.DataFrame, schema: dict[str, type]) -> pd.DataFrame:
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


def check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"Invalid confidence level: {confidence} (must be in (0, 1))")


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> CI:
    """Mean and Student-t confidence interval of the non-NaN values.

    mean ± t_{(1+c)/2, n-1} · s/√n with s the sample sd (ddof=1). With one value there is no
    interval (low/high NaN, sd NaN); with none everything is NaN; equal values give the
    zero-width interval.
    """
    check_confidence(confidence)
    x = _clean(values)
    n = len(x)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    low, high = t_interval(np.array([mean]), np.array([sd]), np.array([n]), confidence)
    return CI(mean, float(low[0]), float(high[0]), n, sd)


def bca_intervals(
    groups: list[np.ndarray], confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap intervals of the mean of each group: BCa from `BCA_MIN_N` (10) values up, the
    Student-t interval (`mean_ci`) for 2 to 9 values. Fewer than two values: NaN; equal
    values: zero width.

    From 10 values the interval is `inference.bca_bootstrap`, what
    `scipy.stats.bootstrap((x,), np.mean, method='BCa', rng=np.random.default_rng(seed))` gives
    the group, computed for all groups of one size at once; each group's bounds are the same
    whichever other groups come with it.

    Why not BCa below 10 values: with n values the bootstrap distribution of the mean has only
    C(2n-1, n) atoms (35 at n = 4) and BCa's adjusted lower percentile often falls below 1%,
    so the bound lands on one of the first atoms, often the sample minimum itself; which atom
    depends on z0, which moves with how the n!/nⁿ resamples that permute the data (9% at
    n = 4) are counted against the sample mean: scipy's summation order breaks those ties by a
    rounding error, and at n = 4 a quarter of the width moves with it. Above all, BCa at small
    n covers far too rarely: in 3,000 normal samples each, 95% BCa intervals covered the mean
    72% of the time at n = 3, 80% at 4, 86% at 6, 89% at 8, 90% at 10 (t-interval: 95-96%
    throughout); for lognormal data BCa catches up with the t-interval (83-84%) only at
    about n = 10. The t-interval is exact for normal data and no worse otherwise here.
    """
    check_confidence(confidence)
    low = np.full(len(groups), np.nan)
    high = np.full(len(groups), np.nan)
    by_size: dict[int, list[int]] = {}
    small: list[int] = []
    for i, x in enumerate(groups):
        if len(x) >= BCA_MIN_N:
            by_size.setdefault(len(x), []).append(i)
        elif len(x) >= 2:
            small.append(i)
    if small:
        low[small], high[small] = t_interval(
            np.array([groups[i].mean() for i in small]),
            np.array([groups[i].std(ddof=1) for i in small]),
            np.array([len(groups[i]) for i in small]), confidence)
    for size, index in by_size.items():
        lo, hi = bca_bootstrap(np.stack([groups[i] for i in index]), confidence, n_resamples, seed)
        low[index], high[index] = lo, hi
    return low, high


def bootstrap_ci(
    values: Iterable[float], confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> CI:
    """Mean and BCa bootstrap confidence interval of the non-NaN values; the Student-t
    interval for fewer than `BCA_MIN_N` values (see `bca_intervals`)."""
    x = _clean(values)
    if len(x) < 2:
        return mean_ci(x, confidence)
    low, high = bca_intervals([x], confidence, n_resamples, seed)
    return CI(float(x.mean()), float(low[0]), float(high[0]), len(x), float(x.std(ddof=1)))


def check_split(metric: str) -> None:
    if metric not in SPLITS:
        raise ValueError(f"Invalid split: {metric!r} (choose from {', '.join(SPLITS)})")


def signed(values: pd.Series, higher_is_better: pd.Series) -> pd.Series:
    """Values oriented so that larger is better."""
    return values.where(higher_is_better.astype(bool), -values)


def _iqm_intervals(
    x: np.ndarray, c: np.ndarray, count: int, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group: interquartile mean with a percentile bootstrap interval over the group's
    values (`aggregate.iqm_intervals`, groups of one size at a time); fewer than 2: none."""
    from adaptbench import aggregate

    out = np.full((4, count), np.nan)
    out[3] = np.bincount(c, minlength=count)
    order = np.argsort(c, kind="mergesort")
    groups = np.split(x[order], np.cumsum(out[3].astype(int))[:-1])
    by_size: dict[int, list[int]] = {}
    for g, values in enumerate(groups):
        by_size.setdefault(len(values), []).append(g)
    for size, index in by_size.items():
        if size == 0:
            continue
        est, low, high = aggregate.iqm_intervals(np.stack([groups[g] for g in index]),
                                                 confidence, N_RESAMPLES, BOOTSTRAP_SEED)
        out[0, index] = est
        if size >= 2:
            out[1, index], out[2, index] = low, high
    return out[0], out[1], out[2], out[3]


def _intervals(
    values: pd.Series, codes: np.ndarray, count: int, ci: str, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group (codes 0..count-1): mean, low, high, n of the non-NaN values; with ci 'iqm',
    the interquartile mean and its bootstrap interval instead."""
    ok = values.notna().to_numpy()
    x, c = values.to_numpy(float)[ok], codes[ok]
    if ci == "iqm":
        return _iqm_intervals(x, c, count, confidence)
    n = np.bincount(c, minlength=count).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(c, weights=x, minlength=count) / n
        # two-pass variance: stable for values far from zero with a small spread
        dev = x - mean[c]
        sd = np.sqrt(np.bincount(c, weights=dev * dev, minlength=count) / (n - 1))
    sd = np.where(n >= 2, sd, np.nan)
    if ci == "t":
        low, high = t_interval(mean, sd, n, confidence)
    else:
        order = np.argsort(c, kind="mergesort")
        groups = np.split(x[order], np.cumsum(n.astype(int))[:-1])
        low, high = bca_intervals(groups, confidence)
    return mean, low, high, n


def summary(
    runs: pd.DataFrame, metric: str = "test", ci: str = "t", confidence: float = 0.95
) -> pd.DataFrame:
    """Mean ± CI of the final metric and loss per (task, optimizer, lr), over seeds.

    `metric` picks the split ('train', 'val' or 'test'); `ci` is 't' (Student-t interval) or
    'bootstrap' (BCa, 9,999 resamples, seed 0, for groups of at least `BCA_MIN_N` values; the
    t-interval for smaller groups, see `bca_intervals`). `n` counts done runs with a finite metric,
    `diverged` the diverged runs; the loss interval uses the done runs with a finite loss.
    Rows are sorted by task, optimizer, lr.
    """
    check_split(metric)
    check_confidence(confidence)
    if ci not in CI_METHODS:
        raise UserError(f"unknown interval {ci!r}; choose from: {', '.join(CI_METHODS)}")
    res = results_only(runs)
    check_unique(res)
    if res.empty:
        return table([], SUMMARY_SCHEMA)
    done = res["status"] == "done"
    grouped = res.groupby(["task", "optimizer", "lr"], sort=True)
    codes = grouped.ngroup().to_numpy()
    out = grouped.agg(task_type=("task_type", "first"), metric_name=("metric_name", "first"))
    out["diverged"] = np.bincount(codes, weights=(~done).to_numpy(float), minlength=len(out))
    value = res[f"final_{metric}_metric"].astype(float).where(done)
    out["mean"], out["ci_low"], out["ci_high"], out["n"] = _intervals(
        value, codes, len(out), ci, confidence)
    loss_col = f"final_{metric}_loss"
    if loss_col in res:
        loss = res[loss_col].astype(float).where(done)
        out["loss_mean"], out["loss_ci_low"], out["loss_ci_high"], _ = _intervals(
            loss, codes, len(out), ci, confidence)
    else:
        out["loss_mean"] = out["loss_ci_low"] = out["loss_ci_high"] = np.nan
    return table(out.reset_index(), SUMMARY_SCHEMA)


TUNED_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "metric_name": _S, "source": _S,
    "selection_n": _I, "eval_n": _I, "n": _I, "diverged": _I, "mean": _F, "ci_low": _F,
    "ci_high": _F, "loss_mean": _F, "loss_ci_low": _F, "loss_ci_high": _F, "all_diverged": _B,
}


def tuned_summary(
    selected: Selected, metric: str = "test", ci: str = "t", confidence: float = 0.95
) -> pd.DataFrame:
    """`summary` of the runs the tuned protocol selected, with how they were selected.

    Per (task, optimizer): the selected lr; mean ± CI over the runs the figures come from (the
    evaluation seeds, or the selection seeds where there are none); `n` those runs with a
    finite metric; `source` 'evaluation' or 'selection' (optimistic: the lr was chosen on
    them); `selection_n` the selection runs with a validation metric at the selected lr;
    `eval_n` the evaluation runs at it; `all_diverged` when every selection run diverged.
    """
    out = summary(selected.runs, metric, ci, confidence)
    how = selected.table[["task", "optimizer", "source", "selection_n", "eval_n", "all_diverged"]]
    out = out.merge(how, on=["task", "optimizer"], how="left")
    return table(out, TUNED_SCHEMA)


def scored(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Selected runs (`protocol.select(...).runs`, one lr per (task, optimizer)) with a `score`.

    `score` is the final metric of the split oriented so that larger is better, -inf for a
    diverged run (the worst; two diverged runs tie) and NaN for a done run without a metric.
    """
    check_split(metric)
    at = results_only(runs)
    check_selected(at)
    score = signed(at[f"final_{metric}_metric"].astype(float), at["higher_is_better"])
    score = score.where(at["status"] == "done", -np.inf)
    return at.assign(score=score)


def lr_sensitivity(
    runs: pd.DataFrame, metric: str = "val", within: float = 5.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metric against lr per (task, optimizer), and the width of the band of good lrs.

    The curve: per (task, optimizer, lr), the mean final metric of the split over the done runs,
    n, and the diverged count. An lr is *eligible* if it has a done run and no diverged one.
    The best lr is the eligible lr with the best mean (ties: the smaller lr). An lr is within
    `within` % of the best if it is eligible and its mean is no more than within/100 · |best
    mean| worse. The band is the run of consecutive tried lrs around the best that are all
    within; its width is log10(lr_high / lr_low) decades (0: only the best lr is that good).
    `at_edge` flags a best lr at either end of the lrs tried: the true optimum may lie outside.
    Returns (curve, tunability); a (task, optimizer) with no eligible lr has no tunability row.
    """
    check_split(metric)
    if within < 0:
        raise UserError(f"the band's width must be a percentage >= 0, got {within:g}", about="within")
    res = results_only(runs)
    check_unique(res)
    if res.empty:
        return table([], LR_CURVE_SCHEMA), table([], TUNABILITY_SCHEMA)
    done = res["status"] == "done"
    value = res[f"final_{metric}_metric"].astype(float).where(done)
    curve = pd.DataFrame({
        "task": res["task"], "optimizer": res["optimizer"], "lr": res["lr"],
        "task_type": res["task_type"], "metric_name": res["metric_name"],
        "higher": res["higher_is_better"].astype(bool), "_v": value, "_div": ~done,
    }).groupby(["task", "optimizer", "lr"], sort=True).agg(
        task_type=("task_type", "first"), metric_name=("metric_name", "first"),
        higher=("higher", "first"), n=("_v", "count"), diverged=("_div", "sum"),
        mean=("_v", "mean"),
    ).reset_index()
    key = signed(curve["mean"], curve["higher"])
    eligible = (curve["n"] > 0) & (curve["diverged"] == 0)
    ranked = key.where(eligible)
    # first row of the best: sorted by lr inside each group, so a tie keeps the smaller lr
    best_key = ranked.groupby([curve["task"], curve["optimizer"]]).transform("max")
    is_best = eligible & (ranked == best_key)
    is_best &= is_best.groupby([curve["task"], curve["optimizer"]]).cumsum() == 1
    best_mean = curve["mean"].where(is_best).groupby(
        [curve["task"], curve["optimizer"]]).transform("max")
    tolerance = within / 100 * best_mean.abs()
    gap = best_key - key
    inside = eligible & (gap <= tolerance + 1e-12 * best_mean.abs())  # slack for rounding
    # consecutive runs of `inside` per group; the band is the run holding the best lr
    group_start = (curve["task"] != curve["task"].shift()) | (
        curve["optimizer"] != curve["optimizer"].shift())
    run_id = (group_start | (inside != inside.shift())).cumsum()
    best_run = run_id.where(is_best).groupby(
        [curve["task"], curve["optimizer"]]).transform("max")
    curve["in_band"] = inside & (run_id == best_run)
    curve["best"] = is_best
    position = curve.groupby(["task", "optimizer"]).cumcount()
    size = curve.groupby(["task", "optimizer"])["lr"].transform("size")
    band = curve[curve["in_band"]]
    tun = band.groupby(["task", "optimizer"], sort=True).agg(
        task_type=("task_type", "first"), metric_name=("metric_name", "first"),
        lr_low=("lr", "min"), lr_high=("lr", "max"), band_lrs=("lr", "size"),
    )
    best_rows = curve[is_best].assign(
        at_edge=((position == 0) | (position == size - 1))[is_best], lrs=size[is_best],
    ).set_index(["task", "optimizer"])
    tun["best_lr"] = best_rows["lr"]
    tun["best_mean"] = best_rows["mean"]
    tun["lrs"] = best_rows["lrs"]
    tun["at_edge"] = best_rows["at_edge"]
    tun["band_decades"] = np.log10(tun["lr_high"] / tun["lr_low"])
    return (table(curve, LR_CURVE_SCHEMA), table(tun.reset_index(), TUNABILITY_SCHEMA))
