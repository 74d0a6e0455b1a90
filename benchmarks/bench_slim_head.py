"""Inference time of slim networks that differ only in their last layers, interleaved in the same run.

    python benchmarks/bench_slim_head.py [--threads 1] [--reps 15] [--size 512x512] [--archs slim slim-resize slim-2x]

Every network (any name in ``ARCHITECTURES``, e.g. ``slim-2x``: a final half-resolution stage before a 2x resize
head) is built seeded, with a random last conv (a network with an input skip starts as the identity), and
run through ``FeedForwardModel.stylize`` in eager fp32 (the exact inference rewrites, which fold a ``resize``
head into one low-resolution conv) and, where installed, ONNX Runtime. Each round runs every candidate once in a
new random order; the ratio to the first architecture is taken within each round, and medians are printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from styletx.engines.feedforward.backends import onnxruntime_available  # noqa: E402
from styletx.engines.feedforward.model import FeedForwardModel  # noqa: E402
from styletx.engines.feedforward.net import ARCHITECTURES, build_network  # noqa: E402


def parse_variant(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"slim-2x"`` or ``"slim-2x:final_stage=16,channels=24/32/64,final_norm=false"`` -> (architecture name,
    options: integers, numbers with a point, tuples of integers, ``true`` / ``false``)."""
    name, _, rest = spec.partition(":")
    options: Dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
        elif "/" in value:
            options[key] = tuple(int(v) for v in value.split("/"))
        else:
            options[key] = float(value) if "." in value else int(value)
    return name, options


def _net(spec: str):
    arch, options = parse_variant(spec)
    net = build_network(arch, seed=0, **options)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = net.deconv3.conv2d.weight
        w.copy_(torch.randn(w.shape, generator=gen) * 0.05)
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--size", default="512x512", help="WxH")
    default = [a for a in ("slim", "slim-resize") if a in ARCHITECTURES]
    ap.add_argument("--archs", nargs="+", default=default, help="the first is the one the ratios are to; NAME:field=value,... overrides options "
                    "(e.g. slim-2x:final_stage=16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    backends = ["torch"] + (["onnxruntime"] if onnxruntime_available() else [])
    fns = {}
    for backend in backends:
        for arch in args.archs:
            m = FeedForwardModel(_net(arch), device="cpu", precision="fp32")
            if backend == "onnxruntime":
                m.compile(backend="onnxruntime")
            fns[(backend, arch)] = m.stylize
    for f in fns.values():  # warm-up
        f(x)
    times = {k: [] for k in fns}
    for r in range(args.reps):
        for k in random.Random(r).sample(list(fns), len(fns)):
            t = time.perf_counter()
            fns[k](x)
            times[k].append(time.perf_counter() - t)
    print(f"{w}x{h}, {args.threads} thread(s), {args.reps} interleaved rounds, torch {torch.__version__}")
    for backend in backends:
        base = times[(backend, args.archs[0])]
        for arch in args.archs:
            t = times[(backend, arch)]
            ratios = [a / b for a, b in zip(t, base)]
            print(f"  {backend:12s} {arch:28s} median {statistics.median(t) * 1e3:7.1f} ms "
                  f"(rounds {min(t) * 1e3:.1f}-{max(t) * 1e3:.1f}); time / {args.archs[0]}: "
                  f"{statistics.median(ratios):.3f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
