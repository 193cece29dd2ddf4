"""zipf-mf: matrix factorisation of generated ratings whose item popularity follows a Zipf law.

A fixed ground truth over 2,000 users and 4,000 items gives each (user, item) the rating
μ + b_u + b_i + <p_u, q_i>, with μ = 3.5, user biases b_u ~ N(0, 0.3²), item biases
b_i ~ N(0, 0.5²) and rank-4 factors whose product has variance 0.49. An observed rating adds
noise ~ N(0, 0.5²): the best possible mean squared error is 0.25, knowing the biases alone gives
0.74 and predicting the mean rating 1.07. Which pairs are rated follows the popularity of items,
a Zipf law p(r) ∝ (r + 10)^-1 over the item ranks, and a milder law for the activity of users,
p(r) ∝ (r + 1)^-0.5; each rated pair appears once. 150,000 ratings are split 60/20/20: in the
90,000 training ratings an item of rank 100 has about 140 ratings, one of rank 1,000 about 14,
over half of the items fewer than 10 (they get 15% of the held-out ratings), and a user 14 to 550.

The model is biased matrix factorisation (Koren, Bell and Volinsky 2009): the predicted rating
is μ̂ + b̂_u + b̂_i + <p̂_u, q̂_i> with 16 factors, μ̂ a learned offset (starting at the mean
training rating) and each user's (item's) factors and bias one row of a user (item) embedding
table. The loss is the squared error plus the usual L2 penalty on the rows a rating touches,
0.05 (|p̂_u|² + |q̂_i|² + b̂_u² + b̂_i²), the same for every optimizer; the metric is the mean
squared error of held-out ratings. A batch touches the rows of its few hundred users and items
only (14% of the coordinates), so the gradient of each table is zero outside them: rare items
get infrequent updates.

zipf-mf-dense is its dense twin (builtin_tasks/_twins.py): the same ratings, model, penalty and
budget, with both tables trained in a randomly rotated basis, so every coordinate moves every
step.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, splits
from ._twins import densify

WORLD_SEED = 6_000_023  # fixes the ground-truth ratings for every run seed
USERS = 2000
ITEMS = 4000
TRUE_RANK = 4
FACTOR_SD = (0.49 / TRUE_RANK) ** 0.25  # the interaction has variance 0.49
RATINGS = 150_000
NOISE = 0.5
FACTORS = 16
L2 = 0.05


def _world() -> dict[str, np.ndarray]:
    """The fixed ground truth: user and item frequencies, biases and factors."""
    rng = np.random.RandomState(WORLD_SEED)
    users = (np.arange(USERS) + 1.0) ** -0.5
    items = (np.arange(ITEMS) + 10.0) ** -1.0
    return {
        "user_probs": users / users.sum(),
        "item_probs": items / items.sum(),
        "user_bias": rng.normal(0.0, 0.3, USERS),
        "item_bias": rng.normal(0.0, 0.5, ITEMS),
        "user_factors": rng.normal(0.0, FACTOR_SD, (USERS, TRUE_RANK)),
        "item_factors": rng.normal(0.0, FACTOR_SD, (ITEMS, TRUE_RANK)),
    }


def make_ratings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rated pairs (RATINGS, 2) of (user, item) ids and their ratings (RATINGS,)."""
    world = _world()
    rng = np.random.RandomState(seed)
    pairs = np.zeros((0, 2), dtype=np.int64)
    while len(pairs) < RATINGS:  # draw until RATINGS distinct pairs, keeping the draw order
        n = RATINGS * 13 // 10
        more = np.stack([rng.choice(USERS, size=n, p=world["user_probs"]),
                         rng.choice(ITEMS, size=n, p=world["item_probs"])], axis=1)
        pairs = np.concatenate([pairs, more])
        _, first = np.unique(pairs[:, 0] * ITEMS + pairs[:, 1], return_index=True)
        pairs = pairs[np.sort(first)]
    pairs = pairs[:RATINGS]
    u, i = pairs[:, 0], pairs[:, 1]
    truth = (3.5 + world["user_bias"][u] + world["item_bias"][i]
             + (world["user_factors"][u] * world["item_factors"][i]).sum(axis=1))
    return pairs, (truth + rng.normal(0.0, NOISE, RATINGS)).astype(np.float32)


class BiasedMF(nn.Module):
    """Per rated pair (N, 2): the predicted rating and the squared norm of its two rows, (N, 2).

    Each row of ``users`` (``items``) is FACTORS factors followed by the bias."""

    def __init__(self, mean: float) -> None:
        super().__init__()
        self.users = nn.Embedding(USERS, FACTORS + 1)
        self.items = nn.Embedding(ITEMS, FACTORS + 1)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.mean = nn.Parameter(torch.tensor(mean))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        u, i = self.users(pairs[:, 0]), self.items(pairs[:, 1])  # (N, FACTORS + 1) each
        rating = self.mean + (u[:, :-1] * i[:, :-1]).sum(1) + u[:, -1] + i[:, -1]
        return torch.stack([rating, u.pow(2).sum(1) + i.pow(2).sum(1)], dim=1)


def penalised_mse(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error of the predicted ratings plus L2 times the squared norm of their rows."""
    return (output[:, 0] - targets).pow(2).mean() + L2 * output[:, 1].mean()


def mse(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted ratings (``output[:, 0]``)."""
    return (output[:, 0] - targets).pow(2).mean()


def _build(seed: int, device: torch.device, dense: bool) -> Problem:
    pairs, ratings = make_ratings(seed)
    parts = split_indices(RATINGS, np.random.RandomState(seed + 1))
    train, val, test = splits(pairs, ratings, parts, device, torch.long, torch.float32)
    mean = float(ratings[parts[0]].mean())
    model = make_model(seed, device, lambda: BiasedMF(mean))
    if dense:
        model = densify(model, {"users": 0, "items": 0})
    return Problem(model, train, val, test, penalised_mse, mse)


def build(seed: int, device: torch.device) -> Problem:
    """The zipf-mf problem for ``seed`` on ``device``."""
    return _build(seed, device, dense=False)


def build_dense(seed: int, device: torch.device) -> Problem:
    """The zipf-mf-dense problem (both tables in a rotated basis) for ``seed`` on ``device``."""
    return _build(seed, device, dense=True)


SETTINGS = dict(
    metric="mse",
    higher_is_better=False,
    steps=500,
    batch_size=512,
    eval_every=50,
    lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
)

TASKS = [
    Task(
        name="zipf-mf",
        task_type="sparse",
        description=(
            "biased matrix factorisation (16 factors, 2000 users x 4000 items) of generated "
            "ratings (150,000) with Zipfian item popularity; val MSE"
        ),
        build=build,
        twin="zipf-mf-dense",
        target=0.528,  # target: median tuned optimizer's val mse (benchmarks/tuning.py)
        **SETTINGS,
    ),
    Task(
        name="zipf-mf-dense",
        task_type="dense",
        description=(
            "dense twin of zipf-mf: the same ratings and model with both embedding tables "
            "trained in a randomly rotated basis; val MSE"
        ),
        build=build_dense,
        target=0.573,  # target: median tuned optimizer's val mse (benchmarks/tuning.py)
        **SETTINGS,
    ),
]
