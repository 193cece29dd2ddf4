"""reverse-attention: a tiny Transformer encoder that learns to reverse a sequence of digits.

Inputs are 10 tokens drawn uniformly from 10 symbols; the target at position i is the input
token at position 9 - i, so every output must attend to one other position chosen by position
alone (an algorithmic probe in the spirit of the copy / reverse tasks of Graves et al. 2014 and
Vaswani et al. 2017). With 10^10 possible inputs the 3,600 training sequences cannot be
memorized. The run seed draws the sequences (6,000, split 60/20/20) and the initial weights.

Model: token and learned position embeddings (width 32), one pre-norm Transformer block
(4-head self-attention without mask, MLP 32 -> 64 -> 32, GELU, no dropout), a final LayerNorm
and a linear read-out to 10 logits per position. Loss: token cross-entropy (nats).

Metric: the same token cross-entropy, lower is better. Learning is a phase transition: the loss
sits on a plateau near 1.8 nats (token accuracy about 0.3) until attention locks onto the
mirrored position, then falls by three orders of magnitude within 50 steps, and the token
accuracy is 1.0. At their tuned lr every optimizer gets there within the default budget, so
the token accuracy cannot tell them apart; the cross-entropy at the end of the budget still
does (about 1e-5 to 5e-4 nats, lower the earlier the transition), and is a mean over every
position of 1,200 test sequences.

Warm-up: the task's default schedule ramps the lr up linearly over the first 5% of the steps
(``warmup=0.05``, the share of the warmup-cosine schedule), as Transformers are trained
(Vaswani et al. 2017), on top of whatever schedule a run names: in the first steps the adaptive
methods' second-moment estimates rest on a few gradients and their updates are erratic (Liu et
al. 2020), and attention logits are most easily blown up then.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, splits

SYMBOLS = 10
LENGTH = 10
SEQUENCES = 6000
WIDTH = 32
HEADS = 4
BLOCKS = 1


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.norm2 = nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential(
            nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(WIDTH, dim=2)
        # (N, T, W) -> (N, heads, T, W / heads)
        q, k, v = (z.view(n, t, HEADS, WIDTH // HEADS).transpose(1, 2) for z in (q, k, v))
        # Written out: at T = 10 this is faster on a CPU than the fused kernel's backward.
        weights = torch.softmax(q @ k.transpose(-2, -1) / (WIDTH // HEADS) ** 0.5, dim=-1)
        y = weights @ v  # (N, heads, T, W / heads)
        x = x + self.proj(y.transpose(1, 2).reshape(n, t, WIDTH))
        return x + self.mlp(self.norm2(x))


class Reverser(nn.Module):
    """Logits (N, T, SYMBOLS) for the reversed sequence from token ids (N, T)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(SYMBOLS, WIDTH)
        self.positions = nn.Parameter(0.02 * torch.randn(LENGTH, WIDTH))
        self.blocks = nn.Sequential(*(Block() for _ in range(BLOCKS)))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, SYMBOLS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions  # (N, T, W)
        return self.head(self.norm(self.blocks(x)))


def cross_entropy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy (nats); output (N, T, V), targets (N, T)."""
    return F.cross_entropy(output.flatten(0, 1), targets.flatten())


def build(seed: int, device: torch.device) -> Problem:
    """The reverse-attention problem for ``seed`` on ``device``."""
    rng = np.random.RandomState(seed)
    sequences = rng.randint(SYMBOLS, size=(SEQUENCES, LENGTH))
    parts = split_indices(SEQUENCES, rng)
    train, val, test = splits(sequences, sequences[:, ::-1], parts, device, torch.long, torch.long)
    model = make_model(seed, device, Reverser)
    return Problem(model, train, val, test, cross_entropy, cross_entropy)


TASKS = [
    Task(
        name="reverse-attention",
        task_type="sequence",
        description=(
            "1-block pre-norm Transformer encoder (width 32, 4 heads, 5% lr warm-up) reversing "
            "sequences of 10 random digits; val token cross-entropy"
        ),
        build=build,
        metric="xent",
        higher_is_better=False,
        steps=300,
        batch_size=64,
        eval_every=25,
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0),
        # target: median tuned optimizer's val token cross-entropy (benchmarks/tuning.py)
        target=0.000216,
        warmup=0.05,
    )
]
