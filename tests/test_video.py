"""Video: clips generated with PyAV (constant and variable frame rate, odd sizes, AAC or no audio, rotated) go
through ``stylize_video`` and ``styletx video``; timing, frame count, rotation and audio packets survive; bad
input gives one line and exit 2 and leaves nothing; interrupted runs leave a playable part or nothing."""

from __future__ import annotations

import fractions
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import styletx
from styletx.cli import main
from styletx.errors import InputError
from styletx.io import video as vio

TINY = dict(channels=(8, 16, 32), res_blocks=1)


def make_clip(path: Path, *, frames: int = 8, width: int = 64, height: int = 48, fps: int = 24,
              pts: Optional[List[int]] = None, audio: bool = True, rotation: int = 0, motion: int = 2,
              codec: str = "libx264") -> Path:
    """A clip of a smooth coloured pattern sliding right by ``motion`` px per frame (time base 1/1000 s);
    ``pts`` gives each frame's time in ms (default: constant ``fps``); AAC audio of the same length."""
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height = width, height
    vs.pix_fmt = "yuv420p"
    vs.time_base = vs.codec_context.time_base = fractions.Fraction(1, 1000)
    if rotation:
        vs.set_display_rotation(rotation)
    aus = out.add_stream("aac", rate=44100) if audio else None
    stamps = pts or [round(i * 1000 / fps) for i in range(frames)]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i, t in enumerate(stamps):
        x = xx - motion * i
        rgb = np.stack([0.5 + 0.4 * np.sin(x / 6), 0.5 + 0.4 * np.cos(yy / 9), 0.5 + 0.4 * np.sin((x + yy) / 11)], -1)
        frame = av.VideoFrame.from_ndarray((rgb * 255).astype(np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = t
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    if aus is not None:
        total = (stamps[-1] + 1000 // fps) / 1000
        for k in range(int(total * 44100 / 1024) + 1):
            a = av.AudioFrame.from_ndarray((0.1 * np.sin(np.arange(1024) / 9.0))[None].astype(np.float32),
                                           format="fltp", layout="mono")
            a.sample_rate, a.pts = 44100, k * 1024
            for packet in aus.encode(a):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    out.close()
    return path


def video_times(path: Path) -> List[float]:
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def audio_payloads(path: Path) -> List[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def leftovers(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    return styletx.new_transformer("standard", seed=0, device="cpu", precision="fp32", **TINY).save(folder / "m.pth")


# -------------------------------------------------------------------------------------------- the fast path


@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_timestamps_frame_count_duration_and_audio_survive(kind, tmp_path, model_path):
    pts = [0, 40, 80, 200, 240, 400, 440, 480] if kind == "vfr" else None
    clip = make_clip(tmp_path / "in.mp4", pts=pts)
    out = tmp_path / "out.mp4"
    record = styletx.stylize_video(clip, out, model=model_path, precision="fp32")
    assert record.output == out and record.frames == 8 and not record.interrupted
    assert video_times(out) == pytest.approx(video_times(clip), abs=1e-3)
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        assert b.duration == pytest.approx(a.duration, abs=0.05 * 1e6)
        assert b.streams.video[0].codec_context.name == "h264"
        assert b.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert audio_payloads(out) == audio_payloads(clip) and record.audio_packets == len(audio_payloads(clip))
    first_in = next(vio.read_frames(clip)).image
    first_out = next(vio.read_frames(out)).image
    assert float((first_in - first_out).abs().mean()) > 0.02  # stylised, not copied
    assert leftovers(tmp_path) == []


def test_odd_size_rotation_no_audio_and_other_containers(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", width=63, height=45, audio=False, rotation=90, codec="mpeg4")
    for name in ("out.mkv", "out.mov"):
        record = styletx.stylize_video(clip, tmp_path / name, model=model_path, precision="fp32")
        info = vio.probe(tmp_path / name)
        assert (info.width, info.height) == (64, 46)  # padded by one replicated row and column for yuv420p
        assert info.rotation == 90 and info.audio_streams == 0 and record.frames == 8
    webm = styletx.stylize_video(clip, tmp_path / "out.webm", model=model_path, precision="fp32", max_size=32)
    assert webm.size == (32, 23) and vio.probe(tmp_path / "out.webm").codec == "vp9"


def test_start_duration_no_audio_and_batches(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "part.mp4"
    record = styletx.stylize_video(clip, out, model=model_path, start=0.1, duration=0.2, audio=False,
                                   batch_size=3, precision="fp32")
    times = video_times(out)
    assert record.frames == len(times) == 5  # frames at 0.125 .. 0.292 s of the input, from 0 in the output
    assert times[0] == pytest.approx(0.025, abs=2e-3)
    with av.open(str(out)) as c:
        assert not c.streams.audio


def test_flicker_reduction_lowers_the_flicker_score(tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "in.mp4", frames=10, width=96, height=64, audio=False, motion=3)
    model = styletx.new_transformer("standard", seed=1, device="cpu", precision="fp32", **TINY)
    steady = model.stylize

    def flickering(x, **kwargs):  # the network plus per-frame noise: what frame-by-frame stylisation does
        y = steady(x, **kwargs)
        gen = torch.Generator().manual_seed(int(x.sum() * 1000) % 10_000)
        return (y + 0.08 * torch.randn(y.shape, generator=gen)).clamp(0, 1)

    monkeypatch.setattr(model, "stylize", flickering)
    off = styletx.stylize_video(clip, tmp_path / "off.mp4", model=model, score=True, crf=0)
    on = styletx.stylize_video(clip, tmp_path / "on.mp4", model=model, score=True, crf=0, flicker_reduction=0.8)
    assert off.flicker is not None and on.flicker is not None
    assert on.flicker < 0.6 * off.flicker
    assert on.timings["flicker"] > 0
    file_off = styletx.score_video(tmp_path / "off.mp4", clip)["flicker"]
    file_on = styletx.score_video(tmp_path / "on.mp4", clip)["flicker"]
    assert file_on < 0.8 * file_off


# ------------------------------------------------------------------------------------ the optimisation path


def test_style_path_warps_the_previous_result_and_keeps_timing(tmp_path, style_image):
    clip = make_clip(tmp_path / "in.mp4", frames=3, width=40, height=32, audio=False)
    record = styletx.stylize_video(clip, tmp_path / "out.mp4", style=style_image, backbone="random",
                                   iterations=4, frame_iterations=2, precision="fp32")
    assert record.frames == 3 and record.engine.backbone["backbone"] == "random"
    assert record.engine.steps == 2 and "temporal" in record.engine.losses[-1]  # a later frame: the temporal loss
    assert video_times(tmp_path / "out.mp4") == pytest.approx(video_times(clip), abs=1e-3)


# --------------------------------------------------------------------------------------------- bad input


def _bad_cases(tmp_path: Path, model_path: Path) -> list:
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=44100)
        for k in range(4):
            a = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            a.sample_rate, a.pts = 44100, k * 1024
            for p in s.encode(a):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()  # header and trailer, no frames
    m = str(model_path)
    return [
        (["video", str(text), "--model", m, "-o", str(tmp_path / "a.mp4")], "not a readable video"),
        (["video", str(audio_only), "--model", m, "-o", str(tmp_path / "b.mp4")], "no video stream"),
        (["video", str(empty), "--model", m, "-o", str(tmp_path / "c.mp4")], "no video"),
        (["video", str(tmp_path / "missing.mp4"), "--model", m, "-o", str(tmp_path / "d.mp4")], "no such file"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "e.mp4"), "--codec", "nope264"], "unknown video encoder"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "nofolder" / "f.mp4")], "does not exist"),
        (["video", str(clip), "--model", m, "-o", str(clip), "--overwrite"], "overwrite the input"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "g.avi")], "unsupported video extension"),
        (["video", str(clip), "-o", str(tmp_path / "h.mp4")], "--model"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "i.mp4"), "--iterations", "3"], "not used with --model"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "j.mp4"), "--flicker-reduction", "2"], "flicker_reduction"),
        (["video", str(clip), "--model", m, "-o", str(tmp_path / "k.mp4"), "--start", "60"], "no video frames"),
    ]


def test_bad_input_gives_one_line_exit_2_and_leaves_nothing(tmp_path, model_path):
    cases = _bad_cases(tmp_path, model_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    runner = CliRunner()
    for args, expected in cases:
        result = runner.invoke(main, args)
        message = result.output.strip()
        assert result.exit_code == 2, (args, result.output)
        assert message.startswith("styletx: error:") and "\n" not in message and "Traceback" not in message, args
        assert expected in message, (args, message)
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing changed
    assert leftovers(tmp_path) == []


def test_existing_output_is_kept_without_overwrite(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        styletx.stylize_video(clip, out, model=model_path)
    assert out.read_bytes() == b"keep me"


# ------------------------------------------------------------------------------------------- interruption


def test_ctrl_c_finishes_the_frames_done_into_a_playable_file(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", frames=12)

    def stop_after_five(done):
        if done.step == 5:
            raise KeyboardInterrupt

    record = styletx.stylize_video(clip, tmp_path / "out.mp4", model=model_path, callback=stop_after_five,
                                   batch_size=1)
    assert record.interrupted and record.frames == 5 and record.output == tmp_path / "out.mp4"
    assert len(video_times(tmp_path / "out.mp4")) == 5
    assert 0 < len(audio_payloads(tmp_path / "out.mp4")) < len(audio_payloads(clip))
    assert leftovers(tmp_path) == []


def test_interrupt_before_any_frame_leaves_nothing(tmp_path, model_path, monkeypatch):
    clip = make_clip(tmp_path / "in.mp4", frames=3)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # pragma: no cover

    monkeypatch.setattr(vio, "read_frames", interrupted)
    record = styletx.stylize_video(clip, tmp_path / "out.mp4", model=model_path)
    assert record.interrupted and record.output is None and record.frames == 0
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_sigterm_to_the_cli_saves_a_playable_part(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", frames=400, width=160, height=120)
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STYLETX_PRECISION": "fp32"}
    proc = subprocess.Popen([sys.executable, "-m", "styletx.cli", "video", str(clip), "--model", str(model_path),
                             "-o", str(out), "--batch-size", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until frames are being written
        if any(p.name.startswith(".out.mp4.") for p in tmp_path.iterdir()):
            time.sleep(1.0)
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("styletx:")]
    assert lines and "interrupted (SIGTERM): saved the" in lines[-1] and "Traceback" not in stderr
    assert 0 < len(video_times(out)) < 400
    assert leftovers(tmp_path) == []


def test_score_video_cli_prints_json(tmp_path, model_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    out = tmp_path / "out.mp4"
    styletx.stylize_video(clip, out, model=model_path)
    result = CliRunner().invoke(main, ["score-video", str(out), "--input", str(clip), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["frames"] == 4 and scores["flicker"] >= 0
