"""Build the SROI impact map and its uncertainty from the matched evaluation and the parameters.

The arithmetic is in :mod:`spstudy.sroi` (Cabinet Office / Social Value UK guide, 2012). This
module decides *what* is valued, from what evidence:

* GP appointments and A&E attendances avoided: the matched difference in differences (ITT,
  longest window) per referred person-year, times the referred people in the year. Deadweight is 0
  because the matched comparison group already measures what would have happened anyway
  (counting it again would double-count); attribution and displacement are parameters.
* Wellbeing: the mean paired change in ONS4 life satisfaction among people seen, valued in
  WELLBYs (HM Treasury 2021: GBP 13,000 per WELLBY, 2019 prices, range 10,000-16,000). There is
  no comparison group for wellbeing, so a deadweight (regression to the mean and selective
  follow-up) is applied as a parameter.
* Investment: link-worker FTE (NCL review) x PSSRU 2024 band 4 cost, plus the management costs
  the voluntary sector absorbs (25-30%, review p.78).
Every value is uprated to ``sroi.price_year`` with the GDP deflator in the parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import sroi


def _uprate(value, from_year, params):
    s = params.sroi
    return sroi.uprate(value, from_year, s.price_year, {int(k): float(v) for k, v in s.gdp_deflator.items()})


def investment(params, link_worker_fte: float) -> dict:
    """Annual cost of the link-worker service (GBP, price year): FTE x unit cost x (1 + overhead).

    Returns point value (band 4, mid overhead) and a low-high range (band 4 low overhead to band 5
    high overhead)."""
    s = params.sroi
    lo_oh, hi_oh = s.management_overhead
    mid = link_worker_fte * s.link_worker_annual_cost * (1 + (lo_oh + hi_oh) / 2)
    return {"fte": link_worker_fte, "point": mid, "low": link_worker_fte * s.link_worker_annual_cost * (1 + lo_oh),
            "high": link_worker_fte * s.link_worker_annual_cost_band5 * (1 + hi_oh)}


def impact_map(params, matched: pd.DataFrame, n_referred: int, n_seen: int, life_satisfaction_change: dict | None) -> tuple[pd.DataFrame, dict]:
    """Impact map (one row per outcome) and the Monte Carlo input distributions.

    ``matched``: evaluation.effects() matched table; ``life_satisfaction_change``: dict with
    mean_change, lower, upper (ONS4 life satisfaction points) and n_pairs (people with baseline and
    follow-up) or None if not measured. Wellbeing is valued only for the people whose change was
    measured (n_pairs), not extrapolated to everyone seen: those who return a follow-up tend to be
    those who improved (informative attrition), so extrapolating would overstate the value.
    """
    s = params.sroi
    w = max(matched["window_months"])
    m = matched[(matched["cohort"] == "itt") & (matched["window_months"] == w)].set_index("setting")
    years = w / 12
    att_mid = float(np.mean(s.attribution))
    rows, draws = [], {}
    for setting, label, proxy, py, src in (
        ("gp", "GP appointments avoided", s.gp_appointment_cost, s.price_year, "PSSRU Unit Costs 2024: GP 10-minute consultation"),
        ("ae", "A&E attendances avoided", s.ae_attendance_cost, s.ae_attendance_price_year, "Reference Costs 2013-14 ED non-admitted (NICE NG94 Table 83), uprated"),
    ):
        r = m.loc[setting]
        per_person_year = -r["did_per_1000py"] / 1000  # events avoided per referred person-year
        q = per_person_year * n_referred * years
        q_lo, q_hi = -r["did_upper"] / 1000 * n_referred * years, -r["did_lower"] / 1000 * n_referred * years
        rows.append({"stakeholder": "NHS (primary care)" if setting == "gp" else "NHS (urgent and emergency care)",
                     "outcome": label, "indicator": f"Matched difference in differences, {w} months, ITT, x {n_referred:,} referred people",
                     "quantity": q, "financial_proxy": _uprate(proxy, py, params), "proxy_source": src, "price_year": s.price_year,
                     "deadweight": s.deadweight, "attribution": att_mid, "displacement": s.displacement, "drop_off": s.drop_off,
                     "duration_years": s.duration_years,
                     "notes": "Deadweight 0: the matched comparison group already removes what would have happened anyway."})
        draws[f"{label}:quantity"] = sroi.normal_from_ci(min(q_lo, q_hi), max(q_lo, q_hi))
    if life_satisfaction_change is not None and np.isfinite(life_satisfaction_change.get("mean_change", np.nan)):
        c = life_satisfaction_change
        wv = _uprate(s.wellby_value, s.wellby_price_year, params)
        lo, hi = (_uprate(v, s.wellby_price_year, params) for v in s.wellby_value_range)
        n_w = int(c.get("n_pairs", n_seen))
        rows.append({"stakeholder": "People seen by a link worker", "outcome": "Higher life satisfaction",
                     "indicator": f"Mean change in ONS4 life satisfaction ({c['mean_change']:.2f} points) x {n_w:,} people seen with a follow-up score, valued in WELLBYs",
                     "quantity": n_w * c["mean_change"], "financial_proxy": wv,
                     "proxy_source": "HM Treasury Green Book wellbeing guidance (2021): GBP 13,000 per WELLBY (2019 prices), uprated",
                     "price_year": s.price_year, "deadweight": s.wellbeing_deadweight, "attribution": att_mid, "displacement": 0.0,
                     "drop_off": s.drop_off, "duration_years": s.duration_years,
                     "notes": "No comparison group for wellbeing: deadweight covers regression to the mean and selective follow-up (assumption A10)."})
        draws["Higher life satisfaction:quantity"] = sroi.normal_from_ci(n_w * c["lower"], n_w * c["upper"])
        draws["Higher life satisfaction:financial_proxy"] = sroi.uniform(lo, hi)
        draws["Higher life satisfaction:deadweight"] = sroi.uniform(*s.wellbeing_deadweight_range)
    draws["attribution"] = sroi.uniform(*s.attribution)
    return pd.DataFrame(rows), draws


def analyse(params, matched: pd.DataFrame, n_referred: int, n_seen: int, life_satisfaction_change, link_worker_fte: float) -> dict:
    """Point estimate, Monte Carlo, tornado and break-even for one area."""
    s = params.sroi
    imap, draws = impact_map(params, matched, n_referred, n_seen, life_satisfaction_change)
    inv = investment(params, link_worker_fte)
    draws["investment"] = sroi.uniform(inv["low"], inv["high"])
    summary = sroi.sroi_summary(imap, inv["point"], rate=s.discount_rate)
    mc = sroi.monte_carlo_sroi(imap, inv["point"], draws, n=s.monte_carlo_draws, seed=int(params.sroi.price_year), rate=s.discount_rate)
    ranges = {}
    for name, spec in draws.items():
        lo, hi = _range_of(spec)
        ranges[name] = (lo, hi)
    ranges["discount_rate"] = (0.015, 0.05)
    tor = sroi.tornado(imap, inv["point"], ranges)
    be = []
    for name in list(ranges):
        try:
            v = sroi.break_even(imap, inv["point"], name)
        except ValueError:
            v = np.nan
        be.append({"input": name, "break_even_value": v, "low": ranges[name][0], "high": ranges[name][1]})
    return {"impact_map": imap, "investment": inv, "summary": summary, "monte_carlo": mc, "tornado": tor, "break_even": pd.DataFrame(be), "draws": draws}


def _range_of(spec) -> tuple[float, float]:
    """A 95% range for a distribution spec (for one-way sensitivity)."""
    k = spec.get("dist") or spec.get("kind") or spec.get("type")
    if k == "uniform":
        return spec["low"], spec["high"]
    if k == "normal":
        return spec["mean"] - 1.96 * spec["sd"], spec["mean"] + 1.96 * spec["sd"]
    if k == "triangular":
        return spec["low"], spec["high"]
    if k == "fixed":
        return spec["value"], spec["value"]
    if k == "lognormal":
        return float(np.exp(spec["meanlog"] - 1.96 * spec["sdlog"])), float(np.exp(spec["meanlog"] + 1.96 * spec["sdlog"]))
    raise ValueError(f"unknown distribution spec {spec}")
