"""styletx: neural style transfer for images and video.

``styletx.stylize(content, style, **options)`` optimises an image (Gatys et al.); with ``model=`` it runs a
trained feed-forward transformer (Johnson et al.). Options and their defaults: :class:`StylizeOptions`.
"""

from ._version import __version__
from .api import stylize
from .result import StylizeResult
from .errors import CheckpointError, ImageError, InputError, StyletxError, StyletxWarning, WeightsError
from .image import load_image, save_image
from .optimize import Iterate, RunRecord
from .options import StylizeOptions, TrainOptions
from .transformer import Transformer, load_transformer, new_transformer
from .train import TrainResult, train  # noqa: E402  (the function shadows the submodule's name on purpose)
from .export import export  # noqa: E402

__all__ = [
    "__version__",
    "stylize",
    "StylizeResult",
    "StylizeOptions",
    "TrainOptions",
    "Transformer",
    "new_transformer",
    "load_transformer",
    "train",
    "TrainResult",
    "export",
    "Iterate",
    "RunRecord",
    "load_image",
    "save_image",
    "StyletxError",
    "InputError",
    "ImageError",
    "WeightsError",
    "CheckpointError",
    "StyletxWarning",
]
