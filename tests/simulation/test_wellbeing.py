"""Simulation tests of wellbeing; what the subject's tests check and their sources: tests/support/wellbeing.py."""

import pytest

from spstudy.methods import wellbeing as wb
from tests.support.wellbeing import _attrition_world

pytestmark = pytest.mark.simulation


def test_ipw_removes_selection_on_observed_characteristics():
    scores, chars, truth = _attrition_world(4000, seed=1)
    est = wb.attrition_adjusted_change(scores, "wemwbs_total", chars, ["group"]).estimates.set_index("method")
    cc, ipw = est.loc["complete_case"], est.loc["ipw"]
    assert not (cc["mean_change_lower"] < truth < cc["mean_change_upper"])  # complete case is biased here
    assert ipw["mean_change_lower"] < truth < ipw["mean_change_upper"]


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

