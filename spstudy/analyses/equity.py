"""Equity of access to social prescribing by ethnicity and language.

Who is referred, who is recorded, who attends, against real Census 2021 denominators and the
registered population of the area's practices. Every function takes and returns tidy pandas
DataFrames; the notebook ``02_equity_of_access`` only calls them and publishes the results.

Coding
    NHS ethnic category codes A-S are mapped to the Census 2021 five high-level groups
    (:data:`spstudy.inputs.contract.ETHNIC_TO_CENSUS5`; Chinese (R) is Asian in Census 2021) and, where the
    data allow, kept as the 16 detailed categories. ``Z`` is **Not stated** and an empty value is
    **Not recorded**: both are kept as their own categories in every table, never dropped and never
    merged into "Other". Main language, proficiency in English (Census 2021 TS029 categories) and
    interpreter need are coded the same way (empty = Not recorded).

Denominators and their assumptions (also published as a note by the notebook)
    * Crude rates by ethnic group: Census 2021 TS021 usual residents (5 groups, all ages) of the
      area's LSOAs. Rates by proficiency in English: Census 2021 TS029 residents aged 3+ of the
      area's MSOAs (every NCL MSOA lies in one borough).
    * Age-standardised rates (DSR): the reference data have no ethnicity-by-age (or proficiency-by-
      age) table. The age structure *within* each group is taken from the registered-population
      extract (persons of the area's practices with the group recorded, weighted, person-years in
      the study year) and scaled to the Census 2021 group total for the area. ASSUMPTION: the age
      structure of a group among registered patients with a recorded code is that of the group's
      residents.
    * Registered population: the persons extract holds everyone referred plus a simple random
      sample of everyone else at ``pool_fraction`` (``<extracts_dir>/extract_info.json``, read by ``inputs.extracts.read_pool_fraction``; 1 if the
      file is absent). Non-referred people are weighted by 1 / pool_fraction and referred people by
      1, so weighted person-years estimate the registered population's person-time.

Model-based comparisons
    Poisson GLM of referral counts in cells (group x age band x sex x IMD 2025 quintile [x borough])
    with log person-years as offset, built from the weighted registered population; standard
    errors are **quasi-Poisson** (Pearson chi-squared / residual df, as R's ``quasipoisson``;
    McCullagh & Nelder 1989 s.4.5) to allow for over-dispersion. Missing ethnicity is handled three
    ways: complete cases; bounds (all unrecorded referrals assigned to a group / none assigned to
    it); and multiple imputation of the group of unrecorded referrals from the recorded distribution
    within borough x age band x sex (approximate Bayesian bootstrap, Rubin & Schenker 1986; M = 20),
    pooled on the log rate ratio scale with Rubin's rules (Rubin 1987). Did-not-attend is modelled
    with a binomial (logistic) GLM.

Sources of the other methods: :mod:`spstudy.methods.stats` (Wilson, Byar's, Dobson DSR, log-normal rate
ratios, funnel limits, SII/RII after Low & Low 2004, index of disparity after Pearcy & Keppel 2002).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from spstudy.inputs import reference
from spstudy.inputs.contract import (
    CENSUS5_GROUPS,
    ETHNIC_CATEGORIES,
    ETHNIC_TO_CENSUS5,
    LANGUAGES,
    NOT_RECORDED,
    NOT_STATED,
    REFERRAL_OUTCOMES,
    REFERRAL_SOURCES,
)
from spstudy.methods import stats
from spstudy.methods.checks import require_columns
from spstudy.methods.coding import (
    BROAD_AGE_BANDS,
    ETHNIC_GROUPS,
    INTERPRETER_GROUPS,
    LANGUAGE_GROUPS,
    PROFICIENCY_GROUPS,
    PROFICIENCY_LABELS,
    TS029_TO_KEY,
    as_object,
    code_ethnicity,
    code_interpreter,
    code_language,
    code_proficiency,
    esp_band,
    imd_quintile,
    model_age_band,
    order_levels,
)

#: Recording-completeness ratings (share of referrals with a usable code). A rule of thumb used
#: in this project, not a national standard: at 90%+ a missing-at-random assumption moves group
#: rates little; below 70% group comparisons rest mainly on that assumption.
COMPLETENESS_GOOD = 90.0
COMPLETENESS_POOR = 70.0


def coding_table(referrals: pd.DataFrame) -> pd.DataFrame:
    """How every NHS ethnic category code is coded, with the number of referrals carrying it.

    Columns: code ('' for empty), nhs_category, census2021_group, referrals. Rows for all 17 codes
    plus empty, in NHS order, whether or not they occur."""
    require_columns(referrals, argument="referrals", columns=["ethnicity_code"])
    codes = as_object(referrals["ethnicity_code"]).fillna("")
    n = codes.value_counts()
    rows = []
    for k, v in list(ETHNIC_CATEGORIES.items()) + [("", NOT_RECORDED)]:
        group = ETHNIC_TO_CENSUS5.get(k, NOT_STATED if k == "Z" else NOT_RECORDED)
        rows.append({"code": k, "nhs_category": v, "census2021_group": group, "referrals": int(n.get(k, 0))})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ data set-up


@dataclass
class EquityData:
    """Coded inputs for one area.

    referrals: one row per referral by the area's services in the study period (coded groups, age
        at referral, quarter, residence, IMD quintile ...).
    persons: the registered population of the area's practices, one row per person in the extract
        with ``weight`` (1 if referred, else 1 / pool_fraction), ``person_years`` registered in the
        study period, ``exposure`` = weight x person_years and ``referrals`` (count in the period).
    """

    area: reference.Area
    referrals: pd.DataFrame
    persons: pd.DataFrame
    years: float
    pool_fraction: float
    start: pd.Timestamp
    end: pd.Timestamp
    all_referrals: pd.DataFrame | None = None

    @property
    def resident_referrals(self) -> pd.DataFrame:
        """Referrals of people living in the area, by any NCL service (the numerator for Census-based
        rates, whose denominators are residents): the same count in every pack that shows it."""
        src = self.all_referrals if self.all_referrals is not None else self.referrals
        return src[src["resident_in_area"]].reset_index(drop=True)


def _quarter_label(d: pd.Series) -> pd.Series:
    p = pd.PeriodIndex(pd.to_datetime(d), freq="Q")
    return pd.Series([f"{x.year} Q{x.quarter}" for x in p], index=d.index, dtype=object)


PERSON_COLUMNS = ["person_id", "age", "sex", "ethnicity_code", "ethnic_group", "ethnic_detail", "proficiency", "language", "interpreter",
                  "lsoa21_code", "resident_borough_code", "imd_decile", "imd_quintile", "practice_code", "borough_code", "borough_name",
                  "pcn_code", "person_years", "weight", "referrals", "exposure", "model_age_band"]


def _coded_persons(persons: pd.DataFrame, referrals: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, mid: pd.Timestamp,
                   pool_fraction: float) -> pd.DataFrame:
    """Every person of the extract coded for the equity analysis (the same for every area): groups,
    deprivation, registered practice, person-years in the study period and the sampling weight."""
    gp = reference.gp_practices().set_index("practice_code")
    imd = reference.imd2025().set_index("lsoa21_code")["imd2025_imd_decile"]
    lk = reference.lsoa21_lookup().set_index("lsoa21_code")
    bnames = reference.BOROUGHS.set_index("borough_code")["borough_name"]
    p = pd.DataFrame({"person_id": persons["person_id"].astype(object).to_numpy()})
    by = persons["birth_year"].astype("float64").to_numpy()
    p["age"] = mid.year - by
    p["sex"] = persons["sex"].astype(object).to_numpy()
    p["ethnicity_code"] = as_object(persons["ethnicity"]).to_numpy()
    p["ethnic_group"] = code_ethnicity(persons["ethnicity"]).to_numpy()
    p["ethnic_detail"] = code_ethnicity(persons["ethnicity"], "detailed").to_numpy()
    p["proficiency"] = code_proficiency(persons["english_proficiency"]).to_numpy()
    p["language"] = code_language(persons["main_language"]).to_numpy()
    p["interpreter"] = code_interpreter(persons["interpreter_needed"]).to_numpy()
    p["lsoa21_code"] = persons["lsoa21_code"].astype(object).to_numpy()
    p["resident_borough_code"] = p["lsoa21_code"].map(lk["borough_code"])
    p["imd_decile"] = p["lsoa21_code"].map(imd).astype("float64")
    p["imd_quintile"] = imd_quintile(p["imd_decile"]).to_numpy()
    p["practice_code"] = persons["practice_code"].astype(object).to_numpy()
    p["borough_code"] = p["practice_code"].map(gp["borough_code"])
    p["borough_name"] = p["borough_code"].map(bnames)
    p["pcn_code"] = p["practice_code"].map(gp["pcn_code"])
    rs = pd.to_datetime(persons["registration_start"]).to_numpy()
    re_ = pd.to_datetime(persons["registration_end"]).fillna(end).to_numpy()
    lo = np.maximum(rs, start.to_datetime64())
    hi = np.minimum(re_, end.to_datetime64())
    days = (hi - lo).astype("timedelta64[D]").astype(float) + 1
    p["person_years"] = np.clip(days, 0, None) / 365.25

    referred_any = set(referrals["person_id"].astype(object))
    p["weight"] = np.where(p["person_id"].isin(referred_any), 1.0, 1.0 / pool_fraction)
    p["exposure"] = p["weight"] * p["person_years"]
    p["model_age_band"] = model_age_band(p["age"]).to_numpy()
    return p


def prepare(extracts, area: reference.Area, study_start, study_end, pool_fraction: float = 1.0) -> EquityData:
    """Code the extract for ``area`` (a :class:`spstudy.inputs.extracts.Extracts`, or anything with
    ``persons`` and ``referrals`` DataFrames in the data contract).

    Area population: persons registered with a practice in the area (practice borough from the NHS
    Digital practice list). Area referrals: referrals whose ``borough_code`` (the service) is in the
    area and whose date is in [study_start, study_end]. Resident referrals (``resident_referrals``, for
    rates against Census residents): referrals of people living in the area, by any NCL service. Person-years: days registered inside the
    study period / 365.25. Age for the models: age at the middle of the study period
    (year of the midpoint - birth year); age at referral for referral tables.
    """
    area = reference.as_area(area, "area")
    if not 0 < pool_fraction <= 1:
        raise ValueError(f"pool_fraction must be in (0, 1]; got {pool_fraction!r}")
    persons, referrals = extracts.persons, extracts.referrals
    require_columns(persons, argument="persons", columns=["person_id", "birth_year", "sex", "ethnicity", "main_language", "english_proficiency",
                                        "interpreter_needed", "lsoa21_code", "practice_code", "registration_start", "registration_end"])
    require_columns(referrals, argument="referrals", columns=["referral_id", "person_id", "referral_date", "source", "borough_code", "pcn_code",
                                            "practice_code", "outcome"])
    codes = area.borough_codes
    start, end = pd.Timestamp(study_start), pd.Timestamp(study_end)
    if end < start:
        raise ValueError(f"study_end {study_end} is before study_start {study_start}")
    years = ((end - start).days + 1) / 365.25
    mid = start + (end - start) / 2

    gp = reference.gp_practices().set_index("practice_code")
    bnames = reference.BOROUGHS.set_index("borough_code")["borough_name"]

    def make():
        return _coded_persons(persons, referrals, start, end, mid, pool_fraction)

    # the same coding for every area of a build: a worker kernel codes the region once (see ValidatedExtracts.derived)
    derived = getattr(extracts, "derived", None)
    p = (derived(("equity.coded_persons", str(start), str(end), float(pool_fraction)), make) if derived else make()).copy(deep=False)
    r = referrals[(pd.to_datetime(referrals["referral_date"]) >= start) & (pd.to_datetime(referrals["referral_date"]) <= end)]
    r_all = r.reset_index(drop=True)
    r = r[r["borough_code"].isin(codes)].reset_index(drop=True)
    n_ref = r.groupby(r["person_id"].astype(object)).size()
    p["referrals"] = p["person_id"].map(n_ref).fillna(0).astype(int)
    p = p[PERSON_COLUMNS]
    pop = p[p["borough_code"].isin(codes) & (p["person_years"] > 0)].reset_index(drop=True)

    pi = p.set_index("person_id")
    cols = ["ethnicity_code", "ethnic_group", "ethnic_detail", "proficiency", "language", "interpreter", "sex",
            "lsoa21_code", "resident_borough_code", "imd_decile", "imd_quintile"]
    r = r_all
    out = pd.DataFrame({
        "referral_id": r["referral_id"].astype(object).to_numpy(),
        "person_id": r["person_id"].astype(object).to_numpy(),
        "referral_date": pd.to_datetime(r["referral_date"]).to_numpy(),
    })
    for c in cols:
        out[c] = pi.loc[out["person_id"], c].to_numpy()
    out["age"] = out["referral_date"].dt.year.to_numpy() - (mid.year - pi.loc[out["person_id"], "age"].to_numpy())
    out["esp_band"] = esp_band(out["age"]).to_numpy()
    out["model_age_band"] = model_age_band(out["age"]).to_numpy()
    out["quarter"] = _quarter_label(out["referral_date"]).to_numpy()
    out["source"] = r["source"].astype(object).to_numpy()
    out["outcome"] = r["outcome"].astype(object).to_numpy()
    out["borough_code"] = r["borough_code"].astype(object).to_numpy()
    out["borough_name"] = out["borough_code"].map(bnames)
    out["pcn_code"] = r["pcn_code"].astype(object).to_numpy()
    out["pcn_name"] = out["pcn_code"].map(gp.drop_duplicates("pcn_code").set_index("pcn_code")["pcn_name"]).fillna(out["pcn_code"])
    out["practice_code"] = r["practice_code"].astype(object).to_numpy()
    out["practice_name"] = out["practice_code"].map(gp["practice_name"]).fillna(out["practice_code"])
    out["resident_in_area"] = out["resident_borough_code"].isin(codes).to_numpy()
    in_service = out["borough_code"].isin(codes).to_numpy()
    all_out = out
    out = out[in_service].reset_index(drop=True)
    return EquityData(area=area, referrals=out, persons=pop, years=years,
                      pool_fraction=float(pool_fraction), start=start, end=end, all_referrals=all_out)


# ------------------------------------------------------------------------------------ completeness

COMPLETENESS_FIELDS = {
    # field: (column, value(s) that count as *usable*, label)
    "ethnicity": ("ethnic_group", list(CENSUS5_GROUPS), "Ethnic group recorded (NHS code A-S)"),
    "language": ("language", list(LANGUAGES), "Main language recorded"),
    "proficiency": ("proficiency", list(PROFICIENCY_LABELS.values()), "Proficiency in English recorded"),
}


def recording_completeness(referrals: pd.DataFrame, by: str | Sequence[str] | None = None,
                           fields: Sequence[str] = ("ethnicity", "language"), confidence: float = 0.95) -> pd.DataFrame:
    """Share of referrals with ethnicity / language recorded, by ``by`` (e.g. borough_name, pcn_name,
    practice_name, quarter), with Wilson score intervals (percent) and a funnel-plot flag.

    Ethnicity counts as recorded when it is a code A-S (a usable group); ``not_stated`` (Z) and
    ``not_recorded`` (empty) are counted separately. Language counts as recorded when a main
    language is given.

    Returns one row per group x field: the ``by`` columns, field, description, referrals, recorded,
    not_stated, not_recorded, pct_recorded, pct_recorded_lower, pct_recorded_upper (percent) and funnel (position against the
    95% / 99.8% Wilson funnel limits around the overall share of the rows given; PHEindicatormethods
    ``assign_funnel_significance``). Denominator: all referrals in the group.
    """
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    unknown = [f for f in fields if f not in COMPLETENESS_FIELDS]
    if unknown:
        raise ValueError(f"fields: unknown {unknown}; choose from {list(COMPLETENESS_FIELDS)}")
    require_columns(referrals, argument="referrals", columns=by_cols + [COMPLETENESS_FIELDS[f][0] for f in fields])
    if len(referrals) == 0:
        raise ValueError("referrals is empty: no completeness to measure")
    rows = []
    for f in fields:
        col, usable, desc = COMPLETENESS_FIELDS[f]
        d = referrals[by_cols].copy()
        d["recorded"] = referrals[col].isin(usable).astype(int)
        d["not_stated"] = (referrals[col] == NOT_STATED).astype(int)
        d["not_recorded"] = (referrals[col] == NOT_RECORDED).astype(int)
        d["referrals"] = 1
        g = d.groupby(by_cols, dropna=False, sort=True)[["referrals", "recorded", "not_stated", "not_recorded"]].sum().reset_index() \
            if by_cols else d[["referrals", "recorded", "not_stated", "not_recorded"]].sum().to_frame().T
        ci = stats.wilson_ci(g["recorded"], g["referrals"], confidence, multiplier=100)
        g["field"], g["description"] = f, desc
        g["pct_recorded"], g["pct_recorded_lower"], g["pct_recorded_upper"] = (ci["proportion"].to_numpy(), ci["proportion_lower"].to_numpy(),
                                                                              ci["proportion_upper"].to_numpy())
        g["funnel"] = stats.funnel_flag(g["recorded"], g["referrals"], "proportion").to_numpy() if len(g) > 1 else "within limits"
        rows.append(g)
    out = pd.concat(rows, ignore_index=True)
    return out[by_cols + ["field", "description", "referrals", "recorded", "not_stated", "not_recorded", "pct_recorded",
                          "pct_recorded_lower", "pct_recorded_upper", "funnel"]]


COMPLETENESS_LEVELS = {"borough": ("borough_code", "borough_name"), "pcn": ("pcn_code", "pcn_name"),
                       "practice": ("practice_code", "practice_name")}


def completeness_table(referrals: pd.DataFrame, field: str, level: str, area_code: str, area_name: str,
                       by_quarter: bool = False, confidence: float = 0.95, reference_referrals: pd.DataFrame | None = None,
                       reference_code: str | None = None, reference_name: str | None = None) -> pd.DataFrame:
    """Recording completeness of ``field`` ('ethnicity' or 'language') for each unit of ``level``
    ('borough', 'pcn', 'practice') of the area's services, with the area itself as the last row
    (its code in ``code``), optionally by quarter of referral; with ``reference_referrals`` (e.g. every
    NCL referral) a reference row (``reference_code``) follows, so funnel limits are drawn around one
    reference in every pack. Counts of referrals: referrals,
    recorded, not_stated, not_recorded; pct_recorded with its Wilson interval (percent).
    Columns: code, name, [quarter], referrals, recorded, not_stated, not_recorded, pct_recorded,
    pct_recorded_lower, pct_recorded_upper."""
    if level not in COMPLETENESS_LEVELS:
        raise ValueError(f"level: choose from {list(COMPLETENESS_LEVELS)}; got {level!r}")
    code, name = COMPLETENESS_LEVELS[level]
    q = ["quarter"] if by_quarter else []
    units = recording_completeness(referrals, [code, name] + q, fields=(field,), confidence=confidence)
    units = units[units[code] != area_code]  # a borough's own row is the total row
    total = recording_completeness(referrals, q or None, fields=(field,), confidence=confidence)
    total.insert(0, code, area_code)
    total.insert(1, name, area_name)
    parts = [units, total]
    if reference_referrals is not None and reference_code is not None and reference_code != area_code:
        rt = recording_completeness(reference_referrals, q or None, fields=(field,), confidence=confidence)
        rt.insert(0, code, reference_code)
        rt.insert(1, name, reference_name or reference_code)
        parts.append(rt)
    out = pd.concat(parts, ignore_index=True).rename(columns={code: "code", name: "name"})
    return out[["code", "name"] + q + ["referrals", "recorded", "not_stated", "not_recorded", "pct_recorded",
                                       "pct_recorded_lower", "pct_recorded_upper"]]


def completeness_rating(pct: float) -> str:
    """'good' (>= 90%), 'fair' (70-90%) or 'poor' (< 70%): the project's rule of thumb (COMPLETENESS_*)."""
    if pct is None or not np.isfinite(pct):
        return "unknown"
    return "good" if pct >= COMPLETENESS_GOOD else ("fair" if pct >= COMPLETENESS_POOR else "poor")


# ------------------------------------------------------------------------------------ denominators

def census_ethnicity_totals(area: reference.Area) -> pd.DataFrame:
    """Census 2021 TS021 usual residents by five ethnic groups for ``area`` (sum over its LSOAs).

    Columns: group, residents. Source: ONS Census 2021 TS021 (LSOA 2021), data/reference.
    """
    area = reference.as_area(area, "area")
    e = reference.ethnicity_lsoa21()
    e = e[e["borough_code"].isin(area.borough_codes)]
    t = e.groupby("group")["residents"].sum().reindex(CENSUS5_GROUPS).fillna(0).astype("int64")
    return t.rename_axis("group").reset_index()


def census_proficiency_totals(area: reference.Area) -> pd.DataFrame:
    """Census 2021 TS029 usual residents aged 3+ by proficiency in English for ``area`` (sum over its MSOAs).

    Columns: group (PROFICIENCY_LABELS), key (contract key), residents. Source: ONS Census 2021 TS029 (MSOA 2021).
    """
    area = reference.as_area(area, "area")
    t = reference.english_proficiency_msoa21()
    t = t[t["borough_code"].isin(area.borough_codes) & t["category"].isin(TS029_TO_KEY)]
    s = t.groupby("category")["residents"].sum()
    rows = [{"group": PROFICIENCY_LABELS[k], "key": k, "residents": int(s.get(c, 0))} for c, k in TS029_TO_KEY.items()]
    return pd.DataFrame(rows)


#: A group's age structure is taken as estimable from at least this many registered people in the
#: extract (unweighted); below it the group's DSR is not shown.
MIN_AGE_SAMPLE = 100


def age_structure(persons: pd.DataFrame, group_col: str, groups: Sequence[str], min_age: int = 0) -> pd.DataFrame:
    """Age distribution (ESP2013 five-year bands) within each group of the registered population.

    Two steps, so that a small sampled group does not give a five-year band a near-zero population:
    (1) the group's share in six broad bands (:data:`BROAD_AGE_BANDS`) from weighted person-years
    (``exposure``) of people aged ``min_age``+ with the group recorded; (2) each broad band split into
    five-year bands in proportion to the whole area's registered population (all groups, recorded or
    not) within it. Columns: group, age_band, exposure (the group's weighted person-years in the band),
    share, sample_n (people in the extract with the group, unweighted).
    """
    require_columns(persons, argument="persons", columns=[group_col, "age", "exposure"])
    everyone = persons[persons["age"] >= min_age]
    band = esp_band(everyone["age"]).to_numpy()
    to_broad = {b: k for k, bands in BROAD_AGE_BANDS.items() for b in bands}
    all_band = pd.Series(everyone["exposure"].to_numpy(), index=band).groupby(level=0).sum().reindex(stats.ESP2013_BANDS).fillna(0.0)
    broad_of = pd.Series(to_broad).reindex(stats.ESP2013_BANDS)
    within = all_band / all_band.groupby(broad_of).transform("sum").replace(0, np.nan)
    within = within.fillna(all_band.groupby(broad_of).transform("size").rdiv(1.0))  # no one at all: split evenly
    d = everyone[everyone[group_col].isin(groups)]
    d_band = esp_band(d["age"]).to_numpy()
    rows = []
    for g in groups:
        m = (d[group_col] == g).to_numpy()
        e_band = pd.Series(d["exposure"].to_numpy()[m], index=d_band[m]).groupby(level=0).sum().reindex(stats.ESP2013_BANDS).fillna(0.0)
        e_broad = e_band.groupby(broad_of).sum()
        tot = float(e_broad.sum())
        for b in stats.ESP2013_BANDS:
            share = float(e_broad[broad_of[b]] / tot * within[b]) if tot > 0 else 0.0
            rows.append({"group": g, "age_band": b, "exposure": float(e_band[b]), "share": share, "sample_n": int(m.sum())})
    return pd.DataFrame(rows)


def scaled_denominators(totals: pd.DataFrame, structure: pd.DataFrame) -> pd.DataFrame:
    """Residents by group x age band: Census group total x the group's age shares (:func:`age_structure`).

    ASSUMPTION (stated in the pack): within a group, residents have the age structure of the
    group's registered patients with a recorded code. Columns: group, age_band, population (and
    sample_n when the structure has it).
    """
    require_columns(totals, argument="totals", columns=["group", "residents"])
    require_columns(structure, argument="structure", columns=["group", "age_band", "share"])
    d = structure.merge(totals[["group", "residents"]], on="group", how="left", validate="many_to_one")
    if d["residents"].isna().any():
        raise ValueError(f"totals has no residents for groups {sorted(d.loc[d['residents'].isna(), 'group'].unique())}")
    d["population"] = d["residents"] * d["share"]
    cols = ["group", "age_band", "population"] + (["sample_n"] if "sample_n" in d.columns else [])
    return d[cols]


# ------------------------------------------------------------------------------------ rates by group

def dsr_rate_ratio(d1: float, v1: float, o1: float, d2: float, v2: float, o2: float, confidence: float = 0.95,
                   min_count: float = stats.DSR_MIN_COUNT) -> tuple[float, float, float]:
    """Ratio of two directly standardised rates with a log-normal interval.

    ``SE(log(DSR1/DSR2)) = sqrt(var1/DSR1^2 + var2/DSR2^2)`` with each DSR's variance
    ``sum(w_i^2 x_i / n_i^2) / (sum w_i)^2`` (Poisson counts; Breslow & Day 1987 vol II s.2.3;
    Rothman & Greenland, Modern Epidemiology, ch. 15; the delta method). With a single age band it
    is exactly the crude log-normal rate ratio of :func:`spstudy.methods.stats.rate_ratio`. NaN when either
    total count O is below ``min_count`` (Fingertips shows no DSR there) or a DSR is 0.
    """
    c = stats.check_confidence(confidence)
    if not (o1 >= min_count and o2 >= min_count and d1 > 0 and d2 > 0):
        return (float("nan"),) * 3
    rr = d1 / d2
    se = np.sqrt(v1 / d1**2 + v2 / d2**2)
    z = stats.z_value(c)
    return float(rr), float(rr * np.exp(-z * se)), float(rr * np.exp(z * se))


def group_rates(referrals: pd.DataFrame, denominators: pd.DataFrame, group_col: str, groups: Sequence[str],
                reference_group: str, years: float, missing_groups: Sequence[str] = (NOT_STATED, NOT_RECORDED),
                multiplier: float = 1000, confidence: float = 0.95, min_age_sample: int = MIN_AGE_SAMPLE) -> pd.DataFrame:
    """Referral rates per ``multiplier`` residents per year by group: crude and directly age-standardised.

    Parameters
    ----------
    referrals : referrals of the area's residents with ``group_col`` and ``esp_band`` (age at referral).
    denominators : group, age_band, population (residents; e.g. :func:`scaled_denominators`).
    groups : the groups with a denominator (e.g. the Census five); other rows (``missing_groups``)
        are reported with their counts and share only.
    reference_group : comparator for the rate ratios (parameters ``equity.reference_ethnic_group``).
    years : length of the study period in years (person-years = residents x years).

    Returns one row per group (``groups`` then ``missing_groups``): referrals, pct_of_referrals (of
    all), residents, crude_rate / crude_rate_lower / crude_rate_upper (Byar's or exact), dsr / dsr_lower /
    dsr_upper (2013 ESP, Dobson), rr_crude (vs reference, log-normal) with rr_crude_lower/upper,
    rr_dsr with rr_dsr_lower/upper (:func:`dsr_rate_ratio`), rr_area (vs the area average of the
    recorded groups, whose rate is recorded referrals / all residents) with limits, pct_of_recorded
    (share of referrals with a group), pct_of_population (share of residents) and
    representation_ratio = pct_of_recorded / pct_of_population, which equals rr_area. rr_area's
    interval treats the group and the area as independent (they overlap), so it is approximate.
    When ``denominators`` has ``sample_n`` (people behind the group's age structure) below
    ``min_age_sample``, the group's DSR and DSR ratio are not shown; ``note`` says why (also when the
    count is under 10, the Fingertips rule).
    """
    require_columns(referrals, argument="referrals", columns=[group_col, "esp_band"])
    require_columns(denominators, argument="denominators", columns=["group", "age_band", "population"])
    if reference_group not in groups:
        raise ValueError(f"reference_group {reference_group!r} is not one of the groups {list(groups)}")
    if not years > 0:
        raise ValueError(f"years must be > 0; got {years!r}")
    c = stats.check_confidence(confidence)
    counts = referrals.groupby([group_col, "esp_band"]).size().rename("count")
    den = denominators[denominators["group"].isin(groups)].copy()
    den["count"] = [counts.get((g, b), 0) for g, b in zip(den["group"], den["age_band"])]
    bad = den[(den["population"] <= 0) & (den["count"] > 0)]
    if len(bad):
        raise ValueError(f"denominators: referrals but no population in {bad[['group', 'age_band']].values.tolist()[:5]}")
    # bands with neither referrals nor residents contribute nothing; a tiny population keeps dsr() defined
    den["py"] = np.where(den["population"] > 0, den["population"] * years, 1e-9)
    ds = stats.dsr(den, "count", "py", "age_band", by="group", multiplier=multiplier, confidence=c)
    e = stats.esp2013().set_index("age_band")["population"]
    den["w"] = den["age_band"].map(e)
    den["wr"] = den["w"] * den["count"] / den["py"]
    den["wv"] = den["w"] ** 2 * den["count"] / den["py"] ** 2
    agg = den.groupby("group")[["count", "population", "w", "wr", "wv"]].sum()
    agg["d"] = agg["wr"] / agg["w"]
    agg["v"] = agg["wv"] / agg["w"] ** 2
    total_ref = len(referrals)
    rows = []
    rec_total = float(agg["count"].sum())
    pop_total = float(agg["population"].sum())
    ref = agg.loc[reference_group]
    sample = den.groupby("group")["sample_n"].first() if "sample_n" in den.columns else pd.Series(dtype=float)
    thin = {g for g in agg.index if g in sample.index and sample[g] < min_age_sample}
    for g in list(groups) + [m for m in missing_groups]:
        n = int((referrals[group_col] == g).sum())
        row = {"group": g, "referrals": n, "pct_of_referrals": 100 * n / total_ref if total_ref else np.nan}
        if g in agg.index:
            a = agg.loc[g]
            pop = float(a["population"])
            row["residents"] = pop
            if pop > 0:
                cr = stats.crude_rate(n, pop * years, multiplier, c).iloc[0]
                row.update(crude_rate=cr["rate"], crude_rate_lower=cr["rate_lower"], crude_rate_upper=cr["rate_upper"])
            d = ds[ds["group"] == g].iloc[0]
            row.update(dsr=d["dsr"], dsr_lower=d["dsr_lower"], dsr_upper=d["dsr_upper"])
            if g == reference_group:  # the comparator itself: ratio 1 by definition, no interval
                row.update(rr_crude=1.0, rr_dsr=1.0 if np.isfinite(a["d"]) and a["count"] >= stats.DSR_MIN_COUNT else np.nan)
            elif pop > 0 and ref["population"] > 0:
                rr = stats.rate_ratio(n, pop * years, ref["count"], ref["population"] * years, c).iloc[0]
                row.update(rr_crude=rr["rate_ratio"], rr_crude_lower=rr["rate_ratio_lower"], rr_crude_upper=rr["rate_ratio_upper"])
            if pop > 0 and ref["population"] > 0:
                ra = stats.rate_ratio(n, pop * years, rec_total, pop_total * years, c).iloc[0]
                row.update(rr_area=ra["rate_ratio"], rr_area_lower=ra["rate_ratio_lower"], rr_area_upper=ra["rate_ratio_upper"])
            if g != reference_group:
                rd = dsr_rate_ratio(a["d"], a["v"], a["count"], ref["d"], ref["v"], ref["count"], c)
                row.update(rr_dsr=rd[0], rr_dsr_lower=rd[1], rr_dsr_upper=rd[2])
            notes = []
            if a["count"] < stats.DSR_MIN_COUNT:
                notes.append(f"age-standardised rate not shown: fewer than {stats.DSR_MIN_COUNT} referrals")
            if g in thin or reference_group in thin:
                row.update(rr_dsr=np.nan, rr_dsr_lower=np.nan, rr_dsr_upper=np.nan)
                if g in thin:
                    row.update(dsr=np.nan, dsr_lower=np.nan, dsr_upper=np.nan)
                    notes.append(f"age-standardised rate not shown: fewer than {min_age_sample} registered people in the extract "
                                 "to estimate the group's age structure")
                else:
                    notes.append("age-standardised ratio not shown: the reference group's age structure rests on too few people")
            row["note"] = "; ".join(notes)
            row["pct_of_recorded"] = 100 * n / rec_total if rec_total else np.nan
            row["pct_of_population"] = 100 * pop / pop_total if pop_total else np.nan
            row["representation_ratio"] = (row["pct_of_recorded"] / row["pct_of_population"]
                                           if row["pct_of_population"] and row["pct_of_population"] > 0 else np.nan)
        rows.append(row)
    cols = ["group", "referrals", "pct_of_referrals", "residents", "crude_rate", "crude_rate_lower", "crude_rate_upper", "dsr",
            "dsr_lower", "dsr_upper", "rr_crude", "rr_crude_lower", "rr_crude_upper", "rr_dsr", "rr_dsr_lower", "rr_dsr_upper",
            "rr_area", "rr_area_lower", "rr_area_upper", "pct_of_recorded", "pct_of_population", "representation_ratio", "note"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    out["note"] = out["note"].fillna("")
    return out


def ethnicity_rates(data: EquityData, reference_group: str = "White", confidence: float = 0.95) -> pd.DataFrame:
    """Referral rates by Census 2021 ethnic group for the area's residents (see :func:`group_rates`).

    Denominators: Census 2021 TS021 residents of the area's LSOAs, split by age with the
    registered population's age structure within each group (:func:`scaled_denominators`)."""
    totals = census_ethnicity_totals(data.area)
    den = scaled_denominators(totals, age_structure(data.persons, "ethnic_group", CENSUS5_GROUPS))
    return group_rates(data.resident_referrals, den, "ethnic_group", CENSUS5_GROUPS, reference_group, data.years,
                       confidence=confidence)


def proficiency_rates(data: EquityData, reference_key: str = "main_english", confidence: float = 0.95) -> pd.DataFrame:
    """Referral rates by proficiency in English for the area's residents aged 3+ (see :func:`group_rates`).

    Denominators: Census 2021 TS029 residents aged 3+ of the area's MSOAs, split by age with the
    registered population's age structure (aged 3+) within each proficiency group."""
    if reference_key not in PROFICIENCY_LABELS:
        raise ValueError(f"reference_key must be one of {list(PROFICIENCY_LABELS)}; got {reference_key!r}")
    groups = list(PROFICIENCY_LABELS.values())
    totals = census_proficiency_totals(data.area)
    den = scaled_denominators(totals, age_structure(data.persons, "proficiency", groups, min_age=3))
    ref = data.resident_referrals
    ref = ref[ref["age"] >= 3]
    return group_rates(ref, den, "proficiency", groups, PROFICIENCY_LABELS[reference_key], data.years,
                       missing_groups=(NOT_RECORDED,), confidence=confidence)


def registered_representation(data: EquityData, group_col: str, groups: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Referrals per 1,000 registered person-years by a finer grouping (detailed ethnic category,
    main language) where no Census denominator exists, against the registered population.

    Rate = referrals / weighted registered person-years x 1,000 (crude, Byar's / exact interval);
    representation_ratio = share of recorded referrals / share of recorded registered population
    (= rate / rate of all people with the field recorded, log-normal interval, approximate because
    the group is part of the comparator). Missing categories (Not stated / Not recorded) get counts
    and shares only. Columns: group, referrals, pct_of_referrals, registered_py, rate, rate_lower, rate_upper,
    pct_of_recorded, pct_of_registered, representation_ratio, representation_ratio_lower, representation_ratio_upper.
    """
    require_columns(data.persons, argument="persons", columns=[group_col, "exposure"])
    c = stats.check_confidence(confidence)
    refs = data.referrals
    pop = data.persons.groupby(group_col)["exposure"].sum()
    n = refs.groupby(group_col).size()
    known = [g for g in groups if g not in (NOT_STATED, NOT_RECORDED)]
    X = float(sum(n.get(g, 0) for g in known))
    N = float(sum(pop.get(g, 0.0) for g in known))
    rows = []
    for g in groups:
        x = int(n.get(g, 0))
        row = {"group": g, "referrals": x, "pct_of_referrals": 100 * x / len(refs) if len(refs) else np.nan}
        if g in known and pop.get(g, 0) > 0:
            py = float(pop[g])
            cr = stats.crude_rate(x, py, 1000, c).iloc[0]
            rr = stats.rate_ratio(x, py, X, N, c).iloc[0] if X > 0 else None
            row.update(registered_py=py, rate=cr["rate"], rate_lower=cr["rate_lower"], rate_upper=cr["rate_upper"],
                       pct_of_recorded=100 * x / X if X else np.nan, pct_of_registered=100 * py / N,
                       representation_ratio=rr["rate_ratio"] if rr is not None else np.nan,
                       representation_ratio_lower=rr["rate_ratio_lower"] if rr is not None else np.nan,
                       representation_ratio_upper=rr["rate_ratio_upper"] if rr is not None else np.nan)
        rows.append(row)
    cols = ["group", "referrals", "pct_of_referrals", "registered_py", "rate", "rate_lower", "rate_upper", "pct_of_recorded",
            "pct_of_registered", "representation_ratio", "representation_ratio_lower", "representation_ratio_upper"]
    return pd.DataFrame(rows).reindex(columns=cols)


# ------------------------------------------------------------------------------------ GLMs

def _design(df: pd.DataFrame, factors: Mapping[str, object], numeric: Sequence[str] = ()) -> tuple[pd.DataFrame, list[dict]]:
    """Treatment-coded design matrix with an intercept.

    ``factors`` maps a column to its reference level, or to a list of levels whose first is the
    reference (None: the first level in sorted order). Levels absent from the data are skipped; a
    reference level absent from the data is a ValueError.
    """
    cols = {"Intercept": np.ones(len(df))}
    terms = [{"term": "Intercept", "factor": "", "level": "", "reference": ""}]
    for f, spec in factors.items():
        require_columns(df, argument="factors", columns=[f])
        v = df[f].astype(object)
        if v.isna().any():
            raise ValueError(f"factor {f!r} has {int(v.isna().sum())} missing value(s); code them as a category or drop the rows first")
        present = list(dict.fromkeys(v))
        if isinstance(spec, (list, tuple)):
            levels = [x for x in spec if x in present] + sorted((x for x in present if x not in spec), key=str)
            ref = spec[0]
        else:
            levels = sorted(present, key=str)
            ref = levels[0] if spec is None else spec
        if ref not in present:
            raise ValueError(f"factor {f!r}: reference level {ref!r} does not occur in the data (levels: {sorted(map(str, present))})")
        for lev in levels:
            if lev == ref:
                continue
            name = f"{f}[{lev}]"
            cols[name] = (v == lev).to_numpy(dtype=float)
            terms.append({"term": name, "factor": f, "level": lev, "reference": ref})
    for x in numeric:
        require_columns(df, argument="numeric", columns=[x])
        cols[x] = df[x].to_numpy(dtype=float)
        terms.append({"term": x, "factor": x, "level": "", "reference": ""})
    return pd.DataFrame(cols, index=df.index), terms


def _coef_table(res, terms: list[dict], confidence: float, ratio_name: str, not_estimable: set[str] = frozenset()) -> pd.DataFrame:
    """Coefficients with Wald intervals; terms in ``not_estimable`` (a level with no events, or only
    events: the estimate runs off to infinity) are blanked and flagged in ``note``."""
    z = stats.z_value(confidence)
    t = pd.DataFrame(terms)
    t["estimate"] = np.asarray(res.params)
    t["se"] = np.asarray(res.bse)
    bad = t["term"].isin(not_estimable).to_numpy()
    t.loc[bad, ["estimate", "se"]] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        t["z"] = t["estimate"] / t["se"]
        t["p"] = 2 * _st.norm.sf(np.abs(t["z"]))
        t[ratio_name] = np.exp(t["estimate"])
        t[f"{ratio_name}_lower"] = np.exp(t["estimate"] - z * t["se"])
        t[f"{ratio_name}_upper"] = np.exp(t["estimate"] + z * t["se"])
    t["note"] = np.where(bad, "not estimable: no events (or only events) at this level", "")
    return t


def _not_estimable(df: pd.DataFrame, y: np.ndarray, terms: list[dict], factors: Mapping[str, object], binary: bool) -> set[str]:
    out = set()
    for t in terms:
        if t["factor"] in factors and t["level"] != "":
            at = (df[t["factor"]].astype(object) == t["level"]).to_numpy()
            ev = y[at].sum()
            if ev == 0 or (binary and ev == at.sum()):
                out.add(t["term"])
    return out


@dataclass(frozen=True)
class ModelFit:
    """A fitted GLM: its coefficient table and the fit statistics that go with it.

    ``coefficients``: one row per term (see :func:`poisson_glm`, :func:`logistic_glm`); ``method``
    names the model; ``dispersion`` is 1 unless estimated (quasi-Poisson); ``pearson_chi2`` is NaN
    where not computed; ``n`` is the number of rows (cells or people) fitted.
    """

    coefficients: pd.DataFrame
    method: str
    dispersion: float
    deviance: float
    pearson_chi2: float
    df_resid: float
    n: int


@dataclass(frozen=True)
class AdjustedRatios:
    """Adjusted rate ratios by group (:func:`adjusted_rate_ratios`): the table and how it was made.

    ``table``: group, referrals, exposure, log_rr, se, rate_ratio, rate_ratio_lower, rate_ratio_upper, p; ``adjusted_for``:
    the adjustment variables actually used (one-level ones dropped); ``fit``: the underlying model.
    """

    table: pd.DataFrame
    adjusted_for: tuple[str, ...]
    fit: ModelFit

    @property
    def dispersion(self) -> float:
        return self.fit.dispersion

    @property
    def method(self) -> str:
        return self.fit.method


def poisson_glm(df: pd.DataFrame, count: str, exposure: str, factors: Mapping[str, object], numeric: Sequence[str] = (),
                scale: str | float = "X2", confidence: float = 0.95) -> ModelFit:
    """Poisson log-linear model of ``count`` with offset log(``exposure``); rate ratios with intervals.

    ``scale='X2'``: quasi-Poisson standard errors, dispersion = Pearson chi-squared / residual df
    (as R ``glm(family = quasipoisson)``; McCullagh & Nelder 1989 s.4.5; Wald intervals on the log
    scale with the normal quantile). ``scale=1.0``: plain Poisson (R ``family = poisson``).
    Fitted by IRLS with statsmodels ``GLM``.

    Returns a :class:`ModelFit` whose ``coefficients`` has one row per coefficient: term, factor,
    level, reference, estimate (log rate ratio), se, z, p, rate_ratio, rate_ratio_lower, rate_ratio_upper, note (a factor
    level with no events is 'not estimable' and blanked rather than reported as a rate ratio of ~0);
    ``n`` is the number of cells.
    """
    import statsmodels.api as sm

    require_columns(df, argument="df", columns=[count, exposure])
    y = df[count].to_numpy(dtype=float)
    e = df[exposure].to_numpy(dtype=float)
    if (y < 0).any() or np.isnan(y).any():
        raise ValueError(f"column {count!r} must be >= 0 and not missing")
    if (e <= 0).any() or np.isnan(e).any():
        raise ValueError(f"column {exposure!r} must be > 0; {int((~(e > 0)).sum())} row(s) are not")
    X, terms = _design(df, factors, numeric)
    model = sm.GLM(y, X, family=sm.families.Poisson(), offset=np.log(e))
    res = model.fit(scale=scale if scale == "X2" else float(scale))
    out = _coef_table(res, terms, stats.check_confidence(confidence), "rate_ratio", _not_estimable(df, y, terms, factors, False))
    return ModelFit(out, "quasi-Poisson (Pearson X2/df)" if scale == "X2" else "Poisson", float(res.scale),
                    float(res.deviance), float(res.pearson_chi2), float(res.df_resid), int(len(df)))


def logistic_glm(df: pd.DataFrame, outcome: str, factors: Mapping[str, object], numeric: Sequence[str] = (),
                 confidence: float = 0.95) -> ModelFit:
    """Logistic regression (binomial GLM, logit link) of a 0/1 ``outcome``; odds ratios with Wald intervals.

    Fitted by IRLS with statsmodels ``GLM(family=Binomial())`` (as R ``glm(family = binomial)``).
    Returns a :class:`ModelFit` whose ``coefficients`` are term, factor, level, reference, n and
    events (rows and outcomes at the level; the whole sample for the intercept and numeric terms),
    estimate (log odds ratio), se, z, p, odds_ratio, odds_ratio_lower, odds_ratio_upper.
    """
    import statsmodels.api as sm

    require_columns(df, argument="df", columns=[outcome])
    y = df[outcome].to_numpy(dtype=float)
    if not np.isin(y, [0.0, 1.0]).all():
        raise ValueError(f"column {outcome!r} must be 0/1; got {sorted(set(y[~np.isin(y, [0.0, 1.0])]))[:5]}")
    X, terms = _design(df, factors, numeric)
    res = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    out = _coef_table(res, terms, stats.check_confidence(confidence), "odds_ratio", _not_estimable(df, y, terms, factors, True))
    # people and events at each factor level (for disclosure control of the published table)
    n, ev = [], []
    for t in terms:
        if t["factor"] in factors and t["level"] != "":
            at = (df[t["factor"]].astype(object) == t["level"]).to_numpy()
            n.append(int(at.sum()))
            ev.append(int(y[at].sum()))
        else:
            n.append(int(len(y)))
            ev.append(int(y.sum()))
    out.insert(4, "n", n)
    out.insert(5, "events", ev)
    return ModelFit(out, "logistic", 1.0, float(res.deviance), float("nan"), float(res.df_resid), int(len(df)))


def rubin_pool(estimates, variances, confidence: float = 0.95) -> pd.DataFrame:
    """Combine M estimates of each parameter with Rubin's rules.

    ``estimates`` and ``variances``: arrays M x K (or DataFrames with the parameters as columns).
    qbar = mean estimate; ubar = mean within-imputation variance; b = between-imputation variance
    (ddof 1); t = ubar + (1 + 1/M) b; df = (M - 1)(1 + 1/r)^2 with r = (1 + 1/M) b / ubar (Rubin
    1987, eq. 3.1.6; infinite when b = 0); fmi = (1 + 1/M) b / t (statsmodels ``MICE.combine``
    convention); interval qbar -/+ t_df sqrt(t). Source: Rubin DB (1987) *Multiple Imputation for
    Nonresponse in Surveys*, Wiley, ch. 3; van Buuren (2018) *Flexible Imputation of Missing Data*
    s.2.3-2.4.

    Returns one row per parameter: parameter, m, qbar, ubar, b, t, se, df, fmi, qbar_lower, qbar_upper.
    """
    names = list(estimates.columns) if isinstance(estimates, pd.DataFrame) else None
    q = np.atleast_2d(np.asarray(estimates, dtype=float))
    u = np.atleast_2d(np.asarray(variances, dtype=float))
    if q.shape != u.shape:
        raise ValueError(f"estimates {q.shape} and variances {u.shape} differ in shape")
    m = q.shape[0]
    if m < 2:
        raise ValueError(f"need at least 2 imputations; got {m}")
    if np.isnan(q).any() or np.isnan(u).any() or (u < 0).any():
        raise ValueError("estimates and variances must be finite and variances >= 0")
    c = stats.check_confidence(confidence)
    qbar = q.mean(0)
    ubar = u.mean(0)
    b = q.var(0, ddof=1)
    t = ubar + (1 + 1 / m) * b
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (1 + 1 / m) * b / ubar
        df = np.where(b > 0, (m - 1) * (1 + 1 / r) ** 2, np.inf)
        fmi = (1 + 1 / m) * b / t
    tq = np.where(np.isfinite(df), _st.t.ppf(1 - (1 - c) / 2, np.where(np.isfinite(df), df, 1)), stats.z_value(c))
    se = np.sqrt(t)
    return pd.DataFrame({"parameter": names or list(range(q.shape[1])), "m": m, "qbar": qbar, "ubar": ubar, "b": b, "t": t,
                         "se": se, "df": df, "fmi": fmi, "qbar_lower": qbar - tq * se, "qbar_upper": qbar + tq * se})


# ------------------------------------------------------------------------------------ adjusted comparison

def model_frame(data: EquityData, group_col: str = "ethnic_group", min_age: int = 16) -> pd.DataFrame:
    """Person-level frame for the count model: the area's registered population aged ``min_age``+.

    Social prescribing serves adults (the services' referrals are of people aged 16+), so younger
    people, who have essentially no referrals, are left out of the model. Columns: person_id,
    group, model_age_band, sex, imd_quintile, borough_code, referrals, exposure (weighted
    person-years), referred (bool). Rows with no IMD quintile (LSOA outside the IMD file) are dropped.
    """
    p = data.persons
    d = p[(p["age"] >= min_age) & p["imd_quintile"].notna()]
    out = pd.DataFrame({
        "person_id": d["person_id"].to_numpy(), "group": d[group_col].to_numpy(), "model_age_band": d["model_age_band"].to_numpy(),
        "sex": d["sex"].to_numpy(), "imd_quintile": d["imd_quintile"].astype(int).to_numpy(),
        "borough_code": d["borough_code"].to_numpy(), "referrals": d["referrals"].to_numpy(dtype=float),
        "exposure": d["exposure"].to_numpy(dtype=float), "referred": (d["referrals"] > 0).to_numpy(),
    })
    return out


def _adjusters(frame: pd.DataFrame, adjust: Sequence[str]) -> list[str]:
    """Drop adjustment variables with a single level (e.g. borough in a borough pack)."""
    return [a for a in adjust if frame[a].nunique() > 1]


def _fit_cells(frame: pd.DataFrame, groups: Sequence[str], reference_group: str, adjust: Sequence[str],
               confidence: float) -> ModelFit:
    keys = ["group"] + list(adjust)
    cells = frame.groupby(keys, observed=True)[["referrals", "exposure"]].sum().reset_index()
    cells = cells[cells["exposure"] > 0]
    factors = {"group": [reference_group] + [g for g in groups if g != reference_group]}
    for a in adjust:
        factors[a] = None
    return poisson_glm(cells, "referrals", "exposure", factors, confidence=confidence)


def _group_rows(coefs: pd.DataFrame, groups: Sequence[str], reference_group: str) -> pd.DataFrame:
    g = coefs[coefs["factor"] == "group"].set_index("level")
    rows = []
    for grp in groups:
        if grp == reference_group:
            rows.append({"group": grp, "log_rr": 0.0, "se": 0.0, "rate_ratio": 1.0, "rate_ratio_lower": np.nan, "rate_ratio_upper": np.nan, "p": np.nan})
        elif grp in g.index:
            r = g.loc[grp]
            rows.append({"group": grp, "log_rr": r["estimate"], "se": r["se"], "rate_ratio": r["rate_ratio"],
                         "rate_ratio_lower": r["rate_ratio_lower"], "rate_ratio_upper": r["rate_ratio_upper"], "p": r["p"]})
    return pd.DataFrame(rows)


def adjusted_rate_ratios(frame: pd.DataFrame, reference_group: str = "White", groups: Sequence[str] = CENSUS5_GROUPS,
                         adjust: Sequence[str] = ("model_age_band", "sex", "imd_quintile", "borough_code"),
                         confidence: float = 0.95) -> AdjustedRatios:
    """Complete-case adjusted referral rate ratios by group (quasi-Poisson GLM on cells, offset log
    weighted person-years), adjusting for ``adjust`` (variables with one level are dropped).

    Only people with a recorded group (in ``groups``) enter, referred or not. Returns group,
    referrals (recorded referrals in the model), exposure (weighted person-years), log_rr, se,
    rate_ratio, rate_ratio_lower, rate_ratio_upper, p, as the ``table`` of an :class:`AdjustedRatios`.
    """
    adj = _adjusters(frame, adjust)
    d = frame[frame["group"].isin(groups)]
    fit = _fit_cells(d, groups, reference_group, adj, confidence)
    out = _group_rows(fit.coefficients, groups, reference_group)
    tot = d.groupby("group")[["referrals", "exposure"]].sum()
    out.insert(1, "referrals", out["group"].map(tot["referrals"]).fillna(0).to_numpy())
    out.insert(2, "exposure", out["group"].map(tot["exposure"]).fillna(0).to_numpy())
    return AdjustedRatios(out, tuple(adj), fit)


def _stratum_shares(frame: pd.DataFrame, who: np.ndarray, weight: str, groups: Sequence[str],
                    strata_levels: Sequence[Sequence[str]]) -> dict:
    """Recorded group distribution (weights ``weight``) among rows ``who`` within nested strata.

    Returns {strata tuple: shares array} for each level of ``strata_levels`` (finest first) plus
    the overall distribution under key ()."""
    rec = frame[who & frame["group"].isin(groups)]
    out = {}
    for keys in strata_levels:
        t = rec.groupby(list(keys) + ["group"], observed=True)[weight].sum().unstack("group").reindex(columns=list(groups)).fillna(0.0)
        for k, row in t.iterrows():
            k = k if isinstance(k, tuple) else (k,)
            s = row.to_numpy(dtype=float)
            if s.sum() > 0:
                out[(tuple(keys), k)] = s
    s = rec.groupby("group")[weight].sum().reindex(list(groups)).fillna(0.0).to_numpy(dtype=float)
    out[((), ())] = s
    return out


def _lookup_shares(row_keys: dict, shares: dict, strata_levels: Sequence[Sequence[str]]) -> np.ndarray:
    for keys in strata_levels:
        k = ((tuple(keys)), tuple(row_keys[c] for c in keys))
        if k in shares:
            return shares[k]
    return shares[((), ())]


IMPUTATION_STRATA: list[list[str]] = [["borough_code", "model_age_band", "sex"], ["borough_code", "sex"], ["borough_code"]]


def _allocate(frame: pd.DataFrame, groups: Sequence[str], mask: np.ndarray, share_source: np.ndarray, weight_cols: Sequence[str],
              exclude: str | None = None, strata_levels=IMPUTATION_STRATA) -> pd.DataFrame:
    """Split rows ``mask`` (group missing) fractionally across ``groups`` in proportion to the
    recorded distribution of ``share_source`` rows in their stratum (expected allocation). With
    ``exclude``, that group gets no share (the 'none assigned' bound)."""
    sub = frame[mask]
    if not len(sub):
        return sub.iloc[0:0]
    shares = _stratum_shares(frame, share_source, weight_cols[0], groups, strata_levels)
    parts = []
    keys_cols = sorted({c for lv in strata_levels for c in lv})
    stratum = sub[keys_cols].astype(object).apply(tuple, axis=1)
    for key, rows in sub.groupby(stratum, sort=False):
        rk = dict(zip(keys_cols, key))
        s = _lookup_shares(rk, shares, strata_levels).copy()
        if exclude is not None:
            s[list(groups).index(exclude)] = 0.0
            if s.sum() == 0:
                s = np.ones(len(groups))
                s[list(groups).index(exclude)] = 0.0
        s = s / s.sum()
        for i, g in enumerate(groups):
            if s[i] <= 0:
                continue
            part = rows.copy()
            part["group"] = g
            for w in weight_cols:
                part[w] = part[w] * s[i]
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _complete_denominators(frame: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Non-referred rows with a recorded group, plus non-referred rows without one allocated across
    groups in proportion to the recorded non-referred population in their stratum."""
    nonref = ~frame["referred"].to_numpy()
    known = frame["group"].isin(groups).to_numpy()
    kept = frame[nonref & known]
    alloc = _allocate(frame, groups, nonref & ~known, nonref & known, ["exposure"])
    return pd.concat([kept, alloc], ignore_index=True)


def missing_ethnicity_sensitivity(frame: pd.DataFrame, reference_group: str = "White", groups: Sequence[str] = CENSUS5_GROUPS,
                                  adjust: Sequence[str] = ("model_age_band", "sex", "imd_quintile", "borough_code"),
                                  m: int = 20, seed: int | np.random.Generator = 2024, confidence: float = 0.95,
                                  bounds: bool = True) -> pd.DataFrame:
    """Adjusted rate ratios by group under four treatments of missing ethnicity (Not stated and
    Not recorded are both 'missing' here).

    1. **Complete cases**: people without a recorded group are left out (numerator and denominator).
    2. **Multiple imputation** (``m`` imputations, seeded): the group of each referred person without
       one is drawn from the recorded distribution of referred people in the same borough x age band
       x sex (coarser strata when a stratum has no recorded referral) by the approximate Bayesian
       bootstrap (Rubin & Schenker 1986, JASA 81:366: resample the stratum's donors with replacement,
       then draw from the resample), the model is refitted, and log rate ratios are pooled with
       Rubin's rules (:func:`rubin_pool`).
    3. **Bound: all assigned** to group g: every referred person without a group is put in g.
    4. **Bound: none assigned** to g: none is, they are spread over the other groups in proportion to
       the recorded referrals in their stratum.

    In 2-4 the denominators are completed the same way: non-referred people without a group are
    allocated fractionally across groups in proportion to the recorded non-referred population in
    their stratum (the expected allocation). Bounds are reported for each non-reference group g.

    Returns method, group, rate_ratio, rate_ratio_lower, rate_ratio_upper, log_rr, se, fmi (MI only), missing_referrals.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    c = stats.check_confidence(confidence)
    if reference_group not in groups:
        raise ValueError(f"reference_group {reference_group!r} is not one of {list(groups)}")
    adj = _adjusters(frame, adjust)
    strata = [[s for s in lv if s in frame.columns] for lv in IMPUTATION_STRATA]
    known = frame["group"].isin(groups).to_numpy()
    referred = frame["referred"].to_numpy()
    n_missing = float(frame.loc[referred & ~known, "referrals"].sum())
    rows = []

    cc = adjusted_rate_ratios(frame, reference_group, groups, adj, c).table
    for _, r in cc.iterrows():
        rows.append({"method": "Complete cases", **r[["group", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "log_rr", "se"]].to_dict()})

    den = _complete_denominators(frame, groups)
    ref_known = frame[referred & known]
    ref_missing = frame[referred & ~known].reset_index(drop=True)
    cell_keys = ["group"] + adj
    # everything except the referrals being imputed / bounded, summed into model cells once
    base = pd.concat([den, ref_known], ignore_index=True).groupby(cell_keys, observed=True)[["referrals", "exposure"]].sum().reset_index()

    if n_missing > 0 and m >= 2:
        # donors: recorded referred people, counted by person within each stratum
        keys_cols = sorted({s for lv in strata for s in lv})
        donors = {}
        for lv in strata:
            t = ref_known.groupby(list(lv) + ["group"], observed=True).size().unstack("group").reindex(columns=list(groups)).fillna(0)
            for k, row in t.iterrows():
                k = k if isinstance(k, tuple) else (k,)
                if row.sum() > 0:
                    donors[(tuple(lv), k)] = row.to_numpy(dtype=float)
        overall = ref_known.groupby("group").size().reindex(list(groups)).fillna(0).to_numpy(dtype=float)
        stratum = ref_missing[keys_cols].astype(object).apply(tuple, axis=1)
        index_by_stratum = {k: np.asarray(ix) for k, ix in ref_missing.groupby(stratum, sort=True).indices.items()}
        est, var = [], []
        for _ in range(m):
            g_new = np.empty(len(ref_missing), dtype=object)
            for key, ix in index_by_stratum.items():
                rk = dict(zip(keys_cols, key))
                cnt = overall
                for lv in strata:
                    kk = (tuple(lv), tuple(rk[c_] for c_ in lv))
                    if kk in donors:
                        cnt = donors[kk]
                        break
                n_obs = int(cnt.sum())
                boot = rng.multinomial(n_obs, cnt / n_obs)          # ABB step 1: resample the donors
                g_new[ix] = np.asarray(groups, dtype=object)[rng.choice(len(groups), size=len(ix), p=boot / n_obs)]
            imp = ref_missing.assign(group=g_new)[cell_keys + ["referrals", "exposure"]]
            fit = adjusted_rate_ratios(pd.concat([base, imp], ignore_index=True), reference_group, groups, adj, c).table
            fit = fit[fit["group"] != reference_group].set_index("group")
            est.append(fit["log_rr"])
            var.append(fit["se"] ** 2)
        E, V = pd.DataFrame(est), pd.DataFrame(var)
        ok = [g for g in E.columns if E[g].notna().all() and V[g].notna().all()]  # a group with no referrals is not estimable
        pooled = rubin_pool(E[ok], V[ok], c) if ok else pd.DataFrame(columns=["parameter", "qbar", "qbar_lower", "qbar_upper", "se", "fmi"])
        pooled = pd.concat([pooled, pd.DataFrame({"parameter": [g for g in E.columns if g not in ok]})], ignore_index=True)
        rows.append({"method": f"Multiple imputation (M={m})", "group": reference_group, "rate_ratio": 1.0, "rate_ratio_lower": np.nan,
                     "rate_ratio_upper": np.nan, "log_rr": 0.0, "se": 0.0})
        for _, r in pooled.iterrows():
            rows.append({"method": f"Multiple imputation (M={m})", "group": r["parameter"], "rate_ratio": np.exp(r["qbar"]),
                         "rate_ratio_lower": np.exp(r["qbar_lower"]), "rate_ratio_upper": np.exp(r["qbar_upper"]), "log_rr": r["qbar"], "se": r["se"],
                         "fmi": r["fmi"]})

    if bounds and n_missing > 0:
        for g in groups:
            if g == reference_group:
                continue
            up = pd.concat([base, ref_missing.assign(group=g)[cell_keys + ["referrals", "exposure"]]], ignore_index=True)
            fu = adjusted_rate_ratios(up, reference_group, groups, adj, c).table.set_index("group").loc[g]
            rows.append({"method": "Bound: all unrecorded assigned to the group", "group": g,
                         **fu[["rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "log_rr", "se"]].to_dict()})
            lo_alloc = _allocate(frame.assign(_w=frame["referrals"]), groups, referred & ~known, referred & known,
                                 ["_w", "referrals", "exposure"], exclude=g, strata_levels=strata)
            lo = pd.concat([base, lo_alloc[cell_keys + ["referrals", "exposure"]]], ignore_index=True)
            fl = adjusted_rate_ratios(lo, reference_group, groups, adj, c).table.set_index("group").loc[g]
            rows.append({"method": "Bound: none assigned to the group", "group": g,
                         **fl[["rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "log_rr", "se"]].to_dict()})
    out = pd.DataFrame(rows)
    if "fmi" not in out.columns:
        out["fmi"] = np.nan
    out["missing_referrals"] = n_missing
    return out[["method", "group", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "log_rr", "se", "fmi", "missing_referrals"]]


# ------------------------------------------------------------------------------------ uptake and outcome

def proportions_by_group(referrals: pd.DataFrame, group_col: str, groups: Sequence[str], value_col: str,
                         values: Sequence[str], confidence: float = 0.95, total: bool = False) -> pd.DataFrame:
    """Share of each group's referrals with each value of ``value_col`` (e.g. outcome, source), Wilson intervals.

    Returns one row per group x value: group, value, n, referrals (the group's total, the
    denominator), pct, pct_lower, pct_upper (percent). Groups with no referrals are kept with n = 0 and no
    percentages.
    """
    require_columns(referrals, argument="referrals", columns=[group_col, value_col])
    t = referrals.groupby([group_col, value_col]).size()
    tot = referrals.groupby(group_col).size()
    rows = []
    for g in list(groups) + sorted(set(referrals[group_col].dropna()) - set(groups), key=str):
        n_g = int(tot.get(g, 0))
        for v in values:
            rows.append({"group": g, "value": v, "n": int(t.get((g, v), 0)), "referrals": n_g})
    if total:  # every referral, as a last group "All"
        tv = referrals.groupby(value_col).size()
        for v in values:
            rows.append({"group": "All", "value": v, "n": int(tv.get(v, 0)), "referrals": len(referrals)})
    out = pd.DataFrame(rows)
    ok = out["referrals"] > 0
    ci = stats.wilson_ci(out.loc[ok, "n"], out.loc[ok, "referrals"], confidence, multiplier=100)
    for col, src in (("pct", "proportion"), ("pct_lower", "proportion_lower"), ("pct_upper", "proportion_upper")):
        out[col] = np.nan
        out.loc[ok, col] = ci[src].to_numpy()
    return out


def outcome_by_group(referrals: pd.DataFrame, group_col: str = "ethnic_group", groups: Sequence[str] = ETHNIC_GROUPS,
                     confidence: float = 0.95, total: bool = False) -> pd.DataFrame:
    """Seen / did not attend / declined as a share of each group's referrals (Wilson intervals);
    ``total`` adds the group "All"."""
    out = proportions_by_group(referrals, group_col, groups, "outcome", list(REFERRAL_OUTCOMES), confidence, total)
    return out.rename(columns={"value": "outcome"})


def source_by_group(referrals: pd.DataFrame, group_col: str = "ethnic_group", groups: Sequence[str] = ETHNIC_GROUPS,
                    confidence: float = 0.95, total: bool = False) -> pd.DataFrame:
    """Referral source (GP, other clinician, self, other agency) as a share of each group's referrals
    (Wilson); ``total`` adds the group "All"."""
    out = proportions_by_group(referrals, group_col, groups, "source", list(REFERRAL_SOURCES), confidence, total)
    return out.rename(columns={"value": "source"})


def dna_model(referrals: pd.DataFrame, reference_group: str = "White", group_col: str = "ethnic_group",
              groups: Sequence[str] = ETHNIC_GROUPS,
              adjust: Sequence[str] = ("model_age_band", "sex", "imd_quintile", "source", "borough_code"),
              confidence: float = 0.95) -> pd.DataFrame:
    """Odds of not attending (outcome 'dna' vs seen or declined) by group, adjusted for age band, sex,
    IMD 2025 quintile, referral source (reference: GP) and borough (when more than one).

    Logistic GLM (:func:`logistic_glm`); Not stated and Not recorded stay in the model as their own
    categories (never dropped). Referrals under 16 or without an IMD quintile are left out.
    Returns the coefficient table with ``odds_ratio`` (the intercept row's ``n`` is the number of referrals used).
    """
    require_columns(referrals, argument="referrals", columns=[group_col, "outcome"] + list(adjust))
    d = referrals[referrals["model_age_band"].notna() & referrals["imd_quintile"].notna()].copy()
    d["dna"] = (d["outcome"] == "dna").astype(int)
    d["imd_quintile"] = d["imd_quintile"].astype(int)
    present = [g for g in groups if (d[group_col] == g).any()]
    if reference_group not in present:
        raise ValueError(f"reference_group {reference_group!r} has no referrals to compare with")
    factors: dict[str, object] = {group_col: [reference_group] + [g for g in present if g != reference_group]}
    for a in adjust:
        if d[a].nunique() > 1:
            factors[a] = "gp" if a == "source" and (d[a] == "gp").any() else None
    return logistic_glm(d, "dna", factors, confidence=confidence).coefficients


# ------------------------------------------------------------------------------------ inequality summaries

def deprivation_rates(data: EquityData, quantiles: int = 5, confidence: float = 0.95, multiplier: float = 1000) -> pd.DataFrame:
    """Referral rates per 1,000 residents per year by IMD 2025 national quintile or decile
    (``quantiles`` 5 or 10, parameters ``equity.deprivation_quintiles``; 1 = most deprived).

    Population: Census 2021 usual residents of the area's LSOAs (TS021 summed over groups) by the
    LSOA's IMD 2025 national quantile; referrals: the area's residents by the quantile of their LSOA
    of residence. Crude rates with Byar's / exact intervals. Columns: imd_quantile, residents,
    referrals, rate, rate_lower, rate_upper.
    """
    if quantiles not in (5, 10):
        raise ValueError(f"quantiles must be 5 (quintiles) or 10 (deciles); got {quantiles!r}")
    e = reference.ethnicity_lsoa21()
    e = e[e["borough_code"].isin(data.area.borough_codes)]
    pop = e.groupby("lsoa21_code")["residents"].sum()
    dec = reference.imd2025().set_index("lsoa21_code")["imd2025_imd_decile"]
    q = dec if quantiles == 10 else imd_quintile(dec)
    qpop = pop.groupby(pop.index.map(q)).sum()
    refs = data.resident_referrals
    col = "imd_decile" if quantiles == 10 else "imd_quintile"
    nref = refs.groupby(refs[col].astype(float)).size()
    rows = []
    for k in range(1, quantiles + 1):
        n_pop = float(qpop.get(k, 0))
        x = int(nref.get(float(k), 0))
        row = {"imd_quantile": k, "residents": n_pop, "referrals": x}
        if n_pop > 0:
            cr = stats.crude_rate(x, n_pop * data.years, multiplier, confidence).iloc[0]
            row.update(rate=cr["rate"], rate_lower=cr["rate_lower"], rate_upper=cr["rate_upper"])
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["imd_quantile", "residents", "referrals", "rate", "rate_lower", "rate_upper"])


SII_NOT_COMPUTED = "not computed: every IMD quantile needs residents and at least one referral"


def deprivation_sii(rates: pd.DataFrame, seed: int | np.random.Generator = 2024, reps: int = 100_000,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Slope and relative index of inequality of referral rates across IMD quantiles (:func:`deprivation_rates`;
    Low & Low 2004 via :func:`spstudy.methods.stats.sii_rii`, value_type 'rate', quantile 1 = most deprived first).

    SII: the modelled difference in rate (per 1,000 per year) between the least and the most deprived
    ends of the area's population (positive = more referrals where less deprived). RII: their ratio.
    Returns an empty frame (the columns, no rows) when a quantile has no residents or no referrals:
    the index is not computed then (:data:`SII_NOT_COMPUTED` says why). The rates' limits must be at
    ``confidence`` (:func:`deprivation_rates` with the same level): the SII's uncertainty is read from them.
    """
    d = rates.dropna(subset=["rate"])
    if len(d) < len(rates) or len(d) < 5 or (d["rate"] <= 0).any() or (d["residents"] <= 0).any():
        return pd.DataFrame(columns=["confidence", "sii", "sii_lower", "sii_upper", "rii", "rii_lower", "rii_upper", "reps"])
    return stats.sii_rii(d, "rate", "rate_lower", "rate_upper", "residents", "imd_quantile", confidence=confidence, reps=reps,
                         limits_confidence=confidence,
                         seed=seed, value_type="rate")


def disparity_index(rates: pd.DataFrame, rate_col: str = "dsr", population_col: str = "residents",
                    groups: Sequence[str] = CENSUS5_GROUPS) -> dict:
    """Index of disparity of group referral rates (Pearcy JN, Keppel KG (2002) Public Health Rep 117:273-280).

    ``ID = (sum_j |r_j - R| / J) / R x 100`` with R the total-population rate (population-weighted
    mean of the group rates, Pearcy & Keppel's reference), computed by
    :func:`spstudy.methods.stats.index_of_disparity`; also with R = the highest group rate (Keppel et al.
    2005 recommend the most favourable group; for access, the highest rate). Returns a dict with
    id_total, id_best, groups, rate_col and formula; NaN values when a rate is missing.
    """
    d = rates[rates["group"].isin(groups)].dropna(subset=[rate_col, population_col])
    res = {"rate_col": rate_col, "groups": list(d["group"]),
           "formula": "ID = mean over groups of |group rate - reference rate| / reference rate x 100 (Pearcy & Keppel 2002)"}
    if len(d) < 2 or (d[population_col] <= 0).any():
        return {**res, "id_total": float("nan"), "id_best": float("nan")}
    res["id_total"] = stats.index_of_disparity(d[rate_col], reference=None, populations=d[population_col])
    res["id_best"] = stats.index_of_disparity(d[rate_col], reference="max")
    return res


# ------------------------------------------------------------------------------------ language

def proficiency_comparison(data: EquityData, confidence: float = 0.95, total: bool = False) -> pd.DataFrame:
    """Proficiency in English among residents aged 3+ (Census 2021 TS029, area MSOAs) against the
    area's resident referrals with proficiency recorded.

    Columns: group, residents, pct_residents, referrals, pct_referrals (of recorded), pct_referrals_lower,
    pct_referrals_upper (Wilson), representation_ratio (pct_referrals / pct_residents).
    """
    t = census_proficiency_totals(data.area)
    refs = data.resident_referrals
    rec = refs[refs["proficiency"].isin(PROFICIENCY_LABELS.values())]
    n = rec.groupby("proficiency").size()
    out = t[["group", "residents"]].copy()
    out["pct_residents"] = 100 * out["residents"] / out["residents"].sum()
    out["referrals"] = out["group"].map(n).fillna(0).astype(int)
    if len(rec):
        ci = stats.wilson_ci(out["referrals"], len(rec), confidence, multiplier=100)
        out["pct_referrals"], out["pct_referrals_lower"], out["pct_referrals_upper"] = (ci["proportion"].to_numpy(), ci["proportion_lower"].to_numpy(),
                                                                                        ci["proportion_upper"].to_numpy())
    else:
        out["pct_referrals"] = out["pct_referrals_lower"] = out["pct_referrals_upper"] = np.nan
    out["representation_ratio"] = out["pct_referrals"] / out["pct_residents"]
    out["recorded"] = len(rec)  # the denominator of pct_referrals (referrals with proficiency recorded)
    if total:
        out = pd.concat([out, pd.DataFrame([{"group": "Recorded", "residents": int(out["residents"].sum()), "pct_residents": 100.0,
                                              "referrals": len(rec), "recorded": len(rec)}])], ignore_index=True)
    return out


def household_language(area: reference.Area) -> pd.DataFrame:
    """Household language (Census 2021 TS025) for the area's wards: households and percent by category.

    Ward estimates are derived from output areas (data/reference SOURCES.md section 3), so counts
    are estimates (not whole numbers). Columns: category, households, pct.
    """
    area = reference.as_area(area, "area")
    cw = reference.census_ward()
    d = cw[(cw["table"] == "TS025") & cw["borough_code"].isin(area.borough_codes)]
    t = d.groupby(["category_code", "category_name"], sort=True)["estimate"].sum().reset_index()
    t["pct"] = 100 * t["estimate"] / t["estimate"].sum()
    return t.rename(columns={"category_name": "category", "estimate": "households"})[["category", "households", "pct"]]


def main_language_not_english(data: EquityData, confidence: float = 0.95) -> pd.DataFrame:
    """Share whose main language is not English: residents aged 3+ (TS029), the registered
    population (weighted, language recorded) and resident referrals (language recorded), Wilson
    interval for the referrals. Columns: population, numerator, denominator, pct, pct_lower, pct_upper."""
    t = census_proficiency_totals(data.area)
    res_not = float(t.loc[t["key"] != "main_english", "residents"].sum())
    res_all = float(t["residents"].sum())
    p = data.persons[(data.persons["language"] != NOT_RECORDED) & (data.persons["age"] >= 3)]
    reg_not = float(p.loc[p["language"] != "English", "exposure"].sum())
    reg_all = float(p["exposure"].sum())
    refs = data.resident_referrals
    r = refs[refs["language"] != NOT_RECORDED]
    x, n = int((r["language"] != "English").sum()), len(r)
    rows = [{"population": "Residents aged 3+ (Census 2021 TS029)", "numerator": res_not, "denominator": res_all,
             "pct": 100 * res_not / res_all if res_all else np.nan, "pct_lower": np.nan, "pct_upper": np.nan},
            {"population": "Registered patients, language recorded (weighted person-years)", "numerator": reg_not,
             "denominator": reg_all, "pct": 100 * reg_not / reg_all if reg_all else np.nan, "pct_lower": np.nan, "pct_upper": np.nan}]
    if n:
        ci = stats.wilson_ci(x, n, confidence, multiplier=100).iloc[0]
        rows.append({"population": "Referrals, language recorded", "numerator": x, "denominator": n, "pct": ci["proportion"],
                     "pct_lower": ci["proportion_lower"], "pct_upper": ci["proportion_upper"]})
    return pd.DataFrame(rows)


def top_languages(data: EquityData, n: int = 10) -> pd.DataFrame:
    """The most common recorded main languages among referrals (English and Not recorded shown too),
    with the share of recorded referrals and the representation against the registered population
    (:func:`registered_representation`). Counts must go through disclosure control when published."""
    rep = registered_representation(data, "language", LANGUAGE_GROUPS)
    rec = rep[rep["group"] != NOT_RECORDED].sort_values("referrals", ascending=False)
    keep = list(rec.head(n)["group"])
    if "English" not in keep:
        keep.append("English")
    return pd.concat([rec[rec["group"].isin(keep)], rep[rep["group"] == NOT_RECORDED]], ignore_index=True)


def interpreter_need(referrals: pd.DataFrame, by: str | None = "proficiency", confidence: float = 0.95) -> pd.DataFrame:
    """Share of referrals (interpreter need recorded) needing an interpreter, overall and by ``by``,
    with Wilson intervals; and the DNA share of each interpreter group.

    Columns: the ``by`` value (or 'All referrals'), recorded (denominator), interpreter_needed, pct,
    pct_lower, pct_upper.
    """
    require_columns(referrals, argument="referrals", columns=["interpreter"] + ([by] if by else []))
    rec = referrals[referrals["interpreter"] != NOT_RECORDED]
    groups = [("All referrals", rec)]
    if by:
        groups += [(g, rec[rec[by] == g]) for g in order_levels(rec[by].unique(), PROFICIENCY_GROUPS if by == "proficiency" else [])]
    rows = []
    for g, d in groups:
        x, n = int((d["interpreter"] == INTERPRETER_GROUPS[0]).sum()), len(d)
        row = {"group": g, "recorded": n, "interpreter_needed": x}
        if n:
            ci = stats.wilson_ci(x, n, confidence, multiplier=100).iloc[0]
            row.update(pct=ci["proportion"], pct_lower=ci["proportion_lower"], pct_upper=ci["proportion_upper"])
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["group", "recorded", "interpreter_needed", "pct", "pct_lower", "pct_upper"])


# ------------------------------------------------------------------------------------ summary

DENOMINATOR_NOTE = (
    "**Denominators and assumptions.** Crude rates use Census 2021 usual residents of the area's LSOAs by ethnic group "
    "(TS021, all ages) or of its MSOAs by proficiency in English (TS029, aged 3 and over), and count referrals of people "
    "living in the area. The reference data hold no ethnicity-by-age (or proficiency-by-age) table, so for the "
    "age-standardised rates (2013 European Standard Population, Dobson intervals) the age structure *within* each group "
    "is taken from the registered population of the area's practices (people with the group recorded; non-referred "
    "people are a simple random sample at the extract's pool fraction and are weighted by its inverse) and scaled to the "
    "Census 2021 group total (the group's shares in six broad age bands, split into five-year bands by the area's overall "
    "age distribution, so that small groups do not get near-empty bands; no age-standardised rate where fewer than "
    f"{MIN_AGE_SAMPLE} people in the extract carry the group). This assumes that a group's residents have the same age "
    "structure as its registered patients with a recorded code. Referrals without a recorded group cannot be placed in a group, so group rates are "
    "underestimates when recording is incomplete; rate ratios are unbiased only if recording does not depend on the group."
)

MODEL_NOTE = (
    "**Adjusted comparison.** Poisson regression of referral counts in cells of ethnic group x age band (16-29 ... 80+) x "
    "sex x IMD 2025 national quintile of the LSOA of residence{borough}, with the log of weighted registered person-years in "
    "the study year as offset; people under 16 are left out (the services take adults). Standard errors are quasi-Poisson "
    "(dispersion = Pearson chi-squared / residual degrees of freedom, here {dispersion:.2f}), so intervals allow for "
    "over-dispersion. Missing ethnicity (not stated or not recorded): complete cases; bounds (every referral without a "
    "recorded group assigned to the group, or none of them); and multiple imputation (M = {m}) of the group of referrals "
    "without one from the recorded distribution within borough x age band x sex (approximate Bayesian bootstrap, seed "
    "{seed}), pooled with Rubin's rules on the log rate ratio."
)


SOURCE_SHORT = {"gp": "GP", "other_clinician": "Other clinician", "self": "Self-referral", "other_agency": "Other agency"}
TERM_LABELS = {"ethnic_group": "Ethnic group", "model_age_band": "Age band", "sex": "Sex", "imd_quintile": "IMD 2025 quintile",
               "source": "Referral source", "borough_code": "Borough", "group": "Ethnic group"}


def readable_terms(coefs: pd.DataFrame) -> pd.DataFrame:
    """Model coefficient table with plain-English ``label``s ('Referral source: Self-referral',
    'Sex: Male', 'Borough: Camden') for tables and forest plots."""
    bn = reference.BOROUGHS.set_index("borough_code")["borough_name"].to_dict()

    def lev(f, v):
        if f == "sex":
            return {"M": "Male", "F": "Female"}.get(v, v)
        if f == "source":
            return SOURCE_SHORT.get(v, v)
        if f == "borough_code":
            return bn.get(v, v)
        if f == "imd_quintile":
            return f"{v} (1 = most deprived)" if str(v) == "1" else str(v)
        return str(v)

    out = coefs.copy()
    out["label"] = [("Intercept" if f == "" else f"{TERM_LABELS.get(f, f)}: {lev(f, v)}") for f, v in zip(out["factor"], out["level"])]
    out["reference_label"] = [("" if f == "" else lev(f, r)) for f, r in zip(out["factor"], out["reference"])]
    return out
