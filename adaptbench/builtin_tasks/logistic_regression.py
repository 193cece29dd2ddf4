"""logistic-regression: L2-regularized logistic regression on the Wisconsin breast-cancer data.

scikit-learn's bundled ``load_breast_cancer`` (569 tumours, 30 features, Street et al. 1993).
The run seed draws the 60/20/20 split and the (small, random) initial weights; features are
standardized with train statistics. The objective is the mean binary cross-entropy plus
(1e-2 / 2) * ||w||^2 on the weights (not the bias): strongly convex, but ill-conditioned because
the features are highly correlated (radius, perimeter and area, ...). Metric: the validation log
loss without the penalty, lower is better.

A demonstration, left out of the claims (``claims=False``): every optimizer reaches the same
optimum. Tuned at the default budget (benchmarks/tuning.py, 2 seeds), the five claims optimizers
end at validation log losses of 0.0639-0.0656, a typical difference of 0.001 between them on the
test split, against a standard error of 0.013 for the test log loss on its 114 examples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, standardize, to_device

L2 = 1e-2


@lru_cache(maxsize=1)
def _dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data.astype(np.float32), data.target.astype(np.float32)


def log_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (nats) of logits (N, 1) against labels (N,) in {0, 1}."""
    return F.binary_cross_entropy_with_logits(output.squeeze(1), targets)


def build(seed: int, device: torch.device) -> Problem:
    """The logistic-regression problem for ``seed`` on ``device``."""
    x, y = _dataset()
    parts = split_indices(len(y), np.random.RandomState(seed))
    xs = standardize(*(x[idx] for idx in parts))
    train, val, test = [
        (to_device(a, device, torch.float32), to_device(y[idx], device, torch.float32))
        for a, idx in zip(xs, parts)
    ]
    model = make_model(seed, device, lambda: nn.Linear(x.shape[1], 1))

    def objective(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return log_loss(output, targets) + 0.5 * L2 * model.weight.pow(2).sum()

    return Problem(model, train, val, test, objective, log_loss)


TASKS = [
    Task(
        name="logistic-regression",
        task_type="convex",
        description=(
            "logistic regression with L2 penalty 1e-2 on scikit-learn's breast-cancer data "
            "(569 x 30, standardized); val log loss"
        ),
        build=build,
        metric="logloss",
        higher_is_better=False,
        steps=400,
        batch_size=32,
        eval_every=25,
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        # target: median tuned optimizer's val log loss (benchmarks/tuning.py)
        target=0.0656,
        claims=False,
    )
]
