"""Build the SROI impact map and its uncertainty from the matched evaluation and stated assumptions.

The arithmetic is in :mod:`spstudy.methods.sroi` (Cabinet Office / Social Value UK guide, 2012). This
module decides *what* is valued, from what evidence:

* GP appointments and A&E attendances avoided: the matched difference in differences (ITT,
  longest window) per referred person-year, times the referred people in the year. Deadweight is 0
  because the matched comparison group already measures what would have happened anyway
  (counting it again would double-count); attribution and displacement are assumptions. An
  estimate that the evaluation judged "not credible" (``credibility``) is never valued: its row
  stays in the impact map with ``valued`` False and the reason.
* Wellbeing: the mean paired change in each instrument's headline measure among people with a
  baseline and a follow-up score, valued only through a published mapping to WELLBYs
  (``assumptions['wellbeing_valuation']``; HM Treasury 2021: GBP 13,000 per WELLBY, 2019 prices,
  range 10,000-16,000; one WELLBY = one point of ONS life satisfaction for one person for one year).
  A measure with no mapping (WEMWBS, SWEMWBS: Enfield and Haringey) is listed as measured but not
  valued, and the summary gives the ratio from service use alone so areas can be compared like for
  like. There is no comparison group for wellbeing, so a deadweight (regression to the mean and
  selective follow-up) is applied.
* Investment: link workers (NCL review) x PSSRU 2024 band 4 cost, plus the management costs the
  voluntary sector absorbs (25-30%, review p.78).

Every value is uprated to ``price_year`` with the GDP deflator. Functions take plain values: the
``assumptions`` dict has the keys of the ``sroi`` parameters (:func:`assumptions_from_parameters`
is the adapter for a notebook), and the Monte Carlo seed is an explicit argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spstudy.methods import sroi
from spstudy.methods.stats import z_value

#: Headline measure of each wellbeing instrument: the one that is valued (or reported as unvalued).
HEADLINE_MEASURES = {
    "ons4_life_satisfaction": ("Higher life satisfaction", "ONS4 life satisfaction (0-10)"),
    "wemwbs_total": ("Better mental wellbeing (WEMWBS)", "WEMWBS total score (14-70)"),
    "swemwbs_metric": ("Better mental wellbeing (SWEMWBS)", "SWEMWBS metric score (7-35)"),
}
SERVICE_USE = {
    "gp": ("GP appointments avoided", "NHS (primary care)", "gp_appointment_cost", "price_year",
           "PSSRU Unit Costs 2024: GP 10-minute consultation"),
    "ae": ("A&E attendances avoided", "NHS (urgent and emergency care)", "ae_attendance_cost", "ae_attendance_price_year",
           "Reference Costs 2013-14 ED non-admitted (NICE NG94 Table 83), uprated"),
}
REQUIRED_ASSUMPTIONS = (
    "price_year", "discount_rate", "link_worker_annual_cost", "link_worker_annual_cost_band5", "management_overhead",
    "gp_appointment_cost", "ae_attendance_cost", "ae_attendance_price_year", "wellby_value", "wellby_value_range",
    "wellby_price_year", "gdp_deflator", "deadweight", "wellbeing_deadweight", "wellbeing_deadweight_range", "attribution",
    "displacement", "drop_off", "duration_years", "monte_carlo_draws", "wellbeing_valuation",
)
EXTRA_COLUMNS = ("people", "effect_per_person", "valued", "valuation_note", "credibility")


def assumptions_from_parameters(params) -> dict:
    """Adapter for notebooks: the ``sroi`` parameters as a dict of plain values (the analysis itself
    never reads a Parameters object). The Monte Carlo seed is ``params.sroi.seed``, passed separately."""
    a = params.sroi.model_dump(mode="python")
    a["gdp_deflator"] = {int(k): float(v) for k, v in a["gdp_deflator"].items()}
    return a


def _check_assumptions(assumptions: Mapping) -> Mapping:
    missing = [k for k in REQUIRED_ASSUMPTIONS if k not in assumptions]
    if missing:
        raise ValueError(f"assumptions: missing key(s) {missing} (the keys of the 'sroi' parameters; see assumptions_from_parameters)")
    return assumptions


def _uprate(value, from_year, a: Mapping):
    return sroi.uprate(value, from_year, a["price_year"], {int(k): float(v) for k, v in a["gdp_deflator"].items()})




def investment(link_worker_fte: float, *, annual_cost: float, annual_cost_band5: float, management_overhead) -> dict:
    """Annual cost of the link-worker service (GBP, price year): link workers x unit cost x (1 + overhead).

    ``annual_cost``: PSSRU 2024 band 4 incl. overheads; ``annual_cost_band5``: band 5 (high end);
    ``management_overhead``: (low, high) share. Returns fte, point (band 4, mid overhead), low (band 4,
    low overhead) and high (band 5, high overhead)."""
    lo_oh, hi_oh = management_overhead
    if not (np.isfinite(link_worker_fte) and link_worker_fte > 0):
        raise ValueError(f"link_worker_fte: must be > 0, got {link_worker_fte!r}")
    mid = link_worker_fte * annual_cost * (1 + (lo_oh + hi_oh) / 2)
    return {"fte": float(link_worker_fte), "point": mid, "low": link_worker_fte * annual_cost * (1 + lo_oh),
            "high": link_worker_fte * annual_cost_band5 * (1 + hi_oh)}


VERDICT_HELP = "a verdict is 'credible', 'sensitive' (optionally ': why') or 'not credible: why'"


def _verdict(credibility: Mapping | None, key: tuple) -> tuple[bool, str]:
    """(may value, verdict text) for an effect estimate key (setting, window_months, cohort)."""
    if credibility is None:
        return True, "not assessed"
    if key not in credibility:
        raise ValueError(f"credibility: no verdict for {key!r}; give one for every estimate that may be valued ({VERDICT_HELP})")
    v = str(credibility[key]).strip()
    low = v.lower()
    if low.startswith("not credible"):
        return False, v
    if low == "credible" or low.startswith("sensitive"):
        return True, v
    raise ValueError(f"credibility[{key!r}]: {v!r} is not a verdict ({VERDICT_HELP})")


def _unvalued_row(stakeholder, outcome, indicator, price_year, note, credibility="", people=np.nan, effect=np.nan) -> dict:
    return {"stakeholder": stakeholder, "outcome": outcome, "indicator": indicator, "quantity": np.nan, "financial_proxy": np.nan,
            "proxy_source": "not valued", "price_year": price_year, "deadweight": np.nan, "attribution": np.nan, "displacement": np.nan,
            "drop_off": np.nan, "duration_years": np.nan, "notes": note, "people": people, "effect_per_person": effect,
            "valued": False, "valuation_note": note, "credibility": credibility}


@dataclass(frozen=True)
class ImpactMap:
    """The impact map and its uncertainty (:func:`impact_map`).

    ``table``: one row per outcome, valued or not (columns in :func:`impact_map`); ``draws``: the
    Monte Carlo input distributions, ``{"<outcome>:<column>" or "<column>": distribution spec}`` as
    :func:`spstudy.methods.sroi.monte_carlo_sroi` takes them (plain values, not tables).
    """

    table: pd.DataFrame
    draws: Mapping[str, Mapping]


def impact_map(matched: pd.DataFrame, *, n_referred: int, wellbeing_change: pd.DataFrame | None, assumptions: Mapping,
               credibility: Mapping | None = None) -> ImpactMap:
    """Impact map (one row per outcome, valued or not) and the Monte Carlo input distributions.

    ``matched``: evaluation.effects() matched table (setting, window_months, cohort, did_per_1000py,
    did_lower, did_upper); ``n_referred``: referred people in the year; ``wellbeing_change``:
    evaluation.wellbeing_change() table (measure, n_pairs, mean_change, mean_change_lower, mean_change_upper), empty or
    None if nothing was measured; ``assumptions``: the ``sroi`` parameters as plain values;
    ``credibility``: {(setting, window_months, cohort): verdict} from the evaluation's diagnostics
    (None = not assessed, every estimate may be valued).

    Wellbeing is valued only for the people whose change was measured (n_pairs), not extrapolated to
    everyone seen: those who return a follow-up tend to be those who improved (informative attrition).
    Columns: :data:`spstudy.methods.sroi.IMPACT_MAP_COLUMNS` plus ``people`` (a COUNT OF PEOPLE: referred
    people for service use, people with both wellbeing scores for wellbeing; the publisher controls
    it, and ``quantity`` = people x effect_per_person is derived from it), ``effect_per_person``
    (events avoided per referred person over the window, or mean change in points), ``valued``,
    ``valuation_note`` and ``credibility``; rows not valued have empty quantity and proxy and say
    why. No count of people is written into the text columns. Draw names follow :mod:`spstudy.methods.sroi`
    ("<outcome>:<column>").
    """
    a = _check_assumptions(assumptions)
    w = max(matched["window_months"])
    m = matched[(matched["cohort"] == "itt") & (matched["window_months"] == w)].set_index("setting")
    years = w / 12
    att_mid = float(np.mean(a["attribution"]))
    rows, draws = [], {}
    for setting, (label, stakeholder, cost_key, year_key, src) in SERVICE_USE.items():
        ok, verdict = _verdict(credibility, (setting, int(w), "itt"))
        indicator = f"Matched difference in differences, {w} months, ITT: events avoided per referred person x referred people"
        if setting not in m.index:
            rows.append(_unvalued_row(stakeholder, label, indicator, a["price_year"], "no matched estimate for this setting", verdict, n_referred))
            continue
        r = m.loc[setting]
        per_person = -r["did_per_1000py"] / 1000 * years  # events avoided per referred person over the window
        if not ok:
            rows.append(_unvalued_row(stakeholder, label, indicator, a["price_year"],
                                      f"Not valued: the evaluation judged this estimate {verdict}.", verdict, n_referred, per_person))
            continue
        q = per_person * n_referred
        q_lo, q_hi = -r["did_upper"] / 1000 * n_referred * years, -r["did_lower"] / 1000 * n_referred * years
        note = "Deadweight 0: the matched comparison group already removes what would have happened anyway."
        if verdict.lower().startswith("sensitive"):
            note += f" The evaluation judged the estimate {verdict}."
        rows.append({"stakeholder": stakeholder, "outcome": label, "indicator": indicator, "quantity": q,
                     "financial_proxy": _uprate(a[cost_key], a[year_key], a), "proxy_source": src, "price_year": a["price_year"],
                     "deadweight": a["deadweight"], "attribution": att_mid, "displacement": a["displacement"], "drop_off": a["drop_off"],
                     "duration_years": a["duration_years"], "notes": note, "people": n_referred, "effect_per_person": per_person,
                     "valued": True, "valuation_note": "", "credibility": verdict})
        if q_hi > q_lo:
            draws[f"{label}:quantity"] = sroi.normal_from_ci(q_lo, q_hi)

    wb = wellbeing_change if wellbeing_change is not None else pd.DataFrame()
    present = [] if wb.empty else [x for x in HEADLINE_MEASURES if x in set(wb["measure"])]
    values = a["wellbeing_valuation"]
    wv = _uprate(a["wellby_value"], a["wellby_price_year"], a)
    w_lo, w_hi = (_uprate(v, a["wellby_price_year"], a) for v in a["wellby_value_range"])
    if not present:
        rows.append(_unvalued_row("People seen by a link worker", "Wellbeing", "No wellbeing measure with baseline and follow-up scores",
                                  a["price_year"], "Not valued: no wellbeing change was measured."))
    for measure in present:
        label, scale = HEADLINE_MEASURES[measure]
        c = wb[wb["measure"] == measure].iloc[0]
        n_w = int(c["n_pairs"])
        indicator = f"Mean change in {scale} (points) x people seen with a baseline and a follow-up score"
        if measure not in values:
            rows.append(_unvalued_row(
                "People seen by a link worker", label, indicator, a["price_year"],
                f"Not valued: no published mapping from {scale.split(' (')[0]} to life satisfaction (WELLBYs) is set in the parameters "
                f"(sroi.wellbeing_valuation). The ratio leaves this outcome out and so understates the return compared with areas "
                f"whose ONS4 life satisfaction change is valued; compare areas on the ratio from service use alone.",
                people=n_w, effect=float(c["mean_change"])))
            continue
        v = values[measure]
        per, (per_lo, per_hi), source = float(v["wellbys_per_point"]), v["wellbys_per_point_range"], v["source"]
        change, lo, hi = float(c["mean_change"]), float(c["mean_change_lower"]), float(c["mean_change_upper"])
        sign = 1.0 if change >= 0 else -1.0  # a fall in wellbeing is a negative outcome: negative proxy
        rows.append({"stakeholder": "People seen by a link worker", "outcome": label, "indicator": indicator + ", valued in WELLBYs",
                     "quantity": n_w * abs(change), "financial_proxy": sign * wv * per,
                     "proxy_source": f"HM Treasury Green Book wellbeing guidance (2021): GBP 13,000 per WELLBY (2019 prices), uprated; "
                                     f"{per:g} WELLBY per point: {source}",
                     "price_year": a["price_year"], "deadweight": a["wellbeing_deadweight"], "attribution": att_mid, "displacement": 0.0,
                     "drop_off": a["drop_off"], "duration_years": a["duration_years"],
                     "notes": "No comparison group for wellbeing: deadweight covers regression to the mean and selective follow-up (assumption A10).",
                     "people": n_w, "effect_per_person": change,
                     "valued": True, "valuation_note": "", "credibility": "no comparison group (deadweight applied)"})
        q_lo, q_hi = sorted((n_w * sign * lo, n_w * sign * hi))
        if q_hi > q_lo:
            draws[f"{label}:quantity"] = sroi.normal_from_ci(q_lo, q_hi)
        draws[f"{label}:financial_proxy"] = sroi.uniform(*sorted((sign * w_lo * per_lo, sign * w_hi * per_hi)))
        draws[f"{label}:deadweight"] = sroi.uniform(*a["wellbeing_deadweight_range"])
    draws["attribution"] = sroi.uniform(*a["attribution"])
    cols = list(sroi.IMPACT_MAP_COLUMNS) + list(EXTRA_COLUMNS)
    return ImpactMap(table=pd.DataFrame(rows, columns=cols), draws=draws)


@dataclass(frozen=True)
class SroiResult:
    """Everything :func:`analyse` produces, as tidy tables.

    ``impact_map`` (valued and unvalued outcomes), ``investment`` (one row: fte, point, low, high),
    ``summary`` (one row: :func:`spstudy.methods.sroi.sroi_summary` columns plus ``ratio_service_use_only``,
    ``wellbeing_valued``, ``unvalued_outcomes``, ``note``), ``monte_carlo`` (one row:
    :func:`spstudy.methods.sroi.monte_carlo_sroi` summary), ``tornado``, ``break_even``.
    """

    impact_map: pd.DataFrame
    investment: pd.DataFrame
    summary: pd.DataFrame
    monte_carlo: pd.DataFrame
    tornado: pd.DataFrame
    break_even: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """Headline numbers in long form: table, measure, value."""
        parts = []
        for name in ("summary", "monte_carlo", "investment"):
            row = getattr(self, name).iloc[0]
            parts += [{"table": name, "measure": k, "value": v} for k, v in row.items()]
        return pd.DataFrame(parts)


def _range_of(spec, confidence: float = 0.95) -> tuple[float, float]:
    """A central ``confidence`` range for a distribution spec (for one-way sensitivity)."""
    k = spec.get("dist")
    z = z_value(confidence)
    if k in ("uniform", "triangular"):
        return spec["low"], spec["high"]
    if k == "normal":
        return spec["mean"] - z * spec["sd"], spec["mean"] + z * spec["sd"]
    if k == "fixed":
        return spec["value"], spec["value"]
    if k == "lognormal":
        return float(np.exp(spec["meanlog"] - z * spec["sdlog"])), float(np.exp(spec["meanlog"] + z * spec["sdlog"]))
    raise ValueError(f"unknown distribution spec {spec}")


def analyse(matched: pd.DataFrame, *, n_referred: int, wellbeing_change: pd.DataFrame | None, link_worker_fte: float,
            assumptions: Mapping, seed: int, credibility: Mapping | None = None, confidence: float = 0.95) -> SroiResult:
    """Point estimate, Monte Carlo (``seed``: numpy default_rng, from parameters ``sroi.seed``),
    tornado and break-even for one area. Arguments as :func:`impact_map`; ``link_worker_fte``: link
    workers in post (the review's figures). Only rows with ``valued`` True enter the ratio."""
    a = _check_assumptions(assumptions)
    im = impact_map(matched, n_referred=n_referred, wellbeing_change=wellbeing_change, assumptions=a, credibility=credibility)
    inv = investment(link_worker_fte, annual_cost=a["link_worker_annual_cost"], annual_cost_band5=a["link_worker_annual_cost_band5"],
                     management_overhead=a["management_overhead"])
    imap, draws = im.table, dict(im.draws) | {"investment": sroi.uniform(inv["low"], inv["high"])}
    valued = imap[imap["valued"]].drop(columns=list(EXTRA_COLUMNS)).reset_index(drop=True)
    rate = a["discount_rate"]
    if len(valued):
        summary = sroi.sroi_summary(valued, inv["point"], rate=rate)
        by = sroi.present_value_by_outcome(valued, rate=rate)
        mc = sroi.monte_carlo_sroi(valued, inv["point"], draws, n=a["monte_carlo_draws"], seed=seed, rate=rate, confidence=confidence).summary
        ranges = {name: _range_of(spec, confidence) for name, spec in draws.items()}
        ranges["discount_rate"] = (0.015, 0.05)
        tor = sroi.tornado(valued, inv["point"], ranges, rate=rate)
        be = []
        for name, (lo, hi) in ranges.items():
            try:
                v = sroi.break_even(valued, inv["point"], name, rate=rate)
            except ValueError:
                v = np.nan
            be.append({"input": name, "break_even_value": v, "low": lo, "high": hi})
        be = pd.DataFrame(be)
    else:  # nothing could be valued: a ratio of 0, stated, rather than an error
        summary = pd.DataFrame([{"investment": inv["point"], "present_value": 0.0, "npv": -inv["point"], "sroi_ratio": 0.0,
                                 "net_sroi_ratio": -1.0, "annual_impact": 0.0, "payback_months": np.nan, "payback_reached": False,
                                 "benefit_period_months": 12 * int(a["duration_years"]), "discount_rate": rate}])
        by = pd.DataFrame(columns=["outcome", "present_value"])
        mc = pd.DataFrame([{"n": 0, "ratio_median": 0.0, "ratio_lower": 0.0, "ratio_upper": 0.0, "ratio_mean": 0.0, "prob_ratio_gt_1": 0.0,
                            "prob_ratio_gt_1_reported": 0.0, "prob_ratio_gt_1_bound": "=", "prob_ratio_gt_1_text": "not computed", "confidence": confidence, "seed": seed}])
        tor = pd.DataFrame(columns=["input", "low", "high", "ratio_low", "ratio_high", "base_ratio", "swing"])
        be = pd.DataFrame(columns=["input", "break_even_value", "low", "high"])
    service = [SERVICE_USE[s][0] for s in SERVICE_USE]
    pv_service = float(by.loc[by["outcome"].isin(service), "present_value"].sum()) if len(by) else 0.0
    unvalued = imap.loc[~imap["valued"], "outcome"].tolist()
    wb_rows = imap[~imap["outcome"].isin(service)]
    summary = summary.assign(
        ratio_service_use_only=pv_service / inv["point"],
        wellbeing_valued=bool(wb_rows["valued"].any()),
        unvalued_outcomes="; ".join(unvalued),
        note=("" if not unvalued else
              f"Not valued: {'; '.join(unvalued)} (see the impact map). The ratio counts only the valued outcomes and understates "
              f"the return by whatever those are worth; ratio_service_use_only (GP and A&E use alone) compares areas like for like."))
    return SroiResult(impact_map=imap, investment=pd.DataFrame([inv]), summary=summary, monte_carlo=mc, tornado=tor, break_even=be)
