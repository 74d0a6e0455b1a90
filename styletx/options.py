"""Every option and its default, defined once.

The API (`styletx.stylize`, `styletx.train`) and the CLI read these dataclasses; the CLI builds its flags
from the field metadata (``help``, ``choices``), and a test checks that the two agree. Validation lives
here too, so a bad value gets the same one-line error from the API and the CLI.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Dict, Optional, Sequence, Tuple

from .errors import InputError

BACKBONES = ("auto", "vgg19", "vgg16", "random")
OPTIMIZERS = ("lbfgs", "adam")
POOLINGS = ("max", "avg")
INITS = ("content", "noise")  # or a path to an image
PRESERVE_COLOR = ("none", "luminance", "histogram")
PRECISIONS = ("auto", "fp32", "bf16")
#: x264/x265 speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: What runs a feed-forward network (styletx.engines.feedforward.backends).
BACKENDS = ("auto", "torch", "torch.compile", "onnxruntime", "winograd")
#: Bits per channel of an output image: 8 (every format) or 16 (PNG and TIFF, for print).
BIT_DEPTHS = (8, 16)
DEFAULT_BIT_DEPTH = 8

#: Content layers by backbone, used when ``content_layers`` is not given: Gatys et al.'s relu4_2 for the VGGs;
#: the weight-free network adds relu1_1 (its first filter bank, which the style loss computes anyway), as its
#: 1/8-resolution features alone keep too little of the photo (measured: docs/backbones.md).
DEFAULT_CONTENT_LAYERS: Dict[str, Tuple[str, ...]] = {
    "vgg19": ("relu4_2",), "vgg16": ("relu4_2",), "random": ("relu1_1", "relu4_2"),
}
DEFAULT_STYLE_LAYERS: Tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: Learning rate used when ``learning_rate`` is None, per optimiser (pixels are in [0, 1]).
DEFAULT_LEARNING_RATES = {"lbfgs": 1.0, "adam": 0.02}

#: Largest image (width * height) decoded unless ``max_pixels`` says otherwise: 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000
#: Seeds are 64-bit signed integers (torch generators, numpy): 0 .. 2**63 - 1.
MAX_SEED = 2**63 - 1
#: Coarse-to-fine scales, each twice the last: 10 already start 512x smaller than the output.
MAX_SCALES = 10
#: --style-scale: the style at most 32x the output's size (and at least 1/32 of it).
MAX_STYLE_SCALE = 32.0
#: --tile of the optimisation engine: cores of at least 64 px (smaller ones are mostly overlap).
MIN_OPTIMIZE_TILE = 64

_LAYER = re.compile(r"^(conv|relu|pool)(\d+)(?:_(\d+))?$")


def feature_layers(content_layers: Sequence[str], style_layers: Sequence[str]) -> Tuple[str, ...]:
    """The layers a backbone must compute: the content layers, then the style layers, each once."""
    return tuple(dict.fromkeys(tuple(content_layers) + tuple(style_layers)))


def min_side(layers: Sequence[str]) -> int:
    """The smallest image side (pixels, each of height and width) on which every one of ``layers`` can be
    computed: each pooling before a layer halves the image, so ``relu<b>_<i>``/``conv<b>_<i>`` need 2**(b-1) px
    and ``pool<b>`` 2**b px (the same for vgg19, vgg16 and the weight-free backbone, which share the names;
    tests/test_reliability.py measures it on each). Unknown names count as 1."""
    need = 1
    for name in layers:
        m = _LAYER.match(str(name))
        if m:
            block = int(m.group(2))
            need = max(need, 2 ** (block if m.group(1) == "pool" else block - 1))
    return need


def opt(default: Any, help: str, *, choices: Optional[Sequence[Any]] = None, cli: bool = True) -> Any:
    """A dataclass field with its CLI help text and allowed values (``choices``: strings, or integers) in the
    metadata."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


# Options that both engines have: one default and one help text each.
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 100.0
DEFAULT_TV_WEIGHT = 0.1


def max_pixels_opt() -> Any:
    return opt(DEFAULT_MAX_PIXELS, "Largest image (width x height) read; bigger files are refused before decoding "
               "(decompression bombs).")


def content_weight_opt() -> Any:
    return opt(DEFAULT_CONTENT_WEIGHT, "Weight of the content loss: higher keeps more of the content's structure.")


def style_weight_opt() -> Any:
    return opt(DEFAULT_STYLE_WEIGHT, "Weight of the style loss: higher takes on more of the style's texture.")


def tv_weight_opt() -> Any:
    return opt(DEFAULT_TV_WEIGHT, "Weight of the total-variation loss: higher gives smoother, less noisy output.")


def style_layers_opt() -> Any:
    return opt(DEFAULT_STYLE_LAYERS, "Backbone layers whose Gram matrices are matched.")


def backbone_opt() -> Any:
    return opt(
        "auto", "Feature network; auto uses ImageNet VGG19 if its weights are found, else the weight-free one.",
        choices=BACKBONES,
    )


def weights_opt() -> Any:
    return opt("DEFAULT", "VGG weights: DEFAULT (ImageNet, found by the look-up), a file path, or none (seeded random).")


def pooling_opt() -> Any:
    return opt("max", "Pooling in the backbone.", choices=POOLINGS)


def device_opt() -> Any:
    return opt("auto", "auto, cpu, cuda, cuda:N or mps.")


def precision_opt() -> Any:
    return opt("auto", "Arithmetic: auto (bf16 only where a short probe measures it faster and unchanged; "
               "$STYLETX_PRECISION forces one), fp32 or bf16.", choices=PRECISIONS)


def tile_opt(how: str) -> Any:
    return opt(None, f"Run in tiles of this many px ({how}); default: tiles only when the whole image does not fit "
               "in --max-memory.")


def max_memory_opt() -> Any:
    return opt(None, "Memory budget such as 2G or 512M (default: what the device has free, minus a margin); a run "
               "that needs more is tiled, or refused before it starts if a tile cannot fit.")


def preserve_color_opt() -> Any:
    return opt("none", "Keep the content's colours.", choices=PRESERVE_COLOR)


def bit_depth_opt() -> Any:
    return opt(DEFAULT_BIT_DEPTH, "Bits per channel of the output: 16 (.png or .tif only) keeps the full "
               "precision of the result for print.", choices=BIT_DEPTHS)


def check_bit_depth(value: Any) -> int:
    """``value`` if it is one of :data:`BIT_DEPTHS`; else InputError (one line)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in BIT_DEPTHS:
        raise InputError(f"bit_depth: expected one of {', '.join(map(str, BIT_DEPTHS))}, got {value!r}")
    return value


@dataclass(frozen=True)
class StylizeOptions:
    """Options of the optimisation engine (Gatys et al.). Sizes in pixels, weights are unitless."""

    size: int = opt(512, "Longest side of the output in pixels.")
    iterations: int = opt(300, "Optimiser steps at the final scale (coarser scales run half as many).")
    optimizer: str = opt("lbfgs", "Optimiser for the pixels.", choices=OPTIMIZERS)
    learning_rate: Optional[float] = opt(None, "Step size; default 1.0 for lbfgs, 0.02 for adam.")
    content_weight: float = content_weight_opt()
    style_weight: float = style_weight_opt()
    tv_weight: float = tv_weight_opt()
    content_layers: Optional[Tuple[str, ...]] = opt(
        None, "Backbone layers compared with the content (default: the backbone's: relu4_2 for VGG, relu1_1 and "
        "relu4_2 for the weight-free one)."
    )
    style_layers: Tuple[str, ...] = style_layers_opt()
    style_layer_weights: Optional[Tuple[float, ...]] = opt(
        None, "Relative weight of each style layer (default: equal)."
    )
    style_blend_weights: Optional[Tuple[float, ...]] = opt(
        None, "Relative weight of each style image when several are given (default: equal)."
    )
    style_scale: float = opt(1.0, "Size of the style image relative to the output: bigger gives coarser strokes.")
    scales: int = opt(0, "Coarse-to-fine scales, each twice the last; 0 picks as many as keep the smallest >= 256 px.")
    init: str = opt("content", "Starting image: content, noise, or the path of an image.")
    seed: int = opt(0, "Random seed (noise init, weight-free backbone).")
    device: str = device_opt()
    precision: str = precision_opt()
    pooling: str = pooling_opt()
    backbone: str = backbone_opt()
    weights: Optional[str] = weights_opt()
    preserve_color: str = preserve_color_opt()
    max_pixels: int = max_pixels_opt()
    tile: Optional[int] = tile_opt("whole-image style statistics, overlapping tiles re-drawn every step")
    max_memory: Optional[str] = max_memory_opt()
    bit_depth: int = bit_depth_opt()

    @property
    def min_size(self) -> int:
        """The smallest side (px) the content and style layers work on (see :func:`min_side`; with the default
        content layers, those of every backbone)."""
        content = self.content_layers
        if content is None:
            content = tuple(name for layers in DEFAULT_CONTENT_LAYERS.values() for name in layers)
        return max(min_side(tuple(content) + tuple(self.style_layers)), 16)

    def for_backbone(self, backbone: str) -> "StylizeOptions":
        """These options with ``content_layers`` filled in for ``backbone`` (a resolved name: vgg19, vgg16,
        random; any other extractor gets VGG's) when they were not given."""
        if self.content_layers is not None:
            return self
        return replace(self, content_layers=DEFAULT_CONTENT_LAYERS.get(backbone, DEFAULT_CONTENT_LAYERS["vgg19"]))

    def layers_for(self, backbone: str) -> Tuple[str, ...]:
        """The layers ``backbone`` must compute for these options (:meth:`for_backbone`, :func:`feature_layers`)."""
        resolved = self.for_backbone(backbone)
        return feature_layers(resolved.content_layers or (), resolved.style_layers)

    def validated(self) -> "StylizeOptions":
        """Return self after checking every value; raises InputError naming the first bad option."""
        _validate_shared(self)
        _size("size", self.size, self.min_size, self)
        _positive_int("iterations", self.iterations, minimum=0)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.learning_rate is not None:
            _positive_float("learning_rate", self.learning_rate)
        _positive_float("style_scale", self.style_scale)
        if not 1 / MAX_STYLE_SCALE <= self.style_scale <= MAX_STYLE_SCALE:
            raise InputError(f"style_scale: expected a number in [{1 / MAX_STYLE_SCALE:g}, {MAX_STYLE_SCALE:g}], "
                             f"got {self.style_scale!r}")
        _weights_for("style_layer_weights", self.style_layer_weights, len(self.style_layers))
        if self.style_blend_weights is not None:
            for w in self.style_blend_weights:
                _nonnegative_float("style_blend_weights", w)
            if sum(self.style_blend_weights) <= 0:
                raise InputError("style_blend_weights: at least one weight must be positive")
        _positive_int("scales", self.scales, minimum=0)
        if self.scales > MAX_SCALES:
            raise InputError(f"scales: expected an integer in [0, {MAX_SCALES}] (0: automatic), got {self.scales!r}")
        _choice("preserve_color", self.preserve_color, PRESERVE_COLOR)
        if self.tile is not None:
            _positive_int("tile", self.tile, minimum=MIN_OPTIMIZE_TILE)
        if self.max_memory is not None:
            parse_memory(self.max_memory)
        check_bit_depth(self.bit_depth)
        return self

    @property
    def budget(self) -> Optional[int]:
        """``max_memory`` in bytes (None: decided from the device's free memory)."""
        return None if self.max_memory is None else parse_memory(self.max_memory)

    @property
    def lr(self) -> float:
        """The learning rate in force: the explicit one or the optimiser's default."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.optimizer]

    def with_(self, **changes: Any) -> "StylizeOptions":
        """A copy with some options changed (unknown names raise InputError)."""
        return replace(self, **_known(type(self), changes))


@dataclass(frozen=True)
class ModelOptions:
    """Options of a run with a trained feed-forward model (``styletx run --model``, ``stylize(model=...)``)."""

    size: Optional[int] = opt(None, "Longest side of the output in pixels (default: the content's own size).")
    content_scale: Optional[float] = opt(None, "Scale the content by this factor first (instead of --size).")
    preserve_color: str = preserve_color_opt()
    batch_size: int = opt(4, "Images per forward pass (tensors of one size).")
    tile: Optional[int] = tile_opt("whole-image instance-norm statistics, exact")
    max_memory: Optional[str] = max_memory_opt()
    backend: str = opt("auto", "What runs the network: auto (the fastest measured of torch and onnxruntime), "
                       "torch, torch.compile, onnxruntime or winograd.", choices=BACKENDS)
    device: str = device_opt()
    precision: str = precision_opt()
    max_pixels: int = max_pixels_opt()
    bit_depth: int = bit_depth_opt()

    def validated(self) -> "ModelOptions":
        """Return self after checking every value; raises InputError naming the first bad option."""
        if self.size is not None:
            _positive_int("size", self.size, minimum=1)
        if self.content_scale is not None:
            _positive_float("content_scale", self.content_scale)
            if self.content_scale > 16:
                raise InputError(f"content_scale: expected a number in (0, 16], got {self.content_scale!r}")
            if self.size is not None:
                raise InputError("content_scale: give --size or --content-scale, not both")
        _choice("preserve_color", self.preserve_color, PRESERVE_COLOR)
        _positive_int("batch_size", self.batch_size)
        if self.tile is not None:
            _positive_int("tile", self.tile, minimum=16)
        if self.max_memory is not None:
            parse_memory(self.max_memory)
        _choice("backend", self.backend, BACKENDS)
        _choice("precision", self.precision, PRECISIONS)
        _positive_int("max_pixels", self.max_pixels)
        check_bit_depth(self.bit_depth)
        return self

    def with_(self, **changes: Any) -> "ModelOptions":
        """A copy with some options changed (unknown names raise InputError)."""
        return replace(self, **_known(type(self), changes)).validated()


@dataclass(frozen=True)
class VideoOptions:
    """Options of ``styletx video`` / ``stylize_video`` that do not depend on the engine. Times in seconds."""

    flicker_reduction: float = opt(0.0, "Blend each output frame with the previous one, moved along the input's "
                                   "motion where that is reliable: 0 (off) to 1 (strongest).")
    start: float = opt(0.0, "Start this many seconds into the clip.")
    duration: Optional[float] = opt(None, "Stylise this many seconds (default: to the end).")
    max_size: Optional[int] = opt(None, "Scale frames down so the longest side is at most this many pixels.")
    crf: int = opt(18, "Quality for CRF codecs (H.264/H.265/VP9): lower is better and bigger; 18 looks lossless.")
    codec: Optional[str] = opt(None, "Video encoder (default: libx264, libvpx-vp9 for .webm).")
    preset: str = opt("veryfast", "x264/x265 speed preset: slower presets make smaller files at the same quality "
                      "(veryfast encodes 640x360 ~8x faster than medium here).", choices=X264_PRESETS)
    audio: bool = opt(True, "Copy the audio streams (packet for packet, no re-encoding).", cli=False)
    batch_size: int = opt(4, "Frames per forward pass of a trained model.")
    frame_iterations: int = opt(100, "With --style: optimiser steps for each frame after the first (the first "
                                "runs --iterations), starting from the previous result moved along the motion.")
    temporal_weight: float = opt(200.0, "With --style: weight of the temporal loss that keeps each frame close to "
                                 "the previous result where the motion is reliable.")
    score: bool = opt(False, "Also compute the flicker score of the result (costs an optical flow per frame).",
                      cli=False)

    def validated(self) -> "VideoOptions":
        """Return self after checking every value; raises InputError naming the first bad option."""
        _unit_interval("flicker_reduction", self.flicker_reduction)
        _nonnegative_float("start", self.start)
        if self.duration is not None:
            _positive_float("duration", self.duration)
        if self.max_size is not None:
            _positive_int("max_size", self.max_size, minimum=16)
        if not isinstance(self.crf, int) or isinstance(self.crf, bool) or not 0 <= self.crf <= 63:
            raise InputError(f"crf: expected an integer from 0 to 63, got {self.crf!r}")
        if self.codec is not None and (not isinstance(self.codec, str) or not self.codec):
            raise InputError(f"codec: expected an encoder name, got {self.codec!r}")
        _choice("preset", self.preset, X264_PRESETS)
        _positive_int("batch_size", self.batch_size)
        _positive_int("frame_iterations", self.frame_iterations, minimum=0)
        _nonnegative_float("temporal_weight", self.temporal_weight)
        return self


def parse_memory(text: Any) -> int:
    """``"2G"``, ``"512M"``, ``"1.5GiB"``, ``"300000000"`` -> bytes; InputError (one line) otherwise."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise InputError(f"max_memory: expected a size such as 2G or 512M, got {text!r}")
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if factor > 1 else t) * factor
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 2**20:
        raise InputError(f"max_memory: expected a size of at least 1M such as 2G or 512M, got {text!r}")
    return int(value)


def _unit_interval(name: str, value: Any) -> None:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name}: expected a number from 0 to 1, got {value!r}")


def _validate_shared(opts: Any) -> None:
    """Checks of the fields both engines' options have: loss weights, layers, backbone, pooling, precision, seed."""
    for name in ("content_weight", "style_weight", "tv_weight"):
        _nonnegative_float(name, getattr(opts, name))
    if opts.content_layers is not None and not opts.content_layers and opts.content_weight > 0:
        raise InputError("content_layers: give at least one layer (or set content_weight to 0)")
    if not opts.style_layers:
        raise InputError("style_layers: give at least one layer")
    _choice("precision", opts.precision, PRECISIONS)
    _choice("pooling", opts.pooling, POOLINGS)
    _choice("backbone", opts.backbone, BACKBONES)
    if not isinstance(opts.seed, int) or isinstance(opts.seed, bool) or not 0 <= opts.seed <= MAX_SEED:
        raise InputError(f"seed: expected an integer in [0, 2**63 - 1], got {opts.seed!r}")
    _positive_int("max_pixels", opts.max_pixels)


def _known(cls: type, changes: dict) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise InputError(f"unknown option(s): {', '.join(unknown)}")
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in changes.items()}


def build(cls: type, **values: Any) -> Any:
    """Build an options dataclass from keyword values, coercing lists to tuples, then validate it."""
    return cls(**_known(cls, values)).validated()


def as_plain_dict(opts: Any) -> dict:
    """An options dataclass as ``{field: value}`` with tuples as lists (for JSON metadata and checkpoints)."""
    return {f.name: (list(v) if isinstance(v := getattr(opts, f.name), tuple) else v) for f in fields(opts)}


#: Fields whose values may be local paths: records and outputs keep only the file's name.
PATH_FIELDS = ("weights", "init", "preview_image", "resume", "file")


def names_only(values: dict) -> dict:
    """A copy of ``values`` with the local paths of :data:`PATH_FIELDS` reduced to file names, so that no user
    name, folder or machine layout leaks into an output's metadata or a checkpoint."""
    out = dict(values)
    for key in PATH_FIELDS:
        v = out.get(key)
        if isinstance(v, str) and ("/" in v or "\\" in v):
            out[key] = v.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return out


def defaults(cls: type) -> dict:
    """``{field name: default}`` of an options dataclass (what the CLI shows)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _size(name: str, value: Any, minimum: int, opts: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value < minimum:
        layers = tuple(opts.content_layers or ()) + tuple(opts.style_layers)
        deepest = max(layers, key=lambda n: min_side((n,)))
        raise InputError(f"{name}: expected an integer >= {minimum} (layer {deepest} needs {minimum} px on each "
                         f"side), got {value!r}")
    _positive_int(name, value, minimum=minimum)


def _positive_float(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: expected a finite number > 0, got {value!r}")


def _nonnegative_float(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def _weights_for(name: str, weights: Optional[Sequence[float]], count: int) -> None:
    if weights is None:
        return
    if len(weights) != count:
        raise InputError(f"{name}: expected {count} values (one per layer), got {len(weights)}")
    for w in weights:
        _nonnegative_float(name, w)


# ------------------------------------------------------------------------------------- training (issue 3)

TRANSFORMER_ARCHS = ("standard", "slim", "slim-resize", "slim-2x")
#: Content is read from a shallow layer for the feed-forward network (Johnson et al. 2016: relu2_2).
DEFAULT_TRAIN_CONTENT_LAYERS: Tuple[str, ...] = ("relu2_2",)


@dataclass(frozen=True)
class TrainOptions:
    """Options of ``styletx train``: training a feed-forward transformer for one style (Johnson et al.).

    Sizes in pixels; weights unitless, with the same meaning as in :class:`StylizeOptions` (same losses).
    """

    size: int = opt(256, "Side of the random square crops of the training images, in pixels.")
    steps: int = opt(2000, "Optimiser steps (0: run for --epochs instead).")
    epochs: int = opt(0, "Passes over the training images (0: no limit; stops at --steps).")
    batch_size: int = opt(4, "Images per step.")
    learning_rate: float = opt(1e-3, "Adam step size.")
    content_weight: float = content_weight_opt()
    style_weight: float = style_weight_opt()
    tv_weight: float = tv_weight_opt()
    content_layers: Tuple[str, ...] = opt(DEFAULT_TRAIN_CONTENT_LAYERS, "Backbone layers compared with the content.")
    style_layers: Tuple[str, ...] = style_layers_opt()
    style_size: Optional[int] = opt(None, "Longest side of the style image in pixels (default: --size).")
    arch: str = opt("standard", "Transformer architecture.", choices=TRANSFORMER_ARCHS)
    backbone: str = backbone_opt()
    weights: Optional[str] = weights_opt()
    pooling: str = pooling_opt()
    seed: int = opt(0, "Random seed (network init, crops, order).")
    checkpoint_every: int = opt(500, "Save the checkpoint every N steps (0: only at the end).")
    preview_every: int = opt(0, "Write a preview of the validation image every N steps (0: never).")
    preview_image: Optional[str] = opt(None, "Validation picture for previews (default: the first training image).")
    resume: Optional[str] = opt(None, "Continue from this checkpoint (its weights, optimiser state and step).")
    device: str = device_opt()
    precision: str = precision_opt()
    max_pixels: int = max_pixels_opt()
    tile: Optional[int] = tile_opt("whole-image style statistics, overlapping tiles re-drawn every step")
    max_memory: Optional[str] = max_memory_opt()

    @property
    def min_size(self) -> int:
        """The smallest side (px) the content and style layers work on (see :func:`min_side`)."""
        return max(min_side(tuple(self.content_layers) + tuple(self.style_layers)), 16)

    def validated(self) -> "TrainOptions":
        """Return self after checking every value; raises InputError naming the first bad option."""
        _validate_shared(self)
        _size("size", self.size, self.min_size, self)
        _positive_int("steps", self.steps, minimum=0)
        _positive_int("epochs", self.epochs, minimum=0)
        if self.steps == 0 and self.epochs == 0:
            raise InputError("steps: give --steps or --epochs (both are 0)")
        _positive_int("batch_size", self.batch_size)
        _positive_float("learning_rate", self.learning_rate)
        if self.style_size is not None:
            _size("style_size", self.style_size, self.min_size, self)
        _choice("arch", self.arch, TRANSFORMER_ARCHS)
        _positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        _positive_int("preview_every", self.preview_every, minimum=0)
        return self

    def with_(self, **changes: Any) -> "TrainOptions":
        """A copy with some options changed (unknown names raise InputError)."""
        return replace(self, **_known(type(self), changes)).validated()
