"""Checkpoints of feed-forward models: the self-describing styletx format, and pytorch/examples files.

A styletx checkpoint holds the architecture, the state dict, a plain-value description (style name and sha256,
training options and losses) and, for resuming, the training state; it loads with ``weights_only=True`` (no code
runs). A pytorch/examples ``fast_neural_style`` state dict is recognised by its keys and wrapped for [0, 255].
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from ..._version import __version__
from ...atomic import one_line, write_or_rescue
from ...errors import CheckpointError, InputError
from ...paths import file_problem
from .net import ArchConfig, TransformerNet, build_network

__all__ = [
    "CHECKPOINT_FORMAT",
    "jsonable",
    "file_sha256",
    "checkpoint_dict",
    "write_checkpoint",
    "read_checkpoint",
    "network_from_checkpoint",
    "convert_pytorch_examples",
    "load_state",
]

#: Version of the checkpoint layout written by :func:`write_checkpoint`.
CHECKPOINT_FORMAT = 1


def file_sha256(path: Union[str, Path]) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(value: Any) -> Any:
    """Plain Python values only (what torch.load(weights_only=True) accepts and JSON can show)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    return str(value)


_PYTORCH_EXAMPLES_KEYS = ("conv1.conv2d.weight", "in1.weight", "conv3.conv2d.weight", "deconv3.conv2d.weight")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def convert_pytorch_examples(state: Mapping[str, Tensor], *, name: str = "state_dict") -> Tuple[ArchConfig, Dict[str, Tensor]]:
    """The architecture and cleaned state of a pytorch/examples ``fast_neural_style`` checkpoint.

    Their network works on pixels in [0, 255]; the returned config has ``value_range=255`` so the rebuilt
    network still takes and returns [0, 1]. Instance-norm ``running_mean``/``running_var`` (and
    ``num_batches_tracked``) keys of files saved by old PyTorch versions are dropped.
    """
    missing = [k for k in _PYTORCH_EXAMPLES_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{name}: not a fast_neural_style checkpoint (missing {', '.join(missing)})")
    clean = {
        k: v for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
    c1 = clean["conv1.conv2d.weight"].shape[0]
    c2 = clean["conv2.conv2d.weight"].shape[0] if "conv2.conv2d.weight" in clean else 2 * c1
    c3 = clean["conv3.conv2d.weight"].shape[0]
    blocks = 0
    while f"res{blocks + 1}.conv1.conv2d.weight" in clean:
        blocks += 1
    k_in = int(clean["conv1.conv2d.weight"].shape[-1])
    k_out = int(clean["deconv3.conv2d.weight"].shape[-1])
    config = ArchConfig(
        "standard", channels=(int(c1), int(c2), int(c3)), res_blocks=blocks, kernel_in=k_in, kernel_out=k_out,
        value_range=255.0,
    ).validated()
    return config, clean


def check_state(state: Any, name: str) -> None:
    """CheckpointError (one line naming the file and the first problem) unless ``state`` is a non-empty
    mapping of names to finite tensors."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{name}: not a usable checkpoint: its state_dict is a {type(state).__name__}, "
                              "not a mapping of tensors")
    if not state:
        raise CheckpointError(f"{name}: not a usable checkpoint: its state_dict is empty")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{name}: not a usable checkpoint: state_dict entry {key!r} is a "
                                  f"{type(value).__name__}, not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{name}: not a usable checkpoint: weights {key} contain NaN or infinite values")


def load_state(net: TransformerNet, state: Mapping[str, Tensor], name: str) -> None:
    """Load ``state`` into ``net``: CheckpointError (one line, the first problem) on a missing, unexpected or
    misshapen tensor, or on NaN/inf weights."""
    check_state(state, name)
    own = net.state_dict()
    for key, value in state.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{name}: not a usable checkpoint: weights {key} have shape {tuple(value.shape)}, "
                                  f"architecture {net.config.name!r} needs {tuple(own[key].shape)}")
    try:
        result = net.load_state_dict(dict(state), strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{name}: not a usable checkpoint ({one_line(e)})") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:4])}" + (" ..." if len(result.missing_keys) > 4 else ""))
    if result.unexpected_keys:
        problems.append(
            f"unexpected {', '.join(result.unexpected_keys[:4])}" + (" ..." if len(result.unexpected_keys) > 4 else "")
        )
    if problems:
        raise CheckpointError(f"{name}: weights do not match architecture {net.config.name!r} ({'; '.join(problems)})")


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a checkpoint file (no code execution: ``weights_only``); raises CheckpointError naming the file."""
    path = Path(path)
    problem = file_problem(path)  # a FIFO or a device would block: refused before opening
    if problem is not None:
        raise CheckpointError(f"{path}: {'no such checkpoint file' if problem == 'no such file' else problem}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights only load failed" in str(e).lower():
            why = "not a PyTorch checkpoint, or one that holds code, which is never run"
        else:
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read the checkpoint ({why})") from None
    if isinstance(obj, Mapping) and obj.get("format") == "styletx-transformer":
        if not isinstance(obj.get("arch"), Mapping):
            raise CheckpointError(f"{path}: not a usable checkpoint: its architecture is a "
                                  f"{type(obj.get('arch')).__name__}, not a mapping")
        check_state(obj.get("state_dict"), str(path))
        for key in ("meta", "training_state"):
            if obj.get(key) is not None and not isinstance(obj[key], Mapping):
                raise CheckpointError(f"{path}: not a usable checkpoint: its {key} is a {type(obj[key]).__name__}")
        return dict(obj)
    if _is_state_dict(obj):
        return {"state_dict": dict(obj)}
    raise CheckpointError(f"{path}: not a transformer checkpoint (neither a styletx file nor a state_dict)")


def checkpoint_dict(net: TransformerNet, meta: Mapping[str, Any],
                    training_state: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The checkpoint of ``net`` as a dict of plain values and tensors (loadable with ``weights_only=True``).
    ``meta`` is stored as plain values; ``training_state`` (optimiser state, step) as is, for resuming."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    extra = {"training_state": dict(training_state)} if training_state is not None else {}
    return {
        **extra,
        "format": "styletx-transformer",
        "format_version": CHECKPOINT_FORMAT,
        "styletx": __version__,
        "arch": net.config.as_dict(),
        "meta": jsonable({k: v for k, v in meta.items() if k not in ("arch", "styletx", "format")}),
        "state_dict": state,
    }


def write_checkpoint(path: Union[str, Path], ckpt: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write a checkpoint dict atomically (the one writer); refuses to replace a file unless ``overwrite``. When
    the write fails while writing (disk full), the checkpoint is kept in the rescue folder and the InputError
    says where (:func:`styletx.atomic.write_or_rescue`)."""
    path = Path(path)
    return write_or_rescue(path, lambda tmp: torch.save(dict(ckpt), tmp), overwrite=overwrite)


def config_from(arch: Any, path: Union[str, Path]) -> ArchConfig:
    """The :class:`ArchConfig` a checkpoint's ``arch`` describes: CheckpointError (one line) on a field of the wrong
    type, out of range (:data:`~.net.ARCH_LIMITS`) or unknown."""
    if not isinstance(arch, Mapping):
        raise CheckpointError(f"{path}: not a usable checkpoint: its architecture is a {type(arch).__name__}")
    try:
        return ArchConfig.from_dict(arch)
    except (TypeError, ValueError, InputError) as e:
        raise CheckpointError(f"{path}: not a usable checkpoint: bad architecture ({one_line(e)})") from None


def network_from_checkpoint(path: Union[str, Path]) -> Tuple[TransformerNet, Dict[str, Any], Dict[str, Any]]:
    """Rebuild the network a checkpoint file describes: returns ``(net, meta, checkpoint)``. A styletx checkpoint
    (any architecture), or a pytorch/examples fast_neural_style state dict (used unchanged, [0, 255] wrapped)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    state = ckpt["state_dict"]
    if "arch" in ckpt:
        version = ckpt.get("format_version", 1)
        if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {version} is newer than this styletx reads; upgrade")
        config = config_from(ckpt["arch"], path)
        meta = dict(ckpt.get("meta") or {})
        meta["styletx_version"] = ckpt.get("styletx")
        source = "styletx"
    elif all(k in state for k in _PYTORCH_EXAMPLES_KEYS):
        try:
            config, state = convert_pytorch_examples(state, name=str(path))
        except (InputError, IndexError) as e:
            raise CheckpointError(f"{path}: not a usable checkpoint ({one_line(e)})") from None
        meta = {"source": "pytorch/examples fast_neural_style", "style": {"name": path.stem}}
        source = "pytorch-examples"
    else:
        raise CheckpointError(f"{path}: unrecognised state_dict layout (keys like {', '.join(list(state)[:3])})")
    net = build_network(config, seed=0)  # seeded: building leaves the global RNG alone; the weights are replaced
    load_state(net, state, str(path))
    meta.setdefault("file", path.name)
    meta["format"] = source
    return net, meta, ckpt
