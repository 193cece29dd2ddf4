"""Task files of one's own, loaded with --tasks-dir or ADAPTBENCH_TASKS."""

from __future__ import annotations

import json
import textwrap

import pytest

from adaptbench.errors import UserError
from adaptbench.tasks import load_tasks

USER_TASK = '''
import torch

from adaptbench.tasks import Problem, Task

from ._shared import make_data


def build(seed, device):
    g = torch.Generator().manual_seed(seed)
    x, y = make_data(g, device)
    model = torch.nn.Linear(4, 1).to(device)
    mse = lambda out, t: torch.nn.functional.mse_loss(out.squeeze(-1), t)
    return Problem(model=model, train=(x[:60], y[:60]), val=(x[60:80], y[60:80]),
                   test=(x[80:], y[80:]), loss=mse, metric=mse)


TASKS = [Task(name="{name}", task_type="regression", description="a linear fit", build=build,
              metric="mse", higher_is_better=False, steps=20, batch_size=16, eval_every=10,
              lrs=(0.01, 0.1), target=0.5)]
'''

SHARED = '''
import torch


def make_data(g, device):
    x = torch.randn(100, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(100, generator=g)
    return x.to(device), y.to(device)
'''


def write_folder(path, name="my-linear", body=USER_TASK):
    path.mkdir(parents=True, exist_ok=True)
    (path / "linear.py").write_text(textwrap.dedent(body.replace("{name}", name)))
    (path / "_shared.py").write_text(SHARED)
    return path


def test_user_task_runs_via_tasks_dir(cli, workdir):
    folder = write_folder(workdir / "mytasks")
    listed = json.loads(cli("tasks", "--tasks-dir", str(folder), "--format", "json").out)
    assert "my-linear" in {t["name"] for t in listed}
    r = cli("run", "-o", "adam", "-t", "my-linear", "--tasks-dir", str(folder), "--seeds", "2")
    assert r.code == 0, r.err
    rows = json.loads(cli("ls", "--format", "json").out)
    assert [row["status"] for row in rows] == ["done", "done"]


def test_user_task_via_environment(cli, workdir, monkeypatch):
    folder = write_folder(workdir / "envtasks")
    monkeypatch.setenv("ADAPTBENCH_TASKS", str(folder))
    assert cli("run", "-o", "sgd", "-t", "my-linear", "--seeds", "1").code == 0
    assert cli("worker").code == 0


def test_name_collision_is_an_error(workdir):
    folder = write_folder(workdir / "clash", name="sparse-text")
    with pytest.raises(UserError, match="'sparse-text' is defined twice"):
        load_tasks([folder])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x = 1\n", "defines no TASKS list"),
        ("TASKS = [1, 2]\n", "TASKS must be a list of adaptbench.tasks.Task"),
        ("import nosuchpackage_xyz\nTASKS = []\n", "No module named 'nosuchpackage_xyz'"),
        ("def broken(:\n", "SyntaxError"),
        (USER_TASK.replace('steps=20', 'steps=-1'), "steps must be a positive integer"),
    ],
)
def test_broken_task_file_names_the_file_and_the_problem(cli, workdir, body, expected):
    folder = write_folder(workdir / f"broken{abs(hash(body))}", body=body)
    r = cli("tasks", "--tasks-dir", str(folder))
    assert r.code == 2
    assert "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert "linear.py" in r.err and expected in r.err


def test_the_readme_example_task_runs(cli, workdir):
    """The task file shown in README.md's 'Writing a task' works as written."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Writing a task", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = workdir / "mytasks"
    folder.mkdir()
    (folder / "sine.py").write_text(code)
    r = cli("run", "-o", "adam", "-t", "sine-mlp", "--tasks-dir", str(folder), "--seeds", "2")
    assert r.code == 0, r.err
    rows = json.loads(cli("ls", "--format", "json").out)
    assert [row["status"] for row in rows] == ["done", "done"]
    assert all(row["final_test_metric"] < 0.5 for row in rows)  # it learned something


def test_what_a_task_file_prints_never_mixes_with_the_run_ids(cli, workdir):
    folder = write_folder(workdir / "chatty", body='print("loading my task")\n' + USER_TASK)
    r = cli("queue", "-o", "adam", "-t", "my-linear", "--tasks-dir", str(folder), "--seeds", "2")
    assert r.code == 0, r.err
    assert r.out.split() == ["1", "2"]  # the ids, and nothing else
    assert "loading my task" in r.err
