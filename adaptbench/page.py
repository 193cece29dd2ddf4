"""One self-contained HTML page of a study: DataFrames and Figures in, an HTML string out.

The page holds the protocol in words, the run counts and their provenance, every report table
and every figure, and the claims with their verdicts. It works offline and is printable: the
CSS is inline, the fonts are the reader's own, and each figure is a PNG in a `data:` URI, so
the page never refers to another file or to the network. Every text that comes from the
database (a study label, a task name) is HTML-escaped. Table cells show the same text as the
terminal table (`render`). Never imports torch and never queries: `cli.report` gathers the
frames (`Content`) through the reports' own code.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from adaptbench import render

FIGURE_DPI = 150  # a 7-inch figure is ~1050 pixels wide: sharp on a laptop, small enough to embed
VERDICT_CLASS = {"supported": "good", "not supported": "bad", "not enough data": "unknown"}


@dataclass(frozen=True)
class Content:
    """What the page shows, as the reports compute it.

    `runs`: every run the filters name, of any status (status, role, study, package_version,
    torch_version, device, host, finished_at). `figures`: name -> a matplotlib Figure, or the
    reason there is none. Frames that are empty make their section say why."""

    protocol: str
    notes: tuple[str, ...]
    filters: str
    runs: pd.DataFrame
    database: str
    made_at: datetime
    version: str
    summary: pd.DataFrame
    wins: Mapping[str, pd.DataFrame]
    ranks: Mapping[str, pd.DataFrame]
    lr: Mapping[str, pd.DataFrame]
    tunability: pd.DataFrame
    speed: Mapping[str, pd.DataFrame]
    profile: pd.DataFrame
    verdicts: pd.DataFrame
    statistics: pd.DataFrame
    missing: pd.DataFrame
    figures: Mapping[str, Any] = field(default_factory=dict)


def esc(text: Any) -> str:
    """Text as HTML, quotes included (safe in element content and in attributes)."""
    return html.escape(str(text), quote=True)


def table(df: pd.DataFrame, caption: str | None = None) -> str:
    """A frame as an HTML table with the terminal's cells (`render.terminal_view`: 4
    significant digits, lrs as 3e-04, '-' for missing, `X [low, high]` for an interval);
    numbers right-aligned, free text wrapping, verdicts coloured."""
    columns = render.terminal_view(render._flat(df))

    def cls(column: render.ViewColumn, cell: str = "") -> str:
        name = ("num" if column.numeric else "text" if column.wrap else "")
        if column.key == "verdict":
            name = VERDICT_CLASS.get(cell, name)
        return f' class="{name}"' if name else ""

    head = "".join(f"<th{cls(c)}>{esc(c.header)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td{cls(c, cell)}>{esc(cell)}</td>"
                                    for c, cell in zip(columns, row)) + "</tr>"
                   for row in zip(*(c.cells for c in columns)))
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return (f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def figure(fig: Any, alt: str) -> str:
    """A matplotlib Figure as an embedded PNG (a data: URI), closed afterwards."""
    from adaptbench import plots

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    plots.pyplot().close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
            f'<figcaption>{esc(alt)}</figcaption></figure>')


def empty(text: str) -> str:
    """Why a section or a table has nothing to show."""
    return f'<p class="empty">{esc(text)}</p>'


def _figure_or_why(c: Content, name: str, alt: str) -> str:
    value = c.figures.get(name)
    if value is None:
        return empty(f"figure {name}: not drawn")
    if isinstance(value, str):
        return empty(f"figure {name}: {value}")
    return figure(value, alt)


def _table_or_why(df: pd.DataFrame, caption: str, why: str) -> str:
    return table(df, caption) if len(df) else empty(f"{caption}: {why}")


def _counts(values: pd.Series) -> str:
    """'a (3 runs), b (1 run)' over the non-missing values, most frequent first."""
    counts = values.dropna().astype(str).value_counts()
    if counts.empty:
        return "not recorded"
    return ", ".join(f"{name or '(none)'} ({n} run{'s' if n != 1 else ''})"
                     for name, n in counts.items())


def _when(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if pd.notna(value) else "-"


def _reading(c: Content) -> str:
    notes = "".join(f"<li>{esc(n)}</li>" for n in c.notes)
    return (
        f"<p><b>Protocol:</b> {esc(c.protocol)}.</p>"
        "<p>Figures are the final metric of each (task, optimizer) at its selected learning "
        "rate: mean with a 95% t-interval over seeds (n = 1 shows none); a diverged run is a "
        "result and counts as a loss. Win rates pair runs by (task, seed): win 1, tie ½, "
        "loss 0; tasks of a type weigh equally. Ranks: 1 = best. Every table here is what "
        "<code>adaptbench report …</code> prints for the same filters, with numbers to 4 "
        "significant digits; <code>--format csv</code> gives them at full precision.</p>"
        + (f"<p><b>Notes on the selection:</b></p><ul>{notes}</ul>" if notes else "")
        + f"<p><b>Filters:</b> {esc(c.filters or 'none (every run in the database)')}</p>")


def _runs(c: Content) -> str:
    runs = c.runs
    if runs.empty:
        return empty("no runs match the filters")
    counts = (runs.assign(role=runs["role"].fillna("selection"))
              .groupby(["status", "role"]).size().unstack(fill_value=0))
    counts = counts.assign(total=counts.sum(axis=1))
    counts.loc["total"] = counts.sum()
    counts.index.name = "status"
    counts.columns.name = None
    return table(counts.reset_index(), "runs by status and role")


def _provenance(c: Content) -> str:
    runs = c.runs
    finished = runs["finished_at"].dropna() if "finished_at" in runs else pd.Series([], dtype=object)
    span = (f"{_when(finished.min())} to {_when(finished.max())}" if len(finished)
            else "no run has finished")
    studies = _counts(runs["study"].replace("", "(no study label)")) if len(runs) else "-"
    items = [
        ("studies", studies),
        ("adaptbench versions of the runs", _counts(runs.get("package_version", pd.Series()))),
        ("torch versions", _counts(runs.get("torch_version", pd.Series()))),
        ("devices", _counts(runs.get("device", pd.Series()))),
        ("hosts", _counts(runs.get("host", pd.Series()))),
        ("runs finished", span),
        ("database", c.database),
        ("page made", f"{c.made_at:%Y-%m-%d %H:%M:%S %Z} with adaptbench {c.version}"),
    ]
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def _claims(c: Content) -> str:
    if c.verdicts.empty:
        return empty("claims: not enough data — no selected runs to check them on")
    parts = []
    for row in c.verdicts.itertuples():
        cls = VERDICT_CLASS.get(row.verdict, "unknown")
        stats = c.statistics[c.statistics["claim"] == row.claim].drop(columns="claim")
        parts.append(
            f'<div class="claim {cls}"><p><b>({esc(row.claim)}) {esc(row.statement)}</b></p>'
            f'<p><span class="verdict {cls}">{esc(str(row.verdict).upper())}</span> '
            f'{esc(row.reason)}</p>'
            + (f'<p class="scope">{esc(row.scope)}</p>' if getattr(row, "scope", "") else "")
            + (table(stats) if len(stats) else "") + "</div>")
    if len(c.missing):
        parts.append(table(c.missing, "(task, optimizer, steps) combinations with fewer seeds "
                                      "than the study's design at the selected lr"))
    parts.append(_figure_or_why(c, "claims", "each claim's statistics with 95% intervals, "
                                             "each against its threshold"))
    return "".join(parts)


def _many(frames: Mapping[str, pd.DataFrame], caption: str, why: str) -> str:
    if not frames:
        return empty(why)
    return "".join(table(df, caption.format(name=name)) for name, df in frames.items())


def sections(c: Content) -> list[tuple[str, str, str]]:
    """(anchor, heading, body HTML) of each section, in page order."""
    ranks = c.ranks
    return [
        ("reading", "How to read this", _reading(c)),
        ("runs", "Runs", _runs(c)),
        ("provenance", "Provenance", _provenance(c)),
        ("summary", "Summary", _table_or_why(
            c.summary, "final test metric per (task, optimizer) at the selected lr, mean ± 95% "
                       "t-interval over seeds", "no finished runs match")),
        ("wins", "Win rates", _many(
            c.wins, "{name}: win rate of the row over the column [95% interval]",
            "win rates: no task type with two or more optimizers")),
        ("ranks", "Ranks", _table_or_why(
            ranks.get("mean_ranks", pd.DataFrame()), "average rank per task type (1 = best), "
            "over the tasks that ran every optimizer", "no tasks with two or more optimizers")
         + _table_or_why(ranks.get("friedman", pd.DataFrame()), "Friedman test per task type",
                         "needs 3 or more optimizers and 2 or more tasks")
         + _table_or_why(ranks.get("pairwise", pd.DataFrame()), "Wilcoxon signed-rank per "
                         "pair, Holm-adjusted", "no pairs to test")),
        ("lr", "Learning-rate sensitivity", _many(
            c.lr, "{name}: mean final val metric by lr (* best, + within 5% of the best)",
            "lr sensitivity: no finished selection runs")
         + _table_or_why(c.tunability, "tunability: band of lrs within 5% of the best; "
                         "band_decades = log10(lr_high / lr_low)", "no finished selection runs")
         + _figure_or_why(c, "lr", "final val metric against lr; circle: the selected lr")),
        ("speed", "Speed", _many(
            c.speed, "{name}: rank at 10/25/100% of the budget (1 = best)",
            "speed: no runs with stored curves")
         + _figure_or_why(c, "speed", "mean rank at 10/25/100% of the budget")),
        ("profile", "Performance profiles", _table_or_why(
            c.profile, "performance profile area (1 = fastest on every task)",
            "no tasks with a target that every optimizer of their type ran")
         + _figure_or_why(c, "profile", "share of tasks solved within τ × the fastest steps")),
        ("claims", "Claims", _claims(c)),
        ("curves", "Learning curves", _figure_or_why(
            c, "curves", "val metric against steps, mean over seeds with 95% t-band")
         + (_figure_or_why(c, "trajectory", "paths on the Rosenbrock function")
            if "trajectory" in c.figures else "")),
    ]


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1240px;padding:1rem 1.5rem 3rem;color:#1b1b1b;line-height:1.45;
 font-size:15px}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin:2rem 0 .6rem;
 border-bottom:2px solid #ddd;padding-bottom:.2rem}
nav ol{columns:3;margin:.4rem 0 1rem;padding-left:1.4rem}nav a{text-decoration:none}
.scroll{overflow-x:auto;margin:0 0 1rem}
table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
.caption{font-weight:600;font-size:13px;margin:.9rem 0 .2rem}
th,td{border-bottom:1px solid #e3e3e3;padding:.2rem .45rem;text-align:left;white-space:nowrap}
th{background:#f3f4f6}td.num,th.num{text-align:right}
td.text{white-space:normal;min-width:18rem}tbody tr:nth-child(even){background:#fafafa}
td.good{color:#11661f;font-weight:600}td.bad{color:#a11818;font-weight:600}
td.unknown{color:#7a5a00;font-weight:600}
.claim{border-left:6px solid #999;padding:.3rem .9rem;margin:.8rem 0;background:#fafafa}
.claim.good{border-color:#1f8a36}.claim.bad{border-color:#c62828}.claim.unknown{border-color:#d29b00}
.verdict{display:inline-block;padding:.05rem .5rem;border-radius:3px;color:#fff;
 font-weight:700;font-size:.85rem}
.verdict.good{background:#1f8a36}.verdict.bad{background:#c62828}.verdict.unknown{background:#a87900}
.empty{color:#555;font-style:italic}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
code{background:#f3f4f6;padding:0 .2rem}
@media print{body{max-width:none;font-size:11px}nav{display:none}
 h2{break-after:avoid}figure,table,.claim{break-inside:avoid}.scroll{overflow:visible}}
"""


def build(c: Content, title: str = "adaptbench study report") -> str:
    """The whole page as one HTML document."""
    parts = sections(c)
    toc = "".join(f'<li><a href="#{a}">{esc(h)}</a></li>' for a, h, _ in parts)
    body = "".join(f'<section id="{a}"><h2>{esc(h)}</h2>{b}</section>' for a, h, b in parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(c.protocol)}</p></header>"
            f"<nav><b>Contents</b><ol>{toc}</ol></nav>{body}</body></html>\n")


__all__ = ["Content", "build", "sections", "table", "figure", "empty", "esc", "FIGURE_DPI"]
