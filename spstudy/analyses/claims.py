"""The boroughs' own published claims beside the naive and matched estimates from the same data.

The NCL review of social prescribing (NCL Training Hub 2024; facts in
``data/reference/ncl_sp_review_2024_facts.csv`` and ``docs/review_facts.md``) quotes three
service-use results, none with a comparison group:

* Barnet: "a 70% reduction in GP attendance for patients seen by the social prescribing service"
  (Barnet - Evidence and Impact, p.31; Table 2, p.56);
* Enfield (Unity PCN): "A sample of 91 patients ... 6 months before referral ... and the 6 months
  after the SPLW case was closed. 47% of patients in the sample had reduced GP appointments"
  (p.42), which Table 2 (p.56) restates as "a 47% reduction in GP attendance". These are different
  statistics (a share of people; a fall in the rate), so both readings are set out;
* Haringey: the high intensity user pilot, "a 30% reduction rate in A+E attendances" (p.47).

For each, :func:`claim_estimates` computes from the extract, for the same borough, outcome and
population: the naive before/after (the statistic the borough computed) and the matched
difference in differences (:mod:`spstudy.methods.subgroups`, the same estimator as
:func:`spstudy.analyses.evaluation.did`); for the share reading also the share of matched comparators whose
use fell over the same windows (what regression to the mean alone gives). :func:`claims_table`
sets them beside the published figure and says how much of it the matched design supports:
share supported = matched % change / published % change (for the share reading: the excess share
of referred people with fewer appointments over comparators, / the published share).

High intensity users: referred people with more than five A&E attendances in the 12 months before
referral (the British Red Cross definition, "Nowhere else to turn", 2021; NHS England's HIU
programme uses local thresholds), ``hiu_min_ae_12m`` = 6 by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from spstudy.analyses.evaluation import naive_before_after
from spstudy.methods.checks import require_columns
from spstudy.methods.stats import wilson_limits
from spstudy.methods.subgroups import did_long, fit_ratio_of_rate_ratios

__all__ = ["CLAIMS", "ClaimEstimates", "review_facts", "claim_specs", "claim_estimates", "claims_table"]

#: Which estimate answers each published figure. ``quantity`` names the row of the review facts file.
#: window_months: Barnet and Haringey give no window; the longest standard window (12 months) is used.
CLAIMS: tuple[dict, ...] = (
    {"claim_id": "barnet_gp", "borough": "Barnet", "quantity": "gp_attendance_reduction_claim", "statistic": "pct_change_rate",
     "setting": "gp", "window_months": 12, "cohort": "per_protocol", "population": "all",
     "sample_quantity": None, "note": "review gives no window; patients seen (per protocol)"},
    {"claim_id": "enfield_gp_rate", "borough": "Enfield", "quantity": "gp_attendance_reduction_claim_table2", "statistic": "pct_change_rate",
     "setting": "gp", "window_months": 6, "cohort": "per_protocol", "population": "all",
     "sample_quantity": "gp_comparison_sample_size_unity", "note": "Table 2 wording; the review's window ran from case closure"},
    {"claim_id": "enfield_gp_share", "borough": "Enfield", "quantity": "patients_with_fewer_gp_appointments_unity", "statistic": "pct_people_fewer",
     "setting": "gp", "window_months": 6, "cohort": "per_protocol", "population": "all",
     "sample_quantity": "gp_comparison_sample_size_unity", "note": "text wording (p.42): share of patients with fewer GP appointments"},
    {"claim_id": "haringey_ae_hiu", "borough": "Haringey", "quantity": "hiu_pilot_ae_attendance_reduction", "statistic": "pct_change_rate",
     "setting": "ae", "window_months": 12, "cohort": "itt", "population": "high_intensity_users",
     "sample_quantity": None, "note": "high intensity users: > 5 A&E attendances in the year before referral; review gives no window"},
)


def review_facts() -> pd.DataFrame:
    """The review facts file (``data/reference/ncl_sp_review_2024_facts.csv``): topic, borough_name,
    quantity, value, unit, period, source_section, source_quote."""
    from spstudy.inputs.reference import reference_dir

    return pd.read_csv(reference_dir() / "ncl_sp_review_2024_facts.csv")


def claim_specs(facts: pd.DataFrame, claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: the spec in :data:`CLAIMS` joined to its published value, unit, quote and
    source (section and page) from ``facts``. ``claimed_pct_change`` is -value for a reduction;
    ``claim_sample_size`` is the review's sample size where it gives one. Raises ValueError naming a
    quantity the facts file lacks."""
    need = ["borough_name", "quantity", "value", "unit", "source_section", "source_quote"]
    require_columns(facts, need, "facts")
    rows = []
    for c in claims:
        f = facts[(facts["borough_name"] == c["borough"]) & (facts["quantity"] == c["quantity"])]
        if len(f) != 1:
            raise ValueError(f"facts: expected one row for borough {c['borough']!r}, quantity {c['quantity']!r}; found {len(f)}")
        f = f.iloc[0]
        value = float(f["value"])
        n = None
        if c.get("sample_quantity"):
            s = facts[(facts["borough_name"] == c["borough"]) & (facts["quantity"] == c["sample_quantity"])]
            n = float(s["value"].iloc[0]) if len(s) == 1 else None
        rows.append({**{k: c[k] for k in ("claim_id", "borough", "quantity", "statistic", "setting", "window_months", "cohort", "population", "note")},
                     "claimed_value": value, "claimed_unit": f["unit"],
                     "claimed_pct_change": -value if c["statistic"] == "pct_change_rate" else np.nan,
                     "claimed_pct_people_fewer": value if c["statistic"] == "pct_people_fewer" else np.nan,
                     "claim_sample_size": n, "source": f"NCL Training Hub (2024), Social Prescribing in NCL General Practice: {f['source_section']}",
                     "source_quote": f["source_quote"]})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ClaimEstimates:
    """Estimates from the extract answering each claim (:func:`claim_estimates`).

    naive: ``claim_id``, ``borough``, ``population``, ``setting``, ``window_months``, ``cohort``,
        ``n_referred`` (people, count), ``events_pre``, ``events_post`` (events, counts),
        ``rate_ratio`` (post / pre rate, exposure-adjusted), ``rate_ratio_lower``/``_upper``,
        ``pct_change`` with ``pct_change_lower``/``_upper``.
    matched: ``claim_id`` ... ``cohort``, ``n_matched_sets`` (people, count), the four cell event
        counts, ``ratio_of_rate_ratios`` with ``_lower``/``_upper``, ``pct_change`` with
        ``pct_change_lower``/``_upper``, ``status``.
    shares: (share claims) ``n_referred``, ``n_referred_fewer``, ``n_comparators``,
        ``n_comparators_fewer`` (people, counts), ``pct_referred_fewer``, ``pct_comparators_fewer``
        (Wilson intervals), ``excess_pct_points`` (referred minus comparators, Newcombe hybrid
        score interval).
    """

    naive: pd.DataFrame
    matched: pd.DataFrame
    shares: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """Naive and matched % changes, one row per claim and design."""
        keys = ["claim_id", "borough", "population", "setting", "window_months", "cohort"]
        n = self.naive[keys + ["pct_change", "pct_change_lower", "pct_change_upper"]].assign(design="naive before/after")
        m = self.matched[keys + ["pct_change", "pct_change_lower", "pct_change_upper"]].assign(design="matched DiD")
        return pd.concat([n, m], ignore_index=True)




def claim_estimates(d: pd.DataFrame, pairs: pd.DataFrame, specs: pd.DataFrame, hiu_min_ae_12m: int = 6, baseline: str = "baseline",
                    min_matched_sets: int = 20, confidence: float = 0.95) -> ClaimEstimates:
    """Naive, matched and share estimates for each claim in ``specs`` (:func:`claim_specs`) whose
    borough is in ``d`` (needs ``borough``: :func:`spstudy.methods.subgroups.add_subgroup_columns`).

    Naive: referred people in the borough and population (seen, for per protocol), rate in
    ``post_<m>m`` over rate in ``pre_<m>m`` (events / exposure days), log-normal Poisson interval
    (as :func:`spstudy.analyses.evaluation.naive_before_after`, at ``confidence``). Matched: the matched DiD
    on the matched sets whose referred member is in the borough and population. Shares: people
    with fewer events in ``post_<m>m`` than in ``pre_<m>m`` (the Enfield statistic), referred and
    matched comparators, over the same windows around their (pseudo-)index dates.
    """
    require_columns(d, ["borough"], "d", "add it with spstudy.methods.subgroups.add_subgroup_columns")
    t = d.set_index("index_id")
    naive, matched, shares = [], [], []
    for _, c in specs.iterrows():
        if not (t.loc[t["treated"] == 1, "borough"] == c["borough"]).any():
            continue
        s, m, coh = c["setting"], int(c["window_months"]), c["cohort"]
        keys = {k: c[k] for k in ("claim_id", "borough", "population", "setting")} | {"window_months": m, "cohort": coh}
        ref = (t["treated"] == 1) & (t["borough"] == c["borough"])
        if coh == "per_protocol":
            ref &= t["seen"] == 1
        if c["population"] == "high_intensity_users":
            ref &= t["ae_pre_12m_events"] >= hiu_min_ae_12m
        elif c["population"] != "all":
            raise ValueError(f"specs.population: 'all' or 'high_intensity_users', got {c['population']!r}")
        r = t[ref]
        nb = naive_before_after(r.reset_index(), s, m, coh, confidence)  # the evaluation's naive figure, on the claim's people
        naive.append({**keys, **{k: nb[k] for k in ("n_referred", "events_pre", "events_post", "rate_ratio", "rate_ratio_lower",
                                                    "rate_ratio_upper")}})
        ids = set(r.index)
        pr = pairs[pairs["treated_id"].isin(ids)]
        L = did_long(d, pr, s, m, coh, baseline)
        f = fit_ratio_of_rate_ratios(L, confidence=confidence, min_matched_sets=min_matched_sets)
        matched.append({**keys, **{k: f[k] for k in ("n_matched_sets", "events_treated_pre", "events_treated_post", "events_comparator_pre",
                                                     "events_comparator_post", "ratio_of_rate_ratios", "ratio_of_rate_ratios_lower",
                                                     "ratio_of_rate_ratios_upper", "status")}})
        if c["statistic"] == "pct_people_fewer":
            fewer = lambda x: (x[f"{s}_post_{m}m_events"] < x[f"{s}_pre_{m}m_events"])
            rm = t.loc[pr.drop_duplicates("subclass")["treated_id"].to_numpy()]
            cm = t.loc[pr["control_id"].drop_duplicates().to_numpy()]
            n1, x1, n0, x0 = len(rm), int(fewer(rm).sum()), len(cm), int(fewer(cm).sum())
            l1, u1 = wilson_limits(x1, n1, confidence)
            l0, u0 = wilson_limits(x0, n0, confidence)
            p1, p0 = (x1 / n1 if n1 else np.nan), (x0 / n0 if n0 else np.nan)
            # Newcombe (1998, Stat Med 17:873) method 10: hybrid score interval for a difference of proportions
            dlo = p1 - p0 - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
            dhi = p1 - p0 + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
            shares.append({**keys, "n_referred": n1, "n_referred_fewer": x1, "n_comparators": n0, "n_comparators_fewer": x0,
                           "pct_referred_fewer": 100 * p1, "pct_referred_fewer_lower": 100 * l1, "pct_referred_fewer_upper": 100 * u1,
                           "pct_comparators_fewer": 100 * p0, "pct_comparators_fewer_lower": 100 * l0, "pct_comparators_fewer_upper": 100 * u0,
                           "excess_pct_points": 100 * (p1 - p0), "excess_pct_points_lower": 100 * dlo, "excess_pct_points_upper": 100 * dhi})
    nv = pd.DataFrame(naive)
    mt = pd.DataFrame(matched)
    for df, est in ((nv, "rate_ratio"), (mt, "ratio_of_rate_ratios")):
        if len(df):
            for suf in ("", "_lower", "_upper"):
                df[f"pct_change{suf}"] = 100 * (df[f"{est}{suf}"] - 1)
            df["confidence"] = confidence
    sh = pd.DataFrame(shares)
    if len(sh):
        sh["confidence"] = confidence
    return ClaimEstimates(naive=nv, matched=mt, shares=sh)


def _pct(x: float) -> str:
    return f"{x:+.0f}%"


def claims_table(specs: pd.DataFrame, naive: pd.DataFrame, matched: pd.DataFrame, shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each published figure beside the naive and matched estimates from the same data (one row per claim).

    Inputs: ``specs`` (:func:`claim_specs`) and the tables of :class:`ClaimEstimates` (or any tables
    with the same key columns ``claim_id`` and the estimate columns). Output columns: the spec
    (``claim_id``, ``borough``, ``setting``, ``window_months``, ``cohort``, ``population``,
    ``claimed_value``, ``claimed_unit``, ``claim_sample_size`` (count, from the review),
    ``source``, ``source_quote``), ``n_referred`` and ``n_matched_sets`` (people, counts),
    ``naive_estimate``/``_lower``/``_upper`` and ``matched_estimate``/``_lower``/``_upper`` (rate
    claims: % change; share claims: % of referred people with fewer appointments, and the excess
    over matched comparators in percentage points), ``share_of_claim_supported`` with
    ``_lower``/``_upper`` (100 x matched / claimed; the interval maps the matched interval),
    ``statement`` (plain words; quotes estimates only, never counts of people).
    Claims whose borough is not in the estimates are left out.
    """
    shares = shares if shares is not None else pd.DataFrame()
    rows = []
    for _, c in specs.iterrows():
        nv = naive[naive["claim_id"] == c["claim_id"]] if len(naive) else naive
        if not len(nv):
            continue
        nv, mt = nv.iloc[0], matched[matched["claim_id"] == c["claim_id"]].iloc[0]
        row = {k: c[k] for k in ("claim_id", "borough", "setting", "window_months", "cohort", "population", "claimed_value", "claimed_unit",
                                 "claim_sample_size", "source", "source_quote")}
        name = {"gp": "GP appointments", "ae": "A&E attendances"}[c["setting"]]
        who = "high intensity users referred" if c["population"] == "high_intensity_users" else ("people seen" if c["cohort"] == "per_protocol" else "people referred")
        if c["statistic"] == "pct_people_fewer":
            sh = shares[shares["claim_id"] == c["claim_id"]].iloc[0]
            claimed = c["claimed_pct_people_fewer"]
            row.update(n_referred=int(sh["n_referred"]), n_matched_sets=int(mt["n_matched_sets"]), naive_estimate=sh["pct_referred_fewer"],
                       naive_estimate_lower=sh["pct_referred_fewer_lower"], naive_estimate_upper=sh["pct_referred_fewer_upper"],
                       matched_estimate=sh["excess_pct_points"], matched_estimate_lower=sh["excess_pct_points_lower"],
                       matched_estimate_upper=sh["excess_pct_points_upper"])
            sup = [100 * row[f"matched_estimate{x}"] / claimed for x in ("", "_lower", "_upper")]
            row["statement"] = (f"{c['borough']} published that {claimed:.0f}% of patients had fewer {name} in the {c['window_months']} months after "
                                f"than before. In this extract {row['naive_estimate']:.0f}% of matched {who} had fewer, but so had "
                                f"{sh['pct_comparators_fewer']:.0f}% of their matched comparators, who were never referred: the excess is "
                                f"{row['matched_estimate']:+.0f} percentage points ({row['matched_estimate_lower']:+.0f} to {row['matched_estimate_upper']:+.0f}), "
                                f"about {sup[0]:.0f}% of the published share.")
        else:
            claimed = c["claimed_pct_change"]
            row.update(n_referred=int(nv["n_referred"]), n_matched_sets=int(mt["n_matched_sets"]), naive_estimate=nv["pct_change"],
                       naive_estimate_lower=nv["pct_change_lower"], naive_estimate_upper=nv["pct_change_upper"],
                       matched_estimate=mt["pct_change"], matched_estimate_lower=mt["pct_change_lower"], matched_estimate_upper=mt["pct_change_upper"])
            sup = [100 * row[f"matched_estimate{x}"] / claimed for x in ("", "_lower", "_upper")]
            if mt["status"] != "estimated":
                row["statement"] = (f"{c['borough']} published a {abs(claimed):.0f}% fall in {name}. The matched design cannot answer it here "
                                    f"({mt['status']}); the naive before/after on the same data is {_pct(row['naive_estimate'])}.")
            else:
                lo, hi = row["matched_estimate_lower"], row["matched_estimate_upper"]
                if hi < 0:
                    verdict = f"so the matched design supports about {sup[0]:.0f}% of the published figure ({min(sup[1:]):.0f}% to {max(sup[1:]):.0f}%)"
                elif lo <= claimed:
                    verdict = "an interval too wide to tell no effect from the published figure"
                else:
                    verdict = f"which does not rule out no effect; the matched design supports at most {max(sup[1:]):.0f}% of the published figure"
                row["statement"] = (f"{c['borough']} published a {abs(claimed):.0f}% fall in {name} (before/after, no comparison group). "
                                    f"On the same data for {who}, {c['window_months']} months: naive before/after {_pct(row['naive_estimate'])} "
                                    f"({_pct(row['naive_estimate_lower'])} to {_pct(row['naive_estimate_upper'])}); against matched comparators "
                                    f"{_pct(row['matched_estimate'])} ({_pct(lo)} to {_pct(hi)}), {verdict}.")
        row["share_of_claim_supported"] = sup[0]
        row["share_of_claim_supported_lower"], row["share_of_claim_supported_upper"] = min(sup[1:]), max(sup[1:])
        rows.append(row)
    return pd.DataFrame(rows)
