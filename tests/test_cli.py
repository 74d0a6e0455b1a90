"""The command line: exit codes, one-line errors, outputs written and read back, options matching the API."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import click
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import styletx
import styletx.api
import styletx.cli
from conftest import make_image
from styletx import __version__
from styletx.cli import main
from styletx.cli import run as run_command
from styletx.cli import run_model as run_model_command
from styletx.cli import train as train_command
from styletx.errors import InputError
from styletx.io.image import read_metadata, srgb_icc_profile
from styletx.options import ModelOptions, StylizeOptions, TrainOptions

FAST = ["--size", "32", "--iterations", "3", "--backbone", "random", "--scales", "1", "-q"]


@pytest.fixture
def pair(tmp_path: Path):
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    make_image(48, 40, seed=1).save(content)
    make_image(40, 40, seed=2, kind="stripes").save(style)
    return content, style


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("styletx: error:")]
    assert len(errors) == 1, result.output
    assert needle in errors[0], errors[0]
    assert "Traceback" not in result.output


def test_run_writes_image_with_metadata(pair, tmp_path):
    content, style = pair
    out = tmp_path / "out.png"
    result = invoke("run", content, style, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "3 steps" in result.output
    img = Image.open(out)
    assert img.size == (32, 27)
    meta = read_metadata(out)
    assert meta["styletx"] == __version__
    assert json.loads(meta["styletx.record"])["options"]["iterations"] == 3


def test_default_output_next_to_content_never_clobbers(pair):
    content, style = pair
    first = invoke("run", content, style, *FAST)
    second = invoke("run", content, style, *FAST)
    assert first.exit_code == 0 and second.exit_code == 0
    assert (content.parent / "content_stylized.png").exists()
    assert (content.parent / "content_stylized-2.png").exists()


def test_existing_output_needs_overwrite(pair, tmp_path):
    content, style = pair
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert_one_line_error(invoke("run", content, style, "-o", out, *FAST), 2, "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert invoke("run", content, style, "-o", out, "--overwrite", *FAST).exit_code == 0
    assert Image.open(out).size == (32, 27)


def test_save_every_writes_snapshots(pair, tmp_path):
    content, style = pair
    out = tmp_path / "o.png"
    assert invoke("run", content, style, "-o", out, "--save-every", "2", *FAST).exit_code == 0
    assert (tmp_path / "o.step2.png").exists() and not (tmp_path / "o.step3.png").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--size", "0"], "size"),
        (["--iterations", "-1"], "iterations"),
        (["--style-weight", "nan"], "style_weight"),
        (["--content-weight", "-1"], "content_weight"),
        (["--tv-weight", "inf"], "tv_weight"),
        (["--style-layers", "relu1_1,relu9_9"], "relu9_9"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_option_values_exit_2(pair, tmp_path, args, needle):
    content, style = pair
    result = invoke("run", content, style, "-o", tmp_path / "o.png", *FAST, *args)
    assert_one_line_error(result, 2, needle)
    assert not (tmp_path / "o.png").exists()


def test_usage_errors_exit_2(pair):
    content, style = pair
    assert invoke("run", content).exit_code == 2  # no style
    assert invoke("run", content, style, "--optimizer", "sgd").exit_code == 2
    assert invoke("run", content, style, "--backbone", "resnet").exit_code == 2


def test_missing_and_unreadable_inputs(pair, tmp_path):
    content, style = pair
    assert_one_line_error(invoke("run", tmp_path / "nope.jpg", style, *FAST), 2, "nope.jpg")
    broken = tmp_path / "broken.png"
    data = content.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    assert_one_line_error(invoke("run", broken, style, *FAST), 2, "broken.png")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert_one_line_error(invoke("run", content, text, *FAST), 2, "notes.jpg")


def test_oversized_image_is_refused(pair, tmp_path):
    _, style = pair
    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(huge)  # 144 megapixels, a few kB on disk
    assert_one_line_error(invoke("run", huge, style, *FAST), 2, "huge.png")


def test_output_problems_exit_2_before_any_work(pair, tmp_path):
    content, style = pair
    assert_one_line_error(invoke("run", content, style, "-o", tmp_path / "no" / "dir.png", *FAST), 2, "folder")
    assert_one_line_error(invoke("run", content, style, "-o", content, "--overwrite", *FAST), 2, "input")
    assert_one_line_error(invoke("run", content, style, "-o", tmp_path / "out.bmpx", *FAST), 2, "extension")
    assert content.exists() and Image.open(content).size == (48, 40)


def test_missing_weights_message_names_file_url_and_place(pair, tmp_path):
    content, style = pair
    result = invoke("run", content, style, "-o", tmp_path / "o.png", "--backbone", "vgg19", "--size", "32")
    assert_one_line_error(result, 2, "vgg19-dcbb9e9d.pth")
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in result.output
    assert "dcbb9e9d" in result.output and "weights" in result.output


def test_auto_backbone_warns_once(pair, tmp_path):
    content, style = pair
    result = invoke("run", content, style, "-o", tmp_path / "o.png", *FAST[:-3], "--backbone", "auto", "-q")
    assert result.exit_code == 0, result.output
    assert result.output.count("weight-free") == 1


def test_debug_shows_traceback(pair, tmp_path):
    content, style = pair
    result = CliRunner().invoke(main, ["--debug", "run", str(content), str(style), "--size", "0"])
    assert result.exit_code == 2
    assert "Traceback" in result.output


def test_weights_command_lists_files():
    result = invoke("weights")
    assert result.exit_code == 0
    assert "vgg19-dcbb9e9d.pth" in result.output and "missing" in result.output
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in result.output


def test_score_json(pair):
    content, style = pair
    result = invoke("score", content, "--content", content, "--style", style, "--json")
    assert result.exit_code == 0
    scores = json.loads(result.output.strip().splitlines()[-1])
    assert set(scores) == {"content_ssim", "color_distance", "texture_distance"}
    assert scores["content_ssim"] == pytest.approx(1.0)
    assert_one_line_error(invoke("score", content, "--content", "missing.png", "--style", style), 2, "missing.png")


def test_help_shows_defaults_and_example():
    result = invoke("run", "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "[default: 512]" in result.output and "[default: lbfgs]" in result.output


# ------------------------------------------------------------------ the CLI's defaults are the dataclasses'


def _declared(cls: type) -> dict:
    """Each field's default as the dataclass declares it (read with dataclasses.fields, not through styletx)."""
    return {f.name: f.default for f in fields(cls)}


def _as_shown(default: Any) -> Optional[str]:
    """How --help should print a default: None not at all; tuples as the comma-separated text the flag takes, in
    parentheses (click's way of showing a default given as text)."""
    if default is None:
        return None
    return "(" + ",".join(str(v) for v in default) + ")" if isinstance(default, tuple) else str(default)


COMMANDS = [(StylizeOptions, run_command), (ModelOptions, run_model_command), (TrainOptions, train_command)]


@pytest.mark.parametrize("cls, command", COMMANDS, ids=["run", "run --model", "train"])
def test_help_shows_each_dataclass_default(cls, command):
    """What --help prints for every option (click's own help record) shows the dataclass's declared default."""
    ctx = click.Context(command, info_name=command.name)
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name, default in _declared(cls).items():
        assert name in options, f"{command.name}: no --{name.replace('_', '-')} flag for {cls.__name__}.{name}"
        _, text = options[name].get_help_record(ctx)
        shown = _as_shown(default)
        if shown is None:
            assert "[default:" not in text, (name, text)
        else:
            assert f"[default: {shown}]" in text, (name, text)


def _captured(monkeypatch, api_function: str, *args: Any) -> dict:
    """Run the CLI with the API function replaced by one that records its keywords, then stops the command."""
    seen: dict = {}

    def record(*positional: Any, **keywords: Any) -> None:
        seen.update(keywords)
        raise InputError("captured")

    original = getattr(styletx.api, api_function)
    monkeypatch.setattr(styletx.api, api_function, record)
    for name, value in list(vars(styletx.cli).items()):  # the CLI's own references to it (`from .api import ...`)
        if value is original:
            monkeypatch.setattr(styletx.cli, name, record)
    assert_one_line_error(invoke(*args), 2, "captured")
    assert seen, f"the CLI did not call styletx.api.{api_function}"
    return seen


def test_run_passes_the_dataclass_defaults_to_the_api(pair, monkeypatch):
    content, style = pair
    seen = _captured(monkeypatch, "stylize", "run", content, style)
    declared = _declared(StylizeOptions)
    assert {k: seen.get(k, "<not passed>") for k in declared} == declared
    typed = _captured(monkeypatch, "stylize", "run", content, style, "--style-layers", "relu1_1,relu3_1",
                      "--style-weight", "5", "--weights", "none")
    assert typed["style_layers"] == ("relu1_1", "relu3_1") and typed["style_weight"] == 5.0
    assert typed["weights"] is None


def test_run_model_passes_the_dataclass_defaults_to_the_api(pair, monkeypatch, tmp_path):
    content, _ = pair
    seen = _captured(monkeypatch, "stylize_files", "run", "--model", tmp_path / "m.pth", content)
    declared = _declared(ModelOptions)
    assert {k: seen.get(k, "<not passed>") for k in declared} == declared
    assert not set(seen) & (set(_declared(StylizeOptions)) - set(declared))  # no optimisation-only option


def test_train_passes_the_dataclass_defaults_to_the_api(pair, monkeypatch, tmp_path):
    _, style = pair
    seen = _captured(monkeypatch, "train", "train", "--style", style, "--data", tmp_path)
    declared = _declared(TrainOptions)
    assert {k: seen.get(k, "<not passed>") for k in declared} == declared


def test_run_model_help_and_flags_are_its_own(pair, tmp_path):
    """`run --model` lists only the options that apply (no --iterations, no 512 px default size), and refuses
    an optimisation flag in one line."""
    content, _ = pair
    result = invoke("run", "--model", tmp_path / "m.pth", "--help")
    assert result.exit_code == 0
    flags = {"--" + name.replace("_", "-") for name in _declared(ModelOptions)}
    for flag in flags:
        assert flag in result.output
    for name in set(_declared(StylizeOptions)) - set(_declared(ModelOptions)):
        assert "--" + name.replace("_", "-") + " " not in result.output, name
    assert "[default: 512]" not in result.output
    assert_one_line_error(invoke("run", "--model", tmp_path / "m.pth", content, "--iterations", "5"), 2,
                          "--iterations")


def test_run_model_leaves_the_run_command_as_it_found_it(pair, tmp_path):
    content, _ = pair
    before = invoke("--help").output
    invoke("run", "--model", tmp_path / "m.pth", content, "--iterations", "5")  # parsed, then refused
    assert invoke("--help").output == before


# ------------------------------------------------------------------ --bit-depth


def _png_bit_depth(path: Path) -> int:
    data = path.read_bytes()
    assert data[12:16] == b"IHDR"
    return data[24]


def test_run_bit_depth_16_writes_16bit_png_and_snapshots(pair, tmp_path):
    content, style = pair
    out = tmp_path / "print.png"
    result = invoke("run", content, style, "-o", out, "--bit-depth", "16", "--save-every", "2", *FAST)
    assert result.exit_code == 0, result.output
    assert _png_bit_depth(out) == 16 and _png_bit_depth(tmp_path / "print.step2.png") == 16
    levels = (styletx.load_image(out).tensor * 65535).round()
    assert bool((levels % 257 != 0).any())  # the optimiser's float result, not an 8-bit picture widened
    assert json.loads(read_metadata(out)["styletx.record"])["options"]["bit_depth"] == 16
    with Image.open(out) as im:
        assert im.size == (32, 27) and im.info.get("icc_profile") == srgb_icc_profile()


def test_run_bit_depth_16_tiff(pair, tmp_path):
    content, style = pair
    out = tmp_path / "print.tif"
    assert invoke("run", content, style, "-o", out, "--bit-depth", "16", *FAST).exit_code == 0
    with tifffile.TiffFile(out) as tf:
        assert tf.pages[0].bitspersample == 16 and tf.pages[0].shape == (27, 32, 3)


def test_bad_bit_depth_is_a_one_line_usage_error(pair, tmp_path):
    content, style = pair
    out = tmp_path / "o.png"
    assert_one_line_error(invoke("run", content, style, "-o", out, "--bit-depth", "12", *FAST), 2, "--bit-depth")
    assert_one_line_error(invoke("run", content, style, "-o", tmp_path / "o.jpg", "--bit-depth", "16", *FAST), 2,
                          "--bit-depth 16 (bit_depth=16) needs a .png or .tif output")
    assert sorted(tmp_path.iterdir()) == sorted([content, style])  # nothing written
