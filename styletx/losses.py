"""Losses of style transfer: functions first, each with a thin ``nn.Module`` wrapper.

Shapes: features are (N, C, H, W); a Gram matrix is (N, C, C). Everything that can overflow in low
precision (Gram matrices, squared errors) is computed in float32, even under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError

__all__ = [
    "gram_matrix",
    "content_loss",
    "style_loss",
    "gram_loss",
    "layered_gram_loss",
    "layered_style_loss",
    "tv_loss",
    "temporal_loss",
    "LossTerms",
    "total_loss",
    "GramMatrix",
    "ContentLoss",
    "StyleLoss",
    "TVLoss",
    "TemporalLoss",
]


def _check_4d(name: str, x: Tensor) -> None:
    if x.dim() != 4:
        raise InputError(f"{name}: expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")


def _fp32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is in a lower precision (float64 stays float64, for gradcheck)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix of (N, C, H, W) features, normalised by C*H*W, as (N, C, C) float32 (or float64).

    Normalising by the feature size makes a style weight mean the same at every image size.
    """
    _check_4d("gram_matrix", features)
    n, c, h, w = features.shape
    flat = _fp32(features.reshape(n, c, h * w))
    with torch.autocast(device_type=flat.device.type, enabled=False):
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between (N, C, H, W) features and a target of the same shape (float32 scalar)."""
    if features.shape != target.shape:
        raise InputError(f"content_loss: shapes differ, {tuple(features.shape)} vs {tuple(target.shape)}")
    return F.mse_loss(_fp32(features), _fp32(target))


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared error between the Gram matrix of (N, C, H, W) features and a (N|1, C, C) target."""
    return gram_loss(gram_matrix(features), target_gram)


def gram_loss(gram: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared error between a (N, C, C) Gram matrix and a (N|1, C, C) target (float32 scalar)."""
    if target_gram.shape[-2:] != gram.shape[-2:]:
        raise InputError(f"style_loss: target Gram is {tuple(target_gram.shape)}, features give {tuple(gram.shape)}")
    return F.mse_loss(_fp32(gram), _fp32(target_gram).expand_as(gram))


def layered_gram_loss(
    grams: Mapping[str, Tensor], target_grams: Mapping[str, Tensor], layer_weights: Mapping[str, float]
) -> Tensor:
    """sum_l w_l * gram_loss(grams[l], target_grams[l]): the style loss of Gram matrices already computed (the
    tiled engine accumulates them over tiles)."""
    total = None
    for name, weight in layer_weights.items():
        term = weight * gram_loss(grams[name], target_grams[name])
        total = term if total is None else total + term
    if total is None:
        raise InputError("layered_style_loss: no style layers")
    return total


def layered_style_loss(
    features: Mapping[str, Tensor], target_grams: Mapping[str, Tensor], layer_weights: Mapping[str, float]
) -> Tensor:
    """Weighted sum of :func:`style_loss` over layers: sum_l w_l * style_loss(features[l], target_grams[l])."""
    return layered_gram_loss({name: gram_matrix(features[name]) for name in layer_weights}, target_grams,
                             layer_weights)


def tv_loss(image: Tensor) -> Tensor:
    """Total variation of an (N, C, H, W) image: mean squared difference of neighbouring pixels.

    Mean of the squared vertical differences plus mean of the squared horizontal ones (float32 scalar).
    A checkerboard of 0 and 1 has TV 2; a constant image has TV 0.
    """
    _check_4d("tv_loss", image)
    x = _fp32(image)
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


def temporal_loss(image: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared difference between ``image`` and ``target`` (both (N, 3, H, W)) over the pixels where
    ``mask`` ((N|1, 1, H, W) in [0, 1]) is set: Ruder et al. 2016's short-term temporal loss, the target being
    the previous stylised frame warped to this one and the mask its non-occluded pixels. 0 for an empty mask."""
    _check_4d("image", image)
    _check_4d("target", target)
    _check_4d("mask", mask)
    m = _fp32(mask)
    diff = (_fp32(image) - _fp32(target)).square().mean(dim=1, keepdim=True)
    return (m * diff).sum() / m.sum().clamp_min(1.0)


@dataclass
class LossTerms:
    """The weighted terms of one evaluation; ``total`` is their sum (float32 scalars, with autograd)."""

    content: Tensor
    style: Tensor
    tv: Tensor
    total: Tensor
    extra: Dict[str, Tensor] = field(default_factory=dict)

    def as_floats(self) -> Dict[str, float]:
        """``{"content": ..., "style": ..., "tv": ..., "total": ...}`` as Python floats (for records/logs)."""
        out = {"content": self.content, "style": self.style, "tv": self.tv, **self.extra, "total": self.total}
        return {k: float(v.detach()) for k, v in out.items()}


def total_loss(
    image: Tensor,
    features: Mapping[str, Tensor],
    *,
    content_targets: Mapping[str, Tensor],
    style_grams: Mapping[str, Tensor],
    style_layer_weights: Mapping[str, float],
    content_weight: float,
    style_weight: float,
    tv_weight: float,
    content_layer_weights: Optional[Mapping[str, float]] = None,
) -> LossTerms:
    """Weighted total of content, style and TV losses, reporting each weighted term.

    ``features`` are the backbone's outputs for ``image`` (N, 3, H, W); ``content_targets`` maps a layer to
    the content's features there; ``style_grams`` maps a layer to its target Gram (N|1, C, C).
    """
    zero = image.new_zeros((), dtype=torch.float32)
    content = zero
    if content_weight and content_targets:
        weights = content_layer_weights or {k: 1.0 / len(content_targets) for k in content_targets}
        for name, target in content_targets.items():
            content = content + weights[name] * content_loss(features[name], target)
    style = layered_style_loss(features, style_grams, style_layer_weights) if style_weight else zero
    tv = tv_loss(image) if tv_weight else zero
    content, style, tv = content_weight * content, style_weight * style, tv_weight * tv
    return LossTerms(content=content, style=style, tv=tv, total=content + style + tv)


class GramMatrix(nn.Module):
    """Module form of :func:`gram_matrix`."""

    def forward(self, features: Tensor) -> Tensor:
        return gram_matrix(features)


class ContentLoss(nn.Module):
    """Module form of :func:`content_loss` with a fixed target."""

    def __init__(self, target: Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())

    def forward(self, features: Tensor) -> Tensor:
        return content_loss(features, self.target)


class StyleLoss(nn.Module):
    """Module form of :func:`style_loss`; the target Gram is computed once from the style's features."""

    def __init__(self, style_features: Tensor) -> None:
        super().__init__()
        self.register_buffer("target_gram", gram_matrix(style_features.detach()))

    def forward(self, features: Tensor) -> Tensor:
        return style_loss(features, self.target_gram)


class TemporalLoss(nn.Module):
    """Module form of :func:`temporal_loss` for a fixed target and mask."""

    def __init__(self, target: Tensor, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.register_buffer("mask", mask.detach())

    def forward(self, image: Tensor) -> Tensor:
        return temporal_loss(image, self.target, self.mask)


class TVLoss(nn.Module):
    """Module form of :func:`tv_loss`."""

    def forward(self, image: Tensor) -> Tensor:
        return tv_loss(image)


def target_scaled_weights(targets: Mapping[str, Tensor], weights: Mapping[str, float]) -> Dict[str, Tensor]:
    """``{layer: weights[layer] / mean(targets[layer] ** 2)}`` as detached float32 scalars.

    Dividing each layer's squared error by its target's mean square makes the loss relative: a weight then
    means the same for every layer, image size and backbone, whatever the scale of its features.
    Works for feature targets (N, C, H, W) and Gram targets (N, C, C) alike.
    """
    return {name: w / (_fp32(targets[name].detach()).pow(2).mean() + 1e-12) for name, w in weights.items()}


def normalised_layer_weights(layers: Sequence[str], weights: Optional[Sequence[float]]) -> Dict[str, float]:
    """``{layer: weight}`` with weights summing to 1 (equal when ``weights`` is None)."""
    if not layers:  # no layers of this kind (content_weight 0 with no content layers): nothing to weigh
        return {}
    raw = list(weights) if weights is not None else [1.0] * len(layers)
    s = float(sum(raw))
    if s <= 0:
        raise InputError("layer weights must not all be zero")
    return {name: w / s for name, w in zip(layers, raw)}
