"""The optimisation engine and the stylize API, with the weight-free backbone and tiny images."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from PIL import Image

import make_golden as golden
import styletx
from styletx.color import rgb_to_ycbcr
from styletx.errors import InputError, StyletxWarning
from styletx.io.image import read_metadata
from styletx.engines.optimize import optimize_image, scale_sizes
from styletx.results import RunRecord
from styletx.options import StylizeOptions
from styletx.tensors import resize_to

FAST = dict(size=32, iterations=8, backbone="random", device="cpu", scales=1)


def test_scale_sizes():
    assert scale_sizes(512, 0) == [256, 512]
    assert scale_sizes(384, 0) == [384]
    assert scale_sizes(1024, 0) == [256, 512, 1024]
    assert scale_sizes(300, 3) == [75, 150, 300]
    assert scale_sizes(40, 1) == [40]


def test_stylize_returns_pil_and_loss_goes_down(content_image, style_image):
    result = styletx.stylize(content_image, style_image, **FAST)
    assert isinstance(result.image, Image.Image)
    assert max(result.image.size) == 32
    totals = [s["total"] for s in result.record.losses]
    assert len(totals) == 8
    assert totals[-1] < totals[0]
    assert result.record.backbone["backbone"] == "random"
    assert result.record.device == "cpu"


def test_tensor_output_multiscale_and_callback(content_image, style_image):
    seen = []
    result = styletx.stylize(content_image, style_image, **{**FAST, "size": 48, "scales": 2, "iterations": 4},
                             output="tensor", callback=seen.append)
    assert result.image.shape == (1, 3, 40, 48)
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    # 2 steps at the coarse scale (half of 4), then 4 at full size.
    assert [it.size for it in seen] == [24, 24, 48, 48, 48, 48]
    # the previews are the picture itself, not the canvas with its EDGE_MARGIN px of free border
    assert [tuple(it.image.shape[-2:]) for it in seen] == [(20, 24)] * 2 + [(40, 48)] * 4
    assert [it.step for it in seen] == list(range(1, 7)) and seen[0].total == 6
    assert all(it.elapsed >= 0 and it.memory_mb > 0 for it in seen)
    assert set(seen[-1].losses) == {"content", "style", "tv", "total"}


def test_adam_noise_init_and_blended_styles(content_image, style_image):
    other = style_image.transpose(Image.Transpose.ROTATE_90)
    result = styletx.stylize(content_image, [style_image, other], **FAST, optimizer="adam", init="noise",
                             style_blend_weights=(3, 1), output="tensor")
    totals = [s["total"] for s in result.record.losses]
    assert totals[-1] < totals[0]


def test_init_from_image_path(tmp_path, content_image, style_image):
    init = tmp_path / "init.png"
    style_image.save(init)
    result = styletx.stylize(content_image, style_image, **{**FAST, "iterations": 0}, init=str(init),
                             output="tensor")
    # No steps: the result is the init image, resized to the content's shape.
    expected = styletx.load_image(init).tensor
    assert result.image.shape == (1, 3, 27, 32)
    assert abs(float(result.image.mean()) - float(expected.mean())) < 0.02


def test_vgg19_with_seeded_random_weights(content_image, style_image):
    """weights=None: VGG19's architecture with weights drawn from ``seed``; the record says so, and another seed
    gives other weights (another first loss, another picture)."""
    runs = {seed: styletx.stylize(content_image, style_image, size=32, iterations=1, backbone="vgg19", weights=None,
                                  seed=seed, device="cpu", precision="fp32", scales=1, output="tensor")
            for seed in (3, 4)}
    assert runs[3].record.backbone == {"backbone": "vgg19", "weights": "random seed 3", "pooling": "max"}
    assert runs[3].image.shape == (1, 3, 27, 32)
    assert runs[3].record.losses[0]["total"] != pytest.approx(runs[4].record.losses[0]["total"], rel=1e-3)
    assert not torch.allclose(runs[3].image, runs[4].image, atol=1e-3)


@pytest.mark.parametrize("case", sorted(golden.CASES["optimize"]))
def test_a_few_lbfgs_steps_match_the_stored_output(case):
    """Stored expected output (tests/golden/optimize.json, written by ``python tests/make_golden.py``) of 3-4
    L-BFGS steps of ``styletx.stylize`` at 32 px, fp32, with the weight-free backbone and with VGG19's seeded
    random weights: the image (a slice, mean, std) and the loss at every step. Fails when a loss, its weights or
    normalisation, a backbone, its initialisation or the optimiser changes.

    Tolerances, looser than for one network pass: each L-BFGS step builds on the previous gradients, so the
    kernels' summation order (which differs between CPUs) grows over the steps. Measured with oneDNN and ATen
    limited to SSE4.1, AVX2 and AVX-512: at most 3e-4 on any pixel and 2.3e-5 relative on any loss term; so atol
    2e-3 on the image, and 1e-3 relative on each loss term (the TV term is ~5e-4: an absolute bound would hide
    it)."""
    got, stored = golden.compute("optimize", case), golden.load("optimize")[case]
    losses = {name: (1e-6, 1e-3) for name in stored if name.startswith("loss_")}
    assert sorted(losses) == ["loss_content", "loss_style", "loss_total", "loss_tv"]
    golden.assert_matches(got, stored, atol=2e-3, overrides=losses)


def test_auto_backbone_falls_back_with_one_warning(content_image, style_image):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = styletx.stylize(content_image, style_image, **{**FAST, "backbone": "auto", "iterations": 1})
    ours = [w for w in caught if issubclass(w.category, StyletxWarning)]
    assert len(ours) == 1 and "weight-free" in str(ours[0].message)
    assert result.record.backbone["backbone"] == "random"
    assert any("weight-free" in n for n in result.record.notes)


def test_explicit_vgg19_without_weights_never_falls_back(content_image, style_image):
    with pytest.raises(styletx.WeightsError, match="vgg19-dcbb9e9d.pth"):
        styletx.stylize(content_image, style_image, **{**FAST, "backbone": "vgg19"})


def test_preserve_color_keeps_content_colours(content_image, style_image):
    plain = styletx.stylize(content_image, style_image, **FAST, output="tensor").image
    content = resize_to(styletx.load_image(content_image).tensor, plain.shape[-2:], mode="bilinear")
    ycc_plain, chroma_content = rgb_to_ycbcr(plain), rgb_to_ycbcr(content)[:, 1:]
    assert (ycc_plain[:, 1:] - chroma_content).abs().mean() > 0.05  # the style changed the colours (0.13)

    # luminance: the stylised luminance with the content's chroma, wherever the clamp to [0, 1] did not bite
    kept = styletx.stylize(content_image, style_image, **FAST, preserve_color="luminance", output="tensor").image
    ycc_kept = rgb_to_ycbcr(kept)
    inside = ((kept > 1e-4) & (kept < 1 - 1e-4)).all(dim=1)
    assert inside.float().mean() > 0.5
    assert (ycc_kept[:, 1:] - chroma_content).abs().permute(1, 0, 2, 3)[:, inside].max() < 1e-4
    assert (ycc_kept[:, 0] - ycc_plain[:, 0]).abs()[inside].max() < 1e-4

    # histogram: the style is recoloured with the content's colours before the run, so the mean colour stays
    # near the content's (summed channel offsets measured 0.05, against 0.29 without)
    matched = styletx.stylize(content_image, style_image, **FAST, preserve_color="histogram", output="tensor").image

    def colour_offset(x):
        return float((x.mean(dim=(2, 3)) - content.mean(dim=(2, 3))).abs().sum())

    assert colour_offset(matched) < 0.5 * colour_offset(plain)
    assert (matched - content).abs().mean() > 0.02  # still stylised, not the content


def test_alpha_is_kept_and_saved_with_metadata(tmp_path, content_image, style_image):
    rgba = content_image.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    result = styletx.stylize(rgba, style_image, **FAST, keep_alpha=True)
    out = result.save(tmp_path / "out.png")
    back = Image.open(out)
    assert back.mode == "RGBA" and abs(back.getchannel("A").getextrema()[0] - 128) <= 1
    meta = read_metadata(out)
    assert meta["styletx"] == styletx.__version__
    assert '"backbone": "random"' in meta["styletx.backbone"]
    assert '"seed": 0' in meta["styletx.record"]


class _NaNAfter(torch.nn.Module):
    """Wraps an extractor; returns NaN features on its ``bad``-th call (to exercise the NaN guard)."""

    def __init__(self, inner: torch.nn.Module, bad: int) -> None:
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, x):
        self.calls += 1
        feats = self.inner(x)
        if self.calls == self.bad:
            return {k: v * float("nan") for k, v in feats.items()}
        return feats


def _extractor(opts: StylizeOptions):
    from styletx.api import prepare_extractor

    return prepare_extractor(opts, torch.device("cpu"))


def test_non_finite_loss_restores_best_and_says_so(content_image, style_image):
    opts = StylizeOptions(**FAST)
    extractor = _NaNAfter(_extractor(opts), bad=8)  # calls 1-2 measure memory, 3-4 are targets, then one per step
    content = styletx.load_image(content_image).tensor
    style = styletx.load_image(style_image).tensor
    image, record = optimize_image(content, [style], extractor, opts)
    assert any("non-finite" in n for n in record.notes)
    assert torch.isfinite(image).all()
    assert math.isfinite(record.best_loss)
    assert record.steps == 7  # one of the 8 steps was thrown away


def test_ctrl_c_keeps_best_so_far(content_image, style_image):
    def interrupt(it):
        if it.step == 3:
            raise KeyboardInterrupt

    result = styletx.stylize(content_image, style_image, **FAST, callback=interrupt, output="tensor")
    assert result.record.interrupted
    assert result.record.steps == 3
    assert result.image.shape == (1, 3, 27, 32)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(size=0), "size"),
        (dict(iterations=-1), "iterations"),
        (dict(style_weight=float("nan")), "style_weight"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1.0,)), "style_layer_weights"),
        (dict(colour=1), "unknown option"),
    ],
)
def test_bad_options_raise_input_error(bad, match, content_image, style_image):
    with pytest.raises(InputError, match=match):
        styletx.stylize(content_image, style_image, **{**FAST, **bad})


def test_blend_weights_must_match_styles(content_image, style_image):
    with pytest.raises(InputError, match="one per style image"):
        styletx.stylize(content_image, [style_image], **FAST, style_blend_weights=(1, 2))


def test_record_to_dict_is_json_friendly():
    import json

    rec = RunRecord(device="cpu", losses=[{"step": 1, "total": 1.0}])
    d = rec.to_dict()
    assert d["steps"] == 1 and "losses" not in d
    json.dumps(d)
