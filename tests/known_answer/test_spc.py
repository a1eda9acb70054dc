"""Known-answer tests of spc; what the subject's tests check and their sources: tests/support/spc.py."""

from __future__ import annotations

import pytest

from tests.support.spc import _series

pytestmark = pytest.mark.known_answer


def test_limits_match_nhsrplotthedots_deviations_vignette():
    """NHSRplotthedots (NHS-R community, v0.2.2) vignette 'Deviations from Excel defaults': data
    1,2,1,2,10,1,2,... (18 points). With outlier screening (package default) UPL 4.6, mean 1.94,
    LPL -0.72; without (the Making Data Count Excel tool) UPL 6.95, mean 1.94, LPL -3.06. Point 5
    is the only special-cause point, an improvement."""
    data = [1, 2, 1, 2, 10, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    s = _series(data, screen_outliers=True, improvement="increase")
    assert (round(s.process_limit_upper[0], 2), round(s["mean"][0], 2), round(s.process_limit_lower[0], 2)) == (4.6, 1.94, -0.72)
    e = _series(data, screen_outliers=False, improvement="increase")
    assert (round(e.process_limit_upper[0], 2), round(e["mean"][0], 2), round(e.process_limit_lower[0], 2)) == (6.95, 1.94, -3.06)
    for r in (s, e):
        assert r.index[r.special_cause].tolist() == [4]
        assert r.loc[4, "rule"] == "outside limits" and r.loc[4, "variation"] == "special cause improvement"


def test_trend_and_shift_rules_match_nhsrplotthedots_unit_tests():
    """NHSRplotthedots tests/testthat/test-ptd_calculate_point_type.R: 1..7 is a 7-point trend; a
    repeated value (1,2,3,3,4,5,6) breaks it; 8 points on one side of the mean then one on the
    other is a shift of 8; 6 on one side is not."""
    up = _series([1, 2, 3, 4, 5, 6, 7])   # the ends are also outside the limits (mean 4 +/- 2.66), which takes precedence
    assert up["special_cause"].all() and up.loc[1:5, "rule"].eq("trend").all() and up.loc[1:6, "direction"].eq("high").all()
    flat = _series([1, 2, 3, 3, 4, 5, 6])
    assert not (flat["rule"] == "trend").any()
    down = _series([2, 7, 6, 5, 4, 3, 2, 1, 3])
    assert down.index[down["rule"] == "trend"].tolist() == list(range(1, 8)) and (down.loc[1:7, "direction"] == "low").all()
    # shift: 8 points above the mean, then 12 below (alternating, so no trend; small moving ranges)
    sh = _series([11, 10] * 4 + [9.4, 8.4] * 6)
    assert sh["rule"].eq("shift").all() and sh.loc[:7, "direction"].eq("high").all() and sh.loc[8:, "direction"].eq("low").all()
    six = _series([11, 10] * 3 + [9.2, 8.2] * 7)          # 6 above: not a shift of 7; the 14 below are
    assert six.loc[:5, "rule"].ne("shift").all() and six.loc[6:, "rule"].eq("shift").all()
    six6 = _series([11, 10] * 3 + [9.2, 8.2] * 7, shift_points=6)
    assert six6.loc[:5, "special_cause"].all() and six6.loc[[1, 3, 5], "rule"].eq("shift").all()

