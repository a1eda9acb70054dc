"""Figures for the packs: choropleth maps, funnel plots and forest plots.

Colour-blind-safe palettes (viridis / cividis, and the Okabe-Ito qualitative palette), axis labels
with units, and counts in labels only through :func:`spstudy.disclosure.safe_label`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import reference, stats  # noqa: E402

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]


def choropleth(values: pd.DataFrame, column: str, area: str, title: str, legend_label: str, cmap: str = "viridis",
               label_top: int = 0, label_by: str | None = None, ascending: bool = False, center: float | None = None):
    """Map of ``values[column]`` by ward (``ward22_code``) with borough outlines and a legend with units.

    ``label_top`` wards with the highest (or lowest if ascending) ``label_by`` value are named.
    ``center`` draws a diverging map centred on that value (e.g. 100 for a ratio).
    """
    g = reference.ward_boundaries()
    g = g[g["borough_code"].isin(reference.borough_codes(area))].merge(values[["ward22_code", column] + ([label_by] if label_by and label_by != column else [])], on="ward22_code", how="left")
    boroughs = reference.borough_boundaries()
    boroughs = boroughs[boroughs["borough_code"].isin(reference.borough_codes(area))]
    fig, ax = plt.subplots(figsize=(8, 7))
    kw = {}
    if center is not None:
        from matplotlib.colors import TwoSlopeNorm

        v = g[column].dropna()
        span = max(abs(v.max() - center), abs(center - v.min()), 1e-9)
        kw["norm"] = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
        cmap = "PuOr_r"
    g.plot(column=column, ax=ax, cmap=cmap, legend=True, edgecolor="white", linewidth=0.4,
           missing_kwds={"color": "#d9d9d9", "hatch": "///", "label": "no data"},
           legend_kwds={"label": legend_label, "shrink": 0.7}, **kw)
    boroughs.boundary.plot(ax=ax, color="#222222", linewidth=1.2)
    if label_top:
        key = label_by or column
        top = g.sort_values(key, ascending=ascending).head(label_top)
        for _, r in top.iterrows():
            pt = r.geometry.representative_point()
            ax.annotate(r["ward22_name"], (pt.x, pt.y), fontsize=7, ha="center",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#444444", "alpha": 0.85})
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    ax.text(0.0, -0.02, "Contains OS data (c) Crown copyright and database right 2022. ONS OGL v3.0.", transform=ax.transAxes, fontsize=6)
    return fig


def funnel_plot(points: pd.DataFrame, x: str, y: str, statistic: str, title: str, xlabel: str, ylabel: str,
                target: float | None = None, multiplier: float = 1.0, label: str | None = None, max_labels: int = 5,
                target_label: str | None = None):
    """Funnel plot with 95% and 99.8% control limits (Spiegelhalter 2005; PHEindicatormethods).

    statistic 'ratio': x = expected count, y = ratio x multiplier (target 1 x multiplier);
    'proportion': x = denominator, y = proportion x multiplier; 'rate': x = person-years, y = rate x multiplier.
    Points outside 99.8% limits are labelled by ``label`` (at most ``max_labels``).
    """
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = np.geomspace(max(points[x].min() * 0.8, 0.5), points[x].max() * 1.2, 200)
    if statistic == "ratio":
        lim = stats.funnel_limits_ratio(xs, multiplier=multiplier)
        tgt = multiplier
    elif statistic == "proportion":
        tgt = target if target is not None else float(points[y].mean())
        lim = stats.funnel_limits_proportion(xs, tgt / multiplier, multiplier=multiplier)
    else:
        tgt = target
        lim = stats.funnel_limits_rate(xs, tgt / multiplier, multiplier=multiplier)
    cols = [c for c in lim.columns if c.startswith(("lower_", "upper_"))]
    for c in cols:
        style = "--" if "95" in c and "99" not in c else ":"
        ax.plot(xs, lim[c], style, color="#555555", linewidth=1, label=None)
    if target_label is None:
        target_label = "As expected (ratio 100)" if statistic == "ratio" else "Area value"
    ax.axhline(tgt, color="#0072B2", linewidth=1.2, label=target_label)
    ax.scatter(points[x], points[y], s=22, color="#E69F00", edgecolor="#333333", linewidth=0.4, zorder=3)
    ax.plot([], [], "--", color="#555555", label="95% limits")
    ax.plot([], [], ":", color="#555555", label="99.8% limits")
    if label:
        lo = np.interp(points[x], xs, lim[[c for c in cols if c.startswith("lower_")][-1]])
        hi = np.interp(points[x], xs, lim[[c for c in cols if c.startswith("upper_")][-1]])
        out = points[(points[y] < lo) | (points[y] > hi)]
        out = out.reindex((out[y] - tgt).abs().sort_values(ascending=False).index).head(max_labels)
        for _, r in out.iterrows():
            ax.annotate(str(r[label]), (r[x], r[y]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="best")
    return fig


def forest_plot(df: pd.DataFrame, label: str, est: str, lower: str, upper: str, title: str, xlabel: str,
                ref: float = 1.0, log: bool = True, group: str | None = None):
    """Forest plot of estimates with intervals (e.g. rate ratios), reference line at ``ref``."""
    d = df.dropna(subset=[est]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(d) + 1.5))
    y = np.arange(len(d))[::-1]
    colours = [OKABE_ITO[4]] * len(d)
    if group:
        cats = list(dict.fromkeys(d[group]))
        colours = [OKABE_ITO[cats.index(v) % len(OKABE_ITO)] for v in d[group]]
        for i, c in enumerate(cats):
            ax.plot([], [], "s", color=OKABE_ITO[i % len(OKABE_ITO)], label=str(c))
        ax.legend(fontsize=8, loc="lower right")
    ax.errorbar(d[est], y, xerr=[d[est] - d[lower].fillna(d[est]), d[upper].fillna(d[est]) - d[est]], fmt="none", ecolor="#444444", capsize=3)
    ax.scatter(d[est], y, color=colours, zorder=3, s=40)
    ax.axvline(ref, color="#999999", linestyle="--")
    ax.set_yticks(y)
    ax.set_yticklabels(d[label])
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def line_with_intervals(df: pd.DataFrame, x: str, y: str, lower: str, upper: str, series: str | None, title: str,
                        xlabel: str, ylabel: str, ylim: tuple[float, float] | None = None):
    """Lines with shaded confidence intervals, one per ``series`` (e.g. recording completeness by quarter).

    Points whose value is missing (e.g. suppressed) are left out. Okabe-Ito colours.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = [(None, df)] if series is None else list(df.groupby(series, sort=False))
    xs_all = list(dict.fromkeys(df[x]))
    pos = {v: i for i, v in enumerate(xs_all)}
    for i, (name, g) in enumerate(groups):
        g = g.dropna(subset=[y])
        col = OKABE_ITO[i % len(OKABE_ITO)]
        px = [pos[v] for v in g[x]]
        ax.plot(px, g[y], "-o", color=col, label=None if name is None else str(name), markersize=4)
        ax.fill_between(px, g[lower], g[upper], color=col, alpha=0.18, linewidth=0)
    ax.set_xticks(range(len(xs_all)))
    ax.set_xticklabels([str(v) for v in xs_all], rotation=0, fontsize=8)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    if series is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def bar_with_intervals(df: pd.DataFrame, label: str, value: str, lower: str, upper: str, title: str, xlabel: str,
                       ylabel: str, reference: float | None = None, reference_label: str = "", colour_by: str | None = None):
    """Vertical bars with error bars (e.g. rates by deprivation quintile); an optional horizontal reference line.

    Bars whose value is missing (suppressed) are drawn empty with '[c]' written in them.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    d = df.reset_index(drop=True)
    xs = np.arange(len(d))
    colours = [OKABE_ITO[4]] * len(d)
    if colour_by:
        cats = list(dict.fromkeys(d[colour_by]))
        colours = [OKABE_ITO[cats.index(v) % len(OKABE_ITO)] for v in d[colour_by]]
    vals = d[value].astype(float)
    ax.bar(xs, vals.fillna(0), color=colours, edgecolor="#333333", linewidth=0.5)
    ok = vals.notna() & d[lower].notna() & d[upper].notna()
    ax.errorbar(xs[ok], vals[ok], yerr=[vals[ok] - d.loc[ok, lower], d.loc[ok, upper] - vals[ok]], fmt="none",
                ecolor="#222222", capsize=4)
    for i in np.flatnonzero(~vals.notna().to_numpy()):
        ax.text(xs[i], 0, "[c]", ha="center", va="bottom", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="#999999", linestyle="--", label=reference_label or None)
        if reference_label:
            ax.legend(fontsize=8, loc="best")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(v) for v in d[label]], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def tidy_ratio_axis(fig, legend: str = "outside"):
    """Plain-number ticks on a log-scaled ratio axis (0.5, 1, 2 ... rather than 5x10^-1), and the legend
    moved outside the plot (``legend='outside'``), left where it is (``'keep'``) or removed (``'none'``,
    e.g. when the row labels already name the series). Returns ``fig``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    nice = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1, 1.1, 1.2, 1.25, 1.5, 2, 2.5, 3,
            4, 5, 7.5, 10, 20, 50, 100]
    for ax in fig.axes:
        if ax.get_xscale() != "log":
            continue
        lo, hi = ax.get_xlim()
        gap = np.log(hi / lo) / 6  # at most about seven labels, evenly spread on the log scale
        inside = [v for v in nice if lo <= v <= hi]
        ticks = [1.0] if lo <= 1 <= hi else ([inside[0]] if inside else [lo])
        for side in (sorted((v for v in inside if v > ticks[0])), sorted((v for v in inside if v < ticks[0]), reverse=True)):
            last = ticks[0]
            for v in side:
                if abs(np.log(v / last)) >= gap:
                    ticks.append(v)
                    last = v
        ticks = np.array(sorted(ticks))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        if ax.get_legend() is not None:
            if legend == "none":
                ax.get_legend().remove()
            elif legend == "outside":
                handles, labels = ax.get_legend_handles_labels()
                ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
