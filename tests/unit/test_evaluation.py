"""Unit tests of evaluation; what the subject's tests check and their sources: tests/support/evaluation.py."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import evaluation as E
from spstudy.analyses import worlds as W
from spstudy.inputs import reference
from spstudy.inputs.params import load_parameters
from spstudy.methods import diagnostics as dg
from tests.support.evaluation import (
    _tiny_extract,
    _toy,
    world_result,  # noqa: F401 (fixtures)
)

pytestmark = pytest.mark.unit


def test_naive_before_after_toy_and_confidence():
    d, _ = _toy()
    n = E.naive_before_after(d, "gp", 12)
    assert n["rate_ratio"] == pytest.approx(0.5) and n["pct_change"] == pytest.approx(-50)
    se = np.sqrt(1 / 30 + 1 / 15)  # log-normal interval on summed counts
    assert n["rate_ratio_lower"] == pytest.approx(0.5 * np.exp(-1.959964 * se), rel=1e-6)
    n99 = E.naive_before_after(d, "gp", 12, confidence=0.99)
    assert n99["rate_ratio_lower"] == pytest.approx(0.5 * np.exp(-2.575829 * se), rel=1e-6)


def test_vectorised_bootstrap_draws_the_same_sets_as_before():
    """The flattened bincount gives exactly the per-draw bincount the earlier code computed with
    np.apply_along_axis, for the same seed (so published intervals do not move)."""
    n, boot, seed = 37, 25, 11
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(boot, n))
    old = np.apply_along_axis(lambda r: np.bincount(r, minlength=n), 1, draws)
    np.testing.assert_array_equal(E.cluster_bootstrap_counts(n, boot, seed), old)


def test_windows_are_whole_months_and_validated():
    p = load_parameters("ncl")
    d = E.design_from_parameters(p)
    w = {name: (a, b) for name, a, b in E.design_windows(d)}
    assert w["match_q1"][0] == -365 and w["match_q2"][1] < w["baseline"][0]
    assert w["baseline"] == (-183, -92) and w["post_12m"] == (0, 364)
    # the placebo's window is the three months just before the real referral
    assert w["pl_post"] == E.month_days(-3, -1) and w["pl_baseline"] == E.month_days(-9, -7)
    assert d.clean_months == list(range(-24, -15)) and d.washout_months == (-3, -1)
    assert d.seed_comparator_pool == p.evaluation.seeds.comparator_pool and d.confidence == 0.95
    from spstudy.inputs.params import ParameterError

    with pytest.raises(ParameterError, match="matching window wholly before the baseline window"):
        load_parameters("ncl", overrides={"evaluation": {"matching_window_months": [-12, -4], "baseline_window_months": [-6, -4]}})
    with pytest.raises(ParameterError, match="placebo_window_months must not exceed"):
        load_parameters("ncl", overrides={"evaluation": {"placebo_window_months": 6}})


def test_balance_summary_reports_the_largest_imbalance_honestly():
    b = pd.DataFrame({"variable": ["age", "age_rcs1", "sex[M]", "gp_pre_q4_rate"], "sample": "Adjusted",
                      "smd": [0.04, -0.13, 0.02, 0.3], "matched_on": [True, True, True, False]})
    s = E.balance_summary(b, 0.1).set_index("matched_on")
    assert s.loc[True, "max_abs_smd"] == pytest.approx(0.13) and s.loc[True, "variable_with_max"] == "age_rcs1"
    assert s.loc[True, "n_at_or_above_threshold"] == 1 and s.loc[False, "n_at_or_above_threshold"] == 1


def test_comparators_were_never_referred_at_any_time(tmp_path):
    p, ex = _tiny_extract(tmp_path)
    assert "P4" in ex.referred_ever and "P4" not in set(ex.referrals["person_id"])
    led = ex.ledger.to_frame()
    assert led.loc[(led["table"] == "referrals") & (led["step"] == "rows excluded"), "rows"].sum() == 1
    d = dataclasses.replace(E.design_from_parameters(p), comparator_pool_per_referral=50)
    co = E.cohort(ex.persons, ex.referrals, reference.area("camden"), d, referred_ever=ex.referred_ever)
    idx, flow = co.index, co.flow
    assert "P4" not in set(idx.loc[idx["treated"] == 0, "person_id"])
    f = flow.set_index("step")["n"]
    assert f["Registered people in the area's practices referred only outside the study period (not comparators)"] == 1
    assert f["Registered people in the area's practices never referred at any time in the data (comparator pool)"] == 1
    # without referred_ever (an older Extracts) P4 would be in the comparator pool
    flow2 = E.cohort(ex.persons, ex.referrals, reference.area("camden"), d).flow
    assert flow2.set_index("step")["n"].iloc[4] == 2


def test_result_tables_parquet_round_trip_and_legacy_keys(world_result, tmp_path):
    w, r = world_result
    assert isinstance(r, E.EvaluationResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.verdicts = None
    out = r.to_parquet(tmp_path / "res")
    back = E.EvaluationResult.read_parquet(out)
    for name in E.EvaluationResult.TABLES:
        a, b = getattr(back, name).reset_index(drop=True), getattr(r, name).reset_index(drop=True)
        if len(b) == 0:
            assert len(a) == 0
            continue
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)
    assert back.units is None and back.verdict_mapping() == r.verdict_mapping()
    # byte for byte: the same result written twice gives the same files
    r.to_parquet(tmp_path / "again")
    for f in sorted(out.iterdir()):
        assert f.read_bytes() == (tmp_path / "again" / f.name).read_bytes(), f.name
    # no dict interface left over from the untyped result
    with pytest.raises(TypeError):  # a typed result: tables are attributes, not dict keys
        r["data"]
    t = r.tidy()
    assert {"naive", "matched_did", "trend_adjusted"} <= set(t["estimator"])
    assert t.groupby(["setting", "window_months", "cohort"])["headline"].sum().le(1).all()
    with pytest.raises(FileNotFoundError, match="not an evaluation result"):
        E.EvaluationResult.read_parquet(tmp_path)


def test_verdict_table_and_headline_follow_the_rules(world_result):
    _, r = world_result
    v = r.verdicts
    assert set(v["verdict"]) <= set(dg.VERDICTS)
    assert len(v) == 2 * 2 * 2 and v["reason"].str.len().gt(10).all()
    nc = v["verdict"] == dg.NOT_CREDIBLE
    assert (~v.loc[nc, "valued"]).all() and (v.loc[nc, "headline_estimator"] == "none").all() and v.loc[nc, "rate_ratio"].isna().all()
    est = r.estimates.set_index(["setting", "window_months", "cohort", "estimator"])
    for row in v[~nc].itertuples():
        assert row.rate_ratio == est.loc[(row.setting, row.window_months, row.cohort, row.headline_estimator), "rate_ratio"]
    # E-values for every matched and trend-adjusted estimate
    assert r.e_values["e_value"].ge(1).all()
    assert set(r.negative_control["status"]) == {"estimated"}


def test_negative_control_reported_as_not_available_without_it():
    w = W.simulate_world("null", 3, n_referred=500, pool_per_referral=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = W.evaluate_world(w, W.world_design(bootstrap_draws=50, cohorts=("itt",)), settings=("gp", "ae"))
    assert r.negative_control["status"].tolist() == ["not available"]
    assert (r.verdicts["negative_control_check"] == dg.NOT_AVAILABLE).all()
    assert "elective" not in set(r.estimates["setting"])


def test_seeds_are_arguments_and_results_repeat():
    w = W.simulate_world("null", 4, n_referred=400, pool_per_referral=4)
    design = W.world_design(bootstrap_draws=60, cohorts=("itt",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = W.evaluate_world(w, design)
        b = W.evaluate_world(w, design)
        c = W.evaluate_world(w, dataclasses.replace(design, seed_bootstrap=99))
    pd.testing.assert_frame_equal(a.estimates, b.estimates)
    pd.testing.assert_frame_equal(a.verdicts, b.verdicts)
    m, mc = a.matched.set_index(["setting", "window_months"]), c.matched.set_index(["setting", "window_months"])
    assert (m["ratio_of_rate_ratios"] == mc["ratio_of_rate_ratios"]).all()   # the bootstrap seed moves only the bootstrap interval
    assert (m["did_lower"] != mc["did_lower"]).any()
    assert json.loads(a.design.set_index("parameter").loc["seed_bootstrap", "value"]) == design.seed_bootstrap


def test_sroi_inputs_never_carry_a_not_credible_estimate(world_result):
    _, r = world_result
    s = r.sroi_inputs()
    assert {"did_per_1000py", "did_lower", "did_upper", "ratio_of_rate_ratios", "verdict", "valued"} <= set(s.columns)
    assert s.loc[~s["valued"], ["did_per_1000py", "ratio_of_rate_ratios"]].isna().all().all()
    assert (s["valued"] == (s["verdict"] != dg.NOT_CREDIBLE)).all()
    assert r.n_seen == int(r.units.loc[r.units["treated"] == 1, "seen"].sum())


def test_evaluate_names_missing_inputs():
    w = W.simulate_world("null", 5, n_referred=200, pool_per_referral=2)
    d = W.world_design(cohorts=("itt",))
    counts = w.window_counts(E.design_windows_months(d))
    with pytest.raises(ValueError, match=r"`index`: missing column\(s\) \['imd_quintile'\]"):
        E.evaluate(w.index.drop(columns=["imd_quintile"]), counts, lambda r: w.monthly_for(r["index_id"]), d, list(W.SETTINGS))
    with pytest.raises(ValueError, match=r"`counts`: missing column\(s\).*count the windows"):
        E.evaluate(w.index, counts.drop(columns=["gp_baseline_events"]), lambda r: w.monthly_for(r["index_id"]), d, list(W.SETTINGS))

