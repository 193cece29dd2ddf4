"""Input limits: a grid over MAX_GRID runs needs --yes (counted, not expanded), and
`worker --no-plugins` never imports a plugin optimizer named in the database."""

from __future__ import annotations

import os
import time

from adaptbench.cli import runs as runs_cli
from adaptbench.spec import STUDY_PRESETS, Grid, grid_size
from tests.test_faults import FIXTURE_TASKS


def test_a_grid_over_the_limit_is_refused_without_yes_before_it_is_expanded(cli, workdir, monkeypatch):
    from adaptbench import spec

    def never(*args, **kwargs):  # the size is counted, never by building the specs
        raise AssertionError("the grid was expanded")

    monkeypatch.setattr(spec, "expand", never)
    start = time.monotonic()
    r = cli("queue", "-o", "adam,sgd", "-t", "rosenbrock", "--lr-grid", "--seeds", "999999")
    assert time.monotonic() - start < 30
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adaptbench: error: this grid is "), r.err
    assert "over 100,000: pass --yes" in lines[0] and "nothing was queued" in lines[0]
    assert not (workdir / "results.db").exists()


def test_yes_queues_a_grid_over_the_limit(cli, monkeypatch):
    monkeypatch.setattr(runs_cli, "MAX_GRID", 5)
    r = cli("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "6")
    assert r.code == 2 and "this grid is 6 runs, over 5: pass --yes" in r.err
    assert cli("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "5").code == 0
    r = cli("queue", "-o", "adam", "-t", "rosenbrock", "--seeds", "6", "--yes")
    assert r.code == 0, r.err
    assert "queued 1 new run(s); 5 already stored" in r.err


def test_grid_size_counts_what_expand_builds():
    from adaptbench.spec import expand, expand_study
    from adaptbench.tasks import get_task

    tasks = {n: get_task(n) for n in ("rosenbrock", "logistic-regression")}
    grid = Grid(tasks=list(tasks), optimizers=["adam", "sgd", "adam"], lrs=[0.1, 0.01, 0.1],
                seeds=[0, 1, 2], eval_seeds=4)
    assert grid_size(grid, tasks) == (len(expand(grid, tasks)), 2 * 2 * 4)
    tuned = Grid(tasks=list(tasks), optimizers=["adam", "sgd"], seeds=[0, 1], lr_grid=True)
    assert grid_size(tuned, tasks)[0] == len(expand(tuned, tasks))
    for preset in STUDY_PRESETS.values():
        study = Grid(tasks=list(tasks), optimizers=list(preset.optimizers), seeds=[0, 1],
                     lr_grid=True, study=preset.name)
        assert grid_size(study, tasks, preset)[0] == len(expand_study(study, preset, tasks))


PLUGIN = '''
import os

with open(os.environ["PLUGIN_LOG"], "a") as log:
    log.write(f"imported {os.getpid()}\\n")


def make(params, lr, **kwargs):
    import torch

    return torch.optim.SGD(params, lr=lr)
'''


def test_a_worker_with_no_plugins_leaves_plugin_runs_queued_and_never_imports_them(
        cli, workdir, monkeypatch):
    (workdir / "plug.py").write_text(PLUGIN)
    log = workdir / "imports.log"
    monkeypatch.setenv("PLUGIN_LOG", str(log))
    monkeypatch.syspath_prepend(str(workdir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]))
    assert cli("queue", "-o", "plug:make,sgd", "-t", "tiny", "--seeds", "1",
               "--tasks-dir", FIXTURE_TASKS).code == 0
    queued_by = log.read_text()  # `queue` checked the plugin here, in this process
    r = cli("worker", "--no-plugins", "--tasks-dir", FIXTURE_TASKS)
    assert r.code == 0, r.err
    assert "worker finished: 1 done" in r.err
    assert ("note: 1 queued run(s) name a plugin optimizer (module:attr); --no-plugins left "
            "them in the queue") in r.err
    assert log.read_text() == queued_by  # nothing imported it
    queued = cli("ls", "--status", "queued", "--format", "csv").out
    assert "plug:make" in queued and "sgd" not in queued
    r = cli("worker", "--tasks-dir", FIXTURE_TASKS)  # a worker that trusts the database
    assert r.code == 0 and "worker finished: 1 done" in r.err, r.err
    assert len(log.read_text().splitlines()) > len(queued_by.splitlines())
