"""digits-autoencoder: an MLP autoencoder that reconstructs scikit-learn's 8x8 digits.

The 1,797 images of ``sklearn.datasets.load_digits`` are flattened to 64 pixels in [0, 1]
(pixel / 16, no further scaling, so the metric is in pixel units); the run seed draws the
60/20/20 split and the initial weights. Model: 64 -> 32 -> 8 -> 32 -> 64 with ReLU on the hidden
layers and a linear output: an 8-number bottleneck. For scale: the mean train image has a
validation MSE near 0.073 (a run that collapses to it plateaus there), PCA with 8 components,
the best linear code, about 0.025. Loss and metric: mean squared reconstruction error per
pixel, lower is better.
"""

from __future__ import annotations

import numpy as np
import torch

from adaptbench.tasks import Problem, Task

from ._common import digits, make_model, mlp, mse, split_indices, to_device


def build(seed: int, device: torch.device) -> Problem:
    """The digits-autoencoder problem for ``seed`` on ``device``."""
    images, _ = digits()
    pixels = images.reshape(len(images), 64)
    parts = split_indices(len(pixels), np.random.RandomState(seed))
    train, val, test = [
        (x, x) for x in (to_device(pixels[idx], device, torch.float32) for idx in parts)
    ]
    model = make_model(seed, device, lambda: mlp([64, 32, 8, 32, 64]))
    return Problem(model, train, val, test, mse, mse)


TASKS = [
    Task(
        name="digits-autoencoder",
        task_type="vision",
        description=(
            "MLP autoencoder 64-32-8-32-64 (ReLU) reconstructing scikit-learn's 8x8 digits "
            "(pixels in [0, 1]); val reconstruction MSE per pixel"
        ),
        build=build,
        metric="mse",
        higher_is_better=False,
        steps=1000,
        batch_size=64,
        eval_every=50,
        lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0),
        # target: median tuned optimizer's val MSE (benchmarks/tuning.py)
        target=0.0291,
    )
]
