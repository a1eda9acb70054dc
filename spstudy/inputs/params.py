"""Parameters: YAML files validated on load.

``parameters/ncl.yaml`` holds the defaults; ``parameters/<borough>.yaml`` overrides any key. The
merged result is validated with pydantic models (unknown keys, wrong types and impossible values
stop with a :class:`ParameterError` naming the file, the key and what was expected). The JSON
schema of the models is published in ``parameters/schema.json`` (``spstudy params --schema``).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spstudy.inputs import project
from spstudy.inputs.reference import AREAS

EXCLUDE_RULES = (
    "activity_outside_data_period",
    "activity_outside_registration",
    "activity_exact_duplicate",
    "referral_outside_study_period",
)
DAYS_PER_MONTH = 30.4375  # as spstudy.evaluation: a window of m months is round(30.4375 m) days


class ParameterError(ValueError):
    """A parameter file is invalid. The message names the file, the key and what was expected."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Study(_Model):
    referral_start: dt.date = Field(description="First referral date in the study (inclusive).")
    referral_end: dt.date = Field(description="Last referral date in the study (inclusive).")
    data_start: dt.date = Field(description="First day of GP/A&E activity in the extract.")
    data_end: dt.date = Field(description="Last day of GP/A&E activity in the extract (data cut).")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence level of every interval the packs publish "
                              "(needs, equity, evaluation, SROI, service delivery) and of the labels and sentences that name it.")

    @model_validator(mode="after")
    def _order(self):
        if self.referral_end < self.referral_start:
            raise ValueError(f"referral_end must not be before referral_start (referral_end {self.referral_end}, referral_start {self.referral_start})")
        if self.data_end < self.data_start:
            raise ValueError(f"data_end must not be before data_start (data_end {self.data_end}, data_start {self.data_start})")
        if self.data_start > self.referral_start or self.data_end < self.referral_end:
            raise ValueError(f"the data period {self.data_start} to {self.data_end} must cover the referral period "
                             f"{self.referral_start} to {self.referral_end}")
        return self


class Data(_Model):
    extracts_dir: str = Field(description="Folder with the extract tables (CSV or Parquet), relative to the project.")
    exclude_rules: list[Literal[EXCLUDE_RULES]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="Rules under which rows are excluded (and counted) instead of failing."
    )


#: The weakest control a pack may use without a stated, named reason (NHS Digital HES/ECDS: suppress 1-7, round to 5).
MIN_THRESHOLD, MIN_ROUNDING = 5, 5


class Disclosure(_Model):
    threshold: int = Field(ge=1, le=100, description="Counts 1..threshold are suppressed.")
    rounding_base: int = Field(ge=1, le=100, description="Other published counts are rounded to this base (1 = none).")
    weaker_control_reason: str | None = Field(
        default=None, description=f"Required to use a threshold or rounding base below {MIN_THRESHOLD}: who agreed it and why. "
                                  "The pack's front page states it.")

    @model_validator(mode="after")
    def _not_weaker_silently(self):
        if (self.threshold < MIN_THRESHOLD or self.rounding_base < MIN_ROUNDING) and not (self.weaker_control_reason or "").strip():
            raise ValueError(f"threshold {self.threshold} / rounding_base {self.rounding_base} is weaker than the minimum "
                             f"({MIN_THRESHOLD} / {MIN_ROUNDING}); set disclosure.weaker_control_reason to say who agreed it and why")
        return self


class Workforce(_Model):
    target_link_workers_per_10000: float = Field(gt=0, description="FTE link workers per 10,000 population.")


class Needs(_Model):
    need_index_weights: dict[
        Literal["imd2025_score", "pct_bad_health", "pct_disabled", "pct_poor_english", "pct_unpaid_carers", "pct_aged_65_plus"],
        float,
    ]
    top_wards_to_label: int = Field(ge=0, le=50)
    outreach_need_quantile: float = Field(gt=0, lt=1)
    outreach_referral_ratio_below: float = Field(gt=0)
    sensitivity_draws: int = Field(default=500, ge=10, le=100_000, description="Random re-weightings of the need index (Dirichlet draws).")
    sensitivity_seed: int = Field(default=1, ge=0, le=2**32 - 1, description="Seed of the need-index sensitivity draws (numpy.random.default_rng).")
    reference_area: Literal[AREAS] = Field(  # type: ignore[valid-type]
        default="ncl",
        description="Population whose age-sex referral rates give every ward's expected referrals (all its residents' referrals over "
                    "its Census 2021 population). Keep 'ncl' so a ward has the same ratio in every pack.")

    @field_validator("need_index_weights")
    @classmethod
    def _weights(cls, v):
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must be non-negative")
        if abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"weights must sum to 1 (they sum to {sum(v.values()):.4f})")
        return v


class Equity(_Model):
    reference_ethnic_group: Literal["Asian", "Black", "Mixed", "White", "Other"]
    reference_language_group: Literal["main_english", "very_well", "well", "not_well", "not_at_all"]
    deprivation_quintiles: Literal[5, 10]
    imputations: int = Field(default=20, ge=2, le=500, description="Multiple imputations of missing ethnicity (Rubin's rules).")
    imputation_seed: int = Field(default=2024, ge=0, le=2**32 - 1, description="Seed of the multiple imputation.")
    sii_seed: int = Field(default=2024, ge=0, le=2**32 - 1, description="Seed of the simulated SII/RII intervals.")


class Matching(_Model):
    k: int = Field(ge=1, le=10, description="Comparators per referred person.")
    caliper_sd: float = Field(gt=0, le=2, description="Caliper in SDs of the logit of the propensity score.")
    replace: bool
    exact: list[Literal["sex", "pcn_code", "practice_code", "borough_code"]]
    comparator_pool_per_referral: int = Field(ge=1, le=100)


class UPC(_Model):
    uptake: float = Field(ge=0, le=1)
    gp_reduction: float = Field(ge=0, le=1)
    ae_reduction: float = Field(ge=0, le=1)


class WellbeingThresholds(_Model):
    wemwbs: float = Field(gt=0)
    swemwbs: float = Field(gt=0)
    ons4: float = Field(gt=0)


class VerdictRules(_Model):
    """Thresholds of the written rules that turn the diagnostics into a verdict (spstudy.diagnostics.verdicts)."""

    alpha: float = Field(gt=0, lt=0.5, description="Significance level of every diagnostic test (pre-trend, placebo, post-referral transient, negative control).")
    margin: float = Field(gt=0, lt=0.5, description="Smallest bias that matters, as a proportion of the rate ratio (0.05 = 5%); a check fails when its test is significant AND its implied bias exceeds this.")
    smd_fail: float = Field(gt=0, le=2, description="Largest |SMD| after matching beyond which the comparison is not credible (smd_threshold is the 'sensitive' level).")


class Seeds(_Model):
    comparator_pool: int = Field(ge=0, description="Seed for the comparators' pseudo-index dates and the pool sample.")
    bootstrap: int = Field(ge=0, description="Seed for the cluster bootstrap of the absolute difference in differences.")
    placebo: int = Field(ge=0, description="Seed for the placebo design's cluster bootstrap.")


class Evaluation(_Model):
    engine: Literal["duckdb", "spark", "pandas"] = Field(description="Engine for event-level counting.")
    windows_months: list[int]
    matching_window_months: tuple[int, int]
    baseline_window_months: tuple[int, int]
    post_window_from: Literal["referral", "closure"]
    matching: Matching
    placebo_shift_months: int = Field(ge=1, le=12, description="Placebo index date this many months before the real referral.")
    placebo_window_months: int = Field(default=3, ge=1, le=12, description="Length of the placebo's 'post' window, which starts at the placebo index date.")
    smd_threshold: float = Field(gt=0, le=1)
    event_study_months_before: int = Field(default=24, ge=12, le=36, description="Months before referral in the event study (the earliest are the clean pre-period before the matching window).")
    clean_buffer_months: int = Field(default=3, ge=0, le=6, description="Months just before the matching window left out of the clean pre-period (matching on the window's noisy counts raises the comparators' use around it).")
    post_washout_months: int = Field(default=3, ge=0, le=6, description="Trend-adjusted estimator: months after referral left out (the tail of the pre-referral rise).")
    age_spline_knots: int = Field(default=4, ge=3, le=7, description="Knots of the restricted cubic spline of age in the propensity model (Harrell 2015).")
    negative_control_setting: Optional[str] = Field(default="elective", description="Activity setting used as the negative-control outcome (null: none).")
    bootstrap_draws: int = Field(default=500, ge=50, le=100_000)
    seeds: Seeds = Field(default_factory=lambda: Seeds(comparator_pool=20231, bootstrap=1, placebo=2))
    verdict: VerdictRules = Field(default_factory=lambda: VerdictRules(alpha=0.05, margin=0.05, smd_fail=0.25))
    upc_expectations: UPC
    wellbeing_thresholds: WellbeingThresholds
    high_intensity_ae_per_year: int = Field(default=6, ge=1, le=50, description="A&E attendances in the year before referral that make a "
                                            "high-intensity user (British Red Cross 2021: more than five a year), for Haringey's claim.")

    @model_validator(mode="after")
    def _pre_periods(self):
        m0, m1 = self.matching_window_months
        b0, b1 = self.baseline_window_months
        if not (-24 <= m0 <= m1 < b0 <= b1 <= -1):
            raise ValueError("matching_window_months and baseline_window_months must be month ranges before referral "
                             "(-24..-1), the matching window wholly before the baseline window, e.g. [-12, -7] and [-6, -4]")
        if (m1 - m0 + 1) % 3:
            raise ValueError("matching_window_months must cover whole quarters (3, 6, 9 or 12 months)")
        if self.placebo_window_months > self.placebo_shift_months:
            raise ValueError("placebo_window_months must not exceed placebo_shift_months (the placebo window ends before the real referral)")
        if m0 - self.placebo_shift_months < -self.event_study_months_before:
            raise ValueError("the placebo's matching window (matching_window_months shifted back by placebo_shift_months) must lie "
                             "within event_study_months_before")
        if -self.event_study_months_before > m0 - self.clean_buffer_months - 6:
            raise ValueError("event_study_months_before must leave at least 6 months before the matching window and its buffer "
                             "(clean_buffer_months): the clean pre-period for the pre-trend test and the trend-adjusted estimator")
        if self.post_washout_months >= min(self.windows_months):
            raise ValueError("post_washout_months must be shorter than the shortest window")
        return self

    @field_validator("windows_months")
    @classmethod
    def _windows(cls, v):
        if not v or any(m <= 0 or m > 24 for m in v):
            raise ValueError("windows must be whole months between 1 and 24")
        return sorted(set(v))


Fraction = float

WELLBEING_MEASURES = ("ons4_life_satisfaction", "wemwbs_total", "swemwbs_metric")


class WellbeingValue(_Model):
    wellbys_per_point: float = Field(gt=0, description="WELLBYs (life-satisfaction points for one person for one year) per point of the measure.")
    wellbys_per_point_range: tuple[float, float] = Field(description="Low and high values of wellbys_per_point for the sensitivity analysis.")
    source: str = Field(min_length=1, description="Published source of the mapping (author, year, table).")

    @model_validator(mode="after")
    def _range(self):
        lo, hi = self.wellbys_per_point_range
        if not (0 < lo <= self.wellbys_per_point <= hi):
            raise ValueError("wellbys_per_point_range must contain wellbys_per_point")
        return self


class SROI(_Model):
    price_year: int = Field(ge=2000, le=2100)
    discount_rate: float = Field(ge=0, le=0.2)
    horizon_years: int = Field(ge=1, le=30)
    link_worker_annual_cost: float = Field(gt=0)
    link_worker_annual_cost_band5: float = Field(gt=0)
    management_overhead: tuple[float, float]
    gp_appointment_cost: float = Field(gt=0)
    ae_attendance_cost: float = Field(gt=0)
    ae_attendance_price_year: int = Field(ge=2000, le=2100)
    wellby_value: float = Field(gt=0)
    wellby_value_range: tuple[float, float]
    wellby_price_year: int = Field(ge=2000, le=2100)
    gdp_deflator: dict[int, float]
    deadweight: float = Field(ge=0, le=1)
    wellbeing_deadweight: float = Field(ge=0, le=1)
    wellbeing_deadweight_range: tuple[float, float]
    attribution: tuple[float, float]
    displacement: float = Field(ge=0, le=1)
    drop_off: float = Field(ge=0, le=1)
    duration_years: int = Field(ge=1, le=30)
    monte_carlo_draws: int = Field(ge=100, le=1_000_000)
    seed: int = Field(ge=0, le=2**32 - 1, description="Seed of the Monte Carlo draws (numpy.random.default_rng).")
    wellbeing_valuation: dict[Literal[WELLBEING_MEASURES], WellbeingValue] = Field(  # type: ignore[valid-type]
        description="Wellbeing measures that are valued, each with its published mapping to WELLBYs; a measure not listed is "
                    "reported as measured but not valued.")

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("management_overhead", "attribution", "wellbeing_deadweight_range"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi <= 1):
                raise ValueError(f"{name} must be a [low, high] range within 0..1")
        lo, hi = self.wellby_value_range
        if not (0 < lo <= self.wellby_value <= hi):
            raise ValueError("wellby_value_range must contain wellby_value")
        for y in (self.price_year, self.ae_attendance_price_year, self.wellby_price_year):
            if y not in self.gdp_deflator:
                raise ValueError(f"gdp_deflator has no value for {y}")
        return self


class Parameters(_Model):
    area: Literal[AREAS]  # type: ignore[valid-type]
    study: Study
    data: Data
    disclosure: Disclosure
    workforce: Workforce
    needs: Needs
    equity: Equity
    evaluation: Evaluation
    sroi: SROI

    @model_validator(mode="after")
    def _data_period_covers_windows(self):
        need = required_data_period(self.study.referral_start, self.study.referral_end, self.evaluation.windows_months,
                                    self.evaluation.matching_window_months, self.evaluation.placebo_shift_months,
                                    event_study_months_before=self.evaluation.event_study_months_before)
        st = self.study
        if st.data_start > need["data_start"] or st.data_end < need["data_end"]:
            raise ValueError(
                f"study: the data period {st.data_start} to {st.data_end} does not cover the windows the evaluation needs: "
                f"GP/A&E activity from {need['data_start']} ({need['days_before']} days before referral_start: the matching "
                f"window, the pre-windows, the placebo index {self.evaluation.placebo_shift_months} months earlier and the event "
                f"study's {self.evaluation.event_study_months_before} months) to "
                f"{need['data_end']} ({need['days_after']} days after referral_end: the longest post window of "
                f"{max(self.evaluation.windows_months)} months); set study.data_start <= {need['data_start']} and "
                f"study.data_end >= {need['data_end']}, or shorten the windows")
        return self

    def extracts_path(self, root: Path | None = None) -> Path:
        p = Path(self.data.extracts_dir)
        return p if p.is_absolute() else (root or project.root()) / p

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def required_data_period(referral_start: dt.date, referral_end: dt.date, windows_months: list[int],
                         matching_window_months: tuple[int, int], placebo_shift_months: int,
                         event_study_months_before: int = 0) -> dict:
    """First and last day of GP/A&E activity the evaluation's windows need (days, as spstudy.evaluation).

    Before the first referral: the year of quarters before the index date, the matching window
    (``matching_window_months[0]`` months), each pre-window (``windows_months``) and the placebo index
    ``placebo_shift_months`` earlier with its own matching window, and the event study's
    ``event_study_months_before`` months (its clean pre-period). After the last referral: the longest
    post window (days 0..d-1, d = round(30.4375 m)). Returns a dict with data_start, data_end,
    days_before and days_after. Windows measured from case closure (post_window_from: closure) need
    more after the last closure; that depends on the data and is reported by the evaluation.
    """
    def days(m):
        return int(round(DAYS_PER_MONTH * m))

    matching = -days(matching_window_months[0])
    before = max(365, matching, max(days(m) for m in windows_months), days(placebo_shift_months) + matching,
                 days(event_study_months_before))  # the event study's clean pre-period (evaluation.event_study_months_before)
    after = max(days(m) for m in windows_months) - 1
    return {"data_start": referral_start - dt.timedelta(days=before), "data_end": referral_end + dt.timedelta(days=after),
            "days_before": before, "days_after": after}


class _DateSafeLoader(yaml.SafeLoader):
    """YAML SafeLoader that leaves a date-like scalar it cannot turn into a date (e.g. 2023-02-30) as text,
    so the schema reports it with its key instead of PyYAML raising a bare ValueError; and refuses a key
    given twice in one mapping (PyYAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1}, again on line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _timestamp_or_text(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_DateSafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParameterError(f"{path}: parameter file not found") from None
    try:
        data = yaml.load(text, Loader=_DateSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ParameterError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise ParameterError(f"{path}: file is empty")
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "gdp_deflator":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _has_path(d: dict, loc: tuple) -> bool:
    cur: Any = d
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            return False
    return True


def _format_errors(err: ValidationError, files: list[tuple[Path, dict]]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"])
        key = ".".join(str(x) for x in loc) or "(top level)"
        # the last file that sets this key (or its parent) is the one to blame
        src = files[0][0]
        for path, data in files:
            for n in range(len(loc), 0, -1):
                if _has_path(data, loc[:n]):
                    src = path
                    break
        got = e.get("input")
        got_s = "" if e["type"] == "missing" else f"; got {got!r}"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see parameters/schema.json)"
        lines.append(f"{src}: key '{key}': {msg}{got_s}")
    return "invalid parameters:\n  " + "\n  ".join(lines)


def load_parameters(area: str = "ncl", directory: Path | str | None = None, overrides: dict | None = None) -> Parameters:
    """Load and validate the parameters for ``area`` ('ncl' or a borough slug).

    Reads ``ncl.yaml`` then ``<area>.yaml`` (if area is not 'ncl') from ``directory`` (default
    ``parameters/``), applies ``overrides`` (a nested dict, e.g. from papermill), validates the result.
    """
    directory = Path(directory) if directory else project.parameters_dir()
    if area not in AREAS:
        raise ParameterError(f"area {area!r} does not exist; expected one of {', '.join(AREAS)}")
    base_path = directory / "ncl.yaml"
    files = [(base_path, _read_yaml(base_path))]
    merged = files[0][1]
    if area != "ncl":
        p = directory / f"{area}.yaml"
        d = _read_yaml(p)
        files.append((p, d))
        merged = _merge(merged, d)
        if d.get("area", area) != area:
            raise ParameterError(f"{p}: key 'area': must be {area!r} for this file; got {d.get('area')!r}")
    if overrides:
        files.append((Path("<overrides>"), overrides))
        merged = _merge(merged, overrides)
    merged.setdefault("area", area)
    try:
        # strict: a boolean, a quoted number or a list where a number belongs is an error, never coerced
        # (`threshold: yes` would otherwise become 1). JSON mode so YAML lists may fill tuples and dates parse.
        return Parameters.model_validate_json(json.dumps(merged, default=_json_scalar), strict=True)
    except ValidationError as e:
        raise ParameterError(_format_errors(e, files)) from None


def _json_scalar(o):
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not a parameter value")


def json_schema() -> str:
    """The JSON schema of the parameter files (published as parameters/schema.json)."""
    return json.dumps(Parameters.model_json_schema(), indent=2, sort_keys=True) + "\n"
