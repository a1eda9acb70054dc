"""Service reporting: the questions managers ask of a social prescribing service every month.

Every function takes the contract's ``referrals`` table (as :func:`spstudy.inputs.extracts.load_extracts`
returns it, already restricted by the caller to the area's services and period), grouping columns
``by`` (e.g. ``["borough_code"]``, ``["borough_code", "pcn_code"]``, ``["borough_code",
"provider"]``; ``[]`` for the whole area) and plain values, and returns a tidy DataFrame. Column
names say what is counted: ``n_referrals_*`` count referrals, ``n_people_*`` count people,
``n_contacts`` and ``n_onward_referrals`` count events; every share, median or rate names its
numerator and denominator in its docstring, and every interval is ``<estimate>_lower`` /
``<estimate>_upper`` at ``confidence``.

Methods: proportions with Wilson score intervals (:func:`spstudy.methods.stats.wilson_ci`; Newcombe 1998);
medians with the distribution-free interval from binomial order statistics (Campbell & Gardner
1988, BMJ 296:1454; :func:`scipy.stats.quantile_test`); means of per-case counts with a t interval
(Student; counts per case are skewed, so the median and quartiles are shown beside them); caseload
per FTE with an exact Poisson interval on the count of people (:func:`spstudy.methods.stats.exact_poisson_ci`,
Byar's above 10 as PHEindicatormethods) divided by the fixed FTE; monthly counts as XmR charts with
the Making Data Count rules (:mod:`spstudy.methods.spc`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from spstudy.methods import spc, stats
from spstudy.methods.checks import require_columns

# NCL social prescribing review (2024) p.51: "Social prescriber caseload is between 200-250 per year
# depending upon the complexity of the case" (Islington; docs/review_facts.md).
REVIEW_CASELOAD_PER_YEAR = (200, 250)
REVIEW_CASELOAD_SOURCE = "NCL social prescribing review (2024), p.51: caseload 200-250 per social prescriber per year"

LEVELS = {"area": [], "borough": ["borough_code"], "pcn": ["borough_code", "pcn_code"], "provider": ["borough_code", "provider"]}


def _check(referrals: pd.DataFrame, cols: list[str], fn: str):
    require_columns(referrals, cols, "referrals", f"{fn} expects the contract's referrals table")


def _groups(df: pd.DataFrame, by: list[str]):
    if not by:
        return [((), df)]
    return [((k,) if not isinstance(k, tuple) else k, g) for k, g in df.groupby(by, sort=True, dropna=False)]


def _q(x, q: float) -> float:
    """A quantile that is always one of the observed values (nearest rank, 'inverted_cdf'): an
    interpolated median's decimal part would tell how many values there are (n mod 4)."""
    return float(np.percentile(x, q, method="inverted_cdf"))


def _median_ci(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Distribution-free interval for the median (binomial order statistics; exact)."""
    if len(x) == 0:
        return np.nan, np.nan
    ci = sps.quantile_test(x, q=_q(x, 50), p=0.5).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def _with_wilson(out: pd.DataFrame, x: str, n: str, name: str, confidence: float) -> pd.DataFrame:
    ok = out[n] > 0
    out[name] = np.nan
    out[f"{name}_lower"] = np.nan
    out[f"{name}_upper"] = np.nan
    if ok.any():
        w = stats.wilson_ci(out.loc[ok, x].to_numpy(), out.loc[ok, n].to_numpy(), confidence=confidence)
        out.loc[ok, name] = w["proportion"].to_numpy()
        out.loc[ok, f"{name}_lower"] = w["proportion_lower"].to_numpy()
        out.loc[ok, f"{name}_upper"] = w["proportion_upper"].to_numpy()
    return out


def _mean_t(x: np.ndarray, confidence: float) -> tuple[float, float, float]:
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan
    m = float(np.mean(x))
    if n < 2:
        return m, np.nan, np.nan
    se = float(np.std(x, ddof=1)) / np.sqrt(n)
    t = sps.t.ppf(0.5 + confidence / 2, n - 1)
    return m, m - t * se, m + t * se


def time_between(referrals: pd.DataFrame, start: str, end: str, by: list[str] | tuple[str, ...] = (),
                 within_days: tuple[int, ...] = (14, 28), confidence: float = 0.95) -> pd.DataFrame:
    """Days from ``start`` to ``end`` (e.g. referral_date -> first_contact_date) for referrals with both dates.

    One row per group: ``n_referrals`` (referrals in the group), ``n_referrals_with_interval``
    (referrals with both dates: the denominator of everything else), ``median_days`` with
    ``median_days_lower`` / ``_upper`` (distribution-free), ``q1_days`` / ``q3_days`` (interquartile
    range, linear interpolation), and for each d in ``within_days``: ``n_referrals_within_<d>_days``
    (end - start <= d days) and ``share_within_<d>_days`` (that count / n_referrals_with_interval)
    with Wilson ``_lower`` / ``_upper``. Days are calendar days.
    """
    by = list(by)
    _check(referrals, [start, end] + by, "time_between")
    rows = []
    for key, g in _groups(referrals, by):
        both = g[start].notna() & g[end].notna()
        d = (g.loc[both, end] - g.loc[both, start]).dt.days.to_numpy(dtype=float)
        lo, hi = _median_ci(d, confidence)
        row = dict(zip(by, key)) | {"n_referrals": len(g), "n_referrals_with_interval": int(both.sum()),
                                     "median_days": _q(d, 50) if len(d) else np.nan, "median_days_lower": lo,
                                     "median_days_upper": hi,
                                     "q1_days": _q(d, 25) if len(d) else np.nan,
                                     "q3_days": _q(d, 75) if len(d) else np.nan}
        for w in within_days:
            row[f"n_referrals_within_{w}_days"] = int((d <= w).sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    for w in within_days:
        out = _with_wilson(out, f"n_referrals_within_{w}_days", "n_referrals_with_interval", f"share_within_{w}_days", confidence)
    return out.assign(start=start, end=end, confidence=confidence)


def waiting_times(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (), within_days: tuple[int, ...] = (14, 28),
                  confidence: float = 0.95) -> pd.DataFrame:
    """Referral to first contact (referrals seen) and first contact to closure (seen and closed): the
    two :func:`time_between` tables stacked, with ``interval`` = 'referral to first contact' or
    'first contact to closure'."""
    a = time_between(referrals, "referral_date", "first_contact_date", by, within_days, confidence).assign(interval="referral to first contact")
    b = time_between(referrals, "first_contact_date", "closure_date", by, within_days, confidence).assign(interval="first contact to closure")
    return pd.concat([a, b], ignore_index=True)


def contacts_per_case(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (), confidence: float = 0.95) -> pd.DataFrame:
    """Link-worker contacts per seen referral (outcome 'seen').

    Columns: ``n_referrals_seen`` (denominator), ``n_contacts`` (sum of contacts),
    ``mean_contacts`` = n_contacts / n_referrals_seen with a t interval, ``median_contacts``,
    ``q1_contacts``, ``q3_contacts``, ``n_referrals_seen_closed`` and ``mean_contacts_closed`` (closed
    cases only: their count of contacts is final).
    """
    by = list(by)
    _check(referrals, ["outcome", "contacts", "closure_date"] + by, "contacts_per_case")
    rows = []
    for key, g in _groups(referrals[referrals["outcome"] == "seen"], by):
        c = g["contacts"].to_numpy(dtype=float)
        m, lo, hi = _mean_t(c, confidence)
        closed = g.loc[g["closure_date"].notna(), "contacts"].to_numpy(dtype=float)
        rows.append(dict(zip(by, key)) | {"n_referrals_seen": len(g), "n_contacts": int(c.sum()), "mean_contacts": m,
                                          "mean_contacts_lower": lo, "mean_contacts_upper": hi,
                                          "median_contacts": _q(c, 50), "q1_contacts": _q(c, 25),
                                          "q3_contacts": _q(c, 75), "n_referrals_seen_closed": len(closed),
                                          "mean_contacts_closed": float(closed.mean()) if len(closed) else np.nan})
    return pd.DataFrame(rows).assign(confidence=confidence)


def onward_referrals_per_person_seen(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (),
                                     confidence: float = 0.95) -> pd.DataFrame:
    """Onward referrals (connections to community support) per person seen.

    A person seen is a person with at least one referral whose outcome is 'seen' (counted once per
    group, their onward referrals summed over their seen referrals). Columns: ``n_people_seen``
    (denominator), ``n_onward_referrals`` (events), ``onward_per_person`` (mean per person, t
    interval), ``n_people_with_onward`` (people with at least one) and ``share_with_onward`` =
    n_people_with_onward / n_people_seen (Wilson).
    """
    by = list(by)
    _check(referrals, ["outcome", "person_id", "onward_referrals"] + by, "onward_referrals_per_person_seen")
    rows = []
    for key, g in _groups(referrals[referrals["outcome"] == "seen"], by):
        per = g.groupby("person_id")["onward_referrals"].sum().to_numpy(dtype=float)
        m, lo, hi = _mean_t(per, confidence)
        rows.append(dict(zip(by, key)) | {"n_people_seen": len(per), "n_onward_referrals": int(per.sum()),
                                          "onward_per_person": m, "onward_per_person_lower": lo, "onward_per_person_upper": hi,
                                          "n_people_with_onward": int((per > 0).sum())})
    out = pd.DataFrame(rows)
    return _with_wilson(out, "n_people_with_onward", "n_people_seen", "share_with_onward", confidence).assign(confidence=confidence)


def caseload_per_fte(referrals: pd.DataFrame, workforce: pd.DataFrame, period_start: dt.date, period_end: dt.date,
                     as_of: dt.date, benchmark: tuple[float, float] = REVIEW_CASELOAD_PER_YEAR,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Link-worker caseload by borough against the review's 200-250 people per link worker per year.

    ``n_people_seen`` = people with a seen referral received in [period_start, period_end];
    ``annual_caseload_per_fte`` = n_people_seen / link-worker FTE x 365.25 / days in the period, with
    an interval from the exact / Byar's Poisson interval of n_people_seen (FTE taken as fixed);
    ``n_people_open`` = people with a referral received on or before ``as_of`` and not closed by then
    (any outcome: a case awaiting contact is open) and ``open_caseload_per_fte`` (point in time).
    ``fte_link_workers`` sums the workforce's link_worker rows in the borough (borough-level and PCN
    posts; the workforce return does not say which provider or PCN each post serves, so this is by
    borough only). ``position``: 'below', 'within' or 'above' the benchmark range, from the estimate.
    Boroughs with no link-worker FTE get NaN rates.
    """
    _check(referrals, ["borough_code", "person_id", "outcome", "referral_date", "closure_date"], "caseload_per_fte")
    days = (pd.Timestamp(period_end) - pd.Timestamp(period_start)).days + 1
    if days <= 0:
        raise ValueError(f"caseload_per_fte: period_end {period_end} is before period_start {period_start}")
    lw = workforce[workforce["role"] == "link_worker"].groupby("borough_code")["fte"].sum()
    r = referrals
    in_period = r["referral_date"].between(pd.Timestamp(period_start), pd.Timestamp(period_end))
    t = pd.Timestamp(as_of)
    open_ = (r["referral_date"] <= t) & (r["closure_date"].isna() | (r["closure_date"] > t))
    rows = []
    for b in sorted(set(r["borough_code"].dropna()) | set(lw.index)):
        rb = r[r["borough_code"] == b]
        seen = rb.loc[in_period[rb.index] & (rb["outcome"] == "seen"), "person_id"].nunique()
        n_open = rb.loc[open_[rb.index], "person_id"].nunique()
        rows.append({"borough_code": b, "fte_link_workers": float(lw.get(b, 0.0)), "n_people_seen": int(seen),
                     "n_people_open": int(n_open)})
    out = pd.DataFrame(rows)
    x = out["n_people_seen"].to_numpy(dtype=float)
    lower, upper, _ = stats._count_ci(x, stats.check_confidence(confidence))
    scale = 365.25 / days
    fte = out["fte_link_workers"].where(out["fte_link_workers"] > 0)
    out["annual_caseload_per_fte"] = out["n_people_seen"] * scale / fte
    out["annual_caseload_per_fte_lower"] = np.nan_to_num(lower, nan=0.0) * scale / fte
    out["annual_caseload_per_fte_upper"] = upper * scale / fte
    out["open_caseload_per_fte"] = out["n_people_open"] / fte
    lo, hi = benchmark
    est = out["annual_caseload_per_fte"]
    out["position"] = np.select([est < lo, est > hi, est.notna()], ["below", "above", "within"], default="")
    return out.assign(benchmark_low=lo, benchmark_high=hi, benchmark_source=REVIEW_CASELOAD_SOURCE, period_start=str(period_start),
                      period_end=str(period_end), as_of=str(as_of), confidence=confidence)


def referral_reasons(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (), confidence: float = 0.95) -> pd.DataFrame:
    """Reasons for referral; a referral can give several (so shares add up to more than 1).

    One row per group and reason: ``n_referrals_with_reason`` (referrals giving it),
    ``n_referrals`` (all referrals in the group: the denominator) and ``share_of_referrals`` (Wilson).
    ``mean_reasons_per_referral`` (per group) is repeated on each row.
    """
    by = list(by)
    _check(referrals, ["reasons"] + by, "referral_reasons")
    rows = []
    for key, g in _groups(referrals, by):
        parts = g["reasons"].fillna("").str.split(";")
        counts = parts.explode().str.strip()
        counts = counts[counts != ""].value_counts()
        mean_n = float(parts.map(lambda xs: len([x for x in xs if x])).mean()) if len(g) else np.nan
        for reason, n in sorted(counts.items()):
            rows.append(dict(zip(by, key)) | {"reason": reason, "n_referrals_with_reason": int(n), "n_referrals": len(g),
                                              "mean_reasons_per_referral": mean_n})
    out = pd.DataFrame(rows)
    return _with_wilson(out, "n_referrals_with_reason", "n_referrals", "share_of_referrals", confidence).assign(confidence=confidence)


def referral_sources(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (), confidence: float = 0.95) -> pd.DataFrame:
    """Who referred, and what happened next, by source.

    One row per group and source: ``n_referrals_from_source``, ``n_referrals`` (group total) and
    ``share_of_referrals`` (Wilson; the row with source 'self' is the self-referral share); then,
    within the source: ``n_referrals_dna``, ``n_referrals_declined`` and ``share_dna`` /
    ``share_declined`` = those counts / n_referrals_from_source (Wilson).
    """
    by = list(by)
    _check(referrals, ["source", "outcome"] + by, "referral_sources")
    rows = []
    for key, g in _groups(referrals, by):
        for src, s in g.groupby("source", sort=True):
            rows.append(dict(zip(by, key)) | {"source": src, "n_referrals_from_source": len(s), "n_referrals": len(g),
                                              "n_referrals_dna": int((s["outcome"] == "dna").sum()),
                                              "n_referrals_declined": int((s["outcome"] == "declined").sum())})
    out = pd.DataFrame(rows)
    out = _with_wilson(out, "n_referrals_from_source", "n_referrals", "share_of_referrals", confidence)
    out = _with_wilson(out, "n_referrals_dna", "n_referrals_from_source", "share_dna", confidence)
    out = _with_wilson(out, "n_referrals_declined", "n_referrals_from_source", "share_declined", confidence)
    return out.assign(confidence=confidence)


def monthly_referrals(referrals: pd.DataFrame, start: dt.date, end: dt.date, by: list[str] | tuple[str, ...] = (),
                      shift_points: int = 7, trend_points: int = 7, screen_outliers: bool = False) -> pd.DataFrame:
    """Referrals received per calendar month from ``start`` to ``end`` (months with none are 0), with
    XmR statistics and Making Data Count special-cause flags per series (:func:`spstudy.methods.spc.xmr`).
    ``n_referrals`` counts referrals; ``month`` is the first day of the month (YYYY-MM-DD)."""
    by = list(by)
    _check(referrals, ["referral_date"] + by, "monthly_referrals")
    months = pd.period_range(pd.Timestamp(start), pd.Timestamp(end), freq="M")
    r = referrals[referrals["referral_date"].between(pd.Timestamp(start), pd.Timestamp(end))]
    m = r["referral_date"].dt.to_period("M")
    keys = [((), None)] if not by else [(tuple(k), None) for k in
                                        sorted(referrals[by].drop_duplicates().itertuples(index=False, name=None))]
    counts = r.assign(month=m).groupby(by + ["month"]).size()
    rows = []
    for key, _ in keys:
        for mo in months:
            n = counts.get(tuple(key) + (mo,), 0) if by else counts.get(mo, 0)
            rows.append(dict(zip(by, key)) | {"month": str(mo.start_time.date()), "n_referrals": int(n)})
    tab = pd.DataFrame(rows)
    return spc.xmr(tab, "n_referrals", "month", by, shift_points=shift_points, trend_points=trend_points,
                   screen_outliers=screen_outliers)


def unmet_need(referrals: pd.DataFrame, by: list[str] | tuple[str, ...] = (), confidence: float = 0.95) -> pd.DataFrame:
    """Referrals closed without an onward connection ('unmet need', which the review asks services to
    document), by reason for referral (a referral with several reasons counts under each).

    Among closed referrals (closure_date given): one row per group, reason and outcome ('seen',
    'dna', 'declined', and 'all'): ``n_referrals_closed`` (denominator), ``n_referrals_closed_no_onward``
    (onward_referrals = 0) and ``share_no_onward`` (Wilson). For dna and declined referrals every
    closure is without a connection; the 'seen' rows are the service's own unmet need.
    """
    by = list(by)
    _check(referrals, ["reasons", "outcome", "closure_date", "onward_referrals"] + by, "unmet_need")
    closed = referrals[referrals["closure_date"].notna()].copy()
    closed["reason"] = closed["reasons"].fillna("").str.split(";")
    ex = closed.explode("reason")
    ex["reason"] = ex["reason"].str.strip()
    ex = ex[ex["reason"] != ""]
    ex["no_onward"] = ex["onward_referrals"] == 0
    rows = []
    for key, g in _groups(ex, by):
        for reason, gr in g.groupby("reason", sort=True):
            for outcome, go in [("all", gr)] + list(gr.groupby("outcome", sort=True)):
                rows.append(dict(zip(by, key)) | {"reason": reason, "outcome": outcome, "n_referrals_closed": len(go),
                                                  "n_referrals_closed_no_onward": int(go["no_onward"].sum())})
    out = pd.DataFrame(rows)
    return _with_wilson(out, "n_referrals_closed_no_onward", "n_referrals_closed", "share_no_onward", confidence).assign(confidence=confidence)


@dataclass(frozen=True)
class ServiceReport:
    """The service-delivery tables, each at every level (column ``level``: area, borough, pcn,
    provider; grouping columns borough_code, pcn_code, provider empty where they do not apply)."""

    waiting_times: pd.DataFrame
    contacts: pd.DataFrame
    onward: pd.DataFrame
    caseload: pd.DataFrame
    reasons: pd.DataFrame
    sources: pd.DataFrame
    monthly: pd.DataFrame
    unmet_need: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """One long table: table, level, borough_code, pcn_code, provider, the table's own keys
        (interval, reason, source, outcome, month; empty where not used), measure, value."""
        keys = ["level", "borough_code", "pcn_code", "provider", "interval", "reason", "source", "outcome", "month"]
        out = []
        for name in ("waiting_times", "contacts", "onward", "caseload", "reasons", "sources", "monthly", "unmet_need"):
            t = getattr(self, name).copy()
            for k in keys:
                if k not in t.columns:
                    t[k] = ""
            num = [c for c in t.columns if c not in keys and pd.api.types.is_numeric_dtype(t[c]) and not pd.api.types.is_bool_dtype(t[c])]
            long = t[keys + num].melt(id_vars=keys, var_name="measure", value_name="value")
            out.append(long.assign(table=name))
        res = pd.concat(out, ignore_index=True)
        for k in keys:
            res[k] = res[k].astype(object).where(res[k].notna(), "").astype(str)
        return res[["table"] + keys + ["measure", "value"]]


def _levels(fn, referrals: pd.DataFrame, levels: dict[str, list[str]], **kw) -> pd.DataFrame:
    parts = []
    for level, by in levels.items():
        t = fn(referrals, by=by, **kw)
        parts.append(t.assign(level=level))
    out = pd.concat(parts, ignore_index=True)
    for c in ("borough_code", "pcn_code", "provider"):
        if c not in out.columns:
            out[c] = None
    lead = ["level", "borough_code", "pcn_code", "provider"]
    return out[lead + [c for c in out.columns if c not in lead]]


def service_report(referrals: pd.DataFrame, workforce: pd.DataFrame, period_start: dt.date, period_end: dt.date,
                   as_of: dt.date, within_days: tuple[int, ...] = (14, 28), shift_points: int = 7, trend_points: int = 7,
                   confidence: float = 0.95, levels: dict[str, list[str]] | None = None) -> ServiceReport:
    """Every service table for ``referrals`` (restricted by the caller to the area's services) at
    each level of ``levels`` (default :data:`LEVELS`: area, borough, PCN, provider); monthly XmR
    charts are per borough (and area), caseload per FTE by borough."""
    levels = levels or LEVELS
    r = referrals[referrals["referral_date"].between(pd.Timestamp(period_start), pd.Timestamp(period_end))]
    monthly = pd.concat([monthly_referrals(r, period_start, period_end, [], shift_points, trend_points).assign(level="area"),
                         monthly_referrals(r, period_start, period_end, ["borough_code"], shift_points, trend_points).assign(level="borough")],
                        ignore_index=True)
    return ServiceReport(
        waiting_times=_levels(waiting_times, r, levels, within_days=within_days, confidence=confidence),
        contacts=_levels(contacts_per_case, r, levels, confidence=confidence),
        onward=_levels(onward_referrals_per_person_seen, r, levels, confidence=confidence),
        caseload=caseload_per_fte(r, workforce, period_start, period_end, as_of, confidence=confidence).assign(level="borough"),
        reasons=_levels(referral_reasons, r, levels, confidence=confidence),
        sources=_levels(referral_sources, r, levels, confidence=confidence),
        monthly=monthly,
        unmet_need=_levels(unmet_need, r, levels, confidence=confidence),
    )


def keyed(table: pd.DataFrame, area_code: str, area_name: str = "") -> pd.DataFrame:
    """A service table with the cube coordinates the publisher needs: ``geo`` (the area for the area and
    provider rows, else the borough or PCN code), ``provider`` ('All' except on provider rows) and a
    readable ``unit`` label (area, borough, PCN or provider name)."""
    from spstudy.inputs import reference

    gp = reference.gp_practices()
    pcn_names = dict(zip(gp["pcn_code"], gp["pcn_name"]))
    bor = dict(zip(reference.BOROUGHS["borough_code"], reference.BOROUGHS["borough_name"]))
    out = table.copy()
    lv = out["level"].astype(str) if "level" in out else pd.Series("borough", index=out.index)
    geo = np.where(lv == "pcn", out.get("pcn_code", pd.Series(None, index=out.index)).astype(object),
                   np.where(lv == "borough", out.get("borough_code", pd.Series(None, index=out.index)).astype(object), area_code))
    out["geo"] = geo
    prov = out["provider"].astype(object) if "provider" in out else pd.Series(None, index=out.index, dtype=object)
    out["provider"] = np.where(lv == "provider", prov, "All")
    unit = [(area_name or area_code) if l == "area" else bor.get(g, g) if l == "borough" else pcn_names.get(g, g) if l == "pcn"
            else f"{p}" for l, g, p in zip(lv, out["geo"], out["provider"])]
    out.insert(0, "unit", unit)
    # a borough's own 'borough' row repeats its 'area' row
    dup = (lv == "borough") & (out["geo"] == area_code)
    return out[~dup.to_numpy()].reset_index(drop=True)
