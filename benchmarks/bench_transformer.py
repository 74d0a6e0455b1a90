"""Frames per second of the transformer networks against a plain eager fp32 reference, measured in the same run;
and (``--quality``) the slim network's quality against the standard one after the same training.

    python benchmarks/bench_transformer.py [--threads 2] [--reps 7] [--sizes 512x512 1280x720]
    python benchmarks/bench_transformer.py --quality [--steps 200] [--train-size 128] [--batch-size 2]

Speed. Reference: the standard architecture as a plain eager fp32 ``TransformerNet`` (NCHW, no rewrites,
inference mode). Ours: the one inference path, ``Transformer.compile()`` then ``Transformer.stylize`` (on a CPU
without native bf16 that is the ONNX Runtime backend; see docs/transformer.md), for ``standard`` and ``slim``;
on the CPU also ``compile(backend="winograd")`` for ``standard``; and ours without ``compile()`` (eager torch).
``compile()`` makes the process keep freed memory (``styletx.device.retain_freed_memory``), which speeds up the
reference too: the ratios are to the reference measured after it, in the same rounds (the stricter figure);
the reference before it (the default allocator) is printed beside them. Timings are interleaved (every candidate once per round) and the
best of ``--reps`` rounds is kept, so other load on the machine hits all of them alike; ratios are to the
reference of the same run. Also prints the max/mean absolute difference from the same network in eager fp32,
and the frame rate of slim alone (best and median of ``--solo-reps`` runs).
A GPU section runs only when CUDA is present.

Quality (``--quality``): trains ``standard``, the previous slim design (``slim-v1``: pixel-unshuffle 2) and
``slim`` with the same data (generated pictures), style (a generated pattern), steps, crop size, seed and the
weight-free ``random`` backbone, then reports on held-out pictures the same content and style losses the
training minimises (weighted as in training), ``styletx.metrics.score`` and the training time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from styletx.transformer import ARCHITECTURES, ArchConfig, Transformer, build_network, fast_bf16, macs_per_pixel

#: The slim design before 2026-11-26 (pixel-unshuffle 2); kept here to measure the redesign against.
SLIM_V1 = ArchConfig("slim", channels=(16, 32, 64), res_blocks=5, separable=True, kernel_in=3, kernel_out=3,
                     unshuffle=2)


def _time(fn, x) -> float:
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


def bench_device(device: str, sizes, reps: int, solo_reps: int = 0) -> None:
    torch.manual_seed(0)
    ref_net = build_network("standard", seed=0).to(device).eval()

    def reference(x):
        with torch.inference_mode():
            y = ref_net(x).clamp(0, 1)
        if device == "cuda":
            torch.cuda.synchronize()
        return y

    # The reference with the process's default allocator, before compile() changes it for everyone
    # (styletx.device.retain_freed_memory); the ratios below use the reference measured after, in the same rounds.
    default_ref = {}
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        reference(x)
        default_ref[(h, w)] = min(_time(reference, x) for _ in range(max(2, reps // 2)))

    compiled = {arch: Transformer(_net(arch), device=device, precision="auto") for arch in ("standard", "slim")}
    eager = {arch: Transformer(_net(arch), device=device, precision="auto") for arch in ("standard", "slim")}
    t0 = time.perf_counter()
    for m in compiled.values():
        m.compile()
    winograd = None
    if device == "cpu":
        winograd = Transformer(_net("standard"), device=device).compile(backend="winograd")
    print(f"device {device}: bf16 native={fast_bf16(torch.device(device))}; compile() took "
          f"{time.perf_counter() - t0:.1f} s (winograd builds lazily, per size: see warm-up); "
          + ", ".join(f"{a}: backend={m.backend}, {'bf16' if m.uses_bf16 else 'fp32'}, "
                      f"{macs_per_pixel(a) / 1e3:.2f}k MAC/px" for a, m in compiled.items()))

    def run(m):
        def f(inp):
            y = m.stylize(inp)
            if device == "cuda":
                torch.cuda.synchronize()
            return y
        return f

    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        fns = {"reference": reference}
        if winograd is not None:
            fns["standard winograd"] = run(winograd)
        for a in ("standard", "slim"):
            fns[f"{a} compiled"] = run(compiled[a])
            fns[f"{a} eager"] = run(eager[a])
        outs, warm = {}, {}
        for k, f in fns.items():  # warm-up (and the winograd build for this size)
            t0 = time.perf_counter()
            outs[k] = f(x)
            warm[k] = time.perf_counter() - t0
        exact = {}
        for a in ("standard", "slim"):
            with torch.inference_mode():
                exact[a] = _net(a).to(device).eval()(x).clamp(0, 1)
        best = {k: float("inf") for k in fns}
        load_before = _load()
        for _ in range(reps):
            for name, fn in fns.items():
                best[name] = min(best[name], _time(fn, x))
        ref_fps = 1.0 / best["reference"]
        print(f"  {w}x{h}: [{load_before} before, {_load()} after; first calls: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in warm.items()) + "]")
        print(f"  {w}x{h}: reference (eager fp32 standard) {ref_fps:6.2f} fps ({best['reference'] * 1e3:7.1f} ms); "
              f"with the default allocator, before compile(): {default_ref[(h, w)] * 1e3:.1f} ms")
        for k in fns:
            if k == "reference":
                continue
            fps = 1.0 / best[k]
            d = (outs[k] - exact[k.split()[0]]).abs()
            print(f"  {w}x{h}: {k:17s} {fps:6.2f} fps ({best[k] * 1e3:7.1f} ms)  ratio {fps / ref_fps:5.2f}x"
                  f" (vs default-allocator reference {default_ref[(h, w)] / best[k]:5.2f}x)"
                  f"  |diff vs own fp32 eager| max {float(d.max()):.1e} mean {float(d.mean()):.1e}")
        if solo_reps:
            for k in ("slim compiled", "standard winograd"):
                if k not in fns:
                    continue
                n = solo_reps if k.startswith("slim") else max(3, solo_reps // 6)
                times = sorted(_time(fns[k], x) for _ in range(n))
                print(f"  {w}x{h}: {k} alone, {n} runs: best {1 / times[0]:.2f} fps, median "
                      f"{1 / times[len(times) // 2]:.2f} fps  [{_load()}]")


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


def quality(steps: int, size: int, batch: int, eval_size: int, workdir: Path) -> None:
    from styletx import metrics
    from styletx.features import extractor_for
    from styletx.image import load_image, resize_longest
    from styletx.losses import gram_matrix, normalised_layer_weights, target_scaled_weights, total_loss
    from styletx.options import TrainOptions
    from styletx.train import train

    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(24):
        _scene(192, 160, seed=i).save(data / f"scene{i:02d}.png")
    style_path = workdir / "style.png"
    _style(256).save(style_path)
    held_out = [load_image(_scene(eval_size, eval_size, seed=1000 + i)).tensor for i in range(4)]
    style_t = load_image(style_path).tensor

    opts = TrainOptions()
    layers = tuple(dict.fromkeys(tuple(opts.content_layers) + tuple(opts.style_layers)))
    extractor = extractor_for("random", None, layers, seed=0, device="cpu").eval()
    with torch.no_grad():
        sf = extractor(resize_longest(style_t, size).clamp(0, 1))
        grams = {k: gram_matrix(sf[k]).float() for k in opts.style_layers}
    style_norm = target_scaled_weights(grams, normalised_layer_weights(opts.style_layers, None))
    content_w = normalised_layer_weights(opts.content_layers, None)

    variants = [("standard", "standard", ARCHITECTURES["standard"]), ("slim-v1", "slim", SLIM_V1),
                ("slim", "slim", ARCHITECTURES["slim"])]
    rows: List[Dict[str, object]] = []
    for label, arch, config in variants:
        saved = ARCHITECTURES[arch]
        ARCHITECTURES[arch] = config  # train() builds the network by name
        try:
            t0 = time.perf_counter()
            res = train(style_path, data, workdir / f"{label}.pth", arch=arch, steps=steps, size=size, batch_size=batch,
                        backbone="random", seed=0, checkpoint_every=0, overwrite=True)
            seconds = time.perf_counter() - t0
        finally:
            ARCHITECTURES[arch] = saved
        tf = res.transformer
        terms = {"content": 0.0, "style": 0.0, "total": 0.0}
        scores = {"content_ssim": 0.0, "color_distance": 0.0, "texture_distance": 0.0}
        for x in held_out:
            y = tf.stylize(x)
            with torch.no_grad():
                cf = extractor(x)
                targets = {k: cf[k].float() for k in opts.content_layers}
                t = total_loss(y, extractor(y), content_targets=targets, style_grams=grams,
                               style_layer_weights=style_norm, content_weight=opts.content_weight,
                               style_weight=opts.style_weight, tv_weight=opts.tv_weight,
                               content_layer_weights=target_scaled_weights(targets, content_w)).as_floats()
            for k in terms:
                terms[k] += t[k] / len(held_out)
            s = metrics.score(y, x, style_t)
            for k in scores:
                scores[k] += s[k] / len(held_out)
        last = res.losses[-20:]
        rows.append({"label": label, "kmac": macs_per_pixel(config) / 1e3, "seconds": seconds,
                     "train_total": sum(l["total"] for l in last) / len(last), **terms, **scores})
    print(f"quality: {steps} steps, {size} px crops, batch {batch}, backbone random (seed 0), Adam lr 1e-3, "
          f"default loss weights; held-out: 4 generated pictures at {eval_size} px")
    print("| network | kMAC/px | train s | train loss (last 20) | held-out content | held-out style | held-out total"
          " | content_ssim | color_distance | texture_distance |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['kmac']:.2f} | {r['seconds']:.0f} | {r['train_total']:.3f} | {r['content']:.3f} "
              f"| {r['style']:.3f} | {r['total']:.3f} | {r['content_ssim']:.3f} | {r['color_distance']:.4f} "
              f"| {r['texture_distance']:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", nargs="+", default=["512x512", "1280x720"])
    ap.add_argument("--solo-reps", type=int, default=30, help="extra runs of slim alone (frame rate, not ratio)")
    ap.add_argument("--quality", action="store_true", help="train standard / slim-v1 / slim and compare quality")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--train-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--workdir", default=None, help="folder for data and checkpoints (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"styletx transformer benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads (interop {torch.get_num_interop_threads()}), {_load()}")
    if args.quality:
        if args.workdir:
            quality(args.steps, args.train_size, args.batch_size, args.eval_size, Path(args.workdir))
        else:
            with tempfile.TemporaryDirectory() as d:
                quality(args.steps, args.train_size, args.batch_size, args.eval_size, Path(d))
        return
    sizes = [tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes]  # WxH -> (h, w)
    print(f"best of {args.reps} interleaved rounds")
    bench_device("cpu", sizes, args.reps, args.solo_reps)
    if torch.cuda.is_available():
        print("GPU:")
        bench_device("cuda", sizes, args.reps)
    else:
        print("GPU: skipped (no CUDA device)")


if __name__ == "__main__":
    main()
