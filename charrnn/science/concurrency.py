"""Which runs trained beside another: overlaps of their wall-clock intervals [start_time, end_time).

A run's speed is a clean measurement only when nothing else trained while it did. The executor's
tag says what it intended (`charrnn.speed_measurement`); the start and end times the store keeps
say what happened. Torch-free, pandas only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def beside_counts(runs: pd.DataFrame) -> pd.Series:
    """Per run (index of `runs`), how many other runs of `runs` trained during some of its time:
    their intervals overlap (touching ends do not). Needs `start_time` and `end_time`; a run
    without an end (still running, or killed unrecorded) counts as running until the last end."""
    start = pd.to_datetime(runs["start_time"], utc=True)
    end = pd.to_datetime(runs["end_time"], utc=True)
    end = end.fillna(end.max() if end.notna().any() else start.max())
    s = start.to_numpy()[:, None]
    e = end.to_numpy()[:, None]
    overlap = (s < e.T) & (s.T < e)                  # (N, N): run i and run j trained at once
    np.fill_diagonal(overlap, False)
    return pd.Series(overlap.sum(axis=1), index=runs.index, name="beside")
