"""Population needs assessment by ward: profiles, a composite need index, referral rates and
ratios, outreach candidates and link-worker workforce coverage.

Denominators are real open data (``spstudy.inputs.reference``): Census 2021 ward figures built from output
areas, ONS mid-2020 estimates apportioned to 2022 wards for age, IMD 2025 (population-weighted from
LSOAs) for deprivation. Each function states its units, denominators and method source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spstudy.inputs import reference
from spstudy.methods import stats
from spstudy.methods.checks import require_columns
from spstudy.methods.coding import esp_band

AGE_BANDS = list(stats.ESP2013_BANDS)  # five-year bands, 0-4 ... 90+

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


def ward_indicators(area: reference.Area = reference.WHOLE_REGION) -> pd.DataFrame:
    """One row per ward with the needs indicators (percentages 0-100), for ``area``.

    Columns: ward22_code, ward22_name, borough_code, borough_name, residents, then every key of
    INDICATORS and OTHER_INDICATORS. Sources: see INDICATORS / OTHER_INDICATORS descriptions.
    """
    area = reference.as_area(area, "area")
    out = _ward_indicators_ncl()
    out = out[out["borough_code"].isin(area.borough_codes)]
    return out.reset_index(drop=True).copy()


@functools.lru_cache(maxsize=1)
def _ward_indicators_ncl() -> pd.DataFrame:
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
    return out.sort_values(["borough_name", "ward22_name"]).reset_index(drop=True)


def indicator_dictionary() -> pd.DataFrame:
    rows = [{"indicator": k, "description": v[2]} for k, v in INDICATORS.items()]
    rows += [{"indicator": k, "description": v} for k, v in OTHER_INDICATORS.items()]
    return pd.DataFrame(rows)


def need_index(indicators: pd.DataFrame, weights: dict[str, float], reference_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Composite need index for social prescribing: weighted mean of component z-scores.

    Each component is standardised against all NCL wards (``reference_frame``, default all 107), so
    every pack shares one scale: z = (x - mean_NCL) / sd_NCL (population SD). Index = sum(w_k z_k)
    with weights summing to 1 (parameters ``needs.need_index_weights``). Higher = more need.

    Returns the input with ``need_index``; ``need_rank``: rank among all wards of the reference frame
    (1 = highest need in NCL; the same number for a ward in every pack); ``need_rank_in_area``: rank
    among the wards given (1 = highest need in the pack's area); ``need_quintile``: fifth of the
    reference wards (1 = highest-need fifth of NCL wards).
    """
    ref = reference_frame if reference_frame is not None else ward_indicators()
    require_columns(ref, list(weights), "weights", "the need index weights must name indicator columns of the reference frame")
    out = indicators.copy()
    idx = np.zeros(len(out))
    ref_idx = np.zeros(len(ref))
    for k, w in weights.items():
        mu, sd = ref[k].mean(), ref[k].std(ddof=0)
        idx += w * (out[k].to_numpy() - mu) / sd
        ref_idx += w * (ref[k].to_numpy() - mu) / sd
    out["need_index"] = idx
    ref_rank = pd.Series(pd.Series(ref_idx).rank(ascending=False, method="first").astype(int).to_numpy(),
                         index=ref["ward22_code"].to_numpy()) if "ward22_code" in ref.columns else None
    if ref_rank is not None and "ward22_code" in out.columns and out["ward22_code"].isin(ref_rank.index).all():
        out["need_rank"] = out["ward22_code"].map(ref_rank).astype(int)
    else:  # wards outside the reference frame: 1 + number of reference wards with a higher index
        out["need_rank"] = 1 + (ref_idx[None, :] > idx[:, None]).sum(axis=1)
    out["need_rank_in_area"] = out["need_index"].rank(ascending=False, method="first").astype(int)
    cuts = np.quantile(ref_idx, [0.2, 0.4, 0.6, 0.8])
    out["need_quintile"] = 5 - np.searchsorted(cuts, idx, side="right")
    return out


def need_cut(weights: dict[str, float], need_quantile: float, reference_frame: pd.DataFrame | None = None) -> float:
    """The need-index value at ``need_quantile`` of all NCL wards (``reference_frame``, default the 107
    NCL wards; numpy's default linear interpolation between order statistics). Wards at or above it
    are "high need" in every pack (parameters ``needs.outreach_need_quantile``)."""
    if not 0 < need_quantile < 1:
        raise ValueError(f"need_quantile: must be in (0, 1), got {need_quantile!r}")
    ref = reference_frame if reference_frame is not None else ward_indicators()
    return float(np.quantile(need_index(ref, weights, ref)["need_index"], need_quantile))


@dataclass(frozen=True)
class NeedIndexSensitivity:
    """How much the ward ranking depends on the weights (:func:`need_index_sensitivity`).

    ``wards``: ward22_code, ward22_name, borough_name, need_rank, rank_median, rank_lower, rank_upper,
    pct_draws_top_fifth (one row per ward, by need_rank); ``components``: component_left_out,
    weight, spearman_with_base_ranking.
    """

    wards: pd.DataFrame
    components: pd.DataFrame


def need_index_sensitivity(indicators: pd.DataFrame, weights: dict[str, float], draws: int = 500, concentration: float = 20.0,
                           seed: int = 1, reference_frame: pd.DataFrame | None = None) -> NeedIndexSensitivity:
    """How much the ward ranking depends on the weights.

    (1) Random weights from a Dirichlet distribution centred on the chosen weights (concentration
    ``concentration`` x weights): for each ward of ``indicators``, its median rank and 5th-95th
    percentile of rank **among all NCL wards** (``reference_frame``, default the 107 NCL wards), and
    the share of draws (%) in which it is in the top fifth of NCL wards (round(107 / 5) = 21). Ranks
    are taken in the reference frame so a ward has the same numbers in every pack. (2) Leave one
    component out (weights renormalised): Spearman correlation of the index of the wards given with
    their base index (a property of the area's ranking). ``seed`` feeds ``numpy.random.default_rng``.
    Returns a :class:`NeedIndexSensitivity` (ward table, component table).
    """
    rng = np.random.default_rng(seed)
    ref = reference_frame if reference_frame is not None else ward_indicators()
    base = need_index(indicators, weights, ref)
    keys = list(weights)
    alpha = np.array([max(weights[k], 1e-3) for k in keys]) * concentration
    ws = rng.dirichlet(alpha, size=draws)
    z_ref = np.column_stack([(ref[k] - ref[k].mean()) / ref[k].std(ddof=0) for k in keys])
    ref_scores = z_ref @ ws.T  # reference wards x draws
    ref_ranks = (-ref_scores).argsort(axis=0).argsort(axis=0) + 1
    pos = pd.Series(np.arange(len(ref)), index=ref["ward22_code"].to_numpy())
    missing = ~indicators["ward22_code"].isin(pos.index)
    if missing.any():
        raise ValueError(f"indicators: wards not in the reference frame: {indicators.loc[missing, 'ward22_code'].tolist()[:8]}")
    ranks = ref_ranks[pos.loc[indicators["ward22_code"]].to_numpy()]
    top = max(1, int(round(len(ref) / 5)))
    wards = base[["ward22_code", "ward22_name", "borough_name", "need_rank"]].copy()
    wards["rank_median"] = np.median(ranks, axis=1)
    wards["rank_lower"] = np.percentile(ranks, 5, axis=1)
    wards["rank_upper"] = np.percentile(ranks, 95, axis=1)
    wards["pct_draws_top_fifth"] = 100 * (ranks <= top).mean(axis=1)
    comps = []
    for k in keys:
        w2 = {j: weights[j] for j in keys if j != k}
        s = sum(w2.values())
        if s <= 0:
            continue
        alt = need_index(indicators, {j: v / s for j, v in w2.items()}, ref)
        rho = pd.Series(base["need_index"]).corr(pd.Series(alt["need_index"]), method="spearman")
        comps.append({"component_left_out": k, "weight": weights[k], "spearman_with_base_ranking": rho})
    return NeedIndexSensitivity(wards=wards.sort_values("need_rank").reset_index(drop=True), components=pd.DataFrame(comps))


# ------------------------------------------------------------------------------ referral rates

age_band = esp_band  # five-year ESP 2013 band ('0-4' ... '90+'): one rule, in methods.coding


def ward_population_age_sex(area: reference.Area = reference.WHOLE_REGION) -> pd.DataFrame:
    """Ward population by age band and sex.

    Age by ward: ONS mid-2020 estimates apportioned to 2022 wards (persons only). Sex by ward:
    Census 2021 TS008. No published table crosses age and sex at ward level (SOURCES.md, "Not
    found"), so the two are combined assuming sex is independent of age within a ward (stated in the
    assumptions log, A2). Scaled so each ward sums to its Census 2021 residents.
    Columns: ward22_code, borough_code, age_band, sex ('F'/'M'), population.
    """
    area = reference.as_area(area, "area")
    out = _ward_population_age_sex_ncl()
    return out[out["borough_code"].isin(area.borough_codes)].reset_index(drop=True).copy()


@functools.lru_cache(maxsize=1)
def _ward_population_age_sex_ncl() -> pd.DataFrame:
    age = reference.population_ward_age()
    ind = ward_indicators().set_index("ward22_code")
    age = age.merge(age.groupby("ward22_code")["population"].sum().rename("tot"), on="ward22_code")
    age["population"] = age["population"] / age["tot"] * age["ward22_code"].map(ind["residents"])
    parts = []
    for sex, share in (("F", ind["pct_female"] / 100), ("M", 1 - ind["pct_female"] / 100)):
        p = age[["ward22_code", "borough_code", "age_band"]].copy()
        p["sex"] = sex
        p["population"] = age["population"] * age["ward22_code"].map(share)
        parts.append(p)
    return pd.concat(parts, ignore_index=True)


def referral_counts(referrals: pd.DataFrame, persons: pd.DataFrame, argument: str = "referrals") -> pd.DataFrame:
    """Referrals by ward of residence, age band (age at referral) and sex.

    Every referral is counted in the ward where the person lives (``persons.ward22_code``), whichever
    borough's service took it. Columns: ward22_code, age_band, sex, referrals. Age at referral =
    referral year - birth year. A referral without a person record is an error naming ``argument``.
    """
    require_columns(referrals, ["person_id", "referral_date"], argument)
    if not persons["person_id"].is_unique:
        raise ValueError("persons: column 'person_id' is not unique")
    r = referrals[["person_id", "referral_date"]].merge(persons[["person_id", "birth_year", "sex", "ward22_code"]], on="person_id", how="left")
    bad = r["ward22_code"].isna()
    if bad.any():
        raise ValueError(f"{argument}: {int(bad.sum())} referrals have no person record with a ward "
                         f"(rows {np.flatnonzero(bad.to_numpy())[:8].tolist()}, person_id {r.loc[bad, 'person_id'].head(5).tolist()})")
    r["age_band"] = age_band(r["referral_date"].dt.year - r["birth_year"]).to_numpy()
    return r.groupby(["ward22_code", "age_band", "sex"], as_index=False).size().rename(columns={"size": "referrals"})


def reference_referral_rates(reference_referrals: pd.DataFrame, persons: pd.DataFrame, years: float = 1.0,
                             reference_area: reference.Area = reference.WHOLE_REGION) -> pd.DataFrame:
    """Age-sex referral rates of the reference population, the basis of every expected count.

    Rate = referrals of residents of ``reference_area`` (all NCL by default; ``reference_referrals``
    must hold every referral of that population, whichever service took it) / (population x
    ``years``), by five-year age band and sex. Population: :func:`ward_population_age_sex`.

    Published expected counts are linear in these rates, so with enough wards a reader could solve
    for the stratum counts: a pack uses them only after the publisher has pooled and rounded them
    (:meth:`spstudy.publish.publisher.Publisher.reference_rates`), which is where the disclosure rule lives.
    Columns: age_band, sex, referrals, person_years, rate (referrals per person-year); rows by sex, then
    age band from the youngest (the order in which the publisher pools adjacent bands).
    """
    reference_area = reference.as_area(reference_area, "reference_area")
    if not years > 0:
        raise ValueError(f"years: must be > 0, got {years!r}")
    pop = ward_population_age_sex(reference_area)
    counts = referral_counts(reference_referrals, persons, "reference_referrals")
    counts = counts[counts["ward22_code"].isin(pop["ward22_code"])]
    pop = pop.assign(person_years=pop["population"] * years)
    g = pop.groupby(["age_band", "sex"], as_index=False)["person_years"].sum()
    n = counts.groupby(["age_band", "sex"], as_index=False)["referrals"].sum()
    g = g.merge(n, on=["age_band", "sex"], how="left").fillna({"referrals": 0})
    g["referrals"] = g["referrals"].astype(int)
    g["order"] = g["age_band"].map({b: i for i, b in enumerate(AGE_BANDS)})
    g = g.sort_values(["sex", "order"]).reset_index(drop=True)
    g["rate"] = g["referrals"] / g["person_years"]
    return g[["age_band", "sex", "referrals", "person_years", "rate"]]


def referral_rates_by_ward(area: reference.Area, *, referrals: pd.DataFrame, reference_rates: pd.DataFrame, persons: pd.DataFrame,
                           years: float = 1.0, reference_area: reference.Area = reference.WHOLE_REGION, confidence: float = 0.95) -> pd.DataFrame:
    """Ward referral rates and the standardised referral ratio for the wards of ``area``.

    Observed: referrals of the ward's residents (``persons.ward22_code``) whichever borough's service
    took them, so pass every referral in the extract as ``referrals``, not only those of the area's
    services. Expected: the ward's population by age band and sex x ``reference_rates`` (age_band,
    sex, rate per person-year: :func:`reference_referral_rates` of ``reference_area`` residents, NCL by
    default, as the publisher protects them), so a ward has the same observed, expected, ratio and
    interval in every pack.

    Columns: ward22_code, ward22_name, borough_name, referrals (count of referrals), person_years
    (population x ``years``), crude_rate / _lower / _upper (per 1,000 person-years; exact Poisson below
    10, Byar's from 10, PHEindicatormethods ``phe_rate``), dsr_rate / _lower / _upper (per 1,000,
    directly standardised to the 2013 European Standard Population by age, Dobson intervals,
    PHEindicatormethods ``calculate_dsr``), expected (expected referrals), referral_ratio / _lower /
    _upper (observed / expected x 100; 100 = as the reference rates predict; PHEindicatormethods
    ``calculate_ISRatio``), funnel (95% / 99.8% limits around 100, :func:`spstudy.methods.stats.funnel_flag`)
    and reference (what the expected counts come from).
    Denominator: Census 2021 ward population (age from mid-2020 estimates, sex from TS008;
    :func:`ward_population_age_sex`).
    """
    area = reference.as_area(area, "area")
    reference_area = reference.as_area(reference_area, "reference_area")
    if not years > 0:
        raise ValueError(f"years: must be > 0, got {years!r}")
    require_columns(reference_rates, ["age_band", "sex", "stratum", "rate"], "reference_rates",
                    "pass the rates as the publisher protects them: pub.reference_rates(needs.reference_referral_rates(...))")
    rates = reference_rates
    pop = ward_population_age_sex(area)
    counts = referral_counts(referrals, persons, "referrals")
    full = pop.merge(counts, on=["ward22_code", "age_band", "sex"], how="left").fillna({"referrals": 0})
    full["person_years"] = full["population"] * years
    full = full.merge(rates[["age_band", "sex", "rate"]], on=["age_band", "sex"], how="left", validate="many_to_one")
    if full["rate"].isna().any():
        miss = full.loc[full["rate"].isna(), ["age_band", "sex"]].drop_duplicates().head(5).values.tolist()
        raise ValueError(f"reference_rates: no rate for some age-sex strata of the area's population (first: {miss})")
    full["expected"] = full["person_years"] * full["rate"]
    w = full.groupby("ward22_code").agg(referrals=("referrals", "sum"), person_years=("person_years", "sum"), expected=("expected", "sum")).reset_index()
    w["referrals"] = w["referrals"].astype(int)
    crude = stats.crude_rate(w["referrals"], w["person_years"], multiplier=1000, confidence=confidence)
    w["crude_rate"], w["crude_rate_lower"], w["crude_rate_upper"] = crude["rate"].to_numpy(), crude["rate_lower"].to_numpy(), crude["rate_upper"].to_numpy()
    by_age = full.groupby(["ward22_code", "age_band"], as_index=False)[["referrals", "person_years"]].sum()
    d = stats.dsr(by_age, "referrals", "person_years", "age_band", multiplier=1000, by="ward22_code", confidence=confidence)
    w = w.merge(d[["ward22_code", "dsr", "dsr_lower", "dsr_upper"]].rename(columns={"dsr": "dsr_rate", "dsr_lower": "dsr_rate_lower", "dsr_upper": "dsr_rate_upper"}),
                on="ward22_code", how="left", validate="one_to_one")
    isr = stats.indirectly_standardised_ratio(w["referrals"], w["expected"], multiplier=100, confidence=confidence)
    w["referral_ratio"], w["referral_ratio_lower"], w["referral_ratio_upper"] = isr["ratio"].to_numpy(), isr["ratio_lower"].to_numpy(), isr["ratio_upper"].to_numpy()
    w["funnel"] = stats.funnel_flag(w["referrals"], w["expected"], statistic="ratio").to_numpy()
    w["reference"] = (f"{reference_area.name} referral rates by age band and sex: all referrals of "
                      f"{reference_area.name} residents over its Census 2021 population")
    names = reference.wards().set_index("ward22_code")
    w.insert(1, "ward22_name", w["ward22_code"].map(names["ward22_name"]))
    w.insert(2, "borough_name", w["ward22_code"].map(names["borough_name"]))
    return w.sort_values(["borough_name", "ward22_name"]).reset_index(drop=True)


def referral_rates_by_practice(area: reference.Area, *, referrals: pd.DataFrame, years: float = 1.0, level: str = "practice_code",
                               reference_area: reference.Area = reference.WHOLE_REGION, confidence: float = 0.95, reference_row: bool = False) -> pd.DataFrame:
    """Referrals per 1,000 registered patients per year by practice or PCN (``level``) of ``area``.

    Observed: referrals whose ``practice_code`` (the person's practice) is one of the practice's /
    PCN's practices, whichever borough's service took them: pass every referral in the extract. The
    funnel target is the ``reference_area`` rate (NCL by default: referrals at all its practices /
    its registered patients x ``years``), so a practice is classified the same way in every pack.
    Denominator: registered patients (NHS Digital, May 2022) x ``years``.

    Columns: practice_code, practice_name, pcn_name (or pcn_code, pcn_name), registered_patients,
    referrals (count), person_years, rate / rate_lower / rate_upper (per 1,000 person-years; exact
    below 10, Byar's from 10), funnel (:func:`spstudy.methods.stats.funnel_flag` against the reference rate),
    reference_rate (per 1,000 person-years). ``reference_row`` appends the reference area itself as a
    last row (its code in the ``level`` column), so the funnel target can be published from its counts.
    """
    area = reference.as_area(area, "area")
    reference_area = reference.as_area(reference_area, "reference_area")
    if level not in ("practice_code", "pcn_code"):
        raise ValueError(f"level: must be 'practice_code' or 'pcn_code', got {level!r}")
    if not years > 0:
        raise ValueError(f"years: must be > 0, got {years!r}")
    require_columns(referrals, ["practice_code"], "referrals")
    gp_all = reference.gp_practices()
    unknown = ~referrals["practice_code"].isin(gp_all["practice_code"])
    if unknown.any():
        raise ValueError(f"referrals: column 'practice_code': {int(unknown.sum())} referrals at practices not in the NCL practice list "
                         f"(rows {np.flatnonzero(unknown.to_numpy())[:8].tolist()}, codes {sorted(referrals.loc[unknown, 'practice_code'].astype(str).unique())[:5]})")
    r = referrals[["practice_code"]].merge(gp_all[["practice_code", "pcn_code", "borough_code"]], on="practice_code", how="left")
    ref_gp = gp_all[gp_all["borough_code"].isin(reference_area.borough_codes)]
    ref_n = int(r["borough_code"].isin(reference_area.borough_codes).sum())
    ref_rate = ref_n / (ref_gp["registered_patients"].sum() * years)  # per person-year
    gp = gp_all[gp_all["borough_code"].isin(area.borough_codes)]
    if level == "pcn_code":
        den = gp.groupby(["pcn_code", "pcn_name"], as_index=False)["registered_patients"].sum()
        label = "pcn_name"
    else:
        den = gp[["practice_code", "practice_name", "pcn_name", "registered_patients"]].copy()
        label = "practice_name"
    n = r.groupby(level).size().rename("referrals")
    out = den.merge(n, left_on=level, right_index=True, how="left").fillna({"referrals": 0})
    out["referrals"] = out["referrals"].astype(int)
    out["person_years"] = out["registered_patients"] * years
    cr = stats.crude_rate(out["referrals"], out["person_years"], multiplier=1000, confidence=confidence)
    out["rate"], out["rate_lower"], out["rate_upper"] = cr["rate"].to_numpy(), cr["rate_lower"].to_numpy(), cr["rate_upper"].to_numpy()
    out["funnel"] = stats.funnel_flag(out["referrals"], out["person_years"], statistic="rate", target=ref_rate).to_numpy()
    out["reference_rate"] = 1000 * ref_rate
    out = out.sort_values(label).reset_index(drop=True)
    if reference_row:
        row = {level: reference_area.code, label: f"{reference_area.name} (all practices)",
               "registered_patients": int(ref_gp["registered_patients"].sum()), "referrals": ref_n,
               "person_years": ref_gp["registered_patients"].sum() * years, "reference_rate": 1000 * ref_rate}
        if "pcn_name" in out.columns and label != "pcn_name":
            row["pcn_name"] = ""
        cr = stats.crude_rate([ref_n], [row["person_years"]], multiplier=1000, confidence=confidence)
        row.update(rate=float(cr["rate"].iloc[0]), rate_lower=float(cr["rate_lower"].iloc[0]), rate_upper=float(cr["rate_upper"].iloc[0]),
                   funnel="within limits")
        out = pd.concat([out, pd.DataFrame([row])], ignore_index=True)
    return out


OUTREACH_COLUMNS = ["ward22_code", "ward22_name", "borough_name", "need_index", "need_rank", "referrals", "expected",
                    "referral_ratio", "referral_ratio_lower", "referral_ratio_upper", "evidence"]


def outreach_selection(wards: pd.DataFrame, need_cut: float, ratio_below: float) -> pd.DataFrame:
    """The outreach rule, once: wards with need_index at or above ``need_cut`` and referral_ratio below
    ``ratio_below``, with ``evidence`` (is the ratio's upper limit below 100?), by need (then ward code).
    Used on the analysis table (:func:`outreach_candidates`) and on the published one (the pack's view)."""
    v = wards[(wards["need_index"] >= need_cut) & (wards["referral_ratio"] < ratio_below)].copy()
    v["evidence"] = np.where(v["referral_ratio_upper"] < 100, "significantly fewer than expected (upper limit below 100)",
                             "fewer than expected (not significant)")
    return v.sort_values(["need_index", "ward22_code"], ascending=[False, True], kind="stable")


def outreach_candidates(profile: pd.DataFrame, *, need_cut: float, ratio_below: float) -> pd.DataFrame:
    """Wards with high need (need index at or above ``need_cut``, the NCL quantile from
    :func:`need_cut`) and fewer referrals than expected (standardised referral ratio below
    ``ratio_below``, parameters ``needs.outreach_referral_ratio_below``): candidates for proactive
    outreach. ``profile``: :func:`ward_needs_profile`. ``evidence`` says whether the ratio's upper
    limit is below 100. Columns: :data:`OUTREACH_COLUMNS`; ``referrals`` is a count of referrals.
    """
    need = [c for c in OUTREACH_COLUMNS if c != "evidence"]
    require_columns(profile, need, "profile", "use needs.ward_needs_profile")
    if not np.isfinite(need_cut):
        raise ValueError(f"need_cut: must be a number, got {need_cut!r}")
    return outreach_selection(profile[need], need_cut, ratio_below)[OUTREACH_COLUMNS].reset_index(drop=True)


def ward_needs_profile(area: reference.Area, *, referrals: pd.DataFrame, reference_rates: pd.DataFrame, persons: pd.DataFrame,
                       weights: dict[str, float], years: float = 1.0, reference_area: reference.Area = reference.WHOLE_REGION,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Ward indicators + need index (:func:`need_index`) + referral rates and ratios
    (:func:`referral_rates_by_ward`) in one table for the wards of ``area``. ``referrals``: every
    referral in the extract; ``reference_rates``: the age-sex rates behind the expected counts
    (:func:`reference_referral_rates`, as the publisher protects them)."""
    area = reference.as_area(area, "area")
    reference_area = reference.as_area(reference_area, "reference_area")
    ind = ward_indicators(area)
    ni = need_index(ind, weights, ward_indicators())
    rates = referral_rates_by_ward(area, referrals=referrals, reference_rates=reference_rates, persons=persons,
                                   years=years, reference_area=reference_area, confidence=confidence)
    return ni.merge(rates.drop(columns=["ward22_name", "borough_name"]), on="ward22_code", how="left", validate="one_to_one")


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


def _role_value(g: pd.DataFrame, role: str, column: str, default):
    return g.loc[role, column] if role in g.index else default


def workforce_coverage(target_per_10000: float = 1.0) -> pd.DataFrame:
    """Link workers per 10,000 population by borough against the target, with coaches and care
    coordinators beside them, and the review's published figure compared with what its own counts give.

    Workforce numbers are the review's (:func:`review_workforce`) in the unit the review gives them
    (``*_unit``: "headcount", "FTE" or "not stated"; Enfield's 7 link workers are 7 individuals, a
    headcount). Population: the figure the review quotes where it gives one, otherwise Census 2021
    usual residents (TS001); ``population_source`` says which. ``link_workers_needed_for_target`` =
    target x population / 10,000; ``gap_to_target`` = that less the link workers (in the borough's
    unit). ``published_consistent`` is False where the published coverage differs from the computed
    one by more than its stated precision (PUBLISHED_TOLERANCE; e.g. Enfield: 7 link workers cannot
    give 0.026 per 10,000 for a borough of 330,000). ``ncl_average_per_10000`` uses the sum of the
    five borough figures (76.5, not the review's stated NCL total of 72: see :func:`workforce_totals`).
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
        lw = _role_value(g, "link_worker", "number", np.nan)
        per = lw / p * 10000
        pub, pub_text = REVIEW_PUBLISHED_COVERAGE[code]
        rows.append({
            "borough_code": code, "borough_name": b["borough_name"], "population": p, "population_source": src,
            "link_workers": lw, "link_worker_unit": _role_value(g, "link_worker", "unit", "not stated"),
            "link_worker_basis": _role_value(g, "link_worker", "derivation", ""),
            "link_workers_per_10000": per, "target_per_10000": target_per_10000,
            "link_workers_needed_for_target": target_per_10000 * p / 10000, "gap_to_target": target_per_10000 * p / 10000 - lw,
            "health_wellbeing_coaches": _role_value(g, "health_wellbeing_coach", "number", np.nan),
            "health_wellbeing_coach_unit": _role_value(g, "health_wellbeing_coach", "unit", "not stated"),
            "care_coordinators": _role_value(g, "care_coordinator", "number", np.nan),
            "care_coordinator_unit": _role_value(g, "care_coordinator", "unit", "not stated"),
            "published_per_10000": pub, "published_as_written": pub_text,
            "published_consistent": bool(abs(per - pub) <= PUBLISHED_TOLERANCE["around" if pub_text.startswith("around") else "exact"]),
            "link_workers_per_10000_census": lw / pop[code] * 10000,
        })
    out = pd.DataFrame(rows)
    ncl_rate = out["link_workers"].sum() / out["population"].sum() * 10000
    out["ncl_average_per_10000"] = ncl_rate
    out["gap_to_ncl_average"] = ncl_rate * out["population"] / 10000 - out["link_workers"]
    return out


NCL_CODE = reference.NCL_CODE  # the review's workforce table gives NCL's rows under the ICB area code


def workforce_totals() -> pd.DataFrame:
    """The review's stated NCL totals by role against the sum of its five borough figures, flagged.

    One row per role: ``ncl_stated_total`` (review p.13: "a total of 72 SPLWs, 18 health and
    well-being coaches and 243 care coordinators"), ``sum_of_boroughs`` (of :func:`review_workforce`),
    ``difference`` (sum - stated), ``consistent`` (difference within 0.05), ``boroughs_without_figure``,
    ``units`` (the units of the borough figures summed), ``flag`` (plain-English statement of the
    discrepancy, empty when consistent) and ``source``. Numbers are posts (headcount or FTE as given),
    not people in the data.
    """
    rev = pd.read_csv(reference.reference_dir() / "ncl_sp_workforce_review_2024.csv")
    ncl = rev[(rev["borough_code"] == NCL_CODE) & rev["headcount_or_fte"].notna()].set_index("role")
    wf = review_workforce()
    rows = []
    for role in ("link_worker", "health_wellbeing_coach", "care_coordinator"):
        g = wf[wf["role"] == role]
        have = g[g["number"].notna()]
        stated = float(ncl.loc[role, "headcount_or_fte"]) if role in ncl.index else np.nan
        total = float(have["number"].sum())
        diff = total - stated
        missing = sorted(set(reference.BOROUGHS["borough_name"]) - set(have["borough_name"]))
        ok = bool(np.isfinite(diff) and abs(diff) <= 0.05 and not missing)
        units = "; ".join(f"{u} ({', '.join(sorted(x['borough_name']))})" for u, x in have.groupby("unit"))
        flag = "" if ok else (f"The sum of the borough figures ({total:g}) differs from the review's stated NCL total ({stated:g})"
                              + (f"; no figure for {', '.join(missing)}" if missing else "")
                              + "; the borough figures are used, not the NCL total.")
        rows.append({"role": role, "ncl_stated_total": stated, "sum_of_boroughs": total, "difference": diff, "consistent": ok,
                     "boroughs_without_figure": ", ".join(missing), "units": units, "flag": flag,
                     "source": ncl.loc[role, "source_section"] if role in ncl.index else ""})
    return pd.DataFrame(rows)


def review_link_worker_units() -> dict[str, str]:
    """Unit of each borough's link-worker figure in the review ({borough_code: 'headcount' | 'FTE' |
    'not stated'}), for a workforce extract that copies the review's figures (the synthetic one does:
    parameters/synth.yaml ``workforce``)."""
    wf = review_workforce()
    lw = wf[wf["role"] == "link_worker"]
    return dict(zip(lw["borough_code"], lw["unit"]))


PCN_COVERAGE_COLUMNS = ["borough_name", "pcn_code", "pcn_name", "registered_patients", "link_workers_own", "link_workers_allocated",
                        "link_workers", "unit", "per_10000", "gap_to_target", "allocation"]


def pcn_coverage(workforce: pd.DataFrame, area: reference.Area, target_per_10000: float = 1.0, *, units: dict[str, str] | None = None) -> pd.DataFrame:
    """Link workers per 10,000 registered patients by PCN, every link-worker post of the area counted once.

    ``workforce`` is the extract's workforce table (borough_code, pcn_code, role, fte, employer).
    Allocation rule (assumption A13 in docs/assumptions.md): a post with a PCN code belongs to that PCN
    (``link_workers_own``; a row of 0 records a PCN with no provision). A post without a PCN code is a
    borough-wide provider serving the borough's PCNs that have no link-worker row of their own, and is
    shared among them pro rata to registered patients (``link_workers_allocated``). Where every PCN of
    the borough has its own row, a post without a PCN code cannot be placed in a 2022 PCN (Enfield:
    Edmonton PCN's link worker; Edmonton PCN is not in the January 2022 PCN list): it gets a row of its
    own with empty pcn_code and registered_patients, so the borough's posts still add up.
    ``unit``: what the numbers are, per borough (``units``: {borough_code: unit}, e.g.
    :func:`review_link_worker_units` for an extract that copies the review; default "FTE", the data
    contract's meaning of ``fte``). Denominator: registered patients of the PCN's practices (NHS
    Digital, May 2022). ``gap_to_target`` = target x registered patients / 10,000 - link workers.
    Only boroughs with link-worker rows appear. Columns: :data:`PCN_COVERAGE_COLUMNS`.
    """
    area = reference.as_area(area, "area")
    require_columns(workforce, ["borough_code", "pcn_code", "role", "fte", "employer"], "workforce")
    gp = reference.gp_practices()
    codes = area.borough_codes
    lw = workforce[(workforce["role"] == "link_worker") & workforce["borough_code"].isin(codes)].copy()
    lw["pcn_code"] = lw["pcn_code"].where(lw["pcn_code"].notna() & (lw["pcn_code"].astype(str) != ""), None)
    pcn_borough = dict(zip(gp["pcn_code"], gp["borough_code"]))
    wrong = lw["pcn_code"].notna() & (lw["pcn_code"].map(pcn_borough) != lw["borough_code"])
    if wrong.any():
        raise ValueError(f"workforce: column 'pcn_code': PCN not in its row's borough (rows {lw.index[wrong].tolist()[:8]})")
    rows = []
    names = reference.BOROUGHS.set_index("borough_code")["borough_name"]
    for code in [c for c in codes if c in set(lw["borough_code"])]:
        b = lw[lw["borough_code"] == code]
        den = gp[gp["borough_code"] == code].groupby(["pcn_code", "pcn_name"], as_index=False)["registered_patients"].sum()
        own = b[b["pcn_code"].notna()].groupby("pcn_code")["fte"].sum()
        wide = b[b["pcn_code"].isna()]
        served = den[~den["pcn_code"].isin(own.index)]
        unit = (units or {}).get(code, "FTE")
        den["link_workers_own"] = den["pcn_code"].map(own).astype(float).fillna(0.0)
        den["link_workers_allocated"] = 0.0
        den["allocation"] = np.where(~den["pcn_code"].isin(own.index), "no post recorded",
                                     np.where(den["link_workers_own"] > 0, "own post(s)", "own row recording no provision"))
        if len(wide) and len(served):
            share = served.set_index("pcn_code")["registered_patients"] / served["registered_patients"].sum()
            den["link_workers_allocated"] = den["pcn_code"].map(share * wide["fte"].sum()).fillna(0.0)
            who = "; ".join(f"{e} {v:g}" for e, v in zip(wide["employer"], wide["fte"]))
            den.loc[den["pcn_code"].isin(share.index), "allocation"] = (
                f"share of borough-wide provider(s) ({who}) pro rata to registered patients across the {len(served)} PCN(s) "
                f"without their own post")
        den["borough_name"] = names[code]
        den["unit"] = unit
        rows.append(den)
        if len(wide) and not len(served):
            for _, r in wide.iterrows():
                rows.append(pd.DataFrame([{
                    "borough_name": names[code], "pcn_code": None, "pcn_name": f"not in a 2022 PCN: {r['employer']}",
                    "registered_patients": np.nan, "link_workers_own": float(r["fte"]), "link_workers_allocated": 0.0, "unit": unit,
                    "allocation": "post without a PCN code in a borough whose 2022 PCNs all have their own rows: cannot be placed in a 2022 PCN"}]))
    if not rows:
        return pd.DataFrame(columns=PCN_COVERAGE_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    out["pcn_code"] = pd.Series(out["pcn_code"].to_numpy(dtype=object), dtype=object).where(out["pcn_code"].notna(), None)
    out["registered_patients"] = out["registered_patients"].astype(float)
    out["link_workers"] = out["link_workers_own"] + out["link_workers_allocated"]
    out["per_10000"] = out["link_workers"] / out["registered_patients"] * 10000
    out["gap_to_target"] = target_per_10000 * out["registered_patients"] / 10000 - out["link_workers"]
    return out[PCN_COVERAGE_COLUMNS].reset_index(drop=True)
