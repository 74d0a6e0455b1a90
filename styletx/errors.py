"""The exceptions styletx raises. The CLI maps them to exit codes; nothing else catches them."""

from __future__ import annotations


class StyletxError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with: 2 for bad input or usage, 1 otherwise."""

    exit_code: int = 1


class InputError(StyletxError, ValueError):
    """Bad input from the user: a missing/unreadable/oversized image, an invalid option value, a bad path."""

    exit_code = 2


class ImageError(InputError):
    """An image file that cannot be read or written (names the file in its message)."""


class WeightsError(InputError):
    """Weight files that are missing, unreadable or fail their hash check (names file, URL, sha256, place)."""


class CheckpointError(InputError):
    """A transformer checkpoint that cannot be read or does not match any known architecture."""


class StyletxWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. falling back to the weight-free backbone)."""
