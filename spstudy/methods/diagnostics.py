"""Diagnostics that decide what a matched service-use evaluation may claim.

The matched difference in differences (:mod:`spstudy.analyses.evaluation`) assumes that, without social
prescribing, referred people's use would have moved like their matched comparators' between the
baseline window (months -6..-4 before referral) and the post window. Nothing in the estimate itself
shows whether that holds. This module holds the checks that can show it failing, a second estimator
that survives one way it fails, and the written rules that turn the checks into a verdict.

* :func:`fit_event_study`: the event study, a Poisson model of monthly counts with matched-set x
  month fixed effects and a referred x month coefficient for every month, cluster-robust by
  matched set. This is pyfixest's ``fepois("events ~ i(month, treated) | set^month",
  vcov={"CRV1": "set"})``; with one fixed effect per set and month the model is the conditional
  (binomial) Poisson model, which is solved here exactly in closed-form Newton steps (every month
  has its own parameter), 40 times faster than pyfixest on the NCL data with the same answer
  (``tests/*/test_diagnostics.py`` checks it against pyfixest to 1e-6).
* :func:`event_study_table`: per-month rate ratios relative to a stated reference period (the DiD
  baseline window), with intervals.
* :func:`pretrend_test`, :func:`rise_onset`, :func:`post_transient`: the pre-trend test (a joint
  Wald test of the clean pre-period months before the matching window), the month where the
  pre-referral rise starts, and whether the first months after referral still carry it.
* :func:`trend_adjusted`: the robust estimator, a comparative interrupted time series on the event
  study (Bernal, Cummins & Gasparrini 2018, Int J Epidemiol 47:2082; Lopez Bernal et al. 2017,
  Int J Epidemiol 46:348): a linear differential trend fitted on the clean pre-period, extrapolated,
  and the effect measured after a post-referral washout. It holds under selection on a rising trend
  (linear on the log scale) and when the pre-referral rise spills over into the first months.
* :func:`e_value`: VanderWeele & Ding (2017), Ann Intern Med 167:268.
* :func:`check`, :func:`verdicts`: the rules (thresholds are parameters, ``evaluation.verdict``).

Every function takes plain values and tidy DataFrames; every interval takes ``confidence``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, stats

from spstudy.methods.checks import require_columns
from spstudy.methods.stats import z_value

CREDIBLE = "credible"
SENSITIVE = "sensitive"
NOT_CREDIBLE = "not credible: the comparison group does not show what would have happened"
VERDICTS = (CREDIBLE, SENSITIVE, NOT_CREDIBLE)
PASS, FAIL, INCONCLUSIVE, NOT_AVAILABLE = "pass", "fail", "inconclusive", "not available"




# ============================================================================ event study

@dataclass(frozen=True)
class EventStudyFit:
    """One event-study fit: a coefficient per relative month and their cluster-robust covariance.

    ``theta[i]`` is the log ratio of the referred people's rate to their matched comparators' rate
    in month ``months[i]`` (the matched-set x month fixed effects absorb everything common to a set
    in a month); ``vcov`` is its CRV1 covariance (clustered by matched set, small-sample factor
    G/(G-1)). ``counts`` is a tidy table per month: month, n_sets (matched sets with exposure in
    both groups), events_referred, events_comparators (counts of events), days_referred,
    days_comparators (person-days at risk).
    """

    months: np.ndarray
    theta: np.ndarray
    vcov: np.ndarray
    counts: pd.DataFrame
    n_clusters: int

    def index(self, months) -> np.ndarray:
        pos = {int(m): i for i, m in enumerate(self.months)}
        missing = [m for m in months if int(m) not in pos]
        if missing:
            raise ValueError(f"event study has no coefficient for months {missing} (fitted months {self.months.min()}..{self.months.max()})")
        return np.array([pos[int(m)] for m in months], dtype=int)

    def contrast(self, weights: dict[int, float]) -> tuple[float, float]:
        """Estimate and standard error of sum_k w_k theta_k."""
        c = np.zeros(len(self.months))
        for m, w in weights.items():
            c[self.index([m])[0]] += w
        return float(c @ self.theta), float(np.sqrt(max(c @ self.vcov @ c, 0.0)))


def fit_event_study(panel: pd.DataFrame, tol: float = 1e-12, max_iter: int = 100) -> EventStudyFit:
    """Fit the event study: Poisson, matched-set x month fixed effects, referred x month effects.

    ``panel``: one row per unit x relative month with columns ``subclass`` (matched set),
    ``treated`` (1 referred, 0 comparator), ``month`` (integer, months from the index date),
    ``events`` (count) and ``days`` (person-days at risk in the month, >= 0). Several comparators
    in a set are pooled (their events and days summed), which is exact for the Poisson model.

    Model: E[events_gsm] = days_gsm exp(alpha_sm + g theta_m), g = 1 for the referred person. The
    fixed effect alpha_sm of set s in month m is conditioned out: given the set-month total n_sm,
    the referred person's count is binomial with logit p = log(days_1sm / days_0sm) + theta_m,
    which gives the fixed-effects Poisson MLE exactly (Hausman, Hall & Griliches 1984,
    Econometrica 52:909; Cameron & Trivedi 2013, Regression Analysis of Count Data, s.9.2). Cells
    with no exposure in one group or no events carry no information and drop out. Covariance:
    cluster-robust by matched set (sandwich of per-set scores), times G/(G-1) as pyfixest's CRV1
    with ``ssc(k_adj=False, G_adj=True)``.

    Raises ValueError naming the columns if they are missing, and the months whose coefficient is
    not estimable (no events in one group in that month).
    """
    need = ["subclass", "treated", "month", "events", "days"]
    require_columns(panel, need, "panel")
    if panel.empty:
        raise ValueError("fit_event_study: panel has no rows")
    bad = ~panel["treated"].isin([0, 1])
    if bad.any():
        raise ValueError(f"fit_event_study: column 'treated' must be 0/1; rows {list(np.flatnonzero(bad)[:5])}")
    if (panel["events"] < 0).any() or (panel["days"] < 0).any():
        raise ValueError("fit_event_study: columns 'events' and 'days' must be non-negative")
    s_code, s_uni = pd.factorize(panel["subclass"], sort=True)
    m_vals = panel["month"].to_numpy(dtype=np.int64)
    months = np.unique(m_vals)
    m_code = np.searchsorted(months, m_vals)
    M, G = len(months), len(s_uni)
    cell = s_code.astype(np.int64) * M + m_code
    tr = panel["treated"].to_numpy(dtype=np.int64)
    ev = panel["events"].to_numpy(dtype=np.float64)
    dy = panel["days"].to_numpy(dtype=np.float64)
    size = G * M
    y1 = np.bincount(cell, weights=ev * tr, minlength=size)
    y0 = np.bincount(cell, weights=ev * (1 - tr), minlength=size)
    d1 = np.bincount(cell, weights=dy * tr, minlength=size)
    d0 = np.bincount(cell, weights=dy * (1 - tr), minlength=size)
    both = (d1 > 0) & (d0 > 0)
    cm = np.arange(size) % M
    counts = pd.DataFrame({
        "month": months,
        "n_sets": np.bincount(cm[both], minlength=M).astype(np.int64),
        "events_referred": np.bincount(cm[both], weights=y1[both], minlength=M).astype(np.int64),
        "events_comparators": np.bincount(cm[both], weights=y0[both], minlength=M).astype(np.int64),
        "days_referred": np.bincount(cm[both], weights=d1[both], minlength=M).astype(np.int64),
        "days_comparators": np.bincount(cm[both], weights=d0[both], minlength=M).astype(np.int64),
    })
    keep = both & ((y1 + y0) > 0)
    idx = np.flatnonzero(keep)
    y1, n, off, mc, sc = y1[idx], (y1 + y0)[idx], np.log(d1[idx] / d0[idx]), cm[idx], idx // M
    sy1 = np.bincount(mc, weights=y1, minlength=M)
    sn = np.bincount(mc, weights=n, minlength=M)
    bad = (sy1 == 0) | (sy1 == sn)
    if bad.any():
        raise ValueError(f"fit_event_study: no events among the referred or among the comparators in months {[int(m) for m in months[bad]]}: "
                         "the coefficient is not estimable (too few people or events; shorten the event study or pool areas)")
    # start from the crude rate ratio; Newton steps are independent across months (diagonal Hessian)
    theta = np.log((sy1 / np.bincount(mc, weights=d1[idx], minlength=M)) / ((sn - sy1) / np.bincount(mc, weights=d0[idx], minlength=M)))
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(off + theta[mc])))
        score = sy1 - np.bincount(mc, weights=n * p, minlength=M)
        hess = np.bincount(mc, weights=n * p * (1 - p), minlength=M)
        step = score / hess
        theta = theta + step
        if np.max(np.abs(step)) < tol:
            break
    else:  # pragma: no cover - the problem is concave and separable
        raise RuntimeError("fit_event_study: Newton iterations did not converge")
    p = 1.0 / (1.0 + np.exp(-(off + theta[mc])))
    r = y1 - n * p
    hess = np.bincount(mc, weights=n * p * (1 - p), minlength=M)
    U = sparse.csr_matrix((r, (sc, mc)), shape=(G, M))
    meat = (U.T @ U).toarray()
    bread = np.diag(1.0 / hess)
    n_clusters = int(len(np.unique(sc)))
    adj = n_clusters / (n_clusters - 1) if n_clusters > 1 else np.nan
    V = adj * bread @ meat @ bread
    return EventStudyFit(months=months, theta=theta, vcov=V, counts=counts, n_clusters=n_clusters)


def event_study_table(fit: EventStudyFit, reference_months: tuple[int, int], confidence: float = 0.95) -> pd.DataFrame:
    """Per-month rate ratios relative to the reference period, with intervals.

    ``rate_ratio`` for month m = exp(theta_m - mean of theta over the reference months): how much
    higher the referred people's use is, relative to their matched comparators', than in the
    reference period (the DiD baseline window). Reference months show 1 (no interval). Columns:
    month, reference (bool), rate_ratio, rate_ratio_lower, rate_ratio_upper, log_rate_ratio, se,
    p_value, and the event and exposure counts of :class:`EventStudyFit` (events_referred and
    events_comparators are counts of events; n_sets counts matched sets, i.e. referred people).
    """
    z = z_value(confidence)
    ref = list(range(reference_months[0], reference_months[1] + 1))
    ri = fit.index(ref)
    rows = []
    for i, m in enumerate(fit.months):
        c = np.zeros(len(fit.months))
        c[i] += 1
        c[ri] -= 1 / len(ri)
        b, se = float(c @ fit.theta), float(np.sqrt(max(c @ fit.vcov @ c, 0.0)))
        is_ref = int(m) in ref
        rows.append({"month": int(m), "reference": is_ref, "log_rate_ratio": b, "se": np.nan if is_ref else se})
    t = pd.DataFrame(rows)
    t["rate_ratio"] = np.exp(t["log_rate_ratio"])
    t["rate_ratio_lower"] = np.exp(t["log_rate_ratio"] - z * t["se"])
    t["rate_ratio_upper"] = np.exp(t["log_rate_ratio"] + z * t["se"])
    t["p_value"] = 2 * stats.norm.sf(np.abs(t["log_rate_ratio"] / t["se"]))
    t = t.merge(fit.counts, on="month", how="left")
    return t[["month", "reference", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper", "log_rate_ratio", "se", "p_value",
              "n_sets", "events_referred", "events_comparators", "days_referred", "days_comparators"]]


# ============================================================================ checks

def _p_text(p: float) -> str:
    """A p-value in a sentence as the tables print one: three decimals, or '< 0.001'."""
    return "< 0.001" if p < 0.0005 else f"= {p:.3f}"


def check(estimate: float, se: float, p_value: float, margin: float, alpha: float, confidence: float = 0.95) -> str:
    """State of one diagnostic on the log scale: 'fail', 'inconclusive' or 'pass'.

    ``estimate`` is the bias the diagnostic implies for the effect estimate (log rate ratio; 0 = no
    bias). FAIL: significant at ``alpha`` AND |estimate| > log(1 + margin) (a bias both real and
    large enough to matter). INCONCLUSIVE: not a failure, but equivalence within +/- log(1 + margin)
    is not shown by two one-sided tests at ``alpha`` (Schuirmann 1987, J Pharmacokinet Biopharm
    15:657: the 1 - 2 alpha interval must lie inside the margin), so a bias as large as the margin
    cannot be ruled out; the equivalence view of pre-trend tests is Bilinski & Hatfield (2020),
    arXiv:1805.03273, and Hartman & Hidalgo (2018), Am J Polit Sci 62:1000. PASS otherwise.
    ``confidence`` is not used (kept for a uniform signature).
    """
    if not np.isfinite(estimate):
        return INCONCLUSIVE
    lm = np.log1p(margin)
    if np.isfinite(p_value) and p_value < alpha and abs(estimate) > lm:
        return FAIL
    z = float(stats.norm.ppf(1 - alpha))
    if not np.isfinite(se) or abs(estimate) + z * se > lm:
        return INCONCLUSIVE
    return PASS


def _p(est: float, se: float) -> float:
    return float(2 * stats.norm.sf(abs(est / se))) if se > 0 and np.isfinite(se) else np.nan


def pretrend_test(fit: EventStudyFit, clean_months: list[int], reference_months: tuple[int, int]) -> dict:
    """Pre-trend test over the clean pre-period (the months before the matching window).

    Joint Wald test that every clean pre-period month has the same referred/comparator ratio as the
    reference period (theta_k - mean theta_ref = 0 for all k; chi-squared with len(clean_months)
    degrees of freedom, cluster-robust covariance), and the mean deviation of the reference period
    from the clean months, log scale: ``baseline_deviation`` = mean theta_ref - mean theta_clean.
    A positive deviation means the referred people's use had already risen by the baseline window,
    and the matched DiD is biased by about that much (towards harm). The matching window is not in
    the test (balanced by construction, so its flatness says nothing), nor is the washout (it holds
    the pre-referral rise by design: see :func:`rise_onset`).
    """
    ref = list(range(reference_months[0], reference_months[1] + 1))
    ci, ri = fit.index(clean_months), fit.index(ref)
    C = np.zeros((len(ci), len(fit.months)))
    C[np.arange(len(ci)), ci] = 1
    C[:, ri] -= 1 / len(ri)
    b = C @ fit.theta
    S = C @ fit.vcov @ C.T
    stat = float(b @ np.linalg.solve(S, b))
    dev, se = fit.contrast({**{m: -1 / len(ci) for m in clean_months}, **{m: 1 / len(ri) for m in ref}})
    return {"pretrend_wald": stat, "pretrend_df": len(ci), "pretrend_p": float(stats.chi2.sf(stat, len(ci))),
            "baseline_deviation": dev, "baseline_deviation_se": se}


def rise_onset(fit: EventStudyFit, clean_months: list[int], search_months: list[int], margin: float, alpha: float) -> int | None:
    """The month where the pre-referral rise in use starts, or None if there is none.

    Scanning back from the last month before referral through ``search_months`` (e.g. -1, -2, ...
    down to the month after the matching window), a month is *raised* when the referred people's
    ratio to their comparators exceeds the clean pre-period level by more than ``margin`` and
    significantly (one-sided at ``alpha``). The onset is the earliest month of the unbroken run of
    raised months that ends at month -1. If the onset lies before the washout, the baseline window
    already holds part of the rise and the washout is too short for these data.
    """
    z = stats.norm.ppf(1 - alpha)
    onset = None
    for m in sorted(search_months, reverse=True):
        est, se = fit.contrast({m: 1.0, **{k: -1 / len(clean_months) for k in clean_months}})
        if est > np.log1p(margin) and est / se > z:
            onset = int(m)
        else:
            break
    return onset


def post_transient(fit: EventStudyFit, washout: int, last_month: int) -> dict:
    """Do the first months after referral differ from the later ones?

    ``transient`` (log scale) = mean theta over months 0..washout-1 minus mean theta over months
    washout..last_month. Positive = use in the first months after referral is raised relative to
    later: the tail of the pre-referral rise (or an effect that starts late). A window of W months
    that includes those months is biased by about transient x washout / W.
    """
    if washout < 1:
        return {"transient": 0.0, "transient_se": 0.0}
    early, late = range(0, washout), range(washout, last_month + 1)
    est, se = fit.contrast({**{m: 1 / len(early) for m in early}, **{m: -1 / len(late) for m in late}})
    return {"transient": est, "transient_se": se}


def trend_adjusted(fit: EventStudyFit, clean_months: list[int], washout: int, window: int, last_month: int) -> dict:
    """Trend-adjusted effect (comparative interrupted time series on the event study).

    A linear differential trend theta_k = a + b k is fitted by generalised least squares on the
    clean pre-period months (covariance: the event study's cluster-robust one), extrapolated to the
    post months, and the effect for a window of ``window`` months is the mean deviation of theta_k
    from the trend over months washout..window-1 (log rate ratio; assumed constant over the window,
    so it stands for the whole window). Also returns the linearity test of the clean months
    (GLS residual chi-squared, len - 2 df, and the largest residual) and the drift of the deviations
    over months washout..last_month (OLS slope x span, log scale), and the mean residual of the last
    three clean months with its standard error (``linearity_end_residual``): a deviation that keeps falling
    after the washout is the tail of a pre-referral rise (or an effect that grows), which the
    estimator cannot tell apart.
    """
    ci = fit.index(clean_months)
    X = np.column_stack([np.ones(len(ci)), np.asarray(clean_months, dtype=float)])
    W = np.linalg.inv(fit.vcov[np.ix_(ci, ci)])
    A = np.linalg.solve(X.T @ W @ X, X.T @ W)  # 2 x |clean|: coefficients as linear maps of theta_clean
    Mn = len(fit.months)
    L = np.zeros((2, Mn))
    L[:, ci] = A
    g = L @ fit.theta
    resid = fit.theta[ci] - X @ g
    q = float(resid @ W @ resid)
    # mean residual of the last three clean months (nearest the extrapolation): the bias a bend
    # at the end of the clean period would carry into the estimate
    R = np.zeros((len(ci), Mn))
    R[np.arange(len(ci)), ci] = 1
    R -= X @ L
    ce = R[-3:].mean(axis=0)
    end, end_se = float(ce @ fit.theta), float(np.sqrt(max(ce @ fit.vcov @ ce, 0.0)))

    def deviation_map(ks):
        c = np.zeros(Mn)
        for k in ks:
            c[fit.index([k])[0]] += 1 / len(ks)
        kbar = float(np.mean(ks))
        return c - (L[0] + kbar * L[1])

    post = list(range(washout, window))
    c = deviation_map(post)
    est, se = float(c @ fit.theta), float(np.sqrt(max(c @ fit.vcov @ c, 0.0)))
    # drift of the deviations after the washout
    late = np.arange(washout, last_month + 1)
    w = (late - late.mean()) / np.sum((late - late.mean()) ** 2)
    cd = np.zeros(Mn)
    for k, wk in zip(late, w):
        cd[fit.index([int(k)])[0]] += wk
    cd -= float(np.sum(w * late)) * L[1]  # remove the extrapolated trend's own slope
    span = float(late[-1] - late[0]) if len(late) > 1 else 0.0
    drift, drift_se = float(cd @ fit.theta) * span, float(np.sqrt(max(cd @ fit.vcov @ cd, 0.0))) * span
    return {"log_rate_ratio": est, "se": se, "trend_slope": float(g[1]),
            "trend_slope_se": float(np.sqrt(max(L[1] @ fit.vcov @ L[1], 0.0))),
            "linearity_chi2": q, "linearity_df": len(ci) - 2, "linearity_p": float(stats.chi2.sf(q, len(ci) - 2)),
            "linearity_max_residual": float(np.max(np.abs(resid))), "linearity_end_residual": end, "linearity_end_residual_se": end_se,
            "drift": drift if len(late) > 1 else 0.0,
            "drift_se": drift_se if len(late) > 1 else np.inf}


# ============================================================================ E-value

def e_value(rate_ratio: float, lower: float | None = None, upper: float | None = None) -> dict:
    """E-value of a ratio estimate and of its confidence limit nearest the null.

    VanderWeele & Ding (2017), Ann Intern Med 167:268, eq. in Table 1: for a risk ratio RR > 1,
    E = RR + sqrt(RR x (RR - 1)); for RR < 1 use 1/RR. For the confidence interval, the E-value of
    the limit closer to 1, or 1 if the interval includes 1. It is the minimum strength of
    association (risk-ratio scale) that an unmeasured confounder would need with both referral and
    the outcome, beyond the measured covariates, to explain the estimate away. Applied here to rate
    ratios, as VanderWeele & Ding do for outcomes that are not rare when the ratio is a rate ratio
    of counts (their s. "Other effect measures": the bound holds for ratios of means of count
    outcomes). Returns {"e_value", "e_value_ci"} (NaN for a missing or non-positive estimate).
    """
    def ev(rr):
        if rr is None or not np.isfinite(rr) or rr <= 0:
            return np.nan
        r = rr if rr >= 1 else 1 / rr
        return float(r + np.sqrt(r * (r - 1)))

    out = {"e_value": ev(rate_ratio), "e_value_ci": np.nan}
    if rate_ratio is None or not np.isfinite(rate_ratio) or rate_ratio <= 0:
        return out
    if lower is None or upper is None or not (np.isfinite(lower) and np.isfinite(upper)):
        return out
    if lower <= 1 <= upper:
        out["e_value_ci"] = 1.0
    else:
        out["e_value_ci"] = ev(lower if rate_ratio > 1 else upper)
    return out


# ============================================================================ verdicts

_WORST = {PASS: 0, NOT_AVAILABLE: 0, INCONCLUSIVE: 1, FAIL: 2}


def _worst(*states: str) -> str:
    return max(states, key=lambda s: _WORST[s])


def verdicts(diagnostics: pd.DataFrame, margin: float, alpha: float, smd_warn: float, smd_fail: float,
             confidence: float = 0.95) -> pd.DataFrame:
    """Apply the written verdict rules to one row of diagnostics per (setting, window, cohort).

    ``diagnostics`` columns (log scale unless stated): setting, window_months, cohort,
    max_abs_smd; baseline_deviation, baseline_deviation_se, pretrend_p; placebo_log_rr,
    placebo_se; transient, transient_se (early minus late post months), washout (months);
    linearity_p, linearity_end_residual, linearity_end_residual_se; drift, drift_se; robust_available (bool);
    nc_log_rr, nc_se (NaN when no negative control); nc_robust_log_rr, nc_robust_se.

    The rules (thresholds: ``margin``, ``alpha``, ``smd_warn``, ``smd_fail``; each check's state by
    :func:`check` on the bias it implies for this window):

    1. Balance: max |SMD| after matching > smd_fail -> **not credible**; > smd_warn -> at best
       sensitive.
    2. Main design (matched DiD, baseline window, post window from referral) needs
       (a) pre-trend: the baseline window's deviation from the clean pre-period (the bias it
       implies) passes; (b) the months nearest referral: if the placebo nearest referral shows a
       rise just before referral, the rise must be over by referral, i.e. the post-referral
       transient check passes (implied bias = transient x washout / window); with no rise the
       transient check still applies but cannot fail the design on its own when it is merely
       inconclusive.
    3. The trend-adjusted estimator needs the clean pre-period to be linear (the GLS linearity
       test, with the mean residual of its last three months as the magnitude) and no drift after
       the washout (slope of the deviations from the trend over the rest of the window).
    4. Verdict: main checks all pass (and balance below smd_warn, negative control not failing)
       -> **credible**, headline = matched DiD. Main checks do not fail but some are inconclusive,
       or balance or the negative control warns -> **sensitive**, headline = matched DiD. A main
       check fails but the trend-adjusted checks do not -> **sensitive**, headline = trend-adjusted.
       Otherwise -> **not credible: the comparison group does not show what would have happened**
       (no headline).

    A not-credible estimate is never the headline and never valued (``valued`` False); the SROI
    values the ``headline_estimator`` of the other rows. Returns the diagnostics with the check
    states, verdict, headline_estimator ('matched_did', 'trend_adjusted' or 'none'), valued and a
    plain-English reason (no counts of people).
    """
    z_value(confidence)  # validates the argument
    rows = []
    for _, d in diagnostics.iterrows():
        W = int(d["window_months"])
        reasons = []
        smd = float(d["max_abs_smd"])
        bal = FAIL if smd > smd_fail else INCONCLUSIVE if smd > smd_warn else PASS
        if bal != PASS:
            reasons.append(f"the largest imbalance after matching is |SMD| {smd:.2f} (target below {smd_warn:g}, limit {smd_fail:g})")
        pre = check(d["baseline_deviation"], d["baseline_deviation_se"], d["pretrend_p"], margin, alpha, confidence)
        if pre != PASS:
            reasons.append(f"in the baseline window the referred people's use relative to comparators was {100 * np.expm1(d['baseline_deviation']):+.0f}% "
                           f"against the months before the matching window (pre-trend test p {_p_text(d['pretrend_p'])})"
                           + ("" if pre == FAIL else f", and the data cannot show the difference to be under the {100 * margin:g}% margin"))
        pl_p = _p(d["placebo_log_rr"], d["placebo_se"])
        placebo = check(d["placebo_log_rr"], d["placebo_se"], pl_p, margin, alpha, confidence)
        wash = int(d["washout"])
        share = min(wash, W) / W
        tb, tse = d["transient"] * share, d["transient_se"] * share
        trans = check(tb, tse, _p(d["transient"], d["transient_se"]), margin, alpha, confidence)
        if placebo == FAIL:
            reasons.append(f"use rose just before referral (placebo rate ratio {np.exp(d['placebo_log_rr']):.2f})")
        if trans != PASS and (placebo != PASS or trans == FAIL):
            reasons.append(f"the first {wash} months after referral differ from the later ones by {100 * np.expm1(d['transient']):+.0f}%, "
                           f"which moves a {W}-month estimate by about {100 * np.expm1(tb):+.0f}%"
                           + ("" if trans == FAIL else " (cannot be ruled out)"))
        near = trans if (placebo != PASS or trans == FAIL) else PASS
        main = _worst(pre, near)
        lin = check(d["linearity_end_residual"], d["linearity_end_residual_se"], d["linearity_p"], margin, alpha)
        lin = FAIL if lin == FAIL else PASS  # only a demonstrated bend stops the trend-adjusted estimator
        drift = check(d["drift"], d["drift_se"], _p(d["drift"], d["drift_se"]), margin, alpha, confidence)
        robust_ok = bool(d.get("robust_available", True)) and lin != FAIL and drift != FAIL
        nc_main = check(d["nc_log_rr"], d["nc_se"], _p(d["nc_log_rr"], d["nc_se"]), margin, alpha, confidence) if np.isfinite(d.get("nc_log_rr", np.nan)) else NOT_AVAILABLE
        nc_rob = check(d["nc_robust_log_rr"], d["nc_robust_se"], _p(d["nc_robust_log_rr"], d["nc_robust_se"]), margin, alpha, confidence) \
            if np.isfinite(d.get("nc_robust_log_rr", np.nan)) else NOT_AVAILABLE
        if bal == FAIL:
            verdict, head = NOT_CREDIBLE, "none"
        elif main != FAIL:
            nc = nc_main
            if nc == FAIL:
                reasons.append(f"the negative-control outcome changed by {100 * np.expm1(d['nc_log_rr']):+.0f}% although social prescribing should not change it")
            verdict = CREDIBLE if (main == PASS and bal == PASS and nc != FAIL) else SENSITIVE
            head = "matched_did"
        elif robust_ok:
            verdict, head = SENSITIVE, "trend_adjusted"
            reasons.append(f"the trend-adjusted estimate (linear pre-referral trend, first {wash} months after referral left out) is the headline")
            if nc_rob == FAIL:
                reasons.append(f"the negative-control outcome's trend-adjusted estimate is {100 * np.expm1(d['nc_robust_log_rr']):+.0f}%")
        else:
            verdict, head = NOT_CREDIBLE, "none"
            if lin == FAIL:
                reasons.append("the pre-referral difference does not follow a straight line, so no trend can be extrapolated")
            if drift == FAIL:
                reasons.append(f"after the first {wash} months the difference keeps moving ({100 * np.expm1(d['drift']):+.0f}% over the rest of the window), "
                               "so the end of the pre-referral rise cannot be told apart from an effect")
            if not bool(d.get("robust_available", True)):
                reasons.append("the trend-adjusted estimator is not available for this window")
        rows.append({**d.to_dict(), "balance_check": bal, "pretrend_check": pre, "placebo_check": placebo, "transient_check": trans,
                     "linearity_check": lin, "drift_check": drift, "negative_control_check": nc_main if head != "trend_adjusted" else nc_rob,
                     "main_design_check": main, "verdict": verdict, "headline_estimator": head, "valued": verdict != NOT_CREDIBLE,
                     "reason": _sentence("; ".join(reasons) if reasons else "balance, pre-trend, placebo and post-referral checks all pass")})
    return pd.DataFrame(rows)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def verdict_mapping(verdict_table: pd.DataFrame) -> dict[tuple[str, int, str], str]:
    """``{(setting, window_months, cohort): verdict}`` for the SROI and the key findings."""
    return {(r.setting, int(r.window_months), r.cohort): r.verdict for r in verdict_table.itertuples()}
