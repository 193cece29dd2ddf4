"""The adaptbench command line: parse, call the core, render. No logic of its own.

Data goes to stdout (a table in a terminal, plain text, CSV, JSON or Markdown otherwise);
messages and progress go to stderr. Mistakes in the input are one line on stderr and exit 2.
One module per command group: `runs` (run, queue, worker, ls, …), `report`, `plot`, `db`;
`common` holds what they share. Importing this package registers every command on `app`.
"""

from __future__ import annotations

import os
import sys

import typer

from adaptbench.cli import db, plot, report, runs  # noqa: F401  (registers every command)
from adaptbench.cli.common import FLAGS, _ClickException, _ReaderGone, _UsageError, app
from adaptbench.errors import UserError


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit 2 for anything the user can fix; a reader
    that goes away (`adaptbench ls | head -1`) is not an error: exit 0."""
    try:
        _dispatch(argv)
    except SystemExit:
        try:
            sys.stdout.flush()  # now, not at interpreter exit, where a closed pipe means exit 120
        except BrokenPipeError:
            _stdout_gone()
        raise
    except (BrokenPipeError, _ReaderGone):
        _stdout_gone()
        sys.exit(0)


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that flushing what is left of its buffer at exit cannot
    fail again (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _dispatch(argv: list[str] | None) -> None:
    """Run the command; always ends in SystemExit with the command's exit code."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="adaptbench")
    except UserError as exc:
        flag = FLAGS.get(exc.about or "")
        print(f"adaptbench: error: {flag + ': ' if flag else ''}{exc}", file=sys.stderr)
        sys.exit(2)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(0)
        hint = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
        print(f"adaptbench: error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    except _ClickException as exc:
        print(f"adaptbench: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("adaptbench: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a full disk, a server gone: one line; a bug stays a traceback
        from adaptbench.faults import user_message

        message = user_message(exc)
        if message is None:
            raise
        print(f"adaptbench: error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
