"""Sentences a pack states, each written from controlled tables only.

Every function takes :class:`spstudy.publish.Tables` (the pack's published tables: numeric values,
NaN where a cell is suppressed) and plain options, and returns Markdown text or None (nothing to
say). A count in a sentence is therefore always the published (rounded) count, a suppressed value is
never quoted, and the sentence cannot disagree with its table. Selections for published views
(``select_*``) live here too: they choose rows from controlled values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


# ------------------------------------------------------------------------------------ formatting

def n(x) -> str:
    """A published count in text ('a suppressed number' where it is suppressed)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "a suppressed number of"
    return f"{int(round(float(x))):,}"


def num(x, d: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "[c]"
    return f"{float(x):,.{d}f}"


def pct(x, d: int = 0) -> str:
    return "[c]" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.{d}f}%"


def names(xs, limit: int = 5) -> str:
    xs = list(xs)
    if not xs:
        return ""
    head = xs[:limit]
    s = ", ".join(head[:-1]) + (" and " if len(head) > 1 else "") + head[-1]
    return s + (f" and {len(xs) - limit} more" if len(xs) > limit else "")


def ci(lo, hi, d: int = 2) -> str:
    return f"95% CI {num(lo, d)} to {num(hi, d)}"


# --------------------------------------------------------------------------- 01 needs assessment

def select_outreach(values: pd.DataFrame, need_cut: float, ratio_below: float) -> pd.DataFrame:
    """High-need wards (need index at or above the NCL cut) with a published referral ratio below
    ``ratio_below``; ``evidence`` from the published interval. Ordered by need."""
    v = values[(values["need_index"] >= need_cut) & (values["referral_ratio"] < ratio_below)].copy()
    v["evidence"] = np.where(v["referral_ratio_upper"] < 100, "significantly fewer than expected (upper limit below 100)",
                             "fewer than expected (not significant)")
    return v.sort_values("need_index", ascending=False)


def outreach(t, table: str = "outreach_candidates") -> str:
    c = t[table]
    if not len(c):
        return f"No ward of {t.area_name} in the top fifth of NCL need has fewer referrals than NCL rates for its age and sex predict."
    sig = c[c["referral_ratio_upper"] < 100]
    s = (f"{len(c)} high-need ward(s) of {t.area_name} have fewer referrals than NCL rates for their age and sex predict, "
         "and are candidates for proactive outreach")
    if len(sig):
        s += f"; in {len(sig)} the shortfall is statistically clear: {names(sig['ward22_name'])}."
    else:
        s += "; in none is the shortfall statistically clear."
    return s


def highest_need(t, table: str = "ward_profile", top: int = 5, sensitivity: str = "need_index_sensitivity_wards",
                 components: str = "need_index_sensitivity_components") -> str:
    p = t[table].sort_values("need_rank").head(top)
    s = t[sensitivity].set_index("ward22_code").loc[p["ward22_code"], "pct_draws_top_fifth"]
    rho = t[components]["spearman_with_base_ranking"].min()
    return (f"Highest-need wards in {t.area_name}: {names(p['ward22_name'], top)} (NCL ranks {', '.join(str(int(r)) for r in p['need_rank'])}). "
            f"Under random re-weightings of the need index they stay in the top fifth of NCL wards in {s.min():.0f}% to {s.max():.0f}% of "
            f"draws, and the ranking correlates at rho >= {rho:.2f} with any ranking that leaves one component out.")


def ward_ratios(t, table: str = "ward_referral_rates") -> str:
    w = t[table].dropna(subset=["referral_ratio"])
    flag = w["funnel"].fillna("")
    above, below = int(flag.str.startswith("above 99.8").sum()), int(flag.str.startswith("below 99.8").sum())
    return (f"Standardised referral ratios of {t.area_name}'s {len(t[table])} wards run from {w['referral_ratio'].min():.0f} to "
            f"{w['referral_ratio'].max():.0f} (100 = as many referrals as NCL rates for age and sex predict); {below} lie below and "
            f"{above} above the 99.8% funnel limits.")


def practice_variation(t, table: str = "referral_rates_by_practice", unit: str = "practices", total_row: str = "E54000028") -> str:
    p = t[table]
    p = p[p["practice_code" if "practice_code" in p else "pcn_code"].astype(str) != total_row]
    flag = p["funnel"].fillna("")
    hi, lo = int(flag.str.startswith("above 99.8").sum()), int(flag.str.startswith("below 99.8").sum())
    return (f"Referral rates of {t.area_name}'s {len(p)} {unit} vary more than chance: {lo} lie below and {hi} above the 99.8% limits "
            "around the NCL rate.")


def workforce(t, table: str = "workforce_coverage", area_code: str | None = None) -> str | None:
    c = t[table]
    if area_code is not None:
        c = c[c["borough_code"] == area_code]
    parts = []
    for _, r in c.iterrows():
        parts.append(f"{r['borough_name']}: {r['link_workers']:g} link workers ({r['link_worker_unit']}) for {int(r['population']):,} "
                     f"people, {r['link_workers_per_10000']:.2f} per 10,000 against the target of {r['target_per_10000']:g}"
                     + (f" ({r['gap_to_target']:.1f} short)" if r["gap_to_target"] > 0 else " (target met)"))
    return "; ".join(parts) + "." if parts else None


def workforce_review_checks(t, coverage: str = "workforce_coverage", totals: str = "workforce_review_totals",
                            area_code: str | None = None) -> str | None:
    c = t[coverage]
    if area_code is not None:
        c = c[c["borough_code"] == area_code]
    bad = c[~c["published_consistent"].astype(bool)]
    parts = [f"the review's published coverage for {r['borough_name']} ({r['published_as_written']} per 10,000) is not what its own "
             f"count gives ({r['link_workers']:g} / {int(r['population']):,} x 10,000 = {r['link_workers_per_10000']:.2f})" for _, r in bad.iterrows()]
    if area_code is None and totals in t:
        tot = t[totals]
        tot = tot[tot["flag"].fillna("").astype(str) != ""]
        parts += [str(f) for f in tot["flag"]]
    return ("Checks of the NCL review's own figures: " + "; ".join(parts) + ".") if parts else None
