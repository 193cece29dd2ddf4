"""Dense twins (builtin_tasks/_twins.py), gradient clipping and warm-up as task settings, and the
example task file in tasks/."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from adaptbench.builtin_tasks._twins import densify, hadamard
from adaptbench.optimizers import lr_factor
from adaptbench.spec import RunSpec
from adaptbench.tasks import Problem, Task, load_tasks
from adaptbench.train import execute, gradient_density

ROOT = Path(__file__).resolve().parent.parent


def test_hadamard_matches_the_explicit_matrix():
    # Sylvester's construction, written out: H_1 = [1], H_2k = [[H, H], [H, -H]], / sqrt(m)
    h = torch.ones(1, 1)
    while h.shape[0] < 8:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(8, 3)
    assert torch.allclose(hadamard(x), h @ x / math.sqrt(8), atol=1e-6)
    assert torch.allclose(hadamard(hadamard(x)), x, atol=1e-6)
    along_rows = hadamard(x.t().contiguous(), dim=1)
    assert torch.allclose(along_rows, (h @ x / math.sqrt(8)).t(), atol=1e-6)


def test_the_hadamard_gradient_is_the_transform_of_the_gradient():
    x = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hadamard, (x,))
    assert torch.autograd.gradcheck(lambda t: hadamard(t, 1), (x.t().detach().requires_grad_(),))


def _sparse_batches(n_features: int = 300, n: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [((torch.rand(n, n_features, generator=g) < 0.02).float(),
             torch.randint(0, 3, (n,), generator=g)) for _ in range(30)]


@pytest.mark.parametrize("opt, same", [("sgd", True), ("momentum", True), ("adagrad", False),
                                       ("adam", False)])
def test_sgd_runs_the_same_on_a_twin_and_adaptive_methods_do_not(opt, same):
    torch.manual_seed(1)
    sparse = torch.nn.Sequential(torch.nn.Linear(300, 3))
    dense = densify(copy.deepcopy(sparse), {"0": 1})
    assert torch.allclose(sparse[0].weight, dense[0].weight, atol=1e-6)  # same initial function
    for model in (sparse, dense):
        kwargs = {"momentum": 0.9} if opt == "momentum" else {}
        cls = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
               "adam": torch.optim.Adam}[opt]
        optimizer = cls(model.parameters(), lr=0.1, **kwargs)
        for x, y in _sparse_batches():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    gap = (sparse[0].weight - dense[0].weight).abs().max().item()
    assert (gap < 1e-4) == same, gap


def test_a_twin_has_every_gradient_coordinate_non_zero():
    torch.manual_seed(2)
    emb = torch.nn.Sequential(torch.nn.Embedding(1000, 4))
    twin = densify(copy.deepcopy(emb), {"0": 0})
    ids = torch.randint(0, 1000, (16,))
    for model in (emb, twin):
        model(ids).pow(2).sum().backward()
    share = [(p.grad != 0).float().mean().item() for p in (emb[0].weight, *twin.parameters())]
    assert share[0] <= 16 / 1000 + 1e-6 and share[1] == 1.0


def _toy(seed: int, device: torch.device) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 5, generator=g)
    y = x @ torch.arange(1.0, 6.0) * 100
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 1)

    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(out.squeeze(1), t)

    return Problem(model, (x, y), (x, y), (x, y), loss, loss)


def test_clip_changes_the_run_and_caps_the_step():
    base = Task("toy", "regression", "toy", _toy, metric="mse", higher_is_better=False, steps=1,
                batch_size=256, eval_every=1)
    spec = RunSpec("toy", "sgd", 1e-3, 0, 1, 256)
    free = execute(spec, base, torch.device("cpu"))
    clipped = execute(spec, Task(**{**base.__dict__, "clip_grad_norm": 0.5}), torch.device("cpu"))
    start = execute(RunSpec("toy", "sgd", 1e-12, 0, 1, 256), base, torch.device("cpu"))
    # with clipping the parameters move by lr * 0.5 at most, so the loss barely changes
    assert abs(clipped.final["final_train_loss"] - start.final["final_train_loss"]) < \
        abs(free.final["final_train_loss"] - start.final["final_train_loss"]) / 10


def test_task_warmup_ramps_the_lr_unless_the_schedule_warms_up():
    assert [round(lr_factor("constant", s, 100, 0.1), 3) for s in (0, 4, 9, 10, 50)] == \
        [0.1, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor("warmup-cosine", 0, 100, 0.1) == lr_factor("warmup-cosine", 0, 100)
    with pytest.raises(ValueError, match="warmup"):
        Task("toy", "regression", "toy", _toy, warmup=1.5)


def test_gradient_density_of_a_dense_and_a_sparse_model():
    def sparse_build(seed: int, device: torch.device) -> Problem:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, 500, (400,), generator=g)
        torch.manual_seed(seed)
        model = torch.nn.Embedding(500, 2)

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return out.pow(2).mean()

        return Problem(model, (ids, ids), (ids, ids), (ids, ids), loss, loss)

    sparse = Task("toy-sparse", "sparse", "toy", sparse_build, batch_size=10)
    # a batch of 10 ids touches at most 10 of 500 rows
    assert 0 < gradient_density(sparse) <= 10 / 500
    dense = Task("toy", "regression", "toy", _toy, batch_size=32)
    assert gradient_density(dense) == 1.0


def test_the_readme_example_task_is_the_file_in_tasks():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("This is `tasks/sine.py`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert block in (ROOT / "tasks" / "sine.py").read_text()
    assert "sine-mlp" in load_tasks([ROOT / "tasks"])
