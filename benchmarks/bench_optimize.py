"""Optimisation step time: styletx's engine against a plain eager fp32 reference, measured in the same run.

The reference is the tutorial loop: torchvision VGG19 cut after relu5_1, ImageNet normalisation, content and
style targets computed once, a Gram matrix and an MSE per layer, L-BFGS over the pixels (clamped after each
step, as the tutorial does), fp32, NCHW; same loss weights and target scaling as styletx's defaults.
Both use VGG19 with the same seeded random weights (no pretrained weights are needed) and the same
content/style layers. Prints seconds per step for each, their ratio (ours / reference: lower is better), and
the quality scores of both results after the same number of steps (styletx.metrics).

    python benchmarks/bench_optimize.py                 # 256 and 512 px, 20 timed steps each
    python benchmarks/bench_optimize.py --sizes 256 --steps 40 --quality-steps 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx import metrics  # noqa: E402
from styletx.image import load_image, resize_longest, to_pil  # noqa: E402
from styletx.options import DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT  # noqa: E402

CONTENT_LAYER = 22  # relu4_2 in torchvision's vgg19.features
STYLE_LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def reference_vgg(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torchvision.models.vgg19(weights=None).features[:30].eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def reference_features(net: torch.nn.Sequential, x: torch.Tensor) -> dict:
    out = {}
    h = (x - MEAN) / STD
    for i, layer in enumerate(net):
        h = layer(h)
        if i == CONTENT_LAYER or i in STYLE_LAYERS:
            out[i] = h
    return out


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    m = f.reshape(n, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


def run_reference(content: torch.Tensor, style: torch.Tensor, steps: int, seed: int) -> tuple:
    """The plain loop; returns (seconds per step after the first, result image)."""
    net = reference_vgg(seed)
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
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / max(1, len(times) - 1), img.detach()


def run_ours(content: torch.Tensor, style: torch.Tensor, steps: int, seed: int, precision: str) -> tuple:
    stamps = []
    result = styletx.stylize(
        content, style, size=max(content.shape[-2:]), iterations=steps, scales=1, backbone="vgg19",
        weights=None, seed=seed, device="cpu", precision=precision, output="tensor",
        callback=lambda it: stamps.append(it.elapsed),
    )
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    return per_step, result.image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--quality-steps", type=int, default=0, help="also compare scores after this many steps")
    parser.add_argument("--content", default=str(ROOT / "examples" / "cat.jpg"))
    parser.add_argument("--style", default=str(ROOT / "examples" / "swirls.jpg"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 on this CPU: "
          f"{styletx.device.cpu_has_fast_bf16()}")
    for size in args.sizes:
        content = resize_longest(load_image(args.content).tensor, size)
        style = resize_longest(load_image(args.style).tensor, size)
        # Interleave the runs and keep each one's best round: the machine is shared and noisy.
        best = {"reference": float("inf"), "fp32": float("inf"), "bf16": float("inf")}
        for _ in range(args.rounds):
            best["reference"] = min(best["reference"], run_reference(content, style, args.steps, args.seed)[0])
            for precision in ("fp32", "bf16"):
                best[precision] = min(best[precision], run_ours(content, style, args.steps, args.seed, precision)[0])
        ref_s = best["reference"]
        print(f"{size}px  reference (eager fp32 NCHW) {ref_s:.3f} s/step")
        for precision in ("fp32", "bf16"):
            print(f"{size}px  styletx precision={precision:<4} {best[precision]:.3f} s/step  "
                  f"ratio {best[precision] / ref_s:.2f}")
        auto = "bf16" if styletx.device.cpu_has_fast_bf16() else "fp32"
        print(f"{size}px  styletx default (precision=auto -> {auto}): ratio {best[auto] / ref_s:.2f}")
        if args.quality_steps:
            _, ref_img = run_reference(content, style, args.quality_steps, args.seed)
            _, ours_img = run_ours(content, style, args.quality_steps, args.seed, "auto")
            _, ours_bf16 = run_ours(content, style, args.quality_steps, args.seed, "bf16")
            for name, img in (("reference", ref_img), ("styletx", ours_img), ("styletx-bf16", ours_bf16)):
                s = metrics.score(img, content, style)
                print(f"{size}px  {name:<9} after {args.quality_steps} steps: "
                      + "  ".join(f"{k} {v:.4f}" for k, v in s.items()))
                to_pil(img).save(f"/tmp/bench_{name}_{size}.png")


if __name__ == "__main__":
    main()
