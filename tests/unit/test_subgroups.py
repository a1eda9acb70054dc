"""Unit tests of subgroups; what the subject's tests check and their sources: tests/support/subgroups.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import evaluation as E
from spstudy.methods import subgroups as S
from tests.support.subgroups import _world

pytestmark = pytest.mark.unit


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


def test_did_long_refuses_pairs_whose_people_are_not_in_the_counts():
    """The one long-data builder (used by evaluation.did too) names the ids it cannot find rather
    than reading the wrong person's counts."""
    d, pairs = _world(50, seed=3)
    bad = pairs.copy()
    bad.loc[bad.index[:2], "control_id"] = -99
    with pytest.raises(ValueError, match=r"pairs: control_id \[-99, -99\] not in d \(2 rows\)"):
        S.did_long(d, bad, "gp", 6)
    with pytest.raises(ValueError, match="index_id not unique"):
        S.did_long(pd.concat([d, d.head(1)]), pairs, "gp", 6)
    L = S.did_long(d, pairs, "gp", 6)
    assert set(L["unit_id"]) <= set(d["index_id"]) and (L["days"] > 0).all()


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


def test_missing_factor_values_are_an_error_not_dropped():
    d, pairs = _world(50, seed=2)
    d.loc[0, "group"] = None
    with pytest.raises(ValueError, match="d.group: missing for 1 matched referred"):
        S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,))
    with pytest.raises(ValueError, match=r"`factors`: missing column\(s\).*add_subgroup_columns"):
        S.subgroup_effects(d, pairs, ["borough"], settings=("gp",), windows_months=(6,))



def _glm_cluster(L, X):
    """The reference: statsmodels' Poisson GLM, offset log(person-years), variance weights, cluster-robust by set."""
    import warnings

    import statsmodels.api as sm

    w = L["weight"].to_numpy(float)
    kw = {} if np.allclose(w, 1) else {"var_weights": w}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.GLM(L["events"].to_numpy(float), X, family=sm.families.Poisson(),
                      offset=np.log(L["days"].to_numpy(float) / 365.25), **kw).fit(
            cov_type="cluster", cov_kwds={"groups": pd.factorize(L["subclass"])[0]})


def _long(rng, n_sets, k, n_levels):
    rows = []
    for g in range(n_sets):
        lev = int(rng.integers(0, n_levels))
        for tr in (1, 0):
            for _ in range(1 if tr else k):
                for po in (0, 1):
                    rows.append((g, tr, po, rng.poisson(2.5 * (1.4 if tr and po else 1)), int(rng.integers(20, 366)),
                                 1.0 if tr else 1 / k, lev))
    return pd.DataFrame(rows, columns=["subclass", "treated", "post", "events", "days", "weight", "level"])


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_fit_is_statsmodels_glm(seed):
    """The closed-form fit of a saturated design (main DiD and the fully interacted subgroup model)
    gives statsmodels' coefficients, cluster-robust covariance (with its G/(G-1) x (N-1)/(N-K)
    factor) and Wald p-values, to 1e-9: statsmodels GLM is the reference implementation."""
    rng = np.random.default_rng(seed)
    L = _long(rng, int(rng.integers(5, 300)), int(rng.integers(1, 4)), 1 + seed % 3)
    if L["level"].nunique() == 1:
        X = pd.DataFrame({"const": 1.0, "treated": L["treated"] * 1.0, "post": L["post"] * 1.0,
                          "treated_post": (L["treated"] * L["post"]) * 1.0})
    else:
        X = pd.DataFrame({f"g{i}{s}": (L["level"] == i) * v for i in sorted(L["level"].unique())
                          for s, v in (("", 1.0), ("_t", L["treated"]), ("_p", L["post"]), ("_tp", L["treated"] * L["post"]))})
    fit, clustered = S.poisson_did_fit(L, X)
    assert clustered and isinstance(fit, S.SaturatedPoissonFit)
    ref = _glm_cluster(L, X)
    np.testing.assert_allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fit.cov_params().to_numpy(), ref.cov_params().to_numpy(), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fit.bse.to_numpy(), ref.bse.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit.pvalues.to_numpy(), ref.pvalues.to_numpy(), rtol=1e-6, atol=1e-12)


def test_closed_form_fit_falls_back_to_statsmodels():
    """A cell with no events (the MLE is at infinity), a design that is not saturated (a covariate
    varies within a cell) or fewer than 3 sets: statsmodels' iterative fit, as before."""
    rng = np.random.default_rng(1)
    L = _long(rng, 40, 2, 1)
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"] * 1.0, "post": L["post"] * 1.0, "treated_post": (L["treated"] * L["post"]) * 1.0})
    empty = L.assign(events=np.where((L["treated"] == 1) & (L["post"] == 1), 0, L["events"]))
    assert not isinstance(S.poisson_did_fit(empty, X)[0], S.SaturatedPoissonFit)
    assert not isinstance(S.poisson_did_fit(L, X.assign(age=rng.normal(size=len(L))))[0], S.SaturatedPoissonFit)
    few = L[L["subclass"] < 2]
    fit, clustered = S.poisson_did_fit(few, X.loc[few.index])
    assert not clustered and not isinstance(fit, S.SaturatedPoissonFit)
    # collinear cells (fewer distinct rows than columns): not saturated either
    g = pd.factorize(L["subclass"])[0]
    args = (L["events"].to_numpy(float), L["weight"].to_numpy(float), L["days"].to_numpy(float) / 365.25)
    assert S._saturated_fit(*args, X.assign(dup=X["treated"] * 2), g) is None
    assert S._saturated_fit(*args, X, g) is not None


def test_closed_form_fit_of_a_design_that_is_not_0_1_and_missing_values_fall_back():
    """Saturated designs whose columns are not indicators (here a column coded 0/2) go through the
    factorising path, still equal to statsmodels; a missing matched set or event count falls back to
    statsmodels' own handling."""
    rng = np.random.default_rng(7)
    L = _long(rng, 120, 2, 1)
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"] * 2.0, "post": L["post"] * 1.0, "treated_post": (L["treated"] * L["post"]) * 1.0})
    fit, _ = S.poisson_did_fit(L, X)
    assert isinstance(fit, S.SaturatedPoissonFit)
    ref = _glm_cluster(L, X)
    np.testing.assert_allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fit.cov_params().to_numpy(), ref.cov_params().to_numpy(), rtol=1e-6, atol=1e-12)
    g = pd.factorize(L["subclass"])[0]
    args = (L["events"].to_numpy(float), L["weight"].to_numpy(float), L["days"].to_numpy(float) / 365.25)
    assert S._saturated_fit(*args, X, np.where(np.arange(len(g)) == 0, -1, g)) is None
    y = args[0].copy()
    y[3] = np.nan
    assert S._saturated_fit(y, *args[1:], X, g) is None
