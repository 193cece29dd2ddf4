"""The words adaptbench stores and prints, as types: run statuses, run roles, data splits and how
runs are trained.

Each value is the exact string in the database, on the command line and in output, so the enums
compare equal to their strings (``Status.done == "done"``).
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """Where a run is in its life: queued → running → done | diverged | failed; or cancelled."""

    queued = "queued"
    running = "running"
    done = "done"
    diverged = "diverged"
    failed = "failed"
    cancelled = "cancelled"

    @classmethod
    def results(cls) -> tuple[str, ...]:
        """The statuses that are results: a diverged run is a result (the worst one)."""
        return (cls.done.value, cls.diverged.value)

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.queued.value, cls.running.value)

    @classmethod
    def retryable(cls) -> tuple[str, ...]:
        return (cls.failed.value, cls.diverged.value, cls.cancelled.value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls)


class Role(str, Enum):
    """Why a run exists: to choose the lr (selection), or to measure the chosen one (evaluation)."""

    selection = "selection"
    evaluation = "evaluation"


class Split(str, Enum):
    """A data split: the final figures are stored per split (`final_<split>_metric`, ...);
    learning curves per `CurveSplit`."""

    test = "test"
    val = "val"
    train = "train"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls)


class CurveSplit(str, Enum):
    """What a learning-curve point measures (`curve_points.split`): the validation or test
    split; "train", the mean minibatch loss since the previous evaluation; "train_full", the
    loss and metric of the current model on the training examples (all of them, or a fixed
    subsample of a large split: `train.training_examples`). Runs stored before "train_full"
    existed have no such points."""

    test = "test"
    val = "val"
    train = "train"
    train_full = "train_full"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls)

    @staticmethod
    def quantity(split: str) -> str:
        """The column a curve is read by: the loss for the training curves, else the metric."""
        return "loss" if split in (CurveSplit.train, CurveSplit.train_full) else "metric"

    @staticmethod
    def describe(split: str) -> str:
        """What the curve read by `quantity` measures, in words."""
        return {"train": "training loss (mean minibatch loss)",
                "train_full": "full-batch training loss"}.get(split, f"{split} metric")


class Vectorize(str, Enum):
    """Whether a worker trains a group of compatible runs as one stacked model (`worker
    --vectorize`): "auto" where the task and optimizer allow it, "on" asks for it, "off" trains
    one run at a time (and claims one at a time)."""

    auto = "auto"
    on = "on"
    off = "off"


class Execution(str, Enum):
    """How a run was trained (`runs.execution`): alone, or in a vectorized group."""

    single = "single"
    vectorized = "vectorized"
