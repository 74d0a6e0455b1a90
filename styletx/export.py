"""Export a trained transformer to TorchScript (``.pt``/``.ts``) or ONNX (``.onnx``).

The exported model has the toolkit's interface: input ``image`` (N, 3, H, W) float32 in [0, 1], output
``stylized`` (N, 3, H, W) float32 clamped to [0, 1], any batch size and any H, W >= 16 (padded to the
network's multiple and cropped back inside the graph). It runs in fp32, the eager network's arithmetic.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, StyletxWarning
from .transformer import Transformer, TransformerNet, as_transformer

__all__ = ["export", "ExportWrapper", "EXPORT_FORMATS", "MIN_EXPORT_SIZE"]

#: Extension -> format.
EXPORT_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}

#: Smallest side an exported model accepts (the in-graph padding only rounds up to the network's multiple);
#: networks with a pixel-unshuffle stem need more (``TransformerNet.min_size``: 32 for ``slim``).
MIN_EXPORT_SIZE = 16


class ExportWrapper(nn.Module):
    """[0, 1] in, [0, 1] out around a network's ``body``: pad to the multiple (reflect), scale to the
    network's value range, run, scale back, crop, clamp. Shape arithmetic only, so it traces symbolically."""

    def __init__(self, body: nn.Module, multiple: int, value_range: float) -> None:
        super().__init__()
        self.body = body
        self.multiple = int(multiple)
        self.value_range = float(value_range)

    def forward(self, image: Tensor) -> Tensor:
        h = image.shape[2]
        w = image.shape[3]
        m = self.multiple
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        x = F.pad(image, [0, pw, 0, ph], mode="reflect")
        if self.value_range != 1.0:
            x = x * self.value_range
        y = self.body(x)
        if self.value_range != 1.0:
            y = y * (1.0 / self.value_range)
        return y[:, :, :h, :w].clamp(0.0, 1.0)


class _Body(nn.Module):
    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.body(x)


def _wrapper(model: Transformer, example: Tensor, *, trace_body: bool) -> ExportWrapper:
    net = model.net.float().cpu().eval()
    body: nn.Module = _Body(net)
    if trace_body:
        m = net.multiple
        ex = F.pad(example, [0, (m - example.shape[3] % m) % m, 0, (m - example.shape[2] % m) % m], mode="reflect")
        with torch.no_grad():
            body = torch.jit.trace(body, (ex * net.value_range,), check_trace=False)
    return ExportWrapper(body, net.multiple, net.value_range).eval()


def _atomic(path: Path, overwrite: bool) -> Path:
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder {str(path.parent)!r} does not exist")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=str(path.parent))
    os.close(fd)
    return Path(tmp)


def export(
    model: Union[str, Path, Transformer],
    out_path: Union[str, Path],
    *,
    overwrite: bool = False,
    opset: int = 18,
    example_size: Tuple[int, int] = (64, 64),
) -> Path:
    """Write ``model`` (a Transformer or a checkpoint path) as TorchScript (``.pt``, ``.ts``) or ONNX
    (``.onnx``), chosen by ``out_path``'s extension; returns the path. Dynamic batch, height and width.
    The write is atomic and refuses to replace a file unless ``overwrite``."""
    out_path = Path(out_path)
    fmt = EXPORT_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise InputError(f"{out_path}: unknown export format (use {', '.join(EXPORT_FORMATS)})")
    tf = as_transformer(model, device="cpu")
    if tf.device.type != "cpu":
        tf = Transformer(tf.net, meta=tf.meta, device="cpu")
    h, w = example_size
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    tmp = _atomic(out_path, overwrite)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notices
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # instance norm's size check
            if fmt == "torchscript":
                scripted = torch.jit.script(_wrapper(tf, example, trace_body=True))
                torch.jit.save(scripted, str(tmp), _extra_files={"styletx.json": _describe(tf)})
            else:
                _export_onnx(_wrapper(tf, example, trace_body=False), example, tmp, opset, tf)
        os.replace(tmp, out_path)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{out_path}: export failed ({str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__})") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_path


def _describe(tf: Transformer) -> str:
    import json

    from .transformer import _jsonable

    return json.dumps(_jsonable({"arch": tf.config.as_dict(), **tf.meta}), sort_keys=True)


def _export_onnx(wrapper: nn.Module, example: Tensor, path: Path, opset: int, tf: Transformer) -> None:
    import logging

    errors: List[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # quieten the dynamo exporter's progress lines (they go to the root logger / stdout otherwise)
        for name in ("torch.onnx", "torch.export", "onnxscript"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            batch = torch.export.Dim("batch", min=1)
            smallest = max(MIN_EXPORT_SIZE, tf.net.min_size)
            height = torch.export.Dim("height", min=smallest)
            width = torch.export.Dim("width", min=smallest)
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, opset_version=opset, input_names=["image"],
                output_names=["stylized"], dynamic_shapes={"image": {0: batch, 2: height, 3: width}},
                external_data=False, verbose=False,
            )
            _add_metadata(program, tf)
            program.save(str(path), external_data=False)
            return
        except Exception as e:  # fall back to the TorchScript-based exporter
            errors.append(str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
        torch.onnx.export(
            wrapper, (example,), str(path), dynamo=False, opset_version=min(opset, 17), input_names=["image"],
            output_names=["stylized"], dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                     "stylized": {0: "batch", 2: "height", 3: "width"}},
        )
    warnings.warn(f"ONNX: the dynamo exporter failed ({errors[0]}); used the TorchScript exporter", StyletxWarning)


def _add_metadata(program: Any, tf: Transformer) -> None:
    try:
        model = program.model  # onnx_ir model
        model.metadata_props["styletx"] = _describe(tf)
    except Exception:  # metadata is a nicety
        pass


# ------------------------------------------------------------------------- ONNX Runtime inference backend


class _OrtBody(nn.Module):
    """What the ONNX Runtime backend runs: scale to the value range, the network's body, scale back.
    Input sides must already be multiples of ``net.multiple`` (``Transformer`` pads and crops in torch)."""

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


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except Exception:
        return False
    return True


def default_cache_dir() -> Path:
    """Where exported inference graphs are cached: ``$STYLETX_CACHE_DIR``, else ``$XDG_CACHE_HOME/styletx``,
    else ``~/.cache/styletx``."""
    env = os.environ.get("STYLETX_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "styletx"


def _graph_key(net: TransformerNet) -> str:
    """sha256 (first 20 hex digits) of everything the exported graph depends on: weights, architecture,
    torch version, this module's graph format."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps({"arch": net.config.as_dict(), "torch": torch.__version__, "graph": 2},
                        sort_keys=True).encode())
    for name, v in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def onnx_body_path(net: TransformerNet, cache_dir: Union[str, Path, None] = None) -> Path:
    """The ONNX graph of ``net``'s body (dynamic batch, height, width; fp32), exported once into the cache
    (file named by a hash of the weights and architecture; written atomically) and reused after."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / "onnx"
    path = folder / f"{net.config.name}-{_graph_key(net)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    from .transformer import shuffle_as_convs

    body = _OrtBody(shuffle_as_convs(copy_net(net))).eval()
    m = net.multiple
    example = torch.rand(1, 3, 4 * m, 4 * m, generator=torch.Generator().manual_seed(0))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx", dir=str(folder))
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    body, (example,), tmp, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                    dynamic_axes={k: {0: "batch", 2: "height", 3: "width"} for k in ("x", "y")},
                )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def copy_net(net: TransformerNet) -> TransformerNet:
    """A CPU fp32 eval copy of ``net`` without autograd state (for tracing)."""
    import copy

    c = copy.deepcopy(net).float().cpu().eval()
    for p in c.parameters():
        p.requires_grad_(False)
    return c


class OrtRunner:
    """Runs a network's body with ONNX Runtime on the CPU: ``runner(x)`` with x (N, 3, H, W) float32, sides
    multiples of the network's ``multiple``, returns the body's (N, 3, H, W) float32 output (unclamped).

    threads: intra-op threads (default: ``torch.get_num_threads()``), not spinning between ops; one inter-op
    thread (the graph is a chain). Graph optimisations: all (ORT fuses conv + relu and uses its blocked NCHWc
    layout)."""

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
