"""The temporal room: optical flow, warping, occlusion masks, flicker reduction, and the flicker score."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
import torch.nn.functional as F

from styletx import metrics, temporal
from styletx.errors import InputError


def texture(h: int, w: int, *, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """(1, C, h, w) smooth random texture in [0, 1]: detail at periods of about 4 and 12 px."""
    g = torch.Generator().manual_seed(seed)
    fine = F.interpolate(torch.rand(1, channels, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False)
    coarse = F.interpolate(torch.rand(1, channels, h // 12 + 1, w // 12 + 1, generator=g), size=(h, w),
                           mode="bicubic", align_corners=False)
    return (0.5 * fine + 0.5 * coarse).clamp(0, 1)


def shifted_clip(frames: int, dx: int, dy: int, *, h: int = 48, w: int = 64, seed: int = 0) -> List[torch.Tensor]:
    """Frames of a picture whose content moves by (dx, dy) px per frame (a window sliding over a larger texture)."""
    margin = 4 + frames * max(abs(dx), abs(dy))
    big = texture(h + 2 * margin, w + 2 * margin, seed=seed)
    return [big[..., margin - t * dy:margin - t * dy + h, margin - t * dx:margin - t * dx + w] for t in range(frames)]


def constant_flow(dx: float, dy: float, h: int, w: int) -> torch.Tensor:
    return torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w).clone()


def square_scene(step: int = 4, side: int = 32, h: int = 96, w: int = 128) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """A textured square (rows 16 to 16 + side) moving right by ``step`` px over a still background:
    (previous frame, current frame, the square's left edge now)."""
    background = texture(h, w, seed=1)
    patch = texture(side, side, seed=2)
    top, left = 16, 20
    previous, current = background.clone(), background.clone()
    previous[..., top:top + side, left:left + side] = patch
    current[..., top:top + side, left + step:left + step + side] = patch
    return previous, current, left + step


# ------------------------------------------------------------------------------------------------------------ warp


def test_warp_by_an_integer_shift_reproduces_the_shifted_image():
    image = texture(20, 24, channels=5)  # any channel count
    out = temporal.warp(image, constant_flow(2.0, -1.0, 20, 24))  # out[y, x] = image[y - 1, x + 2]
    assert out.shape == image.shape and out.dtype == image.dtype
    assert torch.allclose(out[..., 1:, :-2], image[..., :-1, 2:], atol=1e-5)
    # border padding: positions past the right edge take the last column
    assert torch.allclose(out[..., 1:, -1], image[..., :-1, -1], atol=1e-5)


def test_warp_by_zero_flow_is_the_identity_and_half_a_pixel_averages_neighbours():
    image = texture(10, 12)
    assert torch.allclose(temporal.warp(image, constant_flow(0.0, 0.0, 10, 12)), image, atol=1e-6)
    half = temporal.warp(image, constant_flow(0.5, 0.0, 10, 12))
    assert torch.allclose(half[..., :-1], 0.5 * (image[..., :-1] + image[..., 1:]), atol=1e-5)


def test_warp_keeps_dtype_and_rejects_mismatched_flows():
    image = texture(10, 12).double()
    assert temporal.warp(image, constant_flow(1.0, 0.0, 10, 12)).dtype == torch.float64
    with pytest.raises(InputError, match="does not match"):
        temporal.warp(image, constant_flow(1.0, 0.0, 10, 13))
    with pytest.raises(InputError, match="flow"):
        temporal.warp(image, torch.zeros(1, 3, 10, 12))


def test_resize_flow_scales_the_vectors_with_the_size():
    flow = constant_flow(1.5, -2.0, 8, 10)
    big = temporal.resize_flow(flow, (16, 30))
    assert big.shape == (1, 2, 16, 30)
    assert torch.allclose(big[:, 0], torch.full((1, 16, 30), 4.5)) and torch.allclose(big[:, 1], torch.full((1, 16, 30), -4.0))


# ------------------------------------------------------------------------------------------------------------ flow


@pytest.mark.parametrize("method", temporal.FLOW_METHODS)
@pytest.mark.parametrize("max_side", [temporal.DEFAULT_FLOW_MAX_SIDE, 64])
def test_estimate_flow_recovers_a_known_shift(method, max_side):
    previous, current = shifted_clip(2, 3, -2, h=72, w=96)  # content moves 3 px right and 2 px up
    flow = temporal.estimate_flow(current, previous, method=method, max_side=max_side)  # 64: at 2/3 size, upsampled
    assert flow.shape == (1, 2, 72, 96) and flow.dtype == torch.float32
    interior = flow[..., 8:-8, 8:-8]
    # the backward flow points from the current frame back to where the content was: (-3, +2)
    assert abs(float(interior[:, 0].median()) + 3) < 0.5
    assert abs(float(interior[:, 1].median()) - 2) < 0.5
    # and warping the previous frame by it reproduces the current frame
    error = (temporal.warp(previous, flow) - current).abs()[..., 8:-8, 8:-8]
    assert float(error.mean()) < 0.02


def test_estimate_flow_checks_its_arguments():
    a, b = shifted_clip(2, 1, 0)
    with pytest.raises(InputError, match="unknown optical-flow method"):
        temporal.estimate_flow(a, b, method="magic")
    with pytest.raises(InputError, match="max_side"):
        temporal.estimate_flow(a, b, max_side=2)
    with pytest.raises(InputError, match="differ"):
        temporal.estimate_flow(a, b[..., :-1])


# ------------------------------------------------------------------------------------------------ consistency mask


def test_consistency_mask_keeps_a_pure_translation_except_what_enters_the_frame():
    h, w = 24, 32
    back, fwd = constant_flow(-3.0, 2.0, h, w), constant_flow(3.0, -2.0, h, w)
    mask = temporal.consistency_mask(fwd, back)
    assert mask.shape == (1, 1, h, w) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert bool((mask[..., :h - 2, 3:] == 1).all())  # came from inside the previous frame
    assert bool((mask[..., :, :2] == 0).all()) and bool((mask[..., -1:, :] == 0).all())  # entered the frame


def test_consistency_mask_on_estimated_flow_of_a_translation_is_one_inside():
    previous, current = shifted_clip(2, 2, 1)
    _, mask = temporal.reliable_flow(current, previous)
    assert float(mask[..., 6:-6, 6:-6].mean()) > 0.95


def test_consistency_mask_drops_pixels_uncovered_by_a_moving_square():
    previous, current, left = square_scene(step=4)
    back = torch.zeros(1, 2, 96, 128)
    fwd = torch.zeros(1, 2, 96, 128)
    back[:, 0, 16:48, left:left + 32] = -4.0  # the square now, pointing to where it was
    fwd[:, 0, 16:48, left - 4:left + 28] = 4.0  # the square then, pointing to where it went
    mask = temporal.consistency_mask(fwd, back)[0, 0]
    assert bool((mask[16:48, left - 4:left] == 0).all()), "background uncovered by the square was hidden before"
    assert bool((mask[:12] == 1).all()) and bool((mask[18:46, left + 2:left + 30] == 1).all())
    # estimated flows (the default method) find the same: the uncovered strip masked out, the rest kept
    _, estimated = temporal.reliable_flow(current, previous)
    estimated = estimated[0, 0]
    assert float(estimated[18:46, left - 4:left].mean()) < 0.2
    assert float(estimated[:12].mean()) > 0.95 and float(estimated[60:].mean()) > 0.95
    assert float(estimated[20:44, left + 4:left + 28].mean()) > 0.9


# ---------------------------------------------------------------------------------------------- flicker reduction


def test_flicker_reducer_strength_zero_changes_nothing():
    clip = shifted_clip(3, 2, 1)
    reducer = temporal.FlickerReducer(0.0)
    for frame in clip:
        stylised = 1.0 - frame
        assert reducer.reduce(frame, stylised) is stylised


def test_flicker_reducer_full_strength_copies_the_warped_previous_output_where_reliable(monkeypatch):
    x0, x1 = shifted_clip(2, 2, 1)
    s0, s1 = texture(48, 64, seed=5), texture(48, 64, seed=6)
    reducer = temporal.FlickerReducer(1.0)
    assert reducer.reduce(x0, s0) is s0  # the first frame passes through
    out = reducer.reduce(x1, s1)
    flow_back, mask = temporal.reliable_flow(x1, x0)
    assert float(mask.mean()) > 0.8
    expected = torch.where(mask.bool(), temporal.warp(s0, flow_back), s1)
    assert torch.allclose(out, expected, atol=1e-6)
    # the same with the flow computed ahead (as a pipeline stage would): none is computed inside
    ahead = temporal.FlickerReducer(1.0)
    ahead.reduce(x0, s0)
    with monkeypatch.context() as m:
        m.setattr(temporal, "reliable_flow", lambda *a, **k: pytest.fail("flow computed again"))
        assert torch.equal(ahead.reduce(x1, s1, flow=(flow_back, mask)), out)
    reducer.reset()
    assert reducer.reduce(x1, s1) is s1


def test_flicker_reducer_blends_by_its_strength():
    x0, x1 = shifted_clip(2, 2, 1)
    s0, s1 = texture(48, 64, seed=5), texture(48, 64, seed=6)
    full, half = temporal.FlickerReducer(1.0), temporal.FlickerReducer(0.5)
    full.reduce(x0, s0)
    half.reduce(x0, s0)
    assert torch.allclose(half.reduce(x1, s1), 0.5 * (s1 + full.reduce(x1, s1)), atol=1e-6)
    low = temporal.FlickerReducer(0.5)
    low.reduce(x0, s0.bfloat16())
    assert low.reduce(x1, s1.bfloat16()).dtype == torch.bfloat16  # the stylised frame's dtype is kept


@pytest.mark.parametrize("strength", [-0.1, 1.5, "strong", True, None])
def test_flicker_reducer_rejects_a_strength_outside_zero_to_one(strength):
    with pytest.raises(InputError, match="strength"):
        temporal.FlickerReducer(strength)


# ---------------------------------------------------------------------------------------------------- flicker score


def test_flicker_score_of_the_input_itself_or_a_pointwise_recolouring_is_one():
    clip = shifted_clip(4, 2, 1)
    assert metrics.flicker_score(clip, clip) == pytest.approx(1.0, abs=1e-6)
    assert metrics.flicker_score([1.0 - f for f in clip], clip) == pytest.approx(1.0, abs=1e-5)
    assert metrics.flicker_score([0.5 * f for f in clip], iter(clip)) == pytest.approx(0.5, abs=1e-5)


def test_flicker_score_drops_with_flicker_reduction_on_a_simulated_flicker():
    clip = shifted_clip(6, 2, 1)
    noise = torch.Generator().manual_seed(0)
    flickering = [(f + 0.05 * torch.randn(f.shape, generator=noise)).clamp(0, 1) for f in clip]
    off = metrics.flicker_score(flickering, clip)
    reducer = temporal.FlickerReducer(0.8)
    on = metrics.flicker_score((reducer.reduce(x, s) for x, s in zip(clip, flickering)), clip)
    assert off > 1.5  # the noise flickers more than the motion changes the input
    assert on < 0.5 * off


def test_flicker_meter_streams_and_handles_a_smaller_stylised_size():
    clip = shifted_clip(3, 2, 0, h=48, w=64)
    half = [F.interpolate(frame, scale_factor=0.5, mode="bilinear", antialias=True) for frame in clip]
    meter = metrics.FlickerMeter()
    meter.update(half[0], clip[0])
    assert meter.value() is None and meter.pairs == 0
    for small, frame in zip(half[1:], clip[1:]):
        meter.update(small, frame)
    assert meter.pairs == 2
    assert meter.value() == pytest.approx(1.0, abs=0.05)


def test_flicker_score_needs_two_frames_and_clips_of_one_length():
    clip = shifted_clip(3, 1, 0)
    with pytest.raises(InputError, match="two frames"):
        metrics.flicker_score(clip[:1], clip[:1])
    with pytest.raises(InputError, match="more frames"):
        metrics.flicker_score(clip, clip[:2])
