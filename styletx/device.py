"""The device a run uses, and THE precision policy: fp32 or bf16 autocast, chosen by measurement, never by a flag.

``precision="auto"`` runs a short timed probe of the actual network in fp32 and in bf16 at first use, and picks
bf16 only where it is measured faster *and* its output stays close to fp32's; the verdict is cached per machine,
torch version and workload (:mod:`styletx.cache`). ``fp32``/``bf16`` (or ``$STYLETX_PRECISION`` under auto)
force one. A CPU flag says which instructions exist, not what runs fastest: on one CPU bf16 was emulated and
3x slower than fp32, on another native and 1.7x faster (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, List, Optional, Tuple, Union

import torch
from torch import Tensor

from . import cache
from .errors import InputError

__all__ = [
    "PRECISIONS",
    "ENV_PRECISION",
    "PrecisionChoice",
    "pick_device",
    "bf16_supported",
    "choose_precision",
    "measure_bf16",
    "time_call",
    "autocast",
    "memory_mb",
]

PRECISIONS = ("auto", "fp32", "bf16")
#: Environment variable that forces the precision of runs whose precision is "auto" (fp32 or bf16).
ENV_PRECISION = "STYLETX_PRECISION"
#: bf16 must take at most this fraction of fp32's time to be picked (a margin over timing noise).
SPEED_MARGIN = 0.9
#: ... and its probe output must stay within this relative L2 distance of fp32's,
MAX_RELATIVE_ERROR = 0.05
#: ... or, for a workload that gives a noise floor, within this multiple of the distance that an invisible
#: change of the input (the +-0.5/255 of 8-bit storage) moves fp32's own output: bf16 then changes the result
#: no more than reading the picture from a file already does. (VGG19's pixel gradient is that sensitive: an
#: 8-bit nudge moves it by 8-9%, bf16 by 9.3%; docs/benchmarks.md.)
NOISE_FLOOR_FACTOR = 1.5
#: Timed calls of each precision after the warm-up call (interleaved; the medians are compared).
PROBE_REPEATS = 2


def pick_device(name: Union[str, torch.device, None] = "auto") -> torch.device:
    """``auto`` (or None) -> the first CUDA GPU, else Apple MPS, else the CPU; otherwise the named device, checked."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
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
    if device.type == "cpu" and device.index not in (None, 0):
        raise InputError(f"device: {name!r} does not exist (the CPU is 'cpu')")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast can run on ``device`` at all (fast or not): any CPU (natively or emulated by
    oneDNN), a CUDA GPU that supports bf16; not MPS."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


@dataclass(frozen=True)
class PrecisionChoice:
    """The arithmetic of a run and why: ``reason`` is forced | measured | cached | unsupported | unmeasured."""

    bf16: bool
    reason: str
    detail: str = ""

    @property
    def name(self) -> str:
        """"bf16" or "fp32"."""
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        """One line for records and metadata, e.g. ``bf16 (measured: bf16 0.061 s, fp32 0.104 s; rel. diff 0.004)``."""
        return f"{self.name} ({self.reason}{': ' + self.detail if self.detail else ''})"


def time_call(fn: Callable[[], object], device: torch.device, label: str = "") -> float:
    """Seconds one call of ``fn`` takes on ``device`` (GPU work waited for). The probes' one clock; ``label``
    names what is timed ("fp32", "bf16", a backend's name), so that tests can replace this function and force
    "bf16 is faster here" or "slower here" (or one backend faster) whatever the host."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _relative_error(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def measure_bf16(probe: Callable[[bool], Tensor], device: torch.device, *, repeats: int = PROBE_REPEATS,
                 noise_floor: Optional[Callable[[], Tensor]] = None) -> Tuple[bool, str]:
    """Time ``probe(bf16)`` both ways (a warm-up call each, then ``repeats`` interleaved timed calls) and
    compare the outputs. Returns (use bf16, a one-line account). Stops early when the warm-up calls already
    differ by more than 2x, so an emulated bf16 costs little to rule out.

    noise_floor: ``noise_floor()`` -> the fp32 output for the probe's input nudged invisibly (by at most
    0.5/255); called only when bf16 is faster but over MAX_RELATIVE_ERROR, it raises the bound to
    NOISE_FLOOR_FACTOR times the distance that nudge moves the output."""
    outputs = {}
    first: List[float] = []
    for bf16 in (False, True):
        first.append(time_call(lambda: outputs.__setitem__(bf16, probe(bf16)), device, "bf16" if bf16 else "fp32"))
    error = _relative_error(outputs[True], outputs[False])
    times = {False: [first[0]], True: [first[1]]}
    if max(first) <= 2.0 * min(first):
        times = {False: [], True: []}
        for _ in range(repeats):
            for bf16 in (False, True):
                times[bf16].append(time_call(lambda: probe(bf16), device, "bf16" if bf16 else "fp32"))
    t32, t16 = statistics.median(times[False]), statistics.median(times[True])
    faster = t16 < SPEED_MARGIN * t32
    bound, why = MAX_RELATIVE_ERROR, f"{MAX_RELATIVE_ERROR}"
    if faster and error > bound and noise_floor is not None:
        floor = _relative_error(noise_floor(), outputs[False])
        if NOISE_FLOOR_FACTOR * floor > bound:
            bound = NOISE_FLOOR_FACTOR * floor
            why = f"{bound:.4f}: {NOISE_FLOOR_FACTOR}x the {floor:.4f} that an 8-bit nudge of the input moves fp32"
    close = error <= bound
    detail = f"bf16 {t16:.4f} s, fp32 {t32:.4f} s per probe; relative difference {error:.4f}"
    if faster and (not close or bound > MAX_RELATIVE_ERROR):
        detail += f" ({'within' if close else 'over'} {why})"
    return faster and close, detail


def choose_precision(
    precision: str,
    device: torch.device,
    *,
    workload: str,
    probe: Optional[Callable[[bool], Tensor]] = None,
    noise_floor: Optional[Callable[[], Tensor]] = None,
) -> PrecisionChoice:
    """THE precision policy, used by every engine.

    precision: auto | fp32 | bf16. workload: what the probe runs (e.g. ``"optimize vgg19"``), part of the cache
    key. probe: ``probe(bf16) -> output tensor``, one call of the actual network under that arithmetic, small
    enough to take tens of milliseconds; without one, auto keeps fp32 unless a verdict is cached. noise_floor:
    see :func:`measure_bf16` (for workloads whose output is chaotic in the input, such as a pixel gradient).
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    reason = "forced"
    if precision == "auto":
        env = os.environ.get(ENV_PRECISION, "").strip().lower()
        if env in ("fp32", "bf16"):
            precision, reason = env, f"forced by ${ENV_PRECISION}"
        elif env not in ("", "auto"):
            raise InputError(f"${ENV_PRECISION}: expected auto, fp32 or bf16, got {env!r}")
    if precision == "fp32":
        return PrecisionChoice(False, reason)
    if precision == "bf16":
        if not bf16_supported(device):
            raise InputError(f"precision: bf16 is not supported on {device}")
        return PrecisionChoice(True, reason)
    if not bf16_supported(device):
        return PrecisionChoice(False, "unsupported", f"no bf16 on {device.type}")
    key = f"{cache.machine_key(device)} | {workload}"
    stored = cache.read_measurement("precision", key)
    if stored is not None and isinstance(stored.get("bf16"), bool):
        return PrecisionChoice(stored["bf16"], "cached", str(stored.get("detail", "")))
    if probe is None:
        return PrecisionChoice(False, "unmeasured", "no probe for this workload")
    bf16, detail = measure_bf16(probe, device, noise_floor=noise_floor)
    cache.write_measurement("precision", key, {"bf16": bf16, "detail": detail, "measured_at": time.time()})
    return PrecisionChoice(bf16, "measured", detail)


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
