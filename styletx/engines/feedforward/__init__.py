"""The feed-forward engine (Johnson et al. 2016): networks, exact inference rewrites, backends, the inference
model, checkpoints and training.
"""

from .checkpoint import CHECKPOINT_FORMAT, convert_pytorch_examples
from .model import FeedForwardModel, Transformer, as_model, load_transformer, new_transformer
from .net import ARCHITECTURES, ArchConfig, TransformerNet, build_network, macs_per_pixel
from .train import TrainProgress, TrainResult, train_network

__all__ = [
    "ARCHITECTURES",
    "ArchConfig",
    "CHECKPOINT_FORMAT",
    "FeedForwardModel",
    "Transformer",
    "TransformerNet",
    "TrainProgress",
    "TrainResult",
    "as_model",
    "build_network",
    "convert_pytorch_examples",
    "load_transformer",
    "macs_per_pixel",
    "new_transformer",
    "train_network",
]
