"""What every engine reports, whichever made the picture: the run's record and the progress events.

Engine-neutral plain data: the optimiser and the feed-forward model fill the same :class:`RunRecord`, progress
callbacks get an :class:`Iterate` (optimisation steps) or a :class:`FileDone` (one image of many done).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from torch import Tensor

__all__ = ["RunRecord", "Iterate", "FileDone", "FrameDone", "VideoRecord"]


@dataclass
class RunRecord:
    """A record of one run: losses per step, timings, device, arithmetic and why, backbone, options, events.

    ``precision`` is "fp32" or "bf16"; ``precision_reason`` says how it was chosen (forced / measured / cached,
    with the measured times); ``backend`` what ran a feed-forward model (torch, onnxruntime, winograd, ...).
    """

    device: str = ""
    precision: str = "fp32"
    precision_reason: str = ""
    backend: str = ""
    backbone: Dict[str, str] = field(default_factory=dict)
    options: Dict[str, object] = field(default_factory=dict)
    sizes: List[int] = field(default_factory=list)
    losses: List[Dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    seconds: float = 0.0
    interrupted: bool = False
    notes: List[str] = field(default_factory=list)
    plan: str = ""

    @property
    def steps(self) -> int:
        """Number of optimiser steps taken, over all scales."""
        return len(self.losses)

    def to_dict(self) -> Dict[str, object]:
        """A JSON-friendly copy (what goes into the output image's metadata, without the per-step losses)."""
        out = asdict(self)
        out.pop("losses")
        out["steps"] = self.steps
        if not math.isfinite(self.best_loss):
            out["best_loss"] = None
        return out


@dataclass
class Iterate:
    """What a progress callback receives after every optimisation step.

    ``image`` is the current (1, 3, H, W) image in [0, 1] (a live tensor: clone it to keep it);
    ``elapsed`` is in seconds since the run started, ``memory_mb`` is the peak memory in MiB; ``plan``: how the
    run fits in memory (whole or tiled), in one line.
    """

    step: int
    total: int
    scale: int
    scales: int
    size: int
    losses: Dict[str, float]
    elapsed: float
    memory_mb: float
    image: Tensor
    plan: str = ""


@dataclass
class FileDone:
    """What a progress callback receives after each file of a batch of files (``step`` of ``total``); ``plan``:
    how it was run (whole or tiled, and the memory that needs), in one line."""

    source: Path
    output: Optional[Path]
    step: int
    total: int
    seconds: float
    plan: str = ""


@dataclass
class FrameDone:
    """What a progress callback receives after each video frame: ``step`` of ``total`` (None when the container
    does not say), seconds since the start, and the pipeline's frames per second so far."""

    step: int
    total: Optional[int]
    elapsed: float
    fps: float


@dataclass
class VideoRecord:
    """A record of one video run: frames written (of how many read), the pipeline's frames per second, seconds
    spent per stage (decode, stylise, flicker, encode; stages overlap), the flicker score when asked, audio
    packets copied, the engine's record (device, arithmetic and backend, with why), notes, and whether it was
    interrupted (``output`` is then the playable part written, or None when nothing was)."""

    output: Optional[Path] = None
    frames: int = 0
    size: Tuple[int, int] = (0, 0)
    fps: float = 0.0
    seconds: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)
    flicker: Optional[float] = None
    audio_packets: int = 0
    engine: RunRecord = field(default_factory=RunRecord)
    interrupted: bool = False
    notes: List[str] = field(default_factory=list)
