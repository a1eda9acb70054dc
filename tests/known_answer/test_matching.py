"""Known-answer tests of matching; what the subject's tests check and their sources: tests/support/matching.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.methods import matching as mt
from tests.support.matching import (
    COVS,
    MM_BASELINE,
    MM_EXACT_CALIPER,
    MM_RATIO2_CALIPER,
    MM_RATIO3_COLS23,
    MM_RATIO3_REPLACE,
    MM_SMALLEST_CALIPER,
    STATS,
    SUM_ALL,
    SUM_MATCHED,
    VARS,
    _match_grid,
    _quiet_match,
    lalonde,  # noqa: F401 (fixtures)
)

pytestmark = pytest.mark.known_answer


def test_baseline_1to1_matches_matchit_exactly(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", distance="ps", caliper=None,
                                     id_col="id")
    np.testing.assert_array_equal(_match_grid(res, 1)[:, 0], MM_BASELINE)
    # MatchIt subclass: numbered by the treated unit's row; the control takes its treated's.
    sub = res.units["subclass"]
    assert sub.iloc[:185].tolist() == list(range(1, 186))
    assert sub.iloc[185:193].tolist() == [pd.NA] * 4 + [147, 6, pd.NA, 57]  # PSID1-PSID8
    assert (res.units["weight"] == (res.units["n_matches"] > 0)).all()


def test_ratio3_without_replacement_matches_matchit(lalonde):
    with pytest.warns(UserWarning, match="fewer than k=3"):
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=3, distance="ps",
                                         caliper=None, id_col="id")
    expected = np.column_stack([MM_BASELINE, MM_RATIO3_COLS23.reshape(2, 185).T])
    np.testing.assert_array_equal(_match_grid(res, 3), expected)
    # Snapshot weights: controls in 2-control sets 1.15945946, in 3-control sets 0.77297297
    w = res.units.loc[res.units["treated"] == 0, "weight"]
    assert set(np.round(w, 8)) == {1.15945946, 0.77297297}
    assert w.sum() == pytest.approx(429)
    assert res.units["subclass"].iloc[185:200].tolist() == [
        116, 99, 137, 139, 147, 6, 151, 57, 63, 141, 125, 76, 153, 95, 40]
    assert res.n_treated_fewer_than_k == 126


def test_ratio3_with_replacement_matches_matchit(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=3, replace=True, distance="ps",
                                     caliper=None, id_col="id")
    expected = MM_RATIO3_REPLACE.reshape(3, 185).T
    # Same matched set for every treated unit. Within a set the order of controls whose scores
    # are exactly tied (identical covariates) differs: R breaks those ties by floating-point
    # noise in glm's fitted values, this module by row order.
    np.testing.assert_array_equal(np.sort(_match_grid(res, 3), axis=1), np.sort(expected, axis=1))
    w = res.units.set_index("id")["weight"]
    # Snapshot weights (PSID5, PSID8, PSID15, PSID48, PSID196) and normalisation
    assert w[["PSID5", "PSID8", "PSID15", "PSID48", "PSID196"]].round(8).tolist() == [
        0.27567568, 0.55135135, 1.92972973, 2.48108108, 8.27027027]
    assert res.units["subclass"].isna().all()  # MatchIt gives no subclass with replacement
    tbl = res.sample_size_table
    assert tbl.loc["Matched", "Control"] == 153 and tbl.loc["Unmatched", "Control"] == 276


def test_ratio2_raw_caliper_matches_matchit(lalonde):
    with pytest.warns(UserWarning) as record:
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=2, caliper=0.1,
                                         caliper_scale="raw", distance="ps", id_col="id")
    messages = [str(w.message) for w in record]
    assert any("66 of 185 treated units" in m for m in messages)
    assert any("89 of 185 treated units got fewer than k=2" in m for m in messages)
    assert res.n_treated_fewer_than_k == 89
    np.testing.assert_array_equal(_match_grid(res, 2), MM_RATIO2_CALIPER.reshape(2, 185).T)
    assert res.n_treated_lost_to_caliper == 66
    assert (res.pairs["abs_distance"] <= 0.1).all()


def test_largest_and_smallest_order_with_caliper_match_matchit(lalonde):
    largest = _quiet_match(lalonde, "treat", "ps", caliper=0.1, caliper_scale="raw",
                           distance="ps", id_col="id")
    np.testing.assert_array_equal(_match_grid(largest, 1)[:, 0], MM_RATIO2_CALIPER[:185])
    smallest = _quiet_match(lalonde, "treat", "ps", caliper=0.1, caliper_scale="raw",
                            distance="ps", order="smallest", id_col="id")
    np.testing.assert_array_equal(_match_grid(smallest, 1)[:, 0], MM_SMALLEST_CALIPER)


def test_exact_and_caliper_match_matchit(lalonde):
    with pytest.warns(mt.EstimandChangeWarning, match="69 of 185"):
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", caliper=0.2,
                                         caliper_scale="raw", distance="ps", exact=["race"],
                                         id_col="id")
    np.testing.assert_array_equal(_match_grid(res, 1)[:, 0], MM_EXACT_CALIPER)
    # snapshot subclass of NSW1-NSW12
    assert res.units["subclass"].iloc[:12].tolist() == [
        pd.NA, 1, pd.NA, 2, pd.NA, pd.NA, pd.NA, 3, 4, 5, 6, 7]
    assert res.n_treated_lost_to_caliper + res.n_treated_pool_exhausted == 69
    p = res.pairs.merge(lalonde[["id", "race"]], left_on="treated_id", right_on="id")
    p = p.merge(lalonde[["id", "race"]], left_on="control_id", right_on="id",
                suffixes=("_t", "_c"))
    assert (p["race_t"] == p["race_c"]).all()


def test_standardised_caliper_matches_matchit_readme(lalonde):
    # README: matchit(..., ratio = 2, caliper = .025) -> caliper 0.007, 234 matched units
    res = _quiet_match(lalonde, "treat", "ps", k=2, caliper=0.025, distance="ps", id_col="id")
    assert round(res.caliper_width, 3) == 0.007
    assert res.caliper_width == pytest.approx(0.025 * lalonde["ps"].std(ddof=1))
    assert int((res.weights > 0).sum()) == 234


def test_balance_table_reproduces_matchit_summary(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", distance="ps", caliper=None,
                                     id_col="id")
    bal = mt.balance_table(lalonde, "treat", ["ps"] + COVS, weights=res.weights)
    assert bal["variable"].unique().tolist() == VARS
    for sample, expected in (("Unadjusted", SUM_ALL), ("Adjusted", SUM_MATCHED)):
        got = bal[bal["sample"] == sample].set_index("variable").loc[VARS, STATS].to_numpy()
        # MatchIt rounds to 6 decimals; means of dollar amounts are compared relatively
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    flags = bal.set_index(["variable", "sample"])["imbalanced"]
    assert not flags[("married", "Adjusted")]
    assert flags[("nodegree", "Adjusted")]
    # nn table of the same snapshot: Control All 429, Matched 185, Unmatched 244; Treated 185
    tbl = res.sample_size_table
    assert tbl.loc[["All", "Matched (ESS)", "Matched", "Unmatched", "Discarded"]].to_numpy(
    ).tolist() == [[429, 185], [185, 185], [185, 185], [244, 0], [0, 0]]


def test_propensity_score_matches_r_glm_means(lalonde):
    ps = mt.propensity_score(lalonde, "treat", COVS)
    assert list(ps.columns) == ["ps", "logit_ps"]
    np.testing.assert_allclose(ps["logit_ps"], np.log(ps["ps"] / (1 - ps["ps"])), rtol=1e-10)
    t = lalonde["treat"] == 1
    # sum.all "distance" row: Means Treated 0.577436, Means Control 0.182225
    assert ps.loc[t, "ps"].mean() == pytest.approx(0.577436, abs=5e-7)
    assert ps.loc[~t, "ps"].mean() == pytest.approx(0.182225, abs=5e-7)
    # treatment coding against the first level, as R's model.matrix
    assert {"race[hispan]", "race[white]"} <= set(mt.propensity_model(lalonde, "treat", COVS).coefficients)


def test_irls_agrees_with_statsmodels_glm(lalonde):
    import statsmodels.api as sm

    fitted = mt.propensity_model(lalonde, "treat", COVS)
    ps, coef = fitted.scores, pd.Series(fitted.coefficients)
    X = pd.get_dummies(lalonde[COVS], columns=["race"], drop_first=True, dtype=float)
    X.insert(0, "const", 1.0)
    ref = sm.GLM(lalonde["treat"], X, family=sm.families.Binomial()).fit(tol=1e-12)
    ref_params = ref.params.rename(lambda c: {"const": "(Intercept)"}.get(
        c, c.replace("race_", "race[") + "]" if c.startswith("race_") else c))
    assert set(ref_params.index) == set(coef.index)
    np.testing.assert_allclose(coef[ref_params.index].to_numpy(), ref_params.to_numpy(),
                               rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ps["ps"], ref.fittedvalues, rtol=1e-9)

