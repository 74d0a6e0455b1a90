"""The optimisation engine (Gatys et al. 2016): minimise content + style + TV losses over the output pixels.

Coarse-to-fine: the image is optimised at growing sizes (each twice the last) up to the target, each scale
starting from the last one's result. Style targets (blended Gram matrices) are computed once per scale.
Losses are normalised by their targets' magnitude, so that a weight means the same for every layer,
image size and backbone (see docs/guide.md).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import device as devices
from ..losses import (
    LossTerms,
    gram_matrix,
    normalised_layer_weights,
    target_scaled_weights,
    temporal_loss,
    total_loss,
)
from ..options import StylizeOptions
from ..results import Iterate, RunRecord
from ..tensors import resize_longest, resize_to

__all__ = ["scale_sizes", "optimize_image", "choose_precision_for", "PROBE_SIZE"]

MIN_AUTO_SCALE = 256  # px: the smallest scale that auto multi-scale goes down to
MAX_NONFINITE_RESTORES = 3
#: px: side of the random image the precision probe runs the extractor on (forward + backward)
PROBE_SIZE = 64


def choose_precision_for(extractor: torch.nn.Module, precision: str, device: torch.device) -> devices.PrecisionChoice:
    """The precision policy (:func:`styletx.device.choose_precision`) for an optimisation with ``extractor``:
    the probe is one forward and backward pass of it on a PROBE_SIZE px image; its output, the gradient
    that moves the pixels, is what bf16 must leave unchanged."""
    x = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0)).to(device)

    def probe(bf16: bool) -> Tensor:
        pixels = x.clone().requires_grad_(True)
        with devices.autocast(bf16, device):
            feats = extractor(pixels.contiguous(memory_format=torch.channels_last))
        loss = sum(gram_matrix(f).square().sum() + f.float().square().mean() for f in feats.values())
        (grad,) = torch.autograd.grad(loss, pixels)
        return grad

    description = getattr(extractor, "description", {})
    workload = f"optimize {description.get('backbone', type(extractor).__name__)} {description.get('pooling', '')}"
    return devices.choose_precision(precision, device, workload=workload.strip(), probe=probe)


def scale_sizes(size: int, scales: int) -> List[int]:
    """Longest side of each scale, coarse to fine, ending at ``size``.

    ``scales == 0`` picks as many scales (each twice the last) as keep the smallest >= 256 px.
    """
    if scales <= 0:
        scales = 1
        while size / 2**scales >= MIN_AUTO_SCALE:
            scales += 1
    return [max(16, round(size / 2**k)) for k in reversed(range(scales))]


def _style_targets(
    extractor: torch.nn.Module,
    styles: Sequence[Tensor],
    blend: Sequence[float],
    layers: Sequence[str],
    longest: int,
    bf16: bool,
    device: torch.device,
) -> Dict[str, Tensor]:
    """Blended target Gram matrices {layer: (1, C, C) float32} of the styles resized to ``longest`` px."""
    grams: Dict[str, Tensor] = {}
    with torch.no_grad():
        for style, weight in zip(styles, blend):
            x = resize_longest(style.to(device), longest).contiguous(memory_format=torch.channels_last)
            with devices.autocast(bf16, device):
                feats = extractor(x)
            for name in layers:
                g = weight * gram_matrix(feats[name])
                grams[name] = g if name not in grams else grams[name] + g
    return grams


def _initial_image(init: str, content: Tensor, seed: int, init_image: Optional[Tensor]) -> Tensor:
    if init_image is not None:
        return resize_to(init_image.to(content.device), content.shape[-2:]).clamp(0, 1)
    if init == "noise":
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand(content.shape, generator=gen)
        return noise.to(content.device)
    return content.clone()


def _make_optimizer(options: StylizeOptions, image: Tensor) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam([image], lr=options.lr)
    # One evaluation per step, so that every step reports its losses and can be interrupted.
    return torch.optim.LBFGS([image], lr=options.lr, max_iter=1, history_size=100)


def optimize_image(
    content: Tensor,
    styles: Sequence[Tensor],
    extractor: torch.nn.Module,
    options: StylizeOptions,
    *,
    init_image: Optional[Tensor] = None,
    callback: Optional[Callable[[Iterate], None]] = None,
    record: Optional[RunRecord] = None,
    temporal: Optional[Tuple[Tensor, Tensor]] = None,
    temporal_weight: float = 0.0,
) -> Tuple[Tensor, RunRecord]:
    """Optimise an image with the content of ``content`` and the style of ``styles``.

    content: (1, 3, H, W) in [0, 1], any size (resized so its longest side is ``options.size``);
    styles: (1, 3, h, w) tensors in [0, 1]; extractor: maps (N, 3, H, W) to {layer: features} and has
    every content and style layer. Returns ``(image, record)``: the best iterate (1, 3, H', W') in [0, 1]
    on the CPU, and the :class:`RunRecord`. Ctrl-C stops the run and returns the best image so far
    (``record.interrupted``); a non-finite loss restores the best iterate and is noted in ``record.notes``.
    temporal: (target (1, 3, H, W), mask (1, 1, H, W)) of the content's size, adds ``temporal_weight`` times
    :func:`~styletx.losses.temporal_loss` (a previous result warped to this image, and where it is reliable;
    resized to each scale): the engine knows nothing of video, only of this extra target.
    """
    options = options.validated()
    record = record or RunRecord()
    device = next((b.device for b in extractor.buffers()), None) or next(extractor.parameters()).device
    choice = choose_precision_for(extractor, options.precision, device)
    bf16 = choice.bf16
    record.device, record.precision, record.precision_reason = str(device), choice.name, choice.describe()
    record.sizes = scale_sizes(options.size, options.scales)
    style_layer_weights = normalised_layer_weights(options.style_layers, options.style_layer_weights)
    content_layer_weights = normalised_layer_weights(options.content_layers, None)
    blend = normalised_layer_weights([str(i) for i in range(len(styles))], options.style_blend_weights)
    blend_weights = [blend[str(i)] for i in range(len(styles))]

    start = time.perf_counter()
    image: Optional[Tensor] = None
    best: Optional[Tensor] = None
    steps_done = 0
    total_steps = sum(_scale_iterations(options.iterations, k, len(record.sizes)) for k in range(len(record.sizes)))
    try:
        for k, longest in enumerate(record.sizes):
            target = resize_longest(content.to(device), longest)
            if image is None:
                image = _initial_image(options.init, target, options.seed, init_image)
            else:
                image = resize_to(best if best is not None else image, target.shape[-2:]).clamp(0, 1)
            style_size = max(16, round(longest * options.style_scale))
            grams = _style_targets(extractor, styles, blend_weights, options.style_layers, style_size, bf16, device)
            with torch.no_grad(), devices.autocast(bf16, device):
                content_feats = extractor(target.contiguous(memory_format=torch.channels_last))
            content_targets = {name: content_feats[name].float() for name in options.content_layers}
            style_norm = target_scaled_weights(grams, style_layer_weights)
            content_norm = target_scaled_weights(content_targets, content_layer_weights)
            scaled_temporal = None
            if temporal is not None and temporal_weight > 0:
                size = tuple(target.shape[-2:])
                scaled_temporal = (resize_to(temporal[0].to(device), size),
                                   resize_to(temporal[1].to(device), size, mode="bilinear"))

            # L-BFGS needs a contiguous (NCHW) leaf; the network gets a channels_last copy of it.
            pixels = image.detach().clone().contiguous().requires_grad_(True)
            optimizer = _make_optimizer(options, pixels)
            best, best_loss = pixels.detach().clone(), math.inf
            last_terms: Dict[str, LossTerms] = {}

            def closure() -> Tensor:
                optimizer.zero_grad(set_to_none=True)
                with devices.autocast(bf16, device):
                    feats = extractor(pixels.contiguous(memory_format=torch.channels_last))
                terms = total_loss(
                    pixels,
                    feats,
                    content_targets=content_targets,
                    style_grams=grams,
                    style_layer_weights=style_norm,
                    content_weight=options.content_weight,
                    style_weight=options.style_weight,
                    tv_weight=options.tv_weight,
                    content_layer_weights=content_norm,
                )
                if scaled_temporal is not None:
                    extra = temporal_weight * temporal_loss(pixels, *scaled_temporal)
                    terms = LossTerms(terms.content, terms.style, terms.tv, terms.total + extra, {"temporal": extra})
                if torch.isfinite(terms.total):
                    terms.total.backward()
                last_terms["terms"] = terms
                return terms.total

            restores = 0
            for _ in range(_scale_iterations(options.iterations, k, len(record.sizes))):
                before = pixels.detach().clone()
                optimizer.step(closure)
                terms = last_terms["terms"]
                loss = float(terms.total.detach())
                if not math.isfinite(loss) or not torch.isfinite(pixels).all():
                    restores += 1
                    with torch.no_grad():
                        pixels.copy_(best)
                    optimizer = _make_optimizer(options, pixels)
                    record.notes.append(f"non-finite loss at step {steps_done + 1}: restored the best image so far")
                    if restores >= MAX_NONFINITE_RESTORES:
                        record.notes.append("stopped this scale after repeated non-finite losses")
                        break
                    continue
                # The losses were evaluated at the image before this step: that is the iterate they score.
                if loss < best_loss:
                    best_loss, best = loss, before
                if options.optimizer != "lbfgs":
                    # Adam takes projected steps; L-BFGS is left unclamped, as clamping would corrupt its
                    # curvature pairs; images are clamped when they are read out.
                    with torch.no_grad():
                        pixels.clamp_(0, 1)
                steps_done += 1
                losses = terms.as_floats()
                record.losses.append({"step": steps_done, "size": longest, **losses})
                if callback is not None:
                    callback(
                        Iterate(
                            step=steps_done,
                            total=total_steps,
                            scale=k + 1,
                            scales=len(record.sizes),
                            size=longest,
                            losses=losses,
                            elapsed=time.perf_counter() - start,
                            memory_mb=devices.memory_mb(device),
                            image=pixels.detach().clamp(0, 1),
                        )
                    )
            best, best_loss = _final_check(closure, pixels, best, best_loss)
            record.best_loss = best_loss
            image = best
    except KeyboardInterrupt:
        record.interrupted = True
        record.notes.append(f"interrupted after {steps_done} steps: kept the best image so far")
        if best is None:
            best = image if image is not None else resize_longest(content, record.sizes[-1])
    record.seconds = time.perf_counter() - start
    result = best if best is not None else image
    return result.detach().float().clamp(0, 1).contiguous().cpu(), record


def _scale_iterations(iterations: int, k: int, n_scales: int) -> int:
    """Steps at scale ``k`` of ``n_scales``: ``iterations`` at the last scale, half as many (>= 1) before it."""
    if k == n_scales - 1 or iterations == 0:
        return iterations
    return max(1, iterations // 2)


def _final_check(closure: Callable[[], Tensor], pixels: Tensor, best: Tensor, best_loss: float) -> tuple:
    """Score the last iterate too (the loop scores each image before its step) and keep the better one."""
    with torch.enable_grad():
        loss = float(closure().detach())
    if math.isfinite(loss) and loss < best_loss:
        return pixels.detach().clone(), loss
    return best, best_loss
