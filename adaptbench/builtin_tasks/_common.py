"""Shared pieces for the built-in tasks: seeded splits, standardization, losses and metrics.

Conventions every built-in task follows:
- A task's *world* (a generated vocabulary, grammar, ground-truth weights, a bundled data set)
  is fixed, so every seed trains on the same problem. The run seed draws the examples, the
  train / validation / test split and the model's initial weights.
- Data are made with ``numpy.random.RandomState(seed)``; models are built on the CPU under
  ``torch.random.fork_rng`` seeded with ``seed``, then moved to the device, so the initial
  weights do not depend on the device and ``build`` leaves the global torch RNG untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Offsets that keep the streams of one seed apart (data vs. model init).
MODEL_SEED_OFFSET = 7919


def split_indices(
    n: int, rng: np.random.RandomState, fractions: tuple[float, float] = (0.6, 0.2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random train / validation / test partition of ``range(n)`` (the rest goes to test)."""
    order = rng.permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def standardize(
    train: np.ndarray, *others: np.ndarray, axis: int | tuple[int, ...] = 0
) -> list[np.ndarray]:
    """Arrays centred and scaled with the *train* mean and standard deviation."""
    mean = train.mean(axis=axis, keepdims=True)
    std = train.std(axis=axis, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    return [((a - mean) / std) for a in (train, *others)]


def to_device(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A numpy array as a contiguous tensor of ``dtype`` on ``device``."""
    return torch.as_tensor(np.ascontiguousarray(array)).to(dtype=dtype, device=device)


def splits(
    inputs: np.ndarray,
    targets: np.ndarray,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    device: torch.device,
    input_dtype: torch.dtype = torch.float32,
    target_dtype: torch.dtype = torch.long,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(inputs, targets)`` tensor pairs on the device, one per index array in ``parts``."""
    return [
        (to_device(inputs[idx], device, input_dtype), to_device(targets[idx], device, target_dtype))
        for idx in parts
    ]


def make_model(seed: int, device: torch.device, factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` built under a private RNG seeded from ``seed``, then moved to the device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + MODEL_SEED_OFFSET)
        model = factory()
    return model.to(device)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


# Losses and metrics: mean over the examples of the batch, as 0-d tensors.


def cross_entropy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy in nats; ``output`` (N, C) logits, ``targets`` (N,) class indices."""
    return F.cross_entropy(output, targets)


def accuracy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of examples whose arg-max logit is the target class."""
    return (output.argmax(dim=-1) == targets).float().mean()


def mse(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all entries (every example has the same number of entries)."""
    return F.mse_loss(output, targets)


@lru_cache(maxsize=None)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: images (1797, 8, 8) in [0, 1] and labels (1797,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    return images, data.target.astype(np.int64)


# Bags of words, for tasks whose inputs are documents.

PAD = -1  # the word id that pads a bag; Problem.extras["pad"], so that seeds' bags can stack


def padded_bags(docs: np.ndarray, words: np.ndarray, n_docs: int, vocab: int) -> np.ndarray:
    """Each document's distinct words as a row of word ids, padded with -1: ``(n_docs, longest)``
    int64, from the token pairs ``(docs[i], words[i])``. A compact binary bag of words."""
    keys = np.sort(docs.astype(np.int64) * vocab + words)  # (doc, word) pairs, sorted by doc
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # each pair once
    doc, word = keys // vocab, keys % vocab
    sizes = np.bincount(doc, minlength=n_docs)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    bags = np.full((n_docs, max(1, int(sizes.max()))), PAD, dtype=np.int64)
    bags[doc, np.arange(keys.size) - starts[doc]] = word
    return bags


class BagOfWords(nn.Linear):
    """``nn.Linear`` on binary bag-of-words vectors ``x`` (N, in_features), read as padded word ids
    (N, L) (`padded_bags`). The weight's gradient is that of ``W x + b`` for the 0/1 inputs, so
    it is exactly zero in the columns of the words absent from the batch."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # read once: a dense twin recomputes its weight on every read
        present = (ids >= 0).to(weight.dtype)  # padding (-1) adds 0 at word 0
        ids = ids.clamp(min=0)
        if torch.is_grad_enabled():  # a minibatch: the 0/1 matrix is small, F.linear the fastest
            x = weight.new_zeros(ids.shape[0], self.in_features).scatter_add_(1, ids, present)
            return F.linear(x, weight, self.bias)
        # a whole split, no gradient: sum the columns of the words present, no (N, V) matrix
        table = weight.t().contiguous()  # (V, out): embedding_bag is slow on a strided table
        return F.embedding_bag(ids, table, mode="sum", per_sample_weights=present) + self.bias
