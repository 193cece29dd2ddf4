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
    """One named update rule: the torch.optim class it runs, with fixed settings and a default lr."""

    name: str
    torch_class: str
    default_lr: float
    description: str
    reference: str
    fixed: Mapping[str, Any] = field(default_factory=dict)


OPTIMIZERS: dict[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo("sgd", "SGD", 0.1, "plain stochastic gradient descent", "Robbins & Monro 1951"),
        OptimizerInfo(
            "momentum", "SGD", 0.01, "SGD with heavy-ball momentum 0.9", "Polyak 1964",
            {"momentum": 0.9},
        ),
        OptimizerInfo(
            "nesterov", "SGD", 0.01, "SGD with Nesterov momentum 0.9", "Sutskever et al. 2013",
            {"momentum": 0.9, "nesterov": True},
        ),
        OptimizerInfo("adam", "Adam", 1e-3, "Adam (betas 0.9, 0.999)", "Kingma & Ba 2015"),
        OptimizerInfo("adamw", "AdamW", 1e-3, "Adam with decoupled weight decay 0.01",
                      "Loshchilov & Hutter 2019"),
        OptimizerInfo("rmsprop", "RMSprop", 1e-3, "RMSprop (alpha 0.99)", "Tieleman & Hinton 2012"),
        OptimizerInfo("adagrad", "Adagrad", 1e-2, "AdaGrad", "Duchi et al. 2011"),
        OptimizerInfo("adadelta", "Adadelta", 1.0, "AdaDelta (rho 0.9)", "Zeiler 2012"),
        OptimizerInfo("adamax", "Adamax", 2e-3, "Adamax, Adam's infinity-norm variant",
                      "Kingma & Ba 2015"),
        OptimizerInfo("nadam", "NAdam", 2e-3, "Adam with Nesterov momentum", "Dozat 2016"),
        OptimizerInfo("radam", "RAdam", 1e-3, "Rectified Adam", "Liu et al. 2020"),
    ]
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
