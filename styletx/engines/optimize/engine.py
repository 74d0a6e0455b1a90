"""The optimisation engine (Gatys et al. 2016): minimise content + style + TV losses over the output pixels.

Coarse-to-fine: the image is optimised at growing sizes (each twice the last) up to the target, each scale
starting from the last one's result. Style targets (blended Gram matrices) are computed once per scale.
Losses are normalised by their targets' magnitude, so that a weight means the same for every layer,
image size and backbone (see docs/guide.md).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import device as devices, memory
from ...errors import InputError
from ...losses import (
    LossTerms,
    gram_matrix,
    normalised_layer_weights,
    target_scaled_weights,
    temporal_loss,
    total_loss,
)
from ...options import MIN_OPTIMIZE_TILE, StylizeOptions
from ...results import Iterate, RunRecord
from ...tensors import resize_longest, resize_to
from . import tiles
from .lbfgs import SafeguardedLBFGS

__all__ = ["scale_sizes", "plan_sizes", "memory_needed", "optimize_image", "choose_precision_for", "PROBE_SIZE"]

MIN_AUTO_SCALE = 256  # px: the smallest scale that auto multi-scale goes down to
MAX_NONFINITE_RESTORES = 3
#: px: side of the random image the precision probe runs the extractor on (forward + backward)
PROBE_SIZE = 64
#: px of free border optimised around the picture at every scale and cut off at the end: the outermost rows of
#: an optimised image are pulled by half a neighbourhood and come out as a lighter line (docs/backbones.md);
#: here that happens to rows nobody sees.
EDGE_MARGIN = 4


def choose_precision_for(extractor: torch.nn.Module, precision: str, device: torch.device) -> devices.PrecisionChoice:
    """The precision policy (:func:`styletx.device.choose_precision`) for an optimisation with ``extractor``:
    the probe is one forward and backward pass of it on a PROBE_SIZE px image; its output, the gradient
    that moves the pixels, is what bf16 must leave unchanged: within 5%, or within 1.5x of what an invisible
    (8-bit) change of the image moves it by, since that gradient is chaotic in the input (ReLUs switch)."""
    x = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0)).to(device)

    nudge = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) - 0.5).div_(255).to(device)

    def gradient(image: Tensor, bf16: bool) -> Tensor:
        pixels = image.clone().requires_grad_(True)
        with devices.autocast(bf16, device):
            feats = extractor(pixels.contiguous(memory_format=torch.channels_last))
        loss = sum(gram_matrix(f).square().sum() + f.float().square().mean() for f in feats.values())
        (grad,) = torch.autograd.grad(loss, pixels)
        return grad

    description = getattr(extractor, "description", {})
    workload = f"optimize {description.get('backbone', type(extractor).__name__)} {description.get('pooling', '')}"
    return devices.choose_precision(precision, device, workload=workload.strip() + " | noise floor",
                                    probe=lambda bf16: gradient(x, bf16),
                                    noise_floor=lambda: gradient((x + nudge).clamp(0, 1), False))


def scale_sizes(size: int, scales: int) -> List[int]:
    """Longest side of each scale, coarse to fine, ending at ``size``.

    ``scales == 0`` picks as many scales (each twice the last) as keep the smallest >= 256 px.
    """
    if scales <= 0:
        scales = 1
        while size / 2**scales >= MIN_AUTO_SCALE:
            scales += 1
    return [max(16, round(size / 2**k)) for k in reversed(range(scales))]


def _shorter(h: int, w: int, longest: int) -> int:
    """The shorter side of an h x w image resized so that its longest side is ``longest`` (as resize_longest)."""
    return max(1, round(min(h, w) * longest / max(h, w)))


def _style_longest(h: int, w: int, longest: int, options: StylizeOptions) -> int:
    """Longest side of a style image at the scale of ``longest``: ``style_scale`` times it, enlarged where the
    style's shorter side would be below the layers' minimum."""
    need = math.ceil(options.min_size * max(h, w) / min(h, w))
    return max(round(longest * options.style_scale), need)


def plan_sizes(content_hw: Tuple[int, int], style_hws: Sequence[Tuple[int, int]], options: StylizeOptions, *,
               names: Optional[Sequence[str]] = None) -> Tuple[List[int], List[str]]:
    """The longest side of each scale (coarse to fine) for a content of ``content_hw`` (h, w), and notes.

    Refuses (InputError, one line naming the image) a content or style so small or thin that, at the output
    size, its shorter side would be below what the layers need (``options.min_size``); drops coarse scales
    that would be (noted when the scales were asked for). ``names``: the content's and the styles' names.
    """
    need = options.min_size
    names = list(names) if names else ["content"] + [f"style {i + 1}" for i in range(len(style_hws))]
    h, w = (int(v) for v in content_hw)
    short = _shorter(h, w, options.size)
    if short < need:
        smallest = math.ceil(need * max(h, w) / min(h, w))
        fix = (f"use --size {smallest} or more" if smallest <= 4 * max(options.size, 1024)
               else "the picture is too thin: crop or pad it")
        raise InputError(f"{names[0]}: {w}x{h} px at --size {options.size} has a side of {short} px; "
                         f"the layers need at least {need} px on each side: {fix}")
    for (sh, sw), name in zip(style_hws, names[1:]):
        longest = round(options.size * options.style_scale)
        if _shorter(sh, sw, longest) < need and _style_longest(sh, sw, options.size, options) > 4 * longest:
            raise InputError(f"{name}: {sw}x{sh} px is too thin for a style: at {longest} px its shorter side is "
                             f"{_shorter(sh, sw, longest)} px, the layers need {need} px; crop it")
    sizes: List[int] = []
    for longest in scale_sizes(options.size, options.scales):
        if _shorter(h, w, longest) >= need and longest not in sizes:
            sizes.append(longest)
    notes = []
    if options.scales and len(sizes) < options.scales:
        notes.append(f"scales: {len(sizes)} of the {options.scales} asked for fit (coarser ones would be under "
                     f"{need} px on a side)")
    return sizes, notes


#: L-BFGS keeps this many pairs of image-sized vectors, fewer (down to MIN_HISTORY) where the budget is short.
HISTORY = 100
MIN_HISTORY = 10


def _pixels(content_hw: Tuple[int, int], longest: int) -> int:
    h, w = content_hw
    return _shorter(h, w, longest) * longest


def memory_needed(content_hw: Tuple[int, int], style_hws: Sequence[Tuple[int, int]], options: StylizeOptions,
                  bytes_per_pixel: float, *, longest: Optional[int] = None, history: int = HISTORY) -> float:
    """Bytes the optimisation needs, whole, at the scale of ``longest`` px (default: the final one, the largest):
    the backbone's saved activations and their gradients (``bytes_per_pixel``, measured by
    :func:`styletx.memory.saved_bytes_per_pixel`, times 3 for the backward pass and its workspace), the
    optimiser's state (L-BFGS keeps ``history`` pairs of image-sized vectors) and a few copies of the image; or,
    when larger, the style's features at its size."""
    longest = longest or options.size
    pixels = _pixels(content_hw, longest)
    run = pixels * (3 * bytes_per_pixel + _state_bytes(options, history))
    sides = [(sh, sw, _style_longest(sh, sw, longest, options)) for sh, sw in style_hws]
    styles = [side * _shorter(sh, sw, side) for sh, sw, side in sides]
    style_phase = max(styles, default=0) * (bytes_per_pixel + 3 * 4)
    return max(run, style_phase) + pixels * 3 * 4


def _state_bytes(options: StylizeOptions, history: int) -> int:
    """Bytes per pixel of what lives at image size: the optimiser's history and ~16 copies of the RGB image."""
    pairs = history if options.optimizer == "lbfgs" else 1
    return pairs * 2 * 3 * 4 + 16 * 3 * 4


def tiled_memory_needed(content_hw: Tuple[int, int], options: StylizeOptions, bytes_per_pixel: float,
                        content_bytes_per_pixel: float, core: int, *, longest: Optional[int] = None,
                        history: int = HISTORY) -> float:
    """Bytes a tiled optimisation needs at the scale of ``longest`` px with cores of ``core`` px: one crop's
    saved activations (core plus overlap each side), the content targets kept at the cores
    (``content_bytes_per_pixel``), the optimiser's state and the image's copies."""
    longest = longest or options.size
    h, w = content_hw
    long_side, short_side = longest, _shorter(h, w, longest)
    reach = core + 2 * tiles.OVERLAP + tiles.ALIGN  # a crop's side: core, overlap each side, grid alignment
    crop = min(reach, long_side) * min(reach, short_side)
    pixels = long_side * short_side
    return crop * 3 * bytes_per_pixel + pixels * (content_bytes_per_pixel + _state_bytes(options, history) + 3 * 4)


@dataclass(frozen=True)
class MemoryPlan:
    """How each scale runs: ``cores[k]`` None (whole) or the tile core side in px; the L-BFGS history size;
    ``needed``: the estimate of the largest scale's need, bytes; ``line``: the plan in one line (announced by
    the CLI, kept in the record)."""

    cores: Tuple[Optional[int], ...]
    history: int
    needed: float
    line: str

    @property
    def tiled(self) -> bool:
        return any(c is not None for c in self.cores)


def _for_extractor(options: StylizeOptions, extractor: torch.nn.Module) -> StylizeOptions:
    """The options with the default content layers of the extractor's backbone filled in (when not given)."""
    return options.for_backbone(getattr(extractor, "description", {}).get("backbone", ""))


def _content_bytes_per_pixel(extractor: torch.nn.Module, layers: Sequence[str], device: torch.device) -> float:
    """Bytes per input pixel of the content layers' features (what a tiled run keeps as content targets)."""
    side = 64
    with torch.no_grad():
        feats = extractor(torch.zeros(1, 3, side, side, device=device).contiguous(memory_format=torch.channels_last))
    return sum(feats[n].numel() * 4 for n in layers) / (side * side)


def plan_memory(content_hw: Tuple[int, int], style_hws: Sequence[Tuple[int, int]], options: StylizeOptions,
                sizes: Sequence[int], extractor: torch.nn.Module, device: torch.device, *,
                bf16: bool = False) -> MemoryPlan:
    """Decide, before any work, how each scale runs within the budget (``options.max_memory``, or what the device
    has free less a margin): whole where it fits, else in the largest tiles that fit (``options.tile`` forces
    that size); the L-BFGS history shrinks (not below MIN_HISTORY) where image-sized state would take more than
    a quarter of the budget. Refuses (InputError, one line with what would fit) a run that cannot fit even in
    the smallest tiles."""
    options = _for_extractor(options, extractor)

    def forward(x: Tensor) -> object:
        with devices.autocast(bf16, device):
            return extractor(x.contiguous(memory_format=torch.channels_last))

    bpp = memory.saved_bytes_per_pixel(forward, device, extractor)  # in the run's arithmetic (bf16: about half)
    budget = memory.budget_bytes(device, options.budget)
    final_pixels = _pixels(content_hw, sizes[-1])
    history = HISTORY
    if budget is not None and options.optimizer == "lbfgs":
        history = max(MIN_HISTORY, min(HISTORY, int(budget / 4 / (final_pixels * 2 * 3 * 4))))
    whole = [memory_needed(content_hw, style_hws, options, bpp, longest=s, history=history) for s in sizes]
    cbpp = _content_bytes_per_pixel(extractor, options.content_layers, device)
    align = tiles.ALIGN
    smallest = MIN_OPTIMIZE_TILE
    cores: List[Optional[int]] = []
    needs: List[float] = []
    for longest, need_whole in zip(sizes, whole):
        if options.tile is not None:
            core: Optional[int] = options.tile if options.tile < longest else None
        elif budget is None or need_whole <= budget:
            core = None
        else:
            def tiled_need(n: int, longest: int = longest) -> float:
                return tiled_memory_needed(content_hw, options, bpp, cbpp, max(n, 1) * align, longest=longest,
                                           history=history)
            core = memory.largest_fitting(tiled_need, budget, longest // align) * align
            if core < smallest:
                _refuse(content_hw, style_hws, options, bpp, cbpp, budget, device, history)
            core = None if core >= longest else core
        cores.append(core)
        needs.append(need_whole if core is None
                     else tiled_memory_needed(content_hw, options, bpp, cbpp, core, longest=longest, history=history))
    if budget is not None and options.tile is not None and max(needs) > budget:
        _refuse(content_hw, style_hws, options, bpp, cbpp, budget, device, history)
    line = _plan_line(content_hw, sizes, cores, needs, whole[-1], budget, history, options)
    return MemoryPlan(tuple(cores), history, max(needs), line)


def _plan_line(content_hw: Tuple[int, int], sizes: Sequence[int], cores: Sequence[Optional[int]],
               needs: Sequence[float], whole_final: float, budget: Optional[float], history: int,
               options: StylizeOptions) -> str:
    h, w = _final_hw(content_hw, sizes[-1])
    shown = "no limit" if budget is None else memory.gib(budget)
    extra = f"; L-BFGS history {history}" if options.optimizer == "lbfgs" and history < HISTORY else ""
    if cores[-1] is None:
        return f"whole image: {w}x{h} px needs about {memory.gib(needs[-1])} (budget {shown}){extra}"
    tiled = [f"{s} px in tiles of {c} px" for s, c in zip(sizes, cores) if c is not None]
    whole = [str(s) for s, c in zip(sizes, cores) if c is None]
    return (f"tiled: {w}x{h} px, scale(s) " + ", ".join(tiled) + f" (+{tiles.OVERLAP} px overlap, offsets re-drawn "
            "every step), whole-image style statistics" + (f"; scale(s) {', '.join(whole)} px whole" if whole else "")
            + f"; about {memory.gib(max(needs))} (budget {shown}; whole would need {memory.gib(whole_final)})"
            + extra)


def _refuse(content_hw: Tuple[int, int], style_hws: Sequence[Tuple[int, int]], options: StylizeOptions,
            bpp: float, cbpp: float, budget: float, device: torch.device, history: int) -> None:
    """InputError: even the smallest tiles do not fit in ``budget``; says the largest --size that would."""
    def smallest_need(n: int) -> float:
        return tiled_memory_needed(content_hw, options.with_(size=max(n, 16)), bpp, cbpp, MIN_OPTIMIZE_TILE,
                                   history=MIN_HISTORY)

    best = memory.largest_fitting(smallest_need, budget, options.size)
    where = "GPU memory" if device.type == "cuda" else "memory"
    need = tiled_memory_needed(content_hw, options, bpp, cbpp, options.tile or MIN_OPTIMIZE_TILE, history=history)
    advice = (f"the largest --size that fits is about {best}" if best >= options.min_size else "it cannot fit here")
    raise InputError(f"a {options.size} px run ({options.optimizer}) needs about {memory.gib(need)} of {where} even "
                     f"in tiles of {options.tile or MIN_OPTIMIZE_TILE} px, the budget is {memory.gib(budget)}; "
                     f"{advice}")


def _style_targets(
    extractor: torch.nn.Module,
    styles: Sequence[Tensor],
    blend: Sequence[float],
    layers: Sequence[str],
    longest: int,
    bf16: bool,
    device: torch.device,
    options: StylizeOptions,
    core: Optional[int] = None,
) -> Dict[str, Tensor]:
    """Blended target Gram matrices {layer: (1, C, C) float32} of the styles at the scale of ``longest`` px
    (``style_scale`` times it, enlarged where a style's shorter side would be too small for the layers);
    accumulated over tiles of ``core`` px when the scale runs tiled."""
    grams: Dict[str, Tensor] = {}
    with torch.no_grad():
        for style, weight in zip(styles, blend):
            side = _style_longest(int(style.shape[-2]), int(style.shape[-1]), longest, options)
            x = resize_longest(style.to(device), side).contiguous(memory_format=torch.channels_last)
            if core is None:
                with devices.autocast(bf16, device):
                    feats = extractor(x)
                found = {name: gram_matrix(feats[name]) for name in layers}
                del feats
            else:
                found, _ = tiles.tiled_statistics(extractor, x, layers, [], core, bf16=bf16,
                                                  min_side=options.min_size)
            for name in layers:
                g = weight * found[name]
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


def _with_margin(image: Tensor, margin: int = EDGE_MARGIN) -> Tensor:
    """(N, C, H, W) -> (N, C, H + 2 margin, W + 2 margin), the border reflected (replicated when too small)."""
    mode = "reflect" if min(image.shape[-2:]) > margin else "replicate"
    return F.pad(image, (margin,) * 4, mode=mode)


def _inside(image: Tensor, margin: int = EDGE_MARGIN) -> Tensor:
    """The picture inside a :func:`_with_margin` canvas."""
    return image[..., margin:image.shape[-2] - margin, margin:image.shape[-1] - margin]


def _make_optimizer(options: StylizeOptions, image: Tensor, history: int = HISTORY) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam([image], lr=options.lr)
    # One evaluation per step, so that every step reports its losses and can be interrupted; a step that raises
    # the loss is taken back and retried shorter (lbfgs.py).
    return SafeguardedLBFGS([image], lr=options.lr, history_size=history)


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
    options = _for_extractor(options.validated(), extractor)
    record = record or RunRecord()
    device = next((b.device for b in extractor.buffers()), None) or next(extractor.parameters()).device
    content_hw = (int(content.shape[-2]), int(content.shape[-1]))
    style_hws = [(int(s.shape[-2]), int(s.shape[-1])) for s in styles]
    sizes, notes = plan_sizes(content_hw, style_hws, options)
    choice = choose_precision_for(extractor, options.precision, device)
    bf16 = choice.bf16
    plan = plan_memory(content_hw, style_hws, options, sizes, extractor, device, bf16=bf16)
    record.plan = plan.line
    record.notes.extend(notes)
    record.device, record.precision, record.precision_reason = str(device), choice.name, choice.describe()
    record.sizes = sizes
    style_layer_weights = normalised_layer_weights(options.style_layers, options.style_layer_weights)
    content_layer_weights = normalised_layer_weights(options.content_layers, None)
    blend = normalised_layer_weights([str(i) for i in range(len(styles))], options.style_blend_weights)
    blend_weights = [blend[str(i)] for i in range(len(styles))]

    start = time.perf_counter()
    image: Optional[Tensor] = None
    best: Optional[Tensor] = None
    best_loss = math.inf
    scale = 0
    steps_done = 0
    total_steps = sum(_scale_iterations(options.iterations, k, len(record.sizes)) for k in range(len(record.sizes)))
    try:
        for k, longest in enumerate(record.sizes):
            scale = k
            # The image is optimised on a canvas EDGE_MARGIN px larger all round (the content reflected into it).
            target = resize_longest(content.to(device), longest)
            if image is None:
                image = _initial_image(options.init, target, options.seed, init_image)
            else:
                image = resize_to(_inside(best if best is not None else image), target.shape[-2:]).clamp(0, 1)
            image, target = _with_margin(image), _with_margin(target)
            core = plan.cores[k]
            grams = _style_targets(extractor, styles, blend_weights, options.style_layers, longest, bf16, device,
                                   options, core)
            style_norm = target_scaled_weights(grams, style_layer_weights)
            content_targets: Dict[str, Tensor] = {}
            if core is None:
                with torch.no_grad(), devices.autocast(bf16, device):
                    content_feats = extractor(target.contiguous(memory_format=torch.channels_last))
                content_targets = {name: content_feats[name].float() for name in options.content_layers}
                del content_feats
                content_norm = target_scaled_weights(content_targets, content_layer_weights)
            else:
                _, content_maps = tiles.tiled_statistics(extractor, target, [], options.content_layers, core,
                                                         bf16=bf16, min_side=options.min_size)
                content_norm = target_scaled_weights(content_maps, content_layer_weights)
                tiled_targets = tiles.TiledTargets(grams, content_maps, style_norm, content_norm,
                                                   options.content_weight, options.style_weight, options.tv_weight)
                offsets = random.Random(options.seed * 7919 + k)
            scaled_temporal = None
            if temporal is not None and temporal_weight > 0:
                size = tuple(_inside(target).shape[-2:])
                scaled_temporal = (_with_margin(resize_to(temporal[0].to(device), size)),
                                   _with_margin(resize_to(temporal[1].to(device), size, mode="bilinear")))

            # L-BFGS needs a contiguous (NCHW) leaf; the network gets a channels_last copy of it.
            pixels = image.detach().clone().contiguous().requires_grad_(True)
            optimizer = _make_optimizer(options, pixels, plan.history)
            best, best_loss = pixels.detach().clone(), math.inf
            last_terms: Dict[str, LossTerms] = {}

            def closure() -> Tensor:
                optimizer.zero_grad(set_to_none=True)
                if core is not None:
                    return _tiled_closure()
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
                last_terms.setdefault("terms", terms)
                return terms.total

            def _tiled_closure() -> Tensor:
                """The same losses over tiles (a new grid offset each evaluation), gradients accumulated."""
                assert core is not None
                grid = tiles.tiles_of(tuple(target.shape[-2:]), core, tiles.random_offset(offsets, core),
                                      min_side=options.min_size)
                terms = tiles.tiled_terms(pixels, extractor, tiled_targets, grid, bf16=bf16)
                if scaled_temporal is not None:
                    extra = temporal_weight * temporal_loss(pixels, *scaled_temporal)
                    extra.backward()
                    terms = LossTerms(terms.content, terms.style, terms.tv, terms.total + extra.detach(),
                                      {"temporal": extra.detach()})
                if not torch.isfinite(terms.total):
                    pixels.grad = None
                last_terms.setdefault("terms", terms)
                return terms.total

            restores = 0
            for _ in range(_scale_iterations(options.iterations, k, len(record.sizes))):
                before = pixels.detach().clone()
                last_terms.clear()  # the step's first evaluation (at ``before``) is the one it reports
                optimizer.step(closure)
                terms = last_terms["terms"]
                loss = float(terms.total.detach())
                if not math.isfinite(loss) or not torch.isfinite(pixels).all():
                    restores += 1
                    with torch.no_grad():
                        pixels.copy_(best)
                    optimizer = _make_optimizer(options, pixels, plan.history)
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
                            image=_inside(pixels.detach()).clamp(0, 1),
                            plan=plan.line,
                        )
                    )
            best, best_loss = _final_check(closure, pixels, best, best_loss)
            record.best_loss = best_loss
            image = best
    except KeyboardInterrupt:
        record.interrupted = True
        record.notes.append(f"interrupted after {steps_done} steps: kept the best image so far")
        if math.isfinite(best_loss):
            record.best_loss = best_loss
        if best is None:
            best = image if image is not None else _with_margin(resize_longest(content, record.sizes[-1]))
    record.seconds = time.perf_counter() - start
    result = _inside(best if best is not None else image)
    result = result.detach().float().clamp(0, 1).contiguous().cpu()
    if record.interrupted and scale < len(record.sizes) - 1:
        full_h, full_w = _final_hw(content_hw, record.sizes[-1])
        record.notes.append(f"interrupted at scale {scale + 1} of {len(record.sizes)}: the image is "
                            f"{result.shape[-1]}x{result.shape[-2]} px, not the {full_w}x{full_h} asked for")
    return result, record


def _final_hw(content_hw: Tuple[int, int], longest: int) -> Tuple[int, int]:
    """(h, w) of the content resized so that its longest side is ``longest`` (as resize_longest computes it)."""
    h, w = content_hw
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


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
