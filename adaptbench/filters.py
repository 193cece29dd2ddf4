"""`RunFilter`: which runs a command acts on. The one filter type of ls, curves, report, cancel
and retry; it knows SQL, not pandas or the command line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adaptbench.errors import UserError, did_you_mean
from adaptbench.store import Run
from adaptbench.vocab import Status


def check_statuses(statuses: Sequence[str], allowed: Sequence[str] = Status.names()) -> None:
    """Refuse a status that is not one of `allowed`, naming the closest."""
    for st in statuses:
        if st not in allowed:
            raise UserError(f"status {st!r} is not allowed here{did_you_mean(st, allowed)}; "
                            f"choose from: {', '.join(allowed)}", about="status")


@dataclass(frozen=True)
class RunFilter:
    """Which runs: explicit ids and/or values per column; an empty field means no restriction."""

    run_ids: Sequence[int] = ()
    tasks: Sequence[str] = ()
    task_types: Sequence[str] = ()
    optimizers: Sequence[str] = ()
    studies: Sequence[str] = ()
    statuses: Sequence[str] = ()

    def names_runs(self) -> bool:
        """Whether it names runs by id or by a column other than status."""
        return bool(self.run_ids or self.tasks or self.task_types or self.optimizers or self.studies)

    def _columns(self) -> list[tuple[sa.Column, Sequence[object], str]]:
        return [(Run.id, self.run_ids, "run id"), (Run.task, self.tasks, "task"),
                (Run.task_type, self.task_types, "task type"),
                (Run.optimizer, self.optimizers, "optimizer"), (Run.study, self.studies, "study"),
                (Run.status, self.statuses, "status")]

    def apply(self, stmt: sa.Select) -> sa.Select:
        for column, values, _ in self._columns():
            if values:
                stmt = stmt.where(column.in_(list(values)))
        return stmt

    def check(self, conn: Connection) -> None:
        """Refuse values that no stored run has (a typo would otherwise select nothing, silently),
        and unknown statuses."""
        check_statuses(self.statuses)
        if self.run_ids:
            ids = [int(i) for i in self.run_ids]
            if any(not 0 < i < 2**63 for i in ids):
                raise UserError(f"run ids are positive integers below 2^63, got {self.run_ids[0]}")
            known = set(conn.execute(sa.select(Run.id).where(Run.id.in_(ids))).scalars())
            missing = sorted(set(ids) - known)
            if missing:
                raise UserError(f"no run with id {', '.join(map(str, missing))} in this database")
        for column, values, what in self._columns()[1:5]:
            if values:
                stored = set(conn.execute(sa.select(column).distinct()).scalars())
                for v in values:
                    if v not in stored:
                        raise UserError(f"no stored run has {what} {v!r}{did_you_mean(v, stored)}",
                                        about=what)
