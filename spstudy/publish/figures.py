"""Figures for the packs: choropleth maps, funnel plots and forest plots.

Colour-blind-safe palettes (viridis / cividis, PuOr for ratios, and the Okabe-Ito qualitative
palette), axis labels with units, and counts in labels only through
:func:`spstudy.publish.disclosure.safe_label`. No backend is forced here: figures display inline in
JupyterLab, and batch runs set ``MPLBACKEND=Agg`` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spstudy.inputs import reference
from spstudy.methods import stats

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]

#: Class breaks of a ratio map as multiples of its centre: symmetric on the log scale
#: (1/2, 1/1.5, 1/1.25, 1/1.1 | 1.1, 1.25, 1.5, 2), e.g. 50, 67, 80, 91 | 110, 125, 150, 200 around 100.
RATIO_STEPS = (1 / 2, 1 / 1.5, 1 / 1.25, 1 / 1.1, 1.1, 1.25, 1.5, 2.0)
#: Nine classes, purple (fewer than expected) to orange (more), light grey about as expected (PuOr).
RATIO_COLOURS = ("#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f0f0f0", "#fee0b6", "#fdb863", "#e08214", "#b35806")


def ratio_breaks(center: float = 100.0) -> np.ndarray:
    """The eight class breaks of a ratio map around ``center`` (:data:`RATIO_STEPS` x center)."""
    if not (np.isfinite(center) and center > 0):
        raise ValueError(f"center: must be a positive number, got {center!r}")
    return np.array(RATIO_STEPS) * float(center)


def ratio_class_labels(center: float = 100.0) -> list[str]:
    """Labels of the nine classes, lowest first (e.g. 'below 50', '50 to 67', ..., '200 and above')."""
    b = [f"{v:.0f}" for v in ratio_breaks(center)]
    mid = f"{b[3]} to {b[4]} (about as expected)"
    return [f"below {b[0]}"] + [f"{b[i]} to {b[i + 1]}" for i in range(3)] + [mid] + [f"{b[i]} to {b[i + 1]}" for i in range(4, 7)] + [f"{b[7]} and above"]


def ratio_classes(values, center: float = 100.0) -> pd.Series:
    """Class of each ratio on the log-symmetric scale of :func:`ratio_breaks` (ordered categorical;
    missing stays missing). Ratios must be >= 0 (a ratio cannot be negative): anything else is an error."""
    v = pd.Series(values, dtype=float).reset_index(drop=True)
    bad = v < 0
    if bad.any():
        raise ValueError(f"values: ratios must be >= 0; negative at rows {np.flatnonzero(bad.to_numpy())[:8].tolist()}")
    labels = ratio_class_labels(center)
    idx = np.searchsorted(ratio_breaks(center), v.to_numpy(), side="right")
    cat = pd.Categorical.from_codes(np.where(v.isna(), -1, idx), categories=labels, ordered=True)
    return pd.Series(cat, name="ratio_class")


def describe_ratio_map(values: pd.DataFrame, column: str, area_name: str, unit_name: str = "wards", center: float = 100.0) -> str:
    """Alt text for a ratio map, written from the values drawn: how many units fall below, about at
    and above ``center`` (purple / grey / orange classes of :func:`ratio_classes`) and the range.
    Counts are of map units (wards), not people."""
    v = values[column].astype(float)
    cls = ratio_classes(v, center)
    codes = cls.cat.codes
    below, mid, above = int((codes.between(0, 3)).sum()), int((codes == 4).sum()), int((codes >= 5).sum())
    b = ratio_breaks(center)
    parts = [f"Map of {len(v)} {unit_name} in {area_name} shaded by ratio on a scale symmetric around {center:g}"]
    parts.append(f"{below} below {b[3]:.0f} (purple, fewer than expected), {mid} between {b[3]:.0f} and {b[4]:.0f} (grey), "
                 f"{above} at {b[4]:.0f} or above (orange, more than expected)")
    if v.notna().any():
        parts.append(f"ratios range from {v.min():.0f} to {v.max():.0f}")
    if v.isna().any():
        parts.append(f"{int(v.isna().sum())} with no value (hatched)")
    return "; ".join(parts) + "."


def choropleth(values: pd.DataFrame, column: str, area: str, title: str, legend_label: str, cmap: str = "viridis",
               label_top: int = 0, label_by: str | None = None, ascending: bool = False, center: float | None = None):
    """Map of ``values[column]`` by ward (``ward22_code``) with borough outlines and a legend with units.

    ``label_top`` wards with the highest (or lowest if ascending) ``label_by`` value are named.
    ``center`` makes a ratio map: nine classes symmetric on the log scale around ``center`` (e.g.
    50, 67, 80, 91, 110, 125, 150, 200 around 100; :func:`ratio_classes`), purple below, orange
    above, the same legend in every pack; values must be >= 0. Otherwise a continuous ``cmap``.
    """
    from matplotlib.patches import Patch

    g = reference.ward_boundaries()
    g = g[g["borough_code"].isin(reference.area(area).borough_codes)].merge(values[["ward22_code", column] + ([label_by] if label_by and label_by != column else [])], on="ward22_code", how="left")
    boroughs = reference.borough_boundaries()
    boroughs = boroughs[boroughs["borough_code"].isin(reference.area(area).borough_codes)]
    fig, ax = plt.subplots(figsize=(10, 7) if center is not None else (8, 7))
    if center is not None:
        cls = ratio_classes(g[column], center)
        codes = cls.cat.codes.to_numpy()
        has = codes >= 0
        g.loc[has].plot(ax=ax, color=[RATIO_COLOURS[c] for c in codes[has]], edgecolor="white", linewidth=0.4)
        if (~has).any():
            g.loc[~has].plot(ax=ax, color="#d9d9d9", hatch="///", edgecolor="white", linewidth=0.4)
        handles = [Patch(facecolor=c, edgecolor="#999999", label=lab) for c, lab in zip(RATIO_COLOURS[::-1], ratio_class_labels(center)[::-1])]
        if (~has).any():
            handles.append(Patch(facecolor="#d9d9d9", hatch="///", edgecolor="#999999", label="no data"))
        ax.legend(handles=handles, title=legend_label, fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        g.plot(column=column, ax=ax, cmap=cmap, legend=True, edgecolor="white", linewidth=0.4,
               missing_kwds={"color": "#d9d9d9", "hatch": "///", "label": "no data"},
               legend_kwds={"label": legend_label, "shrink": 0.7})
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
    if center is not None:
        fig.subplots_adjust(left=0.02, right=0.70, top=0.93, bottom=0.05)  # room for the class legend on the right
    return fig


@dataclass(frozen=True)
class FunnelData:
    """What a funnel plot draws. ``limits``: the control limits on the x grid (columns ``x``,
    ``target`` and ``limit_95_lower``, ``limit_95_upper``, ``limit_99.8_lower``, ``limit_99.8_upper`` in the plotted units);
    ``points``: one row per point with ``x``, ``y``, ``count``, the limits at the point's own x,
    ``position`` (where the point lies against the drawn limits) and ``funnel`` (its
    :func:`spstudy.methods.stats.funnel_flag` classification, as the tables print it). ``target`` is in
    the plotted units (per ``multiplier``)."""

    statistic: str
    multiplier: float
    target: float
    limits: pd.DataFrame
    points: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        return self.points


def _limits(statistic: str, xs: np.ndarray, target: float, multiplier: float, levels) -> pd.DataFrame:
    if statistic == "ratio":
        lim = stats.funnel_limits_ratio(xs, limits=levels, multiplier=multiplier)
    elif statistic == "proportion":
        lim = stats.funnel_limits_proportion(xs, target / multiplier, limits=levels, multiplier=multiplier)
    else:
        lim = stats.funnel_limits_rate(xs, target, multiplier=multiplier, limits=levels)
    lim = lim.rename(columns={lim.columns[0]: "x"})
    lim["target"] = float(target)
    return lim


def funnel_data(points: pd.DataFrame, x: str, y: str, statistic: str, *, count: str | None = None, target: float | None = None,
                multiplier: float = 1.0, label: str | None = None, limits=(0.95, 0.998), grid: int = 200) -> FunnelData:
    """Control limits and point classifications of a funnel plot (Spiegelhalter 2005; Fingertips;
    PHEindicatormethods ``calculate_funnel_limits`` / ``assign_funnel_significance``).

    Units: ``y`` is plotted per ``multiplier`` and ``target`` is in the SAME units as ``y``.
    * 'ratio': x = expected count, y = observed / expected x multiplier (target fixed at 1 x multiplier,
      e.g. 100); ``count`` = observed (optional: derived from x and y).
    * 'rate': x = person-years, y = count / x x multiplier (e.g. per 1,000); ``count`` required.
    * 'proportion': x = denominator, y = count / x x multiplier (e.g. 100 for %); ``count`` required.
    Default target for rates and proportions: the pooled value sum(count) / sum(x) x multiplier.
    The values are checked: y must equal count / x x multiplier, and a target more than 30 times
    away from the pooled value of the points is taken to be in the wrong units (ValueError).
    """
    if statistic not in ("ratio", "rate", "proportion"):
        raise ValueError(f"statistic: must be 'ratio', 'rate' or 'proportion', got {statistic!r}")
    if not (np.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"multiplier: must be > 0, got {multiplier!r}")
    for c in [x, y] + ([count] if count else []) + ([label] if label else []):
        if c not in points.columns:
            raise ValueError(f"points: no column {c!r}")
    d = points.reset_index(drop=True)
    xv, yv = d[x].to_numpy(dtype=float), d[y].to_numpy(dtype=float)
    if statistic == "ratio":
        n = d[count].to_numpy(dtype=float) if count else yv / multiplier * xv
        if target is not None and not np.isclose(target, multiplier):
            raise ValueError(f"target: a ratio funnel is centred on 1 x multiplier ({multiplier:g}); got {target!r}")
        tgt = float(multiplier)
    else:
        if count is None:
            raise ValueError(f"count: a {statistic} funnel needs the column of numerators (events or people), so the "
                             "plotted values and the target can be checked against it")
        n = d[count].to_numpy(dtype=float)
        pooled = float(np.nansum(n) / np.nansum(xv) * multiplier)
        tgt = pooled if target is None else float(target)
        if not (np.isfinite(tgt) and tgt > 0):
            raise ValueError(f"target: must be > 0 (in the plotted units, per {multiplier:g}); got {target!r}")
        if pooled > 0 and not (1 / 30 <= tgt / pooled <= 30):
            raise ValueError(f"target: {tgt:g} is {tgt / pooled:.3g} times the points' pooled value {pooled:.4g}; give the target in "
                             f"the plotted units (per {multiplier:g}), not per person")
    ok = np.isfinite(xv) & np.isfinite(yv)
    implied = n / xv * multiplier
    wrong = ok & ~np.isclose(yv, implied, rtol=1e-6, atol=1e-9)
    if wrong.any():
        raise ValueError(f"points: column {y!r} is not {count or 'count'} / {x} x {multiplier:g} at rows "
                         f"{np.flatnonzero(wrong)[:8].tolist()}: check the multiplier (units of y)")
    xs = np.geomspace(max(np.nanmin(xv[ok]) * 0.8, 0.5), np.nanmax(xv[ok]) * 1.2, grid)
    lim = _limits(statistic, xs, tgt, multiplier, limits)
    at = _limits(statistic, np.where(ok, xv, 1.0), tgt, multiplier, limits)
    cols = [c for c in lim.columns if c.startswith("limit_")]
    pts = pd.DataFrame({"x": xv, "y": yv, "count": n})
    if label:
        pts.insert(0, "label", d[label].to_numpy())
    for c in cols:
        pts[c] = np.where(ok, at[c].to_numpy(), np.nan)
    lo = sorted([c for c in cols if c.endswith("_lower")], key=lambda c: float(c.split("_")[1]))
    hi = sorted([c for c in cols if c.endswith("_upper")], key=lambda c: float(c.split("_")[1]))
    inner, outer = lo[0].split("_")[1], lo[-1].split("_")[1]
    pos = np.select([yv < pts[lo[-1]], yv < pts[lo[0]], yv > pts[hi[-1]], yv > pts[hi[0]]],
                    [f"below {outer}% limit", f"below {inner}% limit", f"above {outer}% limit", f"above {inner}% limit"],
                    default="within limits").astype(object)
    pos[~ok] = None
    pts["position"] = pos
    t_flag = None if statistic == "ratio" else tgt / multiplier
    pts["funnel"] = stats.funnel_flag(n, xv, statistic=statistic, target=t_flag if statistic != "ratio" else None, limits=limits).to_numpy()
    return FunnelData(statistic=statistic, multiplier=float(multiplier), target=tgt, limits=lim, points=pts)


def funnel_plot(points: pd.DataFrame, x: str, y: str, statistic: str, title: str, xlabel: str, ylabel: str, *,
                count: str | None = None, target: float | None = None, multiplier: float = 1.0, label: str | None = None,
                max_labels: int = 5, target_label: str | None = None):
    """Funnel plot with 95% and 99.8% control limits, drawn from :func:`funnel_data` (same arguments
    and units: ``target`` in the plotted units of ``y``). Points outside the 99.8% limits are
    labelled by ``label`` (at most ``max_labels``, furthest first). Returns the Figure; the data it
    draws are ``funnel_data(...)`` with the same arguments."""
    fd = funnel_data(points, x, y, statistic, count=count, target=target, multiplier=multiplier, label=label)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    lim = fd.limits
    cols = [c for c in lim.columns if c.startswith("limit_")]  # limit_<level>_lower / limit_<level>_upper
    outer = max(float(c.split("_")[1]) for c in cols)
    for c in cols:
        _, level, side = c.split("_")
        style = ":" if float(level) == outer else "--"
        ax.plot(lim["x"], lim[c], style, color="#555555", linewidth=1, label=None, gid=f"funnel_{side}_{level}")
    if target_label is None:
        target_label = f"As expected (ratio {multiplier:g})" if statistic == "ratio" else "Reference value"
    ax.axhline(fd.target, color="#0072B2", linewidth=1.2, label=target_label, gid="funnel_target")
    p = fd.points
    ax.scatter(p["x"], p["y"], s=22, color="#E69F00", edgecolor="#333333", linewidth=0.4, zorder=3, gid="funnel_points")
    inner = min(float(c.split("_")[1]) for c in cols)
    ax.plot([], [], "--", color="#555555", label=f"{inner:g}% limits")
    ax.plot([], [], ":", color="#555555", label=f"{outer:g}% limits")
    if label:
        out = p[p["position"].fillna("").str.contains(f"{outer:g}%")]
        out = out.reindex((out["y"] - fd.target).abs().sort_values(ascending=False).index).head(max_labels)
        for _, r in out.iterrows():
            ax.annotate(str(r["label"]), (r["x"], r["y"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
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
