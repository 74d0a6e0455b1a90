"""The weight-free backbone: a seeded random multi-scale conv network with VGG-style layer names.

It needs no download and is announced with a StyletxWarning when ``auto`` falls back to it (docs/backbones.md
has the design and its measured quality).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .extractor import FeatureExtractor, Node, truncate

__all__ = ["RandomNetConfig", "DEFAULT_RANDOM_CONFIG", "CLASSIC_RANDOM_CONFIG",
           "random_layer_names", "build_random"]


@dataclass(frozen=True)
class RandomNetConfig:
    """Shape of the weight-free backbone (docs/backbones.md has the measurements behind the defaults).

    Five stages at resolutions 1, 1/2, ..., 1/16 of the input. Stage k has ``relu{k}_1``: a bank of random
    convolutions with several kernel sizes (``widths[k-1]`` channels split evenly over ``kernels``) + ReLU, read
    by the style loss; ``relu{k}_2``: a 3x3 random conv (``content_width`` channels) + ReLU on relu{k}_1, one
    layer deeper (relu4_2 is the default content layer); and ``pool{k}`` (max or average pooling of relu{k}_2).
    ``feed="pyramid"`` (default): relu{k}_1 reads the image blurred and downsampled 2^(k-1) times
    (:class:`BlurDown`), so every style layer is one random layer on one pyramid level;
    ``feed="chain"``: relu{k}_1 reads pool{k-1} (a deep VGG-like chain; measured worse and slower).
    ``zero_mean``: subtract each filter's mean over inputs and taps, so responses ignore the overall brightness
    and respond to contrast, edges and colour differences. ``init``: "kaiming" (normal, fan-in, gain sqrt 2)
    or "orthogonal" (rows orthonormal, rescaled to the same variance; slower to build).
    ``content_detail``: relu{k}_2 also reads the image's 2^(k-1)-pixel blocks as channels (:class:`CatConv`);
    measured: lower content SSIM, slightly lower texture distance, so off by default.
    ``color_channels``: in ``color_stages`` stages from stage ``color_start`` on, relu{k}_1 also carries that
    many colour detectors (:class:`ColourBank`): ReLU(d . pixel + b) for random unit directions d in normalised
    RGB and thresholds b spread over the pixels' range, scaled by ``color_gain``. Their Gram matrix compares the
    joint colour distribution (a sliced-histogram description), which the zero-mean filters cannot see. The
    default has 64 detectors at gain 4 in stage 1; :data:`CLASSIC_RANDOM_CONFIG` is the network without them
    (the default before 2026-12-03). Measured on the held-out pairs of benchmarks/weightfree_quality.py:
    docs/backbones.md.
    ``context``: px of mirrored border the network sees around the image, cropped from every feature map
    (:class:`~styletx.features.extractor.FeatureExtractor`); 0 = none (the network before 2026-12-03, whose
    results had a frame about 8 px in from the edges).
    """

    widths: Tuple[int, ...] = (96, 192, 256, 384, 384)
    kernels: Tuple[int, ...] = (1, 3, 5, 7)
    content_width: int = 256
    feed: str = "pyramid"
    zero_mean: bool = True
    init: str = "kaiming"
    content_detail: bool = False
    color_channels: int = 64
    color_stages: int = 1
    color_gain: float = 4.0
    color_start: int = 1
    context: int = 16

    def __post_init__(self) -> None:
        if self.context < 0 or self.context % 16:
            raise ValueError("RandomNetConfig.context: a multiple of 16 px")
        if len(self.widths) != 5:
            raise ValueError("RandomNetConfig.widths: five stages")
        if self.feed not in ("chain", "pyramid"):
            raise ValueError("RandomNetConfig.feed: chain or pyramid")
        if self.init not in ("kaiming", "orthogonal"):
            raise ValueError("RandomNetConfig.init: kaiming or orthogonal")


DEFAULT_RANDOM_CONFIG = RandomNetConfig()
#: The weight-free network before 2026-12-03: zero-mean filter banks only, no colour detectors (nearly blind to
#: the style's palette: docs/backbones.md), no context border.
CLASSIC_RANDOM_CONFIG = RandomNetConfig(color_channels=0, color_gain=1.0, context=0)


class CatConv(nn.Module):
    """ReLU(conv3x3(concat(features, image patches))): patches = the image's 2^s x 2^s blocks as channels."""

    def __init__(self, in_ch: int, out_ch: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(in_ch + 3 * scale * scale, out_ch, 3, padding=1)

    def forward(self, features: Tensor, image: Tensor) -> Tensor:
        h, w = features.shape[-2:]
        s = self.scale
        patches = F.pixel_unshuffle(image[..., : h * s, : w * s], s) if s > 1 else image
        return F.relu(self.conv(torch.cat([features, patches.to(features.dtype)], dim=1)))


class MultiConv(nn.Module):
    """Parallel convolutions with different kernel sizes ('same' padding), outputs concatenated on channels."""

    def __init__(self, in_ch: int, out_ch: int, kernels: Sequence[int]) -> None:
        super().__init__()
        split = [out_ch // len(kernels) + (1 if i < out_ch % len(kernels) else 0) for i in range(len(kernels))]
        self.convs = nn.ModuleList(
            nn.Conv2d(in_ch, c, k, padding=k // 2) for c, k in zip(split, kernels)
        )

        self._merged: Optional[Tuple[Tensor, Tensor]] = None

    def merged(self) -> Tuple[Tensor, Tensor]:
        """One (out, in, k, k) kernel with every bank's filter centred in it, and the concatenated biases.

        A k x k filter zero-padded to K x K with 'same' padding gives the same output, so the banks run as
        one convolution (measured ~3x faster than four convolutions and a concatenation on a CPU).
        """
        weight = self.convs[0].weight
        if self._merged is None or self._merged[0].device != weight.device or self._merged[0].dtype != weight.dtype:
            size = max(c.kernel_size[0] for c in self.convs)
            kernels = []
            for c in self.convs:
                pad = (size - c.kernel_size[0]) // 2
                kernels.append(F.pad(c.weight, (pad, pad, pad, pad)))
            bias = torch.cat([c.bias for c in self.convs])
            self._merged = (torch.cat(kernels).contiguous(memory_format=torch.channels_last), bias)
        return self._merged

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.merged()
        pad = weight.shape[-1] // 2  # replicated edges: zero padding made the borders light up in results
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), weight, bias)


class ColourBank(nn.Module):
    """Colour detectors beside a filter bank: (N, 3, H, W) -> cat(ReLU(bank(x)), gain * ReLU(d . x + b)).

    ``d`` are random unit directions in the normalised RGB cube and ``b`` thresholds drawn uniformly from
    [-2, 2] (normalised pixels lie in about [-2.1, 2.6]); each channel responds to how far a pixel lies past one
    plane through colour space, so the channels' means and products describe where the pixel colours are.
    """

    def __init__(self, bank: nn.Module, channels: int, gain: float) -> None:
        super().__init__()
        self.bank = bank
        self.gain = gain
        self.colour = nn.Conv2d(3, channels, 1)

    def reset_colour(self, gen: torch.Generator) -> None:
        """Draw the directions and thresholds from ``gen``."""
        d = torch.randn(self.colour.weight.shape[0], 3, generator=gen)
        d = d / d.norm(dim=1, keepdim=True)
        b = torch.rand(self.colour.weight.shape[0], generator=gen) * 4 - 2
        with torch.no_grad():
            self.colour.weight.copy_(d.view_as(self.colour.weight))
            self.colour.bias.copy_(b)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.relu(self.bank(x)), self.gain * F.relu(self.colour(x))], dim=1)


class BlurDown(nn.Module):
    """Antialiased 2x downsampling of an image: a fixed binomial [1, 3, 3, 1] / 8 filter, stride 2.

    Output size floor(H / 2) x floor(W / 2), like 2x2 pooling, but the windows overlap, so the gradient that
    flows back from a coarse level is smooth instead of piecewise constant over 2x2 blocks (which shows up as
    a block grid in optimised images).
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", torch.empty(channels, 1, 4, 4), persistent=False)
        self.reset_kernel()

    def reset_kernel(self) -> None:
        """(Re)fill the fixed filter (also after ``to_empty``)."""
        if self.kernel.is_meta:
            return
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=self.kernel.device) / 8
        with torch.no_grad():
            self.kernel.copy_((taps[:, None] * taps[None, :]).expand(self.channels, 1, 4, 4))

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


def _init_conv(conv: nn.Conv2d, gen: torch.Generator, config: RandomNetConfig) -> None:
    w = conv.weight
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    if config.init == "orthogonal":
        flat = torch.empty(w.shape[0], fan_in)
        nn.init.orthogonal_(flat, gain=1.0, generator=gen)
        # rows are unit vectors: scale to Kaiming's fan-in variance (2 / fan_in per tap)
        # rows (or columns, when out > fan_in) are orthonormal: rescale to Kaiming's variance 2 / fan_in
        flat = flat * math.sqrt(2.0 * max(1.0, w.shape[0] / fan_in))
        w_new = flat.view_as(w)
    else:
        w_new = torch.randn(w.shape, generator=gen) * math.sqrt(2.0 / fan_in)
    if config.zero_mean:
        w_new = w_new - w_new.mean(dim=(1, 2, 3), keepdim=True)
    with torch.no_grad():
        w.copy_(w_new)
        conv.bias.zero_()


def _random_nodes(config: RandomNetConfig, pooling: str) -> List[Node]:
    nodes: List[Node] = []

    def pool() -> nn.Module:
        return nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)

    in_ch = 3
    for k in range(1, 6):
        width = config.widths[k - 1]
        if config.feed == "pyramid":
            src_name, src_ch = ("input" if k == 1 else f"image{k}"), 3
            if k > 1:
                nodes.append((f"image{k}", BlurDown(3), "input" if k == 2 else f"image{k - 1}"))
        else:
            src_name, src_ch = ("input" if k == 1 else f"pool{k - 1}"), in_ch
        bank = MultiConv(src_ch, width, config.kernels)
        colour_here = config.color_start <= k < config.color_start + config.color_stages
        if config.color_channels and colour_here and src_ch == 3:
            first: nn.Module = ColourBank(bank, config.color_channels, config.color_gain)
            width += config.color_channels
        else:
            first = nn.Sequential(bank, nn.ReLU())
        nodes.append((f"relu{k}_1", first, src_name))
        if config.content_detail:
            nodes.append((f"relu{k}_2", CatConv(width, config.content_width, 2 ** (k - 1)), f"relu{k}_1+input"))
        else:
            nodes.append(
                (f"relu{k}_2", nn.Sequential(nn.Conv2d(width, config.content_width, 3, padding=1,
                                                       padding_mode="replicate"), nn.ReLU()), f"relu{k}_1")
            )
        nodes.append((f"pool{k}", pool(), f"relu{k}_2"))
        in_ch = config.content_width
    return nodes


def build_random(
    layers: Sequence[str], pooling: str, seed: int, config: RandomNetConfig
) -> FeatureExtractor:
    with torch.device("meta"):  # no default init: every weight is drawn below
        full = _random_nodes(config, pooling)
    gen = torch.Generator().manual_seed(seed)
    colour_gen = torch.Generator().manual_seed(seed + 7919)  # its own stream: the other filters stay as they were
    # Draw every conv of the full network in order, so a layer's weights never depend on the truncation.
    for _, module, _ in full:
        module.to_empty(device="cpu")
        colour_convs = set()
        for sub in module.modules():
            if isinstance(sub, ColourBank):
                sub.reset_colour(colour_gen)
                colour_convs.add(id(sub.colour))
        for sub in module.modules():
            if isinstance(sub, nn.Conv2d) and id(sub) not in colour_convs:
                _init_conv(sub, gen, config)
            elif isinstance(sub, BlurDown):
                sub.reset_kernel()
    nodes = truncate(full, layers)
    desc = {"backbone": "random", "weights": f"random seed {seed}", "pooling": pooling,
            "config": ",".join(f"{k}={v}" for k, v in asdict(config).items())}
    return FeatureExtractor(nodes, layers, desc, context=config.context)


def random_layer_names() -> Tuple[str, ...]:
    """The weight-free backbone's layer names, in order (relu1_1, relu1_2, pool1, ..., pool5)."""
    return tuple(n for n, _, _ in _random_nodes(DEFAULT_RANDOM_CONFIG, "max") if not n.startswith("image"))
