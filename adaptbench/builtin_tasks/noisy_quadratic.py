"""noisy-quadratic: the noisy quadratic model (NQM) of Schaul et al. 2013 and Zhang et al. 2019.

The loss of one example c is l(theta; c) = 1/2 sum_i h_i (theta_i - c_i)^2 in d = 32 dimensions,
with curvatures h_i log-spaced from 1 down to 1e-3 (condition number 1,000) and examples
c ~ N(0, diag(sigma^2 / h)), sigma = 1. A batch of B examples then gives the exact gradient
H theta plus noise of covariance H sigma^2 / B: the gradient noise is proportional to the
curvature, as in Zhang et al.'s analysis ("Which Algorithmic Choices Matter at Which Batch
Sizes?", NeurIPS 2019). The start point theta_0 = (1 + 0.1 z) / sqrt(d h) (z ~ N(0, I) from the
seed) puts an equal share of the initial loss on every direction, so the flat directions decide
how far a run gets.

The training set holds 20,000 sampled examples (the run seed draws them); its empirical minimum
has an excess risk of d sigma^2 / (2 n) = 8e-4 on average. The objective is the training loss,
whose expectation is the noise floor d sigma^2 / 2 = 16 plus the excess risk; tuned runs end
with an excess of 0.004 to 0.05, so a loss measured on samples (training or held-out) is mostly
noise. The metric is therefore the exact excess risk 1/2 theta^T H theta (the expected loss over
fresh examples minus its floor), in closed form from the parameters; lower is better. It is the
same number on every split, so held-out statistics leave this task out (``held_out=False``).
``extras["trajectory_params"]`` is theta.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import to_device

DIM = 32
CURVATURES = np.logspace(0.0, -3.0, DIM)
SIGMA = 1.0
TRAIN, VAL, TEST = 20000, 1000, 1000


class Point(nn.Module):
    """The parameter vector theta (d,), returned for every example: (N, any) -> (N, d)."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(start.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(x.shape[0], -1)


def build(seed: int, device: torch.device) -> Problem:
    """The noisy-quadratic problem for ``seed`` on ``device``."""
    rng = np.random.RandomState(seed)
    scale = SIGMA / np.sqrt(CURVATURES)
    samples = [rng.normal(size=(n, DIM)) * scale for n in (TRAIN, VAL, TEST)]
    start = (1.0 + 0.1 * rng.normal(size=DIM)) / np.sqrt(DIM * CURVATURES)
    h = to_device(CURVATURES, device, torch.float32)

    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # (N, d) -> mean over examples of 1/2 sum_i h_i (theta_i - c_i)^2
        return 0.5 * ((output - targets) ** 2 * h).sum(dim=1).mean()

    def excess_risk(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # E_c l(theta; c) - d sigma^2 / 2; the examples c do not enter
        return 0.5 * (output**2 * h).sum(dim=1).mean()

    splits = [
        (torch.zeros(len(c), 1, device=device), to_device(c, device, torch.float32))
        for c in samples
    ]
    model = Point(torch.as_tensor(start, dtype=torch.float32)).to(device)
    return Problem(
        model,
        *splits,
        loss=loss,
        metric=excess_risk,
        extras={"trajectory_params": model.theta, "curvatures": h},
    )


TASKS = [
    Task(
        name="noisy-quadratic",
        task_type="convex",
        description=(
            "noisy quadratic model (Schaul et al. 2013; Zhang et al. 2019): d=32, curvatures "
            "1 to 1e-3, gradient noise covariance H/B; excess risk 1/2 theta^T H theta"
        ),
        build=build,
        metric="excess_risk",
        higher_is_better=False,
        steps=1000,
        batch_size=32,
        eval_every=50,
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        # target: median tuned optimizer's val excess risk (benchmarks/tuning.py)
        target=0.00798,
        held_out=False,
    )
]
