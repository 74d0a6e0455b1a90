"""Stored expected outputs of seeded tiny networks: the cases, and the script that (re)writes tests/golden/*.json.

Run ``python tests/make_golden.py`` after a deliberate change to an architecture, an initialisation, a loss or
the optimiser; never edit the JSON files by hand. The tests (test_transformer, test_optimize, test_features)
run the same cases and compare with the stored summaries (a 3x3 slice, the mean and the standard deviation of
each output), as diffusers does with ``expected_slice``.

Everything here is fp32 on the CPU (``precision="fp32"``, no autocast), seeded, and tiny: the values do not
depend on the host's CPU features beyond the summation order of fp32 kernels (hence the tolerances in the tests).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
# Run as a script: the styletx of this checkout (not whichever one is installed) and conftest (make_image).
for folder in (HERE, HERE.parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from conftest import make_image  # noqa: E402

import styletx  # noqa: E402
from styletx.engines.feedforward.net import TransformerNet, build_network  # noqa: E402
from styletx.features import build_extractor  # noqa: E402

REGENERATE = "python tests/make_golden.py"

#: Tiny channel widths for both feed-forward architectures (their layer structure is unchanged).
TINY = dict(channels=(8, 16, 32), res_blocks=1)
#: The default content + style layers of the optimisation engine.
LAYERS = ("relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def seeded_input(seed: int, *shape: int) -> torch.Tensor:
    """A uniform [0, 1) tensor from its own generator (the global RNG is not touched)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def not_identity(net: TransformerNet) -> TransformerNet:
    """A network with an input skip (``slim``) starts as the identity: give its last conv seeded random weights so
    comparisons of outputs test the whole network."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        w = net.deconv3.conv2d.weight
        w.copy_(torch.randn(w.shape, generator=gen) * 0.05)
    return net


# ------------------------------------------------------------------------------------------------- the cases


def _network(arch: str, hw: tuple) -> Callable[[], Dict[str, torch.Tensor]]:
    def run() -> Dict[str, torch.Tensor]:
        net = build_network(arch, seed=0, **TINY).eval()
        if net.input_skip:
            not_identity(net)
        x = seeded_input(1, 1, 3, *hw)  # not a multiple of the network's: the pad-and-crop path runs too
        with torch.no_grad():
            return {"output": net(x)}

    return run


def _stylize(iterations: int, **options) -> Callable[[], Dict[str, torch.Tensor]]:
    def run() -> Dict[str, torch.Tensor]:
        content = make_image(48, 40, seed=1, kind="scene")
        style = make_image(40, 40, seed=2, kind="stripes")
        result = styletx.stylize(content, style, size=32, iterations=iterations, scales=1, device="cpu", precision="fp32",
                                 output="tensor", **options)
        assert result.record.precision == "fp32", result.record.precision_reason
        losses = {f"loss_{term}": torch.tensor([step[term] for step in result.record.losses], dtype=torch.float64)
                  for term in ("content", "style", "tv", "total")}
        return {"image": result.image, **losses}

    return run


def _features(arch: str, layers: tuple) -> Callable[[], Dict[str, torch.Tensor]]:
    def run() -> Dict[str, torch.Tensor]:
        extractor = build_extractor(arch, layers, weights=None, seed=0)
        with torch.no_grad():
            return dict(extractor(seeded_input(2, 1, 3, 40, 48)))

    return run


#: group (one JSON file each) -> case -> a function returning {output name: tensor}.
CASES: Dict[str, Dict[str, Callable[[], Dict[str, torch.Tensor]]]] = {
    "transformer": {
        "standard": _network("standard", (21, 27)),
        "slim": _network("slim", (36, 44)),
        "slim-resize": _network("slim-resize", (36, 44)),
        "slim-2x": _network("slim-2x", (36, 44)),
    },
    "optimize": {
        "random": _stylize(4, backbone="random"),
        # Average pooling: with max pooling the gradient goes to each window's maximum, and near-ties flip with
        # the kernels' summation order, so L-BFGS paths on different CPUs part by ~1e-2 within two steps
        # (measured with ONEDNN_MAX_CPU_ISA=SSE41 / AVX2 against AVX-512); with avg pooling, 3 steps agree to 3e-4.
        "vgg19_random_weights": _stylize(3, backbone="vgg19", weights=None, pooling="avg"),
    },
    "features": {
        "random": _features("random", LAYERS),
        "vgg19_random_weights": _features("vgg19", ("relu1_1", "relu2_1", "relu3_1")),
    },
}


# ----------------------------------------------------------------------------------------- summaries, files


def summary(t: torch.Tensor) -> dict:
    """What is stored of one output: its shape, a 3x3 slice (the last channel's bottom-right corner, which the
    padding reaches; the whole vector for 1-D outputs such as a loss curve), its mean and standard deviation."""
    t = t.detach().double().cpu()
    if t.dim() == 1:
        part = t
    else:
        part = t.reshape(-1, *t.shape[-2:])[-1, -3:, -3:]
    return {"shape": list(t.shape), "slice": part.tolist(), "mean": t.mean().item(),
            "std": t.std().item() if t.numel() > 1 else 0.0}


def compute(group: str, case: str) -> Dict[str, dict]:
    """Run one case and summarise each of its outputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return {name: summary(t) for name, t in CASES[group][case]().items()}


def path_of(group: str) -> Path:
    return GOLDEN / f"{group}.json"


def load(group: str) -> Dict[str, Dict[str, dict]]:
    """The stored summaries of a group: {case: {output: summary}}."""
    return json.loads(path_of(group).read_text(encoding="utf-8"))["cases"]


def assert_matches(got: Dict[str, dict], expected: Dict[str, dict], *, atol: float, rtol: float = 0.0,
                   overrides: Optional[Dict[str, Tuple[float, float]]] = None) -> None:
    """Compare summaries: same outputs and shapes, every number within ``atol + rtol * |expected|``
    (``overrides``: {output name: (atol, rtol)} for outputs on another scale, such as small loss terms)."""
    assert sorted(got) == sorted(expected), f"outputs differ: {sorted(got)} vs {sorted(expected)}"
    for name in expected:
        g, e = got[name], expected[name]
        a_tol, r_tol = (overrides or {}).get(name, (atol, rtol))
        assert g["shape"] == e["shape"], f"{name}: shape {g['shape']} != stored {e['shape']}"
        for key in ("slice", "mean", "std"):
            a = torch.tensor(g[key], dtype=torch.float64)
            b = torch.tensor(e[key], dtype=torch.float64)
            worst = float(((a - b).abs() - (a_tol + r_tol * b.abs())).max())
            assert worst <= 0, (
                f"{name} {key}: {a.tolist()} differs from the stored {b.tolist()} by more than atol {a_tol}, "
                f"rtol {r_tol}. If the change is deliberate, run: {REGENERATE}"
            )


def _dumps(data: dict) -> str:
    """JSON with each innermost list of numbers on one line (a slice reads as a 3x3 block)."""
    text = json.dumps(data, indent=1)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def main() -> None:
    os.environ.setdefault("STYLETX_OFFLINE", "1")  # nothing here needs a download
    GOLDEN.mkdir(exist_ok=True)
    for group, cases in CASES.items():
        data = {
            "_generated_by": REGENERATE + " (do not edit by hand)",
            "_torch": torch.__version__,
            "cases": {case: compute(group, case) for case in cases},
        }
        for case, outputs in data["cases"].items():
            for name, s in outputs.items():
                assert all(math.isfinite(v) for v in torch.tensor(s["slice"]).flatten().tolist()), (case, name)
        path = path_of(group)
        path.write_text(_dumps(data), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)} (styletx from {Path(styletx.__file__).parent})")
        for case, outputs in data["cases"].items():
            for name, s in outputs.items():
                print(f"  {case}/{name}: shape {s['shape']} mean {s['mean']:.6g} std {s['std']:.6g}")


if __name__ == "__main__":
    main()
