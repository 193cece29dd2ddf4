"""The run queue, which is the `runs` table: enqueue, claim, heartbeat, finish, requeue.

Every state change is one short write transaction. A worker holds a run through a *claim*: the
run's `worker` column and its `attempts` count at claim time. Heartbeats, finishing and releasing
all require that claim to be current, so a worker whose lease was reaped can never overwrite the
retry that another worker is running.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptbench.spec import RunSpec
from adaptbench.store import CurvePoint, Run, read, utcnow, write

DEFAULT_LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 3
ACTIVE = ("queued", "running")
RESULT_STATUSES = ("done", "diverged")


def new_worker_id() -> str:
    """A name unique to this worker process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Claim:
    """A run a worker holds: enough to train it, and the token that proves the hold."""

    run_id: int
    worker: str
    attempt: int
    spec: RunSpec
    device_request: str


@dataclass(frozen=True)
class Enqueued:
    run_id: int
    spec_hash: str
    new: bool
    status: str


def enqueue(
    engine: Engine,
    specs: Sequence[RunSpec],
    task_info: Mapping[str, Any],
    device_request: str = "auto",
) -> list[Enqueued]:
    """Queue the specs; a spec whose hash is already stored is left as it is (no duplicate).

    `task_info` maps task name -> Task (type, metric, target, eval_every are stored with the run
    so that reports never need to load task code).
    """
    out: list[Enqueued] = []
    hashes = [s.spec_hash for s in specs]
    with write(engine) as conn:
        existing: dict[str, tuple[int, str]] = {}
        for chunk in _chunks(hashes, 500):
            rows = conn.execute(
                sa.select(Run.spec_hash, Run.id, Run.status).where(Run.spec_hash.in_(chunk))
            )
            existing.update({h: (i, st) for h, i, st in rows})
        now = utcnow()
        for spec in specs:
            h = spec.spec_hash
            if h in existing:
                out.append(Enqueued(existing[h][0], h, False, existing[h][1]))
                continue
            task = task_info[spec.task]
            run_id = conn.execute(
                sa.insert(Run)
                .values(
                    spec_hash=h,
                    task=spec.task,
                    task_type=task.task_type,
                    metric_name=task.metric,
                    higher_is_better=task.higher_is_better,
                    target=task.target,
                    optimizer=spec.optimizer,
                    params=json.dumps(dict(spec.params), sort_keys=True),
                    schedule=spec.schedule,
                    lr=spec.lr,
                    seed=spec.seed,
                    steps=spec.steps,
                    batch_size=spec.batch_size,
                    eval_every=task.eval_every,
                    study=spec.study,
                    device_request=device_request,
                    status="queued",
                    attempts=0,
                    created_at=now,
                )
                .returning(Run.id)
            ).scalar_one()
            existing[h] = (run_id, "queued")
            out.append(Enqueued(run_id, h, True, "queued"))
    return out


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def spec_of(row: Any) -> RunSpec:
    return RunSpec(
        task=row.task,
        optimizer=row.optimizer,
        lr=row.lr,
        seed=row.seed,
        steps=row.steps,
        batch_size=row.batch_size,
        params=json.loads(row.params or "{}"),
        schedule=row.schedule,
        study=row.study or "",
    )


def requeue_expired(engine: Engine, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Return runs whose lease has expired to the queue, or fail them after `max_attempts`."""
    now = utcnow()
    expired = sa.and_(Run.status == "running", Run.lease_expires_at < now)
    with write(engine) as conn:
        failed = conn.execute(
            sa.update(Run)
            .where(expired, Run.attempts >= max_attempts)
            .values(
                status="failed",
                finished_at=now,
                worker=None,
                lease_expires_at=None,
                error=f"lease expired on each of {max_attempts} attempts (worker killed or stuck?)",
            )
        ).rowcount
        requeued = conn.execute(
            sa.update(Run)
            .where(expired, Run.attempts < max_attempts)
            .values(status="queued", worker=None, lease_expires_at=None)
        ).rowcount
    return (failed or 0) + (requeued or 0)


def claim(
    engine: Engine,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    run_ids: Sequence[int] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Claim | None:
    """Atomically take the oldest queued run (optionally among `run_ids`), or None if none is left.

    SQLite: the UPDATE runs inside BEGIN IMMEDIATE, so no two workers can pick the same row.
    PostgreSQL: the sub-select locks its row FOR UPDATE SKIP LOCKED, so concurrent claimers
    skip each other's rows instead of waiting or colliding.
    """
    requeue_expired(engine, max_attempts)
    now = utcnow()
    pick = sa.select(Run.id).where(Run.status == "queued")
    if run_ids is not None:
        if not run_ids:
            return None
        pick = pick.where(Run.id.in_(list(run_ids)))
    pick = pick.order_by(Run.id).limit(1)
    if engine.dialect.name != "sqlite":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(Run)
        .where(Run.id == pick.scalar_subquery(), Run.status == "queued")
        .values(
            status="running",
            worker=worker,
            attempts=Run.attempts + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            error=None,
        )
        .returning(*Run.__table__.columns)
    )
    with write(engine) as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    return Claim(row.id, worker, row.attempts, spec_of(row), row.device_request)


def _held(c: Claim) -> Any:
    return sa.and_(
        Run.id == c.run_id,
        Run.status == "running",
        Run.worker == c.worker,
        Run.attempts == c.attempt,
    )


def heartbeat(engine: Engine, c: Claim, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
    """Extend the lease; False when the run is no longer ours (reaped, cancelled)."""
    with write(engine) as conn:
        n = conn.execute(
            sa.update(Run)
            .where(_held(c))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        ).rowcount
    return n == 1


def finish(engine: Engine, c: Claim, outcome: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> bool:
    """Store a finished run (status done / diverged / failed) and its curve, if still held.

    Returns False and writes nothing when the claim is stale.
    """
    with write(engine) as conn:
        n = conn.execute(
            sa.update(Run)
            .where(_held(c))
            .values(**outcome, finished_at=utcnow(), lease_expires_at=None)
        ).rowcount
        if n != 1:
            return False
        if curve:
            conn.execute(sa.insert(CurvePoint), [{**p, "run_id": c.run_id} for p in curve])
    return True


def release(engine: Engine, c: Claim) -> bool:
    """Put a held run back in the queue at once (the worker was interrupted)."""
    with write(engine) as conn:
        n = conn.execute(
            sa.update(Run)
            .where(_held(c))
            .values(status="queued", worker=None, lease_expires_at=None, started_at=None)
        ).rowcount
    return n == 1


def counts(engine: Engine, study: str | None = None) -> dict[str, int]:
    """Number of runs per status."""
    stmt = sa.select(Run.status, sa.func.count()).group_by(Run.status)
    if study is not None:
        stmt = stmt.where(Run.study == study)
    with read(engine) as conn:
        return {status: n for status, n in conn.execute(stmt)}


def statuses(engine: Engine, run_ids: Sequence[int]) -> dict[int, str]:
    with read(engine) as conn:
        out: dict[int, str] = {}
        for chunk in _chunks(list(run_ids), 500):  # type: ignore[arg-type]
            rows = conn.execute(sa.select(Run.id, Run.status).where(Run.id.in_(chunk)))
            out.update({run_id: status for run_id, status in rows})
        return out
