"""Unit tests of needs; what the subject's tests check and their sources: tests/support/needs.py."""

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs import reference
from tests.support.needs import BOROUGHS, _simulated_world, ind, reference_rates, weights  # noqa: F401 (fixtures)

pytestmark = pytest.mark.unit


def test_ward_indicators_cover_every_ward_and_add_up(ind):
    assert len(ind) == 107 and not ind.isna().any().any()
    eth = ind[["pct_white", "pct_asian", "pct_black", "pct_mixed", "pct_other_ethnic"]].sum(axis=1)
    assert np.allclose(eth, 100, atol=0.5)  # Census 2021 TS021 five groups (OA percentages rounded to 0.1)
    assert ind["residents"].sum() == reference.census_population()["residents"].sum()
    assert (ind["imd2025_score"] > 0).all() and ind["pct_aged_65_plus"].between(2, 40).all()


def test_need_index_is_standardised_against_ncl_and_ranked_the_same_in_every_pack(ind, weights):
    ni = needs.need_index(ind, weights)
    # weighted mean of z-scores: mean 0 over NCL wards; ranks 1..107; quintiles 1..5
    assert ni["need_index"].mean() == pytest.approx(0, abs=1e-9)
    assert sorted(ni["need_rank"]) == list(range(1, 108))
    q = ni["need_quintile"].value_counts().sort_index()
    assert q.index.tolist() == [1, 2, 3, 4, 5] and q.between(21, 22).all()  # 107 wards in fifths
    ncl = ni.set_index("ward22_code")
    for area in BOROUGHS:
        b = needs.need_index(needs.ward_indicators(reference.area(area)), weights).set_index("ward22_code")
        # the same ward has the same index, NCL rank and quintile in its borough pack as in the NCL pack
        pd.testing.assert_frame_equal(b[["need_index", "need_rank", "need_quintile"]], ncl.loc[b.index, ["need_index", "need_rank", "need_quintile"]])
        assert sorted(b["need_rank_in_area"]) == list(range(1, len(b) + 1))
    with pytest.raises(ValueError, match=r"`weights`: missing column\(s\)"):
        needs.need_index(ind, {"pct_unicorns": 1.0})


def test_need_cut_is_the_ncl_quantile(ind, weights):
    ni = needs.need_index(ind, weights)
    cut = needs.need_cut(weights, 0.8)
    assert cut == pytest.approx(np.quantile(ni["need_index"], 0.8))
    assert (ni["need_index"] >= cut).sum() == 22  # 107 wards: the top fifth (numpy linear interpolation)
    with pytest.raises(ValueError, match="need_quantile"):
        needs.need_cut(weights, 1.5)


def test_sensitivity_ranks_wards_among_ncl_so_packs_agree(weights):
    ncl_w = needs.need_index_sensitivity(needs.ward_indicators(), weights, draws=100, seed=3).wards
    cam = needs.need_index_sensitivity(needs.ward_indicators(reference.area("camden")), weights, draws=100, seed=3)
    cam_w, comps = cam.wards, cam.components
    assert (cam_w["rank_lower"] <= cam_w["rank_median"]).all() and (cam_w["rank_median"] <= cam_w["rank_upper"]).all()
    assert cam_w["rank_upper"].max() <= 107 and len(comps) == len(weights) and comps["spearman_with_base_ranking"].between(-1, 1).all()
    cols = ["need_rank", "rank_median", "rank_lower", "rank_upper", "pct_draws_top_fifth"]
    pd.testing.assert_frame_equal(cam_w.set_index("ward22_code")[cols], ncl_w.set_index("ward22_code").loc[cam_w["ward22_code"], cols])


def test_reference_rates_and_expected_counts_by_hand():
    referrals, persons = _simulated_world({})
    rates = needs.reference_referral_rates(referrals, persons, years=1.0)
    pop = needs.ward_population_age_sex()
    # rate of a stratum = its NCL referrals / its NCL population (PHEindicatormethods calculate_ISRatio x_ref / n_ref)
    f = rates.set_index(["age_band", "sex"]).loc[("40-44", "F")]
    n_f = (persons.merge(referrals, on="person_id")[lambda d: (d["birth_year"] == 2023 - 40 - 2) & (d["sex"] == "F")]).shape[0]
    assert f["referrals"] == n_f
    assert f["rate"] == pytest.approx(n_f / pop[(pop["age_band"] == "40-44") & (pop["sex"] == "F")]["population"].sum())
    r = needs.referral_rates_by_ward(reference.area("ncl"), referrals=referrals, reference_rates=reference_rates(referrals, persons), persons=persons)
    # expected counts use NCL age-sex rates, so over all NCL wards observed = expected (ratio 100)
    assert r["referrals"].sum() == len(referrals)
    assert r["expected"].sum() == pytest.approx(len(referrals), rel=1e-9)
    assert (r["referral_ratio"] >= 0).all()
    assert {"crude_rate_lower", "dsr_rate_upper", "referral_ratio_lower", "referral_ratio_upper", "reference"} <= set(r.columns)
    with pytest.raises(ValueError, match="reference_referrals: 1 referrals have no person record"):
        needs.reference_referral_rates(pd.concat([referrals, referrals.head(1).assign(person_id="nobody")]), persons)
    with pytest.raises(ValueError, match=r"`reference_rates`: missing column\(s\) \['stratum'\].*pub.reference_rates"):
        needs.referral_rates_by_ward(reference.area("camden"), referrals=referrals, persons=persons, reference_rates=rates)  # unprotected: refused


def test_outreach_needs_the_cut_as_an_argument_not_attrs(weights):
    referrals, persons = _simulated_world({})
    prof = needs.ward_needs_profile(reference.area("camden"), referrals=referrals, reference_rates=reference_rates(referrals, persons), persons=persons, weights=weights)
    assert not prof.attrs
    with pytest.raises(TypeError):
        needs.outreach_candidates(prof, 0.8, 100)  # keyword-only: need_cut is a need-index value, not a quantile
    with pytest.raises(ValueError, match="missing column"):
        needs.outreach_candidates(prof.drop(columns=["expected"]), need_cut=0.0, ratio_below=100)


