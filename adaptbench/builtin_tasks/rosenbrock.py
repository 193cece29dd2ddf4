"""rosenbrock: minimize the 2-D Rosenbrock function (Rosenbrock 1960) from a seeded start point.

f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum f = 0 at (1, 1), reached along a curved, narrow
valley. The start is the classic (-1.2, 1) plus N(0, 0.05^2) jitter from the seed (f ~ 24).
The "model" holds the point; it ignores its input and returns f for every example, and the
data are dummy zeros, so batches do not matter and the run is noise-free. Metric: f at the
current point, lower is better. ``extras["trajectory_params"]`` is the point (2,), for
trajectory plots; ``extras["optimum"]`` is (1, 1).

A demonstration (for trajectory plots), not evidence: one noise-free 2-D function says little
about training networks, so the claims leave it out (``claims=False``); its validation and test
metric are the same number, so held-out statistics leave it out too (``held_out=False``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

START = (-1.2, 1.0)


class Rosenbrock(nn.Module):
    """The point (x, y) as a parameter; forward returns f(x, y) for each input row: (N,)."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.point = nn.Parameter(start.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        px, py = self.point[0], self.point[1]
        value = (1 - px) ** 2 + 100 * (py - px**2) ** 2
        return value.expand(x.shape[0])


def mean_value(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The function value (every row of ``output`` holds the same f)."""
    return output.mean()


def build(seed: int, device: torch.device) -> Problem:
    """The rosenbrock problem for ``seed`` on ``device``."""
    rng = np.random.RandomState(seed)
    start = torch.tensor(START, dtype=torch.float32) + torch.as_tensor(
        rng.normal(0.0, 0.05, 2), dtype=torch.float32
    )
    model = Rosenbrock(start).to(device)
    splits = [
        (torch.zeros(n, 1, device=device), torch.zeros(n, device=device)) for n in (64, 16, 16)
    ]
    extras = {
        "trajectory_params": model.point,
        "trajectory_every": 10,  # steps between recorded points, for smooth trajectory plots
        "optimum": torch.tensor([1.0, 1.0], device=device),
    }
    return Problem(model, *splits, loss=mean_value, metric=mean_value, extras=extras)


TASKS = [
    Task(
        name="rosenbrock",
        task_type="nonconvex",
        description=(
            "2-D Rosenbrock function (1-x)^2 + 100(y-x^2)^2 from (-1.2, 1) + seeded jitter, "
            "noise-free; metric f(x, y)"
        ),
        build=build,
        metric="f",
        higher_is_better=False,
        steps=2000,
        batch_size=1,
        eval_every=100,
        lrs=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        target=1e-2,
        held_out=False,
        claims=False,
    )
]
