"""Shell completion: task and optimizer names for --task and --optim, directly and through
Typer's completion protocol in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from adaptbench.completion import complete_optimizer, complete_task
from adaptbench.optimizers import OPTIMIZERS
from adaptbench.tasks import load_tasks, task_names

NO_DIRS = SimpleNamespace(params={})


@pytest.fixture(autouse=True)
def no_user_tasks(monkeypatch):
    monkeypatch.delenv("ADAPTBENCH_TASKS", raising=False)


def test_task_names_are_read_without_importing_the_task_files():
    code = ("import sys; from adaptbench.tasks import task_names; names = task_names(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(names))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 10


def test_task_names_match_the_registry():
    assert task_names() == sorted(load_tasks())


@pytest.mark.parametrize("incomplete, expected", [
    ("", sorted(OPTIMIZERS)),
    ("adam", sorted(n for n in OPTIMIZERS if n.startswith("adam"))),
    ("rms", ["rmsprop"]),
    ("zzz", []),
    ("sgd,ada", sorted(f"sgd,{n}" for n in OPTIMIZERS if n.startswith("ada"))),
    ("adam,", sorted(f"adam,{n}" for n in OPTIMIZERS if n != "adam")),
])
def test_optimizer_completion_filters_by_prefix(incomplete, expected):
    assert complete_optimizer(incomplete) == expected


def test_task_completion_filters_by_prefix():
    assert complete_task(NO_DIRS, "digits-") == ["digits-autoencoder", "digits-cnn"]
    assert complete_task(NO_DIRS, "rosenbrock,noisy") == ["rosenbrock,noisy-quadratic"]
    assert complete_task(NO_DIRS, "") == sorted(load_tasks())
    assert complete_task(NO_DIRS, "nope") == []


TASK_FILE = '''
from adaptbench.tasks import Task
def build(seed, device):
    raise NotImplementedError
TASKS = [Task(name="my-own-task", task_type="dense", description="x", build=build)]
'''


def test_task_completion_includes_user_folders(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(TASK_FILE)
    assert complete_task(SimpleNamespace(params={"tasks_dir": [str(tmp_path)]}), "my-") == ["my-own-task"]
    monkeypatch.setenv("ADAPTBENCH_TASKS", str(tmp_path))
    assert complete_task(NO_DIRS, "my-") == ["my-own-task"]
    monkeypatch.setenv("ADAPTBENCH_TASKS", str(tmp_path / "missing"))
    assert "rosenbrock" in complete_task(NO_DIRS, "")  # a bad folder only loses its own names


def _complete(words: str) -> list[str]:
    """What the shell gets for `words` (completing the last word) by Typer's bash protocol."""
    script = Path(sys.executable).with_name("adaptbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "adaptbench.cli"]
    parts = words.split(" ")
    env = {**os.environ, "_ADAPTBENCH_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.parametrize("words, expected", [
    ("adaptbench run --task digits-", ["digits-autoencoder", "digits-cnn"]),
    ("adaptbench report ranks -o rms", ["rmsprop"]),
    ("adaptbench ls --optim adam,rms", ["adam,rmsprop"]),
])
def test_completion_end_to_end(words, expected):
    assert _complete(words) == expected


def test_completion_is_offered(cli):
    r = cli("--help")
    assert "--install-completion" in r.out and "--show-completion" in r.out
