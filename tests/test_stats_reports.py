"""Tests for the report statistics: summary intervals, lr sensitivity, win-rate intervals, ranks,
A-against-B comparisons, profiles, ranks along the budget and the three claims. Each figure is
checked against scipy or a case worked out by hand in the test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from adaptbench import aggregate, claim_runs, claims, comparisons, curves, protocol, stats
from adaptbench.errors import UserError
from tests.test_stats import (diverged, frame, profile_runs, random_runs, run, select_lr, tuned,
                              tuned_summary)


# ---------------------------------------------------------------- summary, vectorised


@pytest.mark.parametrize("seed", range(3))
def test_summary_matches_scipy_group_by_group(seed):
    runs = random_runs(seed)
    out = stats.summary(runs).set_index(["task", "optimizer", "lr"])
    res = runs[runs["status"].isin(["done", "diverged"])]
    for key, group in res.groupby(["task", "optimizer", "lr"]):
        row = out.loc[key]
        x = group.loc[group["status"] == "done", "final_test_metric"].to_numpy(float)
        assert row["n"] == len(x)
        assert row["diverged"] == (group["status"] == "diverged").sum()
        if len(x) == 0:
            assert math.isnan(row["mean"])
            continue
        assert row["mean"] == pytest.approx(x.mean())
        if len(x) == 1:
            assert math.isnan(row["ci_low"])
        elif np.ptp(x) == 0:
            assert row["ci_low"] == row["ci_high"] == x[0]
        else:
            low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_summary_bootstrap_is_scipys_bca_per_group():
    # Metrics in quarters add up exactly, so scipy's resample means equal ours bit for bit.
    rng = np.random.default_rng(0)
    rows = [run("t", opt, s, float(rng.integers(0, 5)) / 4, lr=lr)
            for opt in ("adam", "sgd") for lr in (0.01, 0.1) for s in range(stats.BCA_MIN_N)]
    out = stats.summary(frame(rows), ci="bootstrap").set_index(["optimizer", "lr"])
    for (opt, lr), group in frame(rows).groupby(["optimizer", "lr"]):
        x = group["final_test_metric"].to_numpy(float)
        ref = sps.bootstrap((x,), np.mean, method="BCa", rng=np.random.default_rng(0))
        got = out.loc[(opt, lr)]
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(
            tuple(ref.confidence_interval), rel=1e-12)
    with pytest.raises(UserError, match="interval"):
        stats.summary(frame(rows), ci="wald")


def test_tuned_summary_is_summary_at_the_chosen_lr():
    runs = random_runs(1)
    tuned = tuned_summary(runs)
    chosen = select_lr(runs)
    merged = stats.summary(runs).merge(chosen[["task", "optimizer", "lr"]])
    columns = list(stats.SUMMARY_SCHEMA)
    pd.testing.assert_frame_equal(tuned[columns], merged[columns].reset_index(drop=True))
    assert (tuned["source"] == "selection").all()  # no evaluation runs: optimistic, and said so
    assert (tuned["selection_n"] == tuned["n"]).all() and (tuned["eval_n"] == 0).all()


# ---------------------------------------------------------------- lr sensitivity


def lr_runs() -> pd.DataFrame:
    """adam on t (accuracy), two seeds per lr; mean validation metric by lr:
        1e-4: 0.50   1e-3: 0.78   1e-2: 0.80 (best)   1e-1: 0.77   1: diverged on one seed
    Within 5% of 0.80 means >= 0.76: 1e-3, 1e-2 and 1e-1 -> band 1e-3..1e-1, 2 decades, 3 lrs.
    sgd on t: best at the largest lr tried (edge); 1e-2 is within 5% but 1e-1 between is not,
    so the band is only the best lr.
    """
    rows = []
    for lr, vals in [(1e-4, (0.5, 0.5)), (1e-3, (0.77, 0.79)), (1e-2, (0.8, 0.8)),
                     (1e-1, (0.76, 0.78))]:
        rows += [run("t", "adam", s, v, lr=lr) for s, v in enumerate(vals)]
    rows += [run("t", "adam", 0, 0.9, lr=1.0), diverged("t", "adam", 1, lr=1.0)]
    for lr, v in [(1e-2, 0.58), (1e-1, 0.5), (1.0, 0.6)]:
        rows += [run("t", "sgd", s, v, lr=lr) for s in range(2)]
    return frame(rows)


def test_lr_sensitivity_hand_worked():
    curve, tun = stats.lr_sensitivity(lr_runs(), metric="val", within=5)
    adam = tun.set_index("optimizer").loc["adam"]
    assert (adam["best_lr"], adam["lr_low"], adam["lr_high"]) == (1e-2, 1e-3, 1e-1)
    assert adam["band_decades"] == pytest.approx(2.0)
    assert (adam["band_lrs"], adam["lrs"], adam["at_edge"]) == (3, 5, False)
    assert adam["best_mean"] == pytest.approx(0.8)
    sgd = tun.set_index("optimizer").loc["sgd"]
    assert (sgd["best_lr"], sgd["band_lrs"], sgd["band_decades"], sgd["at_edge"]) == (1.0, 1, 0.0, True)
    row = curve.set_index(["optimizer", "lr"]).loc[("adam", 1.0)]
    assert (row["n"], row["diverged"], bool(row["in_band"])) == (1, 1, False)
    assert curve.set_index(["optimizer", "lr"]).loc[("adam", 1e-2), "best"]
    # A wider tolerance takes in 1e-4 too (0.5 is within 40% of 0.8).
    _, wide = stats.lr_sensitivity(lr_runs(), metric="val", within=40)
    assert wide.set_index("optimizer").loc["adam", "lr_low"] == 1e-4
    with pytest.raises(UserError):
        stats.lr_sensitivity(lr_runs(), within=-1)


def test_lr_sensitivity_lower_is_better():
    rows = [run("lm", "adam", s, v, lr=lr, higher_is_better=False)
            for lr, v in [(0.001, 21.0), (0.01, 20.0), (0.1, 20.9), (1.0, 30.0)] for s in range(2)]
    _, tun = stats.lr_sensitivity(frame(rows), "val", within=5)  # within 21.0 of 20
    row = tun.iloc[0]
    assert (row["best_lr"], row["lr_low"], row["lr_high"], row["band_lrs"]) == (0.01, 0.001, 0.1, 3)


# ---------------------------------------------------------------- win rates with intervals


@pytest.mark.parametrize("seed", range(2))
def test_win_rate_intervals_are_stratified_bootstraps_of_the_paired_wins(seed):
    runs = random_runs(seed)
    rates = comparisons.win_rates(tuned(runs)).set_index(["task_type", "optimizer", "opponent"])
    # the paired win values, recomputed here from the selected runs
    at = tuned(runs)
    at = at.assign(score=np.where(at["status"] == "done",
                                  np.where(at["higher_is_better"], 1, -1) * at["final_test_metric"],
                                  -np.inf))
    at = at[at["score"].notna()]
    for (kind, a, b), row in rates.iterrows():
        x = at[(at.optimizer == a) & (at.task_type == kind)]
        y = at[(at.optimizer == b) & (at.task_type == kind)]
        pairs = x.merge(y, on=["task", "seed"])
        wins = (pairs.score_x > pairs.score_y) + 0.5 * (pairs.score_x == pairs.score_y)
        per_task = [w.to_numpy(float) for _, w in wins.groupby(pairs["task"], sort=True)]
        assert row.win_rate == pytest.approx(np.mean([w.mean() for w in per_task]))
        assert row.tasks == len(per_task) and row.pairs == len(pairs)
        if a < b:
            ref = aggregate.stratified_bootstrap_ci(per_task, aggregate.mean_over_tasks, seed=0)
            assert row.resampled == ref.resampled
            if len(per_task) < 5 and min(len(w) for w in per_task) < 2:
                assert math.isnan(row.ci_low) and math.isnan(row.ci_high)
            else:
                assert (row.ci_low, row.ci_high) == pytest.approx((ref.low, ref.high))
        else:  # the other direction is the complement
            mirror = rates.loc[(kind, b, a)]
            assert row.win_rate == pytest.approx(1 - mirror.win_rate)
            if not math.isnan(row.ci_low):
                assert (row.ci_low, row.ci_high) == pytest.approx((1 - mirror.ci_high, 1 - mirror.ci_low))


def test_win_rate_interval_over_two_tasks_includes_the_seed_noise():
    # 2 tasks x 10 seeds of coin flips: a bootstrap over the 2 task rates would be their
    # range; the stratified interval reflects the 20 noisy seeds
    rng = np.random.default_rng(3)
    rows = []
    for t in range(2):
        for s in range(10):
            a, b = rng.random(2)
            rows += [run(f"t{t}", "adam", s, a), run(f"t{t}", "sgd", s, b)]
    rates = comparisons.win_rates(tuned(frame(rows))).set_index(["optimizer", "opponent"])
    row = rates.loc[("adam", "sgd")]
    assert row.resampled == "seeds" and row.ci_high - row.ci_low > 0.25


# ---------------------------------------------------------------- ranks and tests


def test_mean_ranks_use_only_tasks_with_every_optimizer():
    # t1, t2 have a, b, c (one seed); t3 lacks c, so it is left out of the averages.
    values = {"t1": (0.9, 0.8, 0.7), "t2": (0.7, 0.9, 0.8)}
    rows = [run(t, o, 0, v) for t, vs in values.items() for o, v in zip("abc", vs)]
    rows += [run("t3", "a", 0, 0.1), run("t3", "b", 0, 0.9)]
    out = comparisons.mean_ranks(tuned(frame(rows))).set_index("optimizer")
    assert out["mean_rank"].to_dict() == {"a": 2.0, "b": 1.5, "c": 2.5}
    assert set(out["tasks"]) == {2} and set(out["left_out"]) == {1}


def test_pairwise_tests_flag_significant_pairs_after_holm():
    # adam beats sgd on 7 tasks: exact p = 2/128; adam and lion tie everywhere (p = 1);
    # lion beats sgd on 7 tasks too. Holm over 3 pairs: 3 * 2/128 and 2 * 2/128 < 0.05.
    rows = []
    for t in range(7):
        rows += [run(f"t{t}", "adam", 0, 0.9), run(f"t{t}", "sgd", 0, 0.5),
                 run(f"t{t}", "lion", 0, 0.9)]
    out = comparisons.pairwise_tests(tuned(frame(rows))).set_index(["optimizer", "opponent"])
    assert out.loc[("adam", "sgd"), "p_value"] == pytest.approx(2 / 128)
    assert out.loc[("adam", "sgd"), "p_holm"] == pytest.approx(3 * 2 / 128)
    assert bool(out.loc[("adam", "sgd"), "significant"]) and out.loc[("adam", "sgd"), "better"] == "adam"
    assert bool(out.loc[("lion", "sgd"), "significant"]) and out.loc[("lion", "sgd"), "better"] == "lion"
    assert not out.loc[("adam", "lion"), "significant"] and out.loc[("adam", "lion"), "better"] == ""
    fried = comparisons.friedman(tuned(frame(rows)))
    ref = sps.friedmanchisquare([1.5] * 7, [1.5] * 7, [3.0] * 7)
    assert fried["p_value"].iloc[0] == pytest.approx(ref.pvalue) and bool(fried["significant"].iloc[0])


# ---------------------------------------------------------------- compare A B


def compare_runs() -> pd.DataFrame:
    """adam vs sgd. Task "a" (accuracy): differences over seeds 0.10, 0.20, 0.15, 0.05.
    Task "b" (loss-like, lower is better): adam 2.0, 2.1, 1.9; sgd 2.0, 2.0, 2.0 -> oriented
    differences 0, -0.1, +0.1. Task "c": sgd diverges on both seeds, adam does not."""
    rows = []
    for s, (x, y) in enumerate([(0.9, 0.8), (0.8, 0.6), (0.85, 0.7), (0.75, 0.7)]):
        rows += [run("a", "adam", s, x), run("a", "sgd", s, y)]
    for s, (x, y) in enumerate([(2.0, 2.0), (2.1, 2.0), (1.9, 2.0)]):
        rows += [run("b", "adam", s, x, higher_is_better=False),
                 run("b", "sgd", s, y, higher_is_better=False)]
    rows += [run("c", "adam", s, 0.5) for s in range(2)] + [diverged("c", "sgd", s) for s in range(2)]
    return frame(rows)


def test_compare_per_task_matches_scipy():
    per_task, overall = comparisons.compare(tuned(compare_runs()), "adam", "sgd")
    a = per_task.set_index("task").loc["a"]
    d = np.array([0.9, 0.8, 0.85, 0.75]) - np.array([0.8, 0.6, 0.7, 0.7])
    ref = sps.ttest_rel([0.9, 0.8, 0.85, 0.75], [0.8, 0.6, 0.7, 0.7])
    low, high = sps.t.interval(0.95, 3, loc=d.mean(), scale=sps.sem(d))
    assert a["advantage"] == pytest.approx(d.mean())
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((low, high))
    assert a["p_value"] == pytest.approx(ref.pvalue)
    assert a["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert (a["a_mean"], a["b_mean"], a["win_rate"]) == pytest.approx((0.825, 0.7, 1.0))
    assert a["verdict"].startswith("adam better")
    b = per_task.set_index("task").loc["b"]
    assert b["advantage"] == pytest.approx(0.0, abs=1e-12) and b["win_rate"] == 0.5
    assert b["verdict"].startswith("no significant difference")
    c = per_task.set_index("task").loc["c"]
    assert (c["pairs"], c["a_diverged"], c["b_diverged"], c["win_rate"]) == (2, 0, 2, 1.0)
    assert math.isnan(c["advantage"])
    assert c["verdict"] == "adam better: sgd diverged more often; sgd diverged on 2 of 2 seeds"


def test_compare_over_tasks():
    _, overall = comparisons.compare(tuned(compare_runs()), "adam", "sgd")
    row = overall.iloc[0]  # one task type: no "(all)" row
    assert len(overall) == 1 and row["task_type"] == "vision"
    assert (row["tasks"], row["a_wins"], row["b_wins"], row["even"]) == (3, 2, 0, 1)
    assert row["win_rate"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert row["p_value"] == pytest.approx(sps.wilcoxon([0.5, 0.5]).pvalue)  # the even task drops
    assert row["effect_size"] == 1.0
    assert "fewer than 6 tasks" in row["verdict"]


def test_compare_refuses_unknown_or_equal_optimizers():
    with pytest.raises(UserError, match="'lion'.*adam, sgd"):
        comparisons.compare(tuned(compare_runs()), "adam", "lion")
    with pytest.raises(UserError, match="two different"):
        comparisons.compare(tuned(compare_runs()), "adam", "adam")


# ---------------------------------------------------------------- profiles and curves


def test_profile_area_closed_form():
    # Ratios (see tests.test_stats.profile_runs): adam 1, ∞, 1; sgd 2, 1, 1.
    # area = mean over tasks of max(0, 4 - r) / 3: adam (1 + 0 + 1) / 3, sgd (2/3 + 1 + 1) / 3.
    area = curves.profile_area(curves.performance_ratios(tuned(profile_runs()))).set_index("optimizer")
    assert area.loc["adam", "area"] == pytest.approx(2 / 3)
    assert area.loc["sgd", "area"] == pytest.approx(8 / 9)
    assert (area.loc["adam", "solved"], area.loc["sgd", "solved"]) == (2, 3)
    at = curves.profile_at(curves.performance_ratios(tuned(profile_runs())), (1.0, 2.0)).set_index("optimizer")
    assert at.loc["sgd", "rho_1"] == pytest.approx(2 / 3) and at.loc["sgd", "rho_2"] == 1.0


def curve_rows(run_id: int, steps: list[int], values: list[float], split: str = "val") -> list[dict]:
    return [{"run_id": run_id, "step": s, "split": split, "loss": v if split == "train" else 1 - v,
             "metric": None if split == "train" else v, "elapsed": 0.0}
            for s, v in zip(steps, values)]


def speed_fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task t, 100 steps, evaluations every 20 (so 10% = step 10 is a tie between 0 and 20:
    the earlier, step 0, is used; 25% -> 20; 100% -> 100). Seed 0:
        fast: val 0.5 0.8 0.8 0.8 0.8 0.8 -> at 10%: 0.5, 25%: 0.8, 100%: 0.8
        slow: val 0.5 0.3 0.5 0.7 0.9 0.9 -> 0.5, 0.3, 0.9
        boom: val 0.6 0.9, diverged at step 30 -> 0.6, 0.9, -inf at 100%
    Ranks (1 = best): 10%: boom 1, fast/slow 2.5; 25%: boom 1, fast 2, slow 3;
    100%: slow 1, fast 2, boom 3.
    """
    steps = [0, 20, 40, 60, 80, 100]
    runs = frame([run("t", "fast", 0, 0.8), run("t", "slow", 0, 0.9), diverged("t", "boom", 0)])
    runs.loc[2, "diverged_at_step"] = 30
    pts = (curve_rows(1, steps, [0.5, 0.8, 0.8, 0.8, 0.8, 0.8])
           + curve_rows(2, steps, [0.5, 0.3, 0.5, 0.7, 0.9, 0.9])
           + curve_rows(3, [0, 20], [0.6, 0.9]))
    return runs, pd.DataFrame(pts)


def test_values_at_nearest_step_ties_and_divergence():
    runs, pts = speed_fixture()
    values = curves.values_at(tuned(runs), pts).set_index(["optimizer", "fraction"])
    assert values.loc[("fast", 0.1), "step"] == 0 and values.loc[("fast", 0.1), "score"] == 0.5
    assert values.loc[("slow", 0.25), "score"] == 0.3
    assert values.loc[("boom", 0.25), "score"] == 0.9
    assert values.loc[("boom", 1.0), "score"] == -np.inf


def test_speed_ranks_hand_worked():
    runs, pts = speed_fixture()
    by_task, by_type = curves.speed(tuned(runs), pts)
    got = by_task.set_index("optimizer")[["rank_10", "rank_25", "rank_100"]].to_dict("index")
    assert got == {"boom": {"rank_10": 1.0, "rank_25": 1.0, "rank_100": 3.0},
                   "fast": {"rank_10": 2.5, "rank_25": 2.0, "rank_100": 2.0},
                   "slow": {"rank_10": 2.5, "rank_25": 3.0, "rank_100": 1.0}}
    late = by_type.set_index("optimizer")["late_minus_early"].to_dict()
    assert late == {"boom": 2.0, "fast": -0.5, "slow": -1.5}


def test_speed_reads_a_run_that_diverged_before_any_evaluation_at_the_nominal_fractions():
    runs, pts = speed_fixture()
    early = diverged("t", "early", 0)
    runs = frame([*runs.drop(columns="id").to_dict("records"), early])
    runs.loc[3, "diverged_at_step"] = 3  # no curve point at all
    by_task, _ = curves.speed(tuned(runs), pts)
    row = by_task.set_index("optimizer").loc["early"]
    assert (row["read_10"], row["read_25"], row["read_100"]) == (0.1, 0.25, 1.0)
    assert row["rank_10"] == 4.0 and row["rank_100"] == 3.5  # the worst; at 100% tied with boom
    boom = by_task.set_index("optimizer").loc["boom"]
    assert boom["read_100"] == 1.0  # diverged at 30: counted at 100%, not at its last evaluation


def test_steps_to_target_on_the_test_split_from_curves():
    runs, pts = speed_fixture()
    runs["target"] = 0.75
    pts = pd.concat([pts, pd.DataFrame(curve_rows(1, [0, 20, 40], [0.5, 0.6, 0.8], "test"))])
    cost = curves.run_costs(runs, "test", pts)
    assert cost.tolist() == [40.0, np.inf, np.inf]  # slow has no test curve; boom diverged
    with pytest.raises(UserError, match="train"):
        curves.run_costs(runs, "train", pts)


# ---------------------------------------------------------------- claims


def _calibration():
    """benchmarks/calibration.py, whose synthetic studies the claims tests reuse."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "adaptbench_calibration"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "benchmarks" / "calibration.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


CAL = _calibration()


def scenario(name: str):
    return next(s for s in CAL.SCENARIOS if s.name == name)


def check_frames(runs: pd.DataFrame, points: pd.DataFrame | None, metric: str = "test",
                 variants: str = "plain"):
    """`report claims` without a database: select once, then the claims."""
    return claims.check(protocol.select(runs).runs, points, metric,
                        protocol.select(runs, "fixed").runs, variants)


@pytest.fixture(scope="module")
def decisive():
    """A synthetic study (benchmarks/calibration.py) in which every claim holds strongly."""
    s = CAL.Scenario("all", "", shift={"adam": 4.0}, sparse_shift={"rmsprop": 3.5},
                     speed={"adam": 0.5}, gaps={"adagrad": (0.02, 0.06, 0.08)})
    runs, points = CAL.frames(s, 3)
    return runs, points, check_frames(runs, points)


def _t(values: list[float], threshold: float, above: bool):
    test = sps.ttest_1samp(values, threshold, alternative="greater" if above else "less")
    low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                               scale=sps.sem(values))
    return test.pvalue, low, high


def _row(statistics: pd.DataFrame, claim: str, part: str, start: str) -> pd.Series:
    mine = statistics[(statistics["claim"] == claim) & (statistics["part"] == part)]
    return mine[mine["statistic"].str.startswith(start)].iloc[0]


def test_claims_supported_where_every_claim_holds(decisive):
    _, _, (verdicts, statistics, missing) = decisive
    assert verdicts.set_index("claim")["verdict"].to_dict() == {
        "a": "supported", "b": "supported", "c": "supported"}
    assert missing.empty
    scope = verdicts.set_index("claim")["scope"]
    assert scope["a"].startswith("on this suite of 10 tasks of types dense, sparse (speed: the 10")
    assert "5 sparse tasks and their dense twins" in scope["b"]
    assert "5 tasks run at 1x, 4x, 16x the default budget" in scope["c"]
    tested = statistics[statistics["verdict"] != "context"]
    assert set(tested["part"]) == {"accuracy", "speed", "over sgd", "over momentum", "early",
                                   "late"}
    # Holm over the six parts, each part's p-value the largest of its conditions'
    part_p = tested.groupby(["claim", "part"])["p_value"].max()
    holm = tested.groupby(["claim", "part"])["p_holm"].first()
    order = np.argsort(part_p.to_numpy())
    expected = np.maximum.accumulate(np.minimum(1, part_p.to_numpy()[order] * (6 - np.arange(6))))
    assert holm.to_numpy()[order] == pytest.approx(expected)


def test_claim_c_counts_a_task_without_a_held_out_split_that_a_and_b_leave_out(decisive):
    runs, points, (_, before, _) = decisive
    marked = runs.assign(task_held_out=runs["task"] != "sparse-0")  # its validation = its test
    verdicts, statistics, missing = check_frames(marked, points)
    v = verdicts.set_index("claim")
    # (a) and (b) compare held-out figures: 9 tasks, and 4 twin pairs are too few for (b)
    assert v.loc["a", "scope"].startswith("on this suite of 9 tasks")
    assert v.loc["b", "verdict"] == "not enough data" and "found 4" in v.loc["b", "reason"]
    assert "without a held-out split, which (b) needs: sparse-0" in v.loc["b", "reason"]
    assert "name no twin" not in v.loc["b", "reason"]
    # (c) reads the full-batch training loss: its figures are those of the unmarked study
    columns = ["part", "statistic", "value", "ci_low", "ci_high", "p_value", "tasks", "runs"]
    c = lambda t: t[t["claim"] == "c"][columns].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(c(statistics), c(before))
    assert "5 tasks run at 1x, 4x, 16x the default budget" in v.loc["c", "scope"]
    assert v.loc["c", "verdict"] == "supported" and missing.empty


def test_a_dense_twin_without_a_held_out_split_in_claim_c_is_left_out_of_b(decisive, monkeypatch):
    runs, points, _ = decisive
    # dense-0 has no held-out split and is one of (c)'s tasks (its default budget is read there)
    monkeypatch.setattr(claim_runs, "LONG_TRAINING_TASKS", ("dense-0",))
    verdicts, _, _ = check_frames(runs.assign(task_held_out=runs["task"] != "dense-0"), points)
    v = verdicts.set_index("claim")
    assert v.loc["b", "verdict"] == "not enough data" and "found 4" in v.loc["b", "reason"]
    assert "without a held-out split, which (b) needs: dense-0" in v.loc["b", "reason"]
    assert "without results" not in v.loc["b", "reason"]
    assert v.loc["a", "scope"].startswith("on this suite of 9 tasks")


def test_claim_a_accuracy_is_scipys_mann_whitney_and_t_test(decisive):
    runs, _, (_, statistics, _) = decisive
    at = protocol.select(runs).runs
    at = at[at["steps"] == at["task_steps"]].assign(
        score=lambda r: np.where(r["status"] == "done", np.where(
            r["higher_is_better"], r["final_test_metric"], -r["final_test_metric"]), -np.inf))
    rivals = ("rmsprop", "adagrad", "sgd", "momentum")
    improvement, shortfall = {r: [] for r in rivals}, []
    for task, part in at.groupby("task"):
        x = {o: g["score"].to_numpy() for o, g in part.groupby("optimizer")}
        for r in rivals:
            improvement[r].append(sps.mannwhitneyu(x["adam"], x[r]).statistic
                                  / (len(x["adam"]) * len(x[r])))
        floor = min(v[np.isfinite(v)].min() for v in x.values())
        means = {o: np.where(np.isfinite(v), v, floor).mean() for o, v in x.items()}
        metric = part["metric_name"].iloc[0]
        margin = 0.01 if metric == "accuracy" else 0.02 * abs(max(means.values()))
        shortfall.append(min(10.0, (max(means.values()) - means["adam"]) / margin))
    cases = [(f"adam's probability of improvement over {r}", improvement[r], 0.5, True)
             for r in rivals] + [("adam's shortfall", shortfall, 1.0, False)]
    for start, values, threshold, above in cases:
        row = _row(statistics, "a", "accuracy", start)
        p, low, high = _t(values, threshold, above)
        assert row["value"] == pytest.approx(np.mean(values))
        assert (row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx((low, high, p))
        assert row["tasks"] == 10 and row["runs"] == 500
    part = statistics[(statistics["claim"] == "a") & (statistics["part"] == "accuracy")]
    assert part["p_holm"].nunique() == 1 and len(part) == 5
    speed = statistics[(statistics["claim"] == "a") & (statistics["part"] == "speed")]
    assert len(speed) == 4 and speed["statistic"].str.contains("fewer steps than").all()


def test_claim_b_is_the_sparse_minus_dense_improvement(decisive):
    runs, _, (_, statistics, _) = decisive
    at = protocol.select(runs).runs
    at = at[at["steps"] == at["task_steps"]]

    def poi(task: str, a: str, b: str) -> float:
        def x(o):
            g = at[(at["task"] == task) & (at["optimizer"] == o)]
            return np.where(g["status"] == "done", np.where(
                g["higher_is_better"], g["final_test_metric"], -g["final_test_metric"]), -np.inf)
        return sps.mannwhitneyu(x(a), x(b)).statistic / (len(x(a)) * len(x(b)))

    pairs = [(f"sparse-{i}", f"dense-{i}") for i in range(5)]
    for opponent in ("sgd", "momentum"):
        sparse = [poi(s, "rmsprop", opponent) for s, _ in pairs]
        diff = [poi(s, "rmsprop", opponent) - poi(d, "rmsprop", opponent) for s, d in pairs]
        for start, values, threshold in (("rmsprop's", sparse, 0.5), ("the same minus", diff, 0)):
            row = _row(statistics, "b", f"over {opponent}", start)
            p, low, high = _t(values, threshold, True)
            assert row["value"] == pytest.approx(np.mean(values))
            assert (row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx((low, high, p))
            # the runs behind the part: RMSprop's and the opponent's, on both sides of the pairs
            assert row["runs"] == len(at[at["optimizer"].isin(["rmsprop", opponent])
                                         & at["task"].isin([t for p in pairs for t in p])])
    context = statistics[statistics["verdict"] == "context"]
    assert context["statistic"].str.contains("over adam").any()
    assert context["statistic"].str.contains("over adagrad").any()
    # read on the sparse tasks: RMSprop's, Adam's and AdaGrad's runs there
    sparse = at[at["task"].isin([s for s, _ in pairs])]
    mine = context[context["claim"] == "b"]
    assert set(mine["runs"]) == {sparse["optimizer"].isin(["rmsprop", "adam", "adagrad"]).sum()}
    assert set(mine["tasks"]) == {5} and len(mine) == 2


def test_claim_c_is_the_normalised_gap_against_the_rivals(decisive):
    runs, points, (_, statistics, _) = decisive
    at = protocol.select(runs).runs
    at = at[at["task"].str.startswith("sparse")].assign(
        budget=lambda r: r["steps"] // r["task_steps"].astype(int),
        optimizer=lambda r: r["optimizer"].str.replace(r"@\d+steps", "", regex=True))
    initial = points.set_index("run_id")["loss"]
    rel = {}
    for task, part in at.groupby("task"):
        start = initial[part["id"]].median()  # every run's, a diverged one's too
        part = part[part["status"] == "done"]  # a diverged run has no final loss
        best = part["final_train_loss"].min()
        gap = (part["final_train_loss"] - best) / (start - best)
        means = gap.groupby([part["budget"], part["optimizer"]]).mean()
        rel[task] = {b: means[b]["adagrad"] - means[b].drop("adagrad").mean() for b in (1, 4, 16)}
    early = [r[1] for r in rel.values()]
    late = [r[16] for r in rel.values()]
    growth = [r[16] - r[1] for r in rel.values()]
    for part, start, values, threshold, above in (
            ("early", "adagrad's normalised gap minus its rivals' mean at 1x", early, 0.0, False),
            ("late", "adagrad's normalised gap minus its rivals' mean at 16x", late, 0.01, True),
            ("late", "growth", growth, 0.01, True)):
        row = _row(statistics, "c", part, start)
        p, low, high = _t(values, threshold, above)
        assert row["value"] == pytest.approx(np.mean(values))
        assert (row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx((low, high, p))
    late = _row(statistics, "c", "late", "adagrad's normalised gap minus its rivals' mean at 16x")
    assert "falls behind: sparse-0, sparse-1, sparse-2, sparse-3, sparse-4" in late["detail"]


def test_speed_takes_each_seeds_lr_from_the_other_seeds():
    # steps to target of one (task, optimizer) at two lrs on three seeds (None: not reached)
    costs = {0.1: [10, 50, None], 0.01: [40, 30, 20]}
    rows = []
    for lr, values in costs.items():
        for seed, v in enumerate(values):
            row = run("t", "adam", seed, 0.5, lr=lr)
            row.update(target=0.4, steps_to_target=math.nan if v is None else v)
            rows.append(row)
    out = claim_runs.speed_values(frame(rows)).set_index("seed")
    # seed 0: medians over seeds 1, 2: lr 0.1 -> inf, 0.01 -> 25: 0.01, cost 40
    # seed 1: over 0, 2: 0.1 -> inf, 0.01 -> 30: 0.01, cost 30
    # seed 2: over 0, 1: 0.1 -> 30, 0.01 -> 35: 0.1, cost inf (never reached)
    assert out["lr"].tolist() == [0.01, 0.01, 0.1]
    assert out["cost"].tolist() == [40, 30, math.inf]


def test_a_tie_at_the_end_is_no_stall_whatever_happens_early():
    runs, points = CAL.frames(scenario("early-leader"), 4)
    verdicts, statistics, _ = check_frames(runs, points)
    late = statistics[(statistics["claim"] == "c") & (statistics["part"] == "late")].iloc[0]
    assert late["verdict"] == "not supported"
    assert "ties at 16x" in late["detail"] and "falls behind: none" in late["detail"]
    early = statistics[(statistics["claim"] == "c") & (statistics["part"] == "early")].iloc[0]
    assert early["value"] < 0  # it does lead early
    assert verdicts.set_index("claim").loc["c", "verdict"] == "not supported"


def test_claims_not_enough_data_list_what_to_queue():
    runs, points = CAL.frames(scenario("equal"), 5)
    gone = ((runs["task"] == "sparse-1") & (runs["optimizer"] == "rmsprop")) | (
        (runs["task"] == "sparse-2") & (runs["optimizer"] == "adagrad") & (runs["steps"] == 8000))
    verdicts, statistics, missing = check_frames(runs[~gone], points)
    why = verdicts.set_index("claim")["reason"]
    assert verdicts["verdict"].tolist() == ["not supported", "not enough data", "not enough data"]
    assert "sparse-1 x rmsprop (0 of 5 seeds)" in why["b"]
    assert "found 4 (sparse-0/dense-0, sparse-2/dense-2" in why["b"]
    assert "`adaptbench run --study adaptive-lr --task sparse-1 --optim rmsprop`" in why["b"]
    assert "sparse-2 x adagrad at 8000 steps (0 of 5 seeds)" in why["c"]
    assert "`adaptbench run --study adaptive-lr --task sparse-2 --optim adagrad --steps 8000`" in why["c"]
    assert {("sparse-1", "rmsprop", 500), ("sparse-2", "adagrad", 8000)} <= set(
        zip(missing["task"], missing["optimizer"], missing["steps"]))
    # (a) is decided on the 9 complete tasks
    assert set(statistics.loc[statistics["claim"] == "a", "tasks"]) == {9}
    # without the lr grid or the initial losses the parts that read them wait
    verdicts, _, _ = claims.check(protocol.select(runs).runs, None)
    why = verdicts.set_index("claim")["reason"]
    assert "speed needs the selection runs at every lr" in why["a"]
    assert "initial training loss" in why["c"]
    # without any long-budget run (c) names the study's long-arm tasks and how to queue them
    short = runs[runs["steps"] == runs.groupby("task")["steps"].transform("min")]
    verdicts, _, _ = check_frames(short, points)
    why = verdicts.set_index("claim")["reason"]
    assert "no task has runs at 4x or 16x its default budget" in why["c"]
    assert "`adaptbench run --study adaptive-lr` queues them on the study's long-arm tasks (" in why["c"]


def test_claims_on_no_runs():
    runs, _ = CAL.frames(scenario("equal"), 5)
    verdicts, statistics, missing = check_frames(runs.iloc[:0], None)
    assert set(verdicts["verdict"]) == {"not enough data"} and statistics.empty and missing.empty
    assert "no task of type 'sparse' has results" in verdicts.set_index("claim").loc["b", "reason"]


def test_claims_use_the_study_preset():
    from adaptbench.spec import STUDY_PRESETS

    assert claims.CLAIMS_OPTIMIZERS == STUDY_PRESETS["adaptive-lr"].optimizers
    assert claims.CLAIMS_SEEDS == STUDY_PRESETS["adaptive-lr"].seeds == 5


def test_best_variant_is_chosen_like_the_lr_on_the_selection_seeds():
    from adaptbench import claim_runs

    s = CAL.Scenario("v", "", variant_shift={"sgd+warmup-cosine": 4.0, "adam{eps=0.01}": -4.0})
    runs, _ = CAL.frames(s, 7, variants=True)
    grid = protocol.select(runs, "fixed").runs
    chosen = claim_runs.best_variants(grid).set_index(["task", "optimizer"])
    # by hand: per (task, label) at the default budget, the lr with the fewest diverged seeds,
    # then the best mean validation metric; then the label the same way, plain first on a tie
    sel = runs[(runs["role"] == "selection") & (runs["steps"] == runs["task_steps"])]
    sel = sel.assign(label=protocol.variant_labels(sel))
    for (task, base), _ in chosen.iterrows():
        best = None
        for label, part in sel[sel["task"] == task].groupby("label"):
            if label.split("+")[0].split("{")[0] != base:
                continue
            for lr, at in part.groupby("lr"):
                done = at[at["status"] == "done"]["final_val_metric"]
                sign = 1 if at["higher_is_better"].iloc[0] else -1
                key = ((at["status"] != "done").mean(), -sign * done.mean(), label != base, label)
                best = min(best or (key, label), (key, label))
        assert chosen.loc[(task, base), "variant"] == best[1], (task, base)
    assert (chosen.xs("sgd", level="optimizer")["variant"] == "sgd+warmup-cosine").all()
    assert not (chosen.xs("adam", level="optimizer")["variant"] == "adam{eps=0.01}").any()
    assert set(chosen["variants"]) == {2, 3, 5}  # sgd and momentum, adagrad, adam and rmsprop
    # the chosen variant is named plainly, the others (the plain runs among them) left out
    plain = claim_runs.as_chosen(protocol.select(runs).runs, chosen.reset_index())
    at_default = plain[plain["steps"] == plain["task_steps"]]
    assert set(at_default["optimizer"]) == set(claims.CLAIMS_OPTIMIZERS)
    sgd = at_default[at_default["optimizer"] == "sgd"]
    assert (sgd["schedule"] == "warmup-cosine").all() and len(sgd) == 10 * 10
    longer = plain[plain["steps"] > plain["task_steps"]]
    assert (longer["schedule"] == "constant").all() and (longer["params"] == "{}").all()


def _variant_runs(values: dict[str, list], role: str = "selection") -> pd.DataFrame:
    """Runs of one task: label -> per-seed validation metrics at lr 0.1 (None: diverged)."""
    rows = []
    for label, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"id": len(rows) + 1, "task": "t", "task_type": "dense", "optimizer": label,
                         "lr": 0.1, "seed": seed, "role": role, "higher_is_better": True,
                         "status": "done" if v is not None else "diverged",
                         "final_val_metric": v, "steps": 100, "task_steps": 100.0})
    return pd.DataFrame(rows)


def test_best_variant_ties_go_to_the_plain_optimizer_and_unfinished_ones_wait():
    from adaptbench import claim_runs

    grid = _variant_runs({
        "adam": [0.5, 0.6, 0.7], "adam+warmup-cosine": [0.7, 0.6, 0.5],  # a tie: plain
        "sgd": [0.5, 0.5, 0.5], "sgd{momentum=0.5}": [0.6, 0.6, 0.6],  # the better one
        "momentum": [None, 0.9, 0.9], "momentum+warmup-cosine": [0.1, 0.1, 0.1],  # fewer diverged
        "rmsprop": [0.5, 0.5, 0.5], "rmsprop+warmup-cosine": [0.9, 0.9, 0.9],
        "adagrad@400steps": [0.9, 0.9, 0.9], "adagrad": [0.1, 0.1, 0.1]})
    chosen = claim_runs.best_variants(grid).set_index("optimizer")["variant"].to_dict()
    assert chosen == {"adam": "adam", "sgd": "sgd{momentum=0.5}",
                      "momentum": "momentum+warmup-cosine", "rmsprop": "rmsprop+warmup-cosine",
                      "adagrad": "adagrad"}
    # rmsprop+warmup-cosine has no evaluation seeds yet, rmsprop has: it waits
    selected = pd.concat([_variant_runs({"rmsprop": [0.5] * 10}, "evaluation"),
                          _variant_runs({"rmsprop+warmup-cosine": [0.9] * 3})])
    got = claim_runs.best_variants(grid, selected).set_index("optimizer")
    assert got.loc["rmsprop", "variant"] == "rmsprop" and got.loc["rmsprop", "waiting"] == 1
    assert got.loc["sgd", "variant"] == "sgd{momentum=0.5}"  # none evaluated: all are candidates
    # two evaluation seeds of ten are too few (MIN_SEEDS = 3): the variant still waits
    selected = pd.concat([selected, _variant_runs({"sgd": [0.5] * 10}, "evaluation"),
                          _variant_runs({"sgd{momentum=0.5}": [0.6] * 2}, "evaluation")])
    got = claim_runs.best_variants(grid, selected).set_index("optimizer")
    assert got.loc["sgd", "variant"] == "sgd" and got.loc["sgd", "waiting"] == 1
    text = claim_runs.variant_counts(got.reset_index(), ["t"])
    assert "rmsprop (2 variants): plain 1" in text and "2 (task, variant) pairs wait" in text


def test_speed_tunes_the_variant_with_the_lr_on_the_other_seeds():
    from adaptbench import claim_runs

    rows = []
    costs = {("adam", 0.1): [100, 100, 100, 100], ("adam+warmup-cosine", 0.1): [50, 60, 400, 55],
             ("adam", 0.01): [300, 300, 300, 300], ("adam{eps=0.01}", 0.05): [100, 100, 100, 100]}
    for (label, lr), steps in costs.items():
        for seed, c in enumerate(steps):
            rows.append({"id": len(rows) + 1, "task": "t", "task_type": "dense",
                         "optimizer": label, "lr": lr, "seed": seed, "role": "selection",
                         "status": "done", "steps_to_target": float(c), "target": 0.5,
                         "eval_every": 10, "steps": 1000, "task_steps": 1000.0,
                         "higher_is_better": True, "final_val_metric": 0.5})
    got = claim_runs.speed_values(claim_runs.as_candidates(pd.DataFrame(rows)))
    # seed 2: warmup-cosine's median over seeds 0, 1, 3 is 55, the fewest: its 400 counts
    assert got["cost"].tolist() == [50.0, 60.0, 400.0, 55.0]
    assert (got["optimizer"] == "adam").all() and (got["lr"] == 0.1).all()
    # without it, adam (lr 0.1) and adam{eps=0.01} (lr 0.05) tie at 100 on every seed: the
    # plain one wins the tie, not the smaller lr
    no_cosine = pd.DataFrame(rows)
    no_cosine = no_cosine[no_cosine["optimizer"] != "adam+warmup-cosine"]
    tie = claim_runs.speed_values(claim_runs.as_candidates(no_cosine))
    assert tie["cost"].tolist() == [100.0] * 4 and (tie["lr"] == 0.1).all()
    # a variant that has run one seed so far waits: the others' seeds all count
    unfinished = pd.DataFrame(rows)
    unfinished = unfinished[(unfinished["optimizer"] != "adam+warmup-cosine")
                            | (unfinished["seed"] == 0)]
    waits = claim_runs.speed_values(claim_runs.as_candidates(unfinished))
    assert waits["cost"].tolist() == [100.0] * 4


def test_claims_with_best_variants_compare_each_optimizer_at_its_best():
    # Adam beats the plain rivals by 2σ, but each rival's warmup-cosine variant is as good:
    # read plainly, Adam's accuracy part is supported; at the best variants it is not
    s = scenario("adam-best-untuned")
    runs, points = CAL.frames(s, 11, variants=True)
    accuracy = {}
    for variants in ("plain", "best"):
        verdicts, statistics, _ = check_frames(runs, points, variants=variants)
        part = statistics[(statistics["claim"] == "a") & (statistics["part"] == "accuracy")]
        accuracy[variants] = set(part["verdict"])
        scope = verdicts.set_index("claim")["scope"]
        if variants == "best":
            assert "each optimizer at its best variant per task" in scope["a"]
            assert "sgd (2 variants): +warmup-cosine 10" in scope["a"]
            assert "adam (5 variants): " in scope["b"]
            assert "best variant" not in scope["c"]
        else:
            assert "variant" not in scope["a"]
    assert accuracy == {"plain": {"supported"}, "best": {"not supported"}}
    with pytest.raises(ValueError, match="pass grid"):
        claims.check(protocol.select(runs).runs, points, "test", None, "best")


@pytest.mark.parametrize("name, variants", [("equal", False), ("early-leader", False),
                                            ("equal", True)])
def test_calibration_guard_no_verdict_from_ties(name, variants):
    # benchmarks/calibration.py measures the false-positive rates over 200 studies written to
    # databases; here the same studies in memory (`frames`: the same verdicts), 10 of each of
    # the two nulls in which every optimizer ends tied. Expected about 0.1 SUPPORTED in 10;
    # the seeds are fixed, so the test is deterministic
    found = {k: 0 for k in ("a", "b", "c", "accuracy")}
    for seed in range(10):
        verdicts, statistics, _ = check_frames(*CAL.frames(scenario(name), 100 + seed, variants),
                                               variants="best" if variants else "plain")
        got = verdicts.set_index("claim")["verdict"]
        for claim in "abc":
            found[claim] += got[claim] == "supported"
        accuracy = statistics[(statistics["claim"] == "a") & (statistics["part"] == "accuracy")]
        found["accuracy"] += (accuracy["verdict"] == "supported").any()
    assert found["b"] + found["c"] + found["accuracy"] <= 1, found


# ---------------------------------------------------------------- rliable's aggregates


def test_iqm_summary_is_scipys_trimmed_mean_per_group():
    rng = np.random.default_rng(5)
    rows = [run("t", o, s, float(v)) for o in ("adam", "sgd") for s, v in enumerate(rng.random(8))]
    rows.append(diverged("t", "adam", 8))
    out = stats.summary(frame(rows), ci="iqm").set_index("optimizer")
    for opt in ("adam", "sgd"):
        x = np.array([r["final_test_metric"] for r in rows
                      if r["optimizer"] == opt and r["status"] == "done"])
        assert out.loc[opt, "mean"] == pytest.approx(sps.trim_mean(x, 0.25))
        assert out.loc[opt, "n"] == 8
        assert out.loc[opt, "ci_low"] <= out.loc[opt, "mean"] <= out.loc[opt, "ci_high"]


def test_probability_of_improvement_is_the_mann_whitney_share_averaged_over_tasks():
    rng = np.random.default_rng(6)
    rows = []
    for t in ("t0", "t1", "t2"):
        rows += [run(t, "adam", s, float(v)) for s, v in enumerate(rng.random(6).round(1))]
        rows += [run(t, "sgd", s, float(v)) for s, v in enumerate(rng.random(4).round(1))]
    runs = frame(rows)
    out = comparisons.improvement(tuned(runs)).set_index(["optimizer", "opponent"])
    shares = []
    for t in ("t0", "t1", "t2"):
        x = runs[(runs.task == t) & (runs.optimizer == "adam")]["final_test_metric"]
        y = runs[(runs.task == t) & (runs.optimizer == "sgd")]["final_test_metric"]
        shares.append(sps.mannwhitneyu(x, y).statistic / (len(x) * len(y)))
    row = out.loc[("adam", "sgd")]
    assert row.probability == pytest.approx(np.mean(shares))
    assert out.loc[("sgd", "adam")].probability == pytest.approx(1 - np.mean(shares))
    assert row.resampled == "seeds" and row.ci_low < row.probability < row.ci_high
