"""Video pipeline throughput against the network alone on the same frames, measured in the same run.

A clip of a textured pattern sliding and turning (H.264, with AAC audio) is generated at each size. For the
feed-forward model (slim by default, its last conv randomised so it is not the identity; ``compile()``d as the
pipeline does), in interleaved rounds:

* network alone: the clip's frames decoded into memory beforehand, then ``model.stylize`` on batches of
  ``--batch-size`` frames (frames/s);
* pipeline: ``styletx.stylize_video`` from file to file (decode + stylise + encode, overlapped in threads);
* pipeline with ``flicker_reduction`` (its cost as a fraction of the frame time).

It prints the medians, the ratio pipeline / network (issue 8's bar: >= 0.9 at 640x360 with slim), and the
flicker score of the results with and without flicker reduction (``styletx.score_video``).

    python benchmarks/bench_video.py                       # 640x360 and 1280x720, 48 frames, 3 rounds
    python benchmarks/bench_video.py --sizes 640x360 --frames 96 --rounds 5 --arch standard
"""

from __future__ import annotations

import argparse
import fractions
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx.io import video as vio  # noqa: E402
from styletx.runtime import retain_freed_memory  # noqa: E402


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A smooth colour pattern that slides 3 px and turns slightly per frame, with a sine-tone AAC track."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"crf": "18"}
    aus = out.add_stream("aac", rate=44100)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(frames):
        a = 0.004 * i
        u = (xx - width / 2) * np.cos(a) - (yy - height / 2) * np.sin(a) - 3 * i
        v = (xx - width / 2) * np.sin(a) + (yy - height / 2) * np.cos(a)
        rgb = np.stack([0.5 + 0.4 * np.sin(u / 13), 0.5 + 0.4 * np.cos(v / 17), 0.5 + 0.3 * np.sin((u + v) / 29)], -1)
        frame = av.VideoFrame.from_ndarray((rgb * 255).astype(np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = fractions.Fraction(1, fps)
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    samples = int(frames / fps * 44100)
    for k in range(0, samples, 1024):
        tone = (0.1 * np.sin(2 * np.pi * 440 * (k + np.arange(1024)) / 44100))[None].astype(np.float32)
        af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, k
        for packet in aus.encode(af):
            out.mux(packet)
    for packet in aus.encode(None):
        out.mux(packet)
    out.close()
    return path


def network_alone(model: styletx.FeedForwardModel, frames: list, batch: int) -> float:
    """Frames per second of ``model.stylize`` on frames already in memory, ``batch`` at a time."""
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch):
        model.stylize(torch.cat(frames[i : i + batch]))
    return len(frames) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--arch", default="slim", choices=["slim", "standard"])
    parser.add_argument("--flicker", type=float, default=0.5, help="flicker_reduction strength measured")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of the pipeline's encoder")
    args = parser.parse_args()
    retain_freed_memory()  # what the CLI does in its process
    torch.manual_seed(0)
    print(f"styletx video benchmark: torch {torch.__version__}, PyAV {av.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{args.arch}, batch {args.batch_size}, {args.frames} frames, {args.rounds} interleaved rounds")
    model = styletx.new_transformer(args.arch, seed=0, device="cpu")
    with torch.no_grad():
        w = model.net.deconv3.conv2d.weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    model.compile()
    print(f"model: {model.describe()['backend_reason']}; {model.describe()['precision_reason']}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            clip = make_clip(folder / f"clip-{size}.mp4", width, height, args.frames)
            frames = [f.image for f in vio.read_frames(clip)]
            network_alone(model, frames[: args.batch_size], args.batch_size)  # warm-up at this size
            net, pipe, flick = [], [], []
            for r in range(args.rounds):
                net.append(network_alone(model, frames, args.batch_size))
                rec = styletx.stylize_video(clip, folder / f"out-{size}.mp4", model=model, overwrite=True,
                                            batch_size=args.batch_size, preset=args.preset)
                pipe.append(rec.fps)
                rec_f = styletx.stylize_video(clip, folder / f"outf-{size}.mp4", model=model, overwrite=True,
                                              batch_size=args.batch_size, flicker_reduction=args.flicker,
                                              preset=args.preset)
                flick.append(rec_f.fps)
            n, p, f = statistics.median(net), statistics.median(pipe), statistics.median(flick)
            print(f"\n{size}: network alone {n:.1f} frames/s, pipeline {p:.1f} frames/s "
                  f"-> ratio {p / n:.2f} (bar at 640x360: >= 0.9)  [rounds: net {[round(x, 1) for x in net]}, "
                  f"pipeline {[round(x, 1) for x in pipe]}]")
            print(f"  stage seconds of the last pipeline run (overlapping): {rec.timings}")
            cost = (1 / f - 1 / p) / (1 / p)
            print(f"  with flicker_reduction={args.flicker}: {f:.1f} frames/s, its cost {100 * cost:.0f}% of the "
                  f"frame time ({rec_f.timings.get('flicker', 0) / max(rec_f.frames, 1) * 1e3:.1f} ms/frame)")
            off = styletx.score_video(folder / f"out-{size}.mp4", clip)["flicker"]
            on = styletx.score_video(folder / f"outf-{size}.mp4", clip)["flicker"]
            print(f"  flicker score (1 = changes as much as the input; lower is steadier): off {off:.3f}, "
                  f"on {on:.3f}")


if __name__ == "__main__":
    main()
