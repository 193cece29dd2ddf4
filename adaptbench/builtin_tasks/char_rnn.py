"""char-rnn: a character-level LSTM language model on text from a generated word-level grammar.

The language: 13 characters ('a'-'l' and space); a fixed lexicon of 60 words of 2-7 letters;
sentences are a first-order Markov chain over words whose transition rows are drawn from a
Dirichlet(0.1) (so each word has a few likely successors), written with single spaces. A model
must learn spelling (nearly deterministic inside a word) and word transitions (uncertain at
each space); the source's entropy rate is about 0.6 bits per character, and windows that start
mid-word cost a little more. The run seed draws the text (15,600 windows of 33 characters:
9,600 train, 3,000 validation, 3,000 test) and the initial weights. The default run (300 steps
of 32 windows) reads each train window once, so it measures how fast an optimizer learns, not
how it overfits; on 3,000 test windows the standard error of the test bpc is 0.004, a seventh
of the typical difference between tuned optimizers (0.028).

Model (Karpathy's char-rnn, in miniature): embedding 13 -> 16, one LSTM layer of 64 units
(Hochreiter & Schmidhuber 1997), linear read-out to 13 logits at each position; inputs are 32
characters, targets the same window shifted by one. Loss: cross-entropy in nats; metric: bits
per character (the same cross-entropy / ln 2), lower is better.

Gradient clipping (``clip_grad_norm=1.0``: the global L2 norm of the gradient is capped at 1
before every optimizer's step), as recurrent networks are usually trained (Pascanu et al. 2013;
Karpathy's char-rnn clamps each gradient entry at 5 instead). At each optimizer's tuned lr the
norm's median is 0.12-0.16 and its 99th percentile 0.18-0.35, so the cap leaves those runs alone
but for the spikes of the first few steps of adam, rmsprop and adagrad (up to 1.9); at too
large an lr the norm grows to 10-70, and the cap bounds every update of SGD to lr x 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, splits

WORLD_SEED = 4_000_037
LETTERS = 12
VOCAB = LETTERS + 1  # letters, then the space
SPACE = LETTERS
WORDS = 60
WINDOW = 32
TRAIN, VAL, TEST = 9600, 3000, 3000  # windows; the default run reads each train window once
WINDOWS = TRAIN + VAL + TEST


def _world() -> tuple[list[np.ndarray], np.ndarray]:
    """The fixed lexicon (WORDS arrays of letter ids) and word transition matrix (WORDS, WORDS)."""
    rng = np.random.RandomState(WORLD_SEED)
    lexicon = [rng.randint(LETTERS, size=rng.randint(2, 8)) for _ in range(WORDS)]
    transitions = rng.dirichlet(np.full(WORDS, 0.1), size=WORDS)
    return lexicon, transitions


def make_text(seed: int, length: int) -> np.ndarray:
    """At least ``length`` character ids of generated text, starting after a random word."""
    lexicon, transitions = _world()
    cumulative = transitions.cumsum(axis=1)
    rng = np.random.RandomState(seed)
    word = rng.randint(WORDS)
    pieces, total = [], 0
    space = np.array([SPACE])
    while total < length:
        u = rng.rand()
        word = min(int(np.searchsorted(cumulative[word], u)), WORDS - 1)
        pieces += [lexicon[word], space]
        total += len(lexicon[word]) + 1
    return np.concatenate(pieces)


class CharRNN(nn.Module):
    """Next-character logits (N, T, VOCAB) from character ids (N, T)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.rnn = nn.LSTM(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embed(ids))  # (N, T, hidden)
        return self.head(h)


def cross_entropy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy in nats; output (N, T, V), targets (N, T)."""
    return F.cross_entropy(output.flatten(0, 1), targets.flatten())


def bits_per_character(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in bits per character (every example has WINDOW characters)."""
    return cross_entropy(output, targets) / math.log(2.0)


def build(seed: int, device: torch.device) -> Problem:
    """The char-rnn problem for ``seed`` on ``device``."""
    text = make_text(seed, WINDOWS * (WINDOW + 1))
    windows = text[: WINDOWS * (WINDOW + 1)].reshape(WINDOWS, WINDOW + 1)
    fractions = (TRAIN / WINDOWS, VAL / WINDOWS)
    parts = split_indices(WINDOWS, np.random.RandomState(seed + 1), fractions)
    train, val, test = splits(windows[:, :-1], windows[:, 1:], parts, device, torch.long)
    model = make_model(seed, device, CharRNN)
    return Problem(model, train, val, test, cross_entropy, bits_per_character)


TASKS = [
    Task(
        name="char-rnn",
        task_type="sequence",
        description=(
            "character-level LSTM language model (embed 16, 64 units, gradient norm clipped at 1) "
            "on text from a generated 60-word Markov grammar, 32-character windows; val bits per "
            "character"
        ),
        build=build,
        metric="bpc",
        higher_is_better=False,
        steps=300,
        batch_size=32,
        eval_every=50,
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0),
        # target: median tuned optimizer's val bpc (benchmarks/tuning.py)
        target=0.842,
        clip_grad_norm=1.0,
    )
]
