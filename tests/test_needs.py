"""Needs assessment: ward indicators from the census, the need index, referral ratios and
workforce coverage, checked against their sources and by construction."""

import numpy as np
import pandas as pd
import pytest

from spstudy import needs, reference
from spstudy.params import load_parameters


@pytest.fixture(scope="module")
def ind():
    return needs.ward_indicators("ncl")


def test_ward_indicators_cover_every_ward_and_add_up(ind):
    assert len(ind) == 107 and not ind.isna().any().any()
    eth = ind[["pct_white", "pct_asian", "pct_black", "pct_mixed", "pct_other_ethnic"]].sum(axis=1)
    assert np.allclose(eth, 100, atol=0.5)  # Census 2021 TS021 five groups (OA percentages rounded to 0.1)
    assert ind["residents"].sum() == reference.census_population()["residents"].sum()
    assert (ind["imd2025_score"] > 0).all() and ind["pct_aged_65_plus"].between(2, 40).all()


def test_need_index_is_standardised_against_ncl(ind):
    w = load_parameters("ncl").needs.need_index_weights
    ni = needs.need_index(ind, w)
    # weighted mean of z-scores: mean 0 over NCL wards; ranks 1..107; quintiles 1..5
    assert ni["need_index"].mean() == pytest.approx(0, abs=1e-9)
    assert sorted(ni["need_rank"]) == list(range(1, 108))
    q = ni["need_quintile"].value_counts().sort_index()
    assert q.index.tolist() == [1, 2, 3, 4, 5] and q.between(21, 22).all()  # 107 wards in fifths
    # a borough's index uses the same NCL scale
    cam = needs.need_index(needs.ward_indicators("camden"), w)
    assert cam.set_index("ward22_code")["need_index"].equals(ni.set_index("ward22_code").loc[cam["ward22_code"], "need_index"])
    with pytest.raises(ValueError, match="unknown indicators"):
        needs.need_index(ind, {"pct_unicorns": 1.0})


def test_sensitivity_reports_rank_ranges(ind):
    w = load_parameters("ncl").needs.need_index_weights
    wards, comps = needs.need_index_sensitivity(ind.head(30), w, draws=100, seed=3)
    assert (wards["rank_p05"] <= wards["rank_median"]).all() and (wards["rank_median"] <= wards["rank_p95"]).all()
    assert len(comps) == len(w) and comps["spearman_with_base_ranking"].between(-1, 1).all()


def _toy_referrals(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    lk = reference.lsoa21_lookup()
    w = lk["ward22_code"].to_numpy()[rng.integers(0, len(lk), n)]
    persons = pd.DataFrame({"person_id": [f"P{i}" for i in range(n)], "birth_year": rng.integers(1930, 2005, n),
                            "sex": rng.choice(["F", "M"], n), "ward22_code": w})
    referrals = pd.DataFrame({"person_id": persons["person_id"], "referral_date": pd.Timestamp("2023-10-01")})
    return referrals, persons


def test_indirect_standardisation_sums_to_observed_over_ncl():
    referrals, persons = _toy_referrals()
    r = needs.referral_rates_by_ward(referrals, persons, "ncl")
    # expected counts use NCL age-sex rates, so over all NCL wards observed = expected (ratio 100)
    assert r["referrals"].sum() == len(referrals)
    assert r["expected"].sum() == pytest.approx(len(referrals), rel=1e-9)
    assert (r["referral_ratio"].dropna() >= 0).all()
    cam = needs.referral_rates_by_ward(referrals, persons, "camden")
    assert len(cam) == 20


def test_workforce_coverage_reproduces_the_review_and_flags_enfield():
    cov = needs.workforce_coverage(1.0).set_index("borough_name")
    # NCL review (2024): Barnet 25 link workers for 432,182 people; Islington 15.5 for 263,251
    assert cov.loc["Barnet", "link_workers_per_10000"] == pytest.approx(25 / 432182 * 1e4)
    assert cov.loc["Islington", "link_workers_per_10000"] == pytest.approx(15.5 / 263251 * 1e4)
    # Enfield: 7 link workers for 329,980 residents (Census 2021) = 0.21, not the published 0.026
    assert cov.loc["Enfield", "link_workers_per_10000"] == pytest.approx(0.2121, abs=1e-4)
    assert not cov.loc["Enfield", "published_consistent"]
    assert cov.loc["Camden", "published_consistent"]  # 0.53 is "around 0.5"
    assert cov.loc["Haringey", "link_workers"] == 13  # 11 Public Voice + 1 North West PCN + 1 Bridge Renewal
    assert cov.loc["Enfield", "fte_gap_to_target"] == pytest.approx(329980 / 1e4 - 7)
