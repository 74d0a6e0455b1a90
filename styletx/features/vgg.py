"""VGG19/VGG16 feature extractors with torchvision's layout and weights (or seeded random weights)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import WeightsError
from . import weights as wts
from .extractor import FeatureExtractor, truncate

__all__ = ["VGG_ARCHS", "vgg_layer_names", "build_vgg"]

WeightsArg = Union[str, "os.PathLike[str]", None]

# torchvision's VGG configurations (channels per conv, "M" = pool): "D" = VGG16, "E" = VGG19.
_VGG_CFG = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


VGG_ARCHS = tuple(_VGG_CFG)


def vgg_layer_names(arch: str) -> Tuple[str, ...]:
    names: List[str] = []
    block, conv = 1, 0
    for v in _VGG_CFG[arch]:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


def _vgg_modules(arch: str, n: int, pooling: str) -> List[nn.Module]:
    """The first ``n`` modules of torchvision's ``vgg.features`` (same indices), built on the meta device."""
    mods: List[nn.Module] = []
    in_ch = 3
    with torch.device("meta"):
        for v in _VGG_CFG[arch]:
            if len(mods) >= n:
                break
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
            else:
                mods += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
    return mods[:n]


def build_vgg(arch: str, layers: Sequence[str], weights: WeightsArg, pooling: str, seed: int) -> FeatureExtractor:
    """A frozen VGG ``arch`` extractor truncated after the deepest of ``layers``: weights from the file
    ``weights`` (torchvision's ``features.N`` keys), or, when None, torchvision's init drawn from ``seed``."""
    names = vgg_layer_names(arch)
    chain = [(name, None, names[i - 1] if i else "input") for i, name in enumerate(names)]
    keep = truncate(chain, layers)  # a chain: a prefix
    mods = _vgg_modules(arch, len(keep), pooling)
    convs = [(i, m) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
    if weights is None:
        gen = torch.Generator().manual_seed(seed)
        for _, m in convs:  # torchvision's VGG init, drawn in layer order from a private generator
            m.to_empty(device="cpu")
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(m.bias)
        source = f"random seed {seed}"
    else:
        path = Path(weights)
        sd = wts.load_state_dict(path)
        for i, m in convs:
            w, b = sd.get(f"features.{i}.weight"), sd.get(f"features.{i}.bias")
            if w is None or b is None:
                raise WeightsError(f"weight file {path} has no features.{i}.weight/bias: not a torchvision {arch} file")
            if tuple(w.shape) != tuple(m.weight.shape) or tuple(b.shape) != tuple(m.bias.shape):
                raise WeightsError(
                    f"weight file {path}: features.{i}.weight has shape {tuple(w.shape)}, "
                    f"expected {tuple(m.weight.shape)} for {arch}"
                )
            m.weight = nn.Parameter(w.detach().float().clone(), requires_grad=False)
            m.bias = nn.Parameter(b.detach().float().clone(), requires_grad=False)
        source = str(path)
    nodes = [(name, mods[i], src) for i, (name, _, src) in enumerate(keep)]
    return FeatureExtractor(nodes, layers, {"backbone": arch, "weights": source, "pooling": pooling})
