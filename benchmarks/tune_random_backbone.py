"""Compare weight-free backbones for optimisation-based style transfer (the table in docs/backbones.md).

Every candidate runs the real engine (styletx.engines.optimize.optimize_image, default StylizeOptions except
size, iterations and a single scale) on the same content/style pairs, and the results are scored with
styletx.metrics (content_ssim: higher = more of the content kept; color_distance, texture_distance: lower = closer to the style).
The images come from skimage.data (public domain / permissive) or are drawn here; none is used by the tests.

Candidates:
  identity          the content image itself (no stylisation: the scores' anchor)
  vgg19-random      torchvision VGG19 with Kaiming-random weights (build_extractor("vgg19", weights=None))
  shallow           one layer of six parallel random convs, kernels 3..23, 128 channels each (every layer = it)
  random            the weight-free backbone as shipped (build_extractor("random"))
  random:<k>=<v>;..  the weight-free backbone with RandomNetConfig fields changed
                    (e.g. "random:feed=chain;kernels=3,5,7")
  +avg              suffix: average pooling instead of max

    python benchmarks/tune_random_backbone.py                       # default candidates, 3 pairs, 160 px
    python benchmarks/tune_random_backbone.py --size 128 --iterations 60 --candidates random vgg19-random
    python benchmarks/tune_random_backbone.py --out /tmp/tune         # also writes result PNGs there
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from styletx import metrics  # noqa: E402
from styletx.engines.optimize import optimize_image  # noqa: E402
from styletx.features import DEFAULT_RANDOM_CONFIG, RandomNetConfig, build_extractor  # noqa: E402
from styletx.features.random_net import MultiConv  # noqa: E402
from styletx.io.image import load_image  # noqa: E402
from styletx.options import StylizeOptions  # noqa: E402
from styletx.tensors import resize_longest, to_pil  # noqa: E402

DEFAULT_CANDIDATES = ("identity", "vgg19-random", "shallow", "random")


def _lbfgs_accepts_channels_last() -> bool:
    p = torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    opt = torch.optim.LBFGS([p], max_iter=1)

    def closure():
        opt.zero_grad()
        loss = (p * torch.arange(48.0).view(1, 3, 4, 4)).sum()
        loss.backward()
        return loss

    try:
        opt.step(closure)
        return True
    except RuntimeError:
        return False


if not _lbfgs_accepts_channels_last():
    # The engine optimises a channels_last leaf; torch's L-BFGS flattens grads with .view(-1), which fails on that
    # layout. Flatten with .reshape instead (same logical order as the .view_as used to write updates back).
    def _gather_flat_grad(self):  # type: ignore[no-untyped-def]
        views = [p.new(p.numel()).zero_() if p.grad is None else p.grad.reshape(-1) for p in self._params]
        return torch.cat(views, 0)

    torch.optim.LBFGS._gather_flat_grad = _gather_flat_grad


def strokes(size: int = 384, seed: int = 3) -> np.ndarray:
    """A drawn 'painting' texture: thick short strokes in a warm/cool palette (deterministic)."""
    rng = np.random.default_rng(seed)
    palette = [(214, 92, 40), (240, 200, 70), (40, 70, 150), (30, 140, 160), (245, 240, 225), (120, 30, 60)]
    img = Image.new("RGB", (size, size), (60, 50, 90))
    draw = ImageDraw.Draw(img)
    for _ in range(900):
        x, y = rng.uniform(0, size, 2)
        angle = rng.normal(0.6, 0.35)
        length = rng.uniform(10, 28)
        dx, dy = length * np.cos(angle), length * np.sin(angle)
        colour = palette[rng.integers(len(palette))]
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=colour, width=int(rng.integers(3, 8)))
    return np.asarray(img)


def pairs() -> List[Tuple[str, np.ndarray, str, np.ndarray]]:
    import skimage.data as data

    gravel = np.repeat(data.gravel()[..., None], 3, axis=2)
    return [
        ("astronaut", data.astronaut(), "ihc", data.immunohistochemistry()),
        ("coffee", data.coffee(), "strokes", strokes()),
        ("chelsea", data.chelsea(), "gravel", gravel),
    ]


class Shared(torch.nn.Module):
    """Every requested layer reads the same shallow feature map (the 'shallow multi-kernel' trial)."""

    def __init__(self, layers: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = MultiConv(3, 6 * 128, (3, 7, 11, 15, 19, 23))
        for c in self.conv.convs:
            fan_in = c.weight[0].numel()
            with torch.no_grad():
                c.weight.copy_(torch.randn(c.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                c.bias.zero_()
        self.layers = tuple(layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        f = torch.relu(self.conv((x - self.mean) / self.std))
        return {name: f for name in self.layers}


def _parse_config(text: str) -> RandomNetConfig:
    changes: Dict[str, object] = {}
    for item in filter(None, text.split(";")):
        key, value = item.split("=", 1)
        default = getattr(DEFAULT_RANDOM_CONFIG, key)
        if isinstance(default, tuple):
            changes[key] = tuple(int(v) for v in value.split(","))
        elif isinstance(default, bool):
            changes[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)):
            changes[key] = type(default)(value)
        else:
            changes[key] = value
    return replace(DEFAULT_RANDOM_CONFIG, **changes)


def make_extractor(name: str, layers: Sequence[str]) -> torch.nn.Module:
    pooling = "avg" if name.endswith("+avg") else "max"
    base = name[: -len("+avg")] if name.endswith("+avg") else name
    if base == "vgg19-random":
        return build_extractor("vgg19", layers, weights=None, pooling=pooling)
    if base == "shallow":
        return Shared(layers)
    if base == "random":
        return build_extractor("random", layers, pooling=pooling)
    if base.startswith("random:"):
        return build_extractor("random", layers, pooling=pooling, random_config=_parse_config(base[7:]))
    raise SystemExit(f"unknown candidate {name!r}")


def step_time(extractor: torch.nn.Module, size: int, repeats: int = 3) -> float:
    """Seconds of one forward + backward at size x size (fp32, CPU), best of ``repeats``."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = extractor(x)
        sum(f.float().pow(2).mean() for f in out.values()).backward()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", nargs="*", default=list(DEFAULT_CANDIDATES))
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=3, help="use the first N content/style pairs")
    ap.add_argument("--timing-size", type=int, default=256, help="0: skip the forward+backward timing")
    ap.add_argument("--out", type=Path, default=None, help="folder for result PNGs and results.json")
    args = ap.parse_args(list(argv) or None)

    # relu4_2: the content layer of the time its tables were measured (content_layers' default is now by backbone)
    options = StylizeOptions(size=args.size, iterations=args.iterations, scales=1, device="cpu", precision="fp32",
                             content_layers=("relu4_2",))
    layers = options.layers_for("random")
    chosen = pairs()[: args.pairs]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for cand in args.candidates:
        scores: List[Dict[str, float]] = []
        seconds = 0.0
        extractor = None if cand == "identity" else make_extractor(cand, layers)
        for cname, carr, sname, sarr in chosen:
            content = load_image(carr).tensor
            style = load_image(sarr).tensor
            if extractor is None:
                result = resize_longest(content, args.size)
            else:
                start = time.perf_counter()
                torch.manual_seed(0)
                result, _ = optimize_image(content, [style], extractor, options)
                seconds += time.perf_counter() - start
            s = metrics.score(result, content, style)
            scores.append(s)
            if args.out:
                to_pil(result).save(args.out / f"{cname}-{sname}-{cand.replace(':', '_').replace(';', '_')}.png")
            print(f"  {cand:40s} {cname}/{sname}: " + " ".join(f"{k}={v:.3f}" for k, v in s.items()), flush=True)
        mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        t = step_time(extractor, args.timing_size) if extractor is not None and args.timing_size else float("nan")
        rows.append({"candidate": cand, **mean, "run_s": seconds, "fwd_bwd_s": t})
    header = f"| candidate | content_ssim ↑ | color_distance ↓ | texture_distance ↓ | run s | fwd+bwd {args.timing_size}px s |"
    print(f"\n{len(chosen)} pairs, {args.size} px, {args.iterations} L-BFGS steps, default weights\n")
    print(header)
    print("|" + "---|" * 6)
    for r in rows:
        print(
            f"| {r['candidate']} | {r['content_ssim']:.3f} | {r['color_distance']:.3f} | {r['texture_distance']:.3f} "
            f"| {r['run_s']:.0f} | {r['fwd_bwd_s']:.2f} |"
        )
    if args.out:
        with open(args.out / "results.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "size": args.size, "iterations": args.iterations}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
