"""Frames per second of the feed-forward networks in every arithmetic and backend, against a plain eager fp32
reference measured in the same run; and (``--quality``) the slim network's quality against the standard one
after the same training.

    python benchmarks/bench_transformer.py [--threads 2] [--reps 5] [--sizes 512x512 1280x720]
    python benchmarks/bench_transformer.py --quality [--steps 200] [--train-size 128] [--batch-size 2] [--variants ...]

Speed. Reference: the standard architecture as a plain eager fp32 ``TransformerNet`` (NCHW, no rewrites,
inference mode). Candidates, for ``standard`` and ``slim`` (``FeedForwardModel`` then ``stylize``): eager torch in
fp32 and in bf16 (``precision="fp32"`` / ``"bf16"``, no ``compile()``); ``compile()`` with everything on auto
(the precision policy and the backend choice measure at first use: the run uses a fresh, empty cache folder,
``$STYLETX_CACHE_DIR``, so they really measure; the script prints what they picked, why, and what deciding cost);
on the CPU also ``compile(backend="onnxruntime")`` and, for ``standard``, ``compile(backend="winograd")``. Then
one line per network and size says whether auto is as fast as the fastest of the candidates it chooses among
(eager fp32, eager bf16, ONNX Runtime) within noise.

The process keeps freed memory (``styletx.runtime.retain_freed_memory``, as the CLI does), which speeds up the
reference too: the ratios are to the reference measured after it, in the same rounds (the stricter figure); the
reference before it (the default allocator) is printed beside them. Every round runs every candidate once (in a
new random order), medians over ``--reps`` rounds are printed, and ratios are taken within a round, so
other load on the machine hits all of them alike. Also prints the max/mean absolute difference from the same
network in plain eager fp32, and the frame rate of slim alone (best and median of ``--solo-reps`` runs).
A GPU section runs by itself where CUDA is present (eager fp32, eager bf16 and auto; ``--gpu-sizes``, default
1920x1080).

Quality (``--quality``): trains ``standard``, the first slim design (``slim-v1``: pixel-unshuffle 2),
``slim`` and ``slim-resize`` (the resize head) (``--variants`` picks) with the same data
(generated pictures), style (a generated pattern), steps, crop size, seed and the weight-free ``random``
backbone, then reports on held-out pictures the same content and style losses the
training minimises (weighted as in training), ``styletx.metrics.score``, ``styletx.metrics.grid_score`` (4 px)
and the training time; then the three scores on four other generated pictures, the *tuning* scenes, on which
architecture options are chosen so that the held-out figures do not flatter them. ``--photos STYLE`` does the
same on real photos: it trains on scikit-image's bundled photos (the gallery's training set less the tuning and
held-out ones), reports on chelsea (the gallery's cat), astronaut and stereo_motorcycle, and tunes on coffee and
rocket, with the style picture given (e.g. examples/mosaic.jpg).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx import metrics  # noqa: E402
from styletx.device import ENV_PRECISION, bf16_supported  # noqa: E402
from styletx.engines.feedforward.backends import onnxruntime_available  # noqa: E402
from styletx.engines.feedforward.model import FeedForwardModel, load_transformer  # noqa: E402
from styletx.engines.feedforward.net import ARCHITECTURES, ArchConfig, build_network, macs_per_pixel  # noqa: E402
from styletx.features import extractor_for  # noqa: E402
from styletx.io.image import load_image  # noqa: E402
from styletx.losses import gram_matrix, normalised_layer_weights, target_scaled_weights, total_loss  # noqa: E402
from styletx.options import TrainOptions, feature_layers  # noqa: E402
from styletx.runtime import retain_freed_memory  # noqa: E402
from styletx.tensors import resize_longest  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_slim_head import parse_variant  # noqa: E402
from photos import TRAINING_PHOTOS, skimage_photo, write_photos  # noqa: E402

#: ``--photos``: the scikit-image photos reported on (the gallery's two shown ones and one it trains on) and tuned
#: on; neither set is trained on
PHOTO_HELD_OUT = ("chelsea", "astronaut", "stereo_motorcycle")
PHOTO_TUNING = ("coffee", "rocket")

#: The slim design before 2026-11-26 (pixel-unshuffle 2, pixel-shuffle head); kept here to measure against.
SLIM_V1 = ArchConfig("slim", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3,
                     unshuffle=2)
#: The candidates ``compile()`` on auto chooses among (the precision policy, then the backend choice).
AUTO_CHOOSES_AMONG = ("eager fp32", "eager bf16", "onnxruntime")
#: auto counts as "as fast" when its median time is within this fraction of the fastest's (or the rounds' spread)
TOLERANCE = 0.05

Runner = Callable[[torch.Tensor], torch.Tensor]


def _time(fn: Runner, x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        return "load average n/a"


def _net(arch: str):
    """The network to time: seeded; a network with an input skip gets a random last conv too (it starts as the
    identity, which would make the output comparisons trivial)."""
    net = build_network(arch, seed=0)
    if net.input_skip:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            net.deconv3.conv2d.weight.copy_(torch.randn(net.deconv3.conv2d.weight.shape, generator=gen) * 0.05)
    return net


def _noise(ratios: Sequence[float]) -> float:
    """Half the range of per-round ratios (the highest and lowest dropped first when there are 5 or more)."""
    r = sorted(ratios)
    if len(r) >= 5:
        r = r[1:-1]
    return (r[-1] - r[0]) / 2


def _spread(values: Sequence[float]) -> str:
    return f"rounds {min(values):.2f}-{max(values):.2f}" if len(values) > 1 else "1 round"


# ------------------------------------------------------------------------------------------------ speed


def _models(arch: str, device: str) -> Tuple[Dict[str, FeedForwardModel], FeedForwardModel, float]:
    """The candidates for ``arch`` (their backends set up), the auto model, and seconds compile() on auto took."""
    models = {"eager fp32": FeedForwardModel(_net(arch), device=device, precision="fp32")}
    if bf16_supported(torch.device(device)):
        models["eager bf16"] = FeedForwardModel(_net(arch), device=device, precision="bf16")
    for m in models.values():
        m.backend_choice  # sets up the eager backend (no measurement: the precision is forced)
    auto = FeedForwardModel(_net(arch), device=device, precision="auto")
    t0 = time.perf_counter()
    auto.compile()
    seconds = time.perf_counter() - t0
    models["auto"] = auto
    if device == "cpu" and onnxruntime_available():
        models["onnxruntime"] = FeedForwardModel(_net(arch), device=device).compile(backend="onnxruntime")
    if device == "cpu" and arch == "standard":
        models["winograd"] = FeedForwardModel(_net(arch), device=device).compile(backend="winograd")
    return models, auto, seconds


def _runner(m: FeedForwardModel, device: str) -> Runner:
    def run(x: torch.Tensor) -> torch.Tensor:
        y = m.stylize(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return y
    return run


def _reference(device: str) -> Runner:
    net = build_network("standard", seed=0).to(device).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = net(x).clamp(0, 1)
        if device == "cuda":
            torch.cuda.synchronize()
        return y
    return run


def _rounds(fns: Dict[str, Runner], x: torch.Tensor, reps: int) -> Dict[str, List[float]]:
    """Seconds per call of every runner, ``reps`` interleaved rounds, each in a new (seeded) random order: a
    fixed or rotated order would always run the same candidate after the same one (torch's OpenMP threads can
    still be busy when the next candidate starts)."""
    names = list(fns)
    times: Dict[str, List[float]] = {k: [] for k in names}
    for r in range(reps):
        for name in random.Random(r).sample(names, len(names)):
            times[name].append(_time(fns[name], x))
    return times


def _auto_verdict(arch: str, times: Dict[str, List[float]], picked: str) -> str:
    """Whether auto (which runs ``picked``, one of AUTO_CHOOSES_AMONG) is within noise of the fastest candidate it
    chooses among (per-round ratio's median at most 1 + max(TOLERANCE, the rounds' spread))."""
    among = [k for k in AUTO_CHOOSES_AMONG if f"{arch} {k}" in times]
    fastest = min(among, key=lambda k: statistics.median(times[f"{arch} {k}"]))
    ratios = [a / b for a, b in zip(times[f"{arch} auto"], times[f"{arch} {fastest}"])]
    med, tol = statistics.median(ratios), max(TOLERANCE, _noise(ratios))
    verdict = "within noise: auto is as fast" if med <= 1.0 + tol else "NOT within noise: auto is slower"
    if picked != fastest:
        verdict += f" (auto runs {picked}; {fastest} timed fastest here)"
    return (f"{arch}: auto time / fastest of {', '.join(among)} ({fastest}): {med:.2f}x ({_spread(ratios)}), "
            f"tolerance {tol * 100:.0f}%: {verdict}")


def _picked(m: FeedForwardModel) -> str:
    """The candidate name of what a model runs: onnxruntime, or eager fp32/bf16 (torch)."""
    return m.backend if m.backend != "torch" else f"eager {'bf16' if m.bf16 else 'fp32'}"


def _describe_auto(arch: str, auto: FeedForwardModel, seconds: float, device: str) -> None:
    """What compile() on auto picked and why, and the precision policy's verdict for eager torch (what
    ``stylize`` runs without ``compile()``; compile() timed torch in that precision against ONNX Runtime)."""
    info = auto.describe()
    eager = FeedForwardModel(_net(arch), device=device, precision="auto").backend_choice.precision
    print(f"  {arch} auto: compile() took {seconds:.1f} s with an empty cache; backend {info['backend']}, "
          f"{info['precision']}\n    precision: {info['precision_reason']}\n    backend:   {info['backend_reason']}"
          f"\n    eager torch under precision auto (no compile()): {eager.describe()}")


def _report(size: Tuple[int, int], times: Dict[str, List[float]], default_ref: float, outs: Dict[str, torch.Tensor],
            exact: Dict[str, torch.Tensor]) -> None:
    h, w = size
    ref = times["reference"]
    ref_s = statistics.median(ref)
    print(f"  {w}x{h}: reference (eager fp32 standard) {1 / ref_s:6.2f} fps ({ref_s * 1e3:7.1f} ms, median); "
          f"with the default allocator, before retain_freed_memory(): {default_ref * 1e3:.1f} ms")
    for k, t in times.items():
        if k == "reference":
            continue
        med = statistics.median(t)
        ratios = [rt / ct for rt, ct in zip(ref, t)]
        d = (outs[k] - exact[k.split()[0]]).abs()
        print(f"  {w}x{h}: {k:20s} {1 / med:6.2f} fps ({med * 1e3:7.1f} ms)  ratio {statistics.median(ratios):5.2f}x "
              f"({_spread(ratios)}; vs default-allocator reference {default_ref / med:5.2f}x)"
              f"  |diff vs own fp32 eager| max {float(d.max()):.1e} mean {float(d.mean()):.1e}")


def _solo(fns: Dict[str, Runner], x: torch.Tensor, size: Tuple[int, int], solo_reps: int) -> None:
    h, w = size
    for k in ("slim auto", "standard winograd"):
        if k not in fns:
            continue
        n = solo_reps if k.startswith("slim") else max(3, solo_reps // 6)
        times = sorted(_time(fns[k], x) for _ in range(n))
        print(f"  {w}x{h}: {k} alone, {n} runs: best {1 / times[0]:.2f} fps, median "
              f"{1 / times[len(times) // 2]:.2f} fps  [{_load()}]")


def bench_device(device: str, sizes: Sequence[Tuple[int, int]], reps: int, solo_reps: int = 0) -> None:
    """Every candidate on ``device`` at every size, interleaved with the reference."""
    torch.manual_seed(0)
    reference = _reference(device)
    # The reference with the process's default allocator, before retain_freed_memory() changes it for everyone.
    default_ref = {}
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        reference(x)
        default_ref[(h, w)] = statistics.median(_time(reference, x) for _ in range(max(2, reps // 2)))
    print(f"device {device}: retain_freed_memory() -> {retain_freed_memory()}")

    fns: Dict[str, Runner] = {"reference": reference}
    picked: Dict[str, str] = {}
    for arch in ("standard", "slim"):
        models, auto, seconds = _models(arch, device)
        _describe_auto(arch, auto, seconds, device)
        picked[arch] = _picked(auto)
        print(f"  {arch}: {macs_per_pixel(arch) / 1e3:.2f}k MAC/px; candidates: "
              + ", ".join(f"{k} ({m.backend}, {'bf16' if m.bf16 else 'fp32'})" for k, m in models.items()))
        fns.update({f"{arch} {k}": _runner(m, device) for k, m in models.items()})

    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        outs, warm = {}, {}
        for k, f in fns.items():  # warm-up (and the winograd build for this size)
            t0 = time.perf_counter()
            outs[k] = f(x)
            warm[k] = time.perf_counter() - t0
        with torch.inference_mode():
            exact = {a: _net(a).to(device).eval()(x).clamp(0, 1) for a in ("standard", "slim")}
        load_before = _load()
        times = _rounds(fns, x, reps)
        print(f"  {w}x{h}: [{load_before} before, {_load()} after; first calls: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in warm.items()) + "]")
        _report((h, w), times, default_ref[(h, w)], outs, exact)
        for arch in ("standard", "slim"):
            print(f"  {w}x{h}: {_auto_verdict(arch, times, picked[arch])}")
        if solo_reps:
            _solo(fns, x, (h, w), solo_reps)


# ------------------------------------------------------------------------------------------------ quality


def _scene(w: int, h: int, seed: int):
    """A deterministic synthetic photo-like picture: gradients, shapes, a texture patch and mild noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.random(3) * 0.6 + 0.2
    arr = base + 0.3 * np.stack([xx / w - 0.5, yy / h - 0.5, (xx + yy) / (w + h) - 0.5], -1) * rng.choice([-1, 1], 3)
    for _ in range(rng.integers(4, 9)):
        cx, cy = rng.random() * w, rng.random() * h
        rx, ry = (0.05 + 0.25 * rng.random()) * w, (0.05 + 0.25 * rng.random()) * h
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1 if rng.random() < 0.6 else (
            (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry))
        arr[mask] = rng.random(3) * (0.7 + 0.3 * np.sin(xx[mask][:, None] / (2 + 6 * rng.random())))
    arr += rng.normal(0, 0.02, arr.shape)
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


def _style(size: int):
    """A deterministic colourful pattern (strokes at two orientations and dots) used as the style."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = np.sin((xx + 0.6 * yy) / 5.0)
    b = np.sin((0.3 * xx - yy) / 9.0 + 1.3 * np.sin(xx / 23.0))
    dots = (np.sin(xx / 3.1) * np.sin(yy / 3.1) > 0.7).astype(np.float32)
    arr = np.stack([0.55 + 0.4 * a * b, 0.35 + 0.3 * b - 0.2 * dots, 0.6 - 0.35 * a + 0.3 * dots], -1)
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


def _mean(values: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """The mean of each key over dicts that all have the same keys."""
    return {k: sum(v[k] for v in values) / len(values) for k in values[0]}


def _generated_set(workdir: Path, eval_size: int) -> Tuple[Path, Path, List[torch.Tensor], List[torch.Tensor], str]:
    """24 generated training pictures and a generated style written under ``workdir``; 4 held-out and 4 tuning
    scenes at ``eval_size`` px. Returns (data folder, style path, held-out, tuning, a description)."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(24):
        _scene(192, 160, seed=i).save(data / f"scene{i:02d}.png")
    style_path = workdir / "style.png"
    _style(256).save(style_path)
    held_out = [load_image(_scene(eval_size, eval_size, seed=1000 + i)).tensor for i in range(4)]
    tuning = [load_image(_scene(eval_size, eval_size, seed=2000 + i)).tensor for i in range(4)]
    return data, style_path, held_out, tuning, f"4 generated pictures at {eval_size} px"


def _photo_set(workdir: Path, eval_size: int, style: Path) -> Tuple[Path, Path, List[torch.Tensor],
                                                                    List[torch.Tensor], str]:
    """scikit-image's photos: the gallery's training photos less PHOTO_TUNING and PHOTO_HELD_OUT to train on, those
    two sets (resized to ``eval_size`` px on the longer side) to tune on and to report on; ``style``, a picture."""
    data = workdir / "photos"
    data.mkdir(parents=True, exist_ok=True)
    write_photos([p for p in TRAINING_PHOTOS if p not in PHOTO_TUNING + PHOTO_HELD_OUT], data)

    def pictures(names: Sequence[str]) -> List[torch.Tensor]:
        return [resize_longest(load_image(skimage_photo(n)).tensor, eval_size) for n in names]

    return (data, style, pictures(PHOTO_HELD_OUT), pictures(PHOTO_TUNING),
            f"{len(PHOTO_HELD_OUT)} photos ({', '.join(PHOTO_HELD_OUT)}) at {eval_size} px, style {style.name}")


def _scored(tf: FeedForwardModel, pictures: Sequence[torch.Tensor], loss: Dict[str, object],
            style_t: torch.Tensor) -> Dict[str, float]:
    """Mean over ``pictures`` of the training's content, style and total losses (``loss``: the loss network and its
    targets, as :func:`_loss_setup` makes them), ``metrics.score`` and ``metrics.grid_score`` of ``tf``'s results."""
    opts, extractor = loss["opts"], loss["extractor"]
    per_picture = []
    for x in pictures:
        y = tf.stylize(x)
        with torch.no_grad():
            cf = extractor(x)
            targets = {k: cf[k].float() for k in opts.content_layers}
            t = total_loss(y, extractor(y), content_targets=targets, style_grams=loss["grams"],
                           style_layer_weights=loss["style_norm"], content_weight=opts.content_weight,
                           style_weight=opts.style_weight, tv_weight=opts.tv_weight,
                           content_layer_weights=target_scaled_weights(targets, loss["content_w"])).as_floats()
        per_picture.append({**{k: t[k] for k in ("content", "style", "total")},
                            **metrics.score(y, x, style_t), "grid": metrics.grid_score(y)})
    return _mean(per_picture)


def _loss_setup(style_t: torch.Tensor, size: int, seed: int) -> Dict[str, object]:
    """The weight-free loss network of ``seed`` and the style's Gram targets at ``size`` px, weighted as training
    weights them (default TrainOptions)."""
    opts = TrainOptions()
    extractor = extractor_for("random", None, feature_layers(opts.content_layers, opts.style_layers), seed=seed,
                              device="cpu").eval()
    with torch.no_grad():
        sf = extractor(resize_longest(style_t, size).clamp(0, 1))
        grams = {k: gram_matrix(sf[k]).float() for k in opts.style_layers}
    return {"opts": opts, "extractor": extractor, "grams": grams,
            "style_norm": target_scaled_weights(grams, normalised_layer_weights(opts.style_layers, None)),
            "content_w": normalised_layer_weights(opts.content_layers, None)}


#: The columns of :func:`_scored`'s figures in the printed tables.
_SCORE_HEADER = ("held-out content | held-out style | held-out total | content_ssim | color_distance "
                 "| texture_distance | grid_score")


def _score_cells(r: Dict[str, object], prefix: str = "") -> str:
    """The :data:`_SCORE_HEADER` cells of row ``r`` (its keys ``prefix`` + each score's name)."""
    return (f"{r[prefix + 'content']:.3f} | {r[prefix + 'style']:.3f} | {r[prefix + 'total']:.3f} "
            f"| {r[prefix + 'content_ssim']:.3f} | {r[prefix + 'color_distance']:.4f} "
            f"| {r[prefix + 'texture_distance']:.4f} | {r[prefix + 'grid']:.4f}")


def quality(steps: int, size: int, batch: int, eval_size: int, workdir: Path,
            labels: Sequence[str] = ("standard", "slim-v1", "slim", "slim-resize"), precision: str = "auto",
            learning_rate: float = 1e-3, seed: int = 0, photo_style: Optional[Path] = None,
            checkpoints: Sequence[Path] = (), more_scenes: int = 0) -> None:
    """Train each of ``labels`` (or, with ``checkpoints``, score those saved networks instead: trained by an earlier
    run with the same ``seed`` and style) and print their held-out and tuning scores; ``more_scenes`` (generated
    pictures only) also scores that many further generated pictures (seeds 3000 on), a larger held-out set."""
    data, style_path, held_out, tuning, described = (
        _generated_set(workdir, eval_size) if photo_style is None else _photo_set(workdir, eval_size, photo_style))
    style_t = load_image(style_path).tensor
    loss = _loss_setup(style_t, size, seed)
    more = [load_image(_scene(eval_size, eval_size, seed=3000 + i)).tensor for i in range(more_scenes)] if (
        photo_style is None) else []

    known = {"slim-v1": ("slim", SLIM_V1), **{k: (k, v) for k, v in ARCHITECTURES.items()}}
    variants = []
    for label in labels if not checkpoints else ():  # a name, or NAME:field=value,... (bench_slim_head.parse_variant)
        name, options = parse_variant(label)
        arch, config = known[name]
        variants.append((label, arch, replace(config, **options).validated() if options else config))
    trained: List[Tuple[str, FeedForwardModel, Dict[str, object]]] = []
    for label, arch, config in variants:
        saved = ARCHITECTURES[arch]
        ARCHITECTURES[arch] = config  # train() builds the network by name
        try:
            t0 = time.perf_counter()
            res = styletx.train(style_path, data, workdir / f"{label}.pth", arch=arch, steps=steps, size=size,
                                batch_size=batch, backbone="random", seed=seed, checkpoint_every=0, overwrite=True,
                                precision=precision, learning_rate=learning_rate)
            seconds = time.perf_counter() - t0
        finally:
            ARCHITECTURES[arch] = saved
        last = res.losses[-20:]
        trained.append((label, res.transformer, {
            "kmac": macs_per_pixel(config) / 1e3, "seconds": seconds, "precision": res.precision_reason or res.precision,
            "train_total": sum(v["total"] for v in last) / len(last)}))
    for path in checkpoints:
        tf = load_transformer(path, device="cpu", precision="fp32")
        info = {"kmac": macs_per_pixel(tf.config) / 1e3, "seconds": float("nan"), "precision": "(loaded)",
                "train_total": float("nan")}
        trained.append((Path(path).stem, tf, info))
    rows: List[Dict[str, object]] = []
    for label, tf, info in trained:
        tune = _mean([metrics.score(tf.stylize(x), x, style_t) for x in tuning])
        rows.append({"label": label, **info, "inference": tf.describe()["precision_reason"],
                     **_scored(tf, held_out, loss, style_t), **{f"tune_{k}": v for k, v in tune.items()},
                     **({f"more_{k}": v for k, v in _scored(tf, more, loss, style_t).items()} if more else {})})
    print(f"quality: {steps} steps, {size} px crops, batch {batch}, backbone random, seed {seed}, Adam lr {learning_rate:g}, "
          f"default loss weights; held-out: {described}")
    for r in rows:
        print(f"  {r['label']}: training in {r['precision']}; held-out inference in {r['inference']}")
    inputs_grid = sum(metrics.grid_score(x) for x in held_out) / len(held_out)
    print(f"grid_score (4 px) of the held-out inputs themselves: {inputs_grid:.4f}")
    print(f"| network | kMAC/px | train s | train loss (last 20) | {_SCORE_HEADER} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['kmac']:.2f} | {r['seconds']:.0f} | {r['train_total']:.3f} | {_score_cells(r)} |")
    print("tuning pictures (for choosing options):", "4 other generated pictures" if photo_style is None
          else ", ".join(PHOTO_TUNING))
    print("| network | content_ssim | color_distance | texture_distance |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['tune_content_ssim']:.3f} | {r['tune_color_distance']:.4f} "
              f"| {r['tune_texture_distance']:.4f} |")
    if more:
        print(f"{len(more)} more held-out generated pictures (seeds 3000-{3000 + len(more) - 1}), {eval_size} px:")
        print(f"| network | {_SCORE_HEADER} |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['label']} | {_score_cells(r, 'more_')} |")


def _sizes(names: Sequence[str]) -> List[Tuple[int, int]]:
    """"WxH" strings -> (h, w) pairs."""
    return [(int(s.lower().split("x")[1]), int(s.lower().split("x")[0])) for s in names]


def speed(args: argparse.Namespace) -> None:
    """The speed benchmark on the CPU, then on the GPU where CUDA is present."""
    print(f"medians of {args.reps} interleaved rounds")
    bench_device("cpu", _sizes(args.sizes), args.reps, args.solo_reps)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        bench_device("cuda", _sizes(args.gpu_sizes), args.reps)
    else:
        print("GPU: skipped (no CUDA device)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds; medians over rounds are shown")
    ap.add_argument("--sizes", nargs="+", default=["512x512", "1280x720"], help="sizes on the CPU (WxH)")
    ap.add_argument("--gpu-sizes", nargs="+", default=["1920x1080"], help="sizes on a CUDA GPU, where present")
    ap.add_argument("--solo-reps", type=int, default=30, help="extra runs of slim alone (frame rate, not ratio)")
    ap.add_argument("--quality", action="store_true", help="train standard / slim-v1 / slim and compare quality")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--train-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--variants", nargs="+", default=["standard", "slim-v1", "slim", "slim-resize"],
                    help="networks --quality trains: standard, slim-v1 or any name in ARCHITECTURES, options "
                    "overridden as NAME:field=value,... (e.g. slim-2x:final_stage=16)")
    ap.add_argument("--train-precision", default="auto", help="--quality training precision (auto: the policy decides)")
    ap.add_argument("--seed", type=int, default=0,
                    help="--quality seed: the network's initialisation, the crops and the weight-free loss network")
    ap.add_argument("--learning-rate", type=float, default=1e-3, help="--quality training: Adam step size")
    ap.add_argument("--photos", metavar="STYLE", default=None,
                    help="--quality on scikit-image's photos (PHOTO_HELD_OUT, PHOTO_TUNING; the rest of the gallery's "
                    "training photos to train on) with this style picture, instead of generated ones")
    ap.add_argument("--checkpoints", nargs="+", default=(), metavar="PTH",
                    help="--quality: score these saved networks (trained by a run with the same --seed and "
                    "--photos) instead of training --variants")
    ap.add_argument("--more-scenes", type=int, default=0, metavar="N",
                    help="--quality on generated pictures: also score N more held-out ones (seeds 3000 on)")
    ap.add_argument("--workdir", default=None, help="folder for data and checkpoints (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if os.environ.pop(ENV_PRECISION, None):
        print(f"${ENV_PRECISION} unset for this run, so that auto is measured")
    print(f"styletx transformer benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads (interop {torch.get_num_interop_threads()}), {_load()}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="styletx-bench-") as tmp:
        os.environ["STYLETX_CACHE_DIR"] = str(Path(tmp) / "cache")  # empty: auto measures
        if args.quality:
            quality(args.steps, args.train_size, args.batch_size, args.eval_size, Path(args.workdir or tmp),
                    args.variants, args.train_precision, args.learning_rate, args.seed,
                    Path(args.photos) if args.photos else None, [Path(c) for c in args.checkpoints],
                    args.more_scenes)
        else:
            speed(args)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
