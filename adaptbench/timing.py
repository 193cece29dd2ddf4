"""Where the time of stored runs went, per budget: `adaptbench status --time`.

Two different clocks, both from what every finished run stores:

- **compute**: the sum over runs of `wall_seconds` (training and evaluation) and `build_seconds`
  (building the task). A run trained in a stacked group stores its share of the group's time
  (the group's seconds over its size), so compute is what one process spent, one after another.
- **busy**: the length of the union of the runs' [started_at, finished_at] intervals, the wall
  time during which at least one of them was being trained: what the runs took on the machines
  that trained them, with parallel workers overlapping and idle gaps between sessions left out.
  A run that was interrupted and trained again counts its last attempt only.

Both are measured on whatever else the machines were doing at the time; neither is a benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

FINISHED = ("done", "diverged")
ACTIVE = ("queued", "running")
COLUMNS = ["steps", "task_steps", "status", "execution", "wall_seconds", "build_seconds",
           "started_at", "finished_at"]


def busy_seconds(starts: Sequence[Any], ends: Sequence[Any]) -> float:
    """Seconds covered by the union of the intervals [start, end] (datetimes); an interval with a
    missing end, or an end before its start, counts for nothing."""
    pairs = sorted((s, e) for s, e in zip(starts, ends)
                   if s is not None and e is not None and not pd.isna(s) and not pd.isna(e)
                   and e > s)
    total = 0.0
    current_start = current_end = None
    for s, e in pairs:
        if current_end is None or s > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = s, e
        elif e > current_end:
            current_end = e
    if current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total


def time_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per budget multiple (smallest first) and a last row `all`: runs finished (done or
    diverged), the share of them trained stacked, compute hours (training and evaluation, and
    building), busy hours, first start and last finish, and runs still queued or running."""
    default = runs["task_steps"].astype(float).replace(0.0, np.nan)
    runs = runs.assign(multiple=(runs["steps"].astype(float) / default).fillna(1.0))
    groups = [(f"{m:g}x", part) for m, part in runs.groupby("multiple", sort=True)]
    if len(groups) != 1:
        groups.append(("all", runs))
    rows = []
    for label, part in groups:
        done = part[part["status"].isin(FINISHED)]
        starts = [_when(v) for v in done["started_at"]]
        ends = [_when(v) for v in done["finished_at"]]
        known = [s for s in starts if s is not None]
        last = [e for e in ends if e is not None]
        rows.append({
            "budget": label,
            "finished": len(done),
            "stacked": float((done["execution"] == "vectorized").mean()) if len(done) else np.nan,
            "train_eval_h": float(done["wall_seconds"].fillna(0).sum()) / 3600,
            "build_h": float(done["build_seconds"].fillna(0).sum()) / 3600,
            "busy_h": busy_seconds(starts, ends) / 3600,
            "first_started": min(known).isoformat(sep=" ", timespec="seconds") if known else "",
            "last_finished": max(last).isoformat(sep=" ", timespec="seconds") if last else "",
            "still_active": int(part["status"].isin(ACTIVE).sum()),
        })
    return pd.DataFrame(rows, columns=["budget", "finished", "stacked", "train_eval_h", "build_h",
                                       "busy_h", "first_started", "last_finished", "still_active"])


def _when(value: Any) -> Any:
    """A datetime from what the database returns (datetime, pandas Timestamp, ISO text, NULL)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime()
