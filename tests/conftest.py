"""Shared test set-up: no network, fixed seeds, tiny generated images, GPU tests skipped without a GPU."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

import styletx.device


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path_factory):
    """Tests never touch the network: any connection attempt fails, and weights are looked up in an empty cache."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("STYLETX_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.delenv("STYLETX_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("STYLETX_CACHE_DIR", str(tmp_path_factory.mktemp("styletx_cache")))
    monkeypatch.delenv("STYLETX_PRECISION", raising=False)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def speeds(monkeypatch):
    """The probes' clock, forced: seconds per timed call by label. The default host has emulated bf16 (3x slower
    than fp32) and eager torch faster than ONNX Runtime; a test sets ``speeds["bf16"] = 0.5`` (native bf16) or
    ``speeds["onnxruntime"] = 0.5`` to force the other case. The probes still run the real networks (their
    outputs are compared); only the timing is forced, so no test depends on the host's CPU features."""
    table = {"fp32": 1.0, "bf16": 3.0, "torch": 1.0, "torch.compile": 1.0, "onnxruntime": 2.0, "winograd": 1.0}

    def forced_time_call(fn, device, label=""):
        fn()
        return table[label]

    monkeypatch.setattr(styletx.device, "time_call", forced_time_call)
    return table


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_image(width: int, height: int, *, seed: int = 0, kind: str = "scene") -> Image.Image:
    """A small deterministic RGB test picture: 'scene' (shapes and gradients) or 'stripes' (a texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "stripes":
        period = 6.0 + 4.0 * rng.random()
        phase = (xx + yy * 0.5) / period * 2 * np.pi
        r = 0.5 + 0.5 * np.sin(phase)
        g = 0.3 + 0.2 * np.cos(phase * 0.5)
        b = 0.8 - 0.6 * r
        arr = np.stack([r, g, b], axis=-1)
    else:
        arr = np.stack([xx / width, yy / height, 0.5 + 0.0 * xx], axis=-1)
        cx, cy = width * (0.3 + 0.4 * rng.random()), height * (0.3 + 0.4 * rng.random())
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) / 4) ** 2
        arr[disk] = rng.random(3)
        arr[int(height * 0.7):, : width // 3] = (0.1, 0.6, 0.2)
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture
def content_image() -> Image.Image:
    return make_image(48, 40, seed=1, kind="scene")


@pytest.fixture
def style_image() -> Image.Image:
    return make_image(40, 40, seed=2, kind="stripes")
