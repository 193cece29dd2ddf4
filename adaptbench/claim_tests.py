"""The statistic behind each part of each claim, with its interval and one-sided test.

Each part computes one quantity for every optimizer of its claim and asks whether the claim's
optimizer stands out, so that a statement true of every optimizer is never a finding about
one. The inputs are *cells*: the values of one optimizer's runs on one task at its selected lr,
one value per seed. A statistic is the mean over *units* (tasks, or a sparse task with its
dense twin) of a per-unit estimate computed from all the seeds of the unit's cells.

Test and interval are Student's t over the units (`inference.one_sided_t_test`, df = units -
1): the per-unit estimates vary with the seeds and with the luck of each optimizer's lr
selection on the unit, and their spread measures both. A stratified bootstrap over 5 tasks
proved too narrow for that second source (an lr grid that picks a worse lr on one task shifts
that task's estimate, and a bootstrap over 5 tasks leaves such a task out of a third of its
resamples): benchmarks/calibration.py measured it. p-values are one-sided; a part made of
several conditions (all must hold) is an intersection-union test whose p-value is the largest
of theirs. The interval shown is the two-sided 95% t-interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adaptbench.inference import one_sided_t_test, t_interval

SHORTFALL_CAP = 10.0  # margins: one task where an optimizer fails cannot outweigh ten others

Cells = dict[str, np.ndarray]  # optimizer -> its runs' values on one task (one per seed)


@dataclass(frozen=True)
class Condition:
    """One statistic of a part: its estimate, 95% interval, and the one-sided test of the
    claim's side of `threshold` (`above`); `p_value` NaN for a statistic shown as context."""

    statistic: str
    value: float
    low: float
    high: float
    threshold: float
    above: bool
    p_value: float


@dataclass(frozen=True)
class Part:
    """One part of a claim: conditions that must all hold, over `tasks` units and `runs` runs.

    `detail` gives the same quantity for every optimizer and per task; `context` holds
    statistics shown beside the part that do not enter its verdict."""

    claim: str
    name: str
    conditions: tuple[Condition, ...]
    tasks: int
    runs: int
    detail: str
    context: tuple[Condition, ...] = ()

    @property
    def p_value(self) -> float:
        """The intersection-union test's p-value: the largest of its conditions'."""
        return max(c.p_value for c in self.conditions)


def _conditions(names: Sequence[str], per_unit: np.ndarray,
                sides: Sequence[tuple[float, bool] | None]) -> list[Condition]:
    """One condition per column of a (units, m) array of per-unit estimates."""
    per_unit = np.atleast_2d(np.asarray(per_unit, dtype=float))
    mean, sd = per_unit.mean(axis=0), per_unit.std(axis=0, ddof=1)
    low, high = t_interval(mean, sd, np.full(len(mean), per_unit.shape[0]))
    out = []
    for j, (name, side) in enumerate(zip(names, sides)):
        threshold, above = side if side is not None else (np.nan, True)
        p = (one_sided_t_test(per_unit[:, j], threshold, above).p_value if side is not None
             else np.nan)
        out.append(Condition(name, float(mean[j]), float(low[j]), float(high[j]),
                             float(threshold), above, float(p)))
    return out


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(a run of x scores above a run of y), ties ½, over all pairs of runs (the
    Mann-Whitney U / (n_x n_y); rliable's probability of improvement on one task)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float((np.greater.outer(x, y) + 0.5 * np.equal.outer(x, y)).mean())


def field_improvement(cells: Cells, order: Sequence[str]) -> dict[str, float]:
    """On one task, each optimizer's probability of improvement over the others: the mean over
    its rivals of `improvement`."""
    return {o: float(np.mean([improvement(cells[o], cells[r]) for r in order if r != o]))
            for o in order}


def _floored(cells: Cells, order: Sequence[str]) -> list[np.ndarray]:
    """-inf (a diverged run) replaced by the worst finite value on the task, for means."""
    values = [np.asarray(cells[o], dtype=float) for o in order]
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    floor = float(finite.min()) if len(finite) else 0.0
    return [np.where(np.isfinite(v), v, floor) for v in values]


def shortfalls(cells: Cells, margin: float, order: Sequence[str]) -> dict[str, float]:
    """On one task, each optimizer's shortfall from the best optimizer's mean, in margins
    (capped at SHORTFALL_CAP; a diverged run counts as the task's worst finite result)."""
    means = np.array([v.mean() for v in _floored(cells, order)])
    return {o: float(min(SHORTFALL_CAP, (means.max() - m) / margin)) for o, m in zip(order, means)}


def _mean_over(tasks: Sequence[dict[str, float]], order: Sequence[str]) -> dict[str, float]:
    return {o: float(np.mean([t[o] for t in tasks])) for o in order}


def accuracy(tasks: Sequence[str], cells: Sequence[Cells], margins: Sequence[float],
             order: Sequence[str], metric: str) -> Part:
    """Claim (a), accuracy: does the first optimizer of `order` stand out on the final metric
    and reach the best one? Conditions over tasks: its probability of improvement over each
    rival (`improvement`) above ½, and its shortfall from the best optimizer's mean in the
    task's practical margin (`shortfalls`) below 1. `cells` hold scores (larger is better,
    -inf for a diverged run)."""
    subject, rivals = order[0], order[1:]
    short = [shortfalls(c, m, order) for c, m in zip(cells, margins)]
    per_task = np.array([[improvement(c[subject], c[r]) for r in rivals] + [s[subject]]
                         for c, s in zip(cells, short)])
    conditions = _conditions(
        [f"{subject}'s probability of improvement over {r} ({metric} metric)" for r in rivals]
        + [f"{subject}'s shortfall from the best optimizer's mean, in practical margins"],
        per_task, [(0.5, True)] * len(rivals) + [(1.0, False)])
    field = [field_improvement(c, order) for c in cells]
    detail = ("the same for every optimizer: improvement over the other four "
              + _listing(_mean_over(field, order)) + "; shortfall "
              + _listing(_mean_over(short, order)) + "; within a margin of the best on "
              + ", ".join(f"{o} {sum(s[o] <= 1 for s in short)}" for o in order)
              + f" of {len(tasks)} tasks")
    return Part("a", "accuracy", tuple(conditions), len(tasks), _runs(cells), detail)


def speed(tasks: Sequence[str], cells: Sequence[Cells], order: Sequence[str]) -> Part:
    """Claim (a), speed: the first optimizer's probability of improvement over each rival in
    steps to the target (cells hold minus the steps, -inf when never reached), above ½."""
    subject, rivals = order[0], order[1:]
    per_task = np.array([[improvement(c[subject], c[r]) for r in rivals] for c in cells])
    conditions = _conditions(
        [f"{subject}'s probability of reaching the target in fewer steps than {r}"
         for r in rivals], per_task, [(0.5, True)] * len(rivals))
    field = [field_improvement(c, order) for c in cells]
    return Part("a", "speed", tuple(conditions), len(tasks), _runs(cells),
                "the same for every optimizer: probability of fewer steps than the other four "
                + _listing(_mean_over(field, order)))


def sparse_advantage(
    pairs: Sequence[tuple[str, str]], sparse: Sequence[Cells], dense: Sequence[Cells],
    subject: str, opponents: Sequence[str], metric: str,
) -> list[Part]:
    """Claim (b): per opponent, two conditions over the (sparse task, dense twin) pairs: the
    subject's probability of improvement over the opponent on the sparse task above ½, and
    that minus the same on its dense twin (the interaction) above 0. A part's runs: the
    subject's and that opponent's, on both sides of every pair."""
    parts = []
    for o in opponents:
        runs = _runs([{k: c[k] for k in (subject, o)} for c in [*sparse, *dense]])
        on_sparse = np.array([improvement(s[subject], s[o]) for s in sparse])
        on_dense = np.array([improvement(d[subject], d[o]) for d in dense])
        conditions = _conditions(
            [f"{subject}'s probability of improvement over {o} on the sparse tasks ({metric} "
             f"metric)", "the same minus that on their dense twins (sparse - dense)"],
            np.column_stack([on_sparse, on_sparse - on_dense]), [(0.5, True), (0.0, True)])
        per_pair = ", ".join(f"{s} {a:.2f} vs {d} {b:.2f}"
                             for (s, d), a, b in zip(pairs, on_sparse, on_dense))
        parts.append(Part("b", f"over {o}", tuple(conditions), len(pairs), runs,
                          "per pair (sparse vs dense twin): " + per_pair))
    return parts


def improvement_context(cells: Sequence[Cells], subject: str, opponents: Sequence[str],
                        where: str, metric: str) -> list[Condition]:
    """The subject's probability of improvement over each opponent, with its interval; shown
    beside a claim, not tested."""
    per_task = np.array([[improvement(c[subject], c[o]) for o in opponents] for c in cells])
    return _conditions([f"{subject}'s probability of improvement over {o} {where} ({metric} "
                        f"metric; shown, not tested)" for o in opponents],
                       per_task, [None] * len(opponents))


def stall(tasks: Sequence[str], cells: Sequence[dict[int, Cells]], budgets: Sequence[int],
          order: Sequence[str], margin: float) -> list[Part]:
    """Claim (c): the subject's (first of `order`) mean normalised gap minus the mean of its
    rivals' at each budget (`cells[u][budget][optimizer]`: the runs' normalised gaps, 0 = the
    best loss reached on the task, 1 = the initial loss), R_b. Early: R at the first budget
    below 0 (it is ahead). Late: R at the last budget above `margin` (it is behind, so a tie
    at the end is never a stall) and R(last) - R(first) above `margin` (it fell behind)."""
    subject, first, last = order[0], budgets[0], budgets[-1]
    at = [{b: {o: float(np.mean(c[b][o])) for o in order} for b in budgets} for c in cells]
    rel = np.array([[a[b][subject] - np.mean([a[b][o] for o in order[1:]]) for b in budgets]
                    for a in at])  # (tasks, budgets)
    per_task = np.column_stack([rel[:, 0], rel[:, -1], rel[:, -1] - rel[:, 0], rel[:, 1:-1]])
    gap = f"{subject}'s normalised gap minus its rivals' mean"
    names = [f"{gap} at {first}x the default budget", f"{gap} at {last}x",
             f"growth of that difference from {first}x to {last}x",
             *[f"{gap} at {b}x (shown, not tested)" for b in budgets[1:-1]]]
    sides = [(0.0, False), (margin, True), (margin, True)] + [None] * (len(budgets) - 2)
    conditions = _conditions(names, per_task, sides)
    runs = sum(_runs([c[b] for c in cells]) for b in budgets)
    ties, stalls, other = [], [], []
    for task, a, r in zip(tasks, at, rel):
        if max(a[last].values()) - min(a[last].values()) <= margin:
            ties.append(task)
        elif r[-1] > margin and r[-1] - r[0] > margin:
            stalls.append(task)
        else:
            other.append(task)
    detail = (f"per task (point estimates): ties at {last}x (every optimizer within {margin:g} "
              f"of each other, never a stall): {', '.join(ties) or 'none'}; falls behind: "
              f"{', '.join(stalls) or 'none'}; neither: {', '.join(other) or 'none'}")
    early = Part("c", "early", (conditions[0],), len(tasks), runs,
                 f"normalised gap = (final full-batch training loss - best on the task) / "
                 f"(initial loss - best); {first}x: the task's default budget")
    late = Part("c", "late", tuple(conditions[1:3]), len(tasks), runs, detail,
                tuple(conditions[3:]))
    return [early, late]


def _runs(cells: Sequence[Cells]) -> int:
    return int(sum(len(v) for c in cells for v in c.values()))


def _listing(values: dict[str, float]) -> str:
    return ", ".join(f"{o} {v:.2f}" for o, v in values.items())
