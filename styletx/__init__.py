"""styletx: neural style transfer for images and video.

``styletx.stylize(content, style, **options)`` optimises an image (Gatys et al.); with ``model=`` it runs a
trained feed-forward network (Johnson et al.). Options and their defaults: :class:`StylizeOptions`,
:class:`ModelOptions`, :class:`TrainOptions`.
"""

from ._version import __version__
from .api import StylizeResult, stylize, stylize_files, train
from .engines.feedforward.model import FeedForwardModel, Transformer, load_transformer, new_transformer
from .engines.feedforward.train import TrainResult
from .errors import CheckpointError, ImageError, InputError, StyletxError, StyletxWarning, WeightsError
from .export import export
from .io.image import load_image, save_image
from .options import ModelOptions, StylizeOptions, TrainOptions
from .results import FileDone, FrameDone, Iterate, RunRecord, VideoRecord
from .video import score_video, stylize_video

__all__ = [
    "__version__",
    "stylize",
    "stylize_files",
    "stylize_video",
    "score_video",
    "VideoRecord",
    "FrameDone",
    "StylizeResult",
    "StylizeOptions",
    "ModelOptions",
    "TrainOptions",
    "FeedForwardModel",
    "Transformer",
    "new_transformer",
    "load_transformer",
    "train",
    "TrainResult",
    "export",
    "Iterate",
    "RunRecord",
    "FileDone",
    "load_image",
    "save_image",
    "StyletxError",
    "InputError",
    "ImageError",
    "WeightsError",
    "CheckpointError",
    "StyletxWarning",
]
