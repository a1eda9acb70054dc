"""Known-answer tests of power; what the subject's tests check and their sources: tests/support/power.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from spstudy.methods import power as P

pytestmark = pytest.mark.known_answer


@pytest.mark.parametrize("confidence,power,two_sided,expected", [
    (0.95, 0.80, True, 2.80), (0.95, 0.90, True, 3.24), (0.95, 0.80, False, 2.49), (0.95, 0.90, False, 2.93)])
def test_mde_multiplier_bloom_1995_table_1(confidence, power, two_sided, expected):
    # Bloom (1995) Eval Rev 19:547, Table 1 (multipliers for large samples): 80% power two-tailed
    # 5% = 2.80, 90% = 3.24; one-tailed 2.49 and 2.93.
    assert P.mde_multiplier(confidence, power, two_sided) == pytest.approx(expected, abs=0.005)


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

