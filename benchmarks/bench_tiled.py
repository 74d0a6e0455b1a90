"""Print-size runs under a memory budget: peak memory (RSS) and time of tiled runs of both engines, each beside a
whole run of the same engine at a size that fits, measured in the same session (times are only comparable as
ratios: seconds per megapixel, tiled / whole).

Each run is its own process (``styletx run`` through the CLI's entry point, as a user types it), which reports
its own peak RSS (``ru_maxrss``: torch, the image, everything), so one run's memory never hides another's.

* feed-forward: a random-weight ``standard`` (or ``--arch``) checkpoint on a smooth random 4096x4096 PNG, with no
  flag (the default budget: free memory less a margin) and with ``--max-memory`` (default 1500M); reference:
  the same model on a 1024x1024 PNG, whole.
* optimisation: ``styletx run content style --size 2048`` on the bundled examples with the weight-free backbone
  and ``--max-memory`` (default 5G), ``--opt-steps`` steps at the final scale; reference: the same at 512 px.

    python benchmarks/bench_tiled.py                       # both engines
    python benchmarks/bench_tiled.py --only ff --ff-size 4096 --ff-budget 1500M
    python benchmarks/bench_tiled.py --only opt --opt-size 2048 --opt-budget 5G --opt-steps 10
    python benchmarks/bench_tiled.py --only quality    # tiled vs whole optimisation scores, against seed noise

* quality: the optimisation engine at ``--quality-size`` (256) px, in ``--quality-tile`` (128) px tiles with
  seed 0 and whole with seeds 0 .. ``--quality-seeds`` - 1 (the run-to-run noise), scored with
  ``styletx.metrics``; the tiled run should differ from the whole one by no more than other seeds do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _child(args: List[str]) -> None:
    """Run the CLI with ``args`` in this process and print {"seconds", "rss_gib", "exit", "output"} as JSON."""
    from click.testing import CliRunner

    from styletx.cli import main

    t0 = time.perf_counter()
    result = CliRunner().invoke(main, args)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB
    print(json.dumps({"seconds": seconds, "rss_gib": rss, "exit": result.exit_code,
                      "output": result.output.strip().splitlines()}))


def run(args: List[str]) -> Dict[str, object]:
    """``styletx ARGS`` in a fresh process: its time, peak RSS, exit code and what it printed."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"bench_tiled: the run {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


def _smooth_png(path: Path, side: int) -> None:
    """A smooth random picture (bilinear upsampled noise) of side x side px."""
    import torch

    from styletx.io.image import save_image

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 64, 64, generator=g), size=(side, side), mode="bilinear")
    save_image(x, path, overwrite=True)


def _show(name: str, r: Dict[str, object], megapixels: float, reference: Optional[float] = None) -> float:
    per_mp = float(r["seconds"]) / megapixels  # type: ignore[arg-type]
    ratio = f"  {per_mp / reference:5.2f}x the whole run's s/Mpx" if reference else ""
    plan = next((line for line in r["output"] if "tiled:" in line or "whole image" in line), "")  # type: ignore
    print(f"{name:42s} exit {r['exit']}  {float(r['seconds']):7.1f} s  {per_mp:6.2f} s/Mpx  "  # type: ignore
          f"peak RSS {float(r['rss_gib']):5.2f} GiB{ratio}")  # type: ignore[arg-type]
    if plan:
        print(f"{'':42s} {plan}")
    if r["exit"]:
        print(f"{'':42s} " + " / ".join(r["output"][-2:]))  # type: ignore[index]
    return per_mp


def bench_feedforward(folder: Path, side: int, budget: str, arch: str) -> None:
    from styletx.engines.feedforward.model import new_transformer

    model = folder / f"{arch}.pth"
    new_transformer(arch, seed=0, device="cpu").save(model, overwrite=True)
    small, big = folder / "small.png", folder / "big.png"
    _smooth_png(small, 1024)
    _smooth_png(big, side)
    print(f"feed-forward, random-weight {arch}, fp32 eager torch (--backend torch)")
    ref = _show("whole 1024x1024 (reference)", run(["run", "--model", str(model), str(small), "-o",
                                                    str(folder / "o1.png"), "--overwrite", "--backend", "torch"]),
                1.048576)
    mp = side * side / 1e6
    _show(f"{side}x{side}, no flag", run(["run", "--model", str(model), str(big), "-o", str(folder / "o2.png"),
                                          "--overwrite", "--backend", "torch"]), mp, ref)
    _show(f"{side}x{side}, --max-memory {budget}", run(
        ["run", "--model", str(model), str(big), "-o", str(folder / "o3.png"), "--overwrite", "--backend", "torch",
         "--max-memory", budget]), mp, ref)


def bench_optimize(folder: Path, side: int, budget: str, steps: int) -> None:
    content, style = str(ROOT / "examples" / "astronaut.jpg"), str(ROOT / "examples" / "mosaic.jpg")
    common = ["--backbone", "random", "--iterations", str(steps), "--overwrite"]
    print(f"optimisation, weight-free backbone, {steps} steps at the final scale (half as many at each coarser one)")
    ref = _show("512 px, whole (reference)", run(["run", content, style, "-o", str(folder / "a.png"), "--size", "512",
                                                  *common]), 0.262144)
    _show(f"{side} px, --max-memory {budget}", run(
        ["run", content, style, "-o", str(folder / "b.png"), "--size", str(side), "--max-memory", budget, *common]),
        side * side / 1e6, ref)


def bench_quality(side: int, tile: int, steps: int, seeds: int) -> None:
    import styletx
    from styletx import metrics

    content, style = ROOT / "examples" / "astronaut.jpg", ROOT / "examples" / "mosaic.jpg"
    print(f"optimisation quality, weight-free backbone, {side} px, {steps} steps: tiled ({tile} px) vs whole; "
          f"run-to-run noise: whole runs with seeds 1..{seeds - 1} against seed 0")
    runs = [(f"tiles of {tile} px, seed 0", 0, tile)] + [(f"whole, seed {k}", k, None) for k in range(seeds)]
    scores = {}
    for name, seed, tiles in runs:
        t0 = time.perf_counter()
        r = styletx.stylize(content, style, size=side, iterations=steps, backbone="random", seed=seed, tile=tiles,
                            output="tensor")
        scores[name] = metrics.score(r.image, content, style)
        print(f"{name:24s} {time.perf_counter() - t0:7.1f} s  " + "  ".join(
            f"{k} {v:.4f}" for k, v in scores[name].items()))
    tiled, whole, *others = scores.values()
    for key in whole:
        noise = max(abs(o[key] - whole[key]) for o in others)
        print(f"{key:18s} |tiled - whole| {abs(tiled[key] - whole[key]):.4f}   largest |seed k - seed 0| {noise:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("ff", "opt", "quality"))
    parser.add_argument("--ff-size", type=int, default=4096)
    parser.add_argument("--ff-budget", default="1500M")
    parser.add_argument("--arch", default="standard")
    parser.add_argument("--opt-size", type=int, default=2048)
    parser.add_argument("--opt-budget", default="5G")
    parser.add_argument("--opt-steps", type=int, default=10)
    parser.add_argument("--quality-size", type=int, default=256)
    parser.add_argument("--quality-tile", type=int, default=128)
    parser.add_argument("--quality-steps", type=int, default=40)
    parser.add_argument("--quality-seeds", type=int, default=4)
    a = parser.parse_args()
    if a.child:
        _child(json.loads(a.child))
        return
    print(f"bench_tiled, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "ff"):
            bench_feedforward(Path(tmp), a.ff_size, a.ff_budget, a.arch)
        if a.only in (None, "opt"):
            bench_optimize(Path(tmp), a.opt_size, a.opt_budget, a.opt_steps)
        if a.only in (None, "quality"):
            bench_quality(a.quality_size, a.quality_tile, a.quality_steps, max(2, a.quality_seeds))


if __name__ == "__main__":
    main()
