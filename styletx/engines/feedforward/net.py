"""The feed-forward style networks (Johnson et al. 2016): architectures, layers, building one.

Four architectures, chosen by name:

* ``standard``: 9x9 conv in, two stride-2 convs (32, 64, 128 channels), five residual blocks at 128 channels,
  two nearest-upsample-then-3x3-conv layers, 9x9 conv out; instance norm and reflection padding throughout.
  Its parameter names follow the pytorch/examples ``fast_neural_style`` layout, so their published
  checkpoints load unchanged (see :mod:`.checkpoint`).
* ``slim``: for CPUs and video: a 4x pixel-unshuffle stem (3 -> 48 channels at 1/4 resolution), half the
  channels (16, 32, 64), depthwise-separable residual blocks, 3x3 convs in and out, a 4x pixel shuffle back.
  About 87x fewer multiply-adds per pixel than ``standard``; see docs/transformer.md for its measured cost
  and quality. Every output phase has its own weights in the last conv: a faint 4-px grid.
* ``slim-resize``: ``slim`` with a resize head out (a bilinear 4x resize then a 5x5 conv to RGB, folded into a
  3x3 conv at 1/4 resolution + the 4x pixel shuffle: :class:`ResizeConvHead`): no grid, the same cost.
* ``slim-2x``: ``slim-resize`` with one more upsample + 3x3 conv stage (4 channels at 1/2 resolution,
  ``ArchConfig.final_stage``) before a 2x resize head (bilinear 2x + 3x3 conv, folded into a 3x3 conv to 12
  channels at 1/2 + the 2x pixel shuffle): no grid, some freedom at half resolution. Its input skip goes into
  the head (``ArchConfig.skip_into_head``: the input averaged to 1/2 is three more head channels), so it can
  replace the photo's finest detail instead of only adding to it. That skip is instance-normalised with a
  learned affine (``ArchConfig.skip_norm``), so every picture's skip has the brightness and colour balance
  training found rather than the photo's own. Two options colour the skip otherwise: ``color_path`` (a 1x1 conv
  from the 1/4-resolution features, resized and added) and ``skip_map`` (a per-pixel colour map).

Every network takes (N, 3, H, W) float in [0, 1] and returns (N, 3, H, W) in about [0, 1] (unclamped, so
training keeps its gradients); any H and W: the input is reflection-padded to a multiple of 4 x unshuffle (and
to at least 16 px, 32 for ``slim``) on the bottom/right and the output cropped back, so pixels never move.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...color import LUMA_WEIGHTS
from ...errors import CheckpointError, InputError
from ...tensors import pad_to_multiple

__all__ = ["ArchConfig", "ARCHITECTURES", "HEADS", "arch_config", "TransformerNet", "ResizeConvHead", "build_network",
           "macs_per_pixel", "block_mean"]

#: Instance-norm epsilon (PyTorch's default, as in pytorch/examples).
_EPS = 1e-5


# --------------------------------------------------------------------------------------------- architectures

#: Upper bounds of the architecture fields a checkpoint may ask for: 16x the largest known network's channels,
#: blocks and kernels (a checkpoint asking for 100000 channels would allocate tens of GB before failing).
ARCH_LIMITS = {"channels": 2048, "res_blocks": 64, "kernel": 31, "unshuffle": 16, "value_range": 65535.0}


#: How the last layer reaches full resolution when the network works at 1/``unshuffle`` resolution (with
#: ``unshuffle`` 1 both are a plain conv): ``shuffle``, a free k x k conv to 3 * r^2 channels then a pixel shuffle
#: (every output phase has its own weights: a faint r-pixel grid); ``resize``, a bilinear r-times resize followed by
#: a full-resolution conv, folded into the same low-resolution conv + pixel shuffle (:class:`ResizeConvHead`).
HEADS = ("shuffle", "resize")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ArchConfig:
    """Shape of a transformer network. ``value_range`` is the pixel scale the weights expect (255 for
    pytorch/examples checkpoints); the network itself always takes and returns [0, 1]. ``input_skip``: the
    network's output is its input plus what the layers compute, with the last conv initialised to zero, so an
    untrained network is the identity and training only has to learn the change (checkpoints saved without
    the field load with it off). ``head``: how the last layer of a network at 1/``unshuffle`` resolution gets back
    to full resolution (:data:`HEADS`; checkpoints saved without the field load with ``shuffle``, which they had).
    ``final_stage``: channels of one more nearest-upsample + 3x3 conv stage (instance norm, ReLU) after
    ``deconv2``, at twice its resolution, so the head works at 1/(``unshuffle`` / 2) (:attr:`head_scale`); 0 (the
    default, and what checkpoints saved without the field load with) is none. ``final_norm``: whether that stage
    has its instance norm (``in6``; default true, what checkpoints saved without the field load with); false: conv
    + ReLU only (instance norm at 1/2 resolution is memory-bound). ``skip_into_head`` (with ``input_skip``): the
    input, averaged down to the head's resolution, joins the head's input as three more channels (their taps start
    as the identity, so an untrained network returns the input resized down and back up) instead of being added to
    the output at full resolution: the network can then replace the photo's finest detail, which a head at 1/2
    resolution cannot cancel when the input is added whole (default false, what checkpoints saved without the field
    load with). ``skip_gain`` (with ``skip_into_head``): the starting weight of those taps, in [0, 1]; the head's
    bias starts at (1 - gain) / 2 of the value range, so an untrained network returns the input, resized down and
    up, with its contrast scaled by the gain around mid-grey (1, the default: the input itself).
    ``skip_chroma`` (with ``skip_into_head``): how much of the input's colour those taps start with, in [0, 1]: each
    output channel starts as ``chroma`` x its own input channel + (1 - ``chroma``) x the input's luminance (BT.601
    weights), so 0 starts from the photo in grey and leaves the palette to the network to learn (1, the default:
    the photo in its own colours).
    ``head_zero_init`` (with ``input_skip``): the head's taps on the network's own features start at zero, so an
    untrained network is exactly its skip (default true); false: PyTorch's default (uniform) initialisation, so
    training starts from the skip with random texture over it. ``skip_gain``, ``skip_chroma`` and
    ``head_zero_init`` are only the initialisation: a trained network's weights are what they learned, and
    checkpoints saved without the fields load unchanged.
    ``color_path`` (with ``skip_into_head``): a 1x1 conv from ``deconv2``'s features to three channels, resized
    bilinearly to the head's resolution and added to the skip's channels (zero at the start): the network's deepest
    view sets the low-frequency colour directly instead of through the final stage's few channels (default false,
    what checkpoints saved without the field load with).
    ``skip_map`` (with ``skip_into_head``): hidden channels of a per-pixel colour map on the skip (1x1 conv 3 -> N,
    ReLU, 1x1 conv N -> 3, added to the skip; the second conv starts at zero): the photo's colours are remapped
    pixel by pixel toward the style's palette without moving an edge (default 0: none, what checkpoints saved
    without the field load with).
    ``skip_norm`` (with ``skip_into_head``): the skip is instance-normalised per image and channel with a learned
    affine (starting at mean 0.5, standard deviation 0.25 of the value range), so every picture's skip has the
    brightness, contrast and colour balance training found, whatever the photo's own (default false: the photo's
    own statistics, what checkpoints saved without the field load with)."""

    name: str = "standard"
    channels: Tuple[int, int, int] = (32, 64, 128)
    res_blocks: int = 5
    separable: bool = False
    kernel_in: int = 9
    kernel_out: int = 9
    value_range: float = 1.0
    unshuffle: int = 1
    input_skip: bool = False
    head: str = "shuffle"
    final_stage: int = 0
    final_norm: bool = True
    skip_into_head: bool = False
    skip_gain: float = 1.0
    head_zero_init: bool = True
    skip_chroma: float = 1.0
    color_path: bool = False
    skip_map: int = 0
    skip_norm: bool = False

    @property
    def head_scale(self) -> int:
        """The factor the head's pixel shuffle upsamples by: ``unshuffle``, halved by a final stage."""
        return self.unshuffle // 2 if self.final_stage else self.unshuffle

    def validated(self) -> "ArchConfig":
        """Self after checking every field's type and range (caps: :data:`ARCH_LIMITS`), else InputError."""
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"arch name: expected a name, got {self.name!r}")
        if not isinstance(self.channels, (tuple, list)) or len(self.channels) != 3 or not all(
                _is_int(c) and 1 <= c <= ARCH_LIMITS["channels"] for c in self.channels):
            raise InputError(f"arch channels: expected three integers in [1, {ARCH_LIMITS['channels']}], "
                             f"got {self.channels!r}")
        if not _is_int(self.res_blocks) or not 0 <= self.res_blocks <= ARCH_LIMITS["res_blocks"]:
            raise InputError(f"arch res_blocks: expected an integer in [0, {ARCH_LIMITS['res_blocks']}], "
                             f"got {self.res_blocks!r}")
        for name in ("kernel_in", "kernel_out"):
            k = getattr(self, name)
            if not _is_int(k) or not 1 <= k <= ARCH_LIMITS["kernel"] or k % 2 == 0:
                raise InputError(f"arch {name}: expected an odd integer in [1, {ARCH_LIMITS['kernel']}], got {k!r}")
        if not _is_int(self.unshuffle) or not 1 <= self.unshuffle <= ARCH_LIMITS["unshuffle"]:
            raise InputError(f"arch unshuffle: expected an integer in [1, {ARCH_LIMITS['unshuffle']}], "
                             f"got {self.unshuffle!r}")
        vr = self.value_range
        if isinstance(vr, bool) or not isinstance(vr, (int, float)) or not 0 < vr <= ARCH_LIMITS["value_range"]:
            raise InputError(f"arch value_range: expected a number in (0, {ARCH_LIMITS['value_range']}], got {vr!r}")
        for name in ("final_stage", "skip_map"):  # channel counts of optional layers
            n = getattr(self, name)
            if not _is_int(n) or not 0 <= n <= ARCH_LIMITS["channels"]:
                raise InputError(f"arch {name}: expected an integer in [0, {ARCH_LIMITS['channels']}] (0: none), "
                                 f"got {n!r}")
        fs = self.final_stage
        if fs and self.unshuffle % 2:
            raise InputError(f"arch final_stage: needs an even unshuffle, got unshuffle {self.unshuffle!r}")
        if self.head not in HEADS:
            raise InputError(f"arch head: expected one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head == "resize" and (self.head_scale < 2 or self.kernel_out != 3):
            raise InputError("arch head: 'resize' needs an unshuffle of at least 2 (4 with a final stage) and "
                             f"kernel_out 3, got unshuffle {self.unshuffle!r}, final_stage {fs!r}, "
                             f"kernel_out {self.kernel_out!r}")
        if self.skip_into_head is True and (self.input_skip is not True or self.head != "resize"):
            raise InputError("arch skip_into_head: needs input_skip and the resize head")
        for name in ("skip_gain", "skip_chroma"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InputError(f"arch {name}: expected a number in [0, 1], got {v!r}")
            if v != 1 and self.skip_into_head is not True:
                raise InputError(f"arch {name}: needs skip_into_head (the skip's taps in the head)")
        for name in ("separable", "input_skip", "final_norm", "skip_into_head", "head_zero_init", "color_path",
                     "skip_norm"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"arch {name}: expected true or false, got {getattr(self, name)!r}")
        for name in ("color_path", "skip_map", "skip_norm"):  # layers on the skip into the head
            if getattr(self, name) and self.skip_into_head is not True:
                raise InputError(f"arch {name}: needs skip_into_head (it works on the skip's channels)")
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
        if isinstance(values.get("channels"), list):
            values["channels"] = tuple(values["channels"])
        return cls(**values).validated()


ARCHITECTURES: Dict[str, ArchConfig] = {
    "standard": ArchConfig("standard"),
    "slim": ArchConfig(
        "slim", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3, unshuffle=4,
        input_skip=True,
    ),
    #: ``slim`` with the resize head: no grid, the same cost; not the default (issue 9's quality bar against
    #: ``standard`` is not met at every budget measured: docs/benchmarks.md, 2026-12-03).
    "slim-resize": ArchConfig(
        "slim-resize", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3, unshuffle=4,
        input_skip=True, head="resize",
    ),
    #: ``slim-resize`` with a final stage of 4 channels at 1/2 resolution (instance norm), a 2x resize head, and
    #: the input skip into the head (issue 9: 8 channels before 2026-12-03's third attempt, over the speed bar in
    #: ONNX Runtime; the skip added at full resolution before its fourth, which left the photo's fine detail
    #: whole and the style weak: docs/benchmarks.md, 2026-12-03). Trained from the photo at half its colour
    #: (skip_chroma 0.5, chosen on generated and photo tuning sets, 2026-12-04, sixth attempt) with random texture
    #: over it (head_zero_init false, fifth attempt: from the photo alone, 400 steps kept it nearly whole with
    #: little of the style's colour; from half its contrast, skip_gain 0.5, the gallery's photos lost their subject).
    #: Since the seventh attempt (2026-12-04, evening) its skip is instance-normalised (skip_norm: the photo's own
    #: brightness had kept its colour 16-20 % further from the style's than standard's; a colour path from the
    #: features or a per-pixel colour map of the skip closed less of it), and with the colour taken care of the
    #: head's feature taps start at zero again (head_zero_init: random ones cost content, chosen on tuning sets).
    "slim-2x": ArchConfig(
        "slim-2x", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3, unshuffle=4,
        input_skip=True, head="resize", final_stage=4, skip_into_head=True, head_zero_init=True, skip_chroma=0.5,
        skip_norm=True,
    ),
}


def arch_config(arch: Union[str, ArchConfig], **overrides: Any) -> ArchConfig:
    """The :class:`ArchConfig` of a named architecture (:data:`ARCHITECTURES`), with options overridden."""
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


def resize_fold(r: int, kernel: int) -> Tensor:
    """(r, 3, kernel) weights: ``[p, d + 1, a]`` is how much low-resolution pixel ``q + d`` contributes, through a
    bilinear r-times resize (half-pixel centres, as ``F.interpolate(align_corners=False)``), to the full-resolution
    pixel ``r * q + p + a - kernel // 2`` (tap ``a`` of a full-resolution conv for output phase ``p``)."""
    h = kernel // 2
    m = torch.zeros(r, 3, kernel, dtype=torch.float64)
    for p in range(r):
        for a in range(kernel):
            pos = (p + a - h + 0.5) / r - 0.5  # the full-res pixel's centre in low-res pixel units
            for d in (-1, 0, 1):
                m[p, d + 1, a] = max(0.0, 1.0 - abs(pos - d))
    return m


class ResizeConvHead(nn.Module):
    """The last layer of a network at 1/r resolution without a grid: a bilinear r-times resize of its input, then
    a ``2 * (r // 2) + 1`` square conv to ``cout`` channels at full resolution (``conv2d.weight``, ``conv2d.bias``
    hold that full-resolution conv).

    Computed folded: each of the r x r output phases of "resize then conv" is a 3x3 conv of the low-resolution
    input (the resize reaches one low-resolution pixel either side, and the kernel radius r // 2 stays within
    it), so the layer runs as one reflection-padded 3x3 conv to ``cout * r * r`` channels, in the channel order
    ``F.pixel_shuffle(., r)`` expects: the same cost and graph as the ``shuffle`` head. Unlike that head's free
    per-phase weights, every phase's folded kernel sums to the same total, so a flat input gives a flat output
    and there is no fixed r-pixel pattern.
    """

    def __init__(self, cin: int, cout: int, r: int) -> None:
        super().__init__()
        self.r = r
        kernel = 2 * (r // 2) + 1
        fold = resize_fold(r, kernel)
        if not torch.allclose(fold.sum(dim=1), torch.ones(r, kernel, dtype=torch.float64)):
            raise ValueError(f"ResizeConvHead: a {kernel}-px kernel does not fold into 3x3 at r={r}")
        self.register_buffer("fold", fold.float(), persistent=False)
        self.conv2d = nn.Conv2d(cin, cout, kernel)

    def folded(self) -> Tuple[Tensor, Optional[Tensor]]:
        """The (cout * r^2, cin, 3, 3) low-resolution kernel and (cout * r^2,) bias equal to the layer."""
        w = self.conv2d.weight
        m = self.fold.to(w.dtype)
        k = torch.einsum("pia,qjb,ocab->opqcij", m, m, w).reshape(-1, w.shape[1], 3, 3)
        b = self.conv2d.bias
        return k, (b.repeat_interleave(self.r * self.r) if b is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        k, b = self.folded()
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, b)


def block_mean(x: Tensor, r: int) -> Tensor:
    """(N, C, H, W) -> (N, C, H / r, W / r): the mean of each r x r block (H and W multiples of r), as
    ``F.avg_pool2d(x, r)``, summed from strided row slices then column slices (on one CPU thread at 1280x720,
    r = 2: about 2 ms against 15 for ``avg_pool2d``)."""
    if r == 1:
        return x
    rows = x[..., 0::r, :]
    for i in range(1, r):
        rows = rows + x[..., i::r, :]
    blocks = rows[..., 0::r]
    for j in range(1, r):
        blocks = blocks + rows[..., j::r]
    return blocks * (1.0 / (r * r))


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
        c_head = c1
        if config.final_stage:
            c_head = config.final_stage
            self.stage2x = UpsampleConvLayer(c1, c_head, 3)
            if config.final_norm:
                self.in6 = nn.InstanceNorm2d(c_head, affine=True, eps=_EPS)
        #: the factor the head's pixel shuffle upsamples by (``unshuffle``, halved by a final stage)
        self.head_scale = int(config.head_scale)
        r = self.head_scale
        #: the input, averaged to the head's resolution, is three more channels of the head's input
        self.skip_into_head = bool(config.skip_into_head)
        c_in = c_head + 3 if self.skip_into_head else c_head
        if config.head == "resize" and r > 1:
            self.deconv3: nn.Module = ResizeConvHead(c_in, 3, r)
        else:
            self.deconv3 = ConvLayer(c_in, 3 * r * r, config.kernel_out)
        #: the input is added to the output at full resolution
        self.input_skip = bool(config.input_skip) and not self.skip_into_head
        if config.input_skip and config.head_zero_init:  # start as the identity: output = input + 0
            nn.init.zeros_(self.deconv3.conv2d.weight)
            nn.init.zeros_(self.deconv3.conv2d.bias)
        if self.skip_into_head:
            k = self.deconv3.conv2d.weight.shape[-1]
            gain, chroma = float(config.skip_gain), float(config.skip_chroma)
            # output channel c = gain * (chroma * input c + (1 - chroma) * luminance): a desaturation, then the gain
            taps = gain * (chroma * torch.eye(3) + (1 - chroma) * torch.tensor(LUMA_WEIGHTS).expand(3, 3))
            with torch.no_grad():
                self.deconv3.conv2d.weight[:, c_head:] = 0.0
                self.deconv3.conv2d.weight[:, c_head:, k // 2, k // 2] = taps
                self.deconv3.conv2d.bias.fill_((1.0 - gain) / 2 * float(config.value_range))
        if config.color_path:  # deconv2's features -> a colour offset for the skip, zero at the start (built last: the
            # other layers draw the same random numbers as without it)
            self.color1x1 = nn.Conv2d(c1, 3, 1)
            nn.init.zeros_(self.color1x1.weight)
            nn.init.zeros_(self.color1x1.bias)
        if config.skip_map:  # a per-pixel colour map of the skip, zero at the start (built last, as above)
            self.skip_map1 = nn.Conv2d(3, int(config.skip_map), 1)
            self.skip_map2 = nn.Conv2d(int(config.skip_map), 3, 1)
            nn.init.zeros_(self.skip_map2.weight)
            nn.init.zeros_(self.skip_map2.bias)
        if config.skip_norm:  # the skip's per-image statistics replaced by learned ones (registered last: the tiled
            # path finds instance norms in registration order, and this one runs after every other)
            self.skip_in = nn.InstanceNorm2d(3, affine=True, eps=_EPS)
            nn.init.constant_(self.skip_in.weight, 0.25 * float(config.value_range))
            nn.init.constant_(self.skip_in.bias, 0.5 * float(config.value_range))
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
        color = self.color1x1(y) if self.config.color_path else None
        if self.config.final_stage:
            y = self.stage2x(y)
            y = F.relu(self.in6(y) if self.config.final_norm else y)
        if self.skip_into_head:
            skip = block_mean(x_in, self.head_scale)
            if self.config.skip_norm:
                skip = self.skip_in(skip)
            if self.config.skip_map:
                skip = skip + self.skip_map2(F.relu(self.skip_map1(skip)))
            if color is not None:
                if color.shape[-1] != skip.shape[-1]:  # deconv2 at 1/unshuffle, the head at 1/head_scale
                    color = F.interpolate(color, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                skip = skip + color
            y = torch.cat([y, skip], 1)
        y = self.deconv3(y)
        if self.head_scale > 1:
            y = self.depth_to_space(y) if hasattr(self, "depth_to_space") else F.pixel_shuffle(y, self.head_scale)
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
    c_head = c1
    if cfg.final_stage:  # an upsample + 3x3 conv at 2x (as executed, 4x the positions of deconv2's input)
        c_head = cfg.final_stage
        m += 9 * c1 * c_head * 4
    # the head: k x k (3x3 folded for resize) to 3 * s^2 channels at r2 / s^2 positions (s = head_scale)
    c_in = c_head + 3 if cfg.skip_into_head else c_head  # the input's three channels joining the head
    if cfg.color_path:  # a 1x1 conv to three channels at deconv2's resolution (1/unshuffle)
        m += c1 * 3
    if cfg.skip_map:  # two 1x1 convs, 3 -> N -> 3, at the head's resolution (1/head_scale)
        m += 6 * cfg.skip_map * (cfg.unshuffle // cfg.head_scale) ** 2
    m += cfg.kernel_out**2 * c_in * 3 * r2
    return float(m) / r2
