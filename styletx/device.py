"""Choosing the device and the arithmetic (fp32 or bf16 autocast) for a run."""

from __future__ import annotations

import contextlib
import ctypes
import resource
import sys
from typing import ContextManager

import torch

from .errors import InputError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU, else Apple MPS, else the CPU; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device: unknown device {name!r} (auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {name!r} asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device: {name!r} does not exist ({torch.cuda.device_count()} GPU(s) found)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError("device: 'mps' asked for, but Apple MPS is not available")
    elif device.type != "cpu":
        raise InputError(f"device: unsupported device {name!r} (auto, cpu, cuda, cuda:N or mps)")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX tiles or AVX512-BF16).

    oneDNN also runs bf16 on plain AVX-512 by emulation, but that measured ~3x slower than fp32 for VGG and
    the transformer here (docs/benchmarks.md), so only native support counts.
    """
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native (fast) on ``device``: a CUDA GPU with bf16, or a CPU with AMX/AVX512-BF16."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with ``precision`` (auto | fp32 | bf16) on ``device`` uses bf16 autocast.

    auto: only where bf16 is native; bf16: always on CPU (emulated where not native) and on CUDA with bf16.
    """
    if precision == "fp32":
        return False
    if precision == "auto":
        return native_bf16(device)
    if device.type == "cpu" or native_bf16(device):
        return True
    raise InputError(f"precision: bf16 is not supported on {device}")


def autocast(enabled: bool, device: torch.device) -> ContextManager:
    """bf16 autocast on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated GPU memory on CUDA, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_retained = False


def retain_freed_memory() -> bool:
    """Keep memory freed by large tensors inside this process for reuse (Linux with glibc; elsewhere a no-op).

    glibc hands every block over 32 MiB straight back to the kernel when it is freed, so each new large tensor
    (a 512x512 feature map with 32 channels is 32 MiB) is fresh memory, zeroed by page faults on first touch:
    that measured ~25% of the plain transformer network's time at 512x512 and ~7% of a VGG19 step at 256 px.
    This raises glibc's mmap threshold to 1 GiB and stops trimming, so freed blocks are reused. The price: the
    process keeps its peak heap until it exits. Process-wide and idempotent; returns whether it is in effect.
    """
    global _retained
    if _retained:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _retained = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        _retained = False
    return _retained
