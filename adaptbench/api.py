"""adaptbench from Python: a results database as pandas DataFrames, through the reports' own code.

    import adaptbench
    study = adaptbench.open("results.db", study="adaptive-lr")   # or any SQLAlchemy URL
    study.runs()                    # every run, every column (what `ls --all` prints)
    study.summary()                 # what `adaptbench report summary` prints, as a DataFrame
    study.compare("adam", "sgd")    # (per_task, overall), as `report compare`

Every report method loads the runs and applies the protocol once (`Study.selected`), exactly as
the command line does, then calls the same statistics; none imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import pandas as pd

from adaptbench import protocol, results
from adaptbench.filters import RunFilter
from adaptbench.vocab import Status


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Study:
    """An open results database and the runs a filter names (all of them by default)."""

    db: str | None
    filters: RunFilter = RunFilter()

    def where(self, *, task: str | Sequence[str] | None = None,
              task_type: str | Sequence[str] | None = None,
              optim: str | Sequence[str] | None = None,
              study: str | Sequence[str] | None = None) -> Study:
        """The same database with a narrower filter (the report options --task, --task-type,
        --optim, --study)."""
        f = self.filters
        return replace(self, filters=replace(
            f, tasks=_names(task) or f.tasks, task_types=_names(task_type) or f.task_types,
            optimizers=_names(optim) or f.optimizers, studies=_names(study) or f.studies))

    @cached_property
    def engine(self) -> Any:
        from adaptbench.store import make_engine

        return make_engine(self.db, read_only=True)

    # -- raw data ----------------------------------------------------------------------------

    def runs(self, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """One row per run, every stored column, ordered by id (optionally of some statuses)."""
        return results.load_runs(self.engine, replace(self.filters, statuses=_names(status)))

    def curves(self, run_ids: Sequence[int] | None = None,
               splits: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored learning curves (run_id, step, split, loss, metric, elapsed) of the given
        runs, or of every run the filter names."""
        engine = self.engine
        if run_ids is None:
            run_ids = results.load_columns(engine, ["id"], self.filters)["id"].tolist()
        return results.load_curves(engine, run_ids, splits)

    # -- the protocol --------------------------------------------------------------------------

    def selected(self, protocol_name: str = protocol.TUNED,
                 columns: Sequence[str] = ()) -> protocol.Selected:
        """The protocol applied once: the runs the figures come from and how they were chosen
        (`protocol.select`), with the final metrics and losses of every split loaded."""
        return load_selected(self.engine, self.filters, columns, protocol_name)

    # -- the reports ---------------------------------------------------------------------------

    def summary(self, split: str = "test", ci: str = "t", protocol_name: str = protocol.TUNED,
                aggregate: str = "mean") -> pd.DataFrame:
        """`report summary`: per (task, optimizer) the selected lr and mean ± CI over seeds
        (ci 't' or 'bootstrap'; aggregate 'iqm' for the interquartile mean)."""
        return summary_table(self.selected(protocol_name), split, ci, aggregate)

    def wins(self, split: str = "test") -> pd.DataFrame:
        """`report wins`: paired win rates per task type with stratified intervals."""
        from adaptbench import comparisons

        return comparisons.win_rates(self.selected().runs, split)

    def improvement(self, split: str = "test") -> pd.DataFrame:
        """`report wins --statistic improvement`: rliable's probability of improvement."""
        from adaptbench import comparisons

        return comparisons.improvement(self.selected().runs, split)

    def ranks(self, split: str = "test") -> dict[str, pd.DataFrame]:
        """`report ranks`: {'mean_ranks', 'friedman', 'pairwise'}."""
        from adaptbench import comparisons

        runs = self.selected().runs
        return {"mean_ranks": comparisons.mean_ranks(runs, split),
                "friedman": comparisons.friedman(runs, split),
                "pairwise": comparisons.pairwise_tests(runs, split)}

    def compare(self, a: str, b: str, split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
        """`report compare A B`: (per_task, overall)."""
        from adaptbench import comparisons

        return comparisons.compare(self.selected().runs, a, b, split)

    def lr(self, split: str = "val", within: float = 5.0) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`report lr`: (metric against lr, tunability) over the selection seeds."""
        from adaptbench import stats

        return stats.lr_sensitivity(self.selected(protocol.FIXED).runs, split, within)

    def speed(self, split: str = "val") -> tuple[pd.DataFrame, pd.DataFrame]:
        """`report speed`: (by_task, by_type) ranks at 10/25/100% of the budget."""
        return speed_tables(self.engine, self.selected().runs, split)

    def profile(self, split: str = "val") -> tuple[pd.DataFrame, pd.DataFrame]:
        """`report profile`: (area per optimizer and task type, the profile step functions)."""
        from adaptbench import curves

        ratios = profile_ratios(self.engine, self.selected().runs, split)
        return curves.profile_area(ratios), curves.performance_profile(ratios)

    def claims(self, split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """`report claims`: (verdicts, statistics, missing)."""
        return claims_tables(self.engine, self.selected().runs, split, self.filters)


# -- the steps each report, figure and page shares: selected runs (+ their curves) to tables ---

def summary_table(selected: protocol.Selected, split: str = "test", ci: str = "t",
                  aggregate: str = "mean") -> pd.DataFrame:
    """`report summary`'s table: per (task, optimizer) mean ± CI (ci 't' or 'bootstrap') or the
    interquartile mean (aggregate 'iqm'), with the selection columns under the tuned protocol."""
    from adaptbench import stats

    method = "iqm" if aggregate == "iqm" else ci
    if selected.protocol == protocol.TUNED:
        return stats.tuned_summary(selected, split, method)
    return stats.summary(selected.runs, split, method)


def speed_tables(engine: Any, runs: pd.DataFrame, split: str = "val") -> tuple[pd.DataFrame, pd.DataFrame]:
    """`report speed`'s (by_task, by_type), reading only the curve points near 10/25/100%."""
    from adaptbench import curves

    curve = results.load_curves(engine, runs["id"].tolist(), [split],
                                ("run_id", "step", "split", "loss", "metric"), curves.FRACTIONS)
    return curves.speed(runs, curve, split)


def profile_ratios(engine: Any, runs: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """The performance ratios of `report profile` (the test split reads the test curves)."""
    from adaptbench import curves

    curve = (results.load_curves(engine, runs["id"].tolist(), ["test"])
             if split == "test" else None)
    return curves.performance_ratios(runs, split, curve)


def claims_tables(
    engine: Any, runs: pd.DataFrame, split: str = "test", filters: RunFilter | None = None,
    variants: str = "plain",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`report claims`' (verdicts, statistics, missing), with what the claims read besides the
    selected runs: the lr grid of the selection runs that `filters` names (claim (a)'s speed
    part tunes the lr for steps to target on it) and the step-0 curve points of claim (c)'s
    runs (their initial training loss). The missing table's `queued` column counts the runs of
    each missing combination that are queued or running now (`queue.count_active_plain`).
    `variants`: "plain" or "best" (`claims.check`)."""
    from adaptbench import claims as claims_mod
    from adaptbench.queue import count_active_plain

    ids = claims_mod.curve_run_ids(runs)
    curve = results.load_curves(engine, ids, ["train_full", "val"],
                                ("run_id", "step", "split", "loss"), (0.0,)) if ids else None
    grid = load_selected(engine, filters or RunFilter(), claims_mod.GRID_COLUMNS,
                         protocol.FIXED).runs
    verdicts, statistics, missing = claims_mod.check(runs, curve, split, grid, variants)
    active = count_active_plain(engine, filters or RunFilter()) if len(missing) else {}
    missing["queued"] = [active.get((t, o, int(s)), 0) for t, o, s in
                         zip(missing["task"], missing["optimizer"], missing["steps"])]
    return verdicts, statistics, missing.astype({"queued": "int64"})


# every column a report may read: the protocol's, and the outcome columns of the statistics
REPORT_COLUMNS = [
    *results.PROTOCOL_COLUMNS, "target", "steps_to_target", "diverged_at_step",
    *[f"final_{split}_{kind}" for split in ("train", "val", "test") for kind in ("metric", "loss")],
]


def load_selected(engine: Any, filters: RunFilter, columns: Sequence[str] = (),
                  protocol_name: str = protocol.TUNED) -> protocol.Selected:
    """Load the result runs a filter names (only `columns`, or every report column) and apply
    the protocol once: what every report and plot starts from."""
    wanted = list(dict.fromkeys([*results.PROTOCOL_COLUMNS, *(columns or REPORT_COLUMNS)]))
    runs = results.load_columns(engine, wanted, replace(filters, statuses=Status.results()))
    return protocol.select(runs, protocol_name)


def open(db: str | None = None, *, task: str | Sequence[str] | None = None,  # noqa: A001
         task_type: str | Sequence[str] | None = None, optim: str | Sequence[str] | None = None,
         study: str | Sequence[str] | None = None) -> Study:
    """Open a results database (an SQLite file or any SQLAlchemy URL; default: ADAPTBENCH_DB,
    else results.db here), optionally filtered as the report options filter. Checks the
    database at once: a missing file or another schema is a `UserError`."""
    from adaptbench.store import make_engine

    make_engine(db, read_only=True).dispose()
    return Study(db).where(task=task, task_type=task_type, optim=optim, study=study)
