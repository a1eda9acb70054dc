"""Integration tests of evaluation; what the subject's tests check and their sources: tests/support/evaluation.py."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from spstudy.analyses import evaluation as E
from spstudy.inputs import reference
from spstudy.inputs.params import load_parameters
from spstudy.methods import diagnostics as dg
from tests.support import ROOT
from tests.support.evaluation import (
    _truth,
    world_result,  # noqa: F401 (fixtures)
)

pytestmark = pytest.mark.integration


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

