"""Backbone-free quality scores: analytic values, invariances, monotonicity and texture ordering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_image

from styletx import metrics
from styletx.errors import InputError
from styletx.io.image import to_tensor


def _t(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> (1, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]


def _texture(kind: str, size: int = 128, seed: int = 0) -> np.ndarray:
    """(size, size, 3) generated textures: oriented stripes, white noise, a checkerboard, vertical stripes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "stripes":
        gray = 0.5 + 0.4 * np.sin(2 * np.pi * (xx + 0.4 * yy) / 9.0)
    elif kind == "vstripes":
        gray = 0.5 + 0.4 * np.sin(2 * np.pi * yy / 9.0)
    elif kind == "noise":
        gray = rng.random((size, size)).astype(np.float32)
    elif kind == "checker":
        gray = 0.1 + 0.8 * (((xx // 8) + (yy // 8)) % 2)
    else:
        raise AssertionError(kind)
    return np.stack([gray, 0.8 * gray + 0.1, 1.0 - 0.5 * gray], axis=-1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one(content_image):
    assert metrics.content_ssim(content_image, content_image) == pytest.approx(1.0, abs=1e-9)


def test_ssim_decreases_monotonically_with_noise(content_image):
    content = to_tensor(content_image)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(content.shape, generator=gen)
    scores = [metrics.content_ssim((content + s * noise).clamp(0, 1), content) for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(s < 1.0 for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_ssim_lower_after_blur(content_image):
    content = to_tensor(content_image)
    kernel = torch.ones(3, 1, 5, 5) / 25
    blurred = F.conv2d(F.pad(content, (2, 2, 2, 2), mode="reflect"), kernel, groups=3)
    assert metrics.content_ssim(blurred, content) < 0.98


def test_ssim_resizes_output_to_content():
    big = make_image(128, 96, seed=3)
    small = big.resize((64, 48))
    assert metrics.content_ssim(big, small) > 0.9  # compared at 64x48 after antialiased resizing
    assert metrics.content_ssim(big, small) > metrics.content_ssim(big.transpose(0), small)


def test_ssim_is_on_luminance_only():
    rng = np.random.default_rng(0)
    gray = rng.random((32, 32)).astype(np.float32) * 0.5 + 0.25
    a = np.stack([gray] * 3, axis=-1)
    # Shift chroma while keeping Rec. 601 luma: +d on R and -d * 0.299 / 0.587 on G.
    b = a.copy()
    b[..., 0] += 0.1
    b[..., 1] -= 0.1 * 0.299 / 0.587
    assert metrics.content_ssim(_t(b), _t(a)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_small_images_use_a_smaller_window():
    x = _texture("noise", size=8)
    assert metrics.content_ssim(_t(x), _t(x)) == pytest.approx(1.0)
    with pytest.raises(InputError, match="too small"):
        metrics.content_ssim(_t(x[:2, :2]), _t(x[:2, :2]))


# ------------------------------------------------------------------------------------------------ colour distance


def test_color_distance_zero_for_pixel_shuffled_copy(style_image):
    style = to_tensor(style_image)
    flat = style.reshape(3, -1)
    perm = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = flat[:, perm].reshape(style.shape)
    assert not torch.equal(shuffled, style)
    assert metrics.color_distance(shuffled, style) == pytest.approx(0.0, abs=1e-7)


def test_color_distance_analytic_for_uniform_shift():
    rng = np.random.default_rng(0)
    base = (0.2 + 0.4 * rng.random((40, 40, 3))).astype(np.float32)
    dirs = metrics._color_directions(metrics.COLOR_DIRECTIONS)
    assert dirs.shape == (64, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    dists = []
    for shift in (0.05, 0.1, 0.2, 0.3):
        shifted = base.copy()
        shifted[..., 0] += shift
        d = metrics.color_distance(_t(shifted), _t(base))
        # Shifting preserves the order along every direction, so W1 along d is exactly |shift * d_R|.
        assert d == pytest.approx(shift * np.mean(np.abs(dirs[:, 0])), rel=1e-4)
        dists.append(d)
    assert all(a < b for a, b in zip(dists, dists[1:]))


def test_color_distance_symmetric_and_size_independent(content_image, style_image):
    content, style = to_tensor(content_image), to_tensor(style_image)
    d = metrics.color_distance(content, style)
    assert d > 0.05
    assert metrics.color_distance(style, content) == pytest.approx(d, rel=1e-6)
    # Nearest-neighbour 2x upsampling repeats every pixel 4 times: the same colour distribution.
    up = F.interpolate(content, scale_factor=2, mode="nearest")
    assert metrics.color_distance(up, content) < 0.02 * d


def test_color_distance_subsamples_large_images_deterministically():
    x = _t(np.random.default_rng(5).random((300, 300, 3)))  # 90,000 px > COLOR_MAX_PIXELS
    y = _t(np.random.default_rng(6).random((300, 300, 3)) ** 2)
    first = metrics.color_distance(x, y)
    assert first == metrics.color_distance(x, y)
    assert first > 0.05
    assert metrics.color_distance(x, x) == 0.0


# ----------------------------------------------------------------------------------------------- texture distance


def test_texture_distance_zero_for_same_image(style_image):
    assert metrics.texture_distance(style_image, style_image) == pytest.approx(0.0, abs=1e-7)


def test_texture_distance_same_texture_crops_closer_than_different_textures():
    kinds = ("stripes", "vstripes", "noise", "checker")
    grams = {}
    for k in kinds:
        img = _texture(k, size=128, seed=1)
        crops = (_t(img[:64, :64]), _t(img[64:, 40:104]))  # two disjoint crops of the same texture
        grams[k] = tuple(metrics._texture_grams(c) for c in crops)  # statistics computed once per crop
    assert metrics.texture_distance(*crops) == pytest.approx(metrics._gram_distance(*grams["checker"]))
    for k in kinds:
        same = metrics._gram_distance(*grams[k])
        others = [metrics._gram_distance(grams[k][0], grams[o][1]) for o in kinds if o != k]
        assert same < 0.15, (k, same)
        assert min(others) > 0.25, (k, others)
        assert same < 0.5 * min(others), (k, same, others)


def test_texture_distance_independent_of_input_size():
    img = _t(_texture("stripes", size=64))
    up = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
    other = _t(_texture("noise", size=64))
    assert metrics.texture_distance(img, up) < 0.1
    assert metrics.texture_distance(img, up) < 0.2 * metrics.texture_distance(img, other)


def test_texture_distance_range_and_flat_images():
    flat_a = torch.full((1, 3, 32, 32), 0.2)
    flat_b = torch.full((1, 3, 32, 48), 0.7)
    assert metrics.texture_distance(flat_a, flat_b) == pytest.approx(0.0, abs=1e-6)
    noisy = _t(_texture("noise", size=32))
    d = metrics.texture_distance(flat_a, noisy)
    assert 0.5 < d < 1.0
    assert metrics.texture_distance(noisy, _t(_texture("noise", size=32, seed=9))) < 0.2 * d


def test_gabor_bank_has_unit_gain_and_no_dc():
    bank = metrics._gabor_bank().double()
    assert bank.shape[0] == 2 * metrics.TEXTURE_ORIENTATIONS
    assert torch.allclose(bank.sum(dim=(1, 2, 3)), torch.zeros(bank.shape[0], dtype=torch.float64), atol=1e-6)
    # A horizontal-frequency grating of amplitude 0.3 at the preferred wavelength: amplitude 0.3 from orientation 0.
    n = 64
    xx = torch.arange(n, dtype=torch.float64).expand(n, n)
    grating = (0.5 + 0.3 * torch.cos(2 * np.pi * xx / metrics._GABOR_WAVELENGTH))[None, None]
    resp = F.conv2d(grating, bank)[0, :, 10:-10, 10:-10]
    amp = torch.sqrt(resp[0::2] ** 2 + resp[1::2] ** 2)
    assert torch.allclose(amp[0], torch.full_like(amp[0], 0.3), atol=1e-3)
    assert amp[2].max() < 0.01  # the orthogonal orientation barely responds


# ---------------------------------------------------------------------------------------------------------- score


def test_score_keys_values_and_inputs(tmp_path, content_image, style_image):
    out = make_image(48, 40, seed=7)
    path = tmp_path / "out.png"
    out.save(path)
    result = metrics.score(path, np.asarray(content_image), style_image)
    assert set(result) == {"content_ssim", "color_distance", "texture_distance"}
    assert all(isinstance(v, float) for v in result.values())
    assert result["content_ssim"] == pytest.approx(metrics.content_ssim(out, content_image))
    assert result["color_distance"] == pytest.approx(metrics.color_distance(out, style_image))
    assert result["texture_distance"] == pytest.approx(metrics.texture_distance(out, style_image))
    assert metrics.score(path, content_image, style_image) == result  # deterministic


def test_score_of_content_against_itself(content_image):
    result = metrics.score(content_image, content_image, content_image)
    assert result["content_ssim"] == pytest.approx(1.0)
    assert result["color_distance"] == pytest.approx(0.0, abs=1e-7)
    assert result["texture_distance"] == pytest.approx(0.0, abs=1e-7)


def test_bad_input_names_the_argument():
    with pytest.raises(InputError, match="style"):
        metrics.color_distance(torch.rand(1, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(InputError, match="output"):
        metrics.texture_distance(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="nope.png"):
        metrics.content_ssim("nope.png", torch.rand(1, 3, 8, 8))


# ---------------------------------------------------------------------------------------------------- grid score


def _smooth(size: int = 96, seed: int = 0) -> torch.Tensor:
    """A smooth picture (gradients and slow waves) with faint white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gray = 0.5 + 0.2 * np.sin(2 * np.pi * (1.3 * xx + 0.7 * yy)) + 0.1 * xx
    arr = np.stack([gray, 0.9 * gray, 1.0 - 0.6 * gray], -1) + rng.normal(0, 0.01, (size, size, 3))
    return _t(arr.astype(np.float32))


def _plaid(size: int = 96, period: int = 4, shift: int = 0) -> torch.Tensor:
    """A zero-mean plaid of ``period`` px (per-phase offsets, as a pixel-shuffle head leaves), amplitude 0.05."""
    rng = np.random.default_rng(7)
    tile = rng.normal(0, 0.05, (3, period, period)).astype(np.float32)
    tile -= tile.mean(axis=(1, 2), keepdims=True)
    full = np.tile(tile, (1, size // period + 1, size // period + 1))[:, shift : shift + size, shift : shift + size]
    return torch.from_numpy(np.ascontiguousarray(full))[None]


def test_grid_score_is_zero_for_smooth_pictures_and_high_with_a_plaid():
    clean = _smooth()
    plaid = _plaid()
    # noise only: about period^2 / pixels = 16 / 9216; a smooth picture has nothing at the grid frequencies
    assert metrics.grid_score(clean) < 0.01
    assert metrics.grid_score(clean + plaid) > 0.8
    # a pure plaid is all grid, whatever its phase
    assert metrics.grid_score(0.5 + plaid) == pytest.approx(1.0, abs=1e-9)
    assert metrics.grid_score(0.5 + _plaid(shift=1)) == pytest.approx(1.0, abs=1e-9)
    # a plaid of another period is not a 4-px grid (3 px: none of its frequencies is a multiple of 1/4)
    assert metrics.grid_score(clean + _plaid(period=3)) < 0.01
    assert metrics.grid_score(clean + _plaid(period=3), period=3) > 0.8
    # weaker grid, lower score: plaid energy / (plaid + noise energy), both measured in the high-pass
    assert metrics.grid_score(clean + 0.1 * plaid) < metrics.grid_score(clean + plaid)
    with pytest.raises(InputError, match="too small"):
        metrics.grid_score(torch.rand(1, 3, 10, 40))
    with pytest.raises(InputError, match="period"):
        metrics.grid_score(clean, period=1)


def test_grid_score_of_checkerboards():
    """A checkerboard of 1-px or 2-px squares repeats within 4 px: all grid at period 4. A 4-px one has period 8,
    so at period 4 its squares look like smooth content (score 0), and at period 8 all grid."""
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    for square in (1, 2):
        board = (((yy // square) + (xx // square)) % 2).float().expand(1, 3, 64, 64) * 0.5 + 0.25
        assert metrics.grid_score(board) == pytest.approx(1.0, abs=1e-9)
    coarse = (((yy // 4) + (xx // 4)) % 2).float().expand(1, 3, 64, 64) * 0.5 + 0.25
    assert metrics.grid_score(coarse, period=8) == pytest.approx(1.0, abs=1e-9)
    assert metrics.grid_score(coarse) < 0.01


def test_edge_contrast_of_a_line_along_one_side():
    img = torch.full((1, 3, 32, 40), 0.5)
    assert metrics.edge_contrast(img) == 0.0
    img[..., :, -1] = 0.8  # a bright right-hand column
    assert metrics.edge_contrast(img) == pytest.approx(0.3)
    assert metrics.edge_contrast(img, width=2) == pytest.approx(0.15)  # 2-px frame (0.65) against the next 2 px
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(1, 3, 32, 40)
    assert metrics.edge_contrast(ramp) == pytest.approx(1 / 39)  # a smooth picture: one step of its gradient
    with pytest.raises(InputError, match="too small"):
        metrics.edge_contrast(img, width=10)
    with pytest.raises(InputError, match="width"):
        metrics.edge_contrast(img, width=0)
