"""Finding, downloading (hash-checked) and describing the VGG weight files; the manifest.

Look-up order for an architecture's weight file (first hit wins):

1. an explicit path (``--weights PATH``);
2. ``$STYLETX_WEIGHTS_DIR/<file name>``;
3. ``./weights/<file name>`` (current directory), then ``<repo>/weights/<file name>``;
4. the torch hub cache ``torch.hub.get_dir()/checkpoints/<file name>`` (honours ``$TORCH_HOME``);
5. a download into the hub cache, checked against the sha256 prefix, unless ``STYLETX_OFFLINE=1``.

Hash policy: a file whose name is a known weight file name (``vgg19-dcbb9e9d.pth``) is checked against the
table's sha256 (prefix) before it is trusted, wherever it was found (hashing 550 MB costs ~1-2 s, once per
process per file: the result is cached by path, size and mtime). A file under any other name (only reachable
as an explicit path) is the user's own: it is not hash-checked, but its keys and shapes must fit the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..atomic import atomic_open
from ..errors import WeightsError
from ..paths import file_problem, same_file

PathLike = Union[str, "os.PathLike[str]"]

ENV_DIR = "STYLETX_WEIGHTS_DIR"
ENV_OFFLINE = "STYLETX_OFFLINE"

#: Seconds a download may wait on the network (connect / each read) before it is given up.
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WeightFile:
    """One known weight file. ``sha256`` is the full digest or, when only that is published, its prefix."""

    name: str
    arch: str
    url: str
    sha256: str
    size: Optional[int]  # bytes, None when not measured/published exactly
    approx_mib: Optional[float] = None  # torchvision's published "_file_size" (MiB, rounded): for messages only

    @property
    def sha256_is_prefix(self) -> bool:
        return len(self.sha256) < 64


# torchvision's ImageNet VGG weights (VGG19_Weights.IMAGENET1K_V1, VGG16_Weights.IMAGENET1K_V1).
# The 8 hex digits in the file name are the start of the file's sha256 (torch.hub checks exactly that prefix);
# torchvision publishes no full digest. approx_mib is torchvision's own meta["_file_size"] (MiB, 3 decimals).
# A third-party project's manifest lists a full sha256 "dcbb9e9dad56..." and 574673361 bytes for vgg19, which
# agrees with the prefix and with 548.051 MiB, but it could not be verified here (no network), so only the
# prefix is enforced and ``size`` stays None.
KNOWN_WEIGHTS: Tuple[WeightFile, ...] = (
    WeightFile(
        name="vgg19-dcbb9e9d.pth",
        arch="vgg19",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9d",
        size=None,
        approx_mib=548.051,
    ),
    WeightFile(
        name="vgg16-397923af.pth",
        arch="vgg16",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af",
        size=None,
        approx_mib=527.796,
    ),
)

_BY_ARCH: Dict[str, WeightFile] = {w.arch: w for w in KNOWN_WEIGHTS}
_BY_NAME: Dict[str, WeightFile] = {w.name: w for w in KNOWN_WEIGHTS}
_HASH_CACHE: Dict[Tuple[str, int, int], str] = {}


def known_file(arch: str) -> WeightFile:
    """The table entry of an architecture (``vgg19``, ``vgg16``); WeightsError for an unknown one."""
    try:
        return _BY_ARCH[arch]
    except KeyError:
        raise WeightsError(
            f"no known weight file for backbone {arch!r} (known: {', '.join(sorted(_BY_ARCH))})"
        ) from None


def repo_weights_dir() -> Path:
    """``<repo>/weights``: the folder next to the ``styletx`` package (exists in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "weights"


def hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``): where downloads go."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> List[Path]:
    """The folders searched for a weight file, in order (duplicates removed; they need not exist)."""
    dirs: List[Path] = []
    env = os.environ.get(ENV_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [Path.cwd() / "weights", repo_weights_dir(), hub_checkpoints_dir()]
    unique: List[Path] = []
    seen = set()
    for d in dirs:
        key = os.path.normcase(os.path.abspath(d))
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def offline() -> bool:
    """True when ``$STYLETX_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: PathLike) -> str:
    """Hex sha256 of a file (cached per process by path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def in_hub_cache(path: PathLike) -> bool:
    """Whether ``path`` is in the torch hub cache (where styletx downloads to): only such a file is ours to
    tell the user to delete; any other is the user's own."""
    return same_file(Path(path).parent, hub_checkpoints_dir())


def _remedy(p: Path, entry: Optional[WeightFile]) -> str:
    url = entry.url if entry is not None else "its source"
    if in_hub_cache(p):
        return f"it is a damaged download: delete it and it is fetched again from {url}"
    return f"it is not the published file: get {p.name} from {url} (your file is left as it is)"


def verify(path: PathLike, entry: WeightFile) -> None:
    """Raise WeightsError unless the file's sha256 (and size, when known) match the table entry."""
    p = Path(path)
    if entry.size is not None and p.stat().st_size != entry.size:
        raise WeightsError(f"weight file {p} has {p.stat().st_size} bytes, expected {entry.size}: {_remedy(p, entry)}")
    digest = sha256_of(p)
    if not digest.startswith(entry.sha256):
        raise WeightsError(
            f"weight file {p} fails its hash check (sha256 {digest[:16]}..., expected "
            f"{_sha_text(entry)}): {_remedy(p, entry)}"
        )


def _sha_text(entry: WeightFile) -> str:
    return entry.sha256 + ("... (prefix)" if entry.sha256_is_prefix else "")


def find_weights(arch: str, explicit: Optional[PathLike] = None) -> Optional[Path]:
    """The weight file of ``arch`` by the look-up order (no download), or None when none is found.

    An explicit path that does not exist raises WeightsError (never silently ignored). Files under a known
    name are hash-checked (WeightsError on mismatch); see the module docstring.
    """
    entry = known_file(arch)
    if explicit is not None:
        p = Path(explicit).expanduser()
        problem = file_problem(p)  # a FIFO or a device would block: refused before opening
        if problem is not None:
            raise WeightsError(f"weights: file {p} not found" if problem == "no such file" else f"weights: {p}: {problem}")
        if p.name in _BY_NAME:
            verify(p, _BY_NAME[p.name])
        return p
    for d in search_dirs():
        p = d / entry.name
        if p.is_file():
            verify(p, entry)
            return p
    return None


def missing_message(entry: WeightFile, reason: str = "not found") -> str:
    """The one-line message for a missing weight file: file name, URL, sha256 and where to put it."""
    folders = ", ".join(str(d) for d in search_dirs())
    size = f", ~{entry.approx_mib:.0f} MiB" if entry.approx_mib else ""
    return (
        f"{entry.arch} weights {entry.name} {reason}: download {entry.url} (sha256 {_sha_text(entry)}{size}) "
        f"and put it in one of: {folders} (or set ${ENV_DIR}, or pass --weights PATH; "
        f"--backbone random needs no weights)"
    )


def _download(url: str, dst: Path, sha256_prefix: str, timeout: float) -> None:
    """Stream ``url`` into ``dst`` through the atomic writer, checking the sha256 prefix before the file appears;
    ``timeout`` seconds bound the connection and each read (no process-wide socket setting is touched)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(dst, overwrite=True) as f:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            f.write(chunk)
        if not digest.hexdigest().startswith(sha256_prefix):
            raise WeightsError(f"downloaded file's sha256 {digest.hexdigest()[:16]}... does not start with {sha256_prefix}")


def fetch_weights(arch: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """The weight file of ``arch``: found by the look-up, else downloaded (hash-checked) into the hub cache.

    Raises WeightsError (one line: file, URL, sha256, folders) when offline (``STYLETX_OFFLINE=1``) or when the
    download fails; a network that does not answer fails within about ``timeout`` seconds.
    """
    entry = known_file(arch)
    found = find_weights(arch)
    if found is not None:
        return found
    if offline():
        raise WeightsError(missing_message(entry, f"not found and {ENV_OFFLINE}=1"))
    dst = hub_checkpoints_dir() / entry.name
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _download(entry.url, dst, entry.sha256, timeout)
    except Exception as exc:  # URLError, socket errors, hash mismatch, disk errors
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise WeightsError(missing_message(entry, f"not found and the download failed ({why})")) from exc
    verify(dst, entry)
    return dst


def load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Load a weight file as a state dict (``torch.load(weights_only=True)``, on the CPU).

    Raises WeightsError naming the file when it is missing, unreadable, corrupt or not a state dict.
    """
    p = Path(path)
    problem = file_problem(p)
    if problem is not None:
        raise WeightsError(f"weight file {p} not found" if problem == "no such file" else f"weight file {p}: {problem}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        remedy = "; it is a damaged download: delete it and it is fetched again" if in_hub_cache(p) else ""
        raise WeightsError(f"weight file {p} cannot be read ({why}){remedy}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weight file {p} is not a state dict of tensors")
    return sd


def weights_report() -> List[dict]:
    """One dict per known file (for ``styletx weights``): name, arch, url, sha256, size, ``status``
    ("found", "missing" or "bad: reason") and ``path`` (str or None). Known-name files are hash-checked."""
    rows = []
    for entry in KNOWN_WEIGHTS:
        row = {"name": entry.name, "arch": entry.arch, "url": entry.url, "sha256": entry.sha256,
               "size": entry.size, "status": "missing", "path": None}
        try:
            found = find_weights(entry.arch)
        except WeightsError as exc:
            row["status"] = f"bad: {exc}"
        else:
            if found is not None:
                row["status"], row["path"] = "found", str(found)
        rows.append(row)
    return rows


def manifest() -> dict:
    """The manifest as a JSON-able dict, generated from :data:`KNOWN_WEIGHTS`."""
    return {
        "comment": "Generated by styletx.weights.write_manifest(); do not edit. sha256 is the full digest or, "
        "when sha256_is_prefix is true, the published prefix; size is null when not known exactly.",
        "files": [
            {"name": w.name, "arch": w.arch, "url": w.url, "sha256": w.sha256,
             "sha256_is_prefix": w.sha256_is_prefix, "size": w.size}
            for w in KNOWN_WEIGHTS
        ],
    }


def manifest_text() -> str:
    """The exact text :func:`write_manifest` writes."""
    return json.dumps(manifest(), indent=2) + "\n"


def write_manifest(path: Optional[PathLike] = None, *, overwrite: bool = False) -> Path:
    """Write the manifest (default: regenerate ``<repo>/weights/manifest.json``) through the atomic writer;
    another existing file is replaced only with ``overwrite``. Returns its path."""
    p = Path(path) if path is not None else repo_weights_dir() / "manifest.json"
    with atomic_open(p, overwrite=overwrite or path is None) as f:
        f.write(manifest_text().encode("utf-8"))
    return p
