"""Coding rules shared by every analysis: NHS ethnic category codes to Census 2021 groups, English
proficiency, main language and interpreter need to their labels, completed age to the 2013 European
Standard Population five-year bands and to the model bands, and IMD deciles to quintiles. Each rule is
written here once (the column check is :mod:`spstudy.methods.checks`).

Sources: NHS Data Dictionary ETHNIC CATEGORY; ONS Census 2021 ethnic group classification (TS021) and
proficiency in English (TS029); Eurostat (2013) Revision of the European Standard Population; MHCLG
English Indices of Deprivation 2025 (deciles of LSOAs in England).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from spstudy.inputs.contract import (
    CENSUS5_GROUPS,
    ENGLISH_PROFICIENCY,
    ETHNIC_CATEGORIES,
    ETHNIC_TO_CENSUS5,
    LANGUAGES,
    NOT_RECORDED,
    NOT_STATED,
)
from spstudy.methods import stats

# ------------------------------------------------------------------------------------ code lists

#: Census 2021 five groups, then the two missing-data categories (table order everywhere).
ETHNIC_GROUPS: list[str] = list(CENSUS5_GROUPS) + [NOT_STATED, NOT_RECORDED]
#: The 16 NHS detailed categories (A-S) as labels, then Not stated (Z) and Not recorded (empty).
DETAILED_GROUPS: list[str] = [v for k, v in ETHNIC_CATEGORIES.items() if k != "Z"] + [NOT_STATED, NOT_RECORDED]
DETAILED_TO_CENSUS5: dict[str, str] = {ETHNIC_CATEGORIES[k]: g for k, g in ETHNIC_TO_CENSUS5.items()}

#: Short labels for the TS029 proficiency categories (contract keys -> label).
PROFICIENCY_LABELS: dict[str, str] = {
    "main_english": "Main language is English",
    "very_well": "Speaks English very well",
    "well": "Speaks English well",
    "not_well": "Cannot speak English well",
    "not_at_all": "Cannot speak English",
}
PROFICIENCY_GROUPS: list[str] = list(PROFICIENCY_LABELS.values()) + [NOT_RECORDED]
#: TS029 categories in data/reference -> contract key (the subtotal row is not a category).
TS029_TO_KEY: dict[str, str] = {
    "main_language_english": "main_english",
    "not_english_can_speak_english_very_well": "very_well",
    "not_english_can_speak_english_well": "well",
    "not_english_cannot_speak_english_well": "not_well",
    "not_english_cannot_speak_english": "not_at_all",
}
INTERPRETER_GROUPS: list[str] = ["Interpreter needed", "No interpreter needed", NOT_RECORDED]
LANGUAGE_GROUPS: list[str] = list(LANGUAGES) + [NOT_RECORDED]

#: Age bands of the count and logistic models (the services take adults; see :func:`model_frame`).
MODEL_AGE_BANDS: list[tuple[str, int, int]] = [("16-29", 16, 29), ("30-44", 30, 44), ("45-64", 45, 64),
                                               ("65-79", 65, 79), ("80+", 80, 200)]

#: Age bands of the evaluation's cohort tables and subgroups (age at the index date), as (right-closed
#: edges, labels) for ``pandas.cut``: 0-17, 18-29, 30-44, 45-64, 65-74, 75+.
EVALUATION_AGE_BANDS: tuple[list[int], list[str]] = ([-1, 17, 29, 44, 64, 74, 200], ["0-17", "18-29", "30-44", "45-64", "65-74", "75+"])

#: Broad age bands used to estimate a group's age structure from the (sampled) registered population
#: (equity); each is split into ESP2013 five-year bands by the whole area's age distribution within it.
BROAD_AGE_BANDS: dict[str, list[str]] = {
    "0-14": ["0-4", "5-9", "10-14"], "15-29": ["15-19", "20-24", "25-29"], "30-44": ["30-34", "35-39", "40-44"],
    "45-64": ["45-49", "50-54", "55-59", "60-64"], "65-74": ["65-69", "70-74"], "75+": ["75-79", "80-84", "85-89", "90+"],
}

# ------------------------------------------------------------------------------------ helpers

def as_object(values) -> pd.Series:
    """Values as an object Series with every kind of missing (None, NaN, pd.NA, blank text) as None
    and text stripped."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(s.dtype, pd.StringDtype) or s.dtype == object:
        try:
            t = s.astype("string")
        except (TypeError, ValueError):
            t = None
        if t is not None and (s.dtype != object or s.dropna().map(type).isin([str]).all()):
            t = t.str.strip()
            missing = (t.isna() | (t == "")).to_numpy(dtype=bool, na_value=True)
            out = t.astype(object)
            out[missing] = None
            return out
    out = s.astype(object).copy()
    out[s.isna().to_numpy()] = None
    return out


def order_levels(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """Every level of ``order`` (present or not), then any other values sorted: unexpected
    categories are never lost."""
    seen = list(dict.fromkeys(v for v in values if v is not None))
    return list(order) + sorted(str(v) for v in seen if v not in order)


def esp_band(age) -> pd.Series:
    """2013 European Standard Population five-year band label for completed age (0-4 ... 85-89, 90+)."""
    a = pd.Series(age).astype(float)
    if (a < 0).any():
        raise ValueError(f"age must be >= 0; got {sorted(a[a < 0].unique())[:5]}")
    idx = np.minimum((a // 5).astype(int), 18)
    return pd.Series(np.asarray(stats.ESP2013_BANDS, dtype=object)[idx], index=a.index, dtype=object)


def model_age_band(age) -> pd.Series:
    """Model age band (:data:`MODEL_AGE_BANDS`); None below 16."""
    a = pd.Series(age).astype(float)
    out = pd.Series([None] * len(a), index=a.index, dtype=object)
    for label, lo, hi in MODEL_AGE_BANDS:
        out[(a >= lo) & (a <= hi)] = label
    return out


def imd_quintile(decile) -> pd.Series:
    """IMD national quintile (1 = most deprived 20% of LSOAs in England) from the decile (1-10)."""
    d = pd.Series(decile).astype(float)
    bad = d.notna() & ~d.isin(range(1, 11))
    if bad.any():
        raise ValueError(f"IMD decile must be 1-10; got {sorted(d[bad].unique())[:5]}")
    return ((d + 1) // 2).astype("Int64")


# ------------------------------------------------------------------------------------ coding

def _code(values, table: Mapping[str, str], column: str, allowed: str) -> pd.Series:
    """Map codes through ``table``; empty -> "Not recorded"; unknown codes raise ValueError naming them."""
    s = as_object(values)
    unknown = sorted({v for v in s.dropna() if v not in table})
    if unknown:
        raise ValueError(f"{column}: unknown values {unknown[:8]} (allowed: {allowed})")
    out = s.map(table).astype(object)
    out[s.isna().to_numpy()] = NOT_RECORDED
    return out


def code_ethnicity(codes, level: str = "census5") -> pd.Series:
    """Map NHS ethnic category codes to analysis groups.

    ``level='census5'``: A-S -> Census 2021 five groups (Asian, Black, Mixed, White, Other; R Chinese
    -> Asian as in Census 2021 TS021); ``level='detailed'``: A-S -> the 16 NHS category labels.
    Either way ``Z`` -> "Not stated" and empty/missing -> "Not recorded" (never merged with "Other").
    Unknown codes raise ValueError naming them. Source: NHS Data Dictionary ETHNIC CATEGORY; ONS
    Census 2021 ethnic group classification.
    """
    if level not in ("census5", "detailed"):
        raise ValueError(f"level must be 'census5' or 'detailed'; got {level!r}")
    table = dict(ETHNIC_TO_CENSUS5) if level == "census5" else {k: v for k, v in ETHNIC_CATEGORIES.items() if k != "Z"}
    table["Z"] = NOT_STATED
    out = _code(codes, table, "ethnicity", "A-S, Z or empty")
    return out.rename("ethnic_group")


def code_proficiency(values) -> pd.Series:
    """Proficiency in English (contract keys, Census 2021 TS029) -> labels; empty -> "Not recorded"."""
    out = _code(values, PROFICIENCY_LABELS, "english_proficiency", f"{list(ENGLISH_PROFICIENCY)} or empty")
    return out.rename("proficiency")


def code_language(values) -> pd.Series:
    """Main spoken language (contract list) kept as given; empty -> "Not recorded"."""
    out = _code(values, {v: v for v in LANGUAGES}, "main_language", "contract.LANGUAGES or empty")
    return out.rename("language")


def code_interpreter(values) -> pd.Series:
    """Interpreter needed (true/false) -> "Interpreter needed" / "No interpreter needed"; empty -> "Not recorded"."""
    s = as_object(values)
    if s.map(lambda v: v is None or isinstance(v, (bool, np.bool_))).all():  # typed boolean column: vectorised
        out = s.map({True: INTERPRETER_GROUPS[0], False: INTERPRETER_GROUPS[1]}).astype(object)
        out[s.isna().to_numpy()] = NOT_RECORDED
        return out.rename("interpreter")

    def one(v):
        if v is None:
            return NOT_RECORDED
        if isinstance(v, (bool, np.bool_)):
            return INTERPRETER_GROUPS[0] if v else INTERPRETER_GROUPS[1]
        t = str(v).strip().lower()
        if t in ("true", "1", "yes"):
            return INTERPRETER_GROUPS[0]
        if t in ("false", "0", "no"):
            return INTERPRETER_GROUPS[1]
        raise ValueError(f"interpreter_needed: not true/false: {v!r}")

    return s.map(one).rename("interpreter")
