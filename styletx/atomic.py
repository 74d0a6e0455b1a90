"""THE atomic, no-clobber file writer: every file styletx writes (images, checkpoints, exports, caches) goes here.

A write goes into a hidden temporary file in the destination's folder (created like any new file, so the user's
umask applies), is flushed to disk, then moved into place in one step: readers see the old file or the whole
new one, never half of it, and a failed or interrupted write leaves nothing behind. Without ``overwrite`` an
existing file is never replaced, even one that appears while the write is under way (a hard link publishes the
file only if the name is still free).

A write that has started is finished: a program that handles signals itself (the CLI) asks, through
:func:`defer_while_writing`, to have an interrupt that arrives during a write delivered when the write ends, so
Ctrl-C or SIGTERM never throws away a finished picture or checkpoint half-published. When the destination
cannot take the file (disk full), :func:`write_or_rescue` keeps it in the rescue folder and says where.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Union

from .errors import InputError

__all__ = ["atomic_path", "atomic_open", "one_line", "defer_while_writing", "writing", "rescue_dir",
           "write_or_rescue", "ENV_RESCUE_DIR"]

#: Where results that could not be written to their destination are kept (default: the temp folder).
ENV_RESCUE_DIR = "STYLETX_RESCUE_DIR"

_writes_under_way = 0
_deferred: List[Callable[[], None]] = []


def writing() -> bool:
    """Whether an atomic write is under way in this process (between creating its temporary file and
    publishing or removing it)."""
    return _writes_under_way > 0


def defer_while_writing(action: Callable[[], None]) -> bool:
    """If a write is under way, queue ``action`` (e.g. raising KeyboardInterrupt) to run as soon as the write
    has ended (published or cleaned up) and return True; else return False and do nothing. For signal
    handlers of a program that owns its process: the library installs none."""
    if _writes_under_way > 0:
        _deferred.append(action)
        return True
    return False


@contextlib.contextmanager
def _under_way() -> Iterator[None]:
    global _writes_under_way
    _writes_under_way += 1
    try:
        yield
    finally:
        _writes_under_way -= 1
        if _writes_under_way == 0 and _deferred:
            actions = list(_deferred)
            _deferred.clear()
            for action in actions:
                action()


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
def atomic_path(path: PathLike, *, overwrite: bool = False, interruptible: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (for writers that want a file name, such as
    ONNX or TorchScript savers); on a clean exit it is synced and moved into place, on any exception (Ctrl-C
    included) it is removed. Raises InputError (one line naming the file) when the folder is missing or not
    writable, or when ``path`` exists and ``overwrite`` is False. ``interruptible``: a long streaming write (a
    video) whose caller handles Ctrl-C itself and finishes the file: interrupts are not deferred until it ends."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file name")
    if not overwrite and os.path.lexists(path):
        raise InputError(f"{path}: exists; use --overwrite (overwrite=True) to replace it")
    with contextlib.nullcontext() if interruptible else _under_way():
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


def rescue_dir() -> Path:
    """The folder where :func:`write_or_rescue` keeps results it could not write: ``$STYLETX_RESCUE_DIR``, else
    ``styletx-rescued`` in the system's temporary folder (created when needed)."""
    env = os.environ.get(ENV_RESCUE_DIR)
    return Path(env).expanduser() if env else Path(tempfile.gettempdir()) / "styletx-rescued"


def write_or_rescue(path: PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write ``path`` atomically with ``write(temporary path)``; when that fails for a reason found only while
    writing (disk full, the folder made read-only or removed during the run), write the same content into
    :func:`rescue_dir` under a fresh name and raise InputError saying where it is. A refusal to replace an
    existing file is raised as is (nothing was lost: the caller checked before the work)."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            write(tmp)
        return path
    except InputError as e:
        if not overwrite and os.path.lexists(path) and not path.is_dir():
            raise
        failure = e
    folder = rescue_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rescued = folder / f"{path.stem}.{secrets.token_hex(3)}{path.suffix}"
        with atomic_path(rescued) as tmp:
            write(tmp)
    except (InputError, OSError) as e2:
        raise InputError(f"{failure}; keeping it in {str(folder)!r} failed too ({one_line(e2)})") from None
    raise InputError(f"{failure}; the result was kept in {rescued}") from None
