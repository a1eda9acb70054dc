"""Matched pre/post service-use evaluation: did social prescribing change GP and A&E use?

Design (issues 6 and 16; docs/evaluation.md):

1. Cohort (:func:`cohort`). Referred people: each person's first referral in the study period, in
   the area's services; index date = referral date. Comparators: registered people in the area's
   practices who were **never referred at any time in the data** (referrals outside the study
   period count: ``Extracts.referred_ever``), each given a pseudo-index date drawn from the referral
   dates, so their pre-window is in the same calendar months. Everyone must be registered for the
   year before the index date and at it. Intention to treat (ITT) = all referred; per protocol =
   seen.
2. Counting. Events and person-days in windows of whole months around the index date (month m =
   days round(30.4375 m) .. round(30.4375 (m + 1)) - 1) come from :mod:`spstudy.methods.engine`.
3. Matching (:func:`match`). Propensity score on age (restricted cubic spline), sex, deprivation,
   ethnic group and prior GP and A&E use per quarter of the *matching window* (months -12..-7;
   splines too); greedy nearest neighbour on the logit with a 0.2 SD caliper, exact on sex and
   PCN (:mod:`spstudy.methods.matching`). Balance before and after, reported as it is.
4. Effects. Naive before/after in the referred; the matched difference in differences between the
   *baseline window* (months -6..-4) and the post window (ratio of rate ratios, Poisson GLM with
   cluster-robust errors by matched set; absolute difference per 1,000 person-years with a
   cluster bootstrap). Months -3..-1 are a washout. Beside it, the **trend-adjusted estimate**
   (:func:`spstudy.methods.diagnostics.trend_adjusted`), robust to a linear differential pre-trend and to
   the pre-referral rise spilling into the first months after referral.
5. Diagnostics (:mod:`spstudy.methods.diagnostics`): the event study (per-month rate ratios relative to
   the baseline window, fixed-effects Poisson with matched-set x month effects, clustered by set),
   the pre-trend test on the months before the matching window, the onset of the pre-referral
   rise, a placebo index date 3 months before referral whose window ends at referral, balance, a
   negative-control outcome (elective admissions) and E-values. A written rule turns them into a
   verdict per setting, window and cohort: "credible", "sensitive", or "not credible: the
   comparison group does not show what would have happened". A not-credible estimate is never the
   headline and never valued.

What matching cannot fix: it balances what is measured, not an unmeasured reason for referral (a
crisis the GP saw but the record does not show). The event study, the placebo and the negative
control show such bias where it leaves a trace; the E-value says how strong an unmeasured
confounder would have to be to explain the estimate away.

Functions take DataFrames and plain values; :func:`design_from_parameters` is the adapter that
reads them from the parameters for the notebooks. :func:`run` returns an :class:`EvaluationResult`
(frozen dataclass of tidy tables, ``.tidy()``, ``to_parquet``/``read_parquet``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from scipy import stats

from spstudy.inputs import reference
from spstudy.methods import diagnostics as dg
from spstudy.methods import engine as eng
from spstudy.methods.checks import require_columns
from spstudy.methods.coding import EVALUATION_AGE_BANDS, code_ethnicity, imd_quintile
from spstudy.methods.stats import z_value
from spstudy.methods.subgroups import did_long, poisson_did_fit

if TYPE_CHECKING:  # matching is imported where used (it is heavy)
    from spstudy.methods.matching import MatchResult

DAYS_PER_MONTH = 30.4375
MEASURE_LABELS = {"ons4_life_satisfaction": "ONS4 life satisfaction (0-10)", "ons4_worthwhile": "ONS4 worthwhile (0-10)",
                  "ons4_happy": "ONS4 happiness (0-10)", "ons4_anxious": "ONS4 anxiety (0-10, lower is better)",
                  "wemwbs_total": "WEMWBS (14-70)", "swemwbs_metric": "SWEMWBS metric score (7-35)"}
OUTCOME_SETTINGS = ("gp", "ae")
COHORTS = ("itt", "per_protocol")
# Harrell (2015) Regression Modeling Strategies, 2nd ed., s.2.4.6, Table 2.3: knot percentiles by number of knots
RCS_KNOT_PERCENTILES = {3: (10, 50, 90), 4: (5, 35, 65, 95), 5: (5, 27.5, 50, 72.5, 95),
                        6: (5, 23, 41, 59, 77, 95), 7: (2.5, 18.33, 34.17, 50, 65.83, 81.67, 97.5)}


def month_days(m0: int, m1: int) -> tuple[int, int]:
    """Day offsets of months m0..m1 (inclusive; month -1 = the 30.44 days before the index date)."""
    return int(round(DAYS_PER_MONTH * m0)), int(round(DAYS_PER_MONTH * (m1 + 1))) - 1




# ============================================================================ design

@dataclass(frozen=True)
class Design:
    """Every choice of the evaluation, as plain values (built from the parameters by
    :func:`design_from_parameters`; months are relative to the index date, inclusive)."""

    windows_months: tuple[int, ...] = (6, 12)
    matching_window_months: tuple[int, int] = (-12, -7)
    baseline_window_months: tuple[int, int] = (-6, -4)
    k: int = 1
    caliper_sd: float = 0.2
    replace: bool = False
    exact: tuple[str, ...] = ("sex", "pcn_code")
    comparator_pool_per_referral: int = 10
    smd_threshold: float = 0.1
    smd_fail: float = 0.25
    placebo_shift_months: int = 3
    placebo_window_months: int = 3
    event_study_months_before: int = 24
    clean_buffer_months: int = 3
    post_washout_months: int = 3
    age_spline_knots: int = 4
    negative_control_setting: str | None = "elective"
    confidence: float = 0.95
    bootstrap_draws: int = 500
    seed_comparator_pool: int = 20231
    seed_bootstrap: int = 1
    seed_placebo: int = 2
    alpha: float = 0.05
    margin: float = 0.05
    post_window_from: str = "referral"
    data_start: dt.date = dt.date(2021, 4, 1)
    data_end: dt.date = dt.date(2025, 3, 31)
    conventional: bool = True
    cohorts: tuple[str, ...] = COHORTS

    @property
    def washout_months(self) -> tuple[int, int]:
        return self.baseline_window_months[1] + 1, -1

    @property
    def clean_months(self) -> list[int]:
        """The clean pre-period of the event study: the months before the matching window, less the
        ``clean_buffer_months`` next to it (matching on the window's noisy counts picks comparators
        whose use was raised around the window, which shows in the neighbouring months)."""
        return list(range(-self.event_study_months_before, self.matching_window_months[0] - self.clean_buffer_months))

    @property
    def last_month(self) -> int:
        return max(self.windows_months) - 1

    @property
    def lookback_days(self) -> int:
        """Registration needed before the index date (the matching window or the longest window)."""
        return max(int(round(DAYS_PER_MONTH * max(self.windows_months))), -month_days(*self.matching_window_months)[0])

    def to_frame(self) -> pd.DataFrame:
        """The design as a tidy table (parameter, value as text), e.g. for the analysis plan."""
        rows = [{"parameter": f.name, "value": json.dumps(getattr(self, f.name), default=str)} for f in dataclasses.fields(self)]
        return pd.DataFrame(rows)


def design_from_parameters(params, **overrides) -> Design:
    """Adapter for the notebooks: the :class:`Design` from a :class:`spstudy.inputs.params.Parameters`."""
    e, m = params.evaluation, params.evaluation.matching
    d = Design(
        windows_months=tuple(e.windows_months), matching_window_months=tuple(e.matching_window_months),
        baseline_window_months=tuple(e.baseline_window_months), k=m.k, caliper_sd=m.caliper_sd, replace=m.replace,
        exact=tuple(m.exact), comparator_pool_per_referral=m.comparator_pool_per_referral, smd_threshold=e.smd_threshold,
        smd_fail=e.verdict.smd_fail, placebo_shift_months=e.placebo_shift_months, placebo_window_months=e.placebo_window_months,
        event_study_months_before=e.event_study_months_before, clean_buffer_months=e.clean_buffer_months,
        post_washout_months=e.post_washout_months,
        age_spline_knots=e.age_spline_knots, negative_control_setting=e.negative_control_setting, confidence=params.study.confidence,
        bootstrap_draws=e.bootstrap_draws, seed_comparator_pool=e.seeds.comparator_pool, seed_bootstrap=e.seeds.bootstrap,
        seed_placebo=e.seeds.placebo, alpha=e.verdict.alpha, margin=e.verdict.margin, post_window_from=e.post_window_from,
        data_start=params.study.data_start, data_end=params.study.data_end)
    return dataclasses.replace(d, **overrides) if overrides else d


def design_windows_months(design: Design) -> list[tuple[str, int, int]]:
    """Every window the evaluation counts for the whole cohort, as (name, first month, last month):
    the matching window's quarters, the DiD baseline, pre and post windows of each length, the
    conventional design's quarters and last month, and the placebo design's windows."""
    m0, m1 = design.matching_window_months
    n_q = (m1 - m0 + 1) // 3
    s, w = design.placebo_shift_months, design.placebo_window_months
    b0, b1 = design.baseline_window_months
    out = [(f"match_q{i + 1}", m0 + 3 * i, m0 + 3 * i + 2) for i in range(n_q)]
    out += [("baseline", b0, b1)]
    for m in design.windows_months:
        out += [(f"pre_{m}m", -m, -1), (f"post_{m}m", 0, m - 1)]
    out += [("pre_q1", -12, -10), ("pre_q2", -9, -7), ("pre_q3", -6, -4), ("pre_q4", -3, -1), ("pre_last_month", -1, -1)]
    out += [(f"pl_match_q{i + 1}", m0 + 3 * i - s, m0 + 3 * i + 2 - s) for i in range(n_q)]
    out += [("pl_baseline", b0 - s, b1 - s), ("pl_post", -s, -s + w - 1)]
    seen, uniq = set(), []
    for name, a, b in out:
        if name not in seen:
            seen.add(name)
            uniq.append((name, a, b))
    return uniq


def design_windows(design: Design) -> list[tuple[str, int, int]]:
    """:func:`design_windows_months` as inclusive day offsets (the engine's windows)."""
    return [(n, *month_days(a, b)) for n, a, b in design_windows_months(design)]


def windows_for(months: list[int]) -> list[tuple[str, int, int]]:
    """Pre and post windows of ``months`` months as day offsets (pre: months -m..-1, post: 0..m-1)."""
    out = []
    for m in months:
        out += [(f"pre_{m}m", *month_days(-m, -1)), (f"post_{m}m", *month_days(0, m - 1))]
    return out


def _match_quarters(design: Design, prefix: str = "match") -> list[str]:
    n_q = (design.matching_window_months[1] - design.matching_window_months[0] + 1) // 3
    return [f"{prefix}_q{i + 1}" for i in range(n_q)]


def ps_covariates(design: Design, settings=OUTCOME_SETTINGS, prefix: str = "match") -> list[str]:
    """Propensity-score covariates of the main design: age (spline basis), sex, deprivation
    quintile, ethnic group, and GP and A&E use per quarter of the matching window (spline basis)."""
    cols = ["age"] + [f"age_rcs{j}" for j in range(1, design.age_spline_knots - 1)] + ["age_band", "sex", "imd_q", "ethnic_group"]
    for s in settings:
        for q in _match_quarters(design, prefix):
            cols += [f"{s}_{q}_rate", f"{s}_{q}_rate_rcs1"]
    return cols


# ============================================================================ cohort

@dataclass(frozen=True)
class Cohort:
    """The evaluation cohort (:func:`cohort`).

    ``index``: one row per referred person and eligible comparator (index_id, person_id, index_date,
    follow_start, follow_end, treated (0/1), seen (0/1, referred only), referral_id, closure_date,
    age, sex, ethnic_group, imd_quintile, pcn_code, practice_code); ``flow``: step, n (people), the
    steps from the area's referrals to the cohort.
    """

    index: pd.DataFrame
    flow: pd.DataFrame


def cohort(persons: pd.DataFrame, referrals: pd.DataFrame, area: reference.Area, design: Design,
           referred_ever=None) -> Cohort:
    """Referred and comparator index rows for ``area``, and the cohort flow (counts of people).

    ``persons`` and ``referrals`` are the whole region's, not the area's cut: a person referred by
    the area's services may be registered at a practice elsewhere, and a comparator must not have
    been referred by any service.

    ``referrals``: the study period's referrals (validated); ``referred_ever``: person ids referred
    at ANY time in the data, including referrals the loader excluded as outside the study period
    (``Extracts.referred_ever``). Comparators are registered people in the area's practices who
    are in neither. Seed: ``design.seed_comparator_pool`` (pseudo-index dates and pool sample).

    Returns a :class:`Cohort` (``index`` and ``flow`` tables).
    """
    area = reference.as_area(area, "area")
    codes = area.borough_codes
    p = persons.copy()
    gp = reference.gp_practices()[["practice_code", "pcn_code", "borough_code"]]
    p = p.merge(gp, on="practice_code", how="left", validate="many_to_one")
    imd = reference.imd2025()[["lsoa21_code", "imd2025_imd_decile"]]
    p = p.merge(imd, on="lsoa21_code", how="left", validate="many_to_one")
    p["imd_quintile"] = imd_quintile(p["imd2025_imd_decile"]).to_numpy()
    p["ethnic_group"] = code_ethnicity(p["ethnicity"]).to_numpy()
    p["follow_start"] = p["registration_start"].clip(lower=pd.Timestamp(design.data_start))
    p["follow_end"] = p["registration_end"].fillna(pd.Timestamp(design.data_end)).clip(upper=pd.Timestamp(design.data_end))
    lookback = design.lookback_days
    flow = []

    r = referrals[referrals["borough_code"].isin(codes)].sort_values(["person_id", "referral_date", "referral_id"])
    flow.append(("Referrals in the area's services in the study period", len(r)))
    r = r.drop_duplicates("person_id", keep="first")
    flow.append(("People referred (first referral in the period)", len(r)))
    t = r[["referral_id", "person_id", "referral_date", "outcome", "closure_date"]].merge(p, on="person_id", how="left", validate="one_to_one")
    t["index_date"] = t["referral_date"]
    ok = (t["follow_start"] <= t["index_date"] - pd.Timedelta(days=lookback)) & (t["follow_end"] >= t["index_date"])
    flow.append((f"Referred people registered for {lookback} days before referral and at referral", int(ok.sum())))
    t = t[ok].copy()
    t["treated"] = 1
    t["seen"] = (t["outcome"] == "seen").astype(int)

    ever = set(referrals["person_id"]) | (set(referred_ever) if referred_ever is not None else set())
    here = p["borough_code"].isin(codes)
    only_outside = here & p["person_id"].isin(ever - set(referrals["person_id"]))
    flow.append(("Registered people in the area's practices referred only outside the study period (not comparators)", int(only_outside.sum())))
    c = p[~p["person_id"].isin(ever) & here].copy()
    flow.append(("Registered people in the area's practices never referred at any time in the data (comparator pool)", len(c)))
    rng = np.random.default_rng(design.seed_comparator_pool)
    c = c.sort_values("person_id").reset_index(drop=True)
    c["index_date"] = t["index_date"].to_numpy()[rng.integers(0, len(t), size=len(c))] if len(t) else pd.NaT
    ok = (c["follow_start"] <= c["index_date"] - pd.Timedelta(days=lookback)) & (c["follow_end"] >= c["index_date"])
    if len(t):  # common support on age: no comparator younger or older than every referred person
        age_c = c["index_date"].dt.year - c["birth_year"]
        age_t = t["index_date"].dt.year - t["birth_year"]
        ok &= age_c.between(age_t.min(), age_t.max())
    c = c[ok]
    n_pool = design.comparator_pool_per_referral * len(t)
    if len(c) > n_pool:
        c = c.iloc[np.sort(rng.choice(len(c), size=n_pool, replace=False))]
    flow.append((f"Eligible comparators with a pseudo-index date, registered like the referred and within their age range "
                 f"(at most {design.comparator_pool_per_referral} per referred person)", len(c)))
    c = c.assign(treated=0, seen=0, referral_id=None, outcome=None, closure_date=pd.NaT)

    idx = pd.concat([t, c], ignore_index=True)
    idx["age"] = idx["index_date"].dt.year - idx["birth_year"]
    idx["index_id"] = np.arange(len(idx))
    cols = ["index_id", "person_id", "index_date", "follow_start", "follow_end", "treated", "seen", "referral_id", "closure_date",
            "age", "sex", "ethnic_group", "imd_quintile", "pcn_code", "practice_code"]
    idx = idx[cols]
    if idx["imd_quintile"].isna().any():
        bad = idx.loc[idx["imd_quintile"].isna(), "person_id"].head(5).tolist()
        raise ValueError(f"persons: {int(idx['imd_quintile'].isna().sum())} cohort members have an LSOA without IMD 2025 (first person ids: {bad})")
    return Cohort(index=idx.reset_index(drop=True), flow=pd.DataFrame(flow, columns=["step", "n"]))


# ============================================================================ counting

def count_windows(activity, index: pd.DataFrame, windows, engine: str = "duckdb", settings=OUTCOME_SETTINGS) -> pd.DataFrame:
    """Wide table: one row per index_id with ``<setting>_<window>_events`` and ``<window>_days``."""
    cols = ["index_id", "person_id", "index_date", "follow_start", "follow_end"]
    return eng.window_counts_wide(activity, index[cols], windows, engine=engine, settings=tuple(settings))


def _month_name(m: int) -> str:
    return f"mm{-m}" if m < 0 else f"mp{m}"


def count_monthly(activity, index: pd.DataFrame, first_month: int, last_month: int, settings=OUTCOME_SETTINGS,
                  engine: str = "duckdb") -> pd.DataFrame:
    """Events and person-days per index row and relative month (long: index_id, month, setting,
    events, days), months as in :func:`month_days`, counted by :mod:`spstudy.methods.engine`."""
    months = list(range(first_month, last_month + 1))
    wins = [(_month_name(m), *month_days(m, m)) for m in months]
    w = count_windows(activity, index, wins, engine, settings)
    parts = []
    for s in settings:
        for m in months:
            n = _month_name(m)
            parts.append(pd.DataFrame({"index_id": w["index_id"].to_numpy(), "month": m, "setting": s,
                                       "events": w[f"{s}_{n}_events"].to_numpy(), "days": w[f"{n}_days"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def windows_from_monthly(monthly: pd.DataFrame, windows_months: list[tuple[str, int, int]], settings) -> pd.DataFrame:
    """The wide window table of :func:`count_windows` built by summing a monthly table (long:
    index_id, month, setting, events, days; every index row has every month): for simulated worlds,
    which give monthly counts. Days are taken from the first setting's rows."""
    ids, id_code = np.unique(monthly["index_id"].to_numpy(), return_inverse=True)
    months = np.unique(monthly["month"].to_numpy())
    m_code = np.searchsorted(months, monthly["month"].to_numpy())
    st = monthly["setting"].to_numpy()
    out = {"index_id": ids}
    days = np.zeros((len(ids), len(months)))
    first = st == settings[0]
    days[id_code[first], m_code[first]] = monthly["days"].to_numpy()[first]
    ev = {}
    for s in settings:
        e = np.zeros((len(ids), len(months)))
        sel = st == s
        e[id_code[sel], m_code[sel]] = monthly["events"].to_numpy()[sel]
        ev[s] = e
    for name, a, b in windows_months:
        cols = (months >= a) & (months <= b)
        for s in settings:
            out[f"{s}_{name}_events"] = ev[s][:, cols].sum(axis=1).astype(np.int64)
        out[f"{name}_days"] = days[:, cols].sum(axis=1).astype(np.int64)
    return pd.DataFrame(out)


# ============================================================================ features

def rcs_basis(x: np.ndarray, knots) -> np.ndarray:
    """Restricted (natural) cubic spline basis: the non-linear columns for ``knots`` (k knots give
    k - 2 columns; use with x itself). Harrell (2015), Regression Modeling Strategies, eq. 2.25,
    scaled by (t_k - t_1)^2 as in Hmisc::rcspline.eval(norm = 2)."""
    t = np.asarray(knots, dtype=float)
    k = len(t)
    x = np.asarray(x, dtype=float)
    norm = (t[-1] - t[0]) ** 2
    cols = []
    for j in range(k - 2):
        v = (np.maximum(x - t[j], 0) ** 3
             - np.maximum(x - t[k - 2], 0) ** 3 * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
             + np.maximum(x - t[k - 1], 0) ** 3 * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2]))
        cols.append(v / norm)
    return np.column_stack(cols) if cols else np.zeros((len(x), 0))


def rcs_knots(x: np.ndarray, n_knots: int) -> np.ndarray | None:
    """Knots at Harrell's percentiles (``RCS_KNOT_PERCENTILES``); None if they are not distinct."""
    q = np.percentile(np.asarray(x, dtype=float), RCS_KNOT_PERCENTILES[n_knots])
    return q if len(np.unique(q)) == len(q) else None


def add_features(index: pd.DataFrame, counts: pd.DataFrame, design: Design | None = None, settings=OUTCOME_SETTINGS) -> pd.DataFrame:
    """Join window counts and derive the covariates.

    Prior use: events per 30 days of exposure in each quarter window (``<setting>_<q>_rate``), with
    a one-column restricted cubic spline term (``_rate_rcs1``, 3 knots at the 10/50/90th centiles of
    the people with any use; 0 when the knots are not distinct). Age: age at the index date with a
    restricted cubic spline basis (``age_rcs1``.., ``design.age_spline_knots`` knots) and six bands
    (``age_band``); ``imd_q``: deprivation quintile as text.
    """
    design = design or Design()
    d = index.merge(counts, on="index_id", how="left", validate="one_to_one")
    quarters = [c.removesuffix("_days") for c in d.columns if c.endswith("_days") and ("_q" in c or c == "pre_last_month_days")]
    for s in settings:
        for q in quarters:
            if f"{s}_{q}_events" not in d.columns:
                continue
            days = d[f"{q}_days"].where(d[f"{q}_days"] > 0)
            rate = (d[f"{s}_{q}_events"] / days * 30).fillna(0.0)
            d[f"{s}_{q}_rate"] = rate
            pos = rate[rate > 0].to_numpy()
            kn = rcs_knots(pos, 3) if len(pos) >= 20 else None
            d[f"{s}_{q}_rate_rcs1"] = rcs_basis(rate.to_numpy(), kn)[:, 0] if kn is not None else 0.0
    kn = rcs_knots(d["age"].to_numpy(), design.age_spline_knots)
    if kn is None:
        raise ValueError("age: the spline knots are not distinct (too few distinct ages in the cohort)")
    B = rcs_basis(d["age"].to_numpy(), kn)
    for j in range(B.shape[1]):
        d[f"age_rcs{j + 1}"] = B[:, j]
    d["age_band"] = pd.cut(d["age"], EVALUATION_AGE_BANDS[0], labels=EVALUATION_AGE_BANDS[1]).astype(str)
    d["imd_q"] = d["imd_quintile"].astype(int).astype(str)
    return d


# ============================================================================ matching

def _usable(d: pd.DataFrame, covariates: list[str]) -> list[str]:
    """Drop covariates that are constant in the data (a spline term with no knots, a setting with
    no events): they cannot enter the propensity model."""
    out = []
    for c in covariates:
        s = d[c]
        if s.nunique(dropna=False) > 1:
            out.append(c)
    return out


@dataclass(frozen=True)
class Matched:
    """A matched cohort (:func:`match`): ``data``, the rows given with ps, logit_ps, weight, subclass and
    matched added; ``result``, the :class:`spstudy.methods.matching.MatchResult` (pairs, units, sample sizes)."""

    data: pd.DataFrame
    result: MatchResult


def match(data: pd.DataFrame, design: Design, covariates: list[str] | None = None) -> Matched:
    """Propensity score and nearest-neighbour matching (``design``: k, caliper_sd, replace, exact).

    Returns a :class:`Matched` (the data with ps, logit_ps, weight, subclass, matched; the MatchResult). An exact
    stratum holding only referred or only comparator people is left out of the exact matching
    rather than stopping the run (its referred people are then matched on the score alone)."""
    from spstudy.methods.matching import EstimandChangeWarning, nearest_neighbour_match, propensity_score

    covariates = _usable(data, covariates or ps_covariates(design))
    d = data.copy()
    ps = propensity_score(d, "treated", covariates)
    d["ps"], d["logit_ps"] = ps["ps"].to_numpy(), ps["logit_ps"].to_numpy()
    exact = [c for c in design.exact if c in d.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EstimandChangeWarning)
        res = nearest_neighbour_match(d, "treated", "ps", k=design.k, caliper=design.caliper_sd, caliper_scale="sd", distance="logit",
                                      replace=design.replace, exact=exact, order="largest", id_col="index_id")
    u = res.units.set_index("id")
    d["weight"] = d["index_id"].map(u["weight"]).fillna(0.0)
    d["matched"] = d["weight"] > 0
    d["subclass"] = d["index_id"].map(res.pairs.drop_duplicates("treated_id").set_index("treated_id")["subclass"])
    return Matched(data=d, result=res)


def sample_sizes_long(res) -> pd.DataFrame:
    """Tidy sample sizes: step, group (Control, Treated), n (people)."""
    rows = [{"step": r.status, "group": r.group, "n": float(r.n)} for r in res.sample_sizes.itertuples()]
    rows += [{"step": "Treated lost to the caliper", "group": "Treated", "n": float(res.n_treated_lost_to_caliper)},
             {"step": "Treated with no comparator in their exact stratum", "group": "Treated", "n": float(res.n_treated_no_controls_in_stratum)},
             {"step": "Treated left when the stratum's pool ran out", "group": "Treated", "n": float(res.n_treated_pool_exhausted)}]
    return pd.DataFrame(rows)


def balance(data: pd.DataFrame, design: Design, settings=OUTCOME_SETTINGS, cohort_: str = "itt") -> pd.DataFrame:
    """Balance before and after matching (matching.balance_table) with ``matched_on``: True for the
    propensity-score covariates and the age bands; False for use in the baseline window, the
    washout and the last month, which are not matched on by design (referral follows a rise)."""
    from spstudy.methods.matching import balance_table

    d = data
    if cohort_ == "per_protocol":
        keep = (d["treated"] == 0) | (d["seen"] == 1)
        d = d[keep]
    cov = _usable(d, ps_covariates(design, settings))
    extra = [f"{s}_{q}_rate" for s in settings for q in ("pre_q3", "pre_q4", "pre_last_month") if f"{s}_{q}_rate" in d.columns]
    b = balance_table(d, "treated", cov + extra + ["ps"], weights="weight", threshold=design.smd_threshold)
    matched_on = tuple(cov)
    b["matched_on"] = b["variable"].map(lambda v: v == "ps" or v.startswith(matched_on))
    return b


def balance_summary(bal: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """What the balance table shows, honestly: per sample (Unadjusted, Adjusted) and kind of
    variable (matched on or not), the number of variables, how many have |SMD| >= threshold, the
    largest |SMD| and the variable that has it."""
    rows = []
    for (sample, on), g in bal.groupby(["sample", "matched_on"], sort=False):
        a = g["smd"].abs()
        i = a.idxmax()
        rows.append({"sample": sample, "matched_on": bool(on), "n_variables": len(g), "n_at_or_above_threshold": int((a >= threshold).sum()),
                     "threshold": threshold, "max_abs_smd": float(a.max()), "variable_with_max": g.loc[i, "variable"]})
    return pd.DataFrame(rows)


# ============================================================================ effects

def _rate(events, days):
    return 1000 * 365.25 * events / days if days > 0 else np.nan


@functools.lru_cache(maxsize=2)
def cluster_bootstrap_counts(n_clusters: int, draws: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each bootstrap replicate (draws x n_clusters, read-only).

    One matrix of ``rng.integers(0, n, (draws, n))`` draws counted with a single flattened
    ``bincount`` (the replicate number offsets the cluster index), so the result is exactly the
    per-draw ``bincount`` that the earlier code computed row by row, for the same seed. The same
    matched sets are resampled for every setting and window of a cohort (cached), so their
    intervals come from one joint bootstrap."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_clusters, size=(draws, n_clusters))
    flat = (idx + np.arange(draws, dtype=np.int64)[:, None] * n_clusters).ravel()
    out = np.bincount(flat, minlength=draws * n_clusters).reshape(draws, n_clusters).astype(np.int32)
    out.flags.writeable = False
    return out


def did(d: pd.DataFrame, pairs: pd.DataFrame, setting: str, months: int | str, cohort: str = "itt", boot: int = 500, seed: int = 1,
        baseline: str = "baseline", confidence: float = 0.95) -> dict:
    """Matched difference in differences for one setting, post window and cohort.

    ``baseline`` names the pre-period window ("baseline" in the main design; "pre_12m" etc. in the
    conventional design); ``months`` is the post window's length (window ``post_<months>m``) or a
    window name. Rates per 1,000 person-years before and after in each group (matching weights),
    the absolute DiD = (post_T - pre_T) - (post_C - pre_C) with a cluster bootstrap interval over
    matched sets (``boot`` draws, ``seed``; percentile method), and the ratio of rate ratios
    exp(b_treated:post) from a Poisson GLM with log(person-years) offset, variance weights =
    matching weights, cluster-robust (sandwich) errors by matched set (statsmodels). The long data and
    the fit are :func:`spstudy.methods.subgroups.did_long` and :func:`~spstudy.methods.subgroups.poisson_did_fit`,
    which the subgroup and claim analyses use too.
    """
    z = z_value(confidence)
    L = did_long(d, pairs, setting, months, cohort, baseline)
    out = {"setting": setting, "window_months": months, "cohort": cohort, "baseline": baseline, "n_treated": int(L.loc[L.treated == 1, "subclass"].nunique())}
    agg = L.assign(we=L.events * L.weight, wd=L.days * L.weight).groupby(["treated", "post"])[["we", "wd"]].sum()
    for (tr, po), r in agg.iterrows():
        out[f"rate_{'treated' if tr else 'comparator'}_{'post' if po else 'pre'}"] = _rate(r.we, r.wd)
    out["did_per_1000py"] = (out["rate_treated_post"] - out["rate_treated_pre"]) - (out["rate_comparator_post"] - out["rate_comparator_pre"])
    # per matched set (sorted by set) and cell (treated x post): weighted events and days
    sc, su = pd.factorize(L["subclass"], sort=True)
    cell = (L["treated"].to_numpy() * 2 + L["post"].to_numpy()).astype(np.int64)
    key = sc.astype(np.int64) * 4 + cell
    we = np.bincount(key, weights=(L["events"] * L["weight"]).to_numpy(), minlength=4 * len(su)).reshape(-1, 4)
    wd = np.bincount(key, weights=(L["days"] * L["weight"]).to_numpy(), minlength=4 * len(su)).reshape(-1, 4)
    counts = cluster_bootstrap_counts(len(su), boot, seed)
    E, D = counts @ we, counts @ wd  # float results: the int32 counts are promoted
    R = 1000 * 365.25 * E / np.where(D > 0, D, np.nan)
    bd = (R[:, 3] - R[:, 2]) - (R[:, 1] - R[:, 0])
    a = 100 * (1 - confidence) / 2
    out["did_lower"], out["did_upper"] = np.nanpercentile(bd, [a, 100 - a])
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"], "post": L["post"], "treated_post": L["treated"] * L["post"]})
    fit, clustered = poisson_did_fit(L, X)
    b, se = fit.params["treated_post"], (fit.bse["treated_post"] if clustered else np.nan)
    out["ratio_of_rate_ratios"], out["ratio_of_rate_ratios_lower"], out["ratio_of_rate_ratios_upper"] = np.exp(b), np.exp(b - z * se), np.exp(b + z * se)
    out["log_rrr"], out["log_rrr_se"] = float(b), float(se)
    out["rrr_p_value"] = float(fit.pvalues["treated_post"]) if np.isfinite(se) else np.nan
    return out


def naive_before_after(d: pd.DataFrame, setting: str, months: int, cohort: str = "itt", confidence: float = 0.95) -> dict:
    """The raw before/after figure boroughs quote: referred people's rate after vs before (no comparison).

    Rate ratio post/pre with a log-normal interval on the summed counts (Poisson; ignores
    over-dispersion and, above all, regression to the mean)."""
    z = z_value(confidence)
    t = d[(d["treated"] == 1) & ((d["seen"] == 1) if cohort == "per_protocol" else True)]
    e0, e1 = t[f"{setting}_pre_{months}m_events"].sum(), t[f"{setting}_post_{months}m_events"].sum()
    d0, d1 = t[f"pre_{months}m_days"].sum(), t[f"post_{months}m_days"].sum()
    r0, r1 = _rate(e0, d0), _rate(e1, d1)
    rr = r1 / r0 if r0 > 0 else np.nan  # no events before: no ratio
    se = np.sqrt(1 / max(e0, 1) + 1 / max(e1, 1))
    return {"setting": setting, "window_months": months, "cohort": cohort, "n_referred": len(t), "events_pre": int(e0), "events_post": int(e1),
            "rate_pre": r0, "rate_post": r1, "pct_change": 100 * (rr - 1), "rate_ratio": rr,
            "rate_ratio_lower": rr * np.exp(-z * se), "rate_ratio_upper": rr * np.exp(z * se)}


@dataclass(frozen=True)
class Effects:
    """Effect estimates for every setting x window x cohort (:func:`effects`).

    ``naive``: the referred people's own before/after rates (:func:`naive_before_after` rows);
    ``matched``: the matched difference in differences (:func:`did` rows).
    """

    naive: pd.DataFrame
    matched: pd.DataFrame


def effects(d: pd.DataFrame, pairs: pd.DataFrame, months_list: list[int], boot: int = 500, conventional: bool = False,
            settings=OUTCOME_SETTINGS, seed: int = 1, confidence: float = 0.95, cohorts=COHORTS) -> Effects:
    """Naive and matched DiD estimates for each setting, window, ITT and per protocol.
    ``conventional``: the DiD baseline is the pre-window of the same length (pre_6m, pre_12m)."""
    naive, matched = [], []
    for s in settings:
        for m in months_list:
            for c in cohorts:
                naive.append(naive_before_after(d, s, m, c, confidence=confidence))
                matched.append(did(d, pairs, s, m, c, boot=boot, seed=seed, baseline=f"pre_{m}m" if conventional else "baseline",
                                   confidence=confidence))
    return Effects(naive=pd.DataFrame(naive), matched=pd.DataFrame(matched))


def side_by_side(naive: pd.DataFrame, matched: pd.DataFrame, conventional: pd.DataFrame | None = None) -> pd.DataFrame:
    """Naive % change beside the matched estimate (% change = 100 x (ratio of rate ratios - 1)) and,
    if given, the conventional matched design (sensitivity)."""
    m = matched.assign(matched_pct_change=100 * (matched["ratio_of_rate_ratios"] - 1), matched_pct_change_lower=100 * (matched["ratio_of_rate_ratios_lower"] - 1),
                       matched_pct_change_upper=100 * (matched["ratio_of_rate_ratios_upper"] - 1))
    n = naive.assign(naive_pct_change_lower=100 * (naive["rate_ratio_lower"] - 1), naive_pct_change_upper=100 * (naive["rate_ratio_upper"] - 1))
    keys = ["setting", "window_months", "cohort"]
    out = n[keys + ["n_referred", "pct_change", "naive_pct_change_lower", "naive_pct_change_upper"]].merge(
        m[keys + ["n_treated", "matched_pct_change", "matched_pct_change_lower", "matched_pct_change_upper", "did_per_1000py", "did_lower", "did_upper"]], on=keys)
    if conventional is not None:
        c = conventional.assign(conventional_pct_change=100 * (conventional["ratio_of_rate_ratios"] - 1),
                                conventional_pct_change_lower=100 * (conventional["ratio_of_rate_ratios_lower"] - 1), conventional_pct_change_upper=100 * (conventional["ratio_of_rate_ratios_upper"] - 1))
        out = out.merge(c[keys + ["conventional_pct_change", "conventional_pct_change_lower", "conventional_pct_change_upper"]], on=keys)
    return out.rename(columns={"pct_change": "naive_pct_change", "n_treated": "n_matched_referred"})


# ============================================================================ event study panel

def matched_sets(d: pd.DataFrame, pairs: pd.DataFrame, cohort: str = "itt") -> pd.DataFrame:
    """Set membership of the matched units: subclass, index_id, treated (comparators of a set pooled
    later). Per protocol keeps the sets whose referred person was seen."""
    t = d.set_index("index_id")
    if cohort == "per_protocol":
        pairs = pairs[pairs["treated_id"].map(t["seen"]) == 1]
    a = pairs.drop_duplicates("subclass")[["subclass", "treated_id"]].rename(columns={"treated_id": "index_id"}).assign(treated=1)
    b = pairs[["subclass", "control_id"]].rename(columns={"control_id": "index_id"}).assign(treated=0)
    return pd.concat([a, b], ignore_index=True)


def event_study_panel(monthly: pd.DataFrame, sets: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Panel for :func:`spstudy.methods.diagnostics.fit_event_study`: the monthly counts of one setting
    joined to the matched sets (subclass, treated, month, events, days)."""
    m = monthly[monthly["setting"] == setting]
    return sets.merge(m[["index_id", "month", "events", "days"]], on="index_id", how="inner")


def _ratio_row(est: float, se: float, z: float) -> dict:
    return {"rate_ratio": float(np.exp(est)), "rate_ratio_lower": float(np.exp(est - z * se)), "rate_ratio_upper": float(np.exp(est + z * se)),
            "p_value": float(2 * stats.norm.sf(abs(est / se))) if se > 0 and np.isfinite(se) else np.nan}


# ============================================================================ result

@dataclass(frozen=True)
class EvaluationResult:
    """The evaluation of one area: tidy tables (written to and read from Parquet by
    :meth:`to_parquet` / :meth:`read_parquet`; ``units`` and ``match`` are working data, not
    written). Columns that count people: cohort_flow.n, sample_sizes.n, naive.n_referred,
    matched.n_treated, estimates.n_referred, placebo.n_treated, event_study.n_sets; that count
    events: naive.events_pre/events_post, event_study.events_referred/events_comparators. Every
    rate, ratio and interval is derived from those counts (see docs/evaluation.md)."""

    design: pd.DataFrame
    cohort_flow: pd.DataFrame
    sample_sizes: pd.DataFrame
    balance: pd.DataFrame
    balance_summary: pd.DataFrame
    naive: pd.DataFrame
    matched: pd.DataFrame
    conventional: pd.DataFrame
    side_by_side: pd.DataFrame
    estimates: pd.DataFrame
    event_study: pd.DataFrame
    pretrend: pd.DataFrame
    placebo: pd.DataFrame
    negative_control: pd.DataFrame
    e_values: pd.DataFrame
    verdicts: pd.DataFrame
    units: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    match: object = field(default=None, repr=False, compare=False)

    TABLES = ("design", "cohort_flow", "sample_sizes", "balance", "balance_summary", "naive", "matched", "conventional", "side_by_side",
              "estimates", "event_study", "pretrend", "placebo", "negative_control", "e_values", "verdicts")

    def tables(self) -> dict[str, pd.DataFrame]:
        return {n: getattr(self, n) for n in self.TABLES}

    def tidy(self) -> pd.DataFrame:
        """One row per setting x window x cohort x estimator (naive, matched_did, trend_adjusted,
        conventional) with the estimate, interval, E-values, the verdict of that setting, window
        and cohort, and ``headline`` (True for the estimate the verdict puts forward)."""
        return self.estimates

    def verdict_mapping(self) -> dict[tuple[str, int, str], str]:
        """``{(setting, window_months, cohort): verdict}`` for the SROI and the key findings."""
        return dg.verdict_mapping(self.verdicts)

    def headline(self, setting: str, window_months: int, cohort: str = "itt") -> pd.Series | None:
        """The verdict row (with the headline estimate) for one setting, window and cohort."""
        v = self.verdicts
        r = v[(v["setting"] == setting) & (v["window_months"] == window_months) & (v["cohort"] == cohort)]
        return None if r.empty else r.iloc[0]

    @property
    def n_referred(self) -> int:
        f = self.cohort_flow
        return int(f.loc[f["step"].str.startswith("Referred people registered"), "n"].iloc[0])

    @property
    def n_seen(self) -> int:
        """Referred people in the cohort who were seen (per protocol)."""
        n = self.naive[self.naive["cohort"] == "per_protocol"]
        return int(n["n_referred"].iloc[0]) if len(n) else 0

    def sroi_inputs(self) -> pd.DataFrame:
        """The estimates the SROI may value, in the columns valuation.impact_map reads (setting,
        window_months, cohort, did_per_1000py, did_lower, did_upper, ratio_of_rate_ratios, ratio_of_rate_ratios_lower,
        ratio_of_rate_ratios_upper) plus verdict, valued, estimator and reason. One row per outcome setting, window and
        cohort; the values are the headline estimate's, and NaN where the verdict is not credible
        (valued False): such an estimate is never valued."""
        v = self.verdicts
        out = pd.DataFrame({
            "setting": v["setting"], "window_months": v["window_months"], "cohort": v["cohort"],
            "did_per_1000py": v["difference_per_1000py"].where(v["valued"]),
            "did_lower": v["difference_per_1000py_lower"].where(v["valued"]),
            "did_upper": v["difference_per_1000py_upper"].where(v["valued"]),
            "ratio_of_rate_ratios": v["rate_ratio"].where(v["valued"]),
            "ratio_of_rate_ratios_lower": v["rate_ratio_lower"].where(v["valued"]), "ratio_of_rate_ratios_upper": v["rate_ratio_upper"].where(v["valued"]),
            "verdict": v["verdict"], "valued": v["valued"].astype(bool), "estimator": v["headline_estimator"], "reason": v["reason"]})
        return out.reset_index(drop=True)

    def to_parquet(self, directory: Path | str) -> Path:
        """Write every table to ``<directory>/<table>.parquet`` (and an index file listing them)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for n, t in self.tables().items():
            t.reset_index(drop=True).to_parquet(directory / f"{n}.parquet", index=False)
        (directory / "evaluation_result.json").write_text(json.dumps({"tables": list(self.TABLES)}, indent=1) + "\n")
        return directory

    @classmethod
    def read_parquet(cls, directory: Path | str) -> "EvaluationResult":
        """Read a result written by :meth:`to_parquet` (``units`` and ``match`` are None)."""
        directory = Path(directory)
        index = directory / "evaluation_result.json"
        if not index.exists():
            raise FileNotFoundError(f"{index}: not an evaluation result folder (no evaluation_result.json)")
        names = json.loads(index.read_text())["tables"]
        missing = [n for n in cls.TABLES if n not in names or not (directory / f"{n}.parquet").exists()]
        if missing:
            raise FileNotFoundError(f"{directory}: evaluation result is missing tables {missing}")
        return cls(**{n: pd.read_parquet(directory / f"{n}.parquet") for n in cls.TABLES})


# ============================================================================ the whole evaluation

def evaluate(index: pd.DataFrame, counts: pd.DataFrame, monthly: Callable[[pd.DataFrame], pd.DataFrame], design: Design,
             settings=OUTCOME_SETTINGS, flow: pd.DataFrame | None = None, recount_post: Callable | None = None) -> EvaluationResult:
    """Everything after counting: matching, effects, diagnostics, verdicts.

    ``index``: cohort rows (:func:`cohort`: index_id, treated, seen, age, sex, imd_quintile,
    ethnic_group, pcn_code, ...); ``counts``: the wide window counts of
    :func:`design_windows_months` for every row; ``monthly(rows)``: the monthly counts (long:
    index_id, month, setting, events, days) for months -event_study_months_before..last_month of
    the given index rows; ``settings``: the outcome settings present (a negative-control setting
    among them is analysed as such); ``recount_post(data, pairs)``: optional, returns the data with
    the post windows recounted (post window from case closure).
    """
    z = z_value(design.confidence)
    need = ["index_id", "treated", "seen", "age", "sex", "imd_quintile", "ethnic_group"] + [c for c in design.exact if c not in ("sex",)]
    require_columns(index, need, "index")
    want = [f"{s}_{w}_events" for s in settings for w, _, _ in design_windows_months(design)] + [f"{w}_days" for w, _, _ in design_windows_months(design)]
    require_columns(counts, want, "counts", "count the windows of design_windows_months(design) for every setting")
    if index["treated"].sum() < 3:
        raise ValueError(f"evaluate: only {int(index['treated'].sum())} referred people in 'index' (rows with treated == 1); at least 3 are needed")
    nc = design.negative_control_setting if design.negative_control_setting in settings else None
    outcomes = [s for s in settings if s != nc]
    all_settings = outcomes + ([nc] if nc else [])
    months = list(design.windows_months)
    features = add_features(index, counts, design, all_settings)
    ps_used = _usable(features, ps_covariates(design, outcomes))  # constant columns (a spline with no knots) cannot enter
    m = match(features, design, ps_used)
    data, res = m.data, m.result
    if recount_post is not None:
        data = recount_post(data, res.pairs)
    bal = balance(data, design, outcomes)
    bal_pp = balance(data, design, outcomes, "per_protocol") if "per_protocol" in design.cohorts else bal.iloc[:0]
    smd = {c: float(b.loc[(b["sample"] == "Adjusted") & b["matched_on"], "smd"].abs().max()) for c, b in (("itt", bal), ("per_protocol", bal_pp)) if len(b)}
    cohorts = tuple(design.cohorts)
    est = effects(data, res.pairs, months, boot=design.bootstrap_draws, settings=all_settings, seed=design.seed_bootstrap,
                  confidence=design.confidence, cohorts=cohorts)
    naive, matched = est.naive, est.matched
    conv = pd.DataFrame()
    if design.conventional:
        conv_cov = ["age"] + [f"age_rcs{j}" for j in range(1, design.age_spline_knots - 1)] + ["sex", "imd_q", "ethnic_group"] + \
            [f"{s}_{q}_rate" for s in outcomes for q in ("pre_q1", "pre_q2", "pre_q3", "pre_q4", "pre_last_month")]
        cm = match(features, design, conv_cov)
        cdata, cres = cm.data, cm.result
        conv = effects(cdata, cres.pairs, months, boot=design.bootstrap_draws, conventional=True, settings=outcomes,
                       seed=design.seed_bootstrap, confidence=design.confidence, cohorts=cohorts).matched

    # ---- event study on the matched sets (monthly counts of the matched units only)
    sets = {c: matched_sets(data, res.pairs, c) for c in cohorts}
    units = data[data["index_id"].isin(sets["itt"]["index_id"])]
    mon = monthly(units)
    ref = design.baseline_window_months
    clean = design.clean_months
    h, last = design.post_washout_months, design.last_month
    search = list(range(design.matching_window_months[1] + 1, 0))
    es_rows, pre_rows, fits, ta = [], [], {}, {}
    for s in all_settings:
        for c in cohorts:
            try:
                fit = dg.fit_event_study(event_study_panel(mon, sets[c], s))
            except ValueError as e:
                pre_rows.append({"setting": s, "cohort": c, "estimable": False, "note": str(e)})
                continue
            fits[(s, c)] = fit
            es_rows.append(dg.event_study_table(fit, ref, design.confidence).assign(setting=s, cohort=c))
            pt = dg.pretrend_test(fit, clean, ref)
            onset = dg.rise_onset(fit, clean, search, design.margin, design.alpha)
            tr = dg.post_transient(fit, h, last)
            pre_rows.append({"setting": s, "cohort": c, "estimable": True, "note": "",
                             "clean_months_first": clean[0], "clean_months_last": clean[-1],
                             "reference_months_first": ref[0], "reference_months_last": ref[1],
                             "pretrend_wald": pt["pretrend_wald"], "pretrend_df": pt["pretrend_df"], "pretrend_p": pt["pretrend_p"],
                             "baseline_deviation": pt["baseline_deviation"], "baseline_deviation_se": pt["baseline_deviation_se"],
                             **{f"baseline_deviation_ratio{k}": v for k, v in (("", np.exp(pt["baseline_deviation"])),
                                                                                ("_lower", np.exp(pt["baseline_deviation"] - z * pt["baseline_deviation_se"])),
                                                                                ("_upper", np.exp(pt["baseline_deviation"] + z * pt["baseline_deviation_se"])))},
                             "rise_onset_month": onset if onset is not None else np.nan,
                             "washout_first_month": design.washout_months[0],
                             "rise_starts_before_washout": bool(onset is not None and onset < design.washout_months[0]),
                             "transient": tr["transient"], "transient_se": tr["transient_se"]})
            for w in months:
                ta[(s, w, c)] = dg.trend_adjusted(fit, clean, h, w, last)
    event_study = pd.concat(es_rows, ignore_index=True) if es_rows else pd.DataFrame()
    if len(event_study):
        event_study = event_study[["setting", "cohort"] + [c for c in event_study.columns if c not in ("setting", "cohort")]]
    pretrend = pd.DataFrame(pre_rows)

    # ---- placebo nearest referral: the whole design at an index date placebo_shift_months earlier
    placebo = placebo_design(features, design, outcomes, all_settings, cohorts)

    # ---- estimates (long), negative control, E-values
    est_rows = []
    for r in naive.itertuples():
        est_rows.append({"setting": r.setting, "window_months": r.window_months, "cohort": r.cohort, "estimator": "naive", "n_referred": r.n_referred,
                         "rate_ratio": r.rate_ratio, "rate_ratio_lower": r.rate_ratio_lower, "rate_ratio_upper": r.rate_ratio_upper, "p_value": np.nan,
                         "difference_per_1000py": r.rate_post - r.rate_pre, "difference_per_1000py_lower": np.nan, "difference_per_1000py_upper": np.nan})
    for tab, name in ((matched, "matched_did"), (conv, "conventional")):
        for r in tab.itertuples():
            est_rows.append({"setting": r.setting, "window_months": r.window_months, "cohort": r.cohort, "estimator": name, "n_referred": r.n_treated,
                             "rate_ratio": r.ratio_of_rate_ratios, "rate_ratio_lower": r.ratio_of_rate_ratios_lower, "rate_ratio_upper": r.ratio_of_rate_ratios_upper,
                             "p_value": r.rrr_p_value, "difference_per_1000py": r.did_per_1000py, "difference_per_1000py_lower": r.did_lower,
                             "difference_per_1000py_upper": r.did_upper})
    mi = matched.set_index(["setting", "window_months", "cohort"])
    for (s, w, c), t in ta.items():
        rr = _ratio_row(t["log_rate_ratio"], t["se"], z)
        post_rate = mi.loc[(s, w, c), "rate_treated_post"]
        diff = {k.replace("rate_ratio", "difference_per_1000py"): post_rate * (1 - 1 / v) for k, v in rr.items() if k.startswith("rate_ratio")}
        est_rows.append({"setting": s, "window_months": w, "cohort": c, "estimator": "trend_adjusted", "n_referred": int(mi.loc[(s, w, c), "n_treated"]),
                         **rr, **diff})
    estimates = pd.DataFrame(est_rows)
    ev = [dg.e_value(r.rate_ratio, r.rate_ratio_lower, r.rate_ratio_upper) if r.estimator != "naive" else {"e_value": np.nan, "e_value_ci": np.nan}
          for r in estimates.itertuples()]
    estimates["e_value"] = [e["e_value"] for e in ev]
    estimates["e_value_ci"] = [e["e_value_ci"] for e in ev]

    # ---- verdicts
    prei = pretrend.set_index(["setting", "cohort"]) if len(pretrend) else pd.DataFrame()
    pli = placebo.set_index(["setting", "cohort"])
    esti = estimates.set_index(["setting", "window_months", "cohort", "estimator"])
    drows = []
    for s in outcomes:
        for w in months:
            for c in cohorts:
                ok = (s, c) in fits
                p = prei.loc[(s, c)] if ok else None
                t = ta.get((s, w, c))
                row = {"setting": s, "window_months": w, "cohort": c, "max_abs_smd": smd[c],
                       "baseline_deviation": p["baseline_deviation"] if ok else np.nan,
                       "baseline_deviation_se": p["baseline_deviation_se"] if ok else np.nan,
                       "pretrend_p": p["pretrend_p"] if ok else np.nan,
                       "rise_onset_month": p["rise_onset_month"] if ok else np.nan,
                       "placebo_log_rr": float(np.log(pli.loc[(s, c), "rate_ratio"])) if (s, c) in pli.index else np.nan,
                       "placebo_se": float(pli.loc[(s, c), "log_rate_ratio_se"]) if (s, c) in pli.index else np.nan,
                       "transient": p["transient"] if ok else np.nan, "transient_se": p["transient_se"] if ok else np.nan,
                       "washout": h, "robust_available": ok,
                       "linearity_p": t["linearity_p"] if t else np.nan, "linearity_end_residual": t["linearity_end_residual"] if t else np.nan,
                       "linearity_end_residual_se": t["linearity_end_residual_se"] if t else np.nan,
                       "drift": t["drift"] if t else np.nan, "drift_se": t["drift_se"] if t else np.nan,
                       "nc_log_rr": np.nan, "nc_se": np.nan, "nc_robust_log_rr": np.nan, "nc_robust_se": np.nan}
                if nc:
                    mrow = mi.loc[(nc, w, c)]
                    row["nc_log_rr"], row["nc_se"] = mrow["log_rrr"], mrow["log_rrr_se"]
                    if (nc, w, c) in ta:
                        row["nc_robust_log_rr"], row["nc_robust_se"] = ta[(nc, w, c)]["log_rate_ratio"], ta[(nc, w, c)]["se"]
                drows.append(row)
    vt = dg.verdicts(pd.DataFrame(drows), margin=design.margin, alpha=design.alpha, smd_warn=design.smd_threshold,
                     smd_fail=design.smd_fail, confidence=design.confidence)
    head_cols = ["rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "p_value", "difference_per_1000py", "difference_per_1000py_lower",
                 "difference_per_1000py_upper", "e_value", "e_value_ci", "n_referred"]
    for col in head_cols:
        vt[col] = [esti.loc[(r.setting, r.window_months, r.cohort, r.headline_estimator), col] if r.headline_estimator != "none" else np.nan
                   for r in vt.itertuples()]
    vmap = {(r.setting, r.window_months, r.cohort): (r.verdict, r.headline_estimator) for r in vt.itertuples()}
    estimates["verdict"] = [vmap.get((r.setting, r.window_months, r.cohort), (None, None))[0] if r.setting in outcomes else None
                            for r in estimates.itertuples()]
    estimates["headline"] = [vmap.get((r.setting, r.window_months, r.cohort), (None, None))[1] == r.estimator for r in estimates.itertuples()]
    e_values = estimates[estimates["estimator"].isin(["matched_did", "trend_adjusted"]) & estimates["setting"].isin(outcomes)][
        ["setting", "window_months", "cohort", "estimator", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "e_value", "e_value_ci", "headline"]]
    if nc:
        negative_control = estimates[(estimates["setting"] == nc) & estimates["estimator"].isin(["matched_did", "trend_adjusted"])].assign(status="estimated")
    else:
        negative_control = pd.DataFrame([{"setting": design.negative_control_setting, "status": "not available",
                                          "note": "the extract has no activity in the negative-control setting"}])
    bs = pd.concat([balance_summary(b, design.smd_threshold).assign(cohort=c) for c, b in (("itt", bal), ("per_protocol", bal_pp)) if len(b)],
                   ignore_index=True)
    design_table = pd.concat([design.to_frame(), pd.DataFrame([
        {"parameter": "ps_covariates_used", "value": json.dumps(ps_used)},
        {"parameter": "ps_covariates_left_out_as_constant", "value": json.dumps([c for c in ps_covariates(design, outcomes) if c not in ps_used])},
        {"parameter": "settings", "value": json.dumps(all_settings)}])], ignore_index=True)
    return EvaluationResult(
        design=design_table, cohort_flow=flow if flow is not None else pd.DataFrame(columns=["step", "n"]),
        sample_sizes=sample_sizes_long(res), balance=bal, balance_summary=bs, naive=naive, matched=matched, conventional=conv,
        side_by_side=side_by_side(naive[naive["setting"].isin(outcomes)], matched[matched["setting"].isin(outcomes)], conv if len(conv) else None),
        estimates=estimates, event_study=event_study, pretrend=pretrend, placebo=placebo, negative_control=negative_control.reset_index(drop=True),
        e_values=e_values.reset_index(drop=True), verdicts=vt, units=data, match=res)


def placebo_design(features: pd.DataFrame, design: Design, outcomes, settings, cohorts=COHORTS) -> pd.DataFrame:
    """Placebo nearest referral: the design run at an index date ``placebo_shift_months`` before the
    real one (matching on the shifted matching window, baseline and washout shifted too), its 'post'
    window the ``placebo_window_months`` after the fake date, i.e. the months just before the real
    referral. Nothing can have an effect there; a ratio above 1 is a rise in use before referral.
    Rows need full registration in the shifted matching window. One row per setting and cohort:
    n_treated (people), rate_ratio with interval, log_rate_ratio_se, p_value."""
    z = z_value(design.confidence)
    q = _match_quarters(design, "pl_match")
    full = np.ones(len(features), dtype=bool)
    for name, a, b in design_windows_months(design):
        if name in q:
            d0, d1 = month_days(a, b)
            full &= (features[f"{name}_days"] >= d1 - d0 + 1).to_numpy()
    f = features[full]
    rows = []
    if f["treated"].sum() < 3 or (f["treated"] == 0).sum() < 3:
        return pd.DataFrame([{"setting": s, "cohort": c, "n_treated": int(f["treated"].sum()), "rate_ratio": np.nan, "rate_ratio_lower": np.nan,
                              "rate_ratio_upper": np.nan, "log_rate_ratio_se": np.nan, "p_value": np.nan} for s in settings for c in cohorts])
    pm = match(f, design, ps_covariates(design, outcomes, prefix="pl_match"))
    pdata, pres = pm.data, pm.result
    for s in settings:
        for c in cohorts:
            r = did(pdata, pres.pairs, s, "pl_post", c, boot=50, seed=design.seed_placebo, baseline="pl_baseline", confidence=design.confidence)
            rows.append({"setting": s, "cohort": c, "shift_months": design.placebo_shift_months, "window_months": design.placebo_window_months,
                         "n_treated": r["n_treated"], **_ratio_row(r["log_rrr"], r["log_rrr_se"], z), "log_rate_ratio_se": r["log_rrr_se"]})
    return pd.DataFrame(rows)


def run(ex, design: Design, area: reference.Area, engine: str = "duckdb", boot: int | None = None, seed: int | None = None) -> EvaluationResult:
    """The whole evaluation for ``area`` from validated extracts (``ex``: persons, referrals,
    activity, referred_ever). ``design``: a :class:`Design` (:func:`design_from_parameters` makes
    one from the parameters); ``boot`` and ``seed`` override the bootstrap draws and the
    comparator-pool seed."""
    area = reference.as_area(area, "area")
    if boot is not None:
        design = dataclasses.replace(design, bootstrap_draws=boot)
    if seed is not None:
        design = dataclasses.replace(design, seed_comparator_pool=seed)
    co = cohort(ex.persons, ex.referrals, area, design, referred_ever=getattr(ex, "referred_ever", None))
    index, flow = co.index, co.flow
    if index["treated"].sum() == 0:
        raise ValueError(f"no referred people in {area.name} meet the cohort criteria")
    present = set(pd.unique(ex.activity["setting"]))
    settings = list(OUTCOME_SETTINGS) + ([design.negative_control_setting] if design.negative_control_setting in present else [])
    counts = count_windows(ex.activity, index, design_windows(design), engine, settings)

    def monthly(rows):
        return count_monthly(ex.activity, rows, -design.event_study_months_before, design.last_month, settings, engine)

    recount = None
    if design.post_window_from == "closure":
        def recount(data, pairs):
            return _post_from_closure(ex.activity, data, pairs, list(design.windows_months), engine, design.data_end, settings)
    return evaluate(index, counts, monthly, design, settings, flow=flow, recount_post=recount)


def _post_from_closure(activity, data, pairs, months, engine, data_end, settings=OUTCOME_SETTINGS):
    """Recount post windows from each referred person's closure date (comparators shifted by their
    matched referred person's referral-to-closure interval; open cases use the data cut)."""
    t = data.set_index("index_id")
    shift = (t["closure_date"].fillna(pd.Timestamp(data_end)) - t["index_date"]).dt.days.where(t["treated"] == 1)
    cs = pairs.drop_duplicates("control_id").set_index("control_id")["treated_id"].map(shift)
    shift = shift.fillna(cs).fillna(0).astype(int)
    idx = data[["index_id", "person_id", "index_date", "follow_start", "follow_end"]].copy()
    idx["index_date"] = idx["index_date"] + pd.to_timedelta(idx["index_id"].map(shift), unit="D")
    post = [w for w in windows_for(months) if w[0].startswith("post")]
    c = count_windows(activity, idx, post, engine, settings)
    return data.drop(columns=[c_ for c_ in c.columns if c_ != "index_id"]).merge(c, on="index_id")


def event_study(activity, d: pd.DataFrame, pairs: pd.DataFrame, engine: str = "duckdb", months: int = 12) -> pd.DataFrame:
    """Monthly GP and A&E rates per 1,000 person-years from -months to +months-1 around the index
    date for matched referred people and their comparators (comparators weighted by 1/k): the
    descriptive picture beside the event-study coefficients (EvaluationResult.event_study)."""
    t = d.set_index("index_id")
    ids_t = pairs.drop_duplicates("subclass")["treated_id"].to_numpy()
    k_in_set = pairs.groupby("subclass")["control_id"].transform("size").to_numpy()
    idx = pd.concat([
        t.loc[ids_t, ["person_id", "index_date", "follow_start", "follow_end"]].assign(group="Referred", w=1.0),
        t.loc[pairs["control_id"].to_numpy(), ["person_id", "index_date", "follow_start", "follow_end"]].assign(group="Matched comparators", w=1.0 / k_in_set),
    ]).reset_index(drop=True)
    idx["w"] = idx["w"].round(6)
    idx["index_id"] = np.arange(len(idx))
    ms = eng.monthly_series(activity, idx, months, months, by=("group", "w"), engine=engine)
    ms = ms.assign(we=ms["events"] * ms["w"], wd=ms["person_days"] * ms["w"])
    g = ms.groupby(["group", "month", "setting"], as_index=False)[["we", "wd", "events"]].sum()
    g["rate_per_1000py"] = 1000 * 365.25 * g["we"] / g["wd"]
    return g.rename(columns={"events": "events_unweighted"})[["group", "month", "setting", "events_unweighted", "rate_per_1000py"]]
@dataclass(frozen=True)
class WellbeingChange:
    """Paired wellbeing change (:func:`wellbeing_change`), both tables empty when nothing was measured.

    ``change``: one row per measure (:func:`spstudy.methods.wellbeing.paired_change` columns and
    ``measure``); ``attrition``: who returned a follow-up score, per measure
    (:func:`spstudy.methods.wellbeing.attrition` columns and ``measure``).
    """

    change: pd.DataFrame
    attrition: pd.DataFrame


def wellbeing_change(wellbeing: pd.DataFrame, referral_ids, thresholds: Mapping[str, float],
                     confidence: float = 0.95) -> WellbeingChange:
    """Paired change and attrition for every measure present (ONS4 items, WEMWBS, SWEMWBS metric).

    Uses :mod:`spstudy.methods.wellbeing`. ``thresholds``: the meaningful change of each instrument,
    keys ``wemwbs``, ``swemwbs``, ``ons4`` (parameters ``evaluation.wellbeing_thresholds``, as plain values)."""
    from spstudy.methods import wellbeing as wb

    w = wellbeing[wellbeing["referral_id"].isin(set(referral_ids))]
    if w.empty:
        return WellbeingChange(change=pd.DataFrame(), attrition=pd.DataFrame())
    sc = wb.score_instruments(w[["referral_id", "timepoint", "instrument", "item", "score"]])
    rows, att = [], []
    for measure in sorted(sc["measure"].unique()):
        if measure == "swemwbs_raw":
            continue
        th = thresholds["wemwbs"] if measure == "wemwbs_total" else thresholds["swemwbs"] if measure == "swemwbs_metric" else thresholds["ons4"]
        try:
            pc = wb.paired_change(sc, measure, threshold=th, confidence=confidence)
        except ValueError:
            continue
        rows.append(pc.assign(measure=measure))
        try:
            att.append(wb.attrition(sc, measure).assign(measure=measure))
        except ValueError:
            pass
    return WellbeingChange(change=pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
                           attrition=pd.concat(att, ignore_index=True) if att else pd.DataFrame())


def upc_uptake(d: pd.DataFrame, upc: Mapping[str, float]) -> pd.DataFrame:
    """Take-up against NHS England's Universal Personalised Care expectation (80% of people referred
    take up their social prescription), as counts: measure, expected (%), n_referred and n_seen
    (people in the evaluation cohort, and those of them seen). The share is left to the publisher,
    which computes it, with its interval, from the counts as published. ``upc``: key ``uptake``."""
    t = d[d["treated"] == 1]
    return pd.DataFrame([{"measure": "Take up (share of referred people seen)", "expected": 100 * upc["uptake"],
                          "n_referred": int(len(t)), "n_seen": int(t["seen"].sum())}])


def upc_comparison(d: pd.DataFrame, matched: pd.DataFrame, upc: Mapping[str, float]) -> pd.DataFrame:
    """The matched 12-month effects against NHS England Universal Personalised Care expectations
    (14% fewer GP appointments; 12% fewer A&E attendances; take-up is :func:`upc_uptake`).
    ``upc``: keys ``gp_reduction``, ``ae_reduction`` (parameters ``evaluation.upc_expectations``)."""
    m = matched[(matched["cohort"] == "itt")].set_index(["setting", "window_months"])
    w = max(matched["window_months"])
    rows = [
        {"measure": f"Change in GP appointments, matched, {w} months (%)", "expected": -100 * upc["gp_reduction"],
         "observed": 100 * (m.loc[("gp", w), "ratio_of_rate_ratios"] - 1), "observed_lower": 100 * (m.loc[("gp", w), "ratio_of_rate_ratios_lower"] - 1),
         "observed_upper": 100 * (m.loc[("gp", w), "ratio_of_rate_ratios_upper"] - 1)},
        {"measure": f"Change in A&E attendances, matched, {w} months (%)", "expected": -100 * upc["ae_reduction"],
         "observed": 100 * (m.loc[("ae", w), "ratio_of_rate_ratios"] - 1), "observed_lower": 100 * (m.loc[("ae", w), "ratio_of_rate_ratios_lower"] - 1),
         "observed_upper": 100 * (m.loc[("ae", w), "ratio_of_rate_ratios_upper"] - 1)},
    ]
    return pd.DataFrame(rows)


def score_histogram(data: pd.DataFrame, bins: int = 20, score: str = "ps") -> pd.DataFrame:
    """Propensity-score distribution as counts of people per score band, referred and comparators,
    before and after matching (the data behind an overlap plot, so the figure can be drawn from a
    published, disclosure-controlled table). Bands are fixed: ``bins`` equal bands over 0..1 (the
    band edges say nothing about anyone's score; edges at the observed minimum and maximum would
    publish two people's scores). Columns: panel, group, score_from, score_to (score band), n (people in the
    band; after matching, matched people weighted by their matching weight, rounded to whole people)."""
    need = [score, "treated"] + (["weight"] if "weight" in data.columns else [])
    require_columns(data, need, "data")
    s = data[score].to_numpy(dtype=float)
    if np.isfinite(s).any() and (np.nanmin(s) < 0 or np.nanmax(s) > 1):
        raise ValueError(f"score_histogram: {score} must be a probability (0..1); found {np.nanmin(s):g} to {np.nanmax(s):g}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    panels = [("All units", np.ones(len(data)))]
    if "weight" in data.columns:
        panels.append(("Matched units", data["weight"].to_numpy(dtype=float)))
    for panel, w in panels:
        for t, group in ((1, "Referred"), (0, "Comparators")):
            m = (data["treated"].to_numpy() == t) & (w > 0) & np.isfinite(s)
            h, _ = np.histogram(s[m], bins=edges, weights=w[m])
            h = np.round(h)
            for i in range(bins):
                rows.append({"panel": panel, "group": group, "score_from": round(float(edges[i]), 4), "score_to": round(float(edges[i + 1]), 4),
                             "n": float(h[i])})
    return pd.DataFrame(rows)
