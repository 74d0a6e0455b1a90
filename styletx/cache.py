"""The user cache folder, and the measurements styletx keeps there (which arithmetic and backend ran fastest).

Measurements are keyed by what they depend on (the machine, the torch version, the workload), so a new CPU,
GPU or torch gets measured afresh. Failing to read or write the cache never fails a run: it only means
measuring again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .atomic import atomic_open
from .errors import InputError

__all__ = ["cache_dir", "machine_key", "read_measurement", "write_measurement", "MEASUREMENTS_FILE"]

MEASUREMENTS_FILE = "measurements.json"


def cache_dir() -> Path:
    """``$STYLETX_CACHE_DIR``, else ``$XDG_CACHE_HOME/styletx``, else ``~/.cache/styletx`` (need not exist)."""
    env = os.environ.get("STYLETX_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "styletx"


def _cpu_description() -> str:
    """The CPU's model name and a digest of its feature flags (Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read(200_000)
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields: Dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU part") and key not in fields:
            fields[key] = value.strip()
    flags = fields.get("flags") or fields.get("Features") or ""
    name = fields.get("model name") or fields.get("CPU part") or platform.machine()
    return f"{name} flags:{hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def machine_key(device: torch.device) -> str:
    """What a speed measurement on ``device`` depends on: the processor or GPU, threads, torch (and CUDA)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        hw = f"cuda {torch.cuda.get_device_name(index)} sm{major}{minor} cuda{torch.version.cuda}"
    elif device.type == "cpu":
        hw = f"cpu {_cpu_description()} threads:{torch.get_num_threads()}"
    else:
        hw = device.type
    return f"{hw} | torch {torch.__version__}"


def _load(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_measurement(kind: str, key: str) -> Optional[Dict[str, Any]]:
    """The stored measurement ``kind`` (e.g. "precision") under ``key``, or None."""
    entry = _load(cache_dir() / MEASUREMENTS_FILE).get(kind, {}).get(key)
    return entry if isinstance(entry, dict) else None


def write_measurement(kind: str, key: str, value: Dict[str, Any]) -> bool:
    """Store a measurement (JSON-able dict); returns False (and changes nothing) when the cache is not writable."""
    folder = cache_dir()
    path = folder / MEASUREMENTS_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = _load(path)
        section = data.get(kind)
        data[kind] = {**(section if isinstance(section, dict) else {}), key: value}
        with atomic_open(path, overwrite=True) as f:
            f.write((json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    except (OSError, InputError):
        return False
    return True
