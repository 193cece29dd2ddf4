"""What every command shares: the Typer apps, the option types, the run filter, the flags.

The command line is its own layer: it parses, calls the core and renders; the core knows
nothing of flags or terminals (its errors say which setting is at fault, `FLAGS` names the flag).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from adaptbench.errors import UserError


def _click_class(name: str) -> type[Exception]:
    """A click exception class as this Typer uses it (Typer may vendor its own click)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise ImportError(name)


_ClickException = _click_class("ClickException")
_UsageError = _click_class("UsageError")

class _ReaderGone(Exception):
    """Stdout's reader went away (`adaptbench ls | head -1`)."""


class _Group(TyperGroup):
    # Click turns a closed pipe into exit 1 before `main` sees it; pass it on as our own.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _ReaderGone from exc


app = typer.Typer(
    cls=_Group,
    help="Benchmark deep-learning optimizers: queue runs, train them, report with statistics.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
)
report_app = typer.Typer(help="Aggregate stored runs into statistical comparisons.", rich_markup_mode=None)
app.add_typer(report_app, name="report")


def _print_version(value: bool) -> None:
    if value:
        from adaptbench import __version__

        print(f"adaptbench {__version__}")
        raise typer.Exit(0)


@app.callback()
def _top(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)] = False,
) -> None:
    # Options of `adaptbench` itself, before any command; the help text is the app's.
    pass


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


class DataFormat(str, Enum):
    """The formats of the commands that export data (ls, curves, report): Format's, and Parquet,
    which is binary and so goes to a file (--output), never to stdout."""

    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    parquet = "parquet"


PARQUET_INSTALL = "pip install 'adaptbench[parquet]'"


def check_output(fmt: str, output: str | None) -> None:
    """Refuse a --format / --output pair that cannot work, before anything is loaded."""
    if fmt != DataFormat.parquet:
        if output is not None:
            raise UserError("--output is for --format parquet; the other formats go to stdout "
                            "(redirect it: `> FILE`)")
        return
    if output is None:
        raise UserError("--format parquet writes a file: add --output FILE.parquet")
    if not output.lower().endswith(".parquet"):
        raise UserError(f"--output must name a .parquet file, got {output!r}")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError(f"--format parquet needs pyarrow: {PARQUET_INSTALL}") from None


DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL or SQLite file [env ADAPTBENCH_DB; default sqlite:///results.db]"),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
DataFormatOpt = Annotated[DataFormat, typer.Option("--format", "-f", help="Output format; parquet needs --output.")]
OutputOpt = Annotated[str | None, typer.Option("--output", help="The file --format parquet writes (FILE.parquet; several tables are one file with a `table` column, as in CSV).", show_default=False)]
WideOpt = Annotated[bool, typer.Option("--wide", help="In a terminal, show every column even when the table is wider than the console (by default the least important are hidden, with a note).")]
TasksDirOpt = Annotated[
    list[str] | None,
    typer.Option("--tasks-dir", help="Extra folder of task files (repeatable) [env ADAPTBENCH_TASKS]."),
]
ListOpt = list[str] | None


RunIdsArg = Annotated[list[int] | None, typer.Argument(help="Run ids (see `adaptbench ls`).", show_default=False)]


def _filter(
    run_ids: list[int] | None = None, task: ListOpt = None, optim: ListOpt = None,
    study: ListOpt = None, status_: ListOpt = None, task_type: ListOpt = None,
) -> Any:
    """The RunFilter that the filter options describe (one type for every command)."""
    from adaptbench.filters import RunFilter
    from adaptbench.spec import split_list

    return RunFilter(
        run_ids=tuple(run_ids or ()), tasks=tuple(split_list(task)),
        task_types=tuple(split_list(task_type)), optimizers=tuple(split_list(optim)),
        studies=tuple(split_list(study)), statuses=tuple(split_list(status_)),
    )


# the flag of each setting a core error can be about (`UserError.about`)
FLAGS = {"status": "--status", "task": "--task", "task type": "--task-type",
         "optimizer": "--optim", "study": "--study", "run id": "RUN_IDS", "split": "--split",
         "within": "--within", "seeds": "--seeds", "steps": "--steps",
         "batch size": "--batch-size", "device": "--device", "eval seeds": "--eval-seeds"}


