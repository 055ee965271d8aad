"""Kernels page, min cells: time per call vs sequence length T for each backend of minGRU/minLSTM and
for nn.GRU (`gru`, `fused`) at the same hidden size and batch, with where (if) the scan crosses nn.GRU.

Reads the benchmark frame of `kernels.load_benchmarks` (no torch): the cases come from
`charrnn.bench.cases.scan_cases`. One figure per device section; None where no min cell was timed.
"""
from __future__ import annotations

import pandas as pd

from charrnn import registry
from charrnn.report import figures as rf
from charrnn.numbers import ratio as ratio_text

MIN_CELLS = registry.min_cells()
COMPARED = ("gru", "fused")          # the vendor kernel the scan is held against


def _arms(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the min cells and of nn.GRU fused, layer-level, 1 layer."""
    keep = frame["cell"].isin(MIN_CELLS) | ((frame["cell"] == COMPARED[0]) & (frame["backend"] == COMPARED[1]))
    sub = frame[keep & (frame["layers"] == 1) & (frame["direction"] != "train_step")]
    return sub.assign(arm=sub["cell"] + " · " + sub["backend"])


def crossing(frame: pd.DataFrame, cell: str = "mingru") -> str:
    """Where `cell`'s scan becomes faster than nn.GRU along T, per (hidden, batch, dtype, direction)."""
    sub = _arms(frame)
    lines = []
    for key, group in sub.groupby(["hidden", "batch", "dtype", "direction"], sort=True):
        t = group.pivot_table(index="seq_len", columns="arm", values="median_ms", aggfunc="median")
        scan, ref = f"{cell} · scan", " · ".join(COMPARED)
        if scan not in t or ref not in t:
            continue
        ratio = (t[scan] / t[ref]).dropna().sort_index()
        faster = ratio[ratio < 1]
        where = (f"faster than nn.GRU from T={int(faster.index[0])}" if len(faster)
                 else f"slower than nn.GRU at every T timed (up to T={int(ratio.index[-1])})")
        detail = ", ".join(f"T={int(k)}: {ratio_text(v)}" for k, v in ratio.items())
        lines.append(f"{cell} scan, H={key[0]} B={key[1]} {key[2]} {key[3]}: {where} (scan / nn.GRU time: {detail})")
    return "; ".join(lines)


def scan_figure(frame: pd.DataFrame) -> rf.Figure | None:
    """Median time per call vs T, one line per cell · backend, one panel per (hidden, batch, dtype,
    direction); log-log axes."""
    sub = _arms(frame)
    if not sub["cell"].isin(MIN_CELLS).any():
        return None
    panels = list(sub.groupby(["hidden", "batch", "dtype", "direction"], sort=True))
    colors = rf.variant_colors(sorted(sub["arm"].unique()))
    fig, axes = rf.small_multiples(len(panels), panel=(3.1, 2.6))
    for ax, (key, group) in zip(axes, panels):
        for arm, rows in group.sort_values("seq_len").groupby("arm", sort=True):
            ax.plot(rows["seq_len"].astype(float), rows["median_ms"], marker="o", label=rf.literal(arm),
                    color=colors[arm])
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="ms per call",
               title=rf.literal(f"H={key[0]} B={key[1]} {key[2]} {key[3]}"))
        rf.plain_ticks(ax.xaxis)
        rf.plain_ticks(ax.yaxis)
    fig.tight_layout()
    fig.legend(handles=[rf.plt.Line2D([], [], color=c, marker="o", label=rf.literal(a)) for a, c in colors.items()],
               loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(colors)), fontsize="small",
               frameon=False)
    return rf.Figure("scan-vs-T", "Min cells: time vs sequence length",
                     "Median time per call of minGRU/minLSTM on `loop` and `scan` and of nn.GRU (fused) at "
                     "the same hidden size and batch. " + (crossing(frame) or "No nn.GRU row to compare."),
                     rf.encode(fig))
