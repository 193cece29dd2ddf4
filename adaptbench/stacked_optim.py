"""The built-in optimizers' update rules over stacked parameters, for training K runs at once.

Every parameter tensor has a leading member dimension K (K independent models side by side),
and member k takes the step that torch.optim would take for it alone, with its own learning
rate. Each rule follows torch's single-tensor implementation (`_single_tensor_*` in
`torch/optim/*.py`, the one torch runs on CPU) operation by operation; only the scalars that
hold lr, Python floats there, are tensors of shape (K, 1, ...) here, computed per member by
torch's own Python expression and then cast to the parameter's dtype as torch casts a scalar.

On CPU the members match torch.optim bit for bit, in float32 and float64. Where torch passes lr
as `alpha=-lr` or `value=-lr`, this module multiplies by the lr tensor first, which rounds as
torch's CPU kernels do (a kernel that fused the multiply-add would differ by an ulp). On CUDA
torch runs its foreach or fused implementations by default, which order some operations
differently; compare with foreach=False there.

Every operation is elementwise across members, and clip_grad_norm reduces within a member, so a
NaN or inf in one member never reaches another. Nothing reads a tensor's value on the host:
step() and clip_grad_norm never wait for the device.

On the CPU a large stacked parameter is updated in slices of about `CHUNK` elements (columns of
its (K, n) view, every member in each), the whole rule on one slice before the next: the rule's
intermediate tensors then stay in the cache instead of going through memory, which made a
group's Adam step on a 4096 x 32 layer 2.6x faster for 20 members. The operations are
elementwise, so every element is computed as before, bit for bit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from adaptbench.optimizers import ALLOWED_PARAMS, OPTIMIZERS, build_optimizer

State = list[dict[str, Tensor]]  # per parameter tensor, its state tensors by torch's names
Call = tuple[list[Tensor], list[Tensor], State]  # the rule's params, grads and state for one call

CHUNK = 1 << 18  # elements per slice of a large parameter on the CPU (1 MiB of float32)


def supports(name: str, params: Mapping[str, Any]) -> bool:
    """Whether the built-in optimizer `name` with the user's settings `params` has a stacked
    rule here (plugins, 'module:attr', have none)."""
    info = OPTIMIZERS.get(name)
    return info is not None and set(params) <= ALLOWED_PARAMS[info.torch_class]


def _against(values: Tensor, p: Tensor) -> Tensor:
    """Per-member `values`, shape (K,), viewed (K, 1, ...) to broadcast against p."""
    return values.view(-1, *[1] * (p.dim() - 1))


class _PerMember:
    """One scalar per member, computed in Python as torch computes it for that member alone, as a
    tensor of the parameter's dtype and device shaped (K, 1, ...) to broadcast against it."""

    def __init__(self, values: list[float]) -> None:
        self._values = values
        self._on: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def __call__(self, p: Tensor) -> Tensor:
        key = (p.device, p.dtype)
        if key not in self._on:
            # cast on the host (as torch casts a Python scalar) and copy from pinned memory
            # without blocking, so the host does not wait for the device's queue
            host = torch.tensor(self._values, dtype=torch.float64).to(p.dtype)
            if p.device.type == "cuda":
                host = host.pin_memory()
            self._on[key] = host.to(p.device, non_blocking=True)
        return _against(self._on[key], p)


def _weight_decay(p: Tensor, g: Tensor, group: Mapping[str, Any],
                  keep: _PerMember | None) -> Tensor:
    """The gradient after weight decay λ: coupled, g + λ·p; decoupled (`keep` = 1 - lr·λ per
    member), p scaled in place and g unchanged."""
    if group["weight_decay"] == 0:
        return g
    if keep is not None:
        p.mul_(keep(p))
        return g
    return g.add(p, alpha=group["weight_decay"])


def _decoupled_keep(group: Mapping[str, Any], lrs: list[float]) -> _PerMember | None:
    """The factor 1 - lr·λ that decoupled weight decay scales p by; None for coupled decay."""
    if not group.get("decoupled_weight_decay") or group["weight_decay"] == 0:
        return None
    return _PerMember([1 - lr * group["weight_decay"] for lr in lrs])


def _scalar_product(a: float, b: float) -> float:
    """a·b as torch computes `a_tensor *= b` for a state scalar such as NAdam's mu_product: in
    float32 (b rounded to it first) unless the default dtype is float64."""
    if torch.get_default_dtype() == torch.float64:
        return a * b
    (b32,) = struct.unpack("f", struct.pack("f", b))
    (product,) = struct.unpack("f", struct.pack("f", a * b32))  # exact in double, rounded once
    return product


def _adam_moments(p: Tensor, g: Tensor, s: dict[str, Tensor], group: Mapping[str, Any],
                  keep: _PerMember | None) -> Tensor:
    """Weight decay, then the moments m = β₁·m + (1-β₁)·g and v = β₂·v + (1-β₂)·g² in place, as
    Adam, NAdam and RAdam begin; the gradient after weight decay."""
    beta1, beta2 = group["betas"]
    g = _weight_decay(p, g, group, keep)
    s["exp_avg"].lerp_(g, 1 - beta1)
    s["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
    return g


# --- the rules: (params, grads, state, lrs, group, scalars); scalars["step"] is t, from 1 -------

def _sgd(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
         group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    momentum, neg_lr = group["momentum"], _PerMember([-lr for lr in lrs])
    for p, g, s in zip(params, grads, state, strict=True):
        g = _weight_decay(p, g, group, None)
        if momentum != 0:
            buf = s["momentum_buffer"]
            if scalars["step"] == 1:
                buf.copy_(g)
            else:
                buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
            g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.addcmul_(g, neg_lr(p))


def _adam(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
          group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    (beta1, beta2), t = group["betas"], scalars["step"]
    bias_correction1, bias_correction2 = 1 - beta1**t, 1 - beta2**t
    neg_step_size = _PerMember([-(lr / bias_correction1) for lr in lrs])
    bias_correction2_sqrt = bias_correction2**0.5
    keep = _decoupled_keep(group, lrs)
    for p, g, s in zip(params, grads, state, strict=True):
        _adam_moments(p, g, s, group, keep)
        exp_avg, exp_avg_sq = s["exp_avg"], s["exp_avg_sq"]
        if group["amsgrad"]:
            torch.maximum(s["max_exp_avg_sq"], exp_avg_sq, out=s["max_exp_avg_sq"])
            denom = (s["max_exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(group["eps"])
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        p.addcdiv_(exp_avg * neg_step_size(p), denom)


def _rmsprop(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
             group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    alpha, neg_lr = group["alpha"], _PerMember([-lr for lr in lrs])
    for p, g, s in zip(params, grads, state, strict=True):
        g = _weight_decay(p, g, group, None)
        square_avg = s["square_avg"]
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if group["centered"]:
            grad_avg = s["grad_avg"]
            grad_avg.lerp_(g, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(group["eps"])
        if group["momentum"] > 0:
            buf = s["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(g, avg)
            p.addcmul_(buf, neg_lr(p))
        else:
            p.addcdiv_(g * neg_lr(p), avg)


def _adagrad(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
             group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    decay = 1 + (scalars["step"] - 1) * group["lr_decay"]
    neg_clr = _PerMember([-(lr / decay) for lr in lrs])
    for p, g, s in zip(params, grads, state, strict=True):
        g = _weight_decay(p, g, group, None)
        state_sum = s["sum"]
        state_sum.addcmul_(g, g, value=1)
        std = state_sum.sqrt().add_(group["eps"])
        p.addcdiv_(g * neg_clr(p), std)


def _adadelta(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
              group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    rho, eps, neg_lr = group["rho"], group["eps"], _PerMember([-lr for lr in lrs])
    for p, g, s in zip(params, grads, state, strict=True):
        g = _weight_decay(p, g, group, None)
        square_avg, acc_delta = s["square_avg"], s["acc_delta"]
        square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
        std = square_avg.add(eps).sqrt_()
        delta = acc_delta.add(eps).sqrt_()
        delta.div_(std).mul_(g)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.addcmul_(delta, neg_lr(p))


def _adamax(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
            group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    beta1, beta2 = group["betas"]
    bias_correction = 1 - beta1 ** scalars["step"]
    neg_clr = _PerMember([-(lr / bias_correction) for lr in lrs])
    for p, g, s in zip(params, grads, state, strict=True):
        g = _weight_decay(p, g, group, None)
        exp_avg, exp_inf = s["exp_avg"], s["exp_inf"]
        exp_avg.lerp_(g, 1 - beta1)
        torch.maximum(exp_inf.mul_(beta2), g.abs().add_(group["eps"]), out=exp_inf)
        p.addcdiv_(exp_avg * neg_clr(p), exp_inf)


def _nadam(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
           group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    (beta1, beta2), t, psi = group["betas"], scalars["step"], group["momentum_decay"]
    bias_correction2 = 1 - beta2**t
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
    mu_product = scalars["mu_product"] = _scalar_product(scalars["mu_product"], mu)
    mu_product_next = mu_product * mu_next
    grad_coef = _PerMember([-lr * (1.0 - mu) / (1.0 - mu_product) for lr in lrs])
    avg_coef = _PerMember([(-lr * mu_next) / (1.0 - mu_product_next) for lr in lrs])
    keep = _decoupled_keep(group, lrs)
    for p, g, s in zip(params, grads, state, strict=True):
        g = _adam_moments(p, g, s, group, keep)
        exp_avg, exp_avg_sq = s["exp_avg"], s["exp_avg_sq"]
        denom = exp_avg_sq.div(bias_correction2).sqrt().add_(group["eps"])
        p.addcdiv_(g * grad_coef(p), denom)
        p.addcdiv_(exp_avg * avg_coef(p), denom)


def _radam(params: list[Tensor], grads: list[Tensor], state: State, lrs: list[float],
           group: Mapping[str, Any], scalars: dict[str, Any]) -> None:
    (beta1, beta2), t = group["betas"], scalars["step"]
    bias_correction1, bias_correction2 = 1 - beta1**t, 1 - beta2**t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
    lr, keep = _PerMember(list(lrs)), _decoupled_keep(group, lrs)
    for p, g, s in zip(params, grads, state, strict=True):
        _adam_moments(p, g, s, group, keep)
        exp_avg, exp_avg_sq = s["exp_avg"], s["exp_avg_sq"]
        bias_corrected_exp_avg = exp_avg / bias_correction1
        if rho_t > 5.0:  # the variance is tractable: a rectified adaptive step
            adaptive_lr = (bias_correction2**0.5) / exp_avg_sq.sqrt().add_(group["eps"])
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            p.add_(bias_corrected_exp_avg * lr(p) * adaptive_lr * rect, alpha=-1.0)
        else:  # the first steps: momentum only
            p.add_(bias_corrected_exp_avg * lr(p), alpha=-1.0)


Rule = Callable[[list[Tensor], list[Tensor], State, list[float], Mapping[str, Any], dict[str, Any]],
                None]
_RULES: dict[str, Rule] = {
    "SGD": _sgd, "Adam": _adam, "AdamW": _adam, "RMSprop": _rmsprop, "Adagrad": _adagrad,
    "Adadelta": _adadelta, "Adamax": _adamax, "NAdam": _nadam, "RAdam": _radam,
}


def _state_names(torch_class: str, group: Mapping[str, Any]) -> list[str]:
    """The state tensors torch keeps per parameter for this class and these settings."""
    if torch_class == "SGD":
        return ["momentum_buffer"] if group["momentum"] != 0 else []
    if torch_class in ("Adam", "AdamW"):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
    if torch_class == "RMSprop":
        return (["square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else [])
                + (["grad_avg"] if group["centered"] else []))
    return {"Adagrad": ["sum"], "Adadelta": ["square_avg", "acc_delta"],
            "Adamax": ["exp_avg", "exp_inf"], "NAdam": ["exp_avg", "exp_avg_sq"],
            "RAdam": ["exp_avg", "exp_avg_sq"]}[torch_class]


class StackedOptimizer:
    """One built-in optimizer over stacked parameters, K members each with its own base lr.

    The settings are the user's `params` over the optimizer's fixed ones and torch's defaults,
    exactly as build_optimizer merges them; torch validates them, as it would for one member.
    """

    def __init__(self, name: str, params: Mapping[str, Any], lrs: Sequence[float],
                 like: Sequence[Tensor]) -> None:
        if not supports(name, params):
            raise ValueError(f"Invalid stacked optimizer: {name!r} with settings {dict(params)}")
        if not lrs:
            raise ValueError("Invalid learning rates: none given")
        for lr in lrs:
            if not 0.0 <= lr:
                raise ValueError(f"Invalid learning rate: {lr}")
        for p in like:
            if p.dim() == 0 or p.shape[0] != len(lrs):
                raise ValueError(f"Invalid stacked parameter of shape {tuple(p.shape)} for "
                                 f"{len(lrs)} members")
        torch_class = OPTIMIZERS[name].torch_class
        self.lrs = [float(lr) for lr in lrs]
        group = build_optimizer(name, [torch.zeros(1)], self.lrs[0], params).param_groups[0]
        self.settings = {key: v for key, v in group.items() if key not in ("params", "lr")}
        self._rule = _RULES[torch_class]
        # all members step together: the step t (and NAdam's Π_t) is one Python number
        self.scalars: dict[str, Any] = {"step": 0}
        if torch_class == "NAdam":
            self.scalars["mu_product"] = 1.0
        fill = {"sum": self.settings.get("initial_accumulator_value", 0)}  # Adagrad's; others 0
        self.state: State = [
            {key: torch.full_like(p, fill.get(key, 0), memory_format=torch.preserve_format)
             for key in _state_names(torch_class, self.settings)}
            for p in like
        ]

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor], factor: float = 1.0) -> None:
        """One step of every member, in place on `params`: member k with lr = lrs[k]·factor."""
        lrs = [lr * factor for lr in self.lrs]
        before = {**self.scalars, "step": self.scalars["step"] + 1}
        for call_params, call_grads, call_state in self._calls(list(params), list(grads)):
            scalars = dict(before)  # every call advances the step's scalars alike (NAdam's Π_t)
            self._rule(call_params, call_grads, call_state, lrs, self.settings, scalars)
        self.scalars = scalars

    def _calls(self, params: list[Tensor], grads: list[Tensor]) -> list[Call]:
        """The rule's calls for one step: the parameters of at most `CHUNK` elements (and any
        not on the CPU) together, then each larger one in slices: views of about `CHUNK`
        elements of it, its gradient and its state, so that updating a slice updates them."""
        whole: Call = ([], [], [])
        calls: list[Call] = [whole]
        for p, g, s in zip(params, grads, self.state, strict=True):
            tensors = [p, g, *s.values()]
            if (p.numel() <= CHUNK or p.device.type != "cpu"
                    or not all(t.is_contiguous() for t in tensors)):
                for part, item in zip(whole, (p, g, s)):
                    part.append(item)
                continue
            k = p.shape[0]
            width = max(1, CHUNK // k)
            flat = [t.view(k, -1) for t in tensors]
            keys = list(s)
            for start in range(0, flat[0].shape[1], width):
                part = [t[:, start : start + width] for t in flat]
                calls.append(([part[0]], [part[1]], [dict(zip(keys, part[2:]))]))
        return calls if whole[0] else calls[1:]

    def state_dict(self) -> dict[str, Any]:
        """A copy of all state: {"scalars": step (and mu_product), "state": tensors cloned}."""
        return {"scalars": dict(self.scalars),
                "state": [{key: t.clone() for key, t in s.items()} for s in self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state a state_dict() of this optimizer saved (copied in, not shared)."""
        if [s.keys() for s in state["state"]] != [s.keys() for s in self.state]:
            raise ValueError("Invalid state: saved by an optimizer of other settings or shapes")
        for own, saved in zip(self.state, state["state"], strict=True):
            for key, t in own.items():
                t.copy_(saved[key])
        self.scalars = dict(state["scalars"])


@torch.no_grad()
def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> None:
    """Per member, in place: what torch.nn.utils.clip_grad_norm_ does to that member's gradients,
    g *= min(max_norm / (‖g‖ + 1e-6), 1), ‖g‖ the 2-norm over all of its gradient tensors."""
    if not grads:
        return
    k = grads[0].shape[0]
    # as torch: the norm of each tensor, then the norm of those norms; (K, tensors) -> (K,)
    norms = [torch.linalg.vector_norm(g.reshape(k, -1), dim=1) for g in grads]
    total_norm = torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1)
    clip_coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(_against(clip_coef, g))
