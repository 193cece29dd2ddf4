"""Rendering any DataFrame as a Rich table, CSV, JSON or Markdown (or a Parquet file).

CSV and JSON are data: every value at full precision, no title. NaN is empty (CSV) or null
(JSON); ±∞ is inf / -inf (CSV) and the strings "inf" / "-inf" (JSON, which has no number for
it), so that "never reached" (∞) stays distinct from "not defined" (NaN). The table and Markdown are for reading: numbers shortened, missing values as '-'. When
the console is not a terminal the table is plain ASCII (no colour, no box drawing, no wrapping)
so that pipelines can read it.

In a terminal the table is fitted to the console (`terminal_view`): a number or a name is never
broken across lines (only free text such as a description wraps, at spaces), each value with
its interval (`X`, `ci_low`, `ci_high`) shares one column `X [low, high]`, and when that is still
too wide the least important columns are hidden (`HIDE_ORDER`), with a note on stderr, unless
`wide` is asked for.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "csv", "json", "markdown", "parquet")
MISSING = "-"
SIGNIFICANT = 4

# Columns that hold a learning rate: shown compactly (3e-04 style when small).
_LR_COLUMNS = {"lr", "learning_rate"}

# Free text: the only columns a terminal table wraps (at spaces). Every other cell is a number,
# a name or a short label and is never broken.
FREE_TEXT = frozenset({"description", "verdict", "detail", "reason", "error", "statement",
                       "reference", "note", "settings", "update", "differs"})

# Which columns a terminal table hides first when it is too wide for the console (a merged
# interval column goes by its value's name, e.g. "loss_mean"). Columns not listed (identifiers
# and the headline figures: task, optimizer, lr, mean, win_rate, advantage, verdict, ...) are
# never hidden.
HIDE_ORDER = (
    # bookkeeping
    "attempts", "wall_seconds", "eval_every", "batch_size", "examples", "params", "reference",
    "warmup", "clip_grad_norm", "held_out", "claims", "first_started", "build_h",
    # the loss beside the metric
    "loss_mean", "loss_iqm", "final_test_loss", "final_val_loss", "final_train_loss",
    # labels the title or the task already implies
    "metric_name", "task_type", "type", "higher_is_better", "better", "source", "statistic",
    "resampled", "schedule", "study", "lrs",
    # counts and secondary figures
    "selection_n", "eval_n", "a_diverged", "b_diverged", "all_diverged", "diverged_at_step",
    "diverged", "effect_size", "even", "pairs", "a_mean", "b_mean", "target", "seconds",
    "steps", "metric", "seed", "n", "p_value", "gradient_density", "twin",
    # the secondary columns of the wide reports (speed, lr, ranks, wins)
    "read_10", "read_25", "read_100", "reached", "band_lrs", "left_out", "opponent_runs", "runs",
    "seeds", "p_holm", "lr_low", "lr_high", "rank_25", "steps_to_target", "tasks",
)


class PipeConsole(Console):
    """A Console that lets a closed pipe (`adaptbench ... | head`) reach the entry point as
    BrokenPipeError, which ends the command with exit 0; Rich's own handling exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    """The console for results on stdout: colour only on a terminal and only without NO_COLOR."""
    return PipeConsole(no_color=_no_color(), highlight=False)


def stderr_console() -> Console:
    """The console for messages on stderr (progress, warnings), with the same colour rules."""
    return PipeConsole(stderr=True, no_color=_no_color(), highlight=False)


def _no_color() -> bool:
    return os.environ.get("NO_COLOR", "") != ""


def render(
    df: pd.DataFrame, fmt: str, title: str | None = None, console: Console | None = None,
    wide: bool = False, output: str | None = None,
) -> None:
    """Write a DataFrame to the console (stdout by default) as table, csv, json or markdown,
    or to the file `output` as parquet.

    A named index becomes leading columns; an unnamed one is not shown. `title` is shown above a table or
    Markdown table and left out of CSV and JSON, which stay plain data. `wide`: a terminal
    table shows every column even when it is wider than the console.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid format: {fmt!r} (choose from {', '.join(FORMATS)})")
    df = _flat(df)
    if fmt == "parquet":
        to_parquet(df, _path(output))
        return
    console = console or stdout_console()
    if fmt == "table":
        if console.is_terminal:
            _note_hidden(_print_fitted(df, title, console, wide), console.width)
        else:
            console.file.write(plain_table(df, title))
            console.file.flush()
        return
    text = {"csv": to_csv, "json": to_json, "markdown": lambda d: to_markdown(d, title)}[fmt](df)
    # Write around Rich so that markup, wrapping and highlighting never touch data.
    console.file.write(text)
    console.file.flush()


def render_sections(
    sections: list[tuple[str, str | None, pd.DataFrame]], fmt: str, console: Console | None = None,
    wide: bool = False, output: str | None = None, hide_order: Sequence[str] = HIDE_ORDER,
) -> None:
    """Several named tables as one output: each (name, title, frame) in turn.

    table / markdown: the tables one after another, each under its title; in a terminal the
    columns in `hide_order` are hidden in turn while a table is too wide. JSON: one object
    mapping each name to its list of records. CSV: one table whose first column, `table`,
    names the section a row belongs to and whose other columns are the union of the sections'
    (empty where a section has no such column): `pd.read_csv(...).groupby("table")` gives the
    sections back. Parquet: that same table, in the file `output`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid format: {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "parquet":
        to_parquet(_stacked(sections), _path(output))
        return
    console = console or stdout_console()
    if fmt == "table" and console.is_terminal:
        hidden: list[str] = []
        for _, title, df in sections:
            dropped = _print_fitted(_flat(df), title, console, wide, hide_order)
            hidden += [h for h in dropped if h not in hidden]
        _note_hidden(hidden, console.width)
        return
    if fmt in ("table", "markdown"):
        for i, (_, title, df) in enumerate(sections):
            if i and fmt == "markdown":
                console.file.write("\n")
            render(df, fmt, title=title, console=console)
        return
    if fmt == "json":
        payload = {name: json.loads(to_json(_flat(df))) for name, _, df in sections}
        text = json.dumps(payload, allow_nan=False) + "\n"
    else:
        text = to_csv(_stacked(sections)) if sections else ""
    console.file.write(text)
    console.file.flush()


def _stacked(sections: list[tuple[str, str | None, pd.DataFrame]]) -> pd.DataFrame:
    """The sections as one frame whose first column, `table`, names each row's section."""
    frames = []
    for name, _, df in sections:
        df = _flat(df)
        for column in df.columns:  # keep integers integral where another section has none
            if pd.api.types.is_integer_dtype(df[column]):
                df[column] = df[column].astype("Int64")
            elif pd.api.types.is_bool_dtype(df[column]):
                df[column] = df[column].astype("boolean")
        df.insert(0, "table", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"table": []})


def _path(output: str | None) -> str:
    if output is None:
        raise ValueError("Invalid output: parquet is written to a file; give its path")
    return output


def to_parquet(df: pd.DataFrame, path: str) -> None:
    """A Parquet file (through pyarrow) with the values as they are: NaN, ±∞ and integers kept.

    A column of mixed Python types (the union of several sections' columns) cannot be one
    Parquet type, so its values are stored as text there, missing values staying missing."""
    df = df.copy()
    for column in df.columns:
        if df[column].dtype == object:
            kinds = {type(v) for v in df[column] if not _is_missing(v)}
            if len(kinds) > 1:
                df[column] = df[column].map(lambda v: None if _is_missing(v) else str(v))
    df.to_parquet(path, index=False)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with a named index turned into columns (an unnamed one is just row labels,
    e.g. left by filtering, and is dropped) and column names as strings."""
    named = any(name is not None for name in df.index.names)
    df = df.reset_index(drop=not named)
    df.columns = [str(c) for c in df.columns]
    return df


def to_csv(df: pd.DataFrame) -> str:
    """CSV with a header; floats at full precision (round-trip exact), NaN as an empty field."""
    return df.to_csv(index=False, lineterminator="\n")


def to_json(df: pd.DataFrame) -> str:
    """A JSON list of records; floats at full precision, NaN and None as null, ±∞ as the
    strings "inf" and "-inf" (strict JSON: no NaN or Infinity literals)."""
    records = [
        {column: _plain(value) for column, value in zip(df.columns, row)}
        for row in df.itertuples(index=False, name=None)
    ]
    return json.dumps(records, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    """A value as a JSON-able Python object."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return float(value) if math.isfinite(value) else _inf(value)
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def to_markdown(df: pd.DataFrame, title: str | None = None) -> str:
    """A pipe table (GitHub Markdown) with the same cell text as the terminal table."""
    cells = _cells(df)
    numeric = [_is_numeric(df[c]) for c in df.columns]

    def line(items: list[str]) -> str:
        return "| " + " | ".join(item.replace("|", "\\|") for item in items) + " |"

    lines = [f"**{title}**", ""] if title else []
    if len(df.columns):
        lines.append(line(list(df.columns)))
        lines.append("|" + "|".join("---:" if num else "---" for num in numeric) + "|")
        lines.extend(line(list(row)) for row in zip(*cells.values()))
    return "\n".join(lines) + "\n" if lines else ""


def to_table(df: pd.DataFrame, title: str | None = None, plain: bool = False) -> Table:
    """A Rich Table of the frame; `plain` drops box drawing and styles for non-terminals."""
    table = Table(
        title=title,
        box=None if plain else box.SIMPLE_HEAVY,
        header_style="" if plain else "bold",
        title_style="" if plain else "bold",
        show_edge=not plain,
        pad_edge=not plain,
        safe_box=True,
    )
    cells = _cells(df)
    for column in df.columns:
        table.add_column(
            column,
            justify="right" if _is_numeric(df[column]) else "left",
            no_wrap=plain,
            overflow="fold",
        )
    for row in zip(*cells.values()):
        table.add_row(*(Text(cell) for cell in row))
    return table


def plain_table(df: pd.DataFrame, title: str | None = None) -> str:
    """The table as plain ASCII text at its natural width: no colour, no box, no wrapping."""
    table = to_table(df, None, plain=True)  # the title goes on its own line, never wrapped
    probe = Console(file=io.StringIO(), width=1_000_000, color_system=None)
    width = Measurement.get(probe, probe.options, table).maximum
    out = Console(
        file=io.StringIO(), width=max(width, 1), color_system=None, force_terminal=False,
        no_color=True, highlight=False, emoji=False, legacy_windows=False,
    )
    out.print(table)
    lines = out.file.getvalue().splitlines()
    return "".join(line.rstrip() + "\n" for line in ([title] if title else []) + lines)


@dataclass(frozen=True)
class ViewColumn:
    """One column of a terminal table: its header, its cells' text, and how it is laid out."""

    key: str  # the frame column it shows (for a merged interval: the value's column)
    header: str
    cells: list[str]
    numeric: bool
    wrap: bool


def terminal_view(df: pd.DataFrame) -> list[ViewColumn]:
    """The columns of a terminal table: every `X` followed by its `..ci_low` and `..ci_high`
    merged into one column `X [low, high]`; only free-text columns may wrap."""
    cells = _cells(df)
    names = list(df.columns)
    out: list[ViewColumn] = []
    i = 0
    while i < len(names):
        name = names[i]
        if _interval_follows(df, names, i):
            low, high = names[i + 1], names[i + 2]
            text = [_with_interval(v, lo, hi, df[name].iloc[k], df[low].iloc[k], df[high].iloc[k])
                    for k, (v, lo, hi) in enumerate(zip(cells[name], cells[low], cells[high]))]
            out.append(ViewColumn(name, f"{name} [low, high]", text, True, False))
            i += 3
            continue
        out.append(ViewColumn(name, name, cells[name], _is_numeric(df[name]),
                              name in FREE_TEXT and not _is_numeric(df[name])))
        i += 1
    return out


def _interval_follows(df: pd.DataFrame, names: list[str], i: int) -> bool:
    if i + 2 >= len(names) or not names[i + 1].endswith("ci_low"):
        return False
    low, high = names[i + 1], names[i + 2]
    return (high.endswith("ci_high") and low[: -len("ci_low")] == high[: -len("ci_high")]
            and all(_is_numeric(df[c]) for c in names[i: i + 3]))


def _with_interval(text: str, low: str, high: str, *values: Any) -> str:
    """'value [low, high]'; the value alone when it or its interval is missing."""
    missing = [v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) for v in values]
    if missing[0] or (missing[1] and missing[2]):
        return text
    return f"{text} [{low}, {high}]"


def fit(columns: list[ViewColumn], title: str | None, width: int, wide: bool = False,
        hide_order: Sequence[str] = HIDE_ORDER) -> tuple[Table, int, list[str]]:
    """The terminal table of `columns` for a console `width` columns wide: (table, the width
    to print it at, the columns hidden). Columns in `hide_order` are hidden in turn while the
    table cannot fit without breaking a number or name; if it still cannot (or `wide`), it is
    printed at its least width, wider than the console."""
    hidden: list[str] = []
    shown = list(columns)
    table, least = _terminal_table(shown, title)
    if not wide:
        for key in hide_order:
            if least <= width:
                break
            drop = [c for c in shown if c.key == key]
            if not drop or len(shown) == len(drop):
                continue
            shown = [c for c in shown if c.key != key]
            hidden += [c.key for c in drop]
            table, least = _terminal_table(shown, title)
    _share_out(table, shown, least, max(width, least))
    return table, max(width, least), hidden


def _share_out(table: Table, columns: list[ViewColumn], least: int, width: int) -> None:
    """Fix the widths of the wrapping columns of `table` (least wide without breaking a word)
    for printing it `width` columns wide.

    Left to itself, Rich narrows the widest wrapping columns first, blind to their longest
    words, so that with two or more it can break a word. Here each keeps its longest word and
    the width left is shared out level by level: the narrowest grow first, none past its
    longest cell."""
    wrapping = [(i, c) for i, c in enumerate(columns) if c.wrap]
    if not wrapping:
        return
    texts = [[c.header, *c.cells] for _, c in wrapping]
    lows = [max((cell_len(w) for t in ts for w in t.split()), default=1) for ts in texts]
    highs = [max(low, *map(cell_len, ts)) for low, ts in zip(lows, texts)]
    room = width - (least - sum(lows))
    level = max(highs)
    while level > 0 and sum(min(h, max(lo, level)) for lo, h in zip(lows, highs)) > room:
        level -= 1
    for (i, _), low, high in zip(wrapping, lows, highs):
        table.columns[i].width = min(high, max(low, level))


def _terminal_table(columns: list[ViewColumn], title: str | None) -> tuple[Table, int]:
    """The Rich table and the least width it fits in without breaking a word."""
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAVY,
                  header_style="bold", title_style="bold", safe_box=True)
    for c in columns:
        # Rich measures a cell's least width by its longest word even in a no_wrap column, and
        # would squeeze such a column to that and crop it; min_width keeps it whole.
        whole = None if c.wrap else max(map(cell_len, [c.header, *c.cells]))
        table.add_column(Text(c.header), justify="right" if c.numeric else "left",
                         no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis",
                         min_width=whole)
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*(Text(cell) for cell in row))
    probe = Console(file=io.StringIO(), width=1_000_000, color_system=None)
    return table, Measurement.get(probe, probe.options, table).minimum


def _print_fitted(df: pd.DataFrame, title: str | None, console: Console, wide: bool,
                  hide_order: Sequence[str] = HIDE_ORDER) -> list[str]:
    """Print the frame as a terminal table fitted to the console; the headers hidden. The title
    goes on lines of its own, wrapped at the console's width rather than the table's."""
    table, width, hidden = fit(terminal_view(df), None, console.width, wide, hide_order)
    if title:
        console.print(Text(title, style="bold"))
    if width <= console.width:
        console.print(table)
        return hidden
    # Wider than the console: lay it out at its own width (the terminal wraps the lines)
    # rather than let Rich crop numbers.
    PipeConsole(file=console.file, width=width, force_terminal=True,
            color_system=console.color_system, no_color=console.no_color, highlight=False,
            legacy_windows=False).print(table)
    return hidden


def _note_hidden(hidden: list[str], width: int) -> None:
    if hidden:
        stderr_console().print(
            f"note: hidden to fit {width} columns: {', '.join(hidden)} (--wide shows them)",
            markup=False, highlight=False, soft_wrap=True)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _cells(df: pd.DataFrame) -> dict[str, list[str]]:
    """The display text of every cell, column by column."""
    return {c: [_formatter(c, df[c])(v) for v in df[c]] for c in df.columns}


def _formatter(column: str, series: pd.Series) -> Callable[[Any], str]:
    """How to show one column's values, chosen from its name and dtype."""
    if pd.api.types.is_bool_dtype(series):
        return _missing_or(lambda v: "yes" if v else "no")
    if pd.api.types.is_integer_dtype(series):
        return _missing_or(lambda v: str(int(v)))
    if pd.api.types.is_float_dtype(series):
        if column in _LR_COLUMNS or column.endswith("_lr"):
            return _missing_or(format_lr)
        finite = series[np.isfinite(series.to_numpy(dtype=float, na_value=np.nan))]
        if len(finite) and bool((finite == finite.round()).all()) and finite.abs().max() < 1e15:
            return _missing_or(lambda v: str(int(v)) if math.isfinite(v) else _inf(v))
        return _missing_or(format_number)
    return _missing_or(str)


def _missing_or(show: Callable[[Any], str]) -> Callable[[Any], str]:
    def cell(value: Any) -> str:
        if value is None or value is pd.NA or value is pd.NaT:
            return MISSING
        if isinstance(value, (float, np.floating)) and math.isnan(value):
            return MISSING
        return show(value)

    return cell


def _inf(value: float) -> str:
    return "inf" if value > 0 else "-inf"


def format_number(value: float) -> str:
    """A float to 4 significant digits ('0.9123', '1.235e+04', 'inf')."""
    value = float(value)
    if not math.isfinite(value):
        return MISSING if math.isnan(value) else _inf(value)
    return f"{value:.{SIGNIFICANT}g}"


def format_lr(value: float) -> str:
    """A learning rate compactly: '0.1', '0.003', '3e-04', '1.5e-05'."""
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return format_number(value)
    if abs(value) >= 1e-3:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"

