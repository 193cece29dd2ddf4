"""Tests for adaptbench.stats: every number is checked against scipy or a hand-worked case."""

from __future__ import annotations

import ast
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from adaptbench import comparisons, curves, inference, protocol, stats
from adaptbench.errors import UserError

METRIC_COLUMNS = [
    "final_train_loss", "final_val_loss", "final_test_loss",
    "final_train_metric", "final_val_metric", "final_test_metric", "best_val_metric",
]


def run(
    task: str, optimizer: str, seed: int, test: float = math.nan, val: float | None = None,
    *, lr: float = 0.01, status: str = "done", task_type: str = "vision",
    higher_is_better: bool = True, loss: float | None = None,
) -> dict:
    """One row of the runs table; a diverged run has NaN final metrics, as stored."""
    val = test if val is None else val
    loss = (1 - test if higher_is_better else test) if loss is None else loss
    row = {
        "id": None, "task": task, "task_type": task_type, "optimizer": optimizer,
        "params": "{}", "schedule": "constant", "lr": lr, "seed": seed, "steps": 100,
        "batch_size": 32, "study": "", "status": status,
        "metric_name": "accuracy" if higher_is_better else "perplexity",
        "higher_is_better": higher_is_better, "target": None,
        "final_train_loss": loss, "final_val_loss": loss, "final_test_loss": loss,
        "final_train_metric": val, "final_val_metric": val, "final_test_metric": test,
        "best_val_metric": val, "steps_to_target": math.nan, "wall_seconds": 1.0,
        "diverged_at_step": math.nan,
    }
    if status == "diverged":
        row.update({c: math.nan for c in METRIC_COLUMNS}, diverged_at_step=50)
    return row


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """What every report does before a statistic: the tuned protocol's selected runs."""
    return protocol.select(runs).runs


def select_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuned protocol's selection table (lr, val_mean, selection_n ...)."""
    return protocol.select(runs).table


def tuned_summary(runs: pd.DataFrame) -> pd.DataFrame:
    return stats.tuned_summary(protocol.select(runs))


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["id"] = range(1, len(df) + 1)
    return df


def diverged(task: str, optimizer: str, seed: int, **kw) -> dict:
    return run(task, optimizer, seed, status="diverged", **kw)


# ---------------------------------------------------------------- mean_ci


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("values", [
    [0.91, 0.93, 0.92],
    [1.0, 2.0],
    [3.1, -2.0, 7.5, 0.25, 11.0, 4.0, 4.0],
    list(np.random.default_rng(0).normal(5, 2, 30)),
])
def test_mean_ci_matches_scipy_t_interval(values, confidence):
    x = np.array(values)
    low, high = sps.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    ci = stats.mean_ci(values, confidence)
    assert ci.n == len(x)
    assert ci.mean == pytest.approx(x.mean(), rel=1e-12)
    assert ci.sd == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)


def test_mean_ci_hand_worked():
    # [1, 2, 3]: mean 2, s = 1. With 2 degrees of freedom the t quantile has a closed form,
    # t_p = (2p - 1) * sqrt(2 / (4p(1 - p))): t_0.975 = 0.95 * sqrt(2 / 0.0975) = 4.3026527297,
    # so the half-width is t / sqrt(3) = 2.4841377118.
    t = 0.95 * math.sqrt(2 / 0.0975)
    ci = stats.mean_ci([1, 2, 3])
    assert ci.mean == 2 and ci.sd == 1
    assert ci.half_width == pytest.approx(t / math.sqrt(3), rel=1e-12)
    assert (ci.low, ci.high) == pytest.approx((2 - 2.4841377118, 2 + 2.4841377118), abs=1e-9)


def test_mean_ci_single_value_has_no_interval():
    ci = stats.mean_ci([0.7])
    assert ci.mean == 0.7 and ci.n == 1
    assert math.isnan(ci.low) and math.isnan(ci.high) and math.isnan(ci.sd)


@pytest.mark.parametrize("values", [[], [math.nan, math.nan]])
def test_mean_ci_no_values_is_all_nan(values):
    ci = stats.mean_ci(values)
    assert ci.n == 0
    assert all(math.isnan(v) for v in (ci.mean, ci.low, ci.high, ci.sd))


def test_mean_ci_drops_nans_first():
    assert stats.mean_ci([1.0, math.nan, 2.0, 3.0]) == stats.mean_ci([1.0, 2.0, 3.0])
    assert stats.mean_ci(pd.Series([math.nan, 5.0])).n == 1


def test_mean_ci_all_equal_is_zero_width():
    ci = stats.mean_ci([0.5, 0.5, 0.5, 0.5])
    assert (ci.mean, ci.low, ci.high, ci.n, ci.sd) == (0.5, 0.5, 0.5, 4, 0.0)


def test_mean_ci_accepts_generators_and_rejects_bad_confidence():
    assert stats.mean_ci(v for v in [1.0, 2.0, 3.0]) == stats.mean_ci([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1.0, 2.0], confidence=95)


# ---------------------------------------------------------------- bootstrap_ci


def test_bootstrap_ci_equals_scipy_bca_with_same_seed():
    x = np.array([0.81, 0.84, 0.79, 0.88, 0.83, 0.86, 0.80, 0.85, 0.82, 0.87, 0.78])
    ci = stats.bootstrap_ci(list(x) + [math.nan], 0.9, n_resamples=2000, seed=7)
    ref = sps.bootstrap((x,), np.mean, confidence_level=0.9, n_resamples=2000,
                        method="BCa", rng=np.random.default_rng(7))
    assert (ci.low, ci.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    assert ci.mean == pytest.approx(x.mean()) and ci.n == 11
    assert ci.low < ci.mean < ci.high


# Four seeds where BCa is at its worst: by its definition (permutation resamples tie with the
# mean) the lower bound is the sample minimum itself; scipy's, whose rounding puts half of those
# ties below the mean, is 26% of the width higher.
FOUR = np.array([0.8629546420389962, 0.8094071168110571, 0.872538267638946, 0.8766284075182705])


def test_bca_at_four_seeds_hangs_on_rounding_and_falls_back_to_t():
    ref = sps.bootstrap((FOUR,), np.mean, method="BCa", n_resamples=9999,
                        rng=np.random.default_rng(0)).confidence_interval
    low, high = inference.bca_bootstrap(FOUR[None], n_resamples=9999, seed=0)
    assert low[0] == FOUR.min()  # the interval's lower end collapsed onto one observation
    assert ref.low - low[0] > 0.2 * (ref.high - ref.low)
    # The gap is scipy's rounding, not a different formula: fed scipy's own resample means
    # (summed in draw order), BCa's definition gives scipy's interval exactly.
    draws = np.random.default_rng(0).integers(0, 4, (9999, 4))
    means = np.mean(FOUR[draws], axis=-1)
    share = (np.sum(means < FOUR.mean()) + np.sum(means <= FOUR.mean())) / (2 * 9999)
    jack = (FOUR.sum() - FOUR) / 3
    u = 3 * (jack.mean() - jack)
    a = np.sum(u**3) / 4**3 / (6 * (np.sum(u**2) / 4**2) ** 1.5)
    z0 = sps.norm.ppf(share)
    bounds = [np.quantile(means, sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))
              for z in sps.norm.ppf([0.025, 0.975])]
    assert bounds == pytest.approx([ref.low, ref.high], rel=1e-12)
    # So below BCA_MIN_N values the bootstrap interval is the t-interval.
    ci = stats.bootstrap_ci(FOUR)
    t_low, t_high = sps.t.interval(0.95, 3, loc=FOUR.mean(), scale=sps.sem(FOUR))
    assert (ci.low, ci.high) == pytest.approx((t_low, t_high), rel=1e-12)


def test_bca_intervals_switch_from_t_to_bca_at_ten_values():
    rng = np.random.default_rng(4)
    groups = [rng.normal(0.8, 0.05, size=n) for n in (2, 3, 5, 9, 10, 12)]
    low, high = stats.bca_intervals(groups)
    for i, x in enumerate(groups):
        if len(x) < stats.BCA_MIN_N:
            ref = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            assert (low[i], high[i]) == pytest.approx(ref, rel=1e-12)
        else:
            lo, hi = inference.bca_bootstrap(x[None])
            assert (low[i], high[i]) == (lo[0], hi[0])
    assert stats.BCA_MIN_N == 10


def test_bootstrap_ci_degenerate_cases():
    one = stats.bootstrap_ci([0.3])
    assert one.mean == 0.3 and math.isnan(one.low) and math.isnan(one.high)
    same = stats.bootstrap_ci([2.0, 2.0, 2.0])
    assert (same.low, same.high) == (2.0, 2.0)
    assert stats.bootstrap_ci([]).n == 0


# ---------------------------------------------------------------- summary


def summary_runs() -> pd.DataFrame:
    return frame([
        run("mnist", "adam", 0, 0.90, loss=0.30),
        run("mnist", "adam", 1, 0.92, loss=0.25),
        run("mnist", "adam", 2, 0.95, loss=0.20),
        run("mnist", "adam", 0, 0.50, lr=0.1, loss=1.0),
        diverged("mnist", "adam", 1, lr=0.1),
        diverged("mnist", "adam", 2, lr=0.1),
        run("mnist", "sgd", 0, 0.85),
        # Not results: must change nothing, even though they carry numbers.
        run("mnist", "sgd", 1, 0.0, status="failed"),
        run("mnist", "sgd", 2, 0.0, status="cancelled"),
        run("mnist", "sgd", 3, 0.0, status="queued"),
        run("mnist", "sgd", 4, 0.0, status="running"),
        run("cifar", "adam", 0, 0.70, task_type="dense"),
        run("cifar", "adam", 1, 0.72, task_type="dense"),
    ])


def test_summary_columns_order_and_counts():
    out = stats.summary(summary_runs())
    assert list(out.columns) == stats.SUMMARY_COLUMNS
    keys = list(zip(out["task"], out["optimizer"], out["lr"]))
    assert keys == [("cifar", "adam", 0.01), ("mnist", "adam", 0.01), ("mnist", "adam", 0.1),
                    ("mnist", "sgd", 0.01)]
    assert list(out["n"]) == [2, 3, 1, 1]
    assert list(out["diverged"]) == [0, 0, 2, 0]
    assert list(out["task_type"]) == ["dense", "vision", "vision", "vision"]
    assert set(out["metric_name"]) == {"accuracy"}


def test_summary_numbers_match_scipy():
    out = stats.summary(summary_runs()).set_index(["task", "optimizer", "lr"])
    row = out.loc[("mnist", "adam", 0.01)]
    x = np.array([0.90, 0.92, 0.95])
    low, high = sps.t.interval(0.95, 2, loc=x.mean(), scale=sps.sem(x))
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((x.mean(), low, high))
    loss = np.array([0.30, 0.25, 0.20])
    low, high = sps.t.interval(0.95, 2, loc=loss.mean(), scale=sps.sem(loss))
    assert (row["loss_mean"], row["loss_ci_low"], row["loss_ci_high"]) == pytest.approx(
        (0.25, low, high))
    # One done run and two diverged: a mean of the one value and no interval.
    lone = out.loc[("mnist", "adam", 0.1)]
    assert lone["mean"] == 0.5 and lone["loss_mean"] == 1.0
    assert math.isnan(lone["ci_low"]) and math.isnan(lone["loss_ci_high"])


def test_summary_all_diverged_group_has_no_mean():
    out = stats.summary(frame([diverged("t", "sgd", 0), diverged("t", "sgd", 1)]))
    assert out["n"].tolist() == [0] and out["diverged"].tolist() == [2]
    assert out[["mean", "ci_low", "ci_high", "loss_mean"]].isna().all(axis=None)


def test_summary_other_split():
    runs = frame([run("t", "adam", 0, 0.9, val=0.6), run("t", "adam", 1, 0.9, val=0.8)])
    assert stats.summary(runs, metric="val")["mean"].iloc[0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="split"):
        stats.summary(runs, metric="validation")


def test_summary_of_nothing_is_empty_with_columns():
    out = stats.summary(frame([run("t", "adam", 0, 0.9, status="failed")]))
    assert out.empty and list(out.columns) == stats.SUMMARY_COLUMNS


def test_duplicate_runs_are_refused_not_pooled():
    runs = frame([run("t", "adam", 0, 0.9), run("t", "adam", 0, 0.8)])
    runs.loc[1, "study"] = "other"
    with pytest.raises(UserError, match="seed=0"):
        stats.summary(runs)
    with pytest.raises(UserError):
        comparisons.win_rates(tuned(runs))


# ---------------------------------------------------------------- select_lr


def test_select_lr_uses_validation_not_test():
    runs = frame([
        # lr 0.01: better validation (0.80), worse test (0.70)
        run("t", "adam", 0, 0.70, 0.80), run("t", "adam", 1, 0.70, 0.80),
        # lr 0.1: worse validation (0.75), better test (0.90)
        run("t", "adam", 0, 0.90, 0.75, lr=0.1), run("t", "adam", 1, 0.90, 0.75, lr=0.1),
    ])
    chosen = select_lr(runs)
    assert list(chosen.columns) == list(protocol.SELECTION_SCHEMA)
    assert chosen["lr"].tolist() == [0.01]
    assert chosen["val_mean"].tolist() == [pytest.approx(0.80)]
    assert tuned_summary(runs)["mean"].tolist() == [pytest.approx(0.70)]


def test_select_lr_lower_is_better():
    runs = frame([
        run("lm", "adam", s, test=t, val=v, lr=lr, higher_is_better=False)
        for lr, v, t in [(0.001, 30.0, 31.0), (0.01, 20.0, 21.0), (0.1, 25.0, 19.0)]
        for s in range(2)
    ])
    chosen = select_lr(runs)
    assert chosen["lr"].tolist() == [0.01] and chosen["val_mean"].tolist() == [20.0]


def test_select_lr_diverged_counts_as_worst():
    runs = frame([
        # lr 0.1 has the best finite validation values but one seed diverged.
        run("t", "adam", 0, 0.99, lr=0.1), diverged("t", "adam", 1, lr=0.1),
        run("t", "adam", 0, 0.60, lr=0.01), run("t", "adam", 1, 0.60, lr=0.01),
        # sgd: every lr diverges somewhere; the smaller fraction diverged wins.
        run("t", "sgd", 0, 0.9, lr=0.1), diverged("t", "sgd", 1, lr=0.1),
        diverged("t", "sgd", 2, lr=0.1),
        run("t", "sgd", 0, 0.1, lr=0.3), run("t", "sgd", 1, 0.1, lr=0.3),
        diverged("t", "sgd", 2, lr=0.3),
    ])
    chosen = select_lr(runs).set_index("optimizer")
    assert chosen.loc["adam", "lr"] == 0.01 and chosen.loc["adam", "selection_diverged"] == 0
    assert chosen.loc["sgd", "lr"] == 0.3
    assert chosen.loc["sgd", "selection_n"] == 2 and chosen.loc["sgd", "selection_diverged"] == 1
    assert not chosen["all_diverged"].any()
    assert chosen.loc["sgd", "val_mean"] == pytest.approx(0.1)


def test_select_lr_tie_picks_smaller_lr_and_ignores_non_results():
    runs = frame([
        run("t", "adam", 0, 0.5, lr=0.1), run("t", "adam", 0, 0.5, lr=0.01),
        run("t", "adam", 1, 0.99, lr=0.3, status="failed"),
    ])
    assert select_lr(runs)["lr"].tolist() == [0.01]


# ---------------------------------------------------------------- win rates


def hand_worked_runs() -> pd.DataFrame:
    """Two vision tasks and one sparse task; the expected rates are worked out below.

    Task "cls" (accuracy, higher is better), one lr per optimizer except sgd:
        seed     adam    sgd@0.01   rmsprop
        0        0.90    0.85       0.90
        1        0.80    0.80       -
        2        div     0.70       -
      sgd@0.1 has test 0.99 on every seed but validation 0.50, so it must not be chosen
      (were it chosen on test, adam would lose every seed).
      adam vs sgd:     seed 0 win 1, seed 1 tie ½, seed 2 diverged loses 0 -> 1.5/3 = 0.5
      adam vs rmsprop: seed 0 only (rmsprop lacks 1, 2): tie -> 0.5
      sgd vs rmsprop:  seed 0: 0.85 < 0.90 -> 0
    Task "lm" (perplexity, lower is better), adam has seeds 0, 1; sgd has 0..3:
        seed     adam    sgd
        0        10      11
        1        10      11
        2        -       5      (unpaired: would be an sgd win)
        3        failed  5      (a failed run is no result: unpaired too)
      adam vs sgd: 2/2 = 1.0
    vision, adam vs sgd: tasks weigh equally: (0.5 + 1.0) / 2 = 0.75, tasks 2, pairs 3 + 2 = 5.
      (Pooling the 5 seeds would give (1.5 + 2) / 5 = 0.7.)
    vision, sgd vs adam: (0.5 + 0.0) / 2 = 0.25.
    Task "bag" (sparse), seed 0: adam and sgd both diverge -> tie ½ each way.
    """
    vision = {"task_type": "vision"}
    lm = {"task_type": "vision", "higher_is_better": False}
    return frame([
        run("cls", "adam", 0, 0.90, **vision), run("cls", "adam", 1, 0.80, **vision),
        diverged("cls", "adam", 2, **vision),
        run("cls", "sgd", 0, 0.85, **vision), run("cls", "sgd", 1, 0.80, **vision),
        run("cls", "sgd", 2, 0.70, **vision),
        *[run("cls", "sgd", s, 0.99, 0.50, lr=0.1, **vision) for s in range(3)],
        run("cls", "rmsprop", 0, 0.90, **vision),
        run("lm", "adam", 0, 10.0, **lm), run("lm", "adam", 1, 10.0, **lm),
        run("lm", "adam", 3, 1.0, status="failed", **lm),
        *[run("lm", "sgd", s, v, **lm) for s, v in enumerate([11.0, 11.0, 5.0, 5.0])],
        diverged("bag", "adam", 0, task_type="sparse"),
        diverged("bag", "sgd", 0, task_type="sparse"),
    ])


def test_win_rates_hand_worked():
    out = comparisons.win_rates(tuned(hand_worked_runs()))
    assert list(out.columns) == comparisons.WIN_COLUMNS
    got = {(r.task_type, r.optimizer, r.opponent): (r.win_rate, r.tasks, r.pairs)
           for r in out.itertuples()}
    assert got == {
        ("sparse", "adam", "sgd"): (0.5, 1, 1),
        ("sparse", "sgd", "adam"): (0.5, 1, 1),
        ("vision", "adam", "rmsprop"): (0.5, 1, 1),
        ("vision", "adam", "sgd"): (0.75, 2, 5),
        ("vision", "rmsprop", "adam"): (0.5, 1, 1),
        ("vision", "rmsprop", "sgd"): (1.0, 1, 1),
        ("vision", "sgd", "adam"): (0.25, 2, 5),
        ("vision", "sgd", "rmsprop"): (0.0, 1, 1),
    }
    assert list(out["task_type"]) == sorted(out["task_type"])


def test_pairwise_task_rates_hand_worked():
    per_task = comparisons.pairwise_task_rates(tuned(hand_worked_runs()))
    rate = per_task.set_index(["task", "optimizer", "opponent"])
    assert rate.loc[("cls", "adam", "sgd"), "win_rate"] == 0.5
    assert rate.loc[("cls", "adam", "sgd"), "pairs"] == 3
    assert rate.loc[("lm", "adam", "sgd"), "win_rate"] == 1.0
    assert rate.loc[("lm", "sgd", "adam"), "pairs"] == 2


def test_win_matrix():
    matrix = comparisons.win_matrix(comparisons.win_rates(tuned(hand_worked_runs())), "vision")
    assert list(matrix.index) == list(matrix.columns) == ["adam", "rmsprop", "sgd"]
    assert np.isnan(np.diag(matrix.to_numpy())).all()
    assert matrix.loc["adam", "sgd"] == 0.75 and matrix.loc["sgd", "adam"] == 0.25
    assert matrix.loc["sgd", "rmsprop"] == 0.0


def test_win_rates_of_nothing():
    out = comparisons.win_rates(tuned(frame([run("t", "adam", 0, 0.9, status="queued")])))
    assert out.empty and list(out.columns) == comparisons.WIN_COLUMNS


def reference_win_rates(runs: pd.DataFrame) -> dict:
    """A direct, loop-by-loop reading of the protocol on plain records, independent of pandas."""
    res = [r for r in runs.to_dict("records") if r["status"] in ("done", "diverged")]
    by = {}
    for r in res:
        by.setdefault((r["task"], r["optimizer"], r["lr"]), []).append(r)
    chosen = {}
    for (task, opt, lr), group in by.items():
        hib = group[0]["higher_is_better"]
        finite = [r["final_val_metric"] * (1 if hib else -1) for r in group
                  if r["status"] == "done"]
        frac_diverged = 1 - len(finite) / len(group)
        rank = (-frac_diverged, sum(finite) / len(finite) if finite else -math.inf, -lr)
        if (task, opt) not in chosen or rank > chosen[task, opt][0]:
            chosen[task, opt] = (rank, lr)
    per_type = {}
    for task in sorted({r["task"] for r in res}):
        rows = [r for r in res if r["task"] == task]
        hib, task_type = rows[0]["higher_is_better"], rows[0]["task_type"]
        at = {}
        for r in rows:
            if r["lr"] == chosen[task, r["optimizer"]][1]:
                at.setdefault(r["optimizer"], {})[r["seed"]] = r
        for a, b in itertools.permutations(sorted(at), 2):
            scores = []
            for seed in sorted(set(at[a]) & set(at[b])):
                ra, rb = at[a][seed], at[b][seed]
                da, db = ra["status"] == "diverged", rb["status"] == "diverged"
                va, vb = ra["final_test_metric"], rb["final_test_metric"]
                if da or db:
                    scores.append(0.5 if da and db else (0.0 if da else 1.0))
                elif va == vb:
                    scores.append(0.5)
                else:
                    scores.append(1.0 if (va > vb) == hib else 0.0)
            if scores:
                per_type.setdefault((task_type, a, b), []).append(
                    (sum(scores) / len(scores), len(scores)))
    return {k: (sum(r for r, _ in v) / len(v), len(v), sum(p for _, p in v))
            for k, v in per_type.items()}


def random_runs(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(4):
        hib = bool(t % 2)
        for opt in ["adam", "sgd", "lion"]:
            for lr in [0.01, 0.1]:
                for s in rng.choice(5, size=int(rng.integers(1, 6)), replace=False):
                    status = rng.choice(["done", "done", "done", "diverged", "failed"])
                    # Values on a coarse grid so that exact ties happen often.
                    test, val = rng.integers(0, 4, size=2) / 4
                    rows.append(run(f"task{t}", opt, int(s), test, val, lr=lr, status=status,
                                    task_type="a" if t < 2 else "b", higher_is_better=hib))
    return frame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_win_rates_match_reference_on_random_runs(seed):
    runs = random_runs(seed)
    out = comparisons.win_rates(tuned(runs))
    got = {(r.task_type, r.optimizer, r.opponent): (r.win_rate, r.tasks, r.pairs)
           for r in out.itertuples()}
    ref = reference_win_rates(runs)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key][0] == pytest.approx(ref[key][0], abs=1e-12)
        assert got[key][1:] == ref[key][1:]
    # Each paired comparison is shared: the two directions add up to one.
    per_task = comparisons.pairwise_task_rates(tuned(runs)).set_index(["task", "optimizer", "opponent"])
    for (task, a, b), row in per_task.iterrows():
        assert row["win_rate"] + per_task.loc[(task, b, a), "win_rate"] == pytest.approx(1)


# ---------------------------------------------------------------- tests and profiles


def test_holm_hand_worked():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert inference.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is not a hypothesis: m = 2 here, and adjusted values are capped at 1.
    adjusted = inference.holm([math.nan, 0.5, 0.6])
    assert math.isnan(adjusted[0]) and adjusted[1:].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("values", [[0.1, 0.3, -0.2, 0.5, 0.05], [2.0, 2.5], [-1.0, 0.0, 4.0]])
@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.5])
@pytest.mark.parametrize("above", [True, False])
def test_one_sided_t_test_is_scipys(values, threshold, above):
    got = inference.one_sided_t_test(values, threshold, above)
    ref = sps.ttest_1samp(values, threshold, alternative="greater" if above else "less")
    assert (got.statistic, got.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)


def test_one_sided_t_test_edges():
    assert inference.one_sided_t_test([1.0, 1.0], 0.5, True).p_value == 0.0
    assert inference.one_sided_t_test([1.0, 1.0], 0.5, False).p_value == 1.0
    assert inference.one_sided_t_test([0.5, 0.5], 0.5, True).p_value == 1.0  # not beyond it
    assert math.isnan(inference.one_sided_t_test([0.7], 0.5, True).p_value)


def test_ranks_hand_worked():
    runs = frame([
        # seed 0: a 0.9 > b 0.8 > c diverged -> ranks 1, 2, 3
        run("t", "a", 0, 0.9), run("t", "b", 0, 0.8), diverged("t", "c", 0),
        # seed 1: c 0.9 > a 0.7 = b 0.7 -> ranks 2.5, 2.5, 1
        run("t", "a", 1, 0.7), run("t", "b", 1, 0.7), run("t", "c", 1, 0.9),
        # seed 2: c has no run, so the seed is not a complete block
        run("t", "a", 2, 0.1), run("t", "b", 2, 0.2),
    ])
    out = comparisons.ranks(tuned(runs)).set_index("optimizer")
    assert out["rank"].to_dict() == {"a": 1.75, "b": 2.25, "c": 2.0}
    assert set(out["seeds"]) == {2}


def test_friedman_hand_worked():
    # One seed per task, so per-task ranks are the ranks of these values (higher is better):
    #        a  b  c     ranks a b c
    #   t1   9  8  7           1 2 3
    #   t2   9  7  8           1 3 2
    #   t3   9  8  7           1 2 3
    #   t4   8  9  7           2 1 3
    # rank sums 5, 8, 11; chi2 = 12/(n k (k+1)) * sum R^2 - 3 n (k+1)
    #                         = 12/48 * 210 - 48 = 4.5, p = exp(-4.5/2) with 2 df.
    values = {"t1": (9, 8, 7), "t2": (9, 7, 8), "t3": (9, 8, 7), "t4": (8, 9, 7)}
    rows = [run(t, o, 0, float(v)) for t, vs in values.items() for o, v in zip("abc", vs)]
    rows.append(run("t5", "a", 0, 1.0))  # incomplete block: left out
    out = comparisons.friedman(tuned(frame(rows)))
    assert out[["task_type", "optimizers", "tasks"]].values.tolist() == [["vision", 3, 4]]
    assert out["statistic"].iloc[0] == pytest.approx(4.5)
    assert out["p_value"].iloc[0] == pytest.approx(math.exp(-2.25))
    ref = sps.friedmanchisquare([9, 9, 9, 8], [8, 7, 8, 9], [7, 8, 7, 7])
    assert out["p_value"].iloc[0] == pytest.approx(ref.pvalue)


def test_pairwise_tests_hand_worked():
    # adam beats sgd on each of 5 tasks (d = +½ each): exact signed-rank, W = 0,
    # two-sided p = 2 / 2^5 = 0.0625. lion ties adam everywhere (d = 0): p = 1.
    rows = []
    for t in range(5):
        rows += [run(f"t{t}", "adam", 0, 0.9), run(f"t{t}", "sgd", 0, 0.5),
                 run(f"t{t}", "lion", 0, 0.9)]
    out = comparisons.pairwise_tests(tuned(frame(rows))).set_index(["optimizer", "opponent"])
    assert list(out.index) == [("adam", "lion"), ("adam", "sgd"), ("lion", "sgd")]
    assert out.loc[("adam", "sgd"), "p_value"] == pytest.approx(0.0625)
    assert out.loc[("adam", "sgd"), "statistic"] == 0
    assert out.loc[("adam", "sgd"), "win_rate"] == 1.0
    assert out.loc[("adam", "lion"), "p_value"] == 1.0
    # Holm over the three pairs: 0.0625 * 3, then 0.0625 * 2 -> running max, then 1.
    assert out["p_holm"].tolist() == pytest.approx([1.0, 0.1875, 0.1875])


@pytest.mark.parametrize("seed", range(2))
def test_pairwise_tests_match_scipy_on_random_runs(seed):
    runs = random_runs(seed)
    out = comparisons.pairwise_tests(tuned(runs))
    per_task = comparisons.pairwise_task_rates(tuned(runs))
    for row in out.itertuples():
        part = per_task[(per_task.task_type == row.task_type)
                        & (per_task.optimizer == row.optimizer)
                        & (per_task.opponent == row.opponent)]
        d = part["win_rate"].to_numpy() - 0.5
        if np.any(d != 0):
            assert row.p_value == pytest.approx(sps.wilcoxon(d).pvalue)
    for kind, part in out.groupby("task_type"):
        assert part["p_holm"].tolist() == pytest.approx(list(inference.holm(part["p_value"])))


def reach(task: str, optimizer: str, seed: int, steps: float, **kw) -> dict:
    row = run(task, optimizer, seed, 0.9, **kw)
    row.update(target=0.8, steps_to_target=steps)
    return row


def profile_runs() -> pd.DataFrame:
    """Steps to target; medians over seeds (∞ = diverged or never reached):
        task   adam                  sgd                      cost adam, sgd   ratio adam, sgd
        t1     100, 120, 140         200, 240, diverged       120, 240         1, 2
        t2     300, never, never     150, 150                 ∞, 150           ∞, 1
        t3     50                    50                       50, 50           1, 1
    t4 has no target and t5 no sgd run: both left out.
    Profile (3 tasks): adam ρ(1) = 2/3, ρ(2) = 2/3; sgd ρ(1) = 2/3, ρ(2) = 1.
    """
    rows = [reach("t1", "adam", s, v) for s, v in enumerate([100, 120, 140])]
    rows += [reach("t1", "sgd", 0, 200), reach("t1", "sgd", 1, 240), diverged("t1", "sgd", 2)]
    rows += [reach("t2", "adam", s, v) for s, v in enumerate([300, math.nan, math.nan])]
    rows += [reach("t2", "sgd", s, 150) for s in range(2)]
    rows += [reach("t3", "adam", 0, 50), reach("t3", "sgd", 0, 50)]
    rows += [run("t4", "adam", 0, 0.9), run("t4", "sgd", 0, 0.9)]
    rows += [reach("t5", "adam", 0, 10)]
    return frame(rows)


def test_performance_ratios_hand_worked():
    out = curves.performance_ratios(tuned(profile_runs()))
    assert list(out.columns) == ["task_type", "task", "optimizer", "cost", "ratio"]
    got = {(r.task, r.optimizer): (r.cost, r.ratio) for r in out.itertuples()}
    assert got == {("t1", "adam"): (120, 1), ("t1", "sgd"): (240, 2),
                   ("t2", "adam"): (math.inf, math.inf), ("t2", "sgd"): (150, 1),
                   ("t3", "adam"): (50, 1), ("t3", "sgd"): (50, 1)}


def test_performance_profile_hand_worked():
    out = curves.performance_profile(curves.performance_ratios(tuned(profile_runs())))
    got = {(r.optimizer, r.tau): r.fraction for r in out.itertuples()}
    assert got == pytest.approx({("adam", 1.0): 2 / 3, ("adam", 2.0): 2 / 3,
                                 ("sgd", 1.0): 2 / 3, ("sgd", 2.0): 1.0})


# ---------------------------------------------------------------- loaded dtypes


def as_loaded(df: pd.DataFrame) -> pd.DataFrame:
    """The dtypes the database loader gives: nullable Int64 steps, float metrics, bool."""
    df = df.copy()
    for column in ("steps_to_target", "diverged_at_step"):
        df[column] = df[column].astype("Int64")
    floats = [c for c in df.columns if c.startswith("final_")] + ["lr", "target", "wall_seconds"]
    df[floats] = df[floats].astype(float)
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    return df


ALL = [stats.summary, tuned_summary, select_lr,
       *[lambda runs, f=f: f(tuned(runs)) for f in (
           comparisons.pairwise_task_rates, comparisons.win_rates, comparisons.ranks,
           comparisons.mean_ranks, comparisons.friedman, comparisons.pairwise_tests,
           curves.performance_ratios)],
       lambda runs: curves.performance_profile(curves.performance_ratios(tuned(runs))),
       lambda runs: curves.profile_area(curves.performance_ratios(tuned(runs))),
       lambda runs: stats.lr_sensitivity(runs)[1]]


@pytest.mark.parametrize("function", ALL, ids=range(len(ALL)))
def test_every_report_accepts_no_runs(function):
    empty = as_loaded(frame([run("t", "a", 0, 0.5)]).iloc[:0])
    out = function(empty)
    assert out.empty and not any(dtype == object for dtype in out.dtypes[
        [c for c in out.columns if c not in ("task", "task_type", "optimizer", "opponent",
                                             "metric_name", "better", "source", "resampled")]])


def test_loaded_dtypes_give_the_same_numbers():
    runs = profile_runs()
    pd.testing.assert_frame_equal(curves.performance_ratios(tuned(as_loaded(runs))),
                                  curves.performance_ratios(tuned(runs)))
    runs = hand_worked_runs()
    pd.testing.assert_frame_equal(comparisons.win_rates(tuned(as_loaded(runs))), comparisons.win_rates(tuned(runs)))


# ---------------------------------------------------------------- imports


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports at any level (module-level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "adaptbench":
            names.update(f"adaptbench.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", ["stats", "inference", "comparisons", "curves", "render"])
def test_module_cannot_reach_torch(module):
    # Follow adaptbench's own imports transitively; outside it, allow only libraries that do
    # not import torch themselves.
    package = Path(stats.__file__).parent
    allowed = {"numpy", "pandas", "scipy", "rich"}
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        seen.add(name)
        for imported in imported_modules(package / f"{name}.py"):
            top = imported.split(".")[0]
            if top == "adaptbench":
                inner = imported.split(".")[1]
                if inner not in seen:
                    todo.append(inner)
            elif top not in sys.stdlib_module_names:
                assert top in allowed, f"adaptbench.{name} imports {imported}"
