"""Quality scores for style-transfer results that do not depend on any neural backbone.

They judge a result honestly whichever backbone made it (ImageNet VGG or the weight-free random one):

- :func:`content_ssim`     structure kept from the content image (SSIM of luminance; higher = closer, 1.0 = identical);
- :func:`color_distance`   colour palette taken from the style image (sliced Wasserstein distance of RGB pixel colours;
  lower = closer, 0.0 = same colour distribution);
- :func:`texture_distance` texture taken from the style image (Gram matrices of a fixed multi-scale Gabor filter
  bank; lower = closer, 0.0 = same statistics, range [0, 1));
- :func:`score`            all three as a dict;
- :func:`grid_score`       strength of a grid with a given period (e.g. a pixel-shuffle head's 4-px plaid; 0 = none,
  1 = all the fine detail is the grid; lower is better);
- :func:`edge_contrast`    a line along the picture's edges: how far the outermost rows' brightness departs from the
  rows just inside them, worst side (0 = none; lower is better);
- :func:`flicker_score`    temporal steadiness of a stylised clip relative to its input clip (1.0 = changes as much as
  the input; lower is steadier); :class:`FlickerMeter` computes it frame by frame.

Inputs are anything :func:`styletx.io.image.load_image` accepts (paths, PIL images, numpy arrays, tensors); a tensor is
(1, 3, H, W) or (3, H, W) float in [0, 1]. Every score is deterministic (fixed projection directions, fixed
subsampling seed, fixed filters) and computed on the CPU in float32/float64.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import Tensor

from .color import luminance
from .errors import ImageError, InputError
from .io.image import load_image
from .options import DEFAULT_MAX_PIXELS
from .temporal import DEFAULT_FLOW_MAX_SIDE, DEFAULT_FLOW_METHOD, reliable_flow, warp
from .tensors import check_batch, resize_longest, resize_to

__all__ = [
    "content_ssim",
    "color_distance",
    "texture_distance",
    "score",
    "flicker_score",
    "grid_score",
    "FlickerMeter",
    "COLOR_DIRECTIONS",
    "COLOR_MAX_PIXELS",
    "TEXTURE_SIZE",
    "TEXTURE_SCALES",
    "TEXTURE_ORIENTATIONS",
]


#: Number of projection directions of the sliced Wasserstein colour distance.
COLOR_DIRECTIONS = 64
#: At most this many pixels (a fixed-seed random subset) enter the colour distance.
COLOR_MAX_PIXELS = 65536
_COLOR_SEED = 0

#: Texture statistics are computed with both images resized so that their longest side is this many pixels.
TEXTURE_SIZE = 256
#: Pyramid levels of the Gabor bank (periods 4, 8, 16, 32 px at the working size).
TEXTURE_SCALES = 4
#: Gabor orientations (0, 45, 90, 135 degrees).
TEXTURE_ORIENTATIONS = 4
_GABOR_WAVELENGTH = 4.0  # px, at every pyramid level
_GABOR_SIGMA = 0.56 * _GABOR_WAVELENGTH  # one-octave frequency bandwidth
# Floor added to the Gram norms: a Gram entry of 1e-4 is a grating of amplitude 0.01 (1 % contrast), so images with
# less texture than that compare as "both flat" instead of amplifying noise.
_TEXTURE_EPS = 1e-4
# A level whose texture energy is small next to the other levels' (both images nearly flat there, e.g. the finest
# level of an upscaled image) is damped: its denominator gets 10 % of the mean level norm added.
_TEXTURE_LEVEL_FLOOR = 0.1


# ----------------------------------------------------------------------------------------------------------- inputs


def _as_image(source: Any, what: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Any source :func:`~styletx.io.image.load_image` accepts -> (1, 3, H, W) float32 CPU tensor in [0, 1]."""
    try:
        loaded = load_image(source, max_pixels=max_pixels)
    except ImageError as e:
        if isinstance(source, (str, os.PathLike)):
            raise  # the message already names the file
        raise ImageError(f"{what}: {e}") from e
    return loaded.tensor.detach().to(device="cpu", dtype=torch.float32)


def _halve(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H // 2, W // 2), antialiased bilinear, values not clamped (for signed channels)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(max(1, h // 2), max(1, w // 2)), mode="bilinear", align_corners=False, antialias=True)


# ----------------------------------------------------------------------------------------------------- content SSIM


def content_ssim(output: Any, content: Any) -> float:
    """SSIM between the luminance of ``output`` and of ``content``: how much content structure survived.

    ``output`` is resized (bilinear, antialiased) to the content's size first. Standard SSIM settings (Wang et al.
    2004): Gaussian window sigma 1.5, data range 1; images under 11 px on a side use the largest odd uniform window
    that fits (at least 3 px). Range [-1, 1], in practice [0, 1]; **higher is better**, 1.0 for identical luminance.
    """
    out = _as_image(output, "output")
    ref = _as_image(content, "content")
    h, w = ref.shape[-2:]
    out = resize_to(out, (h, w), mode="bilinear")
    a = luminance(out)[0, 0].double().numpy()
    b = luminance(ref)[0, 0].double().numpy()
    side = min(h, w)
    if side >= 11:
        kwargs: Dict[str, Any] = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    elif side >= 3:
        kwargs = {"win_size": side if side % 2 else side - 1}
    else:
        raise InputError(f"content: image of {w}x{h} px is too small for SSIM (needs at least 3 px on each side)")
    return float(structural_similarity(a, b, data_range=1.0, **kwargs))


# --------------------------------------------------------------------------------------------------- colour distance


@lru_cache(maxsize=None)
def _color_directions(n: int = COLOR_DIRECTIONS) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over a hemisphere (Fibonacci lattice; fixed, no RNG).

    A hemisphere suffices: the 1-D Wasserstein distance along -d equals that along d.
    """
    i = np.arange(n, dtype=np.float64) + 0.5
    z = i / n  # uniform in z -> uniform in area (Archimedes)
    r = np.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _sorted_projections(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) -> (D, P) float32: colours projected on the fixed directions, sorted along each.

    P is the pixel count, or ``COLOR_MAX_PIXELS`` pixels chosen by a fixed-seed random subset.
    """
    pix = x[0].reshape(3, -1).numpy()
    if pix.shape[1] > COLOR_MAX_PIXELS:
        idx = np.random.default_rng(_COLOR_SEED).choice(pix.shape[1], size=COLOR_MAX_PIXELS, replace=False)
        pix = pix[:, np.sort(idx)]
    proj = _color_directions(COLOR_DIRECTIONS).astype(np.float32) @ pix
    proj.sort(axis=1)
    return proj


def _quantiles(sorted_proj: np.ndarray, k: int) -> np.ndarray:
    """(D, n) sorted samples -> (D, k) values at quantile levels (i + 0.5) / k (linear interpolation)."""
    n = sorted_proj.shape[1]
    if n == k:
        return sorted_proj
    pos = np.clip((np.arange(k) + 0.5) / k * n - 0.5, 0.0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    return sorted_proj[:, lo] * (1.0 - frac) + sorted_proj[:, hi] * frac


def color_distance(output: Any, style: Any) -> float:
    """Sliced Wasserstein-1 distance between the RGB colour distributions of ``output`` and ``style``.

    Pixels are treated as a bag of colours (positions ignored, so any spatial shuffle gives the same value). Both
    colour sets are projected on 64 fixed unit directions (a Fibonacci lattice on the hemisphere); along each, the
    sorted projections are compared quantile by quantile (mean absolute difference), and the 64 results are
    averaged. At most 65,536 pixels per image enter (a fixed-seed random subset), so the score is deterministic.
    Images may differ in size. Units are RGB intensity in [0, 1]: range [0, sqrt(3)], in practice below ~0.6;
    **lower is better**, 0.0 for identical colour distributions. A uniform colour shift ``v`` gives
    ``mean_d |v . d|`` (about ``0.5 * |v|``).
    """
    pa = _sorted_projections(_as_image(output, "output"))
    pb = _sorted_projections(_as_image(style, "style"))
    k = max(pa.shape[1], pb.shape[1])
    return float(np.mean(np.abs(_quantiles(pa, k) - _quantiles(pb, k)), dtype=np.float64))


# -------------------------------------------------------------------------------------------------- texture distance


@lru_cache(maxsize=None)
def _gabor_bank() -> Tensor:
    """(2 * O, 1, k, k) float32: an even (cosine) and odd (sine) Gabor filter per orientation.

    Isotropic Gaussian envelope (sigma = 0.56 * wavelength, one octave of bandwidth), wavelength 4 px, kernel
    radius ceil(3 sigma). The even filter has its mean removed (no response to flat regions); both are scaled so
    that the complex filter has unit gain at its peak frequency, i.e. a sinusoidal grating of amplitude A at the
    preferred frequency and orientation gives a response magnitude of about A.
    """
    radius = int(math.ceil(3 * _GABOR_SIGMA))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    envelope = torch.exp(-(xx**2 + yy**2) / (2 * _GABOR_SIGMA**2))
    filters: List[Tensor] = []
    for o in range(TEXTURE_ORIENTATIONS):
        theta = math.pi * o / TEXTURE_ORIENTATIONS
        u = xx * math.cos(theta) + yy * math.sin(theta)
        phase = 2 * math.pi * u / _GABOR_WAVELENGTH
        even = envelope * torch.cos(phase)
        even = even - envelope * (even.sum() / envelope.sum())  # zero DC, keeping the envelope's shape
        odd = envelope * torch.sin(phase)
        # Response to cos(phase) (resp. sin) at the preferred frequency equals sum(even * cos) (resp. sum(odd * sin)).
        even = even / (even * torch.cos(phase)).sum()
        odd = odd / (odd * torch.sin(phase)).sum()
        filters += [even, odd]
    return torch.stack(filters).unsqueeze(1).float()


def _opponent(x: Tensor) -> Tensor:
    """(1, 3, H, W) RGB -> (1, 3, H, W) luminance, red-green, blue-yellow."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.cat([luminance(x), r - g, 0.5 * (r + g) - b], dim=1)


def _texture_grams(x: Tensor) -> List[Tensor]:
    """(1, 3, H, W) -> one (C, C) float64 Gram matrix per pyramid level, C = 3 channels x orientations.

    The image is resized to longest side ``TEXTURE_SIZE``, turned into opponent channels, and at each of
    ``TEXTURE_SCALES`` pyramid levels (halving the size each time) filtered with the Gabor bank; the rectified
    responses are the local amplitudes sqrt(even^2 + odd^2). Gram = amplitudes @ amplitudes.T / positions.
    """
    bank = _gabor_bank()
    k = bank.shape[-1]
    pad = k // 2
    chans = _opponent(resize_longest(x, TEXTURE_SIZE, mode="bilinear"))
    weight = bank.repeat(3, 1, 1, 1)  # (3 * 2O, 1, k, k), grouped per opponent channel
    grams: List[Tensor] = []
    for level in range(TEXTURE_SCALES):
        if level:
            chans = _halve(chans)
        h, w = chans.shape[-2:]
        mode = "reflect" if pad < min(h, w) else "replicate"
        resp = F.conv2d(F.pad(chans, (pad, pad, pad, pad), mode=mode), weight, groups=3)
        amp = resp.reshape(3 * TEXTURE_ORIENTATIONS, 2, h * w).square().sum(dim=1).sqrt()
        grams.append((amp @ amp.T).double() / (h * w))
    return grams


def texture_distance(output: Any, style: Any) -> float:
    """Distance between texture statistics of ``output`` and ``style`` from a fixed multi-scale Gabor filter bank.

    Both images are resized to longest side 256 px (so the score does not depend on input size), converted to
    luminance + two colour-opponent channels, and filtered at 4 pyramid levels (periods 4, 8, 16, 32 px) with
    4 orientations of complex Gabor filters; the local amplitudes are the rectified responses. Per level, their
    Gram matrices (12 x 12, mean over positions) are compared by the symmetric relative Frobenius distance
    ``|Ga - Gb| / (|Ga| + |Gb| + floor)`` and the levels are averaged; the floor (1e-4 plus 10 % of the mean level
    norm) keeps a level where both images are nearly flat from counting as a full mismatch. Range [0, 1) (flat vs.
    textured is typically 0.5-0.9, unrelated textures 0.3-0.7, crops of one texture below 0.1); **lower is
    better**, 0.0 for identical statistics (e.g. the same image); two flat images compare as 0.
    """
    ga = _texture_grams(_as_image(output, "output"))
    gb = _texture_grams(_as_image(style, "style"))
    return _gram_distance(ga, gb)


def _gram_distance(ga: List[Tensor], gb: List[Tensor]) -> float:
    """Mean over levels of |Ga - Gb| / (|Ga| + |Gb| + floor), floor = eps + 10 % of the mean level norm."""
    diffs = [float(torch.linalg.norm(a - b)) for a, b in zip(ga, gb)]
    norms = [float(torch.linalg.norm(a) + torch.linalg.norm(b)) for a, b in zip(ga, gb)]
    floor = _TEXTURE_EPS + _TEXTURE_LEVEL_FLOOR * sum(norms) / len(norms)
    return sum(d / (n + floor) for d, n in zip(diffs, norms)) / len(norms)


# ------------------------------------------------------------------------------------------------------------ score


def score(output: Any, content: Any, style: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dict[str, float]:
    """All three scores of a style-transfer result, each image loaded once (files larger than ``max_pixels``
    refused before decoding).

    Returns ``{"content_ssim": higher is better (<= 1), "color_distance": lower is better (>= 0),
    "texture_distance": lower is better (in [0, 1])}``.
    """
    out = _as_image(output, "output", max_pixels)
    con = _as_image(content, "content", max_pixels)
    sty = _as_image(style, "style", max_pixels)
    return {
        "content_ssim": content_ssim(out, con),
        "color_distance": color_distance(out, sty),
        "texture_distance": texture_distance(out, sty),
    }


# --------------------------------------------------------------------------------------------------------- grid score


def grid_score(image: Any, period: int = 4) -> float:
    """The fraction of an image's fine detail that is a grid of ``period`` px: 0 for none, 1 for a pure grid.

    Each channel's high-pass ``x - box(x)`` (a ``period`` x ``period`` moving average, which leaves a pattern of
    that period whole and removes smooth content) is averaged over the image at each of the period x period
    phases; the variance of these phase means (the image's spectral energy at the frequencies k/period, the
    zero frequency excluded) is divided by the high-pass variance. White noise of N pixels scores about
    period^2 / N; an added plaid of that period scores plaid / (plaid + detail) energy. Channels are pooled;
    the image needs at least 4 periods per side. **Lower is better.**
    """
    if not isinstance(period, int) or isinstance(period, bool) or period < 2:
        raise InputError(f"period: expected an integer >= 2, got {period!r}")
    x = _as_image(image, "image").double()
    if x.shape[-2] < 4 * period or x.shape[-1] < 4 * period:
        raise InputError(f"image: {x.shape[-1]}x{x.shape[-2]} px is too small for a {period}-px grid score "
                         f"(needs at least {4 * period} px on each side)")
    # moving average over the valid region (no wrap: a picture's edges would be a false edge); a pattern of
    # the period averages to its mean there, smooth content to itself (a ramp to a constant, the same at every
    # phase, which the phase means' own mean removes)
    c = period // 2
    box = F.avg_pool2d(x.flatten(0, 1)[:, None], period, stride=1)[:, 0].reshape(*x.shape[:-2], -1, x.shape[-1] - period + 1)
    hp = x[..., c : c + box.shape[-2], c : c + box.shape[-1]] - box
    h, w = (hp.shape[-2] // period) * period, (hp.shape[-1] // period) * period
    hp = hp[..., :h, :w]
    phases = hp.reshape(*hp.shape[:-2], h // period, period, w // period, period).mean(dim=(-4, -2))
    phases = phases - phases.mean(dim=(-2, -1), keepdim=True)
    total = float(hp.square().mean())
    if total <= 1e-20:
        return 0.0
    return float(phases.square().mean()) / total


def edge_contrast(image: Any, width: int = 1) -> float:
    """A line or frame along the edges: the largest, over the four sides, absolute difference between the mean
    luminance (in [0, 1]) of the outermost ``width`` rows (columns) and that of the next ``width`` inside them.

    A picture's own edges score what its neighbouring rows differ by anyway (a few thousandths for a photo); an
    optimiser that pulls the edge rows less than the inside leaves a brighter or darker line that scores
    several hundredths. The image needs at least 4 x ``width`` px on each side. **Lower is better.**
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise InputError(f"width: expected an integer >= 1, got {width!r}")
    y = luminance(_as_image(image, "image").double())[0, 0]
    if min(y.shape) < 4 * width:
        raise InputError(f"image: {y.shape[-1]}x{y.shape[-2]} px is too small for a {width}-px edge contrast "
                         f"(needs at least {4 * width} px on each side)")
    sides = (y, y.flip(0), y.t(), y.t().flip(0))  # each with the side in question as its first rows
    return max(abs(float(s[:width].mean() - s[width:2 * width].mean())) for s in sides)


# ------------------------------------------------------------------------------------------------------ flicker score


class FlickerMeter:
    """Streaming :func:`flicker_score`: feed (stylised, input) frame pairs in order with :meth:`update`, read
    :meth:`value`. Keeps only the previous pair, so memory stays flat however long the clip.

    For each frame t > 0, with ``flow_back`` the backward optical flow of the *input* (frame t -> t-1) and ``mask``
    its forward-backward consistency mask (:func:`styletx.temporal.reliable_flow`), it adds up over the pixels the
    mask keeps (and the 3 channels)

        stylised change = |s_t - warp(s_{t-1}, flow_back)|,   input change = |x_t - warp(x_{t-1}, flow_back)|.

    Input frames of another size than the stylised ones are resized to the stylised size (bilinear) first.
    """

    def __init__(self, *, method: str = DEFAULT_FLOW_METHOD, max_side: Optional[int] = DEFAULT_FLOW_MAX_SIDE) -> None:
        self.method = method
        self.max_side = max_side
        self.pairs = 0  #: frame pairs (t-1, t) measured so far
        self._stylised_sum = 0.0
        self._input_sum = 0.0
        self._count = 0.0  # masked pixel-channels summed over
        self._previous: Optional[tuple] = None

    def update(self, stylised: Tensor, input_frame: Tensor) -> None:
        """Add one frame: ``stylised`` (1, 3, H, W) and the ``input_frame`` (1, 3, H', W') it was made from."""
        check_batch(stylised, "flicker score: stylised frame")
        check_batch(input_frame, "flicker score: input frame")
        if stylised.shape[0] != 1 or input_frame.shape[0] != 1:
            raise InputError(f"flicker score: expected one frame at a time, got {tuple(stylised.shape)} and "
                             f"{tuple(input_frame.shape)}")
        # copies, kept for the next frame: the caller may reuse its buffers
        s = stylised.detach().to(torch.float32, copy=True)
        x = input_frame.detach().to(device=s.device, dtype=torch.float32, copy=True)
        x = resize_to(x, tuple(s.shape[-2:]), mode="bilinear")
        if self._previous is not None:
            prev_s, prev_x = self._previous
            if prev_s.shape != s.shape:
                raise InputError(f"flicker score: frame size changed from {tuple(prev_s.shape[-2:])} "
                                 f"to {tuple(s.shape[-2:])}")
            flow_back, mask = reliable_flow(x, prev_x, method=self.method, max_side=self.max_side)
            self._stylised_sum += float(((s - warp(prev_s, flow_back)).abs() * mask).sum())
            self._input_sum += float(((x - warp(prev_x, flow_back)).abs() * mask).sum())
            self._count += float(mask.sum()) * s.shape[1]
            self.pairs += 1
        self._previous = (s, x)

    @property
    def stylised_change(self) -> float:
        """Mean absolute change of the stylised frames along the flow, per kept pixel and channel (0..1)."""
        return self._stylised_sum / self._count if self._count else 0.0

    @property
    def input_change(self) -> float:
        """Mean absolute change of the input frames along the flow, per kept pixel and channel (0..1)."""
        return self._input_sum / self._count if self._count else 0.0

    def value(self) -> Optional[float]:
        """stylised change / input change (>= 0; 1.0 when the stylised clip is the input clip; lower is steadier).

        ``None`` until two frames were added or while no pixel had a reliable flow; a static input clip (no change
        at all) gives 1.0 if the stylised clip is static too, else ``inf``.
        """
        if self.pairs == 0 or self._count == 0:
            return None
        if self._input_sum == 0.0:
            return 1.0 if self._stylised_sum == 0.0 else math.inf
        return self._stylised_sum / self._input_sum


def flicker_score(
    stylised_frames: Iterable[Tensor],
    input_frames: Iterable[Tensor],
    *,
    method: str = DEFAULT_FLOW_METHOD,
    max_side: Optional[int] = DEFAULT_FLOW_MAX_SIDE,
) -> float:
    """How much a stylised clip flickers relative to its input clip: (1, 3, H, W) frames in [0, 1] -> float >= 0.

    The mean absolute difference between each stylised frame and the previous stylised frame warped by the *input's*
    backward optical flow, on the pixels where that flow is reliable (forward-backward consistency mask), divided by
    the same quantity for the input clip (see :class:`FlickerMeter`). 1.0 means the stylised frames change along the
    motion as much as the input frames do (the input clip itself scores exactly 1.0); **lower is steadier**.
    Both iterables are consumed in lockstep, one frame pair at a time (only the previous pair is kept), and must have
    the same length, at least two frames. ``method``/``max_side`` choose the optical flow as in
    :func:`styletx.temporal.estimate_flow`.
    """
    meter = FlickerMeter(method=method, max_side=max_side)
    stylised_iter, input_iter = iter(stylised_frames), iter(input_frames)
    frames = 0
    while True:
        s = next(stylised_iter, None)
        x = next(input_iter, None)
        if s is None or x is None:
            if s is not None or x is not None:
                longer = "stylised" if s is not None else "input"
                raise InputError(f"flicker score: the {longer} clip has more frames than the other ({frames} in common)")
            break
        meter.update(s, x)
        frames += 1
    result = meter.value()
    if result is None:
        why = "at least two frames" if frames < 2 else "pixels with a reliable optical flow"
        raise InputError(f"flicker score: needs {why} (got {frames} frames)")
    return result
