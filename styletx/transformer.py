"""The feed-forward style transformer (Johnson et al. 2016): networks, the inference wrapper, checkpoints.

Two architectures, chosen by name:

* ``standard``: 9x9 conv in, two stride-2 convs (32, 64, 128 channels), five residual blocks at 128 channels,
  two nearest-upsample-then-3x3-conv layers, 9x9 conv out; instance norm and reflection padding throughout.
  Its parameter names follow the pytorch/examples ``fast_neural_style`` layout, so their published
  checkpoints load unchanged (see :func:`load_transformer`).
* ``slim``: for CPUs and video: a 4x pixel-unshuffle stem (3 -> 48 channels at 1/4 resolution), half the
  channels (16, 32, 64), depthwise-separable residual blocks, 3x3 convs in and out, a 4x pixel shuffle back.
  About 87x fewer multiply-adds per pixel than ``standard``; see docs/transformer.md for its measured cost
  and quality. (Checkpoints of the earlier slim, unshuffle 2, describe themselves and still load.)

Every network takes (N, 3, H, W) float in [0, 1] and returns (N, 3, H, W) in about [0, 1] (unclamped, so
training keeps its gradients); any H and W: the input is reflection-padded to a multiple of 4 x unshuffle (and
to at least 16 px, 32 for ``slim``) on the bottom/right and the output cropped back, so pixels never move.

:class:`Transformer` is the one inference path (CLI, API, video): device, precision (bf16 autocast on CPUs with
AMX/AVX512-BF16 and on GPUs), channels_last, ``compile()`` (ONNX Runtime on CPUs without native bf16, else
``torch.compile`` where it pays), batching, clamping, content scale, colour preservation. Checkpoints are
self-describing (architecture + options, style name and sha256, training options and losses, styletx
version); loading one rebuilds the right network.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._version import __version__
from .errors import CheckpointError, InputError, StyletxWarning
from .winograd import upsample_conv_kernel

__all__ = [
    "ARCHITECTURES",
    "ArchConfig",
    "TransformerNet",
    "Transformer",
    "new_transformer",
    "load_transformer",
    "build_network",
    "convert_pytorch_examples",
    "stylize_files",
    "StylizedFile",
    "CHECKPOINT_FORMAT",
]

#: Version of the checkpoint layout written by :meth:`Transformer.save`.
CHECKPOINT_FORMAT = 1

#: Instance-norm epsilon (PyTorch's default, as in pytorch/examples).
_EPS = 1e-5


# --------------------------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class ArchConfig:
    """Shape of a transformer network. ``value_range`` is the pixel scale the weights expect (255 for
    pytorch/examples checkpoints); the network itself always takes and returns [0, 1]. ``input_skip``: the
    network's output is its input plus what the layers compute, with the last conv initialised to zero, so an
    untrained network is the identity and training only has to learn the change (checkpoints saved without
    the field load with it off)."""

    name: str = "standard"
    channels: Tuple[int, int, int] = (32, 64, 128)
    res_blocks: int = 5
    separable: bool = False
    kernel_in: int = 9
    kernel_out: int = 9
    value_range: float = 1.0
    unshuffle: int = 1
    input_skip: bool = False

    def validated(self) -> "ArchConfig":
        if len(self.channels) != 3 or any((not isinstance(c, int)) or c < 1 for c in self.channels):
            raise InputError(f"arch channels: expected three positive integers, got {self.channels!r}")
        if not isinstance(self.res_blocks, int) or self.res_blocks < 0:
            raise InputError(f"arch res_blocks: expected an integer >= 0, got {self.res_blocks!r}")
        for name in ("kernel_in", "kernel_out"):
            k = getattr(self, name)
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise InputError(f"arch {name}: expected an odd positive integer, got {k!r}")
        if not isinstance(self.unshuffle, int) or self.unshuffle < 1:
            raise InputError(f"arch unshuffle: expected an integer >= 1, got {self.unshuffle!r}")
        if not (self.value_range > 0):
            raise InputError(f"arch value_range: expected a number > 0, got {self.value_range!r}")
        return self

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ArchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"unknown architecture option(s) in checkpoint: {', '.join(unknown)}")
        values = dict(d)
        if "channels" in values:
            values["channels"] = tuple(int(c) for c in values["channels"])
        return cls(**values).validated()


ARCHITECTURES: Dict[str, ArchConfig] = {
    "standard": ArchConfig("standard"),
    "slim": ArchConfig(
        "slim", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3, unshuffle=4,
        input_skip=True,
    ),
}


def arch_config(arch: Union[str, ArchConfig], **overrides: Any) -> ArchConfig:
    """The :class:`ArchConfig` of a named architecture (``standard`` or ``slim``), with options overridden."""
    if isinstance(arch, ArchConfig):
        base = arch
    else:
        if arch not in ARCHITECTURES:
            raise InputError(f"arch: expected one of {', '.join(ARCHITECTURES)}, got {arch!r}")
        base = ARCHITECTURES[arch]
    if overrides:
        known = {f.name for f in fields(ArchConfig)} - {"name"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown architecture option(s): {', '.join(unknown)}")
        if "channels" in overrides:
            overrides["channels"] = tuple(overrides["channels"])
        base = replace(base, **overrides)
    return base.validated()


# ------------------------------------------------------------------------------------------------- layers


class ConvLayer(nn.Module):
    """Reflection padding (k // 2) then a k x k convolution. Parameters: ``conv2d.weight``, ``conv2d.bias``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.conv2d(x)


class SeparableConvLayer(nn.Module):
    """Reflection padding, a depthwise k x k conv, then a pointwise 1x1 conv (``depthwise.*``, ``pointwise.*``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.depthwise = nn.Conv2d(cin, cin, kernel, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """x + IN(conv(relu(IN(conv(x))))) (He et al. 2016 with instance norm): ``conv1 in1 conv2 in2``."""

    def __init__(self, channels: int, *, separable: bool = False) -> None:
        super().__init__()
        make = (lambda: SeparableConvLayer(channels, channels, 3)) if separable else (
            lambda: ConvLayer(channels, channels, 3)
        )
        self.conv1 = make()
        self.in1 = nn.InstanceNorm2d(channels, affine=True, eps=_EPS)
        self.conv2 = make()
        self.in2 = nn.InstanceNorm2d(channels, affine=True, eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour 2x upsampling, then reflection padding and a k x k conv (no transposed conv, so no
    checkerboard artefacts). Parameters: ``conv2d.weight``, ``conv2d.bias``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.conv2d = nn.Conv2d(cin, cout, kernel)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.conv2d(x)


class TransformerNet(nn.Module):
    """The image transformation network. ``forward``: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) about [0, 1].

    Module names (``conv1 in1 conv2 in2 conv3 in3 res1.. deconv1 in4 deconv2 in5 deconv3``) match the
    pytorch/examples layout.
    """

    #: Inputs are padded to a multiple of this (two stride-2 stages) ...
    MULTIPLE = 4
    #: ... and to at least this many pixels per side, so every reflection pad has room.
    MIN_SIZE = 16

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        config = config.validated()
        self.config = config
        c1, c2, c3 = config.channels
        r2 = config.unshuffle**2
        self.conv1 = ConvLayer(3 * r2, c1, config.kernel_in)
        self.in1 = nn.InstanceNorm2d(c1, affine=True, eps=_EPS)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True, eps=_EPS)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True, eps=_EPS)
        for i in range(config.res_blocks):
            self.add_module(f"res{i + 1}", ResidualBlock(c3, separable=config.separable))
        self.deconv1 = UpsampleConvLayer(c3, c2, 3)
        self.in4 = nn.InstanceNorm2d(c2, affine=True, eps=_EPS)
        self.deconv2 = UpsampleConvLayer(c2, c1, 3)
        self.in5 = nn.InstanceNorm2d(c1, affine=True, eps=_EPS)
        self.deconv3 = ConvLayer(c1, 3 * r2, config.kernel_out)
        self.input_skip = bool(config.input_skip)
        if self.input_skip:  # start as the identity: output = input + 0
            nn.init.zeros_(self.deconv3.conv2d.weight)
            nn.init.zeros_(self.deconv3.conv2d.bias)
        self.value_range = float(config.value_range)
        self.unshuffle = int(config.unshuffle)
        self.multiple = self.MULTIPLE * self.unshuffle
        #: smallest side the body accepts: every reflection pad needs >= 2 px at the deepest stage
        self.min_size = max(self.MIN_SIZE, 2 * self.multiple)

    def res_blocks(self) -> List[nn.Module]:
        return [getattr(self, f"res{i + 1}") for i in range(self.config.res_blocks)]

    def body(self, x: Tensor) -> Tensor:
        """The network on an input whose sides are multiples of ``self.multiple`` and >= 16, in its value range."""
        x_in = x
        if self.unshuffle > 1:
            x = self.space_to_depth(x) if hasattr(self, "space_to_depth") else F.pixel_unshuffle(x, self.unshuffle)
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for block in self.res_blocks():
            y = block(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)
        if self.unshuffle > 1:
            y = self.depth_to_space(y) if hasattr(self, "depth_to_space") else F.pixel_shuffle(y, self.unshuffle)
        return y + x_in if self.input_skip else y

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x, (ph, pw) = pad_to_multiple(x, self.multiple, self.min_size)
        if self.value_range != 1.0:
            x = x * self.value_range
        y = self.body(x)
        if self.value_range != 1.0:
            y = y * (1.0 / self.value_range)
        if ph or pw:
            y = y[..., :h, :w]
        return y


def padded_size(h: int, w: int, multiple: int = 4, min_size: int = 16) -> Tuple[int, int]:
    """(H, W) rounded up to multiples of ``multiple`` and to at least ``min_size`` (what :func:`pad_to_multiple` pads to)."""
    return max(min_size, -(-h // multiple) * multiple), max(min_size, -(-w // multiple) * multiple)


def pad_to_multiple(x: Tensor, multiple: int = 4, min_size: int = 16) -> Tuple[Tensor, Tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom and right to sides that are multiples of ``multiple`` and at least
    ``min_size``: reflection where the image is big enough, else replication. Returns (padded, (ph, pw))."""
    h, w = x.shape[-2], x.shape[-1]
    th, tw = padded_size(h, w, multiple, min_size)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x, (0, 0)
    if ph < h and pw < w:
        return F.pad(x, (0, pw, 0, ph), mode="reflect"), (ph, pw)
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), (ph, pw)


def build_network(arch: Union[str, ArchConfig] = "standard", *, seed: Optional[int] = 0, **options: Any) -> TransformerNet:
    """A freshly initialised :class:`TransformerNet` (PyTorch's default init, seeded when ``seed`` is given)."""
    config = arch_config(arch, **options)
    if seed is None:
        return TransformerNet(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TransformerNet(config)


def macs_per_pixel(config: Union[str, ArchConfig]) -> float:
    """Multiply-adds per output pixel of the network (convolutions only; norms and pads are memory-bound)."""
    cfg = arch_config(config)
    c1, c2, c3 = cfg.channels
    r2 = cfg.unshuffle**2
    m = cfg.kernel_in**2 * 3 * r2 * c1
    m += 9 * c1 * c2 / 4 + 9 * c2 * c3 / 16
    per_conv = (9 * c3 + c3 * c3) if cfg.separable else 9 * c3 * c3
    m += 2 * cfg.res_blocks * per_conv / 16
    m += 9 * c3 * c2 / 4 + 9 * c2 * c1
    m += cfg.kernel_out**2 * c1 * 3 * r2
    return float(m) / r2


# ------------------------------------------------------------------------------------- inference rewrites


class SubPixelUpsampleConv(nn.Module):
    """Exact, cheaper form of :class:`UpsampleConvLayer` (3x3 kernel) for inference.

    conv3x3(reflect_pad1(upsample2(x))) equals, for each output phase (a, b) in {0, 1}^2, a 2x2 conv of the
    replicate-padded low-resolution ``x`` with kernel taps summed from the 3x3 one: 16 instead of 36
    multiply-adds per input pixel and channel pair, and the 4x larger upsampled+padded tensor never exists.
    """

    def __init__(self, layer: UpsampleConvLayer) -> None:
        super().__init__()
        w = layer.conv2d.weight.detach()
        if w.shape[-1] != 3 or w.shape[-2] != 3:
            raise ValueError("SubPixelUpsampleConv needs a 3x3 kernel")
        # phase (a, b) of the folded 3x3 kernel touches only rows a..a+1 and columns b..b+1 of its window
        folded = upsample_conv_kernel(w).reshape(2, 2, *w.shape)
        # four 2x2 convs (a (4*Cout, Cin, 3, 3) conv would compute the same with 36 taps instead of 16)
        for a in (0, 1):
            for b in (0, 1):
                self.register_buffer(f"weight{a * 2 + b}", folded[a, b, :, :, a : a + 2, b : b + 2].contiguous())
        bias = layer.conv2d.bias
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                k = getattr(self, f"weight{a * 2 + b}")
                phases.append(F.conv2d(xp[:, :, a : a + h + 1, b : b + w + 1], k, self.bias))
        n, c = phases[0].shape[:2]
        y = torch.stack(phases, dim=2).reshape(n, c * 4, h, w)
        return F.pixel_shuffle(y, 2)


def _one_hot_shuffle_weight(channels: int, r: int) -> Tensor:
    """(C*r*r, C, r, r) weights mapping pixel (i, j) of each r x r block of channel c to channel c*r*r + i*r + j
    (pixel_unshuffle's channel order)."""
    w = torch.zeros(channels * r * r, channels, r, r)
    for c in range(channels):
        for i in range(r):
            for j in range(r):
                w[c * r * r + i * r + j, c, i, j] = 1.0
    return w


class SpaceToDepthConv(nn.Module):
    """``F.pixel_unshuffle(x, r)`` as a stride-r convolution with one-hot weights: the same numbers exactly
    (each output is 1.0 times one input plus zeros), but one fast conv kernel instead of a 6-D transpose."""

    def __init__(self, channels: int, r: int) -> None:
        super().__init__()
        self.register_buffer("weight", _one_hot_shuffle_weight(channels, r))
        self.r = r

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, stride=self.r)


class DepthToSpaceConv(nn.Module):
    """``F.pixel_shuffle(y, r)`` as a stride-r transposed convolution with one-hot weights (exact)."""

    def __init__(self, channels: int, r: int) -> None:
        super().__init__()
        self.register_buffer("weight", _one_hot_shuffle_weight(channels, r))
        self.r = r

    def forward(self, y: Tensor) -> Tensor:
        return F.conv_transpose2d(y, self.weight, stride=self.r)


def shuffle_as_convs(net: TransformerNet, *, depth_to_space: bool = False) -> TransformerNet:
    """Give ``net`` (an inference copy) the exact conv form of its pixel unshuffle (and, if asked, of its pixel
    shuffle; ONNX Runtime's DepthToSpace measured as fast as the transposed conv, its 6-D Transpose for the
    unshuffle ~4x slower than the conv); returns it."""
    if net.unshuffle > 1:
        net.space_to_depth = SpaceToDepthConv(3, net.unshuffle)
        if depth_to_space:
            net.depth_to_space = DepthToSpaceConv(3, net.unshuffle)
    return net


def inference_network(net: TransformerNet) -> TransformerNet:
    """A copy of ``net`` for inference only: upsample-convs rewritten as sub-pixel convs (same output up to
    float rounding), no autograd state."""
    fast = copy.deepcopy(net).eval()
    for name in ("deconv1", "deconv2"):
        layer = getattr(fast, name)
        if isinstance(layer, UpsampleConvLayer) and layer.conv2d.kernel_size == (3, 3):
            setattr(fast, name, SubPixelUpsampleConv(layer))
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


# ------------------------------------------------------------------------------------------ device, precision


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native (fast) on ``device`` (see :func:`styletx.device.native_bf16`)."""
    from .device import native_bf16

    return native_bf16(device)


def _pick_device(device: Union[str, torch.device, None]) -> torch.device:
    from .device import pick_device

    if isinstance(device, torch.device):
        return device
    return pick_device(device or "auto")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Union[str, Path]) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    """Plain Python values only (what torch.load(weights_only=True) accepts and JSON can show)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    return str(value)


# ---------------------------------------------------------------------------------------------- Transformer

PRESERVE_COLOR = ("none", "luminance", "histogram")
ImageLike = Union[Tensor, "PIL.Image.Image"]  # noqa: F821


class Transformer:
    """A trained (or fresh) transformer network ready for inference: the one path the CLI, API and video use.

    ``stylize(x)`` takes a (N, 3, H, W) or (3, H, W) float tensor in [0, 1], a PIL image, or a list of these,
    and returns the same kind, clamped to [0, 1]. ``net`` is the trainable :class:`TransformerNet`; ``meta`` the
    checkpoint's description (style, training options, losses, version).
    """

    def __init__(
        self,
        net: TransformerNet,
        *,
        meta: Optional[Mapping[str, Any]] = None,
        device: Union[str, torch.device, None] = None,
        precision: str = "auto",
        channels_last: Optional[bool] = None,
    ) -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"precision: expected one of auto, fp32, bf16, got {precision!r}")
        self.device = _pick_device(device)
        self.net = net.to(self.device).eval()
        self.meta: Dict[str, Any] = dict(meta or {})
        self.precision = precision
        self._channels_last_opt = channels_last
        self._fast: Optional[nn.Module] = None
        self._compiled: Optional[Callable[[Tensor], Tensor]] = None
        self._want_compile = False
        self._compile_failed = False
        self._ort: Optional[Callable[[Tensor], Tensor]] = None
        self._winograd: Optional[Any] = None  # a styletx.winograd_net.WinogradNet

    # --- description
    @property
    def config(self) -> ArchConfig:
        return self.net.config

    @property
    def arch(self) -> str:
        return self.net.config.name

    @property
    def uses_bf16(self) -> bool:
        """Whether inference runs under bf16 autocast (precision auto: only where bf16 is native)."""
        if self.precision == "fp32":
            return False
        if self.precision == "bf16":
            return self.device.type in ("cpu", "cuda")
        return fast_bf16(self.device)

    @property
    def channels_last(self) -> bool:
        """Channels-last memory format: used with bf16 (oneDNN/AMX, tensor cores), not for fp32 on CPU,
        where it measured slower for these small-channel convs."""
        if self._channels_last_opt is not None:
            return self._channels_last_opt
        return self.uses_bf16 or self.device.type == "cuda"

    def describe(self) -> Dict[str, Any]:
        """Architecture, device, precision and the checkpoint's metadata, as plain values."""
        return {
            "arch": self.config.as_dict(),
            "device": str(self.device),
            "precision": "bf16" if self.uses_bf16 else "fp32",
            "channels_last": self.channels_last,
            "compiled": self._compiled is not None or self._ort is not None or self._winograd is not None,
            "backend": self.backend,
            **{k: v for k, v in self.meta.items() if k not in ("arch",)},
        }

    @property
    def backend(self) -> str:
        """What runs the network now: ``onnxruntime`` (after :meth:`compile` on CPUs without native bf16),
        ``winograd`` (after ``compile(backend="winograd")``), ``torch.compile`` or ``torch`` (eager)."""
        if self._winograd is not None:
            return "winograd"
        if self._ort is not None:
            return "onnxruntime"
        if self._compiled is not None and self._want_compile:
            return "torch.compile"
        return "torch"

    def __repr__(self) -> str:
        style = (self.meta.get("style") or {}).get("name", "?")
        return f"Transformer(arch={self.arch!r}, style={style!r}, device={str(self.device)!r})"

    # --- set-up
    def to(self, device: Union[str, torch.device]) -> "Transformer":
        """Move to ``device`` (drops any prepared/compiled copy); returns self."""
        self.device = _pick_device(device)
        self.net = self.net.to(self.device)
        self._fast = None
        self._compiled = None
        self._ort = None
        self._winograd = None
        return self

    def _prepared(self) -> nn.Module:
        if self._fast is None:
            fast = inference_network(self.net).to(self.device)
            if self.channels_last:
                fast = fast.to(memory_format=torch.channels_last)
            self._fast = fast
        return self._fast

    def compile(
        self,
        *,
        torch_compile: Optional[bool] = None,
        backend: str = "auto",
        cache_dir: Union[str, Path, None] = None,
    ) -> "Transformer":
        """Prepare for repeated use (folders, video, batches); returns self.

        backend ``auto``: on a CPU without native bf16 (fp32 arithmetic), ONNX Runtime when it is installed
        (the network's body exported once to ONNX into ``cache_dir``, default :func:`styletx.export.default_cache_dir`,
        keyed by a hash of the weights, then run with ``torch.get_num_threads()`` intra-op threads; any image
        size, ready in seconds, same fp32 arithmetic, max |diff| ~1e-5); otherwise torch: the exact inference
        rewrites, the memory format, and ``torch.compile`` where it pays (``torch_compile=None``: on CUDA and on
        CPUs with native bf16; an explicit True/False means the torch backend).

        ``backend="winograd"`` (standard network, fp32 CPU): the fastest CPU path, 2x the plain network's frame
        rate at 512x512 here (:mod:`styletx.winograd_net`; max |diff| ~3e-5), but ``torch.compile`` builds it
        once per input size: ~40-70 s the first time on a machine, seconds from inductor's disk cache after.
        For long runs at one size (video, many frames); ``auto`` does not pick it, since a folder of differently
        sized pictures would pay that for every size. ``onnxruntime`` or ``torch`` force those backends.

        On Linux (glibc) the first call also keeps freed memory in the process
        (:func:`styletx.device.retain_freed_memory`), which saves the page faults of large fresh buffers on
        every frame. A failed export or compile falls back to eager torch with a StyletxWarning. Call again
        after changing ``net``'s weights (the hash picks a new graph).
        """
        if backend not in ("auto", "torch", "onnxruntime", "winograd"):
            raise InputError(f"backend: expected one of auto, torch, onnxruntime, winograd, got {backend!r}")
        from .device import retain_freed_memory

        retain_freed_memory()
        previous, self._ort, self._winograd = self._ort, None, None
        if backend == "winograd":
            from . import winograd_net

            if self.device.type != "cpu" or self.uses_bf16 or not winograd_net.supports(self.net):
                raise InputError("backend: winograd runs the standard network in fp32 on the CPU only")
            self._winograd = winograd_net.WinogradNet(self.net)
            return self
        if backend == "auto":
            from .export import onnxruntime_available

            use_ort = (
                torch_compile is None and self.device.type == "cpu" and not self.uses_bf16 and onnxruntime_available()
            )
            backend = "onnxruntime" if use_ort else "torch"
        if backend == "onnxruntime":
            if self.device.type != "cpu" or self.uses_bf16:
                raise InputError("backend: onnxruntime runs fp32 on the CPU only (device cpu, precision fp32/auto)")
            from .export import OrtRunner, onnx_body_path

            try:
                path = onnx_body_path(self.net, cache_dir)
                reuse = previous is not None and getattr(previous, "path", None) == path
                self._ort = previous if reuse else OrtRunner(path)
                return self
            except Exception as e:  # pragma: no cover - platform dependent
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                warnings.warn(f"ONNX Runtime backend unavailable ({msg}); running with torch", StyletxWarning)
        self._prepared()
        if torch_compile is None:
            torch_compile = self.device.type == "cuda" or (self.device.type == "cpu" and fast_bf16(self.device))
        self._want_compile = bool(torch_compile)
        if self._want_compile and self._compiled is None and not self._compile_failed:
            options = {"freezing": True} if self.device.type == "cpu" else None
            try:
                self._compiled = torch.compile(self._fast, dynamic=False, options=options)
            except Exception as e:  # pragma: no cover - platform dependent
                self._compile_failed = True
                warnings.warn(f"torch.compile unavailable ({e}); running eagerly", StyletxWarning)
        return self

    # --- inference
    def _forward(self, batch: Tensor) -> Tensor:
        """(n, 3, H, W) float32 on self.device in [0, 1] -> (n, 3, H, W) float32 in [0, 1]."""
        if self._winograd is not None and self._winograd.accepts(self._body_shape(batch)):
            try:
                return self._run_body(self._winograd, batch)
            except Exception as e:  # pragma: no cover - platform dependent (no C++ compiler for inductor)
                self._winograd = None
                warnings.warn(f"winograd backend failed ({str(e).splitlines()[0][:200]}); running eagerly",
                              StyletxWarning)
        if self._ort is not None:
            return self._run_body(self._ort, batch)
        fast = self._prepared()
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if self.uses_bf16
            else _nullcontext()
        )
        with torch.inference_mode(), autocast:
            y = None
            if self._compiled is not None and self._want_compile:
                try:
                    y = self._compiled(batch)
                except Exception as e:  # pragma: no cover - platform dependent
                    self._compiled = None
                    self._compile_failed = True
                    warnings.warn(f"torch.compile failed ({str(e).splitlines()[0][:200]}); running eagerly",
                                  StyletxWarning)
            if y is None:
                y = fast(batch)
            return y.float().clamp_(0.0, 1.0).contiguous()

    def _body_shape(self, batch: Tensor) -> Tuple[int, ...]:
        """The shape ``batch`` has once padded for the network's body."""
        n, c, h, w = batch.shape
        return (n, c, *padded_size(h, w, self.net.multiple, self.net.min_size))

    def _run_body(self, body: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
        """Pad ``batch`` to what the network's body takes, run ``body``, crop back and clamp."""
        h, w = batch.shape[-2:]
        with torch.inference_mode():
            padded, (ph, pw) = pad_to_multiple(batch, self.net.multiple, self.net.min_size)
            y = body(padded)
            if ph or pw:
                y = y[..., :h, :w]
            return y.clamp_(0.0, 1.0).contiguous()

    def stylize(
        self,
        x: Union[ImageLike, Sequence[ImageLike]],
        *,
        batch_size: int = 4,
        size: Optional[int] = None,
        content_scale: Optional[float] = None,
        preserve_color: str = "none",
    ) -> Any:
        """Stylise ``x`` in one pass and return the same kind.

        x: (N, 3, H, W) or (3, H, W) float tensor in [0, 1] (any device; the result comes back there, float32),
        a PIL image, or a list of either (images of different sizes are run one by one).
        batch_size: images per forward pass. size: resize so the longest side is this many pixels first;
        content_scale: or resize by this factor (0.5 halves the sides). The output has the resized size.
        preserve_color: ``none``, ``luminance`` (stylised luminance, content's chroma) or ``histogram`` (the
        output's colours matched to the content's).
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
                                 preserve_color=preserve_color) for item in x]
        from .image import to_pil, to_tensor

        is_tensor = isinstance(x, Tensor)
        if is_tensor:
            if x.dim() not in (3, 4) or x.shape[-3] != 3 or not x.is_floating_point():
                raise InputError(
                    f"stylize: expected a (N, 3, H, W) or (3, H, W) float tensor in [0, 1], got "
                    f"{tuple(x.shape)} {x.dtype}"
                )
            batch = x if x.dim() == 4 else x.unsqueeze(0)
            origin = x.device
        else:
            batch = to_tensor(x)
            origin = torch.device("cpu")
        batch = batch.to(self.device, torch.float32)
        batch = _rescale(batch, size, content_scale)
        outs = [self._forward(batch[i : i + batch_size]) for i in range(0, batch.shape[0], batch_size)]
        y = torch.cat(outs) if len(outs) > 1 else outs[0]
        if preserve_color != "none":
            from . import color

            if preserve_color == "luminance":
                y = color.transfer_luminance(y, batch)
            else:
                y = color.match_histogram(y, batch)
            y = y.clamp(0.0, 1.0)
        if not is_tensor:
            return to_pil(y.cpu())
        y = y.to(origin)
        return y if x.dim() == 4 else y[0]

    __call__ = stylize

    # --- checkpoints
    def checkpoint(self, *, training_state: Optional[Mapping[str, Any]] = None, **meta: Any) -> Dict[str, Any]:
        """The checkpoint dictionary (plain values and tensors, loadable with ``weights_only=True``).
        ``training_state`` (optimiser state, step, RNG) is stored as is, for resuming."""
        info = {**self.meta, **meta}
        state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        extra = {"training_state": dict(training_state)} if training_state is not None else {}
        return {
            **extra,
            "format": "styletx-transformer",
            "format_version": CHECKPOINT_FORMAT,
            "styletx": __version__,
            "arch": self.config.as_dict(),
            "meta": _jsonable({k: v for k, v in info.items() if k not in ("arch", "styletx", "format")}),
            "state_dict": state,
        }

    def save(
        self,
        path: Union[str, Path],
        *,
        overwrite: bool = False,
        training_state: Optional[Mapping[str, Any]] = None,
        **meta: Any,
    ) -> Path:
        """Write a self-describing checkpoint atomically (temporary file + rename); ``meta`` is merged into the
        stored description (style, train options, losses, step...). Refuses to replace a file unless
        ``overwrite``. Returns the path."""
        path = Path(path)
        if not path.parent.is_dir():
            raise InputError(f"{path}: output folder {str(path.parent)!r} does not exist")
        if path.exists() and not overwrite:
            raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it")
        ckpt = self.checkpoint(training_state=training_state, **meta)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(ckpt, f)
            os.replace(tmp, path)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise
        self.meta.update(ckpt["meta"])
        return path


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True


def _rescale(batch: Tensor, size: Optional[int], content_scale: Optional[float]) -> Tensor:
    h, w = batch.shape[-2:]
    if size is not None:
        f = size / max(h, w)
    elif content_scale is not None:
        f = float(content_scale)
    else:
        return batch
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    if (th, tw) == (h, w):
        return batch
    from .image import resize_to

    return resize_to(batch, (th, tw)).clamp(0.0, 1.0)


def new_transformer(
    arch: Union[str, ArchConfig] = "standard",
    seed: Optional[int] = 0,
    *,
    device: Union[str, torch.device, None] = None,
    precision: str = "auto",
    **arch_options: Any,
) -> Transformer:
    """A freshly initialised :class:`Transformer` of a named architecture (``standard`` or ``slim``)."""
    net = build_network(arch, seed=seed, **arch_options)
    return Transformer(net, meta={"seed": seed}, device=device, precision=precision)


# ------------------------------------------------------------------------------------------------ loading

#: Keys that identify a pytorch/examples fast_neural_style state_dict.
_PYTORCH_EXAMPLES_KEYS = ("conv1.conv2d.weight", "in1.weight", "conv3.conv2d.weight", "deconv3.conv2d.weight")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def convert_pytorch_examples(state: Mapping[str, Tensor], *, name: str = "state_dict") -> Tuple[ArchConfig, Dict[str, Tensor]]:
    """The architecture and cleaned state of a pytorch/examples ``fast_neural_style`` checkpoint.

    Their network works on pixels in [0, 255]; the returned config has ``value_range=255`` so the rebuilt
    network still takes and returns [0, 1]. Instance-norm ``running_mean``/``running_var`` (and
    ``num_batches_tracked``) keys of files saved by old PyTorch versions are dropped.
    """
    missing = [k for k in _PYTORCH_EXAMPLES_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{name}: not a fast_neural_style checkpoint (missing {', '.join(missing)})")
    clean = {
        k: v for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
    c1 = clean["conv1.conv2d.weight"].shape[0]
    c2 = clean["conv2.conv2d.weight"].shape[0] if "conv2.conv2d.weight" in clean else 2 * c1
    c3 = clean["conv3.conv2d.weight"].shape[0]
    blocks = 0
    while f"res{blocks + 1}.conv1.conv2d.weight" in clean:
        blocks += 1
    k_in = int(clean["conv1.conv2d.weight"].shape[-1])
    k_out = int(clean["deconv3.conv2d.weight"].shape[-1])
    config = ArchConfig(
        "standard", channels=(int(c1), int(c2), int(c3)), res_blocks=blocks, kernel_in=k_in, kernel_out=k_out,
        value_range=255.0,
    ).validated()
    return config, clean


def _load_state(net: TransformerNet, state: Mapping[str, Tensor], name: str) -> None:
    result = net.load_state_dict(dict(state), strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:4])}" + (" ..." if len(result.missing_keys) > 4 else ""))
    if result.unexpected_keys:
        problems.append(
            f"unexpected {', '.join(result.unexpected_keys[:4])}" + (" ..." if len(result.unexpected_keys) > 4 else "")
        )
    if problems:
        raise CheckpointError(f"{name}: weights do not match architecture {net.config.name!r} ({'; '.join(problems)})")


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a checkpoint file (no code execution: ``weights_only``); raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights only load failed" in str(e).lower():
            why = "not a PyTorch checkpoint, or one that holds code, which is never run"
        else:
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read the checkpoint ({why})") from None
    if isinstance(obj, Mapping) and obj.get("format") == "styletx-transformer":
        return dict(obj)
    if _is_state_dict(obj):
        return {"state_dict": dict(obj)}
    raise CheckpointError(f"{path}: not a transformer checkpoint (neither a styletx file nor a state_dict)")


def load_transformer(
    path: Union[str, Path],
    *,
    device: Union[str, torch.device, None] = None,
    precision: str = "auto",
) -> Transformer:
    """Rebuild the :class:`Transformer` a checkpoint describes: a styletx checkpoint (any architecture), or a
    pytorch/examples fast_neural_style ``.pth``/``.model`` state_dict (used unchanged, [0, 255] wrapped)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    state = ckpt["state_dict"]
    if "arch" in ckpt:
        version = ckpt.get("format_version", 1)
        if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {version} is newer than this styletx reads; upgrade")
        try:
            config = ArchConfig.from_dict(ckpt["arch"])
        except (TypeError, InputError) as e:
            raise CheckpointError(f"{path}: bad architecture description ({e})") from None
        meta = dict(ckpt.get("meta") or {})
        meta["styletx_version"] = ckpt.get("styletx")
        source = "styletx"
    elif all(k in state for k in _PYTORCH_EXAMPLES_KEYS):
        config, state = convert_pytorch_examples(state, name=str(path))
        meta = {"source": "pytorch/examples fast_neural_style", "style": {"name": path.stem}}
        source = "pytorch-examples"
    else:
        raise CheckpointError(f"{path}: unrecognised state_dict layout (keys like {', '.join(list(state)[:3])})")
    net = TransformerNet(config)
    _load_state(net, state, str(path))
    meta.setdefault("file", path.name)
    meta["format"] = source
    return Transformer(net, meta=meta, device=device, precision=precision)


def as_transformer(model: Union[str, Path, Transformer], **kwargs: Any) -> Transformer:
    """A :class:`Transformer` from a Transformer (returned as is) or a checkpoint path."""
    if isinstance(model, Transformer):
        return model
    if isinstance(model, (str, Path)):
        return load_transformer(model, **kwargs)
    raise InputError(f"model: expected a checkpoint path or a Transformer, got {type(model).__name__}")


# ---------------------------------------------------------------------------------------------- files, API

#: File name endings taken as images when a folder is given.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(sources: Sequence[Union[str, Path]], *, recursive: bool = True) -> List[Path]:
    """Image files named in ``sources``: files as given, folders expanded (recursively, sorted, by extension,
    hidden files skipped). Raises InputError naming a source that does not exist."""
    out: List[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            pattern = p.rglob("*") if recursive else p.glob("*")
            found = sorted(
                q for q in pattern
                if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


@dataclass
class StylizedFile:
    """What :func:`stylize_files` reports per image (to its callback and in its result)."""

    source: Path
    output: Path
    index: int
    total: int
    seconds: float


def _output_paths(inputs: Sequence[Path], output: Optional[Path], suffix: str) -> List[Path]:
    from .image import default_output_path

    if output is None:
        return [default_output_path(p, ext=suffix) for p in inputs]
    output = Path(output)
    as_folder = output.is_dir() or len(inputs) > 1 or (not output.suffix)
    if not as_folder:
        return [output]
    if not output.is_dir():
        raise InputError(f"{output}: output folder does not exist (give an existing folder for several images)")
    names: Dict[str, int] = {}
    paths = []
    for p in inputs:
        stem = f"{p.stem}_stylized"
        n = names.get(stem, 0)
        names[stem] = n + 1
        paths.append(output / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n + 1}{suffix}"))
    return paths


def model_metadata(model: Transformer) -> Dict[str, str]:
    """Text metadata for an image made by ``model``: styletx version, architecture, style, checkpoint file."""
    import json

    style = model.meta.get("style") or {}
    meta = {
        "styletx": __version__,
        "styletx.engine": "transformer",
        "styletx.model": json.dumps(
            {
                "arch": model.arch,
                "file": model.meta.get("file"),
                "style": style.get("name"),
                "style_sha256": style.get("sha256"),
                "source": model.meta.get("format"),
                "precision": "bf16" if model.uses_bf16 else "fp32",
            },
            sort_keys=True,
        ),
    }
    return meta


def stylize_files(
    model: Union[str, Path, Transformer],
    inputs: Sequence[Union[str, Path]],
    output: Union[str, Path, None] = None,
    *,
    size: Optional[int] = None,
    content_scale: Optional[float] = None,
    preserve_color: str = "none",
    overwrite: bool = False,
    keep_alpha: bool = False,
    suffix: str = ".png",
    device: Union[str, torch.device, None] = None,
    callback: Optional[Callable[[StylizedFile], None]] = None,
) -> List[Path]:
    """Stylise image files (folders are expanded recursively) and write the results; returns their paths.

    output: None -> next to each input (``name_stylized.png``, never replacing a file); a file name for one
    input; an existing folder (required for several inputs) -> ``folder/name_stylized.png``. Every output
    path is checked before any work (no-clobber unless ``overwrite``); writes are atomic with the model's
    description in the metadata. Several images: the model is compiled for repeated use first.
    """
    from .image import check_output_path, load_image, resize_to, save_image

    net = as_transformer(model, device=device)
    files = list_images(inputs)
    if not files:
        raise InputError(f"{', '.join(str(p) for p in inputs)}: no images found")
    outs = _output_paths(files, Path(output) if output is not None else None, suffix)
    for src, dst in zip(files, outs):
        if dst.exists() and dst.resolve() == src.resolve():
            raise InputError(f"{dst}: the output would overwrite an input image")
        check_output_path(dst, overwrite=overwrite)
    if len(set(outs)) != len(outs):
        raise InputError("output: several images would be written to the same file")
    if len(files) > 1:
        net.compile()
    meta = model_metadata(net)
    written = []
    for i, (src, dst) in enumerate(zip(files, outs)):
        t0 = time.perf_counter()
        loaded = load_image(src, keep_alpha=keep_alpha)
        y = net.stylize(loaded.tensor, size=size, content_scale=content_scale, preserve_color=preserve_color)
        alpha = None
        if loaded.alpha is not None:
            alpha = resize_to(loaded.alpha, tuple(y.shape[-2:])).clamp(0, 1)
        written.append(save_image(y, dst, overwrite=overwrite, metadata={**meta, "styletx.content": src.name},
                                  alpha=alpha))
        if callback is not None:
            callback(StylizedFile(src, dst, i + 1, len(files), time.perf_counter() - t0))
    return written


def run_model_cli(
    model: Union[str, Path],
    images: Sequence[Union[str, Path]],
    output: Union[str, Path, None],
    *,
    overwrite: bool = False,
    keep_alpha: bool = False,
    quiet: bool = True,
    size: Optional[int] = None,
    device: Optional[str] = None,
    preserve_color: Optional[str] = None,
    content_scale: Optional[float] = None,
    callback: Optional[Callable[[StylizedFile], None]] = None,
) -> List[Path]:
    """What ``styletx run --model M CONTENT... [-o OUT]`` does; returns the written paths (prints nothing;
    ``quiet`` is accepted for the CLI's sake, progress goes to ``callback``)."""
    return stylize_files(
        model, images, output, size=size, content_scale=content_scale,
        preserve_color=preserve_color or "none", overwrite=overwrite, keep_alpha=keep_alpha,
        device=None if device in (None, "auto") else device, callback=callback,
    )


#: StylizeOptions that mean something for a trained model (the others belong to the optimisation engine).
_MODEL_OPTIONS = ("size", "device", "precision", "preserve_color", "content_scale", "batch_size")


def stylize_with_model(
    content: Any,
    model: Union[str, Path, Transformer],
    *,
    output: str = "pil",
    keep_alpha: bool = False,
    **options: Any,
) -> Any:
    """``styletx.stylize(content, model=M, ...)``: one pass of a trained transformer; returns a StylizeResult.

    options: size (longest side, default: the content's own size), content_scale, preserve_color
    (none | luminance | histogram), device, precision. Options of the optimisation engine raise InputError.
    """
    from .result import StylizeResult
    from .image import load_image, resize_to, to_pil
    from .optimize import RunRecord

    other = sorted(set(options) - set(_MODEL_OPTIONS))
    if other:
        raise InputError(f"{', '.join(other)}: not used with a trained model (model=...)")
    t0 = time.perf_counter()
    if isinstance(model, Transformer):
        net = model
    else:
        net = load_transformer(model, device=None if options.get("device") in (None, "auto") else options["device"],
                               precision=options.get("precision") or "auto")
    loaded = load_image(content, keep_alpha=keep_alpha)
    y = net.stylize(
        loaded.tensor, size=options.get("size"), content_scale=options.get("content_scale"),
        preserve_color=options.get("preserve_color") or "none",
    )
    alpha = None
    if loaded.alpha is not None:
        alpha = resize_to(loaded.alpha, tuple(y.shape[-2:])).clamp(0, 1)
    record = RunRecord(
        device=str(net.device), precision="bf16" if net.uses_bf16 else "fp32",
        backbone={"engine": "transformer", "arch": net.arch},
        options=_jsonable({k: v for k, v in options.items()}), seconds=time.perf_counter() - t0,
    )
    metadata = {**model_metadata(net), "styletx.content": loaded.name}
    return StylizeResult(image=y.cpu() if output == "tensor" else to_pil(y.cpu()), record=record, alpha=alpha,
                         metadata=metadata)
