"""Unit tests of sroi; what the subject's tests check and their sources: tests/support/sroi.py."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy.methods import sroi
from tests.support.sroi import DRAWS, RANGES, TWO_ROWS, _map, _row, fractions

pytestmark = pytest.mark.unit


def test_impact_schedule_long_form():
    s = sroi.impact_schedule(TWO_ROWS)
    assert list(s.columns) == ["stakeholder", "outcome", "year", "value"]
    assert len(s) == 3 + 2
    gp = s[s.outcome == "Fewer GP appointments"]["value"].to_numpy()
    # 200 x 40 x 0.7 x 1.0 x 0.8 = 4480; year 2 halves
    np.testing.assert_allclose(gp, [4480, 2240])


def test_discount_rate_errors():
    with pytest.raises(ValueError, match="rate"):
        sroi.discount_factors([1], "treasury")
    with pytest.raises(ValueError, match="rate"):
        sroi.discount_factors([1], -1.5)
    with pytest.raises(ValueError, match="start_year"):
        sroi.present_value([1], start_year=-1)


def test_payback_beyond_the_benefit_period_is_not_reached():
    # Enfield's pack printed a payback of 103.5 months for benefits lasting 12 months: impossible.
    one_year = _map(_row(duration_years=1, drop_off=0.5))  # 5400 in year 1 only
    s = sroi.sroi_summary(one_year, 50_000).iloc[0]
    assert not s["payback_reached"] and np.isnan(s["payback_months"]) and s["benefit_period_months"] == 12
    assert sroi.payback_months(50_000, 5400, benefit_months=12) == float("inf")
    assert sroi.payback_months(50_000, 5400) == pytest.approx(50_000 / 450)  # unbounded guide formula
    ok = sroi.sroi_summary(one_year, 5_000).iloc[0]
    assert ok["payback_reached"] and ok["payback_months"] == pytest.approx(5000 / 450) and ok["payback_months"] <= 12


def test_present_value_by_outcome_sums_to_total():
    by = sroi.present_value_by_outcome(TWO_ROWS)
    total = sroi.sroi_summary(TWO_ROWS, 5000)["present_value"].item()
    assert by["present_value"].sum() == pytest.approx(total)
    assert by.loc[1, "present_value"] == pytest.approx(4480 / 1.035 + 2240 / 1.035 ** 2)


def test_payback_no_impact_is_infinite():
    assert sroi.payback_months(1000, 0) == float("inf")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
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


def test_validate_missing_column_and_duplicates():
    with pytest.raises(ValueError, match="missing column"):
        sroi.validate_impact_map(_map().drop(columns="attribution"))
    with pytest.raises(ValueError, match="unique"):
        sroi.validate_impact_map(_map(_row(), _row()))
    with pytest.raises(ValueError, match="no rows"):
        sroi.validate_impact_map(_map().iloc[0:0])


def test_validate_lists_all_problems():
    with pytest.raises(ValueError) as e:
        sroi.validate_impact_map(_map(_row(deadweight=2, attribution=-1)))
    assert "deadweight" in str(e.value) and "attribution" in str(e.value)


def test_mixed_price_years_warn():
    m = _map(_row(), _row(outcome="Other", price_year=2019))
    with pytest.warns(UserWarning, match="price years"):
        sroi.sroi_summary(m, 1000)


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
def test_normal_from_ci():
    d = sroi.normal_from_ci(1.0, 3.0)
    assert d["mean"] == 2.0
    assert d["sd"] == pytest.approx(2.0 / (2 * 1.959964), abs=1e-6)


def test_lognormal_from_ci():
    # symmetric on the log scale: rate ratio CI 0.5 to 2.0 -> meanlog 0, sdlog ln4 / (2 x 1.96)
    d = sroi.lognormal_from_ci(0.5, 2.0)
    assert d["meanlog"] == pytest.approx(0.0, abs=1e-12)
    assert d["sdlog"] == pytest.approx(np.log(4) / (2 * 1.959964), abs=1e-6)
    assert sroi.lognormal_from_ci(0.5, 2.0, point=0.9)["meanlog"] == pytest.approx(np.log(0.9))
    with pytest.raises(ValueError):
        sroi.lognormal_from_ci(0, 2)


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


def test_monte_carlo_never_reports_a_probability_of_100_percent():
    sure = sroi.monte_carlo_sroi(TWO_ROWS, 10, DRAWS | {"investment": sroi.fixed(10)}, n=500, seed=1).summary.iloc[0]
    assert sure["prob_ratio_gt_1"] == 1.0  # every draw above 1 ...
    assert sure["prob_ratio_gt_1_reported"] == 0.999 and sure["prob_ratio_gt_1_bound"] == ">"  # ... reported as "> 99.9%"
    never = sroi.monte_carlo_sroi(TWO_ROWS, 1e9, DRAWS | {"investment": sroi.fixed(1e9)}, n=500, seed=1).summary.iloc[0]
    assert never["prob_ratio_gt_1_reported"] == pytest.approx(0.001) and never["prob_ratio_gt_1_bound"] == "<"
    mid = sroi.monte_carlo_sroi(TWO_ROWS, 10_000, DRAWS, n=500, seed=1).summary.iloc[0]
    assert mid["prob_ratio_gt_1_bound"] == "=" and mid["prob_ratio_gt_1_reported"] == mid["prob_ratio_gt_1"]


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


def test_monte_carlo_clipping_duration_and_rate():
    mc = sroi.monte_carlo_sroi(
        _map(), 10_000,
        {"deadweight": sroi.normal(0.95, 0.2), "duration_years": sroi.uniform(0.5, 4.4),
         "discount_rate": sroi.uniform(0.015, 0.035)},
        n=500, seed=3)
    s = mc.summary.iloc[0]
    assert s["clipped_deadweight"] > 0 and s["clipped_duration_years"] > 0
    assert np.isfinite(mc.draws["ratio"]).all() and (mc.draws["ratio"] >= 0).all()


def test_monte_carlo_errors():
    with pytest.raises(ValueError, match="no outcome"):
        sroi.monte_carlo_sroi(_map(), 1000, {"Nope:deadweight": sroi.fixed(0.1)}, n=2, seed=0)
    with pytest.raises(ValueError, match="column 'notes'"):
        sroi.monte_carlo_sroi(_map(), 1000, {"Improved wellbeing:notes": sroi.fixed(0.1)}, n=2, seed=0)
    with pytest.raises(ValueError, match="investment"):
        sroi.monte_carlo_sroi(_map(), 1000, {"investment": sroi.normal(0, 1000)}, n=100, seed=0)
    with pytest.raises(TypeError):
        sroi.monte_carlo_sroi(_map(), 1000, {}, 10, 0)  # seed must be given by keyword


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


def test_tornado_plot_draws_bars():
    t = sroi.tornado(TWO_ROWS, 10_000, RANGES)
    ax = sroi.tornado_plot(t)
    assert len(ax.patches) == len(RANGES)
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    assert labels[-1].startswith(t["input"].iloc[0])  # largest swing at the top
    with pytest.raises(ValueError, match="tornado"):
        sroi.tornado_plot(pd.DataFrame({"x": [1]}))


def test_break_even_deadweight_root():
    inv = 12_000
    x = sroi.break_even(_map(), inv, "deadweight")
    assert 0 < x < 1
    ratio = sroi.sroi_summary(_map(_row(deadweight=x)), inv)["sroi_ratio"].item()
    assert ratio == pytest.approx(1.0, abs=1e-9)


def test_break_even_closed_forms():
    pv = sroi.sroi_summary(TWO_ROWS, 1000)["present_value"].item()
    assert sroi.break_even(TWO_ROWS, 1000, "investment") == pytest.approx(pv)
    inv = 20_000
    q = sroi.break_even(TWO_ROWS, inv, "Improved wellbeing:quantity")
    m = TWO_ROWS.copy()
    m.loc[0, "quantity"] = q
    assert sroi.sroi_summary(m, inv)["sroi_ratio"].item() == pytest.approx(1.0)


def test_break_even_no_root_is_nan():
    # ratio stays above 1 whatever the attribution of the small outcome: no root in [0, 1]
    assert np.isnan(sroi.break_even(TWO_ROWS, 100, "Fewer GP appointments:attribution"))
    with pytest.raises(ValueError, match="duration_years"):
        sroi.break_even(TWO_ROWS, 100, "duration_years")


@settings(max_examples=60, deadline=None)
@given(q=st.floats(0, 1e4), p=st.floats(0, 1e4), dw=fractions, at=fractions, ds=fractions,
       dur=st.integers(1, 10))
def test_no_drop_off_no_discount_is_impact_times_duration(q, p, dw, at, ds, dur):
    row = _row(quantity=q, financial_proxy=p, deadweight=dw, attribution=at, displacement=ds,
               drop_off=0.0, duration_years=dur)
    pv = sroi.present_value(sroi.project_impact(row), rate=0.0)
    assert pv == pytest.approx(sroi.impact_value(row) * dur, rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(dw1=fractions, dw2=fractions, drop=fractions, rate=st.floats(0, 0.2))
def test_ratio_monotone_in_deadweight(dw1, dw2, drop, rate):
    lo, hi = sorted((dw1, dw2))
    r_lo = sroi.sroi_summary(_map(_row(deadweight=lo, drop_off=drop)), 1000, rate)["sroi_ratio"].item()
    r_hi = sroi.sroi_summary(_map(_row(deadweight=hi, drop_off=drop)), 1000, rate)["sroi_ratio"].item()
    assert r_hi <= r_lo + 1e-12

