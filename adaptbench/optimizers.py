"""Optimizers by name, learning-rate schedules, and plugin loading.

The table below is read without importing torch (the CLI validates names and hyperparameters
with it); torch is imported only when an optimizer is actually built.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adaptbench.errors import UserError, unknown


@dataclass(frozen=True)
class OptimizerInfo:
    """One named update rule: the torch.optim class it runs, with fixed settings and a default lr,
    and what torch computes with them (`update`, `eps_enters`, `differs`).

    In the rules, g is the gradient (plus λ·p under coupled weight decay), t the step from 1,
    and α, (β₁, β₂), μ, λ, ρ, ψ the settings alpha, betas, momentum, weight_decay, rho and
    momentum_decay; v̂ = v/(1-β₂ᵗ) and m̂ = m/(1-β₁ᵗ) are the bias-corrected moments.
    """

    name: str
    torch_class: str
    default_lr: float
    description: str
    reference: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    update: str = ""  # the rule as torch computes it
    eps_enters: str = ""  # where eps enters the rule; "" when the rule has none
    differs: str = ""  # where torch differs from the paper it cites and from other frameworks

    @property
    def settings(self) -> dict[str, Any]:
        """Every hyperparameter besides lr that shapes the update, at the value it runs with:
        torch's defaults for the class with this optimizer's fixed settings over them."""
        return {**TORCH_DEFAULTS[self.torch_class], **self.fixed}

    @property
    def weight_decay_enters(self) -> str:
        """How weight decay λ enters the update (λ = 0 by default for all but adamw)."""
        if self.settings.get("decoupled_weight_decay"):
            return "decoupled, p -= lr·λ·p"
        return "L2, g += λ·p"

    def settings_text(self) -> str:
        """The settings as `--opt` would write them, with where eps and weight decay enter:
        `alpha=0.99 eps=1e-08 (outside √v) weight_decay=0 (L2, g += λ·p) ...`."""
        notes = {"eps": self.eps_enters, "weight_decay": self.weight_decay_enters}
        return " ".join(
            f"{key}={format_setting(value)}" + (f" ({notes[key]})" if notes.get(key) else "")
            for key, value in self.settings.items()
        )


def format_setting(value: Any) -> str:
    """A hyperparameter value as `--opt` takes it: 0.9,0.999 / 1e-08 / true."""
    if isinstance(value, (tuple, list)):
        return ",".join(format_setting(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


_ADAM_MOMENTS = "m = β₁·m + (1-β₁)·g; v = β₂·v + (1-β₂)·g² (m, v start at 0)"

OPTIMIZERS: dict[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo(
            "sgd", "SGD", 0.1, "plain stochastic gradient descent", "Robbins & Monro 1951",
            update="p -= lr · g",
            differs="nowhere: the textbook rule",
        ),
        OptimizerInfo(
            "momentum", "SGD", 0.01, "SGD with heavy-ball momentum 0.9", "Polyak 1964",
            {"momentum": 0.9},
            update="v = μ·v + g (v = g at step 1); p -= lr · v",
            differs=(
                "lr multiplies the velocity: torch's v = μ·v + g, p -= lr·v; Polyak, Sutskever "
                "et al. and Keras use v = μ·v - lr·g, p += v. Equal while lr is constant; when a "
                "schedule changes lr, torch rescales the whole velocity at once, the other form "
                "only the new gradients. dampening 0."
            ),
        ),
        OptimizerInfo(
            "nesterov", "SGD", 0.01, "SGD with Nesterov momentum 0.9", "Sutskever et al. 2013",
            {"momentum": 0.9, "nesterov": True},
            update="v = μ·v + g (v = g at step 1); p -= lr · (g + μ·v)",
            differs=(
                "Sutskever et al. take the gradient at the look-ahead point p + μ·v; torch (like "
                "Keras) changes variables so that p is the look-ahead point and the gradient is "
                "taken at p. As in momentum, lr multiplies the velocity, so a change of lr "
                "rescales it at once."
            ),
        ),
        OptimizerInfo(
            "adam", "Adam", 1e-3, "Adam (betas 0.9, 0.999)", "Kingma & Ba 2015",
            update=f"{_ADAM_MOMENTS}; p -= lr · m̂ / (√v̂ + eps)",
            eps_enters="outside √v̂",
            differs=(
                "none in the defaults. eps is added to √v̂ after bias correction, as in the "
                "paper's Algorithm 1; the paper's §2 efficient form, TF and Keras add ε̂ to the "
                "uncorrected √v, an eps of ε̂/√(1-β₂ᵗ) on √v̂, larger early on (Keras ε̂ = 1e-7)."
            ),
        ),
        OptimizerInfo(
            "adamw", "AdamW", 1e-3, "Adam with decoupled weight decay 0.01",
            "Loshchilov & Hutter 2019",
            update=f"p -= lr·λ·p; {_ADAM_MOMENTS}; p -= lr · m̂ / (√v̂ + eps)",
            eps_enters="outside √v̂",
            differs=(
                "weight_decay 0.01, decoupled and multiplied by the (scheduled) lr: p -= lr·λ·p, "
                "a decay of 1e-5 per step at lr 1e-3; the paper's Algorithm 2 multiplies λ by "
                "the schedule multiplier η_t only, not by the base lr α. eps as in adam."
            ),
        ),
        OptimizerInfo(
            "rmsprop", "RMSprop", 1e-3, "RMSprop (alpha 0.99)", "Tieleman & Hinton 2012",
            update=(
                "v = α·v + (1-α)·g² (v starts at 0, no bias correction); "
                "p -= lr · g / (√v + eps)"
            ),
            eps_enters="outside √v",
            differs=(
                "alpha 0.99 where Tieleman & Hinton and Keras use 0.9. With v starting at 0 and "
                "no bias correction the first step is lr·g/(√(0.01·g²) + eps) ≈ 10·lr·sign(g). "
                "eps 1e-8 outside the root; Keras adds 1e-7 inside, √(v + eps); the lecture has "
                "no eps."
            ),
        ),
        OptimizerInfo(
            "adagrad", "Adagrad", 1e-2, "AdaGrad", "Duchi et al. 2011",
            update=(
                "s = s + g² (s starts at 0, the initial accumulator value); "
                "p -= lr / (1 + (t-1)·lr_decay) · g / (√s + eps)"
            ),
            eps_enters="outside √s",
            differs=(
                "the accumulator starts at 0, as in Duchi et al., so the first step is "
                "lr·g/(|g| + 1e-10) ≈ lr·sign(g) on every coordinate, however small its "
                "gradient. TF and Keras start it at 0.1 (Keras adds eps 1e-7 inside the root): "
                "a first step of lr·g/√(0.1 + g²), proportional to g for small g."
            ),
        ),
        OptimizerInfo(
            "adadelta", "Adadelta", 1.0, "AdaDelta (rho 0.9)", "Zeiler 2012",
            update=(
                "v = ρ·v + (1-ρ)·g²; Δ = √(u + eps) / √(v + eps) · g; u = ρ·u + (1-ρ)·Δ²; "
                "p -= lr · Δ (u, v start at 0)"
            ),
            eps_enters="inside both roots",
            differs=(
                "rho 0.9 where Zeiler's experiments and Keras use 0.95 (eps 1e-6 as Zeiler). "
                "Zeiler's rule has no lr: torch multiplies Δ by lr (1.0 here) but accumulates u "
                "from Δ before lr scales it. The first step is ≈ lr · √(eps/(1-ρ)) · sign(g) "
                "= 0.0032·lr·sign(g) where |g| ≫ 0.003."
            ),
        ),
        OptimizerInfo(
            "adamax", "Adamax", 2e-3, "Adamax, Adam's infinity-norm variant", "Kingma & Ba 2015",
            update="m = β₁·m + (1-β₁)·g; u = max(β₂·u, |g| + eps); p -= lr / (1-β₁ᵗ) · m / u",
            eps_enters="added to |g| in the max",
            differs=(
                "the paper's Algorithm 2 has no eps, u = max(β₂·u, |g|); torch's keeps u > 0 "
                "where every gradient so far was 0. Defaults as in the paper."
            ),
        ),
        OptimizerInfo(
            "nadam", "NAdam", 2e-3, "Adam with Nesterov momentum", "Dozat 2016",
            update=(
                f"μ_t = β₁·(1 - 0.5·0.96^(t·ψ)), Π_t = μ_1···μ_t; {_ADAM_MOMENTS}; "
                "p -= lr · ((1-μ_t)/(1-Π_t) · g + μ_t+1/(1-Π_t+1) · m) / (√v̂ + eps)"
            ),
            eps_enters="outside √v̂",
            differs=(
                "momentum_decay ψ = 0.004 is Dozat's schedule μ_t = β₁·(1 - 0.5·0.96^(t/250)): "
                "the Nesterov momentum is 0.45 at step 1, 0.47 at step 250, 0.52 at step 1000 "
                "and 0.675 only at step 4245, so short runs use about half of β₁. m itself "
                "averages with the constant β₁."
            ),
        ),
        OptimizerInfo(
            "radam", "RAdam", 1e-3, "Rectified Adam", "Liu et al. 2020",
            update=(
                f"{_ADAM_MOMENTS}; ρ_t = ρ∞ - 2t·β₂ᵗ/(1-β₂ᵗ), ρ∞ = 2/(1-β₂) - 1; "
                "if ρ_t > 5: p -= lr · r_t · m̂ · √(1-β₂ᵗ) / (√v + eps), "
                "r_t = √((ρ_t-4)(ρ_t-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ_t)); else p -= lr · m̂"
            ),
            eps_enters="outside √v, before bias correction",
            differs=(
                "with β₂ = 0.999 the first 5 steps are momentum steps lr·m̂, not divided by √v; "
                "the paper's Algorithm 2 rectifies from ρ_t > 4 (step 5 on) and has no eps. "
                "eps is added to the uncorrected √v, unlike torch's Adam: eps/√(1-β₂ᵗ) on √v̂."
            ),
        ),
    ]
}

# The value torch gives each hyperparameter besides lr that shapes the update (its defaults),
# kept by hand so that `adaptbench optims` needs no torch; tests check it against the installed
# torch's signatures. Left out: maximize (always False here) and foreach, fused, capturable and
# differentiable, which choose an implementation of the same rule. AdamW takes no
# decoupled_weight_decay keyword: it passes True to Adam itself.
TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False},
    "Adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
             "decoupled_weight_decay": False},
    "AdamW": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
              "decoupled_weight_decay": True},
    "RMSprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0, "momentum": 0, "centered": False},
    "Adagrad": {"lr_decay": 0, "weight_decay": 0, "initial_accumulator_value": 0, "eps": 1e-10},
    "Adadelta": {"rho": 0.9, "eps": 1e-6, "weight_decay": 0},
    "Adamax": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0},
    "NAdam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "momentum_decay": 0.004,
              "decoupled_weight_decay": False},
    "RAdam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
              "decoupled_weight_decay": False},
}

# Hyperparameters each torch.optim class accepts through --opt (besides lr). Kept by hand so that
# validation needs no torch; tests check it against the installed torch's signatures.
ALLOWED_PARAMS: dict[str, frozenset[str]] = {
    "SGD": frozenset({"momentum", "dampening", "weight_decay", "nesterov"}),
    "Adam": frozenset({"betas", "eps", "weight_decay", "amsgrad"}),
    "AdamW": frozenset({"betas", "eps", "weight_decay", "amsgrad"}),
    "RMSprop": frozenset({"alpha", "eps", "weight_decay", "momentum", "centered"}),
    "Adagrad": frozenset({"lr_decay", "weight_decay", "initial_accumulator_value", "eps"}),
    "Adadelta": frozenset({"rho", "eps", "weight_decay"}),
    "Adamax": frozenset({"betas", "eps", "weight_decay"}),
    "NAdam": frozenset({"betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"}),
    "RAdam": frozenset({"betas", "eps", "weight_decay", "decoupled_weight_decay"}),
}


def is_plugin(name: str) -> bool:
    return ":" in name


def _load_plugin(name: str) -> Callable[..., Any]:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(
            f"optimizer plugin {name!r} cannot be loaded ({exc}); expected 'module:attr' naming "
            "a callable factory(params, lr, **hyperparameters) -> torch.optim.Optimizer"
        ) from None
    if not callable(factory):
        raise UserError(f"optimizer plugin {name!r} is not callable")
    return factory


def check_optimizer(name: str, params: Mapping[str, Any]) -> None:
    """Raise a UserError unless `name` is a known optimizer (or loadable plugin) taking `params`."""
    if is_plugin(name):
        _load_plugin(name)
        return
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    info = OPTIMIZERS[name]
    allowed = ALLOWED_PARAMS[info.torch_class]
    for key in params:
        if key not in allowed:
            raise UserError(
                f"optimizer {name!r} has no hyperparameter {key!r}; it takes: "
                f"{', '.join(sorted(allowed))}"
            )


def check_hyperparameter_values(name: str, params: Mapping[str, Any]) -> None:
    """Raise a UserError unless torch accepts `params` for `name`: builds the optimizer over one
    parameter and takes a step, so a bad value fails here, before any run is queued."""
    if not params or is_plugin(name):
        return
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    try:
        opt = build_optimizer(name, [weight], default_lr(name), params)
        weight.grad = torch.zeros(1)
        opt.step()
    except (ValueError, TypeError, RuntimeError) as exc:
        given = ", ".join(f"{k}={v}" for k, v in params.items())
        raise UserError(f"--opt {given} is not valid for {name!r}: {exc}") from None


def default_lr(name: str) -> float:
    """The conventional learning rate of an optimizer (plugins: 1e-3)."""
    return OPTIMIZERS[name].default_lr if name in OPTIMIZERS else 1e-3


def build_optimizer(name: str, model_params: Any, lr: float, params: Mapping[str, Any]) -> Any:
    """A torch optimizer over `model_params` for the named update rule."""
    if is_plugin(name):
        return _load_plugin(name)(model_params, lr=lr, **params)
    import torch

    info = OPTIMIZERS[name]
    cls = getattr(torch.optim, info.torch_class)
    kwargs = {**info.fixed, **params}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return cls(model_params, lr=lr, **kwargs)


def torch_signature_params(torch_class: str) -> set[str]:
    """The keyword arguments the installed torch class accepts (for tests of ALLOWED_PARAMS)."""
    import torch

    sig = inspect.signature(getattr(torch.optim, torch_class).__init__)
    return {p for p in sig.parameters if p not in ("self", "params", "lr")}


# --- schedules: a multiplier of the base lr as a function of (step, total steps) -------------

def _constant(step: int, total: int) -> float:
    return 1.0


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _step(step: int, total: int) -> float:
    # x0.1 at half the budget and again at three quarters (the classic ResNet recipe, scaled)
    return 0.1 ** ((step >= total // 2) + (step >= (3 * total) // 4))


def _warmup_cosine(step: int, total: int) -> float:
    warmup = max(1, total // 20)  # 5% linear warm-up
    if step < warmup:
        return (step + 1) / warmup
    return _cosine(step - warmup, total - warmup)


def _linear(step: int, total: int) -> float:
    return max(0.0, 1.0 - step / max(total, 1))


SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "step": _step,
    "warmup-cosine": _warmup_cosine,
    "linear": _linear,
}
SCHEDULE_DOCS = {
    "constant": "the base learning rate throughout",
    "cosine": "cosine decay from the base lr to 0 over the run (Loshchilov & Hutter 2017)",
    "step": "x0.1 at 50% and again at 75% of the steps",
    "warmup-cosine": "linear warm-up over the first 5% of steps, then cosine decay to 0",
    "linear": "linear decay from the base lr to 0",
}


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise unknown("schedule", name, SCHEDULES)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """The multiplier of the base learning rate at 0-based `step` of a `total`-step run; a
    task's `warmup` (a fraction of the steps) ramps it up linearly first, unless the schedule
    warms up by itself."""
    factor = SCHEDULES[schedule](step, total)
    if warmup > 0 and not schedule.startswith("warmup"):
        ramp = max(1, round(warmup * total))
        factor *= min(1.0, (step + 1) / ramp)
    return factor
