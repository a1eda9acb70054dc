"""XmR charts and the Making Data Count special-cause rules (spstudy.spc)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.methods.spc import xmr, xmr_figure


def _series(values, **kw):
    d = pd.DataFrame({"month": pd.date_range("2021-01-01", periods=len(values), freq="MS"), "n": values})
    return xmr(d, "n", "month", **kw)


@pytest.mark.known_answer
def test_limits_match_nhsrplotthedots_deviations_vignette():
    """NHSRplotthedots (NHS-R community, v0.2.2) vignette 'Deviations from Excel defaults': data
    1,2,1,2,10,1,2,... (18 points). With outlier screening (package default) UPL 4.6, mean 1.94,
    LPL -0.72; without (the Making Data Count Excel tool) UPL 6.95, mean 1.94, LPL -3.06. Point 5
    is the only special-cause point, an improvement."""
    data = [1, 2, 1, 2, 10, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    s = _series(data, screen_outliers=True, improvement="increase")
    assert (round(s.upper_process_limit[0], 2), round(s["mean"][0], 2), round(s.lower_process_limit[0], 2)) == (4.6, 1.94, -0.72)
    e = _series(data, screen_outliers=False, improvement="increase")
    assert (round(e.upper_process_limit[0], 2), round(e["mean"][0], 2), round(e.lower_process_limit[0], 2)) == (6.95, 1.94, -3.06)
    for r in (s, e):
        assert r.index[r.special_cause].tolist() == [4]
        assert r.loc[4, "rule"] == "outside limits" and r.loc[4, "variation"] == "special cause improvement"


@pytest.mark.known_answer
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


@pytest.mark.unit
def test_two_of_three_near_limit_same_side():
    base = [10, 10.5] * 6
    s = _series(base + [11.6, 10.6, 11.7] + base)   # two of three beyond 2 sigma (inside 3), all above the mean
    assert s.index[s["special_cause"]].tolist() == [12, 14]
    assert (s.loc[[12, 14], "rule"] == "two of three near limit").all() and (s.loc[[12, 14], "direction"] == "high").all()
    o = _series(base + [11.6, 10.2, 11.7] + base)   # the middle point is below the mean: no signal
    assert not o["special_cause"].any()


@pytest.mark.unit
def test_groups_are_separate_series_and_bad_input_is_refused():
    d = pd.DataFrame({"borough": ["a"] * 12 + ["b"] * 12, "month": list(range(12)) * 2,
                      "n": list(range(12)) + [5] * 12})
    r = xmr(d, "n", "month", ["borough"])
    assert r.groupby("borough")["mean"].first().to_dict() == {"a": 5.5, "b": 5.0}
    assert r.groupby("borough")["n_points"].first().tolist() == [12, 12]
    with pytest.raises(ValueError, match="has no column"):
        xmr(d, "count", "month")
    with pytest.raises(ValueError, match="more than one row per"):
        xmr(d, "n", "month")
    with pytest.raises(ValueError, match="shift_points must be a whole number >= 3"):
        xmr(d, "n", "month", ["borough"], shift_points=2)


@pytest.mark.simulation
def test_false_alarms_on_stable_data_and_what_autocorrelation_does():
    """Stable independent normal data: points outside 3-sigma limits at about the nominal 0.27%
    (limits estimated from each 24-point series, so a little more). Autocorrelated data (AR(1),
    phi = 0.7) break the independence XmR assumes: the moving range underestimates sigma and
    special causes are signalled far more often (a known limitation; Montgomery, Introduction to
    Statistical Quality Control, ch. 10)."""
    rng = np.random.default_rng(20240)
    iid_out, iid_any, ar_any = [], [], []
    for _ in range(600):
        y = rng.normal(100, 10, 24)
        s = _series(list(y))
        iid_out.append(s["rule"].eq("outside limits").mean())
        iid_any.append(s["special_cause"].any())
        e = np.zeros(24)
        e[0] = rng.normal()
        for t in range(1, 24):
            e[t] = 0.7 * e[t - 1] + rng.normal() * np.sqrt(1 - 0.49)
        ar_any.append(_series(list(100 + 10 * e))["special_cause"].any())
    assert 0.001 < np.mean(iid_out) < 0.008
    assert np.mean(ar_any) > np.mean(iid_any) + 0.3


@pytest.mark.simulation
def test_a_sustained_step_is_detected():
    """A 2-sigma step after 12 stable months, limits from those 12 months (baseline_points, as Making
    Data Count advises fixing limits on a stable period), is flagged in most series."""
    rng = np.random.default_rng(11)
    hit = []
    for _ in range(300):
        y = np.concatenate([rng.normal(0, 1, 12), rng.normal(2, 1, 12)])
        s = _series(list(y), baseline_points=12)
        hit.append(s.loc[12:, "special_cause"].any())
    assert np.mean(hit) > 0.8


@pytest.mark.unit
def test_figure_is_drawn_from_the_tidy_table_only():
    d = pd.DataFrame({"borough": ["Barnet"] * 12 + ["Camden"] * 12, "month": [f"2023-{m:02d}-01" for m in range(1, 13)] * 2,
                      "n_referrals": list(range(100, 112)) + [50] * 11 + [90]})
    t = xmr(d, "n_referrals", "month", ["borough"])
    fig = xmr_figure(t, "n_referrals", "month", "Referrals per month", "Referrals", series="borough")
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    assert fig.axes[1].get_title() == "Camden"
    with pytest.raises(ValueError, match="pass the output of spstudy.spc.xmr"):
        xmr_figure(d, "n_referrals", "month", "x", "y")
