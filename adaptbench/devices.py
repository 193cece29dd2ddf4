"""Choosing and describing the device a run trains on: the only place that names devices."""

from __future__ import annotations

import re
from typing import Any

from adaptbench.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def check_device_request(request: str) -> None:
    """Validate a --device value without importing torch."""
    if request not in DEVICE_CHOICES and not re.fullmatch(r"cuda:\d+", request):
        raise UserError(
            f"unknown device {request!r}; choose from: {', '.join(DEVICE_CHOICES)} or cuda:N"
        )


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose(request: str = "auto") -> Any:
    """The torch.device for a request: 'auto' takes CUDA, then MPS, then the CPU."""
    import torch

    check_device_request(request)
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {request!r} was asked for but CUDA is not available here; use "
                        f"'auto' (the best device there is)", about="device")
    if request.startswith("cuda:") and int(request[5:]) >= torch.cuda.device_count():
        raise UserError(
            f"device {request!r} does not exist here: {torch.cuda.device_count()} CUDA device(s), "
            "numbered from 0"
        )
    if request == "mps" and not _mps_available(torch):
        raise UserError("device 'mps' was asked for but MPS is not available here; use 'auto' "
                        "(the best device there is)", about="device")
    return torch.device(request)


def describe(device: Any) -> str:
    """A short human name for a device, stored with each run (e.g. 'cuda:0 (NVIDIA A100)')."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def seed_everything(seed: int) -> None:
    """Seed torch's global generators on every device (task code may rely on them)."""
    import torch

    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    if torch.cuda.is_available():
        # same spec, same GPU, same curve: cuDNN's autotuner and nondeterministic kernels off
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def synchronize(device: Any) -> None:
    """Wait for queued device work, so wall-clock timings measure the work itself."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
