"""Devices, precision and the environment a run records: CPU or CUDA, bfloat16 where it pays."""

from __future__ import annotations

import platform
from typing import Any

import torch
import torchvision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA GPU is available; use device=auto or cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bfloat16 kernels (AVX512-BF16 or AMX): there bf16 autocast runs
    resnet18_cifar 2.2x faster in evaluation and 1.6x in training (measured on this 2-core EPYC)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def place(model: torch.nn.Module, device: torch.device, bf16: bool) -> torch.nn.Module:
    """The model on its device, in the memory layout every run uses: channels_last where the fast
    kernels want it (CUDA, and bf16 on a CPU)."""
    model.to(device)
    if device.type == "cuda" or bf16:
        model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast where asked (CPUs with AMX run it over twice as fast), else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads{', bf16' if cpu_has_fast_bf16() else ''})"


def environment(device: torch.device, bf16: bool) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "bf16": bf16,
    }
