"""Tests for adaptbench.inference: each test and interval against scipy.stats or a hand-worked case."""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from adaptbench import inference, stats


def random_differences(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:
        return rng.normal(size=n)  # no ties, no zeros: scipy's exact distribution up to 50
    if kind == 1:
        return rng.integers(-3, 4, size=n) / 2  # many ties and zeros
    return np.round(rng.normal(size=n), 1)  # some ties


# n <= 13 with ties: all sign flips; 14..50 with ties: normal approximation; > 50: normal
SIZES = [1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 20, 30, 50, 51, 60]


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_wilcoxon_matches_scipy_on_random_differences(kind):
    rng = np.random.default_rng(kind)
    for n in SIZES:
        d = random_differences(rng, kind, n)
        if np.all(d == 0):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = sps.wilcoxon(d, zero_method="wilcox")
        got = inference.wilcoxon(d)
        assert got.statistic == pytest.approx(ref.statistic, abs=1e-12), d
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15), d


def test_wilcoxon_hand_worked():
    # Five positive differences: W = 0, and each of the 2^5 sign patterns is equally likely, so
    # the two-sided exact p = 2 * (1/32) = 0.0625 — below 6 tasks p < 0.05 is impossible.
    assert inference.wilcoxon([0.1, 0.2, 0.3, 0.4, 0.5]) == inference.TestResult(0.0, 0.0625)
    assert inference.wilcoxon([0.5] * 6).p_value == pytest.approx(2 / 64)
    # All zero (or nothing): nothing separates the pair.
    assert inference.wilcoxon([0.0, 0.0]) == inference.TestResult(0.0, 1.0)
    assert inference.wilcoxon([]) == inference.TestResult(0.0, 1.0)


def test_friedman_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(3)
    for shape in [(2, 3), (4, 3), (8, 5), (12, 4)]:
        for tied in (False, True):
            x = rng.normal(size=shape)
            if tied:
                x = np.round(x)
            got = inference.friedman(x)
            ref = sps.friedmanchisquare(*x.T)
            assert got.statistic == pytest.approx(ref.statistic, rel=1e-12)
            assert got.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert math.isnan(inference.friedman(np.ones((5, 2))).p_value)  # needs 3 treatments
    assert math.isnan(inference.friedman(np.ones((1, 4))).p_value)  # and 2 blocks


def test_paired_t_test_matches_scipy_and_degenerate_cases():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 20):
        a, b = rng.normal(size=n), rng.normal(size=n)
        ref = sps.ttest_rel(a, b)
        got = inference.paired_t_test(a - b)
        assert (got.statistic, got.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert math.isnan(inference.paired_t_test([0.3]).p_value)  # n = 1: no test
    assert math.isnan(inference.paired_t_test([0.0, 0.0]).p_value)
    assert inference.paired_t_test([0.5, 0.5, 0.5]) == inference.TestResult(math.inf, 0.0)


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (3, 10), (7, 11), (1, 1), (6, 6)])
def test_clopper_pearson_matches_scipy(k, n):
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert inference.clopper_pearson(k, n) == pytest.approx((ref.low, ref.high), rel=1e-10)


def test_clopper_pearson_hand_worked():
    # 0 of n: the upper bound solves (1 - p)^n = 0.025; n of n: p^n = 0.025.
    assert inference.clopper_pearson(0, 4)[1] == pytest.approx(1 - 0.025 ** 0.25)
    assert inference.clopper_pearson(4, 4)[0] == pytest.approx(0.025 ** 0.25)
    # Six of six is the smallest unanimous sample whose lower bound clears one half.
    assert inference.clopper_pearson(5, 5)[0] < 0.5 < inference.clopper_pearson(6, 6)[0]
    assert all(math.isnan(v) for v in inference.clopper_pearson(0, 0))


def test_t_interval_matches_scipy_element_wise():
    mean, sd, n = np.array([1.0, 0.5, 2.0, 3.0]), np.array([0.5, 0.0, 1.0, np.nan]), np.array([4, 3, 1, 0])
    low, high = inference.t_interval(mean, sd, n, 0.9)
    ref = sps.t.interval(0.9, 3, loc=1.0, scale=0.5 / 2)
    assert (low[0], high[0]) == pytest.approx(ref, rel=1e-12)
    assert (low[1], high[1]) == (0.5, 0.5)  # sd 0: zero width
    assert np.isnan([low[2], high[2], low[3], high[3]]).all()  # n < 2: no interval


def test_average_ranks_match_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(6, 7)).astype(float)
    assert np.array_equal(inference.average_ranks(x), sps.rankdata(x, axis=1))


def test_rank_biserial_hand_worked():
    # d = 1, -2, 3 (zero dropped): ranks 1, 2, 3; r+ = 4, r- = 2 -> (4 - 2) / 6.
    assert inference.rank_biserial([1.0, -2.0, 0.0, 3.0]) == pytest.approx(1 / 3)
    assert inference.rank_biserial([0.2, 0.1]) == 1.0
    assert math.isnan(inference.rank_biserial([0.0]))


def test_percentile_bootstrap_equals_scipy_row_by_row():
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(4, 6))
    low, high = inference.percentile_bootstrap(rows, 0.9, n_resamples=3000, seed=11)
    for i, x in enumerate(rows):
        ref = sps.bootstrap((x,), np.mean, method="percentile", confidence_level=0.9,
                            n_resamples=3000, rng=np.random.default_rng(11))
        assert (low[i], high[i]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)


def test_percentile_bootstrap_of_two_tasks_is_their_range():
    # Resample means of (a, b) are a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles are a and b.
    low, high = inference.percentile_bootstrap(np.array([[0.6, 0.9]]))
    assert (low[0], high[0]) == (0.6, 0.9)
    low, high = inference.percentile_bootstrap(np.array([[0.7]]))
    assert np.isnan(low[0]) and np.isnan(high[0])


def test_bca_bootstrap_equals_scipy_when_sums_are_exact():
    # Multiples of 1/8 add up exactly in any order, so scipy's resample means and ours agree to
    # the last bit, ties with the sample mean included.
    rng = np.random.default_rng(2)
    for n in (2, 3, 5, 8, 20):
        rows = rng.integers(0, 9, size=(3, n)) / 8
        low, high = inference.bca_bootstrap(rows, 0.95, n_resamples=2000, seed=n)
        for i, x in enumerate(rows):
            if np.ptp(x) == 0:
                continue
            ref = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=2000,
                                rng=np.random.default_rng(n))
            assert (low[i], high[i]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)


def test_bca_bootstrap_close_to_scipy_on_continuous_data():
    # Here a resample that permutes the data has the sample mean; scipy's summation order can
    # put it a rounding error below or above, ours counts it as the tie it is. The intervals
    # differ by a small fraction of their width, and only through such resamples.
    rng = np.random.default_rng(3)
    for n in (10, 20):
        rows = rng.normal(size=(3, n))
        low, high = inference.bca_bootstrap(rows, 0.95, n_resamples=2000, seed=n)
        for i, x in enumerate(rows):
            ref = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=2000,
                                rng=np.random.default_rng(n)).confidence_interval
            width = ref.high - ref.low
            assert abs(low[i] - ref.low) < 0.01 * width and abs(high[i] - ref.high) < 0.01 * width


def exact_bca(x: list[Fraction], draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """BCa from its definition (Efron & Tibshirani 14.3) with exact rational resample means."""
    n, b = len(x), len(draws)
    theta = sum(x) / n
    means = sorted(sum((x[j] for j in row), Fraction(0)) / n for row in draws)
    share = (sum(m < theta for m in means) + sum(m <= theta for m in means)) / (2 * b)
    z0 = sps.norm.ppf(share)
    jack = [(sum(x) - xi) / (n - 1) for xi in x]
    jbar = sum(jack) / n
    u = [float((n - 1) * (jbar - j)) for j in jack]
    a = sum(v**3 for v in u) / n**3 / (6 * (sum(v**2 for v in u) / n**2) ** 1.5)
    out = []
    for z in (sps.norm.ppf((1 - confidence) / 2), sps.norm.ppf((1 + confidence) / 2)):
        q = sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        out.append(float(np.quantile([float(m) for m in means], q)))
    return out[0], out[1]


def test_bca_bootstrap_with_tied_resample_means_follows_the_definition():
    # Accuracies on a small test set are multiples of 1/4 here: many resamples have exactly the
    # sample mean, which the definition counts half below and half above.
    x = [0.5, 0.75, 0.75, 1.0]
    draws = np.random.default_rng(4).integers(0, len(x), (999, len(x)))
    low, high = inference.bca_bootstrap(np.array([x]), 0.95, n_resamples=999, seed=4)
    ref = exact_bca([Fraction(v) for v in x], draws, 0.95)
    assert (low[0], high[0]) == pytest.approx(ref, rel=1e-12)


def test_bca_bootstrap_on_continuous_data_follows_the_definition_exactly():
    # With 4 values, 24 of the 256 equally likely resamples are permutations of the data: about
    # 9% of the resample means equal the sample mean exactly, and the definition counts them
    # half below, half above. A summation that breaks those ties by a rounding error (a BLAS
    # product did) shifts z0 and the interval; here every bound must be the exact-arithmetic one.
    rng = np.random.default_rng(1)
    for x in rng.normal(0.8, 0.05, size=(40, 4)):
        draws = np.random.default_rng(0).integers(0, 4, (2000, 4))
        low, high = inference.bca_bootstrap(np.array([x]), 0.95, n_resamples=2000, seed=0)
        ref = exact_bca([Fraction(v) for v in x], draws, 0.95)
        assert (low[0], high[0]) == pytest.approx(ref, rel=1e-12, abs=1e-15), x.tolist()


def groups_of_many_sizes() -> tuple[list[np.ndarray], int]:
    """Groups of 3 to 10 values around 0.8 (like accuracies over seeds), and the position of one
    whose interval used to move with its neighbours (by 30% of its width)."""
    rng = np.random.default_rng(7)
    groups = [rng.normal(0.8, 0.05, size=n) for n in (3, 4, 5, 6, 8, 10) for _ in range(40)]
    target = np.array([0.8918891749244493, 0.7560336934904843, 0.7707188634563386,
                       0.7633756201285176])
    return groups[:100] + [target] + groups[100:], 100


def test_bca_interval_of_a_group_does_not_depend_on_the_other_groups():
    groups, target = groups_of_many_sizes()
    low, high = stats.bca_intervals(groups)
    alone = [stats.bca_intervals([g]) for g in groups]
    # Bitwise equality: a report must not change a group's interval because other groups (other
    # tasks, optimizers, lrs) were computed alongside it.
    assert low[target] == alone[target][0][0] and high[target] == alone[target][1][0]
    assert np.array_equal(low, [a[0][0] for a in alone])
    assert np.array_equal(high, [a[1][0] for a in alone])
    rows = np.stack([g for g in groups if len(g) == 4])
    for order in (slice(None), slice(None, None, -1)):
        lo, hi = inference.bca_bootstrap(rows[order])
        assert np.array_equal(lo[order], inference.bca_bootstrap(rows)[0])
        assert np.array_equal(hi[order], inference.bca_bootstrap(rows)[1])


def test_a_permutation_resample_ties_with_the_sample_mean():
    rows = np.random.default_rng(3).normal(0.8, 0.05, size=(500, 7))
    permutation = np.ones((1, 7))
    assert np.array_equal(inference.resample_means(rows, permutation)[:, 0],
                          inference.row_sums(rows) / 7)


def test_bca_bootstrap_degenerate_rows():
    low, high = inference.bca_bootstrap(np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]))
    assert (low[0], high[0]) == (2.0, 2.0)
    assert low[1] < 2.0 < high[1]
    low, high = inference.bca_bootstrap(np.array([[1.0]]))
    assert np.isnan(low[0])


def test_holm_matches_a_direct_reading():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, size=7)
    order = np.argsort(p)
    expected = np.empty(7)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (7 - i) * p[j]))
        expected[j] = running
    assert inference.holm(p) == pytest.approx(expected)


def test_resample_counts_are_scipys_draws():
    counts = inference.resample_counts(5, 100, seed=3)
    draws = np.random.default_rng(3).integers(0, 5, (100, 5))
    for row, drawn in zip(counts, draws):
        assert row.tolist() == [float((drawn == j).sum()) for j in range(5)]
    assert list(itertools.islice(counts.sum(axis=1), 3)) == [5.0, 5.0, 5.0]
