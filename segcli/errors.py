"""Errors raised by segcli's core; the CLI maps each to its exit code (SPEC §2)."""

from __future__ import annotations


class SegcliError(Exception):
    """Base class: a user-facing failure with an exit code and optional detail lines."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class UsageError(SegcliError):
    """The command line asks for something impossible."""

    exit_code = 2


class InputDataError(SegcliError):
    """The transactions are readable but bad: missing columns, unparsable values."""

    exit_code = 65


class InputMissingError(SegcliError):
    """An input path does not exist or cannot be read."""

    exit_code = 66


class OutputError(SegcliError):
    """An output cannot be written."""

    exit_code = 73


class ConfigError(SegcliError):
    """The configuration is invalid."""

    exit_code = 78
