"""`adaptbench report ...`: statistical comparisons of stored runs. Never imports torch.

Each command loads only the run columns it needs (one query), hands them to the pure
statistics (`stats`, `comparisons`, `curves`, `claims`) and renders the result. Commands that
read learning curves load them for the tuned runs only, in one more query.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from adaptbench.cli import DbOpt, Format, FormatOpt, ListOpt, report_app


class Protocol(str, Enum):
    tuned = "tuned"
    fixed = "fixed"


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"


class Interval(str, Enum):
    t = "t"
    bootstrap = "bootstrap"


TaskF = Annotated[ListOpt, typer.Option("--task", "-t", help="Only these task(s).")]
TypeF = Annotated[ListOpt, typer.Option("--task-type", help="Only these task type(s).")]
OptimF = Annotated[ListOpt, typer.Option("--optim", "-o", help="Only these optimizer(s).")]
StudyF = Annotated[ListOpt, typer.Option("--study", help="Only these study label(s).")]
MetricF = Annotated[Split, typer.Option("--metric", help="Which split's final metric to compare.")]
ProtocolF = Annotated[
    Protocol,
    typer.Option("--lr", help="tuned: per (task, optimizer) the lr with the best mean validation metric; fixed: every lr."),
]
CiF = Annotated[Interval, typer.Option("--ci", help="t: Student-t interval over seeds; bootstrap: BCa bootstrap (9,999 resamples, seed 0).")]

# the columns every report reads; commands add the ones their statistic needs
BASE_COLUMNS = ["id", "task", "task_type", "metric_name", "higher_is_better", "optimizer", "lr",
                "seed", "status", "final_val_metric"]
TUNED = "lr tuned per (task, optimizer) on the mean validation metric"


def _runs(
    db: str | None, task: ListOpt, task_type: ListOpt, optim: ListOpt, study: ListOpt,
    extra: tuple[str, ...] = (),
) -> Any:
    from adaptbench import results
    from adaptbench.spec import split_list
    from adaptbench.store import make_engine

    filters = results.Filters(
        tasks=split_list(task), task_types=split_list(task_type),
        optimizers=split_list(optim), studies=split_list(study),
        statuses=("done", "diverged"),
    )
    columns = list(dict.fromkeys([*BASE_COLUMNS, *results.VARIANT_COLUMNS, *extra]))
    engine = make_engine(db, create=False)
    return engine, results.as_variants(results.load_columns(engine, columns, filters))


def _note(text: str) -> None:
    from adaptbench import render

    render.stderr_console().print(text, markup=False, soft_wrap=True)


def _nothing(what: str = "finished runs") -> None:
    _note(f"no {what} match; see `adaptbench status` and the filters")


def _metric_columns(metric: Split, loss: bool = False) -> tuple[str, ...]:
    return (f"final_{metric.value}_metric",) + ((f"final_{metric.value}_loss",) if loss else ())


def _summary(runs: Any, protocol: Protocol, metric: Split, ci: Interval, fmt: Format) -> None:
    from adaptbench import render, stats

    if protocol == Protocol.tuned:
        table = stats.tuned_summary(runs, metric.value, ci.value)
    else:
        table = stats.summary(runs, metric.value, ci.value)
    interval = "95% t-interval" if ci == Interval.t else "95% BCa bootstrap interval"
    title = (f"final {metric.value} metric, mean ± {interval} over seeds; "
             + (TUNED if protocol == Protocol.tuned else "every lr (fixed-lr protocol)"))
    render.render(table, fmt.value, title=title)
    if fmt in (Format.csv, Format.json):
        _note(title)
    if table.empty:
        _nothing()


def _win_cells(rates: Any, task_type: str) -> Any:
    """The win matrix of a task type as text cells 'rate [low, high]'."""
    from adaptbench import comparisons
    from adaptbench.render import format_number

    rate = comparisons.win_matrix(rates, task_type)
    low = comparisons.win_matrix(rates, task_type, "ci_low")
    high = comparisons.win_matrix(rates, task_type, "ci_high")
    cells = rate.copy().astype(object)
    for i in rate.index:
        for j in rate.columns:
            r = rate.loc[i, j]
            if r != r:  # NaN: the diagonal or no common seeds
                cells.loc[i, j] = None
            elif low.loc[i, j] == low.loc[i, j]:
                cells.loc[i, j] = (f"{format_number(r)} [{format_number(low.loc[i, j])}, "
                                   f"{format_number(high.loc[i, j])}]")
            else:
                cells.loc[i, j] = format_number(r)
    return cells


def _wins(runs: Any, metric: Split, fmt: Format) -> None:
    from adaptbench import comparisons, render

    rates = comparisons.win_rates(runs, metric.value)
    if fmt in (Format.csv, Format.json):
        render.render(rates, fmt.value)
        return
    if rates.empty:
        _note("win rates: need at least two optimizers with results on a common (task, seed)")
        return
    for task_type in sorted(rates["task_type"].unique()):
        tasks = int(rates.loc[rates["task_type"] == task_type, "tasks"].max())
        render.render(
            _win_cells(rates, task_type), fmt.value,
            title=(f"{task_type}: win rate of row over column [95% bootstrap CI over tasks], "
                   f"final {metric.value} metric, paired by (task, seed), {TUNED}; "
                   f"{tasks} task(s), weighed equally; ties ½, diverged runs lose"),
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
    ci: CiF = Interval.t,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Summary of stored runs (same as `report summary`); in a terminal also the win rates."""
    if ctx.invoked_subcommand is not None:
        return
    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric, loss=True))
    _summary(runs, lr, metric, ci, fmt)
    if fmt == Format.table and sys.stdout.isatty():
        _wins(runs, metric, fmt)


@report_app.command(short_help="Mean ± 95% CI per (task, optimizer) at the tuned lr (the default).")
def summary(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    lr: ProtocolF = Protocol.tuned,
    ci: CiF = Interval.t,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per (task, optimizer): mean ± 95% CI of the final metric and loss over seeds, n, diverged
    count and lr. By default the lr is tuned: the one with the best mean validation metric."""
    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric, loss=True))
    _summary(runs, lr, metric, ci, fmt)


@report_app.command(short_help="Paired win rates between optimizers per task type, with CIs.")
def wins(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Win rate of each optimizer over each other per task type: runs paired by (task, seed) at
    tuned lrs, win 1, tie ½, diverged loses; tasks weigh equally; bootstrap CI over tasks."""
    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric))
    _wins(runs, metric, fmt)


@report_app.command(short_help="Average ranks, Friedman test, pairwise Wilcoxon with Holm.")
def ranks(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Average rank of each optimizer per task type (over the tasks that ran all of them), the
    Friedman test of equal ranks, and Wilcoxon signed-rank tests of every pair over tasks with
    Holm's correction: which pairs differ significantly (α = 0.05)."""
    from adaptbench import comparisons, render, stats

    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric))
    runs = stats.at_tuned_lr(runs)  # tuning once: the statistics below tune again, idempotently
    mean = comparisons.mean_ranks(runs, metric.value).sort_values(
        ["task_type", "mean_rank"], kind="mergesort")
    render.render_sections([
        ("mean_ranks", f"average rank per task type (1 = best), final {metric.value} metric, "
                       f"{TUNED}; over the tasks that ran every optimizer", mean),
        ("friedman", "Friedman test per task type: do the ranks differ? (α = 0.05)",
         comparisons.friedman(runs, metric.value)),
        ("pairwise", "Wilcoxon signed-rank over tasks of (win rate - ½), Holm-adjusted per "
                     "task type; `better` names the winner of a significant pair",
         comparisons.pairwise_tests(runs, metric.value)),
    ], fmt.value)
    if mean.empty:
        _nothing("tasks with two or more optimizers")
    elif (mean["tasks"] < 6).any() and fmt == Format.table:
        _note("note: with fewer than 6 tasks in a task type no pair can be significant "
              "(the smallest two-sided Wilcoxon p on 5 tasks is 1/16)")


@report_app.command(short_help="A against B: paired difference, effect size, p, verdict.")
def compare(
    a: Annotated[str, typer.Argument(help="First optimizer.")],
    b: Annotated[str, typer.Argument(help="Second optimizer.")],
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Optimizer A against B at their tuned lrs: per task the paired mean difference over seeds
    (positive favours A) with its CI, Cohen's d_z, a paired t-test and a verdict; over the
    tasks of each type, tasks won, mean win rate with a CI, Wilcoxon test and a verdict."""
    from adaptbench import comparisons, render

    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric))
    per_task, overall = comparisons.compare(runs, a, b, metric.value)
    render.render_sections([
        ("tasks", f"{a} vs {b} per task, final {metric.value} metric, {TUNED}; advantage > 0 "
                  f"favours {a} (mean paired difference over seeds, 95% t-interval); "
                  f"effect_size = Cohen's d_z; p: paired t-test", per_task),
        ("overall", f"{a} vs {b} over tasks: tasks won (per-task win rate above ½), mean win "
                    f"rate [95% bootstrap CI], Wilcoxon signed-rank p, rank-biserial effect "
                    f"size", overall),
    ], fmt.value)
    if per_task.empty:
        _nothing(f"tasks where both {a} and {b} have results on a common seed")


@report_app.command(short_help="Performance profiles of steps to target; area up to τ = 4.")
def profile(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: Annotated[Split, typer.Option("--metric", help="Split the target is reached on: val (stored) or test (from the curves).")] = Split.val,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Performance profiles of steps to the task's target at tuned lrs, per task type: ρ(τ) is
    the share of tasks an optimizer solves within τ × the fastest optimizer's steps (failures
    count as ∞), and the area score is the mean of ρ over 1 ≤ τ ≤ 4 (1 = always fastest)."""
    from adaptbench import curves, render, results, stats

    engine, runs = _runs(db, task, task_type, optim, study,
                         ("target", "status", "steps_to_target"))
    curve = None
    if metric == Split.test:
        ids = stats.at_tuned_lr(runs)["id"].tolist()
        curve = results.load_curves(engine, ids, ["test"])
    ratios = curves.performance_ratios(runs, metric.value, curve)
    taus = (1.0, 1.5, 2.0, 4.0)
    area = curves.profile_area(ratios).merge(curves.profile_at(ratios, taus),
                                             on=["task_type", "optimizer"], how="left")
    area = area.sort_values(["task_type", "area"], ascending=[True, False], kind="mergesort")
    what = f"steps to target on the {metric.value} metric, {TUNED}"
    if fmt in (Format.table, Format.markdown):
        render.render(area, fmt.value,
                      title=f"performance profile area (mean ρ over 1 ≤ τ ≤ 4; 1 = fastest on "
                            f"every task), rho_τ = share of tasks within τ × the fastest; {what}")
    else:
        render.render_sections([
            ("area", what, area),
            ("profile", what, curves.performance_profile(ratios)),
        ], fmt.value)
    if ratios.empty:
        _nothing("tasks with a target that every optimizer of their type ran")


def _lr_cells(curve: Any, task: str) -> Any:
    """One task's metric-against-lr curve as a matrix of text cells: optimizer × lr."""
    import pandas as pd

    from adaptbench.render import format_lr, format_number

    part = curve[curve["task"] == task]

    def cell(row: Any) -> str:
        if row.diverged and row.n == 0:
            return f"diverged {row.diverged}"
        text = format_number(row.mean) if row.n else "-"
        text += " *" if row.best else (" +" if row.in_band else "")
        return text + (f" ({row.diverged} div)" if row.diverged else "")

    cells = pd.DataFrame({"optimizer": part["optimizer"], "lr": part["lr"].map(format_lr),
                          "cell": [cell(r) for r in part.itertuples()]})
    order = [format_lr(x) for x in sorted(part["lr"].unique())]
    wide = cells.pivot(index="optimizer", columns="lr", values="cell").reindex(columns=order)
    return wide.fillna("")


@report_app.command(short_help="Metric against lr; width of the band of good lrs (tunability).")
def lr(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: Annotated[Split, typer.Option("--metric", help="Split whose mean final metric is shown against lr [default: val, the one lrs are tuned on].")] = Split.val,
    within: Annotated[float, typer.Option("--within", help="Band: lrs whose mean is within this % of the best mean.")] = 5.0,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Mean final metric against lr per (task, optimizer), and tunability: the band of
    consecutive lrs around the best whose mean is within X% of the best (no diverged seeds),
    its width in decades, and whether the best lr sits at the edge of the lrs tried."""
    from adaptbench import render, stats

    _, runs = _runs(db, task, task_type, optim, study, _metric_columns(metric))
    curve, tunability = stats.lr_sensitivity(runs, metric.value, within)
    band = (f"band = consecutive lrs within {within:g}% of the best mean {metric.value} metric, "
            f"no diverged seed")
    if fmt in (Format.table, Format.markdown):
        sections = [(f"lr_{task}", f"{task}: mean final {metric.value} metric by lr "
                                   f"(* best, + in the band; {band})", _lr_cells(curve, task))
                    for task in sorted(curve["task"].unique())]
        sections.append(("tunability", f"tunability: {band}; band_decades = log10(lr_high / "
                                       f"lr_low); at_edge: the best lr is the smallest or largest "
                                       f"tried", tunability))
        render.render_sections(sections, fmt.value)
    else:
        render.render_sections([("curve", band, curve), ("tunability", band, tunability)],
                               fmt.value)
    if curve.empty:
        _nothing()


@report_app.command(short_help="Rank at 10%, 25%, 100% of the budget; steps to target.")
def speed(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: Annotated[Split, typer.Option("--metric", help="Curve to rank by: val or test metric, or train (the training loss).")] = Split.val,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Each optimizer's rank (1 = best) at 10%, 25% and 100% of the budget, read from the stored
    curves at the evaluation step nearest each point, at tuned lrs; per task and per task type,
    with late_minus_early > 0 for an optimizer that falls behind; and steps to target."""
    from adaptbench import curves, render, results, stats

    engine, runs = _runs(db, task, task_type, optim, study,
                         ("target", "steps", "steps_to_target", "diverged_at_step"))
    at = stats.at_tuned_lr(runs)
    curve = results.load_curves(engine, at["id"].tolist(), [metric.value],
                                ("run_id", "step", "split", "loss", "metric"), curves.FRACTIONS)
    by_task, by_type = curves.speed(at, curve, metric.value)
    what = "training loss" if metric == Split.train else f"{metric.value} metric"
    render.render_sections([
        ("by_type", f"mean rank by {what} at 10/25/100% of the budget (1 = best), over the "
                    f"tasks that ran every optimizer of the type; {TUNED}", by_type),
        ("by_task", f"rank by {what} at 10/25/100% of the budget (mean over seeds); steps to "
                    f"target on the validation metric (median over seeds, inf: not reached)",
         by_task),
    ], fmt.value)
    if by_task.empty:
        _nothing("runs with stored curves")


@report_app.command(short_help="Check three adaptive-lr claims: statistic, CI, verdict.")
def claims(
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    metric: MetricF = Split.test,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Check, against the stored runs, (a) Adam converges fastest and reaches high accuracy on
    most tasks, (b) RMSprop does well on sparse data, (c) AdaGrad drops the loss fast early but
    falls behind in long training: each as a statistic with a 95% CI and a verdict (supported,
    not supported, not enough data, naming the missing runs). Definitions: docs, `claims.py`."""
    from adaptbench import claims as claims_mod
    from adaptbench import render, results

    engine, runs = _runs(db, task, task_type, optim, study,
                         ("target", "steps", "steps_to_target", "diverged_at_step")
                         + _metric_columns(metric))
    ids = claims_mod.curve_run_ids(runs)
    curve = results.load_curves(engine, ids, ["train"], ("run_id", "step", "split", "loss"),
                                (claims_mod.EARLY, claims_mod.LATE)) if ids else None
    verdicts, statistics, missing = claims_mod.check(runs, curve, metric.value)
    if fmt not in (Format.table, Format.markdown):
        render.render_sections([("claims", None, verdicts), ("statistics", None, statistics),
                                ("missing", None, missing)], fmt.value)
        return
    sections = []
    for row in verdicts.itertuples():
        part = statistics[statistics["claim"] == row.claim].drop(columns="claim")
        title = f"({row.claim}) {row.statement}: {row.verdict.upper()} — {row.reason}"
        sections.append((row.claim, title, part if len(part) else part.iloc[:, :0]))
    if len(missing):
        sections.append(("missing", f"(task, optimizer) pairs with fewer than "
                                    f"{claims_mod.CLAIMS_SEEDS} seeds at the tuned lr "
                                    f"(the study's design; >= {claims_mod.MIN_SEEDS} count)",
                         missing))
    render.render_sections(sections, fmt.value)


__all__ = ["report", "summary", "wins", "ranks", "compare", "profile", "lr", "speed", "claims"]
