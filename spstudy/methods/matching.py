"""Propensity-score matching done the way R's MatchIt does it, scaled to millions of controls.

Reference implementation: MatchIt (Ho, Imai, King & Stuart; maintained by N. Greifer), CRAN
package, source https://github.com/kosukeimai/MatchIt. The pieces reproduced here are

* ``matchit(..., distance = "glm")``: an unpenalised logistic regression propensity score
  (R ``glm(family = binomial)``) -> :func:`propensity_score`;
* ``method = "nearest"``: greedy nearest-neighbour 1:k matching (``src/nn_matchC_vec.cpp``,
  ``R/matchit2nearest.R``) -> :func:`nearest_neighbour_match`;
* ``summary.matchit()`` balance statistics (``bal1var``/``smd_denom``/``wvar``/``qqsum``) and the
  "Sample Sizes" table -> :func:`balance_table` and :attr:`MatchResult.sample_sizes`.

MatchIt's rules that this module follows exactly (so that it gives the same matches):

1. All units are sorted by the distance measure (ties by row order). For each treated unit the
   candidates are the nearest *available* control to its left and to its right in that order; the
   left one wins ties (``abs(d_left - d_i) <= abs(d_right - d_i)``).
2. Treated units are taken in ``m.order`` order; the default for a propensity score is
   ``"largest"`` (highest score first; MatchIt >= 4.0, see ``?method_nearest``).
3. With ``ratio = k > 1`` matching is done in k rounds: every treated unit gets its first match
   before any gets its second (outer loop over rounds in ``nn_matchC_vec``).
4. A caliper is applied to the distance measure; a pair is allowed when
   ``|d_t - d_c| <= caliper``. With ``std.caliper = TRUE`` (MatchIt's default) the caliper is in
   units of ``sd(distance)`` over all non-discarded units (treated and control, n - 1 denominator).
5. Exact matching: matching only within strata of the exact variables.
6. ATT weights: a matched treated unit gets 1; a control gets the sum over the matched sets it is in
   of 1/(number of controls in the set); control weights are then scaled to average 1 over matched
   controls (MatchIt ``weights_matrixC`` + ``normalize = TRUE``). Without replacement the matched
   set ("subclass") of a treated unit is numbered by the treated unit's row order.

Austin (2011, Pharmaceutical Statistics 10:150-161) recommends matching on the *logit* of the
propensity score with a caliper of 0.2 standard deviations of the logit; that is this module's
default (``distance="logit"``, ``caliper=0.2``, ``caliper_scale="sd"``), the same as MatchIt's
``distance = "glm", link = "linear.logit", caliper = 0.2``. MatchIt's own default (match on the
score itself, no caliper) is ``distance="ps", caliper=None``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from spstudy.methods.checks import require_columns

__all__ = [
    "EstimandChangeWarning",
    "MatchResult",
    "PropensityModel",
    "propensity_model",
    "propensity_score",
    "nearest_neighbour_match",
    "balance_table",
    "love_plot",
    "overlap_plot",
    "time_large_match",
]

# Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
}

_ORDERS = ("largest", "smallest", "data", "random")
_DISTANCES = ("logit", "ps")
_CALIPER_SCALES = ("sd", "raw")
_DISCARDS = ("none", "treated", "control", "both")


class EstimandChangeWarning(UserWarning):
    """Some treated units were left unmatched, so the matched sample no longer targets the ATT."""


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_list(cols: str | Sequence[str] | None, arg: str) -> list[str]:
    if cols is None:
        return []
    if isinstance(cols, str):
        return [cols]
    cols = list(cols)
    if not all(isinstance(c, str) for c in cols):
        raise ValueError(f"`{arg}` must be a column name or a list of column names, got {cols!r}")
    return cols


def _check_no_missing(df: pd.DataFrame, cols: Sequence[str], arg: str) -> None:
    na = pd.Series({c: int(df[c].isna().sum()) for c in dict.fromkeys(cols)}, dtype="int64")
    na = na[na > 0]
    if len(na):
        detail = ", ".join(f"{c!r} ({n} missing)" for c, n in na.items())
        raise ValueError(
            f"`{arg}`: missing values are not allowed; columns with missing values: {detail}. "
            "Impute or drop these rows explicitly before matching."
        )


def _treatment_indicator(df: pd.DataFrame, treatment: str) -> np.ndarray:
    """Return the treatment column as an int8 0/1 array, or raise a ValueError."""
    require_columns(df, [treatment], "treatment")
    _check_no_missing(df, [treatment], "treatment")
    t = df[treatment]
    if pd.api.types.is_bool_dtype(t):
        arr = t.to_numpy(dtype=np.int8)
    else:
        values = pd.unique(t)
        bad = [v for v in values if not (isinstance(v, (int, float, np.integer, np.floating))
                                        and v in (0, 1))]
        if bad:
            raise ValueError(
                f"`treatment` column {treatment!r} must be coded 0/1 (or boolean); "
                f"offending values: {bad[:10]}"
            )
        arr = t.to_numpy(dtype=np.int8)
    n1 = int(arr.sum())
    if n1 == 0 or n1 == len(arr):
        raise ValueError(
            f"`treatment` column {treatment!r} must contain both treated (1) and control (0) "
            f"units; found {n1} treated and {len(arr) - n1} control"
        )
    return arr


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def _levels(s: pd.Series) -> list:
    """Levels in R's order: a Categorical's own order, otherwise sorted (R sorts strings)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [c for c in s.cat.categories if (s == c).any()]
    return sorted(pd.unique(s).tolist(), key=lambda v: str(v))


def _strata_codes(df: pd.DataFrame, exact: Sequence[str]) -> np.ndarray:
    """Integer code of the combination of the `exact` columns (0 when `exact` is empty)."""
    if not exact:
        return np.zeros(len(df), dtype=np.int64)
    codes = [pd.factorize(df[c], sort=True)[0].astype(np.int64) for c in exact]
    if len(codes) == 1:
        return codes[0]
    sizes = [int(c.max()) + 1 for c in codes]
    if float(np.prod(np.array(sizes, dtype=float))) >= 2.0**62:  # too many combinations for one integer
        return pd.MultiIndex.from_arrays(codes).factorize()[0].astype(np.int64)
    # the combination's code in order of first appearance (as MultiIndex.factorize numbers it),
    # via one integer per combination (mixed radix) instead of a MultiIndex
    combined = codes[0]
    for c, size in zip(codes[1:], sizes[1:]):
        combined = combined * size + c
    return pd.factorize(combined)[0].astype(np.int64)


# --------------------------------------------------------------------------------------------
# 1. Propensity score
# --------------------------------------------------------------------------------------------


def _design_matrix(df: pd.DataFrame, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Model matrix as R's ``model.matrix`` builds it: intercept, numeric columns as they are,
    categorical columns treatment-coded against their first level (named ``col[level]``).

    Returns (X, names): X is (rows, columns) float64 in column-major (Fortran) order, the memory
    layout of a pandas frame's values, which the IRLS fit's arithmetic is pinned to.
    """
    names = ["(Intercept)"]
    fill: list = [None]
    for c in covariates:
        s = df[c]
        if _is_categorical(s):
            codes, uniques = pd.factorize(s)
            code_of = {u: k for k, u in enumerate(uniques)}
            for lev in _levels(s)[1:]:
                names.append(f"{c}[{lev}]")
                fill.append((codes, code_of[lev]))
        else:
            names.append(c)
            fill.append(s)
    Xt = np.empty((len(names), len(df)))
    Xt[0] = 1.0
    for j in range(1, len(names)):
        f = fill[j]
        if isinstance(f, tuple):
            np.equal(f[0], f[1], out=Xt[j], casting="unsafe")
        else:
            Xt[j] = f.to_numpy(dtype=float)
    return Xt.T, names


def _is_binary(s: pd.Series) -> bool:
    """Whether a numeric or boolean column only holds 0 and 1 (no missing values here)."""
    v = s.to_numpy()
    return bool(np.all((v == 0) | (v == 1)))


def _separation_problems(df: pd.DataFrame, t: np.ndarray, covariates: Sequence[str]) -> list[str]:
    """Univariate checks for (quasi-)complete separation, naming columns and levels."""
    problems = []
    for c in covariates:
        s = df[c]
        if _is_categorical(s) or _is_binary(s):
            codes, uniques = pd.factorize(s, sort=True)
            m = len(uniques)
            n1s = np.bincount(codes[t == 1], minlength=m)
            n0s = np.bincount(codes[t == 0], minlength=m)
            for lev, n0, n1 in zip(pd.Index(uniques), n0s.tolist(), n1s.tolist()):
                if n0 == 0 or n1 == 0:
                    who = "treated" if n0 == 0 else "control"
                    problems.append(f"{c}={lev!r}: all {n0 + n1} units are {who}")
        else:
            x = s.to_numpy(dtype=float)
            x1, x0 = x[t == 1], x[t == 0]
            if x1.max() < x0.min() or x1.min() > x0.max():
                problems.append(
                    f"{c}: treated range [{x1.min():g}, {x1.max():g}] does not overlap control "
                    f"range [{x0.min():g}, {x0.max():g}]"
                )
    return problems


def _weighted_crossprod(X: np.ndarray, w: np.ndarray, z: np.ndarray, chunk: int = 262_144,
                        buffers: dict | None = None):
    """X'WX and X'Wz, accumulated over row chunks (bounded memory for millions of rows).

    The weighted chunk W X goes into a reused buffer laid out as ``xc * w[:, None]`` would be
    (pass the same ``buffers`` dict on every call of a fit), so the matrix products, and their
    bits, are those of the plain expression without allocating a chunk per step."""
    p = X.shape[1]
    G = np.zeros((p, p))
    g = np.zeros(p)
    buffers = {} if buffers is None else buffers
    for a in range(0, X.shape[0], chunk):
        xc = X[a:a + chunk]
        m = xc.shape[0]
        xw = buffers.get(m)
        if xw is None:  # first use: the plain expression fixes the buffer's layout
            xw = buffers[m] = xc * w[a:a + chunk, None]
        else:
            np.multiply(xc, w[a:a + chunk, None], out=xw)
        G += xw.T @ xc
        g += xw.T @ z[a:a + chunk]
    return G, g


def _linear_predictor(X: np.ndarray, params: np.ndarray) -> np.ndarray:
    """X @ params accumulated column by column, so that rows with identical covariates get
    bit-identical scores (a BLAS matrix-vector product may round identical rows differently,
    which would break ties between identical people arbitrarily)."""
    eta = np.zeros(X.shape[0])
    tmp = np.empty(X.shape[0])
    for j in range(X.shape[1]):
        np.multiply(X[:, j], params[j], out=tmp)
        eta += tmp
    return eta


def _logistic_irls(X: np.ndarray, y: np.ndarray, names: list[str], tol: float = 1e-10,
                   maxiter: int = 100) -> dict:
    """Maximum-likelihood logistic regression by iteratively reweighted least squares.

    The algorithm of R's ``glm.fit`` (start at mu = (y + 1/2)/2; each step regresses the working
    response z = eta + (y - mu)/w on X with weights w = mu(1 - mu); stop when
    |dev - dev_old| / (|dev| + 0.1) < tol, R's criterion with a tighter tol than R's 1e-8). The
    weighted least squares step solves the equilibrated normal equations, which keeps a fit on
    millions of rows to seconds; the tests check it against statsmodels' GLM to 1e-8.
    """
    mu = (y + 0.5) / 2
    eta = np.log(mu / (1 - mu))
    dev_old = np.inf
    params = np.zeros(X.shape[1])
    converged = False
    # the elementwise steps write into preallocated arrays (the same IEEE operations in the
    # same order as the textbook expressions, so bit-identical results, without temporaries)
    n = X.shape[0]
    w, z, buf = np.empty(n), np.empty(n), np.empty(n)
    chunks: dict = {}
    sign = -(2 * y - 1)
    lo, hi = np.finfo(float).eps, 1 - np.finfo(float).eps
    for it in range(maxiter):
        np.subtract(1, mu, out=w)
        np.multiply(mu, w, out=w)          # w = mu (1 - mu)
        np.subtract(y, mu, out=z)
        np.divide(z, w, out=z)
        np.add(eta, z, out=z)              # z = eta + (y - mu) / w
        G, g = _weighted_crossprod(X, w, z, buffers=chunks)
        d = 1 / np.sqrt(np.diag(G))
        Gs = G * d[:, None] * d[None, :]
        if it == 0:
            eig = np.linalg.eigvalsh(Gs)
            rank = int((eig > eig.max() * 1e-12).sum())
            if rank < X.shape[1]:
                raise ValueError(
                    f"`covariates`: the design matrix is rank deficient (rank {rank} < "
                    f"{X.shape[1]} columns {names}); some covariates are linear combinations "
                    "of others"
                )
        params = d * np.linalg.solve(Gs, d * g)
        eta = _linear_predictor(X, params)
        np.negative(eta, out=mu)
        np.exp(mu, out=mu)
        mu += 1
        np.divide(1, mu, out=mu)           # mu = 1 / (1 + exp(-eta))
        np.clip(mu, lo, hi, out=mu)
        np.multiply(sign, eta, out=buf)
        np.logaddexp(0, buf, out=buf)
        dev = 2 * np.sum(buf)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            converged = True
            break
        dev_old = dev
    return {"params": params, "eta": eta, "converged": converged, "deviance": dev,
            "iterations": it + 1}


@dataclass(frozen=True)
class PropensityModel:
    """A fitted propensity model: the scores (``ps``, ``logit_ps``, indexed like the input) and the
    logistic coefficients by design-matrix column name (``Intercept``, ``race[hispan]``, ...)."""

    scores: pd.DataFrame
    coefficients: dict[str, float]


def propensity_score(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    exact: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The scores of :func:`propensity_model`: columns ``ps`` and ``logit_ps``, indexed like ``df``."""
    return propensity_model(df, treatment, covariates, exact).scores


def propensity_model(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    exact: Sequence[str] | None = None,
) -> PropensityModel:
    """Propensity score from an unpenalised logistic regression of treatment on covariates.

    Same model as MatchIt's ``distance = "glm"`` (R ``glm(treat ~ ..., family = binomial)``),
    fitted by R's IRLS algorithm (:func:`_logistic_irls`; agrees with statsmodels' GLM Binomial
    to 1e-8, see the tests) so that two million rows fit in seconds. Categorical (non-numeric)
    covariates are dummy-coded against their first level (a ``pandas.Categorical``'s first
    category, otherwise the alphabetically first value, as R does); numeric and boolean columns
    enter linearly. Columns named in ``exact`` (the strata you will match exactly within) are
    added as categorical main effects; strata holding only treated or only control units are a
    separation error (drop them first: they cannot be matched exactly anyway). Rows with
    identical covariates get bit-identical scores.

    Returns a :class:`PropensityModel`: ``scores`` is a DataFrame indexed like ``df`` with columns
    ``ps`` (probability of treatment, 0-1) and ``logit_ps`` (the linear predictor, log-odds);
    ``coefficients`` the fitted coefficients.

    Raises ValueError naming the columns when the treatment is not 0/1, covariates have missing
    values, a covariate is constant, or the data are (quasi-)separated (a level of a categorical
    or binary covariate, or a range of a numeric one, containing only treated or only control
    units), or the fit does not converge.
    """
    covariates = _as_list(covariates, "covariates")
    exact = _as_list(exact, "exact")
    if not covariates and not exact:
        raise ValueError("`covariates` must name at least one column")
    cols = covariates + [c for c in exact if c not in covariates]
    require_columns(df, cols, "covariates" if not exact else "covariates/exact")
    t = _treatment_indicator(df, treatment)
    if treatment in cols:
        raise ValueError(f"`covariates`: the treatment column {treatment!r} cannot be a covariate")
    _check_no_missing(df, cols, "covariates")
    for c in exact:
        if c in covariates:
            continue
        if not _is_categorical(df[c]):
            # exact strata always enter as categories, whatever their dtype
            df = df.assign(**{c: df[c].astype(str)})
    constant = [c for c in cols if len(df) == 0 or not bool((df[c] != df[c].iloc[0]).any())]
    if constant:
        raise ValueError(
            f"`covariates`: constant column(s) {constant} cannot be estimated; drop them"
        )

    problems = _separation_problems(df, t, cols)
    if problems:
        raise ValueError(
            "Perfect or quasi-complete separation: the propensity model cannot be estimated "
            "(coefficients diverge). Offending covariates: " + "; ".join(problems)
            + ". Drop or merge these levels (units in strata with no treated or no controls "
            "cannot be matched exactly anyway)."
        )

    X, names = _design_matrix(df, cols)
    fit = _logistic_irls(X, t.astype(float), names)
    params = fit["params"]
    eta = fit["eta"]
    if not fit["converged"]:
        sd = np.std(X, axis=0, ddof=1)
        big = pd.Series(np.abs(params[1:]) * sd[1:], index=names[1:])
        raise ValueError(
            "The propensity model did not converge (quasi-complete separation?). Covariates with the "
            f"largest standardised coefficients: {big.sort_values(ascending=False).head(5).round(2).to_dict()}"
        )
    extreme = int(np.sum(np.abs(eta) > 30))
    if extreme:
        # As R's glm: "fitted probabilities numerically 0 or 1 occurred" is a warning, not an error.
        # A handful of extreme units (e.g. the heaviest frequent attenders) fall outside any caliper.
        warnings.warn(f"{extreme} of {len(eta)} units have fitted propensity scores numerically 0 or 1 (|logit| > 30); "
                      "they will rarely find a match within the caliper", RuntimeWarning, stacklevel=2)
    ps = 1.0 / (1.0 + np.exp(-eta))
    return PropensityModel(pd.DataFrame({"ps": ps, "logit_ps": eta}, index=df.index), dict(zip(names, params.tolist())))


# --------------------------------------------------------------------------------------------
# 2. Nearest-neighbour matching
# --------------------------------------------------------------------------------------------


@dataclass
class MatchResult:
    """Output of :func:`nearest_neighbour_match`.

    pairs: one row per matched (treated, control) pair: ``subclass`` (matched-set number, the
        treated unit's), ``treated_id``, ``control_id``, ``match_round`` (1..k),
        ``treated_distance``, ``control_distance``, ``abs_distance`` (on the matching scale).
    units: one row per input row (same index as the input): ``id``, ``treated`` (0/1),
        ``distance``, ``discarded``, ``weight`` (MatchIt ATT matching weight, 0 if unmatched),
        ``subclass`` (matched set; missing when unmatched or when matching with replacement, as in
        MatchIt) and ``n_matches`` (controls matched to a treated unit / times a control was used).
    sample_sizes: tidy table with columns ``status`` (All, Matched (ESS), Matched, Unmatched,
        Discarded), ``group`` (Control, Treated) and ``n``, as MatchIt's ``summary()$nn``.
    caliper_width: the caliper on the distance scale (None without a caliper).
    n_treated_lost_to_caliper: treated units left with no match because, at their turn, the
        nearest available control (in their stratum) was outside the caliper.
    n_treated_no_controls_in_stratum: treated units whose exact stratum holds no controls.
    n_treated_pool_exhausted: treated units left with no match because, at their turn, no
        control was left in their stratum (matching without replacement).
    n_treated_fewer_than_k: treated units that got at least one but fewer than k matches.
    settings: the arguments used.
    """

    pairs: pd.DataFrame
    units: pd.DataFrame
    sample_sizes: pd.DataFrame
    caliper_width: float | None
    n_treated_lost_to_caliper: int
    n_treated_no_controls_in_stratum: int
    n_treated_pool_exhausted: int
    n_treated_fewer_than_k: int
    settings: dict = field(default_factory=dict)

    @property
    def sample_size_table(self) -> pd.DataFrame:
        """The sample sizes laid out as MatchIt prints them (rows status, columns group)."""
        order = ["All", "Matched (ESS)", "Matched", "Unmatched", "Discarded"]
        wide = self.sample_sizes.pivot(index="status", columns="group", values="n")
        return wide.loc[order, ["Control", "Treated"]]

    @property
    def weights(self) -> pd.Series:
        """Matching weights indexed like the input data frame."""
        return self.units["weight"]


def _distance(score: np.ndarray, distance: str, col: str) -> np.ndarray:
    if distance not in _DISTANCES:
        raise ValueError(f"`distance` must be one of {_DISTANCES}, got {distance!r}")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"`score` column {col!r} has non-finite values")
    if distance == "ps":
        return score.astype(float)
    bad = (score <= 0) | (score >= 1)
    if bad.any():
        raise ValueError(
            f"`score` column {col!r} must be a probability strictly between 0 and 1 for "
            f"distance='logit'; {int(bad.sum())} value(s) outside, e.g. {score[bad][:5].tolist()}"
        )
    return np.log(score) - np.log1p(-score)


def _discard(dist: np.ndarray, t: np.ndarray, discard: str) -> np.ndarray:
    """MatchIt ``discard``: drop units outside the range of the other group's distance."""
    if discard not in _DISCARDS:
        raise ValueError(f"`discard` must be one of {_DISCARDS}, got {discard!r}")
    out = np.zeros(len(t), dtype=bool)
    d1, d0 = dist[t == 1], dist[t == 0]
    if discard in ("treated", "both"):
        out |= (t == 1) & ((dist < d0.min()) | (dist > d0.max()))
    if discard in ("control", "both"):
        out |= (t == 0) & ((dist < d1.min()) | (dist > d1.max()))
    return out


def _treated_order(dist_t: np.ndarray, order: str, rng) -> np.ndarray:
    """Positions of the treated units in matching order (R ``order()``, stable for ties)."""
    if order == "largest":
        return np.argsort(-dist_t, kind="stable")
    if order == "smallest":
        return np.argsort(dist_t, kind="stable")
    if order == "data":
        return np.arange(len(dist_t))
    return rng.permutation(len(dist_t))


def _greedy_without_replacement(
    c_dist: np.ndarray, split: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    t_dist: np.ndarray, t_order: np.ndarray, k: int, width: float,
) -> np.ndarray:
    """Greedy matching without replacement on sorted control distances.

    ``c_dist`` are the controls' distances sorted by (stratum, distance, row); treated unit i's
    nearest candidates are the available controls just left of ``split[i]`` and at or right of it,
    restricted to its stratum block ``[lo[i], hi[i])``. Availability is kept in two union-find
    "next available" structures (rightwards and leftwards, with path compression) that store
    only the controls already taken (a dict each), so each search is near O(1) and nothing is
    allocated per control. Returns an (n_treated, k) array of control positions (-1 = no match)
    and, per treated unit, why its first match failed (0 matched, 1 no control left in its
    stratum, 2 caliper).
    """
    n_c = len(c_dist)
    right: dict[int, int] = {}  # taken j -> j + 1 (next candidate to the right)
    left: dict[int, int] = {}   # taken j, stored at j + 1 -> j (next candidate to the left)
    cd = c_dist
    td = t_dist.tolist()
    sp, los, his = split.tolist(), lo.tolist(), hi.tolist()
    n_t = len(td)
    mm = [[-1] * n_t for _ in range(k)]
    why = [0] * n_t
    n_left = n_c
    order = t_order.tolist()
    for r in range(k):
        mr = mm[r]
        for i in order:
            if n_left == 0:  # MatchIt stops when no control is left
                if r == 0:
                    for q in range(n_t):
                        if mr[q] < 0 and why[q] < 1:
                            why[q] = 1
                return np.array(mm, dtype=np.int64).T.reshape(n_t, k), np.array(why, dtype=np.int8)
            s, a, b, d = sp[i], los[i], his[i], td[i]
            # smallest available control >= s (path-compressed walk over taken ones)
            jr = s
            while jr in right:
                jr = right[jr]
            x = s
            while x != jr:
                right[x], x = jr, right[x]
            # largest available control <= s - 1 (left[] is indexed by control + 1)
            y = s
            while y in left:
                y = left[y]
            x = s
            while x != y:
                left[x], x = y, left[x]
            jl = y - 1
            okl = jl >= a
            okr = jr < b
            if okl and okr:
                dl, dr = abs(cd[jl] - d), abs(cd[jr] - d)
                j, dj = (jl, dl) if dl <= dr else (jr, dr)
            elif okl:
                j, dj = jl, abs(cd[jl] - d)
            elif okr:
                j, dj = jr, abs(cd[jr] - d)
            else:
                if r == 0:
                    why[i] = 1
                continue
            if dj > width:
                if r == 0:
                    why[i] = 2
                continue
            mr[i] = j
            right[j] = j + 1
            left[j + 1] = j
            n_left -= 1
    return np.array(mm, dtype=np.int64).T.reshape(n_t, k), np.array(why, dtype=np.int8)


def _nearest_with_replacement(
    c_dist: np.ndarray, split: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    t_dist: np.ndarray, k: int, width: float,
) -> np.ndarray:
    """Matching with replacement: each treated unit takes its k nearest controls (within its
    stratum and the caliper), merging the left and right neighbours with ties going left exactly
    as MatchIt's rounds do. Vectorised; returns (n_treated, k) control positions (-1 = none)."""
    n_t = len(t_dist)
    offs = np.arange(1, k + 1)
    left_pos = split[:, None] - offs[None, :]          # s-1, s-2, ..., s-k
    right_pos = split[:, None] + offs[None, :] - 1     # s, s+1, ..., s+k-1
    pos = np.concatenate([left_pos, right_pos], axis=1)
    valid = np.concatenate([left_pos >= lo[:, None], right_pos < hi[:, None]], axis=1)
    safe = np.clip(pos, 0, max(len(c_dist) - 1, 0))
    diff = np.abs(c_dist[safe] - t_dist[:, None]) if len(c_dist) else np.full(pos.shape, np.inf)
    diff = np.where(valid & (diff <= width), diff, np.inf)
    order = np.argsort(diff, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(pos, order, axis=1)
    ok = np.isfinite(np.take_along_axis(diff, order, axis=1))
    why = np.where(ok[:, 0], 0, np.where(hi > lo, 2, 1)).astype(np.int8)
    return np.where(ok, chosen, -1).reshape(n_t, k), why


def _sort_units(dist: np.ndarray, strata: np.ndarray, keep: np.ndarray, stratified: bool) -> np.ndarray:
    """Rows with ``keep``, ordered by (stratum, distance, row): the same permutation as
    ``el[np.lexsort((el, dist[el], strata[el]))]`` with ``el = np.flatnonzero(keep)``, by a stable
    sort on the distance (ties stay in row order) followed, with strata, by a stable sort on the
    stratum code (a radix sort when there are at most 65,536 strata)."""
    all_kept = bool(keep.all())
    el = None if all_kept else np.flatnonzero(keep)
    d = dist if all_kept else dist[el]
    srt = np.argsort(d, kind="stable")
    if stratified:
        st = strata[srt] if all_kept else strata[el][srt]
        if len(st) and int(st.max()) < 65_536:
            st = st.astype(np.uint16)
        srt = srt[np.argsort(st, kind="stable")]
    return srt if all_kept else el[srt]


def _ess(w: np.ndarray) -> float:
    w = w[w > 0]
    return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0


def nearest_neighbour_match(
    df: pd.DataFrame,
    treatment: str,
    score: str,
    k: int = 1,
    caliper: float | None = 0.2,
    caliper_scale: str = "sd",
    distance: str = "logit",
    replace: bool = False,
    exact: Sequence[str] | None = None,
    order: str = "largest",
    discard: str = "none",
    id_col: str | None = None,
    rng: np.random.Generator | int | None = None,
) -> MatchResult:
    """Greedy nearest-neighbour 1:k propensity-score matching for the ATT, as MatchIt does it.

    Equivalent to MatchIt ``matchit(method = "nearest", ratio = k, replace = replace,
    m.order = order, caliper = caliper, std.caliper = (caliper_scale == "sd"), exact = ~exact,
    discard = discard)`` with ``distance`` the supplied score: ``distance="ps"`` matches on the
    score (MatchIt's default ``link = "logit"``), ``distance="logit"`` on its log-odds (MatchIt
    ``link = "linear.logit"``, Austin 2011). The caliper is in the units of that distance:
    ``caliper_scale="sd"`` multiplies ``caliper`` by the standard deviation (n - 1 denominator)
    of the distance over all non-discarded units, treated and control; ``"raw"`` uses it as is.
    Pairs with ``|d_treated - d_control| <= width`` are allowed. The module docstring lists the
    matching rules.

    Arguments: ``score`` is a column with the propensity score (a probability; e.g. ``ps`` from
    :func:`propensity_score`); ``order`` is ``"largest"`` (MatchIt's default for a propensity
    score), ``"smallest"``, ``"data"`` or ``"random"`` (needs ``rng``: a seed or a numpy
    Generator); ``exact`` names columns to match exactly within (e.g. ``["pcn", "sex"]``);
    ``discard`` ("none", "treated", "control", "both") drops units outside the range of the other
    group's distance first; ``id_col`` names an id column (default: the index).

    Runs in O(N log N) for sorting plus near O(1) per match (union-find over sorted controls),
    e.g. 25,000 treated against 2,000,000 controls in well under a second of matching (the sort
    dominates; see benchmarks/).

    Warns (:class:`EstimandChangeWarning`) when treated units are left unmatched (caliper, empty
    exact stratum, exhausted pool or discarded): the matched sample then estimates the effect in
    the matched treated, not the ATT over all treated.
    """
    exact = _as_list(exact, "exact")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` must be a positive whole number, got {k!r}")
    k = int(k)
    if order not in _ORDERS:
        raise ValueError(f"`order` must be one of {_ORDERS}, got {order!r}")
    if caliper_scale not in _CALIPER_SCALES:
        raise ValueError(f"`caliper_scale` must be one of {_CALIPER_SCALES}, got {caliper_scale!r}")
    if caliper is not None and (not np.isfinite(caliper) or caliper <= 0):
        raise ValueError(f"`caliper` must be a positive number or None, got {caliper!r}")
    if order == "random" and rng is None:
        raise ValueError("`rng` (a seed or numpy Generator) is required when order='random'")
    rng = np.random.default_rng(rng) if order == "random" else None
    require_columns(df, [score], "score")
    require_columns(df, exact, "exact")
    if id_col is not None:
        require_columns(df, [id_col], "id_col")
        if df[id_col].duplicated().any():
            dups = df.loc[df[id_col].duplicated(), id_col].head(5).tolist()
            raise ValueError(f"`id_col` {id_col!r} has duplicated ids, e.g. {dups}")
    elif not df.index.is_unique:
        raise ValueError("the data frame index must be unique (or give `id_col`)")
    t = _treatment_indicator(df, treatment)
    _check_no_missing(df, [score] + exact, "score/exact")
    ids = (df[id_col] if id_col is not None else df.index).to_numpy()
    dist = _distance(df[score].to_numpy(dtype=float), distance, score)
    n = len(df)

    discarded = _discard(dist, t, discard)
    width = np.inf
    if caliper is not None:
        width = float(caliper)
        if caliper_scale == "sd":
            width *= float(np.std(dist[~discarded], ddof=1))

    strata = _strata_codes(df, exact)
    row = np.arange(n)
    keep = ~discarded
    # One stable sort of all eligible units by (stratum, distance, row) gives both the controls'
    # sorted order and, for every treated unit, how many controls precede it (its split point).
    srt = _sort_units(dist, strata, keep, bool(exact))
    is_c = t[srt] == 0
    n_before = np.cumsum(is_c) - is_c
    c_rows = srt[is_c]                       # control rows in sorted order
    t_rows_sorted = srt[~is_c]
    split_sorted = n_before[~is_c]
    c_strata = strata[c_rows]
    c_dist = dist[c_rows]

    t_rows = row[(t == 1) & keep]           # treated rows in data order
    pos_in_sorted = np.empty(n, dtype=np.int64)
    pos_in_sorted[t_rows_sorted] = np.arange(len(t_rows_sorted))
    split = split_sorted[pos_in_sorted[t_rows]]
    t_str = strata[t_rows]
    lo = np.searchsorted(c_strata, t_str, side="left")
    hi = np.searchsorted(c_strata, t_str, side="right")
    t_dist = dist[t_rows]

    if replace:
        mm, why = _nearest_with_replacement(c_dist, split, lo, hi, t_dist, k, width)
    else:
        t_order = _treated_order(t_dist, order, rng)
        mm, why = _greedy_without_replacement(c_dist, split, lo, hi, t_dist, t_order, k, width)

    # ---- pairs and weights (MatchIt weights_matrixC + normalise) -------------------------
    n_matched = (mm >= 0).sum(axis=1)
    ti, rnd = np.nonzero(mm >= 0)
    pair_t = t_rows[ti]
    pair_c = c_rows[mm[ti, rnd]]
    weight = np.zeros(n)
    weight[t_rows[n_matched > 0]] = 1.0
    np.add.at(weight, pair_c, 1.0 / n_matched[ti])
    cw = weight[t == 0]
    if (cw > 0).any():
        weight[t == 0] = cw * (cw > 0).sum() / cw.sum()
    n_use = np.zeros(n, dtype=np.int64)
    n_use[t_rows] = n_matched
    np.add.at(n_use, pair_c, 1)

    matched_t = t_rows[n_matched > 0]       # data order: subclass numbering as MatchIt
    sub_of_t = np.full(n, -1, dtype=np.int64)
    sub_of_t[matched_t] = np.arange(1, len(matched_t) + 1)
    pair_sub = sub_of_t[pair_t]
    sc = np.zeros(n, dtype=np.int64)
    if not replace:  # MatchIt gives no subclass when matching with replacement
        sc[matched_t] = sub_of_t[matched_t]
        sc[pair_c] = pair_sub
    subclass = pd.Series(pd.arrays.IntegerArray(sc, sc <= 0), index=df.index)

    pairs = pd.DataFrame({
        "subclass": pair_sub,
        "treated_id": ids[pair_t],
        "control_id": ids[pair_c],
        "match_round": rnd + 1,
        "treated_distance": dist[pair_t],
        "control_distance": dist[pair_c],
        "abs_distance": np.abs(dist[pair_t] - dist[pair_c]),
    }).sort_values(["subclass", "match_round"], kind="stable").reset_index(drop=True)

    units = pd.DataFrame({
        "id": ids, "treated": t.astype(np.int64), "distance": dist, "discarded": discarded,
        "weight": weight, "subclass": subclass, "n_matches": n_use,
    }, index=df.index, copy=False)

    # ---- sample sizes (MatchIt summary()$nn) ----------------------------------------------
    rows = []
    for g, lab in ((0, "Control"), (1, "Treated")):
        in_g = t == g
        w_g = weight[in_g]
        rows += [
            ("All", lab, float(in_g.sum())),
            ("Matched (ESS)", lab, round(_ess(w_g), 6)),
            ("Matched", lab, float((w_g > 0).sum())),
            ("Unmatched", lab, float(((w_g == 0) & ~discarded[in_g]).sum())),
            ("Discarded", lab, float(discarded[in_g].sum())),
        ]
    sample_sizes = pd.DataFrame(rows, columns=["status", "group", "n"])

    # ---- why treated units went unmatched ---------------------------------------------------
    no_ctrl = (hi - lo) == 0
    unmatched = n_matched == 0
    n_no_ctrl = int((unmatched & no_ctrl).sum())
    n_cal = int((unmatched & (why == 2)).sum())
    n_pool = int((unmatched & (why == 1) & ~no_ctrl).sum())
    n_fewer = int(((n_matched > 0) & (n_matched < k)).sum())
    n_disc_t = int(discarded[t == 1].sum())
    n_unmatched_t = int(unmatched.sum()) + n_disc_t
    n1 = int((t == 1).sum())
    if n_unmatched_t:
        warnings.warn(
            f"{n_unmatched_t} of {n1} treated units ({100 * n_unmatched_t / n1:.1f}%) were not "
            f"matched ({n_cal} lost to the caliper, {n_no_ctrl} with no controls in their exact "
            f"stratum, {n_pool} left when the available controls ran out, {n_disc_t} "
            "discarded). The matched sample no longer estimates the ATT over all treated units "
            "but the effect in the matched treated units; describe who was dropped.",
            EstimandChangeWarning,
            stacklevel=2,
        )
    if n_fewer:
        warnings.warn(f"{n_fewer} of {n1} treated units got fewer than k={k} matches",
                      UserWarning, stacklevel=2)
    settings = dict(treatment=treatment, score=score, k=k, caliper=caliper,
                    caliper_scale=caliper_scale, distance=distance, replace=replace, exact=exact,
                    order=order, discard=discard, id_col=id_col)
    return MatchResult(
        pairs=pairs, units=units, sample_sizes=sample_sizes,
        caliper_width=None if caliper is None else width,
        n_treated_lost_to_caliper=n_cal, n_treated_no_controls_in_stratum=n_no_ctrl,
        n_treated_pool_exhausted=n_pool, n_treated_fewer_than_k=n_fewer, settings=settings,
    )


# --------------------------------------------------------------------------------------------
# 3. Balance diagnostics
# --------------------------------------------------------------------------------------------


def _wvar(x: np.ndarray, w: np.ndarray, binary: bool) -> float:
    """MatchIt ``wvar``: p(1 - p) for binary variables, else the reliability-weights variance
    (R ``cov.wt``), which is the usual n - 1 variance with unit weights."""
    w = w / w.sum()
    m = float(np.sum(w * x))
    if binary:
        return m * (1 - m)
    return float(np.sum(w * (x - m) ** 2) / (1 - np.sum(w ** 2)))


def _ecdf_stats(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """MatchIt ``qqsum(standardize = TRUE)``: mean and max over the distinct values of x (in the
    whole sample passed in) of |F_treated(x) - F_control(x)|, with weighted eCDFs."""
    w = w.astype(float).copy()
    for g in (0, 1):
        w[t == g] /= w[t == g].sum()
    o = np.argsort(x, kind="stable")
    xs, ws, ts = x[o], w[o], t[o]
    signed = np.where(ts == ts[0], -ws, ws)
    ediff = np.abs(np.cumsum(signed))[np.append(np.diff(xs) != 0, True)]
    return float(ediff.mean()), float(ediff.max())


def _balance_one(x: np.ndarray, t: np.ndarray, w: np.ndarray, sd: float, binary: bool) -> dict:
    i1, i0 = t == 1, t == 0
    m1 = float(np.average(x[i1], weights=w[i1]))
    m0 = float(np.average(x[i0], weights=w[i0]))
    diff = m1 - m0
    smd = diff / sd if abs(diff) > np.sqrt(np.finfo(float).eps) else diff
    too_small = (w[i1] != 0).sum() < 2 and (w[i0] != 0).sum() < 2
    if binary:
        vr, em, ex = np.nan, abs(diff), abs(diff)
    elif too_small:
        vr = em = ex = np.nan
    else:
        vr = _wvar(x[i1], w[i1], False) / _wvar(x[i0], w[i0], False)
        em, ex = _ecdf_stats(x, t, w)
    return {"mean_treated": m1, "mean_control": m0, "smd": smd, "var_ratio": vr,
            "ecdf_mean": em, "ecdf_max": ex}


def _balance_columns(df: pd.DataFrame, covariates: Sequence[str]) -> dict[str, np.ndarray]:
    """Numeric covariates as they are; categorical ones as one 0/1 column per level
    (named ``col_level``, all levels kept, as MatchIt and cobalt show them)."""
    cols: dict[str, np.ndarray] = {}
    for c in covariates:
        s = df[c]
        if _is_categorical(s):
            for lev in _levels(s):
                cols[f"{c}_{lev}"] = (s == lev).to_numpy(dtype=float)
        else:
            cols[c] = s.to_numpy(dtype=float)
    return cols


def balance_table(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    weights: str | pd.Series | np.ndarray | None = None,
    threshold: float = 0.1,
) -> pd.DataFrame:
    """Covariate balance before (and after) matching, as MatchIt's ``summary()`` for the ATT.

    For each covariate (categorical ones expanded to one 0/1 indicator per level) and each sample
    ("Unadjusted" = all rows with unit weight; "Adjusted" = rows weighted by ``weights``, e.g. the
    matching weights, rows with weight 0 dropping out):

    * ``mean_treated``, ``mean_control``: (weighted) means;
    * ``smd``: standardised mean difference, (mean_treated - mean_control) / SD, where SD is the
      standard deviation in the treated group of the UNMATCHED sample (ATT convention; MatchIt
      ``smd_denom``, cobalt ``s.d.denom = "treated"``) - for binary variables sqrt(p(1 - p)) -
      so the adjusted SMD uses the same denominator as the unadjusted one;
    * ``var_ratio``: (weighted) variance treated / control (not for binary variables);
    * ``ecdf_mean``, ``ecdf_max``: mean and maximum absolute difference of the (weighted)
      empirical CDFs over the distinct values of the covariate (for binary variables both equal
      the absolute difference in proportions); ``ecdf_max`` is the Kolmogorov-Smirnov statistic;
    * ``imbalanced``: ``|smd| >= threshold`` (0.1 by default, Austin 2009).

    Returns a tidy DataFrame with columns ``variable``, ``sample``, the statistics above and
    ``binary``; one row per variable and sample, variables in input order.
    """
    covariates = _as_list(covariates, "covariates")
    require_columns(df, covariates, "covariates")
    t = _treatment_indicator(df, treatment)
    _check_no_missing(df, covariates, "covariates")
    samples = [("Unadjusted", np.ones(len(df)))]
    if weights is not None:
        if isinstance(weights, str):
            require_columns(df, [weights], "weights")
            w = df[weights].to_numpy(dtype=float)
        else:
            w = np.asarray(weights, dtype=float)
            if len(w) != len(df):
                raise ValueError(
                    f"`weights` has length {len(w)}, the data frame has {len(df)} rows"
                )
        if not np.all(np.isfinite(w)) or (w < 0).any():
            raise ValueError("`weights` must be finite and non-negative")
        for g, lab in ((1, "treated"), (0, "control")):
            if not (w[t == g] > 0).any():
                raise ValueError(f"`weights`: no {lab} unit has a positive weight")
        samples.append(("Adjusted", w))
    out = []
    for name, x in _balance_columns(df, covariates).items():
        binary = bool(np.all((x == 0) | (x == 1)))
        sd = np.sqrt(_wvar(x[t == 1], np.ones(int((t == 1).sum())), binary))
        if not np.isfinite(sd) or sd < np.sqrt(np.finfo(float).eps):
            # MatchIt falls back to the pooled SD when the treated SD is 0
            sd = np.sqrt((_wvar(x[t == 1], np.ones(int((t == 1).sum())), binary)
                          + _wvar(x[t == 0], np.ones(int((t == 0).sum())), binary)) / 2)
        for lab, w in samples:
            # zero-weight (unmatched) rows stay in: they add nothing to means or variances, and
            # MatchIt evaluates the eCDFs at every distinct value of the full sample
            row = _balance_one(x, t, w, sd, binary)
            out.append({"variable": name, "sample": lab, **row, "binary": binary})
    res = pd.DataFrame(out)
    res["imbalanced"] = res["smd"].abs() >= threshold
    return res


def love_plot(balance: pd.DataFrame, ax=None, threshold: float = 0.1, absolute: bool = True):
    """Love plot of standardised mean differences from :func:`balance_table`.

    One row per variable, a point per sample (Unadjusted orange circle, Adjusted blue triangle;
    Okabe-Ito colours), dashed line(s) at the threshold. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    require_columns(balance, ["variable", "sample", "smd"], "balance", "the output of balance_table")
    if ax is None:
        n_var = balance["variable"].nunique()
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.3 * n_var))
    else:
        fig = ax.figure
    variables = list(dict.fromkeys(balance["variable"]))[::-1]
    ypos = {v: i for i, v in enumerate(variables)}
    styles = {"Unadjusted": (OKABE_ITO["orange"], "o"), "Adjusted": (OKABE_ITO["blue"], "^")}
    for sample, sub in balance.groupby("sample", sort=False):
        colour, marker = styles.get(sample, (OKABE_ITO["black"], "s"))
        x = sub["smd"].abs() if absolute else sub["smd"]
        ax.scatter(x, sub["variable"].map(ypos), color=colour, marker=marker, label=sample,
                   zorder=3)
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
    if not absolute:
        ax.axvline(-threshold, color="grey", linestyle="--", linewidth=1)
        ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(variables)), variables)
    ax.set_xlabel("Absolute standardised mean difference" if absolute
                  else "Standardised mean difference")
    ax.set_ylabel("Covariate")
    ax.legend(title="Sample", loc="best", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def overlap_plot(
    df: pd.DataFrame,
    treatment: str,
    score: str,
    matched: str | pd.Series | np.ndarray | None = None,
    ax=None,
    bins: int = 40,
):
    """Distribution of the propensity score by group (common-support / overlap check).

    Histograms (density scale) of ``score`` for treated (blue) and control (orange) units; with
    ``matched`` (matching weights: a column name or an array aligned to ``df``) a second panel
    shows the matched sample weighted by them. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    require_columns(df, [score], "score")
    t = _treatment_indicator(df, treatment)
    s = df[score].to_numpy(dtype=float)
    panels = [("All units", np.ones(len(df)))]
    if matched is not None:
        w = df[matched].to_numpy(dtype=float) if isinstance(matched, str) else np.asarray(
            matched, dtype=float)
        if len(w) != len(df):
            raise ValueError(f"`matched` has length {len(w)}, the data frame has {len(df)} rows")
        panels.append(("Matched units (weighted)", w))
    if ax is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), sharex=True,
                                 squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) < len(panels):
            raise ValueError(f"`ax` must hold {len(panels)} axes when `matched` is given")
        fig = axes[0].figure
    edges = np.histogram_bin_edges(s, bins=bins)
    for a, (title, w) in zip(axes, panels):
        for g, lab, colour in ((0, "Control", OKABE_ITO["orange"]),
                               (1, "Treated", OKABE_ITO["blue"])):
            m = (t == g) & (w > 0)
            a.hist(s[m], bins=edges, weights=w[m], density=True, alpha=0.5, color=colour,
                   label=f"{lab} (n={int(m.sum()):,})", histtype="stepfilled")
        a.set_title(title)
        a.set_xlabel(f"Propensity score ({score})")
        a.set_ylabel("Density")
        a.legend(frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Performance check
# --------------------------------------------------------------------------------------------


def time_large_match(n_treated: int = 25_000, n_control: int = 2_000_000, seed: int = 1,
                     k: int = 1, replace: bool = False, n_strata: int = 0) -> dict:
    """Time :func:`nearest_neighbour_match` on synthetic scores (not a test; for benchmarking).

    Scores are drawn as logit ~ N(-4, 1.2) for controls and N(-3, 1.2) for treated (seeded). With
    ``n_strata`` > 0 units are also given a random exact-matching stratum. Returns seconds and
    counts.
    """
    import time

    rng = np.random.default_rng(seed)
    logit = np.concatenate([rng.normal(-3, 1.2, n_treated), rng.normal(-4, 1.2, n_control)])
    df = pd.DataFrame({
        "treat": np.r_[np.ones(n_treated, dtype=np.int8), np.zeros(n_control, dtype=np.int8)],
        "ps": 1 / (1 + np.exp(-logit)),
    })
    exact = None
    if n_strata:
        df["stratum"] = rng.integers(0, n_strata, len(df))
        exact = ["stratum"]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unmatched / fewer-than-k warnings are expected here
        res = nearest_neighbour_match(df, "treat", "ps", k=k, replace=replace, exact=exact)
    secs = time.perf_counter() - start
    return {"seconds": round(secs, 3), "n_treated": n_treated, "n_control": n_control,
            "n_pairs": len(res.pairs), "k": k, "replace": replace, "n_strata": n_strata}


if __name__ == "__main__":  # pragma: no cover
    for kwargs in ({}, {"k": 2}, {"replace": True}, {"n_strata": 400}):
        print(time_large_match(**kwargs))
