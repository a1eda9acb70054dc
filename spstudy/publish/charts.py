"""Figures drawn from published (controlled) tables only, with alt text written from what is drawn.

Every drawing function here takes the controlled values of one published table (numeric, NaN where
a cell is suppressed) and options that are plain values; it draws nothing that is not in that table
except lines computed from public information (funnel limits, reference lines). Suppressed points are
simply not drawn. Each ``alt_*`` function writes the figure's alt text from the same values, so the
description cannot disagree with the picture. :func:`render` is what the release calls, and
:func:`check_marks` verifies, for every figure, that each plotted point and bar equals a value in its
table (at the table's precision).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spstudy.publish import figures as F

EXEMPT_GIDS = ("funnel_lower", "funnel_upper", "funnel_target", "reference", "limit")


def _fmt(v, d=1):
    return "suppressed" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{d}f}"


# -------------------------------------------------------------------------------------- maps

def map_values(values, column: str, area: str, title: str, legend: str, cmap: str = "viridis", label_top: int = 0,
               label_by: str | None = None, **_):
    return F.choropleth(values, column, area, title, legend, cmap=cmap, label_top=label_top, label_by=label_by)


def alt_map_values(values, column: str, area: str, title: str, legend: str, label_top: int = 0, label_by: str | None = None,
                   **_):
    v = values[column].dropna()
    s = f"Map of {len(values)} wards shaded by {legend.lower()}, from {_fmt(v.min(), 1)} to {_fmt(v.max(), 1)}"
    if label_top:
        top = values.sort_values(label_by or column, ascending=False).head(label_top)
        s += f"; labelled: {', '.join(top['ward22_name'])}"
    return s + "."


def map_ratio(values, column: str, area: str, title: str, legend: str, **_):
    return F.choropleth(values, column, area, title, legend, center=100)


def alt_map_ratio(values, column: str, area: str, title: str, legend: str, area_name: str = "", **_):
    return F.describe_ratio_map(values, column, area_name or area)


# ------------------------------------------------------------------------------------ funnels

def _funnel_points(values, x: str, count: str, y: str, multiplier: float):
    d = values.dropna(subset=[count, y]).copy()
    d = d[pd.to_numeric(d[x], errors="coerce") > 0]
    d[y] = d[count] / d[x] * multiplier  # the exact value of the published count over its denominator
    return d


def funnel(values, x: str, count: str, y: str, statistic: str, title: str, xlabel: str, ylabel: str, multiplier: float = 1.0,
           label: str | None = None, total_row: str | None = None, geo: str | None = None, target_label: str | None = None,
           reference_rate: str | None = None, exclude_rows: list | None = None, **_):
    """Funnel plot of the published rows (the total row, if any, gives the target and is not a point;
    ``exclude_rows``: other rows that are not units, e.g. the area's own total)."""
    d, target = _funnel_target(values, x, count, y, multiplier, total_row, geo, reference_rate, statistic, exclude_rows)
    return F.funnel_plot(d, x, y, statistic, title, xlabel, ylabel, count=count, target=target, multiplier=multiplier,
                         label=label, target_label=target_label)


def _funnel_target(values, x, count, y, multiplier, total_row, geo, reference_rate, statistic, exclude_rows=None):
    d = values
    if exclude_rows:
        d = d[~d[geo].astype(str).isin([str(e) for e in exclude_rows])]
    target = None
    if total_row is not None:
        tot = d[d[geo].astype(str) == total_row]
        d = d[d[geo].astype(str) != total_row]
        if statistic != "ratio" and len(tot):
            target = float(tot[count].iloc[0] / tot[x].iloc[0] * multiplier)
    if reference_rate is not None:
        target = float(d[reference_rate].dropna().iloc[0])
    return _funnel_points(d, x, count, y, multiplier), target


def alt_funnel(values, x: str, count: str, y: str, statistic: str, title: str, xlabel: str, ylabel: str, multiplier: float = 1.0,
               label: str | None = None, total_row: str | None = None, geo: str | None = None, unit_name: str = "units",
               reference_rate: str | None = None, exclude_rows: list | None = None, **_):
    d, target = _funnel_target(values, x, count, y, multiplier, total_row, geo, reference_rate, statistic, exclude_rows)
    fd = F.funnel_data(d, x, y, statistic, count=count, target=target, multiplier=multiplier, label=label)
    p = fd.points
    not_units = {str(total_row)} | {str(e) for e in (exclude_rows or [])} if geo else set()
    hidden = int((~values[geo].astype(str).isin(not_units)).sum()) - len(d) if geo else len(values) - len(d)
    above = int(p["position"].fillna("").str.startswith("above").sum())
    below = int(p["position"].fillna("").str.startswith("below").sum())
    s = (f"Funnel plot of {len(p)} {unit_name}: {title.lower()}, against 95% and 99.8% control limits around "
         f"{fd.target:,.1f}; {above} lie above and {below} below the 95% limits")
    if hidden > 0:
        s += f"; {hidden} with suppressed counts are not drawn"
    return s + "."


# -------------------------------------------------------------------------- forest, bars, lines

def _forest_long(values, label, est, lower, upper, measures, where):
    v = values
    for k, val in (where or {}).items():
        v = v[v[k].astype(str).isin([str(x) for x in (val if isinstance(val, list) else [val])])]
    if isinstance(label, list):  # a row label joined from several columns
        v = v.assign(_label=[" ".join(str(x) for x in r) for r in v[label].itertuples(index=False)])
        label = "_label"
    if not measures:
        return v, label, est, lower, upper, None
    rows = []
    for _, r in v.iterrows():
        for name, (e, lo, hi) in measures.items():
            rows.append({"label": f"{r[label]}: {name}", "measure": name, "est": r[e], "lo": r[lo], "hi": r[hi]})
    return pd.DataFrame(rows, columns=["label", "measure", "est", "lo", "hi"]), "label", "est", "lo", "hi", "measure"


def forest(values, label: str, title: str, xlabel: str, est: str = "", lower: str = "", upper: str = "", group: str | None = None,
           ref: float = 1.0, log: bool = True, legend: str = "outside", measures: dict | None = None, where: dict | None = None, **_):
    """Forest plot of estimates with intervals; ``measures`` {name: [est, lower, upper]} draws several
    columns per row; ``where`` keeps rows whose column equals a value."""
    d, lab, e, lo, hi, g = _forest_long(values, label, est, lower, upper, measures, where)
    d = d.dropna(subset=[e])
    fig = F.forest_plot(d, lab, e, lo, hi, title, xlabel, ref=ref, log=log, group=g or group)
    return F.tidy_ratio_axis(fig, legend=legend) if log else fig


def alt_forest(values, label: str, title: str, xlabel: str, est: str = "", lower: str = "", upper: str = "", group: str | None = None,
               ref: float = 1.0, measures: dict | None = None, where: dict | None = None, *, ci: str, **_):
    d, lab, e, lo, hi, g = _forest_long(values, label, est, lower, upper, measures, where)
    shown = d.dropna(subset=[e])
    parts = []
    for _, r in shown.head(14).iterrows():
        gg = f"{r[group]}: " if (group and not g) else ""
        parts.append(f"{gg}{r[lab]} {r[e]:.2f} ({_fmt(r[lo], 2)} to {_fmt(r[hi], 2)})")
    more = f"; and {len(shown) - 14} more" if len(shown) > 14 else ""
    hidden = len(d) - len(shown)
    s = f"Forest plot, {title}, estimates with {ci} intervals against a reference of {ref:g}: " + "; ".join(parts) + more
    if hidden:
        s += f". {hidden} estimate(s) suppressed or not estimable are not drawn"
    return s + "."


def _where(values, where):
    for k, val in (where or {}).items():
        values = values[values[k].astype(str).isin([str(x) for x in (val if isinstance(val, list) else [val])])]
    return values


def bars(values, label: str, value: str, lower: str, upper: str, title: str, xlabel: str, ylabel: str,
         reference_row: str | None = None, reference_label: str = "", where: dict | None = None, **_):
    d = _where(values, where)
    ref = None
    if reference_row is not None:
        r = d[d[label].astype(str) == reference_row]
        d = d[d[label].astype(str) != reference_row]
        ref = float(r[value].iloc[0]) if len(r) and not math.isnan(r[value].iloc[0]) else None
    return F.bar_with_intervals(d, label, value, lower, upper, title, xlabel, ylabel, reference=ref, reference_label=reference_label)


def alt_bars(values, label: str, value: str, lower: str, upper: str, title: str, xlabel: str, ylabel: str,
             reference_row: str | None = None, reference_label: str = "", decimals: int = 1, where: dict | None = None, **_):
    d = _where(values, where)
    extra = ""
    if reference_row is not None:
        r = d[d[label].astype(str) == reference_row]
        d = d[d[label].astype(str) != reference_row]
        if len(r):
            extra = f"; {reference_label or reference_row}: {_fmt(r[value].iloc[0], decimals)} (dashed line)"
    parts = [f"{r[label]} {_fmt(r[value], decimals)}" for _, r in d.iterrows()]
    return f"Bar chart, {title}: {ylabel.lower()} for each {xlabel.lower()}: " + "; ".join(parts) + extra + "."


def lines(values, x: str, y: str, lower: str, upper: str, series: str | None, title: str, xlabel: str, ylabel: str,
          ylim: list | None = None, where: dict | None = None, **_):
    values = _where(values, where)
    return F.line_with_intervals(values, x, y, lower, upper, series, title, xlabel, ylabel, ylim=tuple(ylim) if ylim else None)


def alt_lines(values, x: str, y: str, lower: str, upper: str, series: str | None, title: str, xlabel: str, ylabel: str,
              where: dict | None = None, **_):
    values = _where(values, where)
    groups = [(None, values)] if series is None else list(values.groupby(series, sort=False))
    parts = []
    for name, g in groups:
        g = g.dropna(subset=[y])
        if not len(g):
            parts.append(f"{name}: all values suppressed")
            continue
        parts.append(f"{name + ': ' if name is not None else ''}{_fmt(g[y].iloc[0])} in {g[x].iloc[0]} to {_fmt(g[y].iloc[-1])} "
                     f"in {g[x].iloc[-1]} (range {_fmt(g[y].min())} to {_fmt(g[y].max())})")
    return f"Line chart, {title}, {ylabel.lower()} by {xlabel.lower()}: " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- evaluation, SROI

def love(values, threshold: float = 0.1, **_):
    from spstudy.methods.matching import love_plot

    # signed differences, as the balance table publishes them (the figure checker finds every mark in it)
    return love_plot(values.dropna(subset=["smd"]), threshold=threshold, absolute=False)


def alt_love(values, threshold: float = 0.1, **_):
    v = values.dropna(subset=["smd"])
    before = v[v["sample"] == "Unadjusted"]["smd"].abs()
    after = v[v["sample"] == "Adjusted"]["smd"].abs()
    n_over = int((after >= threshold).sum())
    return (f"Love plot of standardised mean differences for {v['variable'].nunique()} covariates: before matching the largest "
            f"in absolute value is {before.max():.2f}; after matching it is {after.max():.2f} and {n_over} of {len(after)} are at or "
            f"beyond the ±{threshold:g} lines.")


def histogram(values, group: str, lower: str, upper: str, count: str, panel: str, title: str, xlabel: str, **_):
    """Histogram from a published table of binned counts (one row per group, panel and band); bar
    heights are the table's published (rounded) counts, on a log scale so both groups show although
    comparators outnumber the referred many times; suppressed bands are left out and zero bands
    have no bar."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(values[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False, sharex=True, sharey=True)
    colours = {0: F.OKABE_ITO[0], 1: F.OKABE_ITO[4]}
    for ax, p in zip(axes[0], panels):
        d = values[values[panel] == p]
        for i, (g, sub) in enumerate(d.groupby(group, sort=False)):
            sub = sub.dropna(subset=[count])
            sub = sub[sub[count] > 0]
            if len(sub):
                ax.bar(sub[lower], sub[count], width=sub[upper] - sub[lower], align="edge", alpha=0.5,
                       color=colours.get(i, F.OKABE_ITO[i % 8]), label=str(g), edgecolor="none")
        ax.set_yscale("log")
        ax.set_title(str(p), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("People (log scale)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def alt_histogram(values, group: str, lower: str, upper: str, count: str, panel: str, title: str, xlabel: str, **_):
    v = values.dropna(subset=[count])
    hidden = int(values[count].isna().sum())
    rng = v[v[count] > 0]
    s = (f"Histograms, {title}: people in each group by {xlabel.lower()} band (log scale) in {values[panel].nunique()} panel(s); "
         f"bands with people from {rng[lower].min():.2f} to {rng[upper].max():.2f}")
    if hidden:
        s += f"; {hidden} band(s) with suppressed counts are not drawn"
    return s + "."


def event_study(values, month: str, est: str, lower: str, upper: str, panel: str, title: str, reference_month: int = -1,
                ylabel: str = "Rate ratio against the reference month (log scale)", **_):
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(values[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, sharey=True)
    for ax, p in zip(axes[0], panels):
        d = values[values[panel] == p].dropna(subset=[est]).sort_values(month)
        ax.errorbar(d[month], d[est], yerr=[d[est] - d[lower], d[upper] - d[est]], fmt="o", ms=3, color=F.OKABE_ITO[4],
                    ecolor="#777777", capsize=2)
        ax.axhline(1.0, color="#999999", linestyle="--", linewidth=1, gid="reference_1")
        ax.axvline(-0.5, color="#777777", linestyle=":", linewidth=1, gid="reference_index")
        ax.set_yscale("log")
        ax.set_title(str(p), fontsize=10)
        ax.set_xlabel(f"Months from referral (reference month {reference_month})")
        ax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def alt_event_study(values, month: str, est: str, lower: str, upper: str, panel: str, title: str, reference_month: int = -1,
                    *, ci: str, **_):
    parts = []
    for p, d in values.groupby(panel, sort=False):
        d = d.dropna(subset=[est])
        pre = d[d[month] < 0]
        post = d[d[month] >= 0]
        excl = pre[(pre[lower] > 1) | (pre[upper] < 1)]
        parts.append(f"{p}: before referral the monthly ratios run from {pre[est].min():.2f} to {pre[est].max():.2f} "
                     f"({len(excl)} of {len(pre)} intervals exclude 1); after referral from {post[est].min():.2f} to {post[est].max():.2f}")
    return f"Event study, {title}: per-month effects relative to month {reference_month} with {ci} intervals. " + "; ".join(parts) + "."


def tornado(values, **_):
    from spstudy.methods.sroi import tornado_plot

    return tornado_plot(values).figure


def alt_tornado(values, **_):
    d = values.dropna(subset=["ratio_low", "ratio_high"])
    if not len(d):
        return "Tornado chart: no input changes the ratio."
    top = d.iloc[0]
    return (f"Tornado chart of the SROI ratio at the low and high value of {len(d)} inputs around a base ratio of "
            f"{d['base_ratio'].iloc[0]:.2f}; the widest swing is {top['input']} ({top['ratio_low']:.2f} to {top['ratio_high']:.2f}).")


def xmr(values, value: str, period: str, title: str, ylabel: str, series: str | None = None, **_):
    from spstudy.methods.spc import xmr_figure

    return xmr_figure(values.dropna(subset=[value]), value, period, title, ylabel, series=series)


def alt_xmr(values, value: str, period: str, title: str, ylabel: str, series: str | None = None, **_):
    groups = [(None, values)] if series is None else list(values.groupby(series, sort=True))
    parts = []
    for name, g in groups:
        g = g.dropna(subset=[value])
        n_sc = int(g["special_cause"].fillna(False).astype(bool).sum()) if "special_cause" in g else 0
        parts.append(f"{name + ': ' if name is not None else ''}mean {g['mean'].iloc[0]:,.0f} a month, process limits "
                     f"{g['process_limit_lower'].iloc[0]:,.0f} to {g['process_limit_upper'].iloc[0]:,.0f}, "
                     f"{n_sc} month(s) of special-cause variation" if len(g) else f"{name}: suppressed")
    return f"XmR control chart, {title}: " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------- render and check

def marks(fig) -> list[float]:
    """Every data value a figure plots: point coordinates, bar heights and widths, error-bar ends
    (artists whose gid marks a limit or reference line computed from public values are left out)."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.patches import Rectangle

    out = []
    for ax in fig.axes:
        if not ax.axison or ax.get_label() == "<colorbar>":
            continue  # maps (geometry in map units) and colour bars: checked through the values they are coloured by
        for c in ax.collections:
            gid = c.get_gid() or ""
            if gid.startswith(EXEMPT_GIDS):
                continue
            if isinstance(c, PathCollection):
                off = np.asarray(c.get_offsets(), dtype=float)
                out += [v for v in off.ravel() if np.isfinite(v)]
            elif isinstance(c, LineCollection):
                for seg in c.get_segments():
                    out += [v for v in np.asarray(seg, dtype=float).ravel() if np.isfinite(v)]
        rects = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() != 0 and p.get_width() != 0]
        if rects:
            ws = np.array([p.get_width() for p in rects])
            hs = np.array([p.get_height() for p in rects])
            cx = np.array([p.get_x() + p.get_width() / 2 for p in rects])
            cy = np.array([p.get_y() + p.get_height() / 2 for p in rects])
            on_grid = lambda v: np.allclose(v, np.round(v), atol=1e-6)  # noqa: E731
            vertical = np.allclose(ws, ws[0]) and on_grid(cx)
            horizontal = np.allclose(hs, hs[0]) and on_grid(cy)
            for p in rects:
                if vertical:                      # bars on categories along x: the heights are the data
                    out += [p.get_y() + p.get_height()]
                elif horizontal:                  # bars on categories along y: the ends are the data
                    out += [p.get_x(), p.get_x() + p.get_width()]
                else:                             # histogram: edges and heights are all data
                    out += [p.get_x(), p.get_x() + p.get_width(), p.get_y() + p.get_height()]
    return out


def check_marks(fig, values: pd.DataFrame, name: str, tolerance: float = 0.051):
    """Every plotted point, bar and interval end must equal a value of the figure's table (within
    the table's printed precision), a share of one of its counts, or a category position."""
    nums = []
    for c in values.columns:
        v = pd.to_numeric(values[c], errors="coerce").to_numpy(dtype=float)
        nums.append(v[np.isfinite(v)])
    pool = np.unique(np.concatenate(nums)) if nums else np.array([])
    n = len(values)
    bad = []
    for m in marks(fig):
        if m == 0:
            continue
        if abs(m - round(m)) < 1e-9 and -1 <= m <= 10 * max(n, 1) + 10:
            continue  # a category position (0, 1, 2 ...) on a categorical axis
        if len(pool) and np.min(np.abs(pool - m) / np.maximum(1.0, np.abs(pool))) <= tolerance:
            continue
        bad.append(m)
    return bad


def render(entry: dict, tables, check: bool = True):
    """Draw a declared figure from its controlled table; returns (figure, alt text)."""
    from spstudy.publish.publisher import resolve

    values = tables[entry["table"]]
    opts = dict(entry.get("options", {}))
    if "where" in opts:  # the rows of the table the figure draws
        values = _where(values, opts.pop("where"))
    draw = resolve(entry["draw"])
    alt_fn = resolve(entry["alt"])
    fig = draw(values, **opts)
    extra = {k: v for k, v in (("area_name", tables.area_name), ("ci", tables.ci)) if k in alt_fn.__code__.co_varnames}
    alt = alt_fn(values, **opts, **extra)
    return fig, alt, values
