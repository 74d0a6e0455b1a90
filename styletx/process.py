"""What the CLI does to its own process: SIGTERM and SIGHUP become Ctrl-C, and no signal cuts a write short.

Only the CLI imports this module (the library installs no handler and changes no process-wide state). While
:func:`signals_as_interrupts` is in force, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (a
KeyboardInterrupt, so every engine's "stop and keep the best so far" path runs for all three), except while a
file is being written (:func:`styletx.atomic.defer_while_writing`: the interrupt comes right after the file is
in place) or inside :func:`shielded` (the final save of a run: the signal is only recorded). The exit code of an
interrupted run is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from typing import Any, Iterator, Optional

from . import atomic
from .errors import StyletxWarning

__all__ = ["Interrupted", "signals_as_interrupts", "shielded", "received", "exit_code", "signal_name",
           "only_our_warnings", "SIGNALS"]

#: The signals treated as Ctrl-C (SIGHUP only where it exists).
SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)

_received: Optional[int] = None
_shield_depth = 0


class Interrupted(KeyboardInterrupt):
    """KeyboardInterrupt raised for SIGINT, SIGTERM or SIGHUP; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: Optional[int]) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum if signum is not None else signal.SIGINT).name
    except ValueError:
        return f"signal {signum}"


def received() -> Optional[int]:
    """The last signal received while the handlers were in force, or None."""
    return _received


def exit_code(default_signum: int = int(signal.SIGINT)) -> int:
    """128 + the signal received (130, Ctrl-C, when none was: a KeyboardInterrupt raised some other way)."""
    return 128 + int(_received if _received is not None else default_signum)


def _raise(signum: int) -> None:
    raise Interrupted(signum)


def _handler(signum: int, frame: Any) -> None:
    global _received
    _received = signum
    if _shield_depth > 0:
        return  # recorded; the shielded code finishes and the caller exits with 128 + signum
    if atomic.defer_while_writing(lambda: _raise(signum)):
        return  # raised as soon as the file being written is in place
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Install the handlers for the duration (main thread only; elsewhere nothing changes) and put the previous
    ones back after."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {}
    try:
        for s in SIGNALS:
            previous[s] = signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Run a block (the final save) to its end whatever signal comes: a signal is only recorded
    (:func:`received`)."""
    global _shield_depth
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1


@contextlib.contextmanager
def only_our_warnings(debug: bool = False) -> Iterator[None]:
    """Inside: styletx's own warnings are shown (once per place), third-party notices (torch's pickle and CUDA
    notices, Pillow's, ...) are not, unless ``debug``. Restored after."""
    with warnings.catch_warnings():
        if debug:
            warnings.simplefilter("default")
        else:
            warnings.simplefilter("ignore")
            warnings.simplefilter("default", StyletxWarning)
        yield
