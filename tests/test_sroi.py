"""Tests for spstudy.sroi. Known answers cite their source in comments.

Guide = Cabinet Office / SROI Network, "A guide to Social Return on Investment" (January 2012):
Stage 4 (establishing impact: deadweight, displacement, attribution), Stage 5.1 (projecting
into the future, drop-off), Stage 5.2 (net present value), Stage 5.3 (SROI ratio), Stage 5.4
(sensitivity), Stage 5.5 (payback period).
Green Book = HM Treasury, The Green Book (2022), Annex A6 discounting: 3.5% for years 0-30,
declining thereafter; discount factor 1/(1+r)^t.
"""

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy.methods import sroi


def _row(**kw):
    base = {
        "stakeholder": "Patients", "outcome": "Improved wellbeing", "indicator": "SWEMWBS +1",
        "quantity": 10.0, "financial_proxy": 1000.0, "proxy_source": "test proxy",
        "price_year": 2023, "deadweight": 0.2, "attribution": 0.25, "displacement": 0.1,
        "drop_off": 0.1, "duration_years": 3, "notes": "",
    }
    base.update(kw)
    return base


def _map(*rows):
    return pd.DataFrame(list(rows) or [_row()])


TWO_ROWS = _map(
    _row(),
    _row(stakeholder="NHS", outcome="Fewer GP appointments", indicator="GP appts",
         quantity=200, financial_proxy=40.0, deadweight=0.3, attribution=0.2, displacement=0.0,
         drop_off=0.5, duration_years=2),
)


# ---------------------------------------------------------------------------------------------
# Stage 4 and 5.1
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
def test_impact_value_hand_check():
    # Guide Stage 4: impact = quantity x proxy less deadweight, displacement, attribution.
    # 10 x 1000 x (1 - 0.2) x (1 - 0.1) x (1 - 0.25) = 5400.
    assert sroi.impact_value(_row()) == pytest.approx(5400.0)


@pytest.mark.known_answer
def test_drop_off_guide_example():
    # Guide Stage 5.1: an outcome worth 100 lasting three years with 10% drop-off is worth
    # 100 in year 1, 90 in year 2 (100 less 10%) and 81 in year 3 (90 less 10%).
    row = _row(quantity=1, financial_proxy=100, deadweight=0, attribution=0, displacement=0,
               drop_off=0.1, duration_years=3)
    np.testing.assert_allclose(sroi.project_impact(row), [100, 90, 81])


@pytest.mark.unit
def test_impact_schedule_long_form():
    s = sroi.impact_schedule(TWO_ROWS)
    assert list(s.columns) == ["stakeholder", "outcome", "year", "value"]
    assert len(s) == 3 + 2
    gp = s[s.outcome == "Fewer GP appointments"]["value"].to_numpy()
    # 200 x 40 x 0.7 x 1.0 x 0.8 = 4480; year 2 halves
    np.testing.assert_allclose(gp, [4480, 2240])


# ---------------------------------------------------------------------------------------------
# Stage 5.2 discounting
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
def test_green_book_discount_known_answers():
    # Green Book Annex A6: discount factor 1/1.035^t; GBP 100 in year 10 -> 70.89.
    assert sroi.present_value([100], 0.035, start_year=10) == pytest.approx(70.89, abs=0.005)
    # Annex A6 table factors (4 d.p.): year 1 0.9662, year 5 0.8420, year 10 0.7089, year 30 0.3563
    df = sroi.discount_factors([1, 5, 10, 30])
    np.testing.assert_allclose(np.round(df, 4), [0.9662, 0.8420, 0.7089, 0.3563])


@pytest.mark.known_answer
def test_present_value_guide_convention_year1_discounted():
    # Guide Stage 5.2: PV = value_1/(1+r) + value_2/(1+r)^2 + ...
    # 100/1.035 + 90/1.035^2 + 81/1.035^3 = 253.6917 (hand calculation).
    assert sroi.present_value([100, 90, 81]) == pytest.approx(253.6917, abs=1e-4)
    # Green Book year-0 convention: first value undiscounted
    assert sroi.present_value([100, 90], start_year=0) == pytest.approx(100 + 90 / 1.035)


@pytest.mark.known_answer
def test_green_book_declining_schedule():
    f = sroi.green_book_discount_factors([0, 30, 31, 32])
    assert f[0] == 1.0
    assert f[1] == pytest.approx(1.035 ** -30)
    # Green Book: 3.0% applies from year 31
    assert f[2] == pytest.approx(1.035 ** -30 / 1.03)
    assert f[3] == pytest.approx(1.035 ** -30 / 1.03 ** 2)
    np.testing.assert_allclose(sroi.discount_factors(np.arange(31), "green_book"),
                               1.035 ** -np.arange(31.0))


@pytest.mark.unit
def test_discount_rate_errors():
    with pytest.raises(ValueError, match="rate"):
        sroi.discount_factors([1], "treasury")
    with pytest.raises(ValueError, match="rate"):
        sroi.discount_factors([1], -1.5)
    with pytest.raises(ValueError, match="start_year"):
        sroi.present_value([1], start_year=-1)


# ---------------------------------------------------------------------------------------------
# Stage 5.3 / 5.5 headline figures
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
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


@pytest.mark.known_answer
def test_payback_is_the_guide_formula_without_drop_off():
    # guide 5.5: payback (months) = investment / (annual impact / 12) = 10000 / (5400/12) = 22.222
    s = sroi.sroi_summary(_map(_row(drop_off=0.0)), 10_000).iloc[0]
    assert s["payback_months"] == pytest.approx(10_000 / (5400 / 12)) == pytest.approx(22.222, abs=1e-3)
    assert sroi.payback_months(10_000, 5400) == pytest.approx(22.222, abs=1e-3)


@pytest.mark.unit
def test_payback_beyond_the_benefit_period_is_not_reached():
    # Enfield's pack printed a payback of 103.5 months for benefits lasting 12 months: impossible.
    one_year = _map(_row(duration_years=1, drop_off=0.5))  # 5400 in year 1 only
    s = sroi.sroi_summary(one_year, 50_000).iloc[0]
    assert not s["payback_reached"] and np.isnan(s["payback_months"]) and s["benefit_period_months"] == 12
    assert sroi.payback_months(50_000, 5400, benefit_months=12) == float("inf")
    assert sroi.payback_months(50_000, 5400) == pytest.approx(50_000 / 450)  # unbounded guide formula
    ok = sroi.sroi_summary(one_year, 5_000).iloc[0]
    assert ok["payback_reached"] and ok["payback_months"] == pytest.approx(5000 / 450) and ok["payback_months"] <= 12


@pytest.mark.unit
def test_present_value_by_outcome_sums_to_total():
    by = sroi.present_value_by_outcome(TWO_ROWS)
    total = sroi.sroi_summary(TWO_ROWS, 5000)["present_value"].item()
    assert by["present_value"].sum() == pytest.approx(total)
    assert by.loc[1, "present_value"] == pytest.approx(4480 / 1.035 + 2240 / 1.035 ** 2)


@pytest.mark.unit
def test_payback_no_impact_is_infinite():
    assert sroi.payback_months(1000, 0) == float("inf")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    "change, match",
    [
        ({"deadweight": 1.2}, r"row 0 \(outcome 'Improved wellbeing'\), column 'deadweight'"),
        ({"drop_off": -0.1}, "column 'drop_off'"),
        ({"duration_years": 0}, "column 'duration_years'"),
        ({"duration_years": 2.5}, "column 'duration_years'"),
        ({"quantity": -1}, "column 'quantity'"),
        ({"proxy_source": ""}, "column 'proxy_source'"),
        ({"financial_proxy": "lots"}, "column 'financial_proxy'"),
        ({"price_year": 2023.5}, "column 'price_year'"),
    ],
)
def test_validate_names_row_and_column(change, match):
    with pytest.raises(ValueError, match=match):
        sroi.validate_impact_map(_map(_row(**change)))


@pytest.mark.unit
def test_validate_missing_column_and_duplicates():
    with pytest.raises(ValueError, match="missing column"):
        sroi.validate_impact_map(_map().drop(columns="attribution"))
    with pytest.raises(ValueError, match="unique"):
        sroi.validate_impact_map(_map(_row(), _row()))
    with pytest.raises(ValueError, match="no rows"):
        sroi.validate_impact_map(_map().iloc[0:0])


@pytest.mark.unit
def test_validate_lists_all_problems():
    with pytest.raises(ValueError) as e:
        sroi.validate_impact_map(_map(_row(deadweight=2, attribution=-1)))
    assert "deadweight" in str(e.value) and "attribution" in str(e.value)


@pytest.mark.unit
def test_mixed_price_years_warn():
    m = _map(_row(), _row(outcome="Other", price_year=2019))
    with pytest.warns(UserWarning, match="price years"):
        sroi.sroi_summary(m, 1000)


# ---------------------------------------------------------------------------------------------
# Uprating
# ---------------------------------------------------------------------------------------------
@pytest.mark.known_answer
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


@pytest.mark.unit
def test_uprate_impact_map():
    m = _map(_row(), _row(outcome="Other", price_year=2019, financial_proxy=100.0))
    out = sroi.uprate_impact_map(m, 2023, {2019: 80.0, 2023: 100.0})
    assert (out["price_year"] == 2023).all()
    assert out["financial_proxy"].tolist() == pytest.approx([1000.0, 125.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sroi.sroi_summary(out, 1000)


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_normal_from_ci():
    d = sroi.normal_from_ci(1.0, 3.0)
    assert d["mean"] == 2.0
    assert d["sd"] == pytest.approx(2.0 / (2 * 1.959964), abs=1e-6)


@pytest.mark.unit
def test_lognormal_from_ci():
    # symmetric on the log scale: rate ratio CI 0.5 to 2.0 -> meanlog 0, sdlog ln4 / (2 x 1.96)
    d = sroi.lognormal_from_ci(0.5, 2.0)
    assert d["meanlog"] == pytest.approx(0.0, abs=1e-12)
    assert d["sdlog"] == pytest.approx(np.log(4) / (2 * 1.959964), abs=1e-6)
    assert sroi.lognormal_from_ci(0.5, 2.0, point=0.9)["meanlog"] == pytest.approx(np.log(0.9))
    with pytest.raises(ValueError):
        sroi.lognormal_from_ci(0, 2)


@pytest.mark.unit
def test_sample_distribution_moments_and_errors():
    rng = np.random.default_rng(1)
    n = 200_000
    assert sroi.sample_distribution(sroi.uniform(2, 4), n, rng).mean() == pytest.approx(3, abs=0.01)
    tri = sroi.sample_distribution(sroi.triangular(0, 0.2, 1), n, rng)
    assert tri.mean() == pytest.approx(0.4, abs=0.01) and tri.min() >= 0 and tri.max() <= 1
    lnd = sroi.sample_distribution(sroi.lognormal_from_ci(0.5, 2.0), n, rng)
    assert np.quantile(lnd, 0.025) == pytest.approx(0.5, abs=0.01)
    assert np.quantile(lnd, 0.975) == pytest.approx(2.0, abs=0.03)
    assert (sroi.sample_distribution(sroi.fixed(7), 3, rng) == 7).all()
    for bad in ({"dist": "beta"}, {"dist": "normal", "mean": 0}, sroi.uniform(3, 2),
                sroi.triangular(0, 2, 1), "normal"):
        with pytest.raises(ValueError, match="distribution|uniform|triangular"):
            sroi.sample_distribution(bad, 3, rng)


# ---------------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------------
DRAWS = {
    "Improved wellbeing:attribution": sroi.triangular(0.1, 0.25, 0.5),
    "Improved wellbeing:quantity": sroi.normal_from_ci(6, 14),
    "deadweight": sroi.uniform(0.1, 0.4),
    "investment": sroi.lognormal_from_ci(8000, 12000),
}


@pytest.mark.unit
def test_monte_carlo_deterministic_for_seed():
    a = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=2000, seed=42)
    b = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, dict(reversed(DRAWS.items())), n=2000, seed=42)
    c = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=2000, seed=43)
    pd.testing.assert_frame_equal(a.draws[sorted(a.draws.columns)], b.draws[sorted(b.draws.columns)])
    assert not np.allclose(a.draws["ratio"], c.draws["ratio"])
    s = a.summary.iloc[0]
    assert s["ratio_lower"] < s["ratio_median"] < s["ratio_upper"]
    assert s["ratio_lower"] == pytest.approx(np.quantile(a.draws["ratio"], 0.025))
    assert s["ratio_upper"] == pytest.approx(np.quantile(a.draws["ratio"], 0.975))
    assert 0 <= s["prob_ratio_gt_1"] <= 1
    assert s["n"] == 2000 and s["seed"] == 42 and s["confidence"] == 0.95
    n90 = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=2000, seed=42, confidence=0.9).summary.iloc[0]
    assert n90["ratio_upper"] == pytest.approx(np.quantile(a.draws["ratio"], 0.95))


@pytest.mark.unit
def test_monte_carlo_never_reports_a_probability_of_100_percent():
    sure = sroi.monte_carlo_sroi(TWO_ROWS, 10, DRAWS | {"investment": sroi.fixed(10)}, n=500, seed=1).summary.iloc[0]
    assert sure["prob_ratio_gt_1"] == 1.0  # every draw above 1 ...
    assert sure["prob_ratio_gt_1_reported"] == 0.999 and sure["prob_ratio_gt_1_bound"] == ">"  # ... reported as "> 99.9%"
    never = sroi.monte_carlo_sroi(TWO_ROWS, 1e9, DRAWS | {"investment": sroi.fixed(1e9)}, n=500, seed=1).summary.iloc[0]
    assert never["prob_ratio_gt_1_reported"] == pytest.approx(0.001) and never["prob_ratio_gt_1_bound"] == "<"
    mid = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=500, seed=1).summary.iloc[0]
    assert mid["prob_ratio_gt_1_bound"] == "=" and mid["prob_ratio_gt_1_reported"] == mid["prob_ratio_gt_1"]


@pytest.mark.unit
def test_monte_carlo_fixed_draws_equal_deterministic():
    det = sroi.sroi_summary(TWO_ROWS, 10_000)["sroi_ratio"].item()
    mc = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, {"deadweight": sroi.fixed(0.2),
                                                  "Fewer GP appointments:deadweight": sroi.fixed(0.3)},
                               n=5, seed=0)
    np.testing.assert_allclose(mc.draws["ratio"], det)
    mc0 = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, {}, n=3, seed=0)
    np.testing.assert_allclose(mc0.draws["ratio"], det)
    # an outcome-specific input beats the whole-column one, whatever the name order
    t = sroi.tornado(TWO_ROWS, 10_000, {"deadweight": (0.2, 0.2)})
    assert t["ratio_low"].item() != pytest.approx(det)  # whole column 0.2 changes row 2


@pytest.mark.unit
def test_monte_carlo_draws_match_scalar_path():
    # Each vectorised draw equals sroi_summary() on an impact map with those inputs plugged in.
    mc = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=50, seed=7)
    for _, d in mc.draws.head(5).iterrows():
        m = TWO_ROWS.copy()
        m.loc[0, "attribution"] = d["Improved wellbeing:attribution"]
        m.loc[0, "quantity"] = max(d["Improved wellbeing:quantity"], 0)
        m["deadweight"] = d["deadweight"]
        expected = sroi.sroi_summary(m, d["investment"])["sroi_ratio"].item()
        assert d["ratio"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.unit
def test_monte_carlo_clipping_duration_and_rate():
    mc = sroi.monte_carlo_sroi(
        _map(), 10_000,
        {"deadweight": sroi.normal(0.95, 0.2), "duration_years": sroi.uniform(0.5, 4.4),
         "discount_rate": sroi.uniform(0.015, 0.035)},
        n=500, seed=3)
    s = mc.summary.iloc[0]
    assert s["clipped_deadweight"] > 0 and s["clipped_duration_years"] > 0
    assert np.isfinite(mc.draws["ratio"]).all() and (mc.draws["ratio"] >= 0).all()


@pytest.mark.unit
def test_monte_carlo_errors():
    with pytest.raises(ValueError, match="no outcome"):
        sroi.monte_carlo_sroi(_map(), 1000, {"Nope:deadweight": sroi.fixed(0.1)}, n=2, seed=0)
    with pytest.raises(ValueError, match="column 'notes'"):
        sroi.monte_carlo_sroi(_map(), 1000, {"Improved wellbeing:notes": sroi.fixed(0.1)}, n=2, seed=0)
    with pytest.raises(ValueError, match="investment"):
        sroi.monte_carlo_sroi(_map(), 1000, {"investment": sroi.normal(0, 1000)}, n=100, seed=0)
    with pytest.raises(TypeError):
        sroi.monte_carlo_sroi(_map(), 1000, {}, 10, 0)  # seed must be given by keyword


# ---------------------------------------------------------------------------------------------
# Tornado and break-even
# ---------------------------------------------------------------------------------------------
RANGES = {
    "deadweight": (0.1, 0.5),
    "Improved wellbeing:duration_years": (1, 5),
    "discount_rate": (0.015, 0.06),
    "investment": (8000, 12000),
}


@pytest.mark.unit
def test_tornado_values_and_order():
    t = sroi.tornado(TWO_ROWS, 10_000, RANGES)
    assert list(t["swing"]) == sorted(t["swing"], reverse=True)
    base = sroi.sroi_summary(TWO_ROWS, 10_000)["sroi_ratio"].item()
    np.testing.assert_allclose(t["base_ratio"], base)
    row = t.set_index("input").loc["deadweight"]
    m = TWO_ROWS.assign(deadweight=0.5)
    assert row["ratio_high"] == pytest.approx(sroi.sroi_summary(m, 10_000)["sroi_ratio"].item())
    inv = t.set_index("input").loc["investment"]
    assert inv["ratio_low"] == pytest.approx(base * 10_000 / 8000)


@pytest.mark.unit
def test_tornado_plot_draws_bars():
    t = sroi.tornado(TWO_ROWS, 10_000, RANGES)
    ax = sroi.tornado_plot(t)
    assert len(ax.patches) == len(RANGES)
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    assert labels[-1].startswith(t["input"].iloc[0])  # largest swing at the top
    with pytest.raises(ValueError, match="tornado"):
        sroi.tornado_plot(pd.DataFrame({"x": [1]}))


@pytest.mark.unit
def test_break_even_deadweight_root():
    inv = 12_000
    x = sroi.break_even(_map(), inv, "deadweight")
    assert 0 < x < 1
    ratio = sroi.sroi_summary(_map(_row(deadweight=x)), inv)["sroi_ratio"].item()
    assert ratio == pytest.approx(1.0, abs=1e-9)


@pytest.mark.unit
def test_break_even_closed_forms():
    pv = sroi.sroi_summary(TWO_ROWS, 1000)["present_value"].item()
    assert sroi.break_even(TWO_ROWS, 1000, "investment") == pytest.approx(pv)
    inv = 20_000
    q = sroi.break_even(TWO_ROWS, inv, "Improved wellbeing:quantity")
    m = TWO_ROWS.copy()
    m.loc[0, "quantity"] = q
    assert sroi.sroi_summary(m, inv)["sroi_ratio"].item() == pytest.approx(1.0)


@pytest.mark.unit
def test_break_even_no_root_is_nan():
    # ratio stays above 1 whatever the attribution of the small outcome: no root in [0, 1]
    assert np.isnan(sroi.break_even(TWO_ROWS, 100, "Fewer GP appointments:attribution"))
    with pytest.raises(ValueError, match="duration_years"):
        sroi.break_even(TWO_ROWS, 100, "duration_years")


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------
fractions = st.floats(0, 1, allow_nan=False)


@pytest.mark.unit
@settings(max_examples=60, deadline=None)
@given(q=st.floats(0, 1e4), p=st.floats(0, 1e4), dw=fractions, at=fractions, ds=fractions,
       dur=st.integers(1, 10))
def test_no_drop_off_no_discount_is_impact_times_duration(q, p, dw, at, ds, dur):
    row = _row(quantity=q, financial_proxy=p, deadweight=dw, attribution=at, displacement=ds,
               drop_off=0.0, duration_years=dur)
    pv = sroi.present_value(sroi.project_impact(row), rate=0.0)
    assert pv == pytest.approx(sroi.impact_value(row) * dur, rel=1e-9, abs=1e-9)


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(dw1=fractions, dw2=fractions, drop=fractions, rate=st.floats(0, 0.2))
def test_ratio_monotone_in_deadweight(dw1, dw2, drop, rate):
    lo, hi = sorted((dw1, dw2))
    r_lo = sroi.sroi_summary(_map(_row(deadweight=lo, drop_off=drop)), 1000, rate)["sroi_ratio"].item()
    r_hi = sroi.sroi_summary(_map(_row(deadweight=hi, drop_off=drop)), 1000, rate)["sroi_ratio"].item()
    assert r_hi <= r_lo + 1e-12
