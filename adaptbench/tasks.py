"""The `Task` type and the registry that finds the built-in tasks and those in user task folders.

A task file is a Python module that defines a module-level list ``TASKS`` of `Task` values.
Built-in task files are the subpackage ``adaptbench.builtin_tasks``; users add folders with ``--tasks-dir DIR`` or the
``ADAPTBENCH_TASKS`` variable (several folders separated by ``os.pathsep``). Files whose name
starts with ``_`` are helpers and are not scanned.

This module does not import torch; task files do, when they are loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptbench.errors import UserError, unknown

TASK_TYPES = (
    "sparse",
    "dense",
    "vision",
    "sequence",
    "regression",
    "convex",
    "nonconvex",
)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass
class Problem:
    """What a task builds for one seed on one device: data splits, a fresh model, loss and metric.

    Each split is ``(inputs, targets)``, tensors already on the device whose first dimension
    indexes examples, so the training loop can slice batches by index.
    ``loss(output, targets)`` returns the mean loss as a 0-d tensor (the training objective);
    ``metric(output, targets)`` returns the mean metric over the examples as a 0-d tensor.
    ``extras`` carries optional task-specific values: ``trajectory_params`` (a parameter of the
    model to record, every ``trajectory_every`` steps), ``pad`` (the value that pads integer
    inputs of different widths, so that the splits of several seeds can be stacked for
    vectorized execution: the model must read a padded row as the unpadded one).
    """

    model: Any  # torch.nn.Module
    train: tuple[Any, Any]
    val: tuple[Any, Any]
    test: tuple[Any, Any]
    loss: Callable[[Any, Any], Any]
    metric: Callable[[Any, Any], Any]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A benchmark problem: how to build it from a seed, plus what reports need to know about it.

    ``build(seed, device)`` must be deterministic in ``seed``: the data split, the model's
    initial weights and anything random the task does all follow from it.
    """

    name: str
    task_type: str
    description: str
    build: Callable[[int, Any], Problem]
    metric: str = "accuracy"
    higher_is_better: bool = True
    steps: int = 500
    batch_size: int = 64
    eval_every: int = 50
    lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    target: float | None = None
    source: str = ""
    # A sparse task names its dense twin: the same model family, data and budget with every
    # input coordinate active in every example (see builtin_tasks/_twins.py).
    twin: str | None = None
    # False when validation and test compute the same quantity (from the parameters alone):
    # statistics about held-out performance leave such tasks out.
    held_out: bool = True
    # False for a demonstration task that `report claims` and the claims study leave out.
    claims: bool = True
    # Gradient clipping (largest global L2 norm of the gradient), applied identically for every
    # optimizer, before its step; None: no clipping.
    clip_grad_norm: float | None = None
    # Linear learning-rate warm-up over this fraction of the steps, applied on top of the run's
    # schedule (a schedule that warms up by itself, such as warmup-cosine, is left alone).
    warmup: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not NAME_RE.match(self.name):
            problems.append(f"name {self.name!r} must be lowercase letters, digits and '-'")
        if not self.task_type or not NAME_RE.match(self.task_type):
            problems.append(f"task_type {self.task_type!r} must be a lowercase word")
        if not callable(self.build):
            problems.append("build must be a function build(seed, device) -> Problem")
        for key in ("steps", "batch_size", "eval_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{key} must be a positive integer, got {value!r}")
        if not self.lrs or any(not (isinstance(lr, (int, float)) and lr > 0) for lr in self.lrs):
            problems.append(f"lrs must be positive numbers, got {self.lrs!r}")
        if self.twin is not None and not NAME_RE.match(str(self.twin)):
            problems.append(f"twin {self.twin!r} must be a task name")
        if self.clip_grad_norm is not None and not (
            isinstance(self.clip_grad_norm, (int, float)) and self.clip_grad_norm > 0
        ):
            problems.append(f"clip_grad_norm must be a positive number, got {self.clip_grad_norm!r}")
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1):
            problems.append(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup!r}")
        if problems:
            raise ValueError("; ".join(problems))


BUILTIN_PACKAGE = "adaptbench.builtin_tasks"


def builtin_dir() -> Path:
    """The folder holding the built-in task files."""
    return Path(_package_for(None).__path__[0])


def _package_for(folder: Path | None) -> Any:
    """The package a task folder's files are imported into, so that relative imports between
    them (``from ._common import ...``) work: the installed ``adaptbench.builtin_tasks`` for the
    built-in folder, a synthetic package per user folder."""
    if folder is None:
        return importlib.import_module(BUILTIN_PACKAGE)
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    name = f"adaptbench_user_tasks_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    init = folder / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(folder)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
    if spec is None:
        raise UserError(f"tasks folder {str(folder)!r} cannot be imported")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    if spec.loader is not None:
        spec.loader.exec_module(package)
    return package


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Loads a task file from its source, never from a cached .pyc: an edit that keeps the
    file's size within the same second would otherwise run the old bytecode, under the
    fingerprint of the new source."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _TaskFinder:
    """Finds the modules of task packages (built-in and user folders) for `_SourceLoader`."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_TASK_PREFIXES) or not path:
            return None
        stem = fullname.rpartition(".")[2]
        for folder in path:
            file = Path(folder) / f"{stem}.py"
            if file.is_file():
                return importlib.util.spec_from_file_location(
                    fullname, file, loader=_SourceLoader(fullname, str(file)))
        return None


_TASK_PREFIXES = (BUILTIN_PACKAGE + ".", "adaptbench_user_tasks_")
if not any(isinstance(f, _TaskFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _TaskFinder())


def _task_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def _load_module(path: Path, package: Any) -> Any:
    if not path.stem.isidentifier():
        raise UserError(f"task file {path}: the file name must be a Python identifier (letters, digits, _)")
    return importlib.import_module(f"{package.__name__}.{path.stem}")


def _tasks_in(path: Path, package: Any) -> list[Task]:
    try:
        module = _load_module(path, package)
    except UserError:
        raise
    except Exception as exc:  # a broken user file must name itself, not crash the CLI
        raise UserError(f"task file {path}: {type(exc).__name__}: {exc}") from exc
    tasks = getattr(module, "TASKS", None)
    if tasks is None:
        raise UserError(
            f"task file {path}: defines no TASKS list; add `TASKS = [Task(...)]` "
            "(see README, 'Writing a task')"
        )
    if not isinstance(tasks, (list, tuple)) or not all(isinstance(t, Task) for t in tasks):
        raise UserError(f"task file {path}: TASKS must be a list of adaptbench.tasks.Task values")
    return [t if t.source else _with_source(t, str(path)) for t in tasks]


def _with_source(task: Task, source: str) -> Task:
    from dataclasses import replace

    return replace(task, source=source)


def user_dirs(tasks_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """User task folders: those given explicitly, then those in ``ADAPTBENCH_TASKS``."""
    raw: list[str | Path] = list(tasks_dirs)
    env = os.environ.get("ADAPTBENCH_TASKS", "")
    raw += [p for p in env.split(os.pathsep) if p]
    dirs = []
    for item in raw:
        path = Path(item).expanduser()
        if not path.is_dir():
            raise UserError(f"tasks folder {str(item)!r} does not exist or is not a folder")
        if path.resolve() not in [d.resolve() for d in dirs]:
            dirs.append(path)
    return dirs


_CACHE: dict[tuple[str, ...], dict[str, Task]] = {}
_LOADED: dict[int, str] = {}  # id(task) -> the fingerprint of the code it was loaded from


def reload_tasks() -> None:
    """Forget every loaded task, so that the next `load_tasks` imports the files afresh (a
    long-lived worker whose task files were edited since it loaded them)."""
    _CACHE.clear()
    _LOADED.clear()
    for name in [m for m in sys.modules if m.startswith(_TASK_PREFIXES)]:
        del sys.modules[name]
    importlib.invalidate_caches()


def loaded_fingerprint(task: Task) -> str:
    """The fingerprint of the code a loaded task runs: taken when its file was imported (and
    `fingerprint` of it now, for a task made in code)."""
    return _LOADED.get(id(task)) or fingerprint(task)


def load_tasks(tasks_dirs: Sequence[str | Path] = ()) -> dict[str, Task]:
    """All tasks by name: the built-in ones and those in user folders. Names must be unique."""
    dirs = user_dirs(tasks_dirs)
    key = tuple(str(d.resolve()) for d in dirs)
    if key in _CACHE:
        return _CACHE[key]
    found: dict[str, Task] = {}
    # whatever a task file prints while it loads is a message, never data on stdout
    with contextlib.redirect_stdout(sys.stderr):
        packages = [_package_for(None)] + [_package_for(d) for d in dirs]
        loaded = [(path, _tasks_in(path, package)) for package in packages
                  for path in _task_files(Path(package.__path__[0]))]
    for _, tasks_of_file in loaded:
        for task in tasks_of_file:
            if task.name in found:
                raise UserError(
                    f"task name {task.name!r} is defined twice: in {found[task.name].source} "
                    f"and in {task.source}; rename one of them"
                )
            found[task.name] = task
            _LOADED[id(task)] = fingerprint(task)
    _CACHE[key] = found
    return found


def get_task(name: str, tasks_dirs: Sequence[str | Path] = ()) -> Task:
    """One task by name, or a UserError that suggests the closest name."""
    tasks = load_tasks(tasks_dirs)
    if name not in tasks:
        raise unknown("task", name, tasks)
    return tasks[name]


# Task fields that do not change what a run computes: left out of the fingerprint. Every other
# field is in it, so a field added to Task counts unless it is named here.
_NOT_FINGERPRINTED = frozenset({"description", "build", "source", "twin", "held_out", "claims"})


def fingerprint(task: Task) -> str:
    """A short hash of a task's definition, to tell runs of an edited task from the old ones.

    It covers the source of the file that defines the task (as it is on disk now), the helper
    files beside it whose name starts with ``_`` (``_common.py``, ``__init__.py``: shared code
    changes the data too) and the task's settings (every field but the description). Other task
    files in the folder do not count. 16 hex digits of a SHA-256.
    """
    import json
    from dataclasses import fields

    settings = {f.name: getattr(task, f.name) for f in fields(task) if f.name not in _NOT_FINGERPRINTED}
    settings["lrs"] = [float(lr) for lr in task.lrs]
    settings["build"] = getattr(task.build, "__qualname__", type(task.build).__name__)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode())
    path = _defining_file(task)
    if path is not None:
        helpers = sorted(p for p in path.parent.glob("_*.py") if p != path)
        for file in [path, *helpers]:
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise UserError(f"task {task.name!r}: cannot read {file}: {exc.strerror}") from None
            digest.update(b"\0" + file.name.encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def _defining_file(task: Task) -> Path | None:
    """The file that defines the task: its `source` (set when a task folder is loaded), else the
    file of the module its build function comes from (a Task made in code)."""
    if task.source and Path(task.source).is_file():
        return Path(task.source)
    module = sys.modules.get(getattr(task.build, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    return Path(file) if file and Path(file).is_file() else None


TIMINGS_FILE = "timings.json"


def measured(task: Task) -> dict[str, Any]:
    """What benchmarks/task_timing.py measured for a task: params, examples, the mean seconds
    of one default run (on one CPU thread) and the gradient density (`train.gradient_density`),
    read from ``timings.json`` beside the task file; empty when the task was never measured.
    Nothing is measured at listing time."""
    if not task.source:
        return {}
    data = _timings(Path(task.source).parent / TIMINGS_FILE)
    size = data.get("size", {}).get(task.name, {})
    out = {"params": size.get("params"), "examples": size.get("examples"),
           # CPU seconds: what a run costs one core, however busy the machine measuring it was
           "seconds": data.get("cpu_seconds", {}).get(task.name,
                                                      data.get("seconds", {}).get(task.name)),
           "gradient_density": data.get("gradient_density", {}).get(task.name)}
    return {k: v for k, v in out.items() if v is not None}


_TIMINGS: dict[Path, dict[str, Any]] = {}


def _timings(path: Path) -> dict[str, Any]:
    import json

    if path not in _TIMINGS:
        try:
            _TIMINGS[path] = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            _TIMINGS[path] = {}  # a damaged timings file only loses the listing's figures
    return _TIMINGS[path]


def task_names(tasks_dirs: Sequence[str | Path] = ()) -> list[str]:
    """The task names the task folders define, read from the files' source without running them
    (no torch import: shell completion calls this on every Tab). A name counts when it is a
    literal: ``Task(name="...")``; a task whose name is computed is missed, and an unreadable
    file or folder is skipped. `load_tasks` is the authority."""
    import ast

    try:
        dirs = [builtin_dir(), *user_dirs(tasks_dirs)]
    except UserError:  # a missing ADAPTBENCH_TASKS folder: complete the built-in tasks only
        dirs = [builtin_dir()]
    names: set[str] = set()
    for folder in dirs:
        for path in _task_files(folder):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Task":
                    for kw in node.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                            names.add(kw.value.value)
    return sorted(names)
