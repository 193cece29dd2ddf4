"""`adaptbench plot ...` end to end on a real (tiny) study database: every figure in every format,
its size, bad extensions, no matches, filters, and no torch on import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from adaptbench import plots
from tests.conftest import invoke

COMMANDS = ["curves", "lr", "profile", "speed", "trajectory", "claims"]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """A real, tiny adaptive-lr study: 3 optimizers x 2 cheap tasks x 2 lrs x 2 (+2) seeds."""
    path = tmp_path_factory.mktemp("plots") / "study.db"
    r = invoke("run", "--study", "adaptive-lr", "-o", "adam,sgd,adagrad",
               "-t", "noisy-quadratic,rosenbrock", "--lr", "0.01,0.1", "--seeds", "2",
               "--eval-seeds", "2", "--steps", "20", "--db", str(path))
    assert r.code == 0, r.err
    return str(path)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_figure_in_every_format(study_db, tmp_path, command):
    for fmt in plots.FORMATS:
        out = tmp_path / f"{command}.{fmt}"
        r = invoke("plot", command, "-o", out, "--db", study_db, "--dpi", "50")
        assert r.code == 0, (command, fmt, r.err)
        data = out.read_bytes()
        if fmt == "svg":
            assert data.lstrip().startswith(b"<?xml") and b"<svg" in data
        else:
            assert data.startswith(MAGIC[fmt])


@pytest.mark.parametrize("command", COMMANDS)
def test_png_has_the_requested_size_and_is_not_blank(study_db, tmp_path, command):
    from matplotlib import image

    out = tmp_path / "figure.png"
    r = invoke("plot", command, "-o", out, "--width", "5", "--height", "3", "--dpi", "60",
               "--db", study_db)
    assert r.code == 0, r.err
    pixels = image.imread(out)
    assert pixels.shape[:2] == (180, 300)
    assert pixels[..., :3].var() > 1e-3


def test_bad_extension_is_one_line_and_writes_nothing(study_db, tmp_path):
    out = tmp_path / "figure.jpg"
    r = invoke("plot", "curves", "-o", out, "--db", study_db)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1
    assert ".png" in r.err and ".svg" in r.err and ".pdf" in r.err
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_match_is_one_line_exit_2_and_writes_nothing(study_db, tmp_path, command):
    out = tmp_path / "figure.png"
    r = invoke("plot", command, "-o", out, "--study", "nothing-here", "--db", study_db)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    assert not out.exists()


def test_trajectory_without_rosenbrock_runs(tmp_path):
    db = tmp_path / "quad.db"
    assert invoke("run", "-o", "adam", "-t", "noisy-quadratic", "--seeds", "1", "--steps", "5",
                  "--db", db).code == 0
    out = tmp_path / "path.png"
    r = invoke("plot", "trajectory", "-o", out, "--db", db)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "rosenbrock" in r.err
    assert not out.exists()


def test_filters_apply(study_db, tmp_path, monkeypatch):
    built = []
    original = plots.curves_figure

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        built.append((args[0], fig))
        return fig

    monkeypatch.setattr(plots, "curves_figure", spy)
    out = tmp_path / "c.png"
    assert invoke("plot", "curves", "-o", out, "--db", study_db, "--dpi", "30").code == 0
    assert invoke("plot", "curves", "--task", "rosenbrock", "-o", out, "--optim", "adam",
                  "--db", study_db, "--dpi", "30").code == 0
    # written before the subcommand, a filter applies too
    assert invoke("plot", "--task", "noisy-quadratic", "curves", "-o", out, "--db", study_db,
                  "--dpi", "30").code == 0
    (every, fig_all), (one, fig_one), (before, fig_before) = built
    assert len(fig_all.axes) == 2 and set(every["task"]) == {"noisy-quadratic", "rosenbrock"}
    assert len(fig_one.axes) == 1 and set(one["task"]) == {"rosenbrock"}
    assert {o.split("@")[0] for o in one["optimizer"]} == {"adam"}
    assert len(fig_before.axes) == 1 and set(before["task"]) == {"noisy-quadratic"}


def test_option_that_does_not_apply_before_the_subcommand(study_db, tmp_path):
    r = invoke("plot", "--task", "rosenbrock", "trajectory", "-o", tmp_path / "t.png",
               "--db", study_db)
    assert r.code == 2 and "plot trajectory" in r.err


def test_titles_say_split_metric_protocol_and_seeds(study_db, tmp_path, monkeypatch):
    figs = []
    for name in ("curves_figure", "lr_figure"):
        original = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _f=original, **k: figs.append(_f(*a, **k))
                            or figs[-1])
    assert invoke("plot", "curves", "--split", "test", "-o", tmp_path / "c.svg",
                  "--db", study_db).code == 0
    assert invoke("plot", "lr", "-o", tmp_path / "l.svg", "--db", study_db).code == 0
    curves_fig, lr_fig = figs
    title = curves_fig.get_suptitle().replace("\n", " ")
    assert "test metric" in title and "evaluation seeds" in title
    assert any("n = 2 seeds" in ax.get_title() for ax in curves_fig.axes)
    assert any("excess_risk" in ax.get_ylabel() for ax in curves_fig.axes)
    assert "selection seeds" in lr_fig.get_suptitle().replace("\n", " ")
    assert lr_fig.axes[0].get_xscale() == "log"


def test_an_optimizer_keeps_its_colour():
    assert plots.colour("adam") == plots.colour("adam@20steps") == plots.colour("adam+cosine")
    known = [plots.colour(o) for o in plots.KNOWN_OPTIMIZERS]
    assert len(set(known)) == len(known)
    assert plots.colour("mypkg:lion") == plots.colour("mypkg:lion")
    style = plots.styles(["adam", "adam+cosine", "sgd"])
    assert style["adam"]["color"] == style["adam+cosine"]["color"]
    assert style["adam"]["linestyle"] != style["adam+cosine"]["linestyle"]


def test_mean_band_is_the_t_interval():
    from scipy import stats as sps

    import pandas as pd

    frame = pd.DataFrame({"step": [0, 0, 0, 1, 1], "v": [1.0, 2.0, 4.0, 3.0, np.inf]})
    band = plots.mean_band(frame, "step", "v").set_index("step")
    low, high = sps.t.interval(0.95, 2, loc=np.mean([1, 2, 4]), scale=sps.sem([1, 2, 4]))
    assert band.loc[0, "low"] == pytest.approx(low) and band.loc[0, "high"] == pytest.approx(high)
    assert band.loc[1, "n"] == 1 and np.isnan(band.loc[1, "low"])  # n = 1: no interval


def test_importing_plots_does_not_import_torch_or_pyplot():
    code = ("import sys, adaptbench.plots, adaptbench.cli.plot; "
            "print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_plot_runs_as_python_m_adaptbench_cli():
    # `python -m adaptbench.cli` runs the package's __main__ after the package registered every command
    proc = subprocess.run([sys.executable, "-m", "adaptbench.cli", "plot", "curves", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--output" in proc.stdout


def test_claims_figure_labels_never_overlap():
    """Long statistic names wrap onto several lines; each row gets the height its label needs
    (the study page's (b) panel had its last labels printed over each other)."""
    import pandas as pd

    long = "rmsprop's probability of improvement over adagrad on the sparse tasks (test metric; shown, not tested)"
    verdicts = pd.DataFrame({"claim": ["a", "b", "c"], "statement": ["claim a", "claim b", "c"],
                             "verdict": ["not supported"] * 3, "reason": ["", "", ""]})
    rows = {"a": 9, "b": 6, "c": 4}  # as in the adaptive-lr study's figure
    claim = [c for c, n in rows.items() for _ in range(n)]
    statistics = pd.DataFrame({
        "claim": claim, "part": ["part"] * len(claim), "statistic": [long] * len(claim),
        "value": 0.5, "ci_low": 0.3, "ci_high": 0.7,
        "threshold": [0.5 if i % 3 else np.nan for i in range(len(claim))], "tasks": 5})
    fig = plots.claims_figure(verdicts, statistics, "test", "lr tuned")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = sorted((label.get_window_extent(renderer) for label in ax.get_yticklabels()),
                       key=lambda b: b.y0)
        for lower, upper in zip(boxes, boxes[1:]):
            assert lower.y1 <= upper.y0 + 1, (ax.get_title(), lower, upper)
        title = ax.title.get_window_extent(renderer)
        if boxes:
            assert boxes[-1].y1 <= title.y0 + 1, ax.get_title()
