"""Quality of the weight-free default against the naive random-VGG19 Gatys baseline, on pairs not used to tune it.

Two disjoint sets of content/style pairs, four each, one of every kind of style (strokes, dots, flat shapes,
smooth swirls). Content photos come from ``skimage.data``; styles are drawn here from seeds, with different
seeds and palettes in the two sets:

  tune      astronaut, chelsea, immunohistochemistry, the colour wheel   (used while designing the default)
  heldout   coffee, rocket, retina, hubble deep field                    (only for reporting)

Scores are backbone-independent (``styletx.metrics``), mean over the four pairs:

  content SSIM   SSIM of luminance against the content (higher keeps more of the subject)
  colour gain    1 - color_distance(out, style) / color_distance(content, style): share of the way from the
                 photo's colours to the style's (sliced Wasserstein), 0 = unchanged, 1 = the style's palette
  texture gain   the same with texture_distance (Gram of Gabor energies)
  grid, edge     grid_score at period 4 and 8 (max); metrics.edge_contrast of the outermost 1 and 4 px (a line or
                 a band along an edge: its luminance against the rows inside it, worst side)

Candidates:
  identity   the content image, resized (the anchor: gains 0)
  naive      what a user writes in an afternoon: torchvision VGG19 with its random initialisation, Gatys losses
             (content relu4_2, style relu1_1..relu5_1, Gram / (C H W), MSE, content 1 : style 1e6), init from the
             content, L-BFGS for the given number of evaluations, pixels clamped to [0, 1] in the closure
  default    styletx.stylize with its default options (weight-free backbone), the same number of steps
  NAME:k=v;  the default with StylizeOptions fields changed, e.g. "sw1000:style_weight=1000"; random.k=v changes a
             RandomNetConfig field, e.g. "old:random.color_channels=0" (the network before colour detectors)

    python benchmarks/weightfree_quality.py --set heldout                     # naive vs default, 240 px, 150 steps
    python benchmarks/weightfree_quality.py --set tune --size 160 --steps 80 --candidates default "x:style_weight=1000"
    python benchmarks/weightfree_quality.py --set heldout --out /tmp/wf       # also the result PNGs
    python benchmarks/weightfree_quality.py --cost                            # a step's time, old vs new network
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import styletx  # noqa: E402
from styletx import metrics  # noqa: E402
from styletx.engines.optimize import optimize_image  # noqa: E402
from styletx.features import CLASSIC_RANDOM_CONFIG, DEFAULT_RANDOM_CONFIG, RandomNetConfig, build_extractor  # noqa: E402
from styletx.io.image import load_image  # noqa: E402
from styletx.options import StylizeOptions  # noqa: E402
from styletx.tensors import resize_longest, to_pil  # noqa: E402

Palette = Sequence[Tuple[int, int, int]]
STYLE_SIDE = 384

PALETTES: Dict[str, Palette] = {
    "night": [(12, 24, 70), (25, 60, 140), (60, 110, 190), (230, 200, 80), (18, 40, 100)],
    "ember": [(200, 70, 30), (245, 180, 60), (120, 30, 40), (250, 235, 200), (60, 30, 30)],
    "meadow": [(60, 120, 50), (200, 210, 80), (240, 240, 220), (90, 60, 120), (30, 60, 40)],
    "sea": [(20, 90, 110), (90, 180, 190), (240, 220, 170), (220, 100, 80), (10, 40, 60)],
    "candy": [(230, 90, 150), (250, 210, 120), (90, 200, 220), (250, 250, 250), (140, 60, 160)],
    "earth": [(120, 80, 40), (200, 160, 100), (60, 50, 40), (160, 60, 40), (230, 210, 170)],
}


def strokes(seed: int, palette: Palette, ground: Tuple[int, int, int]) -> np.ndarray:
    """Thick short brush strokes, mostly along one direction, over a dark ground."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (STYLE_SIDE, STYLE_SIDE), ground)
    draw = ImageDraw.Draw(img)
    direction = rng.uniform(0, np.pi)
    for _ in range(1100):
        x, y = rng.uniform(0, STYLE_SIDE, 2)
        angle = rng.normal(direction, 0.35)
        length = rng.uniform(10, 30)
        dx, dy = length * np.cos(angle), length * np.sin(angle)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=tuple(palette[rng.integers(len(palette))]),
                  width=int(rng.integers(4, 9)))
    return np.asarray(img)


def dots(seed: int, palette: Palette, ground: Tuple[int, int, int]) -> np.ndarray:
    """A pointillist field: small round dots of pure colours, denser where a smooth random field is high."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (STYLE_SIDE, STYLE_SIDE), ground)
    draw = ImageDraw.Draw(img)
    field = ndimage.gaussian_filter(rng.random((STYLE_SIDE, STYLE_SIDE)), 30)
    field = (field - field.min()) / (field.max() - field.min() + 1e-9)
    for _ in range(6000):
        x, y = rng.uniform(0, STYLE_SIDE, 2)
        level = field[int(y), int(x)]
        colour = palette[min(len(palette) - 1, int(level * len(palette) + rng.normal(0, 0.8)) % len(palette))]
        r = rng.uniform(2.0, 4.0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(colour))
    return np.asarray(img)


def shapes(seed: int, palette: Palette, ground: Tuple[int, int, int]) -> np.ndarray:
    """Flat overlapping shapes (rectangles, triangles, discs) with hard edges, like a cut-paper collage."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (STYLE_SIDE, STYLE_SIDE), ground)
    draw = ImageDraw.Draw(img)
    for _ in range(90):
        cx, cy = rng.uniform(0, STYLE_SIDE, 2)
        r = rng.uniform(12, 60)
        colour = tuple(palette[rng.integers(len(palette))])
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=colour)
        elif kind == 1:
            a = rng.uniform(0, 2 * np.pi)
            pts = [(cx + r * np.cos(a + t), cy + r * np.sin(a + t)) for t in (0, 2.1, 4.2)]
            draw.polygon(pts, fill=colour)
        else:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return np.asarray(img)


def swirls(seed: int, palette: Palette, ground: Tuple[int, int, int]) -> np.ndarray:
    """Long smooth swirling strokes: noise smeared along the streamlines of a few vortices, mapped to a palette."""
    rng = np.random.default_rng(seed)
    n = STYLE_SIDE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    vx, vy = np.full_like(xx, 0.2), np.zeros_like(yy)
    for _ in range(6):
        cx, cy = rng.uniform(0, n, 2)
        r = rng.uniform(n / 8, n / 3)
        fall = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * rng.choice([-1, 1]) / r
        vx, vy = vx - (yy - cy) * fall, vy + (xx - cx) * fall
    norm = np.hypot(vx, vy) + 1e-6
    vx, vy = vx / norm, vy / norm
    noise = ndimage.gaussian_filter(rng.random((n, n)), 1.0)
    acc = np.zeros_like(noise)
    for step in range(20):
        for sign in (1, -1):
            acc += ndimage.map_coordinates(noise, [yy + sign * step * vy, xx + sign * step * vx], order=1,
                                           mode="wrap")
    t = (acc - acc.min()) / (acc.max() - acc.min() + 1e-9)
    t = np.clip((t - 0.5) * 2.5 + 0.5, 0, 1)
    cols = np.array(palette, dtype=np.float64)
    pos = t * (len(cols) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(cols) - 1)
    frac = (pos - lo)[..., None]
    return (cols[lo] * (1 - frac) + cols[hi] * frac).round().astype(np.uint8)


def _colour_wheel() -> np.ndarray:
    import skimage

    return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "color.png").convert("RGB"))


def pair_sets() -> Dict[str, List[Tuple[str, Callable[[], np.ndarray], str, Callable[[], np.ndarray]]]]:
    """{"tune": [...], "heldout": [...]}: (content name, content loader, style name, style drawer) x 4."""
    import skimage.data as data

    return {
        "tune": [
            ("astronaut", data.astronaut, "strokes-night", lambda: strokes(1, PALETTES["night"], (8, 16, 40))),
            ("chelsea", data.chelsea, "dots-ember", lambda: dots(2, PALETTES["ember"], (240, 230, 210))),
            ("ihc", data.immunohistochemistry, "shapes-meadow",
             lambda: shapes(3, PALETTES["meadow"], (250, 245, 230))),
            ("wheel", _colour_wheel, "swirls-sea", lambda: swirls(4, PALETTES["sea"], (0, 0, 0))),
        ],
        "heldout": [
            ("coffee", data.coffee, "dots-sea", lambda: dots(11, PALETTES["sea"], (235, 235, 225))),
            ("rocket", data.rocket, "swirls-candy", lambda: swirls(12, PALETTES["candy"], (0, 0, 0))),
            ("retina", data.retina, "strokes-earth", lambda: strokes(13, PALETTES["earth"], (40, 30, 20))),
            ("hubble", data.hubble_deep_field, "shapes-candy",
             lambda: shapes(14, PALETTES["candy"], (30, 20, 50))),
        ],
    }


# ------------------------------------------------------------------------------------------------- the baseline


class NaiveVGG(torch.nn.Module):
    """torchvision VGG19 features with their random initialisation, returning the Gatys layers."""

    LAYERS = {1: "relu1_1", 6: "relu2_1", 11: "relu3_1", 20: "relu4_1", 22: "relu4_2", 29: "relu5_1"}

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        import torchvision

        torch.manual_seed(seed)
        self.features = torchvision.models.vgg19(weights=None).features[:30].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out, h = {}, (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.LAYERS:
                out[self.LAYERS[i]] = h
        return out


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    flat = f.reshape(c, h * w)
    return flat @ flat.T / (c * h * w)


def naive(content: torch.Tensor, style: torch.Tensor, size: int, steps: int) -> torch.Tensor:
    """The afternoon baseline (see the module docstring): (1, 3, H, W) in [0, 1]."""
    net = NaiveVGG()
    target = resize_longest(content, size)
    style = resize_longest(style, size)
    style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    with torch.no_grad():
        grams = {k: _gram(v) for k, v in net(style).items() if k in style_layers}
        content_target = net(target)["relu4_2"]
    x = target.clone().requires_grad_(True)
    # Random-init VGG19 features are small, so the losses and gradients are tiny: without a line search L-BFGS
    # creeps (measured: the first steps move the pixels by 1e-5 and the chelsea pair stays the photo), and the
    # default tolerances may end the run early. A strong-Wolfe line search, no tolerances, ``steps`` evaluations.
    opt = torch.optim.LBFGS([x], max_iter=steps, max_eval=steps, tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        feats = net(x)
        loss = torch.nn.functional.mse_loss(feats["relu4_2"], content_target)
        loss = loss + 1e6 * sum(torch.nn.functional.mse_loss(_gram(feats[k]), grams[k]) for k in style_layers)
        loss.backward()
        return loss

    opt.step(closure)
    return x.detach().clamp(0, 1)


# --------------------------------------------------------------------------------------------------- scoring


def scores(result: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> Dict[str, float]:
    s = metrics.score(result, content, style)
    c = metrics.score(content, content, style)
    return {
        "content_ssim": s["content_ssim"],
        "colour_gain": 1 - s["color_distance"] / c["color_distance"],
        "texture_gain": 1 - s["texture_distance"] / c["texture_distance"],
        "grid": max(metrics.grid_score(result, 4), metrics.grid_score(result, 8)),
        "edge1": metrics.edge_contrast(result, 1),
        "edge4": metrics.edge_contrast(result, 4),
    }


def _parse_value(default: object, value: str, what: str) -> object:
    """``value`` as the type of ``default`` (tuples: comma-separated, of ints for int tuples)."""
    if isinstance(default, tuple):
        parts = tuple(value.split(","))
        return tuple(int(v) for v in parts) if default and isinstance(default[0], int) else parts
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, (int, float)):
        return type(default)(value)
    if default is None and value.lower() == "none":
        return None
    return value


def _candidate_options(text: str) -> Tuple[str, Dict[str, object], Dict[str, object]]:
    """``NAME:k=v;random.k=v`` -> (NAME, StylizeOptions changes, RandomNetConfig changes)."""
    name, _, spec = text.partition(":")
    fields = set(StylizeOptions.__dataclass_fields__)
    net_fields = set(RandomNetConfig.__dataclass_fields__)
    changes: Dict[str, object] = {}
    net_changes: Dict[str, object] = {}
    for item in filter(None, spec.split(";")):
        key, value = item.split("=", 1)
        if key.startswith("random."):
            key = key[len("random."):]
            if key not in net_fields:
                raise SystemExit(f"unknown RandomNetConfig field {key!r} in candidate {text!r}")
            net_changes[key] = _parse_value(getattr(DEFAULT_RANDOM_CONFIG, key), value, text)
        elif key in fields:
            default = getattr(StylizeOptions(), key)
            if default is None and "Tuple[str" in str(StylizeOptions.__dataclass_fields__[key].type):
                default = ("",)  # an optional list of names (content_layers)
            changes[key] = _parse_value(default, value, text)
        else:
            raise SystemExit(f"unknown option {key!r} in candidate {text!r}")
    return name, changes, net_changes


def run_candidate(cand: str, content: torch.Tensor, style: torch.Tensor, size: int, steps: int) -> torch.Tensor:
    if cand == "identity":
        return resize_longest(content, size)
    if cand == "naive":
        return naive(content, style, size, steps)
    _, changes, net_changes = _candidate_options("default" if cand == "default" else cand)
    kwargs = {"size": size, "iterations": steps, "device": "cpu", "backbone": "random", **changes}
    if not net_changes:
        return styletx.stylize(content, style, output="tensor", **kwargs).image
    # A changed weight-free network: the same run as stylize, with the extractor built from that config.
    opts = StylizeOptions(**kwargs).validated()
    if opts.backbone != "random":
        raise SystemExit(f"candidate {cand!r}: random.* fields need backbone=random")
    extractor = build_extractor("random", opts.layers_for("random"), pooling=opts.pooling, seed=opts.seed,
                                random_config=replace(DEFAULT_RANDOM_CONFIG, **net_changes))
    extractor = extractor.to(memory_format=torch.channels_last)
    return optimize_image(content, [style], extractor, opts)[0]


def step_cost(rounds: int = 7) -> None:
    """Forward + backward time of the default content + style layers: the network before 2026-12-03, the default
    without its context border, and the default; interleaved, one thread, ratios to the first (median)."""
    import statistics

    torch.set_num_threads(1)
    nets = {
        "before (no colour, relu4_2)": (CLASSIC_RANDOM_CONFIG, ("relu4_2",)),
        "default without context": (replace(DEFAULT_RANDOM_CONFIG, context=0), None),
        "default": (DEFAULT_RANDOM_CONFIG, None),
    }
    extractors = {}
    for name, (config, content) in nets.items():
        layers = StylizeOptions(content_layers=content).layers_for("random")
        extractors[name] = build_extractor("random", layers, random_config=config).to(memory_format=torch.channels_last)
    for hw in ((171, 256), (341, 512)):
        x = torch.rand(1, 3, *hw).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        times: Dict[str, List[float]] = {name: [] for name in nets}
        for _ in range(rounds):
            for name, ex in extractors.items():
                t0 = time.perf_counter()
                sum(f.float().pow(2).mean() for f in ex(x).values()).backward()
                times[name].append(time.perf_counter() - t0)
        ref = statistics.median(times[next(iter(nets))])
        print(f"{hw[1]}x{hw[0]} px (reference {ref:.3f} s): "
              + ", ".join(f"{n} {statistics.median(t) / ref:.2f}x" for n, t in times.items()))


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("tune", "heldout"), default="heldout")
    ap.add_argument("--candidates", nargs="*", default=["identity", "naive", "default"])
    ap.add_argument("--size", type=int, default=240)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--pairs", type=int, default=4, help="the first N pairs of the set")
    ap.add_argument("--out", type=Path, default=None, help="folder for result PNGs and results.jsonl")
    ap.add_argument("--cost", action="store_true", help="only time a step of the network, old against new")
    args = ap.parse_args(list(argv) or None)
    if args.cost:
        step_cost()
        return

    chosen = pair_sets()[args.set][: args.pairs]
    loaded = [(cn, load_image(cf()).tensor, sn, load_image(sf()).tensor) for cn, cf, sn, sf in chosen]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for cn, ct, sn, st in loaded:
            to_pil(st).save(args.out / f"style-{sn}.png")
    rows = []
    for cand in args.candidates:
        per_pair: List[Dict[str, float]] = []
        start = time.perf_counter()
        for cn, content, sn, style in loaded:
            torch.manual_seed(0)
            result = run_candidate(cand, content, style, args.size, args.steps)
            s = scores(result, content, style)
            per_pair.append(s)
            label = cand.partition(":")[0]
            if args.out:
                to_pil(result).save(args.out / f"{cn}-{sn}-{label}.png")
            print(f"  {label:16s} {cn}/{sn}: " + " ".join(f"{k}={v:.3f}" for k, v in s.items()), flush=True)
        mean = {k: float(np.mean([p[k] for p in per_pair])) for k in per_pair[0]}
        rows.append({"candidate": cand, **mean, "seconds": time.perf_counter() - start})
        print(f"{cand}: " + " ".join(f"{k}={v:.3f}" for k, v in mean.items()), flush=True)
    print(f"\n{args.set} set, {len(loaded)} pairs, {args.size} px, {args.steps} steps (mean over pairs)\n")
    print("| candidate | content SSIM ↑ | colour gain ↑ | texture gain ↑ | grid ↓ | edge 1 px ↓ | edge 4 px ↓ | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidate']} | {r['content_ssim']:.3f} | {r['colour_gain']:.3f} | {r['texture_gain']:.3f} "
              f"| {r['grid']:.3f} | {r['edge1']:.3f} | {r['edge4']:.3f} | {r['seconds']:.0f} |")
    if args.out:
        with open(args.out / "results.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "set": args.set, "size": args.size, "steps": args.steps}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
