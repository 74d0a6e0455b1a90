"""Losses: analytic values, gradients, and the function/module forms agreeing."""

from __future__ import annotations

import pytest
import torch

from styletx.errors import InputError
from styletx.losses import (
    ContentLoss,
    GramMatrix,
    StyleLoss,
    TVLoss,
    content_loss,
    gram_matrix,
    layered_style_loss,
    normalised_layer_weights,
    style_loss,
    total_loss,
    tv_loss,
)


def test_gram_of_known_tensor():
    # Two channels over a 1x2 map: a = [1, 2], b = [3, 4] -> [[1+4, 3+8], [3+8, 9+16]] / (c*h*w = 4)
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(gram_matrix(f), expected)


def test_gram_is_size_normalised_and_symmetric():
    f = torch.rand(2, 5, 6, 7)
    g = gram_matrix(f)
    assert g.shape == (2, 5, 5)
    assert torch.allclose(g, g.transpose(1, 2))
    # Tiling the map 2x2 keeps the per-pixel statistics, so the normalised Gram is unchanged.
    tiled = f.repeat(1, 1, 2, 2)
    assert torch.allclose(gram_matrix(tiled), g, atol=1e-6)


def test_gram_accumulates_in_fp32_for_low_precision_input():
    f = (torch.ones(1, 3, 64, 64) * 300).to(torch.float16)  # 300^2 * 4096 would overflow fp16
    g = gram_matrix(f)
    assert g.dtype == torch.float32
    assert torch.isfinite(g).all()
    assert torch.allclose(g, torch.full((1, 3, 3), 300.0**2 / 3))


def test_tv_of_checkerboard_and_constant():
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    board = ((x + y) % 2).float().expand(1, 3, 8, 8)
    assert tv_loss(board).item() == pytest.approx(2.0)
    assert tv_loss(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    # A horizontal ramp of step 0.1: only horizontal differences, each 0.1^2.
    ramp = (torch.arange(8).float() * 0.1).expand(1, 1, 8, 8)
    assert tv_loss(ramp).item() == pytest.approx(0.01, rel=1e-5)


def test_content_and_style_loss_values():
    a = torch.zeros(1, 2, 3, 3)
    b = torch.ones(1, 2, 3, 3)
    assert content_loss(a, b).item() == pytest.approx(1.0)
    assert style_loss(b, gram_matrix(b)).item() == pytest.approx(0.0)
    # Gram of ones is 1/(c) everywhere? ones: sum over h*w of 1 = 9, / (c*h*w = 18) = 0.5
    assert torch.allclose(gram_matrix(b), torch.full((1, 2, 2), 0.5))
    assert style_loss(a, gram_matrix(b)).item() == pytest.approx(0.25)


def test_gradcheck_float64():
    f = torch.rand(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 3, 3, dtype=torch.float64)
    content_target = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(gram_matrix, (f,))
    assert torch.autograd.gradcheck(lambda x: style_loss(x, target), (f,))
    assert torch.autograd.gradcheck(lambda x: content_loss(x, content_target), (f,))
    assert torch.autograd.gradcheck(tv_loss, (f,))


def test_modules_agree_with_functions():
    f = torch.rand(2, 4, 5, 5)
    target = torch.rand(2, 4, 5, 5)
    assert torch.equal(GramMatrix()(f), gram_matrix(f))
    assert torch.equal(ContentLoss(target)(f), content_loss(f, target))
    assert torch.equal(StyleLoss(target)(f), style_loss(f, gram_matrix(target)))
    assert torch.equal(TVLoss()(f), tv_loss(f))


def test_shape_errors_are_clear():
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        gram_matrix(torch.rand(3, 4, 4))
    with pytest.raises(InputError, match="shapes differ"):
        content_loss(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4))
    with pytest.raises(InputError, match="target Gram"):
        style_loss(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3))


def test_total_loss_reports_weighted_terms():
    img = torch.rand(1, 3, 6, 6)
    feats = {"a": torch.rand(1, 2, 3, 3), "b": torch.rand(1, 4, 2, 2)}
    ct = {"a": torch.rand(1, 2, 3, 3)}
    grams = {"a": torch.rand(1, 2, 2), "b": torch.rand(1, 4, 4)}
    lw = {"a": 0.25, "b": 0.75}
    terms = total_loss(img, feats, content_targets=ct, style_grams=grams, style_layer_weights=lw,
                       content_weight=2.0, style_weight=10.0, tv_weight=0.5)
    assert terms.content.item() == pytest.approx(2.0 * content_loss(feats["a"], ct["a"]).item())
    assert terms.style.item() == pytest.approx(10.0 * layered_style_loss(feats, grams, lw).item())
    assert terms.tv.item() == pytest.approx(0.5 * tv_loss(img).item())
    floats = terms.as_floats()
    assert floats["total"] == pytest.approx(floats["content"] + floats["style"] + floats["tv"])


def test_normalised_layer_weights():
    assert normalised_layer_weights(["a", "b"], None) == {"a": 0.5, "b": 0.5}
    assert normalised_layer_weights(["a", "b"], [1, 3]) == {"a": 0.25, "b": 0.75}
    with pytest.raises(InputError):
        normalised_layer_weights(["a"], [0.0])
