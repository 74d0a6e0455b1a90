"""Export a trained transformer to TorchScript (``.pt``/``.ts``) or ONNX (``.onnx``).

The exported model has the toolkit's interface: input ``image`` (N, 3, H, W) float32 in [0, 1], output
``stylized`` (N, 3, H, W) float32 clamped to [0, 1], any batch size and any H, W >= 16 (padded to the
network's multiple and cropped back inside the graph). It runs in fp32, the eager network's arithmetic.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .atomic import atomic_path, one_line
from .engines.feedforward.backends import quiet_loggers
from .engines.feedforward.checkpoint import jsonable
from .engines.feedforward.model import FeedForwardModel, as_model
from .engines.feedforward.net import TransformerNet
from .errors import InputError, StyletxWarning
from .paths import check_not_an_input, check_writable_folder

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


def _wrapper(model: FeedForwardModel, example: Tensor, *, trace_body: bool) -> ExportWrapper:
    net = model.net.float().cpu().eval()
    body: nn.Module = _Body(net)
    if trace_body:
        m = net.multiple
        ex = F.pad(example, [0, (m - example.shape[3] % m) % m, 0, (m - example.shape[2] % m) % m], mode="reflect")
        with torch.no_grad():
            body = torch.jit.trace(body, (ex * net.value_range,), check_trace=False)
    return ExportWrapper(body, net.multiple, net.value_range).eval()


def _check_onnx_installed() -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"exporting to ONNX needs {' and '.join(missing)}: pip install 'styletx[export]'")


def export(
    model: Union[str, Path, FeedForwardModel],
    out_path: Union[str, Path],
    *,
    overwrite: bool = False,
    opset: int = 18,
    example_size: Tuple[int, int] = (64, 64),
) -> Path:
    """Write ``model`` (a feed-forward model or a checkpoint path) as TorchScript (``.pt``, ``.ts``) or ONNX
    (``.onnx``), chosen by ``out_path``'s extension; returns the path. Dynamic batch, height and width.
    The write is atomic and refuses to replace a file unless ``overwrite``."""
    out_path = Path(out_path)
    if isinstance(model, (str, Path)):
        check_not_an_input(out_path, [model], "export")  # whatever the flags: never the checkpoint it reads
    if out_path.is_dir():
        raise InputError(f"{out_path}: is a folder; give a file name such as {str(out_path / 'model.onnx')!r}")
    fmt = EXPORT_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise InputError(f"{out_path}: unknown export format (use {', '.join(EXPORT_FORMATS)})")
    if not overwrite and out_path.exists():
        raise InputError(f"{out_path}: exists; use --overwrite (overwrite=True) to replace it")
    check_writable_folder(out_path.parent, out_path)
    if fmt == "onnx":
        _check_onnx_installed()
    tf = as_model(model, device="cpu")
    if tf.device.type != "cpu":
        tf = FeedForwardModel(tf.net, meta=tf.meta, device="cpu")
    h, w = example_size
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    try:
        with atomic_path(out_path, overwrite=overwrite) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's deprecation notices
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # instance norm's size check
            if fmt == "torchscript":
                scripted = torch.jit.script(_wrapper(tf, example, trace_body=True))
                torch.jit.save(scripted, str(tmp), _extra_files={"styletx.json": _describe(tf)})
            else:
                _export_onnx(_wrapper(tf, example, trace_body=False), example, tmp, opset, tf)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{out_path}: export failed ({one_line(e, 300)})") from e
    return out_path


def _describe(tf: FeedForwardModel) -> str:
    return json.dumps(jsonable({"arch": tf.config.as_dict(), **tf.meta}), sort_keys=True)


def _export_onnx(wrapper: nn.Module, example: Tensor, path: Path, opset: int, tf: FeedForwardModel) -> None:
    errors: List[str] = []
    # quieten the dynamo exporter's progress lines for the duration (loggers restored after)
    with warnings.catch_warnings(), quiet_loggers(("torch.onnx", "torch.export", "onnxscript")):
        warnings.simplefilter("ignore")
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
            errors.append(one_line(e))
        torch.onnx.export(
            wrapper, (example,), str(path), dynamo=False, opset_version=min(opset, 17), input_names=["image"],
            output_names=["stylized"], dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                     "stylized": {0: "batch", 2: "height", 3: "width"}},
        )
    warnings.warn(f"ONNX: the dynamo exporter failed ({errors[0]}); used the TorchScript exporter", StyletxWarning)


def _add_metadata(program: Any, tf: FeedForwardModel) -> None:
    try:
        model = program.model  # onnx_ir model
        model.metadata_props["styletx"] = _describe(tf)
    except Exception:  # metadata is a nicety
        pass
