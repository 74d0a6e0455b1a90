"""Colour preservation for style transfer (Gatys et al. 2017, "Controlling perceptual factors in neural style transfer").

Two ways to keep the content image's colours while taking the style's texture:

- :func:`match_histogram` *before* stylising: recolour the style image with the content's colour distribution
  (by default a mean/covariance colour transfer followed by exact per-channel histogram matching);
- :func:`transfer_luminance` *after* stylising: keep only the stylised luminance, put the content's chroma back.

Images are (N, 3, H, W) float tensors in [0, 1], sRGB; outputs keep the dtype and device of the first argument.
Luminance/chroma use full-range YCbCr with Rec. 601 weights (the JPEG convention), see :func:`rgb_to_ycbcr`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .tensors import resize_to

__all__ = ["match_histogram", "transfer_luminance", "rgb_to_ycbcr", "ycbcr_to_rgb", "luminance", "MATCH_METHODS",
           "LUMA_WEIGHTS"]

#: Methods of :func:`match_histogram`.
MATCH_METHODS = ("histogram", "linear", "channels")

_KR, _KG, _KB = 0.299, 0.587, 0.114
#: The luminance of an RGB pixel as the weighted sum of its channels (ITU-R BT.601, the Y of JPEG's YCbCr): every
#: "luminance" in styletx (:func:`luminance`: the metrics, optical flow; the transformer's skip) uses these.
LUMA_WEIGHTS = (_KR, _KG, _KB)
_CB_SCALE = 0.5 / (1.0 - _KB)  # 0.5643
_CR_SCALE = 0.5 / (1.0 - _KR)  # 0.7133


def _check_image(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise InputError(f"{name}: expected a (N, 3, H, W) image tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"{name}: expected a (N, 3, H, W) image tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float image tensor in [0, 1], got dtype {x.dtype}")


def _match_batch(name: str, x: Tensor, n: int) -> Tensor:
    """Broadcast a batch of 1 to ``n``; otherwise the batch sizes must agree."""
    if x.shape[0] == n:
        return x
    if x.shape[0] == 1:
        return x.expand(n, -1, -1, -1)
    raise InputError(f"{name}: batch of {x.shape[0]} images does not match {n} (use 1 or {n})")


def luminance(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luminance (:data:`LUMA_WEIGHTS`), in the input's dtype."""
    return _KR * rgb[:, 0:1] + _KG * rgb[:, 1:2] + _KB * rgb[:, 2:3]


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> full-range YCbCr (Y in [0, 1], Cb and Cr in [0, 1] centred on 0.5)."""
    r, b = rgb[:, 0:1], rgb[:, 2:3]
    y = luminance(rgb)
    cb = 0.5 + _CB_SCALE * (b - y)
    cr = 0.5 + _CR_SCALE * (r - y)
    return torch.cat([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (no clamping: out-of-gamut YCbCr gives RGB outside [0, 1])."""
    y, cb, cr = ycbcr[:, 0:1], ycbcr[:, 1:2] - 0.5, ycbcr[:, 2:3] - 0.5
    r = y + cr / _CR_SCALE
    b = y + cb / _CB_SCALE
    g = (y - _KR * r - _KB * b) / _KG
    return torch.cat([r, g, b], dim=1)


def transfer_luminance(stylized: Tensor, content: Tensor) -> Tensor:
    """Luminance of ``stylized`` with the chroma of ``content``: the style's texture in the content's colours.

    stylized: (N, 3, H, W); content: (N or 1, 3, h, w), resized (bilinear, antialiased) to (H, W) when it differs.
    Returns (N, 3, H, W) in [0, 1] with the dtype and device of ``stylized``. The result is Y (Rec. 601 luma) of
    ``stylized`` and Cb/Cr of ``content``, converted back to RGB and clamped to [0, 1]; the clamp only acts where a
    bright/dark luminance cannot carry the content's saturation (there the luminance is kept only approximately).
    Differentiable in ``stylized``.
    """
    _check_image("stylized", stylized)
    _check_image("content", content)
    n, _, h, w = stylized.shape
    content = _match_batch("content", content, n).to(device=stylized.device, dtype=torch.float32)
    content = resize_to(content, (h, w), mode="bilinear")
    luma = rgb_to_ycbcr(stylized.float())[:, 0:1]
    chroma = rgb_to_ycbcr(content)[:, 1:3]
    out = ycbcr_to_rgb(torch.cat([luma, chroma], dim=1)).clamp(0.0, 1.0)
    return out.to(dtype=stylized.dtype)


def _match_quantiles(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """1-D exact quantile matching: each ``src`` value -> the ``ref`` value at the same quantile.

    Equal source values form one group and map to the reference quantile at the group's mid-CDF (so flat regions
    stay flat); the reference quantile function interpolates linearly between its sorted samples, duplicates
    included (so a spike in the reference, e.g. a flat sky, receives its full share of source pixels).
    Monotone non-decreasing; the identity when ``src`` and ``ref`` hold the same values.
    """
    values, inverse, counts = np.unique(src, return_inverse=True, return_counts=True)
    mid_cdf = (np.cumsum(counts) - 0.5 * counts) / src.size
    ref_sorted = np.sort(ref)
    pos = np.clip(mid_cdf * ref_sorted.size - 0.5, 0.0, ref_sorted.size - 1)
    mapped = np.interp(pos, np.arange(ref_sorted.size), ref_sorted)
    return mapped[inverse.reshape(-1)]


def _linear_transfer(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(P, 3), (Q, 3) float64 -> (P, 3): affine map giving ``src`` the mean and covariance of ``ref``.

    x -> A (x - mu_s) + mu_r with A = C_r^(1/2) C_s^(-1/2) (symmetric matrix square roots; the "image analogies"
    variant of Gatys et al. 2017, which keeps colours from rotating).
    """
    eps = 1e-5

    def sqrt_and_inv_sqrt(cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        vals, vecs = np.linalg.eigh(cov + eps * np.eye(3))
        vals = np.clip(vals, eps, None)
        return (vecs * np.sqrt(vals)) @ vecs.T, (vecs / np.sqrt(vals)) @ vecs.T

    mu_s, mu_r = src.mean(axis=0), ref.mean(axis=0)
    _, inv_sqrt_s = sqrt_and_inv_sqrt(np.cov(src, rowvar=False, bias=True))
    sqrt_r, _ = sqrt_and_inv_sqrt(np.cov(ref, rowvar=False, bias=True))
    return (src - mu_s) @ (sqrt_r @ inv_sqrt_s).T + mu_r


def match_histogram(style: Tensor, reference: Tensor, *, method: str = "histogram") -> Tensor:
    """The style image recoloured with the reference's (usually the content's) colour distribution.

    style: (N, 3, H, W); reference: (N or 1, 3, h, w), any size. Returns (N, 3, H, W) in [0, 1], the style's size,
    dtype and device. ``method``:

    - ``"histogram"`` (default): ``"linear"`` then ``"channels"``. The linear step gives the style the reference's
      colour mean and covariance, so colours keep their correlations (no hues that exist in neither image); the
      per-channel step then makes every RGB channel's histogram the reference's exactly. On photographs this looked
      clearly best of the three: ``"channels"`` alone recolours with off-palette hues (e.g. a blue style matched to
      a brown cat turns purple and yellow), ``"linear"`` alone leaves the tones off when either image is far from
      Gaussian.
    - ``"linear"``: the affine colour map of Gatys et al. 2017 (mean and 3x3 covariance, symmetric square roots).
    - ``"channels"``: independent per-channel quantile matching, the idea of
      ``skimage.exposure.match_histograms``; implemented here so that the reference quantiles interpolate between
      its sorted samples rather than between its distinct values (skimage's way smears a reference with flat areas
      or histogram gaps, e.g. graphics or posterised images, into values it does not contain).

    Computed on the CPU in float64 (no gradient flows through it).
    """
    _check_image("style", style)
    _check_image("reference", reference)
    if method not in MATCH_METHODS:
        raise InputError(f"match_histogram: method must be one of {', '.join(MATCH_METHODS)}, got {method!r}")
    n, _, h, w = style.shape
    reference = _match_batch("reference", reference, n)
    sty = style.detach().to("cpu", torch.float64).clamp(0.0, 1.0).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    ref = reference.detach().to("cpu", torch.float64).clamp(0.0, 1.0).permute(0, 2, 3, 1).numpy()
    out = sty.reshape(n, h * w, 3).copy()
    for i in range(n):
        ref_pixels = ref[i].reshape(-1, 3)
        if method in ("histogram", "linear"):
            out[i] = np.clip(_linear_transfer(out[i], ref_pixels), 0.0, 1.0)
        if method in ("histogram", "channels"):
            for c in range(3):
                out[i, :, c] = _match_quantiles(out[i, :, c], ref_pixels[:, c])
    result = torch.from_numpy(out.reshape(n, h, w, 3)).permute(0, 3, 1, 2).contiguous()
    return result.to(device=style.device, dtype=style.dtype)
