"""Sentences a pack states, each written from controlled tables only.

Every function takes :class:`spstudy.publish.publisher.Tables` (the pack's published tables: numeric values,
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


def ci(t, lo, hi, d: int = 2) -> str:
    """An interval as sentences say it ('95% CI 0.71 to 0.88'), at the pack's confidence level (``t.ci``)."""
    return f"{t.ci} CI {num(lo, d)} to {num(hi, d)}"


# --------------------------------------------------------------------------- 01 needs assessment

def select_outreach(values: pd.DataFrame, need_cut: float, ratio_below: float) -> pd.DataFrame:
    """High-need wards (need index at or above the NCL cut) with a published referral ratio below
    ``ratio_below``; ``evidence`` from the published interval. Ordered by need (the rule of
    :func:`spstudy.analyses.needs.outreach_selection`, applied to the published values)."""
    from spstudy.analyses.needs import outreach_selection

    return outreach_selection(values, need_cut, ratio_below)


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


# ----------------------------------------------------------------------------- 02 equity of access

GOOD, POOR = 90.0, 70.0


def _rating(p):
    return "unknown" if p is None or (isinstance(p, float) and math.isnan(p)) else ("good" if p >= GOOD else "fair" if p >= POOR else "poor")


def recording(t, ethnicity: str = "ethnicity_recording_by_borough", language: str = "language_recording_by_borough",
              area_code: str = "") -> str:
    """How far the equity results can be trusted, from the published completeness tables."""
    e, lang = t[ethnicity], t[language]
    et, lt = e[e["code"] == area_code], lang[lang["code"] == area_code]
    ep = float(et["pct_recorded"].iloc[0]) if len(et) else float("nan")
    lp = float(lt["pct_recorded"].iloc[0]) if len(lt) else float("nan")
    parts = [f"Ethnicity is recorded (a code A-S) for {pct(ep)} of {t.area_name}'s referrals ({_rating(ep)}) and main language "
             f"for {pct(lp)} ({_rating(lp)})."]
    units = e[e["code"] != area_code].dropna(subset=["pct_recorded"])
    if len(units) > 1:
        u = units.sort_values("pct_recorded")
        parts.append(f"By borough it runs from {pct(u['pct_recorded'].iloc[0])} ({u['name'].iloc[0]}) to {pct(u['pct_recorded'].iloc[-1])} "
                     f"({u['name'].iloc[-1]}).")
    r = _rating(ep)
    if r == "good":
        parts.append("That is good enough for the ethnic-group rates and ratios below to be read at face value.")
    elif r == "fair":
        parts.append(f"About {100 - ep:.0f} in 100 referrals cannot be placed in an ethnic group, so group rates are underestimates; rate "
                     "ratios between groups hold if recording does not depend on the group, and the sensitivity analysis shows how far "
                     "they could move if it does.")
    else:
        parts.append("Ethnicity completeness is poor: group rates are substantial underestimates; improve recording before acting on any "
                     "single comparison.")
    if _rating(lp) != "good":
        parts.append(f"Results by language rest on the {pct(lp)} of referrals with it recorded and are indicative only.")
    return " ".join(parts)


def adjusted_ratios(t, table: str = "adjusted_rate_ratios", sensitivity: str = "missing_ethnicity_sensitivity",
                    reference: str = "White") -> str:
    a = t[table]
    a = a[(a["group"] != reference)].dropna(subset=["rate_ratio_upper"])
    low, high = a[a["rate_ratio_upper"] < 1], a[a["rate_ratio_lower"] > 1]

    def rr(r):
        return f"{r['group']} {r['rate_ratio']:.2f} ({ci(t, r['rate_ratio_lower'], r['rate_ratio_upper'])})"

    s = []
    if len(low):
        s.append(f"After allowing for age, sex and deprivation, people in the {names(low['group'])} group(s) were referred less often "
                 f"than {reference} people in {t.area_name} (adjusted rate ratio {'; '.join(rr(r) for _, r in low.iterrows())}).")
    if len(high):
        s.append(f"People in the {names(high['group'])} group(s) were referred more often ({'; '.join(rr(r) for _, r in high.iterrows())}).")
    if not len(low) and not len(high):
        s.append(f"After allowing for age, sex and deprivation, no ethnic group's referral rate in {t.area_name} differed clearly from "
                 f"that of {reference} people.")
    if len(low) and sensitivity in t:
        sens = t[sensitivity]
        up = sens[sens["method"].astype(str).str.startswith("Bound: all")]
        held = [g for g in low["group"] if ((up["group"] == g) & (up["rate_ratio"] < 1)).any()]
        s.append("If every referral without a recorded ethnicity were from the group, " +
                 (f"{names(held)} would still be referred less often." if held else "the shortfall could disappear."))
    return " ".join(s)


def proficiency(t, table: str = "rates_by_english_proficiency") -> str | None:
    p = t[table]
    rows = p[p["group"].isin(["Cannot speak English well", "Cannot speak English"])].dropna(subset=["rr_crude"])
    if not len(rows):
        return None
    parts = [f"{r['rr_crude']:.2f} ({ci(t, r['rr_crude_lower'], r['rr_crude_upper'])}) for residents who {r['group'].lower().replace('cannot', 'cannot')}"
             for _, r in rows.iterrows()]
    return (f"Compared with residents of {t.area_name} whose main language is English, the crude referral rate ratio was "
            + " and ".join(parts) + ".")


def dna(t, table: str = "dna_odds_ratios", reference: str = "White") -> str:
    d = t[table]
    d = d[(d["factor"] == "ethnic_group")].dropna(subset=["odds_ratio_lower"])
    d = d[~d["level"].isin(["Not stated", "Not recorded"])]
    worse = d[d["odds_ratio_lower"] > 1]
    if len(worse):
        return (f"Once referred, people in the {names(worse['level'])} group(s) in {t.area_name} were more likely not to attend than "
                f"{reference} people (odds ratio " + "; ".join(f"{r['level']} {r['odds_ratio']:.2f} ({ci(t, r['odds_ratio_lower'], r['odds_ratio_upper'])})"
                                                               for _, r in worse.iterrows()) + "), allowing for age, sex, deprivation and who referred them.")
    return f"Once referred, no ethnic group in {t.area_name} was clearly more likely not to attend than {reference} people."


def deprivation(t, table: str = "sii_rii") -> str | None:
    s = t[table]
    if not len(s) or s["sii"].isna().all():
        return None
    r = s.iloc[0]
    direction = "higher in more deprived areas" if r["sii"] < 0 else "higher in less deprived areas"
    clear = (r["sii_upper"] < 0) or (r["sii_lower"] > 0)
    return (f"Referral rates in {t.area_name} were {direction} (slope index of inequality {r['sii']:.1f} per 1,000 per year, "
            f"{ci(t, r['sii_lower'], r['sii_upper'], 1)}){'' if clear else ', though the gradient is not clear-cut'}.")


# --------------------------------------------------------------------------- 05 service delivery

XMR_COLUMNS = ("mean", "process_limit_lower", "process_limit_upper", "near_limit_lower", "near_limit_upper", "special_cause", "rule",
               "direction", "variation")


def select_xmr(values: pd.DataFrame, value: str = "n_referrals", period: str = "month", series: str = "unit",
               shift_points: int = 7, trend_points: int = 7) -> pd.DataFrame:
    """XmR statistics (Making Data Count rules) computed from the published monthly counts; a series
    with a suppressed month is left out (its limits would rest on a hidden value)."""
    from spstudy.methods.spc import xmr

    ok = values.groupby(series)[value].transform(lambda s: s.notna().all()).astype(bool)
    v = values[ok]
    if not len(v):  # every series has a suppressed month: the view has its columns and no rows
        return v.assign(**{c: [] for c in XMR_COLUMNS})
    x = xmr(v[[series, period, value]].reset_index(), value, period, by=[series], shift_points=shift_points, trend_points=trend_points)
    x = x.set_index("index")
    out = v.copy()
    for c in XMR_COLUMNS:
        out[c] = x.loc[out.index, c]
    out["special_cause"] = out["special_cause"].astype(bool)
    return out


def waiting(t, table: str = "wait_to_first_contact", area_code: str = "") -> str | None:
    w = t[table]
    a = w[(w["geo"] == area_code) & (w["provider"] == "All")]
    if not len(a) or a["median_days"].isna().all():
        return None
    r = a.iloc[0]
    s = (f"In {t.area_name}, half of the people seen had their first link-worker contact within {num(r['median_days'], 0)} days of "
         f"referral ({t.ci} CI {num(r['median_days_lower'], 0)} to {num(r['median_days_upper'], 0)}); {pct(r['pct_within_14_days'])} within "
         f"two weeks and {pct(r['pct_within_28_days'])} within four.")
    b = w[(w["level"] == "borough") & (w["provider"] == "All")].dropna(subset=["median_days"])
    if len(b) > 1:
        hi = b.sort_values("median_days").iloc[-1]
        s += f" The longest median wait is in {hi['unit']} ({num(hi['median_days'], 0)} days)."
    return s


def caseload(t, table: str = "caseload") -> str | None:
    c = t[table].dropna(subset=["annual_caseload_per_fte"])
    if not len(c):
        return None
    parts = [f"{r['unit']} {num(r['annual_caseload_per_fte'], 0)} ({num(r['annual_caseload_per_fte_lower'], 0)} to "
             f"{num(r['annual_caseload_per_fte_upper'], 0)}, {r['position']})" for _, r in c.iterrows()]
    return ("People seen per link worker in the year, against the review's 200 to 250 per link worker (p.51): " + "; ".join(parts)
            + ". Link-worker numbers are the review's, in the units it gives them.")


def sources(t, table: str = "sources", area_code: str = "") -> str | None:
    s = t[table]
    a = s[(s["geo"] == area_code) & (s["provider"] == "All")].set_index("source")
    if "self" not in a.index or "gp" not in a.index:
        return None
    return (f"Self-referrals are {pct(a.loc['self', 'pct_of_referrals'])} of {t.area_name}'s referrals; {pct(a.loc['gp', 'pct_dna'], 0)} of "
            f"GP referrals did not attend against {pct(a.loc['self', 'pct_dna'], 0)} of self-referrals.")


def special_cause(t, table: str = "monthly_referrals_xmr") -> str:
    x = t[table]
    if not len(x):
        return f"Monthly referrals in {t.area_name} could not be charted: a month's count is suppressed."
    sc = x[x["special_cause"].astype(bool)]
    if not len(sc):
        return (f"Monthly referrals in {t.area_name} show only common-cause variation over the year (12 points give trial limits, "
                "to be recalculated as data accrue).")
    items = [f"{r['unit']} {str(r['month'])[:7]} ({r['rule']})" for _, r in sc.iterrows()]
    return (f"Special-cause variation in monthly referrals (NHS Making Data Count rules): {names(items, 6)}. Twelve points give trial "
            "limits only.")


def unmet(t, table: str = "unmet_need", area_code: str = "") -> str | None:
    u = t[table]
    a = u[(u["geo"] == area_code) & (u["provider"] == "All") & (u["outcome"] == "seen")].dropna(subset=["pct_no_onward"])
    if not len(a):
        return None
    lo, hi = a.sort_values("pct_no_onward").iloc[0], a.sort_values("pct_no_onward").iloc[-1]
    return (f"Of people seen whose case closed, between {pct(lo['pct_no_onward'])} ({lo['reason']}) and {pct(hi['pct_no_onward'])} "
            f"({hi['reason']}) left with no onward connection to community support: the unmet need the review asks services to document.")


# ----------------------------------------------------------------------------- 03 evaluation

SETTING_NAMES = {"gp": "GP appointments", "ae": "A&E attendances", "elective": "Elective admissions"}
SETTING_LOWER = {"gp": "GP appointments", "ae": "A&E attendances", "elective": "elective admissions"}
ESTIMATOR_NAMES = {"matched_did": "the matched comparison", "trend_adjusted": "the trend-adjusted comparison", "none": "none"}


def _row(t, table, **kw):
    d = t[table]
    for k, v in kw.items():
        d = d[d[k].astype(str) == str(v)]
    return d.iloc[0] if len(d) else None


def effect(t, setting: str, window_months: int, cohort: str = "itt", table: str = "verdicts") -> str | None:
    """The headline for one outcome, as the verdict allows it (never a number for a not-credible one)."""
    r = _row(t, table, setting=setting, window_months=window_months, cohort=cohort)
    if r is None:
        return None
    name = SETTING_NAMES.get(setting, setting)
    who = "all referred people" if cohort == "itt" else "people seen by a link worker"
    v = str(r["verdict"])
    if v.startswith("not credible") or r["headline_estimator"] == "none" or pd.isna(r["rate_ratio"]):
        return (f"We do not report an effect of social prescribing on {SETTING_LOWER.get(setting, setting)} over {window_months} months for {who} in "
                f"{t.area_name}: the comparison group does not show what would have happened ({r['reason']})")
    change = 100 * (r["rate_ratio"] - 1)
    lo, hi = 100 * (r["rate_ratio_lower"] - 1), 100 * (r["rate_ratio_upper"] - 1)
    s = (f"{name} changed by {change:+.0f}% ({t.ci} CI {lo:+.0f}% to {hi:+.0f}%) over {window_months} months for {who} in {t.area_name}, "
         f"against {ESTIMATOR_NAMES.get(r['headline_estimator'], r['headline_estimator'])}.")
    if v == "credible":
        s += " The design's checks pass."
    else:
        s += f" This estimate is sensitive: {r['reason']}"
    return s


def naive_against_headline(t, setting: str, window_months: int, table: str = "estimates") -> str | None:
    e = t[table]
    e = e[(e["setting"] == setting) & (e["window_months"] == window_months) & (e["cohort"] == "itt")]
    naive = e[e["estimator"] == "naive"]
    head = e[e["headline"].astype(str).isin(["True", "yes", "1"])]
    if not len(naive) or not len(head) or pd.isna(head["rate_ratio"].iloc[0]):
        return None
    n, h = 100 * (naive["rate_ratio"].iloc[0] - 1), 100 * (head["rate_ratio"].iloc[0] - 1)
    s = (f"The raw before/after change in {SETTING_LOWER.get(setting, setting)} ({n:+.0f}%), the kind of figure services quote, "
         f"overstates the change against comparators ({h:+.0f}%)")
    if n < h < 0:
        s += f": about {100 * (n - h) / n:.0f}% of the raw fall would have happened anyway (regression to the mean)."
    else:
        s += "."
    return s


def balance(t, table: str = "balance_summary", threshold: float = 0.1) -> str:
    b = t[table]
    a = b[(b["sample"] == "Adjusted") & (b["matched_on"].astype(str).isin(["True", "yes"])) & (b["cohort"] == "itt")]
    u = b[(b["sample"] == "Unadjusted") & (b["matched_on"].astype(str).isin(["True", "yes"])) & (b["cohort"] == "itt")]
    if not len(a):
        return "Balance could not be summarised."
    r = a.iloc[0]
    k = int(r["n_at_or_above_threshold"])
    s = (f"After matching, the largest standardised difference among the {int(r['n_variables'])} matching variables is "
         f"{r['max_abs_smd']:.2f} ({r['variable_with_max']})" + (f"; before matching it was {u['max_abs_smd'].iloc[0]:.2f}" if len(u) else ""))
    s += f"; all are below {threshold:g}." if k == 0 else f"; {k} remain at or above {threshold:g}."
    return s


def rise_and_placebo(t, pretrend: str = "pretrend", placebo: str = "placebo") -> str | None:
    p = _row(t, pretrend, setting="gp", cohort="itt")
    q = _row(t, placebo, setting="gp", cohort="itt")
    if p is None:
        return None
    s = (f"GP use of referred people starts to rise against their comparators {abs(int(p['rise_onset_month']))} month(s) before referral; "
         f"the washout covers months {int(p['washout_first_month'])} to -1" +
         (", so the baseline already holds part of the rise" if str(p["rise_starts_before_washout"]) in ("True", "yes") else "") + ".")
    if q is not None and not pd.isna(q["rate_ratio"]):
        s += (f" Pretending referral happened {int(q['shift_months'])} months earlier, use in the {int(q['window_months'])} months before the real "
              f"referral was {q['rate_ratio']:.2f} times what the design expects ({t.ci} CI {q['rate_ratio_lower']:.2f} to {q['rate_ratio_upper']:.2f}): "
              "the pre-referral rise the washout leaves out.")
    return s


def e_values(t, table: str = "e_values") -> str | None:
    e = t[table]
    e = e[e["headline"].astype(str).isin(["True", "yes"]) & (e["cohort"] == "itt")]
    if not len(e):
        return None
    parts = [f"{SETTING_LOWER.get(r['setting'], r['setting'])} at {int(r['window_months'])} months {r['e_value']:.2f} "
             f"({r['e_value_ci']:.2f} for the confidence limit)" for _, r in e.iterrows() if not pd.isna(r["e_value"])]
    if not parts:
        return None
    return ("An unmeasured factor would have to be associated with both referral and the outcome by a rate ratio of at least "
            + "; ".join(parts) + " to explain the headline estimates away (E-values, VanderWeele & Ding 2017).")


def negative_control(t, table: str = "negative_control", window_months: int = 12) -> str:
    r = _row(t, table, window_months=window_months, cohort="itt")
    if r is None or str(r.get("status", "")) != "estimated" or pd.isna(r["rate_ratio"]):
        return "The negative-control outcome (elective admissions) is not available in this extract."
    ch = 100 * (r["rate_ratio"] - 1)
    s = (f"Elective admissions, which social prescribing should not change, changed by {ch:+.0f}% ({t.ci} CI {100 * (r['rate_ratio_lower'] - 1):+.0f}% "
         f"to {100 * (r['rate_ratio_upper'] - 1):+.0f}%) against the same comparators")
    s += ", consistent with no effect." if r["rate_ratio_lower"] <= 1 <= r["rate_ratio_upper"] else ": a warning that the comparison is biased."
    return s


def who_benefits(t, table: str = "subgroup_interactions") -> str | None:
    i = t[table].dropna(subset=["p_interaction_holm"])
    if not len(i):
        return None
    sig = i[i["p_interaction_holm"] < 0.05]
    if not len(sig):
        return (f"The effect does not differ clearly by ethnic group, deprivation, age or main reason for referral in {t.area_name} "
                f"(smallest Holm-adjusted interaction p = {i['p_interaction_holm'].min():.2f} over {int(i['n_tests'].iloc[0])} tests).")
    return ("The effect differs by " + names([f"{r['factor']} ({SETTING_NAMES.get(r['setting'], r['setting'])}, {int(r['window_months'])} "
                                               f"months; Holm-adjusted p = {r['p_interaction_holm']:.3f})" for _, r in sig.iterrows()]) + ".")


def power_statement(t, table: str = "power_mde", area_label: str = "All") -> str | None:
    m = t[table]
    m = m[(m["cohort"] == "itt") & (m["window_months"] == m["window_months"].max())]
    parts = []
    for setting in ("gp", "ae"):
        s = m[(m["setting"] == setting)]
        if not len(s):
            continue
        yes = s[s["powered_for_target"].astype(str).isin(["True", "yes"])]["group"].tolist()
        no = s[~s["powered_for_target"].astype(str).isin(["True", "yes"])]["group"].tolist()
        tgt = s["target_pct_change"].iloc[0]
        parts.append(f"a {abs(tgt):.0f}% fall in {SETTING_LOWER[setting]}: " + (f"detectable in {names(yes, 6)}" if yes else "detectable nowhere")
                     + (f", not in {names(no, 6)}" if no else ""))
    alpha = f"{100 * (1 - t.params['study']['confidence']):.3g}%"  # the MDE's test level is 1 - study.confidence
    return (f"Before any result: with 80% power at the {alpha} level, the data can show " + "; ".join(parts) + ".") if parts else None


def claims(t, table: str = "claims_vs_estimates") -> str | None:
    if table not in t or not len(t[table]):
        return None
    c = t[table]
    return " ".join(str(s) for s in c["statement"] if isinstance(s, str) and s)


def wellbeing(t, table: str = "wellbeing_attrition_adjusted") -> str | None:
    w = t[table]
    if not len(w):
        return None
    out = []
    for m in ("wemwbs_total", "swemwbs_metric", "ons4_life_satisfaction"):
        d = w[w["measure"] == m]
        cc = d[d["method"] == "complete case"]
        if not len(cc) or pd.isna(cc["mean_change"].iloc[0]):
            continue
        r = cc.iloc[0]
        mono = d[d["method"].astype(str).str.startswith("monotone")]
        s = f"{m.replace('_', ' ')}: {r['mean_change']:+.1f} points among people with a follow-up score"
        if len(mono) and not pd.isna(mono["bound_low"].iloc[0]):
            s += f", between {mono['bound_low'].iloc[0]:+.0f} and {mono['bound_high'].iloc[0]:+.0f} if those lost did no better"
        if not pd.isna(r.get("tipping_point_delta", np.nan)):
            s += f" (zero only if those lost changed {abs(r['tipping_point_delta']):.0f} points less)"
        out.append(s)
    return ("Wellbeing changed (no comparison group: change, not effect): " + "; ".join(out) + ".") if out else None


# ----------------------------------------------------------------------------- 04 SROI

def _prob(r) -> str:
    return str(r["prob_ratio_gt_1_text"])


def sroi_ratio(t, summary: str = "sroi_summary", mc: str = "sroi_monte_carlo") -> str | None:
    s, m = t[summary], t[mc]
    if not len(s) or not len(m):
        return None
    s, m = s.iloc[0], m.iloc[0]
    txt = (f"Social return in {t.area_name}: GBP {s['sroi_ratio']:.2f} of valued outcomes per GBP 1 invested at the central assumptions; "
           f"over {int(m['n']):,} Monte Carlo draws of every uncertain input the median is GBP {m['ratio_median']:.2f} ({t.ci} of draws "
           f"{m['ratio_lower']:.2f} to {m['ratio_upper']:.2f}) and the probability that the ratio exceeds 1 is {_prob(m)}. "
           "SROI is not cash saved: appointments avoided free capacity that other patients use, and wellbeing values are not money "
           "anyone receives.")
    if str(s.get("unvalued_outcomes", "") or "").strip():
        txt += f" {s['note']}"
    return txt


def payback(t, summary: str = "sroi_summary") -> str | None:
    s = t[summary]
    if not len(s):
        return None
    s = s.iloc[0]
    if str(s["payback_reached"]) in ("True", "yes"):
        return f"The valued outcomes repay the year's investment after {s['payback_months']:.0f} months (within the {int(s['benefit_period_months'])}-month benefit period)."
    return f"The valued outcomes do not repay the investment within the {int(s['benefit_period_months'])}-month benefit period (payback not reached)."
