"""Unit tests of wellbeing; what the subject's tests check and their sources: tests/support/wellbeing.py."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy.methods import wellbeing as wb
from tests.support.wellbeing import _example_long, _long, _scores

pytestmark = pytest.mark.unit


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


def test_swemwbs_metric_vector_nan_and_errors():
    out = wb.swemwbs_metric([7, np.nan, 35])
    assert out[0] == 7.0 and np.isnan(out[1]) and out[2] == 35.0
    for bad in (6, 36, 7.5):
        with pytest.raises(ValueError, match="raw"):
            wb.swemwbs_metric(bad)


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


def test_score_instruments_missing_score_counts_as_unanswered():
    d = _long("C", "baseline", "swemwbs", {c: 2 for c in wb.SWEMWBS_ITEMS})
    d["score"] = d["score"].astype(float)
    d.loc[3, "score"] = np.nan
    s = wb.score_instruments(d)
    assert s["score"].isna().all() and (s["n_items"] == 6).all()


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
        (lambda d: d.drop(columns="score"), r"`long_df`: missing column\(s\)"),
        (lambda d: d.assign(score=d.score.astype(object).where(d.index != 0, "x")), "non-numeric"),
    ],
)
def test_score_instruments_rejects_bad_input(mutate, match):
    d = _long("A", "baseline", "wemwbs", {c: 3 for c in wb.WEMWBS_ITEMS})
    with pytest.raises(ValueError, match=match):
        wb.score_instruments(mutate(d))


def test_ons4_range_is_0_to_10():
    d = _long("A", "baseline", "ons4", {"ons4_happy": 11})
    with pytest.raises(ValueError, match="ons4 items must be integers 0-10"):
        wb.score_instruments(d)
    assert wb.score_instruments(_long("A", "baseline", "ons4", {"ons4_happy": 0}))["score"].notna().any()


# ---------------------------------------------------------------------------------------------
# paired_change: thresholds and direction
# ---------------------------------------------------------------------------------------------
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


def test_anxiety_reversed_polarity():
    base = [8, 8, 8, 2]
    fu = [5, 7, 8, 6]  # -3 improved, -1 no, 0 no, +4 worse (at threshold 2)
    res = wb.paired_change(_scores(base, fu, "ons4_anxious"), "ons4_anxious", threshold=2).iloc[0]
    assert not res["higher_is_better"]
    assert res["pct_improved"] == pytest.approx(25.0)
    assert res["pct_worsened"] == pytest.approx(25.0)


def test_swemwbs_metric_threshold_float_safe():
    # metric change 16.88 - 15.84 = 1.04 (>= 1) and 16.36 - 15.84 = 0.52 (< 1)
    res = wb.paired_change(_scores([15.84, 15.84, 15.84], [16.88, 16.36, 15.84], "swemwbs_metric"),
                           "swemwbs_metric").iloc[0]
    assert res["threshold"] == 1.0 and res["n_improved"] == 1


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


def test_paired_change_only_complete_pairs():
    s = _scores([40, 41, 42, None], [44, None, 45, 50])
    assert wb.paired_change(s, "wemwbs_total")["n_pairs"].item() == 2


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
def test_wellby_definition():
    # Green Book supplementary guidance, Wellbeing guidance for appraisal (HM Treasury, July
    # 2021): one WELLBY = a one-point change in life satisfaction (0-10) for one person for
    # one year.
    assert wb.life_satisfaction_to_wellbys(1, 1, 1) == 1.0
    assert wb.life_satisfaction_to_wellbys(0.5, 100, 2) == pytest.approx(100.0)
    assert wb.life_satisfaction_to_wellbys(-0.2, 10, 1) == pytest.approx(-2.0)
    np.testing.assert_allclose(wb.life_satisfaction_to_wellbys([1, 2], [10, 10], 1), [10, 20])
    assert wb.wellbys_to_value(2.0, 1000.0) == 2000.0


def test_wellby_errors():
    with pytest.raises(ValueError, match="persons"):
        wb.life_satisfaction_to_wellbys(1, -1, 1)
    with pytest.raises(ValueError, match="years"):
        wb.life_satisfaction_to_wellbys(1, 1, -1)
    with pytest.raises(ValueError, match="change_points"):
        wb.life_satisfaction_to_wellbys(11, 1, 1)
    with pytest.raises(ValueError, match="value_per_wellby"):
        wb.wellbys_to_value(1, -5)


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

