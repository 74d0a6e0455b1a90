"""Optimisation step time: styletx's engine in fp32, bf16 and ``auto`` against a plain eager fp32 reference,
measured in the same run; and (``--quality-steps``) whether bf16 changes the picture.

The reference is the tutorial loop: torchvision VGG19 cut after relu5_1, ImageNet normalisation, content and
style targets computed once, a Gram matrix and an MSE per layer, L-BFGS over the pixels (clamped after each
step, as the tutorial does), fp32, NCHW; same loss weights and target scaling as styletx's defaults.
Both use VGG19 with the same seeded random weights (no pretrained weights are needed) and the same
content/style layers.

Quality (``--quality-steps N``): the reference, fp32 and bf16 results after N steps are scored with
``styletx.metrics``, and the mean absolute pixel difference between the fp32 and bf16 pictures is printed beside
a control: fp32 again on the content nudged below 8-bit precision, i.e. how far the optimisation moves anyway.

The run uses a fresh, empty cache folder (``$STYLETX_CACHE_DIR``), so ``auto`` is really measured: first the
precision policy's probe is timed alone (``choose_precision_for`` with the empty cache: what a user's first run
pays), then ``auto`` runs with that verdict, as every later run would. ``--probes N`` repeats the probe in
other empty folders to show whether its verdict is stable on a noisy machine.

Timing: every round runs the reference and styletx fp32, bf16 and auto once each (in a new random order);
each run's seconds per step is the median of its steps after the first; ratios (ours / reference: lower is
better) are taken within a round, and the medians over rounds are printed. Then one line says whether auto is
within noise of the faster of fp32/bf16. Where CUDA is present a GPU section follows by itself (its own probe;
``--gpu-sizes``, default 512 px, ``--gpu-steps``, default 500 steps a run).

    python benchmarks/bench_optimize.py                 # 256 and 512 px, 10 steps a run, 3 rounds (+ GPU)
    python benchmarks/bench_optimize.py --sizes 256 --steps 40 --quality-steps 100
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx import metrics  # noqa: E402
from styletx.api import prepare_extractor  # noqa: E402
from styletx.device import ENV_PRECISION, PrecisionChoice  # noqa: E402
from styletx.engines.optimize import PROBE_SIZE, choose_precision_for  # noqa: E402
from styletx.io.image import load_image  # noqa: E402
from styletx.options import DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT  # noqa: E402
from styletx.options import StylizeOptions  # noqa: E402
from styletx.tensors import resize_longest, to_pil  # noqa: E402

CONTENT_LAYER = 22  # relu4_2 in torchvision's vgg19.features
STYLE_LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CANDIDATES = ("fp32", "bf16", "auto")
#: auto counts as "as fast" when its median time is within this fraction of the faster one's (or the rounds' spread)
TOLERANCE = 0.05


# ------------------------------------------------------------------------------------------------ reference


def reference_vgg(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torchvision.models.vgg19(weights=None).features[:30].eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def reference_features(net: torch.nn.Sequential, x: torch.Tensor) -> dict:
    out = {}
    h = (x - MEAN.to(x.device)) / STD.to(x.device)
    for i, layer in enumerate(net):
        h = layer(h)
        if i == CONTENT_LAYER or i in STYLE_LAYERS:
            out[i] = h
    return out


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    m = f.reshape(n, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_reference(content: torch.Tensor, style: torch.Tensor, steps: int, seed: int,
                  device: torch.device) -> Tuple[List[float], torch.Tensor]:
    """The plain loop; returns (seconds of each step, result image on the CPU)."""
    net = reference_vgg(seed).to(device)
    content, style = content.to(device), style.to(device)
    with torch.no_grad():
        c_target = reference_features(net, content)[CONTENT_LAYER]
        s_targets = {i: gram(f) for i, f in reference_features(net, style).items() if i in STYLE_LAYERS}
    c_norm = 1.0 / c_target.pow(2).mean().item()
    s_norm = {i: 1.0 / len(STYLE_LAYERS) / g.pow(2).mean().item() for i, g in s_targets.items()}
    img = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img], lr=1.0, max_iter=1, history_size=100)

    def closure():
        opt.zero_grad()
        feats = reference_features(net, img)
        loss = DEFAULT_CONTENT_WEIGHT * c_norm * F.mse_loss(feats[CONTENT_LAYER], c_target)
        for i in STYLE_LAYERS:
            loss = loss + DEFAULT_STYLE_WEIGHT * s_norm[i] * F.mse_loss(gram(feats[i]), s_targets[i])
        loss = loss + DEFAULT_TV_WEIGHT * ((img[..., 1:, :] - img[..., :-1, :]).pow(2).mean() +
                                           (img[..., 1:] - img[..., :-1]).pow(2).mean())
        loss.backward()
        return loss

    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step(closure)
        with torch.no_grad():
            img.clamp_(0, 1)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, img.detach().cpu()


# ------------------------------------------------------------------------------------------------ styletx


def run_ours(content: torch.Tensor, style: torch.Tensor, steps: int, seed: int, precision: str,
             device: torch.device) -> Tuple[List[float], "styletx.StylizeResult"]:
    """styletx's engine at one scale; returns (seconds of each step, the result with its record). Each step
    reads its loss back, so the stamps wait for the GPU's work."""
    stamps: List[float] = [0.0]
    result = styletx.stylize(
        content, style, size=max(content.shape[-2:]), iterations=steps, scales=1, backbone="vgg19",
        weights=None, seed=seed, device=str(device), precision=precision, output="tensor",
        callback=lambda it: stamps.append(it.elapsed),
    )
    return [b - a for a, b in zip(stamps, stamps[1:])], result


def per_step(times: Sequence[float]) -> float:
    """Seconds per step: the median of the steps after the first (the first also computes the targets)."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def measure_probe(seed: int, folder: Path, device: torch.device) -> Tuple[float, PrecisionChoice]:
    """Seconds the precision policy takes to decide with an empty cache in ``folder``, and its verdict."""
    os.environ["STYLETX_CACHE_DIR"] = str(folder)
    opts = StylizeOptions(backbone="vgg19", weights=None, seed=seed).validated()
    extractor = prepare_extractor(opts, device)
    t0 = time.perf_counter()
    choice = choose_precision_for(extractor, "auto", device)
    return time.perf_counter() - t0, choice


def probes(seed: int, count: int, root: Path, device: torch.device) -> None:
    """Time the probe ``count`` times, each with an empty cache; the first one's folder is the run's cache (the
    verdict auto then runs with), the others are thrown away."""
    for i in range(count):
        folder = root / "cache" if i == 0 else root / f"extra-{device.type}-{i}"
        seconds, choice = measure_probe(seed, folder, device)
        print(f"{device.type} probe {i + 1} ({PROBE_SIZE} px VGG19 forward+backward, empty cache): {seconds:.2f} s -> "
              f"{choice.describe()}")
    os.environ["STYLETX_CACHE_DIR"] = str(root / "cache")


# ------------------------------------------------------------------------------------------------ verdicts


def _spread(values: Sequence[float]) -> str:
    return f"rounds {min(values):.2f}-{max(values):.2f}" if len(values) > 1 else "1 round"


def auto_verdict(times: Dict[str, List[float]], picked: str) -> str:
    """Whether auto (which ran ``picked``) is within noise of the faster of fp32/bf16: their per-round ratio's
    median must be at most 1 + max(TOLERANCE, half the range of that ratio over the rounds)."""
    faster = min(("fp32", "bf16"), key=lambda k: statistics.median(times[k]))
    ratios = [a / b for a, b in zip(times["auto"], times[faster])]
    med = statistics.median(ratios)
    tol = max(TOLERANCE, (max(ratios) - min(ratios)) / 2)
    verdict = "within noise: auto is as fast" if med <= 1.0 + tol else "NOT within noise: auto is slower"
    if picked != faster:
        verdict += f" (auto ran {picked}, the policy's verdict above, where {faster} timed faster)"
    return f"auto / faster of fp32 and bf16 ({faster}): {med:.2f}x ({_spread(ratios)}), tolerance {tol * 100:.0f}%: {verdict}"


def time_size(content: torch.Tensor, style: torch.Tensor, label: str, args: argparse.Namespace,
              device: torch.device, steps: int) -> None:
    """Interleaved rounds at one size on ``device``; prints times, ratios to the reference and the auto verdict."""
    names = ("reference",) + CANDIDATES
    times: Dict[str, List[float]] = {k: [] for k in names}
    auto_reason, picked = "", ""
    for r in range(args.rounds):
        for name in random.Random(r).sample(names, len(names)):  # a new order each round
            if name == "reference":
                times[name].append(per_step(run_reference(content, style, steps, args.seed, device)[0]))
            else:
                stamps, result = run_ours(content, style, steps, args.seed, name, device)
                times[name].append(per_step(stamps))
                if name == "auto":
                    auto_reason, picked = result.record.precision_reason, result.record.precision
        print(f"{label}  round {r + 1} [load {os.getloadavg()[0]:.2f}]: "
              + "  ".join(f"{k} {times[k][-1]:.3f}" for k in names) + " s/step")
    ref = times["reference"]
    print(f"{label}  reference (eager fp32 NCHW)  {statistics.median(ref):.3f} s/step (median of {args.rounds})")
    for name in CANDIDATES:
        ratios = [t / rt for t, rt in zip(times[name], ref)]
        print(f"{label}  styletx {name:<4}  {statistics.median(times[name]):.3f} s/step  ratio "
              f"{statistics.median(ratios):.2f} ({_spread(ratios)})" + (f"  [auto -> {auto_reason}]" if name == "auto" else ""))
    print(f"{label}  {auto_verdict(times, picked)}")


# ------------------------------------------------------------------------------------------------ quality


def nudged(content: torch.Tensor, seed: int) -> torch.Tensor:
    """The content with uniform noise of +-0.4/255 added: the same picture once stored in 8 bits."""
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(seed + 1)) - 0.5
    return (content + noise * (0.8 / 255)).clamp(0, 1)


def _difference(name: str, a: "styletx.StylizeResult", b: "styletx.StylizeResult") -> str:
    d = (a.image - b.image).abs()
    rel = abs(b.record.best_loss - a.record.best_loss) / a.record.best_loss
    return (f"|{name}|: mean {float(d.mean()):.4f} ({float(d.mean()) * 255:.1f} of 255), p99 "
            f"{float(d.flatten().quantile(0.99)):.3f}, max {float(d.max()):.3f}; best losses {a.record.best_loss:.4f}"
            f" and {b.record.best_loss:.4f} ({rel * 100:.1f}% apart)")


def quality(content: torch.Tensor, style: torch.Tensor, size: int, args: argparse.Namespace) -> None:  # on the CPU
    """Scores of the reference, fp32 and bf16 after the same steps, how far the bf16 picture is from fp32's, and
    (the control) how far fp32's moves when the content changes below 8-bit precision."""
    cpu, steps, label = torch.device("cpu"), args.quality_steps, f"cpu {size}px"
    _, ref_img = run_reference(content, style, steps, args.seed, cpu)
    runs = {name: run_ours(content, style, steps, args.seed, name, cpu)[1] for name in ("fp32", "bf16")}
    runs["fp32-nudged"] = run_ours(nudged(content, args.seed), style, steps, args.seed, "fp32", cpu)[1]
    images = {"reference": ref_img.clamp(0, 1), **{f"styletx-{k}": r.image for k, r in runs.items()}}
    out = Path(tempfile.gettempdir())
    for name, img in images.items():
        s = metrics.score(img, content, style)
        print(f"{label}  {name:<19} after {args.quality_steps} steps: "
              + "  ".join(f"{k} {v:.4f}" for k, v in s.items()))
        to_pil(img).save(out / f"bench_{name}_{size}.png")
    print(f"{label}  {_difference('fp32 picture - bf16 picture', runs['fp32'], runs['bf16'])}")
    print(f"{label}  control, fp32 on a content nudged by +-0.4/255 (the same 8-bit picture): "
          f"{_difference('fp32 - fp32 nudged', runs['fp32'], runs['fp32-nudged'])}")
    print(f"{label}  pictures: {out}/bench_{{{','.join(images)}}}_{size}.png")


def pictures(args: argparse.Namespace, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The content and style pictures, longest side ``size`` px, on the CPU."""
    return resize_longest(load_image(args.content).tensor, size), resize_longest(load_image(args.style).tensor, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over rounds are shown")
    parser.add_argument("--probes", type=int, default=3, help="times the probe is measured (each: empty cache)")
    parser.add_argument("--quality-steps", type=int, default=0, help="also compare scores after this many steps")
    parser.add_argument("--content", default=str(ROOT / "examples" / "cat.jpg"))
    parser.add_argument("--style", default=str(ROOT / "examples" / "swirls.jpg"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-sizes", type=int, nargs="+", default=[512], help="sizes on a CUDA GPU, where present")
    parser.add_argument("--gpu-steps", type=int, default=500, help="steps per timed run on a CUDA GPU")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    if os.environ.pop(ENV_PRECISION, None):
        print(f"${ENV_PRECISION} unset for this run, so that auto is measured")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="styletx-bench-cache-") as root:
        cpu = torch.device("cpu")
        probes(args.seed, max(1, args.probes), Path(root), cpu)
        for size in args.sizes:
            content, style = pictures(args, size)
            time_size(content, style, f"cpu {size}px", args, cpu, args.steps)
            if args.quality_steps:
                quality(content, style, size, args)
        if not torch.cuda.is_available():
            print("GPU: skipped (no CUDA device)")
            return
        gpu = torch.device("cuda")
        print(f"GPU: {torch.cuda.get_device_name(gpu)}")
        probes(args.seed, max(1, args.probes), Path(root), gpu)
        for size in args.gpu_sizes:
            time_size(*pictures(args, size), f"cuda {size}px", args, gpu, args.gpu_steps)


if __name__ == "__main__":
    main()
