"""HTML reports: content, escaping, self-containment, the CLI over a real store, headless Chromium."""
import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from charrnn import cli
from charrnn.science.claims import COMPARISON, Claim
from charrnn.report.base import ExperimentData, reports_dir
from charrnn.report.details import heatmap_view, prediction_view
from charrnn.report.pages import render_experiment, render_index
from charrnn.report.kernels import render_kernels
from claim_support import SCOPE
from report_synthetic import PROVENANCE_TAGS, artifact_reader, make_curves, make_experiment, make_runs, predictions

XSS = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="alert(2)">'
CLAIM = {"source": "seed 002", **SCOPE,
         "metric": "val_loss", "expect": {"input_combine": "concat", "better_than": "add"}}


class Page(HTMLParser):
    """Tags, attributes, <style> text and visible text of a page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        self.text.append(data)

    def images(self) -> list[str]:
        return [a["src"] for t, a in self.tags if t == "img"]

    def visible(self) -> str:
        return "".join(self.text)


def render(exp: ExperimentData, tmp_path: Path) -> tuple[Path, str]:
    path = render_experiment(exp, tmp_path).path
    return path, path.read_text(encoding="utf-8")


def figure_keys(html: str) -> set[str]:
    return set(re.findall(r'<h2 id="([^"]+)">[^<]*</h2>\s*<figure>', html))


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):])))
    image.load()
    return image


# --------------------------------------------------------------------------- content

def test_page_and_index_are_written_with_a_one_line_result(tmp_path):
    exp = make_experiment("combine", effect={"input_combine": {"concat": -0.1}}, claim=CLAIM)
    path, html = render(exp, tmp_path)
    assert path == tmp_path / "combine.html"
    assert "Does concatenating beat adding?" in html and "reproduced" in html
    assert "Student-t (df = n − 1), 95 % CI" in html
    index = render_index(tmp_path).read_text(encoding="utf-8")
    assert 'href="combine.html"' in index
    # the claims table: verdict after Holm, effect in the claimed direction (lower loss: positive) with units
    row = re.search(r'<tr class="claim-row">(.*?)</tr>', index, re.S).group(1)
    assert 'class="badge reproduced"' in row and re.search(r"\+0\.\d+ nats/char \[0\.\d+ to 0\.\d+\]", row)
    assert "Student-t (df = n − 1)" in index and 'alt="Claims with a margin' in index
    assert re.search(r"p (=|&lt;) 0\.\d", index) and "p 0" not in index and "p = 0 " not in index
    details = re.search(r'<tr class="more">(.*?)</tr>', index, re.S).group(1)    # one click away
    assert all(word in details for word in ("seed 002", "raw verdict", "Student-t", "Holm p", "margin ±0.01"))
    page = (tmp_path / "combine.html").read_text(encoding="utf-8")    # the page got its after-Holm verdict
    assert re.search(r'<strong class="holm" data-claim="input_combine=concat_vs_add">after Holm: '
                     r'<span class="badge reproduced">', page)
    csv = pd.read_csv(tmp_path / "verdicts.csv")
    assert list(csv.columns)[:13] == ["experiment", "claim", "metric", "effect", "sd", "n", "low", "high", "method",
                                      "margin", "verdict", "adjusted_verdict", "mde"]
    assert csv.loc[0, "description"] == "input_combine=concat gives lower val_loss than input_combine=add"
    assert csv.loc[0, "verdict"] == csv.loc[0, "adjusted_verdict"] == "reproduced" and csv.loc[0, "n"] == 3


def test_threshold_claim_page_states_loss_minus_the_reference_number(tmp_path):
    claim = {"source": "bare loop", **SCOPE, "metric": "val_loss", "expect": {"better_than": 1.9}}
    exp = make_experiment("reference", axes={"cell": ["gru"]}, claim=claim)   # losses ≈ 1.8
    _, html = render(exp, tmp_path)
    assert "val_loss is lower than 1.9" in html and "val_loss − 1.9, per seed" in html
    index = render_index(tmp_path).read_text(encoding="utf-8")
    value = re.search(r"([\d.]+) nats/char vs bar 1.9 nats/char \[", index)   # the value against its bar
    assert value and abs(float(value.group(1)) - 1.8) < 0.02


def test_index_keeps_every_experiment_rendered_into_the_directory(tmp_path):
    render_experiment(make_experiment("first"), tmp_path)
    render_experiment(make_experiment("second", claim=CLAIM), tmp_path)
    index = render_index(tmp_path).read_text(encoding="utf-8")
    assert 'href="first.html"' in index and 'href="second.html"' in index
    assert "best val_loss:" in index        # no claim: the best variant with its CI


def test_every_multi_seed_number_in_the_summary_has_its_ci_and_n(tmp_path):
    _, html = render(make_experiment(claim=CLAIM), tmp_path)
    summary = html.split('<h2 id="summary">')[1].split("<h2")[0]   # the claims' metric, the rest folded
    arms = html.split('<h2 id="arms">')[1].split("<h2")[0]           # the page's first table
    cells = re.findall(r'<td class="num">([^<]*)</td>', summary + arms)
    stats = [c for c in cells if "(n=" in c]
    assert len(stats) == 2 * 3              # 2 variants × (val_loss, train_loss; the arms table's val_loss)
    assert "<details>" in summary and html.index('id="arms"') < html.index('class="claim"')
    assert all(re.fullmatch(r"−?[\d.,]+ \[−?[\d.,]+ to −?[\d.,]+\] \(n=3\)", c) for c in stats)
    assert re.search(r"Effect: <strong>[+−]?[\d.]+ nats/char \[−?[\d.]+ to −?[\d.]+\]</strong> \(n = 3\)", html)


def test_every_figure_caption_states_its_ci_and_n(tmp_path):
    exp = make_experiment(axes={"hidden_size": [64, 128], "layers": [1, 2]}, claim=None)
    _, html = render(exp, tmp_path)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == 6
    assert all("95 % " in caption and re.search(r"\bn = ", caption) for caption in captions)


def test_single_seed_shows_no_ci_and_verdict_underpowered(tmp_path):
    _, html = render(make_experiment(seeds=[0], claim=CLAIM), tmp_path)
    assert "(n=1, no CI)" in html and "an interval needs 2" in html
    assert 'class="badge underpowered"' in html


def test_no_page_says_inconclusive_and_each_claim_has_its_block(tmp_path):
    claims = [CLAIM, {"id": "same", **SCOPE, "metric": "val_loss", "margin": 0.5,
                      "expect": {"input_combine": "concat", "equivalent_to": "add"}}]
    _, html = render(make_experiment(claims=claims, seeds=[0, 1, 2, 3, 4]), tmp_path)
    assert 'id="claim-same"' in html and 'id="claim-input_combine=concat_vs_add"' in html
    assert 'class="badge equivalent"' in html
    index = render_index(tmp_path).read_text(encoding="utf-8")
    assert "inconclusive" not in (html + index).lower()


def test_failed_runs_are_listed_with_reasons_and_left_out_of_the_means(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs.loc[0, ["status", "failure", "final_val_loss"]] = ["FAILED", "diverged at step 17", 99.0]
    _, html = render(exp, tmp_path)
    failed = html.split('<h2 id="failed">')[1]
    assert "diverged at step 17" in failed and "FAILED" in failed
    assert "2/3" in html                    # add: 2 of 3 runs finished
    assert "99.0" not in html.split('<h2 id="failed">')[0]
    assert "1 failed run(s) excluded" in html


def test_a_running_orphan_is_unfinished_with_its_last_heartbeat_not_failed(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs["last_heartbeat"] = pd.Timestamp("2026-01-02 03:04:05", tz="UTC")
    exp.runs.loc[0, ["status", "failure"]] = ["RUNNING", None]
    _, html = render(exp, tmp_path)
    section = html.split('<h2 id="failed">')[1].split("<h2")[0]
    assert "unfinished (no heartbeat since 2026-01-02 03:04:05 UTC)" in section
    assert "no reason recorded" not in section and "<td>RUNNING</td>" not in section
    assert "None: every run finished" not in section


@pytest.mark.parametrize("axes,expected,absent", [
    ({"input_combine": ["add", "concat"]}, {"curves", "final-val_loss", "cost"},
     {"importance", "gap", "by-hidden_size", "by-layers"}),
    ({"hidden_size": [64, 128], "layers": [1, 2]}, {"by-hidden_size", "by-layers", "importance"}, {"gap"}),
    ({"dataset_fraction": [0.25, 1.0]}, {"gap"}, {"importance"}),
])
def test_figures_follow_what_the_grid_varies(tmp_path, axes, expected, absent):
    _, html = render(make_experiment(axes=axes), tmp_path)
    keys = figure_keys(html)
    assert expected <= keys and not absent & keys


def test_samples_predictions_and_heatmap_come_from_run_artifacts(tmp_path):
    _, html = render(make_experiment(claim=CLAIM), tmp_path)
    assert "ROMEO:␣to␣be" not in html        # samples are shown as written, not with markers
    assert "ROMEO: to be or not to be (r0000)" in html
    assert 'class="bad"' in html and 'class="ok"' in html and 'class="ctx"' in html
    assert html.count('<table class="heat fit">') == 2   # the claim's two arms


def test_claim_on_an_unlogged_metric_is_not_tested_and_says_so(tmp_path):
    claim = {**SCOPE, "metric": "val_accuracy", "higher_is_better": True,
             "expect": {"input_combine": "concat", "better_than": "add"}}
    path, html = render(make_experiment(claim=claim), tmp_path)
    assert "val_accuracy was not logged" in html
    assert 'class="badge not-tested"' in html and "Final val_loss per variant" in html


def test_experiment_without_finished_runs_renders_its_failures(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs["status"], exp.runs["failure"] = "FAILED", "CUDA out of memory"
    rendered = render_experiment(exp, tmp_path)
    html = rendered.path.read_text(encoding="utf-8")
    assert html.count("CUDA out of memory") == 6 and "0 usable seed(s): an interval needs 2 (6 failed" in html
    empty = ExperimentData("empty", exp.runs.iloc[0:0], axes=[])
    assert render_experiment(empty, tmp_path).line == "no finished runs"


def test_experiment_without_artifacts_or_curves_still_renders(tmp_path):
    runs = make_runs({"cell": ["gru", "lstm"]}, [0, 1])
    _, html = render(ExperimentData("bare", runs, axes=["cell"]), tmp_path)
    assert "Learning curves" not in html and "Text samples" not in html
    assert "Final val_loss per variant" in html


def test_prediction_view_colours_wrong_characters_and_greys_the_given_context():
    view = prediction_view(predictions("abcdefgh", wrong_every=3))
    teacher, free = view["rows"]
    assert [c["cls"] for c in teacher["cells"]][:4] == ["bad", "ok", "ok", "bad"]
    assert {c["cls"] for c in free["cells"][:4]} == {"ctx"}
    assert view["target"][0]["text"] == "b"


def test_prediction_view_leaves_unscored_positions_uncoloured():
    pred = {"target": list("12=3\n"), "scored": [False, False, False, True, True],
            "teacher_forced": list("xx=3\n"), "free_running": list("12=4\n"), "free_running_from": 3}
    teacher, free = prediction_view(pred)["rows"]
    assert [c["cls"] for c in teacher["cells"]] == ["na", "na", "na", "ok", "ok"]
    assert [c["cls"] for c in free["cells"]] == ["ctx", "ctx", "ctx", "bad", "ok"]
    assert teacher["cells"][4]["text"] == "↵" and free["score"] == "1/2 scored characters right"


def test_heatmap_view_is_rank_by_position_with_probability_shading():
    heat = heatmap_view(predictions("hello world"))
    assert len(heat["ranks"]) == 3 and len(heat["ranks"][0]) == 10
    top, third = heat["ranks"][0][0], heat["ranks"][2][0]
    assert top["p"] == "0.70" and top["fg"] == "#ffffff" and third["fg"] == "#111111"
    assert third["text"] == "␣"


def test_reports_dir_follows_charrnn_reports_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_REPORTS_DIR", str(tmp_path / "elsewhere"))
    assert reports_dir() == tmp_path / "elsewhere"
    assert reports_dir(tmp_path / "given") == tmp_path / "given"


def test_report_modules_never_import_torch():
    code = ("import sys, charrnn.report.run, charrnn.report.store, charrnn.report.kernels, charrnn.cli; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- escaping, self-containment

def hostile_experiment() -> ExperimentData:
    """Run-derived text everywhere carries markup: samples, names, values, reasons, predictions."""
    runs = make_runs({"input_combine": ["add", XSS]}, [0, 1, 2])
    runs.loc[0, ["status", "failure"]] = ["FAILED", f"RuntimeError: {XSS_IMG}"]
    runs["run_name"] = runs["run_name"] + XSS
    runs["charrnn.device_name"] = XSS_IMG
    read = artifact_reader(runs, sample=f"ROMEO {XSS} & {XSS_IMG} $x$ ")
    return ExperimentData(f"evil{XSS}", runs, make_curves(runs, 60, 20), ["input_combine"],
                          question=f"Is {XSS} safe?", artifact=read,
                          claims=(Claim(XSS, "val_loss", COMPARISON, "input_combine", XSS, "add", 0.01,
                                        source=XSS_IMG),))


def test_markup_from_runs_is_shown_literally_and_nothing_executes(tmp_path):
    path, html = render(hostile_experiment(), tmp_path)
    page = Page(html)
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed", "link")]
    assert not [k for _, attrs in page.tags for k in attrs if k.startswith("on")]
    assert all(not v.strip().lower().startswith("javascript:") for _, a in page.tags for v in a.values())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    visible = page.visible()
    assert XSS in visible and XSS_IMG in visible and "$x$" in visible
    assert path.name == "evil_script_alert_1_script.html"
    index = render_index(tmp_path).read_text(encoding="utf-8")
    assert "<script" not in index and "&lt;script&gt;" in index


def test_page_is_self_contained_with_decodable_inline_figures(tmp_path):
    exp = make_experiment(axes={"hidden_size": [64, 128], "dataset_fraction": [0.5, 1.0]}, claim=None)
    _, html = render(exp, tmp_path)
    page = Page(html)
    images = page.images()
    assert len(images) == len(figure_keys(html)) >= 5
    for src in images:
        image = decode_png(src)
        assert image.width > 100 and image.height > 100
    refs = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("src", "href")]
    assert not [r for r in refs if re.match(r"\s*(https?:)?//", r, re.I)]
    assert "@import" not in page.style and "url(" not in page.style
    assert not re.search(r"https?://", html)


# --------------------------------------------------------------------------- kernels page

def bench_file(path: Path, device: str, timings: dict[tuple[str, str, int, int], float]) -> Path:
    """A pytest-benchmark JSON file: (cell, backend, hidden, batch) → median seconds."""
    benches = [{"name": f"test_{cell}_{backend}_{h}_{b}", "stats": {"median": t, "iqr": t / 20, "rounds": 30},
                "extra_info": {"cell": cell, "backend": backend, "hidden": h, "batch": b, "seq_len": 64,
                               "layers": 1, "dtype": "fp32", "direction": "fwd_bwd", "device_name": device,
                               "compile_time_s": 12.5 if backend == "loop_compiled" else None}}
               for (cell, backend, h, b), t in timings.items()]
    path.write_text(json.dumps({"datetime": "2025-01-01T00:00:00", "benchmarks": benches}))
    return path


def test_kernel_page_has_one_section_per_device_with_time_ratios_tables_and_compile_times(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    shapes = [(h, b) for h in (64, 128) for b in (8, 32)]
    bench_file(bench / "cpu.json", "x86_64 <cpu>", {
        **{("gru", "fused", h, b): 0.002 for h, b in shapes},
        **{("gru", "loop", h, b): 0.004 for h, b in shapes},
        **{("gru", "loop_compiled", h, b): 0.001 for h, b in shapes}})
    bench_file(bench / "gpu.json", "NVIDIA H100", {("lstm", "fused", 64, 8): 0.001, ("lstm", "loop", 64, 8): 0.01})
    html = render_kernels(tmp_path / "out", bench).read_text(encoding="utf-8")
    assert html.count('<h2 id="device-') == 2 and "x86_64 &lt;cpu&gt;" in html
    # one convention, custom / fused: loop 2×, loop_compiled 0.5×, the GPU's lstm loop 10×
    assert "2.00×" in html and "0.500×" in html and "10.0×" in html and "1.00×" in html
    assert "speedup vs" not in html.lower() and "time / fused" in html
    assert "12.5" in html                                # compile time of loop_compiled
    images = Page(html).images()
    assert len(images) == 2 and all(decode_png(src).width > 100 for src in images)


def test_no_benchmark_files_means_no_kernel_page(tmp_path):
    assert render_kernels(tmp_path / "out", tmp_path) is None
    assert not (tmp_path / "out" / "kernels.html").exists()


# --------------------------------------------------------------------------- CLI over a real store

def _store_experiment(name: str, grid_text: str) -> str:
    """A grid parent run and 2 × 2 trained child runs written straight through the Tracker."""
    from charrnn.tracking.store import Tracker

    tracker = Tracker()
    parent = tracker.start_run(name, "grid", {}, tags={"charrnn.role": "grid"}, system_metrics=False)
    parent.log_text(grid_text, "grid.yaml")
    parent.end()
    for cell, loss in (("vanilla", 2.3), ("gru", 2.1)):
        for seed in (0, 1):
            run = tracker.start_run(name, f"cell={cell},seed={seed}",
                                    {"task": "tinyshakespeare", "cell": cell, "seed": seed, "param_count": 999},
                                    tags={"charrnn.role": "run", "charrnn.varied": json.dumps({"cell": cell}),
                                          **PROVENANCE_TAGS},
                                    parent_run_id=parent.run_id, system_metrics=False)
            for step in range(3):
                run.log_metrics({"train_loss": 4 - step, "val_loss": 4.1 - step}, step)
            run.log_metrics({"final_val_loss": loss + seed / 100, "final_train_loss": loss, "train_time_s": 3.0}, 3)
            run.log_text(f"sample {XSS}", "samples/sample.txt")
            run.log_json(predictions("First Citizen:"), "predictions.json")
            run.end()
    return parent.run_id


@pytest.mark.slow
def test_cli_report_renders_the_store_and_logs_the_page_to_the_grid_run(results_dir, tmp_path, capsys):
    grid = {"name": "smoke", "question": "Does a GRU win?", "seeds": [0, 1], "axes": {"cell": ["vanilla", "gru"]},
            "claims": [{**SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"}}]}
    parent_id = _store_experiment("smoke", yaml.safe_dump(grid))
    out = tmp_path / "reports"
    assert cli.main(["report", "--out", str(out)]) == 0
    html = (out / "smoke.html").read_text(encoding="utf-8")
    assert "Does a GRU win?" in html and "reproduced" in html and "sample &lt;script&gt;" in html
    assert 'href="smoke.html"' in (out / "index.html").read_text(encoding="utf-8")
    assert "smoke.html" in capsys.readouterr().out
    from charrnn.tracking.store import Tracker
    logged = [a.path for a in Tracker().client.list_artifacts(parent_id, "report")]
    assert logged == ["report/smoke.html"]


def test_a_stored_grid_whose_tune_block_the_parser_refuses_is_a_one_line_error(results_dir, capsys):
    _store_experiment("badtune", yaml.safe_dump({"name": "badtune", "tune": {"lr": [0.001, 0.01]}}))
    assert cli.main(["report", "badtune"]) == 2
    err = capsys.readouterr().err.strip()
    assert "badtune" in err and "tune.lr" in err and "at least 3 values" in err and "\n" not in err


def test_cli_report_on_an_unknown_experiment_exits_2_naming_it(results_dir, capsys):
    _store_experiment("real", yaml.safe_dump({"name": "real"}))
    assert cli.main(["report", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "real" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_page_with_every_figure(tmp_path):
    exp = hostile_experiment()
    exp.runs["hidden_size"] = np.where(exp.runs.index % 2 == 0, 64, 128)
    exp.axes = ["input_combine", "hidden_size"]
    path, html = render(exp, tmp_path / "out")
    srcs = Page(html).images()
    assert len(srcs) >= 5 and all(decode_png(s).width > 100 for s in srcs)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,4000", path.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10                             # not blank
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          path.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<img ") == len(srcs) and "<script" not in dom and "&lt;script&gt;alert(1)" in dom


def test_error_bars_stay_drawable_when_the_ci_misses_the_point_estimate():
    from charrnn.report.figures import _errors
    from charrnn.science.stats import Interval
    bars = _errors([Interval(0.10, 0.12, 0.30, 5), Interval(0.5, 0.4, 0.45, 5)])
    assert (bars >= 0).all()
    assert bars[1, 0] == pytest.approx(0.20) and bars[0, 1] == pytest.approx(0.10)


def test_an_unfinished_grid_says_so_on_its_page_and_in_the_index(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs.loc[exp.runs.index[:2], "status"] = "RUNNING"
    _, html = render(exp, tmp_path)
    assert "2 runs still running; provisional" in html
    index = render_index(tmp_path).read_text(encoding="utf-8")
    assert "2 runs still running; provisional" in index
    render(make_experiment(claim=CLAIM), tmp_path)          # finished: the notice goes
    assert "still running" not in render_index(tmp_path).read_text(encoding="utf-8")


def test_the_page_opens_with_the_per_arm_table_and_folds_the_other_metrics(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs["param_count"], exp.runs["steps"], exp.runs["charrnn.device"] = 12345, 400, "cpu"
    exp.runs["wall_time_s"] = 12.5
    _, html = render(exp, tmp_path)
    arms = html.split('<h2 id="arms">')[1].split("</table>")[0]
    assert "val_loss (nats/char), mean [95 % CI] (n)" in arms and "training time (s)" in arms
    assert arms.count("12,345") == 2 and arms.count(">400<") == 2 and arms.count(">cpu<") == 2
    summary = html.split('<h2 id="summary">')[1].split("<h2")[0]
    visible, folded = summary.split("<details>")
    assert "val_loss" in visible and "train_loss" not in visible and "train_loss" in folded


def test_the_per_arm_table_shows_the_step_cap_and_the_epochs_the_runs_trained(tmp_path):
    exp = make_experiment(claim=CLAIM)
    exp.runs["steps"], exp.runs["epochs"] = 400, 0.25        # a time budget ended the runs a quarter epoch in
    _, html = render(exp, tmp_path)
    arms = html.split('<h2 id="arms">')[1].split("</table>")[0]
    assert "step cap" in arms and "epochs trained" in arms
    assert arms.count(">400<") == 2 and arms.count(">0.250<") == 2


def test_the_per_arm_table_counts_the_runs_that_converged(tmp_path):
    exp = make_experiment(claim=CLAIM)                     # add and concat, 3 seeds each
    exp.runs["converged"] = [1 if (arm == "add" or seed == 0) else 0
                             for arm, seed in zip(exp.runs["input_combine"], exp.runs["seed"].astype(int))]
    _, html = render(exp, tmp_path)
    arms = html.split('<h2 id="arms">')[1].split("</table>")[0]
    assert "<th>converged</th>" in arms and ">3 of 3<" in arms and ">1 of 3<" in arms
