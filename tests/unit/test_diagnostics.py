"""Unit tests of diagnostics; what the subject's tests check and their sources: tests/support/diagnostics.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.methods import diagnostics as dg
from tests.support.diagnostics import _diag, _fake_fit, _panel, _verdict

pytestmark = pytest.mark.unit


def test_event_study_recovers_planted_effect_and_table_columns():
    p = _panel(n_sets=2000, effect=0.8, seed=5)
    fit = dg.fit_event_study(p)
    t = dg.event_study_table(fit, (-3, -1))
    assert list(t.columns[:5]) == ["month", "reference", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper"]
    assert t.loc[t["reference"], "se"].isna().all()
    post = t[t["month"] >= 0]
    # relative to the reference months the referred people's rate falls by the planted 20%
    assert abs(np.exp(np.log(post["rate_ratio"]).mean()) - 0.8) < 0.03
    pre = t[(t["month"] < -3)]
    assert ((pre["rate_ratio_lower"] < 1) & (pre["rate_ratio_upper"] > 1)).mean() >= 0.5
    # wider intervals at 99% than at 95%
    t99 = dg.event_study_table(fit, (-3, -1), confidence=0.99)
    nr = ~t["reference"]
    assert (t99.loc[nr, "rate_ratio_upper"] > t.loc[nr, "rate_ratio_upper"]).all()


def test_event_study_names_unestimable_months():
    p = _panel(n_sets=20)
    p.loc[(p["month"] == 2) & (p["treated"] == 1), "events"] = 0
    with pytest.raises(ValueError, match=r"months \[2\]"):
        dg.fit_event_study(p)
    with pytest.raises(ValueError, match=r"`panel`: missing column\(s\)"):
        dg.fit_event_study(p.drop(columns=["days"]))


def test_pretrend_onset_transient_by_hand():
    # flat clean period at 0, baseline (-6..-4) raised by log(1.1), rise from -3, tail after referral
    th = {m: 0.0 for m in range(-24, 12)}
    th.update({-6: np.log(1.1), -5: np.log(1.1), -4: np.log(1.1), -3: 0.3, -2: 0.5, -1: 0.6, 0: 0.2, 1: 0.1})
    fit = _fake_fit(th)
    clean = list(range(-24, -15))
    pt = dg.pretrend_test(fit, clean, (-6, -4))
    assert pt["baseline_deviation"] == pytest.approx(np.log(1.1))
    assert pt["pretrend_df"] == len(clean) and pt["pretrend_p"] < 1e-6
    # every month from -6 to -1 is raised by more than 5%: the rise starts at -6, before the washout
    assert dg.rise_onset(fit, clean, list(range(-6, 0)), margin=0.05, alpha=0.05) == -6
    th2 = {**th, -6: 0.0, -5: 0.0, -4: 0.0}
    assert dg.rise_onset(_fake_fit(th2), clean, list(range(-6, 0)), 0.05, 0.05) == -3
    tr = dg.post_transient(fit, washout=3, last_month=11)
    assert tr["transient"] == pytest.approx((0.2 + 0.1 + 0.0) / 3 - 0.0)


def test_trend_adjusted_extrapolates_a_linear_trend():
    """With independent equal variances GLS is OLS: the estimate is the mean deviation of the post
    months (after the washout) from the straight line fitted to the clean months."""
    slope, effect = 0.02, np.log(0.85)
    th = {m: slope * m for m in range(-24, 12)}
    for m in range(0, 12):
        th[m] += effect
    th[0] += 0.4  # tail of the rise in the washout months after referral: left out
    th[1] += 0.2
    fit = _fake_fit(th, se=0.02)
    clean = list(range(-24, -15))
    for w in (6, 12):
        r = dg.trend_adjusted(fit, clean, washout=3, window=w, last_month=11)
        assert r["log_rate_ratio"] == pytest.approx(effect, abs=1e-9)
        assert r["trend_slope"] == pytest.approx(slope, abs=1e-9)
        assert r["drift"] == pytest.approx(0.0, abs=1e-9)
        assert r["linearity_p"] == pytest.approx(1.0)
    # the standard error by hand: var(mean of post months) + var of the extrapolated line at their mean
    k = np.array(clean, float)
    X = np.column_stack([np.ones_like(k), k])
    xbar = np.array([1.0, np.mean(range(3, 12))])
    var_line = 0.02 ** 2 * xbar @ np.linalg.inv(X.T @ X) @ xbar
    r = dg.trend_adjusted(fit, clean, 3, 12, 11)
    assert r["se"] == pytest.approx(np.sqrt(0.02 ** 2 / 9 + var_line), rel=1e-9)
    # a bend at the end of the clean period shows in the end residual
    bent = {**th, -18: th[-18] + 0.2, -17: th[-17] + 0.3, -16: th[-16] + 0.4}
    rb = dg.trend_adjusted(_fake_fit(bent, se=0.02), clean, 3, 12, 11)
    assert rb["linearity_p"] < 0.001 and rb["linearity_end_residual"] > 0.05


def test_check_states():
    m, a = 0.05, 0.05
    assert dg.check(0.20, 0.02, 1e-9, m, a) == dg.FAIL                 # real and large
    assert dg.check(0.02, 0.005, 1e-4, m, a) == dg.PASS                 # real but small, and shown to be small
    assert dg.check(0.04, 0.05, 0.4, m, a) == dg.INCONCLUSIVE           # not significant, but a 5% bias not ruled out
    assert dg.check(0.20, 0.15, 0.2, m, a) == dg.INCONCLUSIVE           # large but not significant
    assert dg.check(np.nan, np.nan, np.nan, m, a) == dg.INCONCLUSIVE


def test_verdict_rules_each_branch():
    r = _verdict()
    assert r["verdict"] == dg.CREDIBLE and r["headline_estimator"] == "matched_did" and r["valued"]
    # balance
    assert _verdict(max_abs_smd=0.15)["verdict"] == dg.SENSITIVE
    r = _verdict(max_abs_smd=0.4)
    assert r["verdict"] == dg.NOT_CREDIBLE and not r["valued"] and r["headline_estimator"] == "none"
    # pre-trend fails, the clean period is linear: the trend-adjusted estimate is the headline
    r = _verdict(baseline_deviation=0.15, pretrend_p=1e-6)
    assert r["verdict"] == dg.SENSITIVE and r["headline_estimator"] == "trend_adjusted" and r["valued"]
    assert "+16%" in r["reason"]
    # ... and when the deviation also bends, nothing can be claimed
    r = _verdict(baseline_deviation=0.15, pretrend_p=1e-6, linearity_p=1e-6, linearity_end_residual=0.2)
    assert r["verdict"] == dg.NOT_CREDIBLE and "straight line" in r["reason"]
    # a rise just before referral that carries on after it: fails a 6-month window more than a 12-month one
    kw = dict(placebo_log_rr=0.3, placebo_se=0.01, transient=0.3, transient_se=0.01)
    assert _verdict(window_months=6, **kw)["headline_estimator"] == "trend_adjusted"
    assert _verdict(window_months=12, **kw)["headline_estimator"] == "trend_adjusted"   # 0.3 x 3/12 = 7.5% > 5%
    assert _verdict(window_months=12, **{**kw, "transient": 0.1})["headline_estimator"] == "matched_did"  # 2.5% < 5%
    # the transient and the drift after the washout: no estimator holds
    r = _verdict(window_months=6, drift=-0.2, drift_se=0.02, **kw)
    assert r["verdict"] == dg.NOT_CREDIBLE and "keeps moving" in r["reason"]
    # no rise just before referral: an inconclusive transient does not hold the main design back
    assert _verdict(window_months=6, transient=0.02, transient_se=0.05)["verdict"] == dg.CREDIBLE
    assert _verdict(window_months=6, transient=0.02, transient_se=0.05, placebo_log_rr=0.3, placebo_se=0.01)["verdict"] == dg.SENSITIVE
    # negative control: a change where none can be -> at best sensitive
    r = _verdict(nc_log_rr=0.2, nc_se=0.02)
    assert r["verdict"] == dg.SENSITIVE and "negative-control" in r["reason"]
    assert _verdict(nc_log_rr=0.0, nc_se=0.005)["negative_control_check"] == dg.PASS
    assert _verdict()["negative_control_check"] == dg.NOT_AVAILABLE
    # the reason never holds a count of people and starts with a capital
    assert _verdict(max_abs_smd=0.15)["reason"].startswith("The largest imbalance")


def test_verdict_mapping_for_the_sroi():
    v = dg.verdicts(pd.DataFrame([_diag(), _diag(setting="ae", max_abs_smd=0.5)]), 0.05, 0.05, 0.1, 0.25)
    m = dg.verdict_mapping(v)
    assert m == {("gp", 12, "itt"): dg.CREDIBLE, ("ae", 12, "itt"): dg.NOT_CREDIBLE}

