"""Power: the minimum detectable effect (MDE) of the matched DiD, computed before any outcome is.

Formula (Bloom 1995, Eval Rev 19:547, eq. 1 and Table 1): MDE = M x SE, with the multiplier
M = z_{1 - a/2} + z_{power} (two-sided test at level a = 1 - confidence; 2.80 for 80% power at 5%).
Here the effect is the log ratio of rate ratios, so the smallest reduction detectable with the
stated power is the ratio of rate ratios rr solving log rr = -M x SE(rr) (the smallest increase:
+M x SE(rr)), with the SE evaluated at the alternative, i.e. with the referred group's post-window
mean multiplied by rr (the variance at the true rates, Zhu & Lakkis 2014 method 1; without this
step the MDE is slightly optimistic because fewer events mean a larger SE).

SE of the log ratio of rate ratios. The matched DiD estimate is, on the weighted sums of each
group's counts (S = sum w y; weight 1 for a referred person, 1/k for each of k comparators),
    log RRR = [log S_T,post - log S_T,base] - [log S_C,post - log S_C,base] - (log exposure terms).
By the delta method for a ratio of sums (the Poisson GLM with cluster-robust errors estimates the
same variance), for each group g, with mu the expected count per person and window,
    Var(log S_post / S_base) = V_post / (sum w mu_post)^2 + V_base / (sum w mu_base)^2
                               - 2 C / (sum w mu_post x sum w mu_base),
    V = sum w^2 (mu + phi mu^2),   C = sum w^2 psi mu_base mu_post,
and Var(log RRR) = Var_T + Var_C. Counts are negative binomial (NB2: variance mu + phi mu^2,
phi the over-dispersion; Zhu & Lakkis 2014, Stat Med 33:376, whose independent-groups variance
(1/n1)(1/mu1 + phi) + (1/n2)(1/mu2 + phi) is the special case with no pre/post covariance,
checked against statsmodels' ``power_negbin_ratio_2indep``), and a person's own rate is
correlated between the baseline and post windows: psi = cov of the person's relative rate in the
two windows (psi = phi when a person's rate never changes, 0 when it is independent between
windows). A stable person-level rate cancels out of a within-person ratio, which is why the DiD on
frequent attenders is more precise than a comparison of two groups' rates.

phi and psi are estimated from pre-referral data only, by the method of moments on two disjoint
windows A and B a washout apart (by default months -12..-10, ``pre_q1``, and the DiD baseline,
months -6..-4; the same gap as between the baseline and the post window):
    phi = sum[(y - mu)^2 - y] / sum mu^2  over both windows,  psi = sum (y_A - mu_A)(y_B - mu_B) / sum mu_A mu_B,
with mu = the group's rate in the window x the person's exposure (Cameron & Trivedi 2013, Regression
Analysis of Count Data, 2nd ed., s.3.2: moment estimator of the NB2 dispersion). Planning means
under the null: each person's expected baseline and post counts are the group's baseline-window
rate x their exposure days in each window (exposure is known before outcomes; events after the
index date are never read).

Not modelled (so the MDE is conservative on these counts): the correlation between a referred
person and their matched comparators (cluster-robust errors by matched set exploit it), and
regression of the referred group's rate after referral (their post rate is planned at the baseline
rate). Not conservative: psi taken from pre-referral windows is assumed to hold between the baseline
and the post window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from spstudy.methods.checks import require_columns
from spstudy.methods.stats import z_value

__all__ = [
    "MatchedCounts",
    "MinimumDetectableEffects",
    "mde_multiplier",
    "var_log_sum",
    "var_log_ratio_of_sums",
    "dispersion_moments",
    "mde_from_counts",
    "minimum_detectable_effects",
    "simulate_matched_counts",
]


def mde_multiplier(confidence: float = 0.95, power: float = 0.8, two_sided: bool = True) -> float:
    """Bloom's (1995) MDE multiplier: z_{1-a/2} + z_{power} (two-sided) or z_{1-a} + z_{power},
    a = 1 - confidence. 2.80 for 80% power, two-sided 5% (Bloom 1995, Table 1)."""
    if not 0 < power < 1:
        raise ValueError(f"power: must be in (0, 1), got {power}")
    # a one-sided test at 1 - a uses the two-sided quantile of level 1 - 2a
    z_test = z_value(confidence) if two_sided else z_value(1 - 2 * (1 - confidence))
    return float(z_test + stats.norm.ppf(power))


def var_log_sum(mu, w=None, dispersion: float = 0.0) -> float:
    """Var(log S), S = sum w y, y ~ NB2(mu, dispersion) independent: sum w^2 (mu + phi mu^2) / (sum w mu)^2."""
    mu = np.asarray(mu, dtype=float)
    w = np.ones_like(mu) if w is None else np.asarray(w, dtype=float)
    tot = float(np.sum(w * mu))
    if tot <= 0:
        return float("inf")
    return float(np.sum(w ** 2 * (mu + dispersion * mu ** 2)) / tot ** 2)


def var_log_ratio_of_sums(mu_base, mu_post, w=None, dispersion: float = 0.0, frailty_cov: float = 0.0) -> float:
    """Var(log S_post - log S_base) for one group observed in two windows (delta method; module docstring).

    ``mu_base``, ``mu_post``: expected counts per person in each window; ``w``: weights;
    ``dispersion``: NB2 phi; ``frailty_cov``: psi, the covariance of a person's relative rate
    between the two windows."""
    mb, mp = np.asarray(mu_base, dtype=float), np.asarray(mu_post, dtype=float)
    w = np.ones_like(mb) if w is None else np.asarray(w, dtype=float)
    sb, sp = float(np.sum(w * mb)), float(np.sum(w * mp))
    if sb <= 0 or sp <= 0:
        return float("inf")
    cov = frailty_cov * float(np.sum(w ** 2 * mb * mp)) / (sb * sp)
    return var_log_sum(mb, w, dispersion) + var_log_sum(mp, w, dispersion) - 2 * cov


def dispersion_moments(y_a, days_a, y_b, days_b, w=None) -> tuple[float, float]:
    """Method-of-moments NB2 dispersion phi (pooled over windows A and B) and the between-window
    covariance psi of the person-level relative rate (module docstring). Rows with no exposure in a
    window add nothing to it. phi is floored at 0 and psi kept within [-phi, phi]."""
    ya, ta, yb, tb = (np.asarray(x, dtype=float) for x in (y_a, days_a, y_b, days_b))
    w = np.ones_like(ya) if w is None else np.asarray(w, dtype=float)
    ra = np.sum(w * ya) / np.sum(w * ta) if np.sum(w * ta) > 0 else 0.0
    rb = np.sum(w * yb) / np.sum(w * tb) if np.sum(w * tb) > 0 else 0.0
    ma, mb = ra * ta, rb * tb
    den = np.sum(w * (ma ** 2 + mb ** 2))
    if den <= 0:
        return 0.0, 0.0
    phi = max(0.0, float(np.sum(w * ((ya - ma) ** 2 - ya + (yb - mb) ** 2 - yb)) / den))
    cden = np.sum(w * ma * mb)
    psi = float(np.sum(w * (ya - ma) * (yb - mb)) / cden) if cden > 0 else 0.0
    return phi, float(np.clip(psi, -phi, phi))


def mde_from_counts(se_log: float, confidence: float = 0.95, power: float = 0.8) -> dict:
    """MDE on the ratio scale from the SE of a log ratio: reduction exp(-M se), increase exp(+M se)."""
    M = mde_multiplier(confidence, power)
    return {"mde_rate_ratio": float(np.exp(-M * se_log)), "mde_rate_ratio_increase": float(np.exp(M * se_log)),
            "mde_pct_change": float(100 * (np.exp(-M * se_log) - 1))}


def _solve_mde(se_at, confidence: float, power: float) -> dict:
    """MDE with the SE evaluated at the alternative: solve log(rr) = -M se(rr) (and +M se(rr) for an
    increase) by fixed-point iteration from se(1); se(rr) scales the referred group's post-window
    means by rr (variance at the true rates: Zhu & Lakkis 2014, method 1; PASS ch. 438)."""
    M = mde_multiplier(confidence, power)
    out = {}
    for sign, key in ((-1, "mde_rate_ratio"), (1, "mde_rate_ratio_increase")):
        se0 = se_at(1.0)
        if not np.isfinite(se0):
            out[key] = float("nan")
            continue
        r = float(np.exp(sign * M * se0))
        for _ in range(200):
            r_new = float(np.exp(sign * M * se_at(r)))
            if abs(r_new - r) < 1e-12:
                break
            r = r_new
        out[key] = r_new
    out["mde_pct_change"] = 100 * (out["mde_rate_ratio"] - 1)
    return out


@dataclass(frozen=True)
class MinimumDetectableEffects:
    """MDE per group (borough) x setting x window x cohort (:func:`minimum_detectable_effects`).

    table columns: ``group`` (the ``by`` value, or "All"), ``setting``, ``window_months``,
    ``cohort``; counts: ``n_matched_sets`` (matched referred people), ``n_comparators`` (people),
    ``events_baseline_treated``, ``events_baseline_comparator`` (events in the baseline window,
    unweighted); derived from them: ``rate_baseline_treated``, ``rate_baseline_comparator`` (per
    1,000 person-years, comparators weighted 1/k); ``dispersion_treated``/``_comparator`` (phi),
    ``frailty_cov_treated``/``_comparator`` (psi); ``se_log_rrr``; ``mde_rate_ratio`` (smallest
    detectable reduction as a ratio of rate ratios), ``mde_pct_change`` (100 x (that - 1)),
    ``mde_rate_ratio_increase``; ``se_log_rrr_poisson`` and ``mde_rate_ratio_poisson`` (what a
    Poisson calculation ignoring dispersion would claim); ``target_pct_change`` and
    ``powered_for_target`` (MDE at least as small as the target reduction), ``confidence``, ``power``.
    """

    table: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        return self.table


def minimum_detectable_effects(d: pd.DataFrame, pairs: pd.DataFrame, settings: Sequence[str] = ("gp", "ae"),
                               windows_months: Sequence[int] = (6, 12), cohorts: Sequence[str] = ("itt",), by: str | None = "borough",
                               baseline: str = "baseline", dispersion_windows: tuple[str, str] = ("pre_q1", "baseline"),
                               target_reductions: dict | None = None, include_all: bool = True, confidence: float = 0.95,
                               power: float = 0.8) -> MinimumDetectableEffects:
    """Minimum detectable ratio of rate ratios of the matched DiD for each ``by`` group (module docstring).

    Inputs are known before any outcome is counted: the matched sets (``pairs``), each person's
    events and exposure in the pre-referral windows, and exposure days in the post window
    (``post_<m>m_days``; post-window *events* are never read). ``by``: column of ``d`` whose value
    for the referred member defines the group (``"borough"`` after
    :func:`spstudy.methods.subgroups.add_subgroup_columns`; None = everyone). ``target_reductions``: e.g.
    ``{"gp": 0.14, "ae": 0.12}`` (NHS England Universal Personalised Care expectations) to flag
    whether each borough could detect an effect that size. ``include_all``: also a row for everyone
    (group "All"). ``confidence``: 1 - two-sided test level; ``power``: e.g. 0.8.
    """
    mde_multiplier(confidence, power)
    t = d.set_index("index_id")
    if by is not None:
        require_columns(t, [by], "by")
    rows = []
    for c in cohorts:
        if c not in ("itt", "per_protocol"):
            raise ValueError(f"cohorts: 'itt' or 'per_protocol', got {c!r}")
        pr = pairs if c == "itt" else pairs[pairs["treated_id"].map(t["seen"]) == 1]
        k = pr.groupby("subclass")["control_id"].transform("size").to_numpy()
        sets = pr.drop_duplicates("subclass")
        group_of_set = sets.set_index("subclass")["treated_id"].map(t[by]) if by else pd.Series("All", index=sets["subclass"])
        units = pd.concat([
            pd.DataFrame({"subclass": sets["subclass"].to_numpy(), "id": sets["treated_id"].to_numpy(), "treated": 1, "w": 1.0}),
            pd.DataFrame({"subclass": pr["subclass"].to_numpy(), "id": pr["control_id"].to_numpy(), "treated": 0, "w": 1.0 / k}),
        ], ignore_index=True)
        units["group"] = units["subclass"].map(group_of_set).astype(str)
        if by and include_all:
            units = pd.concat([units, units.assign(group="All")], ignore_index=True)
        for s in settings:
            for m in windows_months:
                cols = [f"{s}_{dispersion_windows[0]}_events", f"{dispersion_windows[0]}_days", f"{s}_{dispersion_windows[1]}_events",
                        f"{dispersion_windows[1]}_days", f"{s}_{baseline}_events", f"{baseline}_days", f"post_{m}m_days"]
                require_columns(t, cols, "d")
                u = units.join(t[list(dict.fromkeys(cols))], on="id")
                groups = sorted(u["group"].unique(), key=lambda g: (g == "All", g))
                for g in groups:
                    ug = u[u["group"] == g]
                    row = {"group": g, "setting": s, "window_months": int(m), "cohort": c,
                           "n_matched_sets": int(ug.loc[ug.treated == 1, "subclass"].nunique()),
                           "n_comparators": int(ug.loc[ug.treated == 0, "id"].nunique())}
                    parts = {}
                    for tr, lab in ((1, "treated"), (0, "comparator")):
                        x = ug[ug["treated"] == tr]
                        w = x["w"].to_numpy()
                        ev, days = x[f"{s}_{baseline}_events"].to_numpy(dtype=float), x[f"{baseline}_days"].to_numpy(dtype=float)
                        rate = np.sum(w * ev) / np.sum(w * days) if np.sum(w * days) > 0 else 0.0
                        phi, psi = dispersion_moments(x[cols[0]], x[cols[1]], x[cols[2]], x[cols[3]], w)
                        parts[tr] = (rate * days, rate * x[f"post_{m}m_days"].to_numpy(dtype=float), w, phi, psi)
                        row[f"events_baseline_{lab}"] = int(ev.sum())
                        row[f"rate_baseline_{lab}"] = 1000 * 365.25 * rate
                        row[f"dispersion_{lab}"] = phi
                        row[f"frailty_cov_{lab}"] = psi

                    def se_at(rr, over=True, parts=parts):
                        v = 0.0
                        for tr, (mb, mp, w, phi, psi) in parts.items():
                            v += var_log_ratio_of_sums(mb, mp * (rr if tr == 1 else 1.0), w, phi if over else 0.0, psi if over else 0.0)
                        return float(np.sqrt(v))

                    row.update(se_log_rrr=se_at(1.0), **_solve_mde(se_at, confidence, power), se_log_rrr_poisson=se_at(1.0, False),
                               mde_rate_ratio_poisson=_solve_mde(lambda r: se_at(r, False), confidence, power)["mde_rate_ratio"])
                    se = row["se_log_rrr"]
                    tgt = (target_reductions or {}).get(s)
                    row["target_pct_change"] = -100 * tgt if tgt is not None else np.nan
                    row["powered_for_target"] = (bool(row["mde_rate_ratio"] >= 1 - tgt) if tgt is not None and np.isfinite(se) else pd.NA)
                    rows.append(row)
    out = pd.DataFrame(rows)
    out["powered_for_target"] = out["powered_for_target"].astype("boolean")
    out["confidence"], out["power"] = confidence, power
    return MinimumDetectableEffects(table=out)


@dataclass(frozen=True)
class MatchedCounts:
    """A simulated matched world (:func:`simulate_matched_counts`): ``units`` (one row per person:
    index_id, treated, seen, group, ``<setting>_<window>_events``, ``<window>_days``) and ``pairs``
    (subclass, treated_id, control_id), in the shapes :mod:`spstudy.analyses.evaluation` uses."""

    units: pd.DataFrame
    pairs: pd.DataFrame


def simulate_matched_counts(n_sets: int, seed: int, rate_treated: float = 4.0, rate_comparator: float = 3.0, person_shape: float = 2.0,
                            window_shape: float = 4.0, effect_rate_ratio: float = 1.0, setting: str = "gp", post_months: int = 6,
                            groups: dict | None = None) -> MatchedCounts:
    """A matched 1:1 world of over-dispersed counts, for checking the MDE formula and the DiD.

    Each person's rate in window j is rate x G x H_j (events per person-year), G ~ Gamma(shape
    ``person_shape``, mean 1) stable over time and H_j ~ Gamma(shape ``window_shape``, mean 1)
    independent between windows; counts are Poisson given the rate. So the NB2 dispersion is
    phi = (1 + 1/person_shape)(1 + 1/window_shape) - 1 and the between-window covariance psi =
    1/person_shape. Windows (exposure days): ``pre_q1`` (91), ``baseline`` (91), ``post_<m>m``
    (round(30.4375 m)); the referred person's post rate is multiplied by ``effect_rate_ratio`` (or by
    ``groups[g]`` for sets in group g: ``groups`` maps group label -> effect, sets split evenly).

    Returns :class:`MatchedCounts` in the shapes of :mod:`spstudy.analyses.evaluation` (units:
    ``index_id``, ``treated``, ``seen`` = 1 for referred, ``group``, ``<setting>_<window>_events``,
    ``<window>_days``; pairs: ``subclass``, ``treated_id``, ``control_id``).
    """
    rng = np.random.default_rng(seed)
    post = f"post_{post_months}m"
    days = {"pre_q1": 91, "baseline": 91, post: int(round(30.4375 * post_months))}
    labels = list(groups) if groups else ["All"]
    grp = np.array(labels)[np.arange(n_sets) % len(labels)]
    eff = np.array([groups[g] for g in grp]) if groups else np.full(n_sets, effect_rate_ratio)
    rows = {}
    for tr, rate in ((1, rate_treated), (0, rate_comparator)):
        G = rng.gamma(person_shape, 1 / person_shape, n_sets)
        for w, dd in days.items():
            H = rng.gamma(window_shape, 1 / window_shape, n_sets)
            lam = rate * G * H * dd / 365.25 * (eff if (tr == 1 and w == post) else 1.0)
            rows[(tr, w)] = rng.poisson(lam)
    n = 2 * n_sets
    d = pd.DataFrame({"index_id": np.arange(n), "treated": np.r_[np.ones(n_sets, int), np.zeros(n_sets, int)],
                      "seen": np.r_[np.ones(n_sets, int), np.zeros(n_sets, int)], "group": np.r_[grp, grp]})
    for w, dd in days.items():
        d[f"{setting}_{w}_events"] = np.r_[rows[(1, w)], rows[(0, w)]]
        d[f"{w}_days"] = dd
    pairs = pd.DataFrame({"subclass": np.arange(1, n_sets + 1), "treated_id": np.arange(n_sets), "control_id": np.arange(n_sets, n)})
    return MatchedCounts(units=d, pairs=pairs)
