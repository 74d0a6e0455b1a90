"""Tiled inference of a feed-forward network with whole-image instance-norm statistics (print-size pictures).

Exact by construction, not approximate: instance norm needs each channel's mean and variance over the *whole*
image, which no single tile has. :func:`stylize_tiled` therefore makes one pass over the tiles per norm layer,
in network order: pass k runs every tile up to norm layer k with layers 1..k-1 normalised by the whole-image
statistics already found, and accumulates layer k's input sum, sum of squares and count over each tile's
*core* only (the cores partition the image, so every position is counted once). A last pass runs the whole
network per tile with all statistics fixed and pastes the cores. Each tile carries a halo of real neighbouring
pixels at least as wide as the network's receptive radius, so what reflection padding at a tile edge gets wrong
never reaches the core: core activations equal the whole-image ones (to float rounding), hence no seams and no
blending window is needed. Tile edges lie on multiples of the network's stride, so the stride-2 grids align.
Cost: (norm layers + 1) partial passes (16 for ``standard``), memory: one tile's activations.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from ...tensors import pad_to_multiple
from .net import TransformerNet

__all__ = ["receptive_halo", "tile_grid", "stylize_tiled"]


class _Stop(Exception):
    """Raised by the collecting hook: the rest of the network is not needed in this pass."""


def receptive_halo(net: TransformerNet) -> int:
    """Pixels (input resolution) of real context each side of a tile core so the core is exact: the summed
    radii of every convolution at its resolution, plus one stride of slack, rounded up to ``net.multiple``."""
    cfg = net.config
    r = net.unshuffle
    radius = (cfg.kernel_in // 2) * r + 1 * r + 2 * r  # conv1, conv2 (s2), conv3 (at 1/2)
    radius += cfg.res_blocks * 2 * 4 * r  # two 3x3 convs per block at 1/4
    radius += 2 * r + 2 * r + 1 * r  # upsample + conv at 1/2, at 1
    s = net.head_scale
    if cfg.final_stage:
        # upsample + conv at 2x (1/s of the input); the colour path's bilinear resize reaches one 1/r pixel
        radius += r if cfg.color_path else s
    radius += (cfg.kernel_out // 2) * s  # conv out (a resize head: its folded 3x3)
    radius += 2 * net.multiple  # nearest-upsampling and stride rounding
    return int(math.ceil(radius / net.multiple) * net.multiple)


def tile_grid(length: int, core: int) -> List[Tuple[int, int]]:
    """[start, stop) cores of at most ``core`` px covering ``0..length`` (px)."""
    return [(s, min(length, s + core)) for s in range(0, length, core)]


def _norms(net: nn.Module) -> List[nn.InstanceNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


def _normalise(m: nn.InstanceNorm2d, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    y = (x - mean.to(x.dtype)[..., None, None]) * torch.rsqrt(var.to(x.dtype) + m.eps)[..., None, None]
    if m.affine:
        y = y * m.weight[None, :, None, None] + m.bias[None, :, None, None]
    return y


def stylize_tiled(net: TransformerNet, x: Tensor, tile: int) -> Tensor:
    """``net(x)`` computed tile by tile with whole-image instance-norm statistics.

    x: (N, 3, H, W) float in [0, 1] on the net's device; tile: core side in px (rounded down to
    ``net.multiple``, at least one multiple). Returns (N, 3, H, W) float, unclamped, equal to ``net(x)`` up to
    float rounding. Peak memory: one (tile + 2 halo)^2 tile's activations.
    """
    n, _, h, w = x.shape
    m = net.multiple
    xp, _ = pad_to_multiple(x, m, net.min_size)
    if net.value_range != 1.0:
        xp = xp * net.value_range
    hp, wp = xp.shape[-2:]
    core = max(m, (int(tile) // m) * m)
    halo = receptive_halo(net)
    tiles = [(ys, xs) for ys in tile_grid(hp, core) for xs in tile_grid(wp, core)]
    norms = _norms(net)
    stats: Dict[int, Tuple[Tensor, Tensor]] = {}
    state: Dict[str, object] = {}

    def region(a: int, b: int, length: int) -> Tuple[int, int]:
        lo, hi = max(0, a - halo), min(length, b + halo)
        while hi - lo < net.min_size:  # tiny images: widen inside the picture
            lo, hi = max(0, lo - m), min(length, hi + m)
        return lo, hi

    def make_hook(i: int, mod: nn.InstanceNorm2d):
        def hook(_m: nn.Module, inputs: Tuple[Tensor, ...], _out: Tensor) -> Tensor:
            f = inputs[0]
            if i in stats:
                return _normalise(mod, f, *stats[i])
            # collect this layer's sums over the core (in this layer's resolution), then stop the pass
            (ty0, ty1), (tx0, tx1), (ry0, _ry1), (rx0, _rx1), th = state["where"]  # type: ignore[misc]
            s = f.shape[-2] / th  # feature px per input px
            a0, a1 = round((ty0 - ry0) * s), round((ty1 - ry0) * s)
            b0, b1 = round((tx0 - rx0) * s), round((tx1 - rx0) * s)
            part = f[..., a0:a1, b0:b1].double()
            acc = state["acc"]
            acc[0] += part.sum((-2, -1))  # type: ignore[index]
            acc[1] += (part * part).sum((-2, -1))  # type: ignore[index]
            acc[2] += part.shape[-2] * part.shape[-1]  # type: ignore[index]
            raise _Stop
        return hook

    handles = [mod.register_forward_hook(make_hook(i, mod)) for i, mod in enumerate(norms)]
    out = torch.empty(n, 3, hp, wp, device=x.device, dtype=torch.float32)
    try:
        with torch.inference_mode():
            for k in range(len(norms) + 1):
                if k < len(norms):
                    c = norms[k].num_features
                    state["acc"] = [torch.zeros(n, c, dtype=torch.float64, device=x.device),
                                    torch.zeros(n, c, dtype=torch.float64, device=x.device), 0]
                for (ty0, ty1), (tx0, tx1) in tiles:
                    ry0, ry1 = region(ty0, ty1, hp)
                    rx0, rx1 = region(tx0, tx1, wp)
                    state["where"] = ((ty0, ty1), (tx0, tx1), (ry0, ry1), (rx0, rx1), ry1 - ry0)
                    piece = xp[..., ry0:ry1, rx0:rx1]
                    try:
                        y = net.body(piece)
                    except _Stop:
                        continue
                    out[..., ty0:ty1, tx0:tx1] = y[..., ty0 - ry0:ty1 - ry0, tx0 - rx0:tx1 - rx0].float()
                if k < len(norms):
                    s1, s2, cnt = state["acc"]  # type: ignore[misc]
                    mean = s1 / cnt
                    var = (s2 / cnt - mean * mean).clamp_min(0.0)
                    stats[k] = (mean.float(), var.float())
    finally:
        for hd in handles:
            hd.remove()
    if net.value_range != 1.0:
        out = out * (1.0 / net.value_range)
    return out[..., :h, :w]
