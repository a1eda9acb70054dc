"""Known-answer tests of valuation; what the subject's tests check and their sources: tests/support/valuation.py."""

import numpy as np
import pytest

from spstudy.analyses import valuation
from tests.support.valuation import _matched, _wb, a, params  # noqa: F401 (fixtures)

pytestmark = pytest.mark.known_answer


def test_investment_is_fte_times_unit_cost_plus_overhead(a):
    inv = valuation.investment(10, annual_cost=a["link_worker_annual_cost"], annual_cost_band5=a["link_worker_annual_cost_band5"],
                               management_overhead=a["management_overhead"])
    # 10 FTE x GBP 61,803 (PSSRU 2024 band 4) x (1 + 27.5% mid overhead)
    assert inv["point"] == pytest.approx(10 * 61803 * 1.275)
    assert inv["low"] == pytest.approx(10 * 61803 * 1.25) and inv["high"] == pytest.approx(10 * 69860 * 1.30)


def test_impact_map_quantities_and_proxies(a):
    im = valuation.impact_map(_matched(), n_referred=2000, wellbeing_change=_wb(), assumptions=a)
    imap, draws = im.table, im.draws
    m = imap.set_index("outcome")
    # 1,000 fewer GP appointments per 1,000 person-years x 2,000 referred x 1 year = 2,000 avoided
    assert m.loc["GP appointments avoided", "quantity"] == pytest.approx(2000)
    assert m.loc["GP appointments avoided", "financial_proxy"] == pytest.approx(45)  # PSSRU 2024, already 2023 prices
    assert m.loc["GP appointments avoided", "deadweight"] == 0  # the matched comparison already removes it
    # A&E: 50 per 1,000 PY x 2,000 = 100; GBP 114 (2013 prices) uprated with the deflator 117.6 / 89.0
    assert m.loc["A&E attendances avoided", "quantity"] == pytest.approx(100)
    assert m.loc["A&E attendances avoided", "financial_proxy"] == pytest.approx(114 * 117.6 / 89.0)
    # wellbeing valued only for the 500 people with a measured change: 500 WELLBYs x GBP 13,000 (2019) uprated
    assert m.loc["Higher life satisfaction", "quantity"] == pytest.approx(500)
    assert m.loc["Higher life satisfaction", "financial_proxy"] == pytest.approx(13000 * 117.6 / 100)
    assert m["valued"].all() and m.loc["GP appointments avoided", "credibility"] == "not assessed"
    np.testing.assert_allclose(m["quantity"], m["people"] * m["effect_per_person"])
    assert m.loc["A&E attendances avoided", "people"] == 2000 and m.loc["Higher life satisfaction", "people"] == 500
    assert set(draws) >= {"GP appointments avoided:quantity", "attribution", "Higher life satisfaction:financial_proxy"}


def test_ratio_matches_hand_calculation(a):
    r = valuation.analyse(_matched(), n_referred=2000, wellbeing_change=None, link_worker_fte=1.0, assumptions=a, seed=1)
    inv = r.investment["point"].item()
    s = r.summary.iloc[0]
    # guide stage 4: impact = quantity x proxy x (1 - deadweight)(1 - displacement)(1 - attribution); one year,
    # discounted once at 3.5% (stage 5.2)
    gp = 2000 * 45 * 0.7
    ae = 100 * (114 * 117.6 / 89.0) * 0.7
    pv = (gp + ae) / 1.035
    assert s["sroi_ratio"] == pytest.approx(pv / inv, rel=1e-9)
    assert s["npv"] == pytest.approx(pv - inv, rel=1e-9)
    assert s["ratio_service_use_only"] == pytest.approx(s["sroi_ratio"])
    assert "Wellbeing" in s["unvalued_outcomes"] and not s["wellbeing_valued"]  # nothing measured: said, not hidden

