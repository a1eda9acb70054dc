"""Minimum detectable effects (spstudy.power): Bloom's multipliers, the NB variance against
statsmodels, and simulated matched worlds in which the stated power must be achieved."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from spstudy.methods import power as P
from spstudy.methods import subgroups as S


@pytest.mark.known_answer
@pytest.mark.parametrize("confidence,power,two_sided,expected", [
    (0.95, 0.80, True, 2.80), (0.95, 0.90, True, 3.24), (0.95, 0.80, False, 2.49), (0.95, 0.90, False, 2.93)])
def test_mde_multiplier_bloom_1995_table_1(confidence, power, two_sided, expected):
    # Bloom (1995) Eval Rev 19:547, Table 1 (multipliers for large samples): 80% power two-tailed
    # 5% = 2.80, 90% = 3.24; one-tailed 2.49 and 2.93.
    assert P.mde_multiplier(confidence, power, two_sided) == pytest.approx(expected, abs=0.005)


@pytest.mark.known_answer
def test_negative_binomial_two_group_variance_matches_statsmodels():
    # Zhu & Lakkis (2014) Stat Med 33:376, variance of log(r1/r2) with the rates under the
    # alternative ("method_var='alt'"; PASS ch. 438 method 1), as statsmodels implements it in
    # statsmodels.stats.rates.power_negbin_ratio_2indep. Our ratio-of-sums variance for two
    # independent groups must give the same power.
    from statsmodels.stats.rates import power_negbin_ratio_2indep

    r1, r2, n1, ratio, expo, phi = 0.5, 0.3, 100, 0.5, 2.0, 0.5
    n2 = int(n1 * ratio)
    var = P.var_log_sum(np.full(n1, r1 * expo), dispersion=phi) + P.var_log_sum(np.full(n2, r2 * expo), dispersion=phi)
    assert var == pytest.approx((1 / (r1 * expo) + phi) / n1 + (1 / (r2 * expo) + phi) / n2)
    z, eff = stats.norm.ppf(0.975), abs(np.log(r1 / r2)) / np.sqrt(var)
    ours = stats.norm.cdf(eff - z) + stats.norm.cdf(-eff - z)
    ref = power_negbin_ratio_2indep(r1, r2, n1, nobs_ratio=ratio, exposure=expo, dispersion=phi, method_var="alt", return_results=False)
    assert ours == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.unit
def test_within_person_covariance_cancels_a_stable_rate():
    # psi = phi (a person's rate never changes): the dispersion cancels from a within-person ratio,
    # leaving the Poisson variance; psi = 0 adds phi twice.
    mu0, mu1 = np.full(500, 1.0), np.full(500, 2.0)
    pois = P.var_log_ratio_of_sums(mu0, mu1)
    assert pois == pytest.approx((1 / 1 + 1 / 2) / 500)
    assert P.var_log_ratio_of_sums(mu0, mu1, dispersion=0.8, frailty_cov=0.8) == pytest.approx(pois)
    assert P.var_log_ratio_of_sums(mu0, mu1, dispersion=0.8, frailty_cov=0.0) == pytest.approx(pois + 2 * 0.8 / 500)


@pytest.mark.simulation
def test_dispersion_moments_recover_the_simulated_world():
    d, _ = P.simulate_matched_counts(15000, seed=1, person_shape=2.0, window_shape=4.0)
    x = d[d["treated"] == 0]
    phi, psi = P.dispersion_moments(x["gp_pre_q1_events"], x["pre_q1_days"], x["gp_baseline_events"], x["baseline_days"])
    assert phi == pytest.approx((1 + 1 / 2) * (1 + 1 / 4) - 1, abs=0.06)
    assert psi == pytest.approx(1 / 2, abs=0.05)


def _rejection_rate(effect, reps, n_sets, seed0, **world):
    rej = 0
    for s in range(reps):
        d, pairs = P.simulate_matched_counts(n_sets, seed=seed0 + s, effect_rate_ratio=effect, **world)
        rej += S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6))["p_value"] < 0.05
    return rej / reps


@pytest.mark.simulation
def test_stated_power_is_achieved_and_poisson_planning_overstates_it():
    # Plan on one draw's pre-referral data, then run the matched DiD (the pack's estimator) on fresh
    # worlds whose true effect equals the planned MDE: about 80% of them must reject at 5%.
    # Where the Poisson assumption fails (over-dispersed, partly stable rates), an MDE that ignores
    # dispersion is too optimistic: an effect that size is detected far less often than 80%.
    # World: NB2 phi = (1 + 1/2)(1 + 1/2) - 1 = 1.25, stable part psi = 0.5 (window_shape 2).
    d, pairs = P.simulate_matched_counts(250, seed=8, window_shape=2.0)
    row = P.minimum_detectable_effects(d, pairs, settings=("gp",), windows_months=(6,), by=None).table.iloc[0]
    assert row["n_matched_sets"] == 250 and row["mde_rate_ratio"] < row["mde_rate_ratio_poisson"] < 1
    achieved = _rejection_rate(row["mde_rate_ratio"], 120, 250, 100, window_shape=2.0)
    assert 0.70 <= achieved <= 0.90  # Monte Carlo SE about 0.037
    assert _rejection_rate(row["mde_rate_ratio_poisson"], 120, 250, 400, window_shape=2.0) < 0.65


@pytest.mark.unit
def test_mde_table_by_group_flags_target_and_reads_no_post_events():
    d, pairs = P.simulate_matched_counts(400, seed=3, groups={"Camden": 1.0, "Islington": 1.0})
    d = d.rename(columns={"group": "borough"})
    d["gp_post_6m_events"] = -999  # outcomes after the index date must never be read
    t = P.minimum_detectable_effects(d, pairs, settings=("gp",), windows_months=(6,), by="borough", target_reductions={"gp": 0.14}).table
    assert t["group"].tolist() == ["Camden", "Islington", "All"]
    assert t["n_matched_sets"].tolist() == [200, 200, 400]
    assert (t["mde_pct_change"] < 0).all() and t.loc[2, "mde_rate_ratio"] > t.loc[0, "mde_rate_ratio"]  # more people, smaller MDE
    assert t["powered_for_target"].tolist() == [bool(x >= 0.86) for x in t["mde_rate_ratio"]]
    assert t.loc[0, "events_baseline_treated"] == int(d.loc[(d.treated == 1) & (d.borough == "Camden"), "gp_baseline_events"].sum())
    with pytest.raises(ValueError, match="power"):
        P.minimum_detectable_effects(d, pairs, settings=("gp",), windows_months=(6,), power=1.2)
    with pytest.raises(ValueError, match="missing column"):
        P.minimum_detectable_effects(d, pairs, settings=("ae",), windows_months=(6,))
