"""Synthetic NCL social prescribing extracts with a known planted effect.

The generator makes a registered population for the 107 NCL wards from real reference data
(Census 2021 residents, sex, ethnic group and English proficiency; ONS mid-2020 ages; IMD 2025;
GP practice list sizes), simulates GP appointments and A&E attendances with over-dispersion,
frequent attenders and transient crises, social prescribing referrals at the volumes the boroughs
report (NCL review 2024) with planted under-referral of some groups, and a KNOWN effect of being seen
by a link worker on GP use, A&E use and wellbeing. It writes the five extract tables of the data
contract (:mod:`spstudy.contract`) and a truth file that analyses never read.

Every modelling choice, number and source is in ``parameters/synth.yaml`` (validated on load) and
``docs/synthetic_data.md``. Key properties:

* **Deterministic**: the same seed, scale, pool fraction and parameter file give byte-identical files.
  Random numbers come from :class:`numpy.random.SeedSequence` streams keyed by (seed, stream, block)
  over fixed blocks of ``output.block_persons`` persons, so chunking never changes the results.
* **Absolute volumes**: the referral hazard is scaled per service (two passes over the population)
  so the expected number of referrals is ``annual_referrals x scale`` whatever ``pool_fraction`` is.
* **Sample design**: every referred person is written, plus a Bernoulli sample of the non-referred
  registered population with inclusion probability ``pool_fraction`` (weight ``1 / pool_fraction``).
* **Bounded memory**: with ``chunk_persons`` the tables are written as folders of Parquet parts.

Public: :func:`generate`, :func:`load_synth_params`, :func:`main` (CLI ``spstudy synth``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import reference
from .checksums import sha256
from .contract import (
    CENSUS5_GROUPS,
    ENGLISH_PROFICIENCY,
    ETHNIC_TO_CENSUS5,
    LANGUAGES,
    ONS4_ITEMS,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
    SWEMWBS_ITEMS,
    TABLES,
    WEMWBS_ITEMS,
)

__all__ = ["generate", "load_synth_params", "main", "SynthParams", "DEFAULT_PARAMS_PATH"]

DEFAULT_PARAMS_PATH = reference.PROJECT_ROOT / "parameters" / "synth.yaml"

ETH_CODES = list("ABCDEFGHJKLMNPRS")           # NHS ethnic categories A-S (Z = not stated is a recording outcome)
PROF_CODES = list(ENGLISH_PROFICIENCY)          # main_english, very_well, well, not_well, not_at_all
SOURCES = list(REFERRAL_SOURCES)
REASONS = list(REFERRAL_REASONS)
OUTCOMES = ["seen", "dna", "declined"]
SERVICE_TYPES = ("link_worker", "care_navigation")
SLUGS = list(reference.BOROUGHS["borough"])
BOROUGH_CODES = list(reference.BOROUGHS["borough_code"])
SWEMWBS_FROM_WEMWBS = [0, 1, 2, 5, 6, 8, 10]    # WEMWBS items 1,2,3,6,7,9,11 (Stewart-Brown et al. 2009)

# random-number streams (each is SeedSequence([seed, stream, block]))
_S_PRACTICE, _S_PERSON, _S_REFERRAL, _S_SAMPLE, _S_ACTIVITY, _S_WELLBEING, _S_PRIOR = range(7)
ACTIVITY_LABELS = ["gp", "ae", "elective"]   # setting codes written to activity (contract.ACTIVITY_SETTINGS)
_ID_MOD = 10**10
_NO_DATE = np.iinfo(np.int32).max               # "no end" sentinel in day numbers

Slug = Literal["barnet", "camden", "enfield", "haringey", "islington"]
ProfCode = Literal["main_english", "very_well", "well", "not_well", "not_at_all"]
SourceCode = Literal["gp", "other_clinician", "self", "other_agency"]
ReasonCode = Literal["housing", "money", "mental_health", "isolation", "carers", "lifestyle"]


# ============================================================================== parameters

class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_shares(d: dict, what: str, tol: float = 1e-3) -> dict:
    if any(v < 0 for v in d.values()):
        raise ValueError(f"{what}: shares must be non-negative")
    s = sum(d.values())
    if abs(s - 1) > tol:
        raise ValueError(f"{what}: shares must sum to 1 (they sum to {s:.4f})")
    return d


def _check_steps(d: dict, what: str) -> dict:
    if 0 not in d:
        raise ValueError(f"{what}: needs a band starting at age 0 (keys are lower age bounds)")
    if any(v < 0 for v in d.values()):
        raise ValueError(f"{what}: values must be non-negative")
    return d




class Population(_M):
    age_reference_date: dt.date
    oldest_age: int = Field(ge=90, le=115)
    age_90plus_mean_excess: float = Field(gt=0, le=15)
    ethnic_within_group: dict[Literal["Asian", "Black", "Mixed", "White", "Other"], dict[str, float]]
    not_english_propensity: dict[str, float]
    languages_by_ethnicity: dict[str, dict[str, float]]
    interpreter_needed: dict[ProfCode, float]

    @model_validator(mode="after")
    def _v(self):
        for g in CENSUS5_GROUPS:
            if g not in self.ethnic_within_group:
                raise ValueError(f"ethnic_within_group: group {g!r} missing")
            d = self.ethnic_within_group[g]
            wrong = [c for c in d if ETHNIC_TO_CENSUS5.get(c) != g]
            if wrong:
                raise ValueError(f"ethnic_within_group.{g}: codes {wrong} are not in group {g}")
            _check_shares(d, f"ethnic_within_group.{g}")
        missing = [c for c in ETH_CODES if c not in self.not_english_propensity]
        if missing or set(self.not_english_propensity) - set(ETH_CODES):
            raise ValueError(f"not_english_propensity: needs exactly the codes {ETH_CODES} (missing {missing})")
        if self.not_english_propensity["A"] != 0:
            raise ValueError("not_english_propensity.A must be 0 (White British always has English as main language)")
        for c, v in self.not_english_propensity.items():
            if v < 0:
                raise ValueError(f"not_english_propensity.{c} must be >= 0")
            if v > 0 and c not in self.languages_by_ethnicity:
                raise ValueError(f"languages_by_ethnicity: code {c} has a non-English propensity but no language distribution")
        for c, d in self.languages_by_ethnicity.items():
            if c not in ETH_CODES:
                raise ValueError(f"languages_by_ethnicity: unknown ethnic code {c!r}")
            bad = [x for x in d if x not in LANGUAGES or x == "English"]
            if bad:
                raise ValueError(f"languages_by_ethnicity.{c}: unknown or English languages {bad} (allowed: contract.LANGUAGES except English)")
            _check_shares(d, f"languages_by_ethnicity.{c}")
        for k, v in self.interpreter_needed.items():
            if not 0 <= v <= 1:
                raise ValueError(f"interpreter_needed.{k} must be a probability")
        if set(self.interpreter_needed) != set(PROF_CODES):
            raise ValueError(f"interpreter_needed: needs every proficiency code {PROF_CODES}")
        return self


class Registration(_M):
    move_away_per_year: dict[int, float]
    mortality_gompertz: dict[Literal["intercept", "slope"], float]
    years_registered_mean: float = Field(gt=0, le=50)

    @field_validator("move_away_per_year")
    @classmethod
    def _steps(cls, v):
        return _check_steps(v, "move_away_per_year")


class RecordShares(_M):
    ethnicity_recorded: Optional[float] = Field(default=None, ge=0, le=1)
    ethnicity_not_stated: Optional[float] = Field(default=None, ge=0, le=1)
    language_recorded: Optional[float] = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _v(self):
        if (self.ethnicity_recorded is None) != (self.ethnicity_not_stated is None):
            raise ValueError("give ethnicity_recorded and ethnicity_not_stated together")
        if self.ethnicity_recorded is not None and self.ethnicity_recorded + self.ethnicity_not_stated > 1:
            raise ValueError("ethnicity_recorded + ethnicity_not_stated must be at most 1")
        return self


class Recording(_M):
    gp_record: dict[Slug, RecordShares]
    sp_record_referred: dict[Slug, RecordShares]

    @model_validator(mode="after")
    def _v(self):
        for s in SLUGS:
            r = self.gp_record.get(s)
            if r is None or r.ethnicity_recorded is None or r.language_recorded is None:
                raise ValueError(f"gp_record.{s}: every borough needs ethnicity_recorded, ethnicity_not_stated and language_recorded")
        return self


class LTC(_M):
    base: float = Field(ge=0)
    age_slope: float
    imd_slope: float
    max: int = Field(ge=0, le=20)
    gp_per_condition: float = Field(ge=0)
    ae_per_condition: float = Field(ge=0)


class FrequentAttenders(_M):
    share: float = Field(ge=0, le=0.5)
    gp_multiplier: float = Field(ge=1)
    ae_multiplier: float = Field(ge=1)


class Seasonality(_M):
    gp_amplitude: float = Field(ge=0, lt=1)
    ae_amplitude: float = Field(ge=0, lt=1)
    peak_month: int = Field(ge=1, le=12)


class Crisis(_M):
    onset_per_month: float = Field(ge=0, le=0.3)
    need_power: float = Field(ge=0, le=3)
    imd_log_slope: float
    peak_mean: float = Field(ge=0)
    peak_shape: float = Field(gt=0)
    decay_per_month: float = Field(ge=0, lt=1)
    ae_ratio: float = Field(ge=0)
    burn_in_months: int = Field(ge=0, le=60)


class NegativeControl(_M):
    """Elective (planned) admissions: the evaluation's negative-control outcome (no planted effect)."""

    per_person_year: float = Field(gt=0, le=5)
    need_power: float = Field(ge=0, le=3)
    crisis_ratio: float = Field(ge=0)


class HealthUse(_M):
    gp_per_person_year: float = Field(gt=0, le=50)
    ae_per_person_year: float = Field(gt=0, le=10)
    gp_age: dict[int, float]
    gp_female: dict[int, float]
    ae_age: dict[int, float]
    gp_imd_log_slope: float
    ae_imd_log_slope: float
    ltc: LTC
    frailty_shape: float = Field(gt=0)
    ae_frailty_power: float = Field(ge=0, le=3)
    ae_shape: float = Field(gt=0)
    frequent_attenders: FrequentAttenders
    seasonality: Seasonality
    crisis: Crisis
    elective: NegativeControl

    @field_validator("gp_age", "gp_female", "ae_age")
    @classmethod
    def _steps(cls, v, info):
        return _check_steps(v, info.field_name)


class Service(_M):
    name: str = Field(min_length=1)
    borough: Slug
    type: Literal["link_worker", "care_navigation"]
    pcns: list[str] = Field(min_length=1)
    annual_referrals: float = Field(ge=0)
    sources: dict[SourceCode, float]
    wait_days_mean: float = Field(gt=0, le=365)
    max_support_weeks: Optional[float] = Field(default=None, gt=0)

    @field_validator("sources")
    @classmethod
    def _src(cls, v):
        return _check_shares({k: v.get(k, 0.0) for k in SOURCES}, "sources")


class ReasonModifiers(_M):
    age_65_plus: dict[ReasonCode, float] = Field(default_factory=dict)
    imd_over_35: dict[ReasonCode, float] = Field(default_factory=dict)
    crisis: dict[ReasonCode, float] = Field(default_factory=dict)


class PriorReferrals(_M):
    """Referrals in the months before the study period (the loader excludes them; the evaluation
    must still keep these people out of the never-referred comparator pool)."""

    months: int = Field(ge=0, le=24)
    volume_ratio: float = Field(ge=0, le=3)


class Referrals(_M):
    services: list[Service] = Field(min_length=1)
    age_weight: dict[int, float]
    need_power: float = Field(ge=0, le=3)
    imd_log_slope: float
    crisis_multiplier: float = Field(ge=0)
    crisis_lag_months: int = Field(ge=0, le=6)
    practice_sd: float = Field(ge=0, le=3)
    inequity_ethnicity: dict[str, float]
    inequity_english: dict[ProfCode, float]
    dna_by_source: dict[SourceCode, float]
    declined_by_source: dict[SourceCode, float]
    dna_poor_english_multiplier: float = Field(ge=0)
    n_reasons_probs: list[float] = Field(min_length=3, max_length=3)
    reason_weights: dict[Slug, dict[ReasonCode, float]]
    reason_modifiers: ReasonModifiers
    support_days_median: float = Field(gt=0)
    support_days_sigma: float = Field(ge=0, le=3)
    contacts_per_fortnight: float = Field(ge=0)
    onward_per_seen: dict[Literal["link_worker", "care_navigation"], float]
    dna_closure_days: tuple[int, int]
    declined_closure_days: tuple[int, int]
    prior: PriorReferrals

    @model_validator(mode="after")
    def _v(self):
        _check_steps(self.age_weight, "age_weight")
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"services: names must be unique; got {names}")
        if set(self.inequity_ethnicity) != set(ETH_CODES) or any(v < 0 for v in self.inequity_ethnicity.values()):
            raise ValueError(f"inequity_ethnicity: needs a non-negative multiplier for every code {ETH_CODES}")
        if set(self.inequity_english) != set(PROF_CODES):
            raise ValueError(f"inequity_english: needs every proficiency code {PROF_CODES}")
        for name in ("dna_by_source", "declined_by_source"):
            d = getattr(self, name)
            if set(d) != set(SOURCES):
                raise ValueError(f"{name}: needs every source {SOURCES}")
        for s in SOURCES:
            if self.dna_by_source[s] + self.declined_by_source[s] >= 1:
                raise ValueError(f"dna_by_source.{s} + declined_by_source.{s} must be below 1")
        _check_shares(dict(enumerate(self.n_reasons_probs)), "n_reasons_probs")
        for b in SLUGS:
            if b not in self.reason_weights:
                raise ValueError(f"reason_weights: borough {b} missing")
            _check_shares({k: self.reason_weights[b].get(k, 0.0) for k in REASONS}, f"reason_weights.{b}")
        for name in ("dna_closure_days", "declined_closure_days"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 365:
                raise ValueError(f"{name}: expected [low, high] days with 0 <= low <= high <= 365")
        return self


class Latent(_M):
    referred_mean: float
    imd_slope: float
    trait_sd: float = Field(ge=0)
    crisis_effect: float = Field(ge=0)
    occasion_sd: float = Field(ge=0)


class Wemwbs(_M):
    population_mean: float = Field(ge=14, le=70)
    population_sd: float = Field(gt=0)
    item_noise_sd: float = Field(ge=0)
    item_offsets: list[float] = Field(min_length=14, max_length=14)


class Ons4Item(_M):
    mean: float = Field(ge=0, le=10)
    slope: float
    noise_sd: float = Field(ge=0)


class Wellbeing(_M):
    instrument: dict[Slug, Literal["ons4", "wemwbs", "swemwbs"]]
    baseline_share: dict[Slug, float]
    follow_up_rate: float = Field(gt=0, lt=1)
    benefit_slope: float
    latent: Latent
    wemwbs: Wemwbs
    ons4: dict[Literal["ons4_life_satisfaction", "ons4_worthwhile", "ons4_happy", "ons4_anxious"], Ons4Item]

    @model_validator(mode="after")
    def _v(self):
        for name in ("instrument", "baseline_share"):
            missing = [b for b in SLUGS if b not in getattr(self, name)]
            if missing:
                raise ValueError(f"{name}: boroughs missing {missing}")
        if any(not 0 <= v <= 1 for v in self.baseline_share.values()):
            raise ValueError("baseline_share: values must be probabilities")
        if set(self.ons4) != set(ONS4_ITEMS):
            raise ValueError(f"ons4: needs every item {ONS4_ITEMS}")
        return self


class EffectWellbeing(_M):
    wemwbs_total: float
    ons4_life_satisfaction: float
    ons4_worthwhile: float
    ons4_happy: float
    ons4_anxious: float


class Effect(_M):
    gp_rate_ratio: float = Field(gt=0, le=3)
    ae_rate_ratio: float = Field(gt=0, le=3)
    applies_to: list[Literal["link_worker", "care_navigation"]]
    wellbeing: EffectWellbeing
    individual_benefit_sd: float = Field(ge=0, le=5)

    @model_validator(mode="after")
    def _v(self):
        if self.gp_rate_ratio > 1 or self.ae_rate_ratio > 1:
            raise ValueError("gp_rate_ratio and ae_rate_ratio must be <= 1 (the effect is planted by thinning events)")
        return self


class Truth(_M):
    windows_months: list[int] = Field(min_length=1)

    @field_validator("windows_months")
    @classmethod
    def _w(cls, v):
        if any(m < 1 or m > 12 for m in v):
            raise ValueError("windows_months: whole months between 1 and 12 (the data run 12 months after the last referral)")
        return sorted(set(v))


class WorkforceRow(_M):
    borough: Slug
    pcn: Optional[str] = None
    role: Literal["link_worker", "health_wellbeing_coach", "care_coordinator"]
    fte: float = Field(ge=0, le=500)
    employer: str = Field(min_length=1)
    source: str = Field(min_length=1)
    derived: bool = False


class Output(_M):
    block_persons: int = Field(ge=1000, le=10_000_000)
    zstd_level: int = Field(ge=1, le=22)
    row_group_rows: int = Field(ge=10_000)


class SynthParams(_M):
    """Validated content of ``parameters/synth.yaml`` (see the comments there for every source)."""

    generator_version: str
    population: Population
    registration: Registration
    recording: Recording
    health_use: HealthUse
    referrals: Referrals
    wellbeing: Wellbeing
    effect: Effect
    truth: Truth
    workforce: list[WorkforceRow]
    output: Output

    @model_validator(mode="after")
    def _v(self):
        keys = [(w.borough, w.pcn, w.role, w.employer) for w in self.workforce]
        if len(set(keys)) != len(keys):
            raise ValueError("workforce: (borough, pcn, role, employer) must be unique")
        return self


def load_synth_params(path: Path | str = DEFAULT_PARAMS_PATH) -> SynthParams:
    """Read and validate the generator parameters (YAML). Raises ValueError naming the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: synthetic-data parameter file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    try:
        return SynthParams.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msg = "unknown key (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}: key '{key}': {msg}")
        raise ValueError("invalid synthetic-data parameters:\n  " + "\n  ".join(lines)) from None


# ============================================================================== helpers

def _rng(seed: int, stream: int, block: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(block)]))


def _cat(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``cum`` (row-wise cumulative probabilities ending at 1)."""
    u = rng.random(cum.shape[0])
    return (u[:, None] >= cum).sum(axis=1).astype(np.int64)


def _cum(p: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative probabilities with the last column exactly 1 (rows of zeros -> first category)."""
    p = np.asarray(p, dtype=np.float64)
    s = p.sum(axis=-1, keepdims=True)
    q = np.where(s > 0, p / np.where(s > 0, s, 1), 0.0)
    c = np.cumsum(q, axis=-1)
    c[..., -1] = 1.0
    return c


def _step(d: dict[int, float], x: np.ndarray) -> np.ndarray:
    """Step function over lower band bounds: value of the band containing x."""
    keys = np.array(sorted(d), dtype=np.float64)
    vals = np.array([d[k] for k in sorted(d)], dtype=np.float64)
    return vals[np.searchsorted(keys, x, side="right") - 1]


def _days(d) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _add_months(days: np.ndarray, k: int) -> np.ndarray:
    """Day numbers plus k calendar months (day of month clipped to the month's length)."""
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    dom = (d - m.astype("datetime64[D]")).astype(np.int64)
    m2 = m + k
    dim2 = ((m2 + 1).astype("datetime64[D]") - m2.astype("datetime64[D]")).astype(np.int64)
    return (m2.astype("datetime64[D]").astype(np.int64) + np.minimum(dom, dim2 - 1)).astype(np.int64)


def _person_hash(i: np.ndarray) -> np.ndarray:
    """Bijective pseudonym number for global person index i (affine map modulo 10^10)."""
    return (np.asarray(i, dtype=np.int64) * 6364136223 + 1442695041) % _ID_MOD


def _referral_hash(i: np.ndarray) -> np.ndarray:
    return (np.asarray(i, dtype=np.int64) * 7046029253 + 2718281829) % _ID_MOD


def _ids(prefix: str, h: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.asarray(h, dtype=np.int64).astype("U10"), 10))


def _logit(p):
    return math.log(p / (1 - p))


# ============================================================================== frame

@dataclass
class Frame:
    """Static inputs built once from the reference data, the parameters and the scale."""

    scale: float
    ward_codes: np.ndarray
    ward_borough: np.ndarray
    ward_n: np.ndarray
    ward_cum: np.ndarray
    n_persons: int
    band_lo: np.ndarray
    band_width: np.ndarray
    age_cum: np.ndarray
    female_share: np.ndarray
    ward_lsoa_idx: np.ndarray
    ward_lsoa_cum: np.ndarray
    lsoa_codes: np.ndarray
    lsoa_imd: np.ndarray
    lsoa_eth_cum: np.ndarray
    lsoa_pne: np.ndarray
    lsoa_prof_cum: np.ndarray
    lang_cum: np.ndarray
    interp_p: np.ndarray
    practice_codes: np.ndarray
    practice_pcn: np.ndarray
    practice_borough: np.ndarray
    borough_practice_idx: np.ndarray
    borough_practice_cum: np.ndarray
    practice_group: np.ndarray
    services: list
    service_group: np.ndarray
    group_services: list
    group_cum: np.ndarray
    group_targets: np.ndarray
    service_targets: np.ndarray
    # calendar
    data_start: int
    data_end: int
    ref_start: int
    ref_end: int
    month_start: np.ndarray
    month_dim: np.ndarray
    month_of_year: np.ndarray
    ref_months: np.ndarray
    n_days: int
    diagnostics: dict = field(default_factory=dict)


def _build_frame(P: SynthParams, study, scale: float) -> Frame:
    B = {code: i for i, code in enumerate(BOROUGH_CODES)}
    wards = reference.census_population("ncl").sort_values("ward22_code").reset_index(drop=True)
    ward_codes = wards["ward22_code"].to_numpy(dtype=object)
    ward_borough = wards["borough_code"].map(B).to_numpy(dtype=np.int64)
    ward_n = np.rint(wards["residents"].to_numpy(dtype=np.float64) * scale).astype(np.int64)
    ward_cum = np.cumsum(ward_n)
    n_persons = int(ward_cum[-1]) if len(ward_cum) else 0
    if n_persons >= 10**9:
        raise ValueError(f"scale: {scale} gives {n_persons:,} persons; the generator supports fewer than 10^9")
    if n_persons == 0:
        raise ValueError(f"scale: {scale} gives no persons; use a larger scale")

    # ---- age (mid-2020 five-year bands by ward, taken as ages at age_reference_date)
    pa_ = reference.population_ward_age()
    labels = sorted(pa_["age_band"].unique(), key=lambda s: int(str(s).rstrip("+").split("-")[0]))
    lo = np.array([int(str(s).rstrip("+").split("-")[0]) for s in labels], dtype=np.float64)
    width = np.array([5.0] * (len(labels) - 1) + [0.0])
    piv = pa_.pivot_table(index="ward22_code", columns="age_band", values="population", aggfunc="sum")
    piv = piv.reindex(index=ward_codes, columns=labels)
    if piv.isna().any().any():
        raise ValueError("population_ward_age: some wards or age bands are missing")
    age_cum = _cum(piv.to_numpy())

    # ---- sex (Census 2021 TS008 ward shares; independent of age within ward: ASSUMPTION)
    cw = reference.census_ward()
    ts8 = cw[cw["table"] == "TS008"].pivot_table(index="ward22_code", columns="category_code", values="estimate", aggfunc="sum")
    ts8 = ts8.reindex(ward_codes)
    female_share = (ts8["sex-female"] / (ts8["sex-female"] + ts8["sex-male"])).to_numpy(dtype=np.float64)

    # ---- LSOAs within ward (TS021 residents of the LSOAs best-fitted to the ward)
    lk = reference.lsoa21_lookup()[["lsoa21_code", "lsoa21_name", "ward22_code"]].sort_values("lsoa21_code").reset_index(drop=True)
    lsoa_codes = lk["lsoa21_code"].to_numpy(dtype=object)
    eth = reference.ethnicity_lsoa21().pivot_table(index="lsoa21_code", columns="group", values="residents", aggfunc="sum")
    eth = eth.reindex(index=lsoa_codes, columns=CENSUS5_GROUPS).fillna(0.0)
    lsoa_res = eth.sum(axis=1).to_numpy(dtype=np.float64)
    ward_pos = {w: i for i, w in enumerate(ward_codes)}
    lsoa_ward = lk["ward22_code"].map(ward_pos).to_numpy()
    members = [np.flatnonzero(lsoa_ward == w) for w in range(len(ward_codes))]
    if any(len(m) == 0 for m in members):
        raise ValueError("lsoa21_lookup: a ward has no best-fit LSOA")
    lmax = max(len(m) for m in members)
    ward_lsoa_idx = np.zeros((len(ward_codes), lmax), dtype=np.int64)
    wts = np.zeros((len(ward_codes), lmax))
    for w, m in enumerate(members):
        ward_lsoa_idx[w, : len(m)] = m
        ward_lsoa_idx[w, len(m):] = m[-1]
        wts[w, : len(m)] = lsoa_res[m]
    ward_lsoa_cum = _cum(wts)

    imd = reference.imd2025().set_index("lsoa21_code").reindex(lsoa_codes)
    if imd["imd2025_imd_score"].isna().any():
        raise ValueError("imd2025: some LSOAs have no IMD 2025 score")
    lsoa_imd = imd["imd2025_imd_score"].to_numpy(dtype=np.float64)

    # ---- detailed ethnic category: LSOA TS021 group share x London within-group share
    within = np.zeros((len(CENSUS5_GROUPS), len(ETH_CODES)))
    for gi, g in enumerate(CENSUS5_GROUPS):
        for c, v in P.population.ethnic_within_group[g].items():
            within[gi, ETH_CODES.index(c)] = v
        within[gi] /= within[gi].sum()
    grp_share = eth.to_numpy(dtype=np.float64) / np.maximum(lsoa_res[:, None], 1)
    det = grp_share @ within
    lsoa_eth_cum = _cum(det)

    # ---- English proficiency tied to ethnicity, MSOA margins held in expectation
    ep = reference.english_proficiency_msoa21()
    epw = ep.pivot_table(index="msoa21_name", columns="category", values="residents", aggfunc="sum")
    msoa = lk["lsoa21_name"].str.slice(0, -1).to_numpy(dtype=object)
    missing = sorted(set(msoa) - set(epw.index))
    if missing:
        raise ValueError(f"english_proficiency_msoa21: no MSOA for LSOA name prefixes {missing[:5]}")
    epw = epw.reindex(msoa)
    base = (epw["main_language_english"] + epw["main_language_not_english"]).to_numpy(dtype=np.float64)
    m_eng = epw["main_language_english"].to_numpy(dtype=np.float64) / base
    split = epw[["not_english_can_speak_english_very_well", "not_english_can_speak_english_well",
                 "not_english_cannot_speak_english_well", "not_english_cannot_speak_english"]].to_numpy(dtype=np.float64)
    lsoa_prof_cum = _cum(split)
    pi = np.array([P.population.not_english_propensity[c] for c in ETH_CODES])
    denom = det @ pi
    c_l = np.where(denom > 0, (1 - m_eng) / np.where(denom > 0, denom, 1), 0.0)
    raw_pne = c_l[:, None] * pi[None, :]
    lsoa_pne = np.minimum(raw_pne, 0.97)
    capped = float(((raw_pne > 0.97) * det).sum() / det.sum())

    lang_p = np.zeros((len(ETH_CODES), len(LANGUAGES)))
    for ci, c in enumerate(ETH_CODES):
        for lang, v in P.population.languages_by_ethnicity.get(c, {"Other": 1.0}).items():
            lang_p[ci, LANGUAGES.index(lang)] = v
    lang_cum = _cum(lang_p)
    interp_p = np.array([P.population.interpreter_needed[c] for c in PROF_CODES])

    # ---- practices within borough weighted by registered patients
    gp = reference.gp_practices().sort_values("practice_code").reset_index(drop=True)
    practice_codes = gp["practice_code"].to_numpy(dtype=object)
    practice_pcn = gp["pcn_code"].to_numpy(dtype=object)
    practice_borough = gp["borough_code"].map(B).to_numpy(dtype=np.int64)
    pmax = max(int((practice_borough == b).sum()) for b in range(len(SLUGS)))
    borough_practice_idx = np.zeros((len(SLUGS), pmax), dtype=np.int64)
    pw = np.zeros((len(SLUGS), pmax))
    for b in range(len(SLUGS)):
        m = np.flatnonzero(practice_borough == b)
        borough_practice_idx[b, : len(m)] = m
        borough_practice_idx[b, len(m):] = m[-1]
        pw[b, : len(m)] = gp["registered_patients"].to_numpy(dtype=np.float64)[m]
    borough_practice_cum = _cum(pw)

    # ---- services and coverage groups
    pcn_borough = dict(zip(gp["pcn_code"], gp["borough_code"].map(B)))
    pcn_services: dict[str, list[int]] = {}
    for si, s in enumerate(P.referrals.services):
        for pc in s.pcns:
            if pc not in pcn_borough:
                raise ValueError(f"referrals.services[{s.name}].pcns: {pc!r} is not a PCN code in reference.gp_practices()")
            if pcn_borough[pc] != SLUGS.index(s.borough):
                raise ValueError(f"referrals.services[{s.name}].pcns: {pc!r} is not in {s.borough}")
            pcn_services.setdefault(pc, []).append(si)
    combos = sorted({tuple(v) for v in pcn_services.values()})
    group_services = [list(c) for c in combos]
    service_group = np.full(len(P.referrals.services), -1, dtype=np.int64)
    for gi, c in enumerate(combos):
        for si in c:
            if service_group[si] not in (-1, gi):
                raise ValueError(f"referrals.services[{P.referrals.services[si].name}]: its PCNs are covered by different "
                                 "sets of services; services sharing a PCN must share all their PCNs")
            service_group[si] = gi
    practice_group = np.array([combos.index(tuple(pcn_services[pc])) if pc in pcn_services else -1 for pc in practice_pcn], dtype=np.int64)
    service_targets = np.array([s.annual_referrals * scale for s in P.referrals.services])
    group_targets = np.array([service_targets[c].sum() for c in group_services])
    gmax = max(len(c) for c in group_services)
    gs = np.zeros((len(group_services), gmax))
    for gi, c in enumerate(group_services):
        gs[gi, : len(c)] = service_targets[c]
    group_cum = _cum(gs)

    # ---- calendar
    ds, de = _days(study.data_start), _days(study.data_end)
    rs, re_ = _days(study.referral_start), _days(study.referral_end)
    months = np.arange(np.datetime64(study.data_start, "M"), np.datetime64(study.data_end, "M") + 1)
    mstart = months.astype("datetime64[D]").astype(np.int64)
    mdim = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    if mstart[0] != ds or mstart[-1] + mdim[-1] - 1 != de:
        raise ValueError("parameters/ncl.yaml study: data_start must be the first and data_end the last day of a month")
    rm = np.flatnonzero((mstart >= rs) & (mstart + mdim - 1 <= re_))
    if len(rm) == 0 or mstart[rm[0]] != rs or mstart[rm[-1]] + mdim[rm[-1]] - 1 != re_:
        raise ValueError("parameters/ncl.yaml study: referral_start/referral_end must be whole months")
    moy = (months.astype(np.int64) % 12) + 1

    return Frame(
        scale=scale, ward_codes=ward_codes, ward_borough=ward_borough, ward_n=ward_n, ward_cum=ward_cum,
        n_persons=n_persons, band_lo=lo, band_width=width, age_cum=age_cum, female_share=female_share,
        ward_lsoa_idx=ward_lsoa_idx, ward_lsoa_cum=ward_lsoa_cum, lsoa_codes=lsoa_codes, lsoa_imd=lsoa_imd,
        lsoa_eth_cum=lsoa_eth_cum, lsoa_pne=lsoa_pne, lsoa_prof_cum=lsoa_prof_cum, lang_cum=lang_cum,
        interp_p=interp_p, practice_codes=practice_codes, practice_pcn=practice_pcn,
        practice_borough=practice_borough, borough_practice_idx=borough_practice_idx,
        borough_practice_cum=borough_practice_cum, practice_group=practice_group,
        services=list(P.referrals.services), service_group=service_group, group_services=group_services,
        group_cum=group_cum, group_targets=group_targets, service_targets=service_targets,
        data_start=ds, data_end=de, ref_start=rs, ref_end=re_, month_start=mstart, month_dim=mdim,
        month_of_year=moy, ref_months=rm, n_days=de - ds + 1,
        diagnostics={"proficiency_share_capped": capped},
    )


# ============================================================================== persons

def _persons_block(F: Frame, P: SynthParams, seed: int, block: int, start: int, stop: int, practice_eff: np.ndarray):
    """Attributes, registration, latent need and crises for persons [start, stop). Deterministic per block."""
    rng = _rng(seed, _S_PERSON, block)
    n = stop - start
    gi = np.arange(start, stop, dtype=np.int64)
    ward = np.searchsorted(F.ward_cum, gi, side="right")
    borough = F.ward_borough[ward]

    # age at the reference date
    band = _cat(rng, F.age_cum[ward])
    u_age = rng.random(n)
    e90 = rng.exponential(P.population.age_90plus_mean_excess, n)
    age = F.band_lo[band] + u_age * F.band_width[band]
    top = F.band_width[band] == 0
    age = np.where(top, np.minimum(F.band_lo[band] + e90, P.population.oldest_age + 0.999), age)
    ref_day = _days(P.population.age_reference_date)
    birth = ref_day - np.floor(age * 365.25).astype(np.int64)
    birth_year = birth.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    age_i = np.floor(age)

    female = rng.random(n) < F.female_share[ward]
    lsoa = F.ward_lsoa_idx[ward, _cat(rng, F.ward_lsoa_cum[ward])]
    imd = F.lsoa_imd[lsoa]
    eth = _cat(rng, F.lsoa_eth_cum[lsoa])
    not_eng = rng.random(n) < F.lsoa_pne[lsoa, eth]
    prof_sub = _cat(rng, F.lsoa_prof_cum[lsoa])
    prof = np.where(not_eng, 1 + prof_sub, 0)
    lang_draw = _cat(rng, F.lang_cum[eth])
    lang = np.where(not_eng, lang_draw, 0)            # LANGUAGES[0] == "English"
    interp = rng.random(n) < F.interp_p[prof]
    practice = F.borough_practice_idx[borough, _cat(rng, F.borough_practice_cum[borough])]

    # registration: joined during the period (at the moving rate) or registered before it; ends by moving or death
    R = P.registration
    move = _step(R.move_away_per_year, age_i)
    q = np.minimum(0.5, np.exp(R.mortality_gompertz["intercept"] + R.mortality_gompertz["slope"] * age))
    mu = -np.log1p(-q)
    T_years = F.n_days / 365.25
    u_join, u_when, e_before, k_birth, e_end, u_reason = (rng.random(n), rng.random(n), rng.exponential(1.0, n),
                                                         rng.integers(0, 43, n), rng.exponential(1.0, n), rng.random(n))
    joined = u_join < (1 - np.exp(-move * T_years))
    born_in = birth >= F.data_start
    start_before = F.data_start - 1 - np.floor(e_before * R.years_registered_mean * 365.25).astype(np.int64)
    start_before = np.minimum(np.maximum(start_before, birth + k_birth), F.data_start - 1)
    start_joined = F.data_start + np.floor(u_when * F.n_days).astype(np.int64)
    reg_start = np.where(joined, start_joined, start_before)
    reg_start = np.where(born_in, np.minimum(birth + k_birth, F.data_end), reg_start)
    reg_start = np.maximum(reg_start, birth)
    h = move + mu
    from_day = np.maximum(reg_start, F.data_start)
    end = from_day + np.floor(e_end / h * 365.25).astype(np.int64)
    has_end = end <= F.data_end
    reg_end = np.where(has_end, end, _NO_DATE).astype(np.int64)
    died = has_end & (u_reason < mu / h)

    # what the GP record holds (missing at random within borough)
    gpr = P.recording.gp_record
    e_rec = np.array([gpr[s].ethnicity_recorded for s in SLUGS])[borough]
    e_ns = np.array([gpr[s].ethnicity_not_stated for s in SLUGS])[borough]
    l_rec = np.array([gpr[s].language_recorded for s in SLUGS])[borough]
    u_e = rng.random(n)
    eth_state = np.where(u_e < e_rec, 0, np.where(u_e < e_rec + e_ns, 1, 2))   # 0 code, 1 Z, 2 empty
    lang_recorded = rng.random(n) < l_rec

    # latent need
    H = P.health_use
    u = rng.gamma(H.frailty_shape, 1 / H.frailty_shape, n)
    v = rng.gamma(H.ae_shape, 1 / H.ae_shape, n)
    fa = rng.random(n) < H.frequent_attenders.share
    ltc_mean = H.ltc.base * np.exp(H.ltc.age_slope * (age - 30) + H.ltc.imd_slope * (imd - 25))
    ltc = np.minimum(rng.poisson(ltc_mean), H.ltc.max)
    sexm = np.where(female, _step(H.gp_female, age_i), 1.0)
    gpm = (_step(H.gp_age, age_i) * sexm * np.exp(H.gp_imd_log_slope * (imd - 25)) * (1 + H.ltc.gp_per_condition * ltc)
           * u * np.where(fa, H.frequent_attenders.gp_multiplier, 1.0))
    aem = (_step(H.ae_age, age_i) * np.exp(H.ae_imd_log_slope * (imd - 25)) * (1 + H.ltc.ae_per_condition * ltc)
           * u ** H.ae_frailty_power * v * np.where(fa, H.frequent_attenders.ae_multiplier, 1.0))

    # transient crises (monthly), with burn-in before the data period
    C = H.crisis
    pc = np.minimum(0.3, C.onset_per_month * gpm ** C.need_power * np.exp(C.imd_log_slope * (imd - 25)))
    M = len(F.month_start)
    excess = np.zeros((n, M), dtype=np.float32)
    cur = np.zeros(n)
    for t in range(-C.burn_in_months, M):
        onset = rng.random(n) < pc
        amp = np.zeros(n)
        k = int(onset.sum())
        if k:
            amp[onset] = rng.gamma(C.peak_shape, C.peak_mean / C.peak_shape, k)
        cur = cur * C.decay_per_month + amp
        if t >= 0:
            excess[:, t] = cur

    # registered days in each month
    mend = F.month_start + F.month_dim
    reg_days = np.clip(np.minimum(reg_end[:, None] + 1, mend[None, :]) - np.maximum(reg_start[:, None], F.month_start[None, :]),
                       0, None).astype(np.float32)

    # referral weight (need x inequity x practice), before crises and registration
    Rf = P.referrals
    refw = (_step(Rf.age_weight, age_i) * gpm ** Rf.need_power * np.exp(Rf.imd_log_slope * (imd - 25))
            * practice_eff[practice]
            * np.array([Rf.inequity_ethnicity[c] for c in ETH_CODES])[eth]
            * np.array([Rf.inequity_english[c] for c in PROF_CODES])[prof])

    return SimpleNamespace(
        n=n, gi=gi, ward=ward, borough=borough, age=age, age_i=age_i, birth_year=birth_year, female=female,
        lsoa=lsoa, imd=imd, eth=eth, prof=prof, lang=lang, interp=interp, practice=practice,
        reg_start=reg_start, reg_end=reg_end, has_end=has_end, died=died, eth_state=eth_state,
        lang_recorded=lang_recorded, gpm=gpm, aem=aem, excess=excess, reg_days=reg_days, refw=refw,
        group=F.practice_group[practice],
    )


def _season(F: Frame, amplitude: float, peak: int) -> np.ndarray:
    return 1 + amplitude * np.cos(2 * np.pi * (F.month_of_year - peak) / 12)


# ============================================================================== pass 1

_LOGW_LO, _LOGW_HI, _LOGW_BIN = -30.0, 15.0, 0.002


def _referral_exposure(F: Frame, P: SynthParams, blk) -> np.ndarray:
    """Per person, per referral month: relative referral hazard (before the service constant)."""
    rm = F.ref_months
    lag = P.referrals.crisis_lag_months
    return (blk.refw[:, None] * (1 + P.referrals.crisis_multiplier * blk.excess[:, rm - lag])
            * (blk.reg_days[:, rm] / F.month_dim[rm][None, :]))


def _pass1(F: Frame, P: SynthParams, seed: int, practice_eff: np.ndarray) -> dict:
    """Calibration sums and referral-weight histograms over the whole population, block by block."""
    nb = int(np.ceil((_LOGW_HI - _LOGW_LO) / _LOGW_BIN))
    G = len(F.group_services)
    cnt = np.zeros((G, nb), dtype=np.int64)
    wsum = np.zeros((G, nb))
    s_gp = _season(F, P.health_use.seasonality.gp_amplitude, P.health_use.seasonality.peak_month)
    s_ae = _season(F, P.health_use.seasonality.ae_amplitude, P.health_use.seasonality.peak_month)
    gp_num = ae_num = el_num = reg_total = 0.0
    el = P.health_use.elective
    bs = P.output.block_persons
    ae_ratio = P.health_use.crisis.ae_ratio
    for b, start in enumerate(range(0, F.n_persons, bs)):
        blk = _persons_block(F, P, seed, b, start, min(start + bs, F.n_persons), practice_eff)
        rd = blk.reg_days.astype(np.float64)
        gp_num += float(((rd * (1 + blk.excess)) @ s_gp * blk.gpm).sum())
        ae_num += float(((rd * (1 + ae_ratio * blk.excess)) @ s_ae * blk.aem).sum())
        el_num += float((rd * (1 + el.crisis_ratio * blk.excess)).sum(axis=1) @ blk.gpm ** el.need_power)
        reg_total += float(rd.sum())
        W = _referral_exposure(F, P, blk).sum(axis=1)
        ok = (blk.group >= 0) & (W > 0)
        lw = np.clip(np.log(W[ok]), _LOGW_LO, _LOGW_HI - 1e-9)
        bins = ((lw - _LOGW_LO) / _LOGW_BIN).astype(np.int64)
        idx = blk.group[ok] * nb + bins
        cnt += np.bincount(idx, minlength=G * nb).reshape(G, nb)
        wsum += np.bincount(idx, weights=W[ok], minlength=G * nb).reshape(G, nb)
    return dict(cnt=cnt, wsum=wsum, gp_num=gp_num, ae_num=ae_num, el_num=el_num, reg_total=reg_total)


def _solve_group_constants(F: Frame, acc: dict) -> np.ndarray:
    """K_g such that the expected number of persons referred in group g equals its target."""
    K = np.zeros(len(F.group_services))
    for g in range(len(F.group_services)):
        n_b = acc["cnt"][g]
        keep = n_b > 0
        n_b, w_b = n_b[keep].astype(np.float64), acc["wsum"][g][keep] / n_b[keep]
        target = F.group_targets[g]
        if target <= 0:
            continue
        if target >= 0.5 * n_b.sum():
            names = [F.services[s].name for s in F.group_services[g]]
            raise ValueError(f"referrals.services {names}: annual_referrals x scale ({target:.0f}) is too large for "
                             f"the {int(n_b.sum())} eligible persons at this scale")
        lo, hi = -60.0, 60.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            val = float((n_b * -np.expm1(-math.exp(mid) * w_b)).sum())
            lo, hi = (mid, hi) if val < target else (lo, mid)
        K[g] = math.exp(0.5 * (lo + hi))
    return K


# ============================================================================== pass 2 pieces

def _draw_referrals(F: Frame, P: SynthParams, blk, K: np.ndarray, rng: np.random.Generator):
    """Who is referred, when, to which service, and what happened. Returns a namespace over referred rows."""
    Rf = P.referrals
    rm = F.ref_months
    Kp = np.where(blk.group >= 0, K[np.maximum(blk.group, 0)], 0.0)
    hz = Kp[:, None] * _referral_exposure(F, P, blk)
    u = rng.random(hz.shape)
    hit = u < -np.expm1(-hz)
    referred = hit.any(axis=1)
    r = np.flatnonzero(referred)
    nr = len(r)
    mi = rm[np.argmax(hit[r], axis=1)]
    # referral day within the registered part of the month
    lo = np.maximum(F.month_start[mi], blk.reg_start[r])
    hi = np.minimum(F.month_start[mi] + F.month_dim[mi] - 1, blk.reg_end[r])
    ref_day = lo + np.floor(rng.random(nr) * (hi - lo + 1)).astype(np.int64)
    grp = blk.group[r]
    svc_pos = _cat(rng, F.group_cum[grp])
    gs = np.array([c + [c[-1]] * (F.group_cum.shape[1] - len(c)) for c in F.group_services])
    svc = gs[grp, svc_pos]
    src_cum = _cum(np.array([[s.sources[k] for k in SOURCES] for s in F.services]))
    src = _cat(rng, src_cum[svc])
    poor = blk.prof[r] >= 3
    p_dna = np.minimum(0.95, np.array([Rf.dna_by_source[s] for s in SOURCES])[src]
                       * np.where(poor, Rf.dna_poor_english_multiplier, 1.0))
    p_dec = np.array([Rf.declined_by_source[s] for s in SOURCES])[src]
    uo = rng.random(nr)
    outcome = np.where(uo < p_dna, 1, np.where(uo < p_dna + p_dec, 2, 0))
    wait = np.array([F.services[s].wait_days_mean for s in svc])
    fc = ref_day + np.maximum(1, np.rint(rng.gamma(2.0, wait / 2.0))).astype(np.int64)
    gone = fc > blk.reg_end[r]
    outcome = np.where((outcome == 0) & gone, 1, outcome)          # left the practice before first contact: DNA
    seen = outcome == 0
    dur = np.exp(math.log(Rf.support_days_median) + Rf.support_days_sigma * rng.standard_normal(nr))
    maxw = np.array([F.services[s].max_support_weeks or np.inf for s in svc]) * 7
    dur = np.maximum(1, np.rint(np.minimum(dur, maxw))).astype(np.int64)
    close_seen = np.minimum(fc + dur, np.where(blk.reg_end[r] >= fc, blk.reg_end[r], fc + dur))
    dlo, dhi = Rf.dna_closure_days
    clo, chi = Rf.declined_closure_days
    close_dna = ref_day + rng.integers(dlo, dhi + 1, nr)
    close_dec = ref_day + rng.integers(clo, chi + 1, nr)
    closure = np.where(outcome == 0, close_seen, np.where(outcome == 1, close_dna, close_dec))
    closure = np.where(closure > F.data_end, _NO_DATE, closure)
    contacts = np.where(seen, 1 + rng.poisson(Rf.contacts_per_fortnight * np.minimum(dur, 365) / 14.0), 0)
    contacts = np.minimum(contacts, 500)
    stype = np.array([F.services[s].type for s in svc])
    onward = np.where(seen, rng.poisson(np.array([Rf.onward_per_seen[t] for t in stype])), 0)
    onward = np.minimum(onward, 100)

    # reasons: 1-3 without replacement, borough weights x person modifiers (Gumbel top-k)
    bw = np.array([[Rf.reason_weights[b].get(k, 0.0) for k in REASONS] for b in SLUGS])
    w = bw[blk.borough[r]].copy()
    mods = Rf.reason_modifiers
    crisis_now = blk.excess[r, mi - Rf.crisis_lag_months] > 0.5
    for cond, d in ((blk.age[r] >= 65, mods.age_65_plus), (blk.imd[r] > 35, mods.imd_over_35), (crisis_now, mods.crisis)):
        for k, f in d.items():
            w[:, REASONS.index(k)] *= np.where(cond, f, 1.0)
    nreason = 1 + _cat(rng, np.tile(_cum(np.array(Rf.n_reasons_probs))[None, :], (nr, 1)))
    nreason = np.minimum(nreason, (w > 0).sum(axis=1))
    keys = np.where(w > 0, np.log(np.where(w > 0, w, 1)), -np.inf) + rng.gumbel(size=w.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    codes = np.full((nr, 3), 6, dtype=np.int64)
    for j in range(3):
        codes[:, j] = np.where(nreason > j, order[:, j], 6)
    reason_code = codes[:, 0] * 49 + codes[:, 1] * 7 + codes[:, 2]

    # the linked SP record overrides the GP record for some boroughs
    spr = P.recording.sp_record_referred
    u_e, u_l = rng.random(nr), rng.random(nr)
    eth_state = blk.eth_state[r].copy()
    lang_rec = blk.lang_recorded[r].copy()
    for bi, s in enumerate(SLUGS):
        o = spr.get(s)
        if o is None:
            continue
        here = blk.borough[r] == bi
        if o.ethnicity_recorded is not None:
            st = np.where(u_e < o.ethnicity_recorded, 0, np.where(u_e < o.ethnicity_recorded + o.ethnicity_not_stated, 1, 2))
            eth_state = np.where(here, st, eth_state)
        if o.language_recorded is not None:
            lang_rec = np.where(here, u_l < o.language_recorded, lang_rec)

    treated = seen & np.isin(stype, P.effect.applies_to)
    return SimpleNamespace(
        rows=r, n=nr, ref_day=ref_day, month=mi, svc=svc, src=src, outcome=outcome, seen=seen, treated=treated,
        fc=np.where(seen, fc, _NO_DATE), closure=closure, contacts=contacts, onward=onward, reason_code=reason_code,
        eth_state=eth_state, lang_rec=lang_rec, dur=dur,
    ), referred


def _subset_referrals(ref, keep: np.ndarray):
    """The referrals of :func:`_draw_referrals` restricted to the rows where ``keep`` is true."""
    keep = np.asarray(keep, dtype=bool)
    out = {k: (v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == (ref.n,) else v) for k, v in vars(ref).items()}
    out["n"] = int(keep.sum())
    return SimpleNamespace(**out)


def _rates(F: Frame, P: SynthParams, blk, rows: np.ndarray, lam0_gp: float, lam0_ae: float, lam0_el: float = 0.0):
    """Expected events per full calendar month (rows x months) for GP, A&E and elective admissions,
    before the planted effect (elective: no seasonality, no effect)."""
    H = P.health_use
    s_gp = _season(F, H.seasonality.gp_amplitude, H.seasonality.peak_month)
    s_ae = _season(F, H.seasonality.ae_amplitude, H.seasonality.peak_month)
    ex = blk.excess[rows].astype(np.float64)
    gp = lam0_gp / 365.25 * blk.gpm[rows, None] * (1 + ex) * (s_gp * F.month_dim)[None, :]
    ae = lam0_ae / 365.25 * blk.aem[rows, None] * (1 + H.crisis.ae_ratio * ex) * (s_ae * F.month_dim)[None, :]
    el = lam0_el / 365.25 * (blk.gpm[rows, None] ** H.elective.need_power) * (1 + H.elective.crisis_ratio * ex) * F.month_dim[None, :]
    return gp, ae, el


def _activity(F: Frame, P: SynthParams, blk, out_rows: np.ndarray, fc_out: np.ndarray, rates, rng):
    """Events for output persons: (local row, day, setting) after registration filter and planted thinning."""
    res = []
    # GP and A&E first, then elective (no effect): adding elective did not change the GP and A&E draws
    for setting, (lam, rr) in enumerate(((rates[0], P.effect.gp_rate_ratio), (rates[1], P.effect.ae_rate_ratio), (rates[2], 1.0))):
        cnt = rng.poisson(lam)
        M = lam.shape[1]
        cell = np.repeat(np.arange(cnt.size, dtype=np.int64), cnt.ravel())
        loc, mo = cell // M, cell % M
        day = F.month_start[mo] + np.floor(rng.random(len(cell)) * F.month_dim[mo]).astype(np.int64)
        u = rng.random(len(cell))
        p = out_rows[loc]
        keep = (day >= blk.reg_start[p]) & (day <= blk.reg_end[p])
        keep &= (day < fc_out[loc]) | (u < rr)
        res.append((loc[keep], day[keep], np.full(int(keep.sum()), setting, dtype=np.int8)))
    loc = np.concatenate([x[0] for x in res])
    day = np.concatenate([x[1] for x in res])
    st = np.concatenate([x[2] for x in res])
    return loc, day, st


# ---------------------------------------------------------------------------- truth (service use)

class _UseTruth:
    """Accumulates expected counts (from the latent rates) in windows around referral and first contact."""

    def __init__(self, windows):
        self.windows = windows
        self.s = {}

    def add(self, key, value):
        self.s[key] = self.s.get(key, 0.0) + float(value)

    def accumulate(self, F: Frame, P: SynthParams, blk, ref, rates):
        if ref.n == 0:
            return
        r = ref.rows
        days = np.arange(F.n_days, dtype=np.int64) + F.data_start
        midx = np.repeat(np.arange(len(F.month_dim)), F.month_dim)
        reg = (days[None, :] >= blk.reg_start[r][:, None]) & (days[None, :] <= blk.reg_end[r][:, None])
        ridx = ref.ref_day - F.data_start
        fidx = np.where(ref.treated, ref.fc - F.data_start, F.n_days)
        fidx = np.minimum(fidx, F.n_days)
        self.add("n_referred", ref.n)
        self.add("n_seen", ref.treated.sum())
        for setting, lam, rr in (("gp", rates[0], P.effect.gp_rate_ratio), ("ae", rates[1], P.effect.ae_rate_ratio)):
            daily = (lam / F.month_dim[None, :])[:, midx] * reg
            C = np.concatenate([np.zeros((ref.n, 1)), np.cumsum(daily, axis=1)], axis=1)
            rows = np.arange(ref.n)

            def S(a, b):
                a = np.clip(a, 0, F.n_days)
                b = np.clip(b, 0, F.n_days)
                return np.where(b > a, C[rows, b] - C[rows, a], 0.0)

            for W in self.windows:
                b = _add_months(ref.ref_day, W) - F.data_start
                a_pre = _add_months(ref.ref_day, -W) - F.data_start
                y0 = S(ridx, b)
                y1 = y0 - (1 - rr) * S(np.maximum(ridx, fidx), b)
                pre = S(a_pre, ridx)
                t = ref.treated
                self.add(f"{setting}.{W}.seen.y0", y0[t].sum())
                self.add(f"{setting}.{W}.seen.y1", y1[t].sum())
                self.add(f"{setting}.{W}.seen.pre", pre[t].sum())
                self.add(f"{setting}.{W}.referred.y0", y0.sum())
                self.add(f"{setting}.{W}.referred.y", y1.sum())
                self.add(f"{setting}.{W}.referred.pre", pre.sum())
                bf = _add_months(np.where(t, ref.fc, ref.ref_day), W) - F.data_start
                f0 = S(fidx, bf)
                self.add(f"{setting}.{W}.seen_fc.y0", f0[t].sum())
                self.add(f"{setting}.{W}.seen_fc.y1", (rr * f0)[t].sum())

    def result(self, P: SynthParams) -> dict:
        s = self.s
        out = {"n_referred": int(s.get("n_referred", 0)), "n_seen": int(s.get("n_seen", 0))}
        share = out["n_seen"] / max(out["n_referred"], 1)
        out["share_seen"] = share
        for setting, rr in (("gp", P.effect.gp_rate_ratio), ("ae", P.effect.ae_rate_ratio)):
            d = {}
            for W in self.windows:
                g = lambda k: s.get(f"{setting}.{W}.{k}", 0.0)  # noqa: E731
                ns, nr = max(out["n_seen"], 1), max(out["n_referred"], 1)
                d[f"{W}m"] = {
                    "window": f"[referral_date, referral_date + {W} months); pre = [referral_date - {W} months, referral_date)",
                    "att_rate_ratio_seen": g("seen.y1") / g("seen.y0") if g("seen.y0") else None,
                    "att_difference_per_person_seen": (g("seen.y1") - g("seen.y0")) / ns,
                    "expected_per_person_seen_treated": g("seen.y1") / ns,
                    "expected_per_person_seen_untreated": g("seen.y0") / ns,
                    "itt_rate_ratio_referred": g("referred.y") / g("referred.y0") if g("referred.y0") else None,
                    "itt_difference_per_person_referred": (g("referred.y") - g("referred.y0")) / nr,
                    "itt_rate_ratio_from_share_seen": 1 - share * (1 - rr),
                    "naive_before_after_ratio_seen": g("seen.y1") / g("seen.pre") if g("seen.pre") else None,
                    "naive_before_after_ratio_seen_without_effect": g("seen.y0") / g("seen.pre") if g("seen.pre") else None,
                    "att_rate_ratio_seen_from_first_contact": g("seen_fc.y1") / g("seen_fc.y0") if g("seen_fc.y0") else None,
                    "expected_pre_per_person_seen": g("seen.pre") / ns,
                }
            out[setting] = d
        return out


# ---------------------------------------------------------------------------- wellbeing

_ONS_ORDER = list(ONS4_ITEMS)


def _wellbeing(F: Frame, P: SynthParams, blk, ref, rng, wtruth: dict):
    """Item scores at baseline (first contact) and follow-up (closure) for people seen. Long-form arrays."""
    Wb = P.wellbeing
    E = P.effect
    s = np.flatnonzero(ref.seen)
    ns = len(s)
    empty = (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.int8),) * 2 + (np.zeros(0, np.int8), np.zeros(0, np.int64))
    if ns == 0:
        return empty
    p = ref.rows[s]
    borough = blk.borough[p]
    has_base = rng.random(ns) < np.array([Wb.baseline_share[b] for b in SLUGS])[borough]
    benefit = 1 + E.individual_benefit_sd * rng.standard_normal(ns)
    eff_on = ref.treated[s].astype(np.float64)
    L = Wb.latent
    trait = L.referred_mean + L.imd_slope * (blk.imd[p] - 25) / 13 + L.trait_sd * rng.standard_normal(ns)
    fc = ref.fc[s]
    closed = ref.closure[s] < _NO_DATE
    t_fu = np.where(closed, ref.closure[s], np.minimum(fc + 84, F.data_end))
    m_fc = np.searchsorted(F.month_start, fc, side="right") - 1
    m_fu = np.searchsorted(F.month_start, t_fu, side="right") - 1
    z_b = trait - L.crisis_effect * blk.excess[p, m_fc] + L.occasion_sd * rng.standard_normal(ns)
    z_f = trait - L.crisis_effect * blk.excess[p, m_fu] + L.occasion_sd * rng.standard_normal(ns)
    bstd = (benefit - 1) / E.individual_benefit_sd if E.individual_benefit_sd > 0 else np.zeros(ns)
    p_ret = 1 / (1 + np.exp(-(_logit(Wb.follow_up_rate) + Wb.benefit_slope * bstd)))
    returned = has_base & closed & (rng.random(ns) < p_ret)
    inst = np.array([{"ons4": 0, "wemwbs": 1, "swemwbs": 2}[Wb.instrument[b]] for b in SLUGS])[borough]

    # item scores: baseline, follow-up with effect (observed), follow-up without effect (counterfactual)
    wm = Wb.wemwbs
    off = np.array(wm.item_offsets)
    nb_w, nf_w = rng.normal(0, wm.item_noise_sd, (ns, 14)), rng.normal(0, wm.item_noise_sd, (ns, 14))
    shift_w = (E.wellbeing.wemwbs_total * benefit * eff_on)[:, None]

    def wem(z, noise, shift):
        T = wm.population_mean + wm.population_sd * z
        return np.clip(np.rint(T[:, None] / 14 + off[None, :] + noise + shift / 14), 1, 5).astype(np.int8)

    w_b, w_f1, w_f0 = wem(z_b, nb_w, 0.0), wem(z_f, nf_w, shift_w), wem(z_f, nf_w, 0.0)
    o_mean = np.array([Wb.ons4[i].mean for i in _ONS_ORDER])
    o_slope = np.array([Wb.ons4[i].slope for i in _ONS_ORDER])
    o_sd = np.array([Wb.ons4[i].noise_sd for i in _ONS_ORDER])
    o_eff = np.array([getattr(E.wellbeing, i) for i in _ONS_ORDER])
    nb_o, nf_o = rng.standard_normal((ns, 4)) * o_sd, rng.standard_normal((ns, 4)) * o_sd

    def ons(z, noise, on):
        return np.clip(np.rint(o_mean + o_slope * z[:, None] + noise + (o_eff[None, :] * (benefit * on)[:, None])), 0, 10).astype(np.int8)

    o_b, o_f1, o_f0 = ons(z_b, nb_o, 0.0), ons(z_f, nf_o, eff_on), ons(z_f, nf_o, 0.0)

    # truth sums by instrument (on each instrument's summary scores)
    from .wellbeing import swemwbs_metric

    def summaries(kind, w, o):
        if kind == 0:
            return {i: o[:, k].astype(np.float64) for k, i in enumerate(_ONS_ORDER)}
        if kind == 1:
            return {"wemwbs_total": w.sum(axis=1).astype(np.float64)}
        raw = w[:, SWEMWBS_FROM_WEMWBS].sum(axis=1)
        return {"swemwbs_raw": raw.astype(np.float64), "swemwbs_metric": swemwbs_metric(raw)}

    for kind, name in ((0, "ons4"), (1, "wemwbs"), (2, "swemwbs")):
        m = inst == kind
        if not m.any():
            continue
        sb, s1, s0 = summaries(kind, w_b[m], o_b[m]), summaries(kind, w_f1[m], o_f1[m]), summaries(kind, w_f0[m], o_f0[m])
        hb, rt, tr = has_base[m], returned[m], ref.treated[s][m]
        for key in sb:
            acc = wtruth.setdefault(name, {}).setdefault(key, {})
            for k, v in (("n_baseline_treated", (hb & tr).sum()), ("sum_effect_baseline_treated", (s1[key] - s0[key])[hb & tr].sum()),
                         ("n_responders_treated", (rt & tr).sum()), ("sum_effect_responders_treated", (s1[key] - s0[key])[rt & tr].sum()),
                         ("n_responders", rt.sum()), ("sum_naive_change_responders", (s1[key] - sb[key])[rt].sum()),
                         ("sum_change_without_effect_responders", (s0[key] - sb[key])[rt].sum()),
                         ("sum_baseline_responders", sb[key][rt].sum()), ("n_baseline", hb.sum()),
                         ("sum_baseline_all", sb[key][hb].sum())):
                acc[k] = acc.get(k, 0.0) + float(v)

    # long form: (referral row, timepoint, instrument, item index, score, date)
    recs = []
    for tp, mask, w, o, day in ((0, has_base, w_b, o_b, fc), (1, returned, w_f1, o_f1, ref.closure[s])):
        for kind in (0, 1, 2):
            m = mask & (inst == kind)
            k = int(m.sum())
            if not k:
                continue
            if kind == 0:
                sc, items = o[m], np.arange(4)
            elif kind == 1:
                sc, items = w[m], 4 + np.arange(14)
            else:
                sc, items = w[m][:, SWEMWBS_FROM_WEMWBS], 18 + np.arange(7)
            ni = len(items)
            recs.append((np.repeat(s[m], ni), np.full(k * ni, tp, np.int8), np.full(k * ni, kind, np.int8),
                         np.tile(items, k).astype(np.int8), sc.ravel().astype(np.int8), np.repeat(day[m], ni)))
    if not recs:
        return empty
    return tuple(np.concatenate([x[i] for x in recs]) for i in range(6))


_ITEM_CODES = list(ONS4_ITEMS) + list(WEMWBS_ITEMS) + list(SWEMWBS_ITEMS)
_INSTRUMENTS = ["ons4", "wemwbs", "swemwbs"]


# ============================================================================== table building

def _str_col(idx: np.ndarray, labels, null: np.ndarray | None = None) -> pa.Array:
    idx = np.asarray(idx, dtype=np.int32)
    mask = None if null is None else np.asarray(null, dtype=bool)
    d = pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask), pa.array(list(labels), type=pa.string()))
    return d.cast(pa.string())


def _date_col(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    d = np.asarray(days, dtype=np.int64)
    mask = None if null is None else np.asarray(null, dtype=bool)
    return pa.array(np.where(mask, 0, d) if mask is not None else d, type=pa.int32(), mask=mask).cast(pa.date32())


def _persons_table(F: Frame, h: np.ndarray, a: dict) -> pa.Table:
    order = np.argsort(h, kind="stable")
    g = {k: v[order] for k, v in a.items()}
    h = h[order]
    eth_null = g["eth_state"] == 2
    eth_idx = np.where(g["eth_state"] == 1, len(ETH_CODES), g["eth"])
    lang_null = ~g["lang_recorded"]
    return pa.table({
        "person_id": pa.array(_ids("P", h), type=pa.string()),
        "birth_year": pa.array(g["birth_year"].astype(np.int32)),
        "sex": _str_col(np.where(g["female"], 0, 1), ["F", "M"]),
        "ethnicity": _str_col(eth_idx, ETH_CODES + ["Z"], eth_null),
        "main_language": _str_col(g["lang"], LANGUAGES, lang_null),
        "english_proficiency": _str_col(g["prof"], PROF_CODES, lang_null),
        "interpreter_needed": pa.array(g["interp"], type=pa.bool_(), mask=lang_null),
        "lsoa21_code": _str_col(g["lsoa"], F.lsoa_codes),
        "ward22_code": _str_col(g["ward"], F.ward_codes),
        "practice_code": _str_col(g["practice"], F.practice_codes),
        "registration_start": _date_col(g["reg_start"]),
        "registration_end": _date_col(g["reg_end"], ~g["has_end"]),
        "registration_end_reason": _str_col(np.where(g["died"], 1, 0), ["moved_away", "died"], ~g["has_end"]),
    })


def _reason_labels() -> list[str]:
    out = []
    for c in range(343):
        parts = [c // 49, (c // 7) % 7, c % 7]
        out.append(";".join(REASONS[x] for x in parts if x < 6))
    return out


_REASON_LABELS = _reason_labels()


def _referrals_table(F: Frame, a: dict) -> pa.Table:
    order = np.argsort(a["rid"], kind="stable")
    g = {k: v[order] for k, v in a.items()}
    svc = g["svc"]
    practice = g["practice"]
    pcn_codes = sorted(set(F.practice_pcn))
    pcn_idx = np.array([pcn_codes.index(x) for x in F.practice_pcn])[practice]
    return pa.table({
        "referral_id": pa.array(_ids("R", g["rid"]), type=pa.string()),
        "person_id": pa.array(_ids("P", g["pid"]), type=pa.string()),
        "referral_date": _date_col(g["ref_day"]),
        "source": _str_col(g["src"], SOURCES),
        "reasons": _str_col(g["reason_code"], _REASON_LABELS),
        "borough_code": _str_col(F.practice_borough[practice], BOROUGH_CODES),
        "pcn_code": _str_col(pcn_idx, pcn_codes),
        "practice_code": _str_col(practice, F.practice_codes),
        "provider": _str_col(svc, [s.name for s in F.services]),
        "outcome": _str_col(g["outcome"], OUTCOMES),
        "first_contact_date": _date_col(g["fc"], g["fc"] >= _NO_DATE),
        "closure_date": _date_col(g["closure"], g["closure"] >= _NO_DATE),
        "contacts": pa.array(g["contacts"].astype(np.int32)),
        "onward_referrals": pa.array(g["onward"].astype(np.int32)),
    })


def _activity_table(h_sorted: np.ndarray, a: dict) -> pa.Table:
    order = np.lexsort((a["setting"], a["day"], a["pid"]))
    pid, day, st = a["pid"][order], a["day"][order], a["setting"][order]
    idx = np.searchsorted(h_sorted, pid)
    ids = pa.array(_ids("P", h_sorted), type=pa.string())
    # the generator can draw two appointments for one person on one day in one setting; a real extract
    # tells them apart by an appointment identifier, so the rows carry one (1, 2 ... within the day)
    n = len(pid)
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = (pid[1:] != pid[:-1]) | (day[1:] != day[:-1]) | (st[1:] != st[:-1])
    start = np.flatnonzero(new)
    seq = np.arange(n) - np.repeat(start, np.diff(np.append(start, n))) + 1
    labels = pa.array([str(i) for i in range(1, int(seq.max(initial=1)) + 1)], type=pa.string())
    return pa.table({
        "person_id": pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), ids).cast(pa.string()),
        "activity_date": _date_col(day),
        "setting": _str_col(st, ACTIVITY_LABELS),
        "event_id": pa.DictionaryArray.from_arrays(pa.array((seq - 1).astype(np.int32)), labels).cast(pa.string()),
    })


def _wellbeing_table(a: dict) -> pa.Table:
    order = np.lexsort((a["item"], a["tp"], a["rid"]))
    g = {k: v[order] for k, v in a.items()}
    return pa.table({
        "referral_id": pa.array(_ids("R", g["rid"]), type=pa.string()),
        "timepoint": _str_col(g["tp"], ["baseline", "follow_up"]),
        "instrument": _str_col(g["inst"], _INSTRUMENTS),
        "item": _str_col(g["item"], _ITEM_CODES),
        "score": pa.array(g["score"].astype(np.int16)),
        "measurement_date": _date_col(g["day"]),
    })


def _workforce_frame(P: SynthParams) -> pd.DataFrame:
    gp = reference.gp_practices()
    pcn_b = dict(zip(gp["pcn_code"], gp["borough_code"]))
    rows = []
    for w in P.workforce:
        bcode = BOROUGH_CODES[SLUGS.index(w.borough)]
        if w.pcn is not None and pcn_b.get(w.pcn) != bcode:
            raise ValueError(f"workforce: pcn {w.pcn!r} is not a PCN of {w.borough} in reference.gp_practices()")
        rows.append({"borough_code": bcode, "pcn_code": w.pcn or "", "role": w.role, "fte": w.fte, "employer": w.employer})
    df = pd.DataFrame(rows, columns=TABLES["workforce"].names)
    return df.sort_values(["borough_code", "pcn_code", "role", "employer"], kind="stable").reset_index(drop=True)


def _write_parquet(table: pa.Table, path: Path, P: SynthParams):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=P.output.zstd_level,
                   row_group_size=P.output.row_group_rows, use_dictionary=True, write_statistics=True)


def _concat(parts: list[dict]) -> dict:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


_PATIENT_TABLES = ("persons", "referrals", "activity", "wellbeing")


def _prepare_out(out: Path):
    """Remove files this generator wrote before; refuse to mix with other files for the same tables."""
    out.mkdir(parents=True, exist_ok=True)
    for t in _PATIENT_TABLES + ("workforce",):
        others = [out / f"{t}.csv", out / f"{t}.csv.gz"] if t != "workforce" else [out / "workforce.parquet", out / "workforce.csv.gz", out / "workforce"]
        for other in others:
            if other.exists():
                raise ValueError(f"out_dir: {other} exists; write synthetic extracts to a folder without other extract files")
    for t in _PATIENT_TABLES:
        f = out / f"{t}.parquet"
        if f.exists():
            f.unlink()
        d = out / t
        if d.is_dir():
            stray = [x for x in d.iterdir() if x.suffix != ".parquet"]
            if stray:
                raise ValueError(f"out_dir: {d} holds files the generator did not write ({stray[0].name})")
            shutil.rmtree(d)
    for name in ("workforce.csv", "extract_info.json", "SHA256SUMS"):
        f = out / name
        if f.exists():
            f.unlink()


def _write_sums(out: Path) -> Path:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(out).as_posix()}" for p in files]
    target = out / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


# ============================================================================== generate

def _study_period():
    """The study and data periods from ``parameters/ncl.yaml`` (section ``study`` only, validated by params.Study)."""
    from .params import PARAMETERS_DIR, ParameterError, Study

    path = PARAMETERS_DIR / "ncl.yaml"
    try:
        data = yaml.safe_load(path.read_text())
        return Study.model_validate(data["study"])
    except (OSError, KeyError, TypeError, yaml.YAMLError, ValidationError, ParameterError) as e:
        raise ValueError(f"{path}: cannot read a valid 'study' section for the study period: {e}") from None


def generate(out_dir, seed: int = 7, scale: float = 1.0, pool_fraction: float = 0.25,
             params_path: Path | str = DEFAULT_PARAMS_PATH, chunk_persons: int | None = None,
             truth_dir: Path | str | None = None) -> dict:
    """Generate synthetic extracts for NCL into ``out_dir`` and return a summary dict.

    Arguments: ``seed`` (non-negative integer), ``scale`` (multiplies the Census 2021 population AND the
    referral volumes), ``pool_fraction`` (inclusion probability of each non-referred registered person
    in the comparator sample, 0-1), ``params_path`` (generator parameters YAML), ``chunk_persons`` (None:
    one Parquet file per table; else tables are written as folders of parts, each covering about this
    many generated persons, for bounded memory), ``truth_dir`` (where to write ``truth.json``; None:
    not written, but the truth is in the returned summary under ``truth``).

    Writes persons/referrals/activity/wellbeing as Parquet (zstd, sorted), workforce.csv,
    extract_info.json and SHA256SUMS. Same arguments and parameter file => byte-identical files.
    """
    t0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer; got {seed!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a positive number; got {scale!r}")
    if not (isinstance(pool_fraction, (int, float)) and 0 <= pool_fraction <= 1):
        raise ValueError(f"pool_fraction: expected a number between 0 and 1; got {pool_fraction!r}")
    params_path = Path(params_path)
    if not params_path.is_absolute() and not params_path.exists():
        params_path = reference.PROJECT_ROOT / params_path
    P = load_synth_params(params_path)
    bs = P.output.block_persons
    if chunk_persons is not None:
        if not isinstance(chunk_persons, (int, np.integer)) or chunk_persons < 1:
            raise ValueError(f"chunk_persons: expected a positive integer or None; got {chunk_persons!r}")
        chunk_blocks = max(1, int(math.ceil(chunk_persons / bs)))
    else:
        chunk_blocks = None

    study = _study_period()
    F = _build_frame(P, study, float(scale))
    practice_eff = np.exp(P.referrals.practice_sd * _rng(seed, _S_PRACTICE).standard_normal(len(F.practice_codes))
                          - P.referrals.practice_sd ** 2 / 2)

    # ---- pass 1: calibration and referral normalisation over the whole population
    acc = _pass1(F, P, seed, practice_eff)
    H = P.health_use
    lam0_gp = H.gp_per_person_year * acc["reg_total"] / acc["gp_num"]
    lam0_ae = H.ae_per_person_year * acc["reg_total"] / acc["ae_num"]
    lam0_el = H.elective.per_person_year * acc["reg_total"] / acc["el_num"]
    K = _solve_group_constants(F, acc)
    t1 = time.perf_counter()

    # ---- pass 2
    out = Path(out_dir)
    _prepare_out(out)
    use_truth = _UseTruth(P.truth.windows_months)
    wtruth: dict = {}
    counts = {t: 0 for t in _PATIENT_TABLES}
    svc_count = np.zeros(len(F.services), dtype=np.int64)
    outcome_by_src = np.zeros((len(SOURCES), 3), dtype=np.int64)
    pending = {t: [] for t in _PATIENT_TABLES}
    part = 0
    n_pool = 0
    n_prior = 0
    pr = P.referrals.prior
    prior_months = np.arange(max(1, F.ref_months[0] - pr.months), F.ref_months[0]) if pr.months and pr.volume_ratio > 0 else np.array([], dtype=np.int64)
    F_prior = dataclasses.replace(F, ref_months=prior_months) if len(prior_months) else None

    def flush(final: bool):
        nonlocal part
        pers = _concat(pending["persons"])
        if not pers:
            return
        h_sorted = np.sort(pers["h"])
        tabs = {
            "persons": _persons_table(F, pers.pop("h"), pers),
            "referrals": _referrals_table(F, _concat(pending["referrals"])) if pending["referrals"] else None,
            "activity": _activity_table(h_sorted, _concat(pending["activity"])) if pending["activity"] else None,
            "wellbeing": _wellbeing_table(_concat(pending["wellbeing"])) if pending["wellbeing"] else None,
        }
        for t, tab in tabs.items():
            if tab is None or tab.num_rows == 0:
                continue
            counts[t] += tab.num_rows
            path = out / f"{t}.parquet" if chunk_blocks is None else out / t / f"part-{part:05d}.parquet"
            _write_parquet(tab, path, P)
        for t in pending:
            pending[t].clear()
        part += 1

    for b, start in enumerate(range(0, F.n_persons, bs)):
        blk = _persons_block(F, P, seed, b, start, min(start + bs, F.n_persons), practice_eff)
        ref, referred = _draw_referrals(F, P, blk, K, _rng(seed, _S_REFERRAL, b))
        pool = (_rng(seed, _S_SAMPLE, b).random(blk.n) < pool_fraction) & ~referred
        n_pool += int(pool.sum())
        # referrals before the study period, among people not referred in it who are in the extract
        prior = None
        if F_prior is not None:
            prior, _ = _draw_referrals(F_prior, P, blk, K * pr.volume_ratio, _rng(seed, _S_PRIOR, b))
            prior = _subset_referrals(prior, pool[prior.rows])
            n_prior += prior.n
        out_rows = np.flatnonzero(referred | pool)
        # person-level fields, with the SP record overriding for referred people
        eth_state = blk.eth_state.copy()
        lang_rec = blk.lang_recorded.copy()
        eth_state[ref.rows] = ref.eth_state
        lang_rec[ref.rows] = ref.lang_rec
        h_out = _person_hash(blk.gi[out_rows])
        pending["persons"].append({
            "h": h_out, "birth_year": blk.birth_year[out_rows], "female": blk.female[out_rows],
            "eth": blk.eth[out_rows], "eth_state": eth_state[out_rows], "lang": blk.lang[out_rows],
            "prof": blk.prof[out_rows], "interp": blk.interp[out_rows], "lang_recorded": lang_rec[out_rows],
            "lsoa": blk.lsoa[out_rows], "ward": blk.ward[out_rows], "practice": blk.practice[out_rows],
            "reg_start": blk.reg_start[out_rows], "reg_end": blk.reg_end[out_rows],
            "has_end": blk.has_end[out_rows], "died": blk.died[out_rows],
        })
        if ref.n:
            pending["referrals"].append({
                "rid": _referral_hash(blk.gi[ref.rows]), "pid": _person_hash(blk.gi[ref.rows]),
                "ref_day": ref.ref_day, "src": ref.src, "reason_code": ref.reason_code, "practice": blk.practice[ref.rows],
                "svc": ref.svc, "outcome": ref.outcome, "fc": ref.fc, "closure": ref.closure,
                "contacts": ref.contacts, "onward": ref.onward,
            })
            svc_count += np.bincount(ref.svc, minlength=len(F.services))
            np.add.at(outcome_by_src, (ref.src, ref.outcome), 1)
        if prior is not None and prior.n:
            pending["referrals"].append({
                "rid": _referral_hash(blk.gi[prior.rows]), "pid": _person_hash(blk.gi[prior.rows]),
                "ref_day": prior.ref_day, "src": prior.src, "reason_code": prior.reason_code, "practice": blk.practice[prior.rows],
                "svc": prior.svc, "outcome": prior.outcome, "fc": prior.fc, "closure": prior.closure,
                "contacts": prior.contacts, "onward": prior.onward,
            })
        # activity for output persons
        fc_person = np.full(blk.n, _NO_DATE, dtype=np.int64)
        fc_person[ref.rows] = np.where(ref.treated, ref.fc, _NO_DATE)
        if prior is not None and prior.n:
            fc_person[prior.rows] = np.where(prior.treated, prior.fc, _NO_DATE)   # the planted effect acts on them too
        rates = _rates(F, P, blk, out_rows, lam0_gp, lam0_ae, lam0_el)
        loc, day, st = _activity(F, P, blk, out_rows, fc_person[out_rows], rates, _rng(seed, _S_ACTIVITY, b))
        pending["activity"].append({"pid": h_out[loc], "day": day, "setting": st})
        # truth for referred people (expected counts from the latent rates)
        pos = np.searchsorted(out_rows, ref.rows)
        use_truth.accumulate(F, P, blk, ref, (rates[0][pos], rates[1][pos]))
        wb = _wellbeing(F, P, blk, ref, _rng(seed, _S_WELLBEING, b), wtruth)
        if len(wb[0]):
            pending["wellbeing"].append({"rid": _referral_hash(blk.gi[ref.rows[wb[0]]]), "tp": wb[1], "inst": wb[2],
                                         "item": wb[3], "score": wb[4], "day": wb[5]})
        if chunk_blocks is not None and ((b + 1) % chunk_blocks == 0):
            flush(False)
        del blk, rates
    flush(True)

    wf = _workforce_frame(P)
    wf.to_csv(out / "workforce.csv", index=False, lineterminator="\n")
    counts["workforce"] = len(wf)

    params_sha = sha256(params_path)
    info = {
        "synthetic": True,
        "description": "Synthetic NCL social prescribing extracts made by spstudy.synth; not real patients.",
        "generator": "spstudy.synth",
        "generator_version": P.generator_version,
        "seed": int(seed),
        "scale": float(scale),
        "pool_fraction": float(pool_fraction),
        "parameters_file": params_path.name,
        "parameters_sha256": params_sha,
        "study_period": {"referral_start": str(study.referral_start), "referral_end": str(study.referral_end),
                         "data_start": str(study.data_start), "data_end": str(study.data_end)},
        "population_frame_persons": int(F.n_persons),
        "population_frame_by_borough": {SLUGS[b]: int(F.ward_n[F.ward_borough == b].sum()) for b in range(len(SLUGS))},
        "sample_design": {
            "referred": "every person referred in the referral period is included (weight 1)",
            "non_referred": ("Bernoulli sample of non-referred registered persons: each included independently with "
                             "probability pool_fraction; weight 1 / pool_fraction"),
            "non_referred_weight": (1.0 / pool_fraction) if pool_fraction > 0 else None,
            "non_referred_in_sample": n_pool - n_prior,   # never referred at any time (what the loader checks)
            "referred_before_the_study_period": ("people not referred in the study period who were referred in the "
                                                 f"{pr.months} months before it: sampled like the never-referred (probability "
                                                 "pool_fraction, weight 1 / pool_fraction), with their referral rows (dated before "
                                                 "the study period); not counted in non_referred_in_sample"),
            "referred_before_the_study_period_in_sample": n_prior,
        },
        "activity_settings": ACTIVITY_LABELS,
        "layout": "one Parquet file per table" if chunk_blocks is None else "one folder of Parquet parts per table",
        "row_counts": {k: int(v) for k, v in counts.items()},
        "truth": "the planted effects are recorded in a separate truth file that analyses must not read",
    }
    (out / "extract_info.json").write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    _write_sums(out)

    # ---- truth
    seen_total = int(outcome_by_src[:, 0].sum())
    wb_res = {}
    for inst, d in wtruth.items():
        wb_res[inst] = {}
        for key, a in d.items():
            f = lambda num, den: (a[num] / a[den]) if a.get(den) else None  # noqa: E731
            wb_res[inst][key] = {
                "planted_mean_shift": _planted_shift(P, key),
                "att_all_seen_with_baseline": f("sum_effect_baseline_treated", "n_baseline_treated"),
                "att_responders": f("sum_effect_responders_treated", "n_responders_treated"),
                "naive_change_responders": f("sum_naive_change_responders", "n_responders"),
                "change_without_effect_responders": f("sum_change_without_effect_responders", "n_responders"),
                "mean_baseline_all": f("sum_baseline_all", "n_baseline"),
                "mean_baseline_responders": f("sum_baseline_responders", "n_responders"),
                "n_baseline": int(a.get("n_baseline", 0)),
                "n_responders": int(a.get("n_responders", 0)),
            }
    truth = {
        "warning": "TRUTH FILE: for checking analyses. Analyses must never read it.",
        "generator_version": P.generator_version, "seed": int(seed), "scale": float(scale),
        "pool_fraction": float(pool_fraction), "parameters_sha256": params_sha,
        "planted_effect": {
            "gp_rate_ratio": P.effect.gp_rate_ratio, "ae_rate_ratio": P.effect.ae_rate_ratio,
            "acts_from": "first_contact_date, to the end of the data",
            "acts_on": f"referrals with outcome 'seen' at services of type {P.effect.applies_to}; none for 'dna' or 'declined'",
            "wellbeing_mean_shift": P.effect.wellbeing.model_dump(),
            "wellbeing_individual_benefit_sd": P.effect.individual_benefit_sd,
            "wellbeing_follow_up": "returned more often by people who benefit more (informative attrition)",
        },
        "service_use": use_truth.result(P),
        "wellbeing": wb_res,
        "inequity": {"ethnicity_multiplier": P.referrals.inequity_ethnicity,
                     "english_proficiency_multiplier": P.referrals.inequity_english,
                     "meaning": "multiplier on the referral hazard relative to need, by true ethnic code / proficiency"},
        "regression_to_the_mean": {"crisis_referral_multiplier": P.referrals.crisis_multiplier,
                                   "crisis": P.health_use.crisis.model_dump()},
        "referral_volumes": {s.name: {"target": float(F.service_targets[i]), "realised": int(svc_count[i])}
                             for i, s in enumerate(F.services)},
        "outcomes_by_source": {SOURCES[i]: {o: int(outcome_by_src[i, j]) for j, o in enumerate(OUTCOMES)} for i in range(len(SOURCES))},
        "calibration": {"gp_per_person_year_target": H.gp_per_person_year, "ae_per_person_year_target": H.ae_per_person_year,
                        "gp_lambda0": lam0_gp, "ae_lambda0": lam0_ae,
                        "registered_person_years": acc["reg_total"] / 365.25,
                        "proficiency_share_capped": F.diagnostics["proficiency_share_capped"]},
        "n_seen": seen_total,
        "referred_before_the_study_period_in_sample": n_prior,
        "negative_control": {"setting": "elective", "planted_rate_ratio": 1.0,
                             "meaning": "elective admissions follow need and crises but social prescribing has no effect on them",
                             "elective_lambda0": lam0_el, "per_person_year_target": H.elective.per_person_year},
    }
    if truth_dir is not None:
        td = Path(truth_dir)
        td.mkdir(parents=True, exist_ok=True)
        (td / "truth.json").write_text(json.dumps(truth, indent=2, default=_json_default) + "\n")

    t2 = time.perf_counter()
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        "out_dir": str(out), "truth_dir": str(truth_dir) if truth_dir is not None else None,
        "seed": int(seed), "scale": float(scale), "pool_fraction": float(pool_fraction),
        "population_frame_persons": int(F.n_persons), "row_counts": info["row_counts"],
        "referrals_by_service": {s.name: int(svc_count[i]) for i, s in enumerate(F.services)},
        "bytes_total": int(sum(sizes.values())), "bytes_by_file": sizes,
        "seconds_pass1": round(t1 - t0, 2), "seconds_total": round(t2 - t0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "truth": truth,
    }


def _planted_shift(P: SynthParams, key: str):
    e = P.effect.wellbeing
    if key == "wemwbs_total":
        return e.wemwbs_total
    if key == "swemwbs_raw":
        return e.wemwbs_total * 7 / 14
    if key == "swemwbs_metric":
        return None  # non-linear conversion: see att_* for the realised value
    return getattr(e, key)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (dt.date,)):
        return o.isoformat()
    raise TypeError(type(o))


# ============================================================================== CLI

def main(argv=None) -> int:
    """CLI: ``spstudy synth --seed 7 --scale 1 --pool-fraction 0.25 --out data/extracts [--truth data/truth]``."""
    ap = argparse.ArgumentParser(prog="spstudy synth", description="Generate synthetic NCL social prescribing extracts (data contract) with a known planted effect.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the Census 2021 population and the referral volumes")
    ap.add_argument("--pool-fraction", type=float, default=0.25, help="sampling fraction of non-referred persons (comparator pool)")
    ap.add_argument("--out", default="data/extracts", help="output folder for the extract tables")
    ap.add_argument("--truth", default=None, help="folder for truth.json (kept apart from the extracts)")
    ap.add_argument("--params", default=str(DEFAULT_PARAMS_PATH), help="generator parameters (YAML)")
    ap.add_argument("--chunk-persons", type=int, default=None, help="write folders of Parquet parts, about this many generated persons per part")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        s = generate(a.out, seed=a.seed, scale=a.scale, pool_fraction=a.pool_fraction, params_path=a.params,
                     chunk_persons=a.chunk_persons, truth_dir=a.truth)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s.pop("truth")
    s.pop("bytes_by_file")
    print(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
