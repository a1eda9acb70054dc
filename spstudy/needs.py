"""Population needs assessment by ward: profiles, a composite need index, referral rates and
ratios, outreach candidates and link-worker workforce coverage.

Denominators are real open data (``spstudy.reference``): Census 2021 ward figures built from output
areas, ONS mid-2020 estimates apportioned to 2022 wards for age, IMD 2025 (population-weighted from
LSOAs) for deprivation. Each function states its units, denominators and method source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import reference, stats

AGE_BANDS = ["0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54",
             "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90+"]

INDICATORS = {
    # name: (census table, category codes summed, unit, description)
    "pct_bad_health": ("TS037", ["health_in_general_4a-003"], "Bad or very bad general health (% residents), Census 2021 TS037"),
    "pct_disabled": ("TS038", ["disability_3a-disabled_under_the_equality_act"], "Disabled under the Equality Act (% residents), Census 2021 TS038"),
    "pct_poor_english": ("TS029", ["english_proficiency_4a-003"], "Cannot speak English well or at all (% residents aged 3+), Census 2021 TS029"),
    "pct_main_language_not_english": ("TS029", ["english_proficiency_4a-002", "english_proficiency_4a-003"], "Main language not English (% residents aged 3+), Census 2021 TS029"),
    "pct_household_no_english": ("TS025", ["hh_language-004"], "No one in household has English as a main language (% households), Census 2021 TS025"),
    "pct_unpaid_carers": ("TS039", ["is_carer_5a-002", "is_carer_5a-003", "is_carer_5a-004"], "Provides unpaid care (% residents aged 5+), Census 2021 TS039"),
    "pct_born_outside_uk": ("TS004", ["country_of_birth_3a-born_outside_the_uk"], "Born outside the UK (% residents), Census 2021 TS004"),
    "pct_female": ("TS008", ["sex-female"], "Female (% residents), Census 2021 TS008"),
    "pct_asian": ("TS021", ["ethnic_group_tb_6a-001"], "Asian, Asian British or Asian Welsh (% residents), Census 2021 TS021"),
    "pct_black": ("TS021", ["ethnic_group_tb_6a-002"], "Black, Black British, Black Welsh, Caribbean or African (% residents), Census 2021 TS021"),
    "pct_mixed": ("TS021", ["ethnic_group_tb_6a-003"], "Mixed or Multiple ethnic groups (% residents), Census 2021 TS021"),
    "pct_white": ("TS021", ["ethnic_group_tb_6a-004"], "White (% residents), Census 2021 TS021"),
    "pct_other_ethnic": ("TS021", ["ethnic_group_tb_6a-005"], "Other ethnic group (% residents), Census 2021 TS021"),
}
OTHER_INDICATORS = {
    "residents": "Usual residents, Census 2021 TS001 (sum of OAs, best-fit to 2022 wards)",
    "pct_aged_65_plus": "Aged 65 and over (% population), ONS mid-2020 estimates apportioned to 2022 wards",
    "pct_aged_0_15": "Aged 0-14 (% population), ONS mid-2020 estimates apportioned to 2022 wards",
    "imd2025_score": "IMD 2025 score, mean of LSOAs weighted by Census 2021 residents (higher = more deprived), MHCLG",
    "imd2025_pct_decile1_2": "Residents in the 20% most deprived LSOAs in England (%), IMD 2025",
    "imd2019_rank": "IMD 2019 rank, population-weighted mean of LSOA ranks (1 = most deprived of 32,844)",
}


def ward_indicators(area: str = "ncl") -> pd.DataFrame:
    """One row per ward with the needs indicators (percentages 0-100), for ``area``.

    Columns: ward22_code, ward22_name, borough_code, borough_name, residents, then every key of
    INDICATORS and OTHER_INDICATORS. Sources: see INDICATORS / OTHER_INDICATORS descriptions.
    """
    cw = reference.census_ward()
    wards = reference.wards()
    out = wards.copy()
    for name, (_table, cats, _desc) in INDICATORS.items():
        v = cw[cw["category_code"].isin(cats)].groupby("ward22_code")["percent"].sum()
        out[name] = out["ward22_code"].map(v)
    pop = reference.census_population()
    out["residents"] = out["ward22_code"].map(pop.set_index("ward22_code")["residents"])
    age = reference.population_ward_age()
    tot = age.groupby("ward22_code")["population"].sum()
    old = age[age["age_band"].isin(AGE_BANDS[13:])].groupby("ward22_code")["population"].sum()
    young = age[age["age_band"].isin(AGE_BANDS[:3])].groupby("ward22_code")["population"].sum()
    out["pct_aged_65_plus"] = out["ward22_code"].map(100 * old / tot)
    out["pct_aged_0_15"] = out["ward22_code"].map(100 * young / tot)
    dep = reference.ward_deprivation().set_index("ward22_code")
    out["imd2025_score"] = out["ward22_code"].map(dep["imd2025_score_popweighted_mean"])
    out["imd2025_pct_decile1_2"] = out["ward22_code"].map(dep["imd2025_pct_residents_in_national_decile1_2"])
    out["imd2019_rank"] = out["ward22_code"].map(dep["imd2019_rank_popweighted_mean"])
    missing = out.columns[out.isna().any()].tolist()
    if missing:
        raise ValueError(f"reference data incomplete: wards without {missing}")
    out = out[out["borough_code"].isin(reference.borough_codes(area))]
    return out.sort_values(["borough_name", "ward22_name"]).reset_index(drop=True)


def indicator_dictionary() -> pd.DataFrame:
    rows = [{"indicator": k, "description": v[2]} for k, v in INDICATORS.items()]
    rows += [{"indicator": k, "description": v} for k, v in OTHER_INDICATORS.items()]
    return pd.DataFrame(rows)


def need_index(indicators: pd.DataFrame, weights: dict[str, float], reference_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Composite need index for social prescribing: weighted mean of component z-scores.

    Each component is standardised against all NCL wards (``reference_frame``, default all 107), so
    borough packs share one scale: z = (x - mean_NCL) / sd_NCL. Index = sum(w_k z_k) with weights
    summing to 1 (parameters ``needs.need_index_weights``). Higher = more need. Returns the input
    with ``need_index``, ``need_rank`` (1 = highest need within the frame given) and ``need_quintile``
    (1 = highest need fifth of NCL wards).
    """
    ref = reference_frame if reference_frame is not None else ward_indicators("ncl")
    unknown = [k for k in weights if k not in ref.columns]
    if unknown:
        raise ValueError(f"need index weights name unknown indicators: {unknown}")
    out = indicators.copy()
    idx = np.zeros(len(out))
    ref_idx = np.zeros(len(ref))
    for k, w in weights.items():
        mu, sd = ref[k].mean(), ref[k].std(ddof=0)
        idx += w * (out[k].to_numpy() - mu) / sd
        ref_idx += w * (ref[k].to_numpy() - mu) / sd
    out["need_index"] = idx
    out["need_rank"] = out["need_index"].rank(ascending=False, method="first").astype(int)
    cuts = np.quantile(ref_idx, [0.2, 0.4, 0.6, 0.8])
    out["need_quintile"] = 5 - np.searchsorted(cuts, idx, side="right")
    return out


def need_index_sensitivity(indicators: pd.DataFrame, weights: dict[str, float], draws: int = 500, concentration: float = 20.0,
                           seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How much the ward ranking depends on the weights.

    (1) Random weights from a Dirichlet distribution centred on the chosen weights (concentration
    ``concentration`` x weights): each ward's median rank and 5th-95th percentile of rank, and the
    share of draws in which it is in the top fifth. (2) Leave one component out (weights renormalised):
    Spearman correlation of the ranking with the base ranking.
    Returns (ward table, component table).
    """
    rng = np.random.default_rng(seed)
    base = need_index(indicators, weights)
    keys = list(weights)
    alpha = np.array([max(weights[k], 1e-3) for k in keys]) * concentration
    ws = rng.dirichlet(alpha, size=draws)
    ref = ward_indicators("ncl")
    z = np.column_stack([(indicators[k] - ref[k].mean()) / ref[k].std(ddof=0) for k in keys])
    scores = z @ ws.T  # wards x draws
    ranks = (-scores).argsort(axis=0).argsort(axis=0) + 1
    top = max(1, int(round(len(indicators) / 5)))
    wards = base[["ward22_code", "ward22_name", "borough_name", "need_rank"]].copy()
    wards["rank_median"] = np.median(ranks, axis=1)
    wards["rank_p05"] = np.percentile(ranks, 5, axis=1)
    wards["rank_p95"] = np.percentile(ranks, 95, axis=1)
    wards["pct_draws_top_fifth"] = 100 * (ranks <= top).mean(axis=1)
    comps = []
    for k in keys:
        w2 = {j: weights[j] for j in keys if j != k}
        s = sum(w2.values())
        if s <= 0:
            continue
        alt = need_index(indicators, {j: v / s for j, v in w2.items()})
        rho = pd.Series(base["need_index"]).corr(pd.Series(alt["need_index"]), method="spearman")
        comps.append({"component_left_out": k, "weight": weights[k], "spearman_with_base_ranking": rho})
    return wards.sort_values("need_rank").reset_index(drop=True), pd.DataFrame(comps)


# ------------------------------------------------------------------------------ referral rates

def age_band(age) -> pd.Series:
    """Five-year ESP 2013 band label ('0-4' ... '90+') for ages in whole years."""
    a = np.clip(np.asarray(age, dtype=int), 0, 90)
    return pd.Series([AGE_BANDS[min(x // 5, 18)] for x in a])


def ward_population_age_sex(area: str = "ncl") -> pd.DataFrame:
    """Ward population by age band and sex.

    Age by ward: ONS mid-2020 estimates apportioned to 2022 wards (persons only). Sex by ward:
    Census 2021 TS008. No published table crosses age and sex at ward level (SOURCES.md, "Not
    found"), so the two are combined assuming sex is independent of age within a ward (stated in the
    assumptions log, A2). Scaled so each ward sums to its Census 2021 residents.
    Columns: ward22_code, borough_code, age_band, sex ('F'/'M'), population.
    """
    age = reference.population_ward_age()
    ind = ward_indicators("ncl").set_index("ward22_code")
    age = age.merge(age.groupby("ward22_code")["population"].sum().rename("tot"), on="ward22_code")
    age["population"] = age["population"] / age["tot"] * age["ward22_code"].map(ind["residents"])
    parts = []
    for sex, share in (("F", ind["pct_female"] / 100), ("M", 1 - ind["pct_female"] / 100)):
        p = age[["ward22_code", "borough_code", "age_band"]].copy()
        p["sex"] = sex
        p["population"] = age["population"] * age["ward22_code"].map(share)
        parts.append(p)
    out = pd.concat(parts, ignore_index=True)
    return out[out["borough_code"].isin(reference.borough_codes(area))].reset_index(drop=True)


def referral_counts(referrals: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """Referrals by ward of residence, age band (age at referral) and sex.

    Columns: ward22_code, age_band, sex, referrals. Age at referral = referral year - birth year.
    """
    r = referrals.merge(persons[["person_id", "birth_year", "sex", "ward22_code"]], on="person_id", how="left", validate="many_to_one")
    if r["ward22_code"].isna().any():
        raise ValueError(f"{int(r['ward22_code'].isna().sum())} referrals have no person record")
    r["age_band"] = age_band(r["referral_date"].dt.year - r["birth_year"]).to_numpy()
    return r.groupby(["ward22_code", "age_band", "sex"], as_index=False).size().rename(columns={"size": "referrals"})


def referral_rates_by_ward(referrals: pd.DataFrame, persons: pd.DataFrame, area: str, years: float = 1.0) -> pd.DataFrame:
    """Ward referral rates: crude per 1,000 residents per year (Byars/exact), directly age-standardised
    per 1,000 (ESP 2013, Dobson), and the standardised referral ratio (indirect, age x sex, on NCL
    rates; 100 = as expected, Byars/exact).

    Denominator: ward population (Census 2021, age from mid-2020, sex from TS008, see
    :func:`ward_population_age_sex`) x ``years`` of referrals. Expected counts use NCL-wide
    referral rates by age band and sex.
    """
    pop = ward_population_age_sex("ncl")
    counts = referral_counts(referrals, persons)
    full = pop.merge(counts, on=["ward22_code", "age_band", "sex"], how="left").fillna({"referrals": 0})
    full["person_years"] = full["population"] * years
    ncl_rates = full.groupby(["age_band", "sex"]).apply(lambda g: g["referrals"].sum() / g["person_years"].sum(), include_groups=False)
    full["expected"] = full["person_years"] * pd.MultiIndex.from_frame(full[["age_band", "sex"]]).map(ncl_rates.to_dict())
    full = full[full["borough_code"].isin(reference.borough_codes(area))]
    w = full.groupby("ward22_code").agg(referrals=("referrals", "sum"), person_years=("person_years", "sum"), expected=("expected", "sum")).reset_index()
    crude = stats.crude_rate(w["referrals"], w["person_years"], multiplier=1000)
    w["crude_rate"], w["crude_lower"], w["crude_upper"] = crude["rate"].to_numpy(), crude["lower"].to_numpy(), crude["upper"].to_numpy()
    persons_age = full.groupby(["ward22_code", "age_band"], as_index=False)[["referrals", "person_years"]].sum()
    d = stats.dsr(persons_age, "referrals", "person_years", "age_band", multiplier=1000, by="ward22_code")
    w = w.merge(d[["ward22_code", "dsr", "lower", "upper"]].rename(columns={"dsr": "dsr_rate", "lower": "dsr_lower", "upper": "dsr_upper"}), on="ward22_code")
    isr = stats.indirectly_standardised_ratio(w["referrals"], w["expected"], multiplier=100)
    w["referral_ratio"], w["ratio_lower"], w["ratio_upper"] = isr["ratio"].to_numpy(), isr["lower"].to_numpy(), isr["upper"].to_numpy()
    w["funnel"] = stats.funnel_flag(w["referrals"], w["expected"], statistic="ratio").to_numpy()
    names = reference.wards().set_index("ward22_code")
    w.insert(1, "ward22_name", w["ward22_code"].map(names["ward22_name"]))
    w.insert(2, "borough_name", w["ward22_code"].map(names["borough_name"]))
    return w.sort_values(["borough_name", "ward22_name"]).reset_index(drop=True)


def referral_rates_by_practice(referrals: pd.DataFrame, area: str, years: float = 1.0, level: str = "practice_code") -> pd.DataFrame:
    """Referrals per 1,000 registered patients per year by practice or PCN (``level``), with Byars/exact
    intervals and a funnel classification against the area rate. Denominator: registered patients
    (NHS Digital, May 2022)."""
    gp = reference.gp_practices()
    gp = gp[gp["borough_code"].isin(reference.borough_codes(area))]
    if level == "pcn_code":
        den = gp.groupby(["pcn_code", "pcn_name"], as_index=False)["registered_patients"].sum()
        key, label = "pcn_code", "pcn_name"
    else:
        den = gp[["practice_code", "practice_name", "pcn_name", "registered_patients"]].copy()
        key, label = "practice_code", "practice_name"
    n = referrals.groupby(level).size().rename("referrals")
    out = den.merge(n, left_on=key, right_index=True, how="left").fillna({"referrals": 0})
    out["referrals"] = out["referrals"].astype(int)
    out["person_years"] = out["registered_patients"] * years
    cr = stats.crude_rate(out["referrals"], out["person_years"], multiplier=1000)
    out["rate"], out["lower"], out["upper"] = cr["rate"].to_numpy(), cr["lower"].to_numpy(), cr["upper"].to_numpy()
    out["funnel"] = stats.funnel_flag(out["referrals"], out["person_years"], statistic="rate").to_numpy()
    return out.sort_values(label).reset_index(drop=True)


def outreach_candidates(profile: pd.DataFrame, need_quantile: float, ratio_below: float) -> pd.DataFrame:
    """Wards with high need (need index at or above the NCL ``need_quantile``) and fewer referrals
    than expected (standardised referral ratio below ``ratio_below``): candidates for proactive outreach.
    ``profile`` must hold need_index and referral_ratio (and their interval)."""
    cut = profile.attrs.get("need_cut")
    if cut is None:
        raise ValueError("profile.attrs['need_cut'] (the NCL need-index quantile) must be set by ward_needs_profile")
    m = (profile["need_index"] >= cut) & (profile["referral_ratio"] < ratio_below)
    cols = ["ward22_name", "borough_name", "need_index", "need_rank", "referrals", "expected", "referral_ratio", "ratio_lower", "ratio_upper"]
    out = profile.loc[m, cols].copy()
    out["evidence"] = np.where(out["ratio_upper"] < 100, "significantly fewer than expected (95% CI below 100)", "fewer than expected (not significant)")
    return out.sort_values("need_index", ascending=False).reset_index(drop=True)


def ward_needs_profile(area: str, referrals: pd.DataFrame, persons: pd.DataFrame, weights: dict[str, float], need_quantile: float, years: float = 1.0) -> pd.DataFrame:
    """Ward indicators + need index + referral rates in one table for ``area``."""
    ind = ward_indicators(area)
    ni = need_index(ind, weights)
    ncl = need_index(ward_indicators("ncl"), weights)
    rates = referral_rates_by_ward(referrals, persons, area, years)
    out = ni.merge(rates.drop(columns=["ward22_name", "borough_name"]), on="ward22_code", how="left", validate="one_to_one")
    out.attrs["need_cut"] = float(np.quantile(ncl["need_index"], need_quantile))
    return out


# --------------------------------------------------------------------------------- workforce

def review_workforce() -> pd.DataFrame:
    """Personalised-care workforce as the NCL Training Hub review (2024) gives it, by borough and role.

    Borough totals are the review's stated totals; where it states none but gives every component
    (Haringey link workers: 11 Public Voice + 1 North West PCN + 1 Bridge Renewal) the sum is used and
    ``derivation`` says so. Columns: borough_code, borough_name, role, number, unit, derivation, source.
    """
    w = pd.read_csv(reference.reference_dir() / "ncl_sp_workforce_review_2024.csv")
    w = w[w["borough_code"].isin(reference.BOROUGHS["borough_code"])]
    rows = []
    for (code, name, role), g in w.groupby(["borough_code", "borough_name", "role"]):
        tot = g[g["employer"].str.startswith("all employers (total", na=False) & g["headcount_or_fte"].notna()]
        if role == "care_coordinator" and code == "E09000003":
            ft = g[g["employer"].str.contains("full-time", na=False)]["headcount_or_fte"].sum()
            pt = g[g["employer"].str.contains("part-time", na=False)]["headcount_or_fte"].sum()
            rows.append((code, name, role, float(ft), "headcount (full time only)", f"{int(ft)} full time + {int(pt)} part time (FTE not stated); full-time count used", g["source_section"].iloc[0]))
            continue
        if len(tot):
            r = tot.iloc[0]
            rows.append((code, name, role, float(r["headcount_or_fte"]), r["unit"], "stated total", r["source_section"]))
        else:
            comp = g[g["headcount_or_fte"].notna() & ~g["employer"].str.startswith("all employers", na=False)]
            if len(comp):
                what = "sum of components" if role == "link_worker" else "at least (only these components are given)"
                rows.append((code, name, role, float(comp["headcount_or_fte"].sum()), "not stated",
                             f"{what}: " + "; ".join(f"{e} {v:g}" for e, v in zip(comp["employer"], comp["headcount_or_fte"])),
                             "; ".join(sorted(set(comp["source_section"])))))
            else:
                rows.append((code, name, role, np.nan, "not stated", "no figure in the review", "; ".join(sorted(set(g["source_section"])))))
    return pd.DataFrame(rows, columns=["borough_code", "borough_name", "role", "number", "unit", "derivation", "source"])


REVIEW_POPULATIONS = {  # populations the review quotes (NCL Training Hub 2024; pages in docs/review_facts.md)
    "E09000003": (432182, "review: 'The population of 432,182' (Barnet, p.27)"),
    "E09000007": (299852, "review: 'Camden GP practice population of 299,852' (Camden, p.32)"),
    "E09000019": (263251, "review: 'The Islington population of 263251' (Islington, p.48)"),
}
REVIEW_PUBLISHED_COVERAGE = {  # Figure 4 values as written in the review text (p.52)
    "E09000019": (0.64, "0.64"), "E09000007": (0.5, "around 0.5"), "E09000003": (0.5, "around 0.5"),
    "E09000014": (0.5, "around 0.5"), "E09000010": (0.026, "0.026"),
}
# A published value is consistent with the review's own counts if it matches to its precision:
# +/-0.01 for a value given to two decimals, +/-0.1 for one given as "around".
PUBLISHED_TOLERANCE = {"around": 0.1, "exact": 0.01}


def workforce_coverage(target_per_10000: float = 1.0) -> pd.DataFrame:
    """Link workers per 10,000 population by borough against the target, with coaches and care
    coordinators beside them, and the review's published figure compared with what its own counts give.

    Population: the figure the review quotes where it gives one, otherwise Census 2021 usual
    residents (TS001); ``population_source`` says which. FTE gap = target x population / 10,000 - link
    workers. ``published_consistent`` is False where the published coverage differs from the
    computed one by more than its stated precision (PUBLISHED_TOLERANCE; e.g. Enfield: 7 link workers
    cannot give 0.026 per 10,000 for a borough of 330,000).
    """
    wf = review_workforce()
    pop = reference.census_population().groupby("borough_code")["residents"].sum()
    rows = []
    for _, b in reference.BOROUGHS.iterrows():
        code = b["borough_code"]
        g = wf[wf["borough_code"] == code].set_index("role")
        if code in REVIEW_POPULATIONS:
            p, src = REVIEW_POPULATIONS[code]
        else:
            p, src = int(pop[code]), "Census 2021 usual residents (TS001; the review gives no population)"
        lw = g.loc["link_worker", "number"] if "link_worker" in g.index else np.nan
        per = lw / p * 10000
        pub, pub_text = REVIEW_PUBLISHED_COVERAGE[code]
        rows.append({
            "borough_name": b["borough_name"], "population": p, "population_source": src,
            "link_workers": lw, "link_worker_basis": g.loc["link_worker", "derivation"] if "link_worker" in g.index else "",
            "link_workers_per_10000": per, "target_per_10000": target_per_10000,
            "fte_needed_for_target": target_per_10000 * p / 10000, "fte_gap_to_target": target_per_10000 * p / 10000 - lw,
            "health_wellbeing_coaches": g.loc["health_wellbeing_coach", "number"] if "health_wellbeing_coach" in g.index else np.nan,
            "care_coordinators": g.loc["care_coordinator", "number"] if "care_coordinator" in g.index else np.nan,
            "published_per_10000": pub, "published_as_written": pub_text,
            "published_consistent": bool(abs(per - pub) <= PUBLISHED_TOLERANCE["around" if pub_text.startswith("around") else "exact"]),
            "link_workers_per_10000_census": lw / pop[code] * 10000,
        })
    out = pd.DataFrame(rows)
    ncl_rate = out["link_workers"].sum() / out["population"].sum() * 10000
    out["ncl_average_per_10000"] = ncl_rate
    out["fte_gap_to_ncl_average"] = ncl_rate * out["population"] / 10000 - out["link_workers"]
    return out


def pcn_coverage(workforce: pd.DataFrame, area: str, target_per_10000: float = 1.0) -> pd.DataFrame:
    """Link worker FTE per 10,000 registered patients by PCN, where the workforce table gives PCNs.

    ``workforce`` is the extract's workforce table (role, pcn_code, fte). Denominator: registered
    patients of the PCN's practices (NHS Digital, May 2022)."""
    gp = reference.gp_practices()
    gp = gp[gp["borough_code"].isin(reference.borough_codes(area))]
    den = gp.groupby(["borough_name", "pcn_code", "pcn_name"], as_index=False)["registered_patients"].sum()
    lw = workforce[(workforce["role"] == "link_worker") & workforce["pcn_code"].notna()].groupby("pcn_code")["fte"].sum()
    boroughs = gp.loc[gp["pcn_code"].isin(lw.index), "borough_name"].unique()
    den = den[den["borough_name"].isin(boroughs)].copy()
    cols = ["borough_name", "pcn_code", "pcn_name", "registered_patients", "link_worker_fte", "per_10000", "fte_gap_to_target"]
    if den.empty:
        return pd.DataFrame(columns=cols)
    den["link_worker_fte"] = den["pcn_code"].map(lw).astype(float).fillna(0.0)
    den["per_10000"] = den["link_worker_fte"] / den["registered_patients"] * 10000
    den["fte_gap_to_target"] = target_per_10000 * den["registered_patients"] / 10000 - den["link_worker_fte"]
    den = den[cols]
    return den.reset_index(drop=True)
