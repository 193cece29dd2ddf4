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
# the stop signals this process was started with ignored (`nohup` ignores SIGHUP, a shell's
# background job SIGINT): they stay ignored, here and in `worker`/`run`
IGNORED_AT_START: frozenset[int] = frozenset()


def _stopped(signum: int, _frame: object) -> None:
    raise SystemExit(130)


def main() -> None:
    global IGNORED_AT_START
    IGNORED_AT_START = frozenset(sig for sig in (*STARTUP_SIGNALS, signal.SIGINT)
                                 if signal.getsignal(sig) is signal.SIG_IGN)
    for signum in STARTUP_SIGNALS:
        if signum not in IGNORED_AT_START:
            signal.signal(signum, _stopped)
    # Ctrl-C too, while importing only (a KeyboardInterrupt there would end in a traceback; the
    # commands handle it themselves once they run)
    interrupt = signal.getsignal(signal.SIGINT)
    if signal.SIGINT not in IGNORED_AT_START:
        signal.signal(signal.SIGINT, _stopped)
    from adaptbench.cli import main as command_line

    signal.signal(signal.SIGINT, interrupt)
    command_line()
