"""The speed sweep table: throughput per hidden size and the ratio between neighbouring sizes
(where along the sweep is the largest jump?). Shown when hidden_size is an axis."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from charrnn.science.stats import FINISHED, mean_ci
from .base import natural_key

SWEEP_AXIS = "hidden_size"
SPEED = "final_tokens_per_s"


def speed_sweep(runs: pd.DataFrame, axes: list[str]) -> dict[str, Any] | None:
    """Rows per size (mean tokens/s with CI over seeds, ratio smaller/larger to the next size)
    and the largest neighbour ratio; None unless hidden_size is the only axis and speed was logged."""
    if axes != [SWEEP_AXIS] or SPEED not in runs:
        return None
    done = runs[runs["status"] == FINISHED]
    sizes = sorted(pd.to_numeric(done[SWEEP_AXIS]).unique(), key=natural_key)
    speed = pd.to_numeric(done[SPEED], errors="coerce")
    ivs = [mean_ci(speed[pd.to_numeric(done[SWEEP_AXIS]) == h]) for h in sizes]
    rows = [{"size": int(h), "speed": iv.fmt(0), "ratio": None, "largest": False} for h, iv in zip(sizes, ivs)]
    ratios = [a.mean / b.mean if b.mean > 0 else np.nan for a, b in zip(ivs, ivs[1:])]
    for row, ratio in zip(rows, ratios):
        row["ratio"] = f"{ratio:.2f}x" if np.isfinite(ratio) else "n/a"
    if not ratios or not np.isfinite(ratios).any():
        return {"rows": rows, "largest": None}
    k = int(np.nanargmax(ratios))
    rows[k]["largest"] = True
    return {"rows": rows, "largest": f"{ratios[k]:.2f}x from {sizes[k + 1]:g} down to {sizes[k]:g}"}
