"""The console script's first lines: from the moment Python runs them, SIGTERM and SIGHUP (and
Ctrl-C, until the command line is imported) stop a command with exit 130 (a `SystemExit`, so
open transactions roll back), as README says a stopped command exits, instead of killing it by
the signal while the command line is still being imported (typer, rich, SQLAlchemy: a second or
more on a busy machine). `worker` and `run` then set up their own handling (their runs go back
to the queue)."""

from __future__ import annotations

import signal

STARTUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                        if hasattr(signal, name))


def _stopped(signum: int, _frame: object) -> None:
    raise SystemExit(130)


def main() -> None:
    for signum in STARTUP_SIGNALS:
        signal.signal(signum, _stopped)
    # Ctrl-C too, while importing only (a KeyboardInterrupt there would end in a traceback; the
    # commands handle it themselves once they run), unless it is ignored (a background job)
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stopped)
    from adaptbench.cli import main as command_line

    signal.signal(signal.SIGINT, interrupt)
    command_line()
