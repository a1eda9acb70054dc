"""Tests for spstudy.wellbeing. Known answers cite their published source in comments."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy.methods import wellbeing as wb

# R datasets::sleep (Student 1908; Cushny & Peebles 1905): extra hours of sleep, drug 1 and 2.
SLEEP_G1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_G2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _scores(baseline, follow_up, measure="wemwbs_total"):
    """A scores frame (as score_instruments returns) from paired lists; None = missing."""
    rows = []
    for i, (b, f) in enumerate(zip(baseline, follow_up)):
        for tp, v in (("baseline", b), ("follow_up", f)):
            if v is not None:
                rows.append({"referral_id": f"R{i:03d}", "timepoint": tp, "instrument": "x",
                             "measure": measure, "score": float(v)})
    return pd.DataFrame(rows)


def _long(referral, timepoint, instrument, items_scores):
    return pd.DataFrame({
        "referral_id": referral, "timepoint": timepoint, "instrument": instrument,
        "item": list(items_scores), "score": list(items_scores.values()),
    })


# ---------------------------------------------------------------------------------------------
# SWEMWBS conversion table
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
def test_swemwbs_conversion_known_entries():
    # Source: Warwick Medical School SWEMWBS raw-to-metric conversion table (Stewart-Brown et
    # al. 2009, Health Qual Life Outcomes 7:15; WEMWBS website scoring guidance). Identical
    # values are reproduced in independent public analysis scripts (R data.frame
    # Raw_Score = 7:35, Metric_Score = c(7.00, 9.51, 11.25, ..., 32.55, 35.00)).
    expected = {7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 14: 15.32, 20: 18.59, 21: 19.25,
                28: 25.03, 33: 30.70, 34: 32.55, 35: 35.00}
    for raw, metric in expected.items():
        assert wb.swemwbs_metric(raw) == pytest.approx(metric, abs=1e-9)


@pytest.mark.unit
def test_swemwbs_conversion_table_shape_and_source():
    t = wb.swemwbs_conversion_table()
    assert list(t.columns) == ["raw_score", "metric_score", "source"]
    assert t["raw_score"].tolist() == list(range(7, 36))
    assert np.all(np.diff(t["metric_score"]) > 0)
    assert t["source"].str.contains("Stewart-Brown").all()
    # the full published table, in order
    assert t["metric_score"].tolist() == [
        7.00, 9.51, 11.25, 12.40, 13.33, 14.08, 14.75, 15.32, 15.84, 16.36, 16.88, 17.43,
        17.98, 18.59, 19.25, 19.98, 20.73, 21.54, 22.35, 23.21, 24.11, 25.03, 26.02, 27.03,
        28.13, 29.31, 30.70, 32.55, 35.00]


@pytest.mark.unit
def test_swemwbs_metric_vector_nan_and_errors():
    out = wb.swemwbs_metric([7, np.nan, 35])
    assert out[0] == 7.0 and np.isnan(out[1]) and out[2] == 35.0
    for bad in (6, 36, 7.5):
        with pytest.raises(ValueError, match="raw"):
            wb.swemwbs_metric(bad)


# ---------------------------------------------------------------------------------------------
# score_instruments
# ---------------------------------------------------------------------------------------------
def _example_long():
    parts = [
        _long("A", "baseline", "wemwbs", {c: 3 for c in wb.WEMWBS_ITEMS}),
        # follow-up missing item 14 -> no total
        _long("A", "follow_up", "wemwbs", {c: 4 for c in wb.WEMWBS_ITEMS[:13]}),
        _long("B", "baseline", "swemwbs", {c: 4 for c in wb.SWEMWBS_ITEMS}),
        _long("B", "baseline", "ons4", {"ons4_life_satisfaction": 5, "ons4_worthwhile": 6,
                                          "ons4_happy": 7}),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.unit
def test_score_instruments_totals_and_missing_rule():
    s = wb.score_instruments(_example_long())
    get = lambda r, tp, m: s[(s.referral_id == r) & (s.timepoint == tp) & (s.measure == m)]
    a0 = get("A", "baseline", "wemwbs_total")
    assert a0["score"].item() == 42.0 and a0["n_items"].item() == 14
    a1 = get("A", "follow_up", "wemwbs_total")
    assert np.isnan(a1["score"].item()) and a1["n_items"].item() == 13
    # SWEMWBS raw 28 -> metric 25.03 (Warwick table)
    assert get("B", "baseline", "swemwbs_raw")["score"].item() == 28.0
    assert get("B", "baseline", "swemwbs_metric")["score"].item() == pytest.approx(25.03)
    # ONS4: each item its own measure; unanswered anxious item present as NaN
    assert get("B", "baseline", "ons4_happy")["score"].item() == 7.0
    assert np.isnan(get("B", "baseline", "ons4_anxious")["score"].item())
    assert set(s.columns) == {"referral_id", "timepoint", "instrument", "measure", "score",
                              "n_items", "n_items_required"}


@pytest.mark.unit
def test_score_instruments_missing_score_counts_as_unanswered():
    d = _long("C", "baseline", "swemwbs", {c: 2 for c in wb.SWEMWBS_ITEMS})
    d["score"] = d["score"].astype(float)
    d.loc[3, "score"] = np.nan
    s = wb.score_instruments(d)
    assert s["score"].isna().all() and (s["n_items"] == 6).all()


@pytest.mark.unit
def test_derive_swemwbs_from_wemwbs_items():
    # WEMWBS item k scored 1 for SWEMWBS items (1,2,3,6,7,9,11) and 5 otherwise: raw = 7.
    items = {c: (1 if int(c[-2:]) in wb.SWEMWBS_WEMWBS_ITEM_NUMBERS else 5)
             for c in wb.WEMWBS_ITEMS}
    d = _long("D", "baseline", "wemwbs", items)
    s = wb.score_instruments(d, derive_swemwbs=True)
    raw = s[s.measure == "swemwbs_raw"]
    assert raw["score"].item() == 7.0 and raw["instrument"].item() == "wemwbs"
    assert s.loc[s.measure == "swemwbs_metric", "score"].item() == 7.0
    assert s.loc[s.measure == "wemwbs_total", "score"].item() == 7 * 1 + 7 * 5
    assert "swemwbs_raw" not in set(wb.score_instruments(d).measure)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.assign(score=d.score.where(d.index != 0, 6)), "wemwbs items must be integers 1-5"),
        (lambda d: d.assign(item=d.item.where(d.index != 0, "wemwbs_15")), "unknown item"),
        (lambda d: d.assign(timepoint="week_12"), "timepoint"),
        (lambda d: d.assign(instrument="gad7"), "instrument"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "more than one score"),
        (lambda d: d.drop(columns="score"), "missing required column"),
        (lambda d: d.assign(score=d.score.astype(object).where(d.index != 0, "x")), "non-numeric"),
    ],
)
@pytest.mark.unit
def test_score_instruments_rejects_bad_input(mutate, match):
    d = _long("A", "baseline", "wemwbs", {c: 3 for c in wb.WEMWBS_ITEMS})
    with pytest.raises(ValueError, match=match):
        wb.score_instruments(mutate(d))


@pytest.mark.unit
def test_ons4_range_is_0_to_10():
    d = _long("A", "baseline", "ons4", {"ons4_happy": 11})
    with pytest.raises(ValueError, match="ons4 items must be integers 0-10"):
        wb.score_instruments(d)
    assert wb.score_instruments(_long("A", "baseline", "ons4", {"ons4_happy": 0}))["score"].notna().any()


# ---------------------------------------------------------------------------------------------
# paired_change: known answers
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
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


@pytest.mark.known_answer
def test_paired_change_sleep_wilcoxon_matches_r():
    # R 4.x: wilcox.test(extra ~ group, data = sleep, paired = TRUE) prints
    #   "Wilcoxon signed rank test with continuity correction", V = 0, p-value = 0.009091
    # (one zero difference and ties, so R uses the normal approximation).
    res = wb.paired_change(_scores(SLEEP_G2, SLEEP_G1), "wemwbs_total").iloc[0]
    assert res["wilcoxon_v"] == 0
    assert res["p_wilcoxon"] == pytest.approx(0.009091, abs=5e-7)
    assert "continuity" in res["wilcoxon_method"]


@pytest.mark.known_answer
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


@pytest.mark.known_answer
def test_cohens_d_av_matches_mote():
    # MOTE (R) tests/testthat/test-d_dep_t_avg.R: d_dep_t_avg(m1 = 5.57, m2 = 4.43,
    # sd1 = 1.99, sd2 = 2.88, n = 7) gives d = 0.4681725.
    assert wb.cohens_d_av(5.57, 4.43, 1.99, 2.88) == pytest.approx(0.4681725, abs=1e-7)


@pytest.mark.known_answer
def test_cohens_d_z_matches_poweranalysis():
    # powerAnalysis (R) ?ES.t.paired example: ES.t.paired(md = -0.08062384, sd = 1.401886)
    # prints d = 0.05751098 (reported as a magnitude).
    assert abs(wb.cohens_d_z(-0.08062384, 1.401886)) == pytest.approx(0.05751098, abs=1e-8)


@pytest.mark.known_answer
def test_paired_change_effect_sizes_on_sleep():
    # d_z = mean diff / SD diff = -1.58 / 1.2299955 (SD of sleep differences, R sd()).
    res = wb.paired_change(_scores(SLEEP_G2, SLEEP_G1), "wemwbs_total").iloc[0]
    assert res["sd_change"] == pytest.approx(1.2299955, abs=1e-7)
    assert res["d_z"] == pytest.approx(-1.58 / 1.2299955, abs=1e-6)
    expected_av = (0.75 - 2.33) / ((np.std(SLEEP_G1, ddof=1) + np.std(SLEEP_G2, ddof=1)) / 2)
    assert res["d_av"] == pytest.approx(expected_av)


# ---------------------------------------------------------------------------------------------
# paired_change: thresholds and direction
# ---------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_percent_improved_worsened_wemwbs_default_threshold():
    # changes: +3 (improved), +2 (no), -3 (worse), +5 (improved), 0 (no)
    base = [40, 40, 40, 40, 40]
    fu = [43, 42, 37, 45, 40]
    res = wb.paired_change(_scores(base, fu), "wemwbs_total").iloc[0]
    assert res["threshold"] == 3.0
    assert res["pct_improved"] == pytest.approx(40.0)
    assert res["pct_worsened"] == pytest.approx(20.0)
    assert res["pct_no_meaningful_change"] == pytest.approx(40.0)
    assert res["pct_improved_lower"] < 40 < res["pct_improved_upper"]


@pytest.mark.unit
def test_anxiety_reversed_polarity():
    base = [8, 8, 8, 2]
    fu = [5, 7, 8, 6]  # -3 improved, -1 no, 0 no, +4 worse (at threshold 2)
    res = wb.paired_change(_scores(base, fu, "ons4_anxious"), "ons4_anxious", threshold=2).iloc[0]
    assert not res["higher_is_better"]
    assert res["pct_improved"] == pytest.approx(25.0)
    assert res["pct_worsened"] == pytest.approx(25.0)


@pytest.mark.unit
def test_swemwbs_metric_threshold_float_safe():
    # metric change 16.88 - 15.84 = 1.04 (>= 1) and 16.36 - 15.84 = 0.52 (< 1)
    res = wb.paired_change(_scores([15.84, 15.84, 15.84], [16.88, 16.36, 15.84], "swemwbs_metric"),
                           "swemwbs_metric").iloc[0]
    assert res["threshold"] == 1.0 and res["n_improved"] == 1


@pytest.mark.unit
def test_paired_change_errors():
    s = _scores([1, 2, 3], [2, 3, 4], "ons4_happy")
    with pytest.raises(ValueError, match="threshold"):
        wb.paired_change(s, "ons4_happy")
    with pytest.raises(ValueError, match="threshold"):
        wb.paired_change(s, "ons4_happy", threshold=0)
    with pytest.raises(ValueError, match="measure"):
        wb.paired_change(s, "phq9_total")
    with pytest.raises(ValueError, match="at least 2"):
        wb.paired_change(_scores([1, 2], [2, None], "ons4_happy"), "ons4_happy", threshold=1)


@pytest.mark.unit
def test_paired_change_only_complete_pairs():
    s = _scores([40, 41, 42, None], [44, None, 45, 50])
    assert wb.paired_change(s, "wemwbs_total")["n_pairs"].item() == 2


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(14, 70), st.integers(14, 70)), min_size=3, max_size=40))
def test_paired_change_properties(pairs):
    base = [p[0] for p in pairs]
    fu = [p[1] for p in pairs]
    res = wb.paired_change(_scores(base, fu), "wemwbs_total").iloc[0]
    assert res["mean_change"] == pytest.approx(np.mean(fu) - np.mean(base))
    total = res["pct_improved"] + res["pct_worsened"] + res["pct_no_meaningful_change"]
    assert total == pytest.approx(100.0)
    flipped = wb.paired_change(_scores(fu, base), "wemwbs_total").iloc[0]
    assert flipped["pct_improved"] == pytest.approx(res["pct_worsened"])
    if res["sd_change"] > 0:
        assert flipped["d_z"] == pytest.approx(-res["d_z"])
        assert res["mean_change_lower"] <= res["mean_change"] <= res["mean_change_upper"]


# ---------------------------------------------------------------------------------------------
# attrition
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
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


@pytest.mark.unit
def test_attrition_counts_only_baseline_responders():
    s = _scores([40, 50, None, 60], [45, None, 30, None])
    a = wb.attrition(s, "wemwbs_total").set_index("group")
    assert a.loc["difference", "n"] == 3
    assert a.loc["followed_up", "mean_baseline"] == 40
    assert a.loc["lost_to_follow_up", "mean_baseline"] == 55
    assert np.isnan(a.loc["difference", "mean_baseline_lower"])  # one followed-up person: no interval


# ---------------------------------------------------------------------------------------------
# WELLBYs
# ---------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_wellby_definition():
    # Green Book supplementary guidance, Wellbeing guidance for appraisal (HM Treasury, July
    # 2021): one WELLBY = a one-point change in life satisfaction (0-10) for one person for
    # one year.
    assert wb.life_satisfaction_to_wellbys(1, 1, 1) == 1.0
    assert wb.life_satisfaction_to_wellbys(0.5, 100, 2) == pytest.approx(100.0)
    assert wb.life_satisfaction_to_wellbys(-0.2, 10, 1) == pytest.approx(-2.0)
    np.testing.assert_allclose(wb.life_satisfaction_to_wellbys([1, 2], [10, 10], 1), [10, 20])
    assert wb.wellbys_to_value(2.0, 1000.0) == 2000.0


@pytest.mark.unit
def test_wellby_errors():
    with pytest.raises(ValueError, match="persons"):
        wb.life_satisfaction_to_wellbys(1, -1, 1)
    with pytest.raises(ValueError, match="years"):
        wb.life_satisfaction_to_wellbys(1, 1, -1)
    with pytest.raises(ValueError, match="change_points"):
        wb.life_satisfaction_to_wellbys(11, 1, 1)
    with pytest.raises(ValueError, match="value_per_wellby"):
        wb.wellbys_to_value(1, -5)


# ---------------------------------------------------------------------------------------------
# Attrition-adjusted change (IPW and bounds)
# ---------------------------------------------------------------------------------------------
def _attrition_world(n, seed, mnar=False):
    """WEMWBS baseline B, change D, follow-up returned or not. MAR: return depends on B and a group
    that also changes D. MNAR: return depends on D itself (people who improve return more often)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    b = np.clip(np.round(rng.normal(41, 6, n)), 20, 60)
    fu = np.clip(np.round(b + 3 + 2 * g + 0.25 * (41 - b) + rng.normal(0, 5, n)), 14, 70)
    d = fu - b
    if mnar:
        lp = -0.6 + 0.8 * (d - d.mean()) / d.std()
    else:
        lp = -0.6 - 0.12 * (b - 41) + 0.9 * g
    r = rng.random(n) < 1 / (1 + np.exp(-lp))
    scores = _scores(b.tolist(), [f if k else None for f, k in zip(fu, r)])
    chars = pd.DataFrame({"referral_id": [f"R{i:03d}" for i in range(n)], "group": np.where(g == 1, "b", "a")})
    return scores, chars, float(d.mean())


@pytest.mark.known_answer
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
    assert res["mean"] == pytest.approx(1.8, abs=1e-9)
    assert res["se"] ** 2 == pytest.approx(0.356, abs=1e-9)
    assert res["lower"] == pytest.approx(1.8 - 1.959964 * np.sqrt(0.356), abs=1e-5)


@pytest.mark.known_answer
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


@pytest.mark.known_answer
def test_imbens_manski_critical_value_limits():
    # Imbens & Manski (2004) Econometrica 72:1845, s.4: C = 1.96 when the bounds coincide (a two-sided
    # interval for a point) and tends to 1.645 (one-sided) as the identified set widens.
    assert wb.imbens_manski_interval(0.0, 0.0, 1.0, 1.0) == pytest.approx((-1.959964, 1.959964), abs=1e-5)
    lo, hi = wb.imbens_manski_interval(0.0, 100.0, 1.0, 1.0)
    assert lo == pytest.approx(-1.644854, abs=1e-5) and hi == pytest.approx(101.644854, abs=1e-5)
    lo, hi = wb.imbens_manski_interval(0.0, 1.0, 1.0, 1.0, confidence=0.9)
    assert -1.645 < lo < -1.28  # between the one- and two-sided 90% quantiles


@pytest.mark.simulation
def test_ipw_removes_selection_on_observed_characteristics():
    scores, chars, truth = _attrition_world(4000, seed=1)
    est = wb.attrition_adjusted_change(scores, "wemwbs_total", chars, ["group"]).estimates.set_index("method")
    cc, ipw = est.loc["complete_case"], est.loc["ipw"]
    assert not (cc["mean_change_lower"] < truth < cc["mean_change_upper"])  # complete case is biased here
    assert ipw["mean_change_lower"] < truth < ipw["mean_change_upper"]


@pytest.mark.simulation
def test_when_improvers_return_more_only_the_bounds_hold():
    # Missing not at random on the change itself: weighting on baseline cannot fix it, the bounds do.
    scores, chars, truth = _attrition_world(4000, seed=2, mnar=True)
    res = wb.attrition_adjusted_change(scores, "wemwbs_total", chars, ["group"])
    est = res.estimates.set_index("method")
    assert est.loc["complete_case", "mean_change_lower"] > truth and est.loc["ipw", "mean_change_lower"] > truth
    for m in ("worst_best_case_bounds", "monotone_selection_bounds"):
        assert est.loc[m, "bound_low"] <= truth <= est.loc[m, "bound_high"]
    assert set(res.response_model["term"]) == {"(Intercept)", "baseline_score", "group[b]"}
    assert res.weights["effective_n"].iloc[0] <= res.weights["n_followed_up"].iloc[0]


@pytest.mark.unit
def test_attrition_adjusted_change_reports_rather_than_fails():
    s = _scores([40, 42, 44, 46, 48, 50], [45, 47, None, None, 50, None])
    chars = pd.DataFrame({"referral_id": [f"R{i:03d}" for i in range(6)], "borough": ["Camden"] * 3 + ["Enfield"] * 2 + ["Barnet"]})
    est = wb.attrition_adjusted_change(s, "wemwbs_total", chars, ["borough"]).estimates.set_index("method")
    assert est.loc["ipw", "status"].startswith("not estimable") and "borough='Barnet'" in est.loc["ipw", "status"]
    assert np.isnan(est.loc["ipw", "mean_change"]) and est.loc["complete_case", "status"] == "estimated"
    with pytest.raises(ValueError, match="no \\(or missing\\)"):
        wb.attrition_adjusted_change(s, "wemwbs_total", chars.iloc[:3], ["borough"])
    with pytest.raises(ValueError, match="characteristics: needed"):
        wb.attrition_adjusted_change(s, "wemwbs_total", None, ["borough"])


@pytest.mark.unit
def test_anxiety_bounds_swap_sides_and_all_measures_stack():
    s = pd.concat([_scores([8, 7, 9, 6], [5, None, 6, 5], measure="ons4_anxious"),
                   _scores([5, 4, 6, 5], [6, None, 7, 6], measure="ons4_life_satisfaction")], ignore_index=True)
    res = wb.attrition_adjusted_changes(s)
    anx = res.estimates[res.estimates["measure"] == "ons4_anxious"].set_index("method")
    assert anx.loc["complete_case", "mean_change"] == pytest.approx(-7 / 3)
    # lower is better: the complete case is the best case, so it is the LOW end of the monotone bounds
    assert anx.loc["monotone_selection_bounds", "bound_low"] == pytest.approx(-7 / 3)
    assert anx.loc["monotone_selection_bounds", "bound_high"] == pytest.approx(anx.loc["worst_best_case_bounds", "bound_high"])
    assert anx.loc["complete_case", "tipping_point_delta"] == pytest.approx((7 / 3) / (1 / 4))
    assert set(res.estimates["measure"]) == {"ons4_anxious", "ons4_life_satisfaction"}
    assert res.tidy() is res.estimates
