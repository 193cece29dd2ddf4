"""`adaptbench report ...`: statistical comparisons of stored runs. Never imports torch.

Each command loads only the run columns it needs (one query), hands them to the pure
statistics (`stats`, `comparisons`, `curves`, `claims`) and renders the result. Commands that
read learning curves load them for the tuned runs only, in one more query.
"""

from __future__ import annotations

import sys
from enum import Enum
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from adaptbench.cli.common import (
    DataFormat, DataFormatOpt, DbOpt, Format, ListOpt, OutputOpt, WideOpt, check_output, report_app,
)
from adaptbench.completion import complete_optimizer, complete_task
from adaptbench.errors import UserError
from adaptbench.vocab import CurveSplit, Split


class Protocol(str, Enum):
    tuned = "tuned"
    fixed = "fixed"


class Interval(str, Enum):
    t = "t"
    bootstrap = "bootstrap"


class Aggregate(str, Enum):
    mean = "mean"
    iqm = "iqm"


class Variants(str, Enum):
    plain = "plain"
    best = "best"


class WinStatistic(str, Enum):
    win_rate = "win-rate"
    improvement = "improvement"


VariantsF = Annotated[Variants | None, typer.Option(
    "--variants", show_default=False,
    help="Claims: plain (default): the optimizers at default settings; best: in (a) and (b) each "
    "optimizer at its best variant per task (schedule, eps, ... as stored, e.g. by --study "
    "adaptive-lr-robust), chosen like the lr on the selection seeds; (c) stays plain.")]
TaskF = Annotated[ListOpt, typer.Option("--task", "-t", help="Only these task(s).", autocompletion=complete_task)]
TypeF = Annotated[ListOpt, typer.Option("--task-type", help="Only these task type(s).")]
OptimF = Annotated[ListOpt, typer.Option("--optim", "-o", help="Only these optimizer(s).", autocompletion=complete_optimizer)]
StudyF = Annotated[ListOpt, typer.Option("--study", help="Only these study label(s).")]
SplitF = Annotated[Split, typer.Option("--split", "--metric", help="Which split's final metric to compare (--metric: former name of --split).")]
ProtocolF = Annotated[
    Protocol,
    typer.Option("--lr", help="tuned: per (task, optimizer) the lr with the best mean validation metric on the selection seeds, figures from the evaluation seeds; fixed: every lr."),
]
CiF = Annotated[Interval, typer.Option("--ci", help="Interval of the mean. t: Student-t over seeds; bootstrap: BCa bootstrap (9,999 resamples, seed 0) from 10 seeds up, the t-interval below.")]
AggregateF = Annotated[Aggregate, typer.Option("--aggregate", help="mean over seeds (with --ci), or iqm: interquartile mean (rliable's) with a percentile bootstrap interval over seeds.")]

DEFAULT_SOURCES = ("DEFAULT", "DEFAULT_MAP")


def _flag(command: Any, name: str) -> str:
    for param in command.params:
        if param.name == name:
            return param.opts[0]
    return name


def _options(ctx: typer.Context) -> SimpleNamespace:
    """This subcommand's options, with those written between `report` and it applied.

    An option given before the subcommand that the subcommand does not take, or given on both
    sides with different values, is refused: no option is ever silently ignored.
    """
    own = dict(ctx.params)
    parent = ctx.parent
    if parent is not None:
        for name, value in parent.params.items():
            source = parent.get_parameter_source(name)
            if source is None or source.name in DEFAULT_SOURCES:
                continue
            flag = _flag(parent.command, name)
            if name not in own:
                where = f"{parent.info_name} {ctx.info_name}"
                raise UserError(f"option {flag} does not apply to `{where}`; see "
                                f"`adaptbench {where} --help` for its options")
            mine = ctx.get_parameter_source(name)
            if mine is not None and mine.name not in DEFAULT_SOURCES and own[name] != value:
                raise UserError(f"option {flag} is given twice with different values, before and "
                                f"after `{ctx.info_name}`; give it once")
            own[name] = value
    return SimpleNamespace(**own)


def _load(o: SimpleNamespace, extra: tuple[str, ...] = (), protocol: str | None = None,
          budgets_apart: bool = False) -> tuple[Any, Any]:
    """The engine and the protocol's selection (`protocol.select`, applied once) of the runs
    that the filter options name; the notes of the selection go to stderr, and one more when
    some of those runs are still queued or running (the study is not complete).
    `budgets_apart`: the report keeps budgets apart (the claims: (a) and (b) read the default
    budget, (c) every budget), so the notes that a task's contenders differ in budget do not
    apply, and the runs still to come are counted per budget."""
    from adaptbench.api import load_selected
    from adaptbench.cli.common import _filter
    from adaptbench.protocol import BUDGET_NOTE
    from adaptbench.queue import count_active, count_active_longer
    from adaptbench.spec import LONG_BUDGETS
    from adaptbench.store import make_engine

    if isinstance(getattr(o, "fmt", None), DataFormat):  # not the plot commands' figure files
        check_output(o.fmt, o.output)
    filters = _filter(task=o.task, optim=o.optim, study=o.study, task_type=o.task_type)
    engine = make_engine(o.db, read_only=True)
    selected = load_selected(engine, filters, extra, protocol or Protocol.tuned.value)
    for note in selected.notes:
        if not (budgets_apart and BUDGET_NOTE in note):
            _note(f"note: {note}")
    active = count_active(engine, filters)
    longer = count_active_longer(engine, filters) if active and budgets_apart else 0
    if longer:
        which = "all" if longer == active else f"{longer} of them"
        budgets = " or ".join(f"{b}x" for b in LONG_BUDGETS)
        _note(f"note: {active} run(s) of these are still queued or running ({which} at "
              f"{budgets} their task's default budget, which only claim (c) reads); the "
              f"figures that read them will change when they finish")
    elif active:
        _note(f"note: {active} run(s) of these are still queued or running; figures will "
              f"change when they finish")
    return engine, selected


def _note(text: str) -> None:
    from adaptbench import render

    render.stderr_console().print(text, markup=False, soft_wrap=True)


def _nothing(what: str = "finished runs") -> None:
    _note(f"no {what} match; see `adaptbench status` and the filters")


CLAIMS_COLUMNS = ("target", "steps_to_target", "diverged_at_step", "final_train_loss")


def _filters(o: SimpleNamespace) -> Any:
    from adaptbench.cli.common import _filter

    return _filter(task=o.task, optim=o.optim, study=o.study, task_type=o.task_type)


def _metric_columns(split: Split, loss: bool = False) -> tuple[str, ...]:
    return (f"final_{split.value}_metric",) + ((f"final_{split.value}_loss",) if loss else ())


def _summary(selected: Any, split: Split, ci: Interval, fmt: Format,
             aggregate: Aggregate = Aggregate.mean, wide: bool = False,
             output: str | None = None) -> None:
    from adaptbench import render
    from adaptbench.api import summary_table

    table = summary_table(selected, split.value, ci.value, aggregate.value)
    if aggregate == Aggregate.iqm:
        table = table.rename(columns={"mean": "iqm", "loss_mean": "loss_iqm"})
        what = "interquartile mean with a 95% percentile bootstrap interval"
    elif ci == Interval.t:
        what = "mean ± 95% t-interval"
    else:
        what = "mean ± 95% BCa bootstrap interval (t-interval under 10 seeds)"
    title = f"final {split.value} metric, {what} over seeds; {selected.describe()}"
    render.render(table, fmt.value, title=title, wide=wide, output=output)
    if fmt in (Format.csv, Format.json, DataFormat.parquet):
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


def _wins(selected: Any, split: Split, fmt: Format, wide: bool = False,
          output: str | None = None) -> None:
    from adaptbench import comparisons, render

    rates = comparisons.win_rates(selected.runs, split.value)
    if fmt in (Format.csv, Format.json, DataFormat.parquet):
        render.render(rates, fmt.value, output=output)
        return
    if rates.empty:
        _note("win rates: need at least two optimizers with results on a common (task, seed)")
        return
    for task_type in sorted(rates["task_type"].unique()):
        tasks = int(rates.loc[rates["task_type"] == task_type, "tasks"].max())
        render.render(
            _win_cells(rates, task_type), fmt.value,
            title=(f"{task_type}: win rate of row over column [95% interval: {comparisons.WIN_CI}], "
                   f"final {split.value} metric, paired by (task, seed), {selected.describe()}; "
                   f"{tasks} task(s), weighed equally; ties ½, diverged runs lose"),
            wide=wide,
        )


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    lr: ProtocolF = Protocol.tuned,
    ci: CiF = Interval.t,
    aggregate: AggregateF = Aggregate.mean,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Summary of stored runs (same as `report summary`); in a terminal also the win rates.

    Options written here apply to the subcommand that follows (`report --study s compare a b`);
    one that the subcommand does not take is an error."""
    if ctx.invoked_subcommand is not None:
        return
    o = SimpleNamespace(**ctx.params)
    _, selected = _load(o, _metric_columns(split, loss=True), lr.value)
    _summary(selected, split, ci, fmt, aggregate, wide, output)
    if fmt == Format.table and sys.stdout.isatty() and lr == Protocol.tuned:
        _wins(selected, split, fmt, wide)


@report_app.command(short_help="Mean ± 95% CI per (task, optimizer) at the selected lr (default).")
def summary(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    lr: ProtocolF = Protocol.tuned,
    ci: CiF = Interval.t,
    aggregate: AggregateF = Aggregate.mean,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Per (task, optimizer): mean ± 95% CI of the final metric and loss over seeds, n, diverged
    count and lr. By default the lr is tuned on the selection seeds (best mean validation
    metric) and the figures come from the evaluation seeds; `source` says where they came from,
    `selection_n` and `eval_n` how many runs each side has."""
    o = _options(ctx)
    _, selected = _load(o, _metric_columns(o.split, loss=True), o.lr.value)
    _summary(selected, o.split, o.ci, o.fmt, o.aggregate, o.wide, o.output)


@report_app.command(short_help="Paired win rates between optimizers per task type, with CIs.")
def wins(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    statistic: Annotated[WinStatistic, typer.Option("--statistic", help="win-rate: paired by (task, seed); improvement: probability of improvement (rliable), every run of A against every run of B.")] = WinStatistic.win_rate,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Win rate of each optimizer over each other per task type: runs paired by (task, seed) at
    the selected lrs, win 1, tie ½, diverged loses; tasks weigh equally; the interval resamples
    seeds within tasks, and tasks too from 5 tasks up. `--statistic improvement`: rliable's
    probability of improvement instead (unpaired: every run against every run, per task)."""
    o = _options(ctx)
    _, selected = _load(o, _metric_columns(o.split))
    if o.statistic == WinStatistic.win_rate:
        _wins(selected, o.split, o.fmt, o.wide, o.output)
        return
    from adaptbench import comparisons, render

    table = comparisons.improvement(selected.runs, o.split.value)
    render.render(table, o.fmt.value,
                  title=f"probability of improvement P(row > opponent) per task type, final "
                        f"{o.split.value} metric, every run against every run per task, tasks "
                        f"weighed equally [95% interval: {comparisons.WIN_CI}]; "
                        f"{selected.describe()}", wide=o.wide, output=o.output)
    if table.empty:
        _nothing("tasks with two or more optimizers")


@report_app.command(short_help="Average ranks, Friedman test, pairwise Wilcoxon with Holm.")
def ranks(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Average rank of each optimizer per task type (over the tasks that ran all of them), the
    Friedman test of equal ranks, and Wilcoxon signed-rank tests of every pair over tasks with
    Holm's correction: which pairs differ significantly (α = 0.05)."""
    from adaptbench import comparisons, render

    o = _options(ctx)
    _, selected = _load(o, _metric_columns(o.split))
    runs, metric = selected.runs, o.split.value
    mean = comparisons.mean_ranks(runs, metric).sort_values(
        ["task_type", "mean_rank"], kind="mergesort")
    render.render_sections([
        ("mean_ranks", f"average rank per task type (1 = best), final {metric} metric, "
                       f"{selected.describe()}; over the tasks that ran every optimizer", mean),
        ("friedman", "Friedman test per task type: do the ranks differ? (α = 0.05)",
         comparisons.friedman(runs, metric)),
        ("pairwise", "Wilcoxon signed-rank over tasks of (win rate - ½), Holm-adjusted per "
                     "task type; `better` names the winner of a significant pair",
         comparisons.pairwise_tests(runs, metric)),
    ], o.fmt.value, wide=o.wide, output=o.output)
    if mean.empty:
        _nothing("tasks with two or more optimizers")
    elif (mean["tasks"] < 6).any() and o.fmt == Format.table:
        _note("note: with fewer than 6 tasks in a task type no pair can be significant "
              "(the smallest two-sided Wilcoxon p on 5 tasks is 1/16)")


@report_app.command(short_help="A against B: paired difference, effect size, p, verdict.")
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="First optimizer.")],
    b: Annotated[str, typer.Argument(help="Second optimizer.")],
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Optimizer A against B at their selected lrs: per task the paired mean difference over
    seeds (positive favours A) with its CI, Cohen's d_z, a paired t-test and a verdict; over the
    tasks of each type, tasks won, mean win rate with an interval over seeds (and tasks, from 5
    tasks up), the Wilcoxon test and a verdict."""
    from adaptbench import comparisons, render

    o = _options(ctx)
    _, selected = _load(o, _metric_columns(o.split))
    per_task, overall = comparisons.compare(selected.runs, a, b, o.split.value)
    render.render_sections([
        ("tasks", f"{a} vs {b} per task, final {o.split.value} metric, {selected.describe()}; "
                  f"advantage > 0 favours {a} (mean paired difference over seeds, 95% "
                  f"t-interval); effect_size = Cohen's d_z; p: paired t-test", per_task),
        ("overall", f"{a} vs {b} over tasks: tasks won (per-task win rate above ½), mean win "
                    f"rate [95% interval: {comparisons.WIN_CI}], Wilcoxon signed-rank p, "
                    f"rank-biserial effect size", overall),
    ], o.fmt.value, wide=o.wide, output=o.output)
    if per_task.empty:
        _nothing(f"tasks where both {a} and {b} have results on a common seed")


@report_app.command(short_help="Performance profiles of steps to target; area up to τ = 4.")
def profile(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: Annotated[Split, typer.Option("--split", "--metric", help="Split the target is reached on: val (stored) or test (from the curves).")] = Split.val,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Performance profiles of steps to the task's target at the selected lrs, per task type:
    ρ(τ) is the share of tasks an optimizer solves within τ × the fastest optimizer's steps
    (failures count as ∞), and the area score is the mean of ρ over 1 ≤ τ ≤ 4 (1 = always
    fastest)."""
    from adaptbench import curves, render
    from adaptbench.api import profile_ratios

    o = _options(ctx)
    engine, selected = _load(o, ("target", "steps_to_target"))
    runs, fmt = selected.runs, o.fmt
    ratios = profile_ratios(engine, runs, o.split.value)
    taus = (1.0, 1.5, 2.0, 4.0)
    area = curves.profile_area(ratios).merge(curves.profile_at(ratios, taus),
                                             on=["task_type", "optimizer"], how="left")
    area = area.sort_values(["task_type", "area"], ascending=[True, False], kind="mergesort")
    what = f"steps to target on the {o.split.value} metric, {selected.describe()}"
    if fmt in (Format.table, Format.markdown):
        render.render(area, fmt.value,
                      title=f"performance profile area (mean ρ over 1 ≤ τ ≤ 4; 1 = fastest on "
                            f"every task), rho_τ = share of tasks within τ × the fastest; {what}",
                      wide=o.wide)
    else:
        render.render_sections([
            ("area", what, area),
            ("profile", what, curves.performance_profile(ratios)),
        ], fmt.value, wide=o.wide, output=o.output)
    if ratios.empty:
        _nothing("tasks with a target that every optimizer of their type ran")


def _lr_cells(curve: Any, task: str) -> Any:
    """One task's metric-against-lr curve as a matrix of text cells: lr (rows, ascending) ×
    optimizer, so that a long lr grid grows down the page, not across it."""
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
    return cells.pivot(index="lr", columns="optimizer", values="cell").reindex(order).fillna("")


@report_app.command(short_help="Metric against lr; width of the band of good lrs (tunability).")
def lr(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: Annotated[Split, typer.Option("--split", "--metric", help="Split whose mean final metric is shown against lr [default: val, the one lrs are tuned on].")] = Split.val,
    within: Annotated[float, typer.Option("--within", help="Band: lrs whose mean is within this % of the best mean.")] = 5.0,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Mean final metric against lr per (task, optimizer) over the selection seeds, and
    tunability: the band of consecutive lrs around the best whose mean is within X% of the
    best (no diverged seeds), its width in decades, and whether the best lr sits at the edge
    of the lrs tried."""
    from adaptbench import render, stats

    o = _options(ctx)
    if o.within < 0:
        raise UserError(f"--within must be a percentage >= 0, got {o.within:g}")
    _, grid = _load(o, _metric_columns(o.split), Protocol.fixed.value)
    metric, fmt = o.split.value, o.fmt
    curve, tunability = stats.lr_sensitivity(grid.runs, metric, o.within)
    band = (f"band = consecutive lrs within {o.within:g}% of the best mean {metric} metric, "
            f"no diverged seed; selection seeds")
    if fmt in (Format.table, Format.markdown):
        sections = [(f"lr_{task}", f"{task}: mean final {metric} metric by lr "
                                   f"(* best, + in the band; {band})", _lr_cells(curve, task))
                    for task in sorted(curve["task"].unique())]
        sections.append(("tunability", f"tunability: {band}; band_decades = log10(lr_high / "
                                       f"lr_low); at_edge: the best lr is the smallest or largest "
                                       f"tried", tunability))
        render.render_sections(sections, fmt.value, wide=o.wide)
    else:
        render.render_sections([("curve", band, curve), ("tunability", band, tunability)],
                               fmt.value, output=o.output)
    if curve.empty:
        _nothing()


@report_app.command(short_help="Rank at 10%, 25%, 100% of the budget; steps to target.")
def speed(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: Annotated[CurveSplit, typer.Option("--split", "--metric", help="Curve to rank by: the val or test metric, train (the mean minibatch loss) or train_full (the loss on the training examples).")] = CurveSplit.val,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Each optimizer's rank (1 = best) at 10%, 25% and 100% of the budget, read from the stored
    curves at the evaluation step nearest each point, at the selected lrs; per task and per
    task type, with late_minus_early > 0 for an optimizer that falls behind; and steps to
    target."""
    from adaptbench import render
    from adaptbench.api import speed_tables

    o = _options(ctx)
    engine, selected = _load(o, ("target", "steps_to_target", "diverged_at_step"))
    at, metric = selected.runs, o.split.value
    by_task, by_type = speed_tables(engine, at, metric)
    what = CurveSplit.describe(metric)
    render.render_sections([
        ("by_type", f"mean rank by {what} at 10/25/100% of the budget (1 = best), over the "
                    f"tasks that ran every optimizer of the type; {selected.describe()}", by_type),
        ("by_task", f"rank by {what} at 10/25/100% of the budget (mean over seeds); steps to "
                    f"target on the validation metric (median over seeds, inf: not reached)",
         by_task),
    ], o.fmt.value, wide=o.wide, output=o.output)
    if by_task.empty:
        _nothing("runs with stored curves")


@report_app.command(short_help="Test three adaptive-lr claims: statistics, CIs, Holm, verdicts.")
def claims(
    ctx: typer.Context,
    task: TaskF = None,
    task_type: TypeF = None,
    optim: OptimF = None,
    study: StudyF = None,
    split: SplitF = Split.test,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
    variants: VariantsF = None,
) -> None:
    """Test, against the stored runs, (a) Adam converges fastest and reaches high accuracy on
    most tasks, (b) RMSprop does well on sparse data, (c) AdaGrad drops the loss fast early but
    falls behind in long training: each as two parts of one-sided tests with 95% intervals,
    Holm-adjusted over all parts (family-wise α = 0.05), and a verdict naming its scope
    (supported, not supported, not enough data: what to queue). Definitions: README, `claims.py`."""
    from adaptbench import claims as claims_mod
    from adaptbench import render
    from adaptbench.api import claims_tables

    o = _options(ctx)
    engine, selected = _load(o, CLAIMS_COLUMNS + _metric_columns(o.split), budgets_apart=True)
    runs, fmt = selected.runs, o.fmt
    for name, why in claims_mod.left_out(runs).items():
        which = "claims (a) and (b)" if why == claims_mod.NO_HELD_OUT else "the claims"
        also = ("; claim (c), which reads the training loss, counts it where it is one of "
                "(c)'s tasks (runs at 4x or 16x its default budget, or the study's long arm)"
                if why == claims_mod.NO_HELD_OUT else "")
        typer.echo(f"note: task {name} is left out of {which} ({why}){also}", err=True)
    verdicts, statistics, missing = claims_tables(engine, runs, o.split.value, _filters(o),
                                                  (variants or Variants.plain).value)
    if fmt not in (Format.table, Format.markdown):
        render.render_sections([("claims", None, verdicts), ("statistics", None, statistics),
                                ("missing", None, missing)], fmt.value, wide=o.wide,
                               output=o.output)
        return
    sections = []
    for row in verdicts.itertuples():
        part = statistics[statistics["claim"] == row.claim].drop(columns="claim")
        title = (f"({row.claim}) {row.statement}: {row.verdict.upper()}"
                 + (f" {row.scope}" if row.scope else "") + f" — {row.reason}")
        sections.append((row.claim, title, part if len(part) else part.iloc[:, :0]))
    if len(missing):
        sections.append(("missing", f"(task, optimizer, steps) combinations with fewer than "
                                    f"{claims_mod.CLAIMS_SEEDS} seeds at the selected lr "
                                    f"(the study's design; >= {claims_mod.MIN_SEEDS} count) and "
                                    f"`queued`, their runs queued or running now (a worker "
                                    f"will finish them); `adaptbench run --study adaptive-lr` "
                                    f"queues what is missing (--steps for the longer budgets)",
                         missing))
    render.render_sections(sections, fmt.value, wide=o.wide)


def _writable(output: str) -> Any:
    """The output path, refused (a UserError) when it cannot be a file we write."""
    from pathlib import Path

    path = Path(output)
    if path.is_dir():
        raise UserError(f"cannot write {output!r}: it is a folder")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {output!r}: folder {str(path.parent)!r} does not exist")
    return path


def _page_content(o: SimpleNamespace, engine: Any, selected: Any, variants: str = "plain") -> Any:
    """Every report's frames and every figure for `page.build`, from the one selection (and
    the lr grid), computed by the same functions as the report and plot commands."""
    from datetime import datetime, timezone

    import sqlalchemy as sa

    from adaptbench import __version__, comparisons, curves, page, plots, protocol, results, stats
    from adaptbench.api import claims_tables, load_selected, profile_ratios, speed_tables, summary_table
    from adaptbench.cli.common import _filter
    from adaptbench.store import resolve_url

    filters = _filter(task=o.task, optim=o.optim, study=o.study, task_type=o.task_type)
    runs, what = selected.runs, selected.describe()
    ids = runs["id"].tolist()
    figures: dict[str, Any] = {}
    tuned = summary_table(selected, "test", "t")
    rates = comparisons.win_rates(runs, "test")
    wins = {t: _win_cells(rates, t) for t in sorted(rates["task_type"].unique())}
    grid = load_selected(engine, filters, _metric_columns(Split.val), Protocol.fixed.value)
    curve, tunability = stats.lr_sensitivity(grid.runs, "val", 5.0)
    lr_cells = {t: _lr_cells(curve, t) for t in sorted(curve["task"].unique())}
    if len(grid.runs):
        chosen, _ = protocol.choose_lr(grid.runs)
        figures["lr"] = plots.lr_figure(grid.runs, "val", chosen, grid.describe())
    by_task, by_type = speed_tables(engine, runs, "val")
    figures["speed"] = (plots.speed_figure(by_type, "val", what, curves.FRACTIONS) if len(by_type)
                        else "no tasks with two or more optimizers and stored curves")
    ratios = profile_ratios(engine, runs, "val")
    area = curves.profile_area(ratios).merge(curves.profile_at(ratios, (1.0, 1.5, 2.0, 4.0)),
                                             on=["task_type", "optimizer"], how="left")
    figures["profile"] = (plots.profile_figure(curves.performance_profile(ratios), "val", what,
                                               curves.TAU_MAX) if len(ratios) else
                          "no tasks with a target that every optimizer of their type ran")
    verdicts, statistics, missing = claims_tables(engine, runs, "test", filters, variants)
    figures["claims"] = (plots.claims_figure(verdicts, statistics, "test", what) if len(statistics)
                         else "no claim has a statistic to draw yet (the verdicts say why)")
    full = results.load_curves(engine, ids, ["val"], ("run_id", "step", "split", "loss", "metric"))
    figures["curves"] = (plots.curves_figure(runs, full, "val", what) if len(full)
                         else "no curve points of the selected runs")
    rosen = runs[runs["task"] == "rosenbrock"]
    if len(rosen):
        paths = rosen.merge(results.load_columns(
            engine, ["id", "trajectory"], type(filters)(run_ids=tuple(rosen["id"]))), on="id")
        paths = paths[paths["trajectory"].notna()]
        if len(paths):  # as `plot trajectory`: seed 0 per optimizer, else its smallest seed
            paths = (paths.assign(_not0=paths["seed"] != 0)
                     .sort_values(["optimizer", "_not0", "seed"]).groupby("optimizer").head(1))
            figures["trajectory"] = plots.trajectory_figure(
                paths, f"rosenbrock: one run per optimizer at its selected lr; triangle: start, "
                       f"square: end; {what}")
    inventory = results.load_columns(engine, ["status", "role", "study", "package_version",
                                              "torch_version", "device", "host", "finished_at"],
                                     filters)
    shown = [f"{flag} {','.join(v)}" for flag, v in (("--task", o.task), ("--task-type", o.task_type),
             ("--optim", o.optim), ("--study", o.study)) if v]
    return page.Content(
        protocol=what, notes=selected.notes, filters=" ".join(shown), runs=inventory,
        database=sa.engine.make_url(resolve_url(o.db)).render_as_string(hide_password=True),
        made_at=datetime.now(timezone.utc), version=__version__, summary=tuned, wins=wins,
        ranks={"mean_ranks": comparisons.mean_ranks(runs, "test").sort_values(
                   ["task_type", "mean_rank"], kind="mergesort"),
               "friedman": comparisons.friedman(runs, "test"),
               "pairwise": comparisons.pairwise_tests(runs, "test")},
        lr=lr_cells, tunability=tunability, speed={"by task type": by_type, "by task": by_task},
        profile=area.sort_values(["task_type", "area"], ascending=[True, False], kind="mergesort"),
        verdicts=verdicts, statistics=statistics, missing=missing, figures=figures)


@report_app.command(short_help="Every table, figure and claim in one self-contained HTML file.")
def html(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("--output", "-o", help="HTML file to write (one file: figures embedded, no network needed).", show_default=False)],
    task: TaskF = None,
    task_type: TypeF = None,
    optim: Annotated[ListOpt, typer.Option("--optim", help="Only these optimizer(s).")] = None,
    study: StudyF = None,
    db: DbOpt = None,
    variants: VariantsF = None,
) -> None:
    """One HTML file with the protocol in words, run counts and provenance (versions, devices,
    hosts, when), the summary, win rates, ranks, lr sensitivity, speed, performance profiles,
    the claims with their verdicts, and every figure of `adaptbench plot`, each at the
    defaults of its own command. Self-contained: opens offline, prints on paper."""
    from adaptbench import page

    o = _options(ctx)
    path = _writable(o.output)
    engine, selected = _load(o)
    if selected.runs.empty:
        _nothing()
        raise typer.Exit(2)
    studies = sorted(set(selected.runs["study"].dropna()) - {""})
    title = "adaptbench report" + (f": study {', '.join(studies)}" if studies else "")
    text = page.build(_page_content(o, engine, selected, (variants or Variants.plain).value), title)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {o.output!r}: {exc.strerror or exc}") from exc
    print(f"wrote {o.output} ({len(text) / 1e6:.1f} MB)", file=sys.stderr)


__all__ = ["report", "summary", "wins", "ranks", "compare", "profile", "lr", "speed", "claims", "html"]
