"""Winograd F(4x4, 3x3) convolution and the exact layer rewrites that turn the transformer's convolutions into it.

Everything here works on channels-last tensors laid out as plain (N, H, W, C) and is written as tensor
expressions that ``torch.compile`` (inductor) fuses into a few vectorised loops around one batched matrix
multiply per convolution. A 3x3 convolution then costs 36 instead of 144 multiply-adds per 4x4 output tile
and channel pair (4x fewer), exact up to float rounding (points 0, +-1, +-2, infinity; Lavin & Gray 2016).

Rewrites (all exact up to rounding):

* nearest 2x upsampling + reflection pad 1 + 3x3 conv == a 3x3 conv with 4x the output channels on the
  replicate-padded low-resolution input, then :func:`depth_to_space` (:func:`upsample_conv_kernel`);
* a (2r+1)x(2r+1) conv with reflection pad r == :func:`space_to_depth` (r) of the padded input, a 3x3 conv
  on the r-times smaller grid, then :func:`depth_to_space` (:func:`blocked_kernel`).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: G of F(4x4, 3x3): the kernel transform (6 x 3).
_G = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)

TILE = 4  # output pixels per tile side
POINTS = 6  # transformed tile side (TILE + 3 - 1)


def kernel_transform(weight: Tensor) -> Tensor:
    """(K, C, 3, 3) conv weight -> (36, C, K) float32 Winograd-domain weight (G w G^T, computed in float64)."""
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"kernel_transform: expected a (K, C, 3, 3) weight, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ij,kcjl,ml->imck", g, weight.detach().double(), g)  # (6, 6, C, K)
    return u.reshape(POINTS * POINTS, weight.shape[1], weight.shape[0]).float().contiguous()


def _bt(d: Sequence[Tensor]) -> List[Tensor]:
    """B^T applied along one axis: 6 slices in, 6 out."""
    d0, d1, d2, d3, d4, d5 = d
    return [
        4 * d0 - 5 * d2 + d4,
        -4 * (d1 + d2) + d3 + d4,
        4 * (d1 - d2) - d3 + d4,
        2 * (d3 - d1) - d2 + d4,
        2 * (d1 - d3) - d2 + d4,
        4 * d1 - 5 * d3 + d5,
    ]


def _at(m: Sequence[Tensor]) -> List[Tensor]:
    """A^T applied along one axis: 6 slices in, 4 out."""
    m0, m1, m2, m3, m4, m5 = m
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return [m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5]


def input_transform(xp: Tensor, th: int, tw: int) -> Tensor:
    """(N, 4*th + 2, 4*tw + 2, C) padded input -> (36, N*th*tw, C): B^T d B of every overlapping 6x6 tile."""
    n, c = xp.shape[0], xp.shape[-1]
    rows = _bt([xp[:, a : a + TILE * th : TILE] for a in range(POINTS)])
    tiles: List[Tensor] = []
    for r in rows:
        tiles.extend(_bt([r[:, :, b : b + TILE * tw : TILE] for b in range(POINTS)]))
    return torch.stack(tiles).reshape(POINTS * POINTS, n * th * tw, c)


def output_transform(m: Tensor, n: int, th: int, tw: int) -> Tensor:
    """(36, N*th*tw, K) products -> (N, 4*th, 4*tw, K): A^T m A of every tile, tiles placed side by side."""
    k = m.shape[-1]
    m = m.reshape(POINTS, POINTS, n, th, tw, k)
    rows = _at([m[i] for i in range(POINTS)])  # 4 x (6, N, th, tw, K)
    out = [torch.stack(_at([r[j] for j in range(POINTS)]), 3) for r in rows]  # 4 x (N, th, tw, 4, K)
    return torch.stack(out, 2).reshape(n, TILE * th, TILE * tw, k)


def conv3x3(xp: Tensor, u: Tensor, bias: Tensor) -> Tensor:
    """"Valid" 3x3 convolution (cross-correlation, as ``F.conv2d``) of an already padded input.

    xp: (N, H + 2, W + 2, C); u: (36, C, K) from :func:`kernel_transform`; bias: (K,). Returns (N, H, W, K).
    """
    n, hp, wp, _ = xp.shape
    h, w = hp - 2, wp - 2
    th, tw = -(-h // TILE), -(-w // TILE)
    extra_h, extra_w = TILE * th - h, TILE * tw - w
    if extra_h or extra_w:
        xp = F.pad(xp, (0, 0, 0, extra_w, 0, extra_h))
    m = torch.bmm(input_transform(xp, th, tw), u)
    y = output_transform(m, n, th, tw)
    if extra_h or extra_w:
        y = y[:, :h, :w]
    return y + bias


# ----------------------------------------------------------------------------------- layout helpers (NHWC)


def reflect_pad(x: Tensor, p: int) -> Tensor:
    """Reflection padding of p pixels on every side of (N, H, W, C) (needs H, W > p).

    Written with slices and ``cat`` rather than ``F.pad`` on a permuted view: feeding the Winograd transforms,
    inductor made a residual block 42 ms with this against 63 ms with ``F.pad`` (512x512 input, 2 cores).
    """
    top = [x[:, i : i + 1] for i in range(p, 0, -1)]
    bottom = [x[:, -1 - i : x.shape[1] - i] for i in range(1, p + 1)]
    x = torch.cat(top + [x] + bottom, 1)
    left = [x[:, :, i : i + 1] for i in range(p, 0, -1)]
    right = [x[:, :, -1 - i : x.shape[2] - i] for i in range(1, p + 1)]
    return torch.cat(left + [x] + right, 2)


def replicate_pad1(x: Tensor) -> Tensor:
    """Edge replication of one pixel on every side of (N, H, W, C)."""
    x = torch.cat([x[:, :1], x, x[:, -1:]], 1)
    return torch.cat([x[:, :, :1], x, x[:, :, -1:]], 2)


def space_to_depth(x: Tensor, r: int) -> Tensor:
    """(N, H, W, C) -> (N, H/r, W/r, r*r*C); channel (i*r + j)*C + c holds pixel (i, j) of each r x r block."""
    n, h, w, c = x.shape
    return x.reshape(n, h // r, r, w // r, r, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h // r, w // r, r * r * c)


def depth_to_space(y: Tensor, r: int) -> Tensor:
    """Inverse of :func:`space_to_depth`: (N, H, W, r*r*K) -> (N, H*r, W*r, K)."""
    n, h, w, rrk = y.shape
    k = rrk // (r * r)
    return y.reshape(n, h, w, r, r, k).permute(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, k)


def instance_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Instance norm of (N, H, W, C) over H and W (biased variance, as ``F.instance_norm``), with affine."""
    var, mean = torch.var_mean(x, dim=(1, 2), keepdim=True, correction=0)
    return (x - mean) * (torch.rsqrt(var + eps) * weight) + bias


# ---------------------------------------------------------------------------------------- kernel rewrites

# For output phase a (even 0 / odd 1) of a nearest-2x-upsampled, reflection-padded 3x3 conv: which of the 3x3
# kernel's taps land on the replicate-padded low-resolution rows i-1, i, i+1.
_UPSAMPLE_TAPS = (((0,), (1, 2), ()), ((), (0, 1), (2,)))


def upsample_conv_kernel(weight: Tensor) -> Tensor:
    """(K, C, 3, 3) weight of upsample2x + reflect pad 1 + conv3x3 -> (4K, C, 3, 3) weight of an equivalent 3x3
    conv on the replicate-padded low-resolution input; output channel (a*2 + b)*K + k is phase (a, b) of k,
    so :func:`depth_to_space` (2) of its output is the upsampled layer's output."""
    k, c = weight.shape[:2]
    out = weight.new_zeros(2, 2, k, c, 3, 3)
    for a in range(2):
        for b in range(2):
            for ty, rows in enumerate(_UPSAMPLE_TAPS[a]):
                for tx, cols in enumerate(_UPSAMPLE_TAPS[b]):
                    if rows and cols:
                        out[a, b, :, :, ty, tx] = weight[:, :, list(rows)][:, :, :, list(cols)].sum(dim=(2, 3))
    return out.reshape(4 * k, c, 3, 3)


def blocked_kernel(weight: Tensor, r: int) -> Tensor:
    """(K, C, 2r+1, 2r+1) weight of a conv with padding r -> (r*r*K, r*r*C, 3, 3) weight of the same conv on the
    :func:`space_to_depth` (r) grid of the padded input ("valid", so the grid shrinks by 2 blocks, i.e. back to
    the unpadded size / r); output channel (a*r + b)*K + k is phase (a, b) of channel k (:func:`depth_to_space`)."""
    k, c, kh, kw = weight.shape
    if kh != 2 * r + 1 or kw != 2 * r + 1:
        raise ValueError(f"blocked_kernel: expected a {2 * r + 1}x{2 * r + 1} kernel for r={r}, got {kh}x{kw}")
    out = weight.new_zeros(r, r, k, 3, 3, r, r, c)  # phase a, b; out channel; block dy, dx; sub-pixel i, j; in channel
    for a in range(r):
        for b in range(r):
            for dy in range(kh):
                for dx in range(kw):
                    by, i = divmod(a + dy, r)
                    bx, j = divmod(b + dx, r)
                    out[a, b, :, by, bx, i, j, :] = weight[:, :, dy, dx]
    # -> (phase, K, in block channel (i, j, c), 3, 3)
    return out.permute(0, 1, 2, 5, 6, 7, 3, 4).reshape(r * r * k, r * r * c, 3, 3).contiguous()
