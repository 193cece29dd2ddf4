"""The training loop: one spec in, one result and its learning curve out. The only training code."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from adaptbench import devices
from adaptbench.optimizers import build_optimizer, lr_factor
from adaptbench.spec import RunSpec
from adaptbench.tasks import Problem, Task

EVAL_CHUNK = 4096  # examples per forward pass when evaluating a whole split
EXPLODE_FACTOR = 100.0  # a minibatch loss this many times the first one counts as diverged


class Interrupted(Exception):
    """Training was asked to stop (a signal); the run goes back to the queue."""


@dataclass
class RunResult:
    """The outcome of one run: status, final and best metrics, and the raw curve."""

    status: str  # "done" or "diverged"
    final: dict[str, float | None]  # final_{train,val,test}_{loss,metric}
    best_val_metric: float | None
    best_val_step: int | None
    steps_to_target: int | None
    diverged_at_step: int | None
    wall_seconds: float
    device: str
    curve: list[dict[str, Any]] = field(default_factory=list)
    trajectory: list[tuple[int, list[float]]] | None = None  # (step, parameters) when recorded

    def outcome(self) -> dict[str, Any]:
        """The columns of the `runs` row this result fills in."""
        return {
            "status": self.status,
            **self.final,
            "best_val_metric": self.best_val_metric,
            "best_val_step": self.best_val_step,
            "steps_to_target": self.steps_to_target,
            "diverged_at_step": self.diverged_at_step,
            "wall_seconds": self.wall_seconds,
            "device": self.device,
            "trajectory": None if self.trajectory is None else json.dumps(self.trajectory),
        }


@torch.no_grad()
def evaluate(problem: Problem, split: tuple[Any, Any]) -> tuple[float, float]:
    """Mean loss and mean metric over a whole split, in chunks (exact: both are means)."""
    inputs, targets = split
    n = inputs.shape[0]
    model = problem.model
    was_training = model.training
    model.eval()
    loss_sum = metric_sum = 0.0  # Python floats: exact enough, and MPS has no float64
    for start in range(0, n, EVAL_CHUNK):
        x, y = inputs[start : start + EVAL_CHUNK], targets[start : start + EVAL_CHUNK]
        out = model(x)
        k = x.shape[0]
        loss_sum += problem.loss(out, y).item() * k
        metric_sum += problem.metric(out, y).item() * k
    model.train(was_training)
    return loss_sum / n, metric_sum / n


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def execute(
    spec: RunSpec,
    task: Task,
    device: Any,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_finish: Callable[[Problem], None] | None = None,
) -> RunResult:
    """Train `task` as `spec` says on `device`; deterministic for a given spec and device.

    `on_finish`, if given, is called with the trained problem of a run that did not diverge
    (benchmarks measure the trained model with it). Evaluates validation and test every
    `task.eval_every` steps (and at steps 0 and the end);
    the "train" curve is the mean minibatch loss since the previous evaluation. A minibatch loss
    that is NaN/inf or EXPLODE_FACTOR times the first one ends the run as diverged at that step.
    """
    started = time.perf_counter()
    devices.seed_everything(spec.seed)
    problem = task.build(spec.seed, device)
    model = problem.model.to(device)
    model.train()
    optimizer = build_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.params)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    train_x, train_y = problem.train
    n_train = train_x.shape[0]
    batch = min(spec.batch_size, n_train)
    order_gen = torch.Generator().manual_seed(spec.seed)  # batch order: CPU, so every device agrees
    perm = torch.randperm(n_train, generator=order_gen).to(device)
    cursor = 0

    curve: list[dict[str, Any]] = []
    best_val: float | None = None
    best_step: int | None = None
    to_target: int | None = None
    diverged_at: int | None = None
    first_loss: float | None = None
    window_sum, window_n = 0.0, 0
    tracked = problem.extras.get("trajectory_params")
    track_every = int(problem.extras.get("trajectory_every", task.eval_every))
    trajectory: list[tuple[int, list[float]]] | None = None if tracked is None else []

    def track(step: int) -> None:
        if trajectory is not None and (step % track_every == 0 or step == spec.steps):
            trajectory.append((step, tracked.detach().flatten().cpu().tolist()))

    def record(step: int) -> None:
        nonlocal best_val, best_step, to_target, window_sum, window_n
        elapsed = time.perf_counter() - started
        if window_n:
            curve.append({"step": step, "split": "train", "loss": _finite(window_sum / window_n),
                          "metric": None, "elapsed": elapsed})
            window_sum, window_n = 0.0, 0
        for name, split in (("val", problem.val), ("test", problem.test)):
            loss, metric = evaluate(problem, split)
            curve.append({"step": step, "split": name, "loss": _finite(loss),
                          "metric": _finite(metric), "elapsed": elapsed})
            if name == "val" and math.isfinite(metric):
                better = best_val is None or (
                    metric > best_val if task.higher_is_better else metric < best_val
                )
                if better:
                    best_val, best_step = metric, step
                if to_target is None and task.target is not None and _reached(
                    metric, task.target, task.higher_is_better
                ):
                    to_target = step

    record(0)
    track(0)
    for step in range(spec.steps):
        if should_stop is not None and should_stop():
            raise Interrupted()
        factor = lr_factor(spec.schedule, step, spec.steps, task.warmup)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        if cursor + batch > n_train:  # new epoch: a fresh permutation
            perm = torch.randperm(n_train, generator=order_gen).to(device)
            cursor = 0
        idx = perm[cursor : cursor + batch]
        cursor += batch
        optimizer.zero_grad(set_to_none=True)
        loss = problem.loss(model(train_x[idx]), train_y[idx])
        value = loss.item()
        if first_loss is None:
            first_loss = value
        if not math.isfinite(value) or abs(value) > EXPLODE_FACTOR * max(abs(first_loss), 1e-3):
            diverged_at = step + 1
            break
        loss.backward()
        if task.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip_grad_norm)
        optimizer.step()
        window_sum += value
        window_n += 1
        done = step + 1
        if done % task.eval_every == 0 or done == spec.steps:
            record(done)
        track(done)
        if progress is not None:
            progress(done, spec.steps)

    final: dict[str, float | None] = {
        f"final_{split}_{kind}": None
        for split in ("train", "val", "test")
        for kind in ("loss", "metric")
    }
    if diverged_at is None:
        for name, split in (("train", problem.train), ("val", problem.val), ("test", problem.test)):
            loss_v, metric_v = evaluate(problem, split)
            final[f"final_{name}_loss"] = _finite(loss_v)
            final[f"final_{name}_metric"] = _finite(metric_v)
        if final["final_val_loss"] is None or final["final_test_loss"] is None:
            diverged_at = spec.steps
        elif on_finish is not None:
            on_finish(problem)
    devices.synchronize(device)
    if diverged_at is not None:  # a diverged run is a failure: it reached nothing
        best_val = best_step = to_target = None
    return RunResult(
        status="diverged" if diverged_at is not None else "done",
        final=final if diverged_at is None else {k: None for k in final},
        best_val_metric=best_val,
        best_val_step=best_step,
        steps_to_target=to_target,
        diverged_at_step=diverged_at,
        wall_seconds=time.perf_counter() - started,
        device=devices.describe(device),
        curve=curve,
        trajectory=trajectory,
    )


def gradient_density(task: Task, seed: int = 0, batches: int = 20, device: Any = None) -> float:
    """The share of the model's parameter coordinates with a non-zero gradient in one minibatch
    of the task's default size, averaged over the first `batches` batches of the run's order, at
    the initial weights: how sparse the gradients are that an optimizer sees (1.0: dense)."""
    device = device or torch.device("cpu")
    problem = task.build(seed, device)
    model = problem.model.to(device)
    model.train()
    train_x, train_y = problem.train
    n_train = train_x.shape[0]
    batch = min(task.batch_size, n_train)
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    shares = []
    for i in range(batches):
        start = (i * batch) % max(1, n_train - batch + 1)
        idx = perm[start : start + batch]
        model.zero_grad(set_to_none=True)
        problem.loss(model(train_x[idx]), train_y[idx]).backward()
        nonzero = sum(int((p.grad != 0).sum()) for p in params if p.grad is not None)
        shares.append(nonzero / total)
    return sum(shares) / len(shares)
