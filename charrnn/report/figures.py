"""Figures for the HTML reports: one seaborn theme, a stable colour per variant, inline PNG.

Every plotting function takes plain data (frames, `Interval`s, a colour map) and returns a
matplotlib figure (`encode` turns it into base64 PNG); nothing here reads MLflow. Text that came
from runs goes through `literal`, so a `$` in it is drawn as a dollar sign, not as mathtext.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Iterable

import matplotlib
import matplotlib.axis
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from charrnn.science.stats import Interval  # noqa: E402
from .base import Figure  # noqa: E402,F401 (figures are returned as base.Figure)
from charrnn.numbers import tick, unit_of  # noqa: E402

DPI = 90
PALETTE_SMALL = "colorblind"    # up to 10 variants
PALETTE_LARGE = "husl"          # more: evenly spaced hues
THEME = {"style": "whitegrid", "context": "notebook", "font_scale": 0.95,
         "rc": {"figure.dpi": DPI, "savefig.dpi": DPI}}
PANEL_W, PANEL_H = 5.6, 3.6
PARETO_STYLE = {"color": "black", "lw": 1.0, "ls": "--", "zorder": 1}


def apply_theme() -> None:
    sns.set_theme(**THEME)


def literal(text: object) -> str:
    """`text` drawn as is: a `$` from a run must not switch matplotlib into mathtext."""
    return str(text).replace("$", r"\$")


def variant_colors(labels: Iterable[str]) -> dict[str, str]:
    """One hex colour per variant label, in the given (stable) order."""
    labels = list(labels)
    name = PALETTE_SMALL if len(labels) <= 10 else PALETTE_LARGE
    return dict(zip(labels, sns.color_palette(name, max(len(labels), 1)).as_hex()))


def encode(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _legend(ax: plt.Axes, n_items: int) -> None:
    if n_items:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                  ncol=1 if n_items <= 16 else 2)


def _errors(intervals: list[Interval]) -> np.ndarray:
    """(2, N) asymmetric error bars; zero length where there is no CI. A resampled CI need not
    contain the point estimate (e.g. variance shares), so each side is clipped at zero."""
    lo = [iv.mean - iv.low if iv.has_ci else 0.0 for iv in intervals]
    hi = [iv.high - iv.mean if iv.has_ci else 0.0 for iv in intervals]
    return np.clip(np.array([lo, hi]), 0.0, None)


# --------------------------------------------------------------------------- learning curves

def learning_curves(panels: dict[str, dict[str, pd.DataFrame]], colors: dict[str, str]) -> plt.Figure:
    """One panel per metric, two per row (the page's width, readable text); per variant the mean
    over seeds and its 95 % Student-t CI band; one legend below. `panels[metric][variant]` has
    columns step, mean, low, high, n."""
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_W * ncols, PANEL_H * nrows), squeeze=False)
    drawn: dict[str, tuple[plt.Line2D, int]] = {}     # variant → a line of it and its largest n
    for ax, (metric, bands) in zip(axes.flat, panels.items()):
        for variant, band in bands.items():
            band = band[np.isfinite(pd.to_numeric(band["mean"], errors="coerce"))]
            n = int(band["n"].max()) if len(band) else 0
            if n == 0:                                # no data: neither a line nor a legend entry
                continue
            (line,) = ax.plot(band["step"], band["mean"], color=colors[variant], lw=1.3)
            ax.fill_between(band["step"], band["low"], band["high"], color=colors[variant], alpha=0.2, lw=0)
            if n > drawn.get(variant, (None, 0))[1]:
                drawn[variant] = (line, n)
        unit = unit_of(metric)
        ax.set(xlabel="step", ylabel=literal(f"{metric} ({unit})" if unit and unit != "%" else metric),
               title=literal(metric))
        plain_ticks(ax.yaxis)
    labels = {literal(f"{variant} (n={n})"): line for variant, (line, n) in drawn.items()}
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    if labels:
        fig.legend(labels.values(), labels.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=legend_columns(labels, PANEL_W * ncols), fontsize="small", frameon=False)
    return fig


LEGEND_CHAR_IN, LEGEND_HANDLE_IN = 0.065, 0.7     # inches per character of a small legend label; handle + gap


def legend_columns(labels: Iterable[str], width_in: float, most: int = 3) -> int:
    """Legend columns that fit `width_in` inches (the figure's width): a legend wider than its
    figure widens the PNG, and the page then shrinks the whole figure and its text."""
    labels = list(labels)
    column = LEGEND_CHAR_IN * max(map(len, labels), default=0) + LEGEND_HANDLE_IN
    return max(1, min(most, len(labels), int(width_in // column)))


# --------------------------------------------------------------------------- point plots

def point_plot(rows: list[tuple[str, Interval]], colors: dict[str, str], metric: str) -> plt.Figure:
    """Mean and 95 % CI per variant, n written beside each point."""
    height = min(0.9 + 0.28 * len(rows), 14.0)
    fig, ax = plt.subplots(figsize=(PANEL_W + 1.5, height))
    ys = np.arange(len(rows))
    for y, (label, iv) in zip(ys, rows):
        ax.errorbar([iv.mean], [y], xerr=_errors([iv]), fmt="o", color=colors[label], capsize=3)
        if np.isfinite(iv.mean):
            ax.annotate(f"n={iv.n}", (iv.high if iv.has_ci else iv.mean, y), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize="x-small")
    ax.set_yticks(ys, [literal(label) for label, _ in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set(xlabel=literal(f"{metric} (mean, 95 % CI over seeds)"))
    return fig


def axis_plot(points: pd.DataFrame, x: str, y_label: str, colors: dict[str, str],
              log_x: bool = False) -> plt.Figure:
    """`y_label` against numeric axis `x`: one line per group of the other axes, markers in the
    variant's colour, 95 % CI error bars. `points` has columns x, group, variant, iv (Interval)."""
    fig, ax = plt.subplots(figsize=(PANEL_W + 1.0, PANEL_H))
    styles = ["-", "--", ":", "-."]
    points = points[[np.isfinite(iv.mean) for iv in points["iv"]]]      # a point without data is not drawn
    for k, (group, rows) in enumerate(points.groupby("group", sort=False)):
        rows = rows.sort_values(x)
        ivs = list(rows["iv"])
        ax.plot(rows[x], [iv.mean for iv in ivs], color="0.35", ls=styles[k % len(styles)], lw=1,
                label=literal(group) if group else None, zorder=1)
        for xv, variant, iv in zip(rows[x], rows["variant"], ivs):
            ax.errorbar([xv], [iv.mean], yerr=_errors([iv]), fmt="o", color=colors[variant],
                        capsize=3, zorder=2)
    if log_x:
        ax.set_xscale("log", base=2)
    value_ticks(ax.xaxis, points[x])
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5, min_n_ticks=3))
    ax.set(xlabel=literal(x), ylabel=literal(f"{y_label} (mean, 95 % CI)"))
    if points["group"].nunique() > 1:
        _legend(ax, points["group"].nunique())
    return fig


# --------------------------------------------------------------------------- cost view

def cost_plot(rows: pd.DataFrame, colors: dict[str, str], metric: str) -> plt.Figure:
    """Final metric against wall time and against parameter count; Pareto front dashed.
    `rows` has columns variant, loss (Interval), time (Interval), params (float), and boolean
    columns front_time, front_params."""
    fig, axes = plt.subplots(1, 2, figsize=(2 * PANEL_W, PANEL_H), sharey=True)
    panels = [("time", "wall time per run (s)", "front_time"), ("params", "parameters", "front_params")]
    for ax, (col, label, front) in zip(axes, panels):
        for _, r in rows.iterrows():
            xv = r[col].mean if isinstance(r[col], Interval) else r[col]
            xerr = _errors([r[col]]) if isinstance(r[col], Interval) else None
            ax.errorbar([xv], [r["loss"].mean], xerr=xerr, yerr=_errors([r["loss"]]), fmt="o",
                        color=colors[r["variant"]], capsize=2, zorder=2,
                        mec="black" if r[front] else None, ms=8 if r[front] else 6)
        _pareto_line(ax, rows[rows[front]], col)
        unit = {"%": "fraction"}.get(unit_of(metric), unit_of(metric))
        xs = [v.mean if isinstance(v, Interval) else v for v in rows[col]]
        ax.set(xlabel=label, ylabel=literal(f"{metric} ({unit})" if unit else metric), xscale=_cost_scale(xs))
        if _cost_scale(xs) == "linear":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
        plain_ticks(ax.xaxis)
        plain_ticks(ax.yaxis)
    return fig


def _cost_scale(values: list[float]) -> str:
    """Log x where the costs span a decade or more; linear otherwise (a log axis inside one decade
    has one labelled tick, or none)."""
    finite = [v for v in values if np.isfinite(v) and v > 0]
    return "log" if finite and max(finite) / min(finite) >= 10 else "linear"


def _pareto_line(ax: plt.Axes, front: pd.DataFrame, col: str) -> None:
    xs = [v.mean if isinstance(v, Interval) else v for v in front[col]]
    ys = [iv.mean for iv in front["loss"]]
    order = np.argsort(xs)
    if len(order):
        ax.step(np.asarray(xs)[order], np.asarray(ys)[order], where="post", label="Pareto front",
                **PARETO_STYLE)
        ax.legend(loc="upper right", fontsize="small")


# --------------------------------------------------------------------------- importance

def importance_plot(shares: dict[str, Interval], metric: str) -> plt.Figure:
    names = list(shares)
    ivs = [shares[a] for a in names]
    fig, ax = plt.subplots(figsize=(PANEL_W, 0.8 + 0.45 * len(names)))
    color = sns.color_palette(PALETTE_SMALL, 1)[0]
    ax.barh([literal(a) for a in names], [iv.mean for iv in ivs], xerr=_errors(ivs), color=color, capsize=3)
    for y, iv in enumerate(ivs):
        ax.annotate(f"n={iv.n} seeds", (max(iv.high if iv.has_ci else iv.mean, 0), y), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize="x-small")
    ax.invert_yaxis()
    ax.set(xlabel=literal(f"share of {metric} variance (main effect, 95 % CI over seeds)"),
           xlim=(0, max(1.0, *(iv.high for iv in ivs if iv.has_ci), 0)))
    return fig


# --------------------------------------------------------------------------- forest plot

VERDICT_COLORS = {"reproduced": "#1a7f37", "contradicted": "#cf222e", "equivalent": "#0969da",
                  "underpowered": "#9a6700", "not tested": "#6e7781"}


def _verdict_legend(ax: plt.Axes, labels: Iterable[str]) -> None:
    handles = [plt.Line2D([], [], color=VERDICT_COLORS[k], marker="o", lw=2, label=k)
               for k in VERDICT_COLORS if k in set(labels)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


MAX_VALUE_TICKS = 6


def value_ticks(axis: matplotlib.axis.Axis, values: Iterable[float]) -> None:
    """Ticks at the values a grid ran (at most MAX_VALUE_TICKS, evenly thinned), plain labels and no
    minor labels: on a log axis the default labels of a narrow range overlap; a single value gets
    its neighbours' ticks too, so no axis has one tick alone."""
    ran = sorted({float(v) for v in values if np.isfinite(v)})
    if len(ran) < 2:
        axis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4, min_n_ticks=3))
        plain_ticks(axis, locate=False)
        return
    step = math.ceil(len(ran) / MAX_VALUE_TICKS)
    axis.set_ticks(ran[::step] if ran[::step][-1] == ran[-1] else ran[::step] + [ran[-1]])
    plain_ticks(axis, locate=False)


def plain_ticks(axis: matplotlib.axis.Axis, locate: bool = True) -> None:
    """Tick labels as plain numbers (`5`, `1,000`, `0.01`), never `5×10⁰`, on any scale (a log
    axis gets ticks at 1, 2 and 5 times the powers of ten, so a narrow range still has labels;
    `locate=False` keeps ticks already placed)."""
    if locate and axis.get_scale() == "log":
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: tick(v)))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def forest_plot(rows: list[dict]) -> plt.Figure:
    """One row per claim: its effect with the CI, already divided by its margin (so claims on
    different metrics share an axis), the ±1 band shaded, the marker coloured by verdict. Each row
    has label, effect, low, high, verdict."""
    fig, ax = plt.subplots(figsize=(PANEL_W + 2.5, 0.9 + 0.34 * len(rows)))
    ax.axvspan(-1, 1, color="0.85", lw=0, zorder=0)
    ax.axvline(0, color="0.4", lw=0.8, zorder=1)
    for y, r in enumerate(rows):
        color = VERDICT_COLORS.get(r["verdict"], "black")
        if np.isfinite(r["low"]) and np.isfinite(r["high"]):
            ax.plot([r["low"], r["high"]], [y, y], color=color, lw=2, zorder=2)
        ax.plot([r["effect"]], [y], "o", color=color, zorder=3)
    ax.set_yticks(range(len(rows)), [literal(r["label"]) for r in rows], fontsize="small")
    ax.invert_yaxis()
    reach = max([1.0] + [abs(v) for r in rows for v in (r["low"], r["high"], r["effect"]) if np.isfinite(v)])
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(-reach * 1.3, reach * 1.3)
    ticks = [0.0] + [s * 10.0 ** k for k in range(0, int(np.ceil(np.log10(reach * 1.3))) + 1) for s in (-1, 1)]
    ax.set_xticks(sorted(t for t in ticks if abs(t) <= reach * 1.3))
    plain_ticks(ax.xaxis)
    ax.set(xlabel="effect / margin, claimed direction (right = as claimed; grey band: within ±margin)")
    _verdict_legend(ax, [r["verdict"] for r in rows])
    return fig


def unit_forest(panels: list[dict]) -> plt.Figure:
    """One thin axis per claim in its own units: the effect (dot) with its CI, reference lines
    (`lines`: name → x; dashed, 0 / 1 / the bar), log scale for ratios, inverted where lower is the
    claimed side. Each panel has label, effect, low, high, verdict, lines, log, invert, xlabel."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(PANEL_W + 2.5, 0.35 + 1.05 * len(panels)), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        color = VERDICT_COLORS.get(p["verdict"], "black")
        for k, (name, x) in enumerate(p["lines"].items()):
            ax.axvline(x, color="0.4", lw=0.9, ls="-" if k == 0 and name != "bar" else "--", zorder=1)
            ax.annotate(literal(name), (x, 0.55), xytext=(3, 0), textcoords="offset points",
                        fontsize="x-small", color="0.3", va="bottom")
        if np.isfinite(p["low"]) and np.isfinite(p["high"]):
            ax.plot([p["low"], p["high"]], [0, 0], color=color, lw=2, zorder=2)
        ax.plot([p["effect"]], [0], "o", color=color, zorder=3)
        values = [v for v in (p["low"], p["high"], p["effect"], *p["lines"].values()) if np.isfinite(v)]
        if p["log"]:
            ax.set_xscale("log")
        lo, hi = min(values), max(values)
        pad = (hi / lo) ** 0.1 if p["log"] and lo > 0 else None
        ax.set_xlim(*((lo / pad, hi * pad) if pad else (lo - 0.08 * (hi - lo or 1), hi + 0.08 * (hi - lo or 1))))
        if p["invert"]:
            ax.invert_xaxis()
        plain_ticks(ax.xaxis)
        ax.set_ylim(-1, 1.4)
        ax.set_yticks([])
        ax.set_title(literal(p["label"]), loc="left", fontsize="small")
        ax.set_xlabel(literal(p["xlabel"]), fontsize="small")
    _verdict_legend(axes[0, 0], [p["verdict"] for p in panels])
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- kernels

def small_multiples(n: int, ncols: int = 4, panel: tuple[float, float] = (3.1, 2.5)) -> tuple[plt.Figure, np.ndarray]:
    """A grid of `n` panels, at most `ncols` a row (a page-wide figure keeps readable text); the
    unused ones hidden. Returns the figure and the flat array of the first `n` axes."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def ratio_multiples(panels: list[tuple[str, dict[str, pd.Series]]], x: str | None) -> plt.Figure:
    """One panel per cell: each backend's time / fused time against `x` (a line per backend;
    one dot per backend when a single shape was timed), log y, the 1 line = as fast as fused."""
    backends = sorted({b for _, lines in panels for b in lines})
    colors = variant_colors(backends)
    fig, axes = small_multiples(len(panels))
    for ax, (cell, lines) in zip(axes, panels):
        ax.axhline(1.0, color="0.3", lw=0.9, zorder=1)
        for k, (backend, series) in enumerate(lines.items()):
            if x:
                ax.plot(series.index.astype(float), series.to_numpy(), marker="o", ms=3, lw=1.3,
                        color=colors[backend], label=literal(backend))
            else:
                ax.plot([k], series.to_numpy(), "o", ms=6, color=colors[backend], label=literal(backend))
        if x:
            ax.set_xscale("log", base=2)
            ax.set_xlabel({"hidden": "hidden size H", "seq_len": "sequence length T"}.get(x, x))
            plain_ticks(ax.xaxis)
        else:
            ax.set_xticks(range(len(lines)), [literal(b) for b in lines], rotation=45, ha="right",
                          fontsize="x-small")
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
        ax.set_title(literal(cell))
        ax.set_ylabel("time / fused time")
    handles = [plt.Line2D([], [], color=colors[b], marker="o", label=literal(b)) for b in backends]
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
               fontsize="small", frameon=False)
    return fig


# --------------------------------------------------------------------------- budget views, tuning

CI_COLOR = "#4c72b0"               # interval bands; the margin band stays grey


def budget_plot(panels: list[tuple[str, list, float, str]]) -> plt.Figure:
    """One panel per (title, points, margin, x label): a claim's effect (claimed direction) with its
    CI band against the step or the elapsed time, the ±margin band grey, markers coloured by the
    label at that point."""
    fig, axes = plt.subplots(1, len(panels), figsize=(PANEL_W * len(panels), PANEL_H), squeeze=False)
    labels = set()
    for ax, (title, points, margin, xlabel) in zip(axes[0], panels):
        xs = [p.x for p in points]
        if margin > 0:
            ax.axhspan(-margin, margin, color="0.85", lw=0, zorder=0)
        ax.axhline(0, color="0.4", lw=0.8, zorder=1)
        ax.plot(xs, [p.effect.mean for p in points], color="0.2", lw=1, zorder=2)
        ax.fill_between(xs, [p.effect.low for p in points], [p.effect.high for p in points],
                        color=CI_COLOR, alpha=0.3, lw=0, zorder=1)
        for p in points:
            ax.plot([p.x], [p.effect.mean], "o", ms=4, color=VERDICT_COLORS.get(p.label, "black"), zorder=3)
            labels.add(p.label)
        plain_ticks(ax.yaxis)
        ax.set(xlabel=literal(xlabel), ylabel="effect, claimed direction", title=literal(title))
    handles = [plt.Line2D([], [], color=c, marker="o", lw=0, label=k) for k, c in VERDICT_COLORS.items() if k in labels]
    handles += [matplotlib.patches.Patch(color=CI_COLOR, alpha=0.3, label="95 % CI"),
                matplotlib.patches.Patch(color="0.85", label="±margin")]
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                       frameon=False)
    return fig


def isolation_plot(frame: pd.DataFrame, key: str, metric: str, colors: dict[str, str]) -> plt.Figure:
    """Metric against a tuned value, one line per arm: mean and 95 % CI over seeds; the selected
    value per arm ringed. `frame` has columns variant, value, iv (Interval), chosen (bool)."""
    fig, ax = plt.subplots(figsize=(PANEL_W + 1.0, PANEL_H))
    for variant, rows in frame.groupby("variant", sort=False):
        rows = rows.sort_values("value")
        color = colors.get(variant, "black")
        ivs = list(rows["iv"])
        ax.errorbar(rows["value"], [iv.mean for iv in ivs], yerr=_errors(ivs), color=color, marker="o",
                    capsize=3, lw=1.2, label=literal(variant))
        for xv, iv, chosen in zip(rows["value"], ivs, rows["chosen"]):
            if chosen:
                ax.plot([xv], [iv.mean], "o", ms=12, mfc="none", mec=color, mew=1.5)
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.notna().all() and (values > 0).all() and values.max() / values.min() >= 10:
        ax.set_xscale("log")
    if values.notna().all():
        value_ticks(ax.xaxis, values)
    ax.set(xlabel=literal(key), ylabel=literal(f"{metric} (mean, 95 % CI)"))
    _legend(ax, frame["variant"].nunique())
    return fig
