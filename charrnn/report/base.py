"""The report package's leaf: data model, errors, constants, templating and output paths.

Every other module of `charrnn.report` imports this one; it imports none of them (nor MLflow,
nor torch). Pages are Jinja2 with autoescape on (every string from a run is escaped), figures are
inline PNG, CSS is inline, nothing is loaded from the network and there is no JavaScript.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from charrnn import registry
from charrnn.paths import write_atomic
from charrnn.science.claims import Claim
from charrnn.science.verdict_table import ROW_COLUMNS
from charrnn.science.window_uncertainty import COLUMNS as WINDOW_COLUMNS   # interval over test windows
from charrnn.tags import SPEED_TAG
from charrnn.paths import reports_dir  # noqa: F401 (re-exported: the report's output directory)

FINAL_METRICS = registry.final_metrics()
CURVE_METRICS = registry.plotted_metrics()
# curves read from the store: the plotted ones plus what the budget views follow
LOADED_CURVES = tuple(dict.fromkeys(CURVE_METRICS + ("val_exact_match", "tokens_per_s", "step_time_ms",
                                                     "generalization_gap")))
LINE_AXES = {"hidden_size": True, "layers": False}   # axis → log2 x scale
GAP_AXIS = "dataset_fraction"
GAP_COLUMN = "train_val_gap"    # final val loss − final train loss, per run
MAX_CURVE_POINTS = 150          # train_loss is binned to this many points per curve
MAX_DETAIL_VARIANTS = 40        # samples / predictions shown for at most this many variants
OPEN_DETAILS = 6                # of those, this many are expanded; the rest are one click away
SAMPLE_CHARS = 1200
DIFF_CHARS = 20_000
HEATMAP_CMAP = "Blues"
HEAT_POSITIONS = 40             # softmax heat map columns: the page's width at a readable size
PROVENANCE = {"git sha": "charrnn.git_sha", "dirty": "charrnn.git_dirty", "torch": "charrnn.torch",
              "cuda": "charrnn.cuda", "device": "charrnn.device", "device name": "charrnn.device_name",
              "speed measured": SPEED_TAG}
VISIBLE = {"\n": "↵", "\t": "⇥", " ": "␣", "<pad>": "∅", "<bos>": "⊳"}
INDEX_MANIFEST = "index.json"
NO_VARIANT = "all runs"
VERDICTS_CSV = "verdicts.csv"
_FIRST_COLUMNS = ["experiment", "claim", "metric", "effect", "sd", "n", "low", "high", "method", "margin",
                  "verdict", "adjusted_verdict", "mde", "description", "source", "reason", "seeds_needed", "p",
                  "p_adjusted"]
# then the rest of verdict_table.ROW_COLUMNS (tests, regime, learned, stable, preregistered, ...;
# conventions in its docstring: `effect`, `low` and `high` are in the claimed direction)
VERDICT_COLUMNS = _FIRST_COLUMNS + [c for c in ROW_COLUMNS if c not in _FIRST_COLUMNS] + WINDOW_COLUMNS

ArtifactReader = Callable[[str, str], "str | None"]


class ReportError(ValueError):
    """Bad input to `charrnn report` (e.g. an unknown experiment): one line, exit code 2."""


def _no_artifacts(run_id: str, path: str) -> str | None:
    return None


@dataclass
class ExperimentData:
    """What a report is made from. `runs`: one row per child run with columns run_id, run_name,
    status, seed, every param, final metrics, param_count, wall_time_s, failure and provenance
    tags (`charrnn.*`). `curves`: long form run_id, metric, step, value."""

    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "metric", "step", "value"]))
    axes: list[str] | None = None
    question: str = ""
    claims: tuple[Claim, ...] = ()
    artifact: ArtifactReader = _no_artifacts
    parent_run_id: str | None = None
    sequential: dict[str, str] | None = None   # how sequential seeding stopped (parent-run tags)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # results.finished_duplicates: not counted
    tune: dict[str, list[Any]] = field(default_factory=dict)  # the grid's `tune:` block (nuisance keys)
    # claim id → the text logged when the grid first ran (tracking.preregistered_claims); None: not read
    preregistered: dict[str, dict[str, str]] | None = None

    @property
    def looks(self) -> int:
        """Planned looks of sequential seeding (1: the seeds were fixed in advance)."""
        return int((self.sequential or {}).get("looks_planned", 1))


@dataclass(frozen=True)
class Figure:
    key: str        # stable id (anchor in the page)
    title: str
    caption: str
    data: str       # base64 PNG

    @property
    def src(self) -> str:
        return f"data:image/png;base64,{self.data}"


@dataclass(frozen=True)
class Rendered:
    name: str
    path: Path
    line: str
    seconds: float          # loading (when read from the store) and rendering


# =========================================================================== output places, templates

def splice_between(document: str, block: str, start_marker: str, end_marker: str) -> str:
    """`document` with the text between two markers (a generated section) replaced by `block`."""
    start, end = document.find(start_marker), document.find(end_marker)
    if start < 0 or end < start:
        raise ReportError(f"no {start_marker!r} … {end_marker!r} section to rewrite")
    return f"{document[:start + len(start_marker)]}\n{block}\n{document[end:]}"


def section_main(argv: list[str] | None, description: str, markers: tuple[str, str], block: Callable[[], str],
                 tool: str) -> int:
    """The command line of a generator that rewrites one marked section of a markdown file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("document", type=Path)
    args = parser.parse_args(argv)
    return rewrite_document(args.document, lambda text: splice_between(text, block(), *markers), tool)


def rewrite_document(document: Path, rewrite: Callable[[str], str], tool: str) -> int:
    """Replace `document` by `rewrite(its text)` (a generated section spliced in): 0, or 2 with one
    line naming the file when it cannot be read or `rewrite` refuses (ReportError); nothing written then."""
    try:
        text = rewrite(document.read_text(encoding="utf-8"))
    except (OSError, ReportError) as err:
        print(f"{tool}: document={str(document)!r}: {err}", file=sys.stderr)
        return 2
    write_atomic(document, text)
    return 0


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_filename(experiment: str) -> str:
    """`<experiment>.html` with anything but letters, digits, `.`, `_`, `-` replaced."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._")
    return f"{stem or 'experiment'}.html"


def keep_hyphenated(value: Any) -> Markup:
    """Escaped text whose hyphens do not break a line (U+2011): "wall-clock" stays one token in a cell."""
    return Markup.escape(str(value)).replace("-", "\u2011")


def _env() -> Environment:
    env = Environment(loader=PackageLoader("charrnn.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["keep_hyphenated"] = keep_hyphenated
    return env


def render_template(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


def natural_key(value: Any) -> tuple:
    """Sort key: numbers by value before strings (`2` < `10` < `add`)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
