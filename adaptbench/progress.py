"""Training queued runs in this process with a Rich progress display (overall and current run).

The overall bar shows runs done of all (n/N) and an estimate of the time left; when stderr is
not a terminal each finished run is one plain line instead (`worker.log_events`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

from adaptbench import worker
from adaptbench.queue import Claim


def run_with_progress(engine: Any, run_ids: Sequence[int], tasks_dirs: Sequence[str],
                      console: Console, vectorize: str = "auto",
                      group_size: int = 32) -> dict[str, int]:
    """Work off `run_ids` (those still queued) here, in groups of up to `group_size` compatible
    runs trained together (`vectorize`: see `worker.WorkerOptions`); Ctrl-C hands the current
    runs back to the queue."""
    from adaptbench import queue

    pending = [i for i, s in queue.statuses(engine, run_ids).items() if s == "queued"]
    opts = worker.WorkerOptions(tasks_dirs=tasks_dirs, vectorize=vectorize, group_size=group_size)
    with worker.handling_signals(worker.StopFlag()) as flag:
        return _work(engine, run_ids, pending, opts, console, flag)


def _work(engine: Any, run_ids: Sequence[int], pending: list[int], opts: worker.WorkerOptions,
          console: Console, flag: worker.StopFlag) -> dict[str, int]:
    from adaptbench import queue

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
    )
    # the estimate averages over everything done so far, not Rich's last 30 s (often no run ended)
    with Progress(*columns, console=console, disable=not console.is_terminal,
                  speed_estimate_period=7 * 24 * 3600) as bar:
        overall = bar.add_task("all runs", total=len(pending))
        current = bar.add_task("", total=1, visible=False)

        # the runs claimed together: one `claimed` each, in a row, before the group trains
        group: list[Claim] = []
        trained = [False]

        def claimed(c: Claim) -> None:
            if trained[0]:  # the previous group trained since: this is a new one
                group.clear()
                trained[0] = False
            group.append(c)
            s = c.spec
            what = (f"run {c.run_id}: {s.task} {s.optimizer} lr={s.lr:g} seed={s.seed}"
                    if len(group) == 1 else f"{len(group)} runs from {group[0].run_id}: {s.task} "
                    f"{s.optimizer} (trained together)")
            # reset, not update: the time estimate must not carry over from the previous run
            bar.reset(current, description=what, total=s.steps * len(group), visible=True)

        def progress(c: Claim, step: int, total: int) -> None:
            trained[0] = True
            if c is group[-1] and (step % 10 == 0 or step == total):
                bar.update(current, completed=step, total=total)

        log = worker.log_events(total=len(pending))

        def finished(c: Claim, status: str, outcome: dict[str, Any]) -> None:
            trained[0] = True
            bar.advance(overall)
            if not console.is_terminal:
                log.finished(c, status, outcome)

        events = worker.Events(claimed=claimed, progress=progress, finished=finished)
        try:
            tally = worker.work(engine, opts, run_ids=pending, events=events, flag=flag)
        except KeyboardInterrupt:
            tally = {"requeued": 1}
    if flag.requested or tally.get("requeued"):
        left = sum(1 for s in queue.statuses(engine, run_ids).values() if s == "queued")
        console.print(f"interrupted: {left} run(s) left in the queue; `adaptbench worker` resumes them")
        raise KeyboardInterrupt
    return tally
