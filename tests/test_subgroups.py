"""Who benefits (spstudy.subgroups): known answers, equivalence with evaluation.did, simulated worlds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import evaluation as E
from spstudy.methods import subgroups as S
from spstudy.methods.power import simulate_matched_counts


def _world(n_sets, seed, groups=None, effect=1.0, **kw):
    d, pairs = simulate_matched_counts(n_sets, seed=seed, groups=groups, effect_rate_ratio=effect, **kw)
    return d, pairs


@pytest.mark.known_answer
def test_wald_equality_two_groups_altman_bland_2003():
    # Altman & Bland (2003) BMJ 326:219, "Interaction revisited": HRT and non-vertebral fractures,
    # RR 0.67 (95% CI 0.46 to 0.98) in women under 60 and 0.88 (0.71 to 1.08) aged 60+.
    # Published: difference of log RRs -0.2726, SE 0.2206, z = -1.24, P = 0.22; ratio of RRs 0.76 (0.49 to 1.17).
    z975 = 1.959964
    b = np.log([0.67, 0.88])
    se = np.array([(np.log(0.98) - np.log(0.46)) / (2 * z975), (np.log(1.08) - np.log(0.71)) / (2 * z975)])
    chi2, df, p = S.wald_equality_test(b, np.diag(se ** 2))
    diff, se_d = b[0] - b[1], np.sqrt(np.sum(se ** 2))
    assert diff == pytest.approx(-0.2726, abs=5e-4) and se_d == pytest.approx(0.2206, abs=5e-4)
    assert df == 1 and chi2 == pytest.approx((diff / se_d) ** 2) and np.sqrt(chi2) == pytest.approx(1.24, abs=0.005)
    assert p == pytest.approx(0.22, abs=0.005)
    assert np.exp(diff) == pytest.approx(0.76, abs=0.005)
    assert np.exp(diff - z975 * se_d) == pytest.approx(0.49, abs=0.005) and np.exp(diff + z975 * se_d) == pytest.approx(1.17, abs=0.005)


@pytest.mark.known_answer
def test_holm_adjustment_hand_computed():
    # Holm (1979) Scand J Stat 6:65 step-down: sorted p x (m - i + 1), cumulative maximum, capped at 1
    # (R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") = 0.05 0.08 0.09 0.09 0.09).
    assert S.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    from statsmodels.stats.multitest import multipletests  # reference implementation

    p = np.random.default_rng(4).uniform(0, 0.2, 25)
    assert S.holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)
    out = S.holm([0.04, np.nan, 0.01])  # missing p-values are not tests
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


@pytest.mark.known_answer
def test_saturated_poisson_reproduces_cell_ratio():
    # Saturated log-linear model: the MLE reproduces the observed cells (Agresti 2013, s.9.1), so the
    # ratio of rate ratios is (post_T/pre_T) / (post_C/pre_C) on the (weighted) sums.
    d = pd.DataFrame({"index_id": range(8), "treated": [1, 1, 1, 1, 0, 0, 0, 0], "seen": [1] * 4 + [0] * 4,
                      "gp_baseline_events": [4, 6, 5, 5, 3, 3, 4, 2], "baseline_days": 91,
                      "gp_post_6m_events": [6, 8, 7, 9, 8, 6, 7, 7], "post_6m_days": 183})
    pairs = pd.DataFrame({"subclass": [1, 2, 3, 4], "treated_id": [0, 1, 2, 3], "control_id": [4, 5, 6, 7]})
    r = S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6), min_matched_sets=3)
    assert r["status"] == "estimated"
    assert r["ratio_of_rate_ratios"] == pytest.approx((30 / 20) / (28 / 12), rel=1e-9)
    assert r["ratio_of_rate_ratios_lower"] < r["ratio_of_rate_ratios"] < r["ratio_of_rate_ratios_upper"]


@pytest.mark.unit
def test_same_estimator_as_evaluation_did():
    d, pairs = _world(400, seed=3, effect=0.85)
    ours = S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6))
    theirs = E.did(d, pairs, "gp", 6, "itt", boot=2)
    assert ours["ratio_of_rate_ratios"] == pytest.approx(theirs["ratio_of_rate_ratios"], rel=1e-10)
    assert ours["ratio_of_rate_ratios_lower"] == pytest.approx(theirs["ratio_of_rate_ratios_lower"], rel=1e-4)  # evaluation.did: same z, from confidence
    assert ours["p_value"] == pytest.approx(theirs["rrr_p_value"], rel=1e-6)
    # per protocol: only sets whose referred person was seen
    d.loc[d.index[:100], "seen"] = 0
    pp = S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6, "per_protocol"))
    assert pp["n_matched_sets"] == 300
    assert pp["ratio_of_rate_ratios"] == pytest.approx(E.did(d, pairs, "gp", 6, "per_protocol", boot=2)["ratio_of_rate_ratios"], rel=1e-10)


@pytest.mark.unit
def test_subgroup_estimates_equal_fits_on_each_subset_and_small_ones_say_so():
    d, pairs = _world(300, seed=5, groups={"A": 0.8, "B": 1.0, "C": 1.0})
    # make group C tiny: keep 5 of its sets
    c_sets = pairs[pairs["treated_id"].map(d.set_index("index_id")["group"]) == "C"]
    pairs = pd.concat([pairs[~pairs.index.isin(c_sets.index)], c_sets.head(5)]).reset_index(drop=True)
    res = S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,), min_matched_sets=20)
    est = res.estimates.set_index("subgroup")
    assert est.loc["C", "status"].startswith("too small") and np.isnan(est.loc["C", "ratio_of_rate_ratios"])
    assert est.loc["C", "n_matched_sets"] == 5
    t = d.set_index("index_id")
    for g in ("A", "B"):
        sub = pairs[pairs["treated_id"].map(t["group"]) == g]
        assert est.loc[g, "ratio_of_rate_ratios"] == pytest.approx(E.did(d, sub, "gp", 6, boot=2)["ratio_of_rate_ratios"], rel=1e-10)
        assert est.loc[g, "n_comparators_same_subgroup"] == est.loc[g, "n_comparators"]  # the simulated comparator shares the group
    it = res.interactions.iloc[0]
    assert it["n_subgroups"] == 3 and it["n_subgroups_tested"] == 2 and it["subgroups_not_tested"] == "C" and it["df"] == 1
    assert res.estimates["n_tests"].iloc[0] == 2 and it["n_tests"] == 1
    tidy = res.tidy()
    assert {"p_interaction", "p_interaction_holm", "ratio_of_rate_ratios_lower", "ratio_of_rate_ratios_upper"} <= set(tidy.columns)


@pytest.mark.unit
def test_two_group_interaction_equals_altman_bland_on_the_subgroup_fits():
    # With subgroups made of disjoint matched sets the fully interacted model's covariance is block
    # diagonal, so its Wald test is the z-test on the two subgroup fits (up to the small-sample factor).
    d, pairs = _world(600, seed=11, groups={"A": 0.75, "B": 1.0})
    res = S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,), min_matched_sets=20)
    e = res.estimates.set_index("subgroup")
    b = np.log(e["ratio_of_rate_ratios"].to_numpy())
    se = (np.log(e["ratio_of_rate_ratios_upper"]) - np.log(e["ratio_of_rate_ratios_lower"])).to_numpy() / (2 * 1.959964)
    z2 = (b[0] - b[1]) ** 2 / np.sum(se ** 2)
    assert res.interactions["chi2"].iloc[0] == pytest.approx(z2, rel=0.02)


@pytest.mark.simulation
def test_interaction_test_under_no_heterogeneity_with_overdispersion():
    # Null world: same effect (0.85) in two groups, over-dispersed counts (NB2 phi = 0.875, which a
    # model-based Poisson variance would ignore). The cluster-robust Wald statistic should be
    # chi-squared with 1 df: mean about 1, about 5% above 3.84. (150 replicates in a benchmark run
    # gave mean 0.95 and 5.3% rejections at 120 sets per group.)
    chis = []
    for s in range(60):
        d, pairs = _world(240, seed=1000 + s, groups={"A": 0.85, "B": 0.85})
        chis.append(S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,)).interactions["chi2"].iloc[0])
    chis = np.array(chis)
    assert 0.6 < chis.mean() < 1.5
    assert (chis > 3.84).mean() <= 0.15


@pytest.mark.simulation
def test_interaction_test_finds_heterogeneity_and_subgroups_cover_truth():
    d, pairs = _world(1500, seed=21, groups={"A": 0.70, "B": 1.00})
    res = S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,))
    assert res.interactions["p_interaction"].iloc[0] < 0.01
    e = res.estimates.set_index("subgroup")
    for g, truth in (("A", 0.70), ("B", 1.00)):
        assert e.loc[g, "ratio_of_rate_ratios_lower"] < truth < e.loc[g, "ratio_of_rate_ratios_upper"]


@pytest.mark.unit
def test_add_subgroup_columns_rules_and_errors():
    d = pd.DataFrame({"index_id": [0, 1, 2], "treated": [1, 1, 0], "referral_id": ["R1", "R2", None], "practice_code": ["P1", "P2", "P1"]})
    ref = pd.DataFrame({"referral_id": ["R1", "R2"], "reasons": ["housing;money", "isolation"]})
    prac = pd.DataFrame({"practice_code": ["P1", "P2"], "borough_code": ["E09000007", "E09000019"]})
    bor = pd.DataFrame({"borough_code": ["E09000007", "E09000019"], "borough_name": ["Camden", "Islington"]})
    out = S.add_subgroup_columns(d, ref, prac, bor)
    assert out["main_reason"].tolist()[:2] == ["housing", "isolation"] and pd.isna(out["main_reason"].iloc[2])
    assert out["borough"].tolist() == ["Camden", "Islington", "Camden"]
    alt = S.add_subgroup_columns(d, ref, prac, bor, reason_rule="single_or_multiple")
    assert alt["main_reason"].tolist()[:2] == ["multiple", "isolation"]
    with pytest.raises(ValueError, match="no reasons for 1 referred"):
        S.add_subgroup_columns(d, ref.iloc[:1], prac, bor)
    with pytest.raises(ValueError, match="no borough for practice_code"):
        S.add_subgroup_columns(d, ref, prac.iloc[:1], bor)
    with pytest.raises(ValueError, match="reason_rule"):
        S.add_subgroup_columns(d, ref, prac, bor, reason_rule="last")


@pytest.mark.unit
def test_missing_factor_values_are_an_error_not_dropped():
    d, pairs = _world(50, seed=2)
    d.loc[0, "group"] = None
    with pytest.raises(ValueError, match="d.group: missing for 1 matched referred"):
        S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,))
    with pytest.raises(ValueError, match="not in d"):
        S.subgroup_effects(d, pairs, ["borough"], settings=("gp",), windows_months=(6,))
