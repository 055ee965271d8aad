"""The pages in headless Chromium at 1280 × 900: nothing scrolls sideways (the document, every
table, every scrolling box, with every <details> open), the index's verdict-after-Holm column
is on screen, no table cell breaks a number or a word over two lines, no figure is shown below
80 % of its natural width, and each experiment page's per-arm table is on its first screen.
Synthetic pages with long ids, sources and many metrics, and the committed examples.

Chromium is required, not optional: without it these tests fail and say how to install it.
"""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from report_browser import HEIGHT, WIDTH, Browser, BrowserMissing, broken_tokens, overflows, shrunk_figures
from charrnn.report.kernels import render_kernels
from charrnn.report.pages import render_experiment, render_index
from report_synthetic import SCOPE, artifact_reader, make_experiment
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS

EXAMPLES = Path(__file__).resolve().parent.parent / "reports" / "examples"
LONG_SOURCE = ("write-up 001 (docs/references.md#write-up-001): \"" + "a long quoted sentence " * 12
               + "\" — https://example.org/a/very/long/path/without/any/break/" + "x" * 80)
EXTRAPOLATION = {**SCOPE, "tests": "extrapolation"} if SCOPE else {}   # the index's second group
LONG_ID = "mingru_scan_beats_gru_at_equal_wall_clock_with_a_very_long_identifier_indeed"


@pytest.fixture(scope="module")
def browser():
    try:
        with Browser() as b:
            yield b
    except BrowserMissing as err:
        pytest.fail(f"headless Chromium is needed for the layout tests: {err}", pytrace=False)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    """An index over two experiments (long ids and sources, a threshold claim), one page with
    many metric columns, and a kernels page with small multiples and a long table."""
    out = tmp_path_factory.mktemp("pages")
    claims = [{"id": LONG_ID, "source": LONG_SOURCE, **SCOPE, "metric": "val_loss",
               "expect": {"input_combine": "concat", "better_than": "add"}},
              {"id": "below_reference", "source": LONG_SOURCE, **EXTRAPOLATION, "metric": "val_loss",
               "expect": {"equivalent_to": 1.7}, "margin": 0.05}]
    exp = make_experiment("input_combine", axes={"input_combine": ["add", "concat"], "hidden_size": [64, 128, 256]},
                          seeds=[0, 1, 2, 3, 4], effect={"input_combine": {"concat": -0.1}}, claims=claims)
    for k in range(8):                          # many metric columns in the summary
        exp.runs[f"final_test_loss_{k}"] = exp.runs["final_val_loss"]
    exp.runs["final_test_loss"] = exp.runs["final_val_loss"] + 0.01
    exp.runs["final_tokens_per_s"] = 12345.678
    exp.runs["final_val_accuracy"] = 0.5
    exp.artifact = artifact_reader(exp.runs, sample="ROMEO: to be or not to be, " * 12, heat=80)
    render_experiment(exp, out)
    second = {"source": "s", **SCOPE, "metric": "val_loss", "expect": {"input_combine": "concat", "better_than": "add"}}
    render_experiment(make_experiment("second", claim=second), out)
    many = make_experiment("many_arms", axes={"input_combine": ["add", "concat"], "hidden_size": [64, 128, 256],
                                              "activation": ["tanh", "relu"]}, seeds=[0, 1])
    many.runs.loc[many.runs["activation"] == "relu", "final_val_loss"] = float("nan")   # arms without data
    render_experiment(many, out)
    render_index(out)
    render_kernels(out, _bench_dir(out / "bench"))
    return out


def _bench_dir(path: Path) -> Path:
    path.mkdir()
    benches = [{"name": f"t_{cell}_{backend}_{h}_{t}",
                "stats": {"median": 1e-3 * h / 64 * (1 if backend == "fused" else 2), "iqr": 1e-5, "rounds": 20},
                "extra_info": {"cell": cell, "backend": backend, "hidden": h, "batch": 32, "seq_len": t, "layers": 1,
                               "dtype": "fp32", "direction": direction}}
               for cell in ("vanilla", "gru", "lstm") for backend in ("fused", "loop", "loop_bptt", "loop_native")
               for h in (64, 128, 256, 512) for t in (32, 128) for direction in ("fwd", "fwd_bwd")]
    (path / "cpu.json").write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": benches,
                                               "machine_info": {"cpu": {"brand_raw": "Test CPU 9000"}}}))
    return path


def _assert_fits(browser, page: Path) -> dict:
    measured = browser.layout(page)
    assert not overflows(measured), f"{page.name} is wider than {WIDTH} px: {overflows(measured)}"
    return measured


@pytest.mark.parametrize("name", ["index.html", "input_combine.html", "kernels.html"])
def test_rendered_pages_fit_1280_px_without_sideways_scrolling(browser, pages, name):
    measured = _assert_fits(browser, pages / name)
    assert measured["boxes"], "no table measured"       # the measurement saw the tables


@pytest.mark.parametrize("name", ["index.html", "input_combine.html", "second.html", "many_arms.html", "kernels.html"])
def test_no_table_breaks_a_number_or_a_word_and_no_figure_shrinks(browser, pages, name):
    measured = browser.layout(pages / name)
    assert broken_tokens(measured) == [], f"{name}: broken over two lines: {broken_tokens(measured)[:10]}"
    assert shrunk_figures(measured) == [], f"{name}: shrunk below 80 %: {shrunk_figures(measured)}"
    assert measured["figures"] or name == "index.html"


@pytest.mark.parametrize("name", ["input_combine.html", "second.html", "many_arms.html"])
def test_the_per_arm_table_is_on_the_first_screen(browser, pages, name):
    bottom = browser.layout(pages / name)["arms_first_row_bottom"]
    assert bottom is not None and bottom <= HEIGHT, f"{name}: the per-arm table's first row ends at {bottom} px"


def test_a_broken_number_and_a_shrunk_figure_are_caught(browser, tmp_path):
    """The measurements fail a cell that breaks a number, and a figure squeezed to half its width."""
    page = tmp_path / "narrow.html"
    png = "iVBORw0KGgoAAAANSUhEUgAAAGQAAAABCAIAAACnuZzqAAAADUlEQVR4nGNgGAVEAwABLQABRQKVTgAAAABJRU5ErkJggg=="  # 100 × 1
    page.write_text("<table><tr><td style='width: 3ch; max-width: 3ch; overflow-wrap: anywhere'>192,000</td></tr>"
                    f"</table><img alt='half' style='width: 50px' src='data:image/png;base64,{png}'>")
    measured = browser.layout(page)
    assert broken_tokens(measured) == ["192,000"]
    assert shrunk_figures(measured) == ["half: 50 %"]


def test_index_verdict_after_holm_column_is_on_screen(browser, pages):
    measured = _assert_fits(browser, pages / "index.html")
    assert measured["holm_right"] is not None, "the index's first table has no 'verdict after Holm' column"
    assert measured["holm_right"] <= WIDTH


def test_kernel_page_names_its_device_and_stays_small(pages):
    html = (pages / "kernels.html").read_text(encoding="utf-8")
    assert "unknown device" not in html and "Test CPU 9000" in html
    assert len(html.encode("utf-8")) <= 800_000


def test_overflow_is_caught(browser, tmp_path):
    """The measurement fails a page that scrolls sideways, or a box that scrolls inside itself
    (the tests above can fail)."""
    wide = tmp_path / "wide.html"
    wide.write_text("<table><tr><td style='white-space: nowrap'>" + "wide " * 600 + "</td></tr></table>")
    assert any(o.startswith("table") for o in overflows(browser.layout(wide)))
    boxed = tmp_path / "boxed.html"
    boxed.write_text("<div style='width: 600px; overflow-x: auto'><table><tr><td style='white-space: nowrap'>"
                     + "wide " * 20 + "</td></tr></table></div>")
    assert any(" in 600 px" in o for o in overflows(browser.layout(boxed)))


@pytest.mark.parametrize("name", ["index.html", "min_rnn.html", "kernels.html"])
def test_committed_example_pages_fit_1280_px(browser, name):
    measured = _assert_fits(browser, EXAMPLES / name)
    if name == "index.html":
        assert measured["holm_right"] is not None and measured["holm_right"] <= WIDTH


COMMITTED_PAGES = sorted(p.name for p in EXAMPLES.glob("*.html"))
COMMITTED_EXPERIMENTS = [n for n in COMMITTED_PAGES if n not in ("index.html", "kernels.html")]


@pytest.mark.parametrize("name", COMMITTED_PAGES)
def test_no_committed_page_breaks_a_number_or_a_word_or_shrinks_a_figure(browser, name):
    measured = browser.layout(EXAMPLES / name)
    assert broken_tokens(measured) == [], f"{name}: broken over two lines: {broken_tokens(measured)[:10]}"
    assert shrunk_figures(measured) == [], f"{name}: shrunk below 80 %: {shrunk_figures(measured)}"


@pytest.mark.parametrize("name", COMMITTED_EXPERIMENTS)
def test_every_committed_experiment_page_shows_its_per_arm_table_on_the_first_screen(browser, name):
    bottom = browser.layout(EXAMPLES / name)["arms_first_row_bottom"]
    assert bottom is not None and bottom <= HEIGHT, f"{name}: the per-arm table's first row ends at {bottom} px"


def test_committed_kernel_page_breaks_no_number_or_word_and_shrinks_no_figure(browser):
    measured = browser.layout(EXAMPLES / "kernels.html")
    assert broken_tokens(measured) == [] and shrunk_figures(measured) == []


def test_committed_kernel_page_is_small_and_names_its_devices():
    html = (EXAMPLES / "kernels.html").read_text(encoding="utf-8")
    assert "unknown device" not in html and len(html.encode("utf-8")) <= 800_000


def test_failed_runs_with_long_unbroken_reasons_fit(browser, tmp_path):
    exp = make_experiment("failing", seeds=[0, 1])
    exp.runs.loc[0, "status"] = "FAILED"
    exp.runs.loc[0, "failure"] = "/a/very/long/path/" + "segment/" * 60 + "file.py: RuntimeError"
    render_experiment(exp, tmp_path)
    measured = _assert_fits(browser, tmp_path / "failing.html")
    assert broken_tokens(measured) == []


def test_a_claim_edited_after_its_runs_shows_edited_after_data_and_its_original_text(browser, tmp_path):
    claim_yaml = {"source": "s", **SCOPE, "metric": "val_loss", "margin": 0.02,
                  "expect": {"input_combine": "concat", "better_than": "add"}}
    exp = make_experiment("edited", claim=claim_yaml)
    claim = exp.claims[0]
    original = replace(claim, margin=0.01).canonical_text()          # the text logged before the runs
    exp.preregistered = {claim.id: {"text": original, "when": CLAIM_LOGGED_BEFORE_RUNS}}
    render_experiment(exp, tmp_path)
    render_index(tmp_path, kernels=False)
    shown = " ".join(browser.text(tmp_path / "edited.html", f"[id=\"claim-{claim.id}\"]").split())
    assert "edited after data" in shown and " ".join(original.split()) in shown
    assert "margin: 0.01" in shown
    row = browser.text(tmp_path / "index.html", "tr.claim-row")
    assert "edited after data" in row
    assert original.splitlines()[0] in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_a_preregistered_claim_shows_no_edit_mark(browser, tmp_path):
    exp = make_experiment("kept", claim={"source": "s", **SCOPE, "metric": "val_loss",
                                         "expect": {"input_combine": "concat", "better_than": "add"}})
    claim = exp.claims[0]
    exp.preregistered = {claim.id: {"text": claim.canonical_text(), "when": CLAIM_LOGGED_BEFORE_RUNS}}
    render_experiment(exp, tmp_path)
    assert "edited after data" not in browser.text(tmp_path / "kept.html", f"[id=\"claim-{claim.id}\"]")
