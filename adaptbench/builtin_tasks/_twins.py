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
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

TWIN_SEED = 4_000_037  # the fixed signs D of every twin's rotation


def _butterflies(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The normalised Walsh–Hadamard transform of ``x`` along ``dim``, outside autograd:
    log2(m) butterfly stages between two buffers."""
    m = x.shape[dim]
    shape = (math.prod(x.shape[:dim]), m, -1)  # (before, m, after)
    y = x.detach().reshape(shape).clone()
    spare = torch.empty_like(y)
    h = 1
    while h < m:
        a, b = (t.view(shape[0], m // (2 * h), 2, h, -1) for t in (y, spare))
        torch.add(a[:, :, 0], a[:, :, 1], out=b[:, :, 0])
        torch.sub(a[:, :, 0], a[:, :, 1], out=b[:, :, 1])
        y, spare = spare, y
        h *= 2
    return y.mul_(1 / math.sqrt(m)).reshape(x.shape)


class _Hadamard(torch.autograd.Function):
    """The transform with a hand-written backward: H is symmetric, so the gradient of its input
    is the transform of the output's gradient. Autograd through the butterflies would record
    five ops per stage and take about three times as long (a twin rotates every step)."""

    @staticmethod
    def forward(x: torch.Tensor, dim: int) -> torch.Tensor:
        return _butterflies(x, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, int], output: torch.Tensor) -> None:
        ctx.dim = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _Hadamard.apply(grad, ctx.dim), None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, None], x: torch.Tensor,
             dim: int) -> tuple[torch.Tensor, int | None]:
        """Under `torch.func.vmap` (stacked models): the same transform of every member."""
        if in_dims[0] is None:
            return _Hadamard.apply(x, dim), None
        return _Hadamard.apply(x.movedim(in_dims[0], 0), dim % (x.dim() - 1) + 1), 0


def hadamard(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The normalised Walsh–Hadamard transform of ``x`` along ``dim`` (length a power of 2).

    Orthogonal and symmetric: ``hadamard(hadamard(x)) == x``."""
    return _Hadamard.apply(x, dim)


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
        shape = [1] * x.dim()
        shape[self.dim] = self.m
        return self.signs.to(x.dtype).reshape(shape)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return hadamard(p * self._signs(p), self.dim).narrow(self.dim, 0, self.n)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        pad = list(w.shape)
        pad[self.dim] = self.m - self.n
        padded = torch.cat([w, w.new_zeros(pad)], self.dim)
        return (hadamard(padded, self.dim) * self._signs(padded)).contiguous()


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
