"""The stacked update rules against torch.optim: K members stepped together take, member by
member, the steps that K separate torch optimizers take."""

from __future__ import annotations

import math

import pytest
import torch

from adaptbench.optimizers import ALLOWED_PARAMS, OPTIMIZERS, build_optimizer
from adaptbench import stacked_optim
from adaptbench.stacked_optim import StackedOptimizer, clip_grad_norm, supports

NAMES = sorted(OPTIMIZERS)
# Every optimizer at its settings, then non-default settings that together set every key
# ALLOWED_PARAMS lets a user set (test_cases_cover_every_allowed_setting checks it).
CASES: list[tuple[str, dict]] = [(name, {}) for name in NAMES] + [
    ("sgd", {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01}),
    ("sgd", {"weight_decay": 0.01}),
    ("sgd", {"momentum": 0.8, "nesterov": True}),
    ("nesterov", {"weight_decay": 0.01}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01, "amsgrad": True}),
    ("adamw", {"betas": (0.85, 0.995), "eps": 1e-7, "weight_decay": 0.1, "amsgrad": True}),
    ("rmsprop", {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01, "momentum": 0.9,
                 "centered": True}),
    ("rmsprop", {"momentum": 0.5}),
    ("adagrad", {"lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1,
                 "eps": 1e-8}),
    ("adadelta", {"rho": 0.95, "eps": 1e-5, "weight_decay": 0.01}),
    ("adamax", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ("nadam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01,
               "momentum_decay": 0.01, "decoupled_weight_decay": True}),
    ("nadam", {"weight_decay": 0.01}),
    ("radam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01,
               "decoupled_weight_decay": True}),
    ("radam", {"weight_decay": 0.01}),
]
IDS = [name + "".join(f"-{key}" for key in params) for name, params in CASES]
SHAPES = [(4, 3), (3,), (1,)]  # each member's shape of each parameter tensor
LR_SCALES = [0.1, 1.0, 10.0]  # the K = 3 members' lrs, times the optimizer's default lr
STEPS = 50
# The largest relative difference from torch.optim allowed over all cases, steps and state
# tensors. Measured on x86-64 (AVX-512) CPU: 0 in both dtypes, every case bit-equal to torch.
# float32 allows a few ulps; rounding one operation of the update apart from torch's (say
# p - lr·g for p + (-lr)·g) already moves float32 members by 2e-6 to 8e-5 over the 50 steps,
# so the float32 test checks the order of operations, the float64 one the rule.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-6}


def cosine(step: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * step / STEPS))


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / |expected| over the elements (|expected| floored at 1e-3)."""
    return ((actual - expected).abs() / expected.abs().clamp_min(1e-3)).max().item()


def stacked_initial(dtype: torch.dtype, k: int = 3, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(k, *shape, generator=generator, dtype=dtype) for shape in SHAPES]


def gradients(dtype: torch.dtype, k: int = 3, seed: int = 1) -> list[list[torch.Tensor]]:
    """STEPS steps of random stacked gradients."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(k, *shape, generator=generator, dtype=dtype) for shape in SHAPES]
            for _ in range(STEPS)]


def largest_difference(name: str, params: dict, dtype: torch.dtype) -> float:
    """Train 3 members stacked and each alone in torch.optim on the same gradients under a cosine
    schedule; the largest relative difference of a parameter at any step. Checks the state too."""
    lrs = [OPTIMIZERS[name].default_lr * scale for scale in LR_SCALES]
    stacked = stacked_initial(dtype)
    members = [[torch.nn.Parameter(p[k].clone()) for p in stacked] for k in range(len(lrs))]
    optimizers = [build_optimizer(name, member, lr, params) for member, lr in zip(members, lrs)]
    opt = StackedOptimizer(name, params, lrs, stacked)
    worst = 0.0
    for step, grads in enumerate(gradients(dtype)):
        factor = cosine(step)
        opt.step(stacked, grads, factor)
        for k, (member, reference) in enumerate(zip(members, optimizers)):
            for group in reference.param_groups:
                group["lr"] = lrs[k] * factor
            for p, g in zip(member, grads):
                p.grad = g[k].clone()
            reference.step()
            for p, q in zip(stacked, member):
                worst = max(worst, relative_difference(p[k], q.detach()))
    for k, (member, reference) in enumerate(zip(members, optimizers)):
        for state, q in zip(opt.state, member):
            torch_state = reference.state[q]
            for key, t in state.items():
                worst = max(worst, relative_difference(t[k], torch_state[key]))
            if "mu_product" in opt.scalars:
                assert opt.scalars["mu_product"] == torch_state["mu_product"].item()
    return worst


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_members_step_as_torch_optim_in_float64(name, params):
    assert largest_difference(name, params, torch.float64) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_members_step_as_torch_optim_in_float32(name, params):
    assert largest_difference(name, params, torch.float32) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_large_parameters_updated_in_slices_step_as_torch_optim(name, params, dtype, monkeypatch):
    # slices of 7 elements: the (3, 4, 3) parameter in 6 column slices of its (3, 12) view, the
    # (3, 3) one in slices of (3, 2) and (3, 1), the (3, 1) one whole; one call of the rule each
    monkeypatch.setattr(stacked_optim, "CHUNK", 7)
    like = stacked_initial(dtype)
    opt = StackedOptimizer(name, params, [0.1, 0.1, 0.1], like)
    calls = opt._calls(like, [torch.zeros_like(p) for p in like])
    assert [[tuple(p.shape) for p in call[0]] for call in calls] == (
        [[(3, 1)]] + [[(3, 2)]] * 6 + [[(3, 2)], [(3, 1)]])
    assert largest_difference(name, params, dtype) <= TOLERANCE[dtype]


def test_cases_cover_every_allowed_setting():
    for torch_class, allowed in ALLOWED_PARAMS.items():
        set_here = {key for name, params in CASES if OPTIMIZERS[name].torch_class == torch_class
                    for key in params}
        assert set_here == allowed, torch_class


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_a_members_nan_and_inf_reach_no_other_member(name, params):
    lrs = [OPTIMIZERS[name].default_lr * scale for scale in LR_SCALES]
    steps = gradients(torch.float64)[:10]
    clean, poisoned = stacked_initial(torch.float64), stacked_initial(torch.float64)
    clean_opt = StackedOptimizer(name, params, lrs, clean)
    poisoned_opt = StackedOptimizer(name, params, lrs, poisoned)
    for step, grads in enumerate(steps):
        bad = [g.clone() for g in grads]
        if step == 3:
            bad[0][1, 0, 0] = float("nan")
            bad[1][1, 2] = float("inf")
        clip_grad_norm(grads, 1.0)
        clip_grad_norm(bad, 1.0)
        clean_opt.step(clean, grads)
        poisoned_opt.step(poisoned, bad)
    for p, q in zip(clean, poisoned):
        assert torch.equal(p[[0, 2]], q[[0, 2]])
    assert not all(bool(q[1].isfinite().all()) for q in poisoned)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_clip_grad_norm_clips_each_member_as_torch(dtype):
    # member norms (over all three tensors) far below, near and far above max_norm
    grads = [g * torch.tensor([0.01, 0.3, 20.0], dtype=dtype).view(-1, *[1] * (g.dim() - 1))
             for g in stacked_initial(dtype)]
    members = [[torch.nn.Parameter(torch.zeros_like(g[k])) for g in grads] for k in range(3)]
    for k, member in enumerate(members):
        for p, g in zip(member, grads):
            p.grad = g[k].clone()
        torch.nn.utils.clip_grad_norm_(member, 1.0)
    clip_grad_norm(grads, 1.0)
    for k, member in enumerate(members):
        for p, g in zip(member, grads):
            assert relative_difference(g[k], p.grad) <= 4 * torch.finfo(dtype).eps
    assert torch.equal(grads[0][0], members[0][0].grad)  # below max_norm: untouched


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_a_loaded_state_repeats_the_steps_exactly(name, params):
    lrs = [OPTIMIZERS[name].default_lr * scale for scale in LR_SCALES]
    steps = gradients(torch.float64)[:3]
    stacked = stacked_initial(torch.float64)
    opt = StackedOptimizer(name, params, lrs, stacked)
    opt.step(stacked, steps[0], 0.9)
    saved, saved_params = opt.state_dict(), [p.clone() for p in stacked]
    for grads in steps[1:]:
        opt.step(stacked, grads, 0.5)
    first = [p.clone() for p in stacked]
    opt.load_state_dict(saved)
    for p, q in zip(stacked, saved_params):
        p.copy_(q)
    for grads in steps[1:]:
        opt.step(stacked, grads, 0.5)
    assert all(torch.equal(p, q) for p, q in zip(stacked, first))
    assert opt.state_dict()["scalars"]["step"] == 3
    assert saved["scalars"]["step"] == 1  # the saved copy did not move with the optimizer


def test_supports_the_built_in_optimizers_with_their_settings_only():
    for name, params in CASES:
        assert supports(name, params)
    assert not supports("torch.optim:SGD", {})
    assert not supports("mypackage.optim:lion", {})
    assert not supports("lion", {})
    assert not supports("adam", {"maximize": True})
    assert not supports("sgd", {"betas": (0.9, 0.99)})


def test_invalid_arguments_are_refused_as_torch_refuses_them():
    like = stacked_initial(torch.float64)
    with pytest.raises(ValueError, match="Invalid stacked optimizer"):
        StackedOptimizer("torch.optim:SGD", {}, [0.1, 0.1, 0.1], like)
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        StackedOptimizer("sgd", {}, [0.1, -0.1, 0.1], like)
    with pytest.raises(ValueError, match="for 2 members"):
        StackedOptimizer("sgd", {}, [0.1, 0.1], like)
    with pytest.raises(ValueError, match="Invalid beta parameter"):
        StackedOptimizer("adam", {"betas": (1.5, 0.9)}, [0.1, 0.1, 0.1], like)
