"""The ``styletx`` command line: parses, calls the API, draws progress, maps errors to exit codes.

Exit codes: 0 success, 1 internal error, 2 bad input or usage, 128 + the signal when interrupted by Ctrl-C (130),
SIGTERM (143) or SIGHUP (129): the best image so far (or the checkpoint) is saved first (docs/reliability.md).
Option flags are generated from the options dataclasses (:class:`~styletx.options.StylizeOptions` for ``run``,
:class:`~styletx.options.ModelOptions` for ``run --model``, :class:`~styletx.options.TrainOptions` for
``train``), so the CLI and the API share one set of defaults. The CLI owns its process: it alone may change
process-wide state (:mod:`styletx.runtime`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
import typing
import warnings
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import click
from tqdm.auto import tqdm

from . import process
from ._version import __version__
from .api import stylize, stylize_files, train as train_model
from .errors import InputError, StyletxError
from .export import export as export_model
from .features.weights import search_dirs, weights_report, write_manifest as write
from .io.files import default_output_path
from .io.image import MAX_PIXELS, check_output_path, save_image
from .metrics import score as compute
from .options import ModelOptions, StylizeOptions, TrainOptions, VideoOptions
from .paths import check_not_an_input
from .runtime import release_freed_memory, retain_freed_memory
from .video import MODEL_VIDEO_OPTIONS, STYLE_VIDEO_OPTIONS, score_video, stylize_video

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---------------------------------------------------------------- options from the dataclasses


class CommaList(click.ParamType):
    """A comma-separated list: ``relu1_1,relu2_1`` -> ("relu1_1", "relu2_1"); floats when ``item`` is float."""

    name = "LIST"

    def __init__(self, item: type = str) -> None:
        self.item = item

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None or isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            return tuple(self.item(p) for p in parts)
        except ValueError:
            self.fail(f"expected comma-separated {self.item.__name__} values, got {value!r}", param, ctx)


class IntChoice(click.Choice):
    """One of a few integers (``--bit-depth 8|16``): typed as text, checked by click, handed on as an int."""

    def __init__(self, choices: Sequence[int]) -> None:
        super().__init__([str(c) for c in choices])

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return int(super().convert(str(value), param, ctx))


def _click_type(hint: Any, choices: Optional[Tuple[Any, ...]]) -> Any:
    if choices and all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
        return IntChoice(choices)
    if choices:
        return click.Choice(choices)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) is typing.Union and args else hint
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return CommaList(float if item is float else str)
    return {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}.get(base, click.STRING)


def options_from(cls: type, *, skip: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """A decorator adding one ``--flag`` per field of the options dataclass ``cls`` (help and default from it)."""
    hints = typing.get_type_hints(cls)

    def decorate(func: Callable) -> Callable:
        for f in reversed(fields(cls)):
            if f.name in skip or not f.metadata.get("cli", True):
                continue
            default = None if f.default is MISSING else f.default
            shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else default is not None
            func = click.option(
                "--" + f.name.replace("_", "-"),
                f.name,
                type=_click_type(hints[f.name], f.metadata.get("choices")),
                default=default,
                show_default=shown,
                help=f.metadata.get("help", ""),
            )(func)
        return func

    return decorate


def option_values(cls: type, params: Dict[str, Any]) -> Dict[str, Any]:
    """The subset of click ``params`` that are fields of ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in params.items() if k in names}


# ---------------------------------------------------------------- errors and progress


def _fail(message: str, code: int) -> None:
    click.echo(f"styletx: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable) -> Callable:
    """Turn exceptions into one line on stderr and an exit code (the traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.pop("debug", False) or bool((click.get_current_context().obj or {}).get("debug"))
        try:
            with process.only_our_warnings(debug):
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except StyletxError as exc:
            if debug:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            _fail(f"interrupted ({process.signal_name(process.received())})", process.exit_code())
        except Exception as exc:  # an internal error: say so in one line, details with --debug
            if debug:
                traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    click.echo(f"styletx: warning: {message}", err=True)


class ProgressBar:
    """A tqdm bar fed by the engines' per-step callbacks, showing the loss terms."""

    def __init__(self, enabled: bool = True, unit: str = "step") -> None:
        self.enabled = enabled
        self.unit = unit
        self.bar = None

    def __call__(self, it: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=it.total, unit=self.unit, dynamic_ncols=True, file=sys.stderr)
        losses = getattr(it, "losses", {})
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        if hasattr(it, "scales") and it.scales > 1:
            self.bar.set_description(f"{it.size}px", refresh=False)
        self.bar.update(it.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- commands


class OneLineErrors(click.Group):
    """The command group, with click's usage errors (three lines: usage, hint, error) as one line, exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            with process.signals_as_interrupts():  # SIGTERM, SIGHUP as Ctrl-C; never in the middle of a write
                return super().main(*args, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            _fail(f"interrupted ({process.signal_name(process.received())})", process.exit_code())
        except click.ClickException as e:
            _fail(e.format_message().replace("\n", " "), e.exit_code)
        return None


@click.group(cls=OneLineErrors, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="styletx")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """styletx: neural style transfer for images and video.

    \b
    Examples:
      styletx run examples/cat.jpg examples/swirls.jpg -o cat_swirls.png
      styletx weights
      styletx score cat_swirls.png --content examples/cat.jpg --style examples/swirls.jpg
    """
    ctx.ensure_object(dict)["debug"] = debug
    retain_freed_memory()  # the CLI owns its process: reuse freed tensor memory (styletx.runtime)


def _check_output(out: Path, inputs: Sequence[Any], overwrite: bool, bit_depth: int) -> None:
    check_not_an_input(out, inputs)  # whatever the flags, a run never writes a file it reads
    check_output_path(out, overwrite=overwrite, bit_depth=bit_depth)


def _check_snapshots(out: Path, inputs: Sequence[Any], overwrite: bool) -> None:
    """--save-every writes OUT.stepN.ext: none may be an input, and none replaces a file without --overwrite."""
    pattern = "".join(f"[{c}]" if c in "*?[" else c for c in f"{out.stem}.step") + "*" + out.suffix
    for old in sorted(out.parent.glob(pattern)):
        if old.stem[len(out.stem) + 5:].isdigit():
            check_not_an_input(old, inputs, "snapshot")
            if not overwrite:
                raise InputError(f"{old}: exists (a snapshot of an earlier run); use --overwrite to replace "
                                 "snapshots, or another output name")


def _run_output(output: Optional[Path], content: Path) -> Path:
    """-o as given; an existing folder -> a free name for the content in it (never a clobbered file)."""
    if output is None:
        return default_output_path(content)
    if output.is_dir():
        return default_output_path(output / content.name)
    if not output.suffix:
        raise InputError(f"{output}: no file extension and not an existing folder; give a name such as "
                         f"{str(output) + '.png'!r} or an existing folder")
    return output


def _has_model(args: Sequence[str]) -> bool:
    return any(a == "--model" or a.startswith("--model=") for a in args)


class RunCommand(click.Command):
    """``styletx run``: the optimisation engine, or with ``--model`` a trained network; each mode has its own
    flags (and help), so an option that does not apply is refused by name."""

    def __init__(self, *args: Any, model_command: click.Command, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modes = {False: (self.params, self.callback, self.help),
                      True: (model_command.params, model_command.callback, model_command.help)}

    def make_context(self, info_name: Optional[str], args: List[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        self.params, self.callback, self.help = self.modes[_has_model(args)]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except BaseException:  # usage errors, --help: the command is left as built
            self.params, self.callback, self.help = self.modes[False]
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        finally:
            self.params, self.callback, self.help = self.modes[False]


COMMON_RUN_OPTIONS = [
    click.option("-o", "--output", type=click.Path(path_type=Path),
                 help="Output file (default: next to the content); with several inputs, a folder (created)."),
    click.option("--overwrite", is_flag=True, help="Replace the output file if it exists."),
    click.option("--keep-alpha", is_flag=True, help="Put the content's transparency back on the output."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
]


def _common_run_options(func: Callable) -> Callable:
    for option in reversed(COMMON_RUN_OPTIONS):
        func = option(func)
    return func


@click.command("run", context_settings=CONTEXT)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(path_type=Path),
              help="A trained model (.pth): stylise IMAGES in one pass each.")
@_common_run_options
@options_from(ModelOptions)
@handle_errors
def run_model(images: Tuple[Path, ...], model: Path, output: Optional[Path], overwrite: bool, keep_alpha: bool,
              quiet: bool, **params: Any) -> None:
    """Stylise CONTENT images (files or folders) with a trained MODEL.

    \b
    Example:
      styletx run --model swirls.pth photo.jpg -o photo_swirls.png
      styletx run --model swirls.pth photos/ -o stylised/
    """
    bar = ProgressBar(enabled=not quiet and len(images) > 1, unit="image")
    announced: set = set()

    def progress(done: Any) -> None:
        if done.plan.startswith("tiled") and done.plan not in announced and not quiet:  # one line, once
            announced.add(done.plan)
            click.echo(f"styletx: {done.plan}", err=True)
        bar(done)

    try:
        paths = stylize_files(model, list(images), output, overwrite=overwrite, keep_alpha=keep_alpha,
                              callback=progress, **option_values(ModelOptions, params))
    except InputError as e:  # files skipped: print what was written, then the one error line
        for p in getattr(e, "written", []):
            click.echo(str(p))
        raise
    finally:
        bar.close()
    for p in paths:
        click.echo(str(p))


@main.command(cls=RunCommand, model_command=run_model, context_settings=CONTEXT)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path),
              help="A trained model: stylise IMAGES in one pass (`styletx run --model M --help` lists its options).")
@_common_run_options
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also save the current image every N steps (OUT.stepN.png).")
@options_from(StylizeOptions)
@handle_errors
def run(images: Tuple[Path, ...], output: Optional[Path], model: Optional[Path], overwrite: bool,
        save_every: int, keep_alpha: bool, quiet: bool, **params: Any) -> None:
    """Stylise CONTENT with STYLE (several styles are blended).

    \b
    IMAGES is CONTENT STYLE [STYLE...], or with --model, CONTENT [CONTENT...].
    Example:
      styletx run photo.jpg starry.jpg -o photo_starry.png --size 512 --iterations 300
    """
    if len(images) < 2:
        raise click.UsageError("give a CONTENT image and at least one STYLE image (or --model)")
    content, styles = images[0], list(images[1:])
    out = _run_output(output, content)
    values = option_values(StylizeOptions, params)
    if str(values.get("weights")).lower() == "none":
        values["weights"] = None
    named = [values.get("init") if values.get("init") not in ("content", "noise") else None,
             values.get("weights") if values.get("weights") != "DEFAULT" else None]
    inputs = [p for p in [*images, *named] if p is not None and os.path.exists(p)]  # files this run reads
    _check_output(out, inputs, overwrite, values["bit_depth"])
    if save_every:
        _check_snapshots(out, inputs, overwrite)

    bar = ProgressBar(enabled=not quiet)

    announced: set = set()

    def progress(it: Any) -> None:
        if it.plan.startswith("tiled") and it.plan not in announced:  # one line, once
            announced.add(it.plan)
            release_freed_memory()  # a tiled run keeps to its budget: no retained heap (styletx.runtime)
            if not quiet:
                click.echo(f"styletx: {it.plan}", err=True)
        bar(it)
        if save_every and it.step % save_every == 0:
            snap = out.with_name(f"{out.stem}.step{it.step}{out.suffix}")
            check_not_an_input(snap, inputs, "snapshot")
            save_image(it.image, snap, overwrite=overwrite, bit_depth=values["bit_depth"])

    try:
        result = stylize(content, styles, callback=progress, keep_alpha=keep_alpha, **values)
    finally:
        bar.close()
    with process.shielded():  # a signal now is recorded, and the picture saved first
        path = result.save(out, overwrite=overwrite)
    rec = result.record
    if rec.interrupted or process.received() is not None:
        sized = [n for n in rec.notes if n.startswith("interrupted at scale")]
        extra = f" ({sized[0].split(': ', 1)[1]})" if sized else ""
        click.echo(f"styletx: interrupted ({process.signal_name(process.received())}): saved the best image so far "
                   f"to {path}{extra}", err=True)
        sys.exit(process.exit_code())
    for note in rec.notes:
        if "weight-free" not in note:  # the fallback warning was already shown
            click.echo(f"styletx: note: {note}", err=True)
    click.echo(f"{path}  ({rec.steps} steps, {rec.seconds:.1f} s, {rec.device}, {rec.precision_reason}, "
               f"backbone {rec.backbone.get('backbone', '?')})")


@main.command(context_settings=CONTEXT)
@click.option("--style", "style", required=True, type=click.Path(path_type=Path), help="The style image.")
@click.option("--data", "data", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Folder of training images (searched recursively; may be given several times).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("model.pth"), show_default=True,
              help="Checkpoint file (.pth).")
@click.option("--overwrite", is_flag=True, help="Replace the checkpoint if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@options_from(TrainOptions)
@handle_errors
def train(style: Path, data: Tuple[Path, ...], output: Path, overwrite: bool, quiet: bool, **params: Any) -> None:
    """Train a fast feed-forward transformer for one STYLE on a folder of images.

    \b
    Example:
      styletx train --style examples/swirls.jpg --data photos/ -o swirls.pth --steps 2000
      styletx run --model swirls.pth photo.jpg -o photo_swirls.png
    """
    bar = ProgressBar(enabled=not quiet)
    values = option_values(TrainOptions, params)
    if str(values.get("weights")).lower() == "none":
        values["weights"] = None
    try:
        result = train_model(style, list(data), output, callback=bar, overwrite=overwrite, **values)
    finally:
        bar.close()
    if result.skipped:
        click.echo(f"styletx: note: skipped {result.skipped} unreadable file(s)", err=True)
    if result.interrupted:
        click.echo(f"styletx: interrupted ({process.signal_name(process.received())}): saved the checkpoint at step "
                   f"{result.steps} to {result.path} (continue with --resume {result.path})", err=True)
        sys.exit(process.exit_code())
    last = result.losses[-1]["total"] if result.losses else float("nan")
    click.echo(f"{result.path}  ({result.steps} steps, {result.images} files found, {result.seconds:.1f} s, "
               f"final loss {last:.4g}, backbone {result.backbone.get('backbone', '?')})")


def _given(ctx: click.Context, params: Dict[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    """The params among ``names`` that the user typed (not left at their default)."""
    return {n: params[n] for n in names if n in params
            and ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT}


@main.command(context_settings=CONTEXT)
@click.argument("clip", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), help="A trained model (.pth): the fast path.")
@click.option("--style", "styles", multiple=True, type=click.Path(path_type=Path),
              help="Style image (repeat to blend): the optimisation engine, frame to frame along the motion.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output video: .mp4, .mkv, .mov or .webm.")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@click.option("--no-audio", is_flag=True, help="Drop the audio streams (default: copied as they are).")
@click.option("--score", is_flag=True, help="Also print the flicker score (costs an optical flow per frame).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@options_from(VideoOptions)
@options_from(ModelOptions, skip=[f for f in ModelOptions.__dataclass_fields__ if f not in MODEL_VIDEO_OPTIONS])
@options_from(StylizeOptions, skip=[f for f in StylizeOptions.__dataclass_fields__
                                    if f not in STYLE_VIDEO_OPTIONS or f in MODEL_VIDEO_OPTIONS])
@handle_errors
def video(clip: Path, model: Optional[Path], styles: Tuple[Path, ...], output: Path, overwrite: bool,
          no_audio: bool, score: bool, quiet: bool, **params: Any) -> None:
    """Stylise a video CLIP frame by frame, keeping its timing, rotation and sound.

    \b
    Example:
      styletx video clip.mp4 --model swirls.pth -o clip_swirls.mp4 --flicker-reduction 0.6
      styletx video clip.mp4 --style starry.jpg -o clip_starry.mp4 --max-size 360
    """
    if (model is None) == (not styles):
        raise click.UsageError("give --model M.pth or --style S (one of the two)")
    ctx = click.get_current_context()
    values = option_values(VideoOptions, params)
    if model is not None:
        style_only = list(STYLE_VIDEO_OPTIONS) + ["frame_iterations", "temporal_weight"]
        other = sorted(set(_given(ctx, params, style_only)) - set(MODEL_VIDEO_OPTIONS))
        engine = {n: params[n] for n in MODEL_VIDEO_OPTIONS}
    else:
        other = sorted(set(_given(ctx, params, ["backend", "batch_size"])))
        engine = {n: params[n] for n in STYLE_VIDEO_OPTIONS}
        if str(engine.get("weights")).lower() == "none":
            engine["weights"] = None
    if other:
        flags = ", ".join("--" + n.replace("_", "-") for n in other)
        raise click.UsageError(f"{flags}: not used with {'--model' if model is not None else '--style'}")
    bar = ProgressBar(enabled=not quiet, unit="frame")
    try:
        record = stylize_video(clip, output, model=model, style=list(styles) or None, overwrite=overwrite,
                               callback=bar, audio=not no_audio, score=score, **values, **engine)
    finally:
        bar.close()
    for note in record.notes:
        click.echo(f"styletx: note: {note}", err=True)
    if record.interrupted:
        where = f"saved the {record.frames} frames done to {record.output}" if record.output else "nothing was saved"
        click.echo(f"styletx: interrupted ({process.signal_name(process.received())}): {where}", err=True)
        sys.exit(process.exit_code())
    flicker = f", flicker {record.flicker:.3f}" if record.flicker is not None else ""
    click.echo(f"{record.output}  ({record.frames} frames, {record.size[0]}x{record.size[1]}, {record.fps:.1f} "
               f"frames/s, {record.engine.precision}, audio packets {record.audio_packets}{flicker})")


@main.command("score-video", context_settings=CONTEXT)
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--input", "source", required=True, type=click.Path(path_type=Path), help="The input clip.")
@click.option("--max-size", type=click.IntRange(min=16), default=512, show_default=True,
              help="Score frames scaled down to this longest side.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@handle_errors
def score_video_command(output: Path, source: Path, max_size: int, as_json: bool) -> None:
    """Flicker score of a stylised video OUTPUT against its input clip.

    \b
    flicker  how much the stylised frames change along the input's motion, relative to how much the input
             frames do (1 = as much as the input; lower is steadier)
    Example:
      styletx score-video clip_swirls.mp4 --input clip.mp4
    """
    scores = score_video(output, source, max_size=max_size)
    if as_json:
        click.echo(json.dumps(scores, sort_keys=True))
    else:
        for k, v in scores.items():
            click.echo(f"{k:<16} {v:.4f}" if isinstance(v, float) else f"{k:<16} {v}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file: .onnx for ONNX, .pt or .ts for TorchScript.")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@handle_errors
def export(model: Path, output: Path, overwrite: bool) -> None:
    """Export a trained MODEL (.pth) to ONNX or TorchScript (dynamic batch and image size).

    \b
    Example:
      styletx export swirls.pth -o swirls.onnx
    """
    click.echo(str(export_model(model, output, overwrite=overwrite)))


@main.command(context_settings=CONTEXT)
@click.option("--write-manifest", type=click.Path(path_type=Path), help="Write the manifest of known files here.")
@click.option("--overwrite", is_flag=True, help="Replace the manifest file if it exists.")
@handle_errors
def weights(write_manifest: Optional[Path], overwrite: bool) -> None:
    """Show which weight files are found where, and which are missing (with their URL and sha256).

    \b
    Example:
      styletx weights
    """
    if write_manifest:
        click.echo(str(write(write_manifest, overwrite=overwrite)))
        return
    for entry in weights_report():
        where = entry["path"] if entry["status"] == "found" else entry["status"]
        click.echo(f"{entry['name']:<22} {entry['arch']:<6} {where}")
        if entry["status"] != "found":
            sha = entry["sha256"] + ("" if len(entry["sha256"]) == 64 else " (first hex digits)")
            click.echo(f"  url: {entry['url']}  sha256: {sha}")
    click.echo("searched, in order: " + ", ".join(str(p) for p in search_dirs()))


@main.command(context_settings=CONTEXT)
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--content", "content", required=True, type=click.Path(path_type=Path), help="The content image.")
@click.option("--style", "style", required=True, type=click.Path(path_type=Path), help="The style image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
              help="Largest image (width x height) read; bigger files are refused before decoding.")
@handle_errors
def score(output: Path, content: Path, style: Path, as_json: bool, max_pixels: int) -> None:
    """Quality scores of a stylised OUTPUT against its content and style (no neural network involved).

    \b
    content_ssim      structure kept from the content (SSIM of luminance; 1 = identical, higher is closer)
    color_distance    colour distribution against the style (sliced Wasserstein; lower is closer)
    texture_distance  texture statistics against the style (oriented filter bank; lower is closer)
    Example:
      styletx score out.png --content photo.jpg --style starry.jpg --json
    """
    scores = compute(output, content, style, max_pixels=max_pixels)
    if as_json:
        click.echo(json.dumps(scores, sort_keys=True))
    else:
        for k, v in scores.items():
            click.echo(f"{k:<18} {v:.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
