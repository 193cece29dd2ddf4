"""Loading runs and curves from the database into pandas DataFrames, with filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptbench.store import CurvePoint, Run, read

RUN_COLUMNS = [c.name for c in Run.__table__.columns]


@dataclass(frozen=True)
class Filters:
    """Which runs a command looks at; an empty list means no restriction."""

    tasks: Sequence[str] = ()
    task_types: Sequence[str] = ()
    optimizers: Sequence[str] = ()
    studies: Sequence[str] = ()
    statuses: Sequence[str] = ()

    def apply(self, stmt: sa.Select) -> sa.Select:
        for column, values in (
            (Run.task, self.tasks),
            (Run.task_type, self.task_types),
            (Run.optimizer, self.optimizers),
            (Run.study, self.studies),
            (Run.status, self.statuses),
        ):
            if values:
                stmt = stmt.where(column.in_(list(values)))
        return stmt


def load_runs(engine: Engine, filters: Filters = Filters()) -> pd.DataFrame:
    """One row per run, all columns of the `runs` table, ordered by id."""
    stmt = filters.apply(sa.select(Run.__table__)).order_by(Run.id)
    with read(engine) as conn:
        df = pd.read_sql(stmt, conn)
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype="object") for c in RUN_COLUMNS})
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    for col in ("steps_to_target", "diverged_at_step", "best_val_step"):
        df[col] = df[col].astype("Int64")
    float_cols = [c for c in RUN_COLUMNS if c.startswith(("final_", "best_val_metric")) or c in
                  ("lr", "target", "wall_seconds")]
    df[float_cols] = df[float_cols].astype(float)
    df["study"] = df["study"].fillna("")
    return df


def load_curves(engine: Engine, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The stored learning curves: run_id, step, split, loss, metric, elapsed."""
    stmt = sa.select(
        CurvePoint.run_id, CurvePoint.step, CurvePoint.split, CurvePoint.loss,
        CurvePoint.metric, CurvePoint.elapsed,
    ).order_by(CurvePoint.run_id, CurvePoint.step, CurvePoint.split)
    if run_ids is not None:
        stmt = stmt.where(CurvePoint.run_id.in_(list(run_ids)))
    with read(engine) as conn:
        return pd.read_sql(stmt, conn)
