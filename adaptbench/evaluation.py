"""Fresh evaluation seeds: once a selection group has finished, queue its selected lr on new seeds.

A *selection group* is the lr grid of one (task, optimizer and its settings, budget, batch size,
study, task definition): the runs among which `protocol.choose_lr` picks an lr. When the last
of its runs finishes and it asked for evaluation seeds (`eval_seeds` > 0, from `--eval-seeds`),
the selected configuration is queued on the seeds `spec.EVAL_SEED_BASE + i`, disjoint from every
selection seed and the same for every optimizer (so evaluation runs pair by seed).

Exactly once, with any number of workers: whoever finishes a group's last run queues the
evaluation in the same transaction; the spec hash makes a second attempt a no-op. SQLite runs
write transactions one at a time; on PostgreSQL a transaction-scoped advisory lock per group
makes two finishers take turns, so the second sees the first's committed result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adaptbench.spec import evaluation_specs
from adaptbench.store import Run, read
from adaptbench.vocab import Role, Status

GROUP_COLUMNS = ("task", "optimizer", "params", "schedule", "steps", "batch_size", "study",
                 "fingerprint")


def _same_group(row: Any, role: Role) -> Any:
    conditions = [Run.role == role.value]
    for name in GROUP_COLUMNS:
        column, value = getattr(Run, name), getattr(row, name)
        conditions.append(column.is_(None) if value is None else column == value)
    return sa.and_(*conditions)


def _lock_key(row: Any) -> int:
    """A 64-bit advisory-lock key for a group (PostgreSQL)."""
    text = repr(tuple(getattr(row, c) for c in GROUP_COLUMNS))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def selected_lr(members: Sequence[Any]) -> float | None:
    """The lr the protocol selects among a finished group's runs; None when no lr can be
    trusted: no results, or every run diverged (evaluating that lr would only repeat it)."""
    import pandas as pd

    from adaptbench.protocol import choose_lr

    runs = pd.DataFrame([{
        "task": m.task, "optimizer": m.optimizer, "lr": m.lr, "status": m.status,
        "final_val_metric": m.final_val_metric, "higher_is_better": bool(m.higher_is_better),
        "task_type": m.task_type,
    } for m in members if m.status in Status.results()])
    if runs.empty:
        return None
    best, _ = choose_lr(runs)
    if best.empty or bool(best["all_diverged"].iloc[0]):
        return None
    return float(best["lr"].iloc[0])


def queue_due(conn: Connection, run_ids: Sequence[int]) -> int:
    """Queue the evaluation runs of the selection groups of these runs that are due: the group
    asked for evaluation seeds and none of its runs is queued or running. Runs inside the
    caller's write transaction; returns how many runs were queued (0 when already there)."""
    from adaptbench.queue import insert_specs, spec_of

    if not run_ids:
        return 0
    rows = conn.execute(sa.select(Run).where(
        Run.id.in_(list(run_ids)), Run.role == Role.selection.value, Run.eval_seeds > 0)).all()
    groups = {tuple(getattr(r, c) for c in GROUP_COLUMNS): r for r in rows}
    queued = 0
    for row in groups.values():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(row))))
        members = conn.execute(sa.select(
            Run.task, Run.optimizer, Run.lr, Run.status, Run.final_val_metric,
            Run.higher_is_better, Run.task_type, Run.eval_seeds,
        ).where(_same_group(row, Role.selection))).all()
        if any(m.status in Status.active() for m in members):
            continue
        lr = selected_lr(members)
        if lr is None:
            continue
        n = max(int(m.eval_seeds) for m in members)
        specs = evaluation_specs(spec_of(row), lr, n)
        queued += insert_specs(conn, specs, _meta(row))
    return queued


def _meta(row: Any) -> dict[str, Any]:
    """What an evaluation run copies from its selection group besides the spec."""
    return {name: getattr(row, name) for name in (
        "task_type", "metric_name", "higher_is_better", "target", "eval_every", "device_request",
        "task_steps", "task_batch_size", "task_twin", "task_held_out", "task_claims")}


def evaluation_ids(engine: Engine, run_ids: Sequence[int]) -> list[int]:
    """The evaluation runs (any status) of the selection groups of these runs."""
    with read(engine) as conn:
        rows = []
        for start in range(0, len(run_ids), 500):
            rows += conn.execute(sa.select(Run).where(
                Run.id.in_(list(run_ids[start:start + 500])),
                Run.role == Role.selection.value)).all()
        groups = {tuple(getattr(r, c) for c in GROUP_COLUMNS): r for r in rows}
        ids: list[int] = []
        for row in groups.values():
            ids += conn.execute(sa.select(Run.id).where(
                _same_group(row, Role.evaluation)).order_by(Run.id)).scalars().all()
    return ids
