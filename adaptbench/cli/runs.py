"""`adaptbench run / queue / worker / cancel / retry / delete / status / ls / curves / tasks /
optims`: queue, train and list runs."""

from __future__ import annotations

import inspect
import math
import sys
import typing
from typing import Annotated, Any

import typer

from adaptbench.cli.common import (
    DataFormat, DataFormatOpt, DbOpt, Format, FormatOpt, ListOpt, OutputOpt, RunIdsArg,
    TasksDirOpt, WideOpt, _filter, app, check_output,
)
from adaptbench.completion import complete_optimizer, complete_task
from adaptbench.errors import UserError
from adaptbench.spec import EVAL_SEED_BASE, MAX_EVAL_SEEDS
from adaptbench.vocab import Vectorize

MIN_LEASE = 1.0  # seconds: three heartbeats, each at least 0.2 s apart, fit in it with room
MAX_GRID = 100_000  # runs a grid may queue without --yes: a typo in --seeds is not a week of work


def _grid_options(
    optim: ListOpt,
    task: ListOpt,
    lr: ListOpt,
    seeds: int | None,
    seed: list[int] | None,
    steps: int | None,
    batch_size: int | None,
    schedule: str,
    opt: ListOpt,
    study: str,
    lr_grid: bool,
    eval_seeds: int | None = None,
) -> Any:
    """The Grid the options describe. A preset study (`--study adaptive-lr`) fills in what the
    options leave open: its optimizers, every task (resolved in `_expand`), each task's lr grid
    and its number of seeds."""
    from adaptbench.spec import STUDY_PRESETS, Grid, parse_lr, parse_opts, split_list

    lrs = [parse_lr(x) for x in split_list(lr)]
    if lrs and lr_grid:
        raise UserError("give either --lr values or --lr-grid, not both")
    optimizers = [o.lower() if ":" not in o else o for o in split_list(optim)]
    preset = STUDY_PRESETS.get(study)
    if preset is not None:
        optimizers = optimizers or list(preset.optimizers)
        lr_grid = lr_grid or not lrs
        seeds = seeds or preset.seeds
        eval_seeds = preset.eval_seeds if eval_seeds is None else eval_seeds
    n_seeds = seeds if seeds is not None else 3
    return Grid(
        tasks=split_list(task),
        optimizers=optimizers,
        lrs=lrs,
        seeds=list(seed) if seed else list(range(n_seeds)),
        steps=steps,
        batch_size=batch_size,
        params=parse_opts(opt or []),
        schedule=schedule,
        study=study,
        lr_grid=lr_grid,
        eval_seeds=eval_seeds or 0,
    )


def _expand(grid: Any, tasks_dir: ListOpt, device: str, yes: bool = False) -> tuple[list[Any], dict[str, Any]]:
    from adaptbench.devices import check_device_request
    from dataclasses import replace

    from adaptbench.optimizers import check_hyperparameter_values
    from adaptbench.spec import (STUDY_PRESETS, check_study_request, expand, expand_study,
                                 grid_size, validate_grid)
    from adaptbench.tasks import fingerprint, get_task, load_tasks

    check_device_request(device)
    preset = STUDY_PRESETS.get(grid.study)
    if not grid.tasks and preset is not None:
        grid = replace(grid, tasks=sorted(n for n, t in load_tasks(tasks_dir or []).items()
                                          if t.claims))
    if preset is not None:
        check_study_request(grid, preset)
    validate_grid(grid)
    for name in grid.optimizers:
        check_hyperparameter_values(name, grid.params)
    task_info = {name: get_task(name, tasks_dir or []) for name in grid.tasks}
    runs, later = grid_size(grid, task_info, preset)
    if runs + later > MAX_GRID and not yes:
        also = f" and {later:,} evaluation runs after them" if later else ""
        raise UserError(f"this grid is {runs:,} runs{also}, over {MAX_GRID:,}: pass --yes to queue "
                        "them all; nothing was queued")
    fingerprints = {name: fingerprint(task) for name, task in task_info.items()}
    if preset is not None:
        return expand_study(grid, preset, task_info, fingerprints), task_info
    return expand(grid, task_info, fingerprints), task_info


OptimOpt = Annotated[ListOpt, typer.Option("--optim", "-o", help="Optimizer(s): repeat or comma list; see `adaptbench optims`.", autocompletion=complete_optimizer)]
TaskOpt = Annotated[ListOpt, typer.Option("--task", "-t", help="Task(s): repeat or comma list; see `adaptbench tasks`.", autocompletion=complete_task)]
LrOpt = Annotated[ListOpt, typer.Option("--lr", help="Learning rate(s), comma list [default: the optimizer's conventional lr].")]
LrGridOpt = Annotated[bool, typer.Option("--lr-grid", help="Use each task's default lr grid.")]
SeedsOpt = Annotated[int | None, typer.Option("--seeds", min=1, max=EVAL_SEED_BASE, help="Number of seeds: 0..N-1 [default: 3; 5 for --study adaptive-lr].", show_default=False)]
EvalSeedsOpt = Annotated[int | None, typer.Option("--eval-seeds", min=0, max=MAX_EVAL_SEEDS, help="Fresh seeds to run each (task, optimizer)'s selected lr on once its lr grid has finished; reports take their figures from them [default: 0; 10 for --study adaptive-lr].", show_default=False)]
SeedOpt = Annotated[list[int] | None, typer.Option("--seed", help="Explicit seed (repeatable); overrides --seeds.")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Training steps [default: the task's].")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Batch size [default: the task's].")]
ScheduleOpt = Annotated[str, typer.Option("--schedule", help="Learning-rate schedule; see `adaptbench optims`.")]
OptOpt = Annotated[ListOpt, typer.Option("--opt", help="Optimizer hyperparameter key=value (repeatable), e.g. betas=0.9,0.99.")]
StudyOpt = Annotated[str, typer.Option("--study", help="Label grouping these runs. Presets: 'adaptive-lr' queues the runs `report claims` needs (adam, rmsprop, adagrad, sgd, momentum x every task in the claims x its lr grid x 5 seeds, + 10 evaluation seeds; a 4x and 16x budget arm on the quick tasks); 'adaptive-lr-robust' variants of the same five at the default budget (a warm-up + cosine arm, eps 1e-6..1e-2 for adam and rmsprop, AdaGrad's initial accumulator 0.1; the plain ones are adaptive-lr's), read with `report claims --study adaptive-lr --study adaptive-lr-robust --variants best`. --task/--optim/--seeds/--lr/--steps narrow them.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")]
VectorizeOpt = Annotated[Vectorize, typer.Option("--vectorize", help="How to train a group of compatible runs (the same task, optimizer and settings; other seeds and lrs): auto (as one stacked, vectorized model where the task and optimizer allow it, else one after another), on, or off (one run at a time, each claimed alone).")]
GroupSizeOpt = Annotated[int, typer.Option("--group-size", min=1, help="The most compatible runs claimed and trained together (1: one at a time).")]


def _queue_grid(db: str | None, grid: Any, tasks_dir: ListOpt, device: str,
                yes: bool = False) -> tuple[Any, list[Any]]:
    from adaptbench import queue
    from adaptbench.store import make_engine

    specs, task_info = _expand(grid, tasks_dir, device, yes)  # all validation before the DB is opened
    engine = make_engine(db)
    return engine, queue.enqueue(engine, specs, task_info, device, grid.eval_seeds)


@app.command()
def run(
    optim: OptimOpt = None,
    task: TaskOpt = None,
    lr: LrOpt = None,
    lr_grid: LrGridOpt = False,
    seeds: SeedsOpt = None,
    eval_seeds: EvalSeedsOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    schedule: ScheduleOpt = "constant",
    opt: OptOpt = None,
    study: StudyOpt = "",
    device: DeviceOpt = "auto",
    detach: Annotated[bool, typer.Option("--detach", help="Only queue the runs; a worker trains them.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=f"Queue a grid of more than {MAX_GRID:,} runs (counted with its evaluation runs); without it such a grid is refused.")] = False,
    tasks_dir: TasksDirOpt = None,
    db: DbOpt = None,
    fmt: FormatOpt = Format.table,
    wide: WideOpt = False,
    vectorize: VectorizeOpt = Vectorize.auto,
    group_size: GroupSizeOpt = 32,
) -> None:
    """Queue a grid of runs and train them here, with progress; then print a summary.

    Runs that differ only in seed and learning rate train together, up to --group-size at a
    time (--vectorize)."""
    from adaptbench import render

    grid = _grid_options(optim, task, lr, seeds, seed, steps, batch_size, schedule, opt, study,
                         lr_grid, eval_seeds)
    if not detach:  # training here: the device must exist here, before anything is queued
        from adaptbench.devices import choose

        choose(device)
    engine, queued = _queue_grid(db, grid, tasks_dir, device, yes)
    err = render.stderr_console()
    new = sum(q.new for q in queued)
    err.print(f"queued {new} new run(s); {len(queued) - new} already stored")
    ids = [q.run_id for q in queued]
    if detach:
        _print_ids(queued, fmt)
        return
    from adaptbench.progress import run_with_progress

    training = {"vectorize": vectorize.value, "group_size": group_size}
    tally = run_with_progress(engine, ids, tasks_dir or [], err, **training)
    if grid.eval_seeds:
        from adaptbench.evaluation import evaluation_ids

        evaluation = evaluation_ids(engine, ids)
        if evaluation:
            err.print(f"evaluation: the selected lrs on {grid.eval_seeds} fresh seed(s), "
                      f"{len(evaluation)} run(s)")
            more = run_with_progress(engine, evaluation, tasks_dir or [], err, **training)
            tally = {k: tally.get(k, 0) + more.get(k, 0) for k in {*tally, *more}}
            ids = ids + evaluation
    _summary_of(engine, ids, fmt, wide)
    if tally.get("failed"):
        err.print(f"{tally['failed']} run(s) failed; see `adaptbench ls --status failed`")
        raise typer.Exit(1)


def _print_ids(queued: list[Any], fmt: Format) -> None:
    from adaptbench import render
    import pandas as pd

    df = pd.DataFrame([q.__dict__ for q in queued], columns=["run_id", "spec_hash", "new", "status"])
    if fmt == Format.table and not sys.stdout.isatty():
        for q in queued:
            print(q.run_id)
        return
    render.render(df, fmt.value, title="queued runs")


def _summary_of(engine: Any, ids: list[int], fmt: Format, wide: bool = False) -> None:
    """The summary of the runs `run` trained: with evaluation runs, the tuned protocol's (the lr
    chosen on the selection seeds, figures from the evaluation seeds); else every lr."""
    from adaptbench import protocol, render, results, stats

    runs = results.load_runs(engine)
    runs = runs[runs["id"].isin(ids)]
    if (runs["role"] == "evaluation").any():
        selected = protocol.select(runs, protocol.TUNED)
        table = stats.tuned_summary(selected)
    else:
        selected = protocol.select(runs, protocol.FIXED)
        table = stats.summary(selected.runs)
    render.render(table, fmt.value, title=f"summary: final test metric; {selected.describe()}",
                  wide=wide)


def _queue_only(**grid: Any) -> None:
    return run(**grid, detach=True, wide=False)


# `queue` is `run --detach`: the same grid options, declared once (run's), without those that
# only training here needs
_RUN_ONLY = ("detach", "wide", "vectorize", "group_size")
_RUN_HINTS = typing.get_type_hints(run, include_extras=True)  # the options' Annotated types
_queue_only.__signature__ = inspect.signature(run).replace(parameters=[  # type: ignore[attr-defined]
    p.replace(annotation=_RUN_HINTS[p.name])
    for p in inspect.signature(run).parameters.values() if p.name not in _RUN_ONLY])
_queue_only.__annotations__ = {k: v for k, v in _RUN_HINTS.items() if k not in _RUN_ONLY}
_queue_only.__doc__ = ("Queue a grid of runs without training them; prints the run ids (one per "
                       "line when piped).")
app.command("queue")(_queue_only)


@app.command()
def worker(
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="Keep polling for new runs instead of exiting when the queue is empty.")] = False,
    max_runs: Annotated[int | None, typer.Option("--max-runs", min=1, help="Stop after this many runs (per process).")] = None,
    lease: Annotated[float, typer.Option("--lease", help="Lease in seconds (at least 1); a run whose worker stops renewing it is requeued.")] = 60.0,
    run_timeout: Annotated[float | None, typer.Option("--run-timeout", help="Fail a run still training after this many seconds (a stuck task).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Override the device each run asked for.")] = None,
    no_plugins: Annotated[bool, typer.Option("--no-plugins", help="Never train a run whose optimizer is a plugin (module:attr), so that no code named in the database is imported here; such runs stay queued for other workers.")] = False,
    db_outage: Annotated[float | None, typer.Option("--db-outage", help="Wait out an unreachable database for this many seconds (retrying with backoff; the run in training trains on), then stop with exit 2 [default: forever with --wait, else 300].", show_default=False)] = None,
    vectorize: VectorizeOpt = Vectorize.auto,
    group_size: GroupSizeOpt = 32,
    tasks_dir: TasksDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Train queued runs until the queue is empty (or forever with --wait).

    The worker claims up to --group-size compatible runs at once (the same task, optimizer and
    settings; other seeds and lrs) and trains them together (--vectorize); each run keeps its
    own lease and result. The runs train in a child process: a run that raises or passes
    --run-timeout (per run: a group of n gets n times as long) is stored as failed with the
    reason; one whose training process is killed (out of memory, from outside) goes back to the
    queue as a failed attempt, and fails after 3; the worker goes on. Ctrl-C or SIGTERM puts the
    current runs back in the queue at once; a second Ctrl-C quits immediately.
    """
    from adaptbench import faults
    from adaptbench import worker as worker_mod
    from adaptbench.devices import check_device_request
    from adaptbench.tasks import user_dirs

    if not math.isfinite(lease) or not MIN_LEASE <= lease <= 86_400:
        # the heartbeat renews the lease every lease/3 s, but never more often than every 0.2 s
        # (worker.Heartbeat): a shorter lease would expire under healthy runs
        raise UserError(f"--lease must be a number of seconds in [{MIN_LEASE:g}, 86400], got "
                        f"{lease:g}")
    if run_timeout is not None and not (math.isfinite(run_timeout) and run_timeout > 0):
        raise UserError(f"--run-timeout must be a positive number of seconds, got {run_timeout}")
    if db_outage is not None and not (db_outage >= 0 and not math.isnan(db_outage)):
        raise UserError(f"--db-outage must be a number of seconds >= 0 (inf: for ever), got {db_outage:g}")
    if device is not None:
        check_device_request(device)
    user_dirs(tasks_dir or [])  # a missing folder is an error now, not a failure of every run
    if db_outage is None:
        db_outage = math.inf if wait else worker_mod.DEFAULT_DB_OUTAGE
    opts = worker_mod.WorkerOptions(
        db=db, lease_seconds=lease, max_runs=max_runs, wait=wait, device=device,
        tasks_dirs=tasks_dir or [], run_timeout=run_timeout, isolate=True,
        db_outage=None if math.isinf(db_outage) else db_outage, plugins=not no_plugins,
        vectorize=vectorize.value, group_size=group_size,
    )
    with worker_mod.handling_signals(worker_mod.StopFlag()) as flag:
        try:
            # waits out a database unreachable at start; creates the schema once, before any child
            engine = worker_mod.open_engine(opts, flag)
            if jobs == 1:
                tally = worker_mod.work(engine, opts, events=worker_mod.log_events(engine),
                                        flag=flag)
            else:
                engine.dispose()
                # a signal while the database was opened: no process is started
                tally = worker_mod.work_parallel(opts, jobs, flag)
        except KeyboardInterrupt:
            tally = {"interrupted": 1}
        except faults.Unreachable:
            if not flag.requested:
                raise
            tally = {"interrupted": 1}
    summary = ", ".join(f"{v} {k}" for k, v in sorted(tally.items())) or "no runs"
    print(f"worker finished: {summary}", file=sys.stderr)
    if no_plugins:
        _note_plugin_runs(opts)
    if "refused" in tally:
        raise typer.Exit(2)
    if "crashed" in tally:  # a worker process died without reporting (killed, out of memory)
        raise typer.Exit(1)
    if "interrupted" in tally or "requeued" in tally:
        raise typer.Exit(130)


def _note_plugin_runs(opts: Any) -> None:
    from adaptbench import queue
    from adaptbench.store import make_engine

    try:
        left = queue.queued_plugin_runs(make_engine(opts.db, read_only=True))
    except Exception:  # noqa: BLE001 -- a note: a database gone meanwhile is said elsewhere
        return
    if left:
        print(f"note: {left} queued run(s) name a plugin optimizer (module:attr); --no-plugins "
              "left them in the queue for a worker that may import them", file=sys.stderr)


@app.command()
def cancel(
    run_ids: RunIdsArg = None,
    task: TaskOpt = None,
    optim: OptimOpt = None,
    study: Annotated[ListOpt, typer.Option("--study", help="Study label(s).")] = None,
    status_: Annotated[ListOpt, typer.Option("--status", help="queued and/or running [default: both].")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Cancel every queued and running run.")] = False,
    db: DbOpt = None,
) -> None:
    """Cancel queued and running runs (by id or filter); a running run's worker drops it at its next heartbeat."""
    from adaptbench import queue
    from adaptbench.store import make_engine

    from adaptbench.filters import check_statuses

    sel = _filter(run_ids, task, optim, study, status_)
    check_statuses(sel.statuses, queue.ACTIVE)
    if not sel.names_runs() and not all_runs:
        raise UserError("say which runs to cancel: run ids, --task, --optim, --study, or --all")
    n = queue.cancel(make_engine(db, create=False), sel)
    print(f"cancelled {n['queued'] + n['running']} run(s): {n['queued']} queued, {n['running']} running",
          file=sys.stderr)


@app.command()
def retry(
    run_ids: RunIdsArg = None,
    task: TaskOpt = None,
    optim: OptimOpt = None,
    study: Annotated[ListOpt, typer.Option("--study", help="Study label(s).")] = None,
    status_: Annotated[ListOpt, typer.Option("--status", help="failed, diverged and/or cancelled [default: failed; with run ids: any of them].")] = None,
    db: DbOpt = None,
) -> None:
    """Queue failed (or diverged / cancelled) runs again; their old results are deleted."""
    from adaptbench import queue
    from adaptbench.store import make_engine

    from adaptbench.filters import check_statuses

    sel = _filter(run_ids, task, optim, study, status_)
    check_statuses(sel.statuses, queue.RETRYABLE)
    n = queue.retry(make_engine(db, create=False), sel)
    detail = ", ".join(f"{v} {k}" for k, v in n.items() if v)
    print(f"queued {sum(n.values())} run(s) again{': ' + detail if detail else ''}; "
          "start a worker to train them", file=sys.stderr)


@app.command()
def delete(
    run_ids: RunIdsArg = None,
    task: TaskOpt = None,
    optim: OptimOpt = None,
    study: Annotated[ListOpt, typer.Option("--study", help="Study label(s).")] = None,
    status_: Annotated[ListOpt, typer.Option("--status", help="Status(es): queued, done, diverged, failed, cancelled [default: any].")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
) -> None:
    """Delete runs (by id or filter) and their learning curves; asks first unless --yes.

    Running runs are refused (cancel them first). There is no undo: copy the database first
    if in doubt."""
    from adaptbench import queue
    from adaptbench.filters import check_statuses
    from adaptbench.store import make_engine

    sel = _filter(run_ids, task, optim, study, status_)
    check_statuses(sel.statuses)
    if not sel.names_runs() and not sel.statuses:
        raise UserError("say which runs to delete: run ids, --task, --optim, --study or --status")
    engine = make_engine(db, create=False)
    rows = queue.deletable(engine, sel)
    if not rows:
        print("no runs match; nothing deleted", file=sys.stderr)
        return
    from collections import Counter

    by_status = ", ".join(f"{n} {st}" for st, n in sorted(Counter(st for _, st in rows).items()))
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"would delete {len(rows)} run(s) ({by_status}); no terminal to ask "
                            "for confirmation: pass --yes")
        if not typer.confirm(f"delete {len(rows)} run(s) ({by_status}) and their curves?"):
            print("nothing deleted", file=sys.stderr)
            raise typer.Exit(1)
    n = queue.delete(engine, sel, expected=[i for i, _ in rows])
    detail = ", ".join(f"{v} {k}" for k, v in n.items() if v)
    print(f"deleted {sum(n.values())} run(s): {detail}", file=sys.stderr)


@app.command()
def status(
    db: DbOpt = None,
    study: Annotated[str, typer.Option("--study", help="Only runs with this study label.")] = "",
    time: Annotated[bool, typer.Option(
        "--time", help="Instead: where the time went, per budget (multiple of the task's "
        "default steps): runs finished, the share trained stacked, compute hours (training and "
        "evaluation; building), busy hours (wall time with at least one run training), first "
        "start, last finish, runs still queued or running.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Number of runs per status (or, with --time, the time they took)."""
    import pandas as pd

    from adaptbench import queue, render
    from adaptbench.store import make_engine

    engine = make_engine(db, read_only=True)
    if time:
        from adaptbench import results, timing
        from adaptbench.filters import RunFilter

        runs = results.load_columns(engine, timing.COLUMNS,
                                    RunFilter(studies=[study] if study else []))
        title = f"time of the runs{f' of study {study}' if study else ''} (hours; times UTC)"
        render.render(timing.time_table(runs), fmt.value, title=title)
        return
    counts = queue.counts(engine, study or None)
    order = ["queued", "running", "done", "diverged", "failed", "cancelled"]
    rows = [{"status": s, "runs": counts.get(s, 0)} for s in order + sorted(set(counts) - set(order))]
    render.render(pd.DataFrame(rows), fmt.value, title="runs by status")


LS_COLUMNS = [
    "id", "status", "task", "optimizer", "lr", "seed", "steps", "schedule", "study",
    "final_test_metric", "final_test_loss", "diverged_at_step", "wall_seconds", "attempts", "error",
]


@app.command("ls")
def ls_cmd(
    task: TaskOpt = None,
    optim: OptimOpt = None,
    task_type: Annotated[ListOpt, typer.Option("--task-type", help="Task type(s).")] = None,
    study: Annotated[ListOpt, typer.Option("--study", help="Study label(s).")] = None,
    status_: Annotated[ListOpt, typer.Option("--status", help="Status(es): queued, running, done, diverged, failed, cancelled.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Show only the newest N runs.")] = None,
    all_columns: Annotated[bool, typer.Option("--all", help="Every stored column.")] = False,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.table,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """List stored runs, with filters."""
    from adaptbench import render, results
    from adaptbench.store import make_engine

    check_output(fmt, output)
    filters = _filter(task=task, optim=optim, study=study, status_=status_, task_type=task_type)
    runs = results.load_runs(make_engine(db, read_only=True), filters)
    if limit is not None:
        runs = runs.tail(limit)
    if not all_columns:
        runs = runs[LS_COLUMNS].copy()
        runs["error"] = runs["error"].map(lambda e: e.strip().splitlines()[-1][:80] if isinstance(e, str) and e.strip() else "")
    render.render(runs, fmt.value, title="runs", wide=wide, output=output)


@app.command()
def curves(
    run_ids: Annotated[list[int] | None, typer.Argument(help="Run ids [default: every run matching the filters].", show_default=False)] = None,
    task: TaskOpt = None,
    optim: OptimOpt = None,
    study: Annotated[ListOpt, typer.Option("--study", help="Study label(s).")] = None,
    db: DbOpt = None,
    fmt: DataFormatOpt = DataFormat.csv,
    output: OutputOpt = None,
) -> None:
    """Export stored learning curves: run_id, step, split, loss, metric, elapsed (CSV by default)."""
    from adaptbench import render, results
    from adaptbench.store import make_engine

    check_output(fmt, output)
    engine = make_engine(db, read_only=True)
    filters = _filter(run_ids, task, optim, study)
    ids = results.load_columns(engine, ["id"], filters)["id"].astype(int).tolist()
    render.render(results.load_curves(engine, ids), fmt.value, title="learning curves",
                  output=output)


@app.command()
def tasks(tasks_dir: TasksDirOpt = None, fmt: FormatOpt = Format.table, wide: WideOpt = False) -> None:
    """List the tasks (built-in and from task folders) with their size, budget and measured run time."""
    import pandas as pd

    from adaptbench import render
    from adaptbench.tasks import load_tasks, measured

    rows = [
        {
            "name": t.name, "type": t.task_type, "metric": t.metric,
            "better": "higher" if t.higher_is_better else "lower",
            "params": measured(t).get("params"), "examples": measured(t).get("examples"),
            "steps": t.steps, "batch_size": t.batch_size, "eval_every": t.eval_every,
            "seconds": measured(t).get("seconds"),
            "lrs": ",".join(f"{x:g}" for x in t.lrs), "target": t.target,
            "twin": t.twin, "gradient_density": measured(t).get("gradient_density"),
            "held_out": t.held_out, "claims": t.claims, "clip_grad_norm": t.clip_grad_norm,
            "warmup": t.warmup, "description": t.description,
        }
        for t in load_tasks(tasks_dir or []).values()
    ]
    render.render(
        pd.DataFrame(rows), fmt.value,
        title="tasks (seconds: CPU seconds of one default run on one thread; gradient_density: share of parameter "
              "coordinates with a non-zero gradient per batch; both from benchmarks/task_timing.py)",
        wide=wide,
    )


# What a narrow terminal hides first in `optims`: the settings stay, and where torch differs.
OPTIMS_HIDE_ORDER = ("reference", "runs", "description", "update", "differs")


@app.command()
def optims(fmt: FormatOpt = Format.table, wide: WideOpt = False) -> None:
    """List the optimizers, with every setting each runs with and how torch computes its update,
    and the learning-rate schedules. --format json gives the settings as an object (`defaults`)."""
    import pandas as pd

    from adaptbench import render
    from adaptbench.optimizers import OPTIMIZERS, SCHEDULE_DOCS

    infos = list(OPTIMIZERS.values())
    optimizers = pd.DataFrame([
        {"kind": "optimizer", "name": o.name, "default_lr": o.default_lr,
         "runs": f"torch.optim.{o.torch_class}", "settings": o.settings_text(), "update": o.update,
         "differs": o.differs, "description": o.description, "reference": o.reference}
        for o in infos
    ])
    if fmt is Format.json:  # data: the settings as an object, and where eps and weight decay enter
        optimizers["defaults"] = pd.Series([o.settings for o in infos], dtype=object)
        optimizers["eps_enters"] = [o.eps_enters or None for o in infos]
        optimizers["weight_decay_enters"] = [o.weight_decay_enters for o in infos]
    schedules = pd.DataFrame([
        {"kind": "schedule", "name": name, "default_lr": None, "runs": "", "settings": "",
         "update": "", "differs": "", "description": doc, "reference": ""}
        for name, doc in SCHEDULE_DOCS.items()
    ])
    if fmt in (Format.csv, Format.json):  # data: one list, a row per optimizer or schedule
        render.render(pd.concat([optimizers, schedules], ignore_index=True), fmt.value)
        return
    render.render_sections(
        [("optimizers", "optimizers, with every setting they run with",
          optimizers.drop(columns="kind")),
         ("schedules", "learning-rate schedules", schedules[["name", "description"]])],
        fmt.value, wide=wide, hide_order=OPTIMS_HIDE_ORDER)


