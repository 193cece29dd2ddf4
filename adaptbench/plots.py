"""Figures from the runs a report's protocol selected: pure builders, DataFrames in, Figure out.

Each builder takes the frames `cli.plot` loads (the protocol's selected runs, their curves, the
statistics of `curves` and `claims`) and returns a matplotlib Figure sized for a paper (inches,
constrained layout, small fonts); `save` writes it as PNG, SVG or PDF by the file's extension.
matplotlib is imported only inside functions, with the Agg backend, so no display is needed
and importing this module costs nothing. Never imports torch.

An optimizer has the same colour in every figure: the known optimizers, sorted by name, take
tab10's colours in turn (the eleventh black); any other name takes one of a second palette
chosen by a hash of the name. Variants of one optimizer (`adam+cosine`, `adam@300steps`) share
its colour and differ by line style.
"""

from __future__ import annotations

import functools
import json
import math
import re
import textwrap
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaptbench.errors import UserError
from adaptbench.inference import t_interval
from adaptbench.vocab import CurveSplit

FORMATS = ("png", "svg", "pdf")
KNOWN_OPTIMIZERS = ("adadelta", "adagrad", "adam", "adamax", "adamw", "momentum", "nadam",
                    "nesterov", "radam", "rmsprop", "sgd")
_EXTRA = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
          "#31a354", "#756bb1", "#636363")
_STYLES = ("-", "--", ":", "-.")
WIDTH = 7.0  # inches: the text width of a two-column paper
ROW_HEIGHT = 2.3  # inches per row of panels
DPI = 300
_PAPER = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 8, "lines.linewidth": 1.2,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": DPI,
    "svg.hashsalt": "adaptbench", "pdf.fonttype": 42,
}


def _paper(build: Callable[..., Any]) -> Callable[..., Any]:
    """Run a figure builder under the paper's style (fonts, lines), leaving the global one."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        pyplot()
        with matplotlib.rc_context(_PAPER):
            return build(*args, **kwargs)

    return wrapper


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def output_format(path: str | Path) -> str:
    """The file format a path's extension names; a UserError for any other extension."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UserError(f"cannot tell the figure format from {str(path)!r}: the file name must "
                        f"end in {', '.join('.' + f for f in FORMATS)}")
    return suffix


def save(fig: Any, path: str | Path, dpi: float = DPI) -> None:
    """Write the figure to `path` in the format its extension names (a PNG at `dpi`)."""
    fmt = output_format(path)
    metadata = {"Software": None} if fmt == "png" else {"Date": None} if fmt == "svg" else {
        "CreationDate": None}
    fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
    pyplot().close(fig)


def base_name(label: str) -> str:
    """The optimizer a variant label names: 'adam+cosine@300steps' -> 'adam'."""
    return re.split(r"[+{@/]", label, maxsplit=1)[0]


def colour(label: str) -> str:
    """The optimizer's colour, the same in every figure (module docstring)."""
    name = base_name(label)
    if name in KNOWN_OPTIMIZERS:
        index = KNOWN_OPTIMIZERS.index(name)
        return f"C{index}" if index < 10 else "black"
    return _EXTRA[zlib.crc32(name.encode()) % len(_EXTRA)]


def styles(labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """Colour and line style per label: variants of one optimizer differ by line style."""
    out: dict[str, dict[str, str]] = {}
    seen: dict[str, int] = {}
    for label in sorted(set(labels)):
        k = seen.get(base_name(label), 0)
        seen[base_name(label)] = k + 1
        out[label] = {"color": colour(label), "linestyle": _STYLES[k % len(_STYLES)]}
    return out


def _wrap(text: str, width_in: float) -> str:
    return "\n".join(textwrap.wrap(text, max(30, int(width_in * 13))))


def _panels(n: int, width: float | None, height: float | None, ncols: int = 3,
            extra_height: float = 0.9) -> tuple[Any, list[Any]]:
    """A figure with n panels in a grid (at most `ncols` a row), sized in inches."""
    plt = pyplot()
    cols = max(1, min(n, ncols))
    rows = max(1, math.ceil(n / cols))
    size = (width or WIDTH, height or ROW_HEIGHT * rows + extra_height)
    fig, axes = plt.subplots(rows, cols, figsize=size, layout="constrained", squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _finish(fig: Any, title: str, labels: Sequence[str], style: dict[str, dict[str, str]],
            marker: str | None = None) -> Any:
    """The figure title and one legend for the whole figure, below the panels."""
    plt = pyplot()
    handles = [plt.Line2D([], [], marker=marker, markersize=4, **style[label])
               for label in labels]
    if handles:
        fig.legend(handles, list(labels), loc="outside lower center", frameon=False,
                   ncols=min(len(labels), 6))
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    return fig


def _arrow(higher_is_better: bool) -> str:
    """'(↑ better)' or '(↓ better)': which way the axis improves."""
    return "(↑ better)" if higher_is_better else "(↓ better)"


def _seed_text(counts: pd.Series) -> str:
    lo, hi = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
    return f"n = {lo} seeds" if lo == hi else f"n = {lo}-{hi} seeds"


def _log_if_wide(ax: Any, values: np.ndarray) -> None:
    """Log y scale when the means are positive and span more than two decades; the limits
    then follow the means, so that a band reaching 0 or below does not stretch the axis."""
    v = values[np.isfinite(values)]
    if len(v) and (v > 0).all() and v.max() / v.min() > 100:
        ax.set_yscale("log")
        ax.set_ylim(v.min() / 5, v.max() * 5)


def _bands(ax: Any, bands: list[tuple[pd.DataFrame, str, dict[str, str]]], **line: Any) -> None:
    """Draw each (band, x column, style): the mean line and its interval, after choosing the
    y scale from the means; on a log axis a band's lower end is clipped to the axis."""
    means = [b["mean"].to_numpy(float) for b, _, _ in bands]
    _log_if_wide(ax, np.concatenate(means) if means else np.array([]))
    floor = ax.get_ylim()[0] if ax.get_yscale() == "log" else -np.inf
    for band, x, s in bands:
        ax.plot(band[x], band["mean"], **line, **s)
        ax.fill_between(band[x], band["low"].clip(lower=floor), band["high"], alpha=0.18,
                        linewidth=0, color=s["color"])


def mean_band(frame: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Per value of `by`: mean, n and 95% t-interval (low, high) of the finite values."""
    finite = frame[np.isfinite(frame[value].astype(float))]
    g = finite.groupby(by)[value]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.size()})
    low, high = t_interval(out["mean"], out["sd"].fillna(0.0), out["n"])
    return out.assign(low=low, high=high).reset_index()


@_paper
def curves_figure(runs: pd.DataFrame, curves: pd.DataFrame, split: str, protocol: str,
                  width: float | None = None, height: float | None = None) -> Any:
    """Metric (or, for 'train' and 'train_full', the training loss) against steps at the selected
    lr: one panel per task, a line per optimizer with the mean over seeds and its 95% t-band per
    evaluation step.

    `runs`: the selected runs (id, task, optimizer, metric_name, higher_is_better); `curves`:
    their points (run_id, step, split, loss, metric)."""
    quantity = CurveSplit.quantity(split)
    points = curves[curves["split"] == split].merge(
        runs[["id", "task", "optimizer"]], left_on="run_id", right_on="id")
    tasks = sorted(runs["task"].unique())
    style = styles(runs["optimizer"])
    fig, axes = _panels(len(tasks), width, height)
    for ax, task in zip(axes, tasks):
        mine = runs[runs["task"] == task]
        shown = []
        for optimizer in sorted(mine["optimizer"].unique()):
            part = points[(points["task"] == task) & (points["optimizer"] == optimizer)]
            band = mean_band(part, "step", quantity).sort_values("step")
            if len(band):
                shown.append((band, "step", style[optimizer]))
        _bands(ax, shown)
        first = mine.iloc[0]
        what = ({"train": "minibatch loss", "train_full": "training loss"}.get(split)
                or f"{split} {first['metric_name']}")
        hib = False if quantity == "loss" else bool(first["higher_is_better"])
        ax.set_title(f"{task} ({_seed_text(mine.groupby('optimizer').size())})")
        ax.set_xlabel("step")
        ax.set_ylabel(f"{what} {_arrow(hib)}")
        if not shown:
            ax.text(0.5, 0.5, "no curve points", transform=ax.transAxes, ha="center")
    what = CurveSplit.describe(split)
    labels = sorted(runs["optimizer"].unique())
    return _finish(fig, f"{what} against steps, mean over seeds with a 95% t-interval per "
                        f"evaluation step; {protocol}", labels, style)


@_paper
def lr_figure(runs: pd.DataFrame, split: str, chosen: pd.DataFrame, protocol: str,
              width: float | None = None, height: float | None = None) -> Any:
    """Final metric against lr (log axis) per task, a line per optimizer over the selection
    seeds: mean with its 95% t-band; an lr where some seed diverged is marked x at the
    panel's bottom edge; the selected lr is circled.

    `runs`: the lr grid's runs (status, final_<split>_metric, task, optimizer, lr, seed);
    `chosen`: the selected lr per (task, optimizer)."""
    column = f"final_{split}_metric"
    tasks = sorted(runs["task"].unique())
    style = styles(runs["optimizer"])
    fig, axes = _panels(len(tasks), width, height)
    picked = {(r.task, r.optimizer): float(r.lr) for r in chosen.itertuples()}
    for ax, task in zip(axes, tasks):
        mine = runs[runs["task"] == task]
        ax.set_xscale("log")
        shown, marks = [], []
        for optimizer in sorted(mine["optimizer"].unique()):
            part = mine[mine["optimizer"] == optimizer]
            done = part[part["status"] == "done"]
            band = mean_band(done, "lr", column).sort_values("lr")
            if len(band):
                shown.append((band, "lr", style[optimizer]))
            marks.append((optimizer, part, band))
        _bands(ax, shown, marker="o", markersize=2.5)
        for optimizer, part, band in marks:
            s = style[optimizer]
            diverged = sorted(part.loc[part["status"] == "diverged", "lr"].unique())
            if diverged:
                ax.plot(diverged, [0.04] * len(diverged), "x", color=s["color"], markersize=5,
                        clip_on=False, transform=ax.get_xaxis_transform())
            lr = picked.get((task, optimizer))
            hit = band[band["lr"] == lr] if lr is not None else band.iloc[:0]
            if len(hit):
                ax.plot(hit["lr"], hit["mean"], "o", markersize=8, markerfacecolor="none",
                        markeredgewidth=1.2, color=s["color"])
        first = mine.iloc[0]
        ax.set_title(f"{task} ({_seed_text(mine.groupby(['optimizer', 'lr']).size())})")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"final {split} {first['metric_name']} "
                      f"{_arrow(bool(first['higher_is_better']))}")
    labels = sorted(runs["optimizer"].unique())
    return _finish(fig, f"final {split} metric against lr, mean over the selection seeds with a "
                        f"95% t-interval; x: some seed diverged at that lr; circle: the selected "
                        f"lr; {protocol}", labels, style, marker="o")


@_paper
def profile_figure(profile: pd.DataFrame, split: str, protocol: str, tau_max: float = 4.0,
                   width: float | None = None, height: float | None = None) -> Any:
    """Dolan–Moré performance profiles of steps to target, one panel per task type: ρ(τ), the
    share of tasks an optimizer solves within τ × the fastest, as a step function on
    1 <= τ <= tau_max. `profile`: `curves.performance_profile`."""
    kinds = sorted(profile["task_type"].unique())
    style = styles(profile["optimizer"])
    fig, axes = _panels(len(kinds), width, height)
    for ax, kind in zip(axes, kinds):
        part = profile[profile["task_type"] == kind]
        names = sorted(part["optimizer"].unique())
        for i, optimizer in enumerate(names):
            mine = part[part["optimizer"] == optimizer].sort_values("tau")
            inside = mine[mine["tau"] <= tau_max]
            taus = np.append(inside["tau"].to_numpy(float), tau_max)
            rho = np.append(inside["fraction"].to_numpy(float),
                            inside["fraction"].iloc[-1] if len(inside) else 0.0)
            # profiles often coincide (at 0 or 1): a small vertical offset keeps each visible
            dodge = 0.012 * (i - (len(names) - 1) / 2)
            ax.step(taus, rho + dodge, where="post", **style[optimizer])
        ax.set_xlim(1, tau_max)
        ax.set_ylim(-0.06, 1.06)
        ax.set_title(kind)
        ax.set_xlabel("τ (steps / fastest optimizer's steps)")
        ax.set_ylabel("ρ(τ): share of tasks within τ")
    labels = sorted(profile["optimizer"].unique())
    return _finish(fig, f"performance profiles of steps to the task's target on the {split} "
                        f"metric (median over seeds; diverged or never reached: ∞; lines that "
                        f"coincide are drawn slightly apart); "
                        f"{protocol}", labels, style)


@_paper
def speed_figure(by_type: pd.DataFrame, split: str, protocol: str,
                 fractions: Sequence[float] = (0.1, 0.25, 1.0),
                 width: float | None = None, height: float | None = None) -> Any:
    """Each optimizer's mean rank (1 = best) at fractions of the budget, one panel per task
    type, a line across the fractions. `by_type`: `curves.speed`'s second table."""
    kinds = sorted(by_type["task_type"].unique())
    style = styles(by_type["optimizer"])
    columns = [f"rank_{f * 100:g}" for f in fractions]
    fig, axes = _panels(len(kinds), width, height)
    for ax, kind in zip(axes, kinds):
        part = by_type[by_type["task_type"] == kind]
        k = part["optimizer"].nunique()
        for row in part.sort_values("optimizer").itertuples():
            ranks = [getattr(row, c) for c in columns]
            ax.plot(range(len(columns)), ranks, marker="o", markersize=3, **style[row.optimizer])
        ax.set_xticks(range(len(columns)), [f"{f * 100:g}%" for f in fractions])
        ax.set_xlim(-0.2, len(columns) - 0.8)
        ax.set_yticks(range(1, k + 1))
        ax.set_ylim(k + 0.3, 0.7)  # rank 1 (best) at the top
        tasks = int(part["tasks"].max()) if len(part) else 0
        ax.set_title(f"{kind} ({tasks} task{'s' if tasks != 1 else ''})")
        ax.set_xlabel("share of the budget")
        ax.set_ylabel("mean rank (1 = best)")
    what = CurveSplit.describe(split)
    labels = sorted(by_type["optimizer"].unique())
    return _finish(fig, f"mean rank by {what} at 10/25/100% of the budget, over the tasks that "
                        f"ran every optimizer of the type; {protocol}", labels, style,
                   marker="o")


def rosenbrock(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, the `rosenbrock` task's function."""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def parse_trajectory(text: str) -> np.ndarray:
    """A stored trajectory (JSON [[step, [x, y]], ...]) as an array of rows (step, x, y)."""
    rows = [[step, *point[:2]] for step, point in json.loads(text)]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


@_paper
def trajectory_figure(paths: pd.DataFrame, title: str, width: float | None = None,
                      height: float | None = None) -> Any:
    """Paths of optimizers over the Rosenbrock function's contours, from the start to (1, 1).

    `paths`: one row per optimizer with `optimizer`, `lr`, `seed`, `status` and `trajectory`
    (the stored JSON)."""
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(width or 4.5, height or 4.0), layout="constrained")
    parsed = {row.optimizer: parse_trajectory(row.trajectory) for row in paths.itertuples()}
    # the view: the paths, the start and the minimum, within a box where f stays readable
    points = np.vstack([p[:, 1:] for p in parsed.values()] + [np.array([[1.0, 1.0]])])
    points = points[np.isfinite(points).all(axis=1)
                    & (np.abs(points[:, 0]) <= 3) & (np.abs(points[:, 1] - 1) <= 4)]
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    pad = 0.15 * max(x1 - x0, y1 - y0, 1.0)
    box_x, box_y = (x0 - pad, x1 + pad), (y0 - pad, y1 + pad)
    xs = np.linspace(*box_x, 400)
    ys = np.linspace(*box_y, 400)
    gx, gy = np.meshgrid(xs, ys)
    levels = np.logspace(-1, 3.5, 12)
    ax.contourf(gx, gy, rosenbrock(gx, gy), levels=levels, norm=LogNorm(), cmap="Greys",
                alpha=0.45, extend="both")
    ax.contour(gx, gy, rosenbrock(gx, gy), levels=levels, norm=LogNorm(), colors="0.55",
               linewidths=0.4)
    style = styles(paths["optimizer"])
    labels = []
    for row in paths.sort_values("optimizer").itertuples():
        path = parsed[row.optimizer]
        s = style[row.optimizer]
        finite = path[np.isfinite(path[:, 1:]).all(axis=1)]
        ax.plot(finite[:, 1], finite[:, 2], linewidth=1.1, alpha=0.85, **s)
        ax.plot(finite[-1:, 1], finite[-1:, 2], marker="s", markersize=4, color=s["color"])
        note = ", diverged" if row.status == "diverged" else ""
        labels.append(f"{row.optimizer} (lr {row.lr:g}{note})")
        ax.plot(finite[:1, 1], finite[:1, 2], marker="^", markersize=5, color="black")
    ax.plot([1], [1], marker="*", markersize=10, color="gold", markeredgecolor="black",
            markeredgewidth=0.6, linestyle="none")
    ax.set_xlim(*box_x)
    ax.set_ylim(*box_y)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    handles = [plt.Line2D([], [], **style[o]) for o in sorted(paths["optimizer"])]
    handles += [plt.Line2D([], [], marker="^", color="black", linestyle="none"),
                plt.Line2D([], [], marker="*", color="gold", markeredgecolor="black",
                           linestyle="none", markersize=8)]
    ax.legend(handles, labels + ["start", "minimum (1, 1)"], loc="upper center", fontsize=6,
              framealpha=0.85, ncols=2)
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    return fig


@_paper
def claims_figure(verdicts: pd.DataFrame, statistics: pd.DataFrame, split: str, protocol: str,
                  width: float | None = None, height: float | None = None) -> Any:
    """Each claim's statistics with their 95% intervals (horizontal bars), each against its
    own threshold (a red tick on its row; statistics shown as context have none), one panel
    per claim, its verdict in the title; a claim with no statistic shows why. Inputs:
    `claims.check`'s first two tables."""
    names = (statistics["part"] + ": " + statistics["statistic"] if "part" in statistics
             else statistics["statistic"])
    labels = pd.Series(["\n".join(textwrap.wrap(f"{s} ({n} tasks)", 38))
                        for s, n in zip(names, statistics["tasks"])], index=statistics.index)
    by_claim = {c: list(labels[statistics["claim"] == c]) for c in verdicts["claim"]}
    # each panel's rows are as tall as its longest label needs (0.14 in a line at this size)
    panels = [0.75 + max(1, len(mine)) * max([0.4] + [0.14 * (1 + t.count("\n")) + 0.1
                                                     for t in mine])
              for mine in by_claim.values()]
    fig_h = height or 0.9 + sum(panels)
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(width or WIDTH, fig_h), layout="constrained",
                             squeeze=False, height_ratios=panels)
    text_width = int((width or WIDTH) * 9)  # the panel starts right of the statistics' names
    for ax, row in zip(axes[:, 0], verdicts.itertuples()):
        part = statistics[statistics["claim"] == row.claim].reset_index(drop=True)
        ax.set_title("\n".join(textwrap.wrap(
            f"({row.claim}) {row.statement}: {row.verdict.upper()}", text_width)), loc="left")
        if part.empty:
            ax.axis("off")
            ax.text(0.0, 0.5, "\n".join(textwrap.wrap(row.reason, text_width)),
                    transform=ax.transAxes, va="center", fontsize=7)
            continue
        y = np.arange(len(part))[::-1]
        value = part["value"].to_numpy(float)
        err = np.vstack([value - part["ci_low"].to_numpy(float),
                         part["ci_high"].to_numpy(float) - value])
        ax.errorbar(value, y, xerr=np.where(np.isfinite(err), err, 0), fmt="o", color="C0",
                    capsize=3, markersize=4)
        for row_y, t in zip(y, part["threshold"]):
            if np.isfinite(t):
                ax.plot([t, t], [row_y - 0.4, row_y + 0.4], color="C3", linewidth=1.6)
        ax.set_yticks(y, by_claim[row.claim])
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.set_xlabel("statistic with its 95% interval; red: the threshold the claim must clear")
    fig.suptitle(_wrap(f"the adaptive-lr claims, final {split} metric; {protocol}",
                       fig.get_figwidth()))
    return fig


__all__ = ["FORMATS", "output_format", "save", "colour", "styles", "curves_figure",
           "lr_figure", "profile_figure", "speed_figure", "trajectory_figure", "claims_figure",
           "rosenbrock", "parse_trajectory", "mean_band"]
