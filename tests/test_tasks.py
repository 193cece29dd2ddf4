"""The built-in tasks: one row per task below, and every test runs over the whole table.

A new built-in task is tested by adding its row: its type, and an optimizer, learning rate and
short budget with which a few training steps must visibly improve the validation metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from adaptbench import train
from adaptbench.spec import RunSpec
from adaptbench.builtin_tasks._common import BagOfWords, padded_bags
from adaptbench.tasks import TASK_TYPES, Problem, Task, builtin_dir, load_tasks
from adaptbench.train import gradient_density

CPU = torch.device("cpu")


@dataclass(frozen=True)
class TaskInfo:
    """What the tests expect of one built-in task, and a short run known to make progress."""

    name: str
    task_type: str
    optimizer: str
    lr: float
    steps: int
    held_out: bool = True  # False: validation and test compute the same number
    claims: bool = True  # False: a demonstration, left out of the claims


TASK_TABLE = [
    TaskInfo("sparse-text", "sparse", "adagrad", 3e-2, 100),
    TaskInfo("sparse-text-dense", "dense", "adam", 3e-3, 300),
    TaskInfo("bow-logreg", "sparse", "adagrad", 1e-1, 100),
    TaskInfo("bow-logreg-dense", "dense", "adam", 3e-3, 100),
    TaskInfo("hashed-ctr", "sparse", "adam", 1e-2, 100),
    TaskInfo("hashed-ctr-dense", "dense", "adam", 1e-2, 100),
    TaskInfo("tabular-mlp", "dense", "adam", 1e-2, 100),
    TaskInfo("digits-cnn", "vision", "adam", 1e-2, 50),
    TaskInfo("digits-autoencoder", "vision", "adam", 1e-2, 100),
    TaskInfo("char-rnn", "sequence", "adam", 1e-2, 60),
    TaskInfo("reverse-attention", "sequence", "adam", 1e-2, 150),
    TaskInfo("friedman-mlp", "regression", "adam", 1e-2, 100),
    TaskInfo("diabetes-mlp", "regression", "rmsprop", 1e-3, 50, claims=False),
    TaskInfo("logistic-regression", "convex", "adam", 1e-2, 50, claims=False),
    TaskInfo("noisy-quadratic", "convex", "adam", 1e-2, 200, held_out=False),
    TaskInfo("rosenbrock", "nonconvex", "adam", 3e-2, 300, held_out=False, claims=False),
    TaskInfo("skipgram", "sparse", "adagrad", 3e-1, 100),
    TaskInfo("skipgram-dense", "dense", "adam", 3e-2, 100),
    TaskInfo("zipf-mf", "sparse", "adagrad", 3e-1, 100),
    TaskInfo("zipf-mf-dense", "dense", "adam", 1e-2, 100),
]
INFOS = {info.name: info for info in TASK_TABLE}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models run fastest on one thread, and do not slow to a crawl on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[info.name for info in TASK_TABLE])
def task(request) -> Task:
    return load_tasks()[request.param]


def splits_of(problem: Problem) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"train": problem.train, "val": problem.val, "test": problem.test}


def better_or_equal(a: float, b: float, higher_is_better: bool) -> bool:
    return a >= b if higher_is_better else a <= b


# --- the table and the registry agree ----------------------------------------------------------


def test_table_lists_every_builtin_task():
    folder = builtin_dir().resolve()
    builtin = {n for n, t in load_tasks().items() if Path(t.source).resolve().parent == folder}
    assert builtin == set(INFOS)
    assert len(INFOS) >= 10
    assert len({info.task_type for info in TASK_TABLE}) >= 7


def test_metadata(task):
    info = INFOS[task.name]
    assert task.task_type == info.task_type and task.task_type in TASK_TYPES
    assert (task.held_out, task.claims) == (info.held_out, info.claims)
    assert task.description and "\n" not in task.description
    assert task.metric and task.target is not None
    assert task.steps % task.eval_every == 0
    lrs = list(task.lrs)
    assert lrs == sorted(lrs) and len(lrs) >= 7, "lr grid: ascending, wide"
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) / min(ratios) < 1.2, "lr grid: (near) log-spaced, e.g. 1-3-10"


# --- build: determinism, devices, splits ------------------------------------------------------


def test_build_is_deterministic_in_the_seed(task):
    rng_before = torch.random.get_rng_state()
    a, b, c = task.build(0, CPU), task.build(0, CPU), task.build(1, CPU)
    assert torch.equal(rng_before, torch.random.get_rng_state()), "build must not move global RNG"

    for name, (x, y) in splits_of(a).items():
        bx, by = splits_of(b)[name]
        assert torch.equal(x, bx) and torch.equal(y, by), f"{name} split differs for one seed"
    params_a = [p.detach() for p in a.model.parameters()]
    params_b = [p.detach() for p in b.model.parameters()]
    assert all(torch.equal(p, q) for p, q in zip(params_a, params_b)), "initial weights differ"

    def same(p: Problem, q: Problem) -> bool:
        data = all(
            x.shape == qx.shape and torch.equal(x, qx) and torch.equal(y, qy)
            for (x, y), (qx, qy) in zip(splits_of(p).values(), splits_of(q).values())
        )
        weights = all(torch.equal(s, t) for s, t in zip(p.model.parameters(), q.model.parameters()))
        return data and weights

    assert not same(a, c), "seeds 0 and 1 build the same problem"


def test_splits_are_sane(task):
    problem = task.build(0, CPU)
    sizes = {}
    for name, (x, y) in splits_of(problem).items():
        assert x.device == CPU and y.device == CPU
        assert x.shape[0] == y.shape[0] > 0
        sizes[name] = x.shape[0]
    assert sizes["train"] >= sizes["val"] and sizes["train"] >= sizes["test"]
    assert sizes["train"] >= task.batch_size
    assert all(p.device == CPU for p in problem.model.parameters())


def test_loss_and_metric_are_means_over_examples(task):
    # The training loop evaluates a split in chunks and averages them weighted by size.
    problem = task.build(0, CPU)
    x, y = problem.val
    cut = max(1, x.shape[0] // 3)
    with torch.no_grad():
        whole_loss = problem.loss(problem.model(x), y)
        whole_metric = problem.metric(problem.model(x), y)
        parts = [(x[:cut], y[:cut]), (x[cut:], y[cut:])]
        outs = [(problem.model(px), py, px.shape[0]) for px, py in parts]
        chunk_metric = sum(float(problem.metric(o, py)) * k for o, py, k in outs) / x.shape[0]
    assert whole_loss.dim() == 0 and whole_metric.dim() == 0
    assert math.isfinite(float(whole_loss)) and math.isfinite(float(whole_metric))
    assert float(whole_metric) == pytest.approx(chunk_metric, rel=1e-4, abs=1e-6)


# --- training makes progress ------------------------------------------------------------------


def test_short_run_improves_the_metric(task):
    info = INFOS[task.name]
    spec = RunSpec(task.name, info.optimizer, info.lr, 0, info.steps, task.batch_size)
    result = train.execute(spec, task, CPU)
    assert result.status == "done"
    val = [p["metric"] for p in result.curve if p["split"] == "val"]
    start, end = val[0], result.final["final_val_metric"]
    hib = task.higher_is_better
    assert not better_or_equal(start, task.target, hib), "untrained model already hits target"
    # At least a fifth of the way from the untrained model to the target.
    progress = (end - start) / (task.target - start)
    assert progress >= 0.2, f"val {task.metric}: {start:.4g} -> {end:.4g}, target {task.target}"


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad", "sgd"])
def test_every_main_optimizer_trains_every_task(task, optimizer):
    """The training code path (evaluations included) completes for each optimizer at the middle
    of the task's lr grid; the full default budgets are timed by benchmarks/task_timing.py."""
    lr = task.lrs[len(task.lrs) // 2]
    result = train.execute(RunSpec(task.name, optimizer, lr, 0, task.eval_every, task.batch_size), task, CPU)
    assert result.status in ("done", "diverged")
    assert {p["split"] for p in result.curve} >= {"val", "test"}
    if result.status == "done":
        assert all(v is not None and math.isfinite(v) for v in result.final.values())


# --- sparse tasks and their dense twins --------------------------------------------------------


@dataclass(frozen=True)
class TwinInfo:
    """A sparse task, its dense twin, and learning rates at which SGD and Adam train both."""

    sparse: str
    twin: str
    sgd_lr: float
    adam_lr: float


TWIN_TABLE = [
    TwinInfo("skipgram", "skipgram-dense", 30.0, 1e-2),
    TwinInfo("zipf-mf", "zipf-mf-dense", 0.3, 1e-2),
    TwinInfo("sparse-text", "sparse-text-dense", 3.0, 3e-3),  # SGD: 100 steps move little at 0.3
    TwinInfo("bow-logreg", "bow-logreg-dense", 0.3, 1e-2),
    TwinInfo("hashed-ctr", "hashed-ctr-dense", 0.3, 1e-2),
]
# What a twin shares with its sparse task (the target is tuned for each).
SHARED = ("metric", "higher_is_better", "steps", "batch_size", "eval_every", "lrs", "warmup",
          "clip_grad_norm")


@pytest.fixture(params=TWIN_TABLE, ids=lambda info: info.sparse)
def twins(request) -> tuple[Task, Task, TwinInfo]:
    tasks = load_tasks()
    return tasks[request.param.sparse], tasks[request.param.twin], request.param


def test_twin_table_lists_every_twin():
    named = {(t.name, t.twin) for t in load_tasks().values() if t.twin}
    assert named == {(info.sparse, info.twin) for info in TWIN_TABLE}


def test_a_twin_is_its_sparse_task_with_dense_gradients(twins):
    sparse, dense, _ = twins
    assert (sparse.task_type, dense.task_type, dense.twin) == ("sparse", "dense", None)
    assert all(getattr(sparse, key) == getattr(dense, key) for key in SHARED)
    a, b = sparse.build(0, CPU), dense.build(0, CPU)
    for (x, y), (bx, by) in zip(splits_of(a).values(), splits_of(b).values()):
        assert torch.equal(x, bx) and torch.equal(y, by), "a twin trains on the same examples"
    x = a.val[0][:512]
    with torch.no_grad():
        assert torch.allclose(a.model(x), b.model(x), atol=1e-5), "and starts at the same function"
    assert gradient_density(sparse, batches=3) < 0.3
    assert gradient_density(dense, batches=3) > 0.99


@pytest.mark.parametrize("optimizer, alike", [("sgd", True), ("adam", False)])
def test_sgd_runs_alike_on_a_sparse_task_and_its_twin_and_adam_does_not(twins, optimizer, alike):
    """SGD is rotation-equivariant, so on the twin it follows the sparse task's trajectory;
    Adam's per-coordinate steps are not, and the rotation changes where it goes. Compared on
    the val loss: an accuracy can flip at a near tie."""
    sparse, dense, info = twins
    lr = info.sgd_lr if optimizer == "sgd" else info.adam_lr
    steps = 2 * sparse.eval_every
    curves = []
    for task in (sparse, dense):
        spec = RunSpec(task.name, optimizer, lr, 0, steps, task.batch_size)
        result = train.execute(spec, task, CPU)
        assert result.status == "done"
        curves.append([p["loss"] for p in result.curve if p["split"] == "val"])
    assert curves[0][-1] != pytest.approx(curves[0][0], rel=0.01), "the run trained"
    assert (curves[1] == pytest.approx(curves[0], rel=1e-3)) == alike, curves


def test_bag_of_words_is_a_linear_layer_on_binary_vectors():
    rng = torch.Generator().manual_seed(0)
    docs = torch.randint(0, 40, (300,), generator=rng)
    words = torch.randint(0, 200, (300,), generator=rng)
    ids = torch.as_tensor(padded_bags(docs.numpy(), words.numpy(), 50, 200))
    x = torch.zeros(50, 200)
    x[docs, words] = 1.0  # a word twice in a document is still 1
    torch.manual_seed(0)
    bag, linear = BagOfWords(200, 3), torch.nn.Linear(200, 3)
    linear.load_state_dict(bag.state_dict())
    for grad_mode in (True, False):  # a minibatch and a whole evaluated split
        with torch.set_grad_enabled(grad_mode):
            assert torch.allclose(bag(ids), linear(x), atol=1e-6)
    bag(ids).pow(2).sum().backward()
    linear(x).pow(2).sum().backward()
    assert torch.allclose(bag.weight.grad, linear.weight.grad, atol=1e-5)
    absent = x.sum(0) == 0
    assert absent.any() and (bag.weight.grad[:, absent] == 0).all(), "absent words: zero gradient"


def test_sparse_text_signal_words_are_rare_in_minibatches():
    """Each class word occurs in well under 10% of the minibatches (its weights' gradient is
    zero in the others), and the most frequent words are hundreds of times more frequent."""
    from adaptbench.builtin_tasks import sparse_text

    bags, _ = sparse_text.make_documents(0)
    probs, class_words = sparse_text._world()
    frequency = torch.bincount(torch.as_tensor(bags[bags >= 0]), minlength=sparse_text.VOCAB)
    frequency = frequency.double() / bags.shape[0]  # document frequency = E[x_j^2] for 0/1 x
    signal = frequency[torch.as_tensor(class_words.ravel())]
    in_batches = 1 - (1 - signal) ** load_tasks()["sparse-text"].batch_size
    assert in_batches.mean() < 0.06 and in_batches.max() < 0.1
    assert frequency[torch.as_tensor(probs.argsort()[-10:])].mean() > 300 * signal.mean()


def test_held_out_is_false_exactly_when_val_and_test_compute_the_same_number(task):
    problem = task.build(0, CPU)
    val, test = train.evaluate(problem, problem.val)[1], train.evaluate(problem, problem.test)[1]
    assert (val == test) == (not task.held_out), (val, test)


# --- targets and lr grids come from benchmarks/tuning.py ----------------------------------------

TUNING = builtin_dir() / "tuning.json"


def test_targets_and_lr_grids_are_those_tuning_recorded(task):
    """Every claims task was tuned (benchmarks/tuning.py --json) with its current lr grid: no
    optimizer's best lr is at an edge of it, its target is the recorded rule's value, and the
    test metric's standard error is below the typical difference between tuned optimizers."""
    record = json.loads(TUNING.read_text())["default"].get(task.name)
    if record is None:
        if task.claims:
            pytest.skip(f"{task.name}: no tuning record; run benchmarks/tuning.py --tasks "
                        f"{task.name} --json")
        return
    assert task.target == pytest.approx(record["target"], rel=1e-9)
    grid = {f"{lr:g}" for lr in task.lrs}
    for optimizer, tuned in record["optimizers"].items():
        assert set(tuned["val_per_lr"]) == grid, f"{optimizer}: tuned on another lr grid"
        assert not tuned["edge"], f"{optimizer}: best lr {tuned['best_lr']} at the grid's edge"
    if task.claims and task.held_out:
        assert record["metric_se"] < record["typical_difference"]


# --- task settings that users rely on ----------------------------------------------------------


def _training_steps(task: Task, optimizer: str, lr: float, steps: int) -> list[float]:
    """The L2 norms of the parameter updates of the first `steps` training steps of a default-
    length run of `task` (stopped there)."""
    seen: list[torch.Tensor] = []

    def build(seed: int, device: torch.device) -> Problem:
        problem = task.build(seed, device)

        def before_forward(module: torch.nn.Module, args: object) -> None:
            if module.training:  # a training step; evaluations run in eval mode
                seen.append(torch.cat([p.detach().flatten() for p in module.parameters()]))

        problem.model.register_forward_pre_hook(before_forward)
        return problem

    spec = RunSpec(task.name, optimizer, lr, 0, task.steps, task.batch_size)
    with pytest.raises(train.Interrupted):
        train.execute(spec, replace(task, build=build), CPU, should_stop=lambda: len(seen) > steps)
    return [float((b - a).norm()) for a, b in zip(seen, seen[1:])]


def test_char_rnn_clipping_bounds_every_update():
    # SGD moves the weights by lr * min(|g|, clip): at a large lr the bound is reached, and the
    # same run without clipping takes a larger step.
    task = load_tasks()["char-rnn"]
    assert task.clip_grad_norm is not None
    lr = max(task.lrs)
    clipped = _training_steps(task, "sgd", lr, 30)
    free = _training_steps(replace(task, clip_grad_norm=None), "sgd", lr, 30)
    assert max(clipped) <= lr * task.clip_grad_norm * (1 + 1e-4)
    assert max(free) > lr * task.clip_grad_norm * 1.5


def test_reverse_attention_warms_up():
    task = load_tasks()["reverse-attention"]
    # a linear ramp over the first `ramp` steps: the first update is made at lr / ramp
    ramp = round(task.warmup * task.steps)
    steps = _training_steps(task, "sgd", 1.0, ramp + 5)
    assert ramp >= 10 and steps[0] < steps[ramp - 1] / 5


def test_noisy_quadratic_metric_is_the_excess_risk():
    """The metric is the expected loss over fresh examples c ~ N(0, sigma^2 / h) minus its floor
    d sigma^2 / 2: by hand for one coordinate, and by Monte Carlo with the task's own loss."""
    from adaptbench.builtin_tasks import noisy_quadratic as nq

    problem = load_tasks()["noisy-quadratic"].build(0, CPU)
    theta, (x, c) = problem.model.theta, problem.val

    def metric() -> float:
        with torch.no_grad():
            return float(problem.metric(problem.model(x), c))

    start = theta.detach().clone()
    with torch.no_grad():
        theta.zero_()
        theta[0] = 2.0  # curvature 1: excess 1/2 * 1 * 2^2
    assert metric() == pytest.approx(2.0)
    assert nq.CURVATURES[0] == 1.0

    g = torch.Generator().manual_seed(0)
    h = torch.as_tensor(nq.CURVATURES, dtype=torch.float32)
    floor = nq.DIM * nq.SIGMA**2 / 2
    for point in (start, 3 * start):
        with torch.no_grad():
            theta.copy_(point)
            means = []
            for _ in range(100):  # 100 batches of 2,000 fresh examples
                fresh = torch.randn(2000, nq.DIM, generator=g) * nq.SIGMA / h.sqrt()
                means.append(float(problem.loss(problem.model(fresh[:, :1]), fresh)))
        estimate = torch.tensor(means, dtype=torch.float64)
        se = float(estimate.std() / 10)
        assert abs(float(estimate.mean()) - floor - metric()) < 4 * se, (metric(), se)
        assert metric() > 20 * se  # the point is far enough from the optimum to tell
