"""Matched pre/post service-use evaluation: did social prescribing change GP and A&E use?

Design (issue 6; README "How the evaluation works"):

1. Cohort. Referred people: each person's first referral in the study period, in the area's
   services; index date = referral date. Comparators: registered people in the area's practices who
   were never referred, each given a pseudo-index date drawn from the referral dates (so their
   pre-window is measured in the same calendar months). Everyone must be registered for the
   whole longest pre-window and at the index date. Follow-up ends at deregistration, death or the
   data cut (exposure days). Intention to treat (ITT) = all referred; per protocol = seen.
2. Counting. Events and exposure in windows around the index date come from
   :mod:`spstudy.engine` (DuckDB by default; Spark for large data), never from pandas row joins.
3. Matching. Propensity score (unpenalised logistic regression) on age, sex, deprivation,
   ethnic group and prior use (GP and A&E rates per quarter of the *matching window*, months
   -12..-7 by default); greedy nearest-neighbour 1:k on the logit with a 0.2 SD caliper, exact on
   sex and PCN (:mod:`spstudy.matching`, MatchIt conventions). Balance before and after (SMD < 0.1).
4. Effects. Naive before/after in the referred, and the matched difference in differences between
   the *baseline window* (months -6..-4) and the post window: absolute (per 1,000 person-years,
   cluster bootstrap CI over matched sets) and the ratio of rate ratios from a Poisson GLM with log
   exposure offset and cluster-robust errors by matched set. Months -3..-1 are a washout: the spike
   in use that prompts a referral would otherwise inflate the baseline.

   Why the matching window and the baseline are disjoint: matching on the same (noisy) counts that
   form the DiD baseline picks comparators whose counts were high by chance, and they fall back
   afterwards; the DiD then understates the effect (regression to different means; Daw & Hatfield
   2018, Health Serv Res 53:4138). The conventional design (matching on every quarter and the last
   month of the year before, baseline = the whole year before) is reported as a sensitivity
   analysis; on the synthetic data, whose effect is known, it is biased towards no effect while the
   split-window design recovers the planted effect (tests/test_evaluation.py).
5. Checks. Event study (monthly rates -12..+11 months), placebo index 12 months earlier,
   comparison with NHS England's Universal Personalised Care expectations.

What matching cannot fix: it balances what is measured (prior use, age, sex, deprivation,
ethnicity) but not unmeasured reasons for referral (a crisis the GP saw but the record does not
show); people referred at a peak in use fall back anyway, and matching on the last month and
quarter of prior use only partly captures that. The placebo test and the event study show how
much such bias remains.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import engine as eng
from . import reference
from .contract import ETHNIC_TO_CENSUS5

DAYS_PER_MONTH = 30.4375
MEASURE_LABELS = {"ons4_life_satisfaction": "ONS4 life satisfaction (0-10)", "ons4_worthwhile": "ONS4 worthwhile (0-10)",
                  "ons4_happy": "ONS4 happiness (0-10)", "ons4_anxious": "ONS4 anxiety (0-10, lower is better)",
                  "wemwbs_total": "WEMWBS (14-70)", "swemwbs_metric": "SWEMWBS metric score (7-35)"}
QUARTERS = [("pre_q1", -365, -274), ("pre_q2", -273, -183), ("pre_q3", -182, -92), ("pre_q4", -91, -1), ("pre_last_month", -30, -1)]


def month_days(m0: int, m1: int) -> tuple[int, int]:
    """Day offsets of months m0..m1 (inclusive; month -1 = the 30.44 days before the index date)."""
    return int(round(DAYS_PER_MONTH * m0)), int(round(DAYS_PER_MONTH * (m1 + 1))) - 1


def design_windows(params) -> list[tuple[str, int, int]]:
    """Every window the evaluation counts: quarters of the year before, last month, the matching
    window's quarters, the DiD baseline, and pre/post windows of each length."""
    e = params.evaluation
    b0, b1 = month_days(*e.baseline_window_months)
    m0, _ = e.matching_window_months
    n_q = (e.matching_window_months[1] - m0 + 1) // 3
    mq = [(f"match_q{i + 1}", *month_days(m0 + 3 * i, m0 + 3 * i + 2)) for i in range(n_q)]
    return QUARTERS + mq + [("baseline", b0, b1)] + windows_for(e.windows_months)


def ps_covariates(params) -> list[str]:
    """Propensity-score covariates of the main design: demographics + use per quarter of the matching window."""
    e = params.evaluation
    n_q = (e.matching_window_months[1] - e.matching_window_months[0] + 1) // 3
    return ["age", "sex", "imd_q", "ethnic_group"] + [f"{s}_match_q{i + 1}_rate" for s in ("gp", "ae") for i in range(n_q)]


def windows_for(months: list[int]) -> list[tuple[str, int, int]]:
    """Pre and post windows of ``months`` months (pre: days -d..-1, post: days 0..d-1, d = round(30.4375 m))."""
    out = []
    for m in months:
        d = int(round(DAYS_PER_MONTH * m))
        out += [(f"pre_{m}m", -d, -1), (f"post_{m}m", 0, d - 1)]
    return out


def _ethnic_group(code: pd.Series) -> pd.Series:
    g = code.map(ETHNIC_TO_CENSUS5)
    g = g.where(code != "Z", "Not stated")
    return g.fillna("Not recorded")


def build_cohort(ex, params, area: str, seed: int = 20231) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Referred and comparator index rows for ``area``, and the cohort flow (counts at each step).

    Returns (index, flow). ``index`` columns: index_id, person_id, index_date, follow_start,
    follow_end, treated (0/1), seen (0/1, referred only), referral_id, age, sex, ethnic_group,
    imd_quintile, pcn_code, practice_code.
    """
    st = params.study
    codes = reference.borough_codes(area)
    p = ex.persons.copy()
    gp = reference.gp_practices()[["practice_code", "pcn_code", "borough_code"]]
    p = p.merge(gp, on="practice_code", how="left", validate="many_to_one")
    imd = reference.imd2025()[["lsoa21_code", "imd2025_imd_decile"]]
    p = p.merge(imd, on="lsoa21_code", how="left", validate="many_to_one")
    p["imd_quintile"] = ((p["imd2025_imd_decile"] + 1) // 2).astype("Int64")
    p["ethnic_group"] = _ethnic_group(p["ethnicity"])
    p["data_start"] = pd.Timestamp(st.data_start)
    p["follow_start"] = p[["registration_start", "data_start"]].max(axis=1)
    p["follow_end"] = p["registration_end"].fillna(pd.Timestamp(st.data_end)).clip(upper=pd.Timestamp(st.data_end))
    lookback = max(int(round(DAYS_PER_MONTH * max(params.evaluation.windows_months))), -month_days(*params.evaluation.matching_window_months)[0])
    flow = []

    r = ex.referrals[ex.referrals["borough_code"].isin(codes)].sort_values(["person_id", "referral_date", "referral_id"])
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

    ever = set(ex.referrals["person_id"])
    c = p[~p["person_id"].isin(ever) & p["borough_code"].isin(codes)].copy()
    flow.append(("Registered people in the area's practices never referred (comparator pool)", len(c)))
    rng = np.random.default_rng(seed)
    c = c.sort_values("person_id").reset_index(drop=True)
    c["index_date"] = t["index_date"].to_numpy()[rng.integers(0, len(t), size=len(c))] if len(t) else pd.NaT
    ok = (c["follow_start"] <= c["index_date"] - pd.Timedelta(days=lookback)) & (c["follow_end"] >= c["index_date"])
    c = c[ok]
    n_pool = params.evaluation.matching.comparator_pool_per_referral * len(t)
    if len(c) > n_pool:
        c = c.iloc[np.sort(rng.choice(len(c), size=n_pool, replace=False))]
    flow.append((f"Eligible comparators with a pseudo-index date (at most {params.evaluation.matching.comparator_pool_per_referral} per referred person)", len(c)))
    c = c.assign(treated=0, seen=0, referral_id=None, outcome=None, closure_date=pd.NaT)

    idx = pd.concat([t, c], ignore_index=True)
    idx["age"] = idx["index_date"].dt.year - idx["birth_year"]
    idx["index_id"] = np.arange(len(idx))
    cols = ["index_id", "person_id", "index_date", "follow_start", "follow_end", "treated", "seen", "referral_id", "closure_date",
            "age", "sex", "ethnic_group", "imd_quintile", "pcn_code", "practice_code"]
    idx = idx[cols]
    if idx["imd_quintile"].isna().any():
        raise ValueError(f"{int(idx['imd_quintile'].isna().sum())} cohort members have an LSOA without IMD 2025")
    return idx.reset_index(drop=True), pd.DataFrame(flow, columns=["step", "n"])


def count_windows(activity, index: pd.DataFrame, windows, engine: str = "duckdb") -> pd.DataFrame:
    """Wide table: one row per index_id with ``<setting>_<window>_events`` and ``<window>_days``."""
    cols = ["index_id", "person_id", "index_date", "follow_start", "follow_end"]
    return eng.window_counts_wide(activity, index[cols], windows, engine=engine)


def add_features(index: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Join window counts and derive prior-use covariates (events per 30 days of exposure per quarter)."""
    d = index.merge(counts, on="index_id", how="left", validate="one_to_one")
    quarters = [c.removesuffix("_days") for c in d.columns if c.endswith("_days") and (c.startswith("pre_q") or c.startswith("match_q") or c == "pre_last_month_days")]
    for s in ("gp", "ae"):
        for q in quarters:
            days = d[f"{q}_days"].where(d[f"{q}_days"] > 0)
            d[f"{s}_{q}_rate"] = (d[f"{s}_{q}_events"] / days * 30).fillna(0.0)
    d["age_band"] = pd.cut(d["age"], [-1, 17, 29, 44, 64, 74, 200], labels=["0-17", "18-29", "30-44", "45-64", "65-74", "75+"]).astype(str)
    d["imd_q"] = d["imd_quintile"].astype(int).astype(str)
    return d


# The conventional design (sensitivity analysis): every quarter of the year before and the last month.
PS_COVARIATES = ["age", "sex", "imd_q", "ethnic_group"] + [f"{s}_{q}_rate" for s in ("gp", "ae") for q, _, _ in QUARTERS]


def match_cohort(data: pd.DataFrame, params, covariates: list[str] | None = None):
    """Propensity score and nearest-neighbour matching (parameters evaluation.matching).

    Returns (data with ps, logit_ps, weight, subclass, matched flag; MatchResult).
    """
    from .matching import EstimandChangeWarning, nearest_neighbour_match, propensity_score

    m = params.evaluation.matching
    covariates = covariates or ps_covariates(params)
    d = data.copy()
    ps = propensity_score(d, "treated", covariates)
    d["ps"], d["logit_ps"] = ps["ps"].to_numpy(), ps["logit_ps"].to_numpy()
    exact = [c for c in m.exact]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EstimandChangeWarning)
        res = nearest_neighbour_match(d, "treated", "ps", k=m.k, caliper=m.caliper_sd, caliper_scale="sd", distance="logit",
                                      replace=m.replace, exact=exact, order="largest", id_col="index_id")
    u = res.units.set_index("id")
    d["weight"] = d["index_id"].map(u["weight"]).fillna(0.0)
    d["matched"] = d["weight"] > 0
    pairs = res.pairs
    # matched set for every unit (controls may sit in several sets when matching with replacement)
    d["subclass"] = d["index_id"].map(pairs.drop_duplicates("treated_id").set_index("treated_id")["subclass"])
    return d, res


def sample_sizes(res, flow: pd.DataFrame) -> pd.DataFrame:
    """Cohort flow followed by MatchIt's sample-size table and the treated lost to the caliper."""
    ss = res.sample_sizes.pivot_table(index="status", columns="group", values="n", aggfunc="sum").reset_index()
    ss = ss.rename(columns={"status": "step"})
    extra = pd.DataFrame([
        {"step": "Treated lost to the caliper", "Treated": res.n_treated_lost_to_caliper},
        {"step": "Treated with no comparator in their exact stratum", "Treated": res.n_treated_no_controls_in_stratum},
        {"step": "Treated left when the stratum's pool ran out", "Treated": res.n_treated_pool_exhausted},
    ])
    return flow, pd.concat([ss, extra], ignore_index=True)


def _pairs_long(d: pd.DataFrame, pairs: pd.DataFrame, setting: str, months: int, cohort: str, baseline: str = "baseline") -> pd.DataFrame:
    """Long data (one row per unit-in-set x period) for the DiD: set, treated, post, events, days, weight."""
    t = d.set_index("index_id")
    if cohort == "per_protocol":
        pairs = pairs[pairs["treated_id"].map(t["seen"]) == 1]
    k_in_set = pairs.groupby("subclass")["control_id"].transform("size")
    rows = []
    for who, ids, w in (("t", pairs.drop_duplicates("subclass")["treated_id"], None), ("c", pairs["control_id"], 1.0 / k_in_set)):
        sub = pairs.drop_duplicates("subclass") if who == "t" else pairs
        for period, win in ((0, baseline), (1, f"post_{months}m")):
            rows.append(pd.DataFrame({
                "subclass": sub["subclass"].to_numpy(),
                "treated": 1 if who == "t" else 0,
                "post": period,
                "events": t.loc[ids.to_numpy(), f"{setting}_{win}_events"].to_numpy(),
                "days": t.loc[ids.to_numpy(), f"{win}_days"].to_numpy(),
                "weight": 1.0 if w is None else np.asarray(w, dtype=float),
            }))
    out = pd.concat(rows, ignore_index=True)
    return out[out["days"] > 0]


def _rate(events, days):
    return 1000 * 365.25 * events / days if days > 0 else np.nan


def did(d: pd.DataFrame, pairs: pd.DataFrame, setting: str, months: int, cohort: str = "itt", boot: int = 500, seed: int = 1,
        baseline: str = "baseline") -> dict:
    """Matched difference in differences for one setting, post window and cohort.

    ``baseline`` names the pre-period window ("baseline" in the main design; "pre_12m" etc. in the
    conventional design). Rates per 1,000 person-years before and after in each group (matching weights), the absolute
    DiD = (post_T - pre_T) - (post_C - pre_C) with a cluster bootstrap 95% CI over matched sets,
    and the ratio of rate ratios exp(b_treated:post) from a Poisson GLM with log(person-years)
    offset, frequency weights = matching weights, cluster-robust (sandwich) errors by matched set.
    """
    import statsmodels.api as sm

    L = _pairs_long(d, pairs, setting, months, cohort, baseline)
    out = {"setting": setting, "window_months": months, "cohort": cohort, "baseline": baseline, "n_treated": int(L.loc[L.treated == 1, "subclass"].nunique())}
    agg = L.assign(we=L.events * L.weight, wd=L.days * L.weight).groupby(["treated", "post"])[["we", "wd"]].sum()
    for (tr, po), r in agg.iterrows():
        out[f"rate_{'treated' if tr else 'comparator'}_{'post' if po else 'pre'}"] = _rate(r.we, r.wd)
    out["did_per_1000py"] = (out["rate_treated_post"] - out["rate_treated_pre"]) - (out["rate_comparator_post"] - out["rate_comparator_pre"])
    # cluster bootstrap over matched sets
    L["cell"] = L["treated"] * 2 + L["post"]
    S = L.assign(we=L.events * L.weight, wd=L.days * L.weight).pivot_table(index="subclass", columns="cell", values=["we", "wd"], aggfunc="sum", fill_value=0)
    we, wd = S["we"].reindex(columns=range(4), fill_value=0).to_numpy(), S["wd"].reindex(columns=range(4), fill_value=0).to_numpy()
    rng = np.random.default_rng(seed)
    n = len(S)
    draws = rng.integers(0, n, size=(boot, n))
    counts = np.apply_along_axis(lambda r: np.bincount(r, minlength=n), 1, draws)
    E, D = counts @ we, counts @ wd
    R = 1000 * 365.25 * E / np.where(D > 0, D, np.nan)
    bd = (R[:, 3] - R[:, 2]) - (R[:, 1] - R[:, 0])
    out["did_lower"], out["did_upper"] = np.nanpercentile(bd, [2.5, 97.5])
    # ratio of rate ratios (Poisson GLM, cluster-robust)
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"], "post": L["post"], "treated_post": L["treated"] * L["post"]})
    w = L["weight"].to_numpy()
    kw = {} if np.allclose(w, 1.0) else {"var_weights": w}  # ATT weights only matter for k > 1 or matching with replacement
    model = sm.GLM(L["events"].to_numpy(), X, family=sm.families.Poisson(), offset=np.log(L["days"].to_numpy() / 365.25), **kw)
    groups = pd.factorize(L["subclass"])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if groups.max() >= 2:  # cluster-robust errors need at least 3 matched sets (small-sample correction)
            fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
            b, se = fit.params["treated_post"], fit.bse["treated_post"]
        else:
            fit = model.fit()
            b, se = fit.params["treated_post"], np.nan
    out["ratio_of_rate_ratios"], out["rrr_lower"], out["rrr_upper"] = np.exp(b), np.exp(b - 1.96 * se), np.exp(b + 1.96 * se)
    out["rrr_p_value"] = float(fit.pvalues["treated_post"])
    return out


def naive_before_after(d: pd.DataFrame, setting: str, months: int, cohort: str = "itt") -> dict:
    """The raw before/after figure boroughs quote: referred people's rate after vs before (no comparison).

    Rate ratio post/pre with a log-normal interval on the summed counts (Poisson; ignores
    over-dispersion and, above all, regression to the mean)."""
    t = d[(d["treated"] == 1) & ((d["seen"] == 1) if cohort == "per_protocol" else True)]
    e0, e1 = t[f"{setting}_pre_{months}m_events"].sum(), t[f"{setting}_post_{months}m_events"].sum()
    d0, d1 = t[f"pre_{months}m_days"].sum(), t[f"post_{months}m_days"].sum()
    r0, r1 = _rate(e0, d0), _rate(e1, d1)
    rr = r1 / r0
    se = np.sqrt(1 / max(e0, 1) + 1 / max(e1, 1))
    return {"setting": setting, "window_months": months, "cohort": cohort, "n_referred": len(t), "events_pre": int(e0), "events_post": int(e1),
            "rate_pre": r0, "rate_post": r1, "pct_change": 100 * (rr - 1), "rate_ratio": rr,
            "rr_lower": rr * np.exp(-1.96 * se), "rr_upper": rr * np.exp(1.96 * se)}


def effects(d: pd.DataFrame, pairs: pd.DataFrame, months_list: list[int], boot: int = 500, conventional: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Naive and matched DiD estimates for GP and A&E, each window, ITT and per protocol.
    ``conventional``: the DiD baseline is the pre-window of the same length (pre_6m, pre_12m)."""
    naive, matched = [], []
    for s in ("gp", "ae"):
        for m in months_list:
            for c in ("itt", "per_protocol"):
                naive.append(naive_before_after(d, s, m, c))
                matched.append(did(d, pairs, s, m, c, boot=boot, baseline=f"pre_{m}m" if conventional else "baseline"))
    return pd.DataFrame(naive), pd.DataFrame(matched)


def side_by_side(naive: pd.DataFrame, matched: pd.DataFrame, conventional: pd.DataFrame | None = None) -> pd.DataFrame:
    """Naive % change beside the matched estimate (% change = 100 x (ratio of rate ratios - 1)) and,
    if given, the conventional matched design (sensitivity)."""
    m = matched.assign(matched_pct_change=100 * (matched["ratio_of_rate_ratios"] - 1), matched_lower=100 * (matched["rrr_lower"] - 1),
                       matched_upper=100 * (matched["rrr_upper"] - 1))
    n = naive.assign(naive_lower=100 * (naive["rr_lower"] - 1), naive_upper=100 * (naive["rr_upper"] - 1))
    keys = ["setting", "window_months", "cohort"]
    out = n[keys + ["n_referred", "pct_change", "naive_lower", "naive_upper"]].merge(
        m[keys + ["n_treated", "matched_pct_change", "matched_lower", "matched_upper", "did_per_1000py", "did_lower", "did_upper"]], on=keys)
    if conventional is not None:
        c = conventional.assign(conventional_pct_change=100 * (conventional["ratio_of_rate_ratios"] - 1),
                                conventional_lower=100 * (conventional["rrr_lower"] - 1), conventional_upper=100 * (conventional["rrr_upper"] - 1))
        out = out.merge(c[keys + ["conventional_pct_change", "conventional_lower", "conventional_upper"]], on=keys)
    return out.rename(columns={"pct_change": "naive_pct_change", "n_treated": "n_matched_referred"})


def event_study(activity, d: pd.DataFrame, pairs: pd.DataFrame, engine: str = "duckdb", months: int = 12) -> pd.DataFrame:
    """Monthly GP and A&E rates per 1,000 person-years from -months to +months-1 around the index
    date for matched referred people and their comparators (comparators weighted by 1/k)."""
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


def wellbeing_change(wellbeing: pd.DataFrame, referral_ids, thresholds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired change and attrition for every measure present (ONS4 items, WEMWBS, SWEMWBS metric).

    Uses :mod:`spstudy.wellbeing`; thresholds from parameters evaluation.wellbeing_thresholds."""
    from . import wellbeing as wb

    w = wellbeing[wellbeing["referral_id"].isin(set(referral_ids))]
    if w.empty:
        return pd.DataFrame(), pd.DataFrame()
    sc = wb.score_instruments(w[["referral_id", "timepoint", "instrument", "item", "score"]])
    rows, att = [], []
    for measure in sorted(sc["measure"].unique()):
        if measure == "swemwbs_raw":
            continue
        th = thresholds.wemwbs if measure == "wemwbs_total" else thresholds.swemwbs if measure == "swemwbs_metric" else thresholds.ons4
        try:
            pc = wb.paired_change(sc, measure, threshold=th)
        except ValueError:
            continue
        rows.append(pc.assign(measure=measure))
        try:
            att.append(wb.attrition(sc, measure).assign(measure=measure))
        except ValueError:
            pass
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), (pd.concat(att, ignore_index=True) if att else pd.DataFrame())


def upc_comparison(d: pd.DataFrame, matched: pd.DataFrame, upc) -> pd.DataFrame:
    """Uptake and 12-month effects against NHS England Universal Personalised Care expectations
    (80% take up their social prescription; 14% fewer GP appointments; 12% fewer A&E attendances)."""
    t = d[d["treated"] == 1]
    m = matched[(matched["cohort"] == "itt")].set_index(["setting", "window_months"])
    w = max(matched["window_months"])
    rows = [
        {"measure": "Take up (share of referred people seen)", "expected": 100 * upc.uptake, "observed": 100 * t["seen"].mean(), "lower": np.nan, "upper": np.nan},
        {"measure": f"Change in GP appointments, matched, {w} months (%)", "expected": -100 * upc.gp_reduction,
         "observed": 100 * (m.loc[("gp", w), "ratio_of_rate_ratios"] - 1), "lower": 100 * (m.loc[("gp", w), "rrr_lower"] - 1), "upper": 100 * (m.loc[("gp", w), "rrr_upper"] - 1)},
        {"measure": f"Change in A&E attendances, matched, {w} months (%)", "expected": -100 * upc.ae_reduction,
         "observed": 100 * (m.loc[("ae", w), "ratio_of_rate_ratios"] - 1), "lower": 100 * (m.loc[("ae", w), "rrr_lower"] - 1), "upper": 100 * (m.loc[("ae", w), "rrr_upper"] - 1)},
    ]
    return pd.DataFrame(rows)


def run(ex, params, area: str, engine: str = "duckdb", boot: int = 500, seed: int = 20231) -> dict:
    """The whole evaluation for ``area``; returns a dict of tidy tables (and the matched data)."""
    months = params.evaluation.windows_months
    index, flow = build_cohort(ex, params, area, seed=seed)
    if index["treated"].sum() == 0:
        raise ValueError(f"no referred people in {area} meet the cohort criteria")
    post_from = params.evaluation.post_window_from
    counts = count_windows(ex.activity, index, design_windows(params), engine)
    features = add_features(index, counts)
    data, res = match_cohort(features, params)
    if post_from == "closure":
        data = _post_from_closure(ex.activity, data, res.pairs, months, engine, params)
    from .matching import balance_table

    # balance on the matching covariates, and on prior use in the baseline and the whole year before
    extra = [f"{s}_{q}_rate" for s in ("gp", "ae") for q in ("pre_q3", "pre_q4", "pre_last_month")]
    bal = balance_table(data, "treated", ps_covariates(params) + extra + ["ps"], weights="weight", threshold=params.evaluation.smd_threshold)
    naive, matched = effects(data, res.pairs, months, boot=boot)
    # sensitivity: the conventional design (match on every quarter + last month, baseline = same-length pre-window)
    cdata, cres = match_cohort(features, params, PS_COVARIATES)
    _, conv = effects(cdata, cres.pairs, months, boot=boot, conventional=True)
    return {"index": index, "flow": flow, "data": data, "match": res, "balance": bal, "naive": naive, "matched": matched,
            "conventional": conv, "side_by_side": side_by_side(naive, matched, conv)}


def _post_from_closure(activity, data, pairs, months, engine, params):
    """Recount post windows from each referred person's closure date (comparators shifted by their
    matched referred person's referral-to-closure interval; open cases use the data cut)."""
    t = data.set_index("index_id")
    shift = (t["closure_date"].fillna(pd.Timestamp(params.study.data_end)) - t["index_date"]).dt.days.where(t["treated"] == 1)
    cs = pairs.drop_duplicates("control_id").set_index("control_id")["treated_id"].map(shift)
    shift = shift.fillna(cs).fillna(0).astype(int)
    idx = data[["index_id", "person_id", "index_date", "follow_start", "follow_end"]].copy()
    idx["index_date"] = idx["index_date"] + pd.to_timedelta(idx["index_id"].map(shift), unit="D")
    post = [w for w in windows_for(months) if w[0].startswith("post")]
    c = count_windows(activity, idx, post, engine)
    out = data.drop(columns=[c_ for c_ in c.columns if c_ != "index_id"]).merge(c, on="index_id")
    return out


def placebo(ex, params, area: str, engine: str = "duckdb", shift_months: int | None = None, months: int = 6, boot: int = 300, seed: int = 20231) -> pd.DataFrame:
    """Placebo test: pretend the index date was ``shift_months`` earlier, re-match on use before the
    fake date, estimate the DiD over the following ``months`` (which end before the real referral).
    A ratio near 1 means the design is not producing effects where none can exist."""
    shift = int(round(DAYS_PER_MONTH * (shift_months or params.evaluation.placebo_shift_months)))
    index, _ = build_cohort(ex, params, area, seed=seed)
    index = index.copy()
    index["index_date"] = index["index_date"] - pd.Timedelta(days=shift)
    pre_days = -month_days(*params.evaluation.matching_window_months)[0]
    # only index rows whose fake matching window lies wholly inside the data and registration
    index = index[index["follow_start"] <= index["index_date"] - pd.Timedelta(days=pre_days)].reset_index(drop=True)
    wins = {w[0]: w for w in design_windows(params) + windows_for([months])}
    counts = count_windows(ex.activity, index, list(wins.values()), engine)
    data = add_features(index, counts)
    data, res = match_cohort(data, params)
    rows = [did(data, res.pairs, s, months, "itt", boot=boot) for s in ("gp", "ae")]
    return pd.DataFrame(rows).assign(placebo_shift_months=shift_months or params.evaluation.placebo_shift_months)


def naive_vs_matched_plot(sbs: pd.DataFrame):
    """Forest plot: naive before/after % change beside the matched DiD % change, with 95% intervals."""
    from .figures import forest_plot, tidy_ratio_axis

    rows = []
    names = {"gp": "GP", "ae": "A&E"}
    for _, r in sbs.iterrows():
        lab = f"{names[r['setting']]} {r['window_months']}m {'ITT' if r['cohort'] == 'itt' else 'seen'}"
        rows.append({"label": f"{lab}: naive", "est": 1 + r["naive_pct_change"] / 100, "lo": 1 + r["naive_lower"] / 100, "hi": 1 + r["naive_upper"] / 100, "kind": "Naive before/after"})
        rows.append({"label": f"{lab}: matched", "est": 1 + r["matched_pct_change"] / 100, "lo": 1 + r["matched_lower"] / 100, "hi": 1 + r["matched_upper"] / 100, "kind": "Matched DiD"})
    fig = forest_plot(pd.DataFrame(rows), "label", "est", "lo", "hi", "Change in use after referral: naive vs matched",
                      "Rate ratio (after / before; matched: ratio of rate ratios), log scale", ref=1.0, log=True, group="kind")
    return tidy_ratio_axis(fig, legend="outside")


def event_study_plot(es: pd.DataFrame):
    """Monthly rates per 1,000 person-years for referred and matched comparators, GP and A&E panels."""
    import matplotlib.pyplot as plt

    from .figures import OKABE_ITO

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (s, name) in zip(axes, (("gp", "GP appointments"), ("ae", "A&E attendances"))):
        for i, (g, d) in enumerate(es[es["setting"] == s].groupby("group", sort=True)):
            ax.plot(d["month"], d["rate_per_1000py"], marker="o", ms=3, color=OKABE_ITO[4 if g == "Referred" else 0], label=g)
        ax.axvline(-0.5, color="#777777", linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("Months from referral (index date)")
        ax.set_ylabel("Rate per 1,000 person-years")
        ax.legend(fontsize=8)
    fig.suptitle("Event study: monthly use around referral", fontsize=11)
    fig.tight_layout()
    return fig
