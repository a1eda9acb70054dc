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

All functions take and return tidy pandas DataFrames.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

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

_CONVERSION_PATH = Path(__file__).parent / "data" / "swemwbs_conversion.csv"
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
    missing = [c for c in _REQUIRED_COLUMNS if c not in long_df.columns]
    if missing:
        raise ValueError(f"long_df: missing required column(s) {missing}")
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
    needed = {"referral_id", "timepoint", "measure", "score"}
    if not isinstance(scores, pd.DataFrame) or not needed <= set(scores.columns):
        raise ValueError(
            f"scores: expected the DataFrame from score_instruments() with columns {sorted(needed)}"
        )
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


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return float(centre - half), float(centre + half)


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
    ``mean_baseline``, ``mean_follow_up``, ``mean_change``, ``sd_change``, ``ci_lower``,
    ``ci_upper`` (t interval), ``t``, ``df``, ``p_t`` (paired t-test), ``wilcoxon_v``,
    ``p_wilcoxon`` (signed-rank, R conventions), ``d_z`` (mean change / SD of change),
    ``d_av`` (mean change / mean of the two SDs), ``threshold``, ``pct_improved``,
    ``pct_worsened``, ``pct_no_meaningful_change`` (denominator: n_pairs), with Wilson limits
    for improved/worsened. Improved means a change in the beneficial direction of at least
    ``threshold`` points.
    """
    sub = _check_measure(scores, measure)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
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
    imp_lo, imp_hi = _wilson(improved, n, confidence)
    wor_lo, wor_hi = _wilson(worsened, n, confidence)

    row = {
        "measure": measure,
        "higher_is_better": HIGHER_IS_BETTER[measure],
        "n_pairs": n,
        "mean_baseline": float(base.mean()),
        "mean_follow_up": float(fu.mean()),
        "mean_change": float(d.mean()),
        "sd_change": sd_d,
        "ci_lower": float(ci.low),
        "ci_upper": float(ci.high),
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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
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
            "mean_baseline": mean, "sd_baseline": sd, "ci_lower": lo, "ci_upper": hi,
            "p_value": float("nan"),
        }

    rows = [_group("followed_up", followed), _group("lost_to_follow_up", lost)]
    diff = {
        "measure": measure, "group": "difference", "n": n_total,
        "pct_of_baseline": 100.0 if n_total else float("nan"),
        "mean_baseline": rows[1]["mean_baseline"] - rows[0]["mean_baseline"],
        "sd_baseline": float("nan"), "ci_lower": float("nan"), "ci_upper": float("nan"),
        "p_value": float("nan"),
    }
    if len(followed) > 1 and len(lost) > 1:
        res = stats.ttest_ind(lost, followed, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
        diff.update(ci_lower=float(ci.low), ci_upper=float(ci.high), p_value=float(res.pvalue))
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
    discount multi-year streams separately (e.g. :func:`spstudy.sroi.present_value`).
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
    with :func:`spstudy.sroi.uprate`. No value is hard-coded here.
    """
    if not np.isfinite(value_per_wellby) or value_per_wellby < 0:
        raise ValueError(f"value_per_wellby: must be a non-negative number, got {value_per_wellby}")
    out = np.asarray(wellbys, dtype=float) * float(value_per_wellby)
    return float(out) if out.ndim == 0 else out
