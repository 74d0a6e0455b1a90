"""Feature extractors with named layers: ImageNet VGG19/VGG16 and the weight-free backbone, and their weights.

``extractor_for(backbone, weights, layers)`` is what the engines use: it picks the backbone (``auto`` falls back
to the weight-free one with a warning), builds a frozen, eval-mode :class:`FeatureExtractor` truncated after the
deepest requested layer, in channels_last memory format.
"""

from .backbones import BACKBONES, build_extractor, extractor_for, layer_names, resolve_backbone
from .extractor import FeatureExtractor
from .random_net import CLASSIC_RANDOM_CONFIG, DEFAULT_RANDOM_CONFIG, RandomNetConfig

__all__ = [
    "BACKBONES",
    "FeatureExtractor",
    "RandomNetConfig",
    "DEFAULT_RANDOM_CONFIG",
    "CLASSIC_RANDOM_CONFIG",
    "build_extractor",
    "extractor_for",
    "layer_names",
    "resolve_backbone",
]
