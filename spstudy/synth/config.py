"""The generator's parameters: ``parameters/synth.yaml`` validated on load (pydantic models, one per section)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spstudy.inputs import project, reference
from spstudy.inputs.contract import (
    CENSUS5_GROUPS,
    ENGLISH_PROFICIENCY,
    ETHNIC_TO_CENSUS5,
    LANGUAGES,
    ONS4_ITEMS,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
)

DEFAULT_PARAMS_NAME = "synth.yaml"  # in the project's parameters/ folder


def default_params_path() -> Path:
    return project.parameters_dir() / DEFAULT_PARAMS_NAME

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


def load_synth_params(path: Path | str | None = None) -> SynthParams:
    """Read and validate the generator parameters (YAML; default the project's ``parameters/synth.yaml``).
    Raises ValueError naming the file and key."""
    path = Path(path) if path is not None else default_params_path()
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
