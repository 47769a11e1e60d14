"""Devices, precision and the environment a run records: CPU or CUDA, bfloat16 where it pays."""

from __future__ import annotations

import platform
from functools import lru_cache
from typing import Any

import torch
import torchvision

from core import settings


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA GPU is available; use device=auto or cpu")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bfloat16 instructions (AMX or AVX512-BF16): there bf16 autocast
    runs resnet18_cifar 2.2x faster in evaluation and 1.6x in training. oneDNN also *accepts* bf16 on
    plain AVX512, by emulation, and there it is 3x slower than fp32 (53 vs 162 images/s in evaluation on
    a 2-core Xeon without AMX), so its own "supported" answer is not enough."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    flags = _cpu_flags()
    if flags is None:  # not Linux: trust oneDNN
        return True
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on its device, in the memory layout every run uses: channels_last, which oneDNN and
    cuDNN want. On a 2-core CPU in fp32 it runs mobilenet_v2 at 128 px 1.66x faster (151 vs 91
    images/s) and resnet18_cifar as fast; with bf16 it was needed for the speed-up at all."""
    model.to(device)
    model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast where asked (CPUs with AMX run it over twice as fast), else a no-op context.
    On a GPU without autocast's cache of cast weights, which a step recorded as a CUDA graph must not
    use (core.engine.cudagraph; PyTorch's make_graphed_callables says so)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16,
                          cache_enabled=device.type != "cuda")  # fmt: skip


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
        "threads": torch.get_num_threads(),
        "settings": settings.recorded(),  # the SMALLDATA_* settings that change how a run trains
    }
