"""Stylising moves the backbone-free style scores toward the style and keeps content structure above a floor.

Uses the bundled example photos (not the images the weight-free backbone was tuned on) at a small size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import styletx
from styletx import metrics
from styletx.io.image import load_image
from styletx.tensors import resize_longest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # both, whatever the host's CPU prefers
@pytest.mark.parametrize("content_name, style_name", [("cat.jpg", "swirls.jpg"), ("astronaut.jpg", "mosaic.jpg")])
def test_weight_free_stylize_moves_scores_toward_style(content_name, style_name, precision):
    style = EXAMPLES / style_name
    content = resize_longest(load_image(EXAMPLES / content_name).tensor, 80)
    result = styletx.stylize(content, style, size=80, iterations=25, backbone="random", device="cpu", scales=1,
                             output="tensor", precision=precision)
    before = metrics.score(content, content, style)
    after = metrics.score(result.image, content, style)
    # Measured on 2026-12-03, evening (fp32 / bf16): cat x swirls colour 0.20x / 0.16x and texture 0.75x / 0.64x of
    # the content's distances, content SSIM 0.78 / 0.75; astronaut x mosaic colour 0.36x / 0.36x, texture 0.66x /
    # 0.65x, SSIM 0.72 / 0.71. (Before the engine's L-BFGS took back steps that raised the loss, the cat case in
    # fp32 overshot once, crept, and ended at texture 0.88x.)
    assert after["color_distance"] < 0.6 * before["color_distance"]  # the colour detectors see the palette
    assert after["texture_distance"] < 0.8 * before["texture_distance"]
    assert after["content_ssim"] > 0.45  # the photo's structure survives
    # No line along the edges: the outermost row differs from the next no more than rows inside the picture do
    # (or the photo's own edge does). Measured on 2026-12-03 (fp32 / bf16): cat x swirls 0.010 / 0.019 against
    # 0.012-0.015 / 0.012-0.031 inside; before that day (no gradient through the context border, no margin) 0.058,
    # a bright line.
    inside = max(metrics.edge_contrast(result.image[..., k:-k, k:-k]) for k in (3, 6, 9, 12))
    assert metrics.edge_contrast(result.image) <= max(inside, metrics.edge_contrast(content)) + 0.01
