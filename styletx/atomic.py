"""THE atomic, no-clobber file writer: every file styletx writes (images, checkpoints, exports, caches) goes here.

A write goes into a hidden temporary file in the destination's folder (created like any new file, so the user's
umask applies), is flushed to disk, then moved into place in one step: readers see the old file or the whole
new one, never half of it, and a failed or interrupted write leaves nothing behind. Without ``overwrite`` an
existing file is never replaced, even one that appears while the write is under way (a hard link publishes the
file only if the name is still free).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator, Union

from .errors import InputError

__all__ = ["atomic_path", "atomic_open", "one_line"]

PathLike = Union[str, "os.PathLike[str]"]


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters (its type name when it has none)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _new_temp(path: Path) -> Path:
    """Create an empty hidden temporary file next to ``path`` (mode 0o666 & ~umask) and return its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise InputError(f"{path}: cannot write in {str(path.parent)!r} ({one_line(e)})") from e


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``path``: replacing it when ``overwrite``, else only if ``path`` does not exist."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if the name was taken since any earlier check
        return
    except FileExistsError:
        raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it") from None
    except OSError:
        pass  # a file system without hard links: check, then replace
    if os.path.lexists(path):
        raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (for writers that want a file name, such as
    ONNX or TorchScript savers); on a clean exit it is synced and moved into place, on any exception (Ctrl-C
    included) it is removed. Raises InputError (one line naming the file) when the folder is missing or not
    writable, or when ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder {str(path.parent)!r} does not exist")
    if not overwrite and os.path.lexists(path):
        raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it")
    tmp = _new_temp(path)
    try:
        yield tmp
        _fsync(tmp)
        _publish(tmp, path, overwrite)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({one_line(e)})") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: PathLike, *, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Like :func:`atomic_path`, but yield the temporary file opened for binary writing."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        yield f
