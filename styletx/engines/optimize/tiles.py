"""Tiled loss evaluation for the optimisation engine: whole-image style statistics, one tile's memory at a time.

A picture too large for the backbone's saved activations is evaluated in overlapping tiles. The *cores* of the
tiles partition the image; each tile carries ``overlap`` px of real neighbouring pixels each side, and its crop
starts on a multiple of ALIGN px so that the backbone's pooling grid is the whole image's (interior features
equal the whole-image ones). One evaluation (:func:`tiled_terms`) makes two passes:

1. no gradient: every tile's output crop and content crop go through the backbone together; the output's Gram
   sums over the tile cores and their counts are accumulated, so the Gram matrices are those of the *whole*
   picture, and the content's features at the cores are kept as the content targets;
2. with gradient: each tile again, its content loss (its share of the whole-image mean) plus the style loss's
   first-order term (the whole-image loss's gradient with respect to each Gram, times the tile's own Gram
   share), back-propagated into the pixels at once, so only one tile's graph is alive.

The gradient is then that of the whole-image losses, up to what the overlap leaves out at a tile's edge; the
engine draws a new random grid offset for every step, so that no tile border stays in one place.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from torch import Tensor

from ... import device as devices
from ...losses import LossTerms, content_loss, gram_matrix, layered_gram_loss, tv_loss

__all__ = ["ALIGN", "OVERLAP", "Tile", "TiledTargets", "tile_cores", "tiles_of", "random_offset",
           "tiled_statistics", "tiled_terms"]

#: px: tile crops start on multiples of this (the backbone's largest stride: 4 poolings), keeping its grid.
ALIGN = 16
#: px of real context each side of a tile core.
OVERLAP = 64

Span = Tuple[int, int]


@dataclass(frozen=True)
class Tile:
    """A tile: its core (rows, cols) [start, stop) px, which the cores of all tiles partition, and its crop."""

    core_y: Span
    core_x: Span
    crop_y: Span
    crop_x: Span


def tile_cores(length: int, core: int, offset: int = 0) -> List[Span]:
    """[start, stop) spans partitioning 0..length, with boundaries at ``offset + k * core`` (px)."""
    cuts = sorted({0, length} | {s for s in range(offset % core, length, core) if 0 < s < length})
    return list(zip(cuts[:-1], cuts[1:]))


def _crop(span: Span, length: int, overlap: int, min_side: int) -> Span:
    lo = max(0, (span[0] - overlap) // ALIGN * ALIGN)
    hi = min(length, span[1] + overlap)
    while hi - lo < min_side and (lo > 0 or hi < length):  # too small for the layers: widen inside the picture
        lo, hi = max(0, lo - ALIGN), min(length, hi + ALIGN)
    return lo, hi


def tiles_of(hw: Tuple[int, int], core: int, offset: Tuple[int, int] = (0, 0), overlap: int = OVERLAP,
             min_side: int = 16) -> List[Tile]:
    """The tiles of an image of ``hw`` (h, w) px with cores of ``core`` px, the grid shifted by ``offset``."""
    h, w = hw
    return [Tile(ys, xs, _crop(ys, h, overlap, min_side), _crop(xs, w, overlap, min_side))
            for ys in tile_cores(h, core, offset[0]) for xs in tile_cores(w, core, offset[1])]


def random_offset(rng: random.Random, core: int) -> Tuple[int, int]:
    """A grid offset (dy, dx) drawn uniformly from [0, core)^2."""
    return rng.randrange(core), rng.randrange(core)


def _core(features: Tensor, tile: Tile) -> Tensor:
    """The part of a crop's (N, C, h, w) features that lies over the tile's core: the feature map's stride is
    a power of two, the crop starts on the whole image's grid, so neighbouring cores meet without gap or overlap."""
    out = features
    for dim, (a, b), (r0, r1) in ((-2, tile.core_y, tile.crop_y), (-1, tile.core_x, tile.crop_x)):
        n = features.shape[dim]
        stride = 2 ** max(0, round(math.log2((r1 - r0) / n)))
        lo = round((a - r0) / stride)
        hi = n if b == r1 else min(n, round((b - r0) / stride))
        out = out.narrow(dim, lo, max(0, hi - lo))
    return out


def _crop_of(image: Tensor, tile: Tile) -> Tensor:
    (y0, y1), (x0, x1) = tile.crop_y, tile.crop_x
    return image[..., y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)


def tiled_statistics(extractor: torch.nn.Module, image: Tensor, gram_layers: Sequence[str],
                     square_layers: Sequence[str], core: int, *, bf16: bool, min_side: int = 16,
                     ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Whole-image statistics of (1, 3, H, W) ``image`` computed tile by tile, without gradient:
    ``({layer: Gram (1, C, C) float32}, {layer: mean square of the features (scalar)})``, equal to
    :func:`~styletx.losses.gram_matrix` and ``mean(f ** 2)`` of the whole image's features (up to the overlap)."""
    sums: Dict[str, Tensor] = {}
    squares: Dict[str, Tensor] = {}
    counts: Dict[str, int] = {}
    channels: Dict[str, int] = {}
    with torch.no_grad():
        for tile in tiles_of(tuple(image.shape[-2:]), core, min_side=min_side):
            with devices.autocast(bf16, image.device):
                feats = extractor(_crop_of(image, tile))
            for name in dict.fromkeys([*gram_layers, *square_layers]):
                part = _core(feats[name], tile)
                if part.numel() == 0:  # a core thinner than this layer's stride: its neighbour has the row
                    continue
                pixels = part.shape[-2] * part.shape[-1]
                counts[name] = counts.get(name, 0) + pixels
                channels[name] = part.shape[1]
                if name in gram_layers:
                    g = gram_matrix(part) * (part.shape[1] * pixels)
                    sums[name] = g if name not in sums else sums[name] + g
                if name in square_layers:
                    sq = part.float().square().sum()
                    squares[name] = sq if name not in squares else squares[name] + sq
    grams = {n: sums[n] / (channels[n] * counts[n]) for n in gram_layers}
    means = {n: squares[n] / (channels[n] * counts[n]) for n in square_layers}
    return grams, means


@dataclass(frozen=True)
class TiledTargets:
    """What a tiled evaluation compares with: target Grams {layer: (1, C, C)}, the style and content layers'
    normalised weights (see :func:`~styletx.losses.target_scaled_weights`) and the loss weights."""

    grams: Mapping[str, Tensor]
    style_norm: Mapping[str, Tensor]
    content_norm: Mapping[str, Tensor]
    content_weight: float
    style_weight: float
    tv_weight: float


def tiled_terms(pixels: Tensor, content: Tensor, extractor: torch.nn.Module, targets: TiledTargets,
                tiles: Sequence[Tile], *, bf16: bool) -> LossTerms:
    """The whole-image content, style and TV losses of ``pixels`` (1, 3, H, W, a leaf requiring grad) against
    ``content`` (1, 3, H, W), evaluated over ``tiles``; their gradient is accumulated into ``pixels.grad``.
    Returns detached :class:`LossTerms`; a non-finite style loss returns at once, with no gradient."""
    style_layers = list(targets.style_norm)
    content_layers = list(targets.content_norm) if targets.content_weight else []
    sums: Dict[str, Tensor] = {}
    counts: Dict[str, int] = {}
    kept: List[Dict[str, Tensor]] = []
    with torch.no_grad():  # pass 1: the output's whole-image Grams; the content's features at the cores
        for tile in tiles:
            both = torch.cat([_crop_of(pixels.detach(), tile), _crop_of(content, tile)])
            with devices.autocast(bf16, pixels.device):
                feats = extractor(both)
            keep: Dict[str, Tensor] = {}
            for name in dict.fromkeys([*style_layers, *content_layers]):
                part = _core(feats[name], tile)
                if part.numel() == 0:
                    continue
                counts[name] = counts.get(name, 0) + part.shape[-2] * part.shape[-1]
                if name in style_layers:
                    g = gram_matrix(part[:1]) * (part.shape[1] * part.shape[-2] * part.shape[-1])
                    sums[name] = g if name not in sums else sums[name] + g
                if name in content_layers:
                    keep[name] = part[1:].float()
            kept.append(keep)
    grams = {n: (sums[n] / (sums[n].shape[-1] * counts[n])).requires_grad_(True) for n in style_layers}
    zero = pixels.new_zeros((), dtype=torch.float32)
    style = zero
    coefficients: Dict[str, Tensor] = {}
    if targets.style_weight and style_layers:
        with torch.enable_grad():
            style = targets.style_weight * layered_gram_loss(grams, targets.grams, targets.style_norm)
            if not torch.isfinite(style):
                return LossTerms(zero, style.detach(), zero, style.detach())
            coefficients = dict(zip(style_layers, torch.autograd.grad(style, [grams[n] for n in style_layers])))
    content_total = zero
    for tile, keep in zip(tiles, kept):  # pass 2: one tile's graph at a time
        with torch.enable_grad():
            with devices.autocast(bf16, pixels.device):
                feats = extractor(_crop_of(pixels, tile))
            surrogate = zero
            for name, coef in coefficients.items():
                part = _core(feats[name], tile)
                if part.numel() == 0:
                    continue
                share = part.shape[-2] * part.shape[-1] / counts[name]
                surrogate = surrogate + (coef * gram_matrix(part)).sum() * share
            piece = zero
            for name in content_layers:
                if name not in keep:
                    continue
                part = _core(feats[name], tile)
                share = part.shape[-2] * part.shape[-1] / counts[name]
                piece = piece + targets.content_norm[name] * content_loss(part, keep[name]) * share
            piece = targets.content_weight * piece
            if surrogate.requires_grad or piece.requires_grad:
                (surrogate + piece).backward()
        content_total = content_total + piece.detach()
    tv = zero
    if targets.tv_weight:
        with torch.enable_grad():
            tv = targets.tv_weight * tv_loss(pixels)
            tv.backward()
    style, tv = style.detach(), tv.detach()
    return LossTerms(content_total, style, tv, content_total + style + tv)
