"""Tensor geometry shared by every engine and the I/O edges: resizing, padding to a multiple, shape checks, and
converting between tensors and in-memory PIL pictures.

Images are float tensors (N, C, H, W) in [0, 1]; sizes are in pixels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from .errors import InputError

__all__ = [
    "resize_to", "resize_longest", "rescale", "check_batch", "padded_size", "pad_to_multiple", "to_pil", "from_pil",
]


def resize_to(t: Tensor, size: tuple[int, int], *, mode: str = "bicubic") -> Tensor:
    """(N, C, H, W) -> (N, C, h, w) for ``size`` = (h, w); antialiased bicubic (or bilinear), clamped to [0, 1].

    Returned unchanged when already that size.
    """
    check_batch(t, "resize_to")
    if mode not in ("bicubic", "bilinear"):
        raise InputError(f"resize_to: mode must be 'bicubic' or 'bilinear', got {mode!r}")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"resize_to: size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"resize_to: size must be positive, got {(h, w)}")
    if (h, w) == tuple(t.shape[-2:]):
        return t
    x = t if t.dtype in (torch.float32, torch.float64) else t.float()
    out = F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0).to(t.dtype)


def resize_longest(t: Tensor, longest: int, *, mode: str = "bicubic") -> Tensor:
    """(N, C, H, W) -> (N, C, h, w) with max(h, w) == ``longest`` pixels, aspect kept; antialiased, in [0, 1]."""
    check_batch(t, "resize_longest")
    if int(longest) < 1:
        raise InputError(f"resize_longest: longest must be at least 1 pixel, got {longest!r}")
    height, width = int(t.shape[-2]), int(t.shape[-1])
    scale = int(longest) / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize_to(t, size, mode=mode)


def check_batch(t: Tensor, what: str) -> None:
    """Raise InputError naming ``what`` unless ``t`` is a floating-point (N, C, H, W) tensor."""
    if not isinstance(t, Tensor) or t.ndim != 4:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise InputError(f"{what}: expected a (N, C, H, W) tensor, got {shape}")
    if not (t.dtype.is_floating_point):
        raise InputError(f"{what}: expected a floating-point tensor in [0, 1], got {t.dtype}")


def rescale(batch: Tensor, size: Optional[int] = None, factor: Optional[float] = None) -> Tensor:
    """Resize (N, C, H, W) so its longest side is ``size`` px, or scale its sides by ``factor``; unchanged when
    neither is given or the size already matches."""
    h, w = batch.shape[-2:]
    if size is not None:
        f = size / max(h, w)
    elif factor is not None:
        f = float(factor)
    else:
        return batch
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    if (th, tw) == (h, w):
        return batch
    return resize_to(batch, (th, tw))


def padded_size(h: int, w: int, multiple: int = 4, min_size: int = 16) -> Tuple[int, int]:
    """(H, W) rounded up to multiples of ``multiple`` and to at least ``min_size`` (what :func:`pad_to_multiple`
    pads to)."""
    return max(min_size, -(-h // multiple) * multiple), max(min_size, -(-w // multiple) * multiple)


def pad_to_multiple(x: Tensor, multiple: int = 4, min_size: int = 16) -> Tuple[Tensor, Tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom and right to sides that are multiples of ``multiple`` and at least
    ``min_size``: reflection where the image is big enough, else replication. Returns (padded, (ph, pw))."""
    h, w = x.shape[-2], x.shape[-1]
    th, tw = padded_size(h, w, multiple, min_size)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x, (0, 0)
    if ph < h and pw < w:
        return F.pad(x, (0, pw, 0, ph), mode="reflect"), (ph, pw)
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), (ph, pw)


def to_pil(t: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> PIL RGB image (clamped, rounded to 8 bits; NaN -> 0)."""
    if not isinstance(t, Tensor):
        raise InputError(f"to_pil: expected a torch tensor, got {type(t).__name__}")
    x = t.detach()
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"to_pil: expected one image (1, 3, H, W), got a batch of shape {tuple(x.shape)}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise InputError(f"to_pil: expected shape (1, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = x.to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy())


def from_pil(img: Image.Image) -> Tensor:
    """A PIL image -> (1, 3, H, W) float32 in [0, 1], converted to RGB by Pillow (alpha dropped, no colour
    management: :func:`styletx.load_image` reads files and profiles fully)."""
    return pil_to_tensor(img.convert("RGB")).unsqueeze(0).float().div_(255.0)
