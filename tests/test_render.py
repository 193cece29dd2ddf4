"""Tests for adaptbench.render: data formats keep every number; tables stay plain off-terminal."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from rich.console import Console

from adaptbench import render as rd
from adaptbench import comparisons, stats
from adaptbench.store import CurvePoint, Run, make_engine, write
from tests.conftest import invoke

ANSI = re.compile(r"\x1b\[")
BOX_DRAWING = re.compile("[\u2500-\u257f]")


def sample() -> pd.DataFrame:
    return pd.DataFrame({
        "task": ["mnist", "mnist", "text|pipe"],
        "optimizer": ["adam", "sgd[bold]", "rmsprop"],
        "lr": [3e-4, 0.1, 1.5e-5],
        "n": [3, 1, 0],
        "mean": [0.1 + 0.2, 0.912345678901234, math.nan],
        "ci_low": [1e-300, math.nan, -math.inf],
        "steps_to_target": [120.0, math.nan, 3000.0],
        "higher_is_better": [True, False, True],
    })


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=40), buffer


def rendered(df: pd.DataFrame, fmt: str, title: str | None = None) -> str:
    console, buffer = plain_console()
    rd.render(df, fmt, title=title, console=console)
    return buffer.getvalue()


def test_csv_round_trips_exactly():
    df = sample()
    back = pd.read_csv(io.StringIO(rendered(df, "csv", title="ignored")))
    assert list(back.columns) == list(df.columns)
    numeric = ["lr", "n", "mean", "ci_low", "steps_to_target"]
    # Exact equality, NaN in the same places: full precision survives.
    np.testing.assert_array_equal(back[numeric].to_numpy(float), df[numeric].to_numpy(float))
    assert back["task"].tolist() == df["task"].tolist()
    assert back["higher_is_better"].tolist() == df["higher_is_better"].tolist()


def test_csv_of_a_real_summary_round_trips():
    runs = pd.DataFrame([
        {"task": "t", "task_type": "vision", "optimizer": "adam", "lr": 1e-3, "seed": s,
         "status": "done", "metric_name": "accuracy", "higher_is_better": True,
         "final_test_metric": v, "final_test_loss": 1 - v}
        for s, v in enumerate([0.9013, 0.8877, 0.9102])
    ])
    table = stats.summary(runs)
    back = pd.read_csv(io.StringIO(rendered(table, "csv")))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_json_is_records_with_nulls_and_full_precision():
    records = json.loads(rendered(sample(), "json"))
    assert isinstance(records, list) and len(records) == 3
    first, second, third = records
    assert first["mean"] == 0.1 + 0.2 and first["ci_low"] == 1e-300
    assert first["lr"] == 3e-4 and first["n"] == 3 and first["higher_is_better"] is True
    assert second["mean"] == 0.912345678901234 and second["ci_low"] is None
    assert third["mean"] is None  # NaN: not defined
    assert third["ci_low"] == "-inf"  # -inf: a value, kept apart from NaN
    assert third["task"] == "text|pipe"


def test_json_keeps_infinities_apart_from_nan():
    df = pd.DataFrame({"steps_to_target": [math.inf, math.nan, 40.0, -math.inf],
                       "ratio": np.array([np.inf, np.nan, 1.5, -np.inf], dtype=np.float32)})
    text = rd.to_json(df)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name} in JSON"))
    assert json.loads(text) == [
        {"steps_to_target": "inf", "ratio": "inf"},
        {"steps_to_target": None, "ratio": None},
        {"steps_to_target": 40.0, "ratio": 1.5},
        {"steps_to_target": "-inf", "ratio": "-inf"},
    ]
    payload = json.loads(render_sections_of([("steps", None, df)], "json"))
    assert [r["steps_to_target"] for r in payload["steps"]] == ["inf", None, 40.0, "-inf"]


def test_cli_json_tells_never_reached_from_no_target(workdir):
    # Task "t" has a target that "slow" never reaches (its median steps to target is inf);
    # task "u" has no target at all (NaN).
    engine = make_engine(str(workdir / "inf.db"))
    base = {"task_type": "dense", "lr": 0.01, "seed": 0, "status": "done", "params": "{}",
            "metric_name": "accuracy", "higher_is_better": True, "schedule": "constant",
            "steps": 100, "batch_size": 32, "eval_every": 50, "study": ""}
    runs = [("t", "fast", 0.7, 40, 0.8), ("t", "slow", 0.7, None, 0.6),
            ("u", "fast", None, None, 0.8), ("u", "slow", None, None, 0.6)]
    with write(engine) as conn:
        for i, (task, optimizer, target, steps_to_target, value) in enumerate(runs):
            conn.execute(sa.insert(Run).values(
                spec_hash=f"h{i}", task=task, optimizer=optimizer, target=target,
                steps_to_target=steps_to_target, final_val_metric=value,
                final_test_metric=value, **base))
        conn.execute(sa.insert(CurvePoint), [
            dict(run_id=i + 1, step=step, split="val", loss=1 - v, metric=v, elapsed=0.0)
            for i, (*_, v) in enumerate(runs) for step in (0, 50, 100)])
    engine.dispose()
    r = invoke("report", "speed", "--db", "inf.db", "--format", "json")
    assert r.code == 0, r.err
    json.loads(r.out, parse_constant=lambda name: pytest.fail(f"non-standard {name} in JSON"))
    steps = {(row["task"], row["optimizer"]): row["steps_to_target"]
             for row in json.loads(r.out)["by_task"]}
    assert steps == {("t", "fast"): 40.0, ("t", "slow"): "inf",
                     ("u", "fast"): None, ("u", "slow"): None}


def test_unnamed_index_left_by_filtering_is_not_shown():
    df = sample()
    filtered = df[df["n"] > 0]  # index 0, 1
    assert rendered(filtered.iloc[1:], "csv").splitlines()[0] == ",".join(df.columns)
    assert json.loads(rendered(filtered.iloc[1:], "json"))[0]["optimizer"] == "sgd[bold]"


def test_nullable_integers_render():
    df = pd.DataFrame({"task": ["a", "b"],
                       "steps_to_target": pd.array([120, None], dtype="Int64")})
    assert json.loads(rendered(df, "json")) == [{"task": "a", "steps_to_target": 120},
                                                {"task": "b", "steps_to_target": None}]
    assert rendered(df, "csv").splitlines() == ["task,steps_to_target", "a,120", "b,"]
    assert rendered(df, "table").split() == ["task", "steps_to_target", "a", "120", "b", "-"]


def test_json_is_strict():
    text = rendered(sample(), "json")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name} in JSON"))


def test_json_and_csv_carry_a_named_index():
    rates = comparisons.win_rates(pd.DataFrame([
        {"task": "t", "task_type": "dense", "optimizer": o, "lr": 0.1, "seed": 0,
         "status": "done", "higher_is_better": True, "final_val_metric": v,
         "final_test_metric": v}
        for o, v in [("adam", 0.9), ("sgd", 0.8)]
    ]))
    matrix = comparisons.win_matrix(rates, "dense")
    records = json.loads(rendered(matrix, "json"))
    assert records == [{"optimizer": "adam", "adam": None, "sgd": 1.0},
                       {"optimizer": "sgd", "adam": 0.0, "sgd": None}]
    assert rendered(matrix, "csv").splitlines()[0] == "optimizer,adam,sgd"


def test_plain_table_has_no_escape_codes_and_no_box_drawing():
    text = rendered(sample(), "table", title="Summary")
    assert not ANSI.search(text)
    assert not BOX_DRAWING.search(text)
    assert text.isascii()
    lines = text.splitlines()
    assert lines[0].strip() == "Summary"
    # Never wrapped to the 40-column console: one line per row, whole values.
    assert len(lines) == 1 + 1 + 3
    assert lines[1].split() == list(sample().columns)
    assert lines[2].split() == ["mnist", "adam", "3e-04", "3", "0.3", "1e-300", "120", "yes"]
    assert lines[3].split() == ["mnist", "sgd[bold]", "0.1", "1", "0.9123", "-", "-", "no"]
    assert lines[4].split() == ["text|pipe", "rmsprop", "1.5e-05", "0", "-", "-inf", "3000",
                                "yes"]


def test_table_on_stdout_when_piped_is_plain(capsys):
    rd.render(sample(), "table", title="Summary")
    out = capsys.readouterr().out
    assert "adam" in out and not ANSI.search(out) and not BOX_DRAWING.search(out)


def test_table_on_a_terminal_is_drawn():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=120)
    rd.render(sample(), "table", console=console)
    assert BOX_DRAWING.search(buffer.getvalue())
    assert "sgd[bold]" in buffer.getvalue()  # cell text is not read as markup


@pytest.mark.parametrize("width", [50, 60, 80, 120])
def test_several_wrapping_columns_never_break_a_word(width):
    # Rich alone narrows the widest wrapping columns to one level, breaking the longer words
    long = ["initial_accumulator_value=0", "decoupled_weight_decay=false"]
    df = pd.DataFrame({
        "name": ["adagrad", "adam"],
        "description": [" ".join(long * 2), "short"],
        "note": ["a long note of many short words " * 6, "and one more"],
    })
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=width)
    rd.render(df, "table", console=console)
    lines = buffer.getvalue().splitlines()
    assert max(map(len, lines)) <= width
    for word in long:
        assert any(word in line for line in lines), word


def test_consoles_follow_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert rd.stdout_console().no_color and rd.stderr_console().no_color
    assert rd.stderr_console().stderr
    monkeypatch.delenv("NO_COLOR")
    assert not rd.stdout_console().no_color


def test_markdown_pipe_table():
    text = rendered(sample(), "markdown", title="Summary")
    lines = text.splitlines()
    assert lines[:2] == ["**Summary**", ""]
    assert lines[2] == ("| task | optimizer | lr | n | mean | ci_low | steps_to_target "
                        "| higher_is_better |")
    assert lines[3] == "|---|---|---:|---:|---:|---:|---:|---|"
    assert lines[4] == "| mnist | adam | 3e-04 | 3 | 0.3 | 1e-300 | 120 | yes |"
    assert lines[6].startswith("| text\\|pipe | rmsprop | 1.5e-05 | 0 | - |")
    assert len(lines) == 7


def test_empty_frames_render():
    empty = stats.summary(pd.DataFrame(columns=["task", "optimizer", "lr", "seed", "status"]))
    assert rendered(empty, "csv").strip() == ",".join(stats.SUMMARY_COLUMNS)
    assert json.loads(rendered(empty, "json")) == []
    assert rendered(empty, "markdown").count("\n") == 2
    assert "ci_low" in rendered(empty, "table")


@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (3e-3, "0.003"), (1e-3, "0.001"), (3e-4, "3e-04"), (1.5e-5, "1.5e-05"),
    (1.25e-4, "1.25e-04"), (1.0, "1"), (0.0, "0"),
])
def test_format_lr(value, text):
    assert rd.format_lr(value) == text


@pytest.mark.parametrize("value, text", [
    (0.912345, "0.9123"), (12345.678, "1.235e+04"), (-0.5, "-0.5"), (math.inf, "inf"),
    (math.nan, "-"), (1234.5, "1234"),
])
def test_format_number(value, text):
    assert rd.format_number(value) == text


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format"):
        rd.render(sample(), "xlsx", console=plain_console()[0])


def sections() -> list[tuple[str, str | None, pd.DataFrame]]:
    return [
        ("ranks", "Ranks", pd.DataFrame({"optimizer": ["adam", "sgd"], "rank": [1.25, 1.75],
                                         "tasks": [4, 4]})),
        ("tests", "Tests", pd.DataFrame({"optimizer": ["adam"], "p_value": [0.0625],
                                         "significant": [False]})),
        ("empty", None, pd.DataFrame({"x": pd.Series(dtype=float)})),
    ]


def render_sections_of(parts: list[tuple[str, str | None, pd.DataFrame]], fmt: str) -> str:
    console, buffer = plain_console()
    rd.render_sections(parts, fmt, console=console)
    return buffer.getvalue()


def render_sections(fmt: str) -> str:
    return render_sections_of(sections(), fmt)


def test_sections_as_json_are_an_object_of_record_lists():
    payload = json.loads(render_sections("json"))
    assert list(payload) == ["ranks", "tests", "empty"]
    assert payload["ranks"][1] == {"optimizer": "sgd", "rank": 1.75, "tasks": 4}
    assert payload["tests"] == [{"optimizer": "adam", "p_value": 0.0625, "significant": False}]
    assert payload["empty"] == []


def test_sections_as_csv_stack_with_a_table_column_and_split_back():
    table = pd.read_csv(io.StringIO(render_sections("csv")))
    assert list(table.columns[:1]) == ["table"]
    parts = {name: part.dropna(axis=1, how="all") for name, part in table.groupby("table")}
    assert parts["ranks"]["rank"].tolist() == [1.25, 1.75]
    header = render_sections("csv").splitlines()[0]
    assert header == "table,optimizer,rank,tasks,p_value,significant,x"  # one header: the union
    assert ",4," in render_sections("csv")  # integers stay integral next to empty cells


def test_sections_as_tables_and_markdown_keep_their_titles():
    text = render_sections("table")
    assert text.index("Ranks") < text.index("Tests")
    md = render_sections("markdown")
    assert "**Ranks**" in md and "**Tests**" in md and "| optimizer | rank | tasks |" in md

