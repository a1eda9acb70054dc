"""Known-answer tests of sroi; what the subject's tests check and their sources: tests/support/sroi.py."""

import numpy as np
import pytest

from spstudy.methods import sroi
from tests.support.sroi import _map, _row

pytestmark = pytest.mark.known_answer


# ---------------------------------------------------------------------------------------------
# Stage 4 and 5.1
# ---------------------------------------------------------------------------------------------
def test_impact_value_hand_check():
    # Guide Stage 4: impact = quantity x proxy less deadweight, displacement, attribution.
    # 10 x 1000 x (1 - 0.2) x (1 - 0.1) x (1 - 0.25) = 5400.
    assert sroi.impact_value(_row()) == pytest.approx(5400.0)


def test_drop_off_guide_example():
    # Guide Stage 5.1: an outcome worth 100 lasting three years with 10% drop-off is worth
    # 100 in year 1, 90 in year 2 (100 less 10%) and 81 in year 3 (90 less 10%).
    row = _row(quantity=1, financial_proxy=100, deadweight=0, attribution=0, displacement=0,
               drop_off=0.1, duration_years=3)
    np.testing.assert_allclose(sroi.project_impact(row), [100, 90, 81])


# ---------------------------------------------------------------------------------------------
# Stage 5.2 discounting
# ---------------------------------------------------------------------------------------------
def test_green_book_discount_known_answers():
    # Green Book Annex A6: discount factor 1/1.035^t; GBP 100 in year 10 -> 70.89.
    assert sroi.present_value([100], 0.035, start_year=10) == pytest.approx(70.89, abs=0.005)
    # Annex A6 table factors (4 d.p.): year 1 0.9662, year 5 0.8420, year 10 0.7089, year 30 0.3563
    df = sroi.discount_factors([1, 5, 10, 30])
    np.testing.assert_allclose(np.round(df, 4), [0.9662, 0.8420, 0.7089, 0.3563])


def test_present_value_guide_convention_year1_discounted():
    # Guide Stage 5.2: PV = value_1/(1+r) + value_2/(1+r)^2 + ...
    # 100/1.035 + 90/1.035^2 + 81/1.035^3 = 253.6917 (hand calculation).
    assert sroi.present_value([100, 90, 81]) == pytest.approx(253.6917, abs=1e-4)
    # Green Book year-0 convention: first value undiscounted
    assert sroi.present_value([100, 90], start_year=0) == pytest.approx(100 + 90 / 1.035)


def test_green_book_declining_schedule():
    f = sroi.green_book_discount_factors([0, 30, 31, 32])
    assert f[0] == 1.0
    assert f[1] == pytest.approx(1.035 ** -30)
    # Green Book: 3.0% applies from year 31
    assert f[2] == pytest.approx(1.035 ** -30 / 1.03)
    assert f[3] == pytest.approx(1.035 ** -30 / 1.03 ** 2)
    np.testing.assert_allclose(sroi.discount_factors(np.arange(31), "green_book"),
                               1.035 ** -np.arange(31.0))


# ---------------------------------------------------------------------------------------------
# Stage 5.3 / 5.5 headline figures
# ---------------------------------------------------------------------------------------------
def test_sroi_summary_hand_check():
    inv = 10_000.0
    s = sroi.sroi_summary(_map(), inv).iloc[0]
    pv = 5400 / 1.035 + 4860 / 1.035 ** 2 + 4374 / 1.035 ** 3
    assert s["present_value"] == pytest.approx(pv)
    assert s["npv"] == pytest.approx(pv - inv)             # guide 5.2: NPV = PV - inputs
    assert s["sroi_ratio"] == pytest.approx(pv / inv)       # guide 5.3: ratio = PV / inputs
    assert s["net_sroi_ratio"] == pytest.approx((pv - inv) / inv)
    # payback with drop-off: year 1 brings 5400, so 4600 are still owed, repaid in year 2 at 4860 / 12 a month:
    # 12 + 4600 / (4860 / 12) = 23.358 months (the guide's 5.5 formula, 22.2, assumes no drop-off)
    assert s["payback_months"] == pytest.approx(12 + 4600 / (4860 / 12))
    assert s["payback_reached"] and s["benefit_period_months"] == 36


def test_payback_is_the_guide_formula_without_drop_off():
    # guide 5.5: payback (months) = investment / (annual impact / 12) = 10000 / (5400/12) = 22.222
    s = sroi.sroi_summary(_map(_row(drop_off=0.0)), 10_000).iloc[0]
    assert s["payback_months"] == pytest.approx(10_000 / (5400 / 12)) == pytest.approx(22.222, abs=1e-3)
    assert sroi.payback_months(10_000, 5400) == pytest.approx(22.222, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Uprating
# ---------------------------------------------------------------------------------------------
def test_uprate_hand_check():
    # value x index[to] / index[from] (Green Book: convert to a common base year with the GDP
    # deflator). Illustrative index, not real deflator values.
    idx = {2019: 100.0, 2020: 105.0, 2023: 115.0}
    assert sroi.uprate(1000, 2019, 2023, idx) == pytest.approx(1150.0)
    assert sroi.uprate(1150, 2023, 2019, idx) == pytest.approx(1000.0)
    np.testing.assert_allclose(sroi.uprate([100, 200], 2020, 2019, idx), [100 / 1.05, 200 / 1.05])
    with pytest.raises(ValueError, match="to_year: 2030"):
        sroi.uprate(1, 2019, 2030, idx)
    with pytest.raises(ValueError, match="positive"):
        sroi.uprate(1, 2019, 2020, {2019: 0.0, 2020: 1.0})

