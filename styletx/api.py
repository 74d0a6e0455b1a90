"""The Python API: ``stylize``, ``stylize_files`` and ``train``, joining the I/O edges with the engines.

The CLI calls exactly these. Engines take tensors and options; this layer loads pictures, checks outputs before
any work, runs the engine, and writes results (atomically, with the run's description in their metadata).
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from PIL import Image
from torch import Tensor

from . import color
from ._version import __version__
from .device import pick_device
from .engines.feedforward.checkpoint import file_sha256, read_checkpoint
from .engines.feedforward.model import FeedForwardModel, as_model
from .engines.feedforward.train import TrainProgress, TrainResult, train_network
from .engines.optimize import optimize_image, plan_sizes
from .errors import CheckpointError, ImageError, InputError
from .features import extractor_for
from .io.crops import ImageCrops
from .io.files import ensure_folder, list_images, output_paths
from .io.image import check_output_path, load_image, save_image
from .options import (DEFAULT_BIT_DEPTH, ModelOptions, StylizeOptions, TrainOptions, as_plain_dict, build,
                      check_bit_depth, names_only)
from .paths import check_not_an_input, check_writable_folder, file_problem
from .results import FileDone, Iterate, RunRecord
from .tensors import resize_longest, resize_to, to_pil

ImageSource = Union[str, Path, Image.Image, "numpy.ndarray", Tensor]  # noqa: F821
ModelSource = Union[str, Path, FeedForwardModel]

__all__ = ["StylizeResult", "stylize", "stylize_files", "train", "prepare_extractor", "run_metadata",
           "model_metadata"]


@dataclass
class StylizeResult:
    """The stylised image (PIL image, or a (1, 3, H, W) tensor in [0, 1] when asked) and the run's record.

    ``bit_depth``: what :meth:`save` writes unless told otherwise (the run's ``bit_depth`` option). ``pixels``:
    the result at full precision ((1, 3, H, W) float on the CPU), kept beside a PIL ``image`` when the run asked
    for 16 bits, so that the file gets every level the engine made."""

    image: Any
    record: RunRecord
    alpha: Optional[Tensor] = None
    metadata: Dict[str, str] = field(default_factory=dict)
    bit_depth: int = DEFAULT_BIT_DEPTH
    pixels: Optional[Tensor] = None

    def save(self, path: Union[str, Path], *, overwrite: bool = False, bit_depth: Optional[int] = None) -> Path:
        """Write the image atomically with the run's parameters in its metadata; returns the path. ``bit_depth``
        (default: the run's): 8, or 16 for .png and .tif files (a PIL result without ``pixels`` is then
        written with its 8-bit values). When the write fails while writing (disk full), the picture is kept in
        :func:`styletx.atomic.rescue_dir` and the InputError says where."""
        depth = self.bit_depth if bit_depth is None else check_bit_depth(bit_depth)
        source = self.pixels if depth == 16 and self.pixels is not None else self.image
        return save_image(source, path, overwrite=overwrite, metadata=self.metadata, alpha=self.alpha,
                          rescue=True, bit_depth=depth)

    def _repr_png_(self) -> Optional[bytes]:  # notebooks show the picture
        pil = self.image if isinstance(self.image, Image.Image) else to_pil(self.image)
        buf = _bytes_io.BytesIO()
        pil.save(buf, format="PNG")
        return buf.getvalue()


def prepare_extractor(options: StylizeOptions, device: torch.device) -> torch.nn.Module:
    """The feature extractor for the options' backbone, weights and layers (content, by default the resolved
    backbone's, and style: :meth:`StylizeOptions.layers_for`)."""
    return extractor_for(options.backbone, options.weights, options.layers_for, pooling=options.pooling,
                         seed=options.seed, device=device)


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
    model: Optional[ModelSource] = None,
    callback: Optional[Callable[[Iterate], None]] = None,
    output: str = "pil",
    keep_alpha: bool = False,
    **options: Any,
) -> StylizeResult:
    """Stylise ``content`` with one or more ``style`` images (or with a trained feed-forward ``model``).

    content, style: a path, PIL image, numpy array (H, W, 3) or tensor (1|3, ..., H, W) in [0, 1];
    style may be a list (blended with ``style_blend_weights``). Any :class:`~styletx.options.StylizeOptions`
    field is a keyword (size, iterations, optimizer, content_weight, style_weight, tv_weight, backbone,
    weights, seed, device, precision, ...); with ``model`` (a checkpoint path or a loaded model), the
    :class:`~styletx.options.ModelOptions` fields instead. ``callback`` gets an :class:`~styletx.results.Iterate`
    after every optimisation step. ``output="tensor"`` returns a (1, 3, H, W) float tensor instead of a PIL
    image. ``keep_alpha`` carries the content's alpha channel over to the result (``result.alpha``; ``save``
    writes it). ``bit_depth=16`` (an option of both engines) makes ``result.save`` write 16 bits per channel
    (.png or .tif) from the full-precision result.
    """
    if output not in ("pil", "tensor"):
        raise InputError(f"output: expected 'pil' or 'tensor', got {output!r}")
    if model is not None:
        if style is not None:
            raise InputError("style: give style images or a trained model, not both")
        return _stylize_with_model(content, model, output=output, keep_alpha=keep_alpha, **options)
    opts: StylizeOptions = build(StylizeOptions, **options)
    styles = _as_list(style)
    if not styles:
        raise InputError("style: give at least one style image (or a trained model)")
    if opts.style_blend_weights is not None and len(opts.style_blend_weights) != len(styles):
        raise InputError(
            f"style_blend_weights: expected {len(styles)} values (one per style image), "
            f"got {len(opts.style_blend_weights)}"
        )
    loaded_content = load_image(content, keep_alpha=keep_alpha, max_pixels=opts.max_pixels)
    style_tensors = [load_image(s, max_pixels=opts.max_pixels).tensor for s in styles]
    init_image = None
    if opts.init not in ("content", "noise"):
        init_image = load_image(opts.init, max_pixels=opts.max_pixels).tensor
    # too small, too thin: refused here, naming the picture, before the backbone is built
    plan_sizes(tuple(loaded_content.tensor.shape[-2:]), [tuple(s.shape[-2:]) for s in style_tensors], opts,
               names=[_name_of(content)] + [_name_of(s) for s in styles])

    device = pick_device(opts.device)
    if opts.preserve_color == "histogram":
        style_tensors = [color.match_histogram(s, loaded_content.tensor) for s in style_tensors]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor = prepare_extractor(opts, device)
    opts = opts.for_backbone(extractor.description["backbone"])
    record = RunRecord(backbone=names_only(dict(extractor.description)), options=names_only(as_plain_dict(opts)))
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
        metadata=run_metadata(record, content=_name_of(content), styles=[_name_of(s) for s in styles]),
        bit_depth=opts.bit_depth,
        pixels=_kept_pixels(image, opts.bit_depth, output),
    )


def _kept_pixels(image: Tensor, bit_depth: int, output: str) -> Optional[Tensor]:
    """The full-precision result kept for a 16-bit save when the result itself is an 8-bit PIL image."""
    return image.detach().to("cpu", torch.float32) if bit_depth == 16 and output == "pil" else None


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


# ------------------------------------------------------------------------------------- feed-forward models


def _prepared_model(model: ModelSource, opts: ModelOptions, *, repeated: bool) -> FeedForwardModel:
    """The model to run with ``opts``: a path is loaded on the options' device and precision; a loaded model is
    used as it is, unless the options name another device or precision. ``repeated``: many images follow, so
    the fastest backend is chosen now (``compile``) unless the model was compiled already; a named backend is
    always set up."""
    if not isinstance(model, FeedForwardModel):
        net = as_model(model, device=opts.device, precision=opts.precision)
    elif opts.device == "auto" and opts.precision in ("auto", model.precision):
        net = model
    else:
        device = model.device if opts.device == "auto" else opts.device
        net = FeedForwardModel(model.net, meta=model.meta, device=device, precision=opts.precision)
    if opts.backend != "auto" or (repeated and not net.compiled):
        net.compile(backend=opts.backend)
    return net


def model_record(model: FeedForwardModel, opts: ModelOptions, seconds: float) -> RunRecord:
    """The :class:`RunRecord` of a run with ``model``: device, arithmetic and backend with why, options."""
    info = model.describe()
    return RunRecord(
        device=info["device"], precision=info["precision"], precision_reason=info["precision_reason"],
        backend=info["backend_reason"], backbone={"engine": "feedforward", "arch": model.arch},
        options=as_plain_dict(opts), seconds=seconds,
    )


def model_metadata(model: FeedForwardModel, record: Optional[RunRecord] = None) -> Dict[str, str]:
    """Text metadata for an image made by ``model``: styletx version, architecture, style, checkpoint file,
    arithmetic and backend (with why)."""
    style = model.meta.get("style") or {}
    info = model.describe()
    meta = {
        "styletx": __version__,
        "styletx.engine": "feedforward",
        "styletx.model": json.dumps(
            {
                "arch": model.arch,
                "file": model.meta.get("file"),
                "style": style.get("name"),
                "style_sha256": style.get("sha256"),
                "source": model.meta.get("format"),
                "precision": info["precision"],
                "precision_reason": info["precision_reason"],
                "backend": info["backend_reason"],
            },
            sort_keys=True,
        ),
    }
    if record is not None:
        meta["styletx.record"] = json.dumps(record.to_dict(), sort_keys=True, default=str)
    return meta


def _stylize_with_model(content: Any, model: ModelSource, *, output: str, keep_alpha: bool,
                        **options: Any) -> StylizeResult:
    """``stylize(content, model=M, ...)``: one pass of a trained network; returns a StylizeResult."""
    opts: ModelOptions = build(ModelOptions, **options)
    t0 = time.perf_counter()
    net = _prepared_model(model, opts, repeated=False)
    loaded = load_image(content, keep_alpha=keep_alpha, max_pixels=opts.max_pixels)
    y = net.stylize(loaded.tensor, size=opts.size, content_scale=opts.content_scale,
                    preserve_color=opts.preserve_color, batch_size=opts.batch_size, tile=opts.tile,
                    max_memory=opts.max_memory)
    alpha = None
    if loaded.alpha is not None:
        alpha = resize_to(loaded.alpha, tuple(y.shape[-2:])).clamp(0, 1)
    record = model_record(net, opts, time.perf_counter() - t0)
    record.notes.append(net.last_plan)
    metadata = {**model_metadata(net, record), "styletx.content": _name_of(content)}
    return StylizeResult(image=y.cpu() if output == "tensor" else to_pil(y.cpu()), record=record, alpha=alpha,
                         metadata=metadata, bit_depth=opts.bit_depth, pixels=_kept_pixels(y, opts.bit_depth, output))


def stylize_files(
    model: ModelSource,
    inputs: Sequence[Union[str, Path]],
    output: Union[str, Path, None] = None,
    *,
    overwrite: bool = False,
    keep_alpha: bool = False,
    suffix: str = ".png",
    callback: Optional[Callable[[FileDone], None]] = None,
    **options: Any,
) -> List[Path]:
    """Stylise image files with a trained model and write the results; returns their paths.

    inputs: files and folders (searched recursively). output: None -> next to each input
    (``name_stylized.png``, never replacing a file); a file name for one input; a folder (created when missing,
    its parent must exist) for several -> ``folder/name_stylized.png``. Every output path is checked before any
    work (no clobbering unless ``overwrite``, never an input); writes are atomic with the model's description in
    the metadata, at ``bit_depth`` bits per channel (16: .png/.tif only, checked before any work). options:
    :class:`~styletx.options.ModelOptions` fields; images of the same size run in
    batches of ``batch_size``. Several images: the fastest backend is chosen first (``compile``). ``callback``
    gets a :class:`~styletx.results.FileDone` per image.

    A file that cannot be read is skipped and the others are done; then ImageError (one line naming the
    skipped files) is raised, with ``.written`` (the paths written) and ``.skipped`` (``[(file, why)]``).
    """
    opts: ModelOptions = build(ModelOptions, **options)
    files = list_images(inputs)
    if not files:
        raise InputError(f"{', '.join(str(p) for p in inputs)}: no images found")
    outs = output_paths(files, output, suffix)
    if len(set(outs)) != len(outs):
        raise InputError("output: several images would be written to the same file")
    if output is not None and (len(files) > 1 or not Path(output).suffix or Path(output).is_dir()):
        ensure_folder(output)
    model_file = model if isinstance(model, (str, Path)) else None
    for dst in outs:
        check_not_an_input(dst, [*files, model_file], "output")
        check_output_path(dst, overwrite=overwrite, probe=False, bit_depth=opts.bit_depth)
    for folder in dict.fromkeys(dst.parent for dst in outs):
        try:
            check_writable_folder(folder)
        except InputError as e:
            raise ImageError(str(e)) from None
    net = _prepared_model(model, opts, repeated=len(files) > 1)
    meta = model_metadata(net)
    written: List[Path] = []
    skipped: List[tuple] = []
    for start in range(0, len(files), opts.batch_size):
        t0 = time.perf_counter()
        chunk = []
        loaded = []
        for src, dst in zip(files[start : start + opts.batch_size], outs[start : start + opts.batch_size]):
            try:
                loaded.append(load_image(src, keep_alpha=keep_alpha, max_pixels=opts.max_pixels))
                chunk.append((src, dst))
            except ImageError as e:  # a bad file in a folder: skip it, do the others, report it at the end
                skipped.append((src, str(e)))
        if not chunk:
            continue
        results = _stylize_batched(net, [item.tensor for item in loaded], opts)
        seconds = (time.perf_counter() - t0) / len(chunk)
        for (src, dst), item, y in zip(chunk, loaded, results):
            alpha = None if item.alpha is None else resize_to(item.alpha, tuple(y.shape[-2:])).clamp(0, 1)
            written.append(save_image(y, dst, overwrite=overwrite,
                                      metadata={**meta, "styletx.content": src.name, "styletx.plan": net.last_plan},
                                      alpha=alpha, rescue=True, bit_depth=opts.bit_depth))
            if callback is not None:
                callback(FileDone(src, dst, len(written), len(files), seconds, net.last_plan))
    if skipped:
        first = skipped[0][1]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        error = ImageError(f"skipped {len(skipped)} of {len(files)} images that could not be read: {first}{more}; "
                           f"{len(written)} written")
        error.written, error.skipped = written, skipped  # type: ignore[attr-defined]
        raise error
    return written


def _stylize_batched(net: FeedForwardModel, images: List[Tensor], opts: ModelOptions) -> List[Tensor]:
    """Each (1, 3, H, W) image through ``net``; images of the same size run together in one batch."""
    by_size: Dict[tuple, List[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
    results: List[Optional[Tensor]] = [None] * len(images)
    for indices in by_size.values():
        batch = torch.cat([images[i] for i in indices])
        y = net.stylize(batch, size=opts.size, content_scale=opts.content_scale,
                        preserve_color=opts.preserve_color, batch_size=opts.batch_size, tile=opts.tile,
                        max_memory=opts.max_memory)
        for j, i in enumerate(indices):
            results[i] = y[j : j + 1]
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------------------------------- training


def _style_identity(style: Any, tensor: Tensor) -> Dict[str, str]:
    if isinstance(style, (str, Path)):
        p = Path(style)
        return {"name": p.name, "sha256": file_sha256(p)}
    data = (tensor.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()
    return {"name": getattr(style, "filename", None) or type(style).__name__, "sha256": hashlib.sha256(data).hexdigest()}


def train(
    style: Any,
    data: Union[str, Path, Sequence[Union[str, Path]]],
    output: Union[str, Path, None] = None,
    *,
    options: Optional[TrainOptions] = None,
    callback: Optional[Callable[[TrainProgress], None]] = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> TrainResult:
    """Train a feed-forward network for ``style`` on the images under ``data`` and save it to ``output`` (.pth).

    style: a path, PIL image, array or tensor (anything :func:`~styletx.load_image` takes). data: a folder
    (searched recursively), a file, or a list of them. options: a :class:`TrainOptions`, or its fields as
    keywords. The checkpoint is written every ``checkpoint_every`` steps and at the end (atomically);
    ``resume`` continues a run (weights, Adam state, step). Previews (``preview_every``) are written next to the
    checkpoint as ``NAME.preview-STEP.png``. Ctrl-C saves the checkpoint and returns with ``interrupted=True``.
    """
    if options is None:
        opts: TrainOptions = build(TrainOptions, **kwargs)
    else:
        opts = options.with_(**kwargs) if kwargs else options.validated()
    out = Path(output) if output is not None else None
    resume = Path(opts.resume) if opts.resume else None
    if resume is not None and (problem := file_problem(resume)) is not None:
        raise CheckpointError(f"{resume}: {problem}")
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    files = list_images(sources)
    if not files:
        raise InputError(f"data: no images found in {', '.join(str(s) for s in sources)}")
    style_file = Path(style) if isinstance(style, (str, Path)) else None
    preview_file = Path(opts.preview_image) if opts.preview_image else None
    inputs = [*files, style_file, preview_file]
    if out is not None:
        if out.is_dir():
            raise InputError(f"{out}: is a folder; give a checkpoint file name such as {str(out / 'model.pth')!r}")
        if out.suffix.lower() not in (".pth", ".pt", ".ckpt"):
            raise InputError(f"{out}: the checkpoint name should end in .pth")
        check_writable_folder(out.parent, out)
        same_as_resume = resume is not None and out.exists() and out.resolve() == resume.resolve()
        if out.exists() and not overwrite and not same_as_resume:
            raise InputError(f"{out}: exists; use --overwrite (overwrite=True) to replace it, or --resume it")
        # the checkpoint may replace the one it resumes (read whole at the start, replaced atomically): the
        # run's own file; any other input never
        check_not_an_input(out, inputs, "checkpoint")
        if opts.preview_every:
            for old in sorted(out.parent.glob(f"{glob_escape(out.stem)}.preview-*.png")):
                check_not_an_input(old, inputs, "preview")
                if not overwrite:
                    raise InputError(f"{old}: exists (a preview of an earlier run); use --overwrite (overwrite=True) "
                                     "to replace previews, or another checkpoint name")
    style_img = load_image(style, max_pixels=opts.max_pixels).tensor
    _check_style_side(style_img, opts, _name_of(style))
    preview = None
    if opts.preview_every and out is not None:
        candidates = [preview_file] if preview_file else files
        for src in candidates:
            try:
                preview = resize_longest(load_image(src, max_pixels=opts.max_pixels).tensor, opts.size).clamp(0, 1)
                break
            except ImageError:
                if opts.preview_image:
                    raise
    previews: List[Path] = []

    def progress(p: TrainProgress) -> None:
        if p.preview_image is not None and out is not None:
            target = out.with_name(f"{out.stem}.preview-{p.step:06d}.png")
            check_not_an_input(target, inputs, "preview")
            written = save_image(p.preview_image, target, overwrite=overwrite)
            previews.append(written)
            p = replace(p, preview=written)
        if callback is not None:
            callback(p)

    meta = {"style": _style_identity(style, style_img),
            "data": {"images": len(files), "sources": [Path(s).name for s in sources]}}
    result = train_network(style_img, ImageCrops(files, opts.size, seed=opts.seed + _resume_step(resume),
                                                 max_pixels=opts.max_pixels), opts,
                           output=out, overwrite=overwrite, meta=meta, files=len(files), preview=preview,
                           callback=progress)
    result.previews = previews
    return result


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _check_style_side(style: Tensor, opts: TrainOptions, name: str) -> None:
    """Refuse a style so thin that, at its training size, its shorter side is below what the layers need."""
    h, w = int(style.shape[-2]), int(style.shape[-1])
    longest = opts.style_size or opts.size
    short = max(1, round(min(h, w) * longest / max(h, w)))
    if short < opts.min_size:
        raise InputError(f"{name}: {w}x{h} px is too thin for a style: at {longest} px its shorter side is {short} px, "
                         f"the layers need {opts.min_size} px; crop it or raise --style-size")


def _resume_step(resume: Optional[Path]) -> int:
    """The step a checkpoint to resume stopped at (it seeds the crops, so a resumed run sees new ones)."""
    if resume is None:
        return 0
    return int((read_checkpoint(resume).get("training_state") or {}).get("step", 0))
