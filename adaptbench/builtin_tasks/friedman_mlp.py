"""friedman-mlp: an MLP regressor on Friedman's first synthetic regression problem (Friedman 1991).

y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + e, with x uniform on [0, 1]^10 (x6-x10
are irrelevant inputs) and noise e ~ N(0, 1): scikit-learn's ``make_friedman1``. The function is
the fixed world; the run seed draws the 30,000 examples (20,000 train, 5,000 validation, 5,000
test) and the initial weights. Inputs and target are standardized with train statistics. Model:
10 -> 64 -> 64 -> 1 MLP with ReLU, trained on mean squared error. Metric: R^2 = 1 - MSE /
Var_train(y) (the target is train-standardized, so it is an exact mean over examples), higher is
better. The noise caps R^2 near 0.96; a linear model reaches about 0.72, tuned optimizers
0.945-0.951 (validation). On the 5,000 test examples the standard error of R^2 is 0.0007, a
quarter of the typical difference between tuned optimizers (0.0027).
"""

from __future__ import annotations

import torch

from adaptbench.tasks import Problem, Task

from ._common import make_model, mlp, standardize, to_device

FEATURES = 10
NOISE = 1.0
TRAIN, VAL, TEST = 20000, 5000, 5000


def squared_error(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predictions (N, 1) against standardized targets (N,)."""
    return ((output.squeeze(1) - targets) ** 2).mean()


def r2(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - MSE, which is R^2 against the train variance since targets are train-standardized."""
    return 1.0 - squared_error(output, targets)


def build(seed: int, device: torch.device) -> Problem:
    """The friedman-mlp problem for ``seed`` on ``device``."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(TRAIN + VAL + TEST, n_features=FEATURES, noise=NOISE, random_state=seed)
    cuts = (slice(0, TRAIN), slice(TRAIN, TRAIN + VAL), slice(TRAIN + VAL, None))  # i.i.d. rows
    xs = standardize(*(x[c] for c in cuts))
    ys = standardize(*(y[c] for c in cuts))
    train, val, test = [
        (to_device(a, device, torch.float32), to_device(b, device, torch.float32))
        for a, b in zip(xs, ys)
    ]
    model = make_model(seed, device, lambda: mlp([FEATURES, 64, 64, 1]))
    return Problem(model, train, val, test, squared_error, r2)


TASKS = [
    Task(
        name="friedman-mlp",
        task_type="regression",
        description=(
            "MLP 10-64-64-1 (ReLU) regressing Friedman's first function (sin, quadratic and "
            "linear terms, 5 irrelevant inputs, noise sd 1), 20,000/5,000/5,000 examples; val R^2"
        ),
        build=build,
        metric="r2",
        higher_is_better=True,
        steps=1000,
        batch_size=64,
        eval_every=50,
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        # target: median tuned optimizer's val R^2 (benchmarks/tuning.py)
        target=0.947,
    )
]
