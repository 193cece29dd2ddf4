"""Specs and their hash, the optimizer table, schedules, the training loop and the store."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from adaptbench import optimizers, queue, results, train
from adaptbench.errors import UserError
from adaptbench.spec import Grid, RunSpec, expand, parse_opts
from adaptbench.store import make_engine
from adaptbench.tasks import get_task, load_tasks

CPU = torch.device("cpu")


def spec(**kw) -> RunSpec:
    base = dict(task="tabular-mlp", optimizer="adam", lr=1e-3, seed=0, steps=40, batch_size=32)
    return RunSpec(**{**base, **kw})


# --- spec hash ---------------------------------------------------------------------------

def test_spec_hash_is_stable_across_versions():
    # A stored hash must keep identifying the same run in every later version: if this literal
    # changes, queuing an old grid again would duplicate every run in users' databases.
    s = RunSpec("sparse-text", "rmsprop", 0.001, 0, 500, 64, {"alpha": 0.9}, "constant", "")
    canonical = (
        '{"batch_size":64,"hash_version":1,"lr":0.001,"optimizer":"rmsprop",'
        '"params":{"alpha":0.9},"schedule":"constant","seed":0,"steps":500,'
        '"study":"","task":"sparse-text"}'
    )
    assert s.canonical() == canonical
    assert s.spec_hash == hashlib.sha256(canonical.encode()).hexdigest()[:16] == "b0e0094c14fdf21c"


def test_spec_hash_ignores_spelling_and_order():
    a = spec(lr=0.001, params={"betas": (0.9, 0.99), "eps": 1e-8})
    b = spec(lr=1e-3, params={"eps": 1e-08, "betas": [0.9, 0.99]})
    assert a.spec_hash == b.spec_hash
    assert spec(params={"weight_decay": 1}).spec_hash == spec(params={"weight_decay": 1.0}).spec_hash


@pytest.mark.parametrize("change", [
    {"lr": 2e-3}, {"seed": 1}, {"steps": 41}, {"batch_size": 33}, {"optimizer": "sgd"},
    {"task": "sparse-text"}, {"schedule": "cosine"}, {"study": "x"}, {"params": {"eps": 1e-6}},
])
def test_every_field_changes_the_hash(change):
    assert spec(**change).spec_hash != spec().spec_hash


def test_grid_expansion_and_dedupe():
    tasks = load_tasks()
    grid = Grid(tasks=["sparse-text", "tabular-mlp"], optimizers=["adam", "sgd"],
                lrs=[0.1, 0.01, 0.1], seeds=[0, 1])
    specs = expand(grid, tasks)
    assert len(specs) == 2 * 2 * 2 * 2
    assert len({s.spec_hash for s in specs}) == len(specs)
    defaults = expand(Grid(tasks=["sparse-text"], optimizers=["adagrad"], seeds=[0]), tasks)
    assert defaults[0].lr == optimizers.OPTIMIZERS["adagrad"].default_lr
    assert defaults[0].steps == tasks["sparse-text"].steps
    grid_lrs = expand(Grid(tasks=["sparse-text"], optimizers=["adam"], seeds=[0], lr_grid=True), tasks)
    assert [s.lr for s in grid_lrs] == list(tasks["sparse-text"].lrs)


def test_parse_opts_values():
    assert parse_opts(["betas=0.9,0.99", "amsgrad=true", "eps=1e-6", "momentum=0"]) == {
        "betas": (0.9, 0.99), "amsgrad": True, "eps": 1e-6, "momentum": 0,
    }


# --- optimizers and schedules --------------------------------------------------------------

@pytest.mark.parametrize("torch_class", sorted(optimizers.ALLOWED_PARAMS))
def test_allowed_params_are_accepted_by_torch(torch_class):
    accepted = optimizers.torch_signature_params(torch_class)
    assert optimizers.ALLOWED_PARAMS[torch_class] <= accepted


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_every_optimizer_builds_and_steps(name):
    w = torch.nn.Parameter(torch.ones(3))
    opt = optimizers.build_optimizer(name, [w], optimizers.default_lr(name), {})
    (w ** 2).sum().backward()
    opt.step()
    assert not torch.equal(w.detach(), torch.ones(3))


def test_optimizer_fixed_settings_reach_torch():
    w = [torch.nn.Parameter(torch.ones(1))]
    group = optimizers.build_optimizer("nesterov", w, 0.1, {}).param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True
    group = optimizers.build_optimizer("adam", w, 0.1, {"betas": (0.8, 0.9)}).param_groups[0]
    assert group["betas"] == (0.8, 0.9)


def test_schedules_by_hand():
    f = optimizers.lr_factor
    assert f("constant", 99, 100) == 1.0
    assert f("cosine", 0, 100) == 1.0
    assert f("cosine", 50, 100) == pytest.approx(0.5)
    assert f("cosine", 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert [f("step", s, 100) for s in (49, 50, 74, 75)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert f("warmup-cosine", 0, 100) == pytest.approx(1 / 5)
    assert f("warmup-cosine", 4, 100) == pytest.approx(1.0)
    assert f("linear", 25, 100) == pytest.approx(0.75)


def test_unknown_optimizer_suggests():
    with pytest.raises(UserError, match="did you mean 'rmsprop'"):
        optimizers.check_optimizer("rmsporp", {})


# --- training loop -----------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_same_spec_same_device_same_curve(schedule):
    task = get_task("tabular-mlp")
    a = train.execute(spec(schedule=schedule), task, CPU)
    b = train.execute(spec(schedule=schedule), task, CPU)
    assert a.curve and [{k: v for k, v in p.items() if k != "elapsed"} for p in a.curve] == [
        {k: v for k, v in p.items() if k != "elapsed"} for p in b.curve
    ]
    assert a.final == b.final
    c = train.execute(spec(seed=1, schedule=schedule), task, CPU)
    assert c.final != a.final


def test_curve_has_val_and_test_every_eval_every_steps():
    task = get_task("tabular-mlp")
    result = train.execute(spec(steps=2 * task.eval_every), task, CPU)
    steps = sorted({p["step"] for p in result.curve if p["split"] == "val"})
    assert steps == [0, task.eval_every, 2 * task.eval_every]
    assert {p["split"] for p in result.curve} == {"train", "train_full", "val", "test"}
    assert result.status == "done" and result.diverged_at_step is None
    assert all(v is not None and math.isfinite(v) for v in result.final.values())


def test_train_full_curve_is_the_loss_on_the_training_split():
    task = get_task("digits-autoencoder")  # 1,078 training examples: below TRAIN_CURVE_MAX
    result = train.execute(spec(task=task.name, steps=task.eval_every), task, CPU)
    full = [p for p in result.curve if p["split"] == "train_full"]
    assert [p["step"] for p in full] == [0, task.eval_every]
    # the last point is the final model on the whole training split, as final_train_loss is
    assert full[-1]["loss"] == result.final["final_train_loss"]
    assert full[-1]["metric"] == result.final["final_train_metric"]


def test_a_large_training_split_is_subsampled_for_the_curve_only(monkeypatch):
    task = get_task("tabular-mlp")
    whole = train.execute(spec(steps=task.eval_every), task, CPU)
    monkeypatch.setattr(train, "TRAIN_CURVE_MAX", 100)
    problem = task.build(0, CPU)
    x, _ = train.training_examples(problem, 0)
    again, _ = train.training_examples(task.build(0, CPU), 0)
    assert x.shape[0] == 100 and torch.equal(x, again)  # fixed by the seed
    part = train.execute(spec(steps=task.eval_every), task, CPU)
    assert part.final == whole.final  # the batches and the model are the same
    loss = [p["loss"] for p in part.curve if p["split"] == "train_full"]
    assert loss != [p["loss"] for p in whole.curve if p["split"] == "train_full"]
    assert loss[0] == pytest.approx(train.evaluate(problem, (x, _))[0], rel=1e-6)


def test_steps_to_target_are_found_between_evaluations(monkeypatch):
    # the same run evaluated at every step gives the exact first step at the target; with
    # eval_every 20 and a resolution of 20 the interval is trained again step by step
    import dataclasses

    base = get_task("tabular-mlp")
    every = train.execute(spec(steps=60, lr=1e-2), dataclasses.replace(base, eval_every=1), CPU)
    val = [p["metric"] for p in every.curve if p["split"] == "val"]
    target = val[0] + 0.8 * (max(val) - val[0])  # crossed somewhere inside the run
    exact = next(i for i, v in enumerate(val) if v >= target)
    task = dataclasses.replace(base, eval_every=20, target=target)
    monkeypatch.setattr(train, "TARGET_RESOLUTION", 20)
    fine = train.execute(spec(steps=60, lr=1e-2), task, CPU)
    assert fine.steps_to_target == exact and exact % 20 != 0
    monkeypatch.setattr(train, "TARGET_RESOLUTION", 1)  # evaluations only: the next multiple of 20
    coarse = train.execute(spec(steps=60, lr=1e-2), task, CPU)
    assert coarse.steps_to_target == -(-exact // 20) * 20
    strip = [{k: v for k, v in p.items() if k != "elapsed"} for p in fine.curve]
    assert strip == [{k: v for k, v in p.items() if k != "elapsed"} for p in coarse.curve]
    assert fine.final == coarse.final  # training again left the run as it was


def test_training_improves_the_metric():
    task = get_task("tabular-mlp")
    result = train.execute(spec(steps=200, lr=1e-2), task, CPU)
    first = next(p["metric"] for p in result.curve if p["split"] == "val")
    assert result.final["final_val_metric"] > first


def test_divergence_ends_the_run_as_diverged():
    task = get_task("tabular-mlp")
    result = train.execute(spec(optimizer="sgd", lr=1e4, steps=100), task, CPU)
    assert result.status == "diverged"
    assert 1 <= result.diverged_at_step <= 100
    assert all(v is None for v in result.final.values())


# --- store round trip --------------------------------------------------------------------

def test_store_round_trip(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    tasks = load_tasks()
    s = spec(steps=20)
    [q] = queue.enqueue(engine, [s], tasks)
    assert q.new and queue.enqueue(engine, [s], tasks)[0].new is False
    c = queue.claim(engine, "w1")
    assert c is not None and c.spec == s and c.attempt == 1
    assert queue.claim(engine, "w2") is None
    result = train.execute(c.spec, tasks[s.task], CPU)
    assert queue.finish(engine, c, result.outcome(), result.curve)
    runs = results.load_runs(engine)
    row = runs.iloc[0]
    assert row["status"] == "done" and row["spec_hash"] == s.spec_hash
    assert row["task_type"] == tasks[s.task].task_type
    assert row["final_test_metric"] == result.final["final_test_metric"]
    curves = results.load_curves(engine)
    assert len(curves) == len(result.curve)
    assert set(curves["split"]) == {"train", "train_full", "val", "test"}
    # a second engine on the same file sees the same data (it is really stored)
    again = results.load_runs(make_engine(f"sqlite:///{tmp_path / 'r.db'}", create=False))
    assert again.iloc[0]["final_test_metric"] == row["final_test_metric"]


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_rosenbrock_trajectory_is_recorded_and_stored(cli, workdir):
    import json as _json

    task = get_task("rosenbrock")
    result = train.execute(spec(task="rosenbrock", optimizer="adam", lr=1e-2, steps=50, batch_size=1), task, CPU)
    steps = [s for s, _ in result.trajectory]
    assert steps == list(range(0, 51, 10))
    x0, y0 = result.trajectory[0][1]
    assert abs(x0 + 1.2) < 0.3 and abs(y0 - 1.0) < 0.3  # the documented start, jittered
    # the last recorded point is the point whose value is the final metric
    x, y = result.trajectory[-1][1]
    assert (1 - x) ** 2 + 100 * (y - x * x) ** 2 == pytest.approx(result.final["final_test_metric"], rel=1e-4)
    assert cli("run", "-o", "adam", "-t", "rosenbrock", "--steps", "30", "--seeds", "1").code == 0
    row = _json.loads(cli("ls", "--all", "--format", "json").out)[0]
    stored = _json.loads(row["trajectory"])
    assert [s for s, _ in stored] == [0, 10, 20, 30] and len(stored[0][1]) == 2
