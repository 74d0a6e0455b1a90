"""GPU paths (run with `pytest -m gpu`; skipped without CUDA, never part of the default run)."""

from __future__ import annotations

import pytest
import torch

import styletx

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stylize_on_cuda_matches_loss_trend(precision, content_image, style_image):
    result = styletx.stylize(content_image, style_image, size=64, iterations=10, backbone="vgg19", weights=None,
                             device="cuda", precision=precision, scales=1)
    assert result.record.device.startswith("cuda")
    assert result.record.precision == precision
    totals = [s["total"] for s in result.record.losses]
    assert totals[-1] < totals[0]


def test_transformer_on_cuda_matches_cpu():
    x = torch.rand(1, 3, 37, 53)
    cpu = styletx.new_transformer(arch="standard", seed=0, device="cpu", precision="fp32").stylize(x)
    gpu = styletx.new_transformer(arch="standard", seed=0, device="cuda", precision="fp32").stylize(x.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)
