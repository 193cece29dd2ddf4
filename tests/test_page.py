"""`adaptbench report html` end to end on a real (tiny) study database: the page is one
self-contained file with every section, the report's own figures, the claims and provenance;
bad output paths; escaping; and, where Chromium is installed, that a browser draws the figures."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from adaptbench import page, render
from tests.conftest import invoke

HEADINGS = ["How to read this", "Runs", "Provenance", "Summary", "Win rates", "Ranks",
            "Learning-rate sensitivity", "Speed", "Performance profiles", "Claims",
            "Learning curves"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """A real, tiny adaptive-lr study: 3 optimizers x 2 cheap tasks x 2 lrs x 2 (+2) seeds."""
    path = tmp_path_factory.mktemp("page") / "study.db"
    r = invoke("run", "--study", "adaptive-lr", "-o", "adam,sgd,adagrad",
               "-t", "noisy-quadratic,rosenbrock", "--lr", "0.01,0.1", "--seeds", "2",
               "--eval-seeds", "2", "--steps", "20", "--db", str(path))
    assert r.code == 0, r.err
    return str(path)


@pytest.fixture(scope="module")
def study_page(study_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "study.html"
    r = invoke("report", "html", "-o", out, "--db", study_db)
    assert r.code == 0, r.err
    assert "wrote" in r.err
    return out


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


def test_page_is_self_contained(study_page):
    text = study_page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", text, flags=re.I)
    assert refs
    assert not [r for r in refs if re.match(r"(https?:)?//", r, flags=re.I)]
    assert all(r.startswith(("#", "data:image/png;base64,")) for r in refs), refs
    imgs = re.findall(r"<img\b[^>]*>", text)
    # lr, speed, profile, curves, trajectory (claims: no statistic yet on this study)
    assert len(imgs) == 5
    assert all('src="data:image/png;base64,' in img for img in imgs)
    assert "<link" not in text and "@import" not in text and "url(" not in text


def test_every_section_with_a_contents_entry(study_page):
    text = study_page.read_text()
    for anchor, heading, _ in page.sections(_empty_content()):
        assert f'<section id="{anchor}"><h2>{heading}</h2>' in text
        assert f'<a href="#{anchor}">{heading}</a>' in text
    assert [h for _, h, _ in page.sections(_empty_content())] == HEADINGS


def test_summary_shows_the_reports_figures(study_page, study_db):
    r = invoke("report", "--format", "csv", "--db", study_db)
    assert r.code == 0, r.err
    summary = pd.read_csv(io.StringIO(r.out))
    rows = _section(study_page.read_text(), "summary").split("<tr>")[2:]
    assert len(rows) == len(summary)
    for want in summary.itertuples():
        row = next(x for x in rows if f"<td>{want.task}</td>" in x
                   and f"<td>{want.optimizer}</td>" in x)
        assert f">{render.format_lr(want.lr)}<" in row
        if np.isfinite(want.mean):
            assert (f">{render.format_number(want.mean)} [{render.format_number(want.ci_low)}, "
                    f"{render.format_number(want.ci_high)}]<") in row


def test_claims_with_coloured_verdicts(study_page, study_db):
    r = invoke("report", "claims", "--format", "json", "--db", study_db)
    verdicts = json.loads(r.out)["claims"]
    text = _section(study_page.read_text(), "claims")
    for claim in verdicts:
        css = page.VERDICT_CLASS[claim["verdict"]]
        assert f'<span class="verdict {css}">{claim["verdict"].upper()}</span>' in text
        assert page.esc(claim["statement"]) in text
    assert "figure claims: no claim has a statistic" in text


def test_provenance(study_page, study_db):
    import adaptbench

    runs = adaptbench.open(study_db).runs()
    text = _section(study_page.read_text(), "provenance")
    for column in ("torch_version", "package_version", "device", "host"):
        value = runs[column].iloc[0]
        assert f"{page.esc(value)} ({len(runs)} runs)" in text
    assert "sqlite:///" in text and "study.db" in text
    assert runs["finished_at"].max().strftime("%Y-%m-%d %H:%M:%S") in text
    assert "page made" in text
    runs_table = _section(study_page.read_text(), "runs")
    assert "evaluation" in runs_table and "selection" in runs_table
    assert f'<td class="num">{len(runs)}</td>' in runs_table


@pytest.mark.parametrize("where", ["missing/folder/out.html", "."])
def test_bad_output_path_is_one_line_exit_2(study_db, tmp_path, where):
    out = tmp_path / where
    r = invoke("report", "html", "-o", out, "--db", study_db)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "cannot write" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "missing").exists()


def test_no_match_writes_nothing(study_db, tmp_path):
    out = tmp_path / "none.html"
    r = invoke("report", "--study", "nothing-here", "html", "-o", out, "--db", study_db)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert not out.exists()


def test_hostile_study_label_is_escaped(tmp_path):
    db, out = tmp_path / "evil.db", tmp_path / "evil.html"
    label = "<script>alert(1)</script>"
    assert invoke("run", "-o", "adam", "-t", "noisy-quadratic", "--seeds", "1", "--steps", "5",
                  "--study", label, "--db", db).code == 0
    r = invoke("report", "html", "-o", out, "--db", db)
    assert r.code == 0, r.err
    text = out.read_text()
    assert label not in text and "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # the empty sections say why
    assert "win rates: no task type with two or more optimizers" in text


def test_page_modules_do_not_import_torch():
    code = ("import sys; import adaptbench.page, adaptbench.cli.report; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def _empty_content() -> page.Content:
    from datetime import datetime, timezone

    none = pd.DataFrame()
    claims = pd.DataFrame(columns=["claim", "statement", "verdict", "reason"])
    runs = pd.DataFrame(columns=["status", "role", "study", "finished_at"])
    return page.Content("p", (), "", runs, "sqlite:///x.db", datetime.now(timezone.utc), "0",
                        none, {}, {}, {}, none, {}, none, claims, none, none)


# -- a real browser --------------------------------------------------------------------------

# appended to a copy of the page only: the page itself has no script
PROBE = """<script>window.addEventListener("load", () => {
  const shown = [...document.images].filter(i => i.complete && i.naturalWidth > 0
                                             && i.getBoundingClientRect().width > 0);
  const r = document.images[0].getBoundingClientRect();
  document.body.dataset.figures = shown.length;
  document.body.dataset.first = [r.x, r.y + window.scrollY, r.width, r.height].map(Math.round);
});</script></body>"""


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(f"no headless browser on PATH ({', '.join(BROWSERS)}); install Chromium "
                f"(Debian: apt-get install chromium) to check the page in a browser")


def _chrome(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=60, check=True)


def test_a_browser_draws_the_page_and_its_figures(study_page, tmp_path):
    from matplotlib import image

    browser = _browser()
    probe = tmp_path / "probe.html"
    probe.write_text(study_page.read_text().replace("</body>", PROBE))
    dom = _chrome(browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    figures = re.search(r'data-figures="(\d+)"', dom)
    first = re.search(r'data-first="([\d,.-]+)"', dom)
    assert figures and first, dom[-500:]
    assert int(figures.group(1)) == 5
    x, y, w, h = (int(float(v)) for v in first.group(1).split(","))
    assert w > 400 and h > 200

    shot = tmp_path / "page.png"
    _chrome(browser, f"--screenshot={shot}", "--window-size=1280,4000", study_page.as_uri())
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280)
    assert pixels.var() > 1e-3  # not blank
    assert y + h <= 4000, "the first figure should be in the screenshot"
    region = pixels[y:y + h, x:x + w]
    # a drawn figure: lines in colour, not a white or grey box
    colourful = np.ptp(region, axis=2) > 0.2
    assert region.var() > 1e-3 and colourful.mean() > 0.002
