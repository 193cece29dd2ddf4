"""`adaptbench report ...`: statistical comparisons of stored runs. Never imports torch."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from adaptbench.cli import DbOpt, Format, FormatOpt, ListOpt, report_app
from adaptbench.errors import UserError


class Protocol(str, Enum):
    tuned = "tuned"
    fixed = "fixed"


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"


TaskF = Annotated[ListOpt, typer.Option("--task", "-t", help="Only these task(s).")]
TypeF = Annotated[ListOpt, typer.Option("--task-type", help="Only these task type(s).")]
OptimF = Annotated[ListOpt, typer.Option("--optim", "-o", help="Only these optimizer(s).")]
StudyF = Annotated[ListOpt, typer.Option("--study", help="Only these study label(s).")]
MetricF = Annotated[Split, typer.Option("--metric", help="Which split's final metric to report.")]
ProtocolF = Annotated[
    Protocol,
    typer.Option("--lr", help="tuned: per (task, optimizer) the lr with the best mean validation metric; fixed: every lr."),
]


def _runs(db: str | None, task: ListOpt, task_type: ListOpt, optim: ListOpt, study: ListOpt) -> Any:
    from adaptbench import results
    from adaptbench.spec import split_list
    from adaptbench.store import make_engine

    filters = results.Filters(
        tasks=split_list(task), task_types=split_list(task_type),
        optimizers=split_list(optim), studies=split_list(study),
    )
    return results.load_runs(make_engine(db, create=False), filters)


def _summary(runs: Any, protocol: Protocol, metric: Split, fmt: Format, console: Any = None) -> None:
    from adaptbench import render, stats

    table = stats.tuned_summary(runs, metric.value) if protocol == Protocol.tuned else stats.summary(runs, metric.value)
    title = (
        f"final {metric.value} metric, mean ± 95% t-interval over seeds; "
        + ("lr tuned per (task, optimizer) on the validation metric" if protocol == Protocol.tuned else "every lr (fixed-lr protocol)")
    )
    render.render(table, fmt.value, title=title, console=console)
    if fmt == Format.table and table.empty:
        render.stderr_console().print("no finished runs match; see `adaptbench status`")


def _wins(runs: Any, fmt: Format) -> None:
    from adaptbench import render, stats

    rates = stats.win_rates(runs)
    if fmt != Format.table:
        render.render(rates, fmt.value, title="win rates")
        return
    if rates.empty:
        render.stderr_console().print("win rates: need at least two optimizers on a common (task, seed)")
        return
    for task_type in sorted(rates["task_type"].unique()):
        render.render(
            stats.win_matrix(rates, task_type),
            "table",
            title=f"win rate of row over column, task type {task_type!r} (paired by task and seed, tuned lr, tasks weigh equally)",
        )


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    lr: ProtocolF = Protocol.tuned,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Summary of stored runs (same as `report summary`); in a terminal also the win rates."""
    if ctx.invoked_subcommand is not None:
        return
    runs = _runs(db, task, task_type, optim, study)
    _summary(runs, lr, metric, fmt)
    if fmt == Format.table and sys.stdout.isatty():
        _wins(runs, fmt)


@report_app.command()
def summary(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    lr: ProtocolF = Protocol.tuned,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per (task, optimizer): mean ± 95% CI of the final metric and loss, n, diverged, lr."""
    _summary(_runs(db, task, task_type, optim, study), lr, metric, fmt)


@report_app.command()
def wins(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Win rate of each optimizer over each other per task type (paired by task and seed)."""
    _wins(_runs(db, task, task_type, optim, study), fmt)


__all__ = ["report", "summary", "wins"]
