"""`reports/kernels.html` from the kernel suite's pytest-benchmark JSON files.

One section per device found: small multiples of each custom backend's time over `fused`'s
(one convention everywhere: custom / fused, < 1 = the custom backend is faster) against H or T,
the hidden-size sweep and the min-cell scan where timed, and the long per-shape table and the
compile times collapsed. Reads only JSON (no torch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charrnn.paths import results_dir, write_atomic
from charrnn.report import figures as rf
from charrnn.report.base import now_text, render_template
from charrnn.report.kernels_scan import MIN_CELLS, scan_figure
from charrnn.numbers import number, ratio
from charrnn.bench.results import SHAPE as SHAPE_FIELDS
from charrnn.bench.results import DEFAULTS, read_results, table_rows
from charrnn.config import ConfigError
from charrnn.report.kernels_sweep import sweep_section

REFERENCE = "fused"
SHAPE = list(SHAPE_FIELDS)
VERSIONS = ("torch", "cuda", "cudnn", "threads")
MAX_TABLE_ROWS = 600       # the collapsed table; the JSON files hold every row (page <= 800 KB)
SWEEP_MIN_SIZES = 10  # a (cell, backend) line with this many hidden sizes at one B, T is a sweep


def benchmarks_dir() -> Path:
    return results_dir() / "benchmarks"


def _device(row: dict[str, Any], data: dict) -> str:
    """The row's device name; a file that does not name it is named by its machine's CPU."""
    if row["device"] != DEFAULTS["device"]:
        return str(row["device"])
    cpu = ((data.get("machine_info") or {}).get("cpu") or {}).get("brand_raw")
    return str(cpu or (data.get("machine_info") or {}).get("node") or "CPU (model not recorded)")


def _rows(path: Path) -> list[dict[str, Any]]:
    """One row per timed benchmark of a JSON file (`charrnn.bench.results`' reader); a file that is not
    a pytest-benchmark JSON gives none."""
    try:
        data = read_results(path)
    except ConfigError:
        return []
    return [{**r, "device": _device(r, data), "file": path.name, "when": str(data.get("datetime", ""))}
            for r in table_rows(data) if r["backend"] and r["cell"]]


AUTO_VS_FUSED = "train-auto-vs-fused"      # the shape of `auto`'s training throughput against fused's


def auto_headlines(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Per device: each timed comparison of `backend: auto` training against fused (tokens/s ratio,
    its range over rounds, the backend auto chose, the shape), newest file last."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        try:
            data = read_results(path)
        except ConfigError:
            continue
        for bench in data["benchmarks"]:
            info = bench.get("extra_info") or {}
            if info.get("shape") != AUTO_VS_FUSED or info.get("ratio") is None:
                continue
            device = _device({"device": info.get("device_name") or info.get("device") or DEFAULTS["device"]}, data)
            found.setdefault(device, []).append({
                "ratio": ratio_text(info["ratio"]), "low": ratio_text(info.get("ratio_min")),
                "high": ratio_text(info.get("ratio_max")), "chosen": info.get("backend", "?"),
                "shape": f"{str(info.get('cell', '?')).upper()} H{info.get('hidden')} B{info.get('batch')} "
                         f"T{info.get('seq_len')}",
                "auto": number(float(np.median(info.get("auto_tokens_per_s") or [np.nan]))),
                "fused": number(float(np.median(info.get("fused_tokens_per_s") or [np.nan]))),
                "threads": info.get("threads"), "file": path.name, "when": str(data.get("datetime", ""))})
    return found


def ratio_text(value: Any) -> str:
    return f"{float(value):.2f}×" if value is not None and np.isfinite(float(value)) else "n/a"


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
    return with_ratio(frame)


def with_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """`ratio` = this backend's time / fused's on the same device and shape (< 1: faster than
    fused): the paired ratio over rounds where the suite timed one, else the ratio of the medians."""
    ref = frame[frame["backend"] == REFERENCE][["device", *SHAPE, "median_ms"]]
    merged = frame.drop(columns=["speedup", "ratio_vs_fused"], errors="ignore").merge(
        ref.rename(columns={"median_ms": "ref_ms"}), on=["device", *SHAPE], how="left")
    by_medians = merged["median_ms"] / merged["ref_ms"]
    return merged.assign(ratio_vs_fused=merged["paired"].where(merged["paired"].notna(), by_medians)
                         ).drop(columns="ref_ms")


def _x_axis(group: pd.DataFrame) -> str | None:
    """What a small multiple's x axis runs along: hidden size, else sequence length, else batch;
    None when the group timed one shape."""
    return next((col for col in ("hidden", "seq_len", "batch") if group[col].nunique() > 1), None)


def ratio_figure(frame: pd.DataFrame, direction: str, dtype: str) -> rf.Figure | None:
    """Small multiples, one panel per cell: each custom backend's time / fused's against H (or T),
    a line per backend; the geometric mean over the other shape fields timed."""
    sub = frame[(frame["direction"] == direction) & (frame["dtype"] == dtype)
                & (frame["backend"] != REFERENCE) & frame["ratio_vs_fused"].notna()
                & ~frame["cell"].isin(MIN_CELLS)]
    if sub.empty:
        return None
    x = _x_axis(sub)
    panels = []
    for cell, group in sub.groupby("cell", sort=True):
        lines = {b: (g.groupby(x)["ratio_vs_fused"].agg(_geomean) if x else
                     pd.Series([_geomean(g["ratio_vs_fused"])], index=[0]))
                 for b, g in group.groupby("backend", sort=True)}
        panels.append((cell, lines))
    fixed = ", ".join(f"{c}={'/'.join(map(str, sorted(sub[c].dropna().unique())))}"
                      for c in ("hidden", "batch", "seq_len", "layers") if c != x)
    return rf.Figure(f"ratio-{direction}-{dtype}", f"Time / {REFERENCE} time: {direction}, {dtype}",
                     f"Per cell, each custom backend's median time over {REFERENCE}'s at the same shape "
                     "(the paired ratio over rounds where timed; < 1: the custom backend is faster; log "
                     f"scale). {'x: ' + x + '; ' if x else 'One shape timed; '}{fixed} (geometric mean where "
                     "several were timed).",
                     rf.encode(rf.ratio_multiples(panels, x)))


def _geomean(values: pd.Series) -> float:
    return float(np.exp(np.log(values.astype(float)).mean()))


def _table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    ordered = frame.sort_values(["cell", "direction", "dtype", "hidden", "batch", "seq_len", "layers", "backend"])
    return [{"shape": [r[c] for c in SHAPE], "backend": r["backend"], "median": number(r["median_ms"]),
             "spread": _percent(r["iqr_pct"]), "rounds": r["rounds"], "ratio": ratio(r["ratio_vs_fused"]),
             "gflops": number(r["gflops"]), "pct_peak": _percent(r["pct_peak"])}
            for _, r in ordered.head(MAX_TABLE_ROWS).iterrows()]


def _percent(value: Any) -> str:
    return f"{number(value)} %" if value is not None and np.isfinite(value) else "n/a"


def _compile_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    sub = frame[frame["compile_s"] > 0].sort_values(["cell", "backend", *SHAPE[1:]])
    return [{"shape": [r[c] for c in SHAPE], "backend": r["backend"], "seconds": number(r["compile_s"])}
            for _, r in sub.iterrows()]


def _versions(frame: pd.DataFrame) -> list[str]:
    """Each distinct software set the device's timings came from, e.g. `torch 2.13.0, cuda none`."""
    found = frame[list(VERSIONS)].astype(str).drop_duplicates()
    return [", ".join(f"{k} {v}" for k, v in zip(VERSIONS, row)) for row in found.itertuples(index=False)]


def device_section(device: str, frame: pd.DataFrame, headlines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One device: the auto/fused headline where timed, the ratio figures, the sweep, the tables;
    `per_kernel` says whether any kernel was timed beyond the auto/fused comparison."""
    per_kernel = bool((frame["shape"] != AUTO_VS_FUSED).any()) if "shape" in frame else True
    combos = frame[["direction", "dtype"]].drop_duplicates().sort_values(["direction", "dtype"])
    figs = [ratio_figure(frame, d, t) for d, t in combos.itertuples(index=False)]
    figs.append(scan_figure(frame))  # min cells: time vs T (charrnn/report/kernels_scan.py)
    return {"device": device, "headlines": headlines or [], "per_kernel": per_kernel,
            "files": sorted(frame["file"].unique()), "versions": _versions(frame),
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
    headlines = auto_headlines(paths)
    sections = [device_section(str(d), g, headlines.get(str(d))) for d, g in frame.groupby("device", sort=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernels.html"
    write_atomic(path, render_template("kernels.html", sections=sections, shape=SHAPE, reference=REFERENCE,
                                       generated=now_text()))
    return path
