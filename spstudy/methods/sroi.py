"""Social return on investment (SROI).

Method: Cabinet Office / SROI Network (now Social Value UK), *A guide to Social Return on
Investment*, January 2012 edition (Nicholls, Lawlor, Neitzert, Goodspeed).

* Stage 4 (establishing impact): impact of an outcome = quantity x financial proxy, less
  deadweight, displacement and attribution, each a fraction of the outcome:
  ``impact = quantity * proxy * (1 - deadweight) * (1 - displacement) * (1 - attribution)``.
* Stage 5.1 (projecting into the future): the impact lasts ``duration_years``; drop-off is
  deducted from the remaining value each year after the first:
  ``value_1 = impact``, ``value_y = value_{y-1} * (1 - drop_off)``.
* Stage 5.2 (net present value): ``PV = sum_y value_y / (1 + r)^y`` with year 1 discounted
  once (the guide's convention); default ``r`` = 3.5%, the HM Treasury Green Book social time
  preference rate for years 0-30. ``NPV = PV - investment`` (the value of inputs).
* Stage 5.3 (ratio): ``SROI ratio = PV / investment``; net ratio = NPV / investment.
* Stage 5.4: sensitivity analysis (:func:`tornado`, :func:`break_even`,
  :func:`monte_carlo_sroi`).
* Stage 5.5 (payback period): the guide's months = investment / (annual impact / 12), annual
  impact being the undiscounted year-1 impact summed over outcomes. Here the undiscounted value is
  accumulated month by month over the benefit period (each year's value spread evenly over its 12
  months, drop-off applied from year 2, each outcome for its own duration), which equals the guide's
  formula while nothing drops off, and payback is "not reached" (NaN, ``payback_reached`` False)
  when the outcomes never repay the investment within the benefit period: a payback longer than the
  benefits last is impossible.

The impact map is a DataFrame with one row per outcome and the columns in
:data:`IMPACT_MAP_COLUMNS`; money is in pounds at each row's ``price_year`` prices (use
:func:`uprate_impact_map` to put every proxy in one price year before adding them up).

Inputs for sensitivity and simulation are named:

* ``"<column>"`` - that column in every row (one shared value), e.g. ``"attribution"``;
* ``"<outcome>:<column>"`` - that column in the row whose ``outcome`` matches, e.g.
  ``"Improved wellbeing:deadweight"`` (outcome labels must be unique);
* ``"investment"`` and ``"discount_rate"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from spstudy.methods.checks import require_columns
from spstudy.methods.stats import check_confidence, z_value

__all__ = [
    "IMPACT_MAP_COLUMNS",
    "FRACTION_COLUMNS",
    "VARIABLE_INPUTS",
    "GREEN_BOOK_DISCOUNT_RATE",
    "GREEN_BOOK_SCHEDULE",
    "validate_impact_map",
    "impact_value",
    "project_impact",
    "impact_schedule",
    "discount_factors",
    "green_book_discount_factors",
    "present_value",
    "payback_months",
    "payback_from_schedule",
    "present_value_by_outcome",
    "sroi_summary",
    "uprate",
    "uprate_impact_map",
    "fixed",
    "uniform",
    "triangular",
    "normal",
    "normal_from_ci",
    "lognormal",
    "lognormal_from_ci",
    "sample_distribution",
    "MonteCarloResult",
    "monte_carlo_sroi",
    "tornado",
    "tornado_plot",
    "break_even",
]

IMPACT_MAP_COLUMNS = (
    "stakeholder",
    "outcome",
    "indicator",
    "quantity",
    "financial_proxy",
    "proxy_source",
    "price_year",
    "deadweight",
    "attribution",
    "displacement",
    "drop_off",
    "duration_years",
    "notes",
)
FRACTION_COLUMNS = ("deadweight", "attribution", "displacement", "drop_off")
#: Impact-map columns that sensitivity analysis and simulation may vary.
VARIABLE_INPUTS = ("quantity", "financial_proxy") + FRACTION_COLUMNS + ("duration_years",)
_TEXT_REQUIRED = ("stakeholder", "outcome", "indicator", "proxy_source")

#: HM Treasury Green Book (2022) social time preference rate, years 0-30.
GREEN_BOOK_DISCOUNT_RATE = 0.035
#: Green Book declining long-term schedule: (first year, last year, rate).
GREEN_BOOK_SCHEDULE = (
    (0, 30, 0.035),
    (31, 75, 0.030),
    (76, 125, 0.025),
    (126, 200, 0.020),
    (201, 300, 0.015),
    (301, None, 0.010),
)


# --------------------------------------------------------------------------------------------
# Impact map
# --------------------------------------------------------------------------------------------
def _row_label(df: pd.DataFrame, idx) -> str:
    outcome = df.at[idx, "outcome"] if "outcome" in df.columns else None
    return f"row {idx!r} (outcome {outcome!r})"


def validate_impact_map(impact_map: pd.DataFrame) -> pd.DataFrame:
    """Check an impact map and return a typed copy.

    Rules: all :data:`IMPACT_MAP_COLUMNS` present; ``stakeholder``, ``outcome``, ``indicator``
    and ``proxy_source`` non-empty text (the guide's transparency principle); ``outcome``
    unique; ``quantity`` >= 0; ``financial_proxy`` finite (negative for a negative outcome);
    deadweight, attribution, displacement, drop_off in [0, 1]; ``duration_years`` a whole
    number >= 1; ``price_year`` a whole number. ``notes`` may be empty.

    Raises ValueError listing every problem by row (index and outcome) and column.
    """
    if not isinstance(impact_map, pd.DataFrame):
        raise ValueError(f"impact_map: expected a pandas DataFrame, got {type(impact_map).__name__}")
    require_columns(impact_map, IMPACT_MAP_COLUMNS, "impact_map")
    if len(impact_map) == 0:
        raise ValueError("impact_map: has no rows")
    df = impact_map.copy()
    problems: list[str] = []

    for col in _TEXT_REQUIRED:
        for idx, v in df[col].items():
            if pd.isna(v) or str(v).strip() == "":
                problems.append(f"{_row_label(df, idx)}, column {col!r}: must be non-empty text")
    dup = df["outcome"].duplicated(keep=False) & df["outcome"].notna()
    if dup.any():
        problems.append(
            f"column 'outcome': labels must be unique (they name inputs); duplicated "
            f"{sorted(set(df.loc[dup, 'outcome'].astype(str)))}"
        )

    numeric_cols = ("quantity", "financial_proxy", "price_year", "duration_years") + FRACTION_COLUMNS
    for col in numeric_cols:
        conv = pd.to_numeric(df[col], errors="coerce").astype(float)
        for idx in df.index[conv.isna() | ~np.isfinite(conv)]:
            problems.append(
                f"{_row_label(df, idx)}, column {col!r}: {df.at[idx, col]!r} is not a finite number"
            )
        df[col] = conv

    def _flag(mask: pd.Series, col: str, rule: str) -> None:
        for idx in df.index[mask.fillna(False)]:
            problems.append(f"{_row_label(df, idx)}, column {col!r}: {df.at[idx, col]!r} {rule}")

    _flag(df["quantity"] < 0, "quantity", "must be >= 0")
    for col in FRACTION_COLUMNS:
        _flag((df[col] < 0) | (df[col] > 1), col, "must be a fraction in [0, 1]")
    _flag((df["duration_years"] < 1) | (df["duration_years"] != np.round(df["duration_years"])),
          "duration_years", "must be a whole number of years >= 1")
    _flag(df["price_year"] != np.round(df["price_year"]), "price_year", "must be a whole year")

    if problems:
        raise ValueError("impact_map is invalid:\n  " + "\n  ".join(problems))
    df["duration_years"] = df["duration_years"].astype(int)
    df["price_year"] = df["price_year"].astype(int)
    return df


def impact_value(row) -> float:
    """Year-1 impact of one outcome (guide Stage 4).

    ``quantity x financial_proxy x (1 - deadweight) x (1 - displacement) x (1 - attribution)``,
    in pounds at the row's price year. ``row`` is an impact-map row (Series or mapping).
    """
    return float(
        float(row["quantity"])
        * float(row["financial_proxy"])
        * (1 - float(row["deadweight"]))
        * (1 - float(row["displacement"]))
        * (1 - float(row["attribution"]))
    )


def project_impact(row) -> np.ndarray:
    """Undiscounted value in each year 1..duration_years of one outcome (guide Stage 5.1).

    Year 1 is :func:`impact_value`; each later year is the previous year's value less
    drop-off: ``value_y = value_{y-1} x (1 - drop_off)``.
    """
    duration = int(row["duration_years"])
    if duration < 1:
        raise ValueError(f"duration_years: must be >= 1, got {duration}")
    years = np.arange(duration)
    return impact_value(row) * (1 - float(row["drop_off"])) ** years


def impact_schedule(impact_map: pd.DataFrame) -> pd.DataFrame:
    """Tidy year-by-year undiscounted impact: stakeholder, outcome, year (1-based), value."""
    df = validate_impact_map(impact_map)
    parts = []
    for _, row in df.iterrows():
        values = project_impact(row)
        parts.append(pd.DataFrame({
            "stakeholder": row["stakeholder"],
            "outcome": row["outcome"],
            "year": np.arange(1, len(values) + 1),
            "value": values,
        }))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Discounting
# --------------------------------------------------------------------------------------------
def green_book_discount_factors(years) -> np.ndarray:
    """Discount factors under the Green Book declining schedule (:data:`GREEN_BOOK_SCHEDULE`).

    The factor for year t is the product over years 1..t of 1/(1 + r_s), r_s being the rate in
    force in year s; for t <= 30 this equals 1/1.035^t. Year 0 has factor 1.
    """
    years = np.asarray(years)
    if np.any(years < 0) or np.any(years != np.round(years)):
        raise ValueError(f"years: must be whole numbers >= 0, got {years}")
    tmax = int(years.max()) if years.size else 0
    rates = np.empty(tmax + 1)
    for first, last, r in GREEN_BOOK_SCHEDULE:
        stop = tmax if last is None else min(last, tmax)
        if first <= tmax:
            rates[first:stop + 1] = r
    cum = np.concatenate([[1.0], np.cumprod(1 / (1 + rates[1:]))])
    return cum[years.astype(int)]


def discount_factors(years, rate=GREEN_BOOK_DISCOUNT_RATE) -> np.ndarray:
    """Discount factors ``1 / (1 + rate)^year``.

    ``rate`` is a fraction (0.035 = 3.5%) or ``"green_book"`` for the declining schedule.
    """
    years = np.asarray(years, dtype=float)
    if isinstance(rate, str):
        if rate != "green_book":
            raise ValueError(f"rate: must be a number or 'green_book', got {rate!r}")
        return green_book_discount_factors(years)
    rate = float(rate)
    if not np.isfinite(rate) or rate <= -1:
        raise ValueError(f"rate: must be a number > -1, got {rate}")
    return (1 + rate) ** -years


def present_value(cashflows, rate=GREEN_BOOK_DISCOUNT_RATE, start_year: int = 1) -> float:
    """Present value of a stream of annual values.

    ``cashflows[i]`` falls in year ``start_year + i`` and is divided by
    ``(1 + rate)^(start_year + i)``. The SROI guide (Stage 5.2) discounts year 1 once, so the
    default ``start_year=1``; use ``start_year=0`` for the Green Book convention in which
    year 0 (the present) is undiscounted. Default rate 3.5% (Green Book, years 0-30).
    """
    cf = np.asarray(cashflows, dtype=float)
    if cf.ndim != 1:
        raise ValueError(f"cashflows: must be one-dimensional, got shape {cf.shape}")
    if int(start_year) != start_year or start_year < 0:
        raise ValueError(f"start_year: must be a whole number >= 0, got {start_year}")
    years = np.arange(len(cf)) + int(start_year)
    return float(np.sum(cf * discount_factors(years, rate)))


def payback_months(investment: float, annual_impact: float, benefit_months: float = float("inf")) -> float:
    """Payback period in months = investment / (annual impact / 12) (guide Stage 5.5), for an impact
    that stays the same for ``benefit_months``.

    Infinite (not reached) when the annual impact is zero or negative, or when the payback would come
    after the benefits end (``benefit_months``, e.g. 12 for outcomes that last one year).
    """
    if annual_impact <= 0:
        return float("inf")
    months = float(investment) / (float(annual_impact) / 12)
    return months if months <= benefit_months else float("inf")


def payback_from_schedule(impact_map: pd.DataFrame, investment: float) -> dict:
    """Month in which the cumulative undiscounted value of the outcomes first equals the investment.

    Each outcome's yearly value (:func:`project_impact`: drop-off from year 2, for its own
    ``duration_years``) accrues evenly over that year's 12 months. Returns ``payback_months`` (NaN if
    never reached), ``payback_reached`` and ``benefit_period_months`` (12 x the longest duration).
    With no drop-off this is investment / (annual impact / 12), the guide's Stage 5.5 formula.
    """
    inv = _check_investment(investment)
    df = validate_impact_map(impact_map)
    years = int(df["duration_years"].max())
    per_year = np.zeros(years)
    for _, row in df.iterrows():
        v = project_impact(row)
        per_year[: len(v)] += v
    cum = 0.0
    for y, v in enumerate(per_year):
        if v > 0 and cum + v >= inv:
            return {"payback_months": float(12 * y + (inv - cum) / (v / 12)), "payback_reached": True,
                    "benefit_period_months": 12 * years}
        cum += v
    return {"payback_months": float("nan"), "payback_reached": False, "benefit_period_months": 12 * years}


# --------------------------------------------------------------------------------------------
# Vectorised engine (shared by the deterministic, tornado, break-even and Monte Carlo paths)
# --------------------------------------------------------------------------------------------
def _check_price_years(df: pd.DataFrame) -> None:
    years = sorted(df["price_year"].unique().tolist())
    if len(years) > 1:
        warnings.warn(
            f"impact_map: financial proxies are in different price years {years}; "
            "uprate them to one year with uprate_impact_map() before adding them up",
            stacklevel=3,
        )


def _base_params(df: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    return {c: np.repeat(df[c].to_numpy(dtype=float)[:, None], n, axis=1) for c in VARIABLE_INPUTS}


def _resolve(df: pd.DataFrame, name: str) -> tuple[str, np.ndarray | None]:
    """Map an input name to (column, row positions); positions None for scalar inputs."""
    if not isinstance(name, str):
        raise ValueError(f"input name: expected text, got {name!r}")
    if name in ("investment", "discount_rate"):
        return name, None
    if name in VARIABLE_INPUTS:
        return name, np.arange(len(df))
    if ":" in name:
        outcome, col = name.rsplit(":", 1)
        if col not in VARIABLE_INPUTS:
            raise ValueError(f"input {name!r}: column {col!r} is not one of {VARIABLE_INPUTS}")
        pos = np.flatnonzero(df["outcome"].astype(str).to_numpy() == outcome)
        if len(pos) == 0:
            raise ValueError(
                f"input {name!r}: no outcome {outcome!r}; outcomes are "
                f"{df['outcome'].astype(str).tolist()}"
            )
        return col, pos
    raise ValueError(
        f"input {name!r}: expected 'investment', 'discount_rate', one of {VARIABLE_INPUTS}, "
        "or '<outcome>:<column>'"
    )


def _pv_draws(params: dict[str, np.ndarray], rate, start_year: int) -> tuple[np.ndarray, np.ndarray]:
    """PV per draw and year-1 impact per draw. params arrays have shape (rows, draws)."""
    q = params["quantity"]
    v1 = (q * params["financial_proxy"] * (1 - params["deadweight"])
          * (1 - params["displacement"]) * (1 - params["attribution"]))
    dur = params["duration_years"]
    ymax = int(np.max(dur))
    y = np.arange(1, ymax + 1)  # outcome year, 1-based
    values = (v1[..., None] * (1 - params["drop_off"])[..., None] ** (y - 1)
              * (y <= dur[..., None]))  # (rows, draws, years)
    cal_years = start_year + y - 1
    if isinstance(rate, str):
        df_ = discount_factors(cal_years, rate)[None, :]  # (1, years)
    else:
        r = np.broadcast_to(np.asarray(rate, dtype=float), (v1.shape[1],))
        if np.any(r <= -1):
            raise ValueError("discount_rate: must be > -1")
        df_ = (1 + r[:, None]) ** -cal_years[None, :]  # (draws, years)
    pv = np.einsum("rdy,dy->d", values, np.broadcast_to(df_, values.shape[1:]))
    return pv, v1.sum(axis=0)


def _application_order(names) -> list[str]:
    """Names ordered so that whole-column inputs are applied before '<outcome>:<column>' ones
    (the more specific input wins whatever the order they were given in)."""
    return sorted(names, key=lambda nm: (":" in nm, nm))


def _ratio_at(df: pd.DataFrame, investment: float, rate, start_year: int,
              overrides: Mapping[str, float]) -> float:
    params = _base_params(df, 1)
    inv, r = float(investment), rate
    for name in _application_order(overrides):
        value = overrides[name]
        col, pos = _resolve(df, name)
        if col == "investment":
            inv = float(value)
        elif col == "discount_rate":
            r = float(value)
        else:
            params[col][pos, :] = value
    _clip_params(params)
    pv, _ = _pv_draws(params, r, start_year)
    if inv <= 0:
        raise ValueError(f"investment: must be > 0, got {inv}")
    return float(pv[0] / inv)


def _clip_params(params: dict[str, np.ndarray]) -> dict[str, int]:
    """Keep drawn inputs in their valid ranges; return how many values were moved."""
    counts = {}
    for col in FRACTION_COLUMNS:
        a = params[col]
        counts[col] = int(np.sum((a < 0) | (a > 1)))
        np.clip(a, 0, 1, out=a)
    a = params["quantity"]
    counts["quantity"] = int(np.sum(a < 0))
    np.clip(a, 0, None, out=a)
    a = params["duration_years"]
    rounded = np.maximum(np.rint(a), 1)
    counts["duration_years"] = int(np.sum(rounded != a))
    params["duration_years"] = rounded
    return counts


def _check_investment(investment) -> float:
    inv = float(investment)
    if not np.isfinite(inv) or inv <= 0:
        raise ValueError(f"investment: must be a positive amount of money, got {investment}")
    return inv


# --------------------------------------------------------------------------------------------
# Deterministic SROI
# --------------------------------------------------------------------------------------------
def present_value_by_outcome(impact_map: pd.DataFrame, rate=GREEN_BOOK_DISCOUNT_RATE,
                             start_year: int = 1) -> pd.DataFrame:
    """Per-outcome year-1 impact, total undiscounted value and present value (Stage 5.2)."""
    df = validate_impact_map(impact_map)
    rows = []
    for _, row in df.iterrows():
        values = project_impact(row)
        rows.append({
            "stakeholder": row["stakeholder"],
            "outcome": row["outcome"],
            "price_year": row["price_year"],
            "impact_year_1": values[0],
            "undiscounted_total": float(values.sum()),
            "present_value": present_value(values, rate, start_year),
        })
    return pd.DataFrame(rows)


def sroi_summary(impact_map: pd.DataFrame, investment: float, rate=GREEN_BOOK_DISCOUNT_RATE,
                 start_year: int = 1) -> pd.DataFrame:
    """Headline SROI figures (guide Stage 5) as a one-row DataFrame.

    Columns: ``investment`` (value of inputs, pounds, undiscounted), ``present_value`` (PV of
    all outcomes), ``npv`` (PV - investment), ``sroi_ratio`` (PV / investment),
    ``net_sroi_ratio`` (NPV / investment), ``annual_impact`` (sum of year-1 impacts),
    ``payback_months`` (:func:`payback_from_schedule`: NaN when not reached within the benefit
    period), ``payback_reached``, ``benefit_period_months``, ``discount_rate``.
    """
    inv = _check_investment(investment)
    by = present_value_by_outcome(impact_map, rate, start_year)
    _check_price_years(validate_impact_map(impact_map))
    pv = float(by["present_value"].sum())
    annual = float(by["impact_year_1"].sum())
    return pd.DataFrame([{
        "investment": inv,
        "present_value": pv,
        "npv": pv - inv,
        "sroi_ratio": pv / inv,
        "net_sroi_ratio": (pv - inv) / inv,
        "annual_impact": annual,
        **payback_from_schedule(impact_map, inv),
        "discount_rate": rate,
    }])


# --------------------------------------------------------------------------------------------
# Price uprating
# --------------------------------------------------------------------------------------------
def uprate(value, from_year: int, to_year: int, index: Mapping[int, float]):
    """Re-express money from ``from_year`` prices in ``to_year`` prices.

    ``value x index[to_year] / index[from_year]``, with ``index`` a price index by year such as
    the HM Treasury GDP deflator (the Green Book's recommended general inflation measure),
    supplied from the project's parameters. Works on scalars and arrays.
    """
    if not isinstance(index, Mapping) or not index:
        raise ValueError("index: must be a non-empty mapping of year -> index value")
    idx = {int(k): float(v) for k, v in index.items()}
    for name, year in (("from_year", from_year), ("to_year", to_year)):
        if int(year) not in idx:
            raise ValueError(
                f"{name}: {year} is not in the price index (years {min(idx)}-{max(idx)})"
            )
    a, b = idx[int(from_year)], idx[int(to_year)]
    if not (a > 0 and b > 0 and np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"index: values must be positive, got {from_year}: {a}, {to_year}: {b}")
    out = np.asarray(value, dtype=float) * (b / a)
    return float(out) if out.ndim == 0 else out


def uprate_impact_map(impact_map: pd.DataFrame, to_year: int,
                      index: Mapping[int, float]) -> pd.DataFrame:
    """Copy of the impact map with every ``financial_proxy`` in ``to_year`` prices."""
    df = validate_impact_map(impact_map)
    df["financial_proxy"] = [
        uprate(p, y, to_year, index) for p, y in zip(df["financial_proxy"], df["price_year"])
    ]
    df["price_year"] = int(to_year)
    return df


# --------------------------------------------------------------------------------------------
# Distributions for Monte Carlo
# --------------------------------------------------------------------------------------------
def fixed(value: float) -> dict:
    """A constant (no uncertainty)."""
    return {"dist": "fixed", "value": float(value)}


def uniform(low: float, high: float) -> dict:
    """Uniform between low and high."""
    return {"dist": "uniform", "low": float(low), "high": float(high)}


def triangular(low: float, mode: float, high: float) -> dict:
    """Triangular with the given low, most likely and high values."""
    return {"dist": "triangular", "low": float(low), "mode": float(mode), "high": float(high)}


def normal(mean: float, sd: float) -> dict:
    """Normal with the given mean and standard deviation."""
    return {"dist": "normal", "mean": float(mean), "sd": float(sd)}




def normal_from_ci(lower: float, upper: float, level: float = 0.95) -> dict:
    """Normal matching a symmetric CI for an effect: mean = midpoint,
    sd = (upper - lower) / (2 z), z = 1.96 for 95%."""
    if not upper > lower:
        raise ValueError(f"upper: must exceed lower, got lower={lower}, upper={upper}")
    return normal((lower + upper) / 2, (upper - lower) / (2 * z_value(level, "level")))


def lognormal(meanlog: float, sdlog: float) -> dict:
    """Log-normal: exp(Normal(meanlog, sdlog))."""
    return {"dist": "lognormal", "meanlog": float(meanlog), "sdlog": float(sdlog)}


def lognormal_from_ci(lower: float, upper: float, level: float = 0.95,
                      point: float | None = None) -> dict:
    """Log-normal matching a ratio's CI (e.g. a rate ratio), symmetric on the log scale.

    sdlog = (ln upper - ln lower) / (2 z); meanlog = ln(point) if given, else the midpoint of
    the log limits.
    """
    if not (lower > 0 and upper > lower):
        raise ValueError(f"lower/upper: need 0 < lower < upper, got {lower}, {upper}")
    lo, hi = np.log(lower), np.log(upper)
    if point is not None and point <= 0:
        raise ValueError(f"point: must be > 0, got {point}")
    meanlog = np.log(point) if point is not None else (lo + hi) / 2
    return lognormal(meanlog, (hi - lo) / (2 * z_value(level, "level")))


_DIST_KEYS = {
    "fixed": ("value",),
    "uniform": ("low", "high"),
    "triangular": ("low", "mode", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("meanlog", "sdlog"),
}


def sample_distribution(spec: Mapping, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from a distribution spec (see :func:`fixed` ... :func:`lognormal`)."""
    if not isinstance(spec, Mapping) or spec.get("dist") not in _DIST_KEYS:
        raise ValueError(f"distribution: expected a dict with 'dist' in {list(_DIST_KEYS)}, got {spec!r}")
    kind = spec["dist"]
    missing = [k for k in _DIST_KEYS[kind] if k not in spec]
    if missing:
        raise ValueError(f"distribution {kind}: missing parameter(s) {missing} in {spec!r}")
    p = {k: float(spec[k]) for k in _DIST_KEYS[kind]}
    if kind == "fixed":
        return np.full(n, p["value"])
    if kind == "uniform":
        if not p["high"] >= p["low"]:
            raise ValueError(f"uniform: high must be >= low in {spec!r}")
        return rng.uniform(p["low"], p["high"], n)
    if kind == "triangular":
        if not p["low"] <= p["mode"] <= p["high"] or p["low"] == p["high"]:
            raise ValueError(f"triangular: need low <= mode <= high and low < high in {spec!r}")
        return rng.triangular(p["low"], p["mode"], p["high"], n)
    if kind == "normal":
        if p["sd"] < 0:
            raise ValueError(f"normal: sd must be >= 0 in {spec!r}")
        return rng.normal(p["mean"], p["sd"], n)
    if p["sdlog"] < 0:
        raise ValueError(f"lognormal: sdlog must be >= 0 in {spec!r}")
    return rng.lognormal(p["meanlog"], p["sdlog"], n)


# --------------------------------------------------------------------------------------------
# Monte Carlo
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarloResult:
    """``draws``: one row per draw (drawn inputs, present_value, ratio);
    ``summary``: one-row DataFrame of the ratio's distribution."""

    draws: pd.DataFrame
    summary: pd.DataFrame


def monte_carlo_sroi(
    impact_map: pd.DataFrame,
    investment: float,
    draws: Mapping[str, Mapping],
    n: int = 10_000,
    *,
    seed: int,
    rate=GREEN_BOOK_DISCOUNT_RATE,
    start_year: int = 1,
    confidence: float = 0.95,
    probability_cap: float = 0.999,
) -> MonteCarloResult:
    """Probabilistic sensitivity analysis of the SROI ratio (vectorised, seeded).

    ``draws`` maps input names (module docstring) to distribution specs; inputs not named keep
    their impact-map values, and an ``"<outcome>:<column>"`` input overrides a whole-column
    ``"<column>"`` input for that outcome. Inputs are sampled independently, in sorted name order, from
    ``numpy.random.default_rng(seed)``, so results are identical for a seed. Drawn fractions are
    clipped to [0, 1], quantities to >= 0 and durations rounded to whole years >= 1 (counts of
    moved values are in the summary). Drawn investments must all be > 0.

    Summary columns: ``n``, ``ratio_median``, ``ratio_lower`` / ``ratio_upper`` (the central
    ``confidence`` range of the drawn ratios, e.g. 2.5th and 97.5th percentiles), ``ratio_mean``,
    ``prob_ratio_gt_1`` (share of draws with ratio > 1), ``prob_ratio_gt_1_reported`` and
    ``prob_ratio_gt_1_bound``: the share capped to [1 - ``probability_cap``, ``probability_cap``]
    with ">" or "<" where it was capped ("=" otherwise), so a finite simulation never reports a
    probability of 0% or 100% (e.g. "> 99.9%"); ``pv_median``, ``pv_lower``, ``pv_upper``,
    ``confidence``, ``seed``, ``clipped_<column>``.
    """
    check_confidence(confidence)
    if not 0.5 < probability_cap < 1:
        raise ValueError(f"probability_cap: must be in (0.5, 1), got {probability_cap!r}")
    df = validate_impact_map(impact_map)
    _check_price_years(df)
    inv0 = _check_investment(investment)
    if int(n) != n or n < 1:
        raise ValueError(f"n: must be a positive whole number, got {n}")
    n = int(n)
    if not isinstance(draws, Mapping):
        raise ValueError("draws: must be a dict of input name -> distribution spec")
    rng = np.random.default_rng(seed)
    params = _base_params(df, n)
    inv = np.full(n, inv0)
    rate_draws = rate
    out = {"draw": np.arange(n)}
    for name in sorted(draws):  # sampling order fixed by name, not dict order
        _resolve(df, name)
        out[name] = sample_distribution(draws[name], n, rng)
    for name in _application_order(draws):
        col, pos = _resolve(df, name)
        x = out[name]
        if col == "investment":
            inv = x
        elif col == "discount_rate":
            rate_draws = x
        else:
            params[col][pos, :] = x[None, :]
    if np.any(inv <= 0):
        raise ValueError(
            f"draws['investment']: {int(np.sum(inv <= 0))} draws are <= 0; use a distribution "
            "bounded above zero (e.g. lognormal or triangular)"
        )
    clipped = _clip_params(params)
    pv, _ = _pv_draws(params, rate_draws, start_year)
    ratio = pv / inv
    out["present_value"] = pv
    out["ratio"] = ratio
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    prob = float(np.mean(ratio > 1))
    capped = min(max(prob, 1 - probability_cap), probability_cap)
    summary = {
        "n": n,
        "ratio_median": float(np.median(ratio)),
        "ratio_lower": float(np.quantile(ratio, lo_q)),
        "ratio_upper": float(np.quantile(ratio, hi_q)),
        "ratio_mean": float(np.mean(ratio)),
        "prob_ratio_gt_1": prob,
        "prob_ratio_gt_1_reported": capped,
        "prob_ratio_gt_1_bound": ">" if prob > probability_cap else "<" if prob < 1 - probability_cap else "=",
        "prob_ratio_gt_1_text": (f"more than {100 * probability_cap:.1f}%" if prob > probability_cap else
                                 f"less than {100 * (1 - probability_cap):.1f}%" if prob < 1 - probability_cap else f"{100 * capped:.1f}%"),
        "pv_median": float(np.median(pv)),
        "pv_lower": float(np.quantile(pv, lo_q)),
        "pv_upper": float(np.quantile(pv, hi_q)),
        "confidence": confidence,
        "seed": seed,
    }
    summary.update({f"clipped_{k}": v for k, v in clipped.items()})
    return MonteCarloResult(pd.DataFrame(out), pd.DataFrame([summary]))


# --------------------------------------------------------------------------------------------
# One-way sensitivity and break-even
# --------------------------------------------------------------------------------------------
def tornado(impact_map: pd.DataFrame, investment: float,
            ranges: Mapping[str, tuple[float, float]], rate=GREEN_BOOK_DISCOUNT_RATE,
            start_year: int = 1) -> pd.DataFrame:
    """One-way sensitivity (guide Stage 5.4): the ratio with each input at its low and high
    value, all others at base. Sorted by swing = |ratio_high - ratio_low|, largest first.

    Columns: ``input``, ``low``, ``high``, ``ratio_low``, ``ratio_high``, ``base_ratio``,
    ``swing``.
    """
    df = validate_impact_map(impact_map)
    inv = _check_investment(investment)
    base = _ratio_at(df, inv, rate, start_year, {})
    rows = []
    for name, bounds in ranges.items():
        _resolve(df, name)
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"ranges[{name!r}]: expected (low, high), got {bounds!r}") from None
        r_lo = _ratio_at(df, inv, rate, start_year, {name: low})
        r_hi = _ratio_at(df, inv, rate, start_year, {name: high})
        rows.append({"input": name, "low": low, "high": high, "ratio_low": r_lo,
                     "ratio_high": r_hi, "base_ratio": base, "swing": abs(r_hi - r_lo)})
    out = pd.DataFrame(rows, columns=["input", "low", "high", "ratio_low", "ratio_high",
                                      "base_ratio", "swing"])
    return out.sort_values("swing", ascending=False, ignore_index=True, kind="stable")


def tornado_plot(df: pd.DataFrame, ax=None):
    """Horizontal-bar tornado chart of :func:`tornado` output; largest swing at the top.

    Each bar spans the ratios at the input's low and high values; the vertical line is the base
    ratio and the dotted line ratio = 1 (break-even). Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    require_columns(df, ["input", "ratio_low", "ratio_high", "base_ratio", "low", "high"], "df", "the output of tornado()")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * max(len(df), 1) + 1.2))
    d = df.iloc[::-1].reset_index(drop=True)  # largest swing drawn last = top
    ypos = np.arange(len(d))
    lo = np.minimum(d["ratio_low"], d["ratio_high"])
    hi = np.maximum(d["ratio_low"], d["ratio_high"])
    ax.barh(ypos, hi - lo, left=lo, color="#4C72B0", height=0.6)
    ax.set_yticks(ypos, [f"{i} ({a:g} to {b:g})" for i, a, b in zip(d["input"], d["low"], d["high"])])
    if len(d):
        ax.axvline(float(d["base_ratio"].iloc[0]), color="black", linewidth=1, label="base ratio")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1, label="ratio = 1")
    ax.set_xlabel("SROI ratio (£ present value per £1 invested)")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def break_even(impact_map: pd.DataFrame, investment: float, input_name: str, bounds=None,
               rate=GREEN_BOOK_DISCOUNT_RATE, start_year: int = 1) -> float:
    """Value of one input at which the SROI ratio equals 1 (others at base values).

    Closed form where the PV is linear in the input (``investment``, ``quantity``,
    ``financial_proxy``); otherwise Brent's root finder (scipy.optimize.brentq) over
    ``bounds`` (default [0, 1] for fractions and discount_rate). Returns NaN if there is no
    root within the bounds. ``duration_years`` is a whole number and is not supported.
    """
    df = validate_impact_map(impact_map)
    inv = _check_investment(investment)
    col, _ = _resolve(df, input_name)
    if col == "duration_years":
        raise ValueError("input_name: break-even for duration_years (whole years) is not "
                         "supported; use tornado() over a range of durations")

    def f(x: float) -> float:
        return _ratio_at(df, inv, rate, start_year, {input_name: x}) - 1.0

    if col == "investment":
        lo, hi = bounds if bounds is not None else (0.0, np.inf)
        pv = _ratio_at(df, inv, rate, start_year, {}) * inv
        x = pv
    elif col in ("quantity", "financial_proxy"):
        lo, hi = bounds if bounds is not None else ((0.0, np.inf) if col == "quantity" else (-np.inf, np.inf))
        a = f(0.0) + 1.0
        b = (f(1.0) + 1.0) - a
        if b == 0:
            return float("nan")
        x = (1.0 - a) / b
    else:
        lo, hi = bounds if bounds is not None else (0.0, 1.0)
        flo, fhi = f(lo), f(hi)
        if flo == 0:
            return float(lo)
        if fhi == 0:
            return float(hi)
        if np.sign(flo) == np.sign(fhi):
            return float("nan")
        return float(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12))
    return float(x) if lo <= x <= hi else float("nan")
