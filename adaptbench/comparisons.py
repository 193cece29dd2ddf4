"""Paired comparisons of optimizers at their selected lrs: win rates, ranks, tests, A against B.

Every function takes the runs the protocol selected (`protocol.select(runs).runs`: per (task,
optimizer) the runs at one lr) and scores them with `stats.scored`: one score per seed (the final metric of the chosen split, oriented
so that larger is better; a diverged run scores -inf, the worst, and two diverged runs tie).
Runs are paired by (task, seed). Per task type, tasks weigh equally: a figure over tasks is a
mean of per-task figures, never a pool of seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adaptbench import aggregate, inference
from adaptbench.errors import UserError
from adaptbench.stats import N_RESAMPLES, BOOTSTRAP_SEED, scored, table

ALPHA = 0.05
WIN_CI = ("stratified bootstrap: seeds resampled within tasks, and tasks too from 5 tasks up"
          )  # how win-rate intervals are drawn, for titles
_S, _F, _I, _B = object, float, int, bool
TASK_RATE_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "opponent": _S, "win_rate": _F, "pairs": _I,
}
WIN_SCHEMA = {
    "task_type": _S, "optimizer": _S, "opponent": _S, "win_rate": _F, "ci_low": _F,
    "ci_high": _F, "resampled": _S, "tasks": _I, "pairs": _I,
}
RANK_SCHEMA = {"task_type": _S, "task": _S, "optimizer": _S, "rank": _F, "seeds": _I}
MEAN_RANK_SCHEMA = {
    "task_type": _S, "optimizer": _S, "mean_rank": _F, "tasks": _I, "left_out": _I,
}
FRIEDMAN_SCHEMA = {
    "task_type": _S, "optimizers": _I, "tasks": _I, "statistic": _F, "p_value": _F,
    "significant": _B,
}
PAIRWISE_SCHEMA = {
    "task_type": _S, "optimizer": _S, "opponent": _S, "tasks": _I, "win_rate": _F,
    "statistic": _F, "p_value": _F, "p_holm": _F, "significant": _B, "better": _S,
}
COMPARE_TASK_SCHEMA = {
    "task": _S, "task_type": _S, "metric_name": _S, "pairs": _I, "a_mean": _F, "b_mean": _F,
    "advantage": _F, "ci_low": _F, "ci_high": _F, "effect_size": _F, "p_value": _F,
    "a_diverged": _I, "b_diverged": _I, "win_rate": _F, "verdict": _S,
}
COMPARE_OVERALL_SCHEMA = {
    "task_type": _S, "tasks": _I, "a_wins": _I, "b_wins": _I, "even": _I, "win_rate": _F,
    "ci_low": _F, "ci_high": _F, "resampled": _S, "effect_size": _F, "statistic": _F, "p_value": _F,
    "verdict": _S,
}
WIN_COLUMNS = list(WIN_SCHEMA)
ALL_TASK_TYPES = "(all)"


def _scores(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    at = scored(runs, metric)
    return at.loc[at["score"].notna(), ["task", "task_type", "optimizer", "seed", "score"]]


def paired_wins(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Per task, seed and ordered pair of optimizers that both have the seed: the paired win
    value of optimizer over opponent, 1 win, ½ tie (exact equality; two diverged runs tie), 0
    loss; a diverged run loses to a run that did not diverge. Columns: task, task_type,
    optimizer, opponent, seed, win."""
    at = _scores(runs, metric)
    pairs = at.merge(at[["task", "seed", "optimizer", "score"]], on=["task", "seed"],
                     suffixes=("", "_b"))
    pairs = pairs[pairs["optimizer"] != pairs["optimizer_b"]]
    a, b = pairs["score"].to_numpy(), pairs["score_b"].to_numpy()
    pairs = pairs.assign(win=(a > b) + 0.5 * (a == b), opponent=pairs["optimizer_b"])
    return pairs[["task", "task_type", "optimizer", "opponent", "seed", "win"]]


def pairwise_task_rates(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Per task and ordered pair of optimizers: win rate over the seeds both have
    (the mean of `paired_wins`). Columns: task, task_type, optimizer, opponent, win_rate, pairs.
    """
    out = paired_wins(runs, metric).groupby(
        ["task", "task_type", "optimizer", "opponent"], sort=True).agg(
        win_rate=("win", "mean"), pairs=("win", "size"))
    return table(out.reset_index(), TASK_RATE_SCHEMA)


def stratified_intervals(
    per_task: list[np.ndarray], confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """For groups that share their tasks and per-task seed counts (`per_task[t]`: a (groups,
    seeds_t) array of per-seed values): the mean over tasks of per-task means, with the
    stratified bootstrap interval (`aggregate.mean_intervals`: seeds resampled within each
    task, and the tasks too from 5 tasks up; 9,999 resamples, seed 0). No interval (NaN) when
    only seeds can be resampled and a task has a single seed: one value says nothing about the
    spread over seeds. Returns estimate, low, high per group and what was resampled."""
    estimate, low, high, resampled = aggregate.mean_intervals(
        per_task, confidence, N_RESAMPLES, BOOTSTRAP_SEED)
    if resampled == aggregate.SEEDS and min(v.shape[1] for v in per_task) < 2:
        low, high = np.full_like(low, np.nan), np.full_like(high, np.nan)
    return estimate, low, high, resampled


def stratified_interval(per_task: list[np.ndarray], confidence: float = 0.95) -> aggregate.Interval:
    """`stratified_intervals` of one group: `per_task[t]` the 1-D per-seed values of task t."""
    if not per_task:
        return aggregate.Interval(math.nan, math.nan, math.nan, 0, aggregate.SEEDS, "no tasks")
    est, low, high, resampled = stratified_intervals(
        [np.asarray(v, dtype=float)[None, :] for v in per_task], confidence)
    return aggregate.Interval(float(est[0]), float(low[0]), float(high[0]), len(per_task),
                              resampled, "")


def bootstrap_over_tasks(
    values: pd.Series, keys: list[pd.Series] | pd.Series, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and percentile-bootstrap interval of per-task values within each group of `keys`.

    For statistics that exist only per task (a rank, a gap): 9,999 resamples of the group's
    tasks with seed 0 (`inference.percentile_bootstrap`). A group with fewer than 5 tasks has
    no interval: a bootstrap over 2 tasks is their range and ignores the seed noise (95%
    intervals over 2, 3, 5 tasks cover 52%, 76%, 86% of the time).
    Index: the group keys; columns mean, ci_low, ci_high.
    """
    grouped = values.groupby(keys, sort=True)
    codes = grouped.ngroup().to_numpy()
    out = grouped.agg(["mean", "size"])
    low = np.full(len(out), np.nan)
    high = np.full(len(out), np.nan)
    order = np.argsort(codes, kind="mergesort")
    parts = np.split(values.to_numpy(float)[order], np.cumsum(out["size"].to_numpy())[:-1])
    by_size: dict[int, list[int]] = {}
    for i, part in enumerate(parts):
        by_size.setdefault(len(part), []).append(i)
    for size, index in by_size.items():
        if size >= aggregate.MIN_TASKS_FOR_TASK_BOOTSTRAP:
            lo, hi = inference.percentile_bootstrap(
                np.stack([parts[i] for i in index]), confidence, N_RESAMPLES, BOOTSTRAP_SEED)
            low[index], high[index] = lo, hi
    return pd.DataFrame({"mean": out["mean"], "ci_low": low, "ci_high": high}, index=out.index)


def win_rates(runs: pd.DataFrame, metric: str = "test", confidence: float = 0.95) -> pd.DataFrame:
    """Paired win rate of each optimizer over each other, per task type, at the selected lrs.

    The per-task rate is the mean over the seeds both have (`pairwise_task_rates`); the
    task-type rate is the unweighted mean over tasks, with the stratified bootstrap interval
    of `stratified_interval` (seeds within tasks, tasks too from 5 tasks up; `resampled` says
    which). The interval of B over A is 1 minus that of A over B, since paired win values
    add up to 1. Pairs with no common seed in a task type are left out. Columns: task_type,
    optimizer, opponent, win_rate, ci_low, ci_high, resampled, tasks (that contributed), pairs
    (paired seeds over those tasks).
    """
    wins = paired_wins(runs, metric)
    if wins.empty:
        return table([], WIN_SCHEMA)
    wins = wins[wins["optimizer"] < wins["opponent"]].sort_values(
        ["task_type", "optimizer", "opponent", "task", "seed"], kind="mergesort")
    rows = []
    for kind, part in wins.groupby("task_type", sort=True):
        # pairs with the same tasks and seed counts share one batched bootstrap
        batches: dict[tuple, list[tuple[str, str, list[np.ndarray]]]] = {}
        for (a, b), mine in part.groupby(["optimizer", "opponent"], sort=True):
            per_task = [g.to_numpy(float) for _, g in mine.groupby("task", sort=True)["win"]]
            shape = tuple(zip(sorted(mine["task"].unique()), map(len, per_task)))
            batches.setdefault(shape, []).append((a, b, per_task))
        for shape, members in batches.items():
            stacked = [np.stack([m[2][t] for m in members]) for t in range(len(shape))]
            est, low, high, resampled = stratified_intervals(stacked, confidence)
            for i, (a, b, per_task) in enumerate(members):
                common = {"task_type": kind, "tasks": len(per_task), "resampled": resampled,
                          "pairs": int(sum(map(len, per_task)))}
                rows.append({**common, "optimizer": a, "opponent": b, "win_rate": est[i],
                             "ci_low": low[i], "ci_high": high[i]})
                rows.append({**common, "optimizer": b, "opponent": a, "win_rate": 1 - est[i],
                             "ci_low": 1 - high[i], "ci_high": 1 - low[i]})
    out = table(rows, WIN_SCHEMA)
    return out.sort_values(["task_type", "optimizer", "opponent"], kind="mergesort").reset_index(drop=True)


IMPROVEMENT_SCHEMA = {
    "task_type": _S, "optimizer": _S, "opponent": _S, "probability": _F, "ci_low": _F,
    "ci_high": _F, "resampled": _S, "tasks": _I, "runs": _I, "opponent_runs": _I,
}


def improvement(runs: pd.DataFrame, metric: str = "test", confidence: float = 0.95) -> pd.DataFrame:
    """Probability of improvement of each optimizer over each other, per task type (rliable's
    definition, `aggregate.probability_of_improvement`): per task, the share of (run of A, run
    of B) pairs, over all their seeds, unpaired, in which A scores higher (ties ½; a diverged
    run scores lowest), then the mean over the tasks both ran. The interval is the stratified
    bootstrap (`aggregate.improvement_intervals`: each optimizer's runs resampled within each
    task, the tasks too from 5 up); pairs over the same tasks share one batched bootstrap.
    Columns: task_type, optimizer, opponent, probability, ci_low, ci_high, resampled, tasks,
    runs, opponent_runs.
    """
    at = _scores(runs, metric)
    rows = []
    for kind, part in at.groupby("task_type", sort=True):
        by = {key: g["score"].to_numpy(float)
              for key, g in part.groupby(["task", "optimizer"], sort=True)}
        names = sorted(set(part["optimizer"]))
        batches: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for a in names:
            for b in names:
                if a < b:
                    tasks = tuple(sorted(t for t in part["task"].unique()
                                         if (t, a) in by and (t, b) in by))
                    if tasks:
                        batches.setdefault(tasks, []).append((a, b))
        for tasks, pairs in batches.items():
            members = sorted({o for pair in pairs for o in pair})
            samples = [[by[(t, o)] for t in tasks] for o in members]
            index = [(members.index(a), members.index(b)) for a, b in pairs]
            est, low, high, resampled = aggregate.improvement_intervals(
                samples, index, confidence, N_RESAMPLES, BOOTSTRAP_SEED)
            for p, (a, b) in enumerate(pairs):
                na = sum(len(by[(t, a)]) for t in tasks)
                nb = sum(len(by[(t, b)]) for t in tasks)
                common = {"task_type": kind, "resampled": resampled, "tasks": len(tasks)}
                rows.append({**common, "optimizer": a, "opponent": b, "probability": est[p],
                             "ci_low": low[p], "ci_high": high[p], "runs": na,
                             "opponent_runs": nb})
                rows.append({**common, "optimizer": b, "opponent": a, "probability": 1 - est[p],
                             "ci_low": 1 - high[p], "ci_high": 1 - low[p], "runs": nb,
                             "opponent_runs": na})
    out = table(rows, IMPROVEMENT_SCHEMA)
    return out.sort_values(["task_type", "optimizer", "opponent"], kind="mergesort").reset_index(drop=True)


def win_matrix(rates: pd.DataFrame, task_type: str, column: str = "win_rate") -> pd.DataFrame:
    """One task type of `win_rates` as a matrix: rows optimizer, columns opponent, NaN diagonal."""
    part = rates[rates["task_type"] == task_type]
    names = sorted(set(part["optimizer"]) | set(part["opponent"]))
    matrix = part.pivot(index="optimizer", columns="opponent", values=column)
    matrix = matrix.reindex(index=names, columns=names).astype(float)
    matrix.index.name, matrix.columns.name = "optimizer", "opponent"
    return matrix


def ranks(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Mean rank of each optimizer per task (1 = best), over the seeds every optimizer has.

    Scores are `tuned_runs` scores, so a diverged run ranks last and ties share the average
    rank. Tasks with a single optimizer have no ranks. Columns: task_type, task, optimizer,
    rank, seeds.
    """
    at = _scores(runs, metric)
    k = at.groupby("task")["optimizer"].transform("nunique")
    present = at.groupby(["task", "seed"])["optimizer"].transform("size")
    complete = at[(present == k) & (k >= 2)]
    if complete.empty:
        return table([], RANK_SCHEMA)
    rank = complete.groupby(["task", "seed"])["score"].rank(ascending=False, method="average")
    out = complete.assign(rank=rank).groupby(["task_type", "task", "optimizer"], sort=True).agg(
        rank=("rank", "mean"), seeds=("seed", "size"))
    return table(out.reset_index(), RANK_SCHEMA)


def _complete_blocks(per_task: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, int]]:
    """Per task type, the task × optimizer matrix of ranks over the tasks that have every
    optimizer of the task type, and how many tasks were left out for lacking one."""
    out = {}
    for kind, part in per_task.groupby("task_type", sort=True):
        wide = part.pivot(index="task", columns="optimizer", values="rank")
        full = wide.dropna()
        out[kind] = (full, len(wide) - len(full))
    return out


def mean_ranks(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Average rank of each optimizer per task type, over the tasks that ran every optimizer.

    The per-task rank is `ranks` (mean over seeds); tasks lacking one of the task type's
    optimizers are left out (counted in `left_out`), so that every average is over the same
    tasks and the same number of competitors. Columns: task_type, optimizer, mean_rank, tasks,
    left_out.
    """
    rows = []
    for kind, (full, left_out) in _complete_blocks(ranks(runs, metric)).items():
        for optimizer in full.columns:
            rows.append({"task_type": kind, "optimizer": optimizer,
                         "mean_rank": float(full[optimizer].mean()) if len(full) else math.nan,
                         "tasks": len(full), "left_out": left_out})
    return table(rows, MEAN_RANK_SCHEMA)


def friedman(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Friedman test per task type: do the optimizers' per-task ranks differ?

    Blocks are the tasks `mean_ranks` uses (every optimizer present); needs at least 3
    optimizers and 2 such tasks, else the task type has no row. `significant`: p < 0.05.
    Columns: task_type, optimizers, tasks, statistic, p_value, significant.
    """
    rows = []
    for kind, (full, _) in _complete_blocks(ranks(runs, metric)).items():
        if full.shape[1] < 3 or full.shape[0] < 2:
            continue
        result = inference.friedman(full.to_numpy(float))
        rows.append({"task_type": kind, "optimizers": full.shape[1], "tasks": full.shape[0],
                     "statistic": result.statistic, "p_value": result.p_value,
                     "significant": result.p_value < ALPHA})
    return table(rows, FRIEDMAN_SCHEMA)


def pairwise_tests(runs: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """Wilcoxon signed-rank test per pair of optimizers over tasks, Holm-corrected per task type.

    The paired value per task is the per-task win rate minus ½ (scale-free, and diverged runs
    count as losses); tasks where the pair is even are dropped by the test. `significant`:
    Holm-adjusted p < 0.05; `better` names the optimizer that wins more when significant.
    One row per unordered pair (optimizer < opponent). With fewer than 6 tasks no pair can be
    significant: the smallest two-sided p of the signed-rank test on 5 tasks is 1/16.
    """
    per_task = pairwise_task_rates(runs, metric)
    per_task = per_task[per_task["optimizer"] < per_task["opponent"]]
    rows = []
    for (kind, a, b), part in per_task.groupby(["task_type", "optimizer", "opponent"], sort=True):
        result = inference.wilcoxon(part["win_rate"].to_numpy() - 0.5)
        rows.append({"task_type": kind, "optimizer": a, "opponent": b, "tasks": len(part),
                     "win_rate": float(part["win_rate"].mean()),
                     "statistic": result.statistic, "p_value": result.p_value})
    out = pd.DataFrame(rows, columns=["task_type", "optimizer", "opponent", "tasks", "win_rate",
                                      "statistic", "p_value"])
    out["p_holm"] = np.nan
    for _, index in out.groupby("task_type").groups.items():
        out.loc[index, "p_holm"] = inference.holm(out.loc[index, "p_value"])
    out["significant"] = out["p_holm"] < ALPHA
    out["better"] = np.where(~out["significant"], "",
                             np.where(out["win_rate"] > 0.5, out["optimizer"], out["opponent"]))
    return table(out, PAIRWISE_SCHEMA)


def resolve_variant(name: str, stored: list[str]) -> str:
    """The variant label a name means: itself if stored, else the one stored variant of that
    optimizer (`adam` for `adam@20steps` when that is the only adam); several is an error."""
    if name in stored:
        return name
    variants = [s for s in stored if s.startswith(name) and s[len(name):][:1] in ("+", "{", "@", "/")]
    if len(variants) == 1:
        return variants[0]
    if variants:
        raise UserError(f"optimizer {name!r} has several variants: {', '.join(variants)}; name "
                        f"one of them")
    raise UserError(f"no results for optimizer {name!r}; stored results have: "
                    f"{', '.join(stored) or 'none'}")


def _task_verdict(a: str, b: str, row: dict) -> str:
    finite, p = row["_finite"], row["p_value"]
    if finite >= 2 and p < ALPHA:
        text = f"{a if row['advantage'] > 0 else b} better (p = {p:.2g})"
    elif finite < 2 and row["a_diverged"] != row["b_diverged"]:
        worse = a if row["a_diverged"] > row["b_diverged"] else b
        text = f"{b if worse == a else a} better: {worse} diverged more often"
    elif finite < 2:
        text = "too few seeds where both finished to test"
    else:
        text = f"no significant difference (p = {p:.2g})"
    for name, key in ((a, "a_diverged"), (b, "b_diverged")):
        if row[key]:
            text += f"; {name} diverged on {row[key]} of {row['pairs']} seeds"
    return text


def _overall_verdict(a: str, b: str, tasks: int, a_wins: int, b_wins: int, p: float) -> str:
    if p < ALPHA:
        winner, won = (a, a_wins) if a_wins > b_wins else (b, b_wins)
        return f"{winner} better: wins {won} of {tasks} tasks (Wilcoxon p = {p:.2g})"
    text = f"no significant difference over {tasks} task(s) (p = {p:.2g})"
    if tasks < 6:
        text += "; fewer than 6 tasks can never give p < 0.05"
    return text


def compare(
    runs: pd.DataFrame, a: str, b: str, metric: str = "test", confidence: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Optimizer `a` against `b` at their selected lrs: per task, and over the tasks of each type.

    Per task (the seeds both have): `a_mean`/`b_mean` are the mean final metrics over the
    seeds where both finished; `advantage` is their paired mean difference oriented so that a
    positive value favours `a`, in the metric's units, with a t-interval; `effect_size` is
    Cohen's d_z (mean / sd of the paired differences); `p_value` a two-sided paired t-test;
    `win_rate` the paired win rate of `a` (a diverged run loses). Over tasks (per task type and
    `(all)`): how many tasks each wins (per-task win rate above/below ½), the mean win rate
    with the stratified bootstrap interval (`stratified_interval`), the Wilcoxon signed-rank test of the per-task win
    rates against ½ and its matched-pairs rank-biserial correlation as effect size (+1: `a`
    wins every task). Each row carries a verdict in words.
    """
    if a == b:
        raise UserError(f"compare needs two different optimizers, got {a!r} twice")
    at = scored(runs, metric)
    stored = sorted(set(at["optimizer"]))
    a, b = (resolve_variant(name, stored) for name in (a, b))
    if a == b:
        raise UserError(f"compare needs two different optimizers, got {a!r} twice")
    at = at[at["optimizer"].isin([a, b]) & at["score"].notna()]
    value = at["final_" + metric + "_metric"].astype(float)
    at = at.assign(value=value, diverged=at["status"] == "diverged")
    wide = at.pivot(index=["task", "seed"], columns="optimizer",
                    values=["score", "value", "diverged"]).dropna(
        subset=[("score", a), ("score", b)])
    meta = at.groupby("task").agg(task_type=("task_type", "first"),
                                  metric_name=("metric_name", "first"))
    rows, wins = [], {}
    for task, part in wide.groupby(level="task", sort=True):
        sa, sb = part[("score", a)].to_numpy(float), part[("score", b)].to_numpy(float)
        wins[task] = (sa > sb) + 0.5 * (sa == sb)
        both = np.isfinite(sa) & np.isfinite(sb)
        d = sa[both] - sb[both]
        ci = inference.t_interval(np.array([d.mean() if len(d) else np.nan]),
                                  np.array([d.std(ddof=1) if len(d) > 1 else np.nan]),
                                  np.array([len(d)]), confidence)
        sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
        row = {
            "task": task, "task_type": meta.loc[task, "task_type"],
            "metric_name": meta.loc[task, "metric_name"], "pairs": len(part),
            "a_mean": float(part[("value", a)].to_numpy(float)[both].mean()) if both.any() else math.nan,
            "b_mean": float(part[("value", b)].to_numpy(float)[both].mean()) if both.any() else math.nan,
            "advantage": float(d.mean()) if len(d) else math.nan,
            "ci_low": float(ci[0][0]), "ci_high": float(ci[1][0]),
            "effect_size": float(d.mean() / sd) if sd and not math.isnan(sd) else math.nan,
            "p_value": inference.paired_t_test(d).p_value,
            "a_diverged": int(part[("diverged", a)].astype(bool).sum()),
            "b_diverged": int(part[("diverged", b)].astype(bool).sum()),
            "win_rate": float(wins[task].mean()),
            "_finite": int(both.sum()),
        }
        row["verdict"] = _task_verdict(a, b, row)
        rows.append(row)
    per_task = table(rows, COMPARE_TASK_SCHEMA)
    overall = []
    groups = [(kind, part) for kind, part in per_task.groupby("task_type", sort=True)]
    if len({kind for kind, _ in groups}) > 1:
        groups.append((ALL_TASK_TYPES, per_task))
    for kind, part in groups:
        rates = part["win_rate"].to_numpy(float)
        test = inference.wilcoxon(rates - 0.5)
        iv = stratified_interval([wins[t] for t in part["task"]], confidence)
        a_wins, b_wins = int((rates > 0.5).sum()), int((rates < 0.5).sum())
        overall.append({
            "task_type": kind, "tasks": len(part), "a_wins": a_wins, "b_wins": b_wins,
            "even": len(part) - a_wins - b_wins, "win_rate": float(rates.mean()),
            "ci_low": iv.low, "ci_high": iv.high, "resampled": iv.resampled,
            "effect_size": inference.rank_biserial(rates - 0.5),
            "statistic": test.statistic, "p_value": test.p_value,
            "verdict": _overall_verdict(a, b, len(part), a_wins, b_wins, test.p_value),
        })
    return per_task, table(overall, COMPARE_OVERALL_SCHEMA)
