"""Guards on the files of a run: inputs must be regular files, outputs never an input, output folders writable.

Every entry point (``run``, ``run --model``, ``train``, ``export``, ``score``, ``weights`` and the API) checks
its paths here before any work: a FIFO, device or socket given as an input is refused before it is opened
(opening one would block or read forever), a file that the run reads is never one it writes (compared by
resolved path and by inode, so links and ``./x`` spellings are caught), and the folder of every output is
proven writable by creating and removing a hidden temporary file in it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable, Optional, Union

from .errors import InputError

__all__ = ["file_problem", "same_file", "check_not_an_input", "check_writable_folder"]

PathLike = Union[str, "os.PathLike[str]"]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_problem(path: PathLike, *, folder_ok: bool = False) -> Optional[str]:
    """Why ``path`` cannot be read as an input file, or None when it is a regular file (or, with ``folder_ok``,
    a folder). Only ``stat`` is called: nothing is opened, so a FIFO or a device cannot block the caller."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file" + (" or folder" if folder_ok else "")
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return None if folder_ok else "is a folder, not a file"
    for test, kind in _KINDS:
        if test(st.st_mode):
            return f"is {kind}, not a regular file"
    return "is not a regular file"


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal resolved paths, or (both existing) the same inode."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_an_input(output: PathLike, inputs: Iterable[Optional[PathLike]], what: str = "output") -> None:
    """InputError when ``output`` is one of ``inputs`` (None entries and non-path inputs are ignored):
    whatever the flags, a run never writes a file it reads."""
    for src in inputs:
        if isinstance(src, (str, os.PathLike)) and same_file(output, src):
            raise InputError(f"{output}: the {what} would replace the input {src} (a run never writes a file "
                             "it reads); choose another name")


def check_writable_folder(folder: PathLike, name: Optional[PathLike] = None) -> None:
    """Prove that files can be created in ``folder``: create a hidden temporary file there and remove it.
    InputError naming ``name`` (or the folder) when the folder is missing, not a folder, or not writable."""
    folder = Path(folder)
    label = str(name) if name is not None else str(folder)
    if not folder.exists():
        raise InputError(f"{label}: output folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputError(f"{label}: {str(folder)!r} is not a folder")
    probe = folder / f".styletx-write-test.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise InputError(f"{label}: cannot write in {str(folder)!r} ({e.strerror or e})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
