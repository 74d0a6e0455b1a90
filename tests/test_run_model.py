"""``styletx run --model`` and ``stylize_files``: its own options, through the API, batches, output folders."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import styletx
from conftest import make_image
from styletx.cli import main
from styletx.io.image import read_metadata

TINY = dict(channels=(8, 16, 32), res_blocks=1)


def _model(tmp_path):
    model = styletx.new_transformer("standard", seed=0, device="cpu", **TINY)
    return model.save(tmp_path / "m.pth")


def _photos(folder, sizes):
    folder.mkdir()
    for i, (w, h) in enumerate(sizes):
        make_image(w, h, seed=i).save(folder / f"p{i}.png")
    return folder


def test_batches_of_same_sized_images_give_the_one_by_one_result(tmp_path):
    path = _model(tmp_path)
    photos = _photos(tmp_path / "in", [(24, 20), (24, 20), (30, 18), (24, 20)])
    one = styletx.stylize_files(path, [photos], tmp_path / "one", batch_size=1, precision="fp32")
    four = styletx.stylize_files(path, [photos], tmp_path / "four", batch_size=4, precision="fp32")
    for a, b in zip(one, four):
        ta, tb = styletx.load_image(a).tensor, styletx.load_image(b).tensor
        assert ta.shape == tb.shape and float((ta - tb).abs().max()) <= 1 / 255


def test_run_model_creates_the_output_folder_and_reports_each_file(tmp_path):
    path = _model(tmp_path)
    photos = _photos(tmp_path / "photos", [(24, 20), (20, 24)])
    result = CliRunner().invoke(main, ["run", "--model", str(path), str(photos), "-o", str(tmp_path / "stylised"),
                                       "-q", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "stylised").iterdir())
    assert [p.name for p in written] == ["p0_stylized.png", "p1_stylized.png"]
    info = json.loads(read_metadata(written[0])["styletx.model"])
    assert info["precision"] == "fp32" and info["precision_reason"] == "fp32 (forced)"


def test_run_model_refuses_options_of_the_optimisation_engine_in_one_line(tmp_path):
    path = _model(tmp_path)
    photo = tmp_path / "p.png"
    make_image(20, 20).save(photo)
    result = CliRunner().invoke(main, ["run", "--model", str(path), str(photo), "--iterations", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == "styletx: error: No such option '--iterations'."
    assert not list(tmp_path.glob("p_stylized*"))


def test_run_model_help_shows_only_what_applies():
    text = CliRunner().invoke(main, ["run", "--model", "m.pth", "--help"], terminal_width=120).output
    assert "--backend" in text and "--batch-size" in text and "content's own size" in text
    for flag in ("--iterations", "--style-weight", "--save-every", "[default: 512]"):
        assert flag not in text
    plain = CliRunner().invoke(main, ["run", "--help"], terminal_width=120).output
    assert "--iterations" in plain and "--backend" not in plain


def test_the_api_takes_a_loaded_model_and_its_options(tmp_path, content_image):
    model = styletx.new_transformer("slim", seed=0, device="cpu", **TINY)
    result = styletx.stylize(content_image, model=model, size=32, precision="fp32", backend="torch", output="tensor")
    assert result.image.shape[-2:] == (27, 32)  # 48x40 content, longest side 32
    assert result.record.precision == "fp32" and result.record.backend.startswith("torch")
    assert result.record.options["size"] == 32
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(model.stylize(x), model.stylize(x))


def test_run_model_bit_depth_16(tmp_path):
    path = _model(tmp_path)
    photos = _photos(tmp_path / "photos", [(24, 20), (20, 24)])
    result = CliRunner().invoke(main, ["run", "--model", str(path), str(photos), "-o", str(tmp_path / "out"),
                                       "-q", "--precision", "fp32", "--bit-depth", "16"])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 2
    for p in written:
        data = p.read_bytes()
        assert data[12:16] == b"IHDR" and data[24] == 16  # bit depth 16
    assert json.loads(read_metadata(written[0])["styletx.model"])["precision"] == "fp32"  # metadata at 16 bits
    refused = CliRunner().invoke(main, ["run", "--model", str(path), str(photos / "p0.png"), "-o",
                                        str(tmp_path / "x.jpg"), "-q", "--bit-depth", "16"])
    assert refused.exit_code == 2 and "--bit-depth 16" in refused.output
    assert not (tmp_path / "x.jpg").exists()


def test_the_api_saves_16_bits_from_the_full_precision_result(tmp_path, content_image):
    model = styletx.new_transformer("slim", seed=0, device="cpu", **TINY)
    result = styletx.stylize(content_image, model=model, size=32, precision="fp32", backend="torch", bit_depth=16)
    assert result.bit_depth == 16 and result.pixels is not None
    deep = result.save(tmp_path / "deep.png")
    assert deep.read_bytes()[24] == 16
    back = styletx.load_image(deep).tensor
    assert float((back - result.pixels).abs().max()) <= 1.5 / 65535
    assert result.save(tmp_path / "flat.png", bit_depth=8).read_bytes()[24] == 8
    with pytest.raises(styletx.InputError, match="--bit-depth 16"):
        result.save(tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    plain = styletx.stylize(content_image, model=model, size=32, precision="fp32", backend="torch")
    assert plain.bit_depth == 8 and plain.pixels is None
    assert plain.save(tmp_path / "p.png").read_bytes()[24] == 8
    for bad in (12, True, 16.0, "16"):
        with pytest.raises(styletx.InputError, match="bit_depth: expected one of 8, 16, got"):
            styletx.stylize(content_image, model=model, bit_depth=bad)
