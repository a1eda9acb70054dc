"""England public-health statistics, computed the way OHID's Fingertips and the reference R package
PHEindicatormethods (ukhsa-collaboration/PHEindicatormethods, v2.0.x) compute them.

Every function is vectorised over numpy arrays / pandas Series and returns a pandas DataFrame (or,
for the two classifiers, a Series) so notebooks, tests and batch runs call the same code.

Conventions shared by every function here

* ``confidence`` is a two-sided level strictly between 0 and 1 (0.95 = 95%). Unlike the R package
  we do not also accept 95: a value outside (0, 1) is a ValueError.
* Bad input (negative counts, non-positive denominators, numerators above denominators, unknown
  columns) raises ``ValueError`` naming the argument or column and the offending values.
* Missing values (NaN) in counts or denominators propagate to NaN results; they never raise and are
  never silently turned into zeros, except where the reference does so and the docstring says so
  (age bands with a missing count in :func:`dsr`).
* Counts need not be integers (e.g. modelled counts) but are usually whole numbers.

Methods and sources (each function's docstring repeats its own):

=========================  ==============================================================
Proportions                Wilson score interval (Wilson 1927; Newcombe 1998 method 3)
Counts and crude rates     Byar's approximation (Breslow & Day 1987) for counts >= 10,
                           exact Poisson / chi-squared (Armitage & Berry 2002) below 10
Directly standardised      2013 European Standard Population; Dobson et al. (1991)
rates                      intervals; suppressed for total counts < 10 (Fingertips)
Indirectly standardised    observed / expected with Byar's / exact interval on the
ratios                     observed count
Rate / proportion ratios   log-normal intervals (Katz et al. 1978; Rothman & Greenland)
SII / RII                  Low & Low (2004) weighted regression on population rank,
                           Monte Carlo intervals as PHEindicatormethods::phe_sii
Funnel plots               Fingertips technical guidance / PHEindicatormethods
                           calculate_funnel_limits and assign_funnel_significance
Index of disparity         Pearcy & Keppel (2002) Public Health Rep 117:273-280
Benchmark comparison       Fingertips better / similar / worse with polarity
=========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats as _st

from spstudy.inputs import project
from spstudy.methods.checks import require_columns

__all__ = [
    "ESP2013_BANDS",
    "check_confidence",
    "esp2013",
    "wilson_ci",
    "confidence_label",
    "wilson_limits",
    "byars_ci",
    "exact_poisson_ci",
    "crude_rate",
    "dsr",
    "expected_counts",
    "indirectly_standardised_ratio",
    "rate_ratio",
    "proportion_ratio",
    "sii_rii",
    "funnel_limits_proportion",
    "funnel_limits_ratio",
    "funnel_limits_rate",
    "funnel_flag",
    "index_of_disparity",
    "compare_to_benchmark",
]

_DATA_DIR = project.package_file("data")

#: Labels of the 19 ESP2013 age bands, youngest first, as used in ``spstudy/data/esp2013.csv``.
ESP2013_BANDS: tuple[str, ...] = tuple([f"{5 * i}-{5 * i + 4}" for i in range(18)] + ["90+"])

#: Threshold below which Fingertips does not publish a DSR (and PHEindicatormethods returns NA).
DSR_MIN_COUNT = 10

#: Counts below this use the exact Poisson interval, at or above it Byar's (PHEindicatormethods).
EXACT_BELOW = 10


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _show(values: np.ndarray, limit: int = 5) -> str:
    vals = np.unique(np.asarray(values).ravel())
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in vals[:limit])
    return shown + (", ..." if vals.size > limit else "")


def _float_array(name: str, values) -> np.ndarray:
    """Convert to a float ndarray (at least 1-D), raising a ValueError that names ``name``."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; got {values!r:.80}") from exc
    return np.atleast_1d(arr)


def check_confidence(confidence: float, name: str = "confidence") -> float:
    """``confidence`` as a float strictly between 0 and 1, else a ValueError naming ``name``: the one check of a level."""
    try:
        c = float(confidence)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {confidence!r}") from exc
    if not 0.0 < c < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1 (e.g. 0.95); got {confidence!r}")
    return c


def _check_nonneg(name: str, arr: np.ndarray) -> None:
    bad = arr[arr < 0]
    if bad.size:
        raise ValueError(f"{name} must be >= 0; offending values: {_show(bad)}")


def _check_positive(name: str, arr: np.ndarray) -> None:
    bad = arr[arr <= 0]
    if bad.size:
        raise ValueError(f"{name} must be > 0; offending values: {_show(bad)}")


def _check_finite_or_nan(name: str, arr: np.ndarray) -> None:
    bad = arr[np.isinf(arr)]
    if bad.size:
        raise ValueError(f"{name} must be finite; offending values: {_show(bad)}")


def _broadcast(**arrays: np.ndarray) -> list[np.ndarray]:
    try:
        return list(np.broadcast_arrays(*arrays.values()))
    except ValueError as exc:
        shapes = ", ".join(f"{k}: {np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"arguments have incompatible lengths ({shapes})") from exc


def z_value(confidence: float, name: str = "confidence") -> float:
    """Two-sided standard normal quantile for a ``confidence`` interval, qnorm(1 - (1 - confidence) / 2)
    (1.959964 for 0.95): the one place the package turns a confidence level into a normal quantile."""
    c = check_confidence(confidence, name)
    return float(_st.norm.ppf(c + (1.0 - c) / 2.0))


def _columns(df: pd.DataFrame, argument: str, names) -> list[str]:
    if names is None:
        return []
    return require_columns(df, names, argument)


def _key_label(key) -> str:
    """Readable label for a groupby key: 2011 rather than (2011,), '()' for no grouping."""
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    return str(key.item() if hasattr(key, "item") else key)


def _pct(level: float) -> str:
    """0.95 -> '95', 0.998 -> '99.8' (used in column names and labels)."""
    return f"{level * 100:.10g}"


def confidence_label(confidence: float) -> str:
    """A confidence level as readers see it: 0.95 -> '95%', 0.998 -> '99.8%' (labels, notes, findings)."""
    return f"{_pct(check_confidence(confidence))}%"


# --------------------------------------------------------------------------------------------
# 2013 European Standard Population
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _esp2013_cached() -> pd.DataFrame:
    df = pd.read_csv(_DATA_DIR / "esp2013.csv", dtype={"age_band": str, "source": str})
    if tuple(df["age_band"]) != ESP2013_BANDS or int(df["population"].sum()) != 100_000:
        raise ValueError("spstudy/data/esp2013.csv is corrupt: bands or total (100,000) do not match ESP2013")
    return df


def esp2013() -> pd.DataFrame:
    """The 2013 European Standard Population in 19 five-year age bands (0-4, ..., 85-89, 90+).

    Returns a DataFrame with columns ``age_band`` (str label, e.g. ``"0-4"``, ``"90+"``),
    ``age_lower`` and ``age_upper`` (completed years; ``age_upper`` is NaN for 90+),
    ``population`` (standard population; sums to 100,000) and ``source``.

    Source: Eurostat (2013) *Revision of the European Standard Population*, 2013 edition, with
    90-94 and 95+ combined as 90+; identical to the ``esp2013`` vector shipped with
    PHEindicatormethods and used by Fingertips.
    """
    return _esp2013_cached().copy()


# --------------------------------------------------------------------------------------------
# proportions
# --------------------------------------------------------------------------------------------


def wilson_ci(x, n, confidence: float = 0.95, multiplier: float = 1.0) -> pd.DataFrame:
    """Proportion x/n with its Wilson score confidence interval.

    Parameters
    ----------
    x : numerators (people with the attribute); counts >= 0.
    n : denominators (people in the sample); must be > 0 and >= x.
    confidence : two-sided level in (0, 1).
    multiplier : scale of the output, 1 for a proportion, 100 for a percentage.

    Returns a DataFrame with columns ``numerator``, ``denominator``, ``proportion``, ``proportion_lower``,
    ``proportion_upper`` (all on the ``multiplier`` scale), ``confidence`` and ``method`` ("Wilson").

    Method: Wilson EB (1927) JASA 22:209-212; Newcombe RG (1998) Stat Med 17:857-872 (method 3),
    formula as PHEindicatormethods ``wilson_lower`` / ``wilson_upper``::

        (2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2(n + z^2))

    x = 0 gives a lower limit of exactly 0 and x = n an upper limit of exactly 1, as in the
    reference. n = 0 is a ValueError, as in ``phe_proportion`` ("denominators must be greater
    than zero").
    """
    c = check_confidence(confidence)
    xa, na = _broadcast(x=_float_array("x", x), n=_float_array("n", n))
    _check_nonneg("x", xa)
    _check_positive("n", na)
    over = xa > na
    if over.any():
        raise ValueError(
            "x must be <= n for a proportion; offending (x, n) pairs: "
            + ", ".join(f"({a:g}, {b:g})" for a, b in list(zip(xa[over], na[over]))[:5])
        )
    z = z_value(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = z * np.sqrt(z**2 + 4 * xa * (1 - xa / na))
        lower = (2 * xa + z**2 - root) / 2 / (na + z**2)
        upper = (2 * xa + z**2 + root) / 2 / (na + z**2)
        p = xa / na
    # remove floating-point dust at the boundaries (the algebra gives exactly 0 and 1)
    lower = np.where(xa == 0, 0.0, lower)
    upper = np.where(xa == na, 1.0, upper)
    return pd.DataFrame(
        {
            "numerator": xa,
            "denominator": na,
            "proportion": p * multiplier,
            "proportion_lower": lower * multiplier,
            "proportion_upper": upper * multiplier,
            "confidence": c,
            "method": "Wilson",
        }
    )


def wilson_limits(x: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson limits (lower, upper) of one proportion x/n (:func:`wilson_ci`), NaN when n is 0:
    for a row of a results table whose group can be empty, where :func:`wilson_ci` refuses n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    w = wilson_ci(x, n, confidence).iloc[0]
    return float(w["proportion_lower"]), float(w["proportion_upper"])


# --------------------------------------------------------------------------------------------
# counts and crude rates
# --------------------------------------------------------------------------------------------


def _byars_lower(x: np.ndarray, z: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        low = x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3
    return np.where(low < 0, np.nan, low)


def _byars_upper(x: np.ndarray, z: float) -> np.ndarray:
    x1 = x + 1
    return x1 * (1 - 1 / (9 * x1) + z / (3 * np.sqrt(x1))) ** 3


def _exact_lower(x: np.ndarray, confidence: float) -> np.ndarray:
    alpha = 1 - confidence
    with np.errstate(invalid="ignore"):
        low = _st.chi2.ppf(alpha / 2, 2 * x) / 2
    return np.where(x == 0, 0.0, low)


def _exact_upper(x: np.ndarray, confidence: float) -> np.ndarray:
    alpha = 1 - confidence
    return _st.chi2.ppf(1 - alpha / 2, 2 * x + 2) / 2


def byars_ci(x, confidence: float = 0.95) -> pd.DataFrame:
    """Confidence interval for a Poisson count by Byar's approximation.

    Parameters
    ----------
    x : observed counts (events), >= 0.
    confidence : two-sided level in (0, 1).

    Returns a DataFrame with columns ``count``, ``count_lower``, ``count_upper`` (counts), ``confidence`` and
    ``method`` ("Byars").

    Method: Breslow NE, Day NE (1987) *Statistical methods in cancer research* vol II, IARC,
    as PHEindicatormethods ``byars_lower`` / ``byars_upper``::

        lower = x (1 - 1/(9x) - z/(3 sqrt x))^3
        upper = (x+1) (1 - 1/(9(x+1)) + z/(3 sqrt(x+1)))^3

    As in the reference, the lower limit is NaN where the formula is undefined (x = 0) or
    negative (very small x). Byar's is only used by :func:`crude_rate` for x >= 10; for small
    counts use :func:`exact_poisson_ci`.
    """
    c = check_confidence(confidence)
    xa = _float_array("x", x)
    _check_nonneg("x", xa)
    z = z_value(c)
    return pd.DataFrame(
        {"count": xa, "count_lower": _byars_lower(xa, z), "count_upper": _byars_upper(xa, z), "confidence": c, "method": "Byars"}
    )


def exact_poisson_ci(x, confidence: float = 0.95) -> pd.DataFrame:
    """Exact (Garwood / chi-squared) confidence interval for a Poisson count.

    ``lower = qchisq(alpha/2, 2x) / 2`` (0 when x = 0) and ``upper = qchisq(1 - alpha/2, 2x + 2) / 2``,
    alpha = 1 - confidence (Armitage P, Berry G (2002) *Statistical methods in medical research*,
    4th edn; the formula PHEindicatormethods ``phe_rate`` uses for counts below 10).

    Returns a DataFrame with columns ``count``, ``count_lower``, ``count_upper`` (counts), ``confidence`` and
    ``method`` ("Exact").
    """
    c = check_confidence(confidence)
    xa = _float_array("x", x)
    _check_nonneg("x", xa)
    return pd.DataFrame(
        {"count": xa, "count_lower": _exact_lower(xa, c), "count_upper": _exact_upper(xa, c), "confidence": c, "method": "Exact"}
    )


def _count_ci(x: np.ndarray, confidence: float, exact_below: float = EXACT_BELOW):
    """Exact interval for x < exact_below, Byar's otherwise (PHEindicatormethods rule)."""
    z = z_value(confidence)
    small = x < exact_below
    lower = np.where(small, _exact_lower(x, confidence), _byars_lower(x, z))
    upper = np.where(small, _exact_upper(x, confidence), _byars_upper(x, z))
    method = np.where(np.isnan(x), None, np.where(small, "Exact", "Byars"))
    return lower, upper, method


def crude_rate(x, n, multiplier: float = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """Crude rate x / n * multiplier with its confidence interval.

    Parameters
    ----------
    x : event counts, >= 0.
    n : denominators (population or person-years), > 0.
    multiplier : rate per this many of the denominator (default per 1,000).
    confidence : two-sided level in (0, 1).

    Returns a DataFrame with columns ``count``, ``denominator``, ``rate``, ``rate_lower``, ``rate_upper``
    (per ``multiplier``), ``confidence`` and ``method`` ("Exact" or "Byars").

    Method: as PHEindicatormethods ``phe_rate`` (source checked: ``if_else(x < 10, qchisq(...),
    byars_...)``): the exact chi-squared interval (Armitage & Berry 2002) for counts below 10 and
    Byar's approximation (Breslow & Day 1987) for counts of 10 or more, divided by n.
    A zero count gives a rate of 0 with lower limit 0 and an exact upper limit.
    """
    c = check_confidence(confidence)
    xa, na = _broadcast(x=_float_array("x", x), n=_float_array("n", n))
    _check_nonneg("x", xa)
    _check_positive("n", na)
    lower, upper, method = _count_ci(xa, c)
    return pd.DataFrame(
        {
            "count": xa,
            "denominator": na,
            "rate": xa / na * multiplier,
            "rate_lower": lower / na * multiplier,
            "rate_upper": upper / na * multiplier,
            "confidence": c,
            "method": method,
        }
    )


# --------------------------------------------------------------------------------------------
# directly standardised rates
# --------------------------------------------------------------------------------------------


def _standard_series(standard, df: pd.DataFrame, age_band: str) -> pd.Series | str:
    """Resolve the ``standard`` argument of :func:`dsr` to a Series indexed by age band, or to
    the name of a column of ``df`` holding the standard population row by row."""
    if standard is None:
        e = esp2013()
        return pd.Series(e["population"].to_numpy(dtype=float), index=e["age_band"], name="standard")
    if isinstance(standard, str):
        _columns(df, "standard", standard)
        return standard
    if isinstance(standard, pd.DataFrame):
        require_columns(standard, ["age_band", "population"], "standard", "a standard population table as esp2013()")
        s = pd.Series(standard["population"].to_numpy(dtype=float), index=standard["age_band"].to_numpy())
    elif isinstance(standard, Mapping):
        s = pd.Series({k: float(v) for k, v in standard.items()})
    elif isinstance(standard, pd.Series):
        s = standard.astype(float)
    else:
        raise ValueError(
            "standard must be None (ESP2013), a column name, a Series or mapping age band -> "
            f"standard population, or a DataFrame like esp2013(); got {type(standard).__name__}"
        )
    if s.index.has_duplicates:
        raise ValueError(f"standard: duplicated age bands {_show(s.index[s.index.duplicated()].to_numpy())}")
    if (s < 0).any() or s.isna().any():
        raise ValueError(f"standard: populations must be >= 0 and not missing; got {_show(s.to_numpy())}")
    return s


def dsr(
    df: pd.DataFrame,
    count: str,
    population: str,
    age_band: str,
    standard=None,
    multiplier: float = 100_000,
    confidence: float = 0.95,
    by: str | Sequence[str] | None = None,
    min_count: float = DSR_MIN_COUNT,
    suppress_value: bool = True,
) -> pd.DataFrame:
    """Directly standardised rates with Dobson confidence intervals, one row per group.

    Parameters
    ----------
    df : tidy data, one row per group x age band.
    count : column of event counts per age band (>= 0; a missing count is treated as 0, as
        PHEindicatormethods ``calculate_dsr`` does with ``na.zero``).
    population : column of populations per age band (> 0, not missing).
    age_band : column of age-band labels matching the standard (``"0-4"`` ... ``"90+"`` for ESP2013).
    standard : None for the 2013 European Standard Population (:func:`esp2013`); a Series or
        mapping age band -> standard population; a DataFrame with ``age_band`` and ``population``
        columns; or the name of a column of ``df`` holding the standard population per row.
        With a Series/mapping/DataFrame, every group must have exactly one row for each band of
        the standard (fill absent bands with zero counts first); anything else is a ValueError.
    multiplier : rate per this many (default per 100,000).
    confidence : two-sided level in (0, 1).
    by : grouping column(s); None for a single DSR over all rows.
    min_count : Fingertips convention: where the group's total count is below this (default 10)
        the interval is not shown (NaN) and ``note`` says why.
    suppress_value : if True (default, as PHEindicatormethods and Fingertips) the DSR itself is
        also NaN below ``min_count``; set False to keep the point estimate and blank only the
        interval.

    Returns one row per group: the ``by`` columns, ``total_count``, ``total_pop``, ``dsr``,
    ``dsr_lower``, ``dsr_upper`` (per ``multiplier``), ``confidence``, ``method`` and ``note``
    ("" or e.g. "dsr and interval not shown: total count < 10").

    Method: DSR = sum(w_i x_i / n_i) / sum(w_i) with standard weights w_i. Interval by Dobson AJ
    et al. (1991) Stat Med 10:457-462, as PHEindicatormethods ``calculate_dsr``::

        var = sum(x_i w_i^2 / n_i^2) / (sum w_i)^2,   O = sum x_i
        limit = DSR + sqrt(var / O) (O_limit - O) * multiplier

    with O_lower/O_upper from Byar's approximation (Breslow & Day 1987).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame; got {type(df).__name__}")
    c = check_confidence(confidence)
    _columns(df, "count", count)
    _columns(df, "population", population)
    _columns(df, "age_band", age_band)
    by_cols = _columns(df, "by", by)
    if multiplier <= 0:
        raise ValueError(f"multiplier must be > 0; got {multiplier!r}")

    x = _float_array(f"column {count!r}", df[count])
    n = _float_array(f"column {population!r}", df[population])
    _check_nonneg(f"column {count!r}", x[~np.isnan(x)])
    if np.isnan(n).any():
        raise ValueError(f"column {population!r} has missing values in {int(np.isnan(n).sum())} row(s)")
    _check_positive(f"column {population!r}", n)

    std = _standard_series(standard, df, age_band)
    work = df[by_cols + [age_band]].copy()
    work["_x"] = np.nan_to_num(x, nan=0.0)
    work["_n"] = n
    if isinstance(std, str):
        w = _float_array(f"column {std!r}", df[std])
        if np.isnan(w).any() or (w < 0).any():
            raise ValueError(f"column {std!r} (standard population) must be >= 0 and not missing")
        work["_w"] = w
    else:
        bands = work[age_band].astype(object)
        unknown = sorted(set(bands) - set(std.index), key=str)
        if unknown:
            raise ValueError(
                f"column {age_band!r} has age bands not in the standard: {unknown[:8]}; "
                f"standard bands are {list(std.index)}"
            )
        work["_w"] = bands.map(std).to_numpy(dtype=float)
        groups = work.groupby(by_cols, sort=False, dropna=False) if by_cols else [((), work)]
        expected = set(std.index)
        for key, g in groups:
            seen = list(g[age_band])
            dup = sorted({b for b in seen if seen.count(b) > 1}, key=str)
            missing = sorted(expected - set(seen), key=str)
            if dup or missing:
                raise ValueError(
                    f"group {_key_label(key)}: every age band of the standard must appear exactly once; "
                    f"missing {missing[:8]}, duplicated {dup[:8]}"
                )

    work["_wr"] = work["_x"] * work["_w"] / work["_n"]
    work["_sq"] = work["_x"] * (work["_w"] / work["_n"]) ** 2
    if by_cols:
        agg = work.groupby(by_cols, sort=True, dropna=False)[["_x", "_n", "_w", "_wr", "_sq"]].sum().reset_index()
    else:
        agg = work[["_x", "_n", "_w", "_wr", "_sq"]].sum().to_frame().T
    O = agg["_x"].to_numpy(dtype=float)
    wsum = agg["_w"].to_numpy(dtype=float)
    value = agg["_wr"].to_numpy(dtype=float) / wsum * multiplier
    var = agg["_sq"].to_numpy(dtype=float) / wsum**2
    z = z_value(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(var / O) * multiplier
        lower = value + scale * (_byars_lower(O, z) - O)
        upper = value + scale * (_byars_upper(O, z) - O)
    small = O < min_count
    note = np.where(
        small,
        f"{'dsr and interval' if suppress_value else 'interval'} not shown: total count < {min_count:g}",
        "",
    )
    out = agg[by_cols].copy() if by_cols else pd.DataFrame(index=range(len(agg)))
    out["total_count"] = O
    out["total_pop"] = agg["_n"].to_numpy(dtype=float)
    out["dsr"] = np.where(small & suppress_value, np.nan, value)
    out["dsr_lower"] = np.where(small, np.nan, lower)
    out["dsr_upper"] = np.where(small, np.nan, upper)
    out["confidence"] = c
    out["method"] = "Dobson"
    out["note"] = note
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# indirect standardisation
# --------------------------------------------------------------------------------------------


def expected_counts(population_by_stratum, reference_rates_by_stratum):
    """Expected events: sum over strata of population x reference rate.

    Parameters
    ----------
    population_by_stratum : 1-D array/Series of populations (or person-years) per stratum, or a
        DataFrame with one row per unit (e.g. ward) and one column per stratum.
    reference_rates_by_stratum : reference rates **per person** (events / population, not per
        1,000) per stratum; a Series is aligned on the stratum labels (index for a 1-D input,
        columns for a DataFrame), an array by position.

    Returns a float (1-D input) or a Series indexed like the DataFrame's rows, named ``expected``.
    Populations must be >= 0 and rates >= 0; strata missing from either side are a ValueError.
    This is the ``expected`` of PHEindicatormethods ``calculate_ISRatio`` (x_ref / n_ref * n).
    """
    rates = reference_rates_by_stratum
    if isinstance(population_by_stratum, pd.DataFrame):
        pop = population_by_stratum
        if isinstance(rates, pd.Series):
            missing = list(pop.columns.difference(rates.index, sort=False))   # strata must match both ways
            extra = list(rates.index.difference(pop.columns, sort=False))
            if missing or extra:
                raise ValueError(
                    f"strata differ: population columns without a rate {missing[:8]}, rates without a column {extra[:8]}"
                )
            r = rates.reindex(pop.columns).to_numpy(dtype=float)
        else:
            r = _float_array("reference_rates_by_stratum", rates)
            if r.size != pop.shape[1]:
                raise ValueError(
                    f"reference_rates_by_stratum has {r.size} values but population_by_stratum has {pop.shape[1]} strata"
                )
        p = pop.to_numpy(dtype=float)
        _check_nonneg("population_by_stratum", p[~np.isnan(p)])
        _check_nonneg("reference_rates_by_stratum", r[~np.isnan(r)])
        return pd.Series(p @ r, index=pop.index, name="expected")
    if isinstance(population_by_stratum, pd.Series) and isinstance(rates, pd.Series):
        pop_s = population_by_stratum
        if set(pop_s.index) != set(rates.index) or pop_s.index.has_duplicates:
            raise ValueError(
                "population and reference-rate strata differ or repeat: "
                f"{sorted(map(str, set(pop_s.index) ^ set(rates.index)))[:8]}"
            )
        p = pop_s.to_numpy(dtype=float)
        r = rates.reindex(pop_s.index).to_numpy(dtype=float)
    else:
        p = _float_array("population_by_stratum", population_by_stratum)
        r = _float_array("reference_rates_by_stratum", rates)
        if p.shape != r.shape:
            raise ValueError(
                f"population_by_stratum ({p.size} strata) and reference_rates_by_stratum ({r.size}) differ in length"
            )
    _check_nonneg("population_by_stratum", p[~np.isnan(p)])
    _check_nonneg("reference_rates_by_stratum", r[~np.isnan(r)])
    return float(np.sum(p * r))


def indirectly_standardised_ratio(observed, expected, multiplier: float = 100, confidence: float = 0.95) -> pd.DataFrame:
    """Indirectly standardised ratio (e.g. SMR, standardised referral ratio) O / E x multiplier.

    Parameters
    ----------
    observed : observed counts O (>= 0).
    expected : expected counts E (> 0), e.g. from :func:`expected_counts`.
    multiplier : 100 (default) expresses the ratio with 100 = as expected; 1 gives a plain ratio.
    confidence : two-sided level in (0, 1).

    Returns a DataFrame with columns ``observed``, ``expected``, ``ratio``, ``ratio_lower``, ``ratio_upper``
    (x multiplier), ``confidence`` and ``method``.

    Method: PHEindicatormethods ``calculate_ISRatio``: the interval of the observed count (exact
    chi-squared below 10, Byar's from 10; see :func:`crude_rate`) divided by E, treating E as
    fixed.
    """
    c = check_confidence(confidence)
    o, e = _broadcast(observed=_float_array("observed", observed), expected=_float_array("expected", expected))
    _check_nonneg("observed", o)
    _check_positive("expected", e)
    lower, upper, method = _count_ci(o, c)
    return pd.DataFrame(
        {
            "observed": o,
            "expected": e,
            "ratio": o / e * multiplier,
            "ratio_lower": lower / e * multiplier,
            "ratio_upper": upper / e * multiplier,
            "confidence": c,
            "method": method,
        }
    )


# --------------------------------------------------------------------------------------------
# ratios of two rates or proportions
# --------------------------------------------------------------------------------------------


def rate_ratio(x1, n1, x2, n2, confidence: float = 0.95) -> pd.DataFrame:
    """Ratio of two rates (x1/n1) / (x2/n2) with a log-normal (Wald on the log scale) interval.

    ``SE(log RR) = sqrt(1/x1 + 1/x2)`` (Poisson counts; Rothman KJ, Greenland S, *Modern
    Epidemiology*; the person-time analogue of Katz et al. (1978) Biometrics 34:469-474), and the
    limits are ``RR exp(-/+ z SE)``. Group 2 is the comparator (e.g. White British, or the
    borough average). Where either count is 0 the ratio is 0 or infinite and the interval is NaN.

    Returns a DataFrame with columns ``x1``, ``n1``, ``x2``, ``n2``, ``rate_ratio``, ``rate_ratio_lower``,
    ``rate_ratio_upper``, ``confidence`` and ``method`` ("log-normal").
    """
    c = check_confidence(confidence)
    a, na, b, nb = _broadcast(
        x1=_float_array("x1", x1), n1=_float_array("n1", n1), x2=_float_array("x2", x2), n2=_float_array("n2", n2)
    )
    for name, arr in (("x1", a), ("x2", b)):
        _check_nonneg(name, arr)
    for name, arr in (("n1", na), ("n2", nb)):
        _check_positive(name, arr)
    z = z_value(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        rr = (a / na) / (b / nb)
        se = np.sqrt(1 / a + 1 / b)
        ok = (a > 0) & (b > 0)
        lower = np.where(ok, rr * np.exp(-z * se), np.nan)
        upper = np.where(ok, rr * np.exp(z * se), np.nan)
    return pd.DataFrame(
        {"x1": a, "n1": na, "x2": b, "n2": nb, "rate_ratio": rr, "rate_ratio_lower": lower, "rate_ratio_upper": upper,
         "confidence": c, "method": "log-normal"}
    )


def proportion_ratio(x1, n1, x2, n2, confidence: float = 0.95) -> pd.DataFrame:
    """Ratio of two proportions (risk ratio) (x1/n1) / (x2/n2) with the Katz log interval.

    ``SE(log RR) = sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2)`` (Katz D et al. (1978) Biometrics
    34:469-474; Altman DG et al. (2000) *Statistics with confidence*). Requires 0 <= x <= n and
    n > 0; where either numerator is 0 the interval is NaN.

    Returns a DataFrame with columns ``x1``, ``n1``, ``x2``, ``n2``, ``proportion_ratio``,
    ``proportion_ratio_lower``, ``proportion_ratio_upper``, ``confidence`` and ``method`` ("Katz log").
    """
    c = check_confidence(confidence)
    a, na, b, nb = _broadcast(
        x1=_float_array("x1", x1), n1=_float_array("n1", n1), x2=_float_array("x2", x2), n2=_float_array("n2", n2)
    )
    for name, arr in (("x1", a), ("x2", b)):
        _check_nonneg(name, arr)
    for name, arr in (("n1", na), ("n2", nb)):
        _check_positive(name, arr)
    for xn, nn, xa_, na_ in (("x1", "n1", a, na), ("x2", "n2", b, nb)):
        if (xa_ > na_).any():
            raise ValueError(f"{xn} must be <= {nn}; offending {xn} values: {_show(xa_[xa_ > na_])}")
    z = z_value(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        rr = (a / na) / (b / nb)
        se = np.sqrt(1 / a - 1 / na + 1 / b - 1 / nb)
        ok = (a > 0) & (b > 0)
        lower = np.where(ok, rr * np.exp(-z * se), np.nan)
        upper = np.where(ok, rr * np.exp(z * se), np.nan)
    return pd.DataFrame(
        {"x1": a, "n1": na, "x2": b, "n2": nb, "proportion_ratio": rr, "proportion_ratio_lower": lower, "proportion_ratio_upper": upper,
         "confidence": c, "method": "Katz log"}
    )


# --------------------------------------------------------------------------------------------
# slope and relative index of inequality
# --------------------------------------------------------------------------------------------

_VALUE_TYPES = ("normal", "rate", "proportion")


def _to_scale(v: np.ndarray, value_type: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if value_type == "rate":
            return np.log(v)
        if value_type == "proportion":
            return np.log(v / (1 - v))
    return v


def _from_scale(v: np.ndarray, value_type: str) -> np.ndarray:
    if value_type == "rate":
        return np.exp(v)
    if value_type == "proportion":
        return 1 / (1 + np.exp(-v))
    return v


def _sii_group(
    v_t: np.ndarray,
    se: np.ndarray,
    pop: np.ndarray,
    value_type: str,
    transform: bool,
    multiplier: float,
    levels: list[float],
    reps: int,
    rng: np.random.Generator,
) -> list[dict]:
    a = pop / pop.sum()
    b = np.cumsum(a) - a / 2  # midpoint of each quantile's cumulative population share
    sqrt_a = np.sqrt(a)
    X = np.column_stack([sqrt_a, b * sqrt_a])  # intercept and slope terms, weighted
    proj = np.linalg.solve(X.T @ X, X.T)  # (X'X)^-1 X' : 2 x k

    # point estimate (weighted least squares, as stats::lm(yvals ~ sqrt_a + b_sqrt_a - 1))
    y = v_t if transform else _from_scale(v_t, value_type)
    beta0, beta1 = proj @ (sqrt_a * y)

    # Monte Carlo: draw each quantile's value from N(value, se) on the transformed scale
    draws = rng.normal(loc=v_t, scale=se, size=(reps, v_t.size))
    if not transform:
        draws = _from_scale(draws, value_type)
    params = (draws * sqrt_a) @ proj.T  # reps x 2
    b0s, b1s = params[:, 0], params[:, 1]

    if transform:
        x1 = beta0 + beta1
        f0, f1 = _from_scale(np.array(beta0), value_type), _from_scale(np.array(x1), value_type)
        sii = float((f1 - f0) * multiplier)
        rii = float(f1 / f0)
        xhalf = beta0 + beta1 / 2
        sii_sorted = np.sort(b1s)
    else:
        sii = float(multiplier * beta1)
        rii = float((beta0 + beta1) / beta0)
        sii_sorted = np.sort(b1s * multiplier)
        with np.errstate(divide="ignore", invalid="ignore"):
            rii_sims = (b0s + b1s) / b0s
        rii_sorted = np.sort(1 / rii_sims if multiplier < 0 else rii_sims)
    if multiplier < 0:
        rii = 1 / rii

    rows = []
    for level in levels:
        cv = level + (1 - level) / 2
        # 1-based positions as in PHEindicatormethods SimulationFunc (R's round: half to even)
        pos_lo = max(int(np.round(reps * (1 - cv))), 1)
        pos_hi = min(int(np.round(reps * cv)), reps)
        s_lo, s_hi = sii_sorted[pos_lo - 1], sii_sorted[pos_hi - 1]
        if transform:
            ends = []
            for s in (s_lo, s_hi):
                at0 = _from_scale(np.array(xhalf - s / 2), value_type)
                at1 = _from_scale(np.array(xhalf + s / 2), value_type)
                ends.append(((at1 - at0) * multiplier, at1 / at0))
            (sl, rl), (su, ru) = ends
            if multiplier < 0:
                sl, su = su, sl
                rl, ru = 1 / ru, 1 / rl
            sii_lo, sii_hi, rii_lo, rii_hi = float(sl), float(su), float(rl), float(ru)
        else:
            sii_lo, sii_hi = float(s_lo), float(s_hi)
            rii_lo, rii_hi = float(rii_sorted[pos_lo - 1]), float(rii_sorted[pos_hi - 1])
        rows.append(
            {"confidence": level, "sii": sii, "sii_lower": sii_lo, "sii_upper": sii_hi,
             "rii": rii, "rii_lower": rii_lo, "rii_upper": rii_hi}
        )
    return rows


def sii_rii(
    df: pd.DataFrame,
    value: str,
    lower: str | None,
    upper: str | None,
    population: str,
    quantile: str,
    confidence: float | Sequence[float] = 0.95,
    reps: int = 100_000,
    *,
    seed: int | np.random.Generator,
    by: str | Sequence[str] | None = None,
    value_type: str = "normal",
    transform: bool = False,
    se: str | None = None,
    multiplier: float = 1.0,
    limits_confidence: float = 0.95,
) -> pd.DataFrame:
    """Slope index of inequality (SII) and relative index of inequality (RII) with Monte Carlo
    confidence intervals, following PHEindicatormethods ``phe_sii`` (v2.0).

    Parameters
    ----------
    df : one row per group x quantile (e.g. IMD decile or quintile).
    value : column of the indicator value per quantile (a proportion must be in (0, 1), not %).
    lower, upper : columns of the value's confidence limits at level ``limits_confidence`` (95% in the
        reference), used to derive its standard error as (upper - lower) / (2 z) on the transformed
        scale (z = 1.96 at 95%); may be None if ``se`` is given.
    population : column of quantile populations (> 0).
    quantile : column of quantile labels, ordered so that sorting ascending runs from most to least
        deprived (e.g. IMD decile 1 = most deprived). The number of quantiles must be 5-100 and
        every group must have the same set, one row each.
    confidence : level, or a sequence of levels, for the intervals.
    reps : Monte Carlo repetitions (reference default 100,000; at least 1,000).
    seed : int or numpy Generator (required: results are random).
    by : grouping column(s); one SII per group.
    value_type : "normal" (e.g. life expectancy), "rate" (log scale for sampling) or "proportion"
        (logit scale for sampling).
    transform : for rates/proportions, fit the regression on the log/logit scale and convert the
        SII back to the original units (``transform = TRUE`` in the reference).
    se : column of standard errors (on the log/logit scale for rates/proportions) used instead of
        ``lower``/``upper``.
    multiplier : scales the SII (e.g. -1 to flip polarity, 100 for percentages); a negative
        multiplier inverts the RII, as in the reference.
    limits_confidence : the level of ``lower``/``upper`` (default 0.95, the reference's assumption).

    Returns one row per group x confidence level: the ``by`` columns, ``confidence``, ``sii``,
    ``sii_lower``, ``sii_upper``, ``rii``, ``rii_lower``, ``rii_upper``, ``reps``.

    Method (Low A, Low A (2004) J Public Health 26:388-395; PHE/OHID technical guidance):
    quantiles are ranked by the midpoint of their cumulative population share b, and
    ``sqrt(a) y = beta0 sqrt(a) + beta1 b sqrt(a)`` is fitted by least squares (a = population
    share), i.e. weighted least squares with weights a. SII = beta1 (fitted difference between
    rank 1 and rank 0) and RII = (beta0 + beta1) / beta0. Intervals: each quantile value is drawn
    ``reps`` times from a normal distribution with its mean and standard error (on the log/logit
    scale for rates/proportions), the regression is refitted to every draw and the
    ``round(reps x alpha/2)``-th and ``round(reps x (1 - alpha/2))``-th ordered SIIs (RIIs) are
    the limits, exactly as ``SimulationFunc``. The draws differ from R's, so limits agree with
    the reference only to Monte Carlo error (about 0.02 standard errors of the SII at 100,000
    repetitions).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame; got {type(df).__name__}")
    if value_type not in _VALUE_TYPES:
        raise ValueError(f"value_type must be one of {_VALUE_TYPES}; got {value_type!r}")
    if transform and value_type == "normal":
        raise ValueError("transform=True applies only to value_type 'rate' or 'proportion'")
    levels = [confidence] if np.isscalar(confidence) else list(confidence)
    if not levels:
        raise ValueError("confidence must be a level or a non-empty sequence of levels")
    levels = [check_confidence(c) for c in levels]
    if int(reps) != reps or reps < 1000:
        raise ValueError(f"reps must be an integer >= 1000; got {reps!r}")
    if multiplier == 0:
        raise ValueError("multiplier must not be 0")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    by_cols = _columns(df, "by", by)
    _columns(df, "value", value)
    _columns(df, "population", population)
    _columns(df, "quantile", quantile)
    if se is not None:
        _columns(df, "se", se)
    elif lower is None or upper is None:
        raise ValueError("sii_rii needs either both lower and upper (95% limits) or se")
    else:
        _columns(df, "lower", lower)
        _columns(df, "upper", upper)

    v = _float_array(f"column {value!r}", df[value])
    pop = _float_array(f"column {population!r}", df[population])
    if np.isnan(pop).any() or (pop <= 0).any():
        raise ValueError(f"column {population!r} must be > 0 and not missing; offending: {_show(pop[~(pop > 0)])}")
    if np.isnan(v).any():
        raise ValueError(f"column {value!r} has missing values")
    if value_type == "rate" and (v <= 0).any():
        raise ValueError(f"column {value!r}: rates must be > 0 for value_type='rate'; offending {_show(v[v <= 0])}")
    if value_type == "proportion" and ((v <= 0) | (v >= 1)).any():
        raise ValueError(
            f"column {value!r}: proportions must be strictly between 0 and 1; offending {_show(v[(v <= 0) | (v >= 1)])}"
        )
    v_t = _to_scale(v, value_type)
    if se is not None:
        s = _float_array(f"column {se!r}", df[se])
        if np.isnan(s).any() or (s < 0).any():
            raise ValueError(f"column {se!r} must be >= 0 and not missing")
    else:
        lo = _float_array(f"column {lower!r}", df[lower])
        hi = _float_array(f"column {upper!r}", df[upper])
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError(f"columns {lower!r}/{upper!r} have missing confidence limits")
        if value_type == "rate" and ((lo <= 0) | (hi <= 0)).any():
            raise ValueError(f"columns {lower!r}/{upper!r}: limits must be > 0 for value_type='rate'")
        if value_type == "proportion" and ((lo <= 0) | (lo >= 1) | (hi <= 0) | (hi >= 1)).any():
            raise ValueError(f"columns {lower!r}/{upper!r}: limits must be strictly between 0 and 1 for proportions")
        s = (_to_scale(hi, value_type) - _to_scale(lo, value_type)) / z_value(limits_confidence, "limits_confidence") / 2
        if (s < 0).any():
            raise ValueError(f"column {upper!r} is below column {lower!r} in some rows")

    work = df[by_cols + [quantile]].copy()
    work["_v"], work["_s"], work["_p"] = v_t, s, pop
    all_q = sorted(pd.unique(work[quantile]).tolist())
    if not 5 <= len(all_q) <= 100:
        raise ValueError(f"column {quantile!r}: the number of quantiles must be 5 to 100; got {len(all_q)}")

    out = []
    groups = work.groupby(by_cols, sort=True, dropna=False) if by_cols else [((), work)]
    for key, g in groups:
        g = g.sort_values(quantile)
        qs = g[quantile].tolist()
        if qs != all_q:
            raise ValueError(
                f"group {_key_label(key)}: needs exactly one row for each quantile {all_q[:10]}; has {qs[:10]}"
            )
        rows = _sii_group(
            g["_v"].to_numpy(), g["_s"].to_numpy(), g["_p"].to_numpy(), value_type, transform,
            float(multiplier), levels, int(reps), rng,
        )
        keyt = key if isinstance(key, tuple) else (key,)
        for r in rows:
            out.append({**dict(zip(by_cols, keyt)), **r, "reps": int(reps)})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# funnel plots
# --------------------------------------------------------------------------------------------


def _check_limits(limits) -> list[float]:
    levels = [limits] if np.isscalar(limits) else list(limits)
    if not levels:
        raise ValueError("limits must be a level or a non-empty sequence of levels, e.g. (0.95, 0.998)")
    return [check_confidence(x, "limits") for x in levels]


def _wilson_funnel(n: np.ndarray, target: np.ndarray, level: float, side: str) -> np.ndarray:
    """Proportion at which the Wilson limit at denominator n touches ``target`` (closed form of
    PHEindicatormethods ``sigma_adjustment``)."""
    z2 = z_value(level, "limits") ** 2
    first = target * (n / z2 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        adj = np.sqrt(
            (-8 * target * (n / z2 + 1)) ** 2
            - 64 * (1 / z2 + 1 / n) * target * (n * (target * (n / z2 + 2) - 1) + z2 * (target - 1))
        )
        last = 1 / z2 + 1 / n
        out = (first - adj / 8) / last if side == "low" else (first + adj / 8) / last
        return out / n


def funnel_limits_proportion(denominators, target: float, limits=(0.95, 0.998), multiplier: float = 1.0) -> pd.DataFrame:
    """Funnel-plot control limits for a proportion at each denominator.

    Parameters
    ----------
    denominators : sample sizes (> 0) at which to draw the limits (the x axis).
    target : the comparator proportion in [0, 1] (usually the overall sum(x) / sum(n)).
    limits : two-sided levels; Fingertips uses 0.95 (about 2 SD) and 0.998 (about 3 SD).
    multiplier : 100 for percentages.

    Returns a DataFrame with ``denominator``, ``target`` and ``limit_<L>_lower`` / ``limit_<L>_upper`` per
    level (e.g. ``limit_95_lower``, ``limit_99.8_upper``), clipped to [0, multiplier].

    Method: Wilson-score limits: the proportion whose Wilson interval at n just reaches the target
    (Fingertips technical guidance; closed form ``sigma_adjustment`` in PHEindicatormethods
    ``calculate_funnel_limits``, statistic = "proportion").
    """
    lv = _check_limits(limits)
    n = _float_array("denominators", denominators)
    _check_positive("denominators", n)
    t = float(target)
    if not 0 <= t <= 1:
        raise ValueError(f"target must be a proportion in [0, 1]; got {target!r}")
    tt = np.full_like(n, t)
    out = pd.DataFrame({"denominator": n, "target": t * multiplier})
    for level in lv:
        out[f"limit_{_pct(level)}_lower"] = np.maximum(_wilson_funnel(n, tt, level, "low"), 0) * multiplier
        out[f"limit_{_pct(level)}_upper"] = np.minimum(_wilson_funnel(n, tt, level, "high"), 1) * multiplier
    return out


def _solve_increasing(fun, target: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int = 200) -> np.ndarray:
    """Vectorised bisection for fun(o) = target with fun increasing on [lo, hi]."""
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    # widen hi until it brackets the root
    for _ in range(60):
        short = fun(hi) < target
        if not short.any():
            break
        hi = np.where(short, hi * 2 + 10, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        below = fun(mid) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= 1e-12 * np.maximum(1.0, hi)):
            break
    return (lo + hi) / 2


def _poisson_ratio_limits(expected: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper O/E limits at expected count E for an exact Poisson funnel.

    The observed count O (treated as continuous) on the lower limit solves
    ``qchisq(1 - alpha/2, 2O + 2) / 2 = E`` (E is the exact upper confidence limit of O); on the
    upper limit it solves ``qchisq(alpha/2, 2O) / 2 = E``. At whole O these are exactly the points
    PHEindicatormethods ``poisson_funnel`` finds by bisection.
    """
    alpha = 1 - level
    e = expected
    # lower: exact upper CL of O equals E; below E0 = upper CL of O=0 no count is low
    e0 = _st.chi2.ppf(1 - alpha / 2, 2) / 2
    start = np.zeros_like(e)
    o_low = _solve_increasing(lambda o: _st.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2, e, start, e + 10 * np.sqrt(e) + 10)
    o_low = np.where(e <= e0, 0.0, o_low)
    # upper: exact lower CL of O equals E (O > 0 always)
    o_up = _solve_increasing(
        lambda o: _st.chi2.ppf(alpha / 2, np.maximum(2 * o, 1e-300)) / 2, e, np.full_like(e, 1e-12), e + 10 * np.sqrt(e) + 10
    )
    return o_low / e, o_up / e


def funnel_limits_ratio(expected, limits=(0.95, 0.998), multiplier: float = 1.0) -> pd.DataFrame:
    """Funnel-plot control limits for an indirectly standardised ratio O/E at each expected count.

    Parameters
    ----------
    expected : expected counts E (> 0) at which to draw the limits (the x axis).
    limits : two-sided levels (Fingertips: 0.95 and 0.998).
    multiplier : 1 for a ratio, 100 for an SMR-style ratio with 100 = as expected.

    Returns a DataFrame with ``expected``, ``target`` (1 x multiplier) and ``limit_<L>_lower`` /
    ``limit_<L>_upper`` per level.

    Method: exact Poisson limits around a ratio of 1 (Fingertips technical guidance; PHEindicator-
    methods ``calculate_funnel_limits``, statistic = "ratio", ratio_type = "isr"). The reference
    tabulates the limits at whole observed counts O (x axis = O, E = the exact confidence limit of
    O); here they are given as a smooth function of E by solving for a continuous O, so they pass
    through every reference point. Below E = -ln(alpha/2) (3.69 for 95%) no count can be low and
    the lower limit is 0.
    """
    lv = _check_limits(limits)
    e = _float_array("expected", expected)
    _check_positive("expected", e)
    out = pd.DataFrame({"expected": e, "target": 1.0 * multiplier})
    for level in lv:
        lo, hi = _poisson_ratio_limits(e, level)
        out[f"limit_{_pct(level)}_lower"] = lo * multiplier
        out[f"limit_{_pct(level)}_upper"] = hi * multiplier
    return out


def funnel_limits_rate(denominators, target_rate: float, multiplier: float = 100_000, limits=(0.95, 0.998)) -> pd.DataFrame:
    """Funnel-plot control limits for a crude (or directly standardised) rate at each denominator.

    Parameters
    ----------
    denominators : populations / person-years (> 0) covering the whole period plotted (for a
        3-year rate pass the 3-year person-years).
    target_rate : comparator rate per ``multiplier`` (> 0), usually sum(x) / sum(n) x multiplier.
    multiplier : rate per this many (default 100,000).
    limits : two-sided levels (Fingertips: 0.95 and 0.998).

    Returns a DataFrame with ``denominator``, ``target`` and ``limit_<L>_lower`` / ``limit_<L>_upper``
    (per ``multiplier``).

    Method: exact Poisson limits for the count expected at the target rate,
    E = target_rate / multiplier x denominator, i.e. :func:`funnel_limits_ratio` x target rate
    (PHEindicatormethods ``calculate_funnel_limits``, statistic = "rate").
    """
    lv = _check_limits(limits)
    n = _float_array("denominators", denominators)
    _check_positive("denominators", n)
    if not (np.isfinite(target_rate) and target_rate > 0):
        raise ValueError(f"target_rate must be > 0; got {target_rate!r}")
    ratio = funnel_limits_ratio(target_rate / multiplier * n, limits=lv)
    out = pd.DataFrame({"denominator": n, "target": float(target_rate)})
    for level in lv:
        for side in ("lower", "upper"):
            col = f"limit_{_pct(level)}_{side}"
            out[col] = ratio[col].to_numpy() * target_rate
    return out


#: labels returned by :func:`funnel_flag` (with the default limits 0.95 and 0.998)
FUNNEL_LABELS = ("within limits", "above 95% limit", "above 99.8% limit", "below 95% limit", "below 99.8% limit")


def funnel_flag(
    numerator,
    denominator,
    statistic: str = "proportion",
    target: float | None = None,
    limits=(0.95, 0.998),
) -> pd.Series:
    """Classify each point of a funnel plot against its control limits.

    Parameters
    ----------
    numerator : counts (>= 0): people with the attribute, observed events, or events.
    denominator : for "proportion" the sample size (>= numerator, > 0); for "ratio" the expected
        count (> 0); for "rate" the population or person-years (> 0).
    statistic : "proportion", "ratio" (indirectly standardised, O/E) or "rate" (crude rate).
    target : comparator; default sum(numerator)/sum(denominator) for proportions and rates, 1 for
        ratios. For rates give it per person (not per 100,000).
    limits : the inner and outer two-sided levels, default (0.95, 0.998).

    Returns a Series ``funnel_flag`` of labels: "within limits", "above 95% limit" (outside 95%
    but within 99.8%), "above 99.8% limit", "below 95% limit", "below 99.8% limit" (the numbers
    follow ``limits``). NaN inputs give None.

    Method: as PHEindicatormethods ``assign_funnel_significance``: a proportion is compared with
    the Wilson funnel limits at its denominator (:func:`funnel_limits_proportion`); a ratio or rate
    is flagged when the interval of its count (exact below 10, Byar's from 10, as
    :func:`indirectly_standardised_ratio`) excludes the target. The reference labels "High (0.001)",
    "High (0.025)", "Low (0.001)", "Low (0.025)", "Not significant" map to above 99.8%, above 95%,
    below 99.8%, below 95% and within.
    """
    if statistic not in ("proportion", "ratio", "rate"):
        raise ValueError(f"statistic must be 'proportion', 'ratio' or 'rate'; got {statistic!r}")
    lv = _check_limits(limits)
    if len(lv) != 2 or not lv[0] < lv[1]:
        raise ValueError(f"limits must be two increasing levels (inner, outer), e.g. (0.95, 0.998); got {limits!r}")
    inner, outer = lv
    x, n = _broadcast(numerator=_float_array("numerator", numerator), denominator=_float_array("denominator", denominator))
    _check_nonneg("numerator", x[~np.isnan(x)])
    _check_positive("denominator", n[~np.isnan(n)])
    ok = ~(np.isnan(x) | np.isnan(n))
    if statistic == "proportion":
        if (x[ok] > n[ok]).any():
            raise ValueError(f"numerator must be <= denominator for proportions; offending numerators {_show(x[ok][x[ok] > n[ok]])}")
        t = float(np.sum(x[ok]) / np.sum(n[ok])) if target is None else float(target)
        if not 0 <= t <= 1:
            raise ValueError(f"target must be a proportion in [0, 1]; got {target!r}")
        p = x / n
        tt = np.full_like(n, t)
        lo_out, lo_in = _wilson_funnel(n, tt, outer, "low"), _wilson_funnel(n, tt, inner, "low")
        hi_out, hi_in = _wilson_funnel(n, tt, outer, "high"), _wilson_funnel(n, tt, inner, "high")
        below_out, below_in = p < lo_out, p < lo_in
        above_out, above_in = p > hi_out, p > hi_in
    else:
        if statistic == "ratio":
            t = 1.0 if target is None else float(target)
            e = n * t
        else:
            t = float(np.sum(x[ok]) / np.sum(n[ok])) if target is None else float(target)
            e = n * t
        if not t > 0:
            raise ValueError(f"target must be > 0 for {statistic}s; got {t!r}")
        xs = np.where(ok, x, 0.0)
        lo_out, hi_out, _ = _count_ci(xs, outer)
        lo_in, hi_in, _ = _count_ci(xs, inner)
        with np.errstate(invalid="ignore"):
            above_out, above_in = lo_out > e, lo_in > e
            below_out, below_in = hi_out < e, hi_in < e
    label = np.select(
        [below_out, below_in, above_out, above_in],
        [f"below {_pct(outer)}% limit", f"below {_pct(inner)}% limit", f"above {_pct(outer)}% limit", f"above {_pct(inner)}% limit"],
        default="within limits",
    ).astype(object)
    label[~ok] = None
    return pd.Series(label, name="funnel_flag", dtype=object)


# --------------------------------------------------------------------------------------------
# index of disparity
# --------------------------------------------------------------------------------------------


def index_of_disparity(rates, reference: float | str | None = None, populations=None, weighted: bool = False) -> float:
    """Index of disparity (ID): the mean absolute deviation of group rates from a reference rate,
    as a percentage of the reference rate.

    ``ID = (sum_j |r_j - R| / J) / R x 100`` over the J groups (Pearcy JN, Keppel KG (2002)
    "A summary measure of health disparity", Public Health Reports 117:273-280; Keppel K et al.
    (2005) *Methodological issues in measuring health disparities*, Vital Health Stat 2(141)).

    Parameters
    ----------
    rates : group rates r_j (>= 0; any consistent unit).
    reference : the reference rate R. A number; "min" or "max" for the best group rate (Keppel et
        al. 2005 recommend the most favourable group rate: "min" when low is good); or None for the
        total-population rate, which Pearcy & Keppel (2002) use: the population-weighted mean of
        ``rates`` when ``populations`` is given, otherwise (a documented fallback) their unweighted
        mean.
    populations : group populations (> 0), needed for reference=None as the total rate and for
        ``weighted``.
    weighted : if True, a population-weighted variant, ``sum_j p_j |r_j - R| / R x 100`` with p_j
        the population shares. Pearcy & Keppel's ID is unweighted; this variant follows the
        discussion of population weighting in Harper S et al. (2008) Am J Epidemiol 167:889-899
        and is not an NCHS-published index.

    Returns the ID in percent (float). Groups must number at least 2 and R must be > 0.
    """
    r = _float_array("rates", rates)
    if r.size < 2:
        raise ValueError(f"rates needs at least 2 groups; got {r.size}")
    if np.isnan(r).any():
        raise ValueError("rates has missing values")
    _check_nonneg("rates", r)
    w = None
    if populations is not None:
        w = _float_array("populations", populations)
        if w.shape != r.shape:
            raise ValueError(f"populations ({w.size}) and rates ({r.size}) differ in length")
        if np.isnan(w).any():
            raise ValueError("populations has missing values")
        _check_positive("populations", w)
        w = w / w.sum()
    if weighted and w is None:
        raise ValueError("weighted=True needs populations")
    if reference is None:
        R = float(np.sum(w * r)) if w is not None else float(np.mean(r))
    elif isinstance(reference, str):
        if reference not in ("min", "max"):
            raise ValueError(f"reference must be a number, 'min', 'max' or None; got {reference!r}")
        R = float(r.min() if reference == "min" else r.max())
    else:
        R = float(reference)
    if not R > 0:
        raise ValueError(f"the reference rate must be > 0; got {R!r}")
    dev = np.abs(r - R)
    mean_dev = float(np.sum(w * dev)) if weighted else float(np.mean(dev))
    return mean_dev / R * 100


# --------------------------------------------------------------------------------------------
# benchmark comparison
# --------------------------------------------------------------------------------------------

POLARITIES = ("high_is_good", "low_is_good", "not_applicable")


def compare_to_benchmark(lower, upper, benchmark, polarity) -> pd.Series:
    """Fingertips-style comparison of a value's confidence interval with a benchmark.

    Parameters
    ----------
    lower, upper : the value's confidence limits.
    benchmark : the benchmark value (e.g. England or the NCL average); scalar or per row.
    polarity : "high_is_good", "low_is_good" or "not_applicable"; scalar or per row.

    Returns a Series ``comparison``: where the interval lies wholly above the benchmark,
    "better" (high_is_good), "worse" (low_is_good) or "higher" (not_applicable); wholly below,
    "worse", "better" or "lower"; where it contains the benchmark (touching counts as
    containing), "similar"; and "not compared" where a limit or the benchmark is missing.

    Method: Fingertips / OHID Public Health Profiles "compared with benchmark" using confidence
    intervals (Fingertips technical guidance; RAG colouring with polarity, and the blue
    lower / similar / higher scheme when no polarity applies).
    """
    lo, hi, b = _broadcast(lower=_float_array("lower", lower), upper=_float_array("upper", upper),
                           benchmark=_float_array("benchmark", benchmark))
    pol = np.asarray(polarity, dtype=object)
    pol = np.broadcast_to(pol if pol.ndim else pol.reshape(1), lo.shape) if pol.size in (1, lo.size) else None
    if pol is None:
        raise ValueError(f"polarity must be a single value or one per row ({lo.size}); got {np.size(polarity)}")
    bad = sorted({str(p) for p in pol.ravel() if p not in POLARITIES})
    if bad:
        raise ValueError(f"polarity must be one of {POLARITIES}; got {bad}")
    ok = ~(np.isnan(lo) | np.isnan(hi) | np.isnan(b))
    with np.errstate(invalid="ignore"):
        swapped = ok & (lo > hi)
    if swapped.any():
        raise ValueError(f"lower is above upper in {int(swapped.sum())} row(s)")
    above = ok & (lo > b)
    below = ok & (hi < b)
    good_high = pol == "high_is_good"
    good_low = pol == "low_is_good"
    out = np.select(
        [~ok, above & good_high, above & good_low, above, below & good_high, below & good_low, below],
        ["not compared", "better", "worse", "higher", "worse", "better", "lower"],
        default="similar",
    ).astype(object)
    return pd.Series(out, name="comparison", dtype=object)
