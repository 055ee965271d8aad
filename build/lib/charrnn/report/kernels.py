"""`reports/kernels.html` from the kernel suite's pytest-benchmark JSON files.

One section per device found: speedup heat maps (hidden × batch) per cell and backend against
`fused`, a table of median and IQR per shape, and compile times. Reads only JSON (no torch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charrnn.paths import results_dir
from charrnn.report import figures as rf
from charrnn.report.base import now_text, render_template
from charrnn.report.kernels_scan import scan_figure
from charrnn.bench.results import SHAPE as SHAPE_FIELDS
from charrnn.bench.results import read_results, table_rows
from charrnn.config import ConfigError
from charrnn.report.kernels_sweep import sweep_section

REFERENCE = "fused"
SHAPE = list(SHAPE_FIELDS)
VERSIONS = ("torch", "cuda", "cudnn", "threads")
MAX_TABLE_ROWS = 2000
SWEEP_MIN_SIZES = 10  # a (cell, backend) line with this many hidden sizes at one B, T is a sweep


def benchmarks_dir() -> Path:
    return results_dir() / "benchmarks"


def _rows(path: Path) -> list[dict[str, Any]]:
    """One row per timed benchmark of a JSON file (`charrnn.bench.results`' reader); a file that is not
    a pytest-benchmark JSON gives none."""
    try:
        data = read_results(path)
    except ConfigError:
        return []
    return [{**r, "file": path.name, "when": str(data.get("datetime", ""))} for r in table_rows(data)
            if r["backend"] and r["cell"]]


def load_benchmarks(paths: list[Path]) -> pd.DataFrame:
    """All benchmarks; where several files time one shape on one device, the newest wins."""
    frame = pd.DataFrame([r for p in paths for r in _rows(p)])
    if frame.empty:
        return frame
    for col in ("hidden", "batch", "seq_len", "layers"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in ("compile_s", "gflops", "pct_peak", "tokens_per_s", "paired"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.sort_values("when").drop_duplicates(["device", "backend", *SHAPE], keep="last")
    return with_speedup(frame)


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """`speedup` = fused median / this median on the same device and shape (> 1: faster)."""
    ref = frame[frame["backend"] == REFERENCE][["device", *SHAPE, "median_ms"]]
    merged = frame.drop(columns="speedup", errors="ignore").merge(
        ref.rename(columns={"median_ms": "ref_ms"}), on=["device", *SHAPE], how="left")
    return merged.assign(speedup=merged["ref_ms"] / merged["median_ms"]).drop(columns="ref_ms")


def _geomean(values: pd.Series) -> float:
    return float(np.exp(np.log(values.astype(float)).mean()))


def heatmap_figure(frame: pd.DataFrame, direction: str, dtype: str) -> rf.Figure | None:
    sub = frame[(frame["direction"] == direction) & (frame["dtype"] == dtype)
                & (frame["backend"] != REFERENCE) & frame["speedup"].notna()]
    tables = []
    for (cell, backend), group in sub.groupby(["cell", "backend"], sort=True):
        table = group.pivot_table(index="hidden", columns="batch", values="speedup", aggfunc=_geomean)
        tables.append((f"{cell} · {backend}", table.sort_index().sort_index(axis=1)))
    if not tables:
        return None
    key = f"{direction}-{dtype}"
    return rf.Figure(f"heat-{key}", f"Speedup vs {REFERENCE}: {direction}, {dtype}",
                     f"{REFERENCE} median time / backend median time per hidden × batch (> 1: the "
                     "backend is faster); geometric mean over the seq_len and layer counts timed.",
                     rf.encode(rf.speedup_heatmaps(tables)))


def _table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    ordered = frame.sort_values(["cell", "direction", "dtype", "hidden", "batch", "seq_len", "layers", "backend"])
    rows = []
    for _, r in ordered.head(MAX_TABLE_ROWS).iterrows():
        rows.append({"shape": [r[c] for c in SHAPE], "backend": r["backend"],
                     "median": f"{r['median_ms']:.3f}", "iqr": f"{r['iqr_ms']:.3f}",
                     "spread": f"{100 * r['iqr_ms'] / r['median_ms']:.1f} %" if r["median_ms"] else "n/a",
                     "rounds": r["rounds"], "speedup": _fmt(r["speedup"], ".2f", "×"),
                     "paired": _fmt(r["paired"], ".3f"), "gflops": _fmt(r["gflops"], ".1f"),
                     "pct_peak": _fmt(r["pct_peak"], ".0f", " %")})
    return rows


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return f"{value:{spec}}{unit}" if value is not None and np.isfinite(value) else "n/a"


def _compile_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    sub = frame[frame["compile_s"] > 0].sort_values(["cell", "backend", *SHAPE[1:]])
    return [{"shape": [r[c] for c in SHAPE], "backend": r["backend"], "seconds": f"{r['compile_s']:.2f}"}
            for _, r in sub.iterrows()]


def _versions(frame: pd.DataFrame) -> list[str]:
    """Each distinct software set the device's timings came from, e.g. `torch 2.13.0, cuda none`."""
    found = frame[list(VERSIONS)].astype(str).drop_duplicates()
    return [", ".join(f"{k} {v}" for k, v in zip(VERSIONS, row)) for row in found.itertuples(index=False)]


def device_section(device: str, frame: pd.DataFrame) -> dict[str, Any]:
    combos = frame[["direction", "dtype"]].drop_duplicates().sort_values(["direction", "dtype"])
    figs = [heatmap_figure(frame, d, t) for d, t in combos.itertuples(index=False)]
    figs.append(scan_figure(frame))  # min cells: time vs T (charrnn/report/kernels_scan.py)
    return {"device": device, "files": sorted(frame["file"].unique()), "versions": _versions(frame),
            "figures": [f for f in figs if f is not None], "rows": _table(frame),
            "sweep": sweep_section(frame),
            "truncated": len(frame) > MAX_TABLE_ROWS, "n": len(frame),
            "compile": _compile_rows(frame)}


def render_kernels(out_dir: Path, bench_dir: Path | None = None) -> Path | None:
    """Write `kernels.html` when benchmark JSON exists; return its path (None when there is none)."""
    paths = sorted((bench_dir or benchmarks_dir()).glob("*.json"))
    frame = load_benchmarks(paths)
    if frame.empty:
        return None
    rf.apply_theme()
    sections = [device_section(str(d), g) for d, g in frame.groupby("device", sort=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernels.html"
    path.write_text(render_template("kernels.html", sections=sections, shape=SHAPE, reference=REFERENCE,
                                    generated=now_text()),
                    encoding="utf-8")
    return path
