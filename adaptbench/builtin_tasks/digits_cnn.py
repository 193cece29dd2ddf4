"""digits-cnn: a small convolutional network on shifted, noisy copies of scikit-learn's 8x8 digits.

The 1,797 images of ``sklearn.datasets.load_digits`` (UCI optdigits test set, Alpaydin & Kaynak
1998), scaled to [0, 1], are the fixed world. The run seed splits the *images* 60/20/20 (1,078 /
359 / 360), then draws variants of each: 8 per train image, 4 per validation and test image
(8,624 / 1,436 / 1,440 examples), each shifted by up to one pixel in each direction (zero fill)
and with N(0, 0.25^2) noise on every pixel. Pixels are standardized with the train mean and
standard deviation (one scalar each). Variants of one image stay in one split, so validation and
test measure new handwriting, not new noise on seen images; test examples of one image are
consecutive, so contiguous chunks of the test set (benchmarks/tuning.py's standard error) hold
whole images. Model: conv 3x3 (1 -> 16) - ReLU - conv 3x3 (16 -> 32) - ReLU - 2x2 max-pool -
linear (512 -> 10). Loss: cross-entropy; metric: accuracy, higher is better.

Why the variants: on the 360 clean test images tuned optimizers all reach 0.98-0.99 accuracy,
a typical difference of 0.003 against a standard error of 0.006 for the test accuracy. On the
noisy variants tuned optimizers reach 0.83-0.87 (validation), a typical difference of 0.027,
and the standard error of the test accuracy (over images) is 0.013.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import accuracy, cross_entropy, digits, make_model, split_indices, standardize, to_device

VARIANTS = (8, 4, 4)  # per image of the train, validation and test split
SHIFT = 1  # pixels, in each direction
NOISE = 0.25  # standard deviation of the pixel noise; pixels are in [0, 1]


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


def variants(images: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """``k`` copies of each image (N, 8, 8), each shifted by up to SHIFT pixels in each direction
    (zero fill) and with N(0, NOISE^2) pixel noise: (N * k, 8, 8), the copies of one image
    consecutive."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
    dy, dx = rng.randint(0, 2 * SHIFT + 1, size=(2, n, k))  # offsets into the padded image
    rows = np.arange(8)[None, None, :, None] + dy[:, :, None, None]  # (N, k, 8, 1)
    cols = np.arange(8)[None, None, None, :] + dx[:, :, None, None]  # (N, k, 1, 8)
    out = padded[np.arange(n)[:, None, None, None], rows, cols]  # (N, k, 8, 8)
    out = out + rng.normal(0.0, NOISE, size=out.shape)
    return out.reshape(n * k, 8, 8).astype(np.float32)


def build(seed: int, device: torch.device) -> Problem:
    """The digits-cnn problem for ``seed`` on ``device``."""
    images, labels = digits()
    rng = np.random.RandomState(seed)
    parts = split_indices(len(labels), rng)
    xs = [variants(images[idx], k, rng) for idx, k in zip(parts, VARIANTS)]
    ys = [np.repeat(labels[idx], k) for idx, k in zip(parts, VARIANTS)]
    # One mean and std over all train pixels: per-pixel scaling would blow up the
    # near-constant border pixels.
    xs = [x[:, None] for x in standardize(*xs, axis=(0, 1, 2))]  # (N, 1, 8, 8)
    train, val, test = [(to_device(x, device, torch.float32), to_device(y, device, torch.long))
                        for x, y in zip(xs, ys)]
    model = make_model(seed, device, cnn)
    return Problem(model, train, val, test, cross_entropy, accuracy)


TASKS = [
    Task(
        name="digits-cnn",
        task_type="vision",
        description=(
            "CNN (2 conv 3x3 layers of 16 and 32 channels, max-pool, linear) on shifted, noisy "
            "copies of scikit-learn's 8x8 digits (splits by image: 8,624/1,436/1,440); val accuracy"
        ),
        build=build,
        metric="accuracy",
        higher_is_better=True,
        steps=400,
        batch_size=64,
        eval_every=50,
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        # target: median tuned optimizer's val accuracy (benchmarks/tuning.py)
        target=0.864,
    )
]
