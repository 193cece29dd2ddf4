"""Hypothesis tests and intervals on plain arrays: the inferential core of the reports.

Each function gives the same numbers as its `scipy.stats` counterpart (named in its docstring;
the tests check them against it), but needs only numpy and `scipy.special`: `scipy.stats`
takes longer to import than a whole report over 100,000 runs takes to compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product

import numpy as np
from scipy import special

EXACT_PERMUTATION_MAX = 13  # scipy's limit for enumerating all sign flips (2**13 < 9999)
EXACT_DISTRIBUTION_MAX = 50  # above this many differences, scipy's 'auto' is the normal approximation


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and two-sided p-value (NaN when the test is undefined)."""

    statistic: float
    p_value: float


def t_quantile(probability: float | np.ndarray, df: float | np.ndarray) -> np.ndarray:
    """Quantile of Student's t with `df` degrees of freedom (`scipy.stats.t.ppf`)."""
    return special.stdtrit(np.asarray(df, dtype=float), probability)


def t_interval(
    mean: np.ndarray, sd: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Student-t intervals mean ± t_{(1+c)/2, n-1} · sd/√n, element-wise.

    n < 2 gives no interval (NaN); sd = 0 gives the zero-width interval at the mean.
    """
    mean, sd, n = (np.asarray(a, dtype=float) for a in (mean, sd, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = t_quantile((1 + confidence) / 2, np.where(n >= 2, n - 1, np.nan)) * sd / np.sqrt(n)
    half = np.where(sd == 0, 0.0, half)
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


def paired_t_test(differences: Iterable[float]) -> TestResult:
    """Two-sided one-sample t-test of the paired differences (`scipy.stats.ttest_rel`).

    Fewer than two differences, or all of them equal to zero, give NaN; equal non-zero
    differences give t = ±inf and p = 0, as scipy does.
    """
    d = np.asarray(list(differences), dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 2:
        return TestResult(math.nan, math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        if mean == 0:
            return TestResult(math.nan, math.nan)
        return TestResult(math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return TestResult(t, float(2 * special.stdtr(n - 1, -abs(t))))


def one_sided_t_test(values: Iterable[float], threshold: float, above: bool) -> TestResult:
    """One-sample t-test of "the mean lies above (or below) the threshold"
    (`scipy.stats.ttest_1samp(values, threshold, alternative="greater" | "less")`): the
    statistic t = (mean - threshold) / (sd / √n) and its one-sided p-value, df = n - 1.

    Fewer than two values give NaN; values that are all equal give t = ±inf (p 0 or 1), or
    NaN and p = 1 when they equal the threshold."""
    x = np.asarray(list(values), dtype=float)
    n = len(x)
    if n < 2 or np.isnan(x).any():
        return TestResult(math.nan, math.nan)
    diff, sd = float(x.mean()) - threshold, float(x.std(ddof=1))
    if sd == 0 or not math.isfinite(sd):
        if diff == 0 or not math.isfinite(diff):
            return TestResult(math.nan, 1.0)
        t = math.copysign(math.inf, diff)
    else:
        t = diff / (sd / math.sqrt(n))
    return TestResult(t, float(special.stdtr(n - 1, -t if above else t)))


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a proportion
    (`scipy.stats.binomtest(k, n).proportion_ci(method='exact')`); NaN for no trials."""
    if trials == 0:
        return math.nan, math.nan
    alpha = 1 - confidence
    k, n = successes, trials
    low = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, alpha / 2))
    high = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - alpha / 2))
    return low, high


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their average rank (`scipy.stats.rankdata`)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, axis=-1, kind="mergesort")
    ordered = np.take_along_axis(values, order, axis=-1)
    flat = ordered.reshape(-1, ordered.shape[-1])
    ranks = np.empty_like(flat)
    for row, sorted_row in enumerate(flat):
        starts = np.r_[True, sorted_row[1:] != sorted_row[:-1]]
        ids = np.cumsum(starts) - 1
        counts = np.bincount(ids)
        first = np.cumsum(counts) - counts  # 0-based position where each tie block starts
        ranks[row] = first[ids] + (counts[ids] + 1) / 2
    out = np.empty_like(values)
    np.put_along_axis(out, order, ranks.reshape(ordered.shape), axis=-1)
    return out


def friedman(blocks: np.ndarray) -> TestResult:
    """Friedman's test: rows are blocks (tasks), columns treatments (optimizers)
    (`scipy.stats.friedmanchisquare(*blocks.T)`).

    Values are ranked within each block (ties averaged) and the statistic is corrected for
    ties; p from χ² with k - 1 degrees of freedom. Needs at least 3 treatments and 2 blocks.
    """
    data = np.asarray(blocks, dtype=float)
    n, k = data.shape
    if k < 3 or n < 2:
        return TestResult(math.nan, math.nan)
    ranks = average_ranks(data)
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    correction = 1 - ties / (n * k * (k * k - 1))
    sums = ranks.sum(axis=0)
    chi2 = (12.0 / (n * k * (k + 1)) * float((sums**2).sum()) - 3 * n * (k + 1)) / correction
    return TestResult(chi2, float(special.chdtrc(k - 1, chi2)))


def _exact_signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign patterns of ranks 1..n with each possible positive-rank sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def wilcoxon(differences: Iterable[float]) -> TestResult:
    """Wilcoxon signed-rank test, two-sided, zeros dropped
    (`scipy.stats.wilcoxon(d, zero_method='wilcox')` with its default method 'auto').

    Statistic: the smaller of the positive and negative rank sums. p-value, as scipy chooses:
    the exact null distribution when there are no ties and no zeros and at most 50 differences;
    with ties or zeros and at most 13 differences, the exact distribution over all sign flips
    of the observed ranks; otherwise the normal approximation with the tie correction, without
    continuity correction. All differences zero (or none): statistic 0, p = 1.
    """
    d = np.asarray(list(differences), dtype=float)
    d = d[~np.isnan(d)]
    total = len(d)
    nonzero = d[d != 0]
    n = len(nonzero)
    if n == 0:
        return TestResult(0.0, 1.0)
    ranks = average_ranks(np.abs(nonzero))
    r_plus = float(ranks[nonzero > 0].sum())
    r_minus = float(ranks[nonzero < 0].sum())
    statistic = min(r_plus, r_minus)
    has_ties = len(np.unique(np.abs(nonzero))) < n
    has_zeros = n < total
    mean = n * (n + 1) / 4
    if total > EXACT_DISTRIBUTION_MAX:
        method = "normal"
    elif not (has_ties or has_zeros):
        method = "exact"
    elif total <= EXACT_PERMUTATION_MAX:
        method = "flips"
    else:
        method = "normal"
    if method == "exact":
        counts = _exact_signed_rank_counts(n)
        pmf = counts / counts.sum()
        low = pmf[: int(math.ceil(r_plus)) + 1].sum()
        high = pmf[int(math.floor(r_plus)):].sum()
        p = min(1.0, 2 * min(low, high))
    elif method == "flips":
        signs = np.array(list(product((0.0, 1.0), repeat=n)))
        null = signs @ ranks
        tol = 1e-9 * max(1.0, abs(r_plus))
        p = min(1.0, 2 * min(float(np.mean(null <= r_plus + tol)),
                             float(np.mean(null >= r_plus - tol))))
    else:
        _, tie_counts = np.unique(np.abs(nonzero), return_counts=True)
        var = (n * (n + 1) * (2 * n + 1) - float((tie_counts**3 - tie_counts).sum()) / 2) / 24
        z = (r_plus - mean) / math.sqrt(var)
        p = float(2 * special.ndtr(-abs(z)))
    return TestResult(statistic, float(p))


def rank_biserial(differences: Iterable[float]) -> float:
    """Matched-pairs rank-biserial correlation (r+ - r-) / (r+ + r-), zeros dropped:
    +1 when every non-zero difference is positive, -1 when every one is negative."""
    d = np.asarray(list(differences), dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    if len(d) == 0:
        return math.nan
    ranks = average_ranks(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


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


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each of n items is drawn in each bootstrap resample: (n_resamples, n).

    The draws are those of `scipy.stats.bootstrap` with `rng=np.random.default_rng(seed)`.
    """
    draws = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    flat = (draws + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def row_sums(rows: np.ndarray) -> np.ndarray:
    """Sum of each row of a (groups, n) array, added in column order, one row at a time.

    Unlike a BLAS product or numpy's pairwise reduction, whose order of additions can depend on
    the array's shape, this gives each row the same bits whatever the other rows are.
    """
    total = np.zeros(rows.shape[0])
    for column in rows.T:
        total += column
    return total


def resample_means(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of each bootstrap resample of each row: (groups, n) rows and (n_resamples, n)
    counts give (groups, n_resamples).

    Each mean is Σ_j counts_j · x_j added in column order (as `row_sums` does), then / n. So a
    row's numbers never depend on the other rows, and a resample that is a permutation of the
    data (every count 1) adds the same values in the same order as `row_sums(rows) / n`: it
    ties with the sample mean exactly, as it should, instead of landing a rounding error to
    either side of it.
    """
    n = rows.shape[1]
    total = np.zeros((rows.shape[0], counts.shape[0]))  # (groups, n_resamples)
    for j, column in enumerate(np.ascontiguousarray(counts.T)):
        total += rows[:, j, None] * column
    return total / n


def percentile_bootstrap(
    rows: np.ndarray, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean of each row of a (groups, n) array
    (`scipy.stats.bootstrap(..., method='percentile')` with the same seed, row by row).

    All rows share one set of resamples (as scipy would draw for each of them); each row's
    interval is the same whichever other rows come with it (see `resample_means`). n < 2 gives
    NaN; a row of equal values gives the zero-width interval.
    """
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    groups, n = rows.shape
    if n < 2 or groups == 0:
        nan = np.full(groups, np.nan)
        return nan, nan.copy()
    means = resample_means(rows, resample_counts(n, n_resamples, seed))  # (groups, n_resamples)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=1)
    same = np.ptp(rows, axis=1) == 0
    low = np.where(same, rows[:, 0], low)
    high = np.where(same, rows[:, 0], high)
    return low, high


def _quantile_rows(sorted_rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row, the q-quantile of an already sorted row, linear interpolation ('linear', type 7)."""
    b = sorted_rows.shape[1]
    h = np.clip(np.nan_to_num(q), 0, 1) * (b - 1)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, b - 1)
    rows = np.arange(len(sorted_rows))
    low_v, high_v = sorted_rows[rows, lo], sorted_rows[rows, hi]
    return np.where(np.isnan(q), np.nan, low_v + (h - lo) * (high_v - low_v))


BLOCK = 256  # rows per block: (BLOCK, n_resamples) floats at a time


def bca_bootstrap(
    rows: np.ndarray, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """BCa bootstrap interval of the mean of each row of a (groups, n) array
    (`scipy.stats.bootstrap(..., method='BCa')` with the same seed, row by row).

    Efron & Tibshirani (1993), 14.3: the bias correction z0 = Φ⁻¹(share of resample means
    below the mean, ties counted half), the acceleration from the jackknife means, and the
    percentiles Φ(z0 + (z0 + z_α) / (1 - a (z0 + z_α))) of the resample means.

    Every sum is added in column order, one row at a time (`row_sums`, `resample_means`), so a
    row's interval is bitwise the same whichever other rows are computed in the same call, and
    a resample that is a permutation of the data ties with the sample mean exactly. scipy's
    summation order may break such a tie by one unit in the last place, to either side; where
    permutations are a sizeable share of the resamples (n ≤ 5 or so) that moves its z0 and its
    interval visibly, and there the two differ.
    n < 2 gives NaN; a row of equal values the zero-width interval (BCa itself is undefined).
    """
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    groups, n = rows.shape
    low, high = np.full(groups, np.nan), np.full(groups, np.nan)
    if n < 2 or groups == 0:
        return low, high
    counts = resample_counts(n, n_resamples, seed)
    alpha = (1 - confidence) / 2
    z_low, z_high = special.ndtri(alpha), special.ndtri(1 - alpha)
    for start in range(0, groups, BLOCK):
        x = rows[start:start + BLOCK]
        boot = resample_means(x, counts)  # (block, n_resamples)
        total = row_sums(x)
        theta = (total / n)[:, None]
        share = ((boot < theta).sum(axis=1) + (boot <= theta).sum(axis=1)) / (2 * n_resamples)
        z0 = special.ndtri(share)
        jack = (total[:, None] - x) / (n - 1)
        u = (n - 1) * ((row_sums(jack) / n)[:, None] - jack)
        with np.errstate(invalid="ignore", divide="ignore"):
            accel = row_sums(u**3) / n**3 / (6 * (row_sums(u**2) / n**2) ** 1.5)
            q_low = special.ndtr(z0 + (z0 + z_low) / (1 - accel * (z0 + z_low)))
            q_high = special.ndtr(z0 + (z0 + z_high) / (1 - accel * (z0 + z_high)))
        boot.sort(axis=1)
        low[start:start + BLOCK] = _quantile_rows(boot, q_low)
        high[start:start + BLOCK] = _quantile_rows(boot, q_high)
    same = np.ptp(rows, axis=1) == 0
    low[same] = high[same] = rows[same, 0]
    return low, high
