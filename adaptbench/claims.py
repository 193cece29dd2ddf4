"""Three claims the adaptive-lr literature repeats, each checked against the stored runs.

Every claim is turned into a statistic with a 95% interval and a verdict: *supported* (the
interval lies entirely on the claim's side of its threshold), *not supported* (it does not),
or *not enough data* (fewer than MIN_TASKS (5) tasks on which every optimizer the claim needs
has at least MIN_SEEDS seeds at its selected lr; the missing (task, optimizer) combinations are
named). No claim is decided over fewer than 5 tasks: an interval over 2 tasks is their range.
All figures use the runs the tuned protocol selected (`protocol.select`: lr chosen per (task,
optimizer) on the mean validation metric of the selection seeds, figures from the evaluation
seeds where they exist) and only the optimizers of the `adaptive-lr` study preset.

(a) "Adam converges fastest and reaches high accuracy on most tasks." Two shares of tasks, each
    with an exact (Clopper–Pearson) interval; the claim is supported if both lower bounds
    exceed ½:
    - accuracy: tasks on which Adam is at the top: it has the best tuned mean final metric of
      the five optimizers (diverging on fewer seeds ranks first), or it diverges no more often
      than the best one and a paired two-sided t-test over their common seeds finds no
      difference at α = 0.05;
    - speed: tasks on which Adam reaches the task's target in the fewest steps (median over
      seeds of the stored steps to target on the validation metric, ∞ if not reached; ties
      count as fastest), among tasks with a target that some optimizer reaches.
(b) "RMSprop does well on sparse data." On the tasks of type 'sparse': RMSprop's paired win
    rate over SGD and over momentum (per task over seeds, then the mean over tasks), each with
    the stratified bootstrap interval (seeds resampled within tasks, and the tasks too);
    supported if both lower bounds exceed ½.
(c) "AdaGrad drops the loss fast early but falls behind in long training." From the training
    loss curves (mean minibatch loss at the evaluation step nearest 10% and 100% of the budget):
    AdaGrad's rank among the five optimizers at each point (1 = lowest loss; mean over seeds
    per task); the statistic is the mean over tasks of rank(100%) - rank(10%), with a
    percentile bootstrap interval over tasks; supported if its lower bound exceeds 0 and
    AdaGrad's mean rank at 10% is better than the middle rank ((k + 1) / 2).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from adaptbench import inference
from adaptbench.comparisons import (ALPHA, bootstrap_over_tasks, paired_wins, pairwise_task_rates,
                                    stratified_interval)
from adaptbench.curves import ranks_at, run_costs, values_at
from adaptbench.spec import STUDY_PRESETS
from adaptbench.protocol import results_only
from adaptbench.stats import scored, table

STUDY = STUDY_PRESETS["adaptive-lr"]
CLAIMS_OPTIMIZERS: tuple[str, ...] = STUDY.optimizers
CLAIMS_SEEDS: int = STUDY.seeds  # what the study queues per (task, optimizer, lr)
MIN_SEEDS = 3  # fewer seeds at the tuned lr and a (task, optimizer) does not count
MIN_TASKS = 5  # no statistic over tasks from fewer (an interval over 2 tasks is their range)
MOST = 0.5
SPARSE = "sparse"
EARLY, LATE = 0.1, 1.0
SUPPORTED, NOT_SUPPORTED, NOT_ENOUGH = "supported", "not supported", "not enough data"
STATEMENTS = {
    "a": "Adam converges fastest and reaches high accuracy on most tasks",
    "b": "RMSprop does well on sparse data",
    "c": "AdaGrad drops the loss fast early but falls behind in long training",
}
NEEDS = {"a": CLAIMS_OPTIMIZERS, "b": ("rmsprop", "sgd", "momentum"), "c": CLAIMS_OPTIMIZERS}
_S, _F, _I = object, float, int
CLAIM_SCHEMA = {"claim": _S, "statement": _S, "verdict": _S, "reason": _S}
STAT_SCHEMA = {
    "claim": _S, "statistic": _S, "value": _F, "ci_low": _F, "ci_high": _F, "threshold": _F,
    "tasks": _I, "verdict": _S, "detail": _S,
}
MISSING_SCHEMA = {"task": _S, "task_type": _S, "optimizer": _S, "seeds": _I, "needed": _I}


_PLAIN = re.compile(r"^(?P<base>[a-z]+)(?P<budget>(@\d+steps)?(/b\d+)?)$")


def left_out(runs: pd.DataFrame) -> dict[str, str]:
    """The tasks of these runs that no claim counts, each with the reason: a demonstration
    (`Task.claims` False) or a task whose validation and test are the same quantity
    (`Task.held_out` False: it has no held-out figure). Recorded with each run at queue time;
    runs from before that was recorded count."""
    out: dict[str, str] = {}
    for column, why in (("task_claims", "a demonstration, outside the claims"),
                        ("task_held_out", "validation = test: no held-out figure")):
        if column in runs:
            flag = runs[column]
            for task in runs.loc[flag.notna() & (flag == False), "task"].unique():  # noqa: E712
                out.setdefault(str(task), why)
    return out


def _claims_tasks(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the tasks the claims count (see `left_out`)."""
    out = left_out(runs)
    return runs[~runs["task"].isin(list(out))] if out else runs


def claims_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The selected result runs of the claims optimizers at default settings, named plainly.

    A claim compares optimizers at one budget: per task, the runs at the task's default budget
    and batch size (label `adam`), or where there are none, at the one other budget all of the
    task's runs share (`adam@20steps` counts as `adam`). Variants with other schedules or
    hyperparameters (`adam+cosine`) are not the optimizers the claims are about.
    """
    res = _claims_tasks(results_only(runs))
    parts = res["optimizer"].str.extract(_PLAIN)
    ok = parts["base"].isin(CLAIMS_OPTIMIZERS)
    res, parts = res[ok], parts[ok]
    keep = []
    for _, budgets in parts.groupby(res["task"])["budget"]:
        choice = "" if (budgets == "").any() else budgets.mode().iloc[0]
        keep.append(budgets.index[budgets == choice])
    index = pd.Index([]).append(keep) if keep else pd.Index([])
    return res.loc[index].assign(optimizer=parts.loc[index, "base"]).sort_values("id")


def _tuned(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """The claims optimizers' selected runs (`claims_runs`), scored (`stats.scored`)."""
    return scored(claims_runs(runs), metric)


def coverage(runs: pd.DataFrame, tuned: pd.DataFrame | None = None) -> pd.DataFrame:
    """Result seeds at the tuned lr of every (task, claims optimizer), tasks from the runs.

    Columns: task, task_type, optimizer, seeds. `tuned`: `_tuned(runs)`, if already computed.
    """
    res = _claims_tasks(results_only(runs))
    tasks = res.groupby("task", sort=True)["task_type"].first()
    grid = pd.MultiIndex.from_product([tasks.index, CLAIMS_OPTIMIZERS], names=["task", "optimizer"])
    tuned = claims_runs(res) if tuned is None else tuned
    seeds = tuned.groupby(["task", "optimizer"]).size()
    out = pd.DataFrame(index=grid).join(seeds.rename("seeds")).fillna({"seeds": 0}).reset_index()
    out["task_type"] = out["task"].map(tasks)
    return out[["task", "task_type", "optimizer", "seeds"]].astype({"seeds": int})


def missing(cov: pd.DataFrame) -> pd.DataFrame:
    """The (task, claims optimizer) combinations of a `coverage` table with fewer seeds than
    the study queues."""
    out = cov[cov["seeds"] < CLAIMS_SEEDS].assign(needed=CLAIMS_SEEDS)
    return table(out, MISSING_SCHEMA)


def _usable_tasks(cov: pd.DataFrame, optimizers: tuple[str, ...], task_type: str | None = None) -> list[str]:
    part = cov[cov["optimizer"].isin(optimizers)]
    if task_type is not None:
        part = part[part["task_type"] == task_type]
    ok = part.assign(ok=part["seeds"] >= MIN_SEEDS).groupby("task")["ok"].all()
    return sorted(ok[ok].index)


def _not_enough(cov: pd.DataFrame, claim: str, found: list[str], task_type: str | None = None) -> str:
    optimizers = NEEDS[claim]
    where = f" of type {task_type!r}" if task_type else ""
    text = (f"needs >= {MIN_TASKS} tasks{where} on which each of {', '.join(optimizers)} has "
            f">= {MIN_SEEDS} seeds at its tuned lr; found {len(found)}"
            + (f" ({', '.join(found)})" if found else ""))
    part = cov[cov["optimizer"].isin(optimizers) & (cov["seeds"] < MIN_SEEDS)]
    if task_type is not None:
        part = part[part["task_type"] == task_type]
    if task_type is not None and cov[cov["task_type"] == task_type].empty:
        text += f"; no task of type {task_type!r} has results"
    if len(part):
        combos = [f"{r.task} x {r.optimizer} ({r.seeds} of {CLAIMS_SEEDS} seeds)"
                  for r in part.head(8).itertuples()]
        more = f", and {len(part) - 8} more" if len(part) > 8 else ""
        text += "; missing: " + ", ".join(combos) + more
    return text + "; queue them with `adaptbench run --study adaptive-lr`"


def _share_row(claim: str, name: str, hits: list[str], tasks: list[str], detail: str) -> dict:
    k, n = len(hits), len(tasks)
    low, high = inference.clopper_pearson(k, n)
    verdict = SUPPORTED if n and low > MOST else NOT_SUPPORTED
    return {"claim": claim, "statistic": name, "value": k / n if n else np.nan, "ci_low": low,
            "ci_high": high, "threshold": MOST, "tasks": n, "verdict": verdict,
            "detail": f"{k} of {n} tasks; " + detail}


def _claim_a(at: pd.DataFrame, tasks: list[str], metric: str) -> list[dict]:
    at = at[at["task"].isin(tasks)]
    at = at.assign(div=(at["status"] == "diverged").astype(float),
                   finite=at["score"].where(np.isfinite(at["score"])))
    per = at.groupby(["task", "optimizer"]).agg(div=("div", "mean"), mean=("finite", "mean"))
    per = per.reset_index().sort_values(["task", "div", "mean"], ascending=[True, True, False],
                                        na_position="last", kind="mergesort")
    best = per.groupby("task").head(1).set_index("task")["optimizer"]
    div = per.set_index(["task", "optimizer"])["div"]
    wide = at.pivot(index=["task", "seed"], columns="optimizer", values="finite")
    top, beaten = [], []
    means = per.set_index(["task", "optimizer"])["mean"]
    for task in tasks:
        leader = best[task]
        ma, ml = means[(task, "adam")], means[(task, leader)]
        tied = div[(task, "adam")] == div[(task, leader)] and (ma == ml or (ma != ma and ml != ml))
        if leader == "adam" or tied:  # an exact tie with the best is the top too
            top.append(task)
            continue
        block = wide.xs(task)
        diff = (block["adam"] - block[leader]).dropna()
        test = inference.paired_t_test(diff)
        same_div = div[(task, "adam")] <= div[(task, leader)]
        # fewer than 2 common seeds: no evidence of a tie; identical on every seed: a tie
        testable = math.isfinite(test.p_value) or (len(diff) >= 2 and (diff == 0).all())
        if same_div and testable and not (test.p_value < ALPHA):
            top.append(task)
        elif same_div and not testable:
            beaten.append(f"{task} (best {leader}; too few common finished seeds to test)")
        else:
            beaten.append(f"{task} (best {leader}, p = {test.p_value:.2g})" if same_div
                          else f"{task} (adam diverged more often than {leader})")
    accuracy = _share_row("a", f"share of tasks where adam's tuned {metric} metric is top",
                          top, tasks, "not top on: " + (", ".join(beaten) or "none"))
    cost = at.assign(cost=run_costs(at, "val"))
    cost = cost[cost["cost"].notna()].groupby(["task", "optimizer"])["cost"].median().unstack()
    cost = cost[np.isfinite(cost).any(axis=1)]
    fastest = cost.idxmin(axis=1)
    hits = [t for t in cost.index if cost.loc[t, "adam"] <= cost.loc[t].min()]
    others = fastest[~fastest.index.isin(hits)].value_counts()
    if len(cost):
        where = "fastest elsewhere: " + (", ".join(f"{o} ({c})" for o, c in others.items())
                                         or "none")
    else:
        where = ("no task with a target that some optimizer reaches (median over seeds of "
                 "the steps to target)")
    speed = _share_row("a", "share of tasks where adam reaches the target in the fewest steps",
                       hits, list(cost.index), where)
    return [accuracy, speed]


def _claim_b(at: pd.DataFrame, tasks: list[str], metric: str) -> list[dict]:
    rates = pairwise_task_rates(at[at["task"].isin(tasks)], metric)
    rows = []
    wins = paired_wins(at[at["task"].isin(tasks)], metric)
    for opponent in ("sgd", "momentum"):
        part = rates[(rates["optimizer"] == "rmsprop") & (rates["opponent"] == opponent)]
        mine = wins[(wins["optimizer"] == "rmsprop") & (wins["opponent"] == opponent)]
        iv = stratified_interval([g.to_numpy(float) for _, g in mine.groupby("task")["win"]])
        low = iv.low
        rows.append({
            "claim": "b", "statistic": f"rmsprop win rate over {opponent} on sparse tasks",
            "value": float(part["win_rate"].mean()), "ci_low": low,
            "ci_high": iv.high, "threshold": 0.5,
            "tasks": len(part), "verdict": SUPPORTED if low > 0.5 else NOT_SUPPORTED,
            "detail": "per task: " + ", ".join(
                f"{r.task} {r.win_rate:.2f}" for r in part.itertuples()),
        })
    return rows


def curve_run_ids(runs: pd.DataFrame) -> list[int]:
    """The runs whose training-loss curves claim (c) reads: tuned runs on its usable tasks."""
    tuned = claims_runs(runs)
    tasks = _usable_tasks(coverage(runs, tuned), NEEDS["c"])
    return [int(i) for i in tuned.loc[tuned["task"].isin(tasks), "id"]]


def _claim_c(at: pd.DataFrame, tasks: list[str], curves: pd.DataFrame) -> list[dict]:
    ranked = ranks_at(values_at(at[at["task"].isin(tasks)], curves, "train", (EARLY, LATE)))
    ada = ranked[ranked["optimizer"] == "adagrad"].pivot(index="task", columns="fraction",
                                                         values="rank")
    ada = ada.reindex(columns=[EARLY, LATE]).dropna()
    diff = ada[LATE] - ada[EARLY]
    ci = bootstrap_over_tasks(diff, pd.Series(0, index=diff.index))
    low, high = (float(ci["ci_low"].iloc[0]), float(ci["ci_high"].iloc[0])) if len(ci) else (
        np.nan, np.nan)
    early, late = (float(ada[EARLY].mean()), float(ada[LATE].mean())) if len(ada) else (
        np.nan, np.nan)
    middle = (len(CLAIMS_OPTIMIZERS) + 1) / 2
    why = []
    if not low > 0:
        why.append("the interval includes 0" if len(diff) > 1 else "no interval with one task")
    if not early < middle:
        why.append(f"its rank at 10% ({early:.2f}) is not better than the middle rank "
                   f"({middle:g})")
    per_task = ", ".join(f"{t} {r[EARLY]:g}->{r[LATE]:g}" for t, r in ada.iterrows())
    return [{
        "claim": "c", "statistic": "adagrad rank at 100% minus rank at 10% of the budget "
                                   "(training loss; positive: falls behind)",
        "value": float(diff.mean()) if len(diff) else np.nan, "ci_low": low, "ci_high": high,
        "threshold": 0.0, "tasks": len(diff), "verdict": NOT_SUPPORTED if why else SUPPORTED,
        "_why": " and ".join(why),
        "detail": f"mean rank of {len(CLAIMS_OPTIMIZERS)}: {early:.2f} at 10%, {late:.2f} at "
                  f"100%; per task: {per_task}" + ("; " + "; ".join(why) if why else ""),
    }]


def check(
    runs: pd.DataFrame, curves: pd.DataFrame | None = None, metric: str = "test"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Check the three claims; returns (claims, statistics, missing) tables.

    `curves` are the training-loss curves of `curve_run_ids(runs)` (claim (c)); without them
    claim (c) has not enough data. `metric` is the split of claim (a)'s accuracy part and
    claim (b)'s win rates.
    """
    tuned = _tuned(runs, metric)
    cov = coverage(runs, tuned)
    claims, stats_rows = [], []

    def conclude(claim: str, rows: list[dict], reason: str | None = None) -> None:
        if reason is not None:
            claims.append({"claim": claim, "statement": STATEMENTS[claim],
                           "verdict": NOT_ENOUGH, "reason": reason})
            return
        for r in rows:
            if r["tasks"] < MIN_TASKS:
                r["verdict"] = NOT_ENOUGH
        stats_rows.extend(rows)
        if any(r["tasks"] < MIN_TASKS for r in rows):
            verdict = NOT_ENOUGH
            reason = "; ".join(f"{r['statistic']}: only {r['tasks']} task(s) "
                               f"({r['detail'].split('; ', 1)[-1]})"
                               for r in rows if r["tasks"] < MIN_TASKS)
        elif all(r["verdict"] == SUPPORTED for r in rows):
            verdict, reason = SUPPORTED, "every part's interval clears its threshold"
        else:
            verdict = NOT_SUPPORTED
            reason = "; ".join(
                f"{r['statistic']} = {r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]: "
                + r.get("_why", f"the interval does not lie above {r['threshold']:g}")
                for r in rows if r["verdict"] != SUPPORTED)
        claims.append({"claim": claim, "statement": STATEMENTS[claim], "verdict": verdict,
                       "reason": reason})

    tasks_a = _usable_tasks(cov, NEEDS["a"])
    if len(tasks_a) < MIN_TASKS:
        conclude("a", [], _not_enough(cov, "a", tasks_a))
    else:
        conclude("a", _claim_a(tuned, tasks_a, metric))
    tasks_b = _usable_tasks(cov, NEEDS["b"], SPARSE)
    if len(tasks_b) < MIN_TASKS:
        conclude("b", [], _not_enough(cov, "b", tasks_b, SPARSE))
    else:
        conclude("b", _claim_b(tuned, tasks_b, metric))
    tasks_c = _usable_tasks(cov, NEEDS["c"])
    if len(tasks_c) < MIN_TASKS:
        conclude("c", [], _not_enough(cov, "c", tasks_c))
    elif curves is None or curves[curves["split"] == "train"].empty:
        conclude("c", [], "no training-loss curves stored for the tuned runs")
    else:
        conclude("c", _claim_c(tuned, tasks_c, curves))
    return table(claims, CLAIM_SCHEMA), table(stats_rows, STAT_SCHEMA), missing(cov)
