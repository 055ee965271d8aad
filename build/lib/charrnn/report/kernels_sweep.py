"""The hidden-size sweep on the kernels page: tokens/s against H per cell and backend, with the
largest neighbour-to-neighbour ratio of each line flagged (the measurement behind "a discontinuous
jump" in speed as H grows). Reads the benchmark rows only (no torch).

A sweep is a (cell, backend) line timed at >= SWEEP_MIN_SIZES hidden sizes with everything else
fixed (batch, seq_len, layers, dtype, direction).
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from charrnn.report import figures as rf

SWEEP_MIN_SIZES = 10
FIXED = ["batch", "seq_len", "layers", "dtype", "direction"]


def sweep_lines(frame: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """(cell, backend, *FIXED) → rows sorted by hidden, for every line with enough sizes."""
    rows = frame[frame["tokens_per_s"].notna()] if "tokens_per_s" in frame else frame.iloc[:0]
    lines = {}
    for key, group in rows.groupby(["cell", "backend", *FIXED], sort=True):
        group = group.sort_values("hidden")
        if group["hidden"].nunique() >= SWEEP_MIN_SIZES:
            lines[key] = group
    return lines


def largest_jump(line: pd.DataFrame) -> dict[str, Any]:
    """The neighbouring hidden sizes whose tokens/s differ by the largest factor (either way), with
    what the work alone explains: `flops_factor`, the growth of the call's FLOPs between the two sizes,
    and `beyond_flops`, the change in achieved GFLOP/s (the part of the jump the extra work does not
    explain; a discontinuity shows here, the H² growth of a step does not); `iqr_pct` of both ends
    says how noisy the two medians are."""
    h, rate = line["hidden"].astype(int).tolist(), line["tokens_per_s"].astype(float).tolist()
    steps = [(max(a, b) / min(a, b), i) for i, (a, b) in enumerate(zip(rate, rate[1:]))]
    factor, i = max(steps)
    flops, gflops = line["flops"].astype(float).tolist(), line["gflops"].astype(float).tolist()
    iqr = line["iqr_pct"].astype(float).tolist()
    return {"from_h": h[i], "to_h": h[i + 1], "factor": factor,
            "direction": "faster" if rate[i + 1] > rate[i] else "slower",
            "from_rate": rate[i], "to_rate": rate[i + 1],
            "flops_factor": flops[i + 1] / flops[i],
            "beyond_flops": max(gflops[i], gflops[i + 1]) / min(gflops[i], gflops[i + 1]),
            "iqr_pct": (iqr[i], iqr[i + 1])}


def sweep_figure(lines: dict[tuple, pd.DataFrame], jumps: dict[tuple, dict]) -> plt.Figure:
    """One panel per cell: tokens/s against H (log-log), one line per backend, the largest jump of
    each line marked and labelled."""
    cells = sorted({key[0] for key in lines})
    fig, axes = plt.subplots(1, len(cells), figsize=(5.2 * len(cells), 4.2), squeeze=False)
    colors = rf.variant_colors(sorted({key[1] for key in lines}))
    for ax, cell in zip(axes[0], cells):
        for key, line in lines.items():
            if key[0] != cell:
                continue
            color, jump = colors[key[1]], jumps[key]
            ax.plot(line["hidden"].astype(int), line["tokens_per_s"], marker="o", ms=3, color=color,
                    label=key[1])
            ax.plot([jump["from_h"], jump["to_h"]], [jump["from_rate"], jump["to_rate"]], color=color,
                    lw=4, alpha=0.35)
            ax.annotate(f"{jump['factor']:.2f}×", (jump["to_h"], jump["to_rate"]), color=color,
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xscale="log", yscale="log", xlabel="hidden size H", ylabel="tokens / s", title=cell)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_section(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The sweep figure and a table of each line's largest jump; None without a sweep."""
    lines = sweep_lines(frame)
    if not lines:
        return None
    jumps = {key: largest_jump(line) for key, line in lines.items()}
    fixed = sorted({", ".join(f"{k}={v}" for k, v in zip(FIXED, key[2:])) for key in lines})
    figure = rf.Figure("sweep-hidden", "Tokens/s against hidden size",
                       "Median tokens/s (batch x seq_len per call / median call time) per hidden size; "
                       "the thick segment and its label mark each line's largest factor between "
                       f"neighbouring sizes. Fixed: {'; '.join(fixed)}.",
                       rf.encode(sweep_figure(lines, jumps)))
    table = [{"cell": key[0], "backend": key[1], "sizes": len(lines[key]), "from_h": j["from_h"],
              "to_h": j["to_h"], "factor": f"{j['factor']:.2f}×", "direction": j["direction"],
              "flops_factor": f"{j['flops_factor']:.2f}×", "beyond_flops": f"{j['beyond_flops']:.2f}×",
              "iqr": " / ".join(f"{v:.0f} %" for v in j["iqr_pct"])}
             for key, j in sorted(jumps.items(), key=lambda kv: -kv[1]["factor"])]
    return {"figure": figure, "jumps": table, "largest": table[0]}
