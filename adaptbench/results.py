"""Loading runs and curves from the database into pandas DataFrames, with filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


def _frame(rows: Sequence[Sequence[object]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame built column by column from result rows, with the report dtypes.

    pd.read_sql infers types value by value; at 100,000 runs this is several times faster.
    Floats and nullable integers become float64 (NaN for NULL), other integers int64, the
    direction bool, text object.
    """
    grid = np.array(rows, dtype=object).reshape(len(rows), len(columns))
    frame = {}
    for i, name in enumerate(columns):
        values = grid[:, i]
        if name in _FLOAT_COLUMNS:
            frame[name] = values.astype(float)
        elif name in _INT_COLUMNS:
            frame[name] = values.astype(np.int64)
        elif name == "higher_is_better":
            frame[name] = values.astype(bool)
        else:
            frame[name] = values
    df = pd.DataFrame(frame, columns=list(columns))
    if "study" in df:
        df["study"] = df["study"].fillna("")
    return df


_INT_COLUMNS = {"id", "run_id", "seed", "steps", "batch_size", "eval_every", "attempts", "step"}
_FLOAT_COLUMNS = {
    c.name for c in [*Run.__table__.columns, *CurvePoint.__table__.columns]
    if isinstance(c.type, (sa.Float, sa.Integer)) and c.name not in _INT_COLUMNS
}


def load_columns(engine: Engine, columns: Sequence[str], filters: Filters = Filters()) -> pd.DataFrame:
    """Only the given columns of the runs, one row per run ordered by id: what reports load.

    Nullable integer columns (steps_to_target, diverged_at_step, best_val_step) come as
    float64 with NaN, unlike `load_runs`; the statistics treat both alike.
    """
    unknown = [c for c in columns if c not in RUN_COLUMNS]
    if unknown:
        raise ValueError(f"Invalid runs column(s): {', '.join(unknown)}")
    table = Run.__table__
    stmt = filters.apply(sa.select(*[table.c[c] for c in columns])).order_by(Run.id)
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


VARIANT_COLUMNS = ["schedule", "params", "steps", "batch_size", "study"]


def as_variants(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs ready to compare: one row per experiment, and `optimizer` naming the variant.

    - Runs that differ only in their study label are the same experiment (same spec, same
      seed): the oldest is kept, so pooling studies never counts a seed twice.
    - Runs of one optimizer under different settings are different contenders: a non-constant
      schedule is appended as ``+cosine``, hyperparameters as ``{betas=0.9,0.99}``, and where a
      task has the same optimizer at several budgets, ``@300steps`` / ``/b32``. The plain name
      (``adam``) means the default settings, so comparisons never pool different settings.
    Needs the columns of `VARIANT_COLUMNS` besides task, optimizer, lr, seed and id.
    """
    if runs.empty:
        return runs
    same = ["task", "optimizer", "params", "schedule", "lr", "seed", "steps", "batch_size"]
    runs = runs.sort_values("id").drop_duplicates(same, keep="first")
    label = runs["optimizer"].astype(str)
    schedule = runs["schedule"].fillna("constant")
    label = label.where(schedule == "constant", label + "+" + schedule)
    params = runs["params"].fillna("{}")
    custom = params != "{}"
    if custom.any():
        label = label.where(~custom, label + params.where(~custom, params.map(_compact_params)))
    for column, fmt in (("steps", "@{}steps"), ("batch_size", "/b{}")):
        several = runs.assign(_label=label).groupby(["task", "_label"])[column].transform("nunique") > 1
        if several.any():
            label = label.where(~several, label + runs[column].map(lambda v, f=fmt: f.format(int(v))))
    return runs.assign(optimizer=label).sort_values("id").reset_index(drop=True)


def _compact_params(text: str) -> str:
    import json

    params = json.loads(text)
    def show(v: object) -> str:
        return ",".join(f"{x:g}" for x in v) if isinstance(v, list) else (f"{v:g}" if isinstance(v, float) else str(v).lower())
    return "{" + ";".join(f"{k}={show(v)}" for k, v in sorted(params.items())) + "}"
