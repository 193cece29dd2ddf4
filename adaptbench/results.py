"""Loading runs and curves from the database into pandas DataFrames, with filters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptbench.filters import RunFilter
from adaptbench.store import CurvePoint, Run, read

RUN_COLUMNS = [c.name for c in Run.__table__.columns]


def load_runs(engine: Engine, filters: RunFilter = RunFilter()) -> pd.DataFrame:
    """One row per run, every column of the `runs` table, ordered by id (`ls --all`).

    The dtypes are those of `load_columns` for every column they share: nullable integers as
    float64 with NaN, the direction as bool, text as object, and the study '' when unset.
    """
    stmt = filters.apply(sa.select(Run.__table__)).order_by(Run.id)
    with read(engine) as conn:
        filters.check(conn)
        df = pd.read_sql(stmt, conn)
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype="object") for c in RUN_COLUMNS})
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """The one dtype convention of every loader (see `load_runs`)."""
    for name in df.columns:
        if name in _FLOAT_COLUMNS:
            df[name] = df[name].astype(float)
        elif name in _INT_COLUMNS:
            df[name] = df[name].astype(np.int64)
        elif name == "higher_is_better":
            df[name] = df[name].astype(bool)
    if "study" in df:
        df["study"] = df["study"].fillna("")
    return df


def _frame(rows: Sequence[Sequence[object]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame built column by column from result rows, with the loaders' dtypes (`_typed`).

    pd.read_sql infers types value by value; at 100,000 runs this is several times faster.
    """
    grid = np.array(rows, dtype=object).reshape(len(rows), len(columns))
    return _typed(pd.DataFrame({name: grid[:, i] for i, name in enumerate(columns)},
                               columns=list(columns)))


_INT_COLUMNS = {"id", "run_id", "seed", "steps", "batch_size", "eval_every", "attempts", "step",
                "eval_seeds"}
_FLOAT_COLUMNS = {
    c.name for c in [*Run.__table__.columns, *CurvePoint.__table__.columns]
    if isinstance(c.type, (sa.Float, sa.Integer)) and c.name not in _INT_COLUMNS
}


def load_columns(engine: Engine, columns: Sequence[str], filters: RunFilter = RunFilter()) -> pd.DataFrame:
    """Only the given columns of the runs, one row per run ordered by id: what reports load."""
    unknown = [c for c in columns if c not in RUN_COLUMNS]
    if unknown:
        raise ValueError(f"Invalid runs column(s): {', '.join(unknown)}")
    table = Run.__table__
    stmt = filters.apply(sa.select(*[table.c[c] for c in columns])).order_by(Run.id)
    with read(engine) as conn:
        filters.check(conn)
    return _frame(_fetch(engine, stmt), columns)


CURVE_COLUMNS = ["run_id", "step", "split", "loss", "metric", "elapsed"]


def load_curves(
    engine: Engine, run_ids: Sequence[int] | None = None, splits: Sequence[str] | None = None,
    columns: Sequence[str] = CURVE_COLUMNS, near: Sequence[float] = (),
) -> pd.DataFrame:
    """The stored learning curves: by default run_id, step, split, loss, metric, elapsed.

    Only the given runs and splits, if given, in one query: the run ids are written into the
    SQL as literals, so that any number of them stays within the database's limit on bound
    parameters. `near`: only the points within one evaluation interval of these fractions of
    each run's budget (|step - f · steps| <= eval_every), which always include the evaluation
    nearest to each fraction, since evaluations are at most eval_every steps apart. Rows come
    in no particular order.
    """
    unknown = [c for c in columns if c not in CURVE_COLUMNS]
    if unknown:
        raise ValueError(f"Invalid curve column(s): {', '.join(unknown)}")
    stmt = sa.select(*[CurvePoint.__table__.c[c] for c in columns])
    if run_ids is not None:
        ids = sorted({int(i) for i in run_ids})
        if not ids:
            return _frame([], columns)
        stmt = stmt.where(CurvePoint.run_id.in_(
            sa.bindparam("run_ids", ids, expanding=True, literal_execute=True)))
    if splits is not None:
        stmt = stmt.where(CurvePoint.split.in_(list(splits)))
    if near:
        run = Run.__table__.c
        stmt = stmt.join(Run.__table__, run.id == CurvePoint.run_id).where(sa.or_(*(
            sa.func.abs(CurvePoint.step - float(f) * run.steps) <= run.eval_every for f in near)))
    return _frame(_fetch(engine, stmt), columns)


def _fetch(engine: Engine, stmt: sa.Select) -> list[tuple]:
    """All rows of a statement as the database driver returns them (plain tuples).

    Skips SQLAlchemy's per-row result processing, which costs more than the query itself at
    this size; so only columns whose driver values are already plain (numbers, text, the
    direction flag) may be fetched this way.
    """
    with read(engine) as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        args = tuple(params[k] for k in compiled.positiontup) if compiled.positional else params
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(str(compiled), args)
            return cursor.fetchall()
        finally:
            cursor.close()


# what `protocol.select` reads besides the columns of the statistics
PROTOCOL_COLUMNS = ["id", "task", "task_type", "metric_name", "higher_is_better", "optimizer",
                    "lr", "seed", "status", "final_val_metric", "schedule", "params", "steps",
                    "batch_size", "study", "role", "fingerprint", "task_steps", "task_batch_size",
                    "task_twin", "task_held_out", "task_claims"]
PROTOCOL_COLUMNS = [c for c in PROTOCOL_COLUMNS if c in RUN_COLUMNS]
