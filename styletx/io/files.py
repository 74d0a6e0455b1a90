"""Files around a run: listing the input images of folders, and naming outputs that never clobber by accident.

(Writing itself goes through the one atomic writer, :mod:`styletx.atomic`.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..errors import InputError
from ..paths import file_problem

__all__ = ["IMAGE_SUFFIXES", "list_images", "default_output_path", "output_paths", "ensure_folder"]

PathLike = Union[str, "os.PathLike[str]"]

#: File name endings taken as images when a folder is given.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(sources: Sequence[PathLike], *, recursive: bool = True) -> List[Path]:
    """Image files named in ``sources``: files as given, folders expanded (recursively, sorted, by extension,
    hidden files skipped). Raises InputError naming a source that does not exist."""
    out: List[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            pattern = p.rglob("*") if recursive else p.glob("*")
            found = sorted(
                q for q in pattern
                if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            out.extend(found)
        else:
            problem = file_problem(p, folder_ok=True)  # a FIFO or a device would block: refused before opening
            if problem is not None:
                raise InputError(f"{p}: {problem}")
            out.append(p)
    return out


def default_output_path(content: PathLike, *, tag: str = "stylized", ext: str = ".png") -> Path:
    """A path next to ``content`` that does not exist yet: <stem>_<tag><ext>, then <stem>_<tag>-2<ext>, -3, ..."""
    content = Path(content)
    ext = ext if ext.startswith(".") else "." + ext
    stem = f"{content.stem}_{tag}" if tag else content.stem
    candidate = content.with_name(stem + ext)
    n = 2
    while os.path.lexists(candidate):
        candidate = content.with_name(f"{stem}-{n}{ext}")
        n += 1
    return candidate


def output_paths(inputs: Sequence[Path], output: Optional[PathLike], suffix: str = ".png") -> List[Path]:
    """Where each of ``inputs`` is written: None -> next to each input (``name_stylized.png``, a free name);
    a file name for one input; a folder (an existing one, a name without an extension, or any name when there
    are several inputs) -> ``folder/name_stylized.png``, numbered when two inputs share a stem."""
    if output is None:
        return [default_output_path(p, ext=suffix) for p in inputs]
    output = Path(output)
    if not (output.is_dir() or len(inputs) > 1 or not output.suffix):
        return [output]
    names: Dict[str, int] = {}
    paths = []
    for p in inputs:
        stem = f"{p.stem}_stylized"
        n = names.get(stem, 0)
        names[stem] = n + 1
        paths.append(output / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n + 1}{suffix}"))
    return paths


def ensure_folder(folder: PathLike) -> Path:
    """Create ``folder`` if it does not exist (its parent must); raises InputError when that cannot be done."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    if not folder.parent.is_dir():
        raise InputError(f"{folder}: cannot create the output folder: {str(folder.parent)!r} does not exist")
    try:
        folder.mkdir()
    except FileExistsError:
        raise InputError(f"{folder}: exists and is not a folder") from None
    except OSError as e:
        raise InputError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    return folder
