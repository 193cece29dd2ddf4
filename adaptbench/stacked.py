"""Vectorized execution: runs of one task that differ only in seed and learning rate, trained as
one stacked model in one pass (`Stacked`, the members of `train.train`).

Every parameter and buffer gets a leading member dimension; the task's module computes each
member's minibatch loss under `torch.func.vmap` of `functional_call`, and a stacked update rule
(`stacked_optim`) steps every member at its own lr. Each member keeps what it has when trained
alone: its seed's data split, initial weights and batch order (one `task.build` per seed), its
lr, schedule and gradient clipping, its evaluations and divergence. A task is trained this way
only where that is exact: its modules need vmap batching rules and no randomness in training,
its loss and metric may depend on the seed only through the model and the data, and its
splits must stack (equal shapes, or integer inputs padded with `Problem.extras["pad"]`). The
first minibatch of every seed is computed both ways before training; any disagreement, or a
module vmap cannot batch, raises `Unstackable` and the group is trained one run at a time.
"""

from __future__ import annotations

import gc
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from adaptbench import devices, stacked_optim
from adaptbench.optimizers import is_plugin, lr_factor
from adaptbench.spec import RunSpec
from adaptbench.tasks import Problem, Task
from adaptbench.train import (EVAL_CHUNK, TRAIN_FULL, BatchOrder, Single, accumulator_dtype,
                              execute, train, training_examples)

SELF_CHECK_RTOL = 1e-4  # the first minibatch's loss and metric, stacked vs alone
SELF_CHECK_ATOL = 1e-6
MEASURE_STEPS = 8  # steps timed each way when `auto` decides (after 2 untimed ones)
AUTO_MARGIN = 0.8  # `auto` stacks when that costs at most this share of the runs one by one
# vmap's note that an op (embedding_bag with padding) is batched by a loop: `auto` measures what
# that costs, and the note would repeat on every worker's stderr
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet "
                        "implemented the batching rule", category=UserWarning)
# (task, fingerprint, optimizer, device, group size, seeds, steps, batch size) -> stacked is faster
_DECIDED: dict[tuple[str, str, str, str, int, int, int, int], bool] = {}
# (task, fingerprint, device) -> why the task's model cannot be trained stacked, whatever the group
_REFUSED: dict[tuple[str, str, str], str] = {}


class Unstackable(Exception):
    """This group cannot be trained stacked (the message says why); train it run by run.
    `lasting`: no group of the task can (its model or loss has no batching rule), as opposed to
    a refusal that depends on the group's seeds or size."""

    def __init__(self, why: str, lasting: bool = False) -> None:
        super().__init__(why)
        self.lasting = lasting


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed: torch's OutOfMemoryError (CUDA, MPS),
    Python's MemoryError, or the RuntimeError a CPU allocation or a CUDA library raises."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("out of memory", "can't allocate memory", "ALLOC_FAILED"))


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


class _Objective(nn.Module):
    """The task's model with its loss (and metric) inside one call, so that `functional_call`
    swaps the member's parameters in for both: a loss that reads the model's weights (an L2
    penalty) reads the member's."""

    def __init__(self, model: nn.Module, loss: Callable[[Any, Any], Any],
                 metric: Callable[[Any, Any], Any]) -> None:
        super().__init__()
        self.model = model
        self._loss, self._metric = loss, metric

    def forward(self, x: Any, y: Any, evaluate: bool = False, dtype: Any = None) -> Any:
        """The minibatch loss; with `evaluate`, its loss and metric; with `dtype`, x and y are
        a whole split and the result is its sums of loss and of metric, shape (2,) in `dtype`
        (each `EVAL_CHUNK` examples' mean times their number, added chunk by chunk as
        `train.evaluate` adds them): one call, where a call per chunk would cost a
        `functional_call` each (a third of a large split's time on skipgram)."""
        if dtype is not None:
            sums = torch.zeros(2, dtype=dtype, device=x.device)
            for start in range(0, x.shape[0], EVAL_CHUNK):
                xs, ys = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
                out = self.model(xs)
                k = xs.shape[0]
                sums[0] += self._loss(out, ys).to(dtype) * k
                sums[1] += self._metric(out, ys).to(dtype) * k
            return sums
        out = self.model(x)
        if evaluate:
            return self._loss(out, y), self._metric(out, y)
        return self._loss(out, y)


def compatible(specs: Sequence[RunSpec]) -> str | None:
    """Why these runs cannot share a stacked pass, or None when they can (as far as the specs
    tell: the task may still refuse, see `Stacked`)."""
    first = specs[0]
    for spec in specs[1:]:
        for key in ("task", "optimizer", "schedule", "steps", "batch_size", "fingerprint"):
            if getattr(spec, key) != getattr(first, key):
                return f"the runs differ in {key}"
        if dict(spec.params) != dict(first.params):
            return "the runs differ in the optimizer's settings"
    if is_plugin(first.optimizer) or not stacked_optim.supports(first.optimizer, first.params):
        return f"optimizer {first.optimizer} has no stacked update rule"
    return None


def _stack(tensors: Sequence[Any], pad: Any) -> Any:
    """Per-seed tensors stacked on a new first dimension; integer inputs of different widths
    padded with `pad` when the task gives one."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) == 1:
        return torch.stack(list(tensors))
    ranks = {len(s) for s in shapes}
    if pad is None or len(ranks) != 1 or len({s[0] for s in shapes}) != 1 or \
            tensors[0].is_floating_point():
        raise Unstackable(f"the seeds' splits differ in shape ({sorted(shapes)[:2]} ...) and the "
                          "task gives no padding value (Problem.extras['pad'])")
    widest = [max(s[d] for s in shapes) for d in range(ranks.pop())]
    out = tensors[0].new_full((len(tensors), *widest), pad)
    for i, t in enumerate(tensors):
        out[(i, *(slice(0, n) for n in t.shape))] = t
    return out


class Stacked:
    """The members of a stacked group, for `train.train`: one per spec, in order."""

    execution = "vectorized"

    def __init__(self, specs: Sequence[RunSpec], task: Task, device: Any) -> None:
        why = compatible(specs)
        if why:
            raise Unstackable(why)
        self.specs, self.task, self.device = list(specs), task, device
        self.size = len(specs)
        first = specs[0]
        seeds = list(dict.fromkeys(spec.seed for spec in specs))
        problems = []
        started = time.perf_counter()
        for seed in seeds:
            devices.seed_everything(seed)
            problem = task.build(seed, device)
            problem.model.to(device)
            problems.append(problem)
        # what one build costs: the runs one by one would build once per run, not per seed
        self.seeds = len(seeds)
        self.seed_build_seconds = (time.perf_counter() - started) / len(seeds)
        template = problems[0]
        self.model = template.model
        self.model.train()
        self.seed_of = [seeds.index(spec.seed) for spec in specs]  # member -> its seed's split
        self.member_seed = torch.tensor(self.seed_of, device=device)
        learned = [n for n, p in self.model.named_parameters() if p.requires_grad]
        fixed = [n for n, p in self.model.named_parameters() if not p.requires_grad]
        buffers = [n for n, _ in self.model.named_buffers()]

        def stacked(kind: str, names: list[str]) -> dict[str, Any]:
            tables = [dict(getattr(p.model, kind)()) for p in problems]
            if any(set(t) != set(tables[0]) for t in tables):
                raise Unstackable("the seeds' models differ in their parameters")
            return {f"model.{n}": torch.stack([tables[s][n].detach() for s in self.seed_of]).clone()
                    for n in names}

        self.params = stacked("named_parameters", learned)
        self.consts = {**stacked("named_parameters", fixed), **stacked("named_buffers", buffers)}
        pad = template.extras.get("pad")
        self.splits = {}
        for name in ("train", "val", "test"):
            parts = [getattr(p, name) for p in problems]
            self.splits[name] = tuple(_stack([part[i] for part in parts], pad) for i in (0, 1))
        full = [training_examples(p, seed) for p, seed in zip(problems, seeds)]
        self.splits[TRAIN_FULL] = tuple(_stack([f[i] for f in full], pad) for i in (0, 1))
        n_train = self.splits["train"][0].shape[1]
        self.order = BatchOrder(seeds, n_train, min(first.batch_size, n_train), device)
        self.optimizer = stacked_optim.StackedOptimizer(
            first.optimizer, first.params, [spec.lr for spec in specs], list(self.params.values()))
        self.objective = _Objective(self.model, template.loss, template.metric)
        for t in self.params.values():
            t.requires_grad_(True)  # leaves: autograd differentiates the stacked forward
        self._losses = vmap(self._member_loss)
        self._eval = vmap(self._member_eval)
        tracked = template.extras.get("trajectory_params")
        self._tracked = None if tracked is None else next(
            (f"model.{n}" for n, p in self.model.named_parameters() if p is tracked), None)
        if tracked is not None and self._tracked is None:
            raise Unstackable("the task tracks a tensor that is not one of its model's parameters",
                              lasting=True)
        self.track_every = int(template.extras.get("trajectory_every", task.eval_every))
        self._check(problems, seeds)
        # each seed's problem, untrained: `faster` times a run alone on the first one's, and
        # where `auto` declines the stacked pass, each seed's first run alone trains on its own
        self.built = dict(zip(seeds, problems))

    def _member_loss(self, params: dict[str, Any], consts: dict[str, Any], x: Any, y: Any) -> Any:
        return functional_call(self.objective, (params, consts), (x, y))

    def _member_eval(self, params: dict[str, Any], consts: dict[str, Any], x: Any,
                     y: Any) -> tuple[Any, Any]:
        return functional_call(self.objective, (params, consts), (x, y), {"evaluate": True})

    def _check(self, problems: list[Any], seeds: list[int]) -> None:
        """The first minibatch's loss and metric of every member, stacked, against its seed's
        problem computed alone (the members of a seed start from the same weights)."""
        x_all, y_all = self.splits["train"]
        n = min(self.order.batch, x_all.shape[1])
        x, y = x_all[self.member_seed, :n], y_all[self.member_seed, :n]
        try:
            self._gradients(x, y)  # in training mode: no batching rule, or randomness, raises
            self.model.eval()
            with torch.no_grad():
                losses, metrics = self._eval(self.params, self.consts, x, y)
        except Exception as exc:  # noqa: BLE001 -- a module or loss vmap cannot batch
            if out_of_memory(exc):  # this group, not the task
                raise Unstackable(f"the stacked group ran out of memory ({_first_line(exc)})") from None
            raise Unstackable(f"vmap cannot batch the task's model or loss ({_first_line(exc)})",
                              lasting=True) from None
        finally:
            self.model.train()
        alone = []
        with torch.no_grad():
            for problem in problems:  # the first one's model is the template: back to training
                problem.model.eval()
                x, y = problem.train[0][:n], problem.train[1][:n]
                out = problem.model(x)
                alone.append((float(problem.loss(out, y)), float(problem.metric(out, y))))
                problem.model.train()
        for k, spec in enumerate(self.specs):
            want = alone[seeds.index(spec.seed)]
            got = (float(losses[k]), float(metrics[k]))
            for w, g in zip(want, got):
                if not abs(w - g) <= SELF_CHECK_ATOL + SELF_CHECK_RTOL * abs(w):
                    raise Unstackable(
                        f"stacked, seed {spec.seed}'s first minibatch gives {g:.6g} where alone it "
                        f"gives {w:.6g}: the task's loss or metric depends on the seed outside "
                        "its model and data")

    def train_step(self, step: int) -> Any:
        """One step of every member; their minibatch losses before it, shape (members,)."""
        spec = self.specs[0]
        factor = lr_factor(spec.schedule, step, spec.steps, self.task.warmup)
        idx = self.order.next()[self.member_seed]  # (members, batch)
        rows = self.member_seed[:, None]
        x_all, y_all = self.splits["train"]
        grads, losses = self._gradients(x_all[rows, idx], y_all[rows, idx])
        with torch.no_grad():
            if self.task.clip_grad_norm is not None:
                stacked_optim.clip_grad_norm(grads, self.task.clip_grad_norm)
            self.optimizer.step(list(self.params.values()), grads, factor)
        return losses.detach()

    def _gradients(self, x: Any, y: Any) -> tuple[list[Any], Any]:
        """Every member's minibatch loss and its gradients (the stacked forward under vmap,
        differentiated by autograd: the members do not interact, so the gradient of the sum
        of their losses is each member's own)."""
        losses = self._losses(self.params, self.consts, x, y)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        return list(grads), losses

    def _member_sums(self, split: str, member: int, dtype: Any) -> Any:
        """One member's sums of loss and of metric over its seed's whole `split`, shape (2,),
        in one call (the model in eval mode)."""
        inputs, targets = self.splits[split]
        seed = self.seed_of[member]
        one = {name: t[member] for name, t in self.params.items()}
        fixed = {name: t[member] for name, t in self.consts.items()}
        return functional_call(self.objective, (one, fixed), (inputs[seed], targets[seed]),
                               {"dtype": dtype})

    @torch.no_grad()
    def evaluate_member(self, split: str, member: int) -> None:
        """Evaluate `split` for one member as `evaluate` does member by member, the result
        left on the device (what `faster` times for a split evaluated that way)."""
        self.model.eval()
        self._member_sums(split, member, accumulator_dtype(self.device))
        self.model.train()

    def batched(self, split: str) -> bool:
        """Whether `evaluate` evaluates `split` for all the members in one stacked call (a
        small split), rather than member by member."""
        return self.splits[split][0].shape[1] * self.size <= EVAL_CHUNK

    @torch.no_grad()
    def evaluate(self, split: str, only: Sequence[int] | None = None
                 ) -> tuple[list[float], list[float]]:
        """Mean loss and mean metric of every member (or of the members `only`; the others'
        are NaN) over its seed's whole split, in chunks (summed as `train.evaluate` sums them).
        A small split is evaluated for the members in one stacked call; a large one member by
        member, where stacking gains nothing (the work is the arithmetic) and the batched
        matrix products are slower. Which way does not depend on `only`."""
        inputs, targets = self.splits[split]
        n = inputs.shape[1]
        dtype = accumulator_dtype(self.device)
        chosen = list(range(self.size)) if only is None else sorted(set(only))
        if not chosen:
            return [math.nan] * self.size, [math.nan] * self.size
        every = len(chosen) == self.size
        index: Any = slice(None)  # every member: no index tensor to copy to the device
        if not every:
            index = torch.tensor(chosen, device=self.device)
        sums = torch.zeros(2, self.size, dtype=dtype, device=self.device)
        self.model.eval()
        if self.batched(split):
            params, consts, rows = self.params, self.consts, self.member_seed
            if not every:
                params = {k: t[index] for k, t in self.params.items()}
                consts = {k: t[index] for k, t in self.consts.items()}
                rows = self.member_seed[index]
            loss, metric = self._eval(params, consts, inputs[rows], targets[rows])
            sums[0, index] = loss.to(dtype) * n
            sums[1, index] = metric.to(dtype) * n
        else:
            for member in chosen:
                sums[:, member] = self._member_sums(split, member, dtype)
        self.model.train()
        if not every:
            left_out = torch.ones(self.size, dtype=torch.bool, device=self.device)
            left_out[index] = False
            sums[:, left_out] = math.nan
        losses, metrics = (sums / n).tolist()
        return losses, metrics

    def tracked(self) -> list[list[float]] | None:
        if self._tracked is None:
            return None
        return self.params[self._tracked].detach().flatten(1).cpu().tolist()

    def state(self) -> dict[str, Any]:
        return {"params": {n: t.detach().clone() for n, t in self.params.items()},
                "optimizer": self.optimizer.state_dict(), "order": self.order.state()}

    def restore(self, saved: dict[str, Any]) -> None:
        with torch.no_grad():
            for n, t in saved["params"].items():
                self.params[n].copy_(t)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.order.restore(saved["order"])


def _seconds_per_step(members: Any, alone: Any, rounds: int) -> tuple[float, float]:
    """Seconds per training step of the stacked `members` and of one run `alone`, timed in
    alternation: `rounds` times one stacked step, then as many steps alone as it holds
    members' steps. Both ways see the same load from whatever else runs on the machine (timed
    one after the other, a worker's measurement read the steps stacked 0.71x and 0.40x as fast
    as alone in two processes measuring the same group at once). Two untimed steps each way
    come first; both are left as they were."""
    saved = members.state(), alone.state()
    for step in range(2):
        members.train_step(step)
        alone.train_step(step)
    devices.synchronize(members.device)
    together = single = 0.0
    step = 2
    for r in range(rounds):
        started = time.perf_counter()
        members.train_step(2 + r)
        devices.synchronize(members.device)
        middle = time.perf_counter()
        for _ in range(members.size):
            alone.train_step(step)
            step += 1
        devices.synchronize(members.device)
        together += middle - started
        single += time.perf_counter() - middle
    members.restore(saved[0])
    alone.restore(saved[1])
    return together / rounds, single / (rounds * members.size)


def _key(specs: Sequence[RunSpec], task: Task,
         device: Any) -> tuple[str, str, str, str, int, int, int, int]:
    spec = specs[0]
    seeds = len({s.seed for s in specs})
    return (task.name, spec.fingerprint, spec.optimizer, devices.describe(device), len(specs),
            seeds, spec.steps, spec.batch_size)


FINAL_SPLITS = ("train", "val", "test")  # what `train.train` evaluates after the last step
POINT_SPLITS = (TRAIN_FULL, "val", "test")  # and at every evaluation point of the curves


def _seconds_per_evaluation(members: Any, alone: Any, rounds: int = 2) -> dict[str, tuple[float, float]]:
    """For each split `train.train` evaluates, seconds to evaluate it for the stacked `members`
    and for one run `alone`: `rounds` times each way in alternation, split by split, after an
    untimed round (as `_seconds_per_step`, so that both see the same load). Evaluating is the
    same arithmetic both ways but not the same time (per-member calls and indexing stacked, a
    batched call on small splits): on skipgram at 16x the default budget a member's
    evaluations stacked took 1.4x its evaluations alone, enough to make the stacked pass slower
    than the runs one by one where its steps alone were 1.2x faster. A split the members
    evaluate one by one is timed for one of them, times their number: timing all of them took
    a third of `digits-cnn`'s evaluations at a quarter of its budget."""
    def once(split: str, stacked_way: bool) -> float:
        share = stacked_way and not members.batched(split)  # one member's, times the members
        started = time.perf_counter()
        if share:
            members.evaluate_member(split, 0)
        elif stacked_way:
            members.evaluate(split)
        else:
            alone.evaluate(split)
        devices.synchronize(members.device)
        return (time.perf_counter() - started) * (members.size if share else 1)

    splits = dict.fromkeys(POINT_SPLITS + FINAL_SPLITS)
    seconds = {split: [0.0, 0.0] for split in splits}
    for r in range(rounds + 1):
        for split in splits:
            for way in (0, 1):
                took = once(split, way == 0)
                if r:
                    seconds[split][way] += took / rounds
    return {split: (both[0], both[1]) for split, both in seconds.items()}


def evaluation_points(steps: int, eval_every: int) -> int:
    """How many points of its curves `train.train` evaluates for a run of `steps` steps that
    does not diverge: at step 0, every `eval_every` steps and at the end (then the finals)."""
    return len({0, steps, *range(eval_every, steps + 1, eval_every)})


def faster(members: Stacked, task: Task, device: Any) -> bool:
    """Whether the stacked pass trains these runs faster than one after another on `device`,
    decided once per process for each task, optimizer, device, group size, number of seeds,
    budget and batch size. The training steps are timed both ways on the same work, in
    alternation (`_seconds_per_step`: `MEASURE_STEPS` stacked steps, and as many steps of one
    run alone as those hold members' steps: a few steps alone made the decision hang on a
    hiccup of a few milliseconds), and so is each split's evaluation
    (`_seconds_per_evaluation`), counted as often as the runs evaluate it; one by one also
    builds the task once per run where the stacked pass builds it once per seed, so those
    extra builds count for the stacked pass. The stacked pass is chosen where it costs at most
    `AUTO_MARGIN` of the runs one by one. What the measurement cannot know is left out: the
    passes that find a run's step to its target (stacked they train every member again), and
    that a run diverging early stops alone but trains on stacked until every member has."""
    key = _key(members.specs, task, device)
    if key not in _DECIDED:
        steps = members.specs[0].steps
        alone = Single(members.specs[0], task, device, members.built[members.specs[0].seed])
        per_step, per_step_alone = _seconds_per_step(members, alone, MEASURE_STEPS)
        split = _seconds_per_evaluation(members, alone)
        points = evaluation_points(steps, task.eval_every)
        evaluating = [points * sum(split[s][way] for s in POINT_SPLITS)
                      + sum(split[s][way] for s in FINAL_SPLITS) for way in (0, 1)]
        stacked = steps * per_step + evaluating[0]
        one_by_one = (members.size * (steps * per_step_alone + evaluating[1])
                      + (members.size - members.seeds) * members.seed_build_seconds)
        _DECIDED[key] = stacked <= AUTO_MARGIN * one_by_one
    return _DECIDED[key]


def execute_group(
    specs: Sequence[RunSpec],
    task: Task,
    device: Any,
    vectorize: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    explain: Callable[[str], None] | None = None,
) -> list[Any]:
    """Train a group of runs of one task that differ in seed and lr; one `RunResult` per spec.

    `vectorize`: "on" stacks them wherever that is exact (`Stacked`); "auto" also only where a
    short measurement says it is faster (`faster`; a group this process measured slower before
    is not even built stacked); "off", or a group of one, trains them one after another, as does
    a group that cannot stack (`explain` gets the reason). Where the task's model or loss has
    no batching rule (`Unstackable.lasting`), this process does not build its groups stacked
    again (each attempt built the task once per seed and computed a minibatch both ways, for
    every group); a refusal that depends on the group (its seeds' splits, a loss that depends
    on the seed, memory running out while the group is built, checked or measured) holds for
    that group only. Where `auto` declines the stacked pass after building it, the runs train
    on the problems it built, one per seed."""
    declined = vectorize == "auto" and _DECIDED.get(_key(specs, task, device)) is False
    if vectorize != "off" and len(specs) > 1 and not declined:
        started = time.perf_counter()
        lasting = (task.name, specs[0].fingerprint, devices.describe(device))
        try:
            members, chosen = _stacked_and_chosen(specs, task, device, vectorize,
                                                  compatible(specs) or _REFUSED.get(lasting))
        except Unstackable as exc:
            if exc.lasting:
                _REFUSED[lasting] = str(exc)
            if explain is not None:
                explain(f"trained one run at a time: {exc}")
        else:
            if chosen:
                members.built = {}
                return train(members, specs, task, progress, should_stop,
                             time.perf_counter() - started)
            # declined: the seeds' problems are built already, as a run alone would build them
            # (a task that stacks draws no random numbers in training); the stacked copies go
            built, seconds = members.built, members.seed_build_seconds
            del members
            gc.collect()  # the stacked copies: vmap's wrappers of its methods hold it in a cycle
            return _one_by_one(specs, task, device, progress, should_stop, built, seconds)
    return _one_by_one(specs, task, device, progress, should_stop)


def _stacked_and_chosen(specs: Sequence[RunSpec], task: Task, device: Any, vectorize: str,
                        why: str | None) -> tuple[Stacked, bool]:
    """The group stacked, and whether to train it so (always with "on"); `Unstackable` where
    `why` says it cannot be, where the task refuses, or where memory runs out on the way."""
    if why:
        raise Unstackable(why)
    try:
        members = Stacked(specs, task, device)
        return members, vectorize == "on" or faster(members, task, device)
    except Exception as exc:  # noqa: BLE001 -- only memory is this group's refusal
        if not out_of_memory(exc):
            raise
        raise Unstackable(f"the stacked group ran out of memory ({_first_line(exc)})") from None


def _one_by_one(specs: Sequence[RunSpec], task: Task, device: Any,
                progress: Callable[[int, int], None] | None,
                should_stop: Callable[[], bool] | None,
                built: dict[int, Problem] | None = None, build_seconds: float = 0.0) -> list[Any]:
    """The runs one after another; the first run of a seed in `built` trains on that problem
    (untrained; its build took `build_seconds`, recorded as the run's build) and lets it go,
    the others build their own."""
    total = sum(spec.steps for spec in specs)
    built = {} if built is None else built
    results, before = [], 0
    for spec in specs:
        def step_progress(step: int, _steps: int, before: int = before) -> None:
            if progress is not None:
                progress(before + step, total)

        problem = built.pop(spec.seed, None)
        if problem is None:
            results.append(execute(spec, task, device, step_progress, should_stop))
        else:
            results.append(train(Single(spec, task, device, problem), [spec], task,
                                 step_progress, should_stop, build_seconds)[0])
        before += spec.steps
    return results
