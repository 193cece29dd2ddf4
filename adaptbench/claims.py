"""Three claims the adaptive-lr literature repeats, each tested against the stored runs.

(a) "Adam converges fastest and reaches high accuracy on most tasks"; (b) "RMSprop does well on
sparse data"; (c) "AdaGrad drops the loss fast early but falls behind in long training".
Each claim has two parts, each part one or more conditions that must all hold (the statistics
are in `claim_tests`, which says how each is tested):

- (a) accuracy: Adam's probability of improvement over each of the other four on the final
  metric above ½, and its shortfall from the best optimizer's mean below one practical margin
  (`margin`), over the tasks in the claims. Speed: Adam's probability of improvement over each
  of the other four in steps to the target, each run's lr chosen for steps to target on the
  other selection seeds.
- (b) over SGD, over momentum: RMSprop's probability of improvement over it on the sparse tasks
  above ½, and that minus the same on their dense twins above 0 (at least 5 pairs).
- (c) from the final full-batch training loss at 1×, 4× and 16× the default budget, each budget
  with its own tuned lr: AdaGrad's normalised gap minus its rivals' mean, below 0 at 1×
  (early), above STALL_MARGIN at 16× and grown by more than STALL_MARGIN since 1× (late).

Holm's step-down adjustment runs over every part that could be tested, of all three claims,
at family-wise α = ALPHA; a claim is *supported* when each of its parts is rejected after the
adjustment, *not enough data* when a part lacks runs (what to queue is listed), else *not
supported*. Figures use the runs the tuned protocol selected (`protocol.select`), only the
claims optimizers at default settings, and no task that is a demonstration, nor in (a) and
(b) one without a held-out split (`left_out`: (c) reads the training loss, which needs none).
The verdict's scope is the suite the runs come from.

With `variants="best"` (the robustness arm, `--study adaptive-lr-robust`), claims (a) and (b)
compare each optimizer at its best variant per task instead (`claim_runs.best_variants`: a
schedule or a setting such as eps chosen like the lr, on the selection seeds); claim (c)
compares the plain optimizers across budgets either way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptbench import claim_runs, claim_tests, inference
from adaptbench.claim_runs import (BUDGETS, CLAIMS_OPTIMIZERS, CLAIMS_SEEDS, GRID_COLUMNS,
                                   MIN_SEEDS, MIN_TASKS, NO_HELD_OUT, SPARSE, curve_run_ids,
                                   left_out)
from adaptbench.spec import LONG_TRAINING_TASKS
from adaptbench.stats import scored, table

ALPHA = 0.05  # family-wise, over every part of every claim (Holm)
# Practical margins of the final metric (claim (a)): absolute for scores in [0, 1] (one
# percentage point), otherwise RELATIVE_MARGIN of the best optimizer's mean on the task.
ABSOLUTE_MARGINS = {"accuracy": 0.01, "token_accuracy": 0.01, "r2": 0.01}
RELATIVE_MARGIN = 0.02
STALL_MARGIN = 0.01  # claim (c): of the loss range (initial loss - best loss on the task)
SUPPORTED, NOT_SUPPORTED, NOT_ENOUGH, CONTEXT = ("supported", "not supported",
                                                 "not enough data", "context")
STATEMENTS = {
    "a": "Adam converges fastest and reaches high accuracy on most tasks",
    "b": "RMSprop does well on sparse data",
    "c": "AdaGrad drops the loss fast early but falls behind in long training",
}
NEEDS = {"a": CLAIMS_OPTIMIZERS, "b": ("rmsprop", "sgd", "momentum"), "c": CLAIMS_OPTIMIZERS}
ORDER = {"a": ("adam", "rmsprop", "adagrad", "sgd", "momentum"),
         "c": ("adagrad", "adam", "rmsprop", "sgd", "momentum")}
_S, _F, _I = object, float, int
CLAIM_SCHEMA = {"claim": _S, "statement": _S, "verdict": _S, "reason": _S, "scope": _S}
STAT_SCHEMA = {
    "claim": _S, "part": _S, "statistic": _S, "value": _F, "ci_low": _F, "ci_high": _F,
    "side": _S, "threshold": _F, "p_value": _F, "p_holm": _F, "tasks": _I, "runs": _I,
    "verdict": _S, "detail": _S,
}


def margin(metric_name: str, best_mean: float) -> float:
    """The practical margin of a task's final metric (see ABSOLUTE_MARGINS)."""
    if metric_name in ABSOLUTE_MARGINS:
        return ABSOLUTE_MARGINS[metric_name]
    return max(RELATIVE_MARGIN * abs(best_mean), 1e-12)


def _types(runs: pd.DataFrame, tasks: list[str]) -> str:
    kinds = runs[runs["task"].isin(tasks)].groupby("task")["task_type"].first()
    return ", ".join(sorted(set(kinds)))


def _accuracy(tuned: pd.DataFrame, tasks: list[str], metric: str) -> claim_tests.Part:
    order = ORDER["a"]
    cells = claim_runs.cells(tuned, tasks, "score", order)
    names = tuned.groupby("task")["metric_name"].first()
    margins = []
    for task, c in zip(tasks, cells):
        means = [v[np.isfinite(v)].mean() for v in c.values() if np.isfinite(v).any()]
        margins.append(margin(str(names[task]), max(means) if means else 0.0))
    part = claim_tests.accuracy(tasks, cells, margins, order, metric)
    used = sorted(set(names[tasks]))
    rule = ", ".join(f"{m} {ABSOLUTE_MARGINS[m]:g}" if m in ABSOLUTE_MARGINS
                     else f"{m} {RELATIVE_MARGIN:.0%} of the best mean" for m in used)
    return claim_tests.Part(part.claim, part.name, part.conditions, part.tasks, part.runs,
                            f"margins: {rule}; " + part.detail)


def _speed(grid: pd.DataFrame, tasks: list[str]) -> tuple[claim_tests.Part | None, str, list[str]]:
    """Claim (a)'s speed part over the tasks in the claims that have a target, or why not."""
    values = claim_runs.speed_values(grid[grid["task"].isin(tasks)])
    counts = values.groupby(["task", "optimizer"]).size().unstack().reindex(
        columns=list(CLAIMS_OPTIMIZERS))
    usable = sorted(counts.index[(counts >= MIN_SEEDS).all(axis=1)]) if len(counts) else []
    if len(usable) < MIN_TASKS:
        plain = claim_runs.claims_runs(grid)
        with_target = sorted(set(plain.loc[plain["target"].notna(), "task"]) & set(tasks))
        return None, (
            f"speed needs >= {MIN_TASKS} tasks with a target on whose lr grid each of "
            f"{', '.join(CLAIMS_OPTIMIZERS)} has >= {MIN_SEEDS} selection seeds at every lr; "
            f"found {len(usable)}" + (f" ({', '.join(usable)})" if usable else "")
            + f" of {len(with_target)} tasks with a target; queue `adaptbench run --study "
            f"adaptive-lr`"), usable
    cells = claim_runs.cells(values.assign(value=-values["cost"]), usable, "value", ORDER["a"])
    return claim_tests.speed(usable, cells, ORDER["a"]), "", usable


def _sparse(tuned: pd.DataFrame, cov: pd.DataFrame, metric: str, held: list[str],
            unheld: list[str]) -> tuple[list[claim_tests.Part], claim_tests.Part | None, str,
                                        list[str]]:
    """Claim (b)'s parts over the usable twin pairs, the context rows (RMSprop against Adam
    and AdaGrad on the sparse tasks, untested, as a part of their own), or why not. `held`:
    the tasks with a held-out split (`cov` also has claim (c)'s tasks without one);
    `unheld`: the tasks left out for having none."""
    sparse_unheld = set(cov.loc[(cov["task_type"] == SPARSE) & cov["task"].isin(unheld), "task"])
    cov = cov[cov["task"].isin(held)]
    pairs = claim_runs.twin_pairs(tuned)
    needs = NEEDS["b"]
    usable_tasks = set(claim_runs.usable_tasks(cov, needs))
    pairs_ok = [(s, d) for s, d in pairs if s in usable_tasks and d in usable_tasks]
    if len(pairs_ok) < MIN_TASKS:
        involved = [t for p in pairs for t in p]
        text = claim_runs.not_enough(cov, "(b)", needs, [f"{s}/{d}" for s, d in pairs_ok],
                                     involved, unit="(sparse task, dense twin) pairs")
        sparse_all = sorted(set(cov.loc[cov["task_type"] == SPARSE, "task"]))
        named = {s for s, _ in pairs}
        no_twin = [t for t in sparse_all if t not in named]
        left = sorted(({d for _, d in pairs} | sparse_unheld) & set(unheld))
        absent = sorted({d for _, d in pairs} - set(cov["task"]) - set(unheld))
        if not sparse_all:
            text += f"; no task of type {SPARSE!r} has results"
        if no_twin:
            text += f"; sparse tasks whose runs name no twin: {', '.join(no_twin)}"
        if left:
            text += f"; without a held-out split, which (b) needs: {', '.join(left)}"
        if absent:
            text += (f"; dense twins without results: {', '.join(absent)} (queue them with "
                     f"`adaptbench run --study adaptive-lr --task {','.join(absent)}`)")
        return [], None, text, []
    sparse_cells = claim_runs.cells(tuned, [s for s, _ in pairs_ok], "score", CLAIMS_OPTIMIZERS)
    dense_cells = claim_runs.cells(tuned, [d for _, d in pairs_ok], "score", CLAIMS_OPTIMIZERS)
    parts = claim_tests.sparse_advantage(pairs_ok, sparse_cells, dense_cells, "rmsprop",
                                         ("sgd", "momentum"), metric)
    complete = set(claim_runs.usable_tasks(cov, CLAIMS_OPTIMIZERS))
    shown = [c for (s, _), c in zip(pairs_ok, sparse_cells) if s in complete]
    context = None
    if len(shown) >= MIN_TASKS:  # the runs it reads: RMSprop's, Adam's, AdaGrad's there
        runs = sum(len(c[o]) for c in shown for o in ("rmsprop", "adam", "adagrad"))
        context = claim_tests.Part("b", "context", (), len(shown), runs, "", tuple(
            claim_tests.improvement_context(shown, "rmsprop", ("adam", "adagrad"),
                                            "on the sparse tasks", metric)))
    return parts, context, "", [t for p in pairs_ok for t in p]


def _stall(res: pd.DataFrame, tasks: list[str], curves: pd.DataFrame | None
           ) -> tuple[list[claim_tests.Part], str, list[str]]:
    """Claim (c)'s parts over its tasks whose initial loss is stored, or why not. A run that
    diverged has no final loss: it is left out of the gaps (and counted in the detail)."""
    res = res[res["task"].isin(tasks)]
    l0 = claim_runs.initial_losses(curves, res)
    res = res.assign(loss=res["final_train_loss"].astype(float).where(res["status"] == "done"))
    left = int(res["loss"].isna().sum())
    res = res[res["loss"].notna()]
    best = res.groupby("task")["loss"].min()
    finished = res.groupby(["task", "budget", "optimizer"]).size()
    enough = (finished >= 2).groupby("task").all() & (
        finished.groupby("task").size() == len(BUDGETS) * len(ORDER["c"]))
    ok = [t for t in tasks if t in l0.index and t in best.index and l0[t] > best[t]
          and enough.get(t, False)]
    if len(ok) < MIN_TASKS:
        lacking = [t for t in tasks if t not in ok]
        return [], (f"(c) needs >= {MIN_TASKS} tasks with the initial training loss stored "
                    f"(the step-0 point of the train_full or val curve) above the best final "
                    f"one, and >= 2 finished runs per optimizer and budget; found {len(ok)}"
                    + (f"; lacking: {', '.join(lacking)}" if lacking else "")), ok
    res = res[res["task"].isin(ok)]
    span = res["task"].map(l0 - best)
    res = res.assign(gap=((res["loss"] - res["task"].map(best)) / span).clip(0, 1))
    groups = claim_runs.grouped(res, ["task", "budget", "optimizer"], "gap")
    cells = [{b: {o: groups[(t, b, o)] for o in ORDER["c"]} for b in BUDGETS} for t in ok]
    parts = claim_tests.stall(ok, cells, BUDGETS, ORDER["c"], STALL_MARGIN)
    if left:
        late = parts[-1]
        parts[-1] = claim_tests.Part(late.claim, late.name, late.conditions, late.tasks,
                                     late.runs, late.detail + f"; {left} diverged run(s) left "
                                     f"out (no final loss)", late.context)
    return parts, "", ok


def _scope(claim: str, kinds: pd.DataFrame, tasks: dict[str, list[str]],
           parts: list[claim_tests.Part]) -> str:
    """Where a verdict holds: the suite's tasks it was measured on (`kinds`: their task and
    task_type), and the runs behind it."""
    mine = tasks.get(claim, [])
    where = {"a": f"this suite of {len(mine)} tasks of types {_types(kinds, mine)}"
                  + (f" (speed: the {len(tasks['speed'])} of them with a target)"
                     if tasks.get("speed") else ""),
             "b": f"this suite's {len(mine) // 2} sparse tasks and their dense twins",
             "c": f"this suite's {len(mine)} tasks run at "
                  + ", ".join(f"{b}x" for b in BUDGETS) + " the default budget (types "
                  + _types(kinds, mine) + ")"}[claim]
    runs = ", ".join(f"{p.name} {p.runs:,}" for p in parts)
    return f"on {where}; runs: {runs}"


def _rows(part: claim_tests.Part, p_holm: float, verdict: str) -> list[dict]:
    """One row per condition of a part (its detail on the first), then its context rows."""
    rows = []
    for i, c in enumerate(part.conditions):
        rows.append({"claim": part.claim, "part": part.name, "statistic": c.statistic,
                     "value": c.value, "ci_low": c.low, "ci_high": c.high,
                     "side": "above" if c.above else "below", "threshold": c.threshold,
                     "p_value": c.p_value, "p_holm": p_holm, "tasks": part.tasks,
                     "runs": part.runs, "verdict": verdict, "detail": "" if i else part.detail})
    for c in part.context:
        rows.append({"claim": part.claim, "part": part.name, "statistic": c.statistic,
                     "value": c.value, "ci_low": c.low, "ci_high": c.high, "side": "",
                     "threshold": np.nan, "p_value": np.nan, "p_holm": np.nan,
                     "tasks": part.tasks, "runs": part.runs, "verdict": CONTEXT, "detail": ""})
    return rows


def check(
    runs: pd.DataFrame, curves: pd.DataFrame | None = None, metric: str = "test",
    grid: pd.DataFrame | None = None, variants: str = claim_runs.PLAIN_VARIANTS,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Test the three claims; returns (claims, statistics, missing) tables.

    `runs`: the tuned protocol's selected runs (every variant; `protocol.select(...).runs`).
    `curves`: the step-0 curve points of `curve_run_ids(runs)` (claim (c)'s initial loss).
    `grid`: the selection runs at every lr (`protocol.select(..., "fixed").runs`), from which
    claim (a)'s speed part tunes the lr for steps to target. `metric`: the split of the final
    metric that claims (a) and (b) compare. Without `curves` or `grid` the parts that need
    them have not enough data. `variants`: "plain" compares the optimizers at default settings,
    "best" each at its best variant per task in (a) and (b) (`claim_runs.best_variants`,
    chosen on `grid`, which it then needs).
    """
    if variants not in claim_runs.VARIANT_CHOICES:
        raise ValueError(f"variants must be one of {claim_runs.VARIANT_CHOICES}, not {variants!r}")
    plain_runs, chosen = runs, None
    if variants == claim_runs.BEST_VARIANTS:
        if grid is None:
            raise ValueError('variants="best" chooses the variants on the lr grid: pass grid')
        chosen = claim_runs.best_variants(grid, runs)
        # speed tunes the variant with the lr, for steps to target, cross-fitted over seeds
        runs, grid = claim_runs.as_chosen(runs, chosen), claim_runs.as_candidates(grid)
    plain = claim_runs.claims_runs(runs)
    tuned = scored(plain, metric)
    cov = claim_runs.coverage(runs, plain)
    parts: dict[str, list[claim_tests.Part]] = {"a": [], "b": [], "c": []}
    lacking: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    tasks: dict[str, list[str]] = {}
    context: claim_tests.Part | None = None

    # (a) and (b) compare held-out figures; (c)'s tasks without a held-out split are not theirs
    held = sorted(set(claim_runs.claims_tasks(runs)["task"]))
    tasks["a"] = claim_runs.usable_tasks(cov, NEEDS["a"], held)
    if len(tasks["a"]) < MIN_TASKS:
        lacking["a"].append(claim_runs.not_enough(cov, "accuracy", NEEDS["a"], tasks["a"], held))
    else:
        parts["a"].append(_accuracy(tuned, tasks["a"], metric))
    if grid is None:
        lacking["a"].append("speed needs the selection runs at every lr (none given)")
    else:
        in_claims = sorted(set(cov["task"]) & set(held))
        part, why, tasks["speed"] = _speed(grid, in_claims)
        parts["a"] += [part] if part is not None else []
        lacking["a"] += [why] if why else []

    unheld = [t for t, why in left_out(runs).items() if why == NO_HELD_OUT]
    found_b, context, why, tasks["b"] = _sparse(tuned, cov, metric, held, unheld)
    parts["b"] += found_b
    lacking["b"] += [why] if why else []

    res = claim_runs.budget_runs(plain_runs)  # (c): the plain optimizers at every budget
    long = claim_runs.long_tasks(res)
    cov_c = cov if chosen is None else claim_runs.coverage(plain_runs)
    tasks["c"] = claim_runs.usable_tasks(cov_c, NEEDS["c"], long, BUDGETS)
    if len(tasks["c"]) < MIN_TASKS:
        why = claim_runs.not_enough(cov_c, "(c)", NEEDS["c"], tasks["c"], long, BUDGETS)
        arm = ", ".join(LONG_TRAINING_TASKS) or "none listed yet"
        lacking["c"].append(why + ("" if long else (
            "; no task has runs at 4x or 16x its default budget: `adaptbench run --study "
            f"adaptive-lr` queues them on the study's long-arm tasks ({arm}), `--steps` on "
            "others")))
    else:
        found_c, why, tasks["c"] = _stall(res, tasks["c"], curves)
        parts["c"] += found_c
        lacking["c"] += [why] if why else []

    tested = [p for claim in "abc" for p in parts[claim]]
    adjusted = dict(zip(map(id, tested), inference.holm([p.p_value for p in tested])))
    claims_rows, stat_rows = [], []
    for claim in "abc":
        verdicts = {}
        for p in parts[claim]:
            verdicts[p.name] = SUPPORTED if adjusted[id(p)] <= ALPHA else NOT_SUPPORTED
            stat_rows += _rows(p, adjusted[id(p)], verdicts[p.name])
        if claim == "b" and context is not None:
            stat_rows += _rows(context, np.nan, CONTEXT)
        family = f"Holm over the {len(tested)} parts tested, family-wise α = {ALPHA:g}"
        if lacking[claim]:
            verdict, reason = NOT_ENOUGH, "; ".join(lacking[claim])
        elif all(v == SUPPORTED for v in verdicts.values()):
            verdict, reason = SUPPORTED, f"every part clears its threshold ({family})"
        else:
            verdict = NOT_SUPPORTED
            reason = "; ".join(
                f"{p.name}: adjusted p = {adjusted[id(p)]:.3g} > {ALPHA:g} ("
                + ", ".join(f"{c.statistic} = {c.value:.3g} [{c.low:.3g}, {c.high:.3g}], "
                            f"claimed {'above' if c.above else 'below'} {c.threshold:g}, "
                            f"p = {c.p_value:.3g}" for c in p.conditions) + ")"
                for p in parts[claim] if verdicts[p.name] != SUPPORTED) + f" ({family})"
        scope = _scope(claim, cov_c, tasks, parts[claim]) if parts[claim] else ""
        if scope and chosen is not None and claim in "ab":
            scope += ("; each optimizer at its best variant per task, chosen like the lr on the "
                      "selection seeds (" + claim_runs.variant_counts(chosen, tasks[claim]) + ")")
        claims_rows.append({"claim": claim, "statement": STATEMENTS[claim], "verdict": verdict,
                            "reason": reason, "scope": scope})
    # what is missing: the plain optimizers' runs at every budget (the adaptive-lr study); a
    # variant waits for its evaluation seeds without being missing (`best_variants`)
    return (table(claims_rows, CLAIM_SCHEMA), table(stat_rows, STAT_SCHEMA),
            claim_runs.missing(cov if chosen is None else cov_c))


__all__ = ["check", "left_out", "curve_run_ids", "NO_HELD_OUT", "margin", "ALPHA", "BUDGETS",
           "CLAIMS_OPTIMIZERS", "CLAIMS_SEEDS", "GRID_COLUMNS", "MIN_SEEDS", "MIN_TASKS", "SPARSE",
           "STATEMENTS"]
