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
CHECK_EVERY = 16  # steps between reads of the members' divergence from the device


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
    group_size: int = 1  # how many runs trained together in its pass (1: alone)

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
            "group_size": self.group_size,
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


def accumulator_dtype(device: Any) -> Any:
    """What sums of losses and metrics are kept in: float64 where the device has it (not MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


class BatchOrder:
    """The minibatch order of runs that differ in seed: each seed's own CPU generator draws a
    fresh permutation of the training examples per epoch (so every device agrees), and every
    step takes the next `batch` indices of each seed's permutation."""

    def __init__(self, seeds: Sequence[int], n: int, batch: int, device: Any) -> None:
        self.n, self.batch, self.device = n, batch, device
        self.gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.perms = self._draw()
        self.cursor = 0

    def _draw(self) -> Any:
        return torch.stack([torch.randperm(self.n, generator=g) for g in self.gens]).to(self.device)

    def next(self) -> Any:
        """The indices of the next minibatch: (seeds, batch)."""
        if self.cursor + self.batch > self.n:  # new epoch: a fresh permutation
            self.perms, self.cursor = self._draw(), 0
        idx = self.perms[:, self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        return idx

    def state(self) -> tuple[Any, int, list[Any]]:
        return self.perms.clone(), self.cursor, [g.get_state() for g in self.gens]

    def restore(self, saved: tuple[Any, int, list[Any]]) -> None:
        self.perms, self.cursor = saved[0].clone(), saved[1]
        for g, state in zip(self.gens, saved[2]):
            g.set_state(state)


class Single:
    """One run: its task's module trained by its torch.optim optimizer (`Members` of size 1)."""

    size = 1
    execution = "single"

    def __init__(self, spec: RunSpec, task: Task, device: Any, problem: Problem | None = None) -> None:
        """`problem`: the task built for `spec.seed` already (else it is built here)."""
        self.spec, self.task, self.device = spec, task, device
        devices.seed_everything(spec.seed)
        self.problem = problem = problem or task.build(spec.seed, device)
        self.model = problem.model.to(device)
        self.model.train()
        self.optimizer = build_optimizer(spec.optimizer, self.model.parameters(), spec.lr, spec.params)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.splits = {"train": problem.train, TRAIN_FULL: training_examples(problem, spec.seed),
                       "val": problem.val, "test": problem.test}
        n_train = problem.train[0].shape[0]
        self.order = BatchOrder([spec.seed], n_train, min(spec.batch_size, n_train), device)
        self._tracked = problem.extras.get("trajectory_params")
        self.track_every = int(problem.extras.get("trajectory_every", task.eval_every))

    def train_step(self, step: int) -> Any:
        """One optimizer step at step `step` (0-based); the minibatch loss before it, shape (1,)."""
        factor = lr_factor(self.spec.schedule, step, self.spec.steps, self.task.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        idx = self.order.next()[0]
        self.optimizer.zero_grad(set_to_none=True)
        train_x, train_y = self.problem.train
        loss = self.problem.loss(self.model(train_x[idx]), train_y[idx])
        loss.backward()
        if self.task.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.task.clip_grad_norm)
        self.optimizer.step()
        return loss.detach().reshape(1)

    def evaluate(self, split: str, only: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
        loss, metric = evaluate(self.problem, self.splits[split])
        return [loss], [metric]

    def tracked(self) -> list[list[float]] | None:
        if self._tracked is None:
            return None
        return [self._tracked.detach().flatten().cpu().tolist()]

    def state(self) -> dict[str, Any]:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "order": self.order.state(), "rng": _rng_state(self.device)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.order.restore(saved["order"])
        _set_rng_state(self.device, saved["rng"])


def execute(
    spec: RunSpec,
    task: Task,
    device: Any,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_finish: Callable[[Problem], None] | None = None,
) -> RunResult:
    """Train `task` as `spec` says on `device`, alone; deterministic for a given spec and device.

    `on_finish`, if given, is called with the trained problem of a run that did not diverge
    (benchmarks measure the trained model with it). What is evaluated and recorded: `train`.
    """
    building = time.perf_counter()
    members = Single(spec, task, device)
    result = train(members, [spec], task, progress, should_stop, time.perf_counter() - building)[0]
    if on_finish is not None and result.status == "done":
        on_finish(members.problem)
    return result


def train(
    members: Any,
    specs: Sequence[RunSpec],
    task: Task,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    build_seconds: float = 0.0,
) -> list[RunResult]:
    """The training loop, for one run (`Single`) or a stacked group (`stacked.Stacked`): the
    members share the task, optimizer, schedule, steps and batch size and differ in seed and lr.

    Evaluates validation and test every `task.eval_every` steps (and at steps 0 and the end).
    Curves: "train", the mean minibatch loss since the previous evaluation; "train_full", the
    loss and metric of the current model on the training examples (`training_examples`: all of
    them, or a fixed subsample of TRAIN_CURVE_MAX). A minibatch loss that is NaN/inf or
    EXPLODE_FACTOR times the member's first one ends that member as diverged at that step (its
    later steps are discarded; the others train on). Divergence is tested on the device and
    read every CHECK_EVERY steps and at every evaluation, so no step waits for the device.

    Steps to target: the evaluation that first reaches the task's target ends an interval in
    which the target was crossed; the interval is trained again from a copy of the state at
    its start (same batches, same random numbers) with the validation metric evaluated every
    eval_every / TARGET_RESOLUTION steps, and the first of those steps to reach the target is
    recorded. Training then continues from the state it had, so the runs are unchanged.

    wall_seconds and curves' `elapsed` are each member's share of the group's time (the time
    over the group's size): what the run cost.
    """
    started = time.perf_counter()
    size, steps = members.size, specs[0].steps
    share = 1.0 / size
    device = members.device
    curves: list[list[dict[str, Any]]] = [[] for _ in range(size)]
    best_val: list[float | None] = [None] * size
    best_step: list[int | None] = [None] * size
    to_target: list[int | None] = [None] * size
    trajectories = None if members.tracked() is None else [[] for _ in range(size)]
    fine = max(1, task.eval_every // TARGET_RESOLUTION)
    saved: tuple[int, Any] | None = None  # (step, state) at the last evaluation
    # on the device: which members are still training, where each diverged, the first losses
    alive = torch.ones(size, dtype=torch.bool, device=device)
    diverged = torch.zeros(size, dtype=torch.long, device=device)
    window = torch.zeros(size, dtype=accumulator_dtype(device), device=device)
    window_n = 0
    first: Any = None
    living = [True] * size  # `alive` as last read

    def track(step: int) -> None:
        if trajectories is not None and (step % members.track_every == 0 or step == steps):
            for k, point in enumerate(members.tracked()):
                trajectories[k].append((step, point))

    def reached(value: float) -> bool:
        return math.isfinite(value) and _reached(value, task.target, task.higher_is_better)

    def first_reached(start: int, start_state: Any, end: int, waiting: list[int]) -> dict[int, int]:
        """Train steps start..end again, evaluating the validation metric every `fine` steps:
        for each member in `waiting`, the first of those steps to reach the target, else `end`;
        the state is left as it was."""
        now = members.state()
        members.restore(start_state)
        found = dict.fromkeys(waiting, end)
        for step in range(start, end - 1):
            members.train_step(step)
            if (step + 1) % fine == 0:  # only the members still looking for their step
                metrics = members.evaluate("val", [k for k in waiting if found[k] == end])[1]
                for k in waiting:
                    if found[k] == end and reached(metrics[k]):
                        found[k] = step + 1
                if all(found[k] != end for k in waiting):
                    break
        members.restore(now)
        return found

    def record(step: int) -> None:
        nonlocal saved, window_n
        elapsed = (time.perf_counter() - started) * share
        live = [k for k in range(size) if living[k]]
        if window_n:
            means = (window / window_n).tolist()
            for k in live:
                curves[k].append({"step": step, "split": "train", "loss": _finite(means[k]),
                                  "metric": None, "elapsed": elapsed})
            window.zero_()
            window_n = 0
        crossed = []
        for name in (TRAIN_FULL, "val", "test"):
            losses, metrics = members.evaluate(name)
            for k in live:
                curves[k].append({"step": step, "split": name, "loss": _finite(losses[k]),
                                  "metric": _finite(metrics[k]), "elapsed": elapsed})
                if name != "val" or not math.isfinite(metrics[k]):
                    continue
                if best_val[k] is None or (metrics[k] > best_val[k] if task.higher_is_better
                                           else metrics[k] < best_val[k]):
                    best_val[k], best_step[k] = metrics[k], step
                if task.target is not None and to_target[k] is None and reached(metrics[k]):
                    to_target[k] = step
                    crossed.append(k)
        if crossed and saved is not None and step - saved[0] > fine:
            for k, found in first_reached(saved[0], saved[1], step, crossed).items():
                to_target[k] = found
        waiting = task.target is not None and any(living[k] and to_target[k] is None
                                                  for k in range(size))
        saved = (step, members.state()) if waiting else None

    def read() -> None:
        """`alive` from the device."""
        living[:] = alive.tolist()

    record(0)
    track(0)
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise Interrupted()
        losses = members.train_step(step).to(window.dtype)
        if first is None:
            first = losses.abs().clamp(min=1e-3)
        bad = ~torch.isfinite(losses) | (losses.abs() > EXPLODE_FACTOR * first)
        diverged.masked_fill_(alive & bad, step + 1)
        alive &= ~bad
        window.add_(torch.where(alive, losses, torch.zeros_like(losses)))
        window_n += 1
        done = step + 1
        evaluating = done % task.eval_every == 0 or done == steps
        if evaluating or done % CHECK_EVERY == 0:
            read()
            if not any(living):
                break
        if evaluating:
            record(done)
        track(done)
        if progress is not None:
            progress(done, steps)
    read()
    diverged_at: list[int | None] = [None if d == 0 else int(d) for d in diverged.tolist()]

    finals: list[dict[str, float | None]] = [
        {f"final_{split}_{kind}": None for split in ("train", "val", "test")
         for kind in ("loss", "metric")} for _ in range(size)]
    live = [k for k in range(size) if diverged_at[k] is None]
    if live:
        for name in ("train", "val", "test"):
            losses, metrics = members.evaluate(name)
            for k in live:
                finals[k][f"final_{name}_loss"] = _finite(losses[k])
                finals[k][f"final_{name}_metric"] = _finite(metrics[k])
    for k in live:
        if finals[k]["final_val_loss"] is None or finals[k]["final_test_loss"] is None:
            diverged_at[k] = steps
    devices.synchronize(device)
    wall = (time.perf_counter() - started) * share
    results = []
    for k in range(size):
        failed = diverged_at[k] is not None  # a diverged run is a failure: it reached nothing
        trajectory = None if trajectories is None else [
            (s, point) for s, point in trajectories[k] if not failed or s < diverged_at[k]]
        results.append(RunResult(
            status="diverged" if failed else "done",
            final={key: None for key in finals[k]} if failed else finals[k],
            best_val_metric=None if failed else best_val[k],
            best_val_step=None if failed else best_step[k],
            steps_to_target=None if failed else to_target[k],
            diverged_at_step=diverged_at[k],
            wall_seconds=wall,
            device=devices.describe(device),
            curve=[p for p in curves[k] if not failed or p["step"] < diverged_at[k]],
            trajectory=trajectory,
            build_seconds=build_seconds * share,
            execution=members.execution,
            group_size=size,
        ))
    return results


def execute_group(
    specs: Sequence[RunSpec],
    task: Task,
    device: Any,
    vectorize: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    explain: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Train a group of runs of one task that differ in seed and lr, stacked where that is exact
    (and, under "auto", faster); one result per spec, in order. See `stacked.execute_group`."""
    from adaptbench import stacked

    return stacked.execute_group(specs, task, device, vectorize, progress, should_stop, explain)


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

