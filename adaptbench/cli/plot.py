"""`adaptbench plot ...`: figures of stored runs, as PNG, SVG or PDF. Never imports torch.

Each command loads the runs exactly as `report` does (`cli.report._load`: the same filters,
`protocol.select` applied once), computes what the matching report computes, and hands the
frames to a figure builder in `plots`. The file format comes from the output's extension; it
is checked before anything is loaded, and nothing is written when nothing matches.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from adaptbench.cli import report as rc
from adaptbench.cli.common import DbOpt, ListOpt, app
from adaptbench.completion import complete_optimizer
from adaptbench.errors import UserError
from adaptbench.vocab import CurveSplit, Split

plot_app = typer.Typer(help="Figures of stored runs for a paper (PNG, SVG or PDF by the file's "
                            "extension).", rich_markup_mode=None, no_args_is_help=True)
app.add_typer(plot_app, name="plot")

OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Figure file: .png, .svg or .pdf (the extension sets the format).", show_default=False)]
# -o is the output here, so the optimizer filter has only its long name
OptimF = Annotated[ListOpt, typer.Option("--optim", help="Only these optimizer(s).", autocompletion=complete_optimizer)]
WidthOpt = Annotated[float | None, typer.Option("--width", help="Figure width in inches [default: 7, a two-column paper's text width; 4.5 for trajectory].", show_default=False)]
HeightOpt = Annotated[float | None, typer.Option("--height", help="Figure height in inches [default: from the number of panels].", show_default=False)]
DpiOpt = Annotated[int, typer.Option("--dpi", help="Pixels per inch of a PNG (SVG and PDF are vector).")]


@plot_app.callback()
def plot(
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    db: DbOpt = None,
) -> None:
    """Figures of stored runs, from the same selected runs as `report`.

    Filters written here apply to the subcommand that follows (`plot --study s curves -o f.pdf`)."""


def _start(ctx: typer.Context) -> SimpleNamespace:
    """The options, checked before any loading: the output's format, the size."""
    from adaptbench import plots

    o = rc._options(ctx)
    plots.output_format(o.output)
    for name in ("width", "height"):
        value = getattr(o, name)
        if value is not None and not 0 < value <= 100:
            raise UserError(f"--{name} must be in (0, 100] inches, got {value:g}")
    if not 10 <= o.dpi <= 2400:
        raise UserError(f"--dpi must be between 10 and 2400, got {o.dpi}")
    return o


def _stop(what: str = "finished runs") -> None:
    rc._nothing(what)
    raise typer.Exit(2)


def _write(fig: Any, o: SimpleNamespace) -> None:
    from adaptbench import plots

    w, h = fig.get_size_inches()
    plots.save(fig, o.output, o.dpi)
    print(f"wrote {o.output} ({w:.2g} x {h:.2g} in)", file=sys.stderr)


@plot_app.command()
def curves(
    ctx: typer.Context,
    output: OutputOpt,
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    split: Annotated[CurveSplit, typer.Option("--split", help="Curve: the val or test metric, train (the mean minibatch loss) or train_full (the loss on the training examples).")] = CurveSplit.val,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """Learning curves at the selected lr: the metric against steps, mean over seeds with a 95%
    t-interval per evaluation step; a panel per task, a colour per optimizer."""
    from adaptbench import plots, results

    o = _start(ctx)
    engine, selected = rc._load(o)
    runs = selected.runs
    if runs.empty:
        _stop()
    curve = results.load_curves(engine, runs["id"].tolist(), [o.split.value],
                                ("run_id", "step", "split", "loss", "metric"))
    if curve.empty:
        _stop("curve points of the selected runs")
    _write(plots.curves_figure(runs, curve, o.split.value, selected.describe(), o.width,
                               o.height), o)


@plot_app.command()
def lr(
    ctx: typer.Context,
    output: OutputOpt,
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    split: Annotated[Split, typer.Option("--split", help="Split of the final metric [default: val, the one lrs are tuned on].")] = Split.val,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """Final metric against lr (log axis) per (task, optimizer) over the selection seeds: mean
    with a 95% t-band, diverged lrs marked x, the selected lr circled."""
    from adaptbench import plots, protocol

    o = _start(ctx)
    _, grid = rc._load(o, rc._metric_columns(o.split), rc.Protocol.fixed.value)
    runs = grid.runs
    if runs.empty:
        _stop()
    chosen, _ = protocol.choose_lr(runs)  # the tuned protocol's rule, on these same runs
    what = (f"{grid.describe()}; the circled lr is the one the tuned protocol selects "
            f"(best mean validation metric)")
    _write(plots.lr_figure(runs, o.split.value, chosen, what, o.width, o.height), o)


@plot_app.command()
def profile(
    ctx: typer.Context,
    output: OutputOpt,
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    split: Annotated[Split, typer.Option("--split", help="Split the target is reached on: val (stored) or test (from the curves).")] = Split.val,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """Dolan–Moré performance profiles of steps to target at the selected lrs, a panel per
    task type: ρ(τ) for 1 <= τ <= 4 (see `report profile`)."""
    from adaptbench import curves as curves_mod
    from adaptbench import plots
    from adaptbench.api import profile_ratios

    o = _start(ctx)
    engine, selected = rc._load(o, ("target", "steps_to_target"))
    runs = selected.runs
    if runs.empty:
        _stop()
    ratios = profile_ratios(engine, runs, o.split.value)
    if ratios.empty:
        _stop("tasks with a target that every optimizer of their type ran")
    table = curves_mod.performance_profile(ratios)
    _write(plots.profile_figure(table, o.split.value, selected.describe(), curves_mod.TAU_MAX,
                                o.width, o.height), o)


@plot_app.command()
def speed(
    ctx: typer.Context,
    output: OutputOpt,
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    split: Annotated[CurveSplit, typer.Option("--split", help="Curve to rank by: the val or test metric, train (the mean minibatch loss) or train_full (the loss on the training examples).")] = CurveSplit.val,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """Each optimizer's mean rank at 10%, 25% and 100% of the budget, a panel per task type
    (see `report speed`)."""
    from adaptbench import curves as curves_mod
    from adaptbench import plots
    from adaptbench.api import speed_tables

    o = _start(ctx)
    engine, selected = rc._load(o, ("target", "steps_to_target", "diverged_at_step"))
    runs = selected.runs
    if runs.empty:
        _stop()
    _, by_type = speed_tables(engine, runs, o.split.value)
    if by_type.empty:
        _stop("tasks with two or more optimizers and stored curves")
    _write(plots.speed_figure(by_type, o.split.value, selected.describe(), curves_mod.FRACTIONS,
                              o.width, o.height), o)


@plot_app.command()
def trajectory(
    ctx: typer.Context,
    output: OutputOpt,
    optim: OptimF = None,
    study: rc.StudyF = None,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """Paths of the optimizers on the 2-D Rosenbrock function over its contours: per optimizer
    the run of seed 0 (else its smallest seed) at the selected lr of task `rosenbrock`."""
    from adaptbench import plots

    o = _start(ctx)
    o.task, o.task_type = ["rosenbrock"], None
    _, selected = rc._load(o, ("trajectory", "seed"))
    runs = selected.runs
    runs = runs[runs["trajectory"].notna()] if len(runs) else runs
    if runs.empty:
        raise UserError("no run of task rosenbrock with a stored trajectory matches; run "
                        "`adaptbench run -t rosenbrock` first")
    order = runs.assign(_not0=runs["seed"] != 0).sort_values(["optimizer", "_not0", "seed"])
    paths = order.groupby("optimizer", sort=True).head(1)
    seeds = sorted(set(int(s) for s in paths["seed"]))
    title = (f"rosenbrock: one run per optimizer (seed {', '.join(map(str, seeds))}) at its "
             f"selected lr; triangle: start, square: end; {selected.describe()}")
    _write(plots.trajectory_figure(paths, title, o.width, o.height), o)


@plot_app.command()
def claims(
    ctx: typer.Context,
    output: OutputOpt,
    task: rc.TaskF = None,
    task_type: rc.TypeF = None,
    optim: OptimF = None,
    study: rc.StudyF = None,
    split: Annotated[Split, typer.Option("--split", help="Split of the final metric that claims (a) and (b) compare.")] = Split.test,
    width: WidthOpt = None,
    height: HeightOpt = None,
    dpi: DpiOpt = 300,
    db: DbOpt = None,
) -> None:
    """The three adaptive-lr claims (see `report claims`): each statistic with its 95%
    interval against its threshold, the verdict in the panel's title."""
    from adaptbench import plots
    from adaptbench.api import claims_tables

    o = _start(ctx)
    engine, selected = rc._load(o, rc.CLAIMS_COLUMNS + rc._metric_columns(o.split),
                                budgets_apart=True)
    runs = selected.runs
    if runs.empty:
        _stop()
    verdicts, statistics, _ = claims_tables(engine, runs, o.split.value, rc._filters(o))
    _write(plots.claims_figure(verdicts, statistics, o.split.value, selected.describe(),
                               o.width, o.height), o)


__all__ = ["plot_app", "curves", "lr", "profile", "speed", "trajectory", "claims"]
