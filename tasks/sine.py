"""An example task file: copy it, change it, point --tasks-dir at its folder."""

import math

import torch

from adaptbench.tasks import Problem, Task


def build(seed: int, device: torch.device) -> Problem:
    g = torch.Generator().manual_seed(seed)          # data and split follow from the seed
    x = torch.rand(1200, 1, generator=g) * 2 * math.pi
    y = torch.sin(x).squeeze(1) + 0.05 * torch.randn(1200, generator=g)
    torch.manual_seed(seed)                          # so do the initial weights
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(output.squeeze(1), target)

    x, y = x.to(device), y.to(device)
    return Problem(
        model=model.to(device),
        train=(x[:800], y[:800]), val=(x[800:1000], y[800:1000]), test=(x[1000:], y[1000:]),
        loss=mse, metric=mse,
    )


TASKS = [
    Task(
        name="sine-mlp",                 # unique; lowercase letters, digits and '-'
        task_type="regression",          # reports group by it
        description="MLP 1-32-1 (tanh) fitting sin(x) + noise; MSE",
        build=build,
        metric="mse",
        higher_is_better=False,
        steps=300, batch_size=32, eval_every=50,
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),   # the grid `--lr-grid` and `--study` presets use
        target=0.05,                           # validation value that counts as "reached"
    )
]
