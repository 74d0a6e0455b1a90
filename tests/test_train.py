"""Training a transformer: tiny network, few steps, generated images, the weight-free backbone."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import make_image
from styletx.errors import InputError
from styletx.options import TrainOptions, build
from styletx.api import train
from styletx.cli import main
from styletx.engines.feedforward.model import load_transformer

FAST = dict(size=32, batch_size=2, backbone="random", arch="slim", learning_rate=1e-3, checkpoint_every=0)


@pytest.fixture(autouse=True)
def _private_graph_cache(tmp_path_factory, monkeypatch):
    """Transformer.compile() caches ONNX graphs; keep the tests' out of the user's cache folder."""
    monkeypatch.setenv("STYLETX_CACHE_DIR", str(tmp_path_factory.mktemp("styletx-cache")))


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    (folder / "nested").mkdir(parents=True)
    make_image(48, 40, seed=1).save(folder / "a.png")
    make_image(40, 56, seed=2).save(folder / "nested" / "b.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    make_image(40, 40, seed=3, kind="stripes").save(path)
    return path


def test_loss_goes_down_and_checkpoint_round_trips(tmp_path, data, style):
    seen = []
    out = tmp_path / "m.pth"
    result = train(style, data, out, steps=12, preview_every=4, callback=seen.append, **FAST)
    assert result.steps == 12 and [p.step for p in seen] == list(range(1, 13))
    totals = [step["total"] for step in result.losses]  # each step sees other crops: compare means of three
    first, last = sum(totals[:3]) / 3, sum(totals[-3:]) / 3
    assert last < 0.7 * first, totals
    assert result.skipped == 1 and "broken.png" in result.skipped_files[0]
    assert seen[-1].skipped == 1 and set(seen[-1].losses) == {"content", "style", "tv", "total"}
    assert len(result.previews) == 3 and all(p.exists() for p in result.previews)

    tf = load_transformer(out, device="cpu", precision="fp32")
    assert tf.arch == "slim"
    assert tf.meta["style"]["name"] == "style.png" and len(tf.meta["style"]["sha256"]) == 64
    assert tf.meta["train"]["steps"] == 12 and tf.meta["train"]["backbone"] == "random"
    assert tf.meta["losses"]["total"] == pytest.approx(totals[-1])
    x = torch.rand(1, 3, 29, 31)
    trained = result.transformer.stylize(x)
    assert (trained - x).abs().mean() > 1e-3  # slim starts as the identity: training moved it away
    assert torch.allclose(tf.stylize(x), trained, atol=1e-6)


def test_resume_continues_the_step_count(tmp_path, data, style):
    out = tmp_path / "m.pth"
    train(style, data, out, steps=2, **FAST)
    with pytest.raises(InputError, match="exists"):
        train(style, data, out, steps=2, **FAST)
    result = train(style, data, out, steps=4, resume=str(out), **FAST)
    assert result.steps == 4 and len(result.losses) == 4
    assert load_transformer(out).meta["step"] == 4


def test_options_are_validated_with_their_names(tmp_path, data, style):
    with pytest.raises(InputError, match="batch_size"):
        build(TrainOptions, batch_size=0)
    with pytest.raises(InputError, match="arch"):
        build(TrainOptions, arch="huge")
    with pytest.raises(InputError, match="steps"):
        build(TrainOptions, steps=0, epochs=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        train(style, empty, tmp_path / "x.pth", steps=1, **FAST)
    assert not (tmp_path / "x.pth").exists()


def test_epochs_bound_the_run(tmp_path, data, style):
    result = train(style, data, None, steps=0, epochs=1, **FAST)
    assert result.steps == 2 and result.path is None  # 3 image files / batch 2 = 2 steps per epoch


def test_cli_train_then_run_writes_a_stylised_image(tmp_path, data, style):
    runner = CliRunner()
    model = tmp_path / "m.pth"
    res = runner.invoke(main, ["train", "--style", str(style), "--data", str(data), "-o", str(model), "--size", "32",
                               "--steps", "3", "--batch-size", "2", "--backbone", "random", "--arch", "slim"])
    assert res.exit_code == 0, res.output
    assert model.exists()
    content = tmp_path / "c.png"
    make_image(33, 27, seed=5).save(content)
    out = tmp_path / "c_out.png"
    res = runner.invoke(main, ["run", "--model", str(model), str(content), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists()
    res = runner.invoke(main, ["export", str(model), "-o", str(tmp_path / "m.pt")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.pt").exists()
