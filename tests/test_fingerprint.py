"""Task fingerprints: a hash of a task's code (its file and the folder's `_` helpers) and settings."""

from __future__ import annotations

import dataclasses
import importlib
import sys

import pytest

from adaptbench import tasks as tasks_mod
from adaptbench.tasks import Task, fingerprint, load_tasks

from test_user_tasks import write_folder

OTHER = '''
from adaptbench.tasks import Task

TASKS = [Task(name="other-task", task_type="regression", description="unrelated",
              build=lambda seed, device: None)]
'''


def fresh_load(folder) -> dict[str, Task]:
    """Load the folder as a new process would: no cached tasks or modules."""
    tasks_mod._CACHE.clear()
    for name in [m for m in sys.modules if m.startswith("adaptbench_user_tasks_")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return load_tasks([folder])


@pytest.fixture
def folder(workdir):
    path = write_folder(workdir / "mytasks")
    (path / "other.py").write_text(OTHER)
    yield path
    fresh_load(path)  # leave no module of the edited folder behind
    tasks_mod._CACHE.clear()


def test_builtin_fingerprints_are_stable_and_distinct():
    first = {name: fingerprint(t) for name, t in load_tasks().items()}
    tasks_mod._CACHE.clear()
    second = {name: fingerprint(t) for name, t in load_tasks().items()}
    assert first == second
    assert len(set(first.values())) == len(first)
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in first.values())


def test_stable_across_two_loads(folder):
    assert fingerprint(fresh_load(folder)["my-linear"]) == fingerprint(fresh_load(folder)["my-linear"])


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("linear.py", "x[:60]", "x[:50]"),  # the task's own code
        ("_shared.py", "0.1 * torch.randn", "0.2 * torch.randn"),  # a helper beside it
        ("linear.py", "steps=20", "steps=30"),  # a setting
    ],
)
def test_editing_the_task_or_a_helper_changes_it(folder, file, old, new):
    before = fingerprint(fresh_load(folder)["my-linear"])
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new))
    assert fingerprint(fresh_load(folder)["my-linear"]) != before


def test_editing_another_task_file_does_not_change_it(folder):
    before = fingerprint(fresh_load(folder)["my-linear"])
    (folder / "other.py").write_text(OTHER.replace("unrelated", "edited"))
    (folder / "third.py").write_text(OTHER.replace("other-task", "third-task"))
    assert fingerprint(fresh_load(folder)["my-linear"]) == before


def test_every_setting_counts_but_the_description():
    task = load_tasks()["logistic-regression"]
    base = fingerprint(task)
    assert fingerprint(dataclasses.replace(task, description="reworded")) == base
    changed = {"name": "logistic-regression-2", "task_type": "dense", "metric": "accuracy",
               "higher_is_better": not task.higher_is_better, "steps": task.steps + 1,
               "batch_size": task.batch_size + 1, "eval_every": task.eval_every + 1,
               "target": 0.123, "lrs": (0.5,), "clip_grad_norm": 1.0, "warmup": 0.1}
    counted = {f.name for f in dataclasses.fields(Task)} - tasks_mod._NOT_FINGERPRINTED
    assert counted == set(changed)  # a new Task field is counted unless named as not mattering
    for key, value in changed.items():
        assert fingerprint(dataclasses.replace(task, **{key: value})) != base, key


def test_a_task_made_in_code_is_fingerprinted_by_its_module():
    task = Task(name="in-code", task_type="regression", description="", build=lambda s, d: None)
    assert fingerprint(task) == fingerprint(dataclasses.replace(task, description="x"))
