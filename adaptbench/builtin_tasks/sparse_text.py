"""sparse-text: topic classification of generated documents whose label lives in rare words.

The vocabulary has 4,096 words with Zipf-Mandelbrot frequencies p(r) ∝ (r + 2.7)^-1.07. Each of
the 4 classes owns 500 words drawn from ranks 819 to 4,095. A document has a log-normal length
(median 60 words) of background words drawn from the Zipf law, shared by all classes and
carrying no label information (a class word is 20 times rarer there than its rank says), plus
Poisson(2.5) *signal* tokens: each comes from its own class's words with probability 0.85 and
from a random class's words otherwise. 10,000 documents, split 60/20/20. About 90% of the
documents hold a word of their own class; counting the class words of a document with the true
word lists classifies 85% of them correctly.

Features are a binary bag of words (1 if the word occurs in the document), with no IDF weighting
and no row normalisation: those rescale features per word, the job per-coordinate step sizes
(AdaGrad, Duchi et al. 2011) are meant to do, so they would hide the difference under test.
With binary features E[x_j^2] is word j's document frequency: 0.76 for the 10 most frequent
words, 0.0015 for a signal word (about 500 times less). A signal word occurs in 4.5% of the
32-document minibatches on average (under 10% for every one of them); its weights get a
non-zero gradient only then. Counts would add nothing: a rare word occurs once.

The model is a one-hidden-layer MLP (4096 -> 32 -> 4, ReLU) whose first layer reads the bags as
padded word ids (`BagOfWords`, the same function as ``nn.Linear`` on the 0/1 vectors).

sparse-text-dense is its dense twin (`_twins.densify` on the first layer, dim 1): the same
documents, model and initial function with the first layer's weight trained in a random
rotated basis, so every coordinate gets a gradient in every batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptbench.tasks import Problem, Task

from ._common import (PAD, BagOfWords, accuracy, cross_entropy, make_model, padded_bags, split_indices,
                      splits)
from ._twins import densify

WORLD_SEED = 1_000_003  # fixes the vocabulary and the class words for every run seed
VOCAB = 4096  # a power of 2: the twin's rotation needs no padding
CLASSES = 4
WORDS_PER_CLASS = 500
SIGNAL_TOKENS = 2.5  # mean signal tokens per document (Poisson)
DOCUMENTS = 10_000
HIDDEN = 32


def _world() -> tuple[np.ndarray, np.ndarray]:
    """Zipf word probabilities (VOCAB,) and each class's signal words (CLASSES, WORDS_PER_CLASS)."""
    rng = np.random.RandomState(WORLD_SEED)
    ranks = np.arange(VOCAB)
    probs = (ranks + 2.7) ** -1.07
    probs /= probs.sum()
    rare = rng.permutation(np.arange(VOCAB // 5, VOCAB))[: CLASSES * WORDS_PER_CLASS]
    # Signal words are 20 times rarer as background than their rank says, so that most of their
    # occurrences carry the label.
    probs[rare] *= 0.05
    probs /= probs.sum()
    return probs, rare.reshape(CLASSES, WORDS_PER_CLASS)


def make_documents(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary bags of words as padded word ids (DOCUMENTS, longest) and labels (DOCUMENTS,)."""
    probs, class_words = _world()
    rng = np.random.RandomState(seed)
    labels = rng.randint(CLASSES, size=DOCUMENTS)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(60), 0.5, DOCUMENTS))), 10, 300)
    lengths = lengths.astype(np.int64)
    doc_of_word = np.repeat(np.arange(DOCUMENTS), lengths)
    words = rng.choice(VOCAB, size=int(lengths.sum()), p=probs)

    n_signal = rng.poisson(SIGNAL_TOKENS, size=DOCUMENTS)
    doc_of_signal = np.repeat(np.arange(DOCUMENTS), n_signal)
    own = rng.rand(doc_of_signal.size) < 0.85
    signal_class = np.where(own, labels[doc_of_signal], rng.randint(CLASSES, size=own.size))
    signal_words = class_words[signal_class, rng.randint(WORDS_PER_CLASS, size=own.size)]

    docs = np.concatenate([doc_of_word, doc_of_signal])
    bags = padded_bags(docs, np.concatenate([words, signal_words]), DOCUMENTS, VOCAB)
    return bags, labels


def _build(seed: int, device: torch.device, dense: bool) -> Problem:
    bags, labels = make_documents(seed)
    parts = split_indices(DOCUMENTS, np.random.RandomState(seed + 1))
    train, val, test = splits(bags, labels, parts, device, torch.long)
    model = make_model(seed, device, lambda: nn.Sequential(
        BagOfWords(VOCAB, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES)))
    if dense:
        model = densify(model, {"0": 1})
    return Problem(model, train, val, test, cross_entropy, accuracy, extras={"pad": PAD})


def build(seed: int, device: torch.device) -> Problem:
    """The sparse-text problem for ``seed`` on ``device``."""
    return _build(seed, device, dense=False)


def build_dense(seed: int, device: torch.device) -> Problem:
    """The sparse-text-dense problem (first layer in a rotated basis) for ``seed`` on ``device``."""
    return _build(seed, device, dense=True)


SETTINGS = dict(
    metric="accuracy",
    higher_is_better=True,
    steps=600,
    batch_size=32,
    eval_every=50,
    lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
)

TASKS = [
    Task(
        name="sparse-text",
        task_type="sparse",
        description=(
            "1-hidden-layer MLP (4096-32-4) on binary bags of words of generated Zipfian "
            "documents (10,000) whose class signal sits in rare words; val accuracy"
        ),
        build=build,
        twin="sparse-text-dense",
        target=0.696,  # target: median tuned optimizer's val accuracy (benchmarks/tuning.py)
        **SETTINGS,
    ),
    Task(
        name="sparse-text-dense",
        task_type="dense",
        description=(
            "dense twin of sparse-text: the same documents and model with the first layer "
            "trained in a random rotated basis; val accuracy"
        ),
        build=build_dense,
        target=0.371,  # target: median tuned optimizer's val accuracy (benchmarks/tuning.py)
        **SETTINGS,
    ),
]
