"""Training a feed-forward transformer for one style (Johnson et al. 2016) on a folder of images.

The losses and the feature extractor are the optimisation engine's (``losses.total_loss``,
``features.extractor_for``), so weights and layers mean the same in both engines.
Nothing here prints: progress goes to ``callback`` (the CLI draws tqdm from it).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import device as devices
from .errors import CheckpointError, ImageError, InputError
from .losses import gram_matrix, normalised_layer_weights, target_scaled_weights, total_loss
from .options import TrainOptions, as_plain_dict, build
from .transformer import (
    Transformer,
    TransformerNet,
    build_network,
    file_sha256,
    list_images,
    load_checkpoint,
    _load_state,
    ArchConfig,
    _pick_device,
)

__all__ = ["train", "TrainProgress", "TrainResult", "TrainOptions", "ImageCrops"]


@dataclass
class TrainProgress:
    """What the callback gets after every step. ``losses``: weighted content/style/tv/total (floats)."""

    step: int
    total: int
    epoch: int
    losses: Dict[str, float]
    elapsed: float
    images_per_second: float
    skipped: int
    checkpoint: Optional[Path] = None
    preview: Optional[Path] = None


@dataclass
class TrainResult:
    """The trained :class:`~styletx.transformer.Transformer`, where it was saved, and the run's record."""

    transformer: Transformer
    path: Optional[Path]
    steps: int
    losses: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0
    skipped: int = 0
    skipped_files: List[str] = field(default_factory=list)
    interrupted: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    backbone: Dict[str, Any] = field(default_factory=dict)
    previews: List[Path] = field(default_factory=list)


class ImageCrops:
    """Random square crops from image files: each image is resized so its shorter side is ``size`` (times a
    random factor in [1, 1.25] for variety), then cropped at a random place. Unreadable files are skipped and
    counted (``skipped``, ``skipped_files``); if every file fails, ImageError."""

    def __init__(self, files: Sequence[Path], size: int, *, seed: int = 0) -> None:
        self.files = list(files)
        self.size = int(size)
        self.rng = random.Random(seed)
        self.bad: Dict[Path, str] = {}
        self.epoch = 0
        self._order: List[Path] = []
        self.served = 0

    @property
    def skipped(self) -> int:
        return len(self.bad)

    @property
    def skipped_files(self) -> List[str]:
        return [f"{p}: {why}" for p, why in self.bad.items()]

    def _next_file(self) -> Path:
        if not self._order:
            good = [p for p in self.files if p not in self.bad]
            if not good:
                raise ImageError(f"no readable training images ({len(self.bad)} unreadable)")
            self.rng.shuffle(good)
            self._order = good
            if self.served:
                self.epoch += 1
        return self._order.pop()

    def crop(self) -> Tensor:
        """One (3, size, size) crop in [0, 1]."""
        from .image import load_image

        while True:
            path = self._next_file()
            try:
                img = load_image(path).tensor
            except (ImageError, OSError) as e:
                self.bad[path] = str(e).split(": ", 1)[-1][:120]
                continue
            self.served += 1
            return self._random_crop(img)[0]

    def _random_crop(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        scale = self.size * (1.0 + 0.25 * self.rng.random()) / min(h, w)
        th, tw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        img = F.interpolate(img, size=(th, tw), mode="bilinear", align_corners=False, antialias=scale < 1)
        y = self.rng.randint(0, th - self.size)
        x = self.rng.randint(0, tw - self.size)
        return img[..., y : y + self.size, x : x + self.size].clamp(0, 1)

    def batch(self, n: int) -> Tensor:
        return torch.stack([self.crop() for _ in range(n)])


def _style_identity(style: Any, tensor: Tensor) -> Dict[str, str]:
    import hashlib

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
    """Train a transformer for ``style`` on the images under ``data`` and save it to ``output`` (``.pth``).

    style: a path, PIL image, array or tensor (anything ``image.load_image`` takes). data: a folder (searched
    recursively), a file, or a list of them. options: a :class:`TrainOptions`, or its fields as keywords.
    The checkpoint is written every ``checkpoint_every`` steps and at the end (atomically); ``resume`` continues
    a run (weights, Adam state, step). Ctrl-C saves the checkpoint and returns with ``interrupted=True``.
    """
    from .features import extractor_for
    from .image import load_image, resize_longest, save_image

    if options is None:
        opts: TrainOptions = build(TrainOptions, **kwargs)
    else:
        opts = options.with_(**kwargs) if kwargs else options.validated()
    out = Path(output) if output is not None else None
    resume = Path(opts.resume) if opts.resume else None
    if out is not None:
        if out.suffix.lower() not in (".pth", ".pt", ".ckpt"):
            raise InputError(f"{out}: the checkpoint name should end in .pth")
        if not out.parent.is_dir():
            raise InputError(f"{out}: output folder {str(out.parent)!r} does not exist")
        same_as_resume = resume is not None and out.exists() and out.resolve() == resume.resolve()
        if out.exists() and not overwrite and not same_as_resume:
            raise InputError(f"{out}: exists; use --overwrite (overwrite=True) to replace it, or --resume it")
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    files = list_images(sources)
    if not files:
        raise InputError(f"data: no images found in {', '.join(str(s) for s in sources)}")

    device = _pick_device(opts.device)
    bf16 = devices.use_bf16(opts.precision, device)
    torch.manual_seed(opts.seed)

    # style targets
    style_img = load_image(style).tensor
    style_t = resize_longest(style_img, opts.style_size or opts.size).clamp(0, 1).to(device)
    style_id = _style_identity(style, style_img)
    layers = tuple(dict.fromkeys(tuple(opts.content_layers) + tuple(opts.style_layers)))
    extractor = extractor_for(opts.backbone, opts.weights, layers, pooling=opts.pooling, seed=opts.seed,
                              device=device)
    extractor.eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        sf = extractor(style_t)
        style_grams = {k: gram_matrix(sf[k]).float() for k in opts.style_layers}
    # The same relative losses as the optimisation engine, so weights mean the same in both.
    style_norm = target_scaled_weights(style_grams, normalised_layer_weights(opts.style_layers, None))
    content_layer_weights = normalised_layer_weights(opts.content_layers, None)

    # network, optimiser, resume
    start_step = 0
    history: List[Dict[str, float]] = []
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if "arch" not in ckpt:
            raise CheckpointError(f"{resume}: can only resume a styletx checkpoint")
        config = ArchConfig.from_dict(ckpt["arch"])
        net = TransformerNet(config)
        _load_state(net, ckpt["state_dict"], str(resume))
        tstate = ckpt.get("training_state") or {}
        start_step = int(tstate.get("step", 0))
        history = list((ckpt.get("meta") or {}).get("loss_history") or [])
    else:
        net = build_network(opts.arch, seed=opts.seed)
        tstate = {}
    net = net.to(device).train()
    optim = torch.optim.Adam(net.parameters(), lr=opts.learning_rate)
    if tstate.get("optimizer"):
        try:
            optim.load_state_dict(tstate["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{resume}: optimiser state does not match ({e})") from None

    crops = ImageCrops(files, opts.size, seed=opts.seed + start_step)
    steps_per_epoch = max(1, math.ceil(len(files) / opts.batch_size))
    total = opts.steps if opts.steps > 0 else opts.epochs * steps_per_epoch
    if opts.steps > 0 and opts.epochs > 0:
        total = min(total, opts.epochs * steps_per_epoch)

    preview_src: Optional[Tensor] = None
    previews: List[Path] = []
    if opts.preview_every and out is not None:
        candidates = [Path(opts.preview_image)] if opts.preview_image else files
        for src in candidates:
            try:
                preview_src = resize_longest(load_image(src).tensor, opts.size).clamp(0, 1)
                break
            except ImageError:
                if opts.preview_image:
                    raise

    meta_base = {
        "style": style_id,
        "train": as_plain_dict(opts),
        "backbone": dict(extractor.description),
        "data": {"images": len(files), "sources": [str(s) for s in sources]},
    }
    tf = Transformer(net, meta=meta_base, device=device, precision="fp32")

    def save(step: int, losses: Dict[str, float]) -> Optional[Path]:
        if out is None:
            return None
        tstate_now = {"step": step, "optimizer": optim.state_dict()}
        return tf.save(out, overwrite=True, training_state=tstate_now, step=step, losses=losses,
                       loss_history=history[-1000:], skipped=crops.skipped)

    def preview(step: int) -> Optional[Path]:
        if preview_src is None or out is None:
            return None
        net.eval()
        with torch.no_grad():
            y = net(preview_src.to(device)).float().clamp(0, 1).cpu()
        net.train()
        p = save_image(y, out.with_name(f"{out.stem}.preview-{step:06d}.png"), overwrite=True)
        previews.append(p)
        return p

    t0 = time.perf_counter()
    step = start_step
    losses: Dict[str, float] = history[-1] if history else {}
    interrupted = False
    autocast = devices.autocast(bf16, device)
    try:
        while step < total:
            x = crops.batch(opts.batch_size).to(device)
            with autocast:
                y = net(x)
                with torch.no_grad():
                    cf = extractor(x)
                    targets = {k: cf[k].float() for k in opts.content_layers}
                fy = extractor(y)
                terms = total_loss(
                    y, fy, content_targets=targets, style_grams=style_grams, style_layer_weights=style_norm,
                    content_weight=opts.content_weight, style_weight=opts.style_weight, tv_weight=opts.tv_weight,
                    content_layer_weights=target_scaled_weights(targets, content_layer_weights),
                )
            if not torch.isfinite(terms.total):
                raise InputError(
                    f"training diverged at step {step + 1} (loss is not finite); lower --learning-rate or the weights"
                )
            optim.zero_grad(set_to_none=True)
            terms.total.backward()
            optim.step()
            step += 1
            losses = terms.as_floats()
            history.append(losses)
            ck = save(step, losses) if (opts.checkpoint_every and step % opts.checkpoint_every == 0) else None
            pv = preview(step) if (opts.preview_every and step % opts.preview_every == 0) else None
            if callback is not None:
                elapsed = time.perf_counter() - t0
                callback(TrainProgress(
                    step=step, total=total, epoch=crops.epoch, losses=losses, elapsed=elapsed,
                    images_per_second=(step - start_step) * opts.batch_size / max(elapsed, 1e-9),
                    skipped=crops.skipped, checkpoint=ck, preview=pv,
                ))
    except KeyboardInterrupt:
        interrupted = True
    net.eval()
    path = save(step, losses)
    result_tf = Transformer(net, meta=dict(tf.meta), device=device, precision=opts.precision)
    return TrainResult(
        transformer=result_tf, path=path, steps=step, losses=history, seconds=time.perf_counter() - t0,
        images=len(files), skipped=crops.skipped, skipped_files=crops.skipped_files, interrupted=interrupted,
        device=str(device), precision="bf16" if bf16 else "fp32", backbone=meta_base["backbone"], previews=previews,
    )
