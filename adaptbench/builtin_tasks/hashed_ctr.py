"""hashed-ctr: click-through-rate prediction from hashed categorical features (generated).

Each impression has 8 categorical fields with 4 to 50,000 values; within a field the values
follow a Zipf law (p(v) ∝ (v + 1)^-1.1), so most values are rare. The click probability follows
a fixed ground truth: logit = -1.8 + sum_f w_f[v_f] + sum over 4 field pairs of <u_f[v_f], u_g[v_g]>
(per-value weights w ~ N(0, 0.6^2), rank-4 interaction factors u ~ N(0, 0.5^2)), giving a
click rate near 28% (base-rate log loss 0.59, Bayes log loss 0.42). 100,000 impressions are
split 60/20/20; the default budget is about one pass over the train split, as CTR models are
usually trained. Every (field, value) is hashed into one table of 2^14 buckets (the hashing
trick of Weinberger et al. 2009, collisions included).

Model (wide & deep, Cheng et al. 2016, in miniature): a per-bucket weight summed over the
fields (``nn.EmbeddingBag``, the "wide" logistic part) plus an MLP 64 -> 32 -> 1 over the 8
concatenated 8-dimensional bucket embeddings. Embedding gradients are dense tensors that are
zero outside the buckets of the batch, so every optimizer applies; a batch touches few rows.
Metric: log loss (binary cross-entropy, nats), lower is better.

hashed-ctr-dense is its dense twin (`_twins.densify` on both bucket tables, dim 0): the same
impressions, model and initial function with the tables trained in a random rotated basis, so
every bucket's coordinates get a gradient in every batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, splits
from ._twins import densify

WORLD_SEED = 3_000_017
CARDINALITIES = (4, 12, 50, 200, 1000, 5000, 20000, 50000)
PAIRS = ((0, 3), (1, 5), (2, 6), (4, 7))
BUCKETS = 2**14
EMBED = 8
EXAMPLES = 100_000


def _world() -> dict[str, list[np.ndarray]]:
    """The fixed ground truth: value frequencies, weights, factors and hash buckets per field."""
    rng = np.random.RandomState(WORLD_SEED)
    world: dict[str, list[np.ndarray]] = {"probs": [], "w": [], "u": [], "bucket": []}
    for card in CARDINALITIES:
        probs = (np.arange(card) + 1.0) ** -1.1
        world["probs"].append(probs / probs.sum())
        world["w"].append(rng.normal(0.0, 0.6, card))
        world["u"].append(rng.normal(0.0, 0.5, (card, 4)))
        world["bucket"].append(rng.randint(BUCKETS, size=card))
    return world


def make_impressions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed feature ids (EXAMPLES, fields) and clicks (EXAMPLES,) drawn from ``seed``."""
    world = _world()
    rng = np.random.RandomState(seed)
    values = np.stack(
        [rng.choice(card, size=EXAMPLES, p=p) for card, p in zip(CARDINALITIES, world["probs"])],
        axis=1,
    )
    logit = np.full(EXAMPLES, -1.8)
    for f in range(len(CARDINALITIES)):
        logit += world["w"][f][values[:, f]]
    for f, g in PAIRS:
        logit += (world["u"][f][values[:, f]] * world["u"][g][values[:, g]]).sum(axis=1)
    clicks = (rng.rand(EXAMPLES) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    hashed = np.stack([world["bucket"][f][values[:, f]] for f in range(len(CARDINALITIES))], 1)
    return hashed.astype(np.int64), clicks


class WideAndDeep(nn.Module):
    """Logit of a click from hashed ids (N, fields): a wide sum of weights plus a small MLP."""

    def __init__(self, fields: int) -> None:
        super().__init__()
        self.wide = nn.EmbeddingBag(BUCKETS, 1, mode="sum")
        nn.init.zeros_(self.wide.weight)
        self.embed = nn.Embedding(BUCKETS, EMBED)
        nn.init.normal_(self.embed.weight, std=0.1)
        self.deep = nn.Sequential(nn.Linear(fields * EMBED, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        deep = self.deep(self.embed(ids).flatten(1))  # (N, fields * EMBED) -> (N, 1)
        return (self.wide(ids) + deep).squeeze(1)  # (N,)


def log_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (nats) of click logits (N,) against clicks (N,) in {0, 1}."""
    return F.binary_cross_entropy_with_logits(output, targets)


def build(seed: int, device: torch.device) -> Problem:
    """The hashed-ctr problem for ``seed`` on ``device``."""
    hashed, clicks = make_impressions(seed)
    parts = split_indices(EXAMPLES, np.random.RandomState(seed + 1))
    train, val, test = splits(hashed, clicks, parts, device, torch.long, torch.float32)
    model = make_model(seed, device, lambda: WideAndDeep(len(CARDINALITIES)))
    return Problem(model, train, val, test, log_loss, log_loss)


def build_dense(seed: int, device: torch.device) -> Problem:
    """hashed-ctr's problem for ``seed`` with both bucket tables trained in a rotated basis."""
    problem = build(seed, device)
    densify(problem.model, {"wide": 0, "embed": 0})
    return problem


SETTINGS = dict(
    metric="logloss",
    higher_is_better=False,
    steps=500,
    batch_size=128,
    eval_every=50,
    lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0),
)
TASKS = [
    Task(
        name="hashed-ctr",
        task_type="sparse",
        description=(
            "wide & deep click model (hashed 2^14-bucket embeddings, MLP 64-32-1) on generated "
            "impressions (100,000) with 8 Zipfian categorical fields; val log loss"
        ),
        build=build,
        twin="hashed-ctr-dense",
        target=0.496,  # target: median tuned optimizer's val log loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
    Task(
        name="hashed-ctr-dense",
        task_type="dense",
        description=(
            "dense twin of hashed-ctr: the same impressions and model with both bucket tables "
            "trained in a random rotated basis; val log loss"
        ),
        build=build_dense,
        target=0.496,  # target: median tuned optimizer's val log loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
]
