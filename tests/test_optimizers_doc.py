"""What each optimizer runs with, as `adaptbench optims` and the README say, checked against the
installed torch: its signatures, the param groups it builds, and its first steps worked by hand."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from adaptbench import optimizers
from adaptbench.optimizers import OPTIMIZERS, build_optimizer

NAMES = sorted(OPTIMIZERS)
README = Path(__file__).resolve().parents[1] / "README.md"
# Keywords that choose an implementation of the same rule (or the sign of the step), not a value
# the rule is computed with.
IMPLEMENTATION = {"foreach", "fused", "capturable", "differentiable", "maximize"}


def signature_defaults(torch_class: str) -> dict:
    sig = inspect.signature(getattr(torch.optim, torch_class).__init__)
    return {name: p.default for name, p in sig.parameters.items()
            if name not in ("self", "params", "lr") and name not in IMPLEMENTATION}


def one_parameter(name: str, values: list[float], lr: float) -> tuple[torch.nn.Parameter, object]:
    weight = torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))
    return weight, build_optimizer(name, [weight], lr, {})


def step(weight: torch.nn.Parameter, opt, grad: torch.Tensor) -> torch.Tensor:
    """Take one step with the gradient `grad`; the change it made to the weight."""
    before = weight.detach().clone()
    weight.grad = grad.clone()
    opt.step()
    return weight.detach() - before


@pytest.mark.parametrize("name", NAMES)
def test_recorded_settings_are_torch_signature_defaults_with_the_fixed_ones(name):
    info = OPTIMIZERS[name]
    expected = {**signature_defaults(info.torch_class), **info.fixed}
    recorded = info.settings
    assert {k: v for k, v in recorded.items() if k in expected} == expected
    # beyond the signature only what torch sets itself: AdamW passes decoupled_weight_decay=True
    beyond = set(recorded) - set(expected)
    assert beyond == ({"decoupled_weight_decay"} if info.torch_class == "AdamW" else set())


@pytest.mark.parametrize("name", NAMES)
def test_every_recorded_setting_is_what_the_built_optimizer_holds(name):
    _, opt = one_parameter(name, [1.0], OPTIMIZERS[name].default_lr)
    group = opt.param_groups[0]
    for key, value in OPTIMIZERS[name].settings.items():
        assert group[key] == value, key
    assert group["lr"] == OPTIMIZERS[name].default_lr


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_documents_its_rule_and_where_torch_differs(name):
    info = OPTIMIZERS[name]
    assert info.update and info.differs
    assert bool(info.eps_enters) == ("eps" in info.settings)
    text = info.settings_text()
    for key, value in info.settings.items():
        assert f"{key}={optimizers.format_setting(value)}" in text
    if "eps" in info.settings:
        assert f"({info.eps_enters})" in text
    assert f"({info.weight_decay_enters})" in text


def test_settings_text_is_what_opt_takes():
    from adaptbench.spec import parse_opts

    for info in OPTIMIZERS.values():
        pairs = re.findall(r"(\w+)=(\S+)", info.settings_text())
        assert parse_opts([f"{k}={v}" for k, v in pairs]) == info.settings


def test_weight_decay_is_coupled_for_all_but_adamw():
    decoupled = {n for n, o in OPTIMIZERS.items() if o.settings.get("decoupled_weight_decay")}
    assert decoupled == {"adamw"}
    assert OPTIMIZERS["adamw"].settings["weight_decay"] == 0.01
    assert all(o.settings["weight_decay"] == 0 for n, o in OPTIMIZERS.items() if n != "adamw")


# --- the contested facts, worked by hand against torch itself --------------------------------

def test_rmsprop_first_step_is_lr_g_over_root_of_one_hundredth_g_squared_plus_eps():
    lr, g = 1e-3, torch.tensor([3.0, -0.02, 1e-4, -50.0], dtype=torch.float64)
    weight, opt = one_parameter("rmsprop", [0.0] * 4, lr)
    assert opt.param_groups[0]["alpha"] == 0.99
    change = step(weight, opt, g)
    expected = -lr * g / (torch.sqrt(0.01 * g**2) + 1e-8)  # v = (1 - 0.99)·g², eps outside √v
    torch.testing.assert_close(change, expected, rtol=1e-12, atol=0)
    # ≈ 10·lr per coordinate, whatever the gradient's size (up to eps/(0.1·|g|))
    torch.testing.assert_close(change, -10 * lr * torch.sign(g), rtol=1e-3, atol=0)
    keras = -lr * g / torch.sqrt(0.1 * g**2 + 1e-7)  # rho 0.9, eps 1e-7 inside the root
    assert not torch.allclose(change, keras, rtol=0.1)


@pytest.mark.parametrize("g", [[1e-4, -2.0, 300.0], [-1e-5, 1e-5, 7.5], [0.5]])
def test_adagrad_first_step_is_lr_times_sign_of_g(g):
    lr = 1e-2
    grad = torch.tensor(g, dtype=torch.float64)
    weight, opt = one_parameter("adagrad", [1.0] * len(g), lr)
    change = step(weight, opt, grad)
    torch.testing.assert_close(change, -lr * grad / (grad.abs() + 1e-10), rtol=1e-12, atol=0)
    torch.testing.assert_close(change, -lr * torch.sign(grad), rtol=1e-5, atol=0)  # up to eps
    # TF/Keras's accumulator of 0.1 would give lr·g/√(0.1 + g²) instead: 1e-4·lr, not lr
    assert not torch.allclose(change, -lr * grad / torch.sqrt(0.1 + grad**2))


def test_torch_momentum_is_v_equals_mu_v_plus_g_with_lr_outside():
    lr1, lr2, mu = 0.1, 0.01, 0.9
    g1 = torch.tensor([0.5, -3.0], dtype=torch.float64)
    g2 = torch.tensor([2.0, 0.25], dtype=torch.float64)
    weight, opt = one_parameter("momentum", [1.0, -2.0], lr1)
    assert step(weight, opt, g1).tolist() == pytest.approx((-lr1 * g1).tolist())  # v = g at step 1
    opt.param_groups[0]["lr"] = lr2  # a schedule changes lr between the steps
    second = step(weight, opt, g2)
    torch.testing.assert_close(second, -lr2 * (mu * g1 + g2), rtol=1e-12, atol=0)  # p -= lr·v
    sutskever = -(mu * lr1 * g1 + lr2 * g2)  # v = μv - lr·g, p += v
    assert not torch.allclose(second, sutskever)
    # with a constant lr the two forms agree
    weight, opt = one_parameter("momentum", [1.0, -2.0], lr1)
    step(weight, opt, g1)
    torch.testing.assert_close(step(weight, opt, g2), -(mu * lr1 * g1 + lr1 * g2), rtol=1e-12, atol=0)


def test_nesterov_step_is_g_plus_mu_v():
    lr, mu = 0.1, 0.9
    g1 = torch.tensor([0.5, -3.0], dtype=torch.float64)
    g2 = torch.tensor([2.0, 0.25], dtype=torch.float64)
    weight, opt = one_parameter("nesterov", [1.0, -2.0], lr)
    torch.testing.assert_close(step(weight, opt, g1), -lr * (g1 + mu * g1), rtol=1e-12, atol=0)
    v = mu * g1 + g2
    torch.testing.assert_close(step(weight, opt, g2), -lr * (g2 + mu * v), rtol=1e-12, atol=0)


def test_adam_adds_eps_after_bias_correction():
    lr, g = 1e-3, torch.tensor([1e-8, -1e-8], dtype=torch.float64)
    weight, opt = one_parameter("adam", [0.0, 0.0], lr)
    # step 1: m̂ = g and √v̂ = |g|, so lr·g/(|g| + eps) = lr/2 when |g| = eps; the ε̂ form
    # (eps on the uncorrected √v) would give lr·g/(|g| + eps/√0.001), about lr/33
    torch.testing.assert_close(step(weight, opt, g), -lr / 2 * torch.sign(g), rtol=1e-9, atol=0)


def test_radam_takes_five_plain_momentum_steps_then_rectifies():
    lr, beta1 = 1e-3, 0.9
    grads = [torch.tensor([v, -2 * v], dtype=torch.float64) for v in (1.0, 3.0, -0.5, 2.0, 4.0, 1.0)]
    weight, opt = one_parameter("radam", [0.0, 0.0], lr)
    m = torch.zeros(2, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        change = step(weight, opt, g)
        plain = -lr * m / (1 - beta1**t)  # lr·m̂, not divided by √v
        if t <= 5:
            torch.testing.assert_close(change, plain, rtol=1e-12, atol=0)
        else:
            assert not torch.allclose(change, plain)


def test_nadam_momentum_warms_up_from_about_half_of_beta1():
    weight, opt = one_parameter("nadam", [0.0], 2e-3)
    mus = []
    for _ in range(3):
        before = float(opt.state[weight]["mu_product"]) if opt.state[weight] else 1.0
        step(weight, opt, torch.tensor([1.0], dtype=torch.float64))
        mus.append(float(opt.state[weight]["mu_product"]) / before)
    expected = [0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in (1, 2, 3)]
    assert mus == pytest.approx(expected, rel=1e-6)  # torch keeps the product in float32
    assert mus[0] == pytest.approx(0.45, abs=1e-3)
    schedule = [0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in (250, 1000, 4245)]
    assert [round(m, 3) for m in schedule] == [0.468, 0.518, 0.675]  # as `differs` says


# --- what users see ----------------------------------------------------------------------------

def test_optims_table_shows_every_setting_and_note(cli):
    r = cli("optims")  # piped: plain text at its natural width, no wrapping
    assert r.code == 0, r.err
    for info in OPTIMIZERS.values():
        assert info.settings_text() in r.out
        assert info.update in r.out and info.differs in r.out
    for fact in ("alpha=0.99 eps=1e-08 (outside √v)", "initial_accumulator_value=0",
                 "eps=1e-10 (outside √s)", "v = μ·v + g (v = g at step 1); p -= lr · v",
                 "weight_decay=0.01 (decoupled, p -= lr·λ·p)", "momentum_decay=0.004",
                 "≈ lr·sign(g)", "≈ 10·lr·sign(g)"):
        assert fact in r.out, fact
    assert "cosine" in r.out and "warmup-cosine" in r.out  # the schedules follow


def test_optims_json_gives_the_settings_as_an_object(cli):
    records = json.loads(cli("optims", "--format", "json").out)
    rows = {r["name"]: r for r in records if r["kind"] == "optimizer"}
    assert set(rows) == set(OPTIMIZERS)
    for name, info in OPTIMIZERS.items():
        defaults = rows[name]["defaults"]
        assert defaults == {k: list(v) if isinstance(v, tuple) else v
                            for k, v in info.settings.items()}
        assert rows[name]["update"] == info.update and rows[name]["differs"] == info.differs
    assert rows["rmsprop"]["defaults"]["alpha"] == 0.99
    assert rows["rmsprop"]["eps_enters"] == "outside √v"
    assert rows["adagrad"]["defaults"]["initial_accumulator_value"] == 0
    assert rows["adagrad"]["defaults"]["eps"] == 1e-10
    assert rows["adam"]["defaults"]["betas"] == [0.9, 0.999]
    assert rows["adamw"]["weight_decay_enters"].startswith("decoupled")
    assert rows["sgd"]["eps_enters"] is None
    schedules = [r for r in records if r["kind"] == "schedule"]
    assert schedules and all(r["defaults"] is None for r in schedules)


def test_optims_csv_and_markdown_carry_the_settings(cli):
    csv = cli("optims", "--format", "csv").out
    assert "settings" in csv.splitlines()[0] and "initial_accumulator_value=0" in csv
    md = cli("optims", "--format", "markdown").out
    assert "alpha=0.99" in md and "| name | description |" in md


def test_readme_documents_every_optimizer_default():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Optimizer defaults"):]
    section = section[:section.index("\n## ", 1)]
    for info in OPTIMIZERS.values():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{info.name}` "))
        for key, value in info.settings.items():
            assert f"{key}={optimizers.format_setting(value)}" in row, (info.name, key)
        assert info.update.replace("|", "\\|") in row and info.differs.replace("|", "\\|") in row
