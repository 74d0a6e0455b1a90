"""A feed-forward style network ready for inference: device, arithmetic, backend, batching, checkpoints.

:class:`FeedForwardModel` is the one inference path of the API, the CLI and (later) video: ``stylize(x)`` pads
to the network's multiple, runs the backend :func:`~.backends.choose_backend` picked (eager torch in the
arithmetic the precision policy measured fastest, unless ``compile()`` chose another), crops and clamps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from PIL import Image
from torch import Tensor

from ... import color, device as devices, memory
from ...errors import InputError
from ...options import parse_memory
from ...tensors import from_pil, pad_to_multiple, padded_size, rescale, to_pil
from . import checkpoint as ckpt
from .backends import BackendChoice, choose_backend
from .net import ArchConfig, TransformerNet, build_network
from .tiled import receptive_halo, stylize_tiled

__all__ = ["FeedForwardModel", "Transformer", "new_transformer", "load_transformer", "as_model", "PRESERVE_COLOR"]

PRESERVE_COLOR = ("none", "luminance", "histogram")
ImageLike = Union[Tensor, Image.Image]


class FeedForwardModel:
    """A trained (or fresh) feed-forward network for inference.

    ``stylize(x)`` takes a (N, 3, H, W) or (3, H, W) float tensor in [0, 1], a PIL image, or a list of these,
    and returns the same kind, clamped to [0, 1]. ``net`` is the trainable :class:`TransformerNet`; ``meta`` the
    checkpoint's description (style, training options, losses, version). ``precision``: auto (the precision
    policy measures, at first use) | fp32 | bf16.
    """

    def __init__(
        self,
        net: TransformerNet,
        *,
        meta: Optional[Mapping[str, Any]] = None,
        device: Union[str, torch.device, None] = None,
        precision: str = "auto",
    ) -> None:
        if precision not in devices.PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(devices.PRECISIONS)}, got {precision!r}")
        self.device = devices.pick_device(device)
        self.net = net.to(self.device).eval()
        self.meta: Dict[str, Any] = dict(meta or {})
        self.precision = precision
        self._choice: Optional[BackendChoice] = None
        self._compiled = False  # whether compile() chose the backend in force
        self._bytes_per_pixel: Optional[float] = None
        #: the last stylize() call's plan in one line ("whole image ..." / "tiled ..."), for records and the CLI
        self.last_plan: str = ""

    # --- description
    @property
    def config(self) -> ArchConfig:
        return self.net.config

    @property
    def arch(self) -> str:
        return self.net.config.name

    @property
    def backend_choice(self) -> BackendChoice:
        """What runs the network, in which arithmetic, and why: eager torch in the precision the policy picks
        (measured at first use) until :meth:`compile` chooses otherwise."""
        if self._choice is None:
            choice = choose_backend(self.net, self.device, backend="torch", precision=self.precision)
            self._choice = replace(choice, reason="eager torch until compile() measures the others")
        return self._choice

    @property
    def backend(self) -> str:
        """What runs the network: torch (eager), torch.compile, onnxruntime or winograd."""
        return self.backend_choice.name

    @property
    def bf16(self) -> bool:
        """Whether inference runs in bf16 (decided by the precision policy at first use)."""
        return self.backend_choice.precision.bf16

    def describe(self) -> Dict[str, Any]:
        """Architecture, device, arithmetic and backend (with why), and the checkpoint's metadata, as plain values."""
        choice = self.backend_choice
        return {
            "arch": self.config.as_dict(),
            "device": str(self.device),
            "precision": choice.precision.name,
            "precision_reason": choice.precision.describe(),
            "backend": choice.name,
            "backend_reason": choice.describe(),
            **{k: v for k, v in self.meta.items() if k not in ("arch",)},
        }

    def __repr__(self) -> str:
        style = (self.meta.get("style") or {}).get("name", "?")
        return f"FeedForwardModel(arch={self.arch!r}, style={style!r}, device={str(self.device)!r})"

    # --- set-up
    def to(self, device: Union[str, torch.device]) -> "FeedForwardModel":
        """Move to ``device`` (the backend is chosen again there); returns self."""
        self.device = devices.pick_device(device)
        self.net = self.net.to(self.device)
        self._choice = None
        self._compiled = False
        return self

    def compile(self, *, backend: str = "auto", cache_dir: Union[str, Path, None] = None) -> "FeedForwardModel":
        """Prepare for repeated use (folders, video, batches); returns self.

        backend ``auto``: the fastest measured of eager torch (in the arithmetic the precision policy picks) and
        ONNX Runtime (fp32, CPU, where installed; its graph is exported once into ``cache_dir``, default the
        user cache folder), the verdict cached per machine. ``torch``, ``torch.compile``, ``onnxruntime`` and
        ``winograd`` force one (:mod:`.backends` says where each runs; Winograd is the standard network's
        fastest fp32 CPU path but builds for 40-70 s per input size). Call again after changing ``net``'s weights.
        """
        self._choice = choose_backend(self.net, self.device, backend=backend, precision=self.precision,
                                      cache_dir=cache_dir)
        self._compiled = True
        return self

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile` chose the backend in force (False: eager torch, the default)."""
        return self._compiled

    # --- inference
    def _forward(self, batch: Tensor) -> Tensor:
        """(n, 3, H, W) float32 on self.device in [0, 1] -> (n, 3, H, W) float32 in [0, 1]."""
        choice = self.backend_choice
        h, w = batch.shape[-2:]
        with torch.inference_mode():
            padded, (ph, pw) = pad_to_multiple(batch, self.net.multiple, self.net.min_size)
            y = choice.run(padded)
            if ph or pw:
                y = y[..., :h, :w]
            return y.float().clamp_(0.0, 1.0).contiguous()

    def stylize(
        self,
        x: Union[ImageLike, Sequence[ImageLike]],
        *,
        batch_size: int = 4,
        size: Optional[int] = None,
        content_scale: Optional[float] = None,
        preserve_color: str = "none",
        tile: Optional[int] = None,
        max_memory: Union[str, int, None] = None,
    ) -> Any:
        """Stylise ``x`` in one pass and return the same kind.

        x: (N, 3, H, W) or (3, H, W) float tensor in [0, 1] (any device; the result comes back there, float32),
        a PIL image, or a list of either (images of different sizes are run one by one).
        batch_size: images per forward pass. size: resize so the longest side is this many pixels first;
        content_scale: or resize by this factor (0.5 halves the sides). The output has the resized size.
        preserve_color: ``none``, ``luminance`` (stylised luminance, content's chroma) or ``histogram`` (the
        output's colours matched to the content's).
        tile: force tiles with cores of this many px (>= 16); max_memory: budget in bytes or text ("2G"),
        default 80% of what the device has free. A pass that does not fit is run in tiles with whole-image
        instance-norm statistics (exact, see :mod:`.tiled`); one that cannot fit even in tiles is refused
        (InputError) before any work. :attr:`last_plan` says which was chosen, in one line.
        """
        if preserve_color not in PRESERVE_COLOR:
            raise InputError(f"preserve_color: expected one of {', '.join(PRESERVE_COLOR)}, got {preserve_color!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise InputError(f"size: expected an integer >= 1, got {size!r}")
        if content_scale is not None and not (isinstance(content_scale, (int, float)) and 0 < content_scale <= 16):
            raise InputError(f"content_scale: expected a number in (0, 16], got {content_scale!r}")
        if isinstance(x, (list, tuple)):
            return [self.stylize(item, batch_size=batch_size, size=size, content_scale=content_scale,
                                 preserve_color=preserve_color, tile=tile, max_memory=max_memory) for item in x]
        is_tensor = isinstance(x, Tensor)
        if is_tensor:
            if x.dim() not in (3, 4) or x.shape[-3] != 3 or not x.is_floating_point():
                raise InputError(
                    f"stylize: expected a (N, 3, H, W) or (3, H, W) float tensor in [0, 1], got "
                    f"{tuple(x.shape)} {x.dtype}"
                )
            batch = x if x.dim() == 4 else x.unsqueeze(0)
            origin = x.device
            if not bool(torch.isfinite(batch).all()):
                raise InputError("stylize: the tensor has NaN or infinite values; expected finite floats in [0, 1]")
        elif isinstance(x, Image.Image):
            batch, origin = from_pil(x), torch.device("cpu")
        else:
            raise InputError(f"stylize: expected a tensor or a PIL image, got {type(x).__name__}")
        if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 16):
            raise InputError(f"tile: expected an integer >= 16, got {tile!r}")
        budget = parse_memory(max_memory) if isinstance(max_memory, str) else max_memory
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
            raise InputError(f"max_memory: expected a size such as 2G or 512M, got {max_memory!r}")
        core = self._check_memory(batch, size, content_scale, batch_size, tile, budget)
        batch = rescale(batch.to(self.device, torch.float32), size, content_scale)
        if core is None:
            outs = [self._forward(batch[i : i + batch_size]) for i in range(0, batch.shape[0], batch_size)]
        else:
            outs = [self._forward_tiled(batch[i : i + 1], core) for i in range(batch.shape[0])]
        y = torch.cat(outs) if len(outs) > 1 else outs[0]
        if preserve_color == "luminance":
            y = color.transfer_luminance(y, batch).clamp(0.0, 1.0)
        elif preserve_color == "histogram":
            y = color.match_histogram(y, batch).clamp(0.0, 1.0)
        if not is_tensor:
            return to_pil(y.cpu())
        y = y.to(origin)
        return y if x.dim() == 4 else y[0]

    __call__ = stylize

    def _forward_tiled(self, batch: Tensor, core: int) -> Tensor:
        """(1, 3, H, W) -> (1, 3, H, W) in [0, 1], tile by tile in fp32 eager torch (see :mod:`.tiled`)."""
        return stylize_tiled(self.net, batch, core).clamp_(0.0, 1.0).contiguous()

    def _check_memory(self, batch: Tensor, size: Optional[int], content_scale: Optional[float],
                      batch_size: int, tile: Optional[int] = None, max_memory: Optional[int] = None) -> Optional[int]:
        """Plan the pass before resizing: None (whole) or a tile core side in px. Whole needs every layer's
        output for each image of a forward pass (measured per pixel on this network) plus the resized batch and
        its result; tiled needs one haloed tile's layers plus the image and its result. Refuses (InputError)
        when even the smallest tile cannot fit. Sets :attr:`last_plan`."""
        n, h, w = int(batch.shape[0]), int(batch.shape[-2]), int(batch.shape[-1])
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = memory.output_bytes_per_pixel(self.net)

        def needed(longest: Optional[int], factor: Optional[float]) -> float:
            f = (longest / max(h, w)) if longest is not None else (factor if factor is not None else 1.0)
            th, tw = padded_size(max(1, round(h * f)), max(1, round(w * f)), self.net.multiple, self.net.min_size)
            per_image = th * tw
            return min(n, batch_size) * per_image * self._bytes_per_pixel + 2 * n * per_image * 3 * 4

        def advice(budget: float) -> str:
            best = memory.largest_fitting(lambda s: needed(max(s, 1), None), budget, max(h, w) * 16)
            return f"the largest size (longest side) that fits is about {best} px" + (
                " with --batch-size 1" if batch_size > 1 and n > 1 else "")

        what = (f"stylising {n} image(s) of {w}x{h} px" + (f" at {size} px" if size else "")
                + (f" scaled {content_scale:g}x" if content_scale else ""))
        f = (size / max(h, w)) if size is not None else (content_scale if content_scale is not None else 1.0)
        th, tw = padded_size(max(1, round(h * f)), max(1, round(w * f)), self.net.multiple, self.net.min_size)
        whole = needed(size, content_scale)
        budget = memory.budget_bytes(self.device, max_memory)
        halo = receptive_halo(self.net)
        m = self.net.multiple

        def tiled_need(core: int) -> float:
            side = min(core + 2 * halo, max(th, tw))
            return side * side * self._bytes_per_pixel + 3 * th * tw * 3 * 4  # tile layers; image, padded, result

        shown = "no limit" if budget is None else memory.gib(budget)
        if tile is None and (budget is None or whole <= budget):
            self.last_plan = f"whole image: {tw}x{th} px needs about {memory.gib(whole)} (budget {shown})"
            return None
        if tile is None:
            assert budget is not None
            core = memory.largest_fitting(lambda c: tiled_need(max(c, 1) * m), budget, max(th, tw) // m) * m
            if core < max(16, m):
                where = "GPU memory" if self.device.type == "cuda" else "memory"
                raise InputError(f"{what} needs about {memory.gib(tiled_need(max(16, m)))} of {where} even in "
                                 f"tiles, the budget is {memory.gib(budget)}; {advice(budget)}")
        else:
            core = max(m, (tile // m) * m)
        core = min(core, ((max(th, tw) + m - 1) // m) * m)
        self.last_plan = (f"tiled: {tw}x{th} px in tiles of {core} px (+{halo} px context), whole-image "
                          f"statistics; about {memory.gib(tiled_need(core))} (budget {shown}; whole would need "
                          f"{memory.gib(whole)})")
        return core

    # --- checkpoints
    def checkpoint(self, *, training_state: Optional[Mapping[str, Any]] = None, **meta: Any) -> Dict[str, Any]:
        """The checkpoint dictionary (plain values and tensors, loadable with ``weights_only=True``).
        ``training_state`` (optimiser state, step) is stored as is, for resuming."""
        return ckpt.checkpoint_dict(self.net, {**self.meta, **meta}, training_state)

    def save(
        self,
        path: Union[str, Path],
        *,
        overwrite: bool = False,
        training_state: Optional[Mapping[str, Any]] = None,
        **meta: Any,
    ) -> Path:
        """Write a self-describing checkpoint atomically; ``meta`` is merged into the stored description (style,
        train options, losses, step...). Refuses to replace a file unless ``overwrite``. Returns the path."""
        data = self.checkpoint(training_state=training_state, **meta)
        path = ckpt.write_checkpoint(path, data, overwrite=overwrite)
        self.meta.update(data["meta"])
        return path


#: The name of earlier releases (it collided with ``torch.nn.Transformer``); kept importable for one release.
Transformer = FeedForwardModel


def new_transformer(
    arch: Union[str, ArchConfig] = "standard",
    seed: Optional[int] = 0,
    *,
    device: Union[str, torch.device, None] = None,
    precision: str = "auto",
    **arch_options: Any,
) -> FeedForwardModel:
    """A freshly initialised :class:`FeedForwardModel` of a named architecture (``standard`` or ``slim``)."""
    net = build_network(arch, seed=seed, **arch_options)
    return FeedForwardModel(net, meta={"seed": seed}, device=device, precision=precision)


def load_transformer(
    path: Union[str, Path],
    *,
    device: Union[str, torch.device, None] = None,
    precision: str = "auto",
) -> FeedForwardModel:
    """Rebuild the model a checkpoint describes: a styletx checkpoint (any architecture), or a pytorch/examples
    fast_neural_style ``.pth``/``.model`` state dict (used unchanged, [0, 255] wrapped)."""
    net, meta, _ = ckpt.network_from_checkpoint(path)
    return FeedForwardModel(net, meta=meta, device=device, precision=precision)


def as_model(model: Union[str, Path, FeedForwardModel], **kwargs: Any) -> FeedForwardModel:
    """A :class:`FeedForwardModel` from a model (returned as is) or a checkpoint path (loaded with ``kwargs``)."""
    if isinstance(model, FeedForwardModel):
        return model
    if isinstance(model, (str, Path)):
        return load_transformer(model, **kwargs)
    raise InputError(f"model: expected a checkpoint path or a feed-forward model, got {type(model).__name__}")
