"""The boroughs' published claims beside naive and matched estimates (spstudy.claims)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import claims as C
from spstudy.analyses import evaluation as E
from spstudy.methods.power import simulate_matched_counts
from tests.support import ROOT

REVIEW = ROOT.parent / "shared/context/ncl-social-prescribing-review-2024.txt"  # optional, beside the checkout


@pytest.mark.unit
def test_claim_specs_read_the_published_figures_and_their_sources():
    specs = C.claim_specs(C.review_facts()).set_index("claim_id")
    assert specs.loc["barnet_gp", "claimed_pct_change"] == -70 and "p.31" in specs.loc["barnet_gp", "source"]
    assert specs.loc["enfield_gp_rate", "claimed_pct_change"] == -47 and "Table 2, p.56" in specs.loc["enfield_gp_rate", "source"]
    assert specs.loc["enfield_gp_share", "claimed_pct_people_fewer"] == 47 and "p.42" in specs.loc["enfield_gp_share", "source"]
    assert specs.loc["enfield_gp_share", "claim_sample_size"] == 91
    assert specs.loc["haringey_ae_hiu", "claimed_pct_change"] == -30 and specs.loc["haringey_ae_hiu", "population"] == "high_intensity_users"
    assert "70% reduction in GP attendance" in specs.loc["barnet_gp", "source_quote"]
    if REVIEW.exists():  # every quote is the review's own words
        text = REVIEW.read_text(encoding="utf-8")
        assert all(q in text for q in specs["source_quote"])
    with pytest.raises(ValueError, match="expected one row"):
        C.claim_specs(C.review_facts().iloc[:5])


def _cohort(seed=3):
    """Two boroughs' matched worlds with the windows the claims use (pre/post 6 and 12 months)."""
    w = simulate_matched_counts(300, seed=seed, effect_rate_ratio=0.85, groups={"Enfield": 0.85, "Haringey": 0.85})
    d, pairs = w.units, w.pairs
    rng = np.random.default_rng(seed)
    d = d.rename(columns={"group": "borough"})
    for s in ("gp", "ae"):
        for m in (6, 12):
            days = int(round(30.4375 * m))
            base = rng.poisson(3.0 * m / 12, len(d)) + (d["treated"].to_numpy() * rng.poisson(1.0, len(d)))
            d[f"{s}_pre_{m}m_events"] = base
            d[f"pre_{m}m_days"] = days
            d[f"{s}_post_{m}m_events"] = rng.poisson(2.8 * m / 12, len(d))
            d[f"post_{m}m_days"] = days
        if s == "ae":
            d["ae_baseline_events"], d["ae_post_6m_events"] = d["gp_baseline_events"] // 3, d["gp_post_6m_events"] // 3
    d["seen"] = np.where((d["treated"] == 1) & (d.index % 4 != 0), 1, 0)
    return d, pairs


@pytest.mark.unit
def test_claim_estimates_use_the_evaluation_estimators_on_the_borough():
    d, pairs = _cohort()
    specs = C.claim_specs(C.review_facts())
    est = C.claim_estimates(d, pairs, specs, hiu_min_ae_12m=2)
    assert set(est.naive["claim_id"]) == {"enfield_gp_rate", "enfield_gp_share", "haringey_ae_hiu"}  # no Barnet in these data
    t = d.set_index("index_id")
    enf = t["borough"] == "Enfield"
    nv = est.naive.set_index("claim_id").loc["enfield_gp_rate"]
    ref = E.naive_before_after(d[enf.to_numpy()], "gp", 6, "per_protocol")
    assert nv["n_referred"] == ref["n_referred"] and nv["rate_ratio"] == pytest.approx(ref["rate_ratio"])
    assert nv["rate_ratio_lower"] == pytest.approx(ref["rate_ratio_lower"], rel=1e-4)
    mt = est.matched.set_index("claim_id").loc["enfield_gp_rate"]
    sub = pairs[pairs["treated_id"].map(t["borough"]) == "Enfield"]
    assert mt["ratio_of_rate_ratios"] == pytest.approx(E.did(d, sub, "gp", 6, "per_protocol", boot=2)["ratio_of_rate_ratios"], rel=1e-10)
    hiu = est.naive.set_index("claim_id").loc["haringey_ae_hiu"]
    assert hiu["n_referred"] == int(((t["treated"] == 1) & (t["borough"] == "Haringey") & (t["ae_pre_12m_events"] >= 2)).sum())
    sh = est.shares.iloc[0]
    r = t.loc[sub[sub["treated_id"].map(t["seen"]) == 1]["treated_id"]]
    assert sh["n_referred_fewer"] == int((r["gp_post_6m_events"] < r["gp_pre_6m_events"]).sum())
    assert sh["excess_pct_points"] == pytest.approx(sh["pct_referred_fewer"] - sh["pct_comparators_fewer"])
    assert sh["excess_pct_points_lower"] < sh["excess_pct_points"] < sh["excess_pct_points_upper"]


@pytest.mark.unit
def test_claims_table_states_how_much_of_the_claim_is_supported():
    specs = C.claim_specs(C.review_facts())
    keys = lambda cid, s, m, c, pop, b: {"claim_id": cid, "borough": b, "population": pop, "setting": s, "window_months": m, "cohort": c}
    naive = pd.DataFrame([{**keys("barnet_gp", "gp", 12, "per_protocol", "all", "Barnet"), "n_referred": 5000,
                           "pct_change": -16.0, "pct_change_lower": -17.0, "pct_change_upper": -15.0},
                          {**keys("haringey_ae_hiu", "ae", 12, "itt", "high_intensity_users", "Haringey"), "n_referred": 130,
                           "pct_change": -35.0, "pct_change_lower": -41.0, "pct_change_upper": -28.0}])
    matched = pd.DataFrame([{**keys("barnet_gp", "gp", 12, "per_protocol", "all", "Barnet"), "n_matched_sets": 4900, "status": "estimated",
                             "pct_change": -14.0, "pct_change_lower": -17.5, "pct_change_upper": -10.5},
                            {**keys("haringey_ae_hiu", "ae", 12, "itt", "high_intensity_users", "Haringey"), "n_matched_sets": 80, "status": "estimated",
                             "pct_change": -15.0, "pct_change_lower": -53.0, "pct_change_upper": 53.0}])
    tab = C.claims_table(specs, naive, matched).set_index("claim_id")
    assert list(tab.index) == ["barnet_gp", "haringey_ae_hiu"]  # claims without estimates are left out
    b = tab.loc["barnet_gp"]
    assert b["share_of_claim_supported"] == pytest.approx(20.0)
    assert b["share_of_claim_supported_lower"] == pytest.approx(15.0) and b["share_of_claim_supported_upper"] == pytest.approx(25.0)
    assert "supports about 20% of the published figure (15% to 25%)" in b["statement"] and "-16%" in b["statement"]
    assert "5000" not in b["statement"] and "4900" not in b["statement"]  # never counts of people in text
    assert "too wide to tell no effect from the published figure" in tab.loc["haringey_ae_hiu", "statement"]
    assert tab.loc["haringey_ae_hiu", "n_matched_sets"] == 80
