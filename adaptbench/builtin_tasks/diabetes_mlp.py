"""diabetes-mlp: an MLP regressor on scikit-learn's bundled diabetes data (Efron et al. 2004).

442 patients, 10 baseline variables, target = disease progression after one year. The run seed
draws the 60/20/20 split and the initial weights; features and target are standardized with
train statistics. Model: 10 -> 16 -> 16 -> 1 MLP with ReLU, trained on mean squared error.
Metric: R^2 = 1 - MSE / Var_train(y), i.e. the coefficient of determination measured against
the train-set variance (so it is an exact mean over examples), higher is better; ordinary least
squares reaches about 0.45-0.5 on held-out data.

A demonstration, left out of the claims (``claims=False``): 442 examples leave 89 for the test
split, where the standard error of R^2 is about 0.06, three to four times the typical difference
between tuned optimizers (0.017). friedman-mlp is the regression task of the claims.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from adaptbench.tasks import Problem, Task

from ._common import make_model, mlp, split_indices, standardize, to_device


@lru_cache(maxsize=1)
def _dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return data.data.astype(np.float32), data.target.astype(np.float32)


def squared_error(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predictions (N, 1) against standardized targets (N,)."""
    return ((output.squeeze(1) - targets) ** 2).mean()


def r2(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - MSE, which is R^2 against the train variance since targets are train-standardized."""
    return 1.0 - squared_error(output, targets)


def build(seed: int, device: torch.device) -> Problem:
    """The diabetes-mlp problem for ``seed`` on ``device``."""
    x, y = _dataset()
    parts = split_indices(len(y), np.random.RandomState(seed))
    xs = standardize(*(x[idx] for idx in parts))
    ys = standardize(*(y[idx] for idx in parts))
    train, val, test = [
        (to_device(a, device, torch.float32), to_device(b, device, torch.float32))
        for a, b in zip(xs, ys)
    ]
    model = make_model(seed, device, lambda: mlp([10, 16, 16, 1]))
    return Problem(model, train, val, test, squared_error, r2)


TASKS = [
    Task(
        name="diabetes-mlp",
        task_type="regression",
        description=(
            "MLP 10-16-16-1 (ReLU) regressing disease progression on scikit-learn's diabetes "
            "data (442 patients), MSE loss; val R^2 against the train variance"
        ),
        build=build,
        metric="r2",
        higher_is_better=True,
        steps=200,
        batch_size=32,
        eval_every=25,
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
        # target: median tuned optimizer's val R^2 (benchmarks/tuning.py)
        target=0.441,
        claims=False,
    )
]
