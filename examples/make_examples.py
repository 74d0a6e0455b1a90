"""Regenerate the bundled example images (run from the repo root: python examples/make_examples.py).

Content pictures come from scikit-image's bundled data (public domain / CC0, see examples/README.md);
the style pictures are drawn here from seeded noise, so every example image may be shipped freely.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data, transform

HERE = Path(__file__).resolve().parent


def _save(arr: np.ndarray, name: str) -> None:
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), "RGB")
    img.save(HERE / name, quality=92, subsampling=0)
    print(HERE / name, img.size)


def _resize(arr: np.ndarray, longest: int) -> np.ndarray:
    h, w = arr.shape[:2]
    s = longest / max(h, w)
    return transform.resize(arr, (round(h * s), round(w * s)), anti_aliasing=True)


def swirl_strokes(size: int = 384, seed: int = 7) -> np.ndarray:
    """Brush-stroke swirls: noise smeared along a field of vortices (line integral convolution), in a night palette."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    vx, vy = np.zeros_like(xx), np.zeros_like(yy)
    for _ in range(7):  # vortices of random sign, position and reach
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        dx, dy = xx - cx, yy - cy
        fall = np.exp(-(dx**2 + dy**2) / (2 * r**2)) * rng.choice([-1, 1])
        vx, vy = vx - dy * fall / r, vy + dx * fall / r
    vx += 0.3  # a gentle drift to the right, like wind
    norm = np.hypot(vx, vy) + 1e-6
    vx, vy = vx / norm, vy / norm
    noise = ndimage.gaussian_filter(rng.random((size, size)), 0.7)
    acc, px, py = np.zeros_like(noise), xx.copy(), yy.copy()
    for step in range(24):  # follow the streamline both ways and average the noise along it
        for sign in (1, -1):
            qx, qy = px + sign * step * vx, py + sign * step * vy
            acc += ndimage.map_coordinates(noise, [qy, qx], order=1, mode="wrap")
    lic = (acc - acc.min()) / (acc.max() - acc.min())
    lic = np.clip((lic - 0.5) * 2.2 + 0.5, 0, 1)
    band = 0.5 + 0.5 * np.sin(np.arctan2(vy, vx) * 2 + xx / size * 3)
    palette_dark = np.array([0.05, 0.12, 0.35])
    palette_mid = np.array([0.20, 0.45, 0.80])
    palette_light = np.array([0.98, 0.85, 0.30])
    t = (0.65 * lic + 0.35 * band)[..., None]
    return np.where(t < 0.55, palette_dark + (palette_mid - palette_dark) * (t / 0.55),
                    palette_mid + (palette_light - palette_mid) * ((t - 0.55) / 0.45))


def mosaic(size: int = 384, seed: int = 3, cells: int = 140) -> np.ndarray:
    """A stained-glass mosaic: Voronoi cells in warm and cool glass colours with dark lead lines."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (cells, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
    order = np.argsort(d, axis=-1)
    nearest, second = order[..., 0], order[..., 1]
    d1 = np.sqrt(np.take_along_axis(d, nearest[..., None], -1)[..., 0])
    d2 = np.sqrt(np.take_along_axis(d, second[..., None], -1)[..., 0])
    glass = np.array([[0.80, 0.15, 0.15], [0.95, 0.65, 0.10], [0.15, 0.35, 0.75],
                      [0.10, 0.55, 0.35], [0.55, 0.20, 0.60], [0.95, 0.90, 0.70]])
    colours = glass[rng.integers(0, len(glass), cells)] * rng.uniform(0.75, 1.05, (cells, 1))
    img = colours[nearest]
    shade = ndimage.gaussian_filter(rng.random((size, size)), 3)[..., None]
    img = img * (0.85 + 0.3 * (shade - shade.mean()) / (shade.std() + 1e-6) * 0.2)
    lead = (d2 - d1) < 2.5
    img[lead] = (0.06, 0.05, 0.05)
    return img


def main() -> None:
    _save(_resize(data.chelsea() / 255.0, 400), "cat.jpg")
    _save(_resize(data.astronaut() / 255.0, 400), "astronaut.jpg")
    _save(swirl_strokes(), "swirls.jpg")
    _save(mosaic(), "mosaic.jpg")


if __name__ == "__main__":
    main()
