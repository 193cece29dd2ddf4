"""skipgram: word embeddings by skip-gram with negative sampling on a generated Zipfian corpus.

The vocabulary has 4,000 words with Zipf-Mandelbrot frequencies p(r) ∝ (r + 2.7)^-1.07 (the
law of sparse-text). Each word belongs to one of 12 topics: every run of 12 consecutive ranks
gives one word to each topic, so the topics are about equally frequent. The corpus is given by
its (centre, context) pairs, as a skip-gram window would cut them from running text: the centre
word follows the Zipf law, and the context word is drawn from the centre word's topic (with the
Zipf law restricted to the topic) with probability 0.5, else from the whole Zipf law. Both
words of a pair are therefore Zipf-distributed, and a word's topic shows only in what it
co-occurs with: a word of rank 100 is the centre of about 160 of the 120,000 training pairs,
one of rank 1,000 of about 15.

Each example is one pair and its k = 5 negative words, drawn from the unigram law raised to the
power 0.75 when the data are made (Mikolov et al. 2013, "Distributed representations of words
and phrases"; a negative may repeat the context word, as in word2vec's sampler), so the loss is
a fixed function of the batch. The model has the two tables of word2vec, centre ("input") and
context ("output") embeddings of 16 dimensions; a candidate's score is the dot product of the
centre's input vector and the candidate's output vector. Loss and metric: the negative-sampling
loss -log σ(s_context) - Σ_j log σ(-s_negative_j) in nats, the metric its mean over held-out
examples: about 4.16 at the initial weights, 2.57 for the best scores that know only word
frequencies, and 2.09 for the true log-odds log(P(c | w) / (k P_neg(c))) of the generating law.
A batch touches only the rows of the words it holds (a fifth of the coordinates), so the
gradient of each table is zero outside them: the infrequent updates of rare words that
per-coordinate step sizes (AdaGrad, Duchi et al. 2011) were designed for.

skipgram-dense is its dense twin (builtin_tasks/_twins.py): the same examples, model and budget,
with both tables trained in a randomly rotated basis, so every coordinate moves every step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import make_model, split_indices, splits
from ._twins import densify

WORLD_SEED = 5_000_011  # fixes the topics of the words for every run seed
VOCAB = 4000
TOPICS = 12
TOPICAL = 0.5  # the share of context words drawn from the centre word's topic
NEGATIVES = 5
PAIRS = 200_000
DIM = 16


def _world() -> tuple[np.ndarray, np.ndarray]:
    """Zipf word probabilities (VOCAB,) and each word's topic (VOCAB,)."""
    rng = np.random.RandomState(WORLD_SEED)
    probs = (np.arange(VOCAB) + 2.7) ** -1.07
    probs /= probs.sum()
    # One word of each block of TOPICS consecutive ranks per topic: topics of equal mass.
    blocks = -(-VOCAB // TOPICS)
    topic = np.concatenate([rng.permutation(TOPICS) for _ in range(blocks)])[:VOCAB]
    return probs, topic


def make_pairs(seed: int) -> np.ndarray:
    """Examples (PAIRS, 2 + NEGATIVES) of word ids: centre, context, negatives."""
    probs, topic = _world()
    rng = np.random.RandomState(seed)
    centre = rng.choice(VOCAB, size=PAIRS, p=probs)
    context = rng.choice(VOCAB, size=PAIRS, p=probs)
    topical = np.flatnonzero(rng.rand(PAIRS) < TOPICAL)
    for t in range(TOPICS):
        mine = topical[topic[centre[topical]] == t]
        words = np.flatnonzero(topic == t)
        context[mine] = rng.choice(words, size=mine.size, p=probs[words] / probs[words].sum())
    noise = probs**0.75
    negatives = rng.choice(VOCAB, size=(PAIRS, NEGATIVES), p=noise / noise.sum())
    return np.concatenate([centre[:, None], context[:, None], negatives], axis=1)


class SkipGram(nn.Module):
    """Scores (N, 1 + k) of each example's context and negatives: <centre vector, output vector>."""

    def __init__(self) -> None:
        super().__init__()
        self.centre = nn.Embedding(VOCAB, DIM)
        self.context = nn.Embedding(VOCAB, DIM)
        nn.init.normal_(self.centre.weight, std=0.1)
        nn.init.normal_(self.context.weight, std=0.1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        centre = self.centre(ids[:, 0])  # (N, DIM)
        candidates = self.context(ids[:, 1:])  # (N, 1 + k, DIM)
        return torch.einsum("nd,nkd->nk", centre, candidates)


def sgns_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative-sampling loss (nats): binary log loss summed over the 1 + k candidates of an
    example (targets (N, 1 + k): 1 for the context word, 0 for the negatives), mean over N."""
    return F.binary_cross_entropy_with_logits(output, targets, reduction="none").sum(1).mean()


def _build(seed: int, device: torch.device, dense: bool) -> Problem:
    ids = make_pairs(seed)
    labels = np.zeros((PAIRS, 1 + NEGATIVES), dtype=np.float32)
    labels[:, 0] = 1.0
    parts = split_indices(PAIRS, np.random.RandomState(seed + 1))
    train, val, test = splits(ids, labels, parts, device, torch.long, torch.float32)
    model = make_model(seed, device, SkipGram)
    if dense:
        model = densify(model, {"centre": 0, "context": 0})
    return Problem(model, train, val, test, sgns_loss, sgns_loss)


def build(seed: int, device: torch.device) -> Problem:
    """The skipgram problem for ``seed`` on ``device``."""
    return _build(seed, device, dense=False)


def build_dense(seed: int, device: torch.device) -> Problem:
    """The skipgram-dense problem (both tables in a rotated basis) for ``seed`` on ``device``."""
    return _build(seed, device, dense=True)


SETTINGS = dict(
    metric="sgns-loss",
    higher_is_better=False,
    steps=400,
    batch_size=512,
    eval_every=50,
    lrs=(3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0),
)

TASKS = [
    Task(
        name="skipgram",
        task_type="sparse",
        description=(
            "skip-gram with 5 negatives (two 4000 x 16 embedding tables) on generated word pairs "
            "(200,000) of a Zipfian 12-topic corpus; val negative-sampling loss"
        ),
        build=build,
        twin="skipgram-dense",
        target=2.3,  # target: median tuned optimizer's val sgns-loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
    Task(
        name="skipgram-dense",
        task_type="dense",
        description=(
            "dense twin of skipgram: the same pairs and model with both embedding tables trained "
            "in a randomly rotated basis; val negative-sampling loss"
        ),
        build=build_dense,
        target=2.73,  # target: median tuned optimizer's val sgns-loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
]
