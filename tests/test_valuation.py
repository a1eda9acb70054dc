"""SROI inputs built from the evaluation: hand-checkable against the SROI guide's formulas
(Cabinet Office / Social Value UK 2012, stages 4-5) and the parameters' unit costs."""

import pandas as pd
import pytest

from spstudy import sroi, valuation
from spstudy.params import load_parameters


@pytest.fixture(scope="module")
def params():
    return load_parameters("ncl", overrides={"sroi": {"attribution": [0.3, 0.3], "drop_off": 0.5, "duration_years": 1}})


def _matched():
    rows = []
    for s, d, lo, hi in (("gp", -1000.0, -1500.0, -500.0), ("ae", -50.0, -100.0, 0.0)):
        rows.append({"setting": s, "window_months": 12, "cohort": "itt", "did_per_1000py": d, "did_lower": lo, "did_upper": hi})
    return pd.DataFrame(rows)


def test_investment_is_fte_times_unit_cost_plus_overhead(params):
    inv = valuation.investment(params, 10)
    # 10 FTE x GBP 61,803 (PSSRU 2024 band 4) x (1 + 27.5% mid overhead)
    assert inv["point"] == pytest.approx(10 * 61803 * 1.275)
    assert inv["low"] == pytest.approx(10 * 61803 * 1.25) and inv["high"] == pytest.approx(10 * 69860 * 1.30)


def test_impact_map_quantities_and_proxies(params):
    imap, draws = valuation.impact_map(params, _matched(), n_referred=2000, n_seen=1400,
                                       life_satisfaction_change={"mean_change": 1.0, "lower": 0.8, "upper": 1.2, "n_pairs": 500})
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
    assert set(draws) >= {"GP appointments avoided:quantity", "attribution", "Higher life satisfaction:financial_proxy"}


def test_ratio_matches_hand_calculation(params):
    imap, _ = valuation.impact_map(params, _matched(), 2000, 1400, None)
    inv = 100_000.0
    s = sroi.sroi_summary(imap, inv, rate=0.035).iloc[0]
    # guide stage 4: impact = quantity x proxy x (1 - deadweight)(1 - displacement)(1 - attribution); one year,
    # discounted once at 3.5% (stage 5.2)
    gp = 2000 * 45 * 0.7
    ae = 100 * (114 * 117.6 / 89.0) * 0.7
    pv = (gp + ae) / 1.035
    assert s["sroi_ratio"] == pytest.approx(pv / inv, rel=1e-9)
    assert s["npv"] == pytest.approx(pv - inv, rel=1e-9)


def test_analyse_runs_and_is_seeded(params):
    a = valuation.analyse(params, _matched(), 2000, 1400, {"mean_change": 1.0, "lower": 0.8, "upper": 1.2, "n_pairs": 500}, 5.0)
    b = valuation.analyse(params, _matched(), 2000, 1400, {"mean_change": 1.0, "lower": 0.8, "upper": 1.2, "n_pairs": 500}, 5.0)
    pd.testing.assert_frame_equal(a["monte_carlo"].summary, b["monte_carlo"].summary)
    s = a["monte_carlo"].summary.iloc[0]
    assert s["ratio_q025"] < s["ratio_median"] < s["ratio_q975"]
    assert {"input", "break_even_value"} <= set(a["break_even"].columns)
