"""The Python API: ``styletx.stylize`` and what it returns. The CLI calls exactly this."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from PIL import Image
from torch import Tensor

from . import color
from ._version import __version__
from .device import pick_device
from .errors import InputError
from .features import extractor_for
from .image import load_image, resize_to, to_pil
from .optimize import Iterate, RunRecord, optimize_image
from .result import StylizeResult
from .options import StylizeOptions, as_plain_dict, build

ImageSource = Union[str, Path, Image.Image, "numpy.ndarray", Tensor]  # noqa: F821

__all__ = ["StylizeResult", "stylize", "prepare_extractor"]


def prepare_extractor(options: StylizeOptions, device: torch.device) -> torch.nn.Module:
    """The feature extractor for the options' backbone, weights and layers (content + style)."""
    layers = tuple(dict.fromkeys(tuple(options.content_layers) + tuple(options.style_layers)))
    return extractor_for(options.backbone, options.weights, layers, pooling=options.pooling, seed=options.seed,
                         device=device)


def _as_list(style: Any) -> List[Any]:
    if style is None:
        return []
    if isinstance(style, (list, tuple)):
        return list(style)
    return [style]


def stylize(
    content: ImageSource,
    style: Union[ImageSource, Sequence[ImageSource], None] = None,
    *,
    model: Union[str, Path, Any, None] = None,
    callback: Optional[Callable[[Iterate], None]] = None,
    output: str = "pil",
    keep_alpha: bool = False,
    **options: Any,
) -> StylizeResult:
    """Stylise ``content`` with one or more ``style`` images (or with a trained transformer ``model``).

    content, style: a path, PIL image, numpy array (H, W, 3) or tensor (1|3, ..., H, W) in [0, 1];
    style may be a list (blended with ``style_blend_weights``). Any :class:`~styletx.options.StylizeOptions`
    field is a keyword (size, iterations, optimizer, content_weight, style_weight, tv_weight, backbone,
    weights, seed, device, ...). ``callback`` gets an :class:`~styletx.optimize.Iterate` after every step.
    ``output="tensor"`` returns a (1, 3, H, W) float tensor instead of a PIL image. ``keep_alpha`` carries
    the content's alpha channel over to the result (as ``result.alpha``; ``save`` writes it).
    """
    if output not in ("pil", "tensor"):
        raise InputError(f"output: expected 'pil' or 'tensor', got {output!r}")
    if model is not None:
        from .transformer import stylize_with_model

        return stylize_with_model(content, model, output=output, keep_alpha=keep_alpha, **options)
    opts: StylizeOptions = build(StylizeOptions, **options)
    styles = _as_list(style)
    if not styles:
        raise InputError("style: give at least one style image (or a trained model)")
    if opts.style_blend_weights is not None and len(opts.style_blend_weights) != len(styles):
        raise InputError(
            f"style_blend_weights: expected {len(styles)} values (one per style image), "
            f"got {len(opts.style_blend_weights)}"
        )
    loaded_content = load_image(content, keep_alpha=keep_alpha)
    style_tensors = [load_image(s).tensor for s in styles]
    init_image = None
    if opts.init not in ("content", "noise"):
        init_image = load_image(opts.init).tensor

    device = pick_device(opts.device)
    if opts.preserve_color == "histogram":
        style_tensors = [color.match_histogram(s, loaded_content.tensor) for s in style_tensors]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor = prepare_extractor(opts, device)
    record = RunRecord(backbone=dict(extractor.description), options=as_plain_dict(opts))
    for w in caught:  # pass them on to the caller, and keep them in the record
        record.notes.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    image, record = optimize_image(
        loaded_content.tensor, style_tensors, extractor, opts, init_image=init_image, callback=callback, record=record
    )
    if opts.preserve_color == "luminance":
        image = color.transfer_luminance(image, loaded_content.tensor)
    alpha = None
    if loaded_content.alpha is not None:
        alpha = resize_to(loaded_content.alpha, image.shape[-2:]).clamp(0, 1)
    return StylizeResult(
        image=image if output == "tensor" else to_pil(image),
        record=record,
        alpha=alpha,
        metadata=run_metadata(record, content=loaded_content.name, styles=[_name_of(s) for s in styles]),
    )


def _name_of(source: Any) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else type(source).__name__


def run_metadata(record: RunRecord, **extra: Any) -> Dict[str, str]:
    """The text stored in an output image: styletx version, backbone, weights, seed and every option."""
    meta = {
        "styletx": __version__,
        "styletx.backbone": json.dumps(record.backbone, sort_keys=True),
        "styletx.record": json.dumps(record.to_dict(), sort_keys=True, default=str),
    }
    for key, value in extra.items():
        meta[f"styletx.{key}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return meta
