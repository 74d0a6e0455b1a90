"""Tiled feed-forward inference: exact whole-image instance-norm statistics, no seams, memory budgets, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styletx.cli import main
from styletx.engines.feedforward.model import new_transformer
from styletx.engines.feedforward.tiled import stylize_tiled
from styletx.errors import InputError
from styletx.options import parse_memory


def _slim(seed: int = 0):
    model = new_transformer("slim", seed=seed, device="cpu", precision="fp32")
    with torch.random.fork_rng(devices=[]):  # the untrained slim net is the identity: give it a real change
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.net.deconv3.conv2d.weight, std=0.1)
    return model


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_tiled_equals_whole_for_a_tiny_standard_net():
    model = new_transformer("standard", seed=1, device="cpu", precision="fp32", channels=(4, 8, 8), res_blocks=1)
    x = _image(72, 90)
    with torch.no_grad():
        whole = model.net(x)
    tiled = stylize_tiled(model.net, x, 16)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean().item() <= 1 / 255 / 100
    assert (tiled - whole).abs().max().item() < 1e-4


@pytest.mark.parametrize("options", [{}, {"color_path": True}, {"skip_map": 4}, {"skip_norm": True}])
def test_tiled_equals_whole_for_slim_2x(options):
    """The final half-resolution stage, the colour path's resize, the skip's colour map and the 2x head are inside
    the halo, and the skip's instance norm takes whole-image statistics like the others: the tiled output is the
    whole one."""
    model = new_transformer("slim-2x", seed=3, device="cpu", precision="fp32", res_blocks=1, **options)
    torch.nn.init.normal_(model.net.deconv3.conv2d.weight, std=0.1)
    for name in ("color1x1", "skip_map2"):
        if hasattr(model.net, name):
            torch.nn.init.normal_(getattr(model.net, name).weight, std=0.3)
    x = _image(80, 112, seed=4)
    with torch.no_grad():
        whole = model.net(x)
    tiled = stylize_tiled(model.net, x, 32)
    assert (whole - x).abs().mean() > 0.01
    assert tiled.shape == whole.shape and (tiled - whole).abs().max().item() < 1e-4


def test_model_stylize_tiled_matches_whole_and_has_no_seam():
    model = _slim()
    x = _image(100, 136, seed=2)
    whole = model.stylize(x)
    assert model.last_plan.startswith("whole")
    tiled = model.stylize(x, tile=32)
    assert model.last_plan.startswith("tiled")
    assert (tiled - whole).abs().mean().item() <= 1 / 255
    # seam test: the mean jump across tile borders (every 32 px) is no larger than the whole picture's jump at the
    # same columns. (Not "than elsewhere": tile borders fall on the 16-px grid of the network's deepest stage,
    # where this untrained net's whole output jumps more too: 0.127 against 0.103 with slim's resize head.)
    dx = (tiled[..., :, 1:] - tiled[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (W-1,)
    dx_whole = (whole[..., :, 1:] - whole[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    borders = torch.tensor([c - 1 for c in range(32, 136, 32)])
    assert dx[borders].mean() <= dx_whole[borders].mean() * 1.05
    assert (dx[borders] - dx_whole[borders]).abs().max() < 1e-3


def test_a_small_budget_tiles_and_a_tiny_one_refuses_before_work():
    model = new_transformer("standard", seed=1, device="cpu", precision="fp32", channels=(4, 8, 8), res_blocks=1)
    x = _image(400, 400)
    whole = model.stylize(x)  # about 22 MiB whole, 7 MiB in 32 px tiles
    small = model.stylize(x, max_memory="12M")
    assert model.last_plan.startswith("tiled"), model.last_plan
    assert (small - whole).abs().mean().item() <= 1 / 255
    with pytest.raises(InputError, match="even in tiles"):
        model.stylize(_image(1000, 1000), max_memory="1M")


@pytest.mark.parametrize("text, expected", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", int(1.5 * 2**30))])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "0", "-2G", "nanG", ""])
def test_parse_memory_refuses_bad_values(bad):
    with pytest.raises(InputError, match="max_memory"):
        parse_memory(bad)


@pytest.fixture
def model_file(tmp_path):
    return _slim().save(tmp_path / "m.pth")


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_tile_flag_tiles_and_announces(tmp_path, model_file):
    src = tmp_path / "in.png"
    Image.fromarray((_image(80, 80)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(src)
    whole = _invoke("run", "--model", model_file, src, "-o", tmp_path / "a.png")
    assert whole.exit_code == 0, whole.output
    tiled = _invoke("run", "--model", model_file, src, "-o", tmp_path / "b.png", "--tile", "32")
    assert tiled.exit_code == 0, tiled.output
    assert "tiled" in tiled.output
    a = torch.from_numpy(np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32))
    b = torch.from_numpy(np.asarray(Image.open(tmp_path / "b.png"), dtype=np.float32))
    assert (a - b).abs().mean().item() <= 1.0


@pytest.mark.parametrize("flag, value", [("--tile", "8"), ("--max-memory", "lots"), ("--max-memory", "10")])
def test_cli_bad_values_one_line_exit_2(tmp_path, model_file, flag, value):
    src = tmp_path / "in.png"
    Image.new("RGB", (40, 40)).save(src)
    result = _invoke("run", "--model", model_file, src, "-o", tmp_path / "o.png", flag, value)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0]
    assert not (tmp_path / "o.png").exists()
