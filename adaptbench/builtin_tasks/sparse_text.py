"""sparse-text: topic classification of generated documents whose label lives in rare words.

The vocabulary has 2,000 words with Zipf-Mandelbrot frequencies p(r) ∝ (r + 2.7)^-1.07. Each of
the 4 classes owns 40 words drawn from the rarest half of the vocabulary. A document has a
log-normal length (median 60 words) of background words drawn from the Zipf law, shared by all
classes and carrying no label information, plus Poisson(2) *signal* tokens: each comes from its
own class's words with probability 0.85 and from a random class's words otherwise. A signal
word therefore appears in about 1% of the documents, and ~14% of documents carry no signal at
all, which caps the reachable accuracy near 0.8 (a tuned logistic regression gets ~0.71).

Features are TF-IDF (log(1 + count) times the train-set IDF, rows scaled to unit L2 norm), given
to the model as a dense tensor. The model is a one-hidden-layer MLP (2000 -> 32 -> 4, ReLU).
Rare features get small, infrequent gradients: the setting where per-coordinate step sizes
(AdaGrad, Duchi et al. 2011) are meant to help.
"""

from __future__ import annotations

import numpy as np
import torch

from adaptbench.tasks import Problem, Task

from ._common import accuracy, cross_entropy, make_model, mlp, split_indices, splits

WORLD_SEED = 1_000_003  # fixes the vocabulary and the class words for every run seed
VOCAB = 2000
CLASSES = 4
WORDS_PER_CLASS = 40
DOCUMENTS = 3000
HIDDEN = 32


def _world() -> tuple[np.ndarray, np.ndarray]:
    """Zipf word probabilities (VOCAB,) and each class's signal words (CLASSES, WORDS_PER_CLASS)."""
    rng = np.random.RandomState(WORLD_SEED)
    ranks = np.arange(VOCAB)
    probs = (ranks + 2.7) ** -1.07
    probs /= probs.sum()
    rare = rng.permutation(np.arange(VOCAB // 2, VOCAB))[: CLASSES * WORDS_PER_CLASS]
    # Signal words are ten times rarer as background than their rank says, so that
    # most of their occurrences carry the label.
    probs[rare] *= 0.1
    probs /= probs.sum()
    return probs, rare.reshape(CLASSES, WORDS_PER_CLASS)


def make_documents(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Word counts (DOCUMENTS, VOCAB) and labels (DOCUMENTS,) drawn from ``seed``."""
    probs, class_words = _world()
    rng = np.random.RandomState(seed)
    labels = rng.randint(CLASSES, size=DOCUMENTS)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(60), 0.5, DOCUMENTS))), 10, 300)
    lengths = lengths.astype(np.int64)
    doc_of_word = np.repeat(np.arange(DOCUMENTS), lengths)
    words = rng.choice(VOCAB, size=int(lengths.sum()), p=probs)

    n_signal = rng.poisson(2.0, size=DOCUMENTS)
    doc_of_signal = np.repeat(np.arange(DOCUMENTS), n_signal)
    own = rng.rand(doc_of_signal.size) < 0.85
    signal_class = np.where(own, labels[doc_of_signal], rng.randint(CLASSES, size=own.size))
    signal_words = class_words[signal_class, rng.randint(WORDS_PER_CLASS, size=own.size)]

    counts = np.zeros((DOCUMENTS, VOCAB), dtype=np.float32)
    np.add.at(counts, (doc_of_word, words), 1.0)
    np.add.at(counts, (doc_of_signal, signal_words), 1.0)
    return counts, labels


def tfidf(counts: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    """log(1 + count) times the smoothed train-set IDF, each row scaled to unit L2 norm."""
    n = len(train_idx)
    df = (counts[train_idx] > 0).sum(axis=0)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    x = np.log1p(counts) * idf.astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def build(seed: int, device: torch.device) -> Problem:
    """The sparse-text problem for ``seed`` on ``device``."""
    counts, labels = make_documents(seed)
    parts = split_indices(DOCUMENTS, np.random.RandomState(seed + 1))
    features = tfidf(counts, parts[0]).astype(np.float32)
    train, val, test = splits(features, labels, parts, device)
    model = make_model(seed, device, lambda: mlp([VOCAB, HIDDEN, CLASSES]))
    return Problem(model, train, val, test, cross_entropy, accuracy)


TASKS = [
    Task(
        name="sparse-text",
        task_type="sparse",
        description=(
            "1-hidden-layer MLP (2000-32-4) on TF-IDF bags of words of generated Zipfian "
            "documents whose class signal sits in rare words; val accuracy"
        ),
        build=build,
        metric="accuracy",
        higher_is_better=True,
        steps=600,
        batch_size=32,
        eval_every=50,
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        target=0.65,
    )
]
