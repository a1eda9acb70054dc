"""Wellbeing outcome measures for social prescribing evaluation.

Instruments
-----------
* **ONS4** personal wellbeing (ONS Annual Population Survey questions): life satisfaction,
  worthwhile, happy, anxious; each 0-10. Higher is better for the first three; for
  ``ons4_anxious`` higher is *worse* (reversed polarity). Scores are kept on their published
  scale (anxiety is not reversed); :data:`HIGHER_IS_BETTER` carries the direction and
  :func:`paired_change` uses it to classify improvement.
* **WEMWBS** Warwick-Edinburgh Mental Wellbeing Scale (Tennant et al. 2007, Health Qual Life
  Outcomes 5:63): 14 items each 1-5, total 14-70 (sum of items).
* **SWEMWBS** short WEMWBS (Stewart-Brown et al. 2009, Health Qual Life Outcomes 7:15): 7 items
  (WEMWBS items 1 optimistic, 2 useful, 3 relaxed, 6 dealing with problems well, 7 thinking
  clearly, 9 close to other people, 11 able to make up my own mind), raw score 7-35, converted
  to the metric (Rasch) score with the Warwick conversion table shipped in
  ``spstudy/data/swemwbs_conversion.csv``. Warwick asks that SWEMWBS is always analysed on the
  metric score so results are comparable across studies.

Item codes: ``ons4_life_satisfaction``, ``ons4_worthwhile``, ``ons4_happy``, ``ons4_anxious``,
``wemwbs_01`` ... ``wemwbs_14`` (questionnaire order), ``swemwbs_01`` ... ``swemwbs_07`` (the
seven SWEMWBS items in the order above).

Missing-item rule
-----------------
Complete-case scoring: a WEMWBS total is produced only when all 14 items are present and a
SWEMWBS raw/metric score only when all 7 are present; otherwise the row is kept with a missing
score and ``n_items`` shows how many were answered, so incompleteness stays visible. No
imputation or prorating is done. The Warwick scoring guidance defines the total as the sum of
all items (WEMWBS 14-70; SWEMWBS summed then converted) and the SWEMWBS conversion table has
entries only for complete raw scores 7-35, so a prorated score has no published conversion;
we could not verify a published Warwick prorating rule, so none is applied.

Attrition
---------
Follow-up scores are missing for most people, and not at random (people who improve return them
more often). :func:`attrition` compares the baseline scores of those with and without a
follow-up; :func:`attrition_adjusted_change` sets the complete-case change beside an
inverse-probability-weighted change (response model on the baseline score and characteristics),
worst/best-case bounds (Horowitz & Manski 2000) and bounds under monotone selection, with
Imbens & Manski (2004) intervals and a delta-adjustment tipping point (White et al. 2011).

All functions take and return tidy pandas DataFrames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from spstudy.inputs import project
from spstudy.methods.checks import require_columns
from spstudy.methods.stats import check_confidence, wilson_limits, z_value

__all__ = [
    "ONS4_ITEMS",
    "WEMWBS_ITEMS",
    "SWEMWBS_ITEMS",
    "SWEMWBS_WEMWBS_ITEM_NUMBERS",
    "MEASURES",
    "HIGHER_IS_BETTER",
    "DEFAULT_MEANINGFUL_CHANGE",
    "swemwbs_conversion_table",
    "swemwbs_metric",
    "score_instruments",
    "cohens_d_z",
    "cohens_d_av",
    "paired_change",
    "attrition",
    "MEASURE_RANGE",
    "AttritionAdjustedChange",
    "imbens_manski_interval",
    "IpwMean",
    "ipw_mean",
    "attrition_adjusted_change",
    "attrition_adjusted_changes",
    "life_satisfaction_to_wellbys",
    "wellbys_to_value",
]

TIMEPOINTS = ("baseline", "follow_up")
INSTRUMENTS = ("ons4", "wemwbs", "swemwbs")

ONS4_ITEMS = (
    "ons4_life_satisfaction",
    "ons4_worthwhile",
    "ons4_happy",
    "ons4_anxious",
)
WEMWBS_ITEMS = tuple(f"wemwbs_{i:02d}" for i in range(1, 15))
SWEMWBS_ITEMS = tuple(f"swemwbs_{i:02d}" for i in range(1, 8))
#: WEMWBS item numbers that make up SWEMWBS items 1..7 (Stewart-Brown et al. 2009).
SWEMWBS_WEMWBS_ITEM_NUMBERS = (1, 2, 3, 6, 7, 9, 11)

_INSTRUMENT_ITEMS = {"ons4": ONS4_ITEMS, "wemwbs": WEMWBS_ITEMS, "swemwbs": SWEMWBS_ITEMS}
_ITEM_RANGE = {"ons4": (0, 10), "wemwbs": (1, 5), "swemwbs": (1, 5)}

MEASURES = ONS4_ITEMS + ("wemwbs_total", "swemwbs_raw", "swemwbs_metric")

#: Direction of benefit for each measure (ONS4 anxiety: lower is better).
HIGHER_IS_BETTER = {m: True for m in MEASURES} | {"ons4_anxious": False}

#: Default meaningful-change thresholds (points on the measure's own scale).
#: WEMWBS: 3 points, the lower end of the 3-8 point range for statistically important individual
#: change (Maheswaran et al. 2012, Health Qual Life Outcomes 10:156: SEM 2.4-3.1).
#: SWEMWBS metric: 1 point, the lower end of the 1-3 point range (Shah et al. 2018, Health Qual
#: Life Outcomes 16:239: 1 SEM = 1.03, 2.77 SEM = 2.87 points).
#: ONS4 items and the SWEMWBS raw score have no default: pass ``threshold`` explicitly.
DEFAULT_MEANINGFUL_CHANGE = {"wemwbs_total": 3.0, "swemwbs_metric": 1.0}

_CONVERSION_PATH = project.package_file("data", "swemwbs_conversion.csv")
_REQUIRED_COLUMNS = ("referral_id", "timepoint", "instrument", "item", "score")


# --------------------------------------------------------------------------------------------
# SWEMWBS conversion
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _conversion() -> pd.DataFrame:
    table = pd.read_csv(_CONVERSION_PATH)
    expected = list(range(7, 36))
    if table["raw_score"].tolist() != expected:
        raise ValueError(
            f"{_CONVERSION_PATH}: raw_score must be exactly 7..35 in order, "
            f"got {table['raw_score'].tolist()}"
        )
    return table


def swemwbs_conversion_table() -> pd.DataFrame:
    """The SWEMWBS raw (7-35) to metric score conversion table, with its ``source`` column.

    Source: Warwick Medical School conversion table for SWEMWBS (Stewart-Brown et al. 2009,
    Health Qual Life Outcomes 7:15), shipped as ``spstudy/data/swemwbs_conversion.csv``.
    """
    return _conversion().copy()


def swemwbs_metric(raw) -> np.ndarray | float:
    """Convert SWEMWBS raw score(s) (integer 7-35) to metric score(s) via the Warwick table.

    Missing (NaN) raw scores give NaN. Anything else outside 7-35 or non-integer raises
    ValueError naming the offending values.
    """
    scalar = np.ndim(raw) == 0
    arr = np.atleast_1d(np.asarray(raw, dtype=float))
    finite = ~np.isnan(arr)
    bad = finite & ((arr < 7) | (arr > 35) | (arr != np.round(arr)))
    if bad.any():
        raise ValueError(
            f"raw: SWEMWBS raw scores must be integers 7-35; got {sorted(set(arr[bad].tolist()))}"
        )
    lookup = _conversion()["metric_score"].to_numpy(dtype=float)
    out = np.full(arr.shape, np.nan)
    out[finite] = lookup[arr[finite].astype(int) - 7]
    return float(out[0]) if scalar else out


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def _validate_long(long_df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(long_df, pd.DataFrame):
        raise ValueError(f"long_df: expected a pandas DataFrame, got {type(long_df).__name__}")
    require_columns(long_df, _REQUIRED_COLUMNS, "long_df")
    df = long_df.loc[:, list(_REQUIRED_COLUMNS)].copy()

    bad_tp = sorted(set(df["timepoint"].dropna().astype(str)) - set(TIMEPOINTS))
    if bad_tp or df["timepoint"].isna().any():
        raise ValueError(
            f"long_df.timepoint: values must be one of {TIMEPOINTS}; got {bad_tp or ['<missing>']}"
        )
    bad_inst = sorted(set(df["instrument"].dropna().astype(str)) - set(INSTRUMENTS))
    if bad_inst or df["instrument"].isna().any():
        raise ValueError(
            f"long_df.instrument: values must be one of {INSTRUMENTS}; "
            f"got {bad_inst or ['<missing>']}"
        )
    if df["referral_id"].isna().any():
        raise ValueError("long_df.referral_id: contains missing values")

    df["timepoint"] = df["timepoint"].astype(str)
    df["instrument"] = df["instrument"].astype(str)
    df["item"] = df["item"].astype(str)
    for inst, items in _INSTRUMENT_ITEMS.items():
        rows = df["instrument"] == inst
        wrong = sorted(set(df.loc[rows, "item"]) - set(items))
        if wrong:
            raise ValueError(
                f"long_df.item: unknown item code(s) for instrument {inst!r}: {wrong[:10]}; "
                f"expected {items[0]} ... {items[-1]}"
            )

    score = pd.to_numeric(df["score"], errors="coerce")
    not_numeric = df["score"].notna() & score.isna()
    if not_numeric.any():
        raise ValueError(
            f"long_df.score: non-numeric values {df.loc[not_numeric, 'score'].unique()[:10].tolist()}"
        )
    df["score"] = score.astype(float)
    # Rows with a missing score are unanswered items: drop them (they count as missing).
    df = df[df["score"].notna()]
    for inst, (lo, hi) in _ITEM_RANGE.items():
        rows = df["instrument"] == inst
        s = df.loc[rows, "score"]
        bad = s[(s < lo) | (s > hi) | (s != np.round(s))]
        if len(bad):
            raise ValueError(
                f"long_df.score: {inst} items must be integers {lo}-{hi}; "
                f"got {sorted(set(bad.tolist()))[:10]}"
            )

    dup = df.duplicated(["referral_id", "timepoint", "item"], keep=False)
    if dup.any():
        ex = df.loc[dup, ["referral_id", "timepoint", "item"]].drop_duplicates().head(5)
        raise ValueError(
            "long_df: more than one score for the same referral_id x timepoint x item, e.g. "
            f"{ex.to_dict('records')}"
        )
    return df


def _sum_complete(df: pd.DataFrame, n_required: int) -> pd.DataFrame:
    """Sum item scores by referral x timepoint; NaN unless all n_required items present."""
    g = df.groupby(["referral_id", "timepoint"], sort=True)["score"].agg(["sum", "count"])
    g = g.reset_index().rename(columns={"count": "n_items"})
    g["score"] = np.where(g["n_items"] == n_required, g["sum"], np.nan)
    return g.drop(columns="sum")


def score_instruments(long_df: pd.DataFrame, derive_swemwbs: bool = False) -> pd.DataFrame:
    """Score item-level wellbeing data into one row per referral x timepoint x measure.

    Parameters
    ----------
    long_df : DataFrame with columns ``referral_id``, ``timepoint`` ('baseline'|'follow_up'),
        ``instrument`` ('ons4'|'wemwbs'|'swemwbs'), ``item`` (codes in module docstring),
        ``score`` (integer; ONS4 0-10, (S)WEMWBS 1-5; missing = unanswered item).
    derive_swemwbs : if True, also score SWEMWBS from WEMWBS items 1, 2, 3, 6, 7, 9, 11 for any
        referral x timepoint that has WEMWBS but no directly collected SWEMWBS (the SWEMWBS
        items are a subset of WEMWBS; Stewart-Brown et al. 2009). Such rows have
        ``instrument == 'wemwbs'``.

    Returns
    -------
    DataFrame with columns ``referral_id``, ``timepoint``, ``instrument``, ``measure``,
    ``score`` (float, NaN when incomplete), ``n_items`` (items answered), ``n_items_required``.
    Measures: each ONS4 item as its own measure (0-10); ``wemwbs_total`` (14-70);
    ``swemwbs_raw`` (7-35) and ``swemwbs_metric`` (7.00-35.00). Missing-item rule: complete
    case only, no prorating (see module docstring).
    """
    df = _validate_long(long_df)
    out = []

    ons = df[df["instrument"] == "ons4"]
    if len(ons):
        keys = ons[["referral_id", "timepoint"]].drop_duplicates()
        grid = keys.merge(pd.DataFrame({"item": ONS4_ITEMS}), how="cross")
        o = grid.merge(ons[["referral_id", "timepoint", "item", "score"]], how="left")
        o = o.rename(columns={"item": "measure"})
        o["n_items"] = o["score"].notna().astype(int)
        o["n_items_required"] = 1
        o["instrument"] = "ons4"
        out.append(o)

    wem = df[df["instrument"] == "wemwbs"]
    if len(wem):
        w = _sum_complete(wem, 14)
        w["measure"] = "wemwbs_total"
        w["n_items_required"] = 14
        w["instrument"] = "wemwbs"
        out.append(w)

    def _swem_rows(items: pd.DataFrame, instrument: str) -> list[pd.DataFrame]:
        s = _sum_complete(items, 7)
        s["n_items_required"] = 7
        s["instrument"] = instrument
        raw = s.assign(measure="swemwbs_raw")
        met = s.assign(measure="swemwbs_metric", score=swemwbs_metric(s["score"].to_numpy()))
        return [raw, met]

    swem = df[df["instrument"] == "swemwbs"]
    if len(swem):
        out.extend(_swem_rows(swem, "swemwbs"))

    if derive_swemwbs and len(wem):
        codes = {f"wemwbs_{n:02d}" for n in SWEMWBS_WEMWBS_ITEM_NUMBERS}
        sub = wem[wem["item"].isin(codes)]
        if len(swem):
            direct = swem[["referral_id", "timepoint"]].drop_duplicates()
            sub = sub.merge(direct, how="left", indicator=True)
            sub = sub[sub["_merge"] == "left_only"].drop(columns="_merge")
        if len(sub):
            out.extend(_swem_rows(sub, "wemwbs"))

    cols = ["referral_id", "timepoint", "instrument", "measure", "score", "n_items",
            "n_items_required"]
    if not out:
        return pd.DataFrame(columns=cols)
    res = pd.concat([o[cols] for o in out], ignore_index=True)
    res["score"] = res["score"].astype(float)
    res["n_items"] = res["n_items"].astype(int)
    res["n_items_required"] = res["n_items_required"].astype(int)
    return res.sort_values(["referral_id", "timepoint", "measure"], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Paired change
# --------------------------------------------------------------------------------------------
def cohens_d_z(mean_diff: float, sd_diff: float) -> float:
    """Cohen's d_z for paired data: mean of the differences / SD of the differences.

    Source: Lakens 2013, Front Psychol 4:863, eq. 6; MOTE::d.dep.t.diff.
    """
    return float(mean_diff) / float(sd_diff) if sd_diff > 0 else float("nan")


def cohens_d_av(m1: float, m2: float, sd1: float, sd2: float) -> float:
    """Cohen's d_av: (m1 - m2) / ((sd1 + sd2) / 2), the average-SD standardiser.

    Source: Cumming 2012 (Understanding the New Statistics); Lakens 2013 Front Psychol
    4:863, eq. 10; MOTE::d.dep.t.avg.
    """
    denom = (float(sd1) + float(sd2)) / 2
    return (float(m1) - float(m2)) / denom if denom > 0 else float("nan")


def _check_measure(scores: pd.DataFrame, measure: str) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores: expected the DataFrame from score_instruments(), got {type(scores).__name__}")
    require_columns(scores, ["referral_id", "timepoint", "measure", "score"], "scores", "the DataFrame from score_instruments()")
    if measure not in MEASURES:
        raise ValueError(f"measure: {measure!r} is not one of {MEASURES}")
    sub = scores[scores["measure"] == measure]
    dup = sub.duplicated(["referral_id", "timepoint"], keep=False)
    if dup.any():
        raise ValueError(
            f"scores: more than one {measure} score per referral_id x timepoint, e.g. "
            f"{sub.loc[dup, ['referral_id', 'timepoint']].head(3).to_dict('records')}"
        )
    return sub


def _wide(sub: pd.DataFrame) -> pd.DataFrame:
    wide = sub.pivot(index="referral_id", columns="timepoint", values="score")
    for tp in TIMEPOINTS:
        if tp not in wide.columns:
            wide[tp] = np.nan
    return wide[list(TIMEPOINTS)].astype(float)


def _wilcoxon_r_style(d: np.ndarray) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test following R's ``wilcox.test(paired=TRUE)`` defaults.

    Zero differences are dropped; exact null distribution when fewer than 50 non-zero
    differences and no ties, otherwise the normal approximation with tie and continuity
    correction. Returns (V, p, method) where V is the sum of ranks of positive differences
    (R's statistic).
    """
    nz = d[d != 0]
    if len(nz) == 0:
        return float("nan"), float("nan"), "none"
    ranks = stats.rankdata(np.abs(nz))
    v = float(ranks[nz > 0].sum())
    ties = len(np.unique(np.abs(nz))) < len(nz)
    zeros = len(nz) < len(d)
    if len(nz) < 50 and not ties and not zeros:
        res = stats.wilcoxon(nz, method="exact")
        method = "exact"
    else:
        res = stats.wilcoxon(nz, zero_method="wilcox", correction=True, method="approx")
        method = "normal approximation with continuity correction"
    return v, float(res.pvalue), method


def paired_change(
    scores: pd.DataFrame,
    measure: str,
    threshold: float | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Baseline to follow-up change in one measure among referrals with both scores.

    Parameters
    ----------
    scores : output of :func:`score_instruments`.
    measure : one of :data:`MEASURES`.
    threshold : meaningful change in points of the measure (> 0). Defaults from
        :data:`DEFAULT_MEANINGFUL_CHANGE` (WEMWBS 3, SWEMWBS metric 1); required for ONS4 items
        and ``swemwbs_raw``.
    confidence : level of the mean-change CI and the Wilson intervals of the percentages.

    Returns
    -------
    One-row DataFrame. Change is follow-up minus baseline on the measure's own scale (so for
    ``ons4_anxious`` a negative change is an improvement). Columns: ``n_pairs``,
    ``mean_baseline``, ``mean_follow_up``, ``mean_change``, ``sd_change``, ``mean_change_lower``,
    ``mean_change_upper`` (t interval), ``t``, ``df``, ``p_t`` (paired t-test), ``wilcoxon_v``,
    ``p_wilcoxon`` (signed-rank, R conventions), ``d_z`` (mean change / SD of change),
    ``d_av`` (mean change / mean of the two SDs), ``threshold``, ``pct_improved``,
    ``pct_worsened``, ``pct_no_meaningful_change`` (denominator: n_pairs), with Wilson limits
    for improved/worsened. Improved means a change in the beneficial direction of at least
    ``threshold`` points.
    """
    sub = _check_measure(scores, measure)
    check_confidence(confidence)
    if threshold is None:
        if measure not in DEFAULT_MEANINGFUL_CHANGE:
            raise ValueError(
                f"threshold: no default meaningful-change threshold for {measure!r}; pass one "
                "explicitly (points on the measure's scale)"
            )
        threshold = DEFAULT_MEANINGFUL_CHANGE[measure]
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold: must be a positive number of points, got {threshold}")

    wide = _wide(sub).dropna()
    n = len(wide)
    if n < 2:
        raise ValueError(f"scores: need at least 2 complete baseline/follow-up pairs for {measure}, got {n}")
    base = wide["baseline"].to_numpy()
    fu = wide["follow_up"].to_numpy()
    d = fu - base

    tt = stats.ttest_rel(fu, base)
    ci = tt.confidence_interval(confidence_level=confidence)
    v, p_w, w_method = _wilcoxon_r_style(d)
    sd_d = float(np.std(d, ddof=1))

    sign = 1.0 if HIGHER_IS_BETTER[measure] else -1.0
    directed = sign * d
    tol = 1e-9
    improved = int(np.sum(directed >= threshold - tol))
    worsened = int(np.sum(directed <= -threshold + tol))
    imp_lo, imp_hi = wilson_limits(improved, n, confidence)
    wor_lo, wor_hi = wilson_limits(worsened, n, confidence)

    row = {
        "measure": measure,
        "higher_is_better": HIGHER_IS_BETTER[measure],
        "n_pairs": n,
        "mean_baseline": float(base.mean()),
        "mean_follow_up": float(fu.mean()),
        "mean_change": float(d.mean()),
        "sd_change": sd_d,
        "mean_change_lower": float(ci.low),
        "mean_change_upper": float(ci.high),
        "confidence": confidence,
        "t": float(tt.statistic),
        "df": int(tt.df),
        "p_t": float(tt.pvalue),
        "wilcoxon_v": v,
        "p_wilcoxon": p_w,
        "wilcoxon_method": w_method,
        "d_z": cohens_d_z(d.mean(), sd_d),
        "d_av": cohens_d_av(fu.mean(), base.mean(), np.std(fu, ddof=1), np.std(base, ddof=1)),
        "threshold": float(threshold),
        "n_improved": improved,
        "pct_improved": 100 * improved / n,
        "pct_improved_lower": 100 * imp_lo,
        "pct_improved_upper": 100 * imp_hi,
        "n_worsened": worsened,
        "pct_worsened": 100 * worsened / n,
        "pct_worsened_lower": 100 * wor_lo,
        "pct_worsened_upper": 100 * wor_hi,
        "pct_no_meaningful_change": 100 * (n - improved - worsened) / n,
    }
    return pd.DataFrame([row])


# --------------------------------------------------------------------------------------------
# Attrition
# --------------------------------------------------------------------------------------------
def attrition(scores: pd.DataFrame, measure: str, confidence: float = 0.95) -> pd.DataFrame:
    """Compare baseline scores of those with and without a follow-up score (loss to follow-up).

    Denominator: referrals with a (complete) baseline score for ``measure``. "Followed up"
    means a complete follow-up score exists for the same measure.

    Returns a tidy DataFrame with rows ``group`` = 'followed_up', 'lost_to_follow_up' (n,
    % of baseline, mean and SD of the baseline score, t-based CI of the mean) and
    'difference' (lost minus followed-up mean baseline score, Welch two-sample t interval and
    p-value; Welch 1947). A difference far from zero signals selective attrition, so paired
    change among completers may not represent everyone referred.
    """
    sub = _check_measure(scores, measure)
    check_confidence(confidence)
    wide = _wide(sub)
    wide = wide[wide["baseline"].notna()]
    n_total = len(wide)
    followed = wide.loc[wide["follow_up"].notna(), "baseline"].to_numpy()
    lost = wide.loc[wide["follow_up"].isna(), "baseline"].to_numpy()

    def _group(name: str, x: np.ndarray) -> dict:
        n = len(x)
        mean = float(x.mean()) if n else float("nan")
        sd = float(np.std(x, ddof=1)) if n > 1 else float("nan")
        if n > 1:
            half = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / np.sqrt(n)
            lo, hi = mean - half, mean + half
        else:
            lo = hi = float("nan")
        return {
            "measure": measure, "group": name, "n": n,
            "pct_of_baseline": 100 * n / n_total if n_total else float("nan"),
            "mean_baseline": mean, "sd_baseline": sd, "mean_baseline_lower": lo, "mean_baseline_upper": hi,
            "p_value": float("nan"),
        }

    rows = [_group("followed_up", followed), _group("lost_to_follow_up", lost)]
    diff = {
        "measure": measure, "group": "difference", "n": n_total,
        "pct_of_baseline": 100.0 if n_total else float("nan"),
        "mean_baseline": rows[1]["mean_baseline"] - rows[0]["mean_baseline"],
        "sd_baseline": float("nan"), "mean_baseline_lower": float("nan"), "mean_baseline_upper": float("nan"),
        "p_value": float("nan"),
    }
    if len(followed) > 1 and len(lost) > 1:
        res = stats.ttest_ind(lost, followed, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
        diff.update(mean_baseline_lower=float(ci.low), mean_baseline_upper=float(ci.high), p_value=float(res.pvalue))
    rows.append(diff)
    out = pd.DataFrame(rows)
    out["confidence"] = confidence
    return out


# --------------------------------------------------------------------------------------------
# WELLBYs
# --------------------------------------------------------------------------------------------
def life_satisfaction_to_wellbys(change_points, persons, years):
    """WELLBYs from a change in life satisfaction.

    1 WELLBY = a one-point change in life satisfaction (0-10 scale, ONS4 life satisfaction)
    for one person for one year (HM Treasury Green Book supplementary guidance: Wellbeing
    guidance for appraisal, July 2021). WELLBYs = change_points x persons x years. Undiscounted:
    discount multi-year streams separately (e.g. :func:`spstudy.methods.sroi.present_value`).
    Accepts scalars or arrays; ``persons`` and ``years`` must be non-negative.
    """
    p = np.asarray(persons, dtype=float)
    y = np.asarray(years, dtype=float)
    c = np.asarray(change_points, dtype=float)
    if np.any(p < 0):
        raise ValueError(f"persons: must be >= 0, got {persons}")
    if np.any(y < 0):
        raise ValueError(f"years: must be >= 0, got {years}")
    if np.any(np.abs(c) > 10):
        raise ValueError(f"change_points: life satisfaction is 0-10, a change of {change_points} is impossible")
    out = c * p * y
    return float(out) if out.ndim == 0 else out


def wellbys_to_value(wellbys, value_per_wellby: float):
    """Monetary value of WELLBYs: wellbys x value_per_wellby (price year of the value).

    The Green Book wellbeing guidance (July 2021) recommends a central value per WELLBY with a
    low-high range, in a stated price year; pass it from the project's parameters and uprate it
    with :func:`spstudy.methods.sroi.uprate`. No value is hard-coded here.
    """
    if not np.isfinite(value_per_wellby) or value_per_wellby < 0:
        raise ValueError(f"value_per_wellby: must be a non-negative number, got {value_per_wellby}")
    out = np.asarray(wellbys, dtype=float) * float(value_per_wellby)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# Attrition-adjusted change: inverse probability weighting and bounds
# --------------------------------------------------------------------------------------------
#: Possible range of each measure (for worst/best-case bounds): ONS4 items 0-10, WEMWBS 14-70,
#: SWEMWBS raw 7-35 and metric 7.00-35.00 (Tennant et al. 2007; Stewart-Brown et al. 2009).
MEASURE_RANGE = {**{m: (0.0, 10.0) for m in ONS4_ITEMS}, "wemwbs_total": (14.0, 70.0),
                 "swemwbs_raw": (7.0, 35.0), "swemwbs_metric": (7.0, 35.0)}


@dataclass(frozen=True)
class AttritionAdjustedChange:
    """Mean change in wellbeing beside three answers to missing follow-ups (:func:`attrition_adjusted_change`).

    estimates: one row per measure x method. ``method``: ``complete_case`` (people with both
        scores), ``ipw`` (inverse probability weighted), ``worst_best_case_bounds`` (Horowitz &
        Manski 2000), ``monotone_selection_bounds``. Columns: ``measure``, ``method``,
        ``assumption`` (plain words), ``n_baseline`` (people with a baseline score, count),
        ``n_followed_up`` (of them, people with a follow-up score, count), ``mean_change`` (points
        on the measure's scale, follow-up minus baseline; missing for bounds), ``bound_low``,
        ``bound_high`` (the identified set, bounds only), ``mean_change_lower``,
        ``mean_change_upper`` (confidence interval: t for complete case, M-estimation sandwich
        for IPW, Imbens & Manski 2004 for bounds), ``tipping_point_delta`` (complete-case row: how
        many points less, in the beneficial direction, those lost would have to have changed than
        those followed up for the mean change in everyone to be zero; delta adjustment, White et
        al. 2011, BMJ 342:d40), ``status``, ``confidence``.
    response_model: the logistic model of having a follow-up: ``measure``, ``term``, ``log_odds``,
        ``se``, ``odds_ratio``, ``odds_ratio_lower``, ``odds_ratio_upper``.
    weights: per measure: ``n_followed_up``, ``max_weight`` (largest 1/p), ``effective_n``
        (Kish: (sum w)^2 / sum w^2 over people followed up).
    """

    estimates: pd.DataFrame
    response_model: pd.DataFrame
    weights: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """The estimates table (one row per measure x method)."""
        return self.estimates


def imbens_manski_interval(lower: float, upper: float, se_lower: float, se_upper: float,
                           confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval for a partially identified parameter in [lower, upper].

    Imbens & Manski (2004, Econometrica 72:1845, section 4): [lower - C se_lower, upper + C se_upper]
    with C solving Phi(C + (upper - lower) / max(se_lower, se_upper)) - Phi(-C) = confidence. C is
    the two-sided normal quantile (1.96 at 95%) when the bounds coincide and falls to the one-sided
    quantile (1.645) as the identified set widens: the interval covers the *parameter*, not the
    whole set, with at least the stated probability.
    """
    from scipy.optimize import brentq

    check_confidence(confidence)
    if not (np.isfinite(lower) and np.isfinite(upper)) or upper < lower:
        return float("nan"), float("nan")
    s = max(se_lower, se_upper)
    if not np.isfinite(s) or s <= 0:
        return float(lower), float(upper)
    gap = (upper - lower) / s
    f = lambda c: stats.norm.cdf(c + gap) - stats.norm.cdf(-c) - confidence
    c = brentq(f, 0.0, 10.0)
    return float(lower - c * se_lower), float(upper + c * se_upper)


def _design(frame: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Intercept, the baseline score and covariates (categorical: indicator per level but the first)."""
    parts = {"(Intercept)": np.ones(len(frame)), "baseline_score": frame["baseline"].to_numpy(dtype=float)}
    for c in covariates:
        s = frame[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            parts[c] = s.to_numpy(dtype=float)
        else:
            levels = sorted(pd.unique(s.astype(str)))
            for lev in levels[1:]:
                parts[f"{c}[{lev}]"] = (s.astype(str) == lev).to_numpy(dtype=float)
    return pd.DataFrame(parts, index=frame.index)


def _separation(frame: pd.DataFrame, covariates: list[str], r: np.ndarray) -> list[str]:
    out = []
    for c in covariates:
        s = frame[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            continue
        tab = pd.crosstab(s.astype(str), r)
        for lev, row in tab.iterrows():
            if int(row.get(1, 0)) == 0 or int(row.get(0, 0)) == 0:
                out.append(f"{c}={lev!r}: {'no' if int(row.get(1, 0)) == 0 else 'every'} person followed up")
    return out


@dataclass(frozen=True)
class IpwMean:
    """An inverse-probability-weighted mean (:func:`ipw_mean`): ``mean``, its ``se`` and normal
    interval ``mean_lower`` / ``mean_upper``; the response model's coefficients ``params`` and
    their sandwich ``param_se``; the fitted response probabilities ``p``; ``converged``."""

    mean: float
    se: float
    mean_lower: float
    mean_upper: float
    params: np.ndarray
    param_se: np.ndarray
    p: np.ndarray
    converged: bool


def ipw_mean(y: np.ndarray, observed: np.ndarray, X: np.ndarray, confidence: float = 0.95) -> IpwMean:
    """Inverse-probability-weighted (Hajek) mean of ``y`` over everyone, ``y`` seen where ``observed``.

    Response model: logistic regression of ``observed`` on the design matrix ``X`` (maximum
    likelihood, statsmodels GLM Binomial). Estimate: sum(R y / p) / sum(R / p). Variance: the
    M-estimation sandwich of the stacked estimating equations X(R - p) = 0 and R(y - mu)/p = 0,
    which carries the uncertainty of the estimated weights (Lunceford & Davidian 2004, Stat Med
    23:2937, s.3; Stefanski & Boos 2002, Am Stat 56:29). With a saturated model on categorical
    cells this is the weighting-class estimator sum_j (n_j / n) ybar_j (Little & Rubin 2019,
    Statistical Analysis with Missing Data, 3rd ed., s.3.3), which the tests check.

    Returns an :class:`IpwMean` (the interval is normal, at ``confidence``).
    """
    import statsmodels.api as sm

    r = np.asarray(observed, dtype=float)
    X = np.asarray(X, dtype=float)
    yv = np.where(r == 1, np.asarray(y, dtype=float), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GLM(r, X, family=sm.families.Binomial()).fit()
    p = np.asarray(fit.fittedvalues, dtype=float)
    w = r / p
    mu = float(np.sum(w * yv) / np.sum(w))
    n, k = X.shape
    psi_b = X * (r - p)[:, None]
    psi_m = r * (yv - mu) / p
    Psi = np.column_stack([psi_b, psi_m])
    B = Psi.T @ Psi / n
    A = np.zeros((k + 1, k + 1))
    A[:k, :k] = (X * (p * (1 - p))[:, None]).T @ X / n
    A[k, :k] = (r * (yv - mu) * (1 - p) / p) @ X / n
    A[k, k] = np.sum(r / p) / n
    Ainv = np.linalg.inv(A)
    V = Ainv @ B @ Ainv.T / n
    se = float(np.sqrt(V[k, k]))
    z = z_value(confidence)
    return IpwMean(mean=mu, se=se, mean_lower=mu - z * se, mean_upper=mu + z * se, params=np.asarray(fit.params, dtype=float),
                   param_se=np.sqrt(np.diag(V)[:k]), p=p, converged=bool(getattr(fit, "converged", True)))


def attrition_adjusted_change(scores: pd.DataFrame, measure: str, characteristics: pd.DataFrame | None = None,
                              covariates: list[str] | tuple = (), confidence: float = 0.95) -> AttritionAdjustedChange:
    """Mean change in ``measure`` among everyone with a baseline score, under three views of attrition.

    Population: referrals with a complete baseline score for ``measure`` (denominator
    ``n_baseline``). Follow-up is missing for many, and not at random: people who improve return
    it more often, so the complete-case change overstates the change in everyone.

    * ``complete_case``: mean change in people with both scores (assumes those lost changed like
      those followed up); t interval.
    * ``ipw``: weights 1/p from a logistic model of having a follow-up on the baseline score and
      ``covariates`` (columns of ``characteristics``, keyed by ``referral_id``; non-numeric ones
      dummy-coded); :func:`ipw_mean`. Assumes follow-up is missing at random given those
      (it removes selection on the baseline score and characteristics, not on the change itself).
    * ``worst_best_case_bounds``: every missing follow-up set to the bottom or the top of the
      measure's range (:data:`MEASURE_RANGE`; Horowitz & Manski 2000, J Am Stat Assoc 95:77). No
      assumption about why follow-ups are missing; width = share missing x range.
    * ``monotone_selection_bounds``: the assumption the brief states, that those lost to follow-up
      changed on average no better than those followed up (Manski's monotone selection idea;
      Manski & Pepper 2000, Econometrica 68:997): the complete-case change is then the best case
      and the worst case is as above. (For ``ons4_anxious`` lower is better, so the sides swap.)

    Bounds get the Imbens & Manski (2004) interval (:func:`imbens_manski_interval`).
    If the response model cannot be fitted (a covariate level with nobody or everybody followed up,
    fewer than 2 people followed up), the IPW row says so in ``status`` instead of failing.
    """
    sub = _check_measure(scores, measure)
    check_confidence(confidence)
    covariates = list(covariates)
    wide = _wide(sub)
    wide = wide[wide["baseline"].notna()].copy()
    n = len(wide)
    r = wide["follow_up"].notna().to_numpy().astype(int)
    m = int(r.sum())
    lo_s, hi_s = MEASURE_RANGE[measure]
    base = wide["baseline"].to_numpy(dtype=float)
    change = (wide["follow_up"] - wide["baseline"]).to_numpy(dtype=float)
    z = z_value(confidence)
    rows, coef_rows, wrows = [], [], []
    common = {"measure": measure, "n_baseline": n, "n_followed_up": m}
    na = float("nan")

    def row(method, assumption, mean=na, low=na, high=na, ci=(na, na), status="estimated"):
        return {**common, "method": method, "assumption": assumption, "mean_change": mean, "bound_low": low, "bound_high": high,
                "mean_change_lower": ci[0], "mean_change_upper": ci[1], "tipping_point_delta": na, "status": status}

    # complete case
    if m >= 2:
        d = change[r == 1]
        se = float(np.std(d, ddof=1) / np.sqrt(m))
        tq = stats.t.ppf(1 - (1 - confidence) / 2, m - 1)
        rows.append(row("complete_case", "those lost to follow-up changed like those followed up", float(d.mean()), ci=(d.mean() - tq * se, d.mean() + tq * se)))
        if m < n:  # delta adjustment (pattern mixture; White et al. 2011, BMJ 342:d40): lost changed delta points less, in the beneficial direction
            sign = 1.0 if HIGHER_IS_BETTER[measure] else -1.0
            rows[-1]["tipping_point_delta"] = float(sign * d.mean() / (1 - m / n))
    else:
        rows.append(row("complete_case", "those lost to follow-up changed like those followed up", status=f"not estimable: {m} people followed up (need 2)"))

    # IPW
    ipw_assumption = "follow-up missing at random given the baseline score" + (f" and {', '.join(covariates)}" if covariates else "")
    frame = wide.reset_index()
    status = None
    if covariates:
        if characteristics is None:
            raise ValueError("characteristics: needed when covariates are given (one row per referral_id)")
        require_columns(characteristics, ["referral_id"] + covariates, "characteristics")
        ch = characteristics.drop_duplicates("referral_id").set_index("referral_id")[covariates]
        frame = frame.join(ch, on="referral_id")
        bad = frame[covariates].isna().any(axis=1)
        if bad.any():
            raise ValueError(f"characteristics: no (or missing) {covariates} for {int(bad.sum())} referrals with a {measure} baseline, "
                             f"e.g. referral_id {frame.loc[bad, 'referral_id'].head(5).tolist()}")
        problems = _separation(frame, covariates, r)
        if problems:
            status = "not estimable: " + "; ".join(problems)
    if m < 2 or m == n:
        status = status or ("not estimable: fewer than 2 people followed up" if m < 2 else "not needed: everyone was followed up")
    if status is None:
        X = _design(frame, covariates)
        res = ipw_mean(change, r, X.to_numpy(), confidence=confidence)
        if not res.converged:
            rows.append(row("ipw", ipw_assumption, status="not estimable: response model did not converge"))
        else:
            rows.append(row("ipw", ipw_assumption, res.mean, ci=(res.mean_lower, res.mean_upper)))
            for term, b, s in zip(X.columns, res.params, res.param_se):
                coef_rows.append({"measure": measure, "term": term, "log_odds": b, "se": s, "odds_ratio": np.exp(b),
                                  "odds_ratio_lower": np.exp(b - z * s), "odds_ratio_upper": np.exp(b + z * s)})
            w = 1 / res.p[r == 1]
            wrows.append({"measure": measure, "n_followed_up": m, "max_weight": float(w.max()), "effective_n": float(w.sum() ** 2 / np.sum(w ** 2))})
    else:
        rows.append(row("ipw", ipw_assumption, status=status))

    # bounds: per-person contributions, so each bound is a mean with a simple standard error
    if n >= 2:
        low_i = np.where(r == 1, np.nan_to_num(change), lo_s - base)
        high_i = np.where(r == 1, np.nan_to_num(change), hi_s - base)
        L, U = float(low_i.mean()), float(high_i.mean())
        sL, sU = float(np.std(low_i, ddof=1) / np.sqrt(n)), float(np.std(high_i, ddof=1) / np.sqrt(n))
        rows.append(row("worst_best_case_bounds", f"none: each missing follow-up anywhere in {lo_s:g}-{hi_s:g}", low=L, high=U,
                        ci=imbens_manski_interval(L, U, sL, sU, confidence)))
        cc = [x for x in rows if x["method"] == "complete_case"][0]
        if np.isfinite(cc["mean_change"]):
            se_cc = (cc["mean_change_upper"] - cc["mean_change"]) / stats.t.ppf(1 - (1 - confidence) / 2, m - 1)
            if HIGHER_IS_BETTER[measure]:
                a, b, sa, sb = L, min(cc["mean_change"], U), sL, se_cc
            else:
                a, b, sa, sb = max(cc["mean_change"], L), U, se_cc, sU
            rows.append(row("monotone_selection_bounds", "those lost to follow-up changed on average no better than those followed up",
                            low=a, high=b, ci=imbens_manski_interval(a, b, sa, sb, confidence)))
    est = pd.DataFrame(rows)
    est["confidence"] = confidence
    cols = ["measure", "method", "assumption", "n_baseline", "n_followed_up", "mean_change", "bound_low", "bound_high",
            "mean_change_lower", "mean_change_upper", "tipping_point_delta", "status", "confidence"]
    return AttritionAdjustedChange(
        estimates=est[cols],
        response_model=pd.DataFrame(coef_rows, columns=["measure", "term", "log_odds", "se", "odds_ratio", "odds_ratio_lower", "odds_ratio_upper"]),
        weights=pd.DataFrame(wrows, columns=["measure", "n_followed_up", "max_weight", "effective_n"]))


def attrition_adjusted_changes(scores: pd.DataFrame, characteristics: pd.DataFrame | None = None, covariates: list[str] | tuple = (),
                               measures: list[str] | tuple | None = None, confidence: float = 0.95) -> AttritionAdjustedChange:
    """:func:`attrition_adjusted_change` for every measure present (ONS4 items, WEMWBS total, SWEMWBS
    metric; the SWEMWBS raw score is skipped, Warwick asks for the metric), tables stacked."""
    present = set(scores["measure"].unique()) if "measure" in scores.columns else set()
    measures = [m for m in (measures or MEASURES) if m in present and m != "swemwbs_raw"]
    parts = [attrition_adjusted_change(scores, m, characteristics, covariates, confidence) for m in measures]
    if not parts:
        return AttritionAdjustedChange(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    return AttritionAdjustedChange(*(pd.concat([getattr(p, f) for p in parts], ignore_index=True)
                                     for f in ("estimates", "response_model", "weights")))
