"""``python -m segcli`` and the ``segcli`` console script.

``--threads`` must take effect before Polars starts its thread pool, which happens when
Polars is imported, so it is read here, before the CLI (and Polars) are imported. For the
same start-up reason ``segcli --version`` alone is answered here without importing the CLI.

The process also ends here, the same way for every command: SIGTERM (cron, systemd,
``timeout``) cleans up like Ctrl-C and exits 143, standard output is flushed while an error
can still be reported (exit 73), and the exit itself skips the interpreter's shutdown, during
which native threads (Arrow's, Polars') could abort the process.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import io
import os
import signal
import sys
import threading

EXIT_SIGTERM = 128 + 15  # what a shell reports for a process ended by SIGTERM
OUTPUT_ERROR = 73  # SPEC §2: output cannot be written
_SIGTERM_WAITER = False


def _threads_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


def _on_sigterm() -> None:
    """Wait for SIGTERM in a thread of its own, then remove this run's temporary files and
    exit 143 at once.

    A Python signal handler would run only when the main thread is back in Python, and a
    Polars query or Parquet write can hold it for minutes (systemd kills after 90 s). SIGTERM
    is blocked in every other thread (the mask is inherited), so it is delivered here.
    """
    signal.sigwait({signal.SIGTERM})
    io_module = sys.modules.get("segcli.io")
    if io_module is not None:
        io_module.remove_temporaries()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write("segcli: terminated (SIGTERM): temporary files removed\n")
        sys.stderr.flush()
    os._exit(EXIT_SIGTERM)


def _install_sigterm() -> None:
    global _SIGTERM_WAITER
    if _SIGTERM_WAITER or not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigwait"):
        return  # installed, or not POSIX: the default action stays
    _SIGTERM_WAITER = True
    # before any other thread exists (Polars and Arrow start theirs when imported)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_on_sigterm, name="segcli-sigterm", daemon=True).start()


def _exit_code(exc: SystemExit) -> int:
    """The status ``sys.exit(code)`` means: None is 0, a message is 1 (printed)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


def _finish(code: int) -> None:
    """Flush standard output, run the exit handlers (the scratch folder), end the process.

    ``os._exit`` skips the interpreter's shutdown: there, an Arrow thread still releasing a
    Python object (the CSV reader's row handler, see ``io.count_ragged``) was stopped by
    CPython inside a C++ destructor, and std::terminate aborted about one run in 15 with
    SIGABRT (exit 134) after an error had been reported with its own code.
    """
    io_module = sys.modules.get("segcli.io")
    if io_module is not None:
        io_module.hold_if_terminating()  # SIGTERM's thread ends the process with 143
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        # buffered table text refused by /dev/full or a closed descriptor
        sys.stderr.write(f"segcli: error: cannot write to standard output: {getattr(exc, 'strerror', None) or exc}\n")
        code = code or OUTPUT_ERROR
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


class _ClosedStdout(io.TextIOBase):
    """Standard output when the shell closed it (``>&-``): writing is exit 73, not a crash."""

    def write(self, _text: object) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    @property
    def buffer(self) -> _ClosedStdout:  # binary writes (CSV to stdout) fail the same way
        return self


def _print_version() -> None:
    """``segcli --version``: the same line as the CLI's ``--version`` option prints."""
    from segcli import __version__

    sys.stdout.write(f"segcli {__version__}\n")
    sys.stdout.flush()


def main() -> None:
    threads = _threads_from_argv(sys.argv[1:])
    if threads and threads.isdigit() and int(threads) > 0:
        os.environ["POLARS_MAX_THREADS"] = threads
    # Unix manners: `segcli ... -o - | head` ends quietly instead of a BrokenPipeError.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _install_sigterm()
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
        # hold descriptor 1 on /dev/null, so that no file segcli opens (an output's temporary
        # file) becomes descriptor 1, where a native library's stray print would land
        with contextlib.suppress(OSError):
            if (fd := os.open(os.devnull, os.O_WRONLY)) != 1:
                os.close(fd)
    if sys.argv[1:] == ["--version"]:
        run = _print_version  # answered without loading the CLI (Typer, Polars): a start-up of ~0.05 s
    else:
        from segcli.cli import app

        run = functools.partial(app, prog_name="segcli")
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except OSError as exc:  # help or usage text refused by a closed or full standard output
        sys.stderr.write(f"segcli: error: cannot write to standard output: {exc.strerror or exc}\n")
        code = OUTPUT_ERROR
    _finish(code)


if __name__ == "__main__":
    main()
