"""The run queue, which is the `runs` table: enqueue, claim, heartbeat, finish, requeue, cancel,
retry, delete.

Every state change is one short write transaction. A worker holds a run through a *claim*: the
run's `worker` column (unique per worker process) and its `attempts` count at claim time.
Heartbeats, finishing and releasing all require that claim to be current, so a worker whose lease
was reaped can never overwrite the retry that another worker is running.

Leases are compared with the database's clock on PostgreSQL (workers on many machines need not
agree on the time) and with the local clock on SQLite (whose workers share one machine).
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
from sqlalchemy.engine import Connection, Engine

from adaptbench.errors import UserError
from adaptbench.filters import RunFilter, check_statuses
from adaptbench.optimizers import is_plugin
from adaptbench.spec import RunSpec
from adaptbench.store import CurvePoint, Run, read, utcnow, write
from adaptbench.vocab import Status

DEFAULT_LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 3
ACTIVE = Status.active()
RESULT_STATUSES = Status.results()
STATUSES = Status.names()
RETRYABLE = Status.retryable()
# Every column of `runs` is in exactly one of these two (a test checks): a new column forces a
# decision about what retrying a run does to it.
_SPEC_AND_LIFECYCLE = {
    "id", "spec_hash", "task", "task_type", "metric_name", "higher_is_better", "target",
    "optimizer", "params", "schedule", "lr", "seed", "steps", "batch_size", "eval_every", "study",
    "device_request", "role", "fingerprint", "eval_seeds", "task_steps", "task_batch_size",
    "task_twin", "task_held_out", "task_claims", "status", "attempts", "worker", "lease_expires_at", "created_at", "started_at",
    "finished_at", "error",
}
# what a result wrote (metrics, curve summary, provenance): cleared when a run is retried
OUTCOME_COLUMNS = (
    "final_train_loss", "final_val_loss", "final_test_loss",
    "final_train_metric", "final_val_metric", "final_test_metric",
    "best_val_metric", "best_val_step", "steps_to_target", "wall_seconds", "diverged_at_step",
    "trajectory", "device", "torch_version", "package_version", "host",
    "execution", "group_size", "build_seconds", "python_version", "hardware", "code_commit",
)


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


def _now(conn: Connection) -> Any:
    """'Now' in naive UTC for lease arithmetic: the server's clock on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return sa.func.timezone("UTC", sa.func.statement_timestamp(), type_=sa.DateTime)
    return utcnow()


def _later(now: Any, seconds: float) -> Any:
    return now + timedelta(seconds=seconds)


def enqueue(
    engine: Engine,
    specs: Sequence[RunSpec],
    task_info: Mapping[str, Any],
    device_request: str = "auto",
    eval_seeds: int = 0,
) -> list[Enqueued]:
    """Queue the specs; a spec whose hash is already stored is left as it is (no duplicate).

    `task_info` maps task name -> Task (type, metric, target, eval_every and the default budget
    are stored with the run so that reports never need to load task code). Two processes
    queueing the same spec at the same moment still store it once (INSERT ... ON CONFLICT DO
    NOTHING). `eval_seeds` > 0 asks for that many evaluation seeds of each selection group
    (see `evaluation`); a group that has already finished gets them queued now.
    """
    hashes = [s.spec_hash for s in specs]
    with write(engine) as conn:
        existing = _ids_of(conn, hashes)
        fresh = [s for s in {s.spec_hash: s for s in specs}.values() if s.spec_hash not in existing]
        new: dict[str, int] = {}
        for name in dict.fromkeys(s.task for s in fresh):
            task = task_info[name]
            meta = {"task_type": task.task_type, "metric_name": task.metric,
                    "higher_is_better": task.higher_is_better, "target": task.target,
                    "eval_every": task.eval_every, "device_request": device_request,
                    "task_steps": task.steps, "task_batch_size": task.batch_size,
                    "task_twin": task.twin, "task_held_out": task.held_out,
                    "task_claims": task.claims, "eval_seeds": eval_seeds}
            new.update(_insert(conn, [s for s in fresh if s.task == name], meta))
        # rows another process inserted between our SELECT and INSERT (PostgreSQL)
        existing.update(_ids_of(conn, [s.spec_hash for s in fresh if s.spec_hash not in new]))
        if eval_seeds:
            ids = list(new.values()) + [i for i, _ in existing.values()]
            for chunk in _chunks(ids, 500):
                conn.execute(sa.update(Run).where(
                    Run.id.in_(list(chunk)), Run.role == "selection",
                    Run.eval_seeds < eval_seeds).values(eval_seeds=eval_seeds))
            from adaptbench import evaluation

            evaluation.queue_due(conn, _one_per_group(conn, ids))
    out, seen = [], set()
    for h in hashes:
        if h in new:
            out.append(Enqueued(new[h], h, h not in seen, "queued"))
        else:
            out.append(Enqueued(existing[h][0], h, False, existing[h][1]))
        seen.add(h)
    return out


def _one_per_group(conn: Connection, ids: Sequence[int]) -> list[int]:
    """One run id per selection group among `ids` (the finished groups' evaluation is checked
    once each)."""
    from adaptbench.evaluation import GROUP_COLUMNS

    seen: dict[tuple, int] = {}
    for chunk in _chunks(list(ids), 500):
        cols = [getattr(Run, c) for c in GROUP_COLUMNS]
        for row in conn.execute(sa.select(Run.id, *cols).where(Run.id.in_(list(chunk)))):
            seen.setdefault(tuple(row[1:]), row[0])
    return list(seen.values())


def insert_specs(conn: Connection, specs: Sequence[RunSpec], meta: Mapping[str, Any]) -> int:
    """Queue specs that share the task facts `meta` (type, metric, defaults, device request)
    inside the caller's transaction; returns how many were new (stored ones are left alone)."""
    return len(_insert(conn, specs, meta))


def _insert(conn: Connection, specs: Sequence[RunSpec], meta: Mapping[str, Any]) -> dict[str, int]:
    now = utcnow()
    rows = [dict(
        spec_hash=spec.spec_hash, task=spec.task, optimizer=spec.optimizer,
        params=json.dumps(dict(spec.params), sort_keys=True), schedule=spec.schedule,
        lr=spec.lr, seed=spec.seed, steps=spec.steps, batch_size=spec.batch_size,
        study=spec.study, role=spec.role, fingerprint=spec.fingerprint or None,
        status="queued", attempts=0, created_at=now, **{"eval_seeds": 0, **meta},
    ) for spec in specs]
    new: dict[str, int] = {}
    for chunk in _chunks(rows, 500):
        stmt = _insert_ignoring_duplicates(conn).returning(Run.id, Run.spec_hash)
        new.update({h: i for i, h in conn.execute(stmt, list(chunk))})
    return new


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return sa.insert(Run)
    return insert(Run).on_conflict_do_nothing(index_elements=["spec_hash"])


def _ids_of(conn: Connection, hashes: Sequence[str]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(hashes, 500):
        rows = conn.execute(
            sa.select(Run.spec_hash, Run.id, Run.status).where(Run.spec_hash.in_(list(chunk)))
        )
        out.update({h: (i, st) for h, i, st in rows})
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
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
        role=row.role or "selection",
        fingerprint=row.fingerprint or "",
    )


def requeue_expired(engine: Engine, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Return runs whose lease has expired to the queue, or fail them after `max_attempts`."""
    with write(engine) as conn:
        return _requeue_expired(conn, max_attempts)


def _requeue_expired(conn: Connection, max_attempts: int) -> int:
    now = _now(conn)
    expired = sa.select(Run.id).where(Run.status == "running", Run.lease_expires_at < now)
    if conn.dialect.name != "sqlite":
        # rows another claimer is reaping right now are skipped, not waited for (no deadlocks)
        expired = expired.with_for_update(skip_locked=True)
    ids = list(conn.execute(expired).scalars())
    if not ids:
        return 0
    _requeue_or_fail(
        conn, sa.and_(Run.id.in_(ids), Run.status == "running"), max_attempts,
        f"lease expired on each of {max_attempts} attempts: its workers were killed or lost "
        "contact with the database (see worker --lease)")
    return len(ids)


def _requeue_or_fail(conn: Connection, which: Any, max_attempts: int, error: str,
                     queued_error: str | None = None) -> tuple[int, int]:
    """Put the runs `which` selects back in the queue, or fail them with `error` once they have
    had `max_attempts` attempts; (failed, queued) counts. `queued_error` is stored with a run
    put back (why its last attempt ended)."""
    now = _now(conn)
    failed = conn.execute(
        sa.update(Run)
        .where(which, Run.attempts >= max_attempts)
        .values(status="failed", finished_at=now, worker=None, lease_expires_at=None, error=error)
    ).rowcount
    queued = conn.execute(
        sa.update(Run)
        .where(which, Run.attempts < max_attempts)
        .values(status="queued", worker=None, lease_expires_at=None, error=queued_error)
    ).rowcount
    return failed, queued


def fail_attempt(engine: Engine, c: Claim, error: str, max_attempts: int = MAX_ATTEMPTS) -> str | None:
    """End a held run's attempt with `error` when the run may be to blame (its training process
    was killed): back in the queue, counting the attempt, or `failed` after `max_attempts`.

    Returns the run's new status ('queued' or 'failed'), or None when the claim is stale.
    """
    final = f"{error} (attempt {c.attempt} of {max_attempts}: not retried again)"
    with write(engine) as conn:
        failed, queued = _requeue_or_fail(conn, _held(c), max_attempts, final, error)
        if failed:
            from adaptbench import evaluation

            evaluation.queue_due(conn, [c.run_id])
    return "failed" if failed else "queued" if queued else None


def has_work(engine: Engine, run_ids: Sequence[int] | None = None, plugins: bool = True) -> bool:
    """Whether a claim could find a run now: one queued, or running on an expired lease."""
    if run_ids is not None and not run_ids:
        return False
    with read(engine) as conn:
        stmt = sa.select(Run.id).where(
            sa.or_(Run.status == "queued",
                   sa.and_(Run.status == "running", Run.lease_expires_at < _now(conn)))
        )
        if run_ids is not None:
            stmt = stmt.where(Run.id.in_(list(run_ids)))
        if not plugins:
            stmt = stmt.where(_no_plugin)
        return conn.execute(stmt.limit(1)).first() is not None


# a run whose optimizer is a built-in one, not a plugin (`module:attr`, code a worker imports)
_no_plugin = ~Run.optimizer.contains(":", autoescape=True)


def queued_plugin_runs(engine: Engine) -> int:
    """How many queued runs name a plugin optimizer (those `worker --no-plugins` leaves)."""
    with read(engine) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(Run).where(
            Run.status == "queued", ~_no_plugin)).scalar_one())


# Runs a worker may train together in one pass: the same task definition, optimizer, settings,
# budget and study (they differ in seed and learning rate only).
GROUP_KEYS = ("task", "fingerprint", "optimizer", "params", "schedule", "steps", "batch_size",
              "eval_every", "study", "device_request")


def claim(
    engine: Engine,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    run_ids: Sequence[int] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    plugins: bool = True,
) -> Claim | None:
    """Atomically take the first queued run in claim order (optionally among `run_ids`; with
    `plugins=False` one whose optimizer is not a plugin), or None if none is left:
    `claim_group` of one."""
    claims = claim_group(engine, worker, lease_seconds, 1, run_ids, max_attempts, plugins)
    return claims[0] if claims else None


def claim_group(
    engine: Engine,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_members: int = 1,
    run_ids: Sequence[int] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    plugins: bool = True,
) -> list[Claim]:
    """Atomically take the first queued run in claim order (`_queued`: the smallest budget
    multiple, then the oldest) and up to `max_members` - 1 more queued runs that can train with
    it in one pass (the same GROUP_KEYS, NULLs equal; oldest first); [] if none is left.
    `run_ids` and `plugins=False` narrow the choice as for `claim`; a run with a plugin
    optimizer is always claimed alone.

    Every run gets its own lease and claim (heartbeat, finish and release stay per run). Expired
    leases are reaped first, in the same transaction. SQLite: the transaction begins IMMEDIATE
    (it holds the write lock), so no two workers can pick the same row. PostgreSQL: the rows are
    picked FOR UPDATE SKIP LOCKED, so concurrent claimers skip each other's rows instead of
    waiting or colliding.
    """
    if max_members < 1:
        raise ValueError(f"Invalid group size: {max_members}")
    if run_ids is not None and not run_ids:
        return []
    with write(engine) as conn:
        _requeue_expired(conn, max_attempts)
        first = conn.execute(
            _queued(conn, run_ids, plugins, Run.id, *_group_columns()).limit(1)).first()
        if first is None:
            return []
        ids = [first.id]
        if max_members > 1 and not is_plugin(first.optimizer):
            same = [col == value if value is not None else col.is_(None)
                    for col, value in zip(_group_columns(), first[1:])]
            more = _queued(conn, run_ids, plugins, Run.id).where(Run.id != first.id, *same)
            ids += conn.execute(more.limit(max_members - 1)).scalars()
        now = _now(conn)
        stmt = (
            sa.update(Run)
            .where(Run.id.in_(ids), Run.status == "queued")
            .values(
                status="running",
                worker=worker,
                attempts=Run.attempts + 1,
                lease_expires_at=_later(now, lease_seconds),
                started_at=now,
                finished_at=None,
                error=None,
            )
            .returning(*Run.__table__.columns)
        )
        rows = sorted(conn.execute(stmt), key=lambda row: row.id)
    return [Claim(row.id, worker, row.attempts, spec_of(row), row.device_request) for row in rows]


def _group_columns() -> list[Any]:
    return [getattr(Run, key) for key in GROUP_KEYS]


def _queued(conn: Connection, run_ids: Sequence[int] | None, plugins: bool, *columns: Any) -> Any:
    """SELECT `columns` of the queued runs a claim may take, in claim order: the smallest budget
    multiple first (`_budget_multiple`), then the oldest. On PostgreSQL the rows picked are
    locked, skipping those another claimer holds (SQLite has no row locks: the IMMEDIATE write
    lock suffices)."""
    pick = sa.select(*columns).where(Run.status == "queued")
    if run_ids is not None:
        pick = pick.where(Run.id.in_(list(run_ids)))
    if not plugins:
        pick = pick.where(_no_plugin)
    pick = pick.order_by(_budget_multiple(), Run.id)
    if conn.dialect.name != "sqlite":
        pick = pick.with_for_update(skip_locked=True)
    return pick


def _budget_multiple() -> Any:
    """A run's budget over its task's default (1 where the default is not recorded): claims take
    the runs of the smallest multiple first, so a study's default-budget runs (and their
    evaluation seeds) finish before its 4x and 16x arms and their reports can be read first."""
    return sa.func.coalesce(Run.steps * 1.0 / sa.func.nullif(Run.task_steps, 0), 1.0)


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
            sa.update(Run).where(_held(c)).values(lease_expires_at=_later(_now(conn), lease_seconds))
        ).rowcount
    return n == 1


def finish(engine: Engine, c: Claim, outcome: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> bool:
    """Store a finished run (status done / diverged / failed) and its curve, if still held; if
    it was the last open run of a selection group that asked for evaluation seeds, queue them
    in the same transaction (`evaluation.queue_due`).

    Returns False and writes nothing when the claim is stale; True without writing when this
    claim's result is already stored (a retried finish).
    """
    with write(engine) as conn:
        n = conn.execute(
            sa.update(Run)
            .where(_held(c))
            .values(**outcome, finished_at=_now(conn), lease_expires_at=None)
        ).rowcount
        if n != 1:
            # the claim's own result already stored: this is a retry of a commit whose answer
            # was lost (the server went down right after it); only this claim's finish leaves
            # the row finished with its worker and attempt
            mine = conn.execute(sa.select(Run.status).where(
                Run.id == c.run_id, Run.worker == c.worker, Run.attempts == c.attempt,
                Run.status.in_([*RESULT_STATUSES, "failed"]))).first()
            return mine is not None
        if curve:
            conn.execute(sa.insert(CurvePoint), [{**p, "run_id": c.run_id} for p in curve])
        from adaptbench import evaluation

        evaluation.queue_due(conn, [c.run_id])
    return True


def release(engine: Engine, c: Claim) -> bool:
    """Put a held run back in the queue at once (its worker was interrupted).

    An interruption is not the run's fault, so it does not count towards MAX_ATTEMPTS.
    """
    with write(engine) as conn:
        n = conn.execute(
            sa.update(Run)
            .where(_held(c))
            .values(
                status="queued", worker=None, lease_expires_at=None, started_at=None,
                attempts=Run.attempts - 1,
            )
        ).rowcount
    return n == 1


def _select(conn: Connection, sel: RunFilter, default_statuses: Sequence[str]) -> list[tuple[int, str]]:
    """(id, status) of the runs a filter names; unknown ids or filter values are errors.

    Without a status in the filter, only runs in `default_statuses` are taken, except runs
    named by id, which are taken whatever their status (so that asking for a run that cannot be
    changed is an error, not a silent no-op)."""
    sel.check(conn)
    stmt = RunFilter(sel.run_ids, sel.tasks, sel.task_types, sel.optimizers, sel.studies).apply(
        sa.select(Run.id, Run.status).order_by(Run.id))
    if not sel.run_ids or sel.statuses:
        stmt = stmt.where(Run.status.in_(list(sel.statuses or default_statuses)))
    return [(i, st) for i, st in conn.execute(stmt)]


def _refuse(rows: list[tuple[int, str]], bad: Sequence[str], verb: str, allowed: str) -> None:
    wrong = [f"{i} ({st})" for i, st in rows if st in bad]
    if wrong:
        shown = ", ".join(wrong[:10]) + (", ..." if len(wrong) > 10 else "")
        raise UserError(
            f"cannot {verb} run {shown}: only {allowed} runs can be; nothing was changed"
        )


def cancel(engine: Engine, sel: RunFilter) -> dict[str, int]:
    """Cancel queued and running runs; a running run's worker stops at its next heartbeat.

    Returns how many were cancelled from each status. Explicit ids of finished runs are an error
    (and nothing changes).
    """
    check_statuses(sel.statuses, ACTIVE)
    with write(engine) as conn:
        rows = _select(conn, sel, ACTIVE)
        _refuse(rows, ("done", "diverged", "failed"), "cancel", "queued or running")
        out = {"queued": 0, "running": 0}
        for status in ACTIVE:
            ids = [i for i, st in rows if st == status]
            for chunk in _chunks(ids, 500):
                out[status] += conn.execute(
                    sa.update(Run)
                    .where(Run.id.in_(list(chunk)), Run.status == status)
                    .values(status="cancelled", worker=None, lease_expires_at=None,
                            finished_at=_now(conn))
                ).rowcount
    return out


def retry(engine: Engine, sel: RunFilter) -> dict[str, int]:
    """Queue failed / diverged / cancelled runs again from scratch (their old results and curve
    are deleted); by default only failed runs. Returns how many were requeued from each status."""
    check_statuses(sel.statuses, RETRYABLE)
    with write(engine) as conn:
        rows = _select(conn, sel, ("failed",))
        _refuse(rows, ("running", "done"), "retry", "failed, diverged or cancelled")
        out = {st: 0 for st in RETRYABLE}
        ids_by_status = {st: [i for i, s in rows if s == st] for st in RETRYABLE}
        cleared = {c: None for c in OUTCOME_COLUMNS}
        for status, ids in ids_by_status.items():
            for chunk in _chunks(ids, 500):
                n = conn.execute(
                    sa.update(Run)
                    .where(Run.id.in_(list(chunk)), Run.status == status)
                    .values(status="queued", attempts=0, worker=None, lease_expires_at=None,
                            started_at=None, finished_at=None, error=None, **cleared)
                ).rowcount
                out[status] += n
                conn.execute(sa.delete(CurvePoint).where(CurvePoint.run_id.in_(list(chunk))))
    return out


def deletable(engine: Engine, sel: RunFilter) -> list[tuple[int, str]]:
    """(id, status) of the runs `delete` would delete: every run the filter names, of any
    status; a running run among them is an error (cancel it first)."""
    with read(engine) as conn:
        rows = _select(conn, sel, STATUSES)
    _refuse_running(rows)
    return rows


def delete(engine: Engine, sel: RunFilter, expected: Sequence[int] | None = None) -> dict[str, int]:
    """Delete the runs a filter names and their curve points, in one transaction. A running
    run among them is an error and nothing is deleted; so is a selection other than
    `expected` (the ids the user agreed to). Returns how many from each status."""
    with write(engine) as conn:
        rows = _select(conn, sel, STATUSES)
        _refuse_running(rows)
        if expected is not None and sorted(i for i, _ in rows) != sorted(expected):
            raise UserError("the runs matching changed while you were asked (new runs queued?); "
                            "nothing was deleted, try again")
        out = {st: 0 for st in STATUSES if st != "running"}
        for status in out:
            ids = [i for i, st in rows if st == status]
            for chunk in _chunks(ids, 500):
                conn.execute(sa.delete(CurvePoint).where(CurvePoint.run_id.in_(list(chunk))))
                out[status] += conn.execute(
                    sa.delete(Run).where(Run.id.in_(list(chunk)), Run.status == status)
                ).rowcount
        if sum(out.values()) != len(rows):  # a run changed status since it was selected
            raise UserError("runs changed while deleting them (a worker claimed one?); nothing "
                            "was deleted, try again")
    return out


def _refuse_running(rows: list[tuple[int, str]]) -> None:
    running = [str(i) for i, st in rows if st == "running"]
    if running:
        shown = ", ".join(running[:10]) + (", ..." if len(running) > 10 else "")
        raise UserError(f"cannot delete running run {shown}; cancel it first (`adaptbench "
                        f"cancel`); nothing was deleted")


def counts(engine: Engine, study: str | None = None) -> dict[str, int]:
    """Number of runs per status (of one study: refused, like every filter, when no stored run has
    that label, since a typo would otherwise read as an empty study)."""
    stmt = sa.select(Run.status, sa.func.count()).group_by(Run.status)
    if study is not None:
        stmt = stmt.where(Run.study == study)
    with read(engine) as conn:
        if study is not None:
            RunFilter(studies=(study,)).check(conn)
        return {status: n for status, n in conn.execute(stmt)}


def workers_training(engine: Engine, besides: str | None = None) -> int:
    """How many workers hold running runs now, other than `besides` (a worker id)."""
    stmt = sa.select(sa.func.count(sa.distinct(Run.worker))).where(Run.status == "running")
    if besides is not None:
        stmt = stmt.where(Run.worker != besides)
    with read(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def count_active(engine: Engine, sel: RunFilter) -> int:
    """How many of the runs that `sel` names (whatever its statuses) are queued or running: a
    study still in progress, whose figures will change."""
    from dataclasses import replace

    stmt = replace(sel, statuses=tuple(ACTIVE)).apply(sa.select(sa.func.count()).select_from(Run))
    with read(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def count_active_longer(engine: Engine, sel: RunFilter) -> int:
    """How many of the runs that `sel` names are queued or running at the long budgets of
    claim (c) (`LONG_BUDGETS` times their task's default), which only (c) reads."""
    from dataclasses import replace

    from adaptbench.spec import LONG_BUDGETS

    stmt = replace(sel, statuses=tuple(ACTIVE)).apply(
        sa.select(sa.func.count()).select_from(Run)
        .where(Run.task_steps.is_not(None),
               sa.or_(*[Run.steps == Run.task_steps * b for b in LONG_BUDGETS])))
    with read(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def count_active_plain(engine: Engine, sel: RunFilter) -> dict[tuple[str, str, int], int]:
    """How many of the runs that `sel` names are queued or running, per (task, optimizer,
    steps), counting only runs at the optimizer's default settings and a constant schedule (the
    runs the claims compare)."""
    from dataclasses import replace

    stmt = replace(sel, statuses=tuple(ACTIVE)).apply(
        sa.select(Run.task, Run.optimizer, Run.steps, sa.func.count()).select_from(Run)
        .where(Run.params == "{}", Run.schedule == "constant")
        .group_by(Run.task, Run.optimizer, Run.steps))
    with read(engine) as conn:
        return {(task, optimizer, int(steps)): int(n)
                for task, optimizer, steps, n in conn.execute(stmt)}


def statuses(engine: Engine, run_ids: Sequence[int]) -> dict[int, str]:
    with read(engine) as conn:
        out: dict[int, str] = {}
        for chunk in _chunks(list(run_ids), 500):
            rows = conn.execute(sa.select(Run.id, Run.status).where(Run.id.in_(list(chunk))))
            out.update({run_id: status for run_id, status in rows})
        return out

