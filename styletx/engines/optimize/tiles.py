"""Tiled loss evaluation for the optimisation engine: whole-image style statistics, one tile's memory at a time.

A picture too large for the backbone's saved activations is evaluated in overlapping tiles. The *cores* of the
tiles partition the image; each tile carries ``overlap`` px of real neighbouring pixels each side, and its crop
starts on a multiple of ALIGN px so that the backbone's pooling grid is the whole image's (interior features
equal the whole-image ones). The content's feature maps (the content targets) and the style's Grams are
assembled from tile cores once per scale (:func:`tiled_statistics`). One evaluation (:func:`tiled_terms`)
makes two passes:

1. no gradient: every tile's output crop goes through the backbone; the output's Gram sums over the tile cores
   and their counts are accumulated, so the Gram matrices are those of the *whole* picture;
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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ... import device as devices
from ...losses import LossTerms, content_loss, gram_matrix, layered_gram_loss, tv_loss

__all__ = ["ALIGN", "OVERLAP", "Tile", "TiledTargets", "tile_cores", "tiles_of", "random_offset",
           "tiled_statistics", "tiled_terms"]

#: px: tile crops start on multiples of this (the backbone's largest stride: 4 poolings), keeping its grid.
ALIGN = 16
#: px of real context each side of a tile core.
OVERLAP = 96

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


def _span(n: int, core: Span, crop: Span) -> Span:
    """[lo, hi) of a core in a feature map of ``n`` rows computed from ``crop`` px: the map's stride is a power of
    two and the crop starts on the whole image's grid, so neighbouring cores meet without gap or overlap."""
    (a, b), (r0, r1) = core, crop
    stride = 2 ** max(0, round(math.log2((r1 - r0) / n)))
    lo = round((a - r0) / stride)
    hi = n if b == r1 else min(n, round((b - r0) / stride))
    return lo, max(lo, hi)


def _core(features: Tensor, tile: Tile, whole: Optional[Tuple[int, int]] = None) -> Tensor:
    """The part of (N, C, h, w) features over the tile's core: features of the tile's crop, or of the whole
    image of ``whole`` (h, w) px."""
    crops = (tile.crop_y, tile.crop_x) if whole is None else ((0, whole[0]), (0, whole[1]))
    out = features
    for dim, core, crop in ((-2, tile.core_y, crops[0]), (-1, tile.core_x, crops[1])):
        lo, hi = _span(features.shape[dim], core, crop)
        out = out.narrow(dim, lo, hi - lo)
    return out


def _crop_of(image: Tensor, tile: Tile) -> Tensor:
    (y0, y1), (x0, x1) = tile.crop_y, tile.crop_x
    return image[..., y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)


def _add_grams(feats: Mapping[str, Tensor], tile: Tile, layers: Sequence[str], sums: Dict[str, Tensor],
               counts: Dict[str, int]) -> None:
    """Add the tile core's unnormalised Gram sums (F F^T) and position counts of ``layers`` to ``sums``, ``counts``."""
    for name in layers:
        part = _core(feats[name], tile)
        if part.numel() == 0:  # a core thinner than this layer's stride: its neighbour has the row
            continue
        counts[name] = counts.get(name, 0) + part.shape[-2] * part.shape[-1]
        g = gram_matrix(part) * (part.shape[1] * part.shape[-2] * part.shape[-1])
        sums[name] = g if name not in sums else sums[name] + g


def _whole_grams(sums: Mapping[str, Tensor], counts: Mapping[str, int]) -> Dict[str, Tensor]:
    """Gram matrices normalised by C * (positions over all cores), as :func:`~styletx.losses.gram_matrix`."""
    return {n: g / (g.shape[-1] * counts[n]) for n, g in sums.items()}


def tiled_statistics(extractor: torch.nn.Module, image: Tensor, gram_layers: Sequence[str],
                     feature_layers: Sequence[str], core: int, *, bf16: bool, min_side: int = 16,
                     overlap: int = OVERLAP) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """What the whole image's features would give, computed tile by tile without gradient, for (1, 3, H, W)
    ``image``: ``({layer: Gram (1, C, C) float32}, {layer: features (1, C, h, w) float32})``, the Grams of
    ``gram_layers`` (as :func:`~styletx.losses.gram_matrix`) and the feature maps of ``feature_layers``
    assembled from the tiles' cores (equal to the whole image's where the overlap covers the receptive field)."""
    hw = (int(image.shape[-2]), int(image.shape[-1]))
    sums: Dict[str, Tensor] = {}
    counts: Dict[str, int] = {}
    pieces: Dict[str, List[Tensor]] = {name: [] for name in feature_layers}
    with torch.no_grad():
        for tile in tiles_of(hw, core, overlap=overlap, min_side=min_side):
            with devices.autocast(bf16, image.device):
                feats = extractor(_crop_of(image, tile))
            for name in feature_layers:
                pieces[name].append(_core(feats[name], tile).float())
            _add_grams(feats, tile, gram_layers, sums, counts)
    grams = _whole_grams(sums, counts)
    columns = len(tile_cores(hw[1], core))
    maps = {n: torch.cat([torch.cat(p[i:i + columns], dim=-1) for i in range(0, len(p), columns)], dim=-2)
            for n, p in pieces.items()}
    return grams, maps


@dataclass(frozen=True)
class TiledTargets:
    """What a tiled evaluation compares with: target Grams {layer: (1, C, C)}, the content's whole feature maps
    {layer: (1, C, h, w)}, the style and content layers' normalised weights (see
    :func:`~styletx.losses.target_scaled_weights`) and the loss weights."""

    grams: Mapping[str, Tensor]
    content: Mapping[str, Tensor]
    style_norm: Mapping[str, Tensor]
    content_norm: Mapping[str, Tensor]
    content_weight: float
    style_weight: float
    tv_weight: float


def tiled_terms(pixels: Tensor, extractor: torch.nn.Module, targets: TiledTargets, tiles: Sequence[Tile], *,
                bf16: bool) -> LossTerms:
    """The whole-image content, style and TV losses of ``pixels`` (1, 3, H, W, a leaf requiring grad),
    evaluated over ``tiles``; their gradient is accumulated into ``pixels.grad``. Returns detached
    :class:`LossTerms`; a non-finite style loss returns at once, with no gradient."""
    hw = (int(pixels.shape[-2]), int(pixels.shape[-1]))
    style_layers = list(targets.style_norm)
    content_layers = list(targets.content_norm) if targets.content_weight else []
    sums: Dict[str, Tensor] = {}
    counts: Dict[str, int] = {}
    with torch.no_grad():  # pass 1: the output's whole-image Grams
        for tile in tiles:
            with devices.autocast(bf16, pixels.device):
                feats = extractor(_crop_of(pixels.detach(), tile))
            _add_grams(feats, tile, style_layers, sums, counts)
    grams = {n: g.requires_grad_(True) for n, g in _whole_grams(sums, counts).items()}
    zero = pixels.new_zeros((), dtype=torch.float32)
    style = zero
    coefficients: Dict[str, Tensor] = {}
    if targets.style_weight and style_layers:
        with torch.enable_grad():
            style = targets.style_weight * layered_gram_loss(grams, targets.grams, targets.style_norm)
        if not torch.isfinite(style):
            return LossTerms(zero, style.detach(), zero, style.detach())
        coefficients = dict(zip(style_layers, torch.autograd.grad(style, [grams[n] for n in style_layers])))
    sizes = {n: targets.content[n].shape[-2] * targets.content[n].shape[-1] for n in content_layers}
    content_total = zero
    for tile in tiles:  # pass 2: one tile's graph at a time
        with torch.enable_grad():
            with devices.autocast(bf16, pixels.device):
                feats = extractor(_crop_of(pixels, tile))
            surrogate = zero
            for name, coef in coefficients.items():
                part = _core(feats[name], tile)
                if part.numel():
                    surrogate = surrogate + (coef * gram_matrix(part)).sum() * (part.shape[-2] * part.shape[-1]
                                                                                / counts[name])
            piece = zero
            for name in content_layers:
                part = _core(feats[name], tile)
                if part.numel():
                    share = part.shape[-2] * part.shape[-1] / sizes[name]
                    piece = piece + targets.content_norm[name] * share * content_loss(
                        part, _core(targets.content[name], tile, hw))
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
