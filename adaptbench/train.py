"""The training loop: one spec in, one result and its learning curve out. The only training code."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from adaptbench import devices
from adaptbench.optimizers import build_optimizer, lr_factor
from adaptbench.spec import RunSpec
from adaptbench.tasks import Problem, Task
from adaptbench.vocab import CurveSplit

EVAL_CHUNK = 4096  # examples per forward pass when evaluating a whole split
# The "train_full" curve: the loss on the training examples at each evaluation, on all of them
# up to this many, else on a fixed subsample of this many drawn from the run's seed.
TRAIN_CURVE_MAX = 8192
SUBSAMPLE_SEED = 7_919  # added to the run's seed for that subsample's generator
TARGET_RESOLUTION = 10  # steps to target are found to within eval_every / this many steps
TRAIN_FULL = CurveSplit.train_full.value
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
    build_seconds: float = 0.0  # building the task (data, model); not in wall_seconds
    execution: str = "single"  # "single": trained alone; "vectorized": in a stacked group

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
            "build_seconds": self.build_seconds,
            "execution": self.execution,
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
    `task.eval_every` steps (and at steps 0 and the end). Curves: "train", the mean minibatch
    loss since the previous evaluation; "train_full", the loss and metric of the current model
    on the training examples (`training_examples`: all of them, or a fixed subsample of
    TRAIN_CURVE_MAX). A minibatch loss that is NaN/inf or EXPLODE_FACTOR times the first one
    ends the run as diverged at that step.

    Steps to target: the evaluation that first reaches the task's target ends an interval in
    which the target was crossed; the interval is trained again from a copy of the state at
    its start (same batches, same random numbers) with the validation metric evaluated every
    eval_every / TARGET_RESOLUTION steps, and the first of those steps to reach the target is
    recorded. Training then continues from the state it had, so the run is unchanged.
    """
    building = time.perf_counter()
    devices.seed_everything(spec.seed)
    problem = task.build(spec.seed, device)
    model = problem.model.to(device)
    started = time.perf_counter()  # wall_seconds: training and evaluation only
    model.train()
    optimizer = build_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.params)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    train_x, train_y = problem.train
    n_train = train_x.shape[0]
    train_curve = training_examples(problem, spec.seed)
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
    fine = max(1, task.eval_every // TARGET_RESOLUTION)
    saved: tuple[int, dict[str, Any]] | None = None  # (step, state) at the last evaluation

    def track(step: int) -> None:
        if trajectory is not None and (step % track_every == 0 or step == spec.steps):
            trajectory.append((step, tracked.detach().flatten().cpu().tolist()))

    def forward(step: int) -> Any:
        """The minibatch loss of step `step` (0-based), at that step's lr."""
        nonlocal perm, cursor
        factor = lr_factor(spec.schedule, step, spec.steps, task.warmup)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        if cursor + batch > n_train:  # new epoch: a fresh permutation
            perm = torch.randperm(n_train, generator=order_gen).to(device)
            cursor = 0
        idx = perm[cursor : cursor + batch]
        cursor += batch
        optimizer.zero_grad(set_to_none=True)
        return problem.loss(model(train_x[idx]), train_y[idx])

    def update(loss: Any) -> None:
        loss.backward()
        if task.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip_grad_norm)
        optimizer.step()

    def state() -> dict[str, Any]:
        return {"model": copy.deepcopy(model.state_dict()),
                "optimizer": copy.deepcopy(optimizer.state_dict()), "perm": perm.clone(),
                "cursor": cursor, "order": order_gen.get_state(), "rng": _rng_state(device)}

    def restore(saved_state: dict[str, Any]) -> None:
        nonlocal perm, cursor
        model.load_state_dict(saved_state["model"])
        optimizer.load_state_dict(saved_state["optimizer"])
        perm, cursor = saved_state["perm"].clone(), saved_state["cursor"]
        order_gen.set_state(saved_state["order"])
        _set_rng_state(device, saved_state["rng"])

    def first_reached(start: int, start_state: dict[str, Any], end: int) -> int:
        """Train steps start..end again, evaluating the validation metric every `fine` steps:
        the first of them to reach the target, else `end`; the state is left as it was."""
        now = state()
        restore(start_state)
        found = end
        for step in range(start, end - 1):
            update(forward(step))
            if (step + 1) % fine == 0:
                metric = evaluate(problem, problem.val)[1]
                if math.isfinite(metric) and _reached(metric, task.target, task.higher_is_better):
                    found = step + 1
                    break
        restore(now)
        return found

    def record(step: int) -> None:
        nonlocal best_val, best_step, to_target, window_sum, window_n, saved
        elapsed = time.perf_counter() - started
        if window_n:
            curve.append({"step": step, "split": "train", "loss": _finite(window_sum / window_n),
                          "metric": None, "elapsed": elapsed})
            window_sum, window_n = 0.0, 0
        loss, metric = evaluate(problem, train_curve)
        curve.append({"step": step, "split": TRAIN_FULL, "loss": _finite(loss),
                      "metric": _finite(metric), "elapsed": elapsed})
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
                    if saved is not None and step - saved[0] > fine:
                        to_target = first_reached(saved[0], saved[1], step)
        saved = (step, state()) if task.target is not None and to_target is None else None

    record(0)
    track(0)
    for step in range(spec.steps):
        if should_stop is not None and should_stop():
            raise Interrupted()
        loss = forward(step)
        value = loss.item()
        if first_loss is None:
            first_loss = value
        if not math.isfinite(value) or abs(value) > EXPLODE_FACTOR * max(abs(first_loss), 1e-3):
            diverged_at = step + 1
            break
        update(loss)
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
        build_seconds=started - building,
    )


def execute_group(
    specs: Sequence[RunSpec],
    task: Task,
    device: Any,
    vectorize: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[RunResult]:
    """Train a group of runs of one task that differ only in seed and learning rate; one result
    per spec, in order. `vectorize`: "off" trains them one after another; "on" and "auto" do
    too until the vectorized pass exists. `progress` gets (steps done, steps of the group)."""
    total = sum(spec.steps for spec in specs)
    done = 0
    results = []
    for spec in specs:
        def step_progress(step: int, _steps: int, before: int = done) -> None:
            if progress is not None:
                progress(before + step, total)

        results.append(execute(spec, task, device, step_progress, should_stop))
        done += spec.steps
    return results


def training_examples(problem: Problem, seed: int) -> tuple[Any, Any]:
    """The training examples the "train_full" curve is evaluated on: the whole training split
    up to TRAIN_CURVE_MAX examples, else a fixed subsample of that many, drawn once from the
    run's seed (its own generator: the batch order is unchanged), so that every evaluation of
    the run, and every optimizer on that seed, sees the same examples."""
    inputs, targets = problem.train
    n = inputs.shape[0]
    if n <= TRAIN_CURVE_MAX:
        return inputs, targets
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed + SUBSAMPLE_SEED))
    idx = pick[:TRAIN_CURVE_MAX].sort().values.to(inputs.device)
    return inputs[idx], targets[idx]


def _rng_state(device: Any) -> tuple[Any, Any]:
    cuda = (torch.cuda.get_rng_state(device)
            if getattr(device, "type", str(device)) == "cuda" else None)
    return torch.get_rng_state(), cuda


def _set_rng_state(device: Any, saved: tuple[Any, Any]) -> None:
    torch.set_rng_state(saved[0])
    if saved[1] is not None:
        torch.cuda.set_rng_state(saved[1], device)


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
