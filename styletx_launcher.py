"""The ``styletx`` command's entry point: signals are handled from the first instant, before the slow imports.

Importing styletx (torch, torchvision) takes one to ten seconds; a Ctrl-C, SIGTERM or SIGHUP in that time would
otherwise print a traceback or end the process without a word. Here it prints one line and exits with
128 + the signal's number (nothing has been read or written yet). Then :func:`styletx.cli.main` takes over,
with its own handlers (docs/reliability.md). ``python -m styletx_launcher ...`` runs it the same way.
"""

from __future__ import annotations

import os
import signal
import sys


def _early(signum: int, frame: object) -> None:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    os.write(2, f"styletx: error: interrupted ({name}) while starting\n".encode())
    os._exit(128 + signum)


def main() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _early)
    from styletx.cli import main as cli_main  # the slow import, under the handlers above

    cli_main(prog_name="styletx")


if __name__ == "__main__":
    sys.exit(main())
