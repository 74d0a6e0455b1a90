"""The standard transformer rewritten for fp32 CPU inference: Winograd F(4x4, 3x3) convolutions, channels-last
(N, H, W, C) activations, and ``torch.compile`` (inductor) fusing pads, norms, ReLUs and the Winograd
transforms around one batched matrix multiply per convolution (see :mod:`styletx.winograd`).

Layer by layer (all exact up to float rounding; tested against the plain network):

* ``conv1`` (9x9, 3 -> 32) and the two stride-2 convs: oneDNN's direct convolution on channels-last data
  (the 3-channel input leaves Winograd nothing to save; stride 2 does not fit F(4, 3));
* the residual blocks' ten 3x3 convs: Winograd, 4x fewer multiply-adds;
* ``deconv1``/``deconv2`` (nearest 2x upsample + 3x3 conv): one Winograd 3x3 conv with 4x the channels on the
  low-resolution input, then depth-to-space (1.2 GMAC instead of 4.8 / 2.1 for the sub-pixel form at 512x512);
* ``deconv3`` (9x9, 32 -> 3): space-to-depth by 4, a Winograd 3x3 conv 512 -> 48, depth-to-space.

Each stage is compiled once per input shape (the five residual blocks share one compiled function; their
weights are arguments, not constants), and inductor's on-disk cache makes later processes start in seconds.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import winograd as W

#: Space-to-depth factor for the 9x9 output conv (a (2r+1)x(2r+1) kernel becomes 3x3 blocks).
_BLOCK = 4


def supports(net: "torch.nn.Module") -> bool:
    """Whether ``net`` (a :class:`~.net.TransformerNet`) has the layout this rewrite handles:
    full convolutions in the residual blocks, no pixel-unshuffle stem, 3x3 upsample convs and a 9x9 output conv."""
    cfg = getattr(net, "config", None)
    return (
        cfg is not None
        and not cfg.separable
        and cfg.unshuffle == 1
        and not cfg.input_skip
        and cfg.kernel_out == 2 * _BLOCK + 1
        and cfg.kernel_in % 2 == 1
    )


def _norm_params(norm: "torch.nn.InstanceNorm2d") -> Tuple[Tensor, Tensor, float]:
    return norm.weight.detach().clone(), norm.bias.detach().clone(), float(norm.eps)


def _conv_params(conv: "torch.nn.Conv2d") -> Tuple[Tensor, Tensor]:
    return conv.weight.detach().clone(), conv.bias.detach().clone()


# ------------------------------------------------------------------------------------------------- stages
# Plain functions of tensors (weights as arguments), so one compiled graph serves every layer of the same shape.


def _direct(x: Tensor, weight: Tensor, bias: Tensor, pad: int, stride: int) -> Tensor:
    """Reflection-padded direct conv of NHWC ``x`` (oneDNN, channels-last); returns NHWC. Here ``F.pad`` is the
    faster pad (the head stage took 92 ms with it, 215 ms with :func:`winograd.reflect_pad`)."""
    y = x.permute(0, 3, 1, 2)
    if pad:
        y = F.pad(y, (pad,) * 4, mode="reflect")
    return F.conv2d(y, weight, bias, stride=stride).permute(0, 2, 3, 1)


def _norm_relu(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    return torch.relu(W.instance_norm(x, weight, bias, eps))


def head_stage(x: Tensor, p: Dict[str, Tensor], eps: Tuple[float, float, float], k_in: int, scale: float) -> Tensor:
    """(N, 3, H, W) NCHW input in [0, 1] -> (N, H/4, W/4, C3) NHWC: conv1, conv2, conv3 with norms and ReLUs."""
    y = x.permute(0, 2, 3, 1)
    if scale != 1.0:
        y = y * scale
    y = _norm_relu(_direct(y, p["conv1.w"], p["conv1.b"], k_in // 2, 1), p["in1.w"], p["in1.b"], eps[0])
    y = _norm_relu(_direct(y, p["conv2.w"], p["conv2.b"], 1, 2), p["in2.w"], p["in2.b"], eps[1])
    return _norm_relu(_direct(y, p["conv3.w"], p["conv3.b"], 1, 2), p["in3.w"], p["in3.b"], eps[2])


def res_stage(x: Tensor, u1: Tensor, b1: Tensor, g1: Tensor, be1: Tensor, u2: Tensor, b2: Tensor, g2: Tensor,
              be2: Tensor, eps1: float, eps2: float) -> Tensor:
    """One residual block on NHWC ``x``: x + IN(conv(relu(IN(conv(x))))), both convs Winograd."""
    y = _norm_relu(W.conv3x3(W.reflect_pad(x, 1), u1, b1), g1, be1, eps1)
    return x + W.instance_norm(W.conv3x3(W.reflect_pad(y, 1), u2, b2), g2, be2, eps2)


def up_stage(y: Tensor, p: Dict[str, Tensor], eps: Tuple[float, float]) -> Tensor:
    """(N, H/4, W/4, C3) NHWC -> (N, H/4 + 2, W/4 + 2, 16*C1): the two upsample convs (Winograd, then
    depth-to-space) with norms and ReLUs, then the output conv's reflection pad and space-to-depth by 4
    (materialised: the output conv's tile gather from it is then a plain strided read)."""
    y = W.depth_to_space(W.conv3x3(W.replicate_pad1(y), p["deconv1.u"], p["deconv1.b"]), 2)
    y = _norm_relu(y, p["in4.w"], p["in4.b"], eps[0])
    y = W.depth_to_space(W.conv3x3(W.replicate_pad1(y), p["deconv2.u"], p["deconv2.b"]), 2)
    y = _norm_relu(y, p["in5.w"], p["in5.b"], eps[1])
    return W.space_to_depth(W.reflect_pad(y, _BLOCK), _BLOCK).contiguous()


def out_stage(y: Tensor, u: Tensor, bias: Tensor, scale: float) -> Tensor:
    """The 9x9 output conv on the space-to-depth grid (Winograd 3x3), back to pixels: -> (N, 3, H, W) NCHW."""
    y = W.depth_to_space(W.conv3x3(y, u, bias), _BLOCK)
    if scale != 1.0:
        y = y * scale
    return y.permute(0, 3, 1, 2)


class WinogradNet:
    """Inference-only form of a standard :class:`~styletx.engines.feedforward.net.TransformerNet` on the CPU.

    ``__call__``: (N, 3, H, W) float32 input padded as the network's ``body`` expects (sides multiples of 4,
    >= 16) -> (N, 3, H, W) float32, unclamped. ``compiled=False`` runs the same functions eagerly (slower than
    the plain network; for tests). Each new input shape costs a build (see :meth:`accepts`).
    """

    #: Input shapes built at most; :meth:`accepts` says no to further ones (each build takes 40-70 s, and
    #: torch._dynamo stops compiling a function after its cache_size_limit shapes, 8 by default).
    MAX_SHAPES = 4

    def __init__(self, net: "torch.nn.Module", *, compiled: bool = True) -> None:
        if not supports(net):
            raise ValueError("WinogradNet: only the standard layout (full 3x3 residual convs, 9x9 output conv)")
        p: Dict[str, Tensor] = {}
        for name in ("conv1", "conv2", "conv3"):
            w, b = _conv_params(getattr(net, name).conv2d)
            p[f"{name}.w"], p[f"{name}.b"] = w.contiguous(memory_format=torch.channels_last), b
        for i in range(1, 6):
            p[f"in{i}.w"], p[f"in{i}.b"], _ = _norm_params(getattr(net, f"in{i}"))
        for name in ("deconv1", "deconv2"):
            w, b = _conv_params(getattr(net, name).conv2d)
            p[f"{name}.u"], p[f"{name}.b"] = W.kernel_transform(W.upsample_conv_kernel(w)), b.repeat(4)
        w, b = _conv_params(net.deconv3.conv2d)
        p["deconv3.u"], p["deconv3.b"] = W.kernel_transform(W.blocked_kernel(w, _BLOCK)), b.repeat(_BLOCK**2)
        self.params = p
        self.head_eps = tuple(float(getattr(net, f"in{i}").eps) for i in (1, 2, 3))
        self.tail_eps = tuple(float(getattr(net, f"in{i}").eps) for i in (4, 5))
        self.blocks: List[Tuple] = []
        for block in net.res_blocks():
            w1, b1 = _conv_params(block.conv1.conv2d)
            w2, b2 = _conv_params(block.conv2.conv2d)
            g1, be1, e1 = _norm_params(block.in1)
            g2, be2, e2 = _norm_params(block.in2)
            self.blocks.append((W.kernel_transform(w1), b1, g1, be1, W.kernel_transform(w2), b2, g2, be2, e1, e2))
        self.kernel_in = int(net.config.kernel_in)
        self.value_range = float(net.value_range)
        self.compiled = compiled
        self.shapes: set = set()
        wrap: Callable[[Callable], Callable] = (
            (lambda f: torch.compile(f, dynamic=False)) if compiled else (lambda f: f)
        )
        self._head, self._res = wrap(head_stage), wrap(res_stage)
        self._up, self._out = wrap(up_stage), wrap(out_stage)

    def accepts(self, shape: Tuple[int, ...]) -> bool:
        """Whether an input of ``shape`` runs here: already built, or fewer than MAX_SHAPES built so far."""
        return not self.compiled or tuple(shape) in self.shapes or len(self.shapes) < self.MAX_SHAPES

    def __call__(self, x: Tensor) -> Tensor:
        self.shapes.add(tuple(x.shape))
        with torch.inference_mode():
            y = self._head(x, self.params, self.head_eps, self.kernel_in, self.value_range)
            for block in self.blocks:
                y = self._res(y, *block)
            y = self._up(y, self.params, self.tail_eps)
            return self._out(y, self.params["deconv3.u"], self.params["deconv3.b"], 1.0 / self.value_range)
