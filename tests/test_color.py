"""Colour preservation: histogram/linear colour matching and luminance-only transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletx import color
from styletx.errors import InputError
from styletx.io.image import to_tensor
from styletx.tensors import resize_to

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _quantiles(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) -> (len(_QUANTILES), 3) per-channel quantiles."""
    return np.quantile(x[0].reshape(3, -1).double().numpy(), _QUANTILES, axis=1)


def _moderate(seed: int, h: int, w: int, lo: float = 0.3, hi: float = 0.7) -> torch.Tensor:
    """Random image with values in [lo, hi] (so no colour conversion leaves the gamut)."""
    gen = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(1, 3, h, w, generator=gen)


# ---------------------------------------------------------------------------------------------------- YCbCr


def test_ycbcr_known_values_and_round_trip():
    white_red = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]).reshape(1, 3, 1, 2)
    ycc = color.rgb_to_ycbcr(white_red)
    torch.testing.assert_close(ycc[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.5]))
    torch.testing.assert_close(ycc[0, :, 0, 1], torch.tensor([0.299, 0.5 - 0.5 * 0.299 / 0.886, 1.0]))
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(color.ycbcr_to_rgb(color.rgb_to_ycbcr(x)), x)


# --------------------------------------------------------------------------------------------- match_histogram


def test_match_histogram_matches_reference_quantiles(content_image, style_image):
    style, content = to_tensor(style_image), to_tensor(content_image)
    before = np.abs(_quantiles(style) - _quantiles(content)).max()
    out = color.match_histogram(style, content)
    assert out.shape == style.shape and out.dtype == style.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert before > 0.2
    np.testing.assert_allclose(_quantiles(out), _quantiles(content), atol=0.03)
    np.testing.assert_allclose(out.mean(dim=(0, 2, 3)), content.mean(dim=(0, 2, 3)), atol=0.02)


def test_match_histogram_channels_keeps_the_style_ordering(style_image, content_image):
    style = to_tensor(style_image)
    out = color.match_histogram(style, to_tensor(content_image), method="channels")
    np.testing.assert_allclose(_quantiles(out), _quantiles(to_tensor(content_image)), atol=0.03)
    # Histogram matching is monotone per channel: brighter style pixels stay at least as bright.
    for c in range(3):
        s, o = style[0, c].flatten(), out[0, c].flatten()
        order = torch.argsort(s)
        assert bool((o[order][1:] >= o[order][:-1] - 1e-6).all())


@pytest.mark.parametrize("method", color.MATCH_METHODS)
def test_match_histogram_against_itself_is_identity(style_image, method):
    style = to_tensor(style_image)
    torch.testing.assert_close(color.match_histogram(style, style, method=method), style, atol=1e-4, rtol=0)


def test_match_histogram_channels_exact_on_a_spiky_reference():
    """A reference with only three distinct values per channel: every output value is one of them, in proportion."""
    style = _moderate(5, 30, 40, 0.0, 1.0)
    levels = torch.tensor([0.2, 0.5, 0.9])
    reference = levels[torch.arange(3 * 400) % 3].reshape(1, 1, 30, 40).expand(1, 3, 30, 40)
    for method in ("channels", "histogram"):
        out = color.match_histogram(style, reference, method=method)
        for c in range(3):
            values, counts = torch.unique(out[0, c], return_counts=True)
            torch.testing.assert_close(values, levels)
            assert counts.tolist() == [400, 400, 400]


def test_match_histogram_linear_matches_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    style = 0.4 + 0.1 * torch.randn(1, 3, 40, 40, generator=gen).clamp(-2, 2)
    mix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
    reference = (0.5 + 0.06 * torch.einsum("ij,njhw->nihw", mix, torch.randn(1, 3, 32, 48, generator=gen))).clamp(0, 1)
    out = color.match_histogram(style, reference, method="linear")
    assert out.shape == style.shape

    def stats(x):
        flat = x[0].reshape(3, -1).double().numpy()
        return flat.mean(axis=1), np.cov(flat, bias=True)

    (mo, co), (mr, cr) = stats(out), stats(reference)
    np.testing.assert_allclose(mo, mr, atol=1e-4)
    np.testing.assert_allclose(co, cr, atol=1e-4)


def test_match_histogram_keeps_dtype_and_rejects_bad_input():
    style = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    out = color.match_histogram(style, torch.rand(1, 3, 6, 6))
    assert out.dtype == torch.float64 and out.device == style.device
    with pytest.raises(InputError, match="method"):
        color.match_histogram(style, style, method="bogus")
    with pytest.raises(InputError, match="reference"):
        color.match_histogram(style, torch.rand(3, 8, 8))


# ------------------------------------------------------------------------------------------ transfer_luminance


def test_transfer_luminance_keeps_stylized_luma_and_content_chroma():
    stylized, content = _moderate(0, 24, 32), _moderate(1, 24, 32, 0.35, 0.65)
    out = color.transfer_luminance(stylized, content)
    assert out.shape == stylized.shape
    ycc_out = color.rgb_to_ycbcr(out)
    torch.testing.assert_close(ycc_out[:, 0], color.rgb_to_ycbcr(stylized)[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ycc_out[:, 1:], color.rgb_to_ycbcr(content)[:, 1:], atol=1e-5, rtol=0)


def test_transfer_luminance_resizes_content(content_image):
    content = to_tensor(content_image)  # 48 x 40
    stylized = _moderate(2, 20, 24)
    out = color.transfer_luminance(stylized, content)
    assert out.shape == stylized.shape
    assert out.min() >= 0 and out.max() <= 1
    expected_chroma = color.rgb_to_ycbcr(resize_to(content, (20, 24), mode="bilinear"))[:, 1:]
    ycc = color.rgb_to_ycbcr(out)
    # The clamp to [0, 1] only acts where the stylised luminance cannot carry the content's saturation.
    unclipped = ((out > 1e-4) & (out < 1 - 1e-4)).all(dim=1)
    assert unclipped.float().mean() > 0.5
    assert torch.allclose(ycc[:, 0][unclipped], color.rgb_to_ycbcr(stylized)[:, 0][unclipped], atol=1e-5)
    assert torch.allclose(ycc[:, 1:].permute(1, 0, 2, 3)[:, unclipped],
                          expected_chroma.permute(1, 0, 2, 3)[:, unclipped], atol=1e-5)


def test_transfer_luminance_of_content_onto_itself_is_identity(content_image):
    content = to_tensor(content_image)
    torch.testing.assert_close(color.transfer_luminance(content, content), content, atol=1e-5, rtol=0)


def test_transfer_luminance_batch_dtype_and_gradient():
    stylized = _moderate(3, 16, 16).repeat(2, 1, 1, 1).double().requires_grad_(True)
    content = _moderate(4, 16, 16)
    out = color.transfer_luminance(stylized, content)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float64
    out.sum().backward()
    assert stylized.grad is not None and stylized.grad.abs().sum() > 0
    with pytest.raises(InputError, match="content"):
        color.transfer_luminance(stylized.detach(), torch.rand(3, 3, 16, 16))
    with pytest.raises(InputError, match="stylized"):
        color.transfer_luminance(torch.rand(1, 4, 16, 16), content)
