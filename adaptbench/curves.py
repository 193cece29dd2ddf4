"""How fast optimizers get there: steps to target, performance profiles, ranks along the budget.

Pure functions on a runs DataFrame and, where the learning curves are needed, a curves
DataFrame (`results.load_curves`: run_id, step, split, loss, metric). As in `comparisons`,
the runs are those the protocol selected (`protocol.select(runs).runs`): one lr per (task,
optimizer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptbench.errors import UserError
from adaptbench.protocol import check_selected, results_only
from adaptbench.stats import check_split, signed, table
from adaptbench.vocab import CurveSplit

FRACTIONS = (0.1, 0.25, 1.0)  # of each run's budget, for `speed`
TAU_MAX = 4.0  # the profile's area score integrates ρ(τ) over 1 <= τ <= TAU_MAX
_S, _F, _I = object, float, int
RATIO_SCHEMA = {"task_type": _S, "task": _S, "optimizer": _S, "cost": _F, "ratio": _F}
PROFILE_SCHEMA = {"task_type": _S, "optimizer": _S, "tau": _F, "fraction": _F}
AREA_SCHEMA = {"task_type": _S, "optimizer": _S, "tasks": _I, "solved": _I, "area": _F}


def _selected(runs: pd.DataFrame) -> pd.DataFrame:
    at = results_only(runs)
    check_selected(at)
    return at


def fraction_label(fraction: float) -> str:
    """Column suffix for a budget fraction: 0.1 -> '10', 0.25 -> '25', 1.0 -> '100'."""
    return f"{fraction * 100:g}"


def run_costs(runs: pd.DataFrame, split: str = "val", curves: pd.DataFrame | None = None) -> pd.Series:
    """Steps each run took to reach its task's target on the split; ∞ if it never did or
    diverged, NaN if the task has no target.

    'val' is read from the stored `steps_to_target`; 'test' needs the curves (the first
    evaluation step at which the test metric reached the target). The train curve has no metric.
    The target is the task's: a task has one if any of its runs records it.
    """
    check_split(split)
    if split == "train":
        raise UserError("steps to target need a metric, and the train curve holds only the "
                        "minibatch loss; use the val or test split", about="split")
    if split == "val":
        cost = runs["steps_to_target"].astype(float)
    else:
        if curves is None:
            raise ValueError("steps to target on the test split need the curves")
        points = curves[curves["split"] == split].merge(
            runs[["id", "target", "higher_is_better"]], left_on="run_id", right_on="id")
        hib = points["higher_is_better"].astype(bool)
        reached = points["metric"].where(hib, -points["metric"]) >= points["target"].where(
            hib, -points["target"])
        first = points[reached].groupby("run_id")["step"].min()
        cost = runs["id"].map(first).astype(float)
    cost = cost.where(runs["status"] == "done", np.inf).fillna(np.inf)
    has_target = runs["target"].notna().groupby(runs["task"]).transform("any")
    return cost.where(has_target.astype(bool), np.nan)


def performance_ratios(
    runs: pd.DataFrame, split: str = "val", curves: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Dolan–Moré performance ratios of steps to target, per task and optimizer at tuned lrs.

    Cost is the median over seeds of `run_costs` (a run that diverged or never reached the
    target costs ∞, so an optimizer failing on half the seeds or more fails the task).
    Ratio = cost / best cost on the task (∞ if the optimizer failed or every optimizer did);
    a target met at step 0 counts as 1 step so that ratios stay defined. Only tasks with a
    target, run by every optimizer present in the task type, are used.
    Columns: task_type, task, optimizer, cost, ratio.
    """
    at = _selected(runs)
    at = at.assign(cost=run_costs(at, split, curves))
    at = at[at["cost"].notna()]
    cost = at.groupby(["task_type", "task", "optimizer"], sort=True)["cost"].median().reset_index()
    kept = []
    for _, part in cost.groupby("task_type", sort=True):
        wide = part.pivot(index="task", columns="optimizer", values="cost").dropna()
        best = wide.clip(lower=1).min(axis=1)
        ratio = wide.clip(lower=1).div(best, axis=0).where(np.isfinite(wide), np.inf)
        long = ratio.stack().rename("ratio").reset_index()
        kept.append(part.merge(long, on=["task", "optimizer"]))
    if not kept:
        return table([], RATIO_SCHEMA)
    return table(pd.concat(kept, ignore_index=True), RATIO_SCHEMA)


def performance_profile(ratios: pd.DataFrame) -> pd.DataFrame:
    """Dolan–Moré performance profile per task type: ρ(τ) = the share of the task type's tasks
    whose ratio is ≤ τ, given at every τ where some profile steps (1 and the finite ratios), so
    the rows are the exact step functions. Input: `performance_ratios`.
    Columns: task_type, optimizer, tau, fraction.
    """
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
    return table(rows, PROFILE_SCHEMA)


def profile_at(ratios: pd.DataFrame, taus: tuple[float, ...]) -> pd.DataFrame:
    """ρ(τ) at chosen τ values, wide: one row per (task_type, optimizer), a column per τ."""
    out = ratios.groupby(["task_type", "optimizer"], sort=True)["ratio"].agg(
        **{f"rho_{tau:g}": (lambda r, tau=tau: float((r <= tau).mean())) for tau in taus})
    return out.reset_index()


def profile_area(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.DataFrame:
    """Area under the performance profile from τ = 1 to `tau_max`, scaled to [0, 1].

    (1 / (tau_max - 1)) ∫ ρ(τ) dτ over [1, tau_max] = mean over the tasks of
    max(0, tau_max - ratio) / (tau_max - 1): 1 when the optimizer is the fastest on every task,
    0 when it is never within tau_max of the fastest. `solved`: tasks with a finite ratio.
    Columns: task_type, optimizer, tasks, solved, area.
    """
    if tau_max <= 1:
        raise UserError(f"the profile's tau must be > 1, got {tau_max:g}")
    credit = (tau_max - ratios["ratio"]).clip(lower=0) / (tau_max - 1)
    out = ratios.assign(_credit=credit.fillna(0.0), _solved=np.isfinite(ratios["ratio"])).groupby(
        ["task_type", "optimizer"], sort=True).agg(
        tasks=("task", "size"), solved=("_solved", "sum"), area=("_credit", "mean"))
    return table(out.reset_index(), AREA_SCHEMA)


def values_at(
    runs: pd.DataFrame, curves: pd.DataFrame, split: str = "val",
    fractions: tuple[float, ...] = FRACTIONS,
) -> pd.DataFrame:
    """Each tuned run's curve value at fractions of its budget, oriented so larger is better.

    For fraction f the value is read at the run's evaluation step nearest to f · steps (the
    earlier one on a tie): the validation or test metric for those splits, the training loss
    for 'train' (the mean minibatch loss since the previous evaluation) and 'train_full' (the
    loss on the training examples). A run that diverged at or
    before f · steps scores -inf there (the worst) and counts as read at f · steps; a run with
    no curve point scores NaN.
    Columns: id, task, task_type, optimizer, seed, steps, fraction, step (the evaluation
    read, NaN if none), score.
    """
    if split not in CurveSplit.names():
        raise ValueError(f"Invalid curve: {split!r} (choose from {', '.join(CurveSplit.names())})")
    for f in fractions:
        if not 0 < f <= 1:
            raise UserError(f"budget fractions must be in (0, 1], got {f:g}")
    at = _selected(runs)
    quantity = CurveSplit.quantity(split)
    points = curves.loc[(curves["split"] == split) & curves[quantity].notna(),
                        ["run_id", "step", quantity]]
    points = points.assign(step=points["step"].astype(float)).sort_values("step")
    base = at[["id", "task", "task_type", "optimizer", "seed", "steps", "status",
               "diverged_at_step", "higher_is_better"]]
    want = base.merge(pd.DataFrame({"fraction": list(fractions)}), how="cross")
    want = want.assign(at=want["fraction"] * want["steps"].astype(float)).sort_values("at")
    found = {}
    for direction in ("backward", "forward"):
        hit = pd.merge_asof(want, points.rename(columns={"run_id": "id"}), left_on="at",
                            right_on="step", by="id", direction=direction)
        found[direction] = hit.sort_values(["id", "fraction"]).reset_index(drop=True)
    back, ahead = found["backward"], found["forward"]
    use_ahead = back["step"].isna() | ((ahead["step"] - ahead["at"]) < (back["at"] - back["step"]))
    out = back.copy()
    out["step"] = back["step"].where(~use_ahead, ahead["step"])
    raw = back[quantity].where(~use_ahead, ahead[quantity])
    score = signed(raw, out["higher_is_better"]) if quantity == "metric" else -raw
    diverged_by = (out["diverged_at_step"].astype(float) <= out["at"]).fillna(False)
    out["score"] = score.where(~diverged_by, -np.inf)
    # a run that diverged by then is scored at the nominal point, whatever the curve holds
    out["step"] = out["step"].where(~diverged_by, out["at"])
    return out[["id", "task", "task_type", "optimizer", "seed", "steps", "fraction", "step",
                "score"]]


def ranks_at(values: pd.DataFrame) -> pd.DataFrame:
    """Per task, fraction and optimizer: the mean rank (1 = best) over the seeds at which every
    optimizer of the task has a value. Input: `values_at`. Columns: task, task_type, optimizer,
    fraction, rank, seeds."""
    v = values[values["score"].notna()]
    k = v.groupby("task")["optimizer"].transform("nunique")
    present = v.groupby(["task", "seed", "fraction"])["optimizer"].transform("size")
    v = v[(present == k) & (k >= 2)]
    rank = v.groupby(["task", "seed", "fraction"])["score"].rank(ascending=False, method="average")
    out = v.assign(rank=rank).groupby(["task", "task_type", "optimizer", "fraction"], sort=True).agg(
        rank=("rank", "mean"), seeds=("seed", "size"))
    return out.reset_index()


def speed(
    runs: pd.DataFrame, curves: pd.DataFrame, split: str = "val",
    fractions: tuple[float, ...] = FRACTIONS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Early against late: each optimizer's rank at fractions of the budget, and steps to target.

    Per task (`ranks_at` of `values_at`): rank_<pct> for each fraction, the seeds ranked, the
    median steps to target over seeds on the validation metric, as stored (∞: not reached on
    half the seeds or more; NaN: the task has no target), the seeds that reached it, and
    read_<pct>: the fraction of the budget at which the curve was actually read (the median
    over seeds of the nearest evaluation step / steps), which coarse evaluation intervals move
    away from the nominal fraction. Per task type: the mean of the per-task ranks
    over the tasks that ran every optimizer of the type, and late_minus_early = rank at the last
    fraction - rank at the first (positive: the optimizer falls behind as training goes on).
    Returns (by_task, by_type).
    """
    labels = [f"rank_{fraction_label(f)}" for f in fractions]
    read = [f"read_{fraction_label(f)}" for f in fractions]
    at = _selected(runs)
    values = values_at(at, curves, split, fractions)
    per = ranks_at(values)
    by_task = per.pivot_table(index=["task", "task_type", "optimizer"], columns="fraction",
                              values="rank")
    by_task.columns = [f"rank_{fraction_label(f)}" for f in by_task.columns]
    by_task = by_task.reindex(columns=labels)
    by_task["seeds"] = per.groupby(["task", "task_type", "optimizer"])["seeds"].min()
    cost = at.assign(cost=run_costs(at, "val"))  # as stored: on the validation metric
    cost["reached"] = np.isfinite(cost["cost"])
    steps = cost.groupby(["task", "task_type", "optimizer"]).agg(
        steps_to_target=("cost", "median"), reached=("reached", "sum"))
    used = values.assign(used=values["step"] / values["steps"].astype(float)).pivot_table(
        index=["task", "task_type", "optimizer"], columns="fraction", values="used",
        aggfunc="median")
    used.columns = [f"read_{fraction_label(f)}" for f in used.columns]
    by_task = by_task.join(steps, how="left").join(used.reindex(columns=read), how="left")
    by_task = by_task.reset_index()
    by_task["seeds"] = by_task["seeds"].fillna(0).astype(int)
    task_schema = {"task": _S, "task_type": _S, "optimizer": _S, **{c: _F for c in labels},
                   "seeds": _I, "steps_to_target": _F, "reached": _I, **{c: _F for c in read}}
    by_task["reached"] = by_task["reached"].fillna(0)
    rows = []
    for kind, part in by_task.groupby("task_type", sort=True):
        wide = part.pivot(index="task", columns="optimizer", values=labels[-1])
        complete = wide.dropna().index
        mine = part[part["task"].isin(complete)]
        for optimizer, own in mine.groupby("optimizer", sort=True):
            row = {"task_type": kind, "optimizer": optimizer, "tasks": len(own)}
            row.update({c: float(own[c].mean()) for c in labels})
            row["late_minus_early"] = row[labels[-1]] - row[labels[0]]
            rows.append(row)
    type_schema = {"task_type": _S, "optimizer": _S, **{c: _F for c in labels},
                   "late_minus_early": _F, "tasks": _I}
    return table(by_task, task_schema), table(rows, type_schema)
