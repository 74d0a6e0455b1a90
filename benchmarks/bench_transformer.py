"""Frames per second of the transformer networks against a plain eager fp32 reference, measured in the same run.

    python benchmarks/bench_transformer.py [--threads 2] [--reps 5] [--sizes 512x512 1280x720] [--torch-compile]

Reference: the standard architecture as a plain eager fp32 ``TransformerNet`` (NCHW, no rewrites). Ours: the
one inference path, ``Transformer.compile()`` then ``Transformer.stylize`` (exact sub-pixel upsampling, bf16 +
channels_last + torch.compile only where bf16 is native). Timings are interleaved (reference, standard, slim
per round) and the best of ``--reps`` rounds is kept, so other load on the machine hits all of them alike.
Prints fps, the ratio to the reference, and the max/mean absolute difference from the same network in eager
fp32. A GPU section runs only when CUDA is present (marked "GPU"; skipped otherwise).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from styletx.transformer import Transformer, build_network, fast_bf16, macs_per_pixel


def _time(fn, x) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def bench_device(device: str, sizes, reps: int, torch_compile) -> None:
    torch.manual_seed(0)
    ref_net = build_network("standard", seed=0).to(device).eval()
    models = {
        arch: Transformer(build_network(arch, seed=0), device=device).compile(torch_compile=torch_compile)
        for arch in ("standard", "slim")
    }
    print(f"device {device}: bf16 native={fast_bf16(torch.device(device))}; "
          + ", ".join(f"{a}: {'bf16' if m.uses_bf16 else 'fp32'}, channels_last={m.channels_last}, "
                      f"torch.compile={m._compiled is not None}, {macs_per_pixel(a) / 1e3:.1f}k MAC/px"
                      for a, m in models.items()))

    def reference(x):
        with torch.inference_mode():
            y = ref_net(x).clamp(0, 1)
        if device == "cuda":
            torch.cuda.synchronize()
        return y

    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        t0 = time.perf_counter()
        outs = {a: m.stylize(x) for a, m in models.items()}  # warm-up (and compile)
        warm = time.perf_counter() - t0
        exact = {"standard": reference(x)}
        slim_ref = build_network("slim", seed=0).to(device).eval()
        with torch.inference_mode():
            exact["slim"] = slim_ref(x).clamp(0, 1)
        best = {"reference": float("inf"), **{a: float("inf") for a in models}}

        def run(m):
            def f(inp):
                y = m.stylize(inp)
                if device == "cuda":
                    torch.cuda.synchronize()
                return y
            return f

        fns = {"reference": reference, **{a: run(m) for a, m in models.items()}}
        for _ in range(reps):
            for name, fn in fns.items():
                best[name] = min(best[name], _time(fn, x))
        ref_fps = 1.0 / best["reference"]
        print(f"  {w}x{h}: reference (eager fp32 standard) {ref_fps:6.2f} fps ({best['reference'] * 1e3:7.1f} ms)"
              f"   [first call incl. compile {warm:.1f} s]")
        for a in models:
            fps = 1.0 / best[a]
            d = (outs[a] - exact[a]).abs()
            print(f"  {w}x{h}: {a:8s} {fps:6.2f} fps ({best[a] * 1e3:7.1f} ms)  ratio {fps / ref_fps:5.2f}x"
                  f"  |diff vs own fp32 eager| max {float(d.max()):.2e} mean {float(d.mean()):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", nargs="+", default=["512x512", "1280x720"])
    ap.add_argument("--torch-compile", dest="torch_compile", action="store_true", default=None,
                    help="force torch.compile (default: only where bf16 is native)")
    ap.add_argument("--no-torch-compile", dest="torch_compile", action="store_false")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes]  # WxH -> (h, w)
    print(f"styletx transformer benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, best of {args.reps}")
    bench_device("cpu", sizes, args.reps, args.torch_compile)
    if torch.cuda.is_available():
        print("GPU:")
        bench_device("cuda", sizes, args.reps, args.torch_compile)
    else:
        print("GPU: skipped (no CUDA device)")


if __name__ == "__main__":
    main()
