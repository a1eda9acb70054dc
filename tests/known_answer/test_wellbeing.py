"""Known-answer tests of wellbeing; what the subject's tests check and their sources: tests/support/wellbeing.py."""

import numpy as np
import pytest

from spstudy.methods import wellbeing as wb
from tests.support.wellbeing import SLEEP_G1, SLEEP_G2, _scores

pytestmark = pytest.mark.known_answer


# ---------------------------------------------------------------------------------------------
# SWEMWBS conversion table
# ---------------------------------------------------------------------------------------------
def test_swemwbs_conversion_known_entries():
    # Source: Warwick Medical School SWEMWBS raw-to-metric conversion table (Stewart-Brown et
    # al. 2009, Health Qual Life Outcomes 7:15; WEMWBS website scoring guidance). Identical
    # values are reproduced in independent public analysis scripts (R data.frame
    # Raw_Score = 7:35, Metric_Score = c(7.00, 9.51, 11.25, ..., 32.55, 35.00)).
    expected = {7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 14: 15.32, 20: 18.59, 21: 19.25,
                28: 25.03, 33: 30.70, 34: 32.55, 35: 35.00}
    for raw, metric in expected.items():
        assert wb.swemwbs_metric(raw) == pytest.approx(metric, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# paired_change: known answers
# ---------------------------------------------------------------------------------------------
def test_paired_change_sleep_t_test_matches_r():
    # R 4.x: t.test(extra ~ group, data = sleep, paired = TRUE) prints
    #   t = -4.0621, df = 9, p-value = 0.002833
    #   95 percent confidence interval: -2.4598858 -0.7001142; mean difference -1.58
    # (difference = group 1 - group 2, so group 1 is "follow-up" here).
    res = wb.paired_change(_scores(SLEEP_G2, SLEEP_G1), "wemwbs_total").iloc[0]
    assert res["n_pairs"] == 10 and res["df"] == 9
    assert res["mean_change"] == pytest.approx(-1.58, abs=1e-12)
    assert res["t"] == pytest.approx(-4.0621, abs=5e-5)
    assert res["p_t"] == pytest.approx(0.002833, abs=5e-7)
    assert res["mean_change_lower"] == pytest.approx(-2.4598858, abs=5e-8)
    assert res["mean_change_upper"] == pytest.approx(-0.7001142, abs=5e-8)
    assert res["mean_baseline"] == pytest.approx(2.33) and res["mean_follow_up"] == pytest.approx(0.75)


def test_paired_change_sleep_wilcoxon_matches_r():
    # R 4.x: wilcox.test(extra ~ group, data = sleep, paired = TRUE) prints
    #   "Wilcoxon signed rank test with continuity correction", V = 0, p-value = 0.009091
    # (one zero difference and ties, so R uses the normal approximation).
    res = wb.paired_change(_scores(SLEEP_G2, SLEEP_G1), "wemwbs_total").iloc[0]
    assert res["wilcoxon_v"] == 0
    assert res["p_wilcoxon"] == pytest.approx(0.009091, abs=5e-7)
    assert "continuity" in res["wilcoxon_method"]


def test_paired_change_wilcoxon_exact_matches_r_help_example():
    # R ?wilcox.test example (Hollander & Wolfe 1973, p. 29, depression scale):
    #   x <- c(1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30)
    #   y <- c(0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29)
    #   wilcox.test(x, y, paired = TRUE, alternative = "greater"): V = 40, p-value = 0.01953
    # The exact one-sided p is 10/512; two-sided is twice that, 0.0390625.
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    res = wb.paired_change(_scores(y, x), "wemwbs_total").iloc[0]
    assert res["wilcoxon_v"] == 40
    assert res["p_wilcoxon"] == pytest.approx(2 * 10 / 512, abs=1e-12)
    assert res["wilcoxon_method"] == "exact"


def test_cohens_d_av_matches_mote():
    # MOTE (R) tests/testthat/test-d_dep_t_avg.R: d_dep_t_avg(m1 = 5.57, m2 = 4.43,
    # sd1 = 1.99, sd2 = 2.88, n = 7) gives d = 0.4681725.
    assert wb.cohens_d_av(5.57, 4.43, 1.99, 2.88) == pytest.approx(0.4681725, abs=1e-7)


def test_cohens_d_z_matches_poweranalysis():
    # powerAnalysis (R) ?ES.t.paired example: ES.t.paired(md = -0.08062384, sd = 1.401886)
    # prints d = 0.05751098 (reported as a magnitude).
    assert abs(wb.cohens_d_z(-0.08062384, 1.401886)) == pytest.approx(0.05751098, abs=1e-8)


def test_paired_change_effect_sizes_on_sleep():
    # d_z = mean diff / SD diff = -1.58 / 1.2299955 (SD of sleep differences, R sd()).
    res = wb.paired_change(_scores(SLEEP_G2, SLEEP_G1), "wemwbs_total").iloc[0]
    assert res["sd_change"] == pytest.approx(1.2299955, abs=1e-7)
    assert res["d_z"] == pytest.approx(-1.58 / 1.2299955, abs=1e-6)
    expected_av = (0.75 - 2.33) / ((np.std(SLEEP_G1, ddof=1) + np.std(SLEEP_G2, ddof=1)) / 2)
    assert res["d_av"] == pytest.approx(expected_av)


# ---------------------------------------------------------------------------------------------
# attrition
# ---------------------------------------------------------------------------------------------
def test_attrition_difference_matches_r_welch():
    # R 4.x: t.test(extra ~ group, data = sleep) (Welch) prints
    #   t = -1.8608, df = 17.776, p-value = 0.07939
    #   95 percent confidence interval: -3.3654832  0.2054832
    # Lost to follow-up = group 1 baselines, followed up = group 2 baselines.
    base = SLEEP_G1 + SLEEP_G2
    fu = [None] * 10 + [0.0] * 10
    a = wb.attrition(_scores(base, fu), "wemwbs_total").set_index("group")
    assert a.loc["followed_up", "n"] == 10 and a.loc["lost_to_follow_up", "n"] == 10
    assert a.loc["lost_to_follow_up", "pct_of_baseline"] == pytest.approx(50.0)
    d = a.loc["difference"]
    assert d["mean_baseline"] == pytest.approx(-1.58)
    assert d["mean_baseline_lower"] == pytest.approx(-3.3654832, abs=5e-8)
    assert d["mean_baseline_upper"] == pytest.approx(0.2054832, abs=5e-8)
    assert d["p_value"] == pytest.approx(0.07939, abs=5e-6)


def test_ipw_saturated_equals_weighting_class_estimator_and_its_variance():
    # Little & Rubin (2019) Statistical Analysis with Missing Data, s.3.3: with response propensities
    # estimated within adjustment cells, IPW = weighting-class estimator sum_j (n_j/n) ybar_jR.
    # Cells: A (n=4, observed 2, 4), B (n=6, observed 0, 2): (0.4)(3) + (0.6)(1) = 1.8 (complete case: 2.0).
    # Sandwich variance of the stacked equations (Lunceford & Davidian 2004, Stat Med 23:2937) reduces
    # here to (1/n)[sum_j p_j s2_j / pi_j + sum_j p_j (ybar_j - mu)^2] with s2_j the within-cell
    # variance (divisor m_j): (1/10)[0.4(1)/0.5 + 0.6(1)/(1/3) + 0.4(1.2)^2 + 0.6(0.8)^2] = 0.356.
    y = np.array([2, 4, np.nan, np.nan, 0, 2, np.nan, np.nan, np.nan, np.nan])
    X = np.column_stack([np.ones(10), [0] * 4 + [1] * 6])
    res = wb.ipw_mean(y, ~np.isnan(y), X)
    assert res.mean == pytest.approx(1.8, abs=1e-9)
    assert res.se ** 2 == pytest.approx(0.356, abs=1e-9)
    assert res.mean_lower == pytest.approx(1.8 - 1.959964 * np.sqrt(0.356), abs=1e-5)


def test_worst_best_case_bounds_hand_example():
    # Horowitz & Manski (2000) J Am Stat Assoc 95:77: missing outcomes set to the ends of their range.
    # ONS4 life satisfaction (0-10): baselines 3, 5, 4, 6; follow-ups 5, -, 6, -.
    # Low: (2 + (0-5) + 2 + (0-6))/4 = -1.75; high: (2 + 5 + 2 + 4)/4 = 3.25; width = 0.5 x 10.
    s = _scores([3, 5, 4, 6], [5, None, 6, None], measure="ons4_life_satisfaction")
    est = wb.attrition_adjusted_change(s, "ons4_life_satisfaction").estimates.set_index("method")
    wbc = est.loc["worst_best_case_bounds"]
    assert wbc["bound_low"] == pytest.approx(-1.75) and wbc["bound_high"] == pytest.approx(3.25)
    assert wbc["mean_change_lower"] < -1.75 and wbc["mean_change_upper"] > 3.25
    cc = est.loc["complete_case"]
    assert cc["mean_change"] == pytest.approx(2.0) and cc["n_baseline"] == 4 and cc["n_followed_up"] == 2
    # delta adjustment (White et al. 2011): the lost must have changed 2 / (1 - 2/4) = 4 points less for zero overall
    assert cc["tipping_point_delta"] == pytest.approx(4.0)
    mono = est.loc["monotone_selection_bounds"]
    assert mono["bound_low"] == pytest.approx(-1.75) and mono["bound_high"] == pytest.approx(2.0)


def test_imbens_manski_critical_value_limits():
    # Imbens & Manski (2004) Econometrica 72:1845, s.4: C = 1.96 when the bounds coincide (a two-sided
    # interval for a point) and tends to 1.645 (one-sided) as the identified set widens.
    assert wb.imbens_manski_interval(0.0, 0.0, 1.0, 1.0) == pytest.approx((-1.959964, 1.959964), abs=1e-5)
    lo, hi = wb.imbens_manski_interval(0.0, 100.0, 1.0, 1.0)
    assert lo == pytest.approx(-1.644854, abs=1e-5) and hi == pytest.approx(101.644854, abs=1e-5)
    lo, hi = wb.imbens_manski_interval(0.0, 1.0, 1.0, 1.0, confidence=0.9)
    assert -1.645 < lo < -1.28  # between the one- and two-sided 90% quantiles

