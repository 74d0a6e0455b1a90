"""Tiled optimisation: tile grids, whole-image statistics from tiles, exact losses and gradients, memory plans."""

from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner

import styletx
from styletx.api import prepare_extractor
from styletx.cli import main
from styletx.engines.optimize import tiles
from styletx.engines.optimize.engine import plan_memory
from styletx.errors import InputError
from styletx.io.image import read_metadata
from styletx.losses import gram_matrix, normalised_layer_weights, target_scaled_weights, total_loss
from styletx.options import StylizeOptions

from conftest import make_image

OPTS = StylizeOptions(backbone="random", weights="none")
#: a shallow backbone (receptive radius under 16 px), so that tiles far smaller than the image are exact
SHALLOW = OPTS.with_(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1", "relu3_1"))
CPU = torch.device("cpu")
HW = (160, 144)


@pytest.fixture(scope="module")
def extractor():
    return prepare_extractor(OPTS, CPU)


@pytest.fixture(scope="module")
def shallow():
    return prepare_extractor(SHALLOW, CPU)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length,core,offset", [(200, 64, 0), (200, 64, 17), (64, 64, 5), (100, 30, 29)])
def test_cores_partition_the_image_and_crops_keep_the_grid(length, core, offset):
    spans = tiles.tile_cores(length, core, offset)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a < b <= a + core for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert all((s - offset) % core == 0 for s, _ in spans[1:])
    for t in tiles.tiles_of((length, length + 10), core, (offset, 3)):
        assert t.crop_y[0] % tiles.ALIGN == 0 and t.crop_x[0] % tiles.ALIGN == 0
        assert t.crop_y[0] <= t.core_y[0] and t.core_y[1] <= t.crop_y[1] <= length
        assert min(t.core_y[0], tiles.OVERLAP) <= t.core_y[0] - t.crop_y[0]  # real context before the core


def test_tiled_statistics_equal_the_whole_image_ones(shallow):
    x = _rand(1, 3, *HW)
    with torch.no_grad():
        feats = shallow(x)
    grid = tiles.tiles_of(HW, 48, overlap=16)
    assert len(grid) == 12 and max(t.crop_y[1] - t.crop_y[0] for t in grid) <= HW[0] / 2  # real tiles
    grams, maps = tiles.tiled_statistics(shallow, x, SHALLOW.style_layers, SHALLOW.content_layers, 48, bf16=False,
                                         overlap=16)
    for name in SHALLOW.style_layers:
        whole = gram_matrix(feats[name])
        assert (grams[name] - whole).norm() <= 1e-5 * whole.norm()
    for name in SHALLOW.content_layers:
        assert maps[name].shape == feats[name].shape
        assert torch.allclose(maps[name], feats[name], atol=1e-5)


def _whole_and_tiled(extractor, offset, overlap):
    content, style = _rand(1, 3, *HW, seed=1), _rand(1, 3, 96, 96, seed=2)
    pixels = (content + 0.1 * _rand(1, 3, *HW, seed=3)).clamp(0, 1).requires_grad_(True)
    with torch.no_grad():
        grams = {n: gram_matrix(f) for n, f in extractor(style).items() if n in SHALLOW.style_layers}
        content_feats = {n: f for n, f in extractor(content).items() if n in SHALLOW.content_layers}
    style_norm = target_scaled_weights(grams, normalised_layer_weights(SHALLOW.style_layers, None))
    content_norm = target_scaled_weights(content_feats, normalised_layer_weights(SHALLOW.content_layers, None))
    whole = total_loss(pixels, extractor(pixels), content_targets=content_feats, style_grams=grams,
                       style_layer_weights=style_norm, content_weight=1.0, style_weight=10.0, tv_weight=1.0,
                       content_layer_weights=content_norm)
    whole.total.backward()
    grad = pixels.grad.clone()
    pixels.grad = None
    targets = tiles.TiledTargets(grams, content_feats, style_norm, content_norm, 1.0, 10.0, 1.0)
    grid = tiles.tiles_of(HW, 48, offset, overlap=overlap)
    tiled = tiles.tiled_terms(pixels, extractor, targets, grid, bf16=False)
    return whole.as_floats(), tiled.as_floats(), grad, pixels.grad, len(grid)


@pytest.mark.parametrize("offset", [(0, 0), (17, 33)])
def test_tiled_losses_and_gradient_equal_the_whole_image_ones(shallow, offset):
    whole, tiled, grad, tiled_grad, n = _whole_and_tiled(shallow, offset, 16)
    assert n >= 12
    for key in ("content", "style", "tv", "total"):
        assert tiled[key] == pytest.approx(whole[key], rel=1e-4), key
    assert (tiled_grad - grad).norm() <= 1e-4 * grad.norm()


def test_no_overlap_is_an_approximation_not_a_failure(shallow):
    whole, tiled, grad, tiled_grad, _ = _whole_and_tiled(shallow, (5, 9), 0)
    assert tiled["total"] == pytest.approx(whole["total"], rel=0.2)
    cosine = (tiled_grad * grad).sum() / (tiled_grad.norm() * grad.norm())
    assert 0.9 < cosine < 0.99999  # near the whole gradient, but not equal: the context is cut


def test_random_offsets_are_seeded_and_spread():
    a, b = random.Random(3), random.Random(3)
    draws = [tiles.random_offset(a, 100) for _ in range(50)]
    assert draws == [tiles.random_offset(b, 100) for _ in range(50)]
    assert len(set(draws)) > 40 and all(0 <= y < 100 and 0 <= x < 100 for y, x in draws)


def _plan(extractor, **changes):
    opts = OPTS.with_(size=2048, **changes).validated()
    return plan_memory((1536, 2048), [(512, 512)], opts, [512, 1024, 2048], extractor, CPU)


def test_the_plan_is_whole_when_it_fits_and_tiled_below_it(extractor):
    whole = _plan(extractor, max_memory="100G")
    assert whole.cores == (None, None, None) and whole.line.startswith("whole image: 2048x1536 px")
    small = _plan(extractor, max_memory="4G")  # the full-resolution content layer relu1_1 alone needs 1.9 GiB of targets
    assert small.tiled and small.cores[0] is None and small.cores[-1] is not None
    assert small.cores[-1] % tiles.ALIGN == 0
    assert small.line.startswith("tiled: 2048x1536 px") and "budget 4.0 GiB" in small.line
    assert "whole-image style statistics" in small.line
    assert small.history < 100  # 100 pairs of 2048x1536 images would not fit in 4 GiB


def test_the_estimate_follows_the_arithmetic(extractor):
    opts = OPTS.with_(size=512, max_memory="100G").validated()
    fp32, bf16 = (plan_memory((512, 512), [(512, 512)], opts, [256, 512], extractor, CPU, bf16=b) for b in (0, 1))
    assert 0.4 * fp32.needed < bf16.needed < 0.8 * fp32.needed  # bf16 activations are half the size


def test_tile_forces_tiles_only_where_a_scale_is_larger(extractor):
    plan = _plan(extractor, tile=600, max_memory="100G")
    assert plan.cores == (None, 600, 600)


def test_a_budget_too_small_even_for_tiles_refuses_before_work(extractor):
    with pytest.raises(InputError, match="even in tiles.*the largest --size that fits is about"):
        _plan(extractor, max_memory="64M")


def test_stylize_tiled_runs_lowers_the_loss_and_records_the_plan():
    content, style = make_image(96, 80, seed=1), make_image(64, 64, seed=2, kind="stripes")
    result = styletx.stylize(content, style, size=96, iterations=4, scales=1, tile=64, backbone="random",
                             content_layers=SHALLOW.content_layers, style_layers=SHALLOW.style_layers,
                             output="tensor")
    assert result.image.shape == (1, 3, 80, 96)
    assert result.record.plan.startswith("tiled: 96x80 px, scale(s) 96 px in tiles of 64 px")
    losses = [e["total"] for e in result.record.losses]
    assert min(losses[1:]) < losses[0]


def test_cli_tile_announces_once_and_the_plan_is_in_the_metadata(tmp_path):
    make_image(96, 80, seed=1).save(tmp_path / "c.png")
    make_image(64, 64, seed=2, kind="stripes").save(tmp_path / "s.png")
    out = tmp_path / "o.png"
    r = CliRunner().invoke(main, ["run", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out),
                                  "--size", "96", "--iterations", "2", "--scales", "1", "--backbone", "random",
                                  "--tile", "64", "--style-layers", "relu1_1,relu2_1", "--content-layers",
                                  "relu2_1"])
    assert r.exit_code == 0, r.output
    assert r.output.count("styletx: tiled: 96x80 px") == 1
    assert "tiles of 64 px" in read_metadata(out)["styletx.record"]


BAD_BUDGETS = [("--tile", "8", "tile"), ("--max-memory", "lots", "max_memory"), ("--max-memory", "2M", "even in tiles")]


@pytest.mark.parametrize("flag,value,needle", BAD_BUDGETS)
def test_cli_bad_budgets_one_line_and_no_file(tmp_path, flag, value, needle):
    make_image(96, 80, seed=1).save(tmp_path / "c.png")
    make_image(64, 64, seed=2).save(tmp_path / "s.png")
    out = tmp_path / "o.png"
    r = CliRunner().invoke(main, ["run", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out),
                                  "--size", "1024", "--iterations", "1", "--backbone", "random", flag, value])
    assert r.exit_code != 0
    assert needle in r.output and "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) <= 2
    assert not out.exists()
