"""Optical flow for video, measured: endpoint error and time per frame of each flow method on a generated clip with
known motion, then the cost of flicker reduction per frame and what it does to the flicker score.

    python benchmarks/bench_flow.py [--size 640x360] [--frames 6] [--reps 3] [--methods ilk tvl1 ...]

The clip: a picture (scikit-image's astronaut plus a fine gravel texture, enlarged) seen through a moving camera
(translation, rotation and zoom per frame) with a textured square sliding over it on its own path, rendered by
bicubic sampling, so the true backward flow of every pixel is known exactly. Two motions: ``slow`` (about 3-5 px
per frame at 640x360) and ``fast`` (about 10-16 px per frame).

Per method and working size (``max_side``, the longest side the flow is computed at before it is upsampled):
the endpoint error (EPE, px at full size, mean and median of |estimated - true| over the pixels visible in both
frames, and the mean over the pixels the consistency mask keeps, which is what flicker reduction uses), how well the
forward-backward consistency mask separates the pixels that were visible in the previous frame (% kept) from those
that were not (% of occluded or entering pixels masked out), and the time of one flow estimate at full size: CPU
time of this process (median; with ``--threads 1`` it is the work done, whatever else loads the machine) and wall
time (best). One estimate per frame is what the optimisation engine's warm start costs; the mask takes two.

Methods: ``ilk`` and ``tvl1`` (scikit-image, what :func:`styletx.temporal.estimate_flow` offers), and when
``cv2`` imports (``pip install opencv-python-headless``, not a dependency of styletx) OpenCV's ``dis-fast``,
``dis-medium`` (DIS presets) and ``farneback``, on one thread (``cv2.setNumThreads(1)``) like scikit-image and
given the same reduced grey frames.

Then :class:`styletx.temporal.FlickerReducer` per frame at full size (the default method and size), the slim
transformer's own time per frame at that size (``new_transformer("slim", seed=0)``, untrained: its speed does not
depend on its weights) and their ratio; and ``styletx.metrics.flicker_score`` of a simulated flickering
stylisation (each frame plus new noise) with flicker reduction off and on, beside the mean error from the clean
frames (flicker reduction should lower both; at strength 1 the score is 0 by construction, since the score warps
with the same flow and mask, while the error shows what the flow's mistakes cost).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx import metrics, temporal  # noqa: E402

try:  # optional: only to compare against OpenCV
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None

Frame = torch.Tensor
Flow = torch.Tensor


# ------------------------------------------------------------------------------------------------------------- clip


def _base_picture(side: int) -> torch.Tensor:
    """(1, 3, side, side) float in [0, 1]: the astronaut with a fine gravel texture on top, enlarged."""
    picture = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)[None]
    gravel = torch.from_numpy(data.gravel()).float().div(255)[None, None]
    picture = F.interpolate(picture, size=(side, side), mode="bicubic", align_corners=False)
    gravel = gravel.repeat(1, 1, math.ceil(side / 512), math.ceil(side / 512))[..., :side, :side]
    return (0.8 * picture + 0.4 * (gravel - gravel.mean())).clamp(0, 1)


def _affine(tx: float, ty: float, angle: float, zoom: float) -> np.ndarray:
    c, s = math.cos(angle) * zoom, math.sin(angle) * zoom
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _sample(picture: torch.Tensor, coords: np.ndarray) -> torch.Tensor:
    """Bicubic sample of (1, C, h, w) at (H, W, 2) pixel coordinates (x, y) -> (1, C, H, W), border padding."""
    h, w = picture.shape[-2:]
    grid = torch.from_numpy(coords).float().clone()
    grid[..., 0] = grid[..., 0] * (2 / (w - 1)) - 1
    grid[..., 1] = grid[..., 1] * (2 / (h - 1)) - 1
    return F.grid_sample(picture, grid[None], mode="bicubic", padding_mode="border", align_corners=True).clamp(0, 1)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:2, :2].T + m[:2, 2]


def make_clip(width: int, height: int, frames: int, motion: str) -> Tuple[List[Frame], List[Flow], List[torch.Tensor]]:
    """Frames (1, 3, H, W), true backward flows (1, 2, H, W) px for frames 1.. and masks (1, 1, H, W) of the pixels
    visible in the previous frame (not entering the frame, not uncovered by the square)."""
    speed = {"slow": 1.0, "fast": 3.2}[motion]
    pan = np.array([3.0, -1.5]) * speed  # camera content motion, px / frame
    spin = math.radians(0.3) * speed
    zoom = 1.0 + 0.003 * speed
    square_v = np.array([-4.0, 2.5]) * speed
    side = int(2.2 * max(width, height))
    background = _base_picture(side)
    texture = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255)[None]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    pix = np.stack([xs, ys], axis=-1)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    sq_side = min(width, height) * 0.35
    sq_start = np.array([width * 0.55, height * 0.3])

    def camera(t: int) -> np.ndarray:  # frame pixel -> background pixel
        frame_to_centre = _affine(-centre[0], -centre[1], 0.0, 1.0)
        motion_t = _affine(-pan[0] * t, -pan[1] * t, -spin * t, zoom ** -t)
        to_base = _affine(side / 2, side / 2, 0.0, 1.0)
        return to_base @ motion_t @ frame_to_centre

    def square_at(t: int) -> np.ndarray:  # (H, W) bool
        o = sq_start + square_v * t
        return (xs >= o[0]) & (xs < o[0] + sq_side) & (ys >= o[1]) & (ys < o[1] + sq_side)

    clip, flows, visible = [], [], []
    for t in range(frames):
        frame = _sample(background, _apply(camera(t), pix))
        inside = square_at(t)
        local = pix - (sq_start + square_v * t)  # square pixel -> texture pixel
        sq = _sample(texture, local + np.array([100.0, 60.0]))
        frame = torch.where(torch.from_numpy(inside)[None, None], sq, frame)
        clip.append(frame)
        if t == 0:
            continue
        back_bg = _apply(np.linalg.inv(camera(t - 1)) @ camera(t), pix) - pix
        back = np.where(inside[..., None], -square_v, back_bg)
        src = pix + back
        o_prev = sq_start + square_v * (t - 1)
        under_prev = ((src[..., 0] >= o_prev[0]) & (src[..., 0] < o_prev[0] + sq_side)
                      & (src[..., 1] >= o_prev[1]) & (src[..., 1] < o_prev[1] + sq_side))
        in_frame = (src[..., 0] >= 0) & (src[..., 0] <= width - 1) & (src[..., 1] >= 0) & (src[..., 1] <= height - 1)
        ok = in_frame & (inside | ~under_prev)
        flows.append(torch.from_numpy(back.transpose(2, 0, 1)).float()[None])
        visible.append(torch.from_numpy(ok)[None, None])
    return clip, flows, visible


# ---------------------------------------------------------------------------------------------------------- methods


def _cv2_flow(kind: str) -> Callable[[Frame, Frame, Optional[int]], Flow]:
    """A flow function with :func:`styletx.temporal.estimate_flow`'s convention, computed by OpenCV."""

    def grey8(frame: Frame, max_side: Optional[int]) -> np.ndarray:
        return np.clip(temporal._grey(frame, max_side) * 255 + 0.5, 0, 255).astype(np.uint8)

    def flow(target: Frame, source: Frame, max_side: Optional[int]) -> Flow:
        a, b = grey8(target, max_side), grey8(source, max_side)
        # OpenCV: prev(y, x) ~ next(y + flow[..., 1], x + flow[..., 0]), x first.
        if kind == "farneback":
            out = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.1, 0)
        else:
            preset = {"dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[kind]
            out = cv2.DISOpticalFlow_create(preset).calc(a, b, None)
        small = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None]
        return temporal.resize_flow(small, tuple(target.shape[-2:]))

    return flow


def flow_methods(names: Sequence[str]) -> Dict[str, Callable[[Frame, Frame, Optional[int]], Flow]]:
    found: Dict[str, Callable[[Frame, Frame, Optional[int]], Flow]] = {}
    for name in names:
        if name in temporal.FLOW_METHODS:
            found[name] = (lambda m: lambda a, b, s: temporal.estimate_flow(a, b, method=m, max_side=s))(name)
        elif cv2 is not None:
            found[name] = _cv2_flow(name)
    return found


# ------------------------------------------------------------------------------------------------------ measurement


def timed(fn: Callable[[], object]) -> Tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process: every thread's, immune to other processes' load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(clip: List[Frame], truth: List[Flow], visible: List[torch.Tensor],
            flow: Callable[[Frame, Frame, Optional[int]], Flow], max_side: Optional[int], reps: int) -> Dict[str, float]:
    errors, kept_errors, walls, cpus, kept, caught = [], [], [], [], [], []
    for t in range(1, len(clip)):
        for _ in range(reps):
            back, wall, cpu = timed(lambda: flow(clip[t], clip[t - 1], max_side))
            walls.append(wall)
            cpus.append(cpu)
        fwd = flow(clip[t - 1], clip[t], max_side)
        ok = visible[t - 1][0, 0]
        mask = temporal.consistency_mask(fwd, back)[0, 0] > 0.5
        epe = (back - truth[t - 1]).norm(dim=1)[0]
        errors.append(epe[ok])
        kept_errors.append(epe[mask & ok])
        kept.append(float(mask[ok].float().mean()))
        if (~ok).any():
            caught.append(float((~mask[~ok]).float().mean()))
    every = torch.cat(errors)
    return {
        "epe_mean": float(every.mean()),
        "epe_median": float(every.median()),
        "epe_kept": float(torch.cat(kept_errors).mean()),
        "kept": 100 * statistics.mean(kept),
        "caught": 100 * statistics.mean(caught) if caught else float("nan"),
        "cpu_ms": 1000 * statistics.median(cpus),
        "wall_ms": 1000 * min(walls),
    }


def frame_times(fn: Callable[[], object], reps: int) -> Tuple[float, float]:
    """(best wall ms, median CPU ms) of ``fn`` over ``reps`` calls after one warm-up call."""
    fn()
    runs = [timed(fn)[1:] for _ in range(reps)]
    return 1000 * min(w for w, _ in runs), 1000 * statistics.median(c for _, c in runs)


def parse_candidates(specs: Sequence[str]) -> List[Tuple[str, Optional[int]]]:
    out = []
    for spec in specs:
        name, _, side = spec.partition("@")
        out.append((name, None if side in ("", "full") else int(side)))
    return out


DEFAULT_CANDIDATES = [
    "ilk@128", "ilk@192", "ilk@256", "tvl1@128", "tvl1@160", "tvl1@256",
    "dis-fast@256", "dis-fast@full", "dis-medium@256", "dis-medium@full", "farneback@256",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360", help="frame size WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=5, help="frames per motion (flows: one fewer)")
    parser.add_argument("--reps", type=int, default=2, help="timed repeats of each flow estimate")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time then counts no idle spinning of worker threads)")
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES,
                        help="METHOD@MAX_SIDE ('full' = no reduction); cv2 methods are skipped without cv2")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    if cv2 is not None:
        cv2.setNumThreads(1)
    candidates = parse_candidates(args.candidates)
    methods = flow_methods([name for name, _ in candidates])
    print(f"# optical flow at {width}x{height}, {args.frames - 1} flows per motion, torch threads {args.threads}, "
          f"scikit-image single-threaded, cv2 {'1 thread, ' + cv2.__version__ if cv2 is not None else 'absent'}")
    print("# EPE px at full size over pixels visible in both frames; 'kept' = EPE on the pixels the consistency mask")
    print("# keeps; kept % of visible pixels; caught % of occluded/entering pixels masked out; ms per flow estimate")
    print(f"{'motion':<6} {'method':<11} {'max_side':>8} {'EPE mean':>8} {'median':>7} {'kept':>6} {'kept %':>7} "
          f"{'caught %':>8} {'CPU ms':>7} {'wall ms':>7}")
    for motion in ("slow", "fast"):
        clip, truth, visible = make_clip(width, height, args.frames, motion)
        for name, max_side in candidates:
            if name not in methods:
                continue
            r = measure(clip, truth, visible, methods[name], max_side, args.reps)
            print(f"{motion:<6} {name:<11} {str(max_side or 'full'):>8} {r['epe_mean']:8.2f} {r['epe_median']:7.2f} "
                  f"{r['epe_kept']:6.2f} {r['kept']:7.1f} {r['caught']:8.1f} {r['cpu_ms']:7.1f} {r['wall_ms']:7.1f}",
                  flush=True)

    # flicker reduction: cost per frame next to the slim network's, and its effect on a simulated flicker
    clip, _, _ = make_clip(width, height, args.frames, "slow")
    reps = max(3, args.reps)
    reducer = temporal.FlickerReducer(0.8)

    def second_frame() -> None:  # the first frame of a clip only passes through (a copy): time the first two
        reducer.reset()
        reducer.reduce(clip[0], clip[0])
        reducer.reduce(clip[1], clip[1])

    reduce_wall, reduce_cpu = frame_times(second_frame, reps)
    model = styletx.new_transformer("slim", seed=0)
    net_wall, net_cpu = frame_times(lambda: model.stylize(clip[1]), reps)
    print(f"\n# FlickerReducer(0.8) at {width}x{height} (method {temporal.DEFAULT_FLOW_METHOD!r}, max_side "
          f"{temporal.DEFAULT_FLOW_MAX_SIDE}), per frame after the first: {reduce_wall:.1f} ms wall (best), "
          f"{reduce_cpu:.1f} ms CPU; the slim network alone: {net_wall:.1f} ms wall, {net_cpu:.1f} ms CPU; "
          f"ratio {reduce_wall / net_wall:.2f} wall, {reduce_cpu / net_cpu:.2f} CPU")
    noise = torch.Generator().manual_seed(0)
    flickering = [(f + 0.08 * torch.randn(f.shape, generator=noise)).clamp(0, 1) for f in clip]
    print("# simulated flicker: 'stylised' = frame + N(0, 0.08) noise, new noise every frame; error = mean |out - frame|")
    for strength in (0.0, 0.5, 0.8, 1.0):
        reducer = temporal.FlickerReducer(strength)
        steadied = [reducer.reduce(x, s) for x, s in zip(clip, flickering)]
        error = statistics.mean(float((s - x).abs().mean()) for s, x in zip(steadied[1:], clip[1:]))
        print(f"strength {strength}: flicker_score {metrics.flicker_score(steadied, clip):.2f}, error {error:.4f}")
    print(f"flicker_score of the input clip against itself: {metrics.flicker_score(clip, clip):.3f}")


if __name__ == "__main__":
    main()
