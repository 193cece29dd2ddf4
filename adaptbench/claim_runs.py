"""Which runs the adaptive-lr claims read, and what is missing for them.

The claims compare the optimizers of the `adaptive-lr` study preset at their tuned lrs
(`protocol.select`): at each task's default budget (claims (a) and (b)), and for claim (c) at 4×
and 16× it too. A (task, optimizer, budget) counts with at least MIN_SEEDS seeds at its tuned
lr; a claim needs MIN_TASKS such tasks (or twin pairs). What is missing is listed with the
commands that queue it: a spec is queued once, so the commands add only what is not stored.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from adaptbench.curves import run_costs
from adaptbench.protocol import results_only
from adaptbench.spec import LONG_BUDGETS, LONG_TRAINING_TASKS, STUDY_PRESETS
from adaptbench.stats import table

STUDY = STUDY_PRESETS["adaptive-lr"]
CLAIMS_OPTIMIZERS: tuple[str, ...] = STUDY.optimizers
CLAIMS_SEEDS: int = STUDY.seeds  # what the study queues per (task, optimizer, lr)
MIN_SEEDS = 3  # fewer seeds at the tuned lr and a (task, optimizer) does not count
MIN_TASKS = 5  # no statistic over fewer tasks (or twin pairs)
BUDGETS: tuple[int, ...] = (1, *LONG_BUDGETS)  # claim (c): multiples of the default steps
SPARSE = "sparse"
# what claim (a)'s speed part reads of the selection runs, besides the protocol's columns
GRID_COLUMNS = ("target", "steps_to_target", "diverged_at_step")
_S, _I = object, int
MISSING_SCHEMA = {"task": _S, "task_type": _S, "optimizer": _S, "steps": _I, "seeds": _I,
                  "needed": _I}

_PLAIN = re.compile(r"^(?P<base>[a-z]+)(?P<budget>(@\d+steps)?(/b\d+)?)$")
# a variant at the default budget and batch size: `adam+warmup-cosine`, `adam{eps=0.0001}`
_VARIANT = re.compile(r"^(?P<base>[a-z]+)(?P<variant>(\+[a-z0-9-]+)?(\{[^}]*\})?)$")
PLAIN_VARIANTS, BEST_VARIANTS = "plain", "best"
VARIANT_CHOICES = (PLAIN_VARIANTS, BEST_VARIANTS)


DEMONSTRATION = "a demonstration, outside the claims"
NO_HELD_OUT = "validation = test: no held-out figure"


def left_out(runs: pd.DataFrame, held_out: bool = True) -> dict[str, str]:
    """The tasks of these runs that a claim does not count, each with the reason: a
    demonstration (`Task.claims` False) or, for claims (a) and (b), which compare final
    held-out figures, a task whose validation and test are the same quantity (`Task.held_out`
    False); claim (c) reads the full-batch training loss, so it counts those (`held_out=False`).
    Recorded with each run at queue time; runs from before that was recorded count."""
    out: dict[str, str] = {}
    flags = [("task_claims", DEMONSTRATION)] + ([("task_held_out", NO_HELD_OUT)] if held_out
                                                else [])
    for column, why in flags:
        if column in runs:
            flag = runs[column]
            for task in runs.loc[flag.notna() & (flag == False), "task"].unique():  # noqa: E712
                out.setdefault(str(task), why)
    return out


def claims_tasks(runs: pd.DataFrame, held_out: bool = True) -> pd.DataFrame:
    """The result runs of the tasks the claims count: (a) and (b), or with `held_out=False`
    claim (c) (see `left_out`)."""
    res = results_only(runs)
    out = left_out(res, held_out)
    return res[~res["task"].isin(list(out))] if out else res


def claims_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The selected result runs of the claims optimizers at default settings, named plainly.

    A claim compares optimizers at one budget: per task, the runs at the task's default budget
    and batch size (label `adam`), or where there are none, at the one other budget all of the
    task's runs share (`adam@20steps` counts as `adam`). Variants with other schedules or
    hyperparameters (`adam+cosine`) are not the optimizers the claims are about.
    """
    res = claims_tasks(runs)
    parts = res["optimizer"].str.extract(_PLAIN)
    ok = parts["base"].isin(CLAIMS_OPTIMIZERS)
    res, parts = res[ok], parts[ok]
    keep = []
    for _, budgets in parts.groupby(res["task"])["budget"]:
        choice = "" if (budgets == "").any() else budgets.mode().iloc[0]
        keep.append(budgets.index[budgets == choice])
    index = pd.Index([]).append(keep) if keep else pd.Index([])
    return res.loc[index].assign(optimizer=parts.loc[index, "base"]).sort_values("id")


def best_variants(grid: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (task, claims optimizer), its variant at the default budget (the plain optimizer,
    `adam+warmup-cosine`, `adam{eps=0.0001}`, ...) chosen as the lr is chosen: on the selection
    runs (`grid`: every lr), each variant at its own selected lr (`protocol.choose_lr`), the one
    with the smallest share of diverged seeds, then the best mean validation metric; a tie goes
    to the plain optimizer, then to the first label in sort order. The variant is one more
    setting tuned on the selection seeds, and the figures of claims (a) and (b) come from the
    evaluation seeds, which chose nothing.

    `runs` (the selected runs): only variants whose figures there come from at least
    MIN_SEEDS evaluation seeds are candidates (one whose grid or evaluation seeds are
    unfinished would otherwise bring the selection seeds that chose it, or too few seeds),
    unless none of the optimizer's has them yet.

    Columns: task, optimizer (the plain name), variant (the label chosen), variants (how many
    were candidates), waiting (variants left out until their evaluation seeds are done)."""
    from adaptbench.protocol import choose_lr

    columns = ["task", "optimizer", "variant", "variants", "waiting"]
    res = claims_tasks(grid)
    parts = res["optimizer"].str.extract(_VARIANT)
    res = res[parts["base"].isin(CLAIMS_OPTIMIZERS)]
    if res.empty:
        return pd.DataFrame({c: pd.Series(dtype=int if c in ("variants", "waiting") else object)
                             for c in columns})
    best, _ = choose_lr(res)
    base = best["optimizer"].str.extract(_VARIANT)["base"]
    best = best.assign(base=base, fancy=best["optimizer"] != base)
    if runs is not None and "role" in runs:
        counts = runs[runs["role"] == "evaluation"].groupby(["task", "optimizer"]).size()
        evaluated = set(counts.index[counts >= MIN_SEEDS])
        done = pd.Series([(t, o) in evaluated for t, o in zip(best["task"], best["optimizer"])],
                         index=best.index)
        some = done.groupby([best["task"], best["base"]]).transform("any")
        best = best.assign(candidate=done | ~some)
    else:
        best = best.assign(candidate=True)
    waiting = (~best["candidate"]).groupby([best["task"], best["base"]]).sum()
    best = best[best["candidate"]].sort_values(
        ["task", "base", "all_diverged", "div_frac", "key", "fancy", "optimizer"],
        ascending=[True, True, True, True, False, True, True], na_position="last",
        kind="mergesort")
    tried = best.groupby(["task", "base"]).size()
    first = best.groupby(["task", "base"], sort=True).head(1)
    out = pd.DataFrame({"task": first["task"].to_numpy(), "optimizer": first["base"].to_numpy(),
                        "variant": first["optimizer"].to_numpy()})
    keys = list(zip(out["task"], out["optimizer"]))
    out["variants"] = [int(tried[k]) for k in keys]
    out["waiting"] = [int(waiting.get(k, 0)) for k in keys]
    return out[columns].reset_index(drop=True)


def as_chosen(runs: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """The runs with each task's chosen variant (`best_variants`) named by its plain optimizer,
    and the other default-budget variants of the claims optimizers (the plain one among them
    when a variant was chosen) left out; runs at other budgets are kept as they are."""
    parts = runs["optimizer"].str.extract(_VARIANT)
    variant = parts["base"].isin(CLAIMS_OPTIMIZERS)
    pick = dict(zip(zip(chosen["task"], chosen["optimizer"]), chosen["variant"]))
    keep = [not v or pick.get((t, b)) == label
            for v, t, b, label in zip(variant, runs["task"], parts["base"], runs["optimizer"])]
    keep = np.array(keep, dtype=bool)
    renamed = runs["optimizer"].where(~variant.to_numpy(), parts["base"])
    return runs.assign(optimizer=renamed)[keep]


def as_candidates(grid: pd.DataFrame) -> pd.DataFrame:
    """The selection runs with every default-budget variant of a claims optimizer named by its
    plain optimizer and its label kept in `variant`: claim (a)'s speed part then tunes the
    variant with the lr, for steps to target, on the other seeds (`speed_values`)."""
    parts = grid["optimizer"].str.extract(_VARIANT)
    variant = parts["base"].isin(CLAIMS_OPTIMIZERS).to_numpy()
    return grid.assign(variant=grid["optimizer"],
                       optimizer=grid["optimizer"].where(~variant, parts["base"]))


def variant_counts(chosen: pd.DataFrame, tasks: list[str]) -> str:
    """How often each variant was chosen on these tasks, of how many candidates:
    `adam (5 variants): plain 9, +warmup-cosine 3`, and the variants still waiting for their
    evaluation seeds."""
    part = chosen[chosen["task"].isin(tasks)]
    out = []
    for base in CLAIMS_OPTIMIZERS:
        mine = part[part["optimizer"] == base]
        if mine.empty:
            continue
        counts = mine["variant"].map(lambda v, b=base: v[len(b):] or "plain").value_counts()
        order = sorted(counts.to_dict(), key=lambda k: (k != "plain", k))
        most = int((mine["variants"] + mine["waiting"]).max())
        out.append(f"{base} ({most} variant{'s' if most != 1 else ''}): "
                   + ", ".join(f"{k} {counts[k]}" for k in order))
    waiting = int(part["waiting"].sum())
    return "; ".join(out) + (f"; {waiting} (task, variant) pairs wait for their evaluation "
                             f"seeds and are not candidates yet" if waiting else "")


def budget_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The selected runs of the claims optimizers at default settings at every budget of
    claim (c), named plainly, with `budget`: the multiple of the task's default steps (its
    smallest budget where runs do not record the default)."""
    res = claims_tasks(runs, held_out=False)
    parts = res["optimizer"].str.extract(_PLAIN)
    ok = parts["base"].isin(CLAIMS_OPTIMIZERS) & ~parts["budget"].fillna("").str.contains("/b")
    res = res[ok].assign(optimizer=parts.loc[ok, "base"])
    steps = res["steps"].astype(float)
    default = (res["task_steps"].astype(float) if "task_steps" in res
               else pd.Series(np.nan, index=res.index))
    default = default.fillna(steps.groupby(res["task"]).transform("min"))
    multiple = steps / default
    whole = np.isclose(multiple, multiple.round())
    res = res[whole].assign(budget=multiple[whole].round().astype(int))
    return res[res["budget"].isin(BUDGETS)].sort_values("id")


def long_tasks(res: pd.DataFrame) -> list[str]:
    """Claim (c)'s tasks: those with runs at a long budget, and the study's long-arm tasks."""
    found = set(res.loc[res["budget"] > 1, "task"]) | (set(LONG_TRAINING_TASKS) & set(res["task"]))
    return sorted(found)


def coverage(runs: pd.DataFrame, tuned: pd.DataFrame | None = None) -> pd.DataFrame:
    """Result seeds at the tuned lr of every (task, claims optimizer, budget) a claim needs:
    every task in the claims at its default budget, and claim (c)'s tasks at 4× and 16× too
    (with their default budget where (a) and (b) leave the task out: no held-out split).

    Columns: task, task_type, optimizer, budget, steps, seeds. `tuned`: `claims_runs(runs)`.
    """
    columns = ["task", "task_type", "optimizer", "budget", "steps", "seeds"]
    tuned = claims_runs(runs) if tuned is None else tuned
    res = budget_runs(runs)
    long = long_tasks(res)
    held = sorted(set(claims_tasks(runs)["task"]))
    every = claims_tasks(runs, held_out=False)
    tasks = every[every["task"].isin([*held, *long])].groupby("task", sort=True)["task_type"].first()
    if tasks.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("task", "task_type", "optimizer")
                                          else int) for c in columns})
    # the default budget of every task in a claim ((c)'s tasks without a held-out split too)
    frames = [pd.DataFrame({"task": list(tasks.index)}).merge(
        pd.DataFrame({"optimizer": CLAIMS_OPTIMIZERS}), how="cross").assign(budget=1)]
    if long:
        frames.append(pd.DataFrame({"task": long}).merge(
            pd.DataFrame({"optimizer": CLAIMS_OPTIMIZERS}), how="cross").merge(
            pd.DataFrame({"budget": list(LONG_BUDGETS)}), how="cross"))
    grid = pd.concat(frames, ignore_index=True)
    only_c = res[(res["budget"] == 1) & ~res["task"].isin(held)]  # (c) reads them at 1x too
    seeds = pd.concat([tuned.groupby(["task", "optimizer"]).size().rename("seeds").reset_index()
                       .assign(budget=1),
                       only_c.groupby(["task", "optimizer", "budget"]).size()
                       .rename("seeds").reset_index(),
                       res[res["budget"] > 1].groupby(["task", "optimizer", "budget"]).size()
                       .rename("seeds").reset_index()])
    out = grid.merge(seeds, on=["task", "optimizer", "budget"], how="left").fillna({"seeds": 0})
    default = _default_steps(runs)
    out["steps"] = (out["task"].map(default).fillna(0) * out["budget"]).astype(int)
    out["task_type"] = out["task"].map(tasks)
    return out[columns].astype({"seeds": int})


def _default_steps(runs: pd.DataFrame) -> pd.Series:
    res = claims_tasks(runs, held_out=False)
    steps = res["steps"].astype(float)
    if "task_steps" in res:
        steps = res["task_steps"].astype(float).fillna(steps.groupby(res["task"]).transform("min"))
    return steps.groupby(res["task"]).min()


def missing(cov: pd.DataFrame) -> pd.DataFrame:
    """The (task, claims optimizer, budget) combinations of a `coverage` table with fewer
    seeds than the study queues."""
    out = cov[cov["seeds"] < CLAIMS_SEEDS].assign(needed=CLAIMS_SEEDS)
    return table(out.sort_values(["budget", "task", "optimizer"], kind="mergesort"),
                 MISSING_SCHEMA)


def usable_tasks(cov: pd.DataFrame, optimizers: tuple[str, ...], tasks: list[str] | None = None,
                  budgets: tuple[int, ...] = (1,)) -> list[str]:
    part = cov[cov["optimizer"].isin(optimizers) & cov["budget"].isin(budgets)]
    if tasks is not None:
        part = part[part["task"].isin(tasks)]
    ok = part.assign(ok=part["seeds"] >= MIN_SEEDS).groupby("task")["ok"].all()
    complete = part.groupby("task")["budget"].nunique() == len(budgets)
    return sorted(ok[ok & complete.reindex(ok.index, fill_value=False)].index)


def queue_commands(rows: pd.DataFrame) -> list[str]:
    """The commands that queue the runs of these coverage rows (runs already stored are not
    queued again: a spec is queued once)."""
    def optimizers(part: pd.DataFrame) -> str:
        return ",".join(o for o in CLAIMS_OPTIMIZERS if o in set(part["optimizer"]))

    out = []
    default = rows[rows["budget"] == 1]
    if len(default):
        out.append(f"adaptbench run --study adaptive-lr --task "
                   f"{','.join(sorted(set(default['task'])))} --optim {optimizers(default)}")
    for (task, steps), part in rows[rows["budget"] > 1].groupby(["task", "steps"], sort=True):
        out.append(f"adaptbench run --study adaptive-lr --task {task} --optim "
                   f"{optimizers(part)} --steps {steps}")
    return out


def not_enough(cov: pd.DataFrame, what: str, optimizers: tuple[str, ...], found: list[str],
                tasks: list[str] | None = None, budgets: tuple[int, ...] = (1,),
                unit: str = "tasks") -> str:
    text = (f"{what} needs >= {MIN_TASKS} {unit} on which each of {', '.join(optimizers)} has "
            f">= {MIN_SEEDS} seeds at its tuned lr; found {len(found)}"
            + (f" ({', '.join(found)})" if found else ""))
    part = cov[cov["optimizer"].isin(optimizers) & cov["budget"].isin(budgets)
               & (cov["seeds"] < CLAIMS_SEEDS)]
    if tasks is not None:
        part = part[part["task"].isin(tasks)]
    if len(part):
        combos = [f"{r.task} x {r.optimizer}" + (f" at {r.steps} steps" if r.budget > 1 else "")
                  + f" ({r.seeds} of {CLAIMS_SEEDS} seeds)" for r in part.head(8).itertuples()]
        more = f", and {len(part) - 8} more" if len(part) > 8 else ""
        commands = queue_commands(part)
        text += ("; missing: " + ", ".join(combos) + more + "; queue them with `"
                 + "`, `".join(commands[:4]) + "`" + (" and more (the missing table lists them)"
                                                       if len(commands) > 4 else ""))
    return text


def cells(at: pd.DataFrame, tasks: list[str], column: str,
          optimizers: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """Per task, the values of `column` of each optimizer's runs (those it has)."""
    groups = grouped(at, ["task", "optimizer"], column)
    return [{o: groups[(t, o)] for o in optimizers if (t, o) in groups} for t in tasks]


def grouped(frame: pd.DataFrame, keys: list[str], column: str) -> dict[tuple, np.ndarray]:
    """The values of `column` per group of `keys`, as float arrays in the frame's order."""
    values = frame[column].to_numpy(float)
    return {key: values[index] for key, index in frame.groupby(keys).indices.items()}


def speed_values(grid: pd.DataFrame) -> pd.DataFrame:
    """Steps to the target at the lr tuned for them, cross-fitted: per (task, optimizer) and
    selection seed, the lr whose median steps to target over the *other* seeds is smallest
    (the smaller lr on a tie), and that seed's steps at that lr, so that no figure comes from
    a seed that chose its lr. Steps as stored (`steps_to_target` on the validation metric);
    ∞ for a run that diverged or never reached the target. Only tasks with a target, and the
    seeds every lr of the optimizer ran. Columns: task, optimizer, seed, lr, cost.

    With a `variant` column (`as_candidates`), each optimizer's candidates are its (variant,
    lr) pairs, chosen the same way, and seeds are those every pair ran."""
    plain = claims_runs(grid)
    plain = plain.assign(cost=run_costs(plain, "val"))
    plain = plain[plain["cost"].notna()]
    lr, seed, cost = (plain[c].to_numpy(float) for c in ("lr", "seed", "cost"))
    variants = "variant" in plain
    if variants:  # codes in tie order: the plain optimizer first, then label, lr
        keys = pd.DataFrame({"fancy": plain["variant"] != plain["optimizer"],
                             "variant": plain["variant"].astype(str), "lr": lr})
        order = keys.drop_duplicates().sort_values(["fancy", "variant", "lr"])
        code = {k: i for i, k in enumerate(zip(order["variant"], order["lr"]))}
        candidate = np.array([code[k] for k in zip(keys["variant"], keys["lr"])], dtype=float)
        label, fancy = keys["variant"].to_numpy(), keys["fancy"].to_numpy(bool)
    else:
        candidate = lr
    rows = []
    for (task, optimizer), index in sorted(plain.groupby(["task", "optimizer"]).indices.items()):
        _, first, row = np.unique(candidate[index], return_index=True, return_inverse=True)
        lrs = lr[index][first]
        seeds, column = np.unique(seed[index], return_inverse=True)
        costs = np.full((len(lrs), len(seeds)), np.nan)
        costs[row, column] = cost[index]
        if variants:  # a variant that lacks a seed the plain optimizer ran waits (all its lrs)
            names, plain_row = label[index][first], ~fancy[index][first]
            wanted = ~np.isnan(costs[plain_row]).any(axis=0) if plain_row.any() else None
            if wanted is not None:
                short = {n for n, r in zip(names, costs) if np.isnan(r[wanted]).any()}
                keep = np.array([n not in short for n in names])
                costs, lrs = costs[keep], lrs[keep]
        every = ~np.isnan(costs).any(axis=0)  # seeds that every lr ran
        costs, seeds = costs[:, every], seeds[every]
        if len(seeds) < 2:
            continue
        for j in range(len(seeds)):
            best = int(np.argmin(np.median(np.delete(costs, j, axis=1), axis=1)))
            rows.append({"task": task, "optimizer": optimizer, "seed": int(seeds[j]),
                         "lr": float(lrs[best]), "cost": costs[best, j]})
    return pd.DataFrame(rows, columns=["task", "optimizer", "seed", "lr", "cost"])


def twin_pairs(tuned: pd.DataFrame) -> list[tuple[str, str]]:
    """(sparse task, its dense twin) for every sparse task whose runs name a twin."""
    if "task_twin" not in tuned:
        return []
    sparse = tuned[(tuned["task_type"] == SPARSE) & tuned["task_twin"].notna()]
    twins = sparse.groupby("task")["task_twin"].first()
    return [(str(s), str(d)) for s, d in twins.items()]


def curve_run_ids(runs: pd.DataFrame) -> list[int]:
    """The runs whose initial training loss claim (c) reads (the step-0 curve point): the
    selected runs of claim (c)'s tasks at every budget."""
    res = budget_runs(runs)
    return [int(i) for i in res.loc[res["task"].isin(long_tasks(res)), "id"]]


def initial_losses(curves: pd.DataFrame | None, res: pd.DataFrame) -> pd.Series:
    """Per task, the median over its runs of the full-batch training loss at step 0 (the
    `train_full` curve), or of the validation loss there for runs stored before that curve
    was recorded (the same model at initialisation, on held-out examples of the same data)."""
    if curves is None or curves.empty:
        return pd.Series(dtype=float)
    start = curves[(curves["step"] == 0) & curves["loss"].notna()]
    start = start.sort_values("split", key=lambda s: s != "train_full", kind="mergesort")
    first = start[start["split"].isin(["train_full", "val"])].groupby("run_id")["loss"].first()
    return res.assign(l0=res["id"].map(first)).groupby("task")["l0"].median().dropna()
