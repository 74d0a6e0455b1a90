"""What runs a feed-forward network, and choosing it by measurement: eager torch, torch.compile, ONNX Runtime,
or the Winograd rewrite.

Every backend is a callable: (N, 3, H, W) float32 input already padded to the network's multiple -> its
(N, 3, H, W) float32 output, unclamped (the model pads, crops and clamps). ``choose_backend("auto")`` times the
backends that are ready within seconds (eager torch in the precision the policy picks, and ONNX Runtime in fp32
where it is installed) on a small probe image, keeps the fastest, and caches the verdict per machine, torch
version and architecture. torch.compile and Winograd build for every input size (40-70 s on a 2-core CPU), so
they run only when asked for by name; both then run under ``precision="auto"`` (Winograd is fp32 arithmetic).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ... import cache, device as devices
from ...atomic import atomic_path, one_line
from ...errors import InputError, StyletxWarning
from ...options import BACKENDS
from . import winograd_net
from .net import TransformerNet, UpsampleConvLayer
from .rewrites import SubPixelUpsampleConv3, fold_resize_head, inference_network, shuffle_as_convs

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendChoice",
    "EagerBackend",
    "OrtBackend",
    "WinogradBackend",
    "onnxruntime_available",
    "onnx_body_path",
    "choose_backend",
    "PROBE_SIDE",
    "BACKEND_PROBE_SIDE",
]

#: px: side of the random probe image that the precision policy times eager torch on.
PROBE_SIDE = 64
#: px: side of the probe that eager torch and ONNX Runtime are timed on. At 64 px the fixed cost per call hides
#: the arithmetic: there ONNX Runtime tied with bf16 torch for ``standard``, which from 128 px up ran 1.3-1.7x
#: faster (docs/benchmarks.md); 128 px ranks them as at 512-1280 px for both networks, in ~0.2 s.
BACKEND_PROBE_SIDE = 128

Backend = Callable[[Tensor], Tensor]


@dataclass
class BackendChoice:
    """The backend that runs a model (``run``), its arithmetic, and why it was chosen."""

    run: Backend
    precision: devices.PrecisionChoice
    reason: str

    @property
    def name(self) -> str:
        """torch, torch.compile, onnxruntime or winograd (what runs now: a failed build falls back to torch)."""
        return str(getattr(self.run, "name", type(self.run).__name__))

    def describe(self) -> str:
        """One line for records and metadata, e.g. ``onnxruntime (measured: torch 0.0120 s, ...)``."""
        return f"{self.name} ({self.reason})"


# ------------------------------------------------------------------------------------------------- eager torch


class EagerBackend:
    """The network in torch: the exact inference rewrites, bf16 autocast when chosen, channels_last with bf16
    or on a GPU (for fp32 on a CPU it measured slower with these small-channel convs), and ``torch.compile``
    when ``compiled`` (a failed compile falls back to eager with one StyletxWarning)."""

    def __init__(self, net: TransformerNet, device: torch.device, *, bf16: bool, compiled: bool = False) -> None:
        self.device, self.bf16 = device, bf16
        self.channels_last = bf16 or device.type == "cuda"
        fast = inference_network(net).to(device)
        if self.channels_last:
            fast = fast.to(memory_format=torch.channels_last)
        self.module: nn.Module = fast
        self.compiled: Optional[Callable[[Tensor], Tensor]] = None
        if compiled:
            options = {"freezing": True} if device.type == "cpu" else None
            try:
                self.compiled = torch.compile(fast, dynamic=False, options=options)
            except Exception as e:  # pragma: no cover - platform dependent
                warnings.warn(f"torch.compile unavailable ({one_line(e)}); running eagerly", StyletxWarning)

    @property
    def name(self) -> str:
        return "torch.compile" if self.compiled is not None else "torch"

    def __call__(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), devices.autocast(self.bf16, self.device):
            if self.compiled is not None:
                try:
                    return self.compiled(x).float()
                except Exception as e:  # pragma: no cover - platform dependent (no C++ compiler)
                    self.compiled = None
                    warnings.warn(f"torch.compile failed ({one_line(e)}); running eagerly", StyletxWarning)
            return self.module(x).float()


# ---------------------------------------------------------------------------------------------------- Winograd


class WinogradBackend:
    """The Winograd rewrite (:mod:`.winograd_net`, fp32, CPU) for the sizes it has built or may still build, and
    eager fp32 torch for the rest; a build that fails (no C++ compiler) switches to eager with one warning."""

    def __init__(self, net: TransformerNet, device: torch.device) -> None:
        self.winograd = winograd_net.WinogradNet(net)
        self.eager = EagerBackend(net, device, bf16=False)
        self.failed = False

    @property
    def name(self) -> str:
        return "torch" if self.failed else "winograd"

    def __call__(self, x: Tensor) -> Tensor:
        if not self.failed and self.winograd.accepts(tuple(x.shape)):
            try:
                return self.winograd(x)
            except Exception as e:  # platform dependent: inductor needs a C++ compiler
                self.failed = True
                warnings.warn(f"winograd backend failed ({one_line(e)}); running eagerly", StyletxWarning)
        return self.eager(x)


# ------------------------------------------------------------------------------------------------ ONNX Runtime


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package can be imported (the capability probe tests force both ways)."""
    try:
        import onnxruntime  # noqa: F401
    except Exception:
        return False
    return True


class _ScaledBody(nn.Module):
    """Scale to the network's value range, its body, scale back (input sides already multiples of ``multiple``)."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net
        self.value_range = float(net.value_range)

    def forward(self, x: Tensor) -> Tensor:
        if self.value_range != 1.0:
            x = x * self.value_range
        y = self.net.body(x)
        if self.value_range != 1.0:
            y = y * (1.0 / self.value_range)
        return y


def _frozen_copy(net: TransformerNet) -> TransformerNet:
    """A CPU fp32 eval copy of ``net`` without autograd state (for tracing; a ``resize`` head folded once, a final
    stage as one low-resolution conv + pixel shuffle: :class:`SubPixelUpsampleConv3`)."""
    c = fold_resize_head(copy.deepcopy(net).float().cpu().eval())
    if isinstance(getattr(c, "stage2x", None), UpsampleConvLayer) and c.stage2x.conv2d.kernel_size == (3, 3):
        c.stage2x = SubPixelUpsampleConv3(c.stage2x)  # no Resize and no pad at 1/2 resolution in the graph
    for p in c.parameters():
        p.requires_grad_(False)
    return c


def _graph_key(net: TransformerNet) -> str:
    """sha256 (first 20 hex digits) of what the exported graph depends on: weights, architecture, torch version."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": net.config.as_dict(), "torch": torch.__version__, "graph": 3},
                        sort_keys=True).encode())
    for name, v in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@contextmanager
def quiet_loggers(names: Sequence[str], level: int = logging.ERROR) -> Iterator[None]:
    """Raise these loggers' level for the duration (exporters print progress lines), then restore them."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


def onnx_body_path(net: TransformerNet, cache_dir: Union[str, Path, None] = None) -> Path:
    """The ONNX graph of ``net``'s body (dynamic batch, height, width; fp32), exported once into the cache
    (named by a hash of the weights and architecture; written by the atomic writer) and reused after."""
    folder = (Path(cache_dir) if cache_dir is not None else cache.cache_dir()) / "onnx"
    path = folder / f"{net.config.name}-{_graph_key(net)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    body = _ScaledBody(shuffle_as_convs(_frozen_copy(net))).eval()
    m = net.multiple
    example = torch.rand(1, 3, 4 * m, 4 * m, generator=torch.Generator().manual_seed(0))
    with atomic_path(path, overwrite=True) as tmp, warnings.catch_warnings(), quiet_loggers(["torch.onnx"]):
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                body, (example,), str(tmp), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                dynamic_axes={k: {0: "batch", 2: "height", 3: "width"} for k in ("x", "y")},
            )
    return path


class OrtBackend:
    """Runs a network's body with ONNX Runtime on the CPU, in fp32.

    threads: intra-op threads (default: ``torch.get_num_threads()``), not spinning between ops; one inter-op
    thread (the graph is a chain). Graph optimisations: all (ORT fuses conv + relu and uses its blocked NCHWc
    layout)."""

    name = "onnxruntime"

    def __init__(self, path: Union[str, Path], *, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # no busy-waiting between ops: on a shared 2-core machine spinning threads fight the other processes
        # (measured at 1280x720 for slim: 85-89 ms best / 97 ms median without, 111-126 / 118-137 ms with)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, x: Tensor) -> Tensor:
        a = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (y,) = self.session.run(["y"], {"x": a})
        return torch.from_numpy(y)


# ---------------------------------------------------------------------------------------------------- choosing


def _probe_input(net: TransformerNet, device: torch.device, side: int = PROBE_SIDE) -> Tensor:
    side = max(side, net.min_size)
    side = -(-side // net.multiple) * net.multiple
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)


def eager_precision(net: TransformerNet, device: torch.device, precision: str) -> devices.PrecisionChoice:
    """The precision policy for running ``net`` eagerly: the probe is one forward pass on a small image."""
    x = _probe_input(net, device)
    runners: Dict[bool, EagerBackend] = {}

    def probe(bf16: bool) -> Tensor:
        if bf16 not in runners:
            runners[bf16] = EagerBackend(net, device, bf16=bf16)
        return runners[bf16](x)

    return devices.choose_precision(precision, device, workload=f"feedforward {net.config.name}", probe=probe)


def _fastest(candidates: Dict[str, Backend], x: Tensor, device: torch.device, repeats: int = 3) -> Dict[str, float]:
    """Median seconds per call of each candidate on ``x`` (a warm-up call each, then interleaved timed calls)."""
    for run in candidates.values():
        run(x)
    times: Dict[str, list] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            times[name].append(devices.time_call(lambda: run(x), device, name))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def choose_backend(
    net: TransformerNet,
    device: torch.device,
    *,
    backend: str = "auto",
    precision: str = "auto",
    cache_dir: Union[str, Path, None] = None,
) -> BackendChoice:
    """The backend that runs ``net`` on ``device``; never one that raises on this machine.

    backend: auto (the fastest measured of eager torch, in the arithmetic the precision policy picks, and ONNX
    Runtime in fp32 on a CPU where it is installed and fp32 is allowed) | torch | torch.compile | onnxruntime
    (fp32, CPU) | winograd (fp32, CPU, standard layout). A named backend that cannot run here raises InputError;
    one whose set-up fails (no C++ compiler, an exporter error) falls back to eager torch with a warning.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    fp32_only = backend in ("onnxruntime", "winograd")
    if fp32_only:
        if device.type != "cpu":
            raise InputError(f"backend: {backend} runs on the CPU only (device is {device})")
        if precision == "bf16":
            raise InputError(f"backend: {backend} runs fp32 arithmetic; use precision auto or fp32 with it")
        if backend == "winograd" and not winograd_net.supports(net):
            raise InputError("backend: winograd runs the standard network only (full 3x3 residual convs, 9x9 out)")
        if backend == "onnxruntime" and not onnxruntime_available():
            raise InputError("backend: onnxruntime is not installed (pip install 'styletx[export]')")
        fp32 = devices.PrecisionChoice(False, "forced" if precision == "fp32" else f"{backend} is fp32")
        try:
            run: Backend = WinogradBackend(net, device) if backend == "winograd" else OrtBackend(
                onnx_body_path(net, cache_dir))
            return BackendChoice(run, fp32, "asked for")
        except Exception as e:  # pragma: no cover - platform dependent
            warnings.warn(f"{backend} backend unavailable ({one_line(e)}); running with torch", StyletxWarning)
            return BackendChoice(EagerBackend(net, device, bf16=False), fp32, f"{backend} failed")
    choice = eager_precision(net, device, precision)
    if backend in ("torch", "torch.compile"):
        eager = EagerBackend(net, device, bf16=choice.bf16, compiled=backend == "torch.compile")
        return BackendChoice(eager, choice, "asked for")
    eager = EagerBackend(net, device, bf16=choice.bf16)
    if device.type != "cpu" or precision == "bf16" or not onnxruntime_available():
        why = "the only candidate" if device.type != "cpu" or precision == "bf16" else "onnxruntime not installed"
        return BackendChoice(eager, choice, why)
    key = f"{cache.machine_key(device)} | feedforward {net.config.name} | eager {choice.name} | {BACKEND_PROBE_SIDE} px"
    stored = cache.read_measurement("backend", key)
    ort: Optional[OrtBackend] = None
    if stored is None or stored.get("backend") == "onnxruntime":
        try:
            ort = OrtBackend(onnx_body_path(net, cache_dir))
        except Exception as e:  # pragma: no cover - platform dependent
            warnings.warn(f"ONNX Runtime backend unavailable ({one_line(e)}); running with torch", StyletxWarning)
            return BackendChoice(eager, choice, "onnxruntime failed to load")
    if stored is not None and stored.get("backend") in ("torch", "onnxruntime"):
        reason = f"cached: {stored.get('detail', '')}"
        if stored["backend"] == "onnxruntime" and ort is not None:
            return BackendChoice(ort, devices.PrecisionChoice(False, "onnxruntime is fp32"), reason)
        return BackendChoice(eager, choice, reason)
    assert ort is not None
    times = _fastest({"torch": eager, "onnxruntime": ort}, _probe_input(net, device, BACKEND_PROBE_SIDE), device)
    best = min(times, key=times.get)
    detail = ", ".join(f"{name} {t:.4f} s" for name, t in times.items()) + f" per {BACKEND_PROBE_SIDE} px probe"
    cache.write_measurement("backend", key, {"backend": best, "detail": detail, "measured_at": time.time()})
    if best == "onnxruntime":
        return BackendChoice(ort, devices.PrecisionChoice(False, "onnxruntime is fp32"), f"measured: {detail}")
    return BackendChoice(eager, choice, f"measured: {detail}")
