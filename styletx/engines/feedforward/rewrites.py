"""Exact inference rewrites of a trained network: the same output up to float rounding, less work.

:func:`inference_network` turns each nearest-upsample + 3x3 conv into a sub-pixel conv on the low-resolution
input, and a ``resize`` head into its folded low-resolution conv; :func:`shuffle_as_convs` expresses pixel
(un)shuffles as one-hot convolutions (faster in ONNX Runtime).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .net import ConvLayer, ResizeConvHead, TransformerNet, UpsampleConvLayer
from .winograd import upsample_conv_kernel

__all__ = ["SubPixelUpsampleConv", "SubPixelUpsampleConv3", "folded_head", "fold_resize_head", "SpaceToDepthConv", "DepthToSpaceConv",
           "shuffle_as_convs", "inference_network"]


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


class SubPixelUpsampleConv3(nn.Module):
    """:class:`SubPixelUpsampleConv` as one 3x3 conv (to 4 x Cout channels, each phase's 2x2 taps in its corner of
    the window, zeros elsewhere) of the replicate-padded low-resolution input, then a 2x pixel shuffle: the same
    numbers, 36 instead of 16 taps but one conv op (ONNX Runtime: no Resize and no pad at 2x)."""

    def __init__(self, layer: UpsampleConvLayer) -> None:
        super().__init__()
        w = layer.conv2d.weight.detach()
        if w.shape[-1] != 3 or w.shape[-2] != 3:
            raise ValueError("SubPixelUpsampleConv3 needs a 3x3 kernel")
        folded = upsample_conv_kernel(w).reshape(2, 2, *w.shape)  # (a, b, Cout, Cin, 3, 3)
        k = folded.permute(2, 0, 1, 3, 4, 5).reshape(-1, *w.shape[1:])  # channel c * 4 + a * 2 + b
        self.conv2d = nn.Conv2d(w.shape[1], k.shape[0], 3, bias=layer.conv2d.bias is not None)
        with torch.no_grad():
            self.conv2d.weight.copy_(k)
            if layer.conv2d.bias is not None:
                self.conv2d.bias.copy_(layer.conv2d.bias.detach().repeat_interleave(4))

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate")), 2)


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
        if depth_to_space and net.head_scale > 1:
            net.depth_to_space = DepthToSpaceConv(3, net.head_scale)
    return net


def folded_head(head: ResizeConvHead) -> ConvLayer:
    """The :class:`ResizeConvHead`'s folded form as a plain 3x3 :class:`ConvLayer` (the same numbers: the fold
    is computed once instead of at every call)."""
    k, b = head.folded()
    with torch.random.fork_rng(devices=[]):  # the throw-away default init must not advance the global RNG
        layer = ConvLayer(k.shape[1], k.shape[0], 3)
    with torch.no_grad():
        layer.conv2d.weight.copy_(k)
        if b is None:
            layer.conv2d.bias = None
        else:
            layer.conv2d.bias.copy_(b)
    return layer.to(k.device)


def fold_resize_head(net: TransformerNet) -> TransformerNet:
    """Replace ``net``'s :class:`ResizeConvHead` (if it has one) by :func:`folded_head`; returns ``net``."""
    if isinstance(net.deconv3, ResizeConvHead):
        net.deconv3 = folded_head(net.deconv3)
    return net


def inference_network(net: TransformerNet) -> TransformerNet:
    """A copy of ``net`` for inference only: upsample-convs rewritten as sub-pixel convs (same output up to
    float rounding), no autograd state."""
    fast = copy.deepcopy(net).eval()
    for name in ("deconv1", "deconv2", "stage2x"):
        layer = getattr(fast, name, None)
        if isinstance(layer, UpsampleConvLayer) and layer.conv2d.kernel_size == (3, 3):
            setattr(fast, name, SubPixelUpsampleConv(layer))
    fold_resize_head(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast
