"""`RunSpec`: what one run is; grid expansion, validation and the canonical spec hash."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from adaptbench.errors import UserError
from adaptbench.optimizers import check_optimizer, check_schedule, default_lr

MAX_INT = 2**31  # seeds, steps, batch sizes: 32-bit database columns (and numpy's seed range)
EVAL_SEED_BASE = 1_000_000  # evaluation seeds are EVAL_SEED_BASE + i: never a selection seed
MAX_EVAL_SEEDS = 1000
MAX_STUDY = 100  # characters, the width of the study column
HASH_VERSION = 1  # bump if the meaning of a spec field changes, so old hashes are not reused


@dataclass(frozen=True)
class RunSpec:
    """One run: a task trained by an optimizer at one lr and seed for a budget of steps.

    `study` is part of the identity: the same training run queued under two studies is two runs,
    so that each study is a complete, self-describing set of runs. So are `role` (a selection
    run on the lr grid, or an evaluation run of the selected lr on a fresh seed) and
    `fingerprint` (the task's definition, `tasks.fingerprint`): a changed task is a new run.
    """

    task: str
    optimizer: str
    lr: float
    seed: int
    steps: int
    batch_size: int
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = "constant"
    study: str = ""
    role: str = "selection"
    fingerprint: str = ""

    def canonical(self) -> str:
        """Canonical JSON of the spec: sorted keys, normalised numbers; the input of the hash.

        A selection run's role and an unknown fingerprint are left out, so the specs stored
        before they existed keep their hashes."""
        data = asdict(self)
        if self.role == "selection":
            del data["role"]
        if not self.fingerprint:
            del data["fingerprint"]
        data["params"] = {k: _normalise(v) for k, v in sorted(self.params.items())}
        data["lr"] = float(self.lr)
        data["hash_version"] = HASH_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def parse_value(text: str) -> Any:
    """Parse an --opt value: true/false, a number, or a comma list of numbers."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in text:
        return tuple(parse_value(part) for part in text.split(","))
    try:
        number = float(text)
    except ValueError:
        raise UserError(
            f"--opt value {text!r} is not a number, true/false or a comma list of numbers"
        ) from None
    if not math.isfinite(number):
        raise UserError(f"--opt value {text!r} must be finite")
    return int(number) if number.is_integer() and "." not in text and "e" not in low else number


def parse_opts(items: Iterable[str]) -> dict[str, Any]:
    """Parse repeated `--opt key=value` items into a dict of optimizer hyperparameters."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UserError(f"--opt {item!r} is malformed; write key=value, e.g. --opt eps=1e-6 or --opt betas=0.9,0.99")
        if key == "lr":
            raise UserError("set the learning rate with --lr, not --opt lr=...")
        params[key] = parse_value(value)
    return params


def split_list(items: Iterable[str] | None) -> list[str]:
    """Flatten repeatable, comma-separated CLI values: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    out: list[str] = []
    for item in items or []:
        out += [p.strip() for p in item.split(",") if p.strip()]
    return out


def parse_lr(text: str) -> float:
    try:
        lr = float(text)
    except ValueError:
        raise UserError(f"learning rate {text!r} is not a number; write e.g. --lr 1e-3") from None
    if not math.isfinite(lr) or lr <= 0:
        raise UserError(f"learning rate must be a positive number, got {text!r}")
    return lr


@dataclass(frozen=True)
class Grid:
    """The user's request before expansion: lists of everything plus shared settings."""

    tasks: Sequence[str]
    optimizers: Sequence[str]
    lrs: Sequence[float] = ()  # empty: the optimizer's default lr (or the task's grid, see `lr_grid`)
    seeds: Sequence[int] = (0, 1, 2)
    steps: int | None = None  # None: the task's default
    batch_size: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = "constant"
    study: str = ""
    lr_grid: bool = False  # True: each task's own default lr grid instead of `lrs`
    eval_seeds: int = 0  # evaluation seeds to run the selected lr on, once the grid is done
    budget: int = 1  # without `steps`: this multiple of each task's default steps


@dataclass(frozen=True)
class Arm:
    """One part of a study preset: optimizers with settings, on some tasks, at some budgets.

    `optimizers` None: the request's optimizers (the preset's own unless --optim narrows them);
    otherwise those of them the request names. `params` and `schedule` empty: the request's.
    `budgets` are multiples of each task's default steps; `tasks` None: every task the request
    names, otherwise those of them in this list."""

    optimizers: tuple[str, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = ""
    budgets: tuple[int, ...] = (1,)
    tasks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StudyPreset:
    """A named study whose grid is fixed by the questions it answers (options may narrow it):
    the union of its arms, each at every task's lr grid on `seeds` selection seeds, then the
    selected lr of every (task, variant) on `eval_seeds` fresh seeds. Without --task a preset
    runs every task that is in the claims (`Task.claims`)."""

    name: str
    optimizers: tuple[str, ...]
    seeds: int
    description: str
    eval_seeds: int = 0
    arms: tuple[Arm, ...] = (Arm(),)


CLAIMS_OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd", "momentum")
# The tasks in the claims whose 16x-budget run takes at most 30 CPU seconds on one thread
# (timings.json, measured by benchmarks/task_timing.py; tests/test_suite.py checks the list
# against it): the long arm.
LONG_TRAINING_TASKS: tuple[str, ...] = (
    "bow-logreg", "digits-autoencoder", "friedman-mlp", "hashed-ctr", "noisy-quadratic",
    "skipgram", "skipgram-dense", "sparse-text", "tabular-mlp", "zipf-mf", "zipf-mf-dense",
)
LONG_BUDGETS = (4, 16)
ROBUST_EPS = (1e-6, 1e-4, 1e-2)  # besides torch's default 1e-8, which the plain arm runs
ROBUST_ADAGRAD_ACCUMULATOR = (0.1,)  # besides torch's default 0 (TF / Keras start at 0.1)

STUDY_PRESETS: dict[str, StudyPreset] = {
    "adaptive-lr": StudyPreset(
        "adaptive-lr",
        CLAIMS_OPTIMIZERS,
        5,
        "the runs `adaptbench report claims` needs: adam, rmsprop, adagrad, sgd, momentum x every "
        "task in the claims x the task's lr grid x 5 selection seeds at its default budget, and "
        "at 4x and 16x that budget on the tasks where a 16x run takes <= 30 s (each budget "
        "tuned on its own); then each selected lr on 10 fresh evaluation seeds",
        eval_seeds=10,
        arms=(Arm(), Arm(budgets=LONG_BUDGETS, tasks=LONG_TRAINING_TASKS)),
    ),
    "adaptive-lr-robust": StudyPreset(
        "adaptive-lr-robust",
        CLAIMS_OPTIMIZERS,
        5,
        "do the verdicts survive other tuning choices? beside the adaptive-lr study's "
        "default-budget grid (the plain optimizers, not queued again): a warm-up + cosine "
        "schedule for every optimizer, eps 1e-6, 1e-4, 1e-2 for adam and rmsprop (1e-8 is the "
        "plain one) and AdaGrad's initial accumulator 0.1 (0 is the plain one); each variant "
        "tuned on its own, then 10 evaluation seeds; `report claims --study adaptive-lr "
        "--study adaptive-lr-robust --variants best` reads both",
        eval_seeds=10,
        arms=(Arm(schedule="warmup-cosine"),
              *[Arm(("adam", "rmsprop"), {"eps": eps}) for eps in ROBUST_EPS],
              *[Arm(("adagrad",), {"initial_accumulator_value": v})
                for v in ROBUST_ADAGRAD_ACCUMULATOR]),
    ),
}


def check_study_request(grid: Grid, preset: StudyPreset) -> None:
    """A preset whose arms set hyperparameters or schedules refuses others from the request."""
    if grid.params and any(arm.params for arm in preset.arms):
        raise UserError(f"--study {preset.name} sets the hyperparameters of its arms itself; "
                        "leave out --opt, or give the runs another --study label", about="opt")
    if grid.schedule != "constant" and any(arm.schedule for arm in preset.arms):
        raise UserError(f"--study {preset.name} sets the schedules of its arms itself; leave out "
                        "--schedule, or give the runs another --study label", about="schedule")


def expand_study(
    grid: Grid, preset: StudyPreset, task_defaults: Mapping[str, Any],
    fingerprints: Mapping[str, str] | None = None,
) -> list[RunSpec]:
    """The RunSpecs of a preset study: `expand` of each of its arms, narrowed by the request
    (its tasks, optimizers, lrs, seeds; --steps replaces the arms' budgets), without repeats."""
    check_study_request(grid, preset)
    specs: list[RunSpec] = []
    for arm in preset.arms:
        optimizers = [o for o in grid.optimizers if arm.optimizers is None or o in arm.optimizers]
        tasks = [t for t in grid.tasks if arm.tasks is None or t in arm.tasks]
        if not optimizers or not tasks:
            continue
        for budget in (1,) if grid.steps is not None else arm.budgets:
            part = replace(grid, tasks=tasks, optimizers=optimizers,
                           params=dict(arm.params) or grid.params,
                           schedule=arm.schedule or grid.schedule, budget=budget)
            specs += expand(part, task_defaults, fingerprints)
    return list({s.spec_hash: s for s in specs}.values())


def expand(
    grid: Grid, task_defaults: Mapping[str, Any], fingerprints: Mapping[str, str] | None = None,
) -> list[RunSpec]:
    """All RunSpecs of a grid (tasks x optimizers x lrs x seeds), validated, in a stable order.

    `task_defaults` maps a task name to its `Task` (steps, batch size, lr grid are read from it);
    `fingerprints` a task name to its definition's fingerprint (`tasks.fingerprint`).
    """
    validate_grid(grid)
    specs = []
    for task_name, opt in itertools.product(grid.tasks, grid.optimizers):
        task = task_defaults[task_name]
        if grid.lr_grid:
            lrs: Sequence[float] = task.lrs
        else:
            lrs = grid.lrs or [default_lr(opt)]
        for lr, seed in itertools.product(lrs, grid.seeds):
            specs.append(
                RunSpec(
                    task=task_name,
                    optimizer=opt,
                    lr=float(lr),
                    seed=int(seed),
                    steps=grid.steps or task.steps * grid.budget,
                    batch_size=grid.batch_size or task.batch_size,
                    params=dict(grid.params),
                    schedule=grid.schedule,
                    study=grid.study,
                    fingerprint=(fingerprints or {}).get(task_name, ""),
                )
            )
    # the same spec twice in one request (e.g. --lr 0.1,0.1) is one run
    return list({s.spec_hash: s for s in specs}.values())


def grid_size(grid: Grid, task_defaults: Mapping[str, Any], preset: StudyPreset | None = None) -> tuple[int, int]:
    """How many runs a grid queues, counted without expanding it: (selection runs, evaluation
    runs queued later, `eval_seeds` per (task, optimizer, variant)). An upper bound where two
    arms of a preset would queue the same spec."""
    tasks, optimizers = list(dict.fromkeys(grid.tasks)), list(dict.fromkeys(grid.optimizers))
    seeds = len(set(grid.seeds))
    parts = [(optimizers, tasks, (1,))] if preset is None else [
        ([o for o in optimizers if arm.optimizers is None or o in arm.optimizers],
         [t for t in tasks if arm.tasks is None or t in arm.tasks],
         (1,) if grid.steps is not None else arm.budgets)
        for arm in preset.arms]
    runs = groups = 0
    for opts, names, budgets in parts:
        for name in names:
            lrs = len(set(task_defaults[name].lrs)) if grid.lr_grid else len(set(grid.lrs)) or 1
            groups += len(opts) * len(budgets)
            runs += len(opts) * len(budgets) * lrs * seeds
    return runs, groups * grid.eval_seeds


def evaluation_specs(selection: RunSpec, lr: float, n: int) -> list[RunSpec]:
    """The evaluation runs of a selection group: its settings at the selected lr on the fresh
    seeds EVAL_SEED_BASE .. EVAL_SEED_BASE + n - 1 (the same for every optimizer, so that
    evaluation runs pair by seed across optimizers)."""
    return [replace(selection, lr=float(lr), seed=EVAL_SEED_BASE + i, role="evaluation")
            for i in range(n)]


def validate_grid(grid: Grid) -> None:
    if not grid.tasks:
        raise UserError("no task given; name one or more (see `adaptbench tasks`)", about="task")
    if not grid.optimizers:
        raise UserError("no optimizer given; name one or more (see `adaptbench optims`)", about="optimizer")
    for opt in grid.optimizers:
        check_optimizer(opt, grid.params)
    check_schedule(grid.schedule)
    for lr in grid.lrs:
        if not (math.isfinite(lr) and lr > 0):
            raise UserError(f"learning rate must be a positive number, got {lr!r}")
    if not grid.seeds:
        raise UserError("no seeds: give a number of seeds >= 1, or explicit seeds", about="seeds")
    for seed in grid.seeds:
        if not 0 <= seed < MAX_INT:
            raise UserError(f"seeds must be >= 0 and < 2^31, got {seed}", about="seeds")
        if seed >= EVAL_SEED_BASE:
            raise UserError(f"seeds from {EVAL_SEED_BASE:,} up are the evaluation seeds; give "
                            f"selection seeds below that, got {seed}", about="seeds")
    if not 0 <= grid.eval_seeds <= MAX_EVAL_SEEDS:
        raise UserError(f"the number of evaluation seeds must be in 0..{MAX_EVAL_SEEDS}, got "
                        f"{grid.eval_seeds}", about="eval seeds")
    if grid.steps is not None and not 0 < grid.steps < MAX_INT:
        raise UserError(f"steps must be a positive integer below 2^31, got {grid.steps}", about="steps")
    if grid.batch_size is not None and not 0 < grid.batch_size < MAX_INT:
        raise UserError(f"the batch size must be a positive integer below 2^31, got {grid.batch_size}",
                        about="batch size")
    if len(grid.study) > MAX_STUDY:
        raise UserError(f"a study label is at most {MAX_STUDY} characters, got {len(grid.study)}",
                        about="study")
