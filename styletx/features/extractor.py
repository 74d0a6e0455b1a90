"""Feature extraction with named layers: the frozen network wrapper that every backbone builds.

``extractor(x)`` takes (N, 3, H, W) float in [0, 1] (sRGB), normalises it with the ImageNet mean/std inside, and
returns ``{layer: (N, C, H', W')}`` for exactly the requested layers (in the autocast dtype when run under
autocast: losses convert to fp32). Backbones (:mod:`.vgg`, :mod:`.random_net`) build it from a list of nodes.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["FeatureExtractor", "Node", "truncate", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (name, module, source): the node's output name, its module, and the name(s) it reads ("a+b": two inputs).
Node = Tuple[str, nn.Module, str]


class FeatureExtractor(nn.Module):
    """A frozen network whose intermediate outputs are addressed by name.

    The network is a list of nodes evaluated in order; node ``i`` is ``(name, module, source)`` where
    ``source`` is the name of the node it reads (``"input"`` = the normalised image; "a+b" = two inputs). ``forward`` stops after
    the deepest requested node and frees intermediates as soon as no later node reads them.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        layers: Sequence[str],
        description: Dict[str, str],
    ) -> None:
        super().__init__()
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
