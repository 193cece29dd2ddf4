"""digits-cnn: a small convolutional network on scikit-learn's bundled 8x8 handwritten digits.

The 1,797 images of ``sklearn.datasets.load_digits`` (UCI optdigits test set, Alpaydin & Kaynak
1998) are scaled to [0, 1] and standardized with the train-set pixel mean and standard deviation
(one scalar each); the run seed draws the 60/20/20 split and the initial weights. Model:
conv 3x3 (1 -> 16) - ReLU - conv 3x3 (16 -> 32) - ReLU - 2x2 max-pool - linear (512 -> 10).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import accuracy, cross_entropy, digits, make_model, split_indices, splits, standardize


def cnn() -> nn.Module:
    """The digits CNN: (N, 1, 8, 8) images -> (N, 10) logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),  # (N, 16, 8, 8)
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),  # (N, 32, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 32, 4, 4)
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def build(seed: int, device: torch.device) -> Problem:
    """The digits-cnn problem for ``seed`` on ``device``."""
    images, labels = digits()
    parts = split_indices(len(labels), np.random.RandomState(seed))
    # One mean and std over all train pixels: per-pixel scaling would blow up the
    # near-constant border pixels.
    x_all = standardize(images[parts[0]], images, axis=(0, 1, 2))[1][:, None]  # (N, 1, 8, 8)
    train, val, test = splits(x_all, labels, parts, device)
    model = make_model(seed, device, cnn)
    return Problem(model, train, val, test, cross_entropy, accuracy)


TASKS = [
    Task(
        name="digits-cnn",
        task_type="vision",
        description=(
            "CNN (2 conv 3x3 layers of 16 and 32 channels, max-pool, linear) on scikit-learn's "
            "8x8 digits (1,797 images, 10 classes); val accuracy"
        ),
        build=build,
        metric="accuracy",
        higher_is_better=True,
        steps=400,
        batch_size=64,
        eval_every=25,
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        target=0.97,
    )
]
