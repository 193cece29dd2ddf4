"""bow-logreg: logistic regression on binary bags of words whose label lives in rare words.

After the sparse-feature experiment of Kingma & Ba (2015, Fig. 1: logistic regression on
10,000-word bag-of-words vectors of IMDB reviews), on generated documents with a known ground
truth. The vocabulary has 10,000 words with Zipf-Mandelbrot frequencies p(r) ∝ (r + 2.7)^-1.07;
a document has a log-normal length (median 60 tokens) of words drawn from that law, and its
features are binary (1 if the word occurs). The label is drawn from a fixed logistic model,
P(y = 1 | x) = sigmoid(b + w* . x), whose weight vector is sparse and sits in the rare tail:
w* = ±1.5 on 2,500 words drawn from ranks 2,000 to 9,999 (document frequency 0.05%-0.3%, three
of them per document on average), weak N(0, 0.3^2) weights on the 1,000 most frequent words,
zero elsewhere; b makes the classes about even. Base-rate log loss 0.693, the ground truth's
0.36. 50,000 documents, split 40/30/30: the default budget reads 19,200 train documents, and
large validation and test splits keep the log loss's standard error well below the differences
between optimizers, which are small on the dense twin.

The model is logistic regression, a single linear layer (10,000 -> 1) reading the bags as padded
word ids (`BagOfWords`): a convex problem, so with a long enough budget every optimizer reaches
the same optimum. The default budget is not long enough: 600 minibatches of 32 (under one pass,
no document seen twice) show a signal word 20 times on average (it occurs in 4% of the
minibatches, and its weight gets a gradient only then), while the frequent words, in nearly
every document, set the curvature and so the largest stable step of a method with one step size
for every coordinate. How an optimizer scales the steps of rare coordinates therefore decides
the val log loss (binary cross-entropy, nats), lower is better.

bow-logreg-dense is its dense twin (`_twins.densify` on the weight, dim 1): the same documents
and initial function with the weight trained in a random rotated basis, so every coordinate
gets a gradient in every batch and no coordinate is rare.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adaptbench.tasks import Problem, Task

from ._common import PAD, BagOfWords, make_model, padded_bags, split_indices, splits
from ._twins import densify

WORLD_SEED = 5_000_011  # fixes the ground-truth weights for every run seed
VOCAB = 10_000
LENGTH = 60  # median tokens per document
SIGNAL_WORDS = 2500  # words of rank >= SIGNAL_FROM with weight ±SIGNAL_WEIGHT
SIGNAL_FROM = 2000
SIGNAL_WEIGHT = 1.5
FREQUENT = 1000  # the most frequent words, with weak N(0, FREQUENT_SD^2) weights
FREQUENT_SD = 0.3
EXAMPLES = 50_000
SPLIT = (0.4, 0.3)  # train, val; test the rest: one pass needs 19,200 train documents


def _world() -> tuple[np.ndarray, np.ndarray, float]:
    """Zipf word probabilities (VOCAB,), the ground-truth weights (VOCAB,) and bias."""
    rng = np.random.RandomState(WORLD_SEED)
    probs = (np.arange(VOCAB) + 2.7) ** -1.07
    probs /= probs.sum()
    weights = np.zeros(VOCAB)
    weights[:FREQUENT] = rng.normal(0.0, FREQUENT_SD, FREQUENT)
    signal = rng.permutation(np.arange(SIGNAL_FROM, VOCAB))[:SIGNAL_WORDS]
    weights[signal] = SIGNAL_WEIGHT * rng.choice([-1.0, 1.0], SIGNAL_WORDS)
    document_frequency = 1 - (1 - probs) ** LENGTH
    return probs, weights, -float(weights @ document_frequency)  # bias: classes about even


def make_documents(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary bags of words as padded word ids (EXAMPLES, longest) and labels (EXAMPLES,)."""
    probs, weights, bias = _world()
    rng = np.random.RandomState(seed)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(LENGTH), 0.5, EXAMPLES))), 10, 300)
    docs = np.repeat(np.arange(EXAMPLES), lengths.astype(np.int64))
    bags = padded_bags(docs, rng.choice(VOCAB, size=docs.size, p=probs), EXAMPLES, VOCAB)
    logit = bias + np.append(weights, 0.0)[bags].sum(1)  # padding (-1) reads the appended 0
    labels = (rng.rand(EXAMPLES) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return bags, labels


def log_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (nats) of logits (N, 1) against labels (N,) in {0, 1}."""
    return F.binary_cross_entropy_with_logits(output.squeeze(1), targets)


def _build(seed: int, device: torch.device, dense: bool) -> Problem:
    bags, labels = make_documents(seed)
    parts = split_indices(EXAMPLES, np.random.RandomState(seed + 1), SPLIT)
    train, val, test = splits(bags, labels, parts, device, torch.long, torch.float32)
    model = make_model(seed, device, lambda: BagOfWords(VOCAB, 1))
    if dense:
        model = densify(model, {"": 1})
    return Problem(model, train, val, test, log_loss, log_loss, extras={"pad": PAD})


def build(seed: int, device: torch.device) -> Problem:
    """The bow-logreg problem for ``seed`` on ``device``."""
    return _build(seed, device, dense=False)


def build_dense(seed: int, device: torch.device) -> Problem:
    """The bow-logreg-dense problem (weight in a rotated basis) for ``seed`` on ``device``."""
    return _build(seed, device, dense=True)


SETTINGS = dict(
    metric="logloss",
    higher_is_better=False,
    steps=600,
    batch_size=32,
    eval_every=50,
    lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
)

TASKS = [
    Task(
        name="bow-logreg",
        task_type="sparse",
        description=(
            "logistic regression on binary bags of words (10,000-word Zipfian vocabulary) of "
            "generated documents (50,000) labelled by sparse weights on rare words; val log loss"
        ),
        build=build,
        twin="bow-logreg-dense",
        target=0.574,  # target: median tuned optimizer's val log loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
    Task(
        name="bow-logreg-dense",
        task_type="dense",
        description=(
            "dense twin of bow-logreg: the same documents and model with the weight trained in "
            "a random rotated basis; val log loss"
        ),
        build=build_dense,
        target=0.623,  # target: median tuned optimizer's val log loss (benchmarks/tuning.py)
        **SETTINGS,
    ),
]
