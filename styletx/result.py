"""What a stylisation returns, whichever engine made it (the optimiser or a trained transformer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from PIL import Image
from torch import Tensor

from .image import save_image, to_pil
from .optimize import RunRecord


@dataclass
class StylizeResult:
    """The stylised image (PIL image, or a (1, 3, H, W) tensor in [0, 1] when asked) and the run's record."""

    image: Any
    record: RunRecord
    alpha: Optional[Tensor] = None
    metadata: Dict[str, str] = field(default_factory=dict)

    def save(self, path: Union[str, Path], *, overwrite: bool = False) -> Path:
        """Write the image atomically with the run's parameters in its metadata; returns the path."""
        return save_image(self.image, path, overwrite=overwrite, metadata=self.metadata, alpha=self.alpha)

    def _repr_png_(self) -> Optional[bytes]:  # notebooks show the picture
        import io

        pil = self.image if isinstance(self.image, Image.Image) else to_pil(self.image)
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        return buf.getvalue()
