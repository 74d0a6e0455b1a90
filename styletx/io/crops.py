"""Training data from image files: random square crops, unreadable files skipped and counted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ImageError
from .image import MAX_PIXELS, load_image

__all__ = ["ImageCrops"]


class ImageCrops:
    """Random square crops from image files: each image is resized so its shorter side is ``size`` (times a
    random factor in [1, 1.25] for variety), then cropped at a random place. Unreadable files are skipped and
    counted (``skipped``, ``skipped_files``); if every file fails, ImageError."""

    def __init__(self, files: Sequence[Path], size: int, *, seed: int = 0, max_pixels: int = MAX_PIXELS) -> None:
        self.files = list(files)
        self.max_pixels = max_pixels
        self.size = int(size)
        self.rng = random.Random(seed)
        self.bad: Dict[Path, str] = {}
        self.epoch = 0
        self._order: List[Path] = []
        self.served = 0

    @property
    def skipped(self) -> int:
        return len(self.bad)

    @property
    def skipped_files(self) -> List[str]:
        return [f"{p}: {why}" for p, why in self.bad.items()]

    def _next_file(self) -> Path:
        if not self._order:
            good = [p for p in self.files if p not in self.bad]
            if not good:
                raise ImageError(f"no readable training images ({len(self.bad)} unreadable)")
            self.rng.shuffle(good)
            self._order = good
            if self.served:
                self.epoch += 1
        return self._order.pop()

    def crop(self) -> Tensor:
        """One (3, size, size) crop in [0, 1]."""
        while True:
            path = self._next_file()
            try:
                img = load_image(path, max_pixels=self.max_pixels).tensor
            except (ImageError, OSError) as e:
                self.bad[path] = str(e).split(": ", 1)[-1][:120]
                continue
            self.served += 1
            return self._random_crop(img)[0]

    def _random_crop(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        scale = self.size * (1.0 + 0.25 * self.rng.random()) / min(h, w)
        th, tw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        img = F.interpolate(img, size=(th, tw), mode="bilinear", align_corners=False, antialias=scale < 1)
        y = self.rng.randint(0, th - self.size)
        x = self.rng.randint(0, tw - self.size)
        return img[..., y : y + self.size, x : x + self.size].clamp(0, 1)

    def batch(self, n: int) -> Tensor:
        return torch.stack([self.crop() for _ in range(n)])
