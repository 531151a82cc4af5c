"""Usage errors and help in segcli's manners (SPEC §2), on top of Typer's Click classes.

A usage error is two lines on stderr and exit 2, not a boxed panel::

    segcli: error: no such option: --bogus
      see 'segcli segment --help'

Help is plain text that fits 80 columns, with a metavar for each value (``--as-of DATE``,
``INPUT...``) instead of Typer's type labels (``<str>``, ``{inputs}``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# The value each option or argument takes, by parameter name, as its help shows it.
METAVARS = {
    "inputs": "INPUT", "output": "FILE", "previous": "PREV", "config": "FILE", "as_of": "DATE",
    "window_days": "DAYS", "encoding": "ENCODING", "sheet": "SHEET", "header_row": "ROW", "separator": "SEP",
    "column": "ROLE=HEADER", "allow": "KIND", "max_invalid": "N", "threads": "N", "memory_limit": "SIZE",
    "fmt": "FORMAT", "plot": "FILE", "assignments": "ASSIGNMENTS", "prev": "PREV", "curr": "CURR",
    "from_": "FILE", "path": "PATH", "font": "FONT", "profile": "NAME", "changes_from": "PREV",
    "db_table": "TABLE", "db_query": "SQL",
}


def help_hint(command_path: str) -> str:
    return f"  see '{command_path} --help'"


def usage_error_lines(exc: typer.TyperException, command_path: str) -> list[str]:
    """Click's usage error -> ``segcli: error: <what>`` and a hint to the command's --help
    (``command_path`` when the error carries no context, e.g. an option without its value)."""
    text = " ".join(exc.format_message().split())  # one line, single spaces
    text = text.replace("Value error, ", "")  # the prefix of Typer's validator messages
    text = text[:1].lower() + text[1:] if text[1:2].islower() else text  # "Missing" -> "missing"
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else command_path
    return [f"segcli: error: {text.rstrip('.')}", help_hint(command)]


class SegcliGroup(TyperGroup):
    """The ``segcli`` group: runs Click non-standalone so that usage errors are printed here."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # Click's exceptions derive from it
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `segcli`: the help, as Click does
                sys.stderr.write(exc.format_message() + "\n")
            elif getattr(exc, "exit_code", 1) == 2:
                sys.stderr.write("\n".join(usage_error_lines(exc, self._command_path(prog_name, argv))) + "\n")
            else:
                sys.stderr.write(f"segcli: error: {exc.format_message()}\n")
            sys.exit(getattr(exc, "exit_code", 1))
        except typer.Abort:
            sys.stderr.write("segcli: aborted\n")
            sys.exit(1)
        # non-standalone Click returns the command's return value (None) or an Exit's code
        code = code if isinstance(code, int) else 0
        if code == 2:  # a usage error the command found itself (SPEC §2: 2 is only that)
            sys.stderr.write(help_hint(self._command_path(prog_name, argv)) + "\n")
        sys.exit(code)

    def _command_path(self, prog_name: str | None, args: Sequence[str]) -> str:
        """``segcli config show`` from the arguments: the command names they walk through."""
        path: list[str] = [prog_name or self.name or "segcli"]
        group: TyperGroup = self
        for arg in args:
            command = group.commands.get(arg)
            if command is not None:
                path.append(arg)
                if not isinstance(command, TyperGroup):
                    break
                group = command
        return " ".join(path)


class SegcliCommand(TyperCommand):
    """A command whose help names values by metavar and whose usage line reads
    ``segcli segment [OPTIONS] INPUT...``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = METAVARS.get(param.name or "") or _choices(param)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        # Typer writes a required argument as {name}; the Unix convention is the bare name
        return [p.replace("{", "").replace("}", "") for p in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":  # Typer adds a type label (<list[str]>)
                args.append((f"{param.metavar}{'...' if param.nargs != 1 else ''}", record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _choices(param: Any) -> str | None:
    """``[D|W]`` for an option with fixed choices (an Enum)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or not getattr(desc, "is_choice", False):
        return None
    return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
