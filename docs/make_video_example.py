"""Regenerate the gallery's video example (run: python docs/make_video_example.py).

A 2-second clip is made from examples/cat.jpg by a slow pan and zoom (so there is real motion), then stylised
with examples/swirls.jpg by ``styletx.stylize_video`` through the optimisation engine (each frame starts from
the previous result moved along the optical flow, with a temporal loss) and written as MP4. The gallery shows
an animated GIF of input | result side by side, a strip of every fourth frame as PNG, and the flicker scores of
the result with the temporal loss and with the warm start alone (``temporal_weight=0``), settings beside them
in docs/gallery/video.json; the stylised MP4 is kept as docs/gallery/video-cat-swirls.mp4.
"""

from __future__ import annotations

import argparse
import fractions
import json
import shutil
import sys
import tempfile
from pathlib import Path

import av
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx.io import video as vio  # noqa: E402

OUT = ROOT / "docs" / "gallery"


def make_pan_clip(photo: Path, path: Path, *, size=(224, 160), frames: int = 24, fps: int = 12) -> Path:
    """A clip that pans across and zooms slowly into ``photo`` (size in px, H.264)."""
    img = Image.open(photo).convert("RGB")
    w, h = size
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": "12"}
    for i in range(frames):
        zoom = 1.0 + 0.15 * i / frames
        cw, ch = img.width / (1.4 * zoom), img.height / (1.4 * zoom)
        left = (img.width - cw) * (0.2 + 0.5 * i / frames)
        top = (img.height - ch) * 0.4
        crop = img.resize((w, h), Image.LANCZOS, box=(left, top, left + cw, top + ch))
        frame = av.VideoFrame.from_image(crop).reformat(format="yuv420p")
        frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    out.close()
    return path


def side_by_side(clip: Path, result: Path) -> list:
    pairs = []
    for a, b in zip(vio.read_frames(clip), vio.read_frames(result)):
        pa, pb = styletx.tensors.to_pil(a.image), styletx.tensors.to_pil(b.image)
        both = Image.new("RGB", (pa.width + pb.width + 4, pa.height), "white")
        both.paste(pa, (0, 0))
        both.paste(pb, (pa.width + 4, 0))
        pairs.append(both)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="styletx-video-"))
    clip = make_pan_clip(ROOT / "examples" / "cat.jpg", work / "cat-pan.mp4", frames=args.frames)
    settings = dict(backbone="random", iterations=150, frame_iterations=40, temporal_weight=200.0, seed=0)
    steady = styletx.stylize_video(clip, work / "cat-swirls.mp4", style=ROOT / "examples" / "swirls.jpg",
                                   overwrite=True, score=True, **settings)
    warm_only = styletx.stylize_video(clip, work / "cat-swirls-warm-start.mp4", style=ROOT / "examples" / "swirls.jpg",
                                      overwrite=True, score=True, **{**settings, "temporal_weight": 0.0})
    shutil.copyfile(work / "cat-swirls.mp4", OUT / "video-cat-swirls.mp4")
    pairs = side_by_side(clip, work / "cat-swirls.mp4")
    pairs[0].save(OUT / "video-cat-swirls.gif", save_all=True, append_images=pairs[1:], duration=1000 // 12, loop=0)
    strip = pairs[::4]
    sheet = Image.new("RGB", (strip[0].width, (strip[0].height + 4) * len(strip)), "white")
    for i, p in enumerate(strip):
        sheet.paste(p, (0, i * (p.height + 4)))
    sheet.save(OUT / "video-cat-swirls-frames.png")
    info = {
        "clip": "examples/cat.jpg panned and zoomed, 224x160, 12 frames/s, %d frames" % args.frames,
        "style": "examples/swirls.jpg",
        "settings": settings,
        "frames": steady.frames,
        "seconds": round(steady.seconds, 1),
        "flicker": round(steady.flicker, 3) if steady.flicker is not None else None,
        "flicker_warm_start_only": round(warm_only.flicker, 3) if warm_only.flicker is not None else None,
        "engine": steady.engine.precision_reason,
    }
    (OUT / "video.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
