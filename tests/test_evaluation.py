"""Matched pre/post evaluation: hand-checkable known answers, the cohort rules, the result object,
and recovery of the synthetic data's planted effect on the shipped sample (slow)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import evaluation as E
from spstudy.analyses import worlds as W
from spstudy.inputs import reference
from spstudy.inputs.params import load_parameters
from spstudy.methods import diagnostics as dg

ROOT = Path(__file__).resolve().parent.parent


def _toy():
    """Two matched sets (1:1). Events and exposure chosen so every rate is easy to check by hand."""
    d = pd.DataFrame({
        "index_id": [0, 1, 2, 3], "treated": [1, 1, 0, 0], "seen": [1, 0, 0, 0],
        "gp_baseline_events": [10, 20, 10, 10], "baseline_days": [365, 365, 365, 365],
        "gp_post_12m_events": [5, 10, 10, 10], "post_12m_days": [365, 365, 365, 365],
        "gp_pre_12m_events": [10, 20, 10, 10], "pre_12m_days": [365, 365, 365, 365],
    })
    pairs = pd.DataFrame({"subclass": [1, 2], "treated_id": [0, 1], "control_id": [2, 3]})
    return d, pairs


@pytest.mark.known_answer
def test_did_toy_known_answer():
    """Saturated Poisson model: exp(interaction) = (7.5/15) / (10/10) = 0.5 exactly (the MLE of a
    saturated log-linear model reproduces the observed cell rates; Agresti, Categorical Data
    Analysis, 2013, s.9.1)."""
    d, pairs = _toy()
    r = E.did(d, pairs, "gp", 12, "itt", boot=200)
    assert r["rate_treated_pre"] == pytest.approx(15000 * 365.25 / 365)
    assert r["rate_treated_post"] == pytest.approx(7500 * 365.25 / 365)
    assert r["did_per_1000py"] == pytest.approx(-7500 * 365.25 / 365)
    assert r["ratio_of_rate_ratios"] == pytest.approx(0.5, rel=1e-8)
    pp = E.did(d, pairs, "gp", 12, "per_protocol", boot=50)
    assert pp["n_treated"] == 1 and pp["ratio_of_rate_ratios"] == pytest.approx(5 / 10, rel=1e-8)
    assert np.isnan(pp["ratio_of_rate_ratios_lower"])  # no interval from fewer than three matched sets


@pytest.mark.unit
def test_naive_before_after_toy_and_confidence():
    d, _ = _toy()
    n = E.naive_before_after(d, "gp", 12)
    assert n["rate_ratio"] == pytest.approx(0.5) and n["pct_change"] == pytest.approx(-50)
    se = np.sqrt(1 / 30 + 1 / 15)  # log-normal interval on summed counts
    assert n["rate_ratio_lower"] == pytest.approx(0.5 * np.exp(-1.959964 * se), rel=1e-6)
    n99 = E.naive_before_after(d, "gp", 12, confidence=0.99)
    assert n99["rate_ratio_lower"] == pytest.approx(0.5 * np.exp(-2.575829 * se), rel=1e-6)


@pytest.mark.unit
def test_vectorised_bootstrap_draws_the_same_sets_as_before():
    """The flattened bincount gives exactly the per-draw bincount the earlier code computed with
    np.apply_along_axis, for the same seed (so published intervals do not move)."""
    n, boot, seed = 37, 25, 11
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(boot, n))
    old = np.apply_along_axis(lambda r: np.bincount(r, minlength=n), 1, draws)
    np.testing.assert_array_equal(E.cluster_bootstrap_counts(n, boot, seed), old)


@pytest.mark.unit
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


@pytest.mark.known_answer
def test_restricted_cubic_spline_spans_the_natural_cubic_spline():
    """Harrell (2015) Regression Modeling Strategies s.2.4.5: the restricted cubic spline with
    knots t1..tk is the natural cubic spline with those knots. patsy 1.0 ``cr(x, knots=...,
    lower_bound=t1, upper_bound=tk)`` (a natural cubic regression spline, Wood 2006 s.4.1.2) spans
    the same space with the intercept, so least-squares fits on either basis agree."""
    patsy = pytest.importorskip("patsy")
    rng = np.random.default_rng(1)
    x = rng.uniform(18, 95, 400)
    y = np.sin(x / 12) + rng.normal(0, 0.2, 400)
    knots = E.rcs_knots(x, 4)
    ours = np.column_stack([np.ones_like(x), x, E.rcs_basis(x, knots)])
    ref = np.asarray(patsy.dmatrix("cr(x, knots=k, lower_bound=lo, upper_bound=hi) - 1",
                                   {"x": x, "k": knots[1:-1], "lo": knots[0], "hi": knots[-1]}))
    fit = lambda X: X @ np.linalg.lstsq(X, y, rcond=None)[0]  # noqa: E731
    np.testing.assert_allclose(fit(ours), fit(ref), atol=1e-8)
    # linear beyond the outer knots
    xx = np.linspace(knots[-1] + 1, knots[-1] + 20, 5)
    assert np.allclose(np.diff(E.rcs_basis(xx, knots), 2, axis=0), 0, atol=1e-9)
    assert E.rcs_knots(np.zeros(50), 3) is None


@pytest.mark.unit
def test_balance_summary_reports_the_largest_imbalance_honestly():
    b = pd.DataFrame({"variable": ["age", "age_rcs1", "sex[M]", "gp_pre_q4_rate"], "sample": "Adjusted",
                      "smd": [0.04, -0.13, 0.02, 0.3], "matched_on": [True, True, True, False]})
    s = E.balance_summary(b, 0.1).set_index("matched_on")
    assert s.loc[True, "max_abs_smd"] == pytest.approx(0.13) and s.loc[True, "variable_with_max"] == "age_rcs1"
    assert s.loc[True, "n_at_or_above_threshold"] == 1 and s.loc[False, "n_at_or_above_threshold"] == 1


def _tiny_extract(tmp_path):
    from conftest import tiny_tables, write_tables

    from spstudy.inputs.extracts import load_extracts

    t = tiny_tables()
    # P4 was referred before the study period: excluded from referrals by the loader, never a comparator
    extra = t["referrals"].iloc[[0]].assign(referral_id="R0", person_id="P4", referral_date="2022-06-01",
                                            first_contact_date="2022-06-10", closure_date="2022-08-01")
    t["referrals"] = pd.concat([t["referrals"], extra], ignore_index=True)
    # P5 was never referred (an extract must hold never-referred people: the loader refuses a caseload)
    t["persons"] = pd.concat([t["persons"], t["persons"].iloc[[3]].assign(person_id="P5")], ignore_index=True)
    d = write_tables(t, tmp_path / "x")
    p = load_parameters("camden", overrides={"data": {"extracts_dir": str(d)}})
    return p, load_extracts(p)


@pytest.mark.unit
def test_comparators_were_never_referred_at_any_time(tmp_path):
    p, ex = _tiny_extract(tmp_path)
    assert "P4" in ex.referred_ever and "P4" not in set(ex.referrals["person_id"])
    led = ex.ledger.to_frame()
    assert led.loc[(led["table"] == "referrals") & (led["step"] == "rows excluded"), "rows"].sum() == 1
    d = dataclasses.replace(E.design_from_parameters(p), comparator_pool_per_referral=50)
    idx, flow = E.cohort(ex.persons, ex.referrals, reference.area("camden"), d, referred_ever=ex.referred_ever)
    assert "P4" not in set(idx.loc[idx["treated"] == 0, "person_id"])
    f = flow.set_index("step")["n"]
    assert f["Registered people in the area's practices referred only outside the study period (not comparators)"] == 1
    assert f["Registered people in the area's practices never referred at any time in the data (comparator pool)"] == 1
    # without referred_ever (an older Extracts) P4 would be in the comparator pool
    _, flow2 = E.cohort(ex.persons, ex.referrals, reference.area("camden"), d)
    assert flow2.set_index("step")["n"].iloc[4] == 2


@pytest.fixture(scope="module")
def world_result():
    w = W.simulate_world("transient_crisis", 7, n_referred=800, pool_per_referral=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return w, W.evaluate_world(w, W.world_design(bootstrap_draws=50))


@pytest.mark.unit
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
    # the dict keys notebooks used before still work
    assert r["matched"] is r.matched and r["data"] is r.units and r["match"] is r.match and r["flow"] is r.cohort_flow
    t = r.tidy()
    assert {"naive", "matched_did", "trend_adjusted"} <= set(t["estimator"])
    assert t.groupby(["setting", "window_months", "cohort"])["headline"].sum().le(1).all()
    with pytest.raises(FileNotFoundError, match="not an evaluation result"):
        E.EvaluationResult.read_parquet(tmp_path)


@pytest.mark.unit
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


@pytest.mark.unit
def test_negative_control_reported_as_not_available_without_it():
    w = W.simulate_world("null", 3, n_referred=500, pool_per_referral=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = W.evaluate_world(w, W.world_design(bootstrap_draws=50, cohorts=("itt",)), settings=("gp", "ae"))
    assert r.negative_control["status"].tolist() == ["not available"]
    assert (r.verdicts["negative_control_check"] == dg.NOT_AVAILABLE).all()
    assert "elective" not in set(r.estimates["setting"])


@pytest.mark.unit
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


# ------------------------------------------------------------------------------ shipped data (slow)

def _truth(path: Path) -> dict:
    return json.loads((path / "truth.json").read_text())["service_use"]


@pytest.mark.integration
@pytest.mark.slow
def test_shipped_extract_headlines_cover_truth_and_spark_matches_duckdb():
    """On the shipped sample (NCL): every estimate the verdict puts forward covers the planted
    12-month effect, the naive figures overstate it, the negative control shows no effect, and the
    Spark engine gives exactly the DuckDB counts on a subset."""
    from spstudy.inputs.extracts import load_extracts

    p = load_parameters("ncl")
    ex = load_extracts(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = E.run(ex, E.design_from_parameters(p, bootstrap_draws=100), reference.area("ncl"))
    truth = _truth(ROOT / "data" / "truth")
    v = res.verdicts.set_index(["setting", "window_months", "cohort"])
    n = res.naive.set_index(["setting", "window_months", "cohort"])
    for s in ("gp", "ae"):
        for cohort, key in (("itt", "itt_rate_ratio_referred"), ("per_protocol", "att_rate_ratio_seen")):
            true = truth[s]["12m"][key]
            r = v.loc[(s, 12, cohort)]
            assert r["verdict"] != dg.NOT_CREDIBLE
            assert r["rate_ratio_lower"] <= true <= r["rate_ratio_upper"], f"{s} {cohort}: true {true:.3f} outside headline {r['headline_estimator']}"
            assert n.loc[(s, 12, cohort), "rate_ratio"] < true
    nc = res.negative_control
    assert set(nc["status"]) == {"estimated"}
    m = nc[(nc["estimator"] == "matched_did") & (nc["window_months"] == 12)]
    assert ((m["rate_ratio_lower"] < 1.08) & (m["rate_ratio_upper"] > 0.92)).all()
    f = res.cohort_flow.set_index("step")["n"]
    assert f.iloc[3] > 0  # people referred only before the study period are kept out of the comparators
    idx = res.units.sample(1500, random_state=1)
    wins = E.design_windows(E.design_from_parameters(p))
    duck = E.count_windows(ex.activity, idx, wins, "duckdb")
    spark = E.count_windows(ex.activity, idx, wins, "spark")
    pd.testing.assert_frame_equal(duck.sort_values("index_id").reset_index(drop=True), spark.sort_values("index_id").reset_index(drop=True), check_dtype=False)


@pytest.mark.integration
@pytest.mark.slow
def test_post_window_from_closure_shifts_the_post_period(tmp_path):
    """post_window_from='closure' measures the post windows from each referred person's case
    closure (comparators inherit their matched person's referral-to-closure interval)."""
    from spstudy import synth
    from spstudy.inputs.extracts import load_extracts

    synth.generate(tmp_path, seed=5, scale=0.1, pool_fraction=0.25)
    base = {"data": {"extracts_dir": str(tmp_path)}}
    p_ref = load_parameters("haringey", overrides=base)
    p_clo = load_parameters("haringey", overrides={**base, "evaluation": {"post_window_from": "closure"}})
    ex = load_extracts(p_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = E.run(ex, E.design_from_parameters(p_ref, bootstrap_draws=50, conventional=False), reference.area("haringey"))
        b = E.run(ex, E.design_from_parameters(p_clo, bootstrap_draws=50, conventional=False), reference.area("haringey"))
    ta = a.units[a.units["treated"] == 1].set_index("index_id")
    tb = b.units[b.units["treated"] == 1].set_index("index_id")
    closed = ta["closure_date"].notna() & (ta["closure_date"] > ta["index_date"] + pd.Timedelta(days=30))
    assert closed.sum() > 50
    assert (ta.loc[closed, "gp_baseline_events"] == tb.loc[closed.index[closed], "gp_baseline_events"]).all()
    assert (ta.loc[closed, "gp_post_12m_events"] != tb.loc[closed.index[closed], "gp_post_12m_events"]).any()
    assert len(b.matched) == len(a.matched)


@pytest.mark.unit
def test_sroi_inputs_never_carry_a_not_credible_estimate(world_result):
    _, r = world_result
    s = r.sroi_inputs()
    assert {"did_per_1000py", "did_lower", "did_upper", "ratio_of_rate_ratios", "verdict", "valued"} <= set(s.columns)
    assert s.loc[~s["valued"], ["did_per_1000py", "ratio_of_rate_ratios"]].isna().all().all()
    assert (s["valued"] == (s["verdict"] != dg.NOT_CREDIBLE)).all()
    assert r.n_seen == int(r.units.loc[r.units["treated"] == 1, "seen"].sum())


@pytest.mark.unit
def test_evaluate_names_missing_inputs():
    w = W.simulate_world("null", 5, n_referred=200, pool_per_referral=2)
    d = W.world_design(cohorts=("itt",))
    counts = w.window_counts(E.design_windows_months(d))
    with pytest.raises(ValueError, match=r"'index' is missing columns \['imd_quintile'\]"):
        E.evaluate(w.index.drop(columns=["imd_quintile"]), counts, lambda r: w.monthly_for(r["index_id"]), d, list(W.SETTINGS))
    with pytest.raises(ValueError, match="'counts' is missing the window columns"):
        E.evaluate(w.index, counts.drop(columns=["gp_baseline_events"]), lambda r: w.monthly_for(r["index_id"]), d, list(W.SETTINGS))
