"""Unit tests of valuation; what the subject's tests check and their sources: tests/support/valuation.py."""

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import valuation
from spstudy.methods import sroi
from tests.support.valuation import _matched, _wb, a, params  # noqa: F401 (fixtures)

pytestmark = pytest.mark.unit


def test_swemwbs_only_area_says_wellbeing_is_not_valued_and_what_that_does_to_the_ratio(a):
    # Enfield records SWEMWBS only; the pack valued no wellbeing and printed 0.11 against NCL's 2.50 without saying why
    enf = valuation.analyse(_matched(), n_referred=1161, wellbeing_change=_wb("swemwbs_metric", 1.4, 1.0, 1.8, 90),
                            link_worker_fte=7.0, assumptions=a, seed=1)
    row = enf.impact_map.set_index("outcome").loc["Better mental wellbeing (SWEMWBS)"]
    assert not row["valued"] and np.isnan(row["quantity"]) and "no published mapping" in row["valuation_note"]
    assert row["people"] == 90 and row["effect_per_person"] == 1.4
    assert not any(ch.isdigit() for ch in row["indicator"].replace("7-35", ""))  # no count of people written into text
    s = enf.summary.iloc[0]
    assert not s["wellbeing_valued"] and s["unvalued_outcomes"] == "Better mental wellbeing (SWEMWBS)"
    assert s["sroi_ratio"] == pytest.approx(s["ratio_service_use_only"]) and "understates" in s["note"]
    # with ONS4 valued the same service use gives the same service-only ratio: the like-for-like comparison
    ncl_like = valuation.analyse(_matched(), n_referred=1161, wellbeing_change=_wb(n=90), link_worker_fte=7.0, assumptions=a, seed=1)
    assert ncl_like.summary["ratio_service_use_only"].item() == pytest.approx(s["ratio_service_use_only"])
    assert ncl_like.summary["sroi_ratio"].item() > s["sroi_ratio"]


def test_a_published_mapping_in_the_parameters_values_the_instrument(a):
    b = dict(a)
    b["wellbeing_valuation"] = dict(a["wellbeing_valuation"]) | {
        "swemwbs_metric": {"wellbys_per_point": 0.2, "wellbys_per_point_range": (0.1, 0.3), "source": "test mapping"}}
    im = valuation.impact_map(_matched(), n_referred=100, wellbeing_change=_wb("swemwbs_metric", 1.5, 1.0, 2.0, 40), assumptions=b)
    imap, draws = im.table, im.draws
    row = imap.set_index("outcome").loc["Better mental wellbeing (SWEMWBS)"]
    # 40 people x 1.5 points; GBP 13,000 x 117.6/100 per WELLBY x 0.2 WELLBY per point
    assert row["valued"] and row["quantity"] == pytest.approx(60) and row["financial_proxy"] == pytest.approx(13000 * 1.176 * 0.2)
    assert "test mapping" in row["proxy_source"]
    lo, hi = draws["Better mental wellbeing (SWEMWBS):financial_proxy"]["low"], draws["Better mental wellbeing (SWEMWBS):financial_proxy"]["high"]
    assert lo == pytest.approx(10000 * 1.176 * 0.1) and hi == pytest.approx(16000 * 1.176 * 0.3)


def test_an_estimate_judged_not_credible_is_never_valued(a):
    cred = {("gp", 12, "itt"): "not credible: pre-trends differ (p = 0.01)", ("ae", 12, "itt"): "sensitive: placebo effect of 4%"}
    r = valuation.analyse(_matched(), n_referred=2000, wellbeing_change=None, link_worker_fte=1.0, assumptions=a, seed=1, credibility=cred)
    m = r.impact_map.set_index("outcome")
    assert not m.loc["GP appointments avoided", "valued"] and "pre-trends differ" in m.loc["GP appointments avoided", "valuation_note"]
    assert m.loc["A&E attendances avoided", "valued"] and "sensitive" in m.loc["A&E attendances avoided", "notes"]
    ae_only = 100 * (114 * 117.6 / 89.0) * 0.7 / 1.035
    assert r.summary["sroi_ratio"].item() == pytest.approx(ae_only / r.investment["point"].item())
    assert "GP appointments avoided:quantity" not in set(r.tornado["input"])
    with pytest.raises(ValueError, match="no verdict for \\('gp', 12, 'itt'\\)"):
        valuation.impact_map(_matched(), n_referred=10, wellbeing_change=None, assumptions=a, credibility={("ae", 12, "itt"): "credible"})
    with pytest.raises(ValueError, match="is not a verdict"):
        valuation.impact_map(_matched(), n_referred=10, wellbeing_change=None, assumptions=a,
                             credibility={("gp", 12, "itt"): "maybe", ("ae", 12, "itt"): "credible"})
    none = valuation.analyse(_matched(), n_referred=2000, wellbeing_change=None, link_worker_fte=1.0, assumptions=a, seed=1,
                             credibility={("gp", 12, "itt"): "not credible: x", ("ae", 12, "itt"): "not credible: y"})
    assert none.summary["sroi_ratio"].item() == 0 and not none.summary["payback_reached"].item()


def test_analyse_is_seeded_by_an_explicit_argument_from_the_parameters(params, a):
    kw = dict(n_referred=2000, wellbeing_change=_wb(), link_worker_fte=5.0, assumptions=a)
    x, y = valuation.analyse(_matched(), seed=7, **kw), valuation.analyse(_matched(), seed=7, **kw)
    z = valuation.analyse(_matched(), seed=8, **kw)
    pd.testing.assert_frame_equal(x.monte_carlo, y.monte_carlo)
    assert x.monte_carlo["ratio_median"].item() != z.monte_carlo["ratio_median"].item()
    s = x.monte_carlo.iloc[0]
    assert s["ratio_lower"] < s["ratio_median"] < s["ratio_upper"] and s["seed"] == 7
    assert {"input", "break_even_value"} <= set(x.break_even.columns)
    via = valuation.analyse(_matched(), n_referred=2000, wellbeing_change=_wb(), link_worker_fte=5.0,
                            assumptions=valuation.assumptions_from_parameters(params), seed=params.sroi.seed)  # as notebook 04
    assert via.monte_carlo["seed"].item() == params.sroi.seed != params.sroi.price_year
    assert {"table", "measure", "value"} == set(x.tidy().columns)
    with pytest.raises(ValueError, match="missing key"):
        valuation.analyse(_matched(), seed=1, n_referred=1, wellbeing_change=None, link_worker_fte=1.0, assumptions={"price_year": 2023})


def test_payback_is_bounded_by_the_benefit_period(a):
    # Enfield-like: 7 link workers, small effects, benefits for one year: payback "not reached", never 103.5 months
    r = valuation.analyse(_matched(gp=(-100.0, -200.0, 0.0), ae=(-10.0, -20.0, 0.0)), n_referred=1161, wellbeing_change=None,
                          link_worker_fte=7.0, assumptions=a, seed=1)
    s = r.summary.iloc[0]
    assert s["benefit_period_months"] == 12 and not s["payback_reached"] and np.isnan(s["payback_months"])
    assert sroi.payback_months(r.investment["point"].item(), s["annual_impact"], benefit_months=12) == float("inf")

