"""The video pipeline: decode, stylise frame batches with either engine, reduce flicker, encode, all streamed.

Decoding and encoding run in threads of their own beside the stylisation (bounded queues: memory stays flat
however long the clip); the engines never see a video, only frames and, for the optimisation engine, a
temporal target (the previous result moved along the motion) and its mask. The output appears atomically:
written under a temporary name in its folder, then renamed; Ctrl-C (or SIGTERM, which the CLI turns into it)
finishes the frames done so far into a playable file, or leaves nothing when there are none.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import Tensor

from . import temporal
from .api import ModelSource, _prepared_model, prepare_extractor
from .atomic import atomic_path
from .device import pick_device
from .engines.optimize import optimize_image
from .errors import InputError
from .io import video as vio
from .io.image import load_image
from .metrics import FlickerMeter
from .options import ModelOptions, StylizeOptions, VideoOptions, as_plain_dict, build
from .results import FrameDone, RunRecord, VideoRecord

__all__ = ["stylize_video", "score_video", "MODEL_VIDEO_OPTIONS", "STYLE_VIDEO_OPTIONS"]

#: Options of each engine that a video run takes (the frame size comes from the clip and ``max_size``; frames
#: are 8-bit video, so no ``bit_depth``).
MODEL_VIDEO_OPTIONS = ("preserve_color", "backend", "device", "precision")
STYLE_VIDEO_OPTIONS = tuple(
    name for name in StylizeOptions.__dataclass_fields__ if name not in ("size", "init", "scales", "bit_depth")
)
_END = object()


class _Stopped(Exception):
    """Raised inside the atomic write to throw the temporary file away (nothing was written)."""


def _split_options(options: Dict[str, Any], engine_fields: Sequence[str], engine: str) -> tuple:
    video_fields = set(VideoOptions.__dataclass_fields__)
    unknown = sorted(set(options) - video_fields - set(engine_fields))
    if unknown:
        raise InputError(f"{', '.join(unknown)}: not an option of a video run with {engine}")
    video = build(VideoOptions, **{k: v for k, v in options.items() if k in video_fields})
    rest = {k: v for k, v in options.items() if k in engine_fields}
    return video, rest


def _check_output(source: Path, output: Path, overwrite: bool, codec: Optional[str]) -> tuple:
    fmt, default_codec = vio.output_format(output)
    codec = codec or default_codec
    vio.check_codec(codec, fmt)
    if not output.parent.is_dir():
        raise InputError(f"{output}: output folder {str(output.parent)!r} does not exist")
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"{output}: the output would overwrite the input video")
    if output.is_dir():
        raise InputError(f"{output}: is a folder, not a file name")
    if output.exists() and not overwrite:
        raise InputError(f"{output}: exists; use --overwrite (overwrite=True) to replace it")
    return fmt, codec


class _Decoder:
    """Frames of a clip decoded in a thread into a bounded queue; iterate to get them."""

    def __init__(self, path: Path, opts: VideoOptions, depth: int) -> None:
        self.queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(path, opts), daemon=True, name="styletx-decode")
        self.thread.start()

    def _run(self, path: Path, opts: VideoOptions) -> None:
        try:
            frames = vio.read_frames(path, start=opts.start, duration=opts.duration, max_size=opts.max_size)
            while not self.stop.is_set():
                t0 = time.perf_counter()
                frame = next(frames, None)
                self.seconds += time.perf_counter() - t0
                if frame is None:
                    break
                self._put(frame)
        except BaseException as e:  # handed to the consumer
            self._put(e)
        self._put(_END)

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def batches(self, size: int) -> Iterator[List[vio.VideoFrame]]:
        batch: List[vio.VideoFrame] = []
        while True:
            item = self.queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _Encoder:
    """Frames encoded in a thread from a bounded queue into a :class:`~styletx.io.video.VideoWriter`."""

    def __init__(self, writer: vio.VideoWriter, depth: int) -> None:
        self.writer = writer
        self.queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True, name="styletx-encode")
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is not None:
                continue  # drain
            try:
                t0 = time.perf_counter()
                self.writer.write(*item)
                self.seconds += time.perf_counter() - t0
            except BaseException as e:  # reported by put() / finish()
                self.error = e

    def put(self, image: Tensor, pts: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((image, pts))

    def finish(self) -> None:
        """Wait until every queued frame is encoded; re-raise an encoding error."""
        self.queue.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop what is queued, stop the thread and close the writer's files (after an error)."""
        self.error = self.error or InputError("video encoding stopped")
        self.queue.put(_END)
        self.thread.join(timeout=10)
        self.writer.abort()


def stylize_video(
    input: Union[str, Path],
    output: Union[str, Path],
    *,
    model: Optional[ModelSource] = None,
    style: Union[Any, Sequence[Any], None] = None,
    overwrite: bool = False,
    callback: Optional[Callable[[FrameDone], None]] = None,
    **options: Any,
) -> VideoRecord:
    """Stylise a video clip frame by frame into ``output`` (.mp4, .mkv, .mov or .webm) and return its record.

    model: a trained model (checkpoint path or loaded :class:`~styletx.FeedForwardModel`): frames run in batches
    (``batch_size``), on the GPU when there is one. style: style image(s): the optimisation engine, each frame
    starting from the previous result moved along the optical flow, with a temporal loss on the non-occluded
    pixels (Ruder et al. 2016). options: :class:`~styletx.options.VideoOptions` fields, plus the model's
    ``preserve_color``, ``backend``, ``device``, ``precision`` or the optimisation options (iterations, weights,
    backbone, ...; the frame size comes from the clip and ``max_size``). Timestamps (variable frame rates too),
    rotation and audio (copied, unless ``audio=False``) are kept. ``callback`` gets a
    :class:`~styletx.results.FrameDone` after every frame. Bad input raises InputError before any work.
    """
    source, out = Path(input), Path(output)
    if (model is None) == (style is None):
        raise InputError("give a trained model or style image(s), one of the two")
    engine_fields = MODEL_VIDEO_OPTIONS if model is not None else STYLE_VIDEO_OPTIONS
    opts, engine_options = _split_options(options, engine_fields, "a model" if model is not None else "styles")
    info = vio.probe(source)
    fmt, codec = _check_output(source, out, overwrite, opts.codec)
    record = VideoRecord()
    if info.subtitle_streams:
        record.notes.append(f"dropped {info.subtitle_streams} subtitle stream(s)")
    if not opts.audio and info.audio_streams:
        record.notes.append(f"dropped {info.audio_streams} audio stream(s) (audio off)")
    if model is not None:
        mopts = build(ModelOptions, **engine_options)
        net = _prepared_model(model, mopts, repeated=True)
        stylise = _model_stylist(net, mopts)
        batch = opts.batch_size
        info_engine = net.describe()
        record.engine = RunRecord(device=info_engine["device"], precision=info_engine["precision"],
                                  precision_reason=info_engine["precision_reason"],
                                  backend=info_engine["backend_reason"],
                                  backbone={"engine": "feedforward", "arch": net.arch})
    else:
        stylise = _OptimisationStylist(style, build(StylizeOptions, **engine_options), opts, record)
        batch = 1
    reducer = temporal.FlickerReducer(opts.flicker_reduction) if opts.flicker_reduction > 0 else None
    meter = FlickerMeter() if opts.score else None
    offset = vio.clip_offset(source, opts.start)
    end = offset + opts.duration if opts.duration is not None else None
    started = time.perf_counter()
    timings = {"stylise": 0.0, "flicker": 0.0, "score": 0.0}
    last_time = 0.0
    try:
        with atomic_path(out, overwrite=overwrite, interruptible=True) as tmp:
            decoder = _Decoder(source, opts, depth=2 * batch + 2)
            writer: Optional[vio.VideoWriter] = None
            encoder: Optional[_Encoder] = None
            try:
                for frames in decoder.batches(batch):
                    if writer is None:
                        h, w = frames[0].image.shape[-2:]
                        record.size = (int(w), int(h))
                        writer = vio.VideoWriter(
                            tmp, fmt=fmt, codec=codec, width=int(w), height=int(h), time_base=frames[0].time_base,
                            rate=info.fps, crf=opts.crf, preset=opts.preset, rotation=info.rotation,
                            audio_from=source if opts.audio and info.audio_streams else None, offset=offset, end=end,
                            trim_audio=opts.start > 0)
                        encoder = _Encoder(writer, depth=2 * batch + 2)
                    t0 = time.perf_counter()
                    outputs = stylise([f.image for f in frames])
                    timings["stylise"] += time.perf_counter() - t0
                    for frame, y in zip(frames, outputs):
                        if reducer is not None:
                            t0 = time.perf_counter()
                            y = reducer.reduce(frame.image, y)
                            timings["flicker"] += time.perf_counter() - t0
                        if meter is not None:
                            t0 = time.perf_counter()
                            meter.update(y, frame.image)
                            timings["score"] += time.perf_counter() - t0
                        assert encoder is not None
                        encoder.put(y, frame.pts)
                        last_time = frame.time
                        record.frames += 1
                        if callback is not None:
                            elapsed = time.perf_counter() - started
                            callback(FrameDone(record.frames, info.frames, elapsed, record.frames / max(elapsed, 1e-9)))
            except KeyboardInterrupt:
                record.interrupted = True
            except BaseException:
                if encoder is not None:  # stop the encoder thread and close the file before it is thrown away
                    encoder.abort()
                raise
            finally:
                decoder.close()
            if writer is None or encoder is None:
                raise _Stopped()
            try:
                encoder.finish()
                until = last_time + vio.frame_duration(info) if record.interrupted else None
                writer.close(audio_until=until)
            except BaseException:
                encoder.abort()
                raise
            record.audio_packets = writer.audio_packets
            timings["decode"], timings["encode"] = decoder.seconds, encoder.seconds
    except _Stopped:
        if not record.interrupted:
            raise InputError(f"{source}: no video frames in the part asked for") from None
        record.output = None
    else:
        record.output = out
    record.seconds = time.perf_counter() - started
    record.fps = record.frames / max(record.seconds, 1e-9)
    record.timings = {k: round(v, 4) for k, v in timings.items()}
    if meter is not None:
        record.flicker = meter.value()
    if info.frames and record.frames and not record.interrupted and abs(record.frames - info.frames) > 1 \
            and opts.start == 0 and opts.duration is None:
        record.notes.append(f"the container said {info.frames} frames; {record.frames} were decoded")
    return record


def _model_stylist(net: Any, mopts: ModelOptions) -> Callable[[List[Tensor]], List[Tensor]]:
    def stylise(images: List[Tensor]) -> List[Tensor]:
        y = net.stylize(torch.cat(images), preserve_color=mopts.preserve_color, batch_size=len(images))
        return [y[i : i + 1] for i in range(y.shape[0])]

    return stylise


class _OptimisationStylist:
    """Frames through the optimisation engine: the first from the content with ``iterations`` steps, each next
    one from the previous result warped by the backward flow, ``frame_iterations`` steps, and a temporal loss
    on the pixels where the flow is reliable (forward-backward consistent)."""

    def __init__(self, style: Any, sopts: StylizeOptions, vopts: VideoOptions, record: VideoRecord) -> None:
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles:
            raise InputError("style: give at least one style image")
        if sopts.style_blend_weights is not None and len(sopts.style_blend_weights) != len(styles):
            raise InputError(f"style_blend_weights: expected {len(styles)} values (one per style image)")
        self.styles = [load_image(s).tensor for s in styles]
        self.opts, self.vopts, self.record = sopts, vopts, record
        self.device = pick_device(sopts.device)
        self.extractor = prepare_extractor(sopts, self.device)
        self.opts = sopts.for_backbone(self.extractor.description["backbone"])
        self.previous: Optional[tuple] = None  # (input frame, result)

    def __call__(self, images: List[Tensor]) -> List[Tensor]:
        outputs = []
        for image in images:
            longest = max(image.shape[-2:])
            run = RunRecord(backbone=dict(self.extractor.description), options=as_plain_dict(self.opts))
            if self.previous is None:
                opts = self.opts.with_(size=int(longest))
                y, run = optimize_image(image, self.styles, self.extractor, opts, record=run)
            else:
                before, result = self.previous
                flow_back, mask = temporal.reliable_flow(image, before)
                warped = temporal.warp(result, flow_back).clamp(0, 1)
                opts = self.opts.with_(size=int(longest), scales=1, iterations=self.vopts.frame_iterations)
                y, run = optimize_image(image, self.styles, self.extractor, opts, init_image=warped, record=run,
                                        temporal=(warped, mask), temporal_weight=self.vopts.temporal_weight)
            self.record.engine = run  # the latest frame's: device, arithmetic, losses (with the temporal term)
            self.previous = (image, y)
            outputs.append(y)
        return outputs


def score_video(output: Union[str, Path], input: Union[str, Path], *, max_size: Optional[int] = 512) -> Dict[str, Any]:
    """The flicker score of a stylised clip against its input (frames read in lockstep, scaled down to
    ``max_size``): 1.0 flickers as much as the input changes, lower is steadier (see :class:`FlickerMeter`)."""
    out_info, in_info = vio.probe(output), vio.probe(input)
    meter = FlickerMeter()
    frames = 0
    for a, b in zip(vio.read_frames(output, max_size=max_size), vio.read_frames(input, max_size=max_size)):
        meter.update(a.image, b.image)  # the input frame is resized to the output's size
        frames += 1
    value = meter.value()
    if value is None:
        raise InputError(f"{output}: needs at least two frames with reliable motion to score flicker")
    return {"flicker": value, "frames": frames, "output_frames": out_info.frames, "input_frames": in_info.frames,
            "stylised_change": meter.stylised_change, "input_change": meter.input_change}
