"""Who benefits: matched difference-in-differences effects by subgroup, with interaction tests.

Subgroups are defined by the *referred* member of each matched set; the set (the referred person
and their matched comparators) travels together, so every subgroup estimate is a matched DiD on
whole matched sets, exactly as :func:`spstudy.analyses.evaluation.did` computes it for everybody:

* long data: one row per unit-in-set x period (baseline window, post window), events, exposure
  days and the matching weight (1 for the referred person, 1/k for each of k comparators);
* ratio of rate ratios = exp(b_treated:post) from a Poisson GLM with log(person-years) offset,
  cluster-robust (sandwich) errors by matched set (statsmodels ``cov_type="cluster"``).
  Because the model is saturated in treated x post, the estimate equals
  (post_T / pre_T) / (post_C / pre_C) on the weighted sums (Agresti 2013, Categorical Data
  Analysis, 3rd ed., s.9.1: the MLE of a saturated log-linear model reproduces the observed cells).

Interaction (heterogeneity) test per factor: one Poisson GLM with a separate intercept, treated,
post and treated x post term for every subgroup (the fully interacted model, whose point
estimates equal the per-subgroup fits), cluster-robust by matched set, and a Wald test that all
K subgroup x treated x post terms are equal (chi-squared, K - 1 degrees of freedom). For two
subgroups this is the z-test of Altman & Bland (2003, BMJ 326:219) for the difference of two log
ratios. Multiplicity: every interaction p-value is Holm-adjusted across all the interaction tests
in the result (Holm 1979, Scand J Stat 6:65), and every subgroup's own p-value across all the
subgroup estimates; the number of tests in each family is a column.

Matching was not exact on these factors, so a referred person's comparator may sit in another
subgroup; ``n_comparators_same_subgroup`` shows how often. The DiD within a subgroup relies on the
same assumption as the main estimate (the comparators' change shows what the referred would have
done), now within the subgroup. Subgroups with fewer than ``min_matched_sets`` matched sets, or
with no events in one of the four cells, are reported with a status saying so and no estimate;
they are left out of that factor's interaction test (listed in ``subgroups_not_tested``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from spstudy.methods.checks import require_columns
from spstudy.methods.coding import EVALUATION_AGE_BANDS
from spstudy.methods.stats import z_value

__all__ = [
    "LEVEL_ORDER",
    "SubgroupEffects",
    "add_subgroup_columns",
    "did_long",
    "poisson_did_fit",
    "SaturatedPoissonFit",
    "fit_ratio_of_rate_ratios",
    "holm",
    "wald_equality_test",
    "subgroup_effects",
]

#: Display order of the levels of the standard factors (others are sorted).
LEVEL_ORDER: dict[str, list] = {
    # Census 2021 five groups, then NHS ethnic category Z ("Not stated") and an empty code ("Not recorded")
    "ethnic_group": ["Asian", "Black", "Mixed", "White", "Other", "Not stated", "Not recorded"],
    "imd_quintile": [1, 2, 3, 4, 5],  # IMD 2025 national quintile, 1 = most deprived
    "imd_q": ["1", "2", "3", "4", "5"],
    "age_band": EVALUATION_AGE_BANDS[1],
    "main_reason": ["housing", "money", "mental_health", "isolation", "carers", "lifestyle", "multiple"],
    "borough": ["Barnet", "Camden", "Enfield", "Haringey", "Islington"],
}

_REASON_RULES = ("first", "single_or_multiple")


# ------------------------------------------------------------------------------------------------
# Subgroup columns
# ------------------------------------------------------------------------------------------------
def add_subgroup_columns(d: pd.DataFrame, referrals: pd.DataFrame, practices: pd.DataFrame, boroughs: pd.DataFrame,
                         reason_rule: str = "first") -> pd.DataFrame:
    """Add ``main_reason`` (referred rows) and ``borough`` (every row) to the cohort frame ``d``.

    ``d``: the evaluation's cohort/feature frame (one row per index person; needs ``treated``,
    ``referral_id``, ``practice_code``). ``referrals``: the referrals extract (``referral_id``,
    ``reasons``: one or more codes separated by ';'). ``practices``: ``practice_code`` ->
    ``borough_code`` (e.g. :func:`spstudy.inputs.reference.gp_practices`); ``boroughs``: ``borough_code``
    -> ``borough_name`` (e.g. :data:`spstudy.inputs.reference.BOROUGHS`).

    ``reason_rule``: ``"first"`` (default): the main reason is the first reason listed on the
    referral (the PRSB minimum data set records reasons in the order the referrer gives them; the
    generator writes them most important first). ``"single_or_multiple"``: the reason when only one
    is listed, otherwise ``"multiple"``. Comparators (never referred) get no reason (missing).

    Raises ValueError naming the rows when a referred person's referral or a practice's borough
    cannot be found.
    """
    for name, df, cols in (("d", d, ["treated", "referral_id", "practice_code"]), ("referrals", referrals, ["referral_id", "reasons"]),
                           ("practices", practices, ["practice_code", "borough_code"]), ("boroughs", boroughs, ["borough_code", "borough_name"])):
        require_columns(df, cols, name)
    if reason_rule not in _REASON_RULES:
        raise ValueError(f"reason_rule: must be one of {_REASON_RULES}, got {reason_rule!r}")
    out = d.copy()
    ref = referrals.drop_duplicates("referral_id").set_index("referral_id")["reasons"]
    t = out["treated"] == 1
    reasons = out.loc[t, "referral_id"].map(ref)
    bad = reasons.isna() | (reasons.astype("string").str.strip() == "")
    if bad.any():
        raise ValueError(f"referrals: no reasons for {int(bad.sum())} referred cohort rows (referral_id "
                         f"{out.loc[t, 'referral_id'][bad].head(5).tolist()}); rows {out.index[t][bad][:10].tolist()}")
    codes = reasons.astype(str).str.split(";")
    if reason_rule == "first":
        main = codes.str[0].str.strip()
    else:
        main = codes.map(lambda c: c[0].strip() if len(c) == 1 else "multiple")
    out["main_reason"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out.loc[t, "main_reason"] = main.astype("string")
    pb = practices.drop_duplicates("practice_code").set_index("practice_code")["borough_code"]
    bn = boroughs.drop_duplicates("borough_code").set_index("borough_code")["borough_name"]
    b = out["practice_code"].map(pb).map(bn)
    if b.isna().any():
        raise ValueError(f"practices/boroughs: no borough for practice_code {sorted(set(out.loc[b.isna(), 'practice_code'].astype(str)))[:10]} "
                         f"({int(b.isna().sum())} cohort rows, e.g. rows {out.index[b.isna()][:10].tolist()})")
    out["borough"] = b.astype("string")
    return out


# ------------------------------------------------------------------------------------------------
# Matched DiD on long data (the one builder and the one Poisson fit; spstudy.analyses.evaluation.did uses both)
# ------------------------------------------------------------------------------------------------
def did_long(d: pd.DataFrame, pairs: pd.DataFrame, setting: str, months: int | str, cohort: str = "itt",
             baseline: str = "baseline") -> pd.DataFrame:
    """Long data for the matched DiD: one row per unit-in-set x period.

    Columns: ``subclass`` (matched set), ``unit_id`` (index_id), ``treated`` (0/1), ``post`` (0 =
    the ``baseline`` window, 1 = ``post_<months>m``, or the window named by ``months`` when it is a
    string), ``events`` (count), ``days`` (exposure days), ``weight`` (1 for the referred person, 1/k
    for each of the set's k comparators). Rows with no exposure in the window (deregistered before it)
    are dropped. ``cohort``: ``"itt"`` (all matched sets) or ``"per_protocol"`` (sets whose referred
    person was seen). Raises ValueError naming the ids of ``pairs`` that ``d`` does not have.
    """
    if cohort not in ("itt", "per_protocol"):
        raise ValueError(f"cohort: must be 'itt' or 'per_protocol', got {cohort!r}")
    post = months if isinstance(months, str) else f"post_{months}m"
    need = [f"{setting}_{baseline}_events", f"{baseline}_days", f"{setting}_{post}_events", f"{post}_days", "index_id", "seen"]
    require_columns(d, need, "d", "window counts from spstudy.analyses.evaluation")
    require_columns(pairs, ["subclass", "treated_id", "control_id"], "pairs")
    t = d.set_index("index_id")
    if not t.index.is_unique:
        raise ValueError(f"d: index_id not unique ({t.index[t.index.duplicated()][:5].tolist()} ...)")
    if cohort == "per_protocol":
        pairs = pairs[pairs["treated_id"].map(t["seen"]).to_numpy() == 1]
    first = pairs.drop_duplicates("subclass")
    k_in_set = pairs.groupby("subclass")["control_id"].transform("size").to_numpy()
    cols = {win: (t[f"{setting}_{win}_events"].to_numpy(), t[f"{win}_days"].to_numpy()) for win in (baseline, post)}
    parts = []
    for who, sub, w in (("t", first, np.ones(len(first))), ("c", pairs, 1.0 / k_in_set)):
        unit = sub["treated_id" if who == "t" else "control_id"].to_numpy()
        ids = t.index.get_indexer(unit)
        if (ids < 0).any():
            raise ValueError(f"pairs: {'treated_id' if who == 't' else 'control_id'} {unit[ids < 0][:5].tolist()} not in d "
                             f"({int((ids < 0).sum())} rows)")
        for period, win in ((0, baseline), (1, post)):
            ev, dy = cols[win]
            parts.append(pd.DataFrame({"subclass": sub["subclass"].to_numpy(), "unit_id": unit, "treated": 1 if who == "t" else 0,
                                       "post": period, "events": ev[ids], "days": dy[ids], "weight": np.asarray(w, dtype=float)}))
    out = pd.concat(parts, ignore_index=True)
    return out[out["days"] > 0].reset_index(drop=True)


def _cell_events(L: pd.DataFrame) -> dict:
    g = L.groupby(["treated", "post"])["events"].sum()
    return {"events_treated_pre": int(g.get((1, 0), 0)), "events_treated_post": int(g.get((1, 1), 0)),
            "events_comparator_pre": int(g.get((0, 0), 0)), "events_comparator_post": int(g.get((0, 1), 0))}


class SaturatedPoissonFit:
    """The fit of a Poisson GLM that is saturated in its cells, in closed form (:func:`poisson_did_fit`).

    Same attributes as the statsmodels results it replaces where the analyses read them:
    ``params``, ``bse``, ``pvalues`` (two-sided Wald, normal) and ``cov_params()``, indexed by the
    design's column names."""

    def __init__(self, params: pd.Series, cov: pd.DataFrame):
        self.params = params
        self._cov = cov
        self.bse = pd.Series(np.sqrt(np.diag(cov.to_numpy())), index=params.index)
        self.pvalues = pd.Series(2 * stats.norm.sf(np.abs(params.to_numpy() / self.bse.to_numpy())), index=params.index)

    def cov_params(self) -> pd.DataFrame:
        return self._cov


def _saturated_fit(y, w, t, X: pd.DataFrame, groups: np.ndarray) -> SaturatedPoissonFit | None:
    """Closed-form MLE and cluster-robust covariance of the Poisson GLM ``y ~ X`` with offset log(t)
    and variance weights ``w``, when ``X`` is saturated: it takes one row per cell (a distinct row
    of X), as many cells as columns, and its cell rows are linearly independent. None otherwise,
    or when a cell has no events (the MLE is then at infinity).

    In the cell parametrisation theta_c = log rate of cell c the MLE is theta_c = log(Y_c / T_c),
    Y_c = sum of w*y and T_c = sum of w*t over the cell (a saturated log-linear model reproduces
    its cells: Agresti 2013, Categorical Data Analysis, 3rd ed., s.9.1). The design's coefficients
    are beta = B^-1 theta (B: the cell rows of X). The sandwich is statsmodels' ``cov_type="cluster"``
    exactly: bread = the inverse Hessian diag(1 / Y_c) (canonical link), meat = the sum over
    clusters of the outer products of the cluster's summed scores w*(y - mu), with its small-sample
    factor G / (G - 1) x (N - 1) / (N - K); both transform with B^-1, so the covariance of beta is
    B^-1 V_theta B^-T. The tests check every number against statsmodels."""
    Xa = X.to_numpy(dtype=float)
    n, k = Xa.shape
    if n <= k or (groups < 0).any() or not (np.isfinite(Xa).all() and np.isfinite(y).all() and np.isfinite(w).all()
                                            and np.isfinite(t).all()):
        return None  # a missing value or matched set: statsmodels' fit says what it does with it
    if k < 63 and ((Xa == 0) | (Xa == 1)).all():  # indicator columns: a row's bits are its cell
        bits = (Xa.astype(bool) @ (np.int64(1) << np.arange(k, dtype=np.int64))).astype(np.int64)
        _, first, cell = np.unique(bits, return_index=True, return_inverse=True)
        if len(first) != k:
            return None
    else:
        cell = np.zeros(n, dtype=np.int64)
        for j in range(k):  # the cell of each row: its distinct row of X, by successive factorising
            code, levels = pd.factorize(Xa[:, j])
            cell = pd.factorize(cell * len(levels) + code)[0].astype(np.int64)
            if cell.max() >= k:
                return None
        first = np.unique(cell, return_index=True)[1]
    cell = np.asarray(cell, dtype=np.int64).reshape(-1)
    B = Xa[first]
    if len(B) != k or np.linalg.matrix_rank(B) < k:
        return None
    Y = np.bincount(cell, weights=w * y, minlength=k)
    T = np.bincount(cell, weights=w * t, minlength=k)
    if (Y <= 0).any() or (T <= 0).any():
        return None
    lam = Y / T
    G = int(groups.max()) + 1
    S = np.bincount(groups.astype(np.int64) * k + cell, weights=w * (y - lam[cell] * t), minlength=G * k).reshape(G, k)
    V = (S.T @ S) / np.outer(Y, Y) * (G / (G - 1) * (n - 1) / (n - k))
    Binv = np.linalg.inv(B)
    beta = Binv @ np.log(lam)
    cov = Binv @ V @ Binv.T
    names = list(X.columns)
    return SaturatedPoissonFit(pd.Series(beta, index=names), pd.DataFrame(cov, index=names, columns=names))


def poisson_did_fit(L: pd.DataFrame, X: pd.DataFrame) -> tuple[object, bool]:
    """The matched DiD's Poisson GLM on long data (:func:`did_long`) with design matrix ``X``:
    log(person-years) offset, var_weights = matching weights (when not all 1), cluster-robust
    (sandwich) errors by matched set when there are at least 3 sets. Returns (the fit, whether the
    errors are cluster-robust).

    The designs the analyses use are saturated in their cells (treated x post, within each
    subgroup for the interaction test): for them, when every cell has events and the errors are
    cluster-robust, the fit is the closed form of :func:`_saturated_fit` (the same numbers as
    statsmodels, to its convergence tolerance, without iterating); otherwise it is statsmodels'
    GLM."""
    w = L["weight"].to_numpy(dtype=float)
    y = L["events"].to_numpy(dtype=float)
    t = L["days"].to_numpy(dtype=float) / 365.25
    groups = pd.factorize(L["subclass"])[0]
    if groups.max() >= 2:
        fit = _saturated_fit(y, w, t, X, groups)
        if fit is not None:
            return fit, True
    import statsmodels.api as sm

    kw = {} if np.allclose(w, 1.0) else {"var_weights": w}
    model = sm.GLM(y, X, family=sm.families.Poisson(), offset=np.log(t), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if groups.max() >= 2:
            return model.fit(cov_type="cluster", cov_kwds={"groups": groups}), True
        return model.fit(), False


def fit_ratio_of_rate_ratios(L: pd.DataFrame, confidence: float = 0.95, min_matched_sets: int = 3) -> dict:
    """Ratio of rate ratios from long DiD data (:func:`did_long`) with its interval and p-value.

    Returns a dict: ``n_matched_sets`` (referred people with a baseline or post row), the four cell
    event counts, ``log_rrr``, ``se_log_rrr`` (cluster-robust), ``ratio_of_rate_ratios`` with
    ``ratio_of_rate_ratios_lower``/``_upper`` (Wald interval on the log scale at ``confidence``),
    ``p_value`` (two-sided Wald) and ``status``: ``"estimated"``, ``"too small: fewer than N matched
    sets"`` or ``"not estimable: no events in one of the four cells"`` (then the estimate is missing).
    """
    z = z_value(confidence)
    n_sets = int(L.loc[L["treated"] == 1, "subclass"].nunique())
    out = {"n_matched_sets": n_sets, **_cell_events(L), "log_rrr": np.nan, "se_log_rrr": np.nan, "ratio_of_rate_ratios": np.nan,
           "ratio_of_rate_ratios_lower": np.nan, "ratio_of_rate_ratios_upper": np.nan, "p_value": np.nan}
    if n_sets < max(min_matched_sets, 3):
        return {**out, "status": f"too small: fewer than {max(min_matched_sets, 3)} matched sets"}
    if min(out["events_treated_pre"], out["events_treated_post"], out["events_comparator_pre"], out["events_comparator_post"]) == 0:
        return {**out, "status": "not estimable: no events in one of the four cells"}
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"].astype(float), "post": L["post"].astype(float),
                      "treated_post": (L["treated"] * L["post"]).astype(float)})
    fit, _ = poisson_did_fit(L, X)
    b, se = float(fit.params["treated_post"]), float(fit.bse["treated_post"])
    out.update(log_rrr=b, se_log_rrr=se, ratio_of_rate_ratios=float(np.exp(b)), ratio_of_rate_ratios_lower=float(np.exp(b - z * se)),
               ratio_of_rate_ratios_upper=float(np.exp(b + z * se)), p_value=float(2 * stats.norm.sf(abs(b / se))))
    return {**out, "status": "estimated"}


def wald_equality_test(estimates, covariance) -> tuple[float, int, float]:
    """Wald test that K estimates are all equal: chi2 = (Cb)' (C V C')^-1 (Cb), C the (K-1) x K
    matrix of successive differences; df = K - 1; returns (chi2, df, p).

    For K = 2 with independent estimates this is z^2 with z = (b1 - b2) / sqrt(se1^2 + se2^2)
    (Altman & Bland 2003, BMJ 326:219)."""
    b = np.asarray(estimates, dtype=float)
    V = np.asarray(covariance, dtype=float)
    K = len(b)
    if K < 2:
        return np.nan, 0, np.nan
    C = np.zeros((K - 1, K))
    C[np.arange(K - 1), np.arange(K - 1)] = 1.0
    C[np.arange(K - 1), np.arange(1, K)] = -1.0
    diff = C @ b
    chi2 = float(diff @ np.linalg.solve(C @ V @ C.T, diff))
    return chi2, K - 1, float(stats.chi2.sf(chi2, K - 1))


def holm(p_values) -> np.ndarray:
    """Holm (1979, Scand J Stat 6:65) step-down adjusted p-values: the i-th smallest of m p-values
    times (m - i + 1), made non-decreasing by a running maximum, capped at 1 (the same as R's
    ``p.adjust(p, "holm")`` and statsmodels' ``multipletests(method="holm")``, checked in the tests;
    written out because ``multipletests`` runs a garbage collection on every call). Missing p-values
    stay missing and do not count as tests."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
        out[order] = adj
    return out


def _interaction(L: pd.DataFrame, group: pd.Series, levels: list) -> tuple[float, int, float]:
    """Fully interacted Poisson GLM (per-level intercept, treated, post, treated x post), cluster-robust
    by matched set; Wald test that the per-level treated x post terms are equal."""
    cols = {}
    for i, lev in enumerate(levels):
        g = (group == lev).to_numpy(dtype=float)
        cols[f"g{i}"] = g
        cols[f"g{i}_treated"] = g * L["treated"].to_numpy()
        cols[f"g{i}_post"] = g * L["post"].to_numpy()
        cols[f"g{i}_treated_post"] = g * (L["treated"] * L["post"]).to_numpy()
    X = pd.DataFrame(cols, index=L.index)
    fit, _ = poisson_did_fit(L, X)
    names = [f"g{i}_treated_post" for i in range(len(levels))]
    V = fit.cov_params().loc[names, names].to_numpy()
    return wald_equality_test(fit.params[names].to_numpy(), V)


def _levels(values: pd.Series, column: str) -> list:
    present = pd.unique(values.dropna())
    order = LEVEL_ORDER.get(column)
    if order is not None:
        known = [v for v in order if v in set(present)]
        return known + sorted([v for v in present if v not in set(order)], key=str)
    return sorted(present.tolist(), key=str)


# ------------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubgroupEffects:
    """Subgroup effects and interaction tests (:func:`subgroup_effects`).

    estimates: one row per factor x subgroup x setting x window x cohort: ``n_matched_sets``
        (referred people, count), ``n_comparators`` and ``n_comparators_same_subgroup`` (people,
        counts), the four cell event counts (``events_treated_pre`` ... ``events_comparator_post``;
        counts of events, unweighted), ``ratio_of_rate_ratios`` with ``_lower``/``_upper``,
        ``p_value``, ``p_holm`` (Holm over all subgroup estimates), ``n_tests`` (size of that
        family), ``status``, ``confidence``.
    interactions: one row per factor x setting x window x cohort: ``n_subgroups``,
        ``n_subgroups_tested``, ``subgroups_not_tested`` (';'-separated), ``chi2``, ``df``,
        ``p_interaction``, ``p_interaction_holm`` (Holm over all interaction tests), ``n_tests``.
    """

    estimates: pd.DataFrame
    interactions: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """The estimates with their factor's interaction test beside them (one row per subgroup estimate)."""
        keys = ["factor", "setting", "window_months", "cohort"]
        i = self.interactions[keys + ["p_interaction", "p_interaction_holm"]]
        return self.estimates.merge(i, on=keys, how="left")


def subgroup_effects(d: pd.DataFrame, pairs: pd.DataFrame, factors: Sequence[str], settings: Sequence[str] = ("gp", "ae"),
                     windows_months: Sequence[int] = (6, 12), cohorts: Sequence[str] = ("itt",), baseline: str = "baseline",
                     min_matched_sets: int = 20, confidence: float = 0.95) -> SubgroupEffects:
    """Matched DiD ratio of rate ratios within each level of each factor, with interaction tests.

    ``d``/``pairs``: the evaluation's matched cohort frame and pairs (``spstudy.analyses.evaluation.run``:
    ``res.units``, ``res.match.pairs``); ``factors``: columns of ``d`` defining subgroups by
    the referred member of each set, e.g. ``["ethnic_group", "imd_quintile", "age_band",
    "main_reason", "borough"]`` (see :func:`add_subgroup_columns`). A factor with a single level in
    the data (e.g. ``borough`` in a borough's own pack) gives one estimate and no test.
    ``min_matched_sets``: smallest subgroup estimated (fewer: status "too small"). Estimates and
    intervals as :func:`fit_ratio_of_rate_ratios`; tests and multiplicity as in the module docstring.
    Units: rates are per person-year inside the model; the ratio of rate ratios is unitless.
    """
    z_value(confidence)
    factors = list(factors)
    require_columns(d, factors, "factors", "add main_reason/borough with add_subgroup_columns")
    t = d.set_index("index_id")
    referred_ids = pairs.drop_duplicates("subclass")["treated_id"]
    for f in factors:
        na = t.loc[referred_ids.to_numpy(), f].isna()
        if na.any():
            raise ValueError(f"d.{f}: missing for {int(na.sum())} matched referred people (index_id {referred_ids[na.to_numpy()].head(5).tolist()}); "
                             "code them (e.g. 'Not recorded') before estimating subgroups")
    est_rows, int_rows = [], []
    for s in settings:
        for m in windows_months:
            for c in cohorts:
                L = did_long(d, pairs, s, m, c, baseline)
                set_treated = pairs.drop_duplicates("subclass").set_index("subclass")["treated_id"]
                for f in factors:
                    grp = L["subclass"].map(set_treated).map(t[f])
                    ctrl_val = pd.Series(t.loc[pairs["control_id"].to_numpy(), f].to_numpy(), index=pairs.index)
                    ref_val = pd.Series(t.loc[pairs["treated_id"].to_numpy(), f].to_numpy(), index=pairs.index)
                    same = ctrl_val.notna() & (ctrl_val.astype(str) == ref_val.astype(str))
                    levels = _levels(grp, f)
                    tested = []
                    for lev in levels:
                        Lg = L[grp == lev]
                        r = fit_ratio_of_rate_ratios(Lg, confidence=confidence, min_matched_sets=min_matched_sets)
                        in_lev = pairs["subclass"].isin(set(Lg["subclass"]))
                        est_rows.append({"factor": f, "subgroup": str(lev), "setting": s, "window_months": int(m), "cohort": c,
                                         "n_matched_sets": r["n_matched_sets"], "n_comparators": int(pairs.loc[in_lev, "control_id"].nunique()),
                                         "n_comparators_same_subgroup": (int(pairs.loc[in_lev & same, "control_id"].nunique()) if ctrl_val.notna().any() else pd.NA),
                                         **{k: r[k] for k in ("events_treated_pre", "events_treated_post", "events_comparator_pre", "events_comparator_post")},
                                         "ratio_of_rate_ratios": r["ratio_of_rate_ratios"], "ratio_of_rate_ratios_lower": r["ratio_of_rate_ratios_lower"],
                                         "ratio_of_rate_ratios_upper": r["ratio_of_rate_ratios_upper"], "p_value": r["p_value"], "status": r["status"]})
                        if r["status"] == "estimated":
                            tested.append(lev)
                    not_tested = [str(v) for v in levels if v not in tested]
                    if len(tested) >= 2:
                        keep = grp.isin(tested)
                        chi2, df, p = _interaction(L[keep].reset_index(drop=True), grp[keep].reset_index(drop=True), tested)
                    else:
                        chi2, df, p = np.nan, 0, np.nan
                    int_rows.append({"factor": f, "setting": s, "window_months": int(m), "cohort": c, "n_subgroups": len(levels),
                                     "n_subgroups_tested": len(tested), "subgroups_not_tested": ";".join(not_tested),
                                     "chi2": chi2, "df": df, "p_interaction": p})
    est = pd.DataFrame(est_rows)
    est["n_comparators_same_subgroup"] = est["n_comparators_same_subgroup"].astype("Int64")  # missing: comparators have no value (e.g. main_reason)
    est["p_holm"] = holm(est["p_value"])
    est["n_tests"] = int(est["p_value"].notna().sum())
    est["confidence"] = confidence
    ints = pd.DataFrame(int_rows)
    ints["p_interaction_holm"] = holm(ints["p_interaction"])
    ints["n_tests"] = int(ints["p_interaction"].notna().sum())
    return SubgroupEffects(estimates=est.reset_index(drop=True), interactions=ints.reset_index(drop=True))
