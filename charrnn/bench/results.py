"""Reading the kernel suite's pytest-benchmark JSON: the one reader `charrnn bench`, `bench-table`
and the kernels page share, the per-benchmark row with its derived rates, and the text table.

No torch here (the report side imports this). A row holds the case's shape fields, median / IQR,
the paired ratio against `fused` (median and IQR over rounds), FLOPs, achieved GFLOP/s, % of the
device's measured matmul peak at the case's shapes, and tokens/s.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from charrnn import registry
from charrnn.config import CHOICES, ConfigError

REFERENCE = registry.DEFAULT
SHAPE = ("cell", "hidden", "batch", "seq_len", "layers", "dtype", "direction")
EXTRA_KEYS = {  # row field → extra_info keys tried in order (older files spell some differently)
    "cell": ("cell",), "backend": ("backend",), "hidden": ("hidden", "hidden_size"),
    "batch": ("batch", "batch_size"), "seq_len": ("seq_len", "seq"), "layers": ("layers",),
    "dtype": ("dtype",), "direction": ("direction",), "device": ("device_name", "device"),
    "compile_s": ("compile_s", "compile_time_s", "compile_time"), "first_call_s": ("first_call_s",),
    "torch": ("torch",), "cuda": ("cuda",), "cudnn": ("cudnn",), "threads": ("threads",),
    "paired": ("paired_ratio",), "paired_q1": ("paired_ratio_q1",), "paired_q3": ("paired_ratio_q3",),
    "ratio": ("ratio",), "flops": ("flops",), "peak_gflops": ("peak_gflops",), "tokens": ("tokens",),
    "paired_with": ("paired_with",),  # fused, or gru-fused for a min cell (nn.* has none)
    "ratio_label": ("ratio_label",),  # what `ratio` divides: harness/bare, auto/fused tokens/s
}
DEFAULTS = {"layers": 1, "dtype": "fp32", "direction": "fwd_bwd", "device": "unknown device",
            "ratio_label": "harness/bare"}


def read_results(path: str | Path) -> dict:
    """A pytest-benchmark JSON file as a dict; ConfigError naming the file when it is missing,
    not JSON, or has no `benchmarks` list."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"file={str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"file={str(path)!r}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"file={str(path)!r}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ConfigError(f"file={str(path)!r}: not a pytest-benchmark JSON (no 'benchmarks' key)")
    return data


def _extra(info: dict[str, Any], field: str) -> Any:
    for key in EXTRA_KEYS[field]:
        if info.get(key) not in (None, ""):
            return info[key]
    return DEFAULTS.get(field)


def _rate(num: Any, den: Any) -> float | None:
    return num / den if isinstance(num, (int, float)) and isinstance(den, (int, float)) and den else None


def bench_row(bench: dict) -> dict[str, Any] | None:
    """One benchmark as a row (None when it has no median: a failed or skipped entry)."""
    stats, info = bench.get("stats") or {}, bench.get("extra_info") or {}
    if stats.get("median") is None:
        return None
    row = {field: _extra(info, field) for field in EXTRA_KEYS}
    median_s, iqr_s = float(stats["median"]), float(stats.get("iqr", math.nan))
    row.update(name=str(bench.get("name", "")), backend=row["backend"] or bench.get("name", ""),
               shape=info.get("shape") or bench.get("group") or bench.get("name", ""),
               median_ms=1e3 * median_s, iqr_ms=1e3 * iqr_s, rounds=int(stats.get("rounds", 0)),
               iqr_pct=100 * iqr_s / median_s if median_s else math.nan)
    gflops = _rate(row["flops"], median_s * 1e9)
    row.update(gflops=gflops, pct_peak=_rate(100 * gflops, row["peak_gflops"]) if gflops else None,
               tokens_per_s=_rate(row["tokens"], median_s))
    return row


def table_rows(data: dict) -> list[dict[str, Any]]:
    """One row per timed benchmark, plus `speedup` vs `fused` of the same shape (fused median /
    this median, from separate runs; None without a fused row)."""
    rows = [r for r in map(bench_row, data["benchmarks"]) if r is not None]
    fused = {r["shape"]: r["median_ms"] for r in rows if r["backend"] == REFERENCE}
    for r in rows:
        ref = fused.get(r["shape"])
        r["speedup"] = ref / r["median_ms"] if ref and r["median_ms"] else None
    return rows


def vs_fused(row: dict) -> float | None:
    """This backend's time over fused's: the paired ratio where there is one."""
    if row["paired"] is not None:
        return row["paired"]
    return 1 / row["speedup"] if row["speedup"] else None


def is_fused(backend: str) -> bool:
    """A vendor backend (nn.*), by its registry entry; a name the registry no longer has is not."""
    entry = registry.BACKENDS.get(backend)
    return entry is not None and entry.fused


def best_custom(rows: list[dict]) -> dict[str, tuple[str, float]]:
    """Per shape: the fastest non-fused backend and its time / fused's (`vs_fused`)."""
    best: dict[str, tuple[str, float]] = {}
    for r in rows:
        ratio = vs_fused(r)
        if is_fused(r["backend"]) or ratio is None:
            continue
        if r["shape"] not in best or ratio < best[r["shape"]][1]:
            best[r["shape"]] = (r["backend"], ratio)
    return best


def _cell(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def _paired(r: dict) -> str:
    if r["paired"] is None:
        return "-"
    spread = f" [{r['paired_q1']:.2f},{r['paired_q3']:.2f}]" if r["paired_q1"] is not None else ""
    return f"{r['paired']:.3f}{spread}"


def format_table(data: dict) -> str:
    """Per shape: median, IQR, speedup vs fused, paired ratio with its IQR, GFLOP/s and % of the
    measured matmul peak, rounds, compile time; then the best custom backend per shape and the
    skipped backends with their reasons."""
    rows = table_rows(data)
    order = {b: i for i, b in enumerate(CHOICES["backend"])}
    lines = ["speedup = fused median / median (separate runs); paired = median [q1,q3] over rounds of "
             "time / time of fused timed just before (< 1: faster than fused); %peak = GFLOP/s over "
             "one plain torch.mm at the case's shapes"]
    for shape, group in itertools.groupby(sorted(rows, key=lambda r: (r["shape"], order.get(r["backend"], 99))),
                                          key=lambda r: r["shape"]):
        group = list(group)
        against = sorted({str(r["paired_with"]) for r in group if r["paired_with"] not in (None, REFERENCE)})
        lines.append(shape + (f"  (paired with {', '.join(against)} at the same shape)" if against else ""))
        lines.append(f"  {'backend':<20} {'median ms':>10} {'IQR ms':>8} {'IQR %':>6} {'speedup':>8} "
                     f"{'paired [q1,q3]':>20} {'GFLOP/s':>8} {'%peak':>6} {'rounds':>6} {'compile s':>9}")
        for r in group:
            lines.append(f"  {r['backend']:<20} {r['median_ms']:>10.3f} {r['iqr_ms']:>8.3f} "
                         f"{r['iqr_pct']:>5.1f}% {_cell(r['speedup'], '.2f'):>7}x {_paired(r):>20} "
                         f"{_cell(r['gflops'], '.1f'):>8} {_cell(r['pct_peak'], '.0f'):>6} "
                         f"{r['rounds']:>6} {_cell(r['compile_s'] or None, '.1f'):>9}"
                         + (f"  {r['ratio_label']} {r['ratio']:.3f}" if r["ratio"] is not None else ""))
    best = best_custom(rows)
    if best:
        lines.append("\nbest custom backend / fused (paired where timed so; < 1 = custom faster):")
        lines += [f"  {shape:<40} {b:<20} {ratio:.3f}" for shape, (b, ratio) in sorted(best.items())]
    skipped = data.get("skipped", [])
    if skipped:
        lines.append(f"\nskipped ({len(skipped)}):")
        reasons: dict[str, int] = {}
        for s in skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines += [f"  {n:>4} x {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines)
