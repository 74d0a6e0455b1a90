"""scikit-image's bundled photos as training pictures for feed-forward networks (the gallery and the benchmarks).

``TRAINING_PHOTOS`` are names of ``skimage.data`` functions that need no download; grey ones are converted to RGB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from PIL import Image

#: scikit-image's photos the gallery's transformer trains on (chelsea and astronaut, its shown pictures, left out)
TRAINING_PHOTOS = ("coffee", "rocket", "stereo_motorcycle", "immunohistochemistry", "hubble_deep_field", "retina",
                   "colorwheel", "camera", "brick", "clock", "coins", "horse", "moon", "page", "gravel", "grass")


def skimage_photo(name: str) -> Image.Image:
    """The RGB PIL image of ``skimage.data.<name>()`` (the first of a pair, e.g. stereo_motorcycle's left view)."""
    import numpy as np
    import skimage.data

    arr = getattr(skimage.data, name)()
    arr = arr[0] if isinstance(arr, tuple) else arr
    return Image.fromarray(np.asarray(arr)).convert("RGB")


def write_photos(names: Iterable[str], folder: Path) -> None:
    """Save each named photo as ``folder/<name>.png`` (the folder must exist)."""
    for name in names:
        skimage_photo(name).save(folder / f"{name}.png")
