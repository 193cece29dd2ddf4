"""Rendering any DataFrame as a Rich table, CSV, JSON or Markdown.

CSV and JSON are data: every value at full precision, no title. NaN is empty (CSV) or null
(JSON); ±∞ is inf / -inf (CSV) and the strings "inf" / "-inf" (JSON, which has no number for
it), so that "never reached" (∞) stays distinct from "not defined" (NaN). The table and Markdown are for reading: numbers shortened, missing values as '-'. When
the console is not a terminal the table is plain ASCII (no colour, no box drawing, no wrapping)
so that pipelines can read it.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "csv", "json", "markdown")
MISSING = "-"
SIGNIFICANT = 4

# Columns that hold a learning rate: shown compactly (3e-04 style when small).
_LR_COLUMNS = {"lr", "learning_rate"}


def stdout_console() -> Console:
    """The console for results on stdout: colour only on a terminal and only without NO_COLOR."""
    return Console(no_color=_no_color(), highlight=False)


def stderr_console() -> Console:
    """The console for messages on stderr (progress, warnings), with the same colour rules."""
    return Console(stderr=True, no_color=_no_color(), highlight=False)


def _no_color() -> bool:
    return os.environ.get("NO_COLOR", "") != ""


def render(
    df: pd.DataFrame, fmt: str, title: str | None = None, console: Console | None = None
) -> None:
    """Write a DataFrame to the console (stdout by default) as table, csv, json or markdown.

    A named index becomes leading columns; an unnamed one is not shown. `title` is shown above a table or
    Markdown table and left out of CSV and JSON, which stay plain data.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid format: {fmt!r} (choose from {', '.join(FORMATS)})")
    console = console or stdout_console()
    df = _flat(df)
    if fmt == "table":
        if console.is_terminal:
            console.print(to_table(df, title))
        else:
            console.file.write(plain_table(df, title))
            console.file.flush()
        return
    text = {"csv": to_csv, "json": to_json, "markdown": lambda d: to_markdown(d, title)}[fmt](df)
    # Write around Rich so that markup, wrapping and highlighting never touch data.
    console.file.write(text)
    console.file.flush()


def render_sections(
    sections: list[tuple[str, str | None, pd.DataFrame]], fmt: str, console: Console | None = None
) -> None:
    """Several named tables as one output: each (name, title, frame) in turn.

    table / markdown: the tables one after another, each under its title. JSON: one object
    mapping each name to its list of records. CSV: one table whose first column, `table`,
    names the section a row belongs to and whose other columns are the union of the sections'
    (empty where a section has no such column): `pd.read_csv(...).groupby("table")` gives the
    sections back.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid format: {fmt!r} (choose from {', '.join(FORMATS)})")
    console = console or stdout_console()
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
        text = to_csv(pd.concat(frames, ignore_index=True)) if frames else ""
    console.file.write(text)
    console.file.flush()


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

