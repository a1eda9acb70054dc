"""Statistical process control: XmR (individuals and moving range) charts with the NHS England
"Making Data Count" rules for special-cause variation, and a figure drawn from the tidy table.

Method (NHS England and NHS Improvement, *Making Data Count*, 2018/2019; the NHS-R community's
NHSRplotthedots package, ``ptd_spc``, which implements it):

* centre line: the mean of the values (of the first ``baseline_points`` if given);
* moving ranges ``|x_i - x_(i-1)|`` and their mean; process limits ``mean +/- 2.66 x mean moving
  range`` (3 sigma, sigma = mean MR / 1.128); "near" limits at 2 sigma (``2/3 x 2.66``);
* ``screen_outliers``: leave moving ranges of 3.267 x the mean moving range or more out of the
  limits (Nelson 1982, J Qual Technol 14:172; the NHSRplotthedots default). The Making Data Count
  Excel tool does not screen, so the default here is False;
* special cause, in order of precedence (a point is labelled by the first rule it breaks):
  1. a single point outside the process limits;
  2. a trend: ``trend_points`` (7) consecutive points each higher (or each lower) than the one before;
  3. two of three consecutive points beyond the 2-sigma near limit (not outside the process
     limits), all three on the same side of the mean;
  4. a shift: ``shift_points`` (7) consecutive points on the same side of the mean (a point on the
     mean breaks the run).

Making Data Count and NHSRplotthedots use runs of 7 for the shift and the trend; some
improvement guides use 6 (shift) or 5/6 (trend), so both are arguments. Limits from fewer than
about 15 points are trial limits (NHSRplotthedots warns below 12); ``n_points`` is in the output.
"""

from __future__ import annotations

import matplotlib

from spstudy.methods.checks import require_columns

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

XMR_CONSTANT = 2.66          # 3 / d2, d2 = 1.128 for moving ranges of 2 (Montgomery, Introduction to SQC)
MR_SCREEN_CONSTANT = 3.267   # D4 for n = 2: upper limit of the moving-range chart
RULES = ("outside limits", "trend", "two of three near limit", "shift")


def _runs(flags: np.ndarray, length: int) -> np.ndarray:
    """True at every element of a run of at least ``length`` consecutive equal non-zero values."""
    out = np.zeros(len(flags), dtype=bool)
    i = 0
    while i < len(flags):
        j = i
        while j + 1 < len(flags) and flags[j + 1] == flags[i]:
            j += 1
        if flags[i] != 0 and j - i + 1 >= length:
            out[i:j + 1] = True
        i = j + 1
    return out


def _trend(y: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in a run of ``length`` consecutive strictly increasing (or decreasing) values, and the
    direction (+1 up, -1 down) of each flagged point."""
    n = len(y)
    flag = np.zeros(n, dtype=bool)
    direction = np.zeros(n, dtype=int)
    d = np.sign(np.diff(y))
    for i in range(length - 1, n):
        w = d[i - length + 1:i]
        if len(w) == length - 1 and (np.all(w > 0) or np.all(w < 0)):
            flag[i - length + 1:i + 1] = True
            direction[i - length + 1:i + 1] = int(w[0])
    return flag, direction


def _two_of_three(close: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Near-limit points in a window of three consecutive points that has at least two near-limit
    points and all three on the same side of the mean."""
    n = len(close)
    out = np.zeros(n, dtype=bool)
    for i in range(n - 2):
        c, r = close[i:i + 3], rel[i:i + 3]
        if c.sum() >= 2 and abs(r.sum()) == 3:
            out[i:i + 3] |= c
    return out


def xmr(data: pd.DataFrame, value: str, period: str, by: list[str] | tuple[str, ...] = (), *, shift_points: int = 7,
        trend_points: int = 7, screen_outliers: bool = False, baseline_points: int | None = None,
        improvement: str | None = None) -> pd.DataFrame:
    """XmR statistics and Making Data Count special-cause rules for each series in ``data``.

    ``data``: one row per period (and group ``by``), ``value`` numeric (e.g. referrals per month),
    ``period`` sortable (dates or strings). ``improvement``: 'increase', 'decrease' or None (neutral):
    how special causes are named in ``variation``.

    Returns the input columns plus, per row: ``mean``, ``moving_range``, ``mean_moving_range``,
    ``process_limit_lower``, ``process_limit_upper``, ``near_limit_lower``, ``near_limit_upper``
    (2 sigma), ``special_cause`` (bool), ``rule`` (the first rule broken, see :data:`RULES`, or
    ''), ``direction`` ('high', 'low' or ''), ``variation`` ('common cause', 'special cause
    improvement' / 'concern', or 'special cause high' / 'low' when neutral) and ``n_points``
    (points in the series). Units are those of ``value``. Rows are sorted by ``by`` then ``period``.
    """
    by = list(by)
    require_columns(data, [value, period] + by, "data")
    if improvement not in (None, "increase", "decrease"):
        raise ValueError(f"xmr: improvement must be 'increase', 'decrease' or None; got {improvement!r}")
    for k, v in (("shift_points", shift_points), ("trend_points", trend_points)):
        if not isinstance(v, int) or v < 3:
            raise ValueError(f"xmr: {k} must be a whole number >= 3; got {v!r}")
    if data[value].isna().any():
        raise ValueError(f"xmr: column {value!r} has missing values in rows {list(np.flatnonzero(data[value].isna()) + 1)[:5]}")
    if data.duplicated(by + [period]).any():
        raise ValueError(f"xmr: more than one row per {by + [period]}")
    groups = [((), data)] if not by else list(data.groupby(by, sort=True, dropna=False))
    out = []
    for _, g in groups:
        g = g.sort_values(period).reset_index(drop=True)
        y = g[value].to_numpy(dtype=float)
        base = y if baseline_points is None else y[:baseline_points]
        mean = base.mean()
        mr = np.abs(np.diff(base))
        amr = mr.mean() if len(mr) else np.nan
        if screen_outliers and len(mr):
            keep = mr < MR_SCREEN_CONSTANT * amr
            amr = mr[keep].mean() if keep.any() else amr
        upl, lpl = mean + XMR_CONSTANT * amr, mean - XMR_CONSTANT * amr
        nupl, nlpl = mean + 2 / 3 * XMR_CONSTANT * amr, mean - 2 / 3 * XMR_CONSTANT * amr
        outside = (y > upl) | (y < lpl)
        rel = np.sign(y - mean).astype(int)
        close = ~outside & ((y > nupl) | (y < nlpl))
        trend, tdir = _trend(y, trend_points)
        two = _two_of_three(close, rel)
        shift = _runs(rel, shift_points)
        rule = np.select([outside, trend, two, shift], list(RULES), default="")
        dirn = np.where(rule == "trend", tdir, np.where(rule != "", rel, 0))
        direction = np.select([dirn > 0, dirn < 0], ["high", "low"], default="")
        if improvement is None:
            variation = np.where(direction == "", "common cause", "special cause " + direction)
        else:
            good = "high" if improvement == "increase" else "low"
            variation = np.select([direction == good, direction != ""], ["special cause improvement", "special cause concern"],
                                  default="common cause")
        g = g.assign(mean=mean, moving_range=np.concatenate([[np.nan], np.abs(np.diff(y))]), mean_moving_range=amr,
                     process_limit_lower=lpl, process_limit_upper=upl, near_limit_lower=nlpl, near_limit_upper=nupl,
                     special_cause=rule != "", rule=rule, direction=direction, variation=variation, n_points=len(y))
        out.append(g)
    return pd.concat(out, ignore_index=True)


def xmr_figure(table: pd.DataFrame, value: str, period: str, title: str, ylabel: str, series: str | None = None,
               ncols: int = 2):
    """XmR chart(s) from a table made by :func:`xmr` (nothing is computed here): the values, the mean,
    the process limits (dashed) and 2-sigma near limits (dotted), special-cause points in colour
    (Okabe-Ito orange high, blue low; improvement/concern as labelled in ``variation``). One panel
    per ``series`` value (e.g. borough). Returns the matplotlib Figure.
    """
    need = [value, period, "mean", "process_limit_lower", "process_limit_upper", "near_limit_lower", "near_limit_upper",
            "special_cause", "direction", "variation"] + ([series] if series else [])
    require_columns(table, need, "table", "pass the output of spstudy.methods.spc.xmr")
    panels = [(None, table)] if series is None else list(table.groupby(series, sort=True))
    n = len(panels)
    nc = min(ncols, n)
    nr = int(np.ceil(n / nc))
    fig, axes = plt.subplots(nr, nc, figsize=(5.2 * nc, 3.2 * nr), squeeze=False, sharex=False)
    colour = {"high": "#E69F00", "low": "#0072B2"}
    for ax, (name, g) in zip(axes.ravel(), panels):
        g = g.sort_values(period)
        x = np.arange(len(g))
        ax.plot(x, g[value], "-", color="#7f7f7f", linewidth=1, zorder=1)
        common = ~g["special_cause"].to_numpy()
        ax.scatter(x[common], g[value].to_numpy()[common], s=16, color="#7f7f7f", zorder=2)
        for d, c in colour.items():
            m = (g["special_cause"] & (g["direction"] == d)).to_numpy()
            if m.any():
                ax.scatter(x[m], g[value].to_numpy()[m], s=26, color=c, zorder=3,
                           label=g.loc[m, "variation"].iloc[0].capitalize())
        ax.plot(x, g["mean"], color="#000000", linewidth=1, label="Mean")
        ax.plot(x, g["process_limit_upper"], "--", color="#555555", linewidth=1, label="Process limits (3 sigma)")
        ax.plot(x, g["process_limit_lower"], "--", color="#555555", linewidth=1)
        ax.plot(x, g["near_limit_upper"], ":", color="#999999", linewidth=1, label="2 sigma")
        ax.plot(x, g["near_limit_lower"], ":", color="#999999", linewidth=1)
        labels = [str(p)[:7] for p in g[period]]
        step = max(1, len(labels) // 6)
        ax.set_xticks(x[::step])
        ax.set_xticklabels(labels[::step], fontsize=7, rotation=30)
        ax.set_ylabel(ylabel, fontsize=8)
        if name is not None:
            ax.set_title(str(name if not isinstance(name, tuple) else name[0]), fontsize=9)
        ax.legend(fontsize=6, loc="best")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
