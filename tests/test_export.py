"""Exports (TorchScript, ONNX) give the eager model's output at any size and batch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort  # in the dev extra CI installs: a missing package must fail, not skip
import pytest
import torch

from styletx.errors import InputError
from styletx.export import export
from styletx.engines.feedforward.model import load_transformer, new_transformer

TOL = 1e-4  # fp32 in both; differences are summation order only


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    tf = new_transformer("standard", seed=0, device="cpu", precision="fp32", channels=(8, 16, 32), res_blocks=2)
    return tf.save(tmp_path_factory.mktemp("m") / "tiny.pth", style={"name": "s.png", "sha256": "0" * 64})


def _eager(path, x):
    return load_transformer(path, device="cpu", precision="fp32").stylize(x)


def test_torchscript_matches_eager(model_path, tmp_path):
    out = export(model_path, tmp_path / "tiny.pt")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        extra = {"styletx.json": ""}
        scripted = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["styletx.json"])  # the checkpoint's description travels with the export
    assert meta["style"]["name"] == "s.png" and meta["arch"]["channels"] == [8, 16, 32]
    for shape in [(1, 3, 37, 53), (2, 3, 64, 48), (1, 3, 16, 16)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            y = scripted(x)
        assert y.shape == x.shape
        assert float((y - _eager(model_path, x)).abs().max()) < TOL


def test_onnx_matches_eager(model_path, tmp_path):
    out = export(model_path, tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "image"
    for shape in [(1, 3, 37, 53), (3, 3, 40, 24)]:
        x = torch.rand(*shape)
        (y,) = session.run(None, {"image": x.numpy()})
        assert y.shape == tuple(shape)
        assert float(np.abs(y - _eager(model_path, x).numpy()).max()) < TOL


def test_export_refuses_unknown_formats_and_clobbering(model_path, tmp_path):
    with pytest.raises(InputError, match="unknown export format"):
        export(model_path, tmp_path / "m.tflite")
    target = tmp_path / "m.pt"
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        export(model_path, target)
    assert target.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind


@pytest.mark.parametrize("arch, options", [("slim-resize", {}), ("slim-2x", {}), ("slim-2x", {"color_path": True}),
                                           ("slim-2x", {"skip_map": 4}), ("slim-2x", {"skip_norm": True})])
def test_resize_head_networks_export_to_onnx_and_torchscript(arch, options, tmp_path):
    """The resize heads (slim-2x's after its half-resolution stage, with and without the colour path's resize)
    trace into both formats with the eager model's numbers, at sizes that are not multiples of the network's 16 px
    (and the skip's per-pixel colour map)."""
    tf = new_transformer(arch, seed=2, device="cpu", precision="fp32", **options)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # untrained, the input skip makes it the identity: give the head a real change
        for conv in (tf.net.deconv3.conv2d, getattr(tf.net, "color1x1", None), getattr(tf.net, "skip_map2", None)):
            if conv is not None:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.05)
    path = tf.save(tmp_path / f"{arch}.pth")
    x = torch.rand(1, 3, 37, 53)
    eager = _eager(path, x)
    assert float((eager - x).abs().mean()) > 0.01
    session = ort.InferenceSession(str(export(path, tmp_path / f"{arch}.onnx")), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"image": x.numpy()})
    assert y.shape == tuple(x.shape) and float(np.abs(y - eager.numpy()).max()) < TOL
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(export(path, tmp_path / f"{arch}.pt")))
    with torch.no_grad():
        assert float((scripted(x) - eager).abs().max()) < TOL
