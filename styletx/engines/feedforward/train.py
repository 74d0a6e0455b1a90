"""Training a feed-forward network for one style (Johnson et al. 2016) from batches of content crops.

The losses and the feature extractor are the optimisation engine's (``losses.total_loss``,
``features.extractor_for``), so weights and layers mean the same in both engines. The engine is handed its
data (anything with ``batch(n)``, such as :class:`styletx.io.crops.ImageCrops`), the style as a tensor, and
where to write checkpoints; it reads no image file itself. Progress goes to ``callback``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol

import torch
from torch import Tensor

from ... import device as devices, memory
from ...errors import CheckpointError, InputError
from ...features import extractor_for
from ...losses import gram_matrix, normalised_layer_weights, target_scaled_weights, total_loss
from ...options import TrainOptions, as_plain_dict, feature_layers, names_only
from ...tensors import resize_longest
from . import checkpoint as ckpt
from .model import FeedForwardModel
from .net import TransformerNet, build_network

__all__ = ["train_network", "TrainProgress", "TrainResult", "Batches"]


class Batches(Protocol):
    """Training data: ``batch(n)`` -> (n, 3, S, S) crops in [0, 1]; ``epoch`` passes so far; files skipped."""

    epoch: int

    def batch(self, n: int) -> Tensor: ...

    @property
    def skipped(self) -> int: ...

    @property
    def skipped_files(self) -> List[str]: ...


@dataclass
class TrainProgress:
    """What the callback gets after every step. ``losses``: weighted content/style/tv/total (floats);
    ``preview_image``: on preview steps, the validation picture through the network (1, 3, H, W) in [0, 1];
    ``preview``: the file :func:`styletx.train` wrote it to."""

    step: int
    total: int
    epoch: int
    losses: Dict[str, float]
    elapsed: float
    images_per_second: float
    skipped: int
    checkpoint: Optional[Path] = None
    preview_image: Optional[Tensor] = None
    preview: Optional[Path] = None


@dataclass
class TrainResult:
    """The trained :class:`FeedForwardModel`, where it was saved, and the run's record."""

    transformer: FeedForwardModel
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
    precision_reason: str = ""
    backbone: Dict[str, Any] = field(default_factory=dict)
    previews: List[Path] = field(default_factory=list)


def _resume_state(resume: Path) -> tuple:
    """(network, training state, loss history) of a styletx checkpoint to continue."""
    data = ckpt.read_checkpoint(resume)
    if "arch" not in data:
        raise CheckpointError(f"{resume}: can only resume a styletx checkpoint")
    net = TransformerNet(ckpt.config_from(data["arch"], resume))
    ckpt.load_state(net, data["state_dict"], str(resume))
    history = list((data.get("meta") or {}).get("loss_history") or [])
    return net, data.get("training_state") or {}, history


def train_network(
    style: Tensor,
    batches: Batches,
    opts: TrainOptions,
    *,
    output: Optional[Path] = None,
    overwrite: bool = False,
    meta: Optional[Mapping[str, Any]] = None,
    files: int = 0,
    preview: Optional[Tensor] = None,
    callback: Optional[Callable[[TrainProgress], None]] = None,
) -> TrainResult:
    """Train a network for ``style`` ((1, 3, H, W) in [0, 1]) on ``batches`` with ``opts``.

    output: the checkpoint written every ``checkpoint_every`` steps and at the end (atomically; replacing an
    existing file needs ``overwrite`` or ``opts.resume`` naming it). meta: stored in the checkpoint (style
    identity, data). files: how many training files there are (for the epoch count). preview: a (1, 3, H, W)
    picture run through the network every ``preview_every`` steps and handed to ``callback``. Ctrl-C saves
    the checkpoint and returns with ``interrupted=True``. The global RNG is left as it was.
    """
    resume = Path(opts.resume) if opts.resume else None
    device = devices.pick_device(opts.device)
    layers = feature_layers(opts.content_layers, opts.style_layers)
    extractor = extractor_for(opts.backbone, opts.weights, layers, pooling=opts.pooling, seed=opts.seed,
                              device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        if resume is not None:
            net, tstate, history = _resume_state(resume)
        else:
            net, tstate, history = build_network(opts.arch, seed=opts.seed), {}, []
    start_step = int(tstate.get("step", 0))
    net = net.to(device).train()
    _check_memory(net, extractor, opts, device)
    choice = _training_precision(net, extractor, opts.precision, device, opts.size)
    bf16 = choice.bf16

    style_t = resize_longest(style, opts.style_size or opts.size).clamp(0, 1).to(device)
    with torch.no_grad():
        sf = extractor(style_t)
        style_grams = {k: gram_matrix(sf[k]).float() for k in opts.style_layers}
    # The same relative losses as the optimisation engine, so weights mean the same in both.
    style_norm = target_scaled_weights(style_grams, normalised_layer_weights(opts.style_layers, None))
    content_layer_weights = normalised_layer_weights(opts.content_layers, None)

    optim = torch.optim.Adam(net.parameters(), lr=opts.learning_rate)
    if tstate.get("optimizer"):
        try:
            optim.load_state_dict(tstate["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{resume}: optimiser state does not match ({e})") from None

    steps_per_epoch = max(1, math.ceil(max(files, 1) / opts.batch_size))
    total = opts.steps if opts.steps > 0 else opts.epochs * steps_per_epoch
    if opts.steps > 0 and opts.epochs > 0:
        total = min(total, opts.epochs * steps_per_epoch)

    meta_base = {**dict(meta or {}), "train": names_only(as_plain_dict(opts)),
                 "backbone": names_only(dict(extractor.description))}
    model = FeedForwardModel(net, meta=meta_base, device=device, precision="fp32")
    replace_ok = overwrite or (resume is not None and output is not None and output.exists()
                               and output.resolve() == resume.resolve())

    def save(step: int, losses: Dict[str, float]) -> Optional[Path]:
        nonlocal replace_ok
        if output is None:
            return None
        path = model.save(output, overwrite=replace_ok, training_state={"step": step, "optimizer": optim.state_dict()},
                          step=step, losses=losses, loss_history=history[-1000:], skipped=batches.skipped)
        replace_ok = True  # our own checkpoint from now on
        return path

    def run_preview() -> Optional[Tensor]:
        if preview is None:
            return None
        net.eval()
        with torch.no_grad():
            y = net(preview.to(device)).float().clamp(0, 1).cpu()
        net.train()
        return y

    t0 = time.perf_counter()
    step = start_step
    losses: Dict[str, float] = history[-1] if history else {}
    interrupted = False
    try:
        while step < total:
            x = batches.batch(opts.batch_size).to(device)
            with devices.autocast(bf16, device):
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
            saved = save(step, losses) if (opts.checkpoint_every and step % opts.checkpoint_every == 0) else None
            shown = run_preview() if (opts.preview_every and step % opts.preview_every == 0) else None
            if callback is not None:
                elapsed = time.perf_counter() - t0
                callback(TrainProgress(
                    step=step, total=total, epoch=batches.epoch, losses=losses, elapsed=elapsed,
                    images_per_second=(step - start_step) * opts.batch_size / max(elapsed, 1e-9),
                    skipped=batches.skipped, checkpoint=saved, preview_image=shown,
                ))
    except KeyboardInterrupt:
        interrupted = True
    net.eval()
    path = save(step, losses)
    result_model = FeedForwardModel(net, meta=dict(model.meta), device=device, precision=opts.precision)
    return TrainResult(
        transformer=result_model, path=path, steps=step, losses=history, seconds=time.perf_counter() - t0,
        images=files, skipped=batches.skipped, skipped_files=batches.skipped_files, interrupted=interrupted,
        device=str(device), precision=choice.name, precision_reason=choice.describe(),
        backbone=meta_base["backbone"],
    )


def _check_memory(net: TransformerNet, extractor: torch.nn.Module, opts: TrainOptions, device: torch.device) -> None:
    """Refuse before any work a training run whose steps cannot fit in the device's available memory: what the
    network and the backbone keep for the backward pass (measured per pixel) times the batch, times 3 for the
    gradients and workspace."""
    both = torch.nn.ModuleList([net, extractor])
    bpp = memory.saved_bytes_per_pixel(lambda x: extractor(net(x)), device, both)
    style_side = opts.style_size or opts.size

    def needed(size: int, batch: int) -> float:
        return batch * size * size * (3 * bpp + 64) + style_side ** 2 * bpp

    def advice(budget: float) -> str:
        batch = memory.largest_fitting(lambda n: needed(opts.size, max(n, 1)), budget, opts.batch_size)
        if batch >= 1:
            return f"the largest --batch-size that fits is {batch}"
        size = memory.largest_fitting(lambda n: needed(max(n, 1), 1), budget, opts.size)
        return f"the largest --size that fits (with --batch-size 1) is about {size}"

    memory.check_fits(needed(opts.size, opts.batch_size), device,
                      f"training at {opts.size} px with batches of {opts.batch_size}", advice)


def _training_precision(net: TransformerNet, extractor: torch.nn.Module, precision: str, device: torch.device,
                        size: int) -> devices.PrecisionChoice:
    """The precision policy for a training step: the probe is the network and the extractor forward and
    backward on a small batch; its output, the gradient of the first conv's weights, must stay close."""
    side = min(size, 64)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    first = next(net.parameters())

    def probe(bf16: bool) -> Tensor:
        with devices.autocast(bf16, device):
            feats = extractor(net(x))
        loss = sum(f.float().square().mean() for f in feats.values())
        (grad,) = torch.autograd.grad(loss, first)
        return grad

    return devices.choose_precision(precision, device, workload=f"train {net.config.name}", probe=probe)
