"""``python -m segcli`` and the ``segcli`` console script.

``--threads`` must take effect before Polars starts its thread pool, which happens when
Polars is imported, so it is read here, before the CLI (and Polars) are imported.
"""

from __future__ import annotations

import os
import signal
import sys


def _threads_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


def main() -> None:
    threads = _threads_from_argv(sys.argv[1:])
    if threads and threads.isdigit() and int(threads) > 0:
        os.environ["POLARS_MAX_THREADS"] = threads
    # Unix manners: `segcli ... -o - | head` ends quietly instead of a BrokenPipeError.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from segcli.cli import app

    app(prog_name="segcli")


if __name__ == "__main__":
    main()
