"""Feature extraction with named layers: the frozen network wrapper that every backbone builds.

``extractor(x)`` takes (N, 3, H, W) float in [0, 1] (sRGB), normalises it with the ImageNet mean/std inside, and
returns ``{layer: (N, C, H', W')}`` for exactly the requested layers (in the autocast dtype when run under
autocast: losses convert to fp32). Backbones (:mod:`.vgg`, :mod:`.random_net`) build it from a list of nodes.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import InputError

__all__ = ["FeatureExtractor", "Node", "truncate", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (name, module, source): the node's output name, its module, and the name(s) it reads ("a+b": two inputs).
Node = Tuple[str, nn.Module, str]


def _mirrored(x: Tensor, m: int) -> Tensor:
    """(N, C, H, W) -> (N, C, H + 2m, W + 2m): ``x`` with an m-px half-sample mirror border (the edge row is
    repeated once, so every row has one copy), through which gradient flows back tapered: in full from the copy
    next to the edge, falling linearly to 1/m at m px out. (m <= H, W.)

    Why tapered: with the copies carrying their whole gradient, every pixel within m px of the edge is pulled
    twice by the deeper layers and the optimised image showed a seam m px in; with no gradient through them,
    the outermost rows were pulled by half their neighbourhood and came out a brighter, less stylised line
    (docs/backbones.md, 2026-12-03)."""
    rows = torch.cat([x[..., :m, :].flip(-2), x, x[..., -m:, :].flip(-2)], -2)
    live = torch.cat([rows[..., :m].flip(-1), rows, rows[..., -m:].flip(-1)], -1)
    dead = live.detach()
    h, w = x.shape[-2:]

    def taper(n: int) -> Tensor:  # per position along one side: 1 inside and on the first copy, then down to 1/m
        i = torch.arange(n + 2 * m, device=x.device)
        outside = torch.clamp(torch.maximum(m - i, i - (n + m - 1)), min=0)
        return (1 - (outside - 1).clamp(min=0) / m).to(x.dtype)

    weight = torch.minimum(taper(h).view(-1, 1), taper(w).view(1, -1))
    return dead + weight * (live - dead)  # the value of ``live``; its gradient scaled by ``weight``


class FeatureExtractor(nn.Module):
    """A frozen network whose intermediate outputs are addressed by name.

    The network is a list of nodes evaluated in order; node ``i`` is ``(name, module, source)`` where
    ``source`` is the name of the node it reads (``"input"`` = the normalised image; "a+b" = two inputs). ``forward`` stops after
    the deepest requested node and frees intermediates as soon as no later node reads them. ``context`` (px, a
    multiple of 16): the image is seen with that much mirrored border and every output cropped back to the
    image's own positions (:meth:`_with_context`).
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        layers: Sequence[str],
        description: Dict[str, str],
        *,
        context: int = 0,
    ) -> None:
        super().__init__()
        if context < 0 or context % 16:
            raise ValueError("FeatureExtractor context: a multiple of 16 px (the deepest stride)")
        self.context = int(context)
        names = [n for n, _, _ in nodes]
        self.node_names: Tuple[str, ...] = tuple(names)
        self.sources: Tuple[str, ...] = tuple(s for _, _, s in nodes)
        self.nodes = nn.ModuleList(m for _, m, _ in nodes)
        self.layers: Tuple[str, ...] = tuple(layers)
        self.description: Dict[str, str] = dict(description)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        wanted = set(self.layers)
        missing = wanted - set(names)
        if missing:
            raise InputError(f"layers: {', '.join(sorted(missing))} not in this network")
        # last node index that reads each name (so its tensor can be dropped afterwards)
        self._last_use: Dict[str, int] = {}
        for i, src in enumerate(self.sources):
            for one in src.split("+"):
                self._last_use[one] = i
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Always stays in eval mode (the extractor is frozen)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: (N, 3, H, W) in [0, 1] -> {layer: (N, C, H', W')} for the requested layers only."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"feature extractor: expected an (N, 3, H, W) image tensor, got shape {tuple(x.shape)}")
        if self.context:
            return self._with_context(x)
        return self._features(x)

    def _with_context(self, x: Tensor) -> Dict[str, Tensor]:
        """The features of ``x`` seen with ``context`` px of mirrored border around it, cropped back to the
        positions of ``x`` itself: no position the losses compare sits against the padding, so the edges of an
        optimised image are pulled like its inside (without it the weight-free backbone drew a frame about 8 px
        in: docs/backbones.md)."""
        m = self.context
        h, w = x.shape[-2:]
        if min(h, w) >= m:
            padded = _mirrored(x, m)
        else:  # too small to mirror m px: a replicated border, no gradient through it
            pad = (m, m, m, m)
            padded = F.pad(x, pad) + (F.pad(x.detach(), pad, mode="replicate") - F.pad(x.detach(), pad))
        out = self._features(padded)
        for name, y in out.items():
            stride = 2 ** round(math.log2(padded.shape[-2] / y.shape[-2]))
            c = m // stride  # exact for strides up to m; a coarser map (pool5) keeps its first cells
            out[name] = y[..., c:c + h // stride, c:c + w // stride]
        return out

    def _features(self, x: Tensor) -> Dict[str, Tensor]:
        values: Dict[str, Tensor] = {"input": (x - self.mean) / self.std}
        out: Dict[str, Tensor] = {}
        wanted = set(self.layers)
        for i, (name, module, src) in enumerate(zip(self.node_names, self.nodes, self.sources)):
            srcs = src.split("+")
            y = module(*(values[one] for one in srcs))
            for one in srcs:
                if self._last_use.get(one) == i and one not in wanted:
                    del values[one]
            values[name] = y
            if name in wanted:
                out[name] = y
                if len(out) == len(wanted):
                    break
        return {name: out[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, " + ", ".join(f"{k}={v}" for k, v in self.description.items())


def truncate(nodes: List[Node], layers: Sequence[str]) -> List[Node]:
    """Keep the nodes up to the deepest requested layer that the requested layers depend on."""
    names = [n for n, _, _ in nodes]
    unknown = [l for l in layers if l not in names]
    if unknown:
        raise InputError(
            f"layers: unknown layer(s) {', '.join(unknown)} (known: {', '.join(names)})"
        )
    if not layers:
        raise InputError("layers: give at least one layer")
    index = {n: i for i, n in enumerate(names)}
    needed = set(layers)
    for i in range(max(index[l] for l in layers), -1, -1):
        if names[i] in needed:
            needed.update(nodes[i][2].split("+"))
    return [node for node in nodes if node[0] in needed]
