"""Shell completion of option values: task and optimizer names for `--task` and `--optim`.

Typer calls these on every Tab (`adaptbench --install-completion` sets the shell up), so they
must be quick: optimizer names come from the table in `optimizers` and task names are read from
the task files' source, never by importing them (which would import torch).
"""

from __future__ import annotations

from collections.abc import Iterable

import typer


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    """The names that complete the last item of a comma list (`adam,rms` -> `adam,rmsprop`)."""
    done, _, last = incomplete.rpartition(",")
    head = done + "," if done else ""
    given = set(done.split(",")) if done else set()
    return [head + name for name in sorted(names) if name.startswith(last) and name not in given]


def complete_task(ctx: typer.Context, incomplete: str) -> list[str]:
    """Task names: the built-in ones, those of ADAPTBENCH_TASKS and of any --tasks-dir given."""
    from adaptbench.tasks import task_names

    dirs = (ctx.params.get("tasks_dir") or []) if ctx is not None else []
    return _matching(task_names(dirs), incomplete)


def complete_optimizer(incomplete: str) -> list[str]:
    """Built-in optimizer names."""
    from adaptbench.optimizers import OPTIMIZERS

    return _matching(OPTIMIZERS, incomplete)
