"""Memory budgets: what a run will need, measured on the actual network, against what the device has free.

Engines call :func:`check_fits` before any work, so a run that cannot fit (``--size 100000``, ``--style-scale
1000``, a checkpoint asking for huge layers) is refused in well under a second with one line that gives the
largest size that fits, instead of allocating for minutes and dying with an out-of-memory error.

What a network needs per pixel is measured, not tabulated: :func:`saved_bytes_per_pixel` runs it at two small
sizes with autograd's saved-tensor hooks and takes the growth of what is kept for the backward pass (parameters
excluded); :func:`output_bytes_per_pixel` sums what every layer outputs, for inference. Free memory is
``MemAvailable`` (and the cgroup's limit, when lower) on the CPU, ``torch.cuda.mem_get_info`` on a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch import Tensor, nn

from .errors import InputError

__all__ = ["available_bytes", "budget_bytes", "FREE_MEMORY_SHARE", "saved_bytes_per_pixel", "output_bytes_per_pixel",
           "largest_fitting", "check_fits", "gib", "ENV_MEMORY_LIMIT"]

#: Caps the memory budget (bytes, or with a K/M/G suffix); for users sharing a machine, and for tests.
ENV_MEMORY_LIMIT = "STYLETX_MEMORY_LIMIT"
_PROBE_SIDES = (32, 64)
#: Share of the available memory a run may plan to use when no --max-memory is given (the rest is the margin).
FREE_MEMORY_SHARE = 0.8


def gib(n: float) -> str:
    """Bytes as a short human text: ``1.5 GiB``, ``300 MiB``."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _parse_bytes(text: str) -> Optional[int]:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if factor > 1 else text) * factor)
    except ValueError:
        return None


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> Optional[int]:
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_file, usage_file in pairs:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_bytes(device: torch.device) -> Optional[int]:
    """Memory a run may still use on ``device``: free GPU memory, or the CPU's available memory (the lower of
    ``MemAvailable`` and the cgroup's limit), capped by ``$STYLETX_MEMORY_LIMIT``; None when unknown."""
    found: Optional[int] = None
    if device.type == "cuda":
        try:
            found = int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            found = None
    elif device.type == "cpu":
        values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
        found = min(values) if values else None
    env = os.environ.get(ENV_MEMORY_LIMIT, "").strip()
    if env:
        cap = _parse_bytes(env)
        if cap is None:
            raise InputError(f"${ENV_MEMORY_LIMIT}: expected a number of bytes such as 8G, got {env!r}")
        found = cap if found is None else min(found, cap)
    return found


def budget_bytes(device: torch.device, max_memory: Optional[int] = None) -> Optional[int]:
    """What a run may plan to use on ``device``: ``max_memory`` (bytes) when given, else FREE_MEMORY_SHARE of
    :func:`available_bytes` (None when that is unknown: no limit)."""
    if max_memory is not None:
        return int(max_memory)
    free = available_bytes(device)
    return None if free is None else int(FREE_MEMORY_SHARE * free)


def _device_of(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def saved_bytes_per_pixel(fn: Callable[[Tensor], object], device: torch.device, params: nn.Module) -> float:
    """Bytes per input pixel that ``fn(x)`` keeps for its backward pass: measured at two small sizes with
    autograd's saved-tensor hooks (``params``' own tensors, which do not grow with the image, excluded)."""
    fixed = {t.untyped_storage().data_ptr() for t in list(params.parameters()) + list(params.buffers())}
    totals = []
    for side in _PROBE_SIDES:
        seen: Dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in fixed:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        x = torch.zeros(1, 3, side, side, device=device, requires_grad=True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x)
        totals.append(sum(seen.values()))
    a, b = _PROBE_SIDES
    return max(0.0, (totals[1] - totals[0]) / (b * b - a * a))


def output_bytes_per_pixel(module: nn.Module, fn: Optional[Callable[[Tensor], object]] = None) -> float:
    """Bytes per input pixel of everything ``module``'s layers output in one inference pass (an upper bound of
    what inference holds at once), measured at a small size."""
    total = [0]

    def hook(_m: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, Tensor):
            total[0] += out.numel() * out.element_size()

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    side = _PROBE_SIDES[-1]
    try:
        with torch.no_grad():
            (fn or module)(torch.zeros(1, 3, side, side, device=_device_of(module)))
    finally:
        for h in handles:
            h.remove()
    return total[0] / (side * side)


def largest_fitting(needed: Callable[[int], float], budget: float, hi: int) -> int:
    """The largest ``n`` in [0, hi] with ``needed(n) <= budget`` (``needed`` grows with n): a binary search."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if needed(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_fits(needed: float, device: torch.device, what: str, advice: Callable[[float], str]) -> None:
    """InputError (one line) when ``needed`` bytes exceed what ``device`` has available; ``advice(budget)``
    says what would fit (e.g. "the largest --size that fits is 2900"). Unknown free memory: no check."""
    budget = available_bytes(device)
    if budget is None or needed <= budget:
        return
    where = "GPU memory" if device.type == "cuda" else "memory"
    raise InputError(f"{what} needs about {gib(needed)} of {where}, {gib(budget)} is available; {advice(budget)}")
