"""Dense twins of sparse tasks: the same data and model, trained in a randomly rotated basis.

A sparse task's gradient is sparse in the coordinates of its input layer (a bag-of-words weight
matrix, an embedding table): a rare feature's coordinates get a non-zero gradient only in the
batches where it occurs. Its dense twin keeps the examples, the model and the budget, and trains
that layer's weight ``W`` (``n`` rows along the rotated dimension) through a fixed orthogonal
change of basis::

    W = S Q P,    Q = H D

where ``P`` is the parameter the optimizer sees (``m = 2^k >= n`` rows), ``H`` the normalised
``m``-point Walsh–Hadamard matrix, ``D`` a fixed random ±1 diagonal and ``S`` keeps the first
``n`` rows. Equivalently the model reads the inputs ``x' = Q^T S^T x``, in which every
coordinate is non-zero in every example. Nothing else changes:

- the function class and the optimum are the same (``S Q`` maps onto every ``W``);
- the initial ``W`` is the sparse task's own (``P0 = Q^T S^T W0``);
- SGD, momentum and weight decay are rotation-equivariant: since ``S Q Q^T S^T = I``, a step on
  ``P`` moves ``W`` exactly as the same step on ``W`` would, so SGD's trajectory on the twin is
  the sparse task's (up to rounding);
- per-coordinate methods (AdaGrad, RMSprop, Adam) are not: on the twin every coordinate sees
  every batch, so whatever they gain from sparse, axis-aligned gradients is gone.

"Advantage on the sparse task minus advantage on its twin" therefore measures what sparsity
itself is worth to an optimizer, with everything else held equal.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

TWIN_SEED = 4_000_037  # the fixed signs D of every twin's rotation


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """The normalised Walsh–Hadamard transform of ``x`` along dim 0 (length a power of 2).

    Orthogonal and symmetric: ``hadamard(hadamard(x)) == x``."""
    m = x.shape[0]
    rest = x.shape[1:]
    y = x.reshape(m, -1)
    h = 1
    while h < m:
        y = y.reshape(m // (2 * h), 2, h, -1)
        y = torch.stack((y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]), dim=1)
        h *= 2
    return y.reshape(m, *rest) / math.sqrt(m)


class Rotation(nn.Module):
    """The parametrization ``P -> W = S H D P`` along ``dim`` (see the module docstring)."""

    def __init__(self, n: int, dim: int = 0, seed: int = TWIN_SEED) -> None:
        super().__init__()
        self.n, self.dim = n, dim
        self.m = 1 << max(0, (n - 1).bit_length())
        g = torch.Generator().manual_seed(seed + n)
        signs = torch.randint(0, 2, (self.m,), generator=g).float() * 2 - 1
        self.register_buffer("signs", signs)

    def _signs(self, x: torch.Tensor) -> torch.Tensor:
        return self.signs.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        p = p.movedim(self.dim, 0)
        w = hadamard(p * self._signs(p))[: self.n]
        return w.movedim(0, self.dim)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        w = w.movedim(self.dim, 0)
        padded = torch.cat([w, w.new_zeros(self.m - self.n, *w.shape[1:])])
        return (hadamard(padded) * self._signs(padded)).movedim(0, self.dim).contiguous()


def densify(model: nn.Module, layers: dict[str, int]) -> nn.Module:
    """``model`` with the ``weight`` of each named submodule trained in a rotated basis.

    ``layers`` maps a submodule's name (as in ``model.get_submodule``) to the dimension of its
    weight that indexes the sparse coordinates: 0 for an embedding table (one row per id), 1 for
    a linear layer's weight (one column per input feature). Returns the same model, changed in
    place; its initial function is unchanged."""
    for name, dim in layers.items():
        module = model.get_submodule(name)
        weight = module.weight
        parametrize.register_parametrization(
            module, "weight", Rotation(weight.shape[dim], dim), unsafe=True)
    return model
