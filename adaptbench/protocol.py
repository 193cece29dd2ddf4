"""The protocol: which runs a report's figures come from, decided once per report.

Every report goes store → `results.load` → `select` (here, once) → statistics → render. The
statistics take the runs `select` returns and never choose an lr themselves.

`select` does, in order:
1. **Results only**: runs that are `done` or `diverged` (a diverged run is the worst result).
2. **One definition per task**: a task whose definition changed (its fingerprint: code and
   settings) keeps only the runs of its newest definition; the others are left out, with a note.
3. **Variants**: runs of one optimizer under other settings are other contenders, named by their
   settings (`adam+cosine`, `adam{betas=0.9,0.99}`, `adam@300steps`, `adam/b32`; see
   `variant_labels`). A label depends only on the run itself, never on which other runs exist.
4. **Selection, then evaluation** (`tuned`, the default): per (task, variant) the lr with the best
   mean validation metric over the *selection* runs (the lr grid; `choose_lr` gives the rule);
   the figures then come from the *evaluation* runs (fresh seeds) at that lr. Where there are
   none, the figures come from the selection runs at that lr, which flatters them (the lr was
   chosen on those very seeds), and the `source` column says so. `fixed`: every lr of the
   selection runs, no choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptbench.errors import UserError
from adaptbench.vocab import Role, Status

TUNED, FIXED = "tuned", "fixed"
PROTOCOLS = (TUNED, FIXED)
_S, _F, _I, _B = object, float, int, bool
SELECTION_SCHEMA = {
    "task": _S, "task_type": _S, "optimizer": _S, "lr": _F, "val_mean": _F, "selection_n": _I,
    "selection_diverged": _I, "all_diverged": _B, "eval_n": _I, "source": _S,
}
EVALUATION, SELECTION = "evaluation", "selection"


def table(rows: list[dict] | pd.DataFrame, schema: dict[str, type]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the schema's columns, in order, and dtypes."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=list(schema))
    return df[list(schema)].astype(schema).reset_index(drop=True)


@dataclass(frozen=True)
class Selected:
    """What a report looks at: the runs whose figures it shows, and how they were chosen.

    `runs`: per (task, variant) the runs at one lr (tuned) or at every lr (fixed); `optimizer`
    holds the variant label. `table`: per (task, variant) the selected lr, the selection
    figures, the evaluation n and the source of the figures (empty for fixed). `notes`: what
    was left out or looks suspicious, for the reader.
    """

    runs: pd.DataFrame
    table: pd.DataFrame
    protocol: str
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """'evaluation', 'selection' (optimistic), 'mixed', or 'none' (nothing selected)."""
        if self.protocol == FIXED:
            return SELECTION if len(self.runs) else "none"
        sources = set(self.table["source"])
        if not sources:
            return "none"
        return sources.pop() if len(sources) == 1 else "mixed"

    def describe(self) -> str:
        """The protocol in words, for report titles."""
        if self.protocol == FIXED:
            return "every lr (fixed-lr protocol), selection seeds"
        rule = "lr tuned per (task, optimizer) on the mean validation metric of the selection seeds"
        return {
            EVALUATION: f"{rule}; figures from fresh evaluation seeds",
            SELECTION: f"{rule}; figures from those same seeds (OPTIMISTIC: no evaluation runs)",
            "mixed": f"{rule}; figures from evaluation seeds where they exist, else from the "
                     f"selection seeds (optimistic; see the source column)",
        }.get(self.source, rule)


def results_only(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results (`done` or `diverged`); queued, failed, … runs are not."""
    return runs[runs["status"].isin(Status.results())]


def _role(runs: pd.DataFrame) -> pd.Series:
    if "role" not in runs:
        return pd.Series(Role.selection.value, index=runs.index, dtype=object)
    return runs["role"].fillna(Role.selection.value)


def latest_definitions(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per task, only the runs of its newest definition (the fingerprint of its newest run).

    Runs stored before fingerprints were recorded have none (NaN) and count as one definition
    of their own. Returns the kept runs and one note per task that lost runs.
    """
    if "fingerprint" not in runs or runs.empty:
        return runs, []
    fp = runs["fingerprint"].fillna("")
    if (fp.groupby(runs["task"]).nunique() <= 1).all():
        return runs, []
    newest = runs.assign(_fp=fp).sort_values("id").groupby("task")["_fp"].last()
    keep = fp.to_numpy() == runs["task"].map(newest).to_numpy()
    notes = []
    for task, dropped in runs[~keep].groupby("task", sort=True).size().items():
        notes.append(f"task {task}: {dropped} run(s) of an older definition of the task (its "
                     f"code or settings changed since) are left out; queue the runs again to "
                     f"redo them")
    return runs[keep], notes


def _compact_params(text: str) -> str:
    params = json.loads(text)

    def show(v: object) -> str:
        if isinstance(v, list):
            return ",".join(f"{x:g}" for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v).lower()

    return "{" + ";".join(f"{k}={show(v)}" for k, v in sorted(params.items())) + "}"


def variant_labels(runs: pd.DataFrame) -> pd.Series:
    """The contender each run belongs to: the optimizer's name plus what differs from defaults.

    - a non-constant schedule: ``adam+cosine``;
    - hyperparameters: ``adam{betas=0.9,0.99}`` (sorted, compact);
    - a budget or batch size other than the task's default at queue time (`task_steps`,
      `task_batch_size`): ``adam@300steps``, ``adam/b32``. Runs stored before those defaults
      were recorded fall back to: named when the task has the same label at several budgets.
    The plain name (``adam``) therefore always means the task's default settings, whichever
    other runs are stored.
    """
    label = runs["optimizer"].astype(str)
    schedule = runs["schedule"].fillna("constant") if "schedule" in runs else None
    if schedule is not None:
        label = label.where(schedule == "constant", label + "+" + schedule)
    if "params" in runs:
        params = runs["params"].fillna("{}")
        custom = params != "{}"
        if custom.any():
            label = label.where(~custom, label + params.where(~custom, params.map(_compact_params)))
    for column, default, fmt in (("steps", "task_steps", "@{}steps"),
                                 ("batch_size", "task_batch_size", "/b{}")):
        if column not in runs:
            continue
        known = runs[default].notna() if default in runs else pd.Series(False, index=runs.index)
        differs = known & (runs[column] != runs[default]) if default in runs else known
        several = runs.assign(_label=label).groupby(["task", "_label"])[column].transform("nunique") > 1
        name = differs | (~known & several)
        if name.any():
            label = label.where(~name, label + runs[column].map(lambda v, f=fmt: f.format(int(v))))
    return label


# the note that a task's contenders differ in budget or batch size (reports that keep budgets
# apart, as the claims do, leave it out)
BUDGET_NOTE = "contenders with different budgets or batch sizes are compared"


def _budget_notes(runs: pd.DataFrame) -> list[str]:
    notes = []
    for task, labels in runs.groupby("task", sort=True)["optimizer"]:
        names = sorted(set(labels))
        odd = [n for n in names if "@" in n or "/b" in n]
        if odd and len(names) > len(odd):
            notes.append(f"task {task}: {BUDGET_NOTE} ({', '.join(names)}); the labels say which")
    return notes


def check_unique(runs: pd.DataFrame) -> None:
    """Refuse several runs of one (task, variant, lr, seed, role): pooling them would be silent.

    The study label is part of a run's identity, so the same experiment stored under two
    studies is two runs; a report over both must pick one study.
    """
    keys = ["task", "optimizer", "lr", "seed"]
    frame = runs.assign(_role=_role(runs))
    dup = frame[frame.duplicated(keys + ["_role"], keep=False)]
    if len(dup):
        row = dup.iloc[0]
        studies = sorted({str(s) or "(none)" for s in dup.get("study", pd.Series([""])).fillna("")})
        raise UserError(
            f"{int(dup.groupby(keys).ngroups)} (task, optimizer, lr, seed) combinations have "
            f"several runs, e.g. task={row['task']!r} optimizer={row['optimizer']!r} "
            f"lr={row['lr']:g} seed={int(row['seed'])}, stored under the studies "
            f"{', '.join(studies)}; report on one study at a time", about="study"
        )


def choose_lr(runs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The selection rule, per (task, optimizer) over the given result runs.

    Diverged runs count as the worst possible value, so an lr with any diverged seed ranks below
    every lr without; among those, a smaller fraction diverged wins, then the better mean of the
    finite validation metrics, then the smaller lr. Done runs without a validation metric are
    ignored. Returns the chosen row per group (task, optimizer, lr, task_type, val_mean, n,
    diverged, all_diverged, code) and every run's (task, optimizer, lr) group code.
    """
    done = (runs["status"] == Status.done.value).to_numpy()
    val = np.where(done, runs["final_val_metric"].to_numpy(float), np.nan)
    key = np.where(runs["higher_is_better"].to_numpy(bool), val, -val)
    has_val = ~np.isnan(val)
    grouped = runs.groupby(["task", "optimizer", "lr"], sort=True)
    codes = grouped.ngroup().to_numpy()
    size = grouped.size()
    m = len(size)

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=m)

    n = total(has_val.astype(float))
    kept = total((has_val | ~done).astype(float))  # done runs without a metric do not count
    diverged = total((~done).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_lr = size.to_frame("size").reset_index().assign(
            task_type=runs["task_type"].to_numpy()[np.unique(codes, return_index=True)[1]],
            val_mean=total(np.where(has_val, val, 0.0)) / n,
            key=total(np.where(has_val, key, 0.0)) / n,
            n=n, diverged=diverged, div_frac=diverged / kept, code=np.arange(m),
        )
    per_lr = per_lr[kept > 0]
    any_finite = per_lr.groupby(["task", "optimizer"])["n"].transform("sum") > 0
    per_lr = per_lr.assign(all_diverged=~any_finite).sort_values(
        ["task", "optimizer", "div_frac", "key", "lr"],
        ascending=[True, True, True, False, True], na_position="last", kind="mergesort",
    )
    best = per_lr.groupby(["task", "optimizer"], sort=True).head(1)
    return best.sort_values(["task", "optimizer"]), codes


def prepare(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Steps 1–3 of `select`: result runs of each task's newest definition, labelled by variant."""
    res = results_only(runs)
    res, notes = latest_definitions(res)
    if res.empty:
        return res, notes
    res = res.assign(optimizer=variant_labels(res)).sort_values("id").reset_index(drop=True)
    check_unique(res)
    return res, notes + _budget_notes(res)


def select(runs: pd.DataFrame, protocol: str = TUNED) -> Selected:
    """Apply the protocol (module docstring) to loaded runs: the one place an lr is chosen."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    res, notes = prepare(runs)
    role = _role(res)
    selection = res[role == Role.selection.value]
    evaluation = res[role == Role.evaluation.value]
    if protocol == FIXED:  # every lr of the selection seeds (the title says so)
        return Selected(selection, table([], SELECTION_SCHEMA), protocol, tuple(notes))
    if selection.empty:
        if len(evaluation):
            notes.append(f"{len(evaluation)} evaluation run(s) have no selection runs to "
                         f"choose their lr from (filtered out?) and are not shown")
        return Selected(selection, table([], SELECTION_SCHEMA), protocol, tuple(notes))
    best, codes = choose_lr(selection)
    key = ["task", "optimizer", "lr"]
    chosen = best[key].assign(_chosen=True)
    at_sel = selection[np.isin(codes, best["code"].to_numpy())]
    ev = evaluation.merge(chosen, on=key, how="left")
    ev_ok = ev["_chosen"].eq(True).to_numpy()
    ev_at = evaluation[ev_ok]
    stale = int((~ev_ok).sum())
    if stale:
        notes.append(f"{stale} evaluation run(s) at an lr that is no longer the selected one "
                     f"are left out")
    eval_n = ev_at.groupby(["task", "optimizer"]).size()
    tab = best.set_index(["task", "optimizer"]).assign(
        eval_n=eval_n).fillna({"eval_n": 0}).reset_index()
    tab = tab.assign(source=np.where(tab["eval_n"] > 0, EVALUATION, SELECTION),
                     selection_n=tab["n"], selection_diverged=tab["diverged"])
    use_eval = set(map(tuple, tab.loc[tab["eval_n"] > 0, ["task", "optimizer"]].to_numpy()))
    pair = list(zip(at_sel["task"], at_sel["optimizer"]))
    from_sel = at_sel[[p not in use_eval for p in pair]]
    figures = pd.concat([from_sel, ev_at]).sort_values("id") if len(ev_at) else from_sel
    for row in tab[tab["all_diverged"]].itertuples():
        notes.append(f"{row.task} x {row.optimizer}: every lr diverged on every selection seed; "
                     f"the lr shown ({row.lr:g}) is only the smallest tried")
    edge = edge_note(selection, tab[~tab["all_diverged"]])
    if edge:
        notes.append(edge)
    return Selected(figures.reset_index(drop=True), table(tab, SELECTION_SCHEMA), protocol,
                    tuple(notes))


EDGE_NOTE = "chose the smallest or largest lr tried"
EDGE_MIN_LRS = 3  # with two lrs every choice is at an end: no note


def edge_note(selection: pd.DataFrame, chosen: pd.DataFrame, show: int = 6) -> str:
    """A note naming the (task, optimizer) pairs whose chosen lr (`chosen`: task, optimizer,
    lr) is the smallest or largest of the >= EDGE_MIN_LRS lrs their selection runs tried: the
    best lr may lie outside the grid, and a wider grid could change the figures. "" if none.

    The grid is every lr with a selection run, diverged or not (a largest lr that diverged
    bounds the choice); `report lr`'s `at_edge` applies its own rule to each pair."""
    if chosen.empty:
        return ""
    grid = selection.groupby(["task", "optimizer"])["lr"].agg(["min", "max", "nunique"])
    rows = chosen.join(grid, on=["task", "optimizer"])
    rows = rows[rows["nunique"] >= EDGE_MIN_LRS]
    tried = len(rows)
    rows = rows[(rows["lr"] == rows["min"]) | (rows["lr"] == rows["max"])]
    if rows.empty:
        return ""
    named = [f"{r['task']} x {r['optimizer']} ({r['lr']:g}, the "
             f"{'smallest' if r['lr'] == r['min'] else 'largest'})" for _, r in rows.iterrows()]
    more = f", and {len(named) - show} more" if len(named) > show else ""
    return (f"{len(rows)} of the {tried} (task, optimizer) pair(s) tried at {EDGE_MIN_LRS} or "
            f"more lrs {EDGE_NOTE}, so their best lr may lie outside the grid: "
            f"{', '.join(named[:show])}{more}; lrs beyond it, queued with the pair's settings "
            f"and study, would tell")


def check_selected(runs: pd.DataFrame) -> None:
    """Refuse runs that hold several lrs of one (task, optimizer): a statistic would pool them.

    A programming error (statistics take `select(...).runs` of the tuned protocol), not a user's.
    """
    if len(runs) and (runs.groupby(["task", "optimizer"])["lr"].nunique() > 1).any():
        raise ValueError("runs hold several lrs per (task, optimizer): pass the runs of "
                         "protocol.select(runs).runs, which the tuned protocol chose")
