"""Temporal coherence for video: optical flow, backward warping, occlusion masks and flicker reduction.

Conventions (every function here):

- a frame is a float tensor (N, C, H, W), values in [0, 1] for images, on any device (N is 1 for video frames);
- a flow is a float32 tensor (N, 2, H, W) in **pixels**: channel 0 = x (columns, to the right), channel 1 = y
  (rows, downwards), on the device of the frames it was computed from;
- ``flow_back = estimate_flow(current, previous)`` is the *backward* flow: the content at pixel p of ``current``
  was at ``p + flow_back[p]`` in ``previous``, so ``warp(previous, flow_back)`` (and likewise the previous
  *stylised* frame) is aligned with ``current``. ``flow_fwd = estimate_flow(previous, current)`` is the forward flow,
  defined on the pixels of ``previous``.

Flow comes from scikit-image (TV-L1 ``"tvl1"``, the default, or iterative Lucas-Kanade ``"ilk"``) on the Rec. 601
luminance, computed with the longest side reduced to ``max_side`` pixels and upsampled (vectors scaled) to the frame
size. ``benchmarks/bench_flow.py`` measures endpoint error, occlusion detection and time per frame of each method and
size on a generated clip with known motion. TV-L1 at 160 px was chosen there: at about the cost of iLK at 256 px
(50-65 ms per flow at 640x360 on one core) its consistency mask finds over 90 % of the pixels hidden in the previous
frame where iLK's finds about 60 % (missed ones become ghosts when blending), and keeps more of the visible ones.
(OpenCV's DIS was both faster and more accurate there; it is not a dependency of styletx.)
"""

from __future__ import annotations

from numbers import Integral
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from skimage.registration import optical_flow_ilk, optical_flow_tvl1
from torch import Tensor

from .color import luminance
from .errors import InputError
from .tensors import check_batch, resize_to

__all__ = [
    "FLOW_METHODS",
    "DEFAULT_FLOW_METHOD",
    "DEFAULT_FLOW_MAX_SIDE",
    "estimate_flow",
    "resize_flow",
    "warp",
    "consistency_mask",
    "reliable_flow",
    "FlickerReducer",
]

#: Optical-flow methods of :func:`estimate_flow` (scikit-image's ``optical_flow_ilk`` and ``optical_flow_tvl1``).
FLOW_METHODS = ("tvl1", "ilk")
#: Default method: see ``benchmarks/bench_flow.py`` for the measurements behind it.
DEFAULT_FLOW_METHOD = "tvl1"
#: Default working size of the flow: the frames' longest side is reduced to this many pixels (never enlarged).
DEFAULT_FLOW_MAX_SIDE = 160

# Solver settings, measured in benchmarks/bench_flow.py. TV-L1: 2 warps x 10 iterations per pyramid level (scikit-image's
# default 5 x 10 costs 2.5x for an endpoint error about 10 % lower). iLK: scikit-image's window radius (7 px at the
# working size) and 3 warps instead of 10 (the same error, a third of the time).
_TVL1_NUM_WARP = 2
_TVL1_NUM_ITER = 10
_ILK_RADIUS = 7
_ILK_NUM_WARP = 3


# ------------------------------------------------------------------------------------------------------------ checks


def _check_frames(what: str, *frames: Tensor) -> None:
    for f in frames:
        check_batch(f, what)
    shapes = {(f.shape[0], *f.shape[2:]) for f in frames}
    if len(shapes) > 1:
        raise InputError(f"{what}: frames differ in batch or size: {[tuple(f.shape) for f in frames]}")


def _check_flow(what: str, flow: Tensor) -> None:
    if not isinstance(flow, Tensor) or flow.ndim != 4 or flow.shape[1] != 2 or not flow.is_floating_point():
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise InputError(f"{what}: expected a (N, 2, H, W) float flow in pixels, got {shape}")


def _check_method(method: str, max_side: Optional[int]) -> None:
    if method not in FLOW_METHODS:
        raise InputError(f"unknown optical-flow method {method!r}: choose one of {', '.join(FLOW_METHODS)}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, Integral) or max_side < 8):
        raise InputError(f"flow max_side must be an integer of at least 8 pixels (or None), got {max_side!r}")


# -------------------------------------------------------------------------------------------------------------- flow


def _grey(frame: Tensor, max_side: Optional[int]) -> np.ndarray:
    """(1, C, H, W) -> (h, w) float32 numpy luminance (Rec. 601 for RGB, else the channel mean), longest side reduced
    to ``max_side`` pixels (antialiased bilinear; never enlarged)."""
    x = frame.detach().float()
    if x.shape[1] == 3:
        grey = luminance(x)
    else:
        grey = x.mean(dim=1, keepdim=True)
    h, w = grey.shape[-2:]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        grey = resize_to(grey, (max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear")
    return grey[0, 0].cpu().numpy()


def resize_flow(flow: Tensor, size: Tuple[int, int]) -> Tensor:
    """(N, 2, h, w) flow in pixels -> (N, 2, H, W) for ``size`` = (H, W): bilinear, vectors scaled by W/w and H/h.

    Pixel centres map as in ``F.interpolate(..., align_corners=False)``, so a displacement of d pixels at the small
    size becomes d * W / w pixels (x) at the large one. Returned unchanged when already that size.
    """
    _check_flow("resize_flow", flow)
    h, w = flow.shape[-2:]
    big_h, big_w = int(size[0]), int(size[1])
    if (big_h, big_w) == (h, w):
        return flow
    antialias = big_h < h or big_w < w
    out = F.interpolate(flow.float(), size=(big_h, big_w), mode="bilinear", align_corners=False, antialias=antialias)
    scale = torch.tensor([big_w / w, big_h / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale


def estimate_flow(
    target: Tensor,
    source: Tensor,
    *,
    method: str = DEFAULT_FLOW_METHOD,
    max_side: Optional[int] = DEFAULT_FLOW_MAX_SIDE,
) -> Tensor:
    """Dense optical flow from ``target`` to ``source``: (N, C, H, W) frames -> (N, 2, H, W) float32 pixels.

    For each pixel p of ``target``, ``p + flow[p]`` is where its content lies in ``source``, so
    ``warp(source, flow)`` approximates ``target``. With ``target`` the current frame and ``source`` the previous one
    this is the backward flow. Computed by scikit-image (``method`` ``"tvl1"`` or ``"ilk"``) on the luminance with the
    longest side reduced to ``max_side`` pixels (``None``: full size), then upsampled to (H, W) with the vectors
    scaled. Returned on ``target``'s device; the gradient does not flow through it.
    """
    _check_frames("estimate_flow", target, source)
    _check_method(method, max_side)
    flows = []
    for i in range(target.shape[0]):
        reference = _grey(target[i:i + 1], max_side)
        moving = _grey(source[i:i + 1], max_side)
        # scikit-image: reference(p) ~ moving(p + (v, u)[p]), rows first.
        if method == "ilk":
            v, u = optical_flow_ilk(reference, moving, radius=_ILK_RADIUS, num_warp=_ILK_NUM_WARP)
        else:
            v, u = optical_flow_tvl1(reference, moving, num_warp=_TVL1_NUM_WARP, num_iter=_TVL1_NUM_ITER)
        flows.append(torch.from_numpy(np.stack([u, v]).astype(np.float32, copy=False)))
    flow = torch.stack(flows).to(target.device)
    return resize_flow(flow, tuple(target.shape[-2:]))


# -------------------------------------------------------------------------------------------------------------- warp


def _sample_grid(flow: Tensor) -> Tensor:
    """(N, 2, H, W) flow in pixels -> (N, H, W, 2) grid for ``grid_sample(..., align_corners=True)``."""
    n, _, h, w = flow.shape
    ys = torch.arange(h, dtype=torch.float32, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=flow.device).view(1, 1, w)
    x = (xs + flow[:, 0].float()) * (2.0 / max(w - 1, 1)) - 1.0
    y = (ys + flow[:, 1].float()) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([x, y], dim=-1)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: (N, C, H, W) image, (N|1, 2, H, W) flow in pixels -> (N, C, H, W), out[p] = image[p + flow[p]].

    Bilinear (``grid_sample`` with ``align_corners=True``, so pixel centres sit at integer coordinates 0..W-1);
    positions outside the image take the nearest border pixel. Any channel count; computed in float32 and returned
    in ``image``'s dtype; differentiable with respect to ``image`` (and the flow).
    """
    check_batch(image, "warp")
    _check_flow("warp", flow)
    if flow.shape[-2:] != image.shape[-2:] or flow.shape[0] not in (1, image.shape[0]):
        raise InputError(f"warp: flow {tuple(flow.shape)} does not match image {tuple(image.shape)}")
    grid = _sample_grid(flow.to(image.device)).expand(image.shape[0], -1, -1, -1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


# ---------------------------------------------------------------------------------------------------- occlusion mask


def consistency_mask(
    flow_fwd: Tensor,
    flow_back: Tensor,
    *,
    relative: float = 0.01,
    absolute: float = 0.5,
    boundary_relative: float = 0.01,
    boundary_absolute: float = 0.002,
) -> Tensor:
    """Where the backward flow is reliable: (N, 2, H, W) flows -> (N, 1, H, W) float32 mask in {0, 1}.

    ``flow_back`` (current -> previous) is defined on the current frame, ``flow_fwd`` (previous -> current) on the
    previous one. Forward-backward consistency (Sundaram et al. 2010, as in Ruder et al. 2016): with
    ``w_b = flow_back[p]`` and ``w_f = flow_fwd[p + w_b]`` (bilinear), pixel p is reliable when

        |w_b + w_f|^2 <= relative * (|w_b|^2 + |w_f|^2) + absolute                 (not disoccluded)
        |grad u_b|^2 + |grad v_b|^2 <= boundary_relative * |w_b|^2 + boundary_absolute   (not a motion boundary)

    and ``p + w_b`` lies inside the previous frame (content entering the frame is unreliable). Units are pixels
    (and pixels per pixel for the gradient, by central differences); defaults are the papers' 0.01, 0.5, 0.01,
    0.002. Pixels that fail are those whose content was hidden (or outside) in the previous frame.
    """
    _check_flow("consistency_mask", flow_fwd)
    _check_flow("consistency_mask", flow_back)
    if flow_fwd.shape != flow_back.shape:
        raise InputError(f"consistency_mask: flows differ in shape, {tuple(flow_fwd.shape)} vs {tuple(flow_back.shape)}")
    w_b = flow_back.float()
    w_f = warp(flow_fwd.float().to(w_b.device), w_b)
    consistent = (w_b + w_f).square().sum(1) <= relative * (w_b.square().sum(1) + w_f.square().sum(1)) + absolute
    h, w = w_b.shape[-2:]
    if h > 1 and w > 1:
        d_rows, d_cols = torch.gradient(w_b, dim=(-2, -1))
        grad = d_rows.square().sum(1) + d_cols.square().sum(1)
        smooth = grad <= boundary_relative * w_b.square().sum(1) + boundary_absolute
    else:
        smooth = torch.ones_like(consistent)
    ys = torch.arange(h, dtype=torch.float32, device=w_b.device).view(1, h, 1) + w_b[:, 1]
    xs = torch.arange(w, dtype=torch.float32, device=w_b.device).view(1, 1, w) + w_b[:, 0]
    inside = (xs >= -0.5) & (xs <= w - 0.5) & (ys >= -0.5) & (ys <= h - 0.5)
    return (consistent & smooth & inside).unsqueeze(1).float()


def reliable_flow(
    current: Tensor,
    previous: Tensor,
    *,
    method: str = DEFAULT_FLOW_METHOD,
    max_side: Optional[int] = DEFAULT_FLOW_MAX_SIDE,
) -> Tuple[Tensor, Tensor]:
    """Backward flow and its reliability: (N, C, H, W) frames -> ((N, 2, H, W) flow_back, (N, 1, H, W) mask).

    Two flows (current -> previous and previous -> current, by :func:`estimate_flow`) and their
    :func:`consistency_mask`. ``warp(previous_output, flow_back)`` is then trustworthy where ``mask`` is 1: what
    the optimisation engine's temporal loss and :class:`FlickerReducer` use.
    """
    flow_back = estimate_flow(current, previous, method=method, max_side=max_side)
    flow_fwd = estimate_flow(previous, current, method=method, max_side=max_side)
    return flow_back, consistency_mask(flow_fwd, flow_back)


# ------------------------------------------------------------------------------------------------- flicker reduction


class FlickerReducer:
    """Steadies frame-by-frame stylisation: blends each stylised frame with the previous output, warped by the flow.

    Feed consecutive frames to :meth:`reduce`. For every frame after the first,

        out = s + strength * mask * (warp(previous_out, flow_back) - s)

    where ``s`` is the stylised frame, ``flow_back`` the backward flow of the *input* frames (current -> previous)
    and ``mask`` their :func:`consistency_mask` (1 where the flow is reliable, 0 at occlusions and motion
    boundaries). ``strength`` in [0, 1]: 0 returns every stylised frame unchanged (and computes no flow), 1 copies
    the warped previous output wherever the flow is reliable. :meth:`reset` starts a new clip.
    """

    def __init__(
        self,
        strength: float,
        *,
        method: str = DEFAULT_FLOW_METHOD,
        max_side: Optional[int] = DEFAULT_FLOW_MAX_SIDE,
    ) -> None:
        try:
            value = float(strength)
        except (TypeError, ValueError):
            raise InputError(f"flicker reduction strength must be a number in [0, 1], got {strength!r}") from None
        if isinstance(strength, bool) or not 0.0 <= value <= 1.0:
            raise InputError(f"flicker reduction strength must be in [0, 1], got {strength!r}")
        _check_method(method, max_side)
        self.strength = value
        self.method = method
        self.max_side = max_side
        self._previous_input: Optional[Tensor] = None
        self._previous_output: Optional[Tensor] = None

    def reset(self) -> None:
        """Forget the previous frame: the next :meth:`reduce` call is the first frame of a clip."""
        self._previous_input = None
        self._previous_output = None

    def reduce(
        self,
        input_frame: Tensor,
        stylised_frame: Tensor,
        *,
        flow: Optional[Tuple[Tensor, Tensor]] = None,
    ) -> Tensor:
        """(1, 3, H, W) input frame and its (1, 3, H', W') stylisation -> the steadied stylised frame (same shape,
        dtype and device as ``stylised_frame``).

        The flow is computed on the input frames and resized to (H', W'). It depends on the input only, so a pipeline
        may compute it ahead, in another thread: pass ``flow=reliable_flow(input_frame, previous_input_frame,
        method=..., max_side=...)`` ((1, 2, H, W) backward flow, (1, 1, H, W) mask) and none is computed here. A frame
        of another size than the previous one starts over, as after :meth:`reset`.
        """
        check_batch(input_frame, "FlickerReducer.reduce: input_frame")
        check_batch(stylised_frame, "FlickerReducer.reduce: stylised_frame")
        if input_frame.shape[0] != 1 or stylised_frame.shape[0] != 1:
            raise InputError(f"FlickerReducer.reduce: expected one frame at a time, got {tuple(input_frame.shape)} "
                             f"and {tuple(stylised_frame.shape)}")
        if self.strength == 0.0:
            return stylised_frame
        previous_in, previous_out = self._previous_input, self._previous_output
        out = stylised_frame
        if (previous_in is not None and previous_out is not None and previous_in.shape == input_frame.shape
                and previous_out.shape == stylised_frame.shape):
            if flow is None:
                flow_back, mask = reliable_flow(input_frame, previous_in, method=self.method, max_side=self.max_side)
            else:
                flow_back, mask = flow
                _check_flow("FlickerReducer.reduce: flow", flow_back)
                if flow_back.shape[-2:] != input_frame.shape[-2:] or mask.shape[-2:] != input_frame.shape[-2:]:
                    raise InputError(f"FlickerReducer.reduce: flow {tuple(flow_back.shape)} and mask "
                                     f"{tuple(mask.shape)} do not match the input frame {tuple(input_frame.shape)}")
            size = tuple(stylised_frame.shape[-2:])
            if flow_back.shape[-2:] != size:
                flow_back = resize_flow(flow_back, size)
                mask = (F.interpolate(mask.float(), size=size, mode="bilinear", align_corners=False) > 0.999).float()
            s = stylised_frame.float()
            warped = warp(previous_out.float(), flow_back.to(s.device))
            out = torch.lerp(s, warped, self.strength * mask.to(device=s.device, dtype=s.dtype)).to(stylised_frame.dtype)
        # copies: the caller may reuse or edit its buffers in place (a decoder's frame pool, an encoder's conversion)
        self._previous_input = input_frame.detach().clone()
        self._previous_output = out.detach().clone()
        return out
