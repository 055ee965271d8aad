"""Figures at their size: a legend names only series with data and fits its figure's width, tick
labels never overlap, and no axis has a single tick (learning curves, an axis plot with an arm
without data, the isolation plot over learning rates)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from charrnn.report import figures as rf
from charrnn.science.stats import mean_ci

LONG = "cell=mingru, backend=scan, hidden_size=100, max_time_s=5, seq_len=128, steps=300"


def _band(n: int, steps=(0, 50, 100)) -> pd.DataFrame:
    mean = [2.0, 1.9, 1.8] if n else [math.nan] * 3
    return pd.DataFrame({"step": steps, "mean": mean, "low": [m - 0.1 for m in mean],
                         "high": [m + 0.1 for m in mean], "n": [n] * 3})


def _legend_texts(fig: plt.Figure) -> list[str]:
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def _tick_labels_overlap(ax: plt.Axes) -> bool:
    renderer = ax.figure.canvas.get_renderer()
    labels = ax.get_xticklabels() + ax.get_xticklabels(minor=True)
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_text() and t.get_visible()]
    boxes.sort(key=lambda b: b.x0)
    return any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:]))


def _visible_ticks(ax: plt.Axes, which: str) -> int:
    lo, hi = sorted(getattr(ax, f"get_{which}lim")())
    axis = ax.xaxis if which == "x" else ax.yaxis
    return sum(lo <= v <= hi for v in axis.get_majorticklocs())


def test_learning_curves_name_only_arms_with_data_once_and_fit_the_page():
    colors = {LONG: "#000000", "empty arm": "#ff0000", "short": "#00ff00"}
    panels = {"val_loss": {LONG: _band(5), "empty arm": _band(0), "short": _band(3)},
              "train_loss": {LONG: _band(0), "short": _band(3)}}
    fig = rf.learning_curves(panels, colors)
    assert sorted(_legend_texts(fig)) == sorted([f"{LONG} (n=5)", "short (n=3)"])
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert legend.width <= fig.bbox.width          # the legend does not widen the PNG
    plt.close(fig)


def test_an_axis_plot_draws_no_line_without_data_and_has_several_ticks():
    ivs = [mean_ci([1.9, 2.0, 2.1]), mean_ci([1.8, 1.85]), mean_ci([]), mean_ci([])]
    points = pd.DataFrame({"hidden_size": [64, 256, 64, 256], "group": ["a=1", "a=1", "a=2", "a=2"],
                           "variant": ["v1", "v2", "v3", "v4"], "iv": ivs})
    fig = rf.axis_plot(points, "hidden_size", "test_loss",
                       {f"v{k}": "#000000" for k in range(1, 5)}, log_x=True)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert _legend_texts(fig) == []                # one group with data: nothing to tell apart
    assert _visible_ticks(ax, "x") >= 2 and _visible_ticks(ax, "y") >= 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "256"]
    plt.close(fig)


@pytest.mark.parametrize("lrs", [[0.004, 0.008, 0.016, 0.032, 0.064], [1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2],
                                 [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1]])
def test_learning_rate_ticks_never_overlap(lrs):
    rows = [{"variant": arm, "value": lr, "iv": mean_ci([2.0 + lr, 2.1 + lr]), "chosen": lr == lrs[1]}
            for arm in ("cell=gru", "cell=vanilla") for lr in lrs]
    fig = rf.isolation_plot(pd.DataFrame(rows), "lr", "val_loss", {"cell=gru": "#000000", "cell=vanilla": "#ff0000"})
    fig.canvas.draw()
    ax = fig.axes[0]
    assert not _tick_labels_overlap(ax) and _visible_ticks(ax, "x") >= 2
    plt.close(fig)


def test_the_overlap_check_can_fail():
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_xticks(range(10), [f"label{k}" for k in range(10)])
    fig.canvas.draw()
    assert _tick_labels_overlap(ax)
    plt.close(fig)


def test_legend_columns_fit_the_width():
    assert rf.legend_columns([LONG] * 6, 11.2) == 1
    assert rf.legend_columns(["cell=gru", "cell=vanilla"], 11.2) == 2
    assert rf.legend_columns([], 11.2) == 1
